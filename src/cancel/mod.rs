//! The cancellation tree: one scope per pipeline, a child per stage.
//!
//! A [`CancelScope`] is a node of a tree. Cancelling a scope cancels it and
//! every scope below it, and records *why* ([`CancelCause`]), so that a
//! pipeline's report can tell a deadline from a crash from a normal end. The
//! semantics are those of tokio-util's `CancellationToken` (conformance goal
//! G-C4):
//!
//! * cancelling a parent cancels all its descendants; cancelling a child
//!   never cancels its parent;
//! * dropping scopes never cancels anything (use [`CancelScope::drop_guard`]
//!   for that);
//! * a child created from an already-cancelled scope is born cancelled;
//! * `cancel` is idempotent, thread-safe and does not wait for anything but a
//!   short internal lock; the first cause wins;
//! * a child dropped before its parent is removed from the tree, so a
//!   long-lived scope that hands out many short-lived children does not grow.
//!
//! The primitive is our own rather than tokio-util's so that it can carry a
//! cause and be model-checked with loom together with the rest of the
//! crate's shared state. Its structure and locking are described in the
//! `tree` module: one structural lock per tree, one state lock per node,
//! taken in that order, and no lock held while waking a task.
//!
//! # Example
//!
//! ```
//! use demandflow::{CancelCause, CancelScope};
//!
//! let pipeline = CancelScope::new();
//! let stage = pipeline.child();
//! let request = stage.child();
//!
//! stage.cancel(CancelCause::StageFailed("parse".into()));
//! assert!(request.is_cancelled());
//! assert!(!pipeline.is_cancelled(), "a child never cancels its parent");
//! assert_eq!(request.cause(), Some(CancelCause::StageFailed("parse".into())));
//!
//! pipeline.cancel(CancelCause::User);
//! // The first cause wins.
//! assert_eq!(stage.cause(), Some(CancelCause::StageFailed("parse".into())));
//! assert_eq!(pipeline.cause(), Some(CancelCause::User));
//! ```

use std::fmt;

mod future;
mod guard;
mod tree;
pub(crate) mod waiters;

#[cfg(test)]
mod tests;

pub use future::{WaitForCancellation, WaitForCancellationOwned};
pub use guard::CancelGuard;

/// Why a scope was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelCause {
    /// `cancel()` was called on the pipeline handle.
    User,
    /// The pipeline's deadline passed.
    DeadlineExceeded,
    /// The pipeline handle was dropped without being detached.
    OwnerDropped,
    /// A stage failed beyond its restart policy; carries the stage's name.
    StageFailed(String),
    /// A graceful shutdown's grace period ran out.
    Shutdown,
}

impl fmt::Display for CancelCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelCause::User => f.write_str("cancelled by the user"),
            CancelCause::DeadlineExceeded => f.write_str("deadline exceeded"),
            CancelCause::OwnerDropped => f.write_str("owner dropped"),
            CancelCause::StageFailed(stage) => write!(f, "stage `{stage}` failed"),
            CancelCause::Shutdown => f.write_str("shutdown grace period elapsed"),
        }
    }
}

/// A node of the cancellation tree.
///
/// Clones share the node: cancelling any clone cancels them all, and the node
/// leaves the tree when its last clone is dropped. `CancelScope` is `Send`,
/// `Sync` and cheap to clone (one reference count, no lock).
///
/// # Example
///
/// ```
/// use demandflow::{CancelCause, CancelScope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let root = CancelScope::new();
/// let stage = root.child();
/// let worker = tokio::spawn({
///     let stage = stage.clone();
///     async move {
///         stage.cancelled().await;
///         stage.cause()
///     }
/// });
/// root.cancel(CancelCause::DeadlineExceeded);
/// assert_eq!(worker.await.unwrap(), Some(CancelCause::DeadlineExceeded));
/// # }
/// ```
#[derive(Clone)]
pub struct CancelScope {
    handle: crate::loom::sync::Arc<tree::Handle>,
}

impl CancelScope {
    /// A new root scope.
    pub fn new() -> CancelScope {
        CancelScope {
            handle: crate::loom::sync::Arc::new(tree::Handle::new_root()),
        }
    }

    /// A child scope: cancelled with its parent, never cancelling it.
    ///
    /// If this scope is already cancelled, the child is born cancelled with
    /// the same cause.
    pub fn child(&self) -> CancelScope {
        CancelScope {
            handle: crate::loom::sync::Arc::new(self.handle.child()),
        }
    }

    /// Cancels this scope and its descendants. The first cause wins: a scope
    /// already cancelled (by itself or through an ancestor) keeps its cause,
    /// and so do its descendants.
    ///
    /// Idempotent, thread-safe and non-blocking (it takes a short internal
    /// lock, never waits for a task). Waiting tasks are woken before it
    /// returns.
    pub fn cancel(&self, cause: CancelCause) {
        self.handle.cancel(cause);
    }

    /// Whether this scope or an ancestor has been cancelled. One atomic load.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.handle.is_cancelled()
    }

    /// The cause, once cancelled: this scope's own, or the ancestor's that
    /// cancelled it.
    pub fn cause(&self) -> Option<CancelCause> {
        self.handle.cause()
    }

    /// Completes once this scope is cancelled (at once if it already is).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes unregisters it
    /// and loses nothing; a new call sees the same state.
    pub fn cancelled(&self) -> WaitForCancellation<'_> {
        WaitForCancellation::new(self)
    }

    /// Like [`CancelScope::cancelled`], but owns the scope, so the future is
    /// `'static` and can be moved into a spawned task.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`CancelScope::cancelled`].
    pub fn cancelled_owned(self) -> WaitForCancellationOwned {
        WaitForCancellationOwned::new(self)
    }

    /// A guard that cancels this scope with [`CancelCause::OwnerDropped`]
    /// when dropped, unless [`CancelGuard::disarm`]ed first. This is how a
    /// dropped pipeline handle stops its pipeline.
    ///
    /// ```
    /// use demandflow::{CancelCause, CancelScope};
    ///
    /// let scope = CancelScope::new();
    /// let guard = scope.clone().drop_guard();
    /// drop(guard);
    /// assert_eq!(scope.cause(), Some(CancelCause::OwnerDropped));
    /// ```
    pub fn drop_guard(self) -> CancelGuard {
        CancelGuard::new(self)
    }

    /// Whether `self` and `other` are clones of the same scope.
    pub fn same_scope(&self, other: &CancelScope) -> bool {
        self.handle.same_node(&other.handle)
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelScope")
            .field("cancelled", &self.is_cancelled())
            .field("cause", &self.cause())
            .finish()
    }
}
