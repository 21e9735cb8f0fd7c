//! Loom models of the cancellation tree, ported from tokio-util's
//! `loom_cancellation_token.rs` (cancel_token, cancel_token_owned,
//! cancel_with_child, drop_token_no_child, drop_token_with_children,
//! drop_and_cancel_token, cancel_parent_and_child), plus cause propagation
//! and a child created while its parent is being cancelled. Loom reports a
//! lost wake-up as a deadlock and a leaked node as a leaked `Arc`.

use loom::future::block_on;
use loom::thread;

use crate::cancel::{CancelCause, CancelScope};

#[test]
fn cancel_token() {
    loom::model(|| {
        let token = CancelScope::new();
        let token1 = token.clone();
        let th1 = thread::spawn(move || block_on(token1.cancelled()));
        let th2 = thread::spawn(move || token.cancel(CancelCause::User));
        th1.join().unwrap();
        th2.join().unwrap();
    });
}

#[test]
fn cancel_token_owned() {
    loom::model(|| {
        let token = CancelScope::new();
        let token1 = token.clone();
        let th1 = thread::spawn(move || block_on(token1.cancelled_owned()));
        let th2 = thread::spawn(move || token.cancel(CancelCause::User));
        th1.join().unwrap();
        th2.join().unwrap();
    });
}

#[test]
fn cancel_with_child() {
    loom::model(|| {
        let token = CancelScope::new();
        let token1 = token.clone();
        let token2 = token.clone();
        let child = token.child();
        let th1 = thread::spawn(move || block_on(token1.cancelled()));
        let th2 = thread::spawn(move || token2.cancel(CancelCause::User));
        let th3 = thread::spawn(move || {
            block_on(child.cancelled());
            child.cause()
        });
        th1.join().unwrap();
        th2.join().unwrap();
        assert_eq!(th3.join().unwrap(), Some(CancelCause::User));
    });
}

#[test]
fn drop_token_no_child() {
    loom::model(|| {
        let token = CancelScope::new();
        let token1 = token.clone();
        let token2 = token.clone();
        let th1 = thread::spawn(move || drop(token1));
        let th2 = thread::spawn(move || drop(token2));
        let th3 = thread::spawn(move || drop(token));
        th1.join().unwrap();
        th2.join().unwrap();
        th3.join().unwrap();
    });
}

#[test]
fn drop_token_with_children() {
    loom::model(|| {
        let token1 = CancelScope::new();
        let child1 = token1.child();
        let child2 = token1.child();
        let th1 = thread::spawn(move || drop(token1));
        let th2 = thread::spawn(move || drop(child1));
        let th3 = thread::spawn(move || drop(child2));
        th1.join().unwrap();
        th2.join().unwrap();
        th3.join().unwrap();
    });
}

#[test]
fn drop_and_cancel_token() {
    loom::model(|| {
        let token1 = CancelScope::new();
        let token2 = token1.clone();
        let child = token1.child();
        let th1 = thread::spawn(move || drop(token1));
        let th2 = thread::spawn(move || token2.cancel(CancelCause::User));
        let th3 = thread::spawn(move || drop(child));
        th1.join().unwrap();
        th2.join().unwrap();
        th3.join().unwrap();
    });
}

#[test]
fn cancel_parent_and_child() {
    loom::model(|| {
        let token1 = CancelScope::new();
        let token2 = token1.clone();
        let child = token1.child();
        let th1 = thread::spawn(move || drop(token1));
        let th2 = thread::spawn(move || token2.cancel(CancelCause::User));
        let th3 = thread::spawn(move || child.cancel(CancelCause::Shutdown));
        th1.join().unwrap();
        th2.join().unwrap();
        th3.join().unwrap();
    });
}

