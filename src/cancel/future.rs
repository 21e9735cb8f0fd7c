//! The futures returned by [`CancelScope::cancelled`] and
//! [`CancelScope::cancelled_owned`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::CancelScope;

/// Completes when its [`CancelScope`] is cancelled; returned by
/// [`CancelScope::cancelled`].
///
/// # Cancel safety
///
/// Dropping it before completion unregisters its waker; nothing is lost.
#[must_use = "futures do nothing unless polled"]
pub struct WaitForCancellation<'a> {
    scope: &'a CancelScope,
    slot: Option<usize>,
}

impl<'a> WaitForCancellation<'a> {
    pub(super) fn new(scope: &'a CancelScope) -> Self {
        WaitForCancellation { scope, slot: None }
    }
}

impl Future for WaitForCancellation<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.scope.handle.poll_cancelled(cx, &mut this.slot)
    }
}

impl Drop for WaitForCancellation<'_> {
    fn drop(&mut self) {
        self.scope.handle.unpark(&mut self.slot);
    }
}

impl fmt::Debug for WaitForCancellation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellation")
            .field("scope", self.scope)
            .finish()
    }
}

/// Completes when its [`CancelScope`] is cancelled; returned by
/// [`CancelScope::cancelled_owned`]. Owns a clone of the scope, so it is
/// `'static`.
///
/// # Cancel safety
///
/// Dropping it before completion unregisters its waker; nothing is lost.
#[must_use = "futures do nothing unless polled"]
pub struct WaitForCancellationOwned {
    scope: CancelScope,
    slot: Option<usize>,
}

impl WaitForCancellationOwned {
    pub(super) fn new(scope: CancelScope) -> Self {
        WaitForCancellationOwned { scope, slot: None }
    }
}

impl Future for WaitForCancellationOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.scope.handle.poll_cancelled(cx, &mut this.slot)
    }
}

impl Drop for WaitForCancellationOwned {
    fn drop(&mut self) {
        self.scope.handle.unpark(&mut self.slot);
    }
}

impl fmt::Debug for WaitForCancellationOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellationOwned")
            .field("scope", &self.scope)
            .finish()
    }
}
