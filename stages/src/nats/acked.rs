//! Acknowledging after the handler: [`Acked`] and [`term_dead_letters`].

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use demandflow::{BoxError, Consumer, Context, DeadLetter};
use futures::FutureExt;

use super::{Ack, Acknowledged};

/// A [`Consumer`] wrapper that settles each message of a batch with
/// JetStream according to how its inner consumer fared:
///
/// * `Ok` — every message of the batch is acked, then the connection is
///   flushed (or, with [`Acked::confirm`], each ack is confirmed by the
///   server) before `consume` returns, so the next batch is asked for only
///   once the acks are out.
/// * `Err` or a panic — nothing is acked. Each message is nacked with a
///   delay from [`Acked::nak_backoff`] (growing with the failures counted on
///   its handle) and the error or panic goes on to the engine, which hands
///   the same batch to the restarted consumer (the same handles, so a later
///   success acks them and the pending redelivery is cancelled). If this
///   process dies meanwhile, JetStream redelivers the batch after the delay
///   instead of after the whole `ack_wait`.
/// * Dead-lettered (the engine gave up after `max_attempts`) — install
///   [`term_dead_letters`] as the pipeline's dead-letter handler so that the
///   messages are terminated and not redelivered.
///
/// # Example
///
/// ```
/// use demandflow::{BoxError, Consumer, Context};
/// use demandflow_stages::nats::{Acked, JetStreamMessage};
///
/// #[derive(Clone)]
/// struct Store;
///
/// impl Consumer<JetStreamMessage> for Store {
///     async fn consume(&mut self, events: &[JetStreamMessage], _cx: &Context) -> Result<(), BoxError> {
///         for m in events {
///             let _ = std::str::from_utf8(&m.payload)?;
///         }
///         Ok(())
///     }
/// }
///
/// let stage = Acked::new(Store).nak_backoff(
///     std::time::Duration::from_secs(1),
///     std::time::Duration::from_secs(30),
/// );
/// # let _ = stage;
/// ```
#[derive(Debug, Clone)]
pub struct Acked<C> {
    inner: C,
    nak_base: Duration,
    nak_max: Duration,
    confirm: bool,
}

impl<C> Acked<C> {
    /// Wraps `inner`; naks back off from 2 s doubling up to 60 s.
    pub fn new(inner: C) -> Acked<C> {
        Acked {
            inner,
            nak_base: Duration::from_secs(2),
            nak_max: Duration::from_secs(60),
            confirm: false,
        }
    }

    /// The redelivery delay asked for on the `n`-th failure of a message:
    /// `base · 2^(n-1)`, capped at `max`. Keep `base` above the time the
    /// engine takes to restart the stage and retry, or JetStream redelivers
    /// the batch while the retry is still running (a duplicate, never a
    /// loss).
    pub fn nak_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.nak_base = base;
        self.nak_max = max.max(base);
        self
    }

    /// Confirm every ack with the server (one round trip per message, run
    /// concurrently) instead of flushing once per batch. Narrows the window
    /// in which a killed process causes a redelivery of handled messages.
    pub fn confirm(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }

    /// The wrapped consumer.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// Unwraps the inner consumer.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

/// `base · 2^(failures-1)`, capped at `max`.
fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(30);
    base.checked_mul(1u32 << shift).unwrap_or(max).min(max)
}

impl<T, C> Consumer<T> for Acked<C>
where
    T: Acknowledged + Send + Sync + 'static,
    C: Consumer<T>,
{
    async fn consume(&mut self, events: &[T], cx: &Context) -> Result<(), BoxError> {
        let outcome = AssertUnwindSafe(self.inner.consume(events, cx))
            .catch_unwind()
            .await;
        match outcome {
            Ok(Ok(())) => {
                ack_all(events.iter().map(Acknowledged::ack_handle), self.confirm).await;
                Ok(())
            }
            Ok(Err(e)) => {
                nak_all(events, self.nak_base, self.nak_max).await;
                Err(e)
            }
            Err(panic) => {
                nak_all(events, self.nak_base, self.nak_max).await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    async fn finish(&mut self, cx: &Context) -> Result<(), BoxError> {
        self.inner.finish(cx).await
    }
}

/// Acks every handle. A failed ack is logged, not returned: the handler's
/// work is done, and failing the batch would only run it again, while an
/// unacknowledged message is redelivered by JetStream anyway (at least once).
async fn ack_all<'a>(handles: impl Iterator<Item = &'a Ack>, confirm: bool) {
    if confirm {
        let acks: Vec<_> = handles.map(|h| h.ack_confirmed()).collect();
        for r in futures::future::join_all(acks).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "ack not confirmed; JetStream will redeliver");
            }
        }
        return;
    }
    let mut last = None;
    for h in handles {
        if let Err(e) = h.ack().await {
            tracing::warn!(error = %e, "ack not sent; JetStream will redeliver");
        }
        last = Some(h);
    }
    if let Some(h) = last {
        if let Err(e) = h.flush().await {
            tracing::warn!(error = %e, "acks not flushed; JetStream may redeliver");
        }
    }
}

async fn nak_all<T: Acknowledged>(events: &[T], base: Duration, max: Duration) {
    let mut last = None;
    for e in events {
        let h = e.ack_handle();
        let delay = backoff(base, max, h.record_failure());
        if let Err(err) = h.nak(Some(delay)).await {
            tracing::warn!(error = %err, "nak not sent; JetStream redelivers after ack_wait");
        }
        last = Some(h);
    }
    if let Some(h) = last {
        let _ = h.flush().await;
    }
}

/// A dead-letter handler for [`Pipeline::on_dead_letter`] that terminates
/// every message of a dead-lettered batch of `T`, then passes the batch on
/// to `then` (for logging or parking it elsewhere).
///
/// Batches of other event types are passed on untouched. The `+TERM`s are
/// sent from a task on the current tokio runtime, after the naks
/// [`Acked`] already queued, so JetStream ends up with the termination.
///
/// [`Pipeline::on_dead_letter`]: demandflow::Pipeline::on_dead_letter
///
/// # Example
///
/// ```
/// use demandflow::Pipeline;
/// use demandflow_stages::nats::{term_dead_letters, JetStreamMessage};
///
/// let p = Pipeline::new().on_dead_letter(term_dead_letters::<JetStreamMessage>(|dl| {
///     eprintln!("dead letter from {}: {}", dl.stage, dl.error);
/// }));
/// # drop(p);
/// ```
pub fn term_dead_letters<T>(
    then: impl Fn(DeadLetter) + Send + Sync + 'static,
) -> impl Fn(DeadLetter) + Send + Sync + 'static
where
    T: Acknowledged + Send + Sync + 'static,
{
    move |dl: DeadLetter| {
        if let Some(events) = dl.events::<T>() {
            let handles: Vec<Ack> = events.iter().map(|e| e.ack_handle().clone()).collect();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        for h in &handles {
                            if let Err(e) = h.term().await {
                                tracing::warn!(error = %e, "term not sent; JetStream will redeliver the dead letter");
                            }
                        }
                        if let Some(h) = handles.first() {
                            let _ = h.flush().await;
                        }
                    });
                }
                Err(_) => {
                    tracing::warn!("no tokio runtime: dead letters not terminated, JetStream will redeliver them");
                }
            }
        }
        then(dl)
    }
}