/// A parent and its child cancelled at once with different causes: the
/// parent keeps its own, the child keeps whichever came first, and the
/// grandchild always reports the child's cause, whether it got it from the
/// child or through it.
#[test]
fn cause_propagation() {
    loom::model(|| {
        let parent = CancelScope::new();
        let child = parent.child();
        let grandchild = child.child();
        let p = parent.clone();
        let c = child.clone();
        let th1 = thread::spawn(move || p.cancel(CancelCause::User));
        let th2 = thread::spawn(move || c.cancel(CancelCause::Shutdown));
        let waiter = thread::spawn(move || {
            block_on(grandchild.cancelled());
            grandchild.cause()
        });
        th1.join().unwrap();
        th2.join().unwrap();
        let seen = waiter.join().unwrap();
        assert_eq!(parent.cause(), Some(CancelCause::User));
        let child_cause = child.cause();
        assert!(matches!(
            child_cause,
            Some(CancelCause::User) | Some(CancelCause::Shutdown)
        ));
        assert_eq!(seen, child_cause);
        child.handle.check_invariants();
    });
}

/// A child created while its parent is being cancelled is either linked
/// before the walk (and cancelled by it) or born cancelled: never missed.
#[test]
fn child_created_during_cancel() {
    loom::model(|| {
        let parent = CancelScope::new();
        let p = parent.clone();
        let th1 = thread::spawn(move || p.cancel(CancelCause::DeadlineExceeded));
        let th2 = thread::spawn(move || {
            let child = parent.child();
            block_on(child.cancelled());
            child.cause()
        });
        th1.join().unwrap();
        assert_eq!(th2.join().unwrap(), Some(CancelCause::DeadlineExceeded));
    });
}

/// The pipeline's stop path (issue 10): a cancel of the root races a stage
/// that checks its own child scope and parks on its `Signal`, and the watcher
/// turns "the root is cancelled" into one notification of that signal.
///
/// The watcher is a `select!` that re-polls `cancelled()` whenever any of its
/// branches wakes it, so it can look at the root's flag at any moment of the
/// cancel, not only after being woken by it; the model gives it one look at
/// an arbitrary point and a wait otherwise. The stage never parks on its scope
/// itself, only on the signal, as in `runtime::driver`. If the watcher could
/// see the root cancelled before the stage's scope was, the stage would
/// consume the notification, find its scope not yet cancelled and park for
/// good; loom reports that as a deadlock.
#[test]
fn watcher_sees_root_cancelled_only_after_every_stage_scope() {
    use crate::loom::sync::Arc;
    use crate::runtime::signal::Signal;

    loom::model(|| {
        let root = CancelScope::new();
        let stage_scope = root.child();
        let signal = Arc::new(Signal::new());
        let canceller = {
            let root = root.clone();
            thread::spawn(move || root.cancel(CancelCause::User))
        };
        let watcher = {
            let signal = signal.clone();
            thread::spawn(move || {
                if !root.is_cancelled() {
                    block_on(root.cancelled());
                }
                signal.notify();
            })
        };
        block_on(async {
            while !stage_scope.is_cancelled() {
                signal.notified().await;
            }
        });
        assert_eq!(stage_scope.cause(), Some(CancelCause::User));
        canceller.join().unwrap();
        watcher.join().unwrap();
    });
}

/// The same race one level deeper: a stage's own work scope (a grandchild of
/// the root) is cancelled before the stage's scope is seen cancelled, so work
/// that a stage checks after seeing its scope cancelled is never found live.
#[test]
fn cancel_marks_grandchildren_before_children() {
    loom::model(|| {
        let root = CancelScope::new();
        let stage_scope = root.child();
        let work = stage_scope.child();
        let canceller = {
            let root = root.clone();
            thread::spawn(move || root.cancel(CancelCause::DeadlineExceeded))
        };
        let observer = thread::spawn(move || {
            let stage_seen = stage_scope.is_cancelled();
            let work_seen = work.is_cancelled();
            assert!(
                !stage_seen || work_seen,
                "a stage scope was seen cancelled before its child"
            );
        });
        canceller.join().unwrap();
        observer.join().unwrap();
    });
}
