//! The cancellation tree's public behaviour, ported from tokio-util's
//! `CancellationToken` tests (conformance goal G-C4) plus what demandflow
//! adds: causes, `drop_guard`, and the first-cause-wins rule. The concurrent
//! interleavings are model-checked by the loom tests in `src/cancel/tests/`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use demandflow::{CancelCause, CancelGuard, CancelScope};

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(NoopWake));
    fut.poll(&mut Context::from_waker(&waker))
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send_static<T: Send + 'static>() {}
    send_sync::<CancelScope>();
    send_sync::<CancelGuard>();
    send_sync::<demandflow::cancel::WaitForCancellation<'static>>();
    send_static::<demandflow::cancel::WaitForCancellationOwned>();
}

#[test]
fn cancel_parent_cancels_descendants_not_the_other_way() {
    let parent = CancelScope::new();
    let child = parent.child();
    let grandchild = child.child();
    let sibling = parent.child();

    grandchild.cancel(CancelCause::User);
    assert!(grandchild.is_cancelled());
    assert!(!child.is_cancelled() && !parent.is_cancelled() && !sibling.is_cancelled());

    parent.cancel(CancelCause::Shutdown);
    assert!(child.is_cancelled() && sibling.is_cancelled());
    assert_eq!(child.cause(), Some(CancelCause::Shutdown));
    assert_eq!(
        grandchild.cause(),
        Some(CancelCause::User),
        "the first cause wins"
    );
}

#[test]
fn dropping_scopes_never_cancels() {
    let parent = CancelScope::new();
    let child = parent.child();
    drop(parent.child());
    drop(parent.clone());
    let orphan = {
        let middle = parent.child();
        middle.child()
    };
    drop(child);
    assert!(!parent.is_cancelled());
    assert!(!orphan.is_cancelled());
    // The orphan's middle scope is gone; it still hears its grandparent.
    parent.cancel(CancelCause::DeadlineExceeded);
    assert_eq!(orphan.cause(), Some(CancelCause::DeadlineExceeded));
}

#[test]
fn dropping_the_parent_keeps_children_cancellable() {
    let parent = CancelScope::new();
    let child = parent.child();
    drop(parent);
    assert!(!child.is_cancelled());
    child.cancel(CancelCause::User);
    assert_eq!(child.cause(), Some(CancelCause::User));
}

#[test]
fn child_of_cancelled_scope_is_born_cancelled_with_its_cause() {
    let parent = CancelScope::new();
    parent.cancel(CancelCause::StageFailed("fetch".into()));
    let child = parent.child().child();
    assert!(child.is_cancelled());
    assert_eq!(
        child.cause(),
        Some(CancelCause::StageFailed("fetch".into()))
    );
    assert_eq!(poll_once(pin!(child.cancelled())), Poll::Ready(()));
}

#[test]
fn cancel_is_idempotent_and_first_cause_wins() {
    let scope = CancelScope::new();
    assert_eq!(scope.cause(), None);
    scope.cancel(CancelCause::DeadlineExceeded);
    scope.cancel(CancelCause::User);
    scope.clone().cancel(CancelCause::Shutdown);
    assert_eq!(scope.cause(), Some(CancelCause::DeadlineExceeded));
}

#[test]
fn clones_share_the_node() {
    let scope = CancelScope::new();
    let clone = scope.clone();
    assert!(clone.same_scope(&scope));
    clone.cancel(CancelCause::User);
    assert!(scope.is_cancelled());
}

#[test]
fn cancelled_future_is_pending_until_cancel_then_ready() {
    let scope = CancelScope::new();
    let child = scope.child();
    let mut wait = pin!(child.cancelled());
    assert_eq!(poll_once(wait.as_mut()), Poll::Pending);
    assert_eq!(poll_once(wait.as_mut()), Poll::Pending);
    scope.cancel(CancelCause::User);
    assert_eq!(poll_once(wait.as_mut()), Poll::Ready(()));
}

#[test]
fn drop_guard_cancels_with_owner_dropped_unless_disarmed() {
    let scope = CancelScope::new();
    let stage = scope.child();
    {
        let _guard = scope.clone().drop_guard();
    }
    assert_eq!(stage.cause(), Some(CancelCause::OwnerDropped));

    let kept = CancelScope::new();
    let guard = kept.clone().drop_guard();
    assert!(guard.disarm().same_scope(&kept));
    assert!(!kept.is_cancelled());
}

#[test]
fn cause_display_is_lowercase_text() {
    assert_eq!(
        CancelCause::DeadlineExceeded.to_string(),
        "deadline exceeded"
    );
    assert_eq!(
        CancelCause::StageFailed("parse".into()).to_string(),
        "stage `parse` failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_thread_wakes_every_waiter() {
    let root = CancelScope::new();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let scope = if i % 2 == 0 {
            root.child()
        } else {
            root.child().child()
        };
        tasks.push(tokio::spawn(async move {
            scope.clone().cancelled_owned().await;
            scope.cause()
        }));
    }
    let canceller = root.clone();
    std::thread::spawn(move || canceller.cancel(CancelCause::Shutdown))
        .join()
        .unwrap();
    for task in tasks {
        let cause = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(cause, Some(CancelCause::Shutdown));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cancels_agree_on_one_cause() {
    for _ in 0..50 {
        let scope = CancelScope::new();
        let child = scope.child();
        let a = {
            let s = scope.clone();
            std::thread::spawn(move || s.cancel(CancelCause::User))
        };
        let b = {
            let s = scope.clone();
            std::thread::spawn(move || s.cancel(CancelCause::Shutdown))
        };
        a.join().unwrap();
        b.join().unwrap();
        let cause = scope.cause();
        assert!(matches!(
            cause,
            Some(CancelCause::User) | Some(CancelCause::Shutdown)
        ));
        assert_eq!(child.cause(), cause);
    }
}

#[tokio::test(start_paused = true)]
async fn cancelled_in_select_is_cancel_safe() {
    let scope = CancelScope::new();
    // Losing the race many times leaves nothing behind and loses nothing.
    for _ in 0..100 {
        tokio::select! {
            _ = scope.cancelled() => panic!("not cancelled yet"),
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    let waiter = tokio::spawn(scope.clone().cancelled_owned());
    tokio::time::sleep(Duration::from_millis(5)).await;
    scope.cancel(CancelCause::User);
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("woken")
        .unwrap();
}

#[test]
fn debug_output_is_stable() {
    let scope = CancelScope::new();
    scope.cancel(CancelCause::Shutdown);
    assert_eq!(
        format!("{scope:?}"),
        "CancelScope { cancelled: true, cause: Some(Shutdown) }"
    );
}
