//! The shared structure behind [`CancelScope`](super::CancelScope).
//!
//! One [`Tree`] per root scope holds the parent/child links of every node
//! under one mutex; each [`Node`] holds its own cancellation state (cause and
//! parked wakers) under a second, per-node mutex. A [`Handle`] is one node's
//! membership in the tree: scopes share it through an `Arc`, so cloning a
//! scope takes no lock, and dropping the last clone unlinks the node.
//!
//! Why one structural lock per tree rather than one per node (tokio-util's
//! choice): structural changes (child, drop, cancel) are rare next to the
//! checks a stage makes (`is_cancelled` is one atomic load; waiting locks
//! only its own node), and a single lock makes re-parenting and cancellation
//! walks obviously atomic with no lock-ordering between nodes. The price is
//! that structural changes of unrelated subtrees of the same root serialise,
//! each for O(children of the node) or, for `cancel`, O(subtree).
//!
//! # Invariants
//!
//! Under the tree lock, for every linked node `n`:
//!
//! 1. `n.parent == Some(p)` if and only if `p.children[n.index_in_parent] == n`
//!    (parent and child links agree; `index_in_parent` is kept exact across
//!    `swap_remove`).
//! 2. Downward closure: if `n` is cancelled, every descendant of `n` is
//!    cancelled. `child()` of a cancelled node is born cancelled, `cancel`
//!    walks the whole subtree while holding the tree lock, and re-parenting
//!    (below) only moves a node under an ancestor of its old parent.
//! 3. A node's cause, once set, never changes (the first cause wins), and the
//!    `cancelled` flag is set after the cause, under the node lock.
//! 4. A node is linked while at least one scope refers to it. When the last
//!    one drops, the node is unlinked and its children are re-parented to its
//!    parent (or become roots), so they are still cancelled by their nearest
//!    surviving ancestor and a long-lived parent does not accumulate dead
//!    children.
//! 5. Downward closure holds for lock-free readers too: `cancel` sets the
//!    `cancelled` flags of a subtree deepest first (each node after all of
//!    its descendants), with `Release` stores, so a reader whose `Acquire`
//!    load finds a node cancelled also finds each of its descendants
//!    cancelled. The pipeline relies on this: its watcher sees the root
//!    cancelled and tells each stage once to look at its own (child) scope,
//!    and a stage that looked too early would park with nobody left to wake
//!    it.
//!
//! # Lock order
//!
//! Tree lock, then at most one node lock at a time. Nothing takes the tree
//! lock while holding a node lock, and no lock is held while a waker is
//! woken.

use std::collections::HashMap;
use std::task::{Context, Poll};

use super::waiters::{wake_all, Waiters};
use super::CancelCause;
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::{lock, Arc, Mutex};

/// The links of one cancellation tree.
#[derive(Debug)]
pub(crate) struct Tree {
    links: Mutex<Links>,
}

#[derive(Debug)]
struct Links {
    nodes: HashMap<u64, Link>,
    /// Ids are never reused, so a stale id can never name another node.
    next_id: u64,
}

#[derive(Debug)]
struct Link {
    parent: Option<u64>,
    index_in_parent: usize,
    children: Vec<u64>,
    node: Arc<Node>,
}

/// One node's cancellation state.
#[derive(Debug)]
pub(crate) struct Node {
    /// Mirrors `state.cause.is_some()`, for lock-free checks.
    cancelled: AtomicBool,
    state: Mutex<NodeState>,
}

#[derive(Debug)]
struct NodeState {
    cause: Option<CancelCause>,
    waiters: Waiters,
}

impl Node {
    fn new(cause: Option<CancelCause>) -> Node {
        Node {
            cancelled: AtomicBool::new(cause.is_some()),
            state: Mutex::new(NodeState {
                cause,
                waiters: Waiters::new(),
            }),
        }
    }
}

/// A node's membership in its tree; shared by all clones of one scope.
#[derive(Debug)]
pub(crate) struct Handle {
    tree: Arc<Tree>,
    node: Arc<Node>,
    id: u64,
}

impl Handle {
    /// A new root node in a new tree.
    pub(crate) fn new_root() -> Handle {
        let node = Arc::new(Node::new(None));
        let mut nodes = HashMap::new();
        nodes.insert(
            0,
            Link {
                parent: None,
                index_in_parent: 0,
                children: Vec::new(),
                node: node.clone(),
            },
        );
        let tree = Arc::new(Tree {
            links: Mutex::new(Links { nodes, next_id: 1 }),
        });
        Handle { tree, node, id: 0 }
    }

    /// A new child of this node, born cancelled (with this node's cause) if
    /// this node already is.
    pub(crate) fn child(&self) -> Handle {
        let mut links = lock(&self.tree.links);
        // Read under the tree lock so that a concurrent `cancel`, which holds
        // it for its whole walk, is either entirely before (we inherit its
        // cause) or entirely after (it finds the new child linked).
        let inherited = lock(&self.node.state).cause.clone();
        let node = Arc::new(Node::new(inherited));
        let id = links.next_id;
        links.next_id += 1;
        let mut link = Link {
            parent: None,
            index_in_parent: 0,
            children: Vec::new(),
            node: node.clone(),
        };
        // `self` is alive, so it is linked (invariant 4); the `if let` only
        // keeps a broken invariant from turning into a panic.
        if let Some(parent) = links.nodes.get_mut(&self.id) {
            link.parent = Some(self.id);
            link.index_in_parent = parent.children.len();
            parent.children.push(id);
        }
        links.nodes.insert(id, link);
        drop(links);
        Handle {
            tree: self.tree.clone(),
            node,
            id,
        }
    }

