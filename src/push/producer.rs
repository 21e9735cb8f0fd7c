//! [`PushProducer`]: the stage side of a push buffer.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use super::shared::{Park, Parked, Shared};
use super::state::Pop;
use super::{PushOutcome, PushStats};
use crate::error::BoxError;
use crate::loom::sync::Arc;
use crate::stage::{Context, Emitter, Flow, Producer};

/// A [`Producer`] that emits what was pushed; made by
/// [`channel`](super::channel).
///
/// Cloning shares the same queue, so a restarted instance (built from a
/// clone) continues where the failed one stopped. When the last clone is
/// dropped the stream is cancelled with
/// [`CancelCause::OwnerDropped`](crate::CancelCause::OwnerDropped): queued
/// events are counted as abandoned and pushers get `Closed`.
pub struct PushProducer<T> {
    shared: Arc<Shared<T>>,
    /// Drops already reported to the pipeline's stats (shared by clones,
    /// so a restarted instance does not report them twice).
    reported: Arc<std::sync::atomic::AtomicU64>,
}

impl<T> PushProducer<T> {
    pub(super) fn new(shared: Arc<Shared<T>>) -> Self {
        PushProducer {
            shared,
            reported: Arc::default(),
        }
    }

    /// Counters and queue length, taken atomically.
    pub fn stats(&self) -> PushStats {
        self.shared.stats()
    }

    /// The terminal outcome, if the stream has ended.
    pub fn try_result(&self) -> Option<PushOutcome> {
        self.shared.try_outcome()
    }
}

impl<T: Send + 'static> Producer<T> for PushProducer<T> {
    /// Moves up to `demand` queued events into `out`, oldest first. While
    /// nothing is queued it waits for a push, the end of the stream, or the
    /// cancellation of `cx` (then it returns `Ok(Flow::Continue)` having
    /// emitted nothing).
    ///
    /// Returns `Ok(Flow::Done)` once a closed stream has been drained (with
    /// its last events) or after a cancel, and `Err` holding an
    /// [`OverflowError`](super::OverflowError) once the stream has failed
    /// under [`Overflow::Fail`](super::Overflow::Fail).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: events leave the queue only in the poll that returns
    /// them, so dropping the future loses nothing.
    fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<T>,
        cx: &Context,
    ) -> impl Future<Output = Result<Flow, BoxError>> + Send {
        let shared = &*self.shared;
        let reported = &*self.reported;
        async move {
            // Overflow drops happen in `push`, outside the pipeline: report
            // the new ones to the stage's ledger here.
            let dropped = shared.stats().dropped();
            let before = reported.swap(dropped, std::sync::atomic::Ordering::Relaxed);
            cx.record_dropped(dropped.saturating_sub(before));
            let mut parked = Parked::new(shared, Park::Producer);
            let mut cancelled = pin!(cx.cancelled());
            let pop = poll_fn(|task| {
                if let Poll::Ready(pop) = shared.poll_pop(task, demand, out, &mut parked.slot) {
                    return Poll::Ready(Some(pop));
                }
                // Checked after the queue, so events already queued are
                // handed over even to a cancelled stage.
                match cancelled.as_mut().poll(task) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match pop {
                Some(Pop::Emitted { last: true, .. }) | Some(Pop::Ended) => Ok(Flow::Done),
                Some(Pop::Emitted { last: false, .. }) | Some(Pop::Empty) | None => {
                    Ok(Flow::Continue)
                }
                Some(Pop::Failed(e)) => Err(Box::new(e) as BoxError),
            }
        }
    }
}

impl<T> Clone for PushProducer<T> {
    fn clone(&self) -> Self {
        self.shared.add_producer();
        PushProducer {
            shared: self.shared.clone(),
            reported: self.reported.clone(),
        }
    }
}

impl<T> Drop for PushProducer<T> {
    fn drop(&mut self) {
        self.shared.drop_producer();
    }
}

impl<T> fmt::Debug for PushProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushProducer")
            .field("stats", &self.stats())
            .field("outcome", &self.try_result())
            .finish()
    }
}
