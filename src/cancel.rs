//! The cancellation tree: one scope per pipeline, a child per stage.
//!
//! TEMPORARY implementation over tokio-util; to be replaced by the
//! loom-checked primitive (same API).

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

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

/// A node of the cancellation tree.
#[derive(Debug, Clone)]
pub struct CancelScope {
    token: CancellationToken,
    cause: Arc<OnceLock<CancelCause>>,
    parent: Option<Box<CancelScope>>,
}

impl CancelScope {
    /// A new root scope.
    pub fn new() -> CancelScope {
        CancelScope {
            token: CancellationToken::new(),
            cause: Arc::new(OnceLock::new()),
            parent: None,
        }
    }

    /// A child scope: cancelled with its parent, never cancelling it.
    pub fn child(&self) -> CancelScope {
        CancelScope {
            token: self.token.child_token(),
            cause: Arc::new(OnceLock::new()),
            parent: Some(Box::new(self.clone())),
        }
    }

    /// Cancels this scope and its children. The first cause wins.
    pub fn cancel(&self, cause: CancelCause) {
        let _ = self.cause.set(cause);
        self.token.cancel();
    }

    /// Whether this scope or an ancestor has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The cause, once cancelled: this scope's own, or the ancestor's that
    /// cancelled it.
    pub fn cause(&self) -> Option<CancelCause> {
        if !self.is_cancelled() {
            return None;
        }
        if let Some(c) = self.cause.get() {
            return Some(c.clone());
        }
        self.parent.as_ref().and_then(|p| p.cause())
    }

    /// Completes once cancelled.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}
