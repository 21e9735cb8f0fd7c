use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::cancel::{CancelCause, CancelScope};

struct CountWakes(AtomicUsize);

impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountWakes>, Waker) {
    let count = Arc::new(CountWakes(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

#[test]
fn many_short_lived_children_do_not_grow_the_tree() {
    let root = CancelScope::new();
    assert_eq!(root.handle.tree_len(), 1);
    for _ in 0..10_000 {
        let child = root.child();
        let grandchild = child.child();
        assert_eq!(root.handle.tree_len(), 3);
        drop(child);
        drop(grandchild);
    }
    assert_eq!(root.handle.tree_len(), 1);
    root.handle.check_invariants();
}

#[test]
fn dropping_the_middle_scope_reparents_its_children() {
    let root = CancelScope::new();
    let middle = root.child();
    let leaves: Vec<_> = (0..5).map(|_| middle.child()).collect();
    let sibling = root.child();
    drop(middle);
    assert_eq!(root.handle.tree_len(), 7);
    root.handle.check_invariants();
    root.cancel(CancelCause::Shutdown);
    root.handle.check_invariants();
    for leaf in &leaves {
        assert_eq!(leaf.cause(), Some(CancelCause::Shutdown));
    }
    assert!(sibling.is_cancelled());
    drop(leaves);
    drop(sibling);
    assert_eq!(root.handle.tree_len(), 1);
}

#[test]
fn dropping_the_root_leaves_children_as_independent_roots() {
    let root = CancelScope::new();
    let a = root.child();
    let b = a.child();
    drop(root);
    assert_eq!(a.handle.tree_len(), 2);
    a.handle.check_invariants();
    a.cancel(CancelCause::User);
    assert_eq!(b.cause(), Some(CancelCause::User));
}

#[test]
fn clones_share_one_node_and_linger_until_the_last_drops() {
    let root = CancelScope::new();
    let child = root.child();
    let clone = child.clone();
    assert!(clone.same_scope(&child));
    assert!(!clone.same_scope(&root));
    drop(child);
    assert_eq!(root.handle.tree_len(), 2);
    drop(clone);
    assert_eq!(root.handle.tree_len(), 1);
}

#[test]
fn cancel_marks_exactly_the_subtree() {
    let root = CancelScope::new();
    let a = root.child();
    let a1 = a.child();
    let a2 = a.child();
    let b = root.child();
    a.cancel(CancelCause::DeadlineExceeded);
    root.handle.check_invariants();
    assert_eq!(
        [&root, &a, &a1, &a2, &b].map(CancelScope::is_cancelled),
        [false, true, true, true, false]
    );
    assert_eq!(a2.cause(), Some(CancelCause::DeadlineExceeded));
    assert_eq!(root.cause(), None);
    assert_eq!(b.cause(), None);
}

#[test]
fn waiting_futures_release_their_slots() {
    let scope = CancelScope::new();
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    {
        let mut wait = pin!(scope.cancelled());
        for _ in 0..100 {
            assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        }
        assert_eq!(scope.handle.waiter_slots(), 1, "re-polling reuses the slot");
        let mut other = pin!(scope.clone().cancelled_owned());
        assert_eq!(other.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(scope.handle.waiter_slots(), 2);
    }
    assert_eq!(scope.handle.waiter_slots(), 0, "dropped futures unregister");

    let mut wait = pin!(scope.cancelled());
    assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
    scope.cancel(CancelCause::User);
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "cancel wakes the waiter");
    assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(()));
    assert_eq!(
        scope.handle.waiter_slots(),
        0,
        "completion releases the slot"
    );
}

#[test]
fn child_wakers_are_woken_by_an_ancestor_cancel() {
    let root = CancelScope::new();
    let leaf = root.child().child();
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut wait = pin!(leaf.cancelled());
    assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
    root.cancel(CancelCause::Shutdown);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(()));
}

#[test]
fn guard_cancels_on_drop_unless_disarmed() {
    let scope = CancelScope::new();
    let guard = scope.clone().drop_guard();
    assert!(guard.scope().same_scope(&scope));
    let back = guard.disarm();
    assert!(!scope.is_cancelled());
    let guard = back.drop_guard();
    assert!(!scope.is_cancelled());
    drop(guard);
    assert_eq!(scope.cause(), Some(CancelCause::OwnerDropped));
}

#[test]
fn debug_shows_state() {
    let scope = CancelScope::new();
    assert_eq!(
        format!("{scope:?}"),
        "CancelScope { cancelled: false, cause: None }"
    );
    scope.cancel(CancelCause::User);
    assert_eq!(
        format!("{scope:?}"),
        "CancelScope { cancelled: true, cause: Some(User) }"
    );
}
