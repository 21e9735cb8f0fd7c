//! [`CancelGuard`]: cancels its scope when dropped.

use super::{CancelCause, CancelScope};

/// Cancels its scope with [`CancelCause::OwnerDropped`] when dropped, unless
/// disarmed; returned by [`CancelScope::drop_guard`].
///
/// A pipeline handle holds one, so that dropping the handle stops every stage
/// (invariant D5).
///
/// # Example
///
/// ```
/// use demandflow::CancelScope;
///
/// let guard = CancelScope::new().drop_guard();
/// let scope = guard.disarm();
/// assert!(!scope.is_cancelled());
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard at once cancels its scope"]
pub struct CancelGuard {
    scope: CancelScope,
    armed: bool,
}

impl CancelGuard {
    pub(super) fn new(scope: CancelScope) -> Self {
        CancelGuard { scope, armed: true }
    }

    /// The guarded scope.
    pub fn scope(&self) -> &CancelScope {
        &self.scope
    }

    /// Gives the scope back without cancelling it.
    pub fn disarm(mut self) -> CancelScope {
        self.armed = false;
        self.scope.clone()
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.scope.cancel(CancelCause::OwnerDropped);
        }
    }
}