    /// Cancels this node and every descendant not yet cancelled, with `cause`.
    ///
    /// The nodes are marked deepest first (invariant 5): whoever sees this
    /// node's flag set, without any lock, already sees every descendant's.
    pub(crate) fn cancel(&self, cause: CancelCause) {
        if self.is_cancelled() {
            return;
        }
        let mut wakers = Vec::new();
        {
            let links = lock(&self.tree.links);
            // Pre-order: every node comes before its descendants. A node
            // already cancelled, by itself or an ancestor, keeps its own
            // cause, and by invariant 2 so does its whole subtree: skip it.
            let mut order = Vec::new();
            let mut stack = vec![self.id];
            while let Some(id) = stack.pop() {
                let Some(link) = links.nodes.get(&id) else {
                    continue;
                };
                if lock(&link.node.state).cause.is_some() {
                    continue;
                }
                order.push(&link.node);
                stack.extend_from_slice(&link.children);
            }
            // Reversed pre-order marks every child before its parent.
            for node in order.into_iter().rev() {
                let mut state = lock(&node.state);
                state.cause = Some(cause.clone());
                node.cancelled.store(true, Ordering::Release);
                state.waiters.take_all(&mut wakers);
            }
        }
        wake_all(wakers);
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.node.cancelled.load(Ordering::Acquire)
    }

    pub(crate) fn cause(&self) -> Option<CancelCause> {
        lock(&self.node.state).cause.clone()
    }

    /// Ready once cancelled; otherwise parks `cx`'s waker in `slot`.
    ///
    /// The check and the parking happen under the node lock, and `cancel`
    /// sets the cause and takes the wakers under the same lock, so a wake-up
    /// cannot fall between them.
    pub(crate) fn poll_cancelled(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<usize>,
    ) -> Poll<()> {
        if self.is_cancelled() {
            self.unpark(slot);
            return Poll::Ready(());
        }
        let mut state = lock(&self.node.state);
        if state.cause.is_some() {
            state.waiters.remove(slot);
            return Poll::Ready(());
        }
        state.waiters.register(slot, cx.waker());
        Poll::Pending
    }

    /// Releases a waiting future's slot (on drop or completion).
    pub(crate) fn unpark(&self, slot: &mut Option<usize>) {
        if slot.is_some() {
            lock(&self.node.state).waiters.remove(slot);
        }
    }

    /// Whether two handles are the same node.
    pub(crate) fn same_node(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
    }

    /// Linked nodes in this node's tree; for leak tests.
    #[cfg(test)]
    pub(crate) fn tree_len(&self) -> usize {
        lock(&self.tree.links).nodes.len()
    }

    /// Number of futures holding a wait slot on this node; for leak tests.
    #[cfg(test)]
    pub(crate) fn waiter_slots(&self) -> usize {
        lock(&self.node.state).waiters.owned()
    }

    /// Checks invariants 1 and 2 over the whole tree.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let links = lock(&self.tree.links);
        for (&id, link) in &links.nodes {
            if let Some(parent) = link.parent {
                let p = &links.nodes[&parent];
                assert_eq!(p.children[link.index_in_parent], id, "links disagree");
            }
            let cancelled = lock(&link.node.state).cause.is_some();
            assert_eq!(cancelled, link.node.cancelled.load(Ordering::Acquire));
            for &child in &link.children {
                let c = &links.nodes[&child];
                assert_eq!(c.parent, Some(id), "child does not point back");
                if cancelled {
                    assert!(
                        lock(&c.node.state).cause.is_some(),
                        "a cancelled node has a live child"
                    );
                }
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let removed = {
            let mut guard = lock(&self.tree.links);
            let links = &mut *guard;
            let Some(gone) = links.nodes.remove(&self.id) else {
                return;
            };
            let idx = gone.index_in_parent;
            let parent_id = gone.parent.filter(|p| {
                links
                    .nodes
                    .get(p)
                    .is_some_and(|parent| parent.children.get(idx) == Some(&self.id))
            });
            if let Some(parent_id) = parent_id {
                if let Some(parent) = links.nodes.get_mut(&parent_id) {
                    parent.children.swap_remove(idx);
                    let moved = parent.children.get(idx).copied();
                    let base = parent.children.len();
                    parent.children.extend_from_slice(&gone.children);
                    // Keep a long-lived parent's list from holding the peak
                    // capacity of a burst of short-lived children forever.
                    if parent.children.capacity() > 8 * parent.children.len().max(4) {
                        parent.children.shrink_to(2 * parent.children.len());
                    }
                    if let Some(moved) = moved {
                        if let Some(m) = links.nodes.get_mut(&moved) {
                            m.index_in_parent = idx;
                        }
                    }
                    for (offset, child) in gone.children.iter().enumerate() {
                        if let Some(c) = links.nodes.get_mut(child) {
                            c.parent = Some(parent_id);
                            c.index_in_parent = base + offset;
                        }
                    }
                }
            } else {
                for child in &gone.children {
                    if let Some(c) = links.nodes.get_mut(child) {
                        c.parent = None;
                        c.index_in_parent = 0;
                    }
                }
            }
            gone
        };
        // The node (and any waker left in it) is dropped outside the lock.
        drop(removed);
    }
}
