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
