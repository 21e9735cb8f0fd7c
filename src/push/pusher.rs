//! [`Pusher`]: the sending side of a push buffer.

use std::fmt;
use std::time::Duration;

use tokio::time::error::Elapsed;

use super::error::PushError;
use super::shared::Shared;
use super::{PushOutcome, PushStats};
use crate::cancel::CancelCause;
use crate::loom::sync::Arc;

/// Feeds events into a push buffer; made by [`channel`](super::channel).
///
/// Cloning makes another handle on the same buffer (several sources may push
/// into one stream). When the last `Pusher` is dropped the stream is closed
/// as by [`Pusher::close`]: what is queued is delivered, then it completes.
///
/// # Example
///
/// ```
/// use demandflow::push::{self, PushConfig, PushOutcome};
/// use demandflow::{Context, Emitter, Flow, Producer};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), demandflow::BoxError> {
/// let (pusher, mut producer) = push::channel::<&str>(PushConfig::default())?;
/// pusher.push("a")?;
/// pusher.push("b")?;
/// pusher.close();
///
/// let mut out = Emitter::new();
/// let flow = producer.produce(10, &mut out, &Context::detached("push")).await?;
/// assert_eq!((out.as_slice(), flow), (&["a", "b"][..], Flow::Done));
/// assert_eq!(pusher.result(Duration::from_secs(1)).await?, PushOutcome::Completed);
/// # Ok(())
/// # }
/// ```
pub struct Pusher<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Pusher<T> {
    pub(super) fn new(shared: Arc<Shared<T>>) -> Self {
        Pusher { shared }
    }

    /// Offers `event` without waiting.
    ///
    /// * `Ok(())`: queued. Under [`Overflow::DropOldest`](super::Overflow::DropOldest)
    ///   a full queue drops its oldest event (counted in `dropped_oldest`) to
    ///   make room.
    /// * `Err(PushError::Overflow(event))`: the queue was full under
    ///   `DropNewest` (counted in `dropped_newest`) or `Fail` (which also
    ///   ends the stream with an [`OverflowError`](super::OverflowError)).
    /// * `Err(PushError::Full(event))`: full under `Block`; use
    ///   [`Pusher::send`] to wait for room.
    /// * `Err(PushError::Closed(event))`: the stream has ended or is closing.
    pub fn push(&self, event: T) -> Result<(), PushError<T>> {
        self.shared.push(event)
    }

    /// Like [`Pusher::push`], but under [`Overflow::Block`](super::Overflow::Block)
    /// waits for room instead of returning `Full`. If the stream ends while
    /// it waits, the event comes back in `Err(PushError::Closed(event))`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops the event unqueued and
    /// uncounted; the buffer is unchanged.
    pub async fn send(&self, event: T) -> Result<(), PushError<T>> {
        self.shared.send(event).await
    }

    /// Stops accepting events: what is queued is still delivered, then the
    /// producer ends normally and the outcome is [`PushOutcome::Completed`].
    /// Does nothing once the stream is closing or has ended.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Ends the stream now with [`PushOutcome::Cancelled`]: the producer's
    /// next call returns `Flow::Done`, queued events are dropped and counted
    /// as `abandoned`, and further pushes return `Closed`. The first terminal
    /// event wins: after a completion or a failure it does nothing.
    pub fn cancel(&self, cause: CancelCause) {
        self.shared.cancel(cause);
    }

    /// Waits up to `timeout` for the stream's terminal outcome.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn result(&self, timeout: Duration) -> Result<PushOutcome, Elapsed> {
        tokio::time::timeout(timeout, self.shared.outcome()).await
    }

    /// The terminal outcome, if the stream has ended.
    pub fn try_result(&self) -> Option<PushOutcome> {
        self.shared.try_outcome()
    }

    /// Counters and queue length, taken atomically.
    pub fn stats(&self) -> PushStats {
        self.shared.stats()
    }
}

impl<T> Clone for Pusher<T> {
    fn clone(&self) -> Self {
        self.shared.add_pusher();
        Pusher {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Pusher<T> {
    fn drop(&mut self) {
        self.shared.drop_pusher();
    }
}

impl<T> fmt::Debug for Pusher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pusher")
            .field("stats", &self.stats())
            .field("outcome", &self.try_result())
            .finish()
    }
}
