//! The stage contract: [`Producer`], [`Processor`] and [`Consumer`].
//!
//! A stage is a plain Rust value with one async method. The engine owns
//! everything else: subscriptions, demand accounting, buffers, batching,
//! supervision and cancellation. This module imports nothing from the driver,
//! so the contract stays small and readable.
//!
//! # Demand, as a stage sees it
//!
//! * A producer is called with `demand > 0` (never zero, invariant D4) and
//!   may emit *at most* that many events into its [`Emitter`]. It may emit
//!   fewer: the engine keeps the rest of the demand pending and calls again,
//!   so a producer never has to remember unmet demand. A call that emits
//!   nothing means "nothing now": the engine calls again only when new
//!   demand arrives or the producer asks ([`Context::waker`]).
//! * A processor or consumer receives a borrowed batch `&[T]`. The engine
//!   keeps ownership so that the batch can be redelivered to a restarted
//!   instance if the handler fails (invariant D7) without cloning it first.
//!
//! See `docs/protocol.md` for the full protocol.

use std::future::Future;
use tokio::time::Instant;

mod adapters;
mod context;
mod emitter;

pub use adapters::*;
pub use context::{Context, StageWaker};
pub use emitter::Emitter;

use crate::error::BoxError;

/// What a producer says after a call to [`Producer::produce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The producer has more to give; call again while demand is pending.
    /// After a call that emitted nothing, the next call waits for new
    /// demand or the producer's own request ([`Context::waker`]).
    Continue,
    /// The producer is exhausted: the events emitted in this call are its
    /// last, and its subscribers see a normal end after them.
    Done,
}

/// A stage that emits events when asked (GenStage's `:producer`).
///
/// # Example
///
/// ```
/// use demandflow::{BoxError, Context, Emitter, Flow, Producer};
///
/// /// Counts up from zero, forever.
/// #[derive(Clone, Default)]
/// struct Counter(u64);
///
/// impl Producer<u64> for Counter {
///     async fn produce(
///         &mut self,
///         demand: usize,
///         out: &mut Emitter<u64>,
///         _cx: &Context,
///     ) -> Result<Flow, BoxError> {
///         for _ in 0..demand {
///             out.emit(self.0);
///             self.0 += 1;
///         }
///         Ok(Flow::Continue)
///     }
/// }
/// ```
pub trait Producer<T>: Send + 'static {
    /// Emits up to `demand` events into `out`.
    ///
    /// `demand` is never zero. Emitting fewer is fine: the engine calls again
    /// while demand remains, and waits while this future is pending (a
    /// producer with nothing to give awaits its source). Events emitted before
    /// the future first returns `Pending` are delivered before the engine
    /// waits, so an async source never holds back what it already has.
    ///
    /// Returning [`Flow::Continue`] having emitted nothing means "nothing
    /// now, don't call me back at once": the engine calls again only when a
    /// subscriber asks for more, or when the producer asks to be called with
    /// the [`StageWaker`] from [`Context::waker`] (from a timer, another
    /// task, a callback). This is GenStage's rule: `handle_demand` runs when
    /// demand arrives, and a producer with nothing keeps the demand and
    /// emits later. A source that can be awaited is better awaited: then
    /// nothing needs asking.
    ///
    /// Emitting more than `demand` is not a protocol breach that loses data:
    /// the surplus waits in the stage's output buffer (counted in stats) and
    /// the producer is not called again until it has drained.
    ///
    /// Returning `Err` fails the stage; the supervisor restarts it per its
    /// policy. A panic is treated the same way.
    ///
    /// # Cancel safety
    ///
    /// The engine drops this future when the pipeline is cancelled or its
    /// deadline passes; events already emitted into `out` are then counted as
    /// abandoned, never delivered twice.
    fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<T>,
        cx: &Context,
    ) -> impl Future<Output = Result<Flow, BoxError>> + Send;
}

/// A stage that receives batches and emits batches (GenStage's
/// `:producer_consumer`).
///
/// It is handed input only while its own downstream has demand, so it never
/// pulls more than its subscribers can take.
///
/// # Example
///
/// ```
/// use demandflow::{BoxError, Context, Emitter, Processor};
///
/// /// Splits lines into words.
/// #[derive(Clone)]
/// struct Words;
///
/// impl Processor<String, String> for Words {
///     async fn process(
///         &mut self,
///         events: &[String],
///         out: &mut Emitter<String>,
///         _cx: &Context,
///     ) -> Result<(), BoxError> {
///         for line in events {
///             out.extend(line.split_whitespace().map(str::to_owned));
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Processor<In, Out>: Send + 'static {
    /// Handles one batch of input, emitting any number of outputs.
    ///
    /// # Cancel safety
    ///
    /// The engine may drop this future on cancel or deadline. If it fails or
    /// panics, the same batch is handed to the restarted instance.
    fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        cx: &Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Called when an instance starts, before any batch: a stage with
    /// manual demand sends its first asks here. The default does nothing.
    ///
    /// Returning `Err` (or panicking) fails the instance like a failed
    /// batch; it is restarted per its policy and `start` runs again on the
    /// new instance.
    ///
    /// # Cancel safety
    ///
    /// The engine drops this future on cancel, deadline, or when the
    /// supervisor restarts or stops the stage while it is pending. Asks made
    /// through [`Context::ask`] before that point stand (demand belongs to
    /// the subscription, not to the instance).
    fn start(&mut self, cx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }

    /// Called once when every input has ended, to flush held state (a
    /// batcher emits its partial batch here). The default does nothing.
    ///
    /// # Cancel safety
    ///
    /// The engine may drop this future on cancel or deadline; what it had
    /// emitted is then discarded, not delivered. If it fails or panics, the
    /// output it emitted is discarded too, and the restarted instance (if
    /// its policy restarts it) is called with `finish` again: its inputs
    /// have already ended, so it gets no batch first.
    fn finish(
        &mut self,
        out: &mut Emitter<Out>,
        cx: &Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (out, cx);
        async { Ok(()) }
    }

    /// The instant at which [`Processor::on_timer`] should run, if any.
    /// Checked after every call; time-based batching uses it. The default is
    /// `None`.
    fn timer(&self) -> Option<Instant> {
        None
    }

    /// Whether this stage asks for its own demand through
    /// [`Context::ask`] (GenStage's manual demand, as a rate limiter does).
    /// When `true`, all of the stage's subscriptions are manual. The default
    /// is `false`.
    fn manual_demand(&self) -> bool {
        false
    }

    /// Runs when the instant from [`Processor::timer`] has passed.
    ///
    /// It runs only while the stage's downstream has demand and the stage's
    /// output buffer is empty, so a timer never pushes output past the
    /// bound of D2.
    ///
    /// # Cancel safety
    ///
    /// The engine may drop this future on cancel, deadline or a supervisor
    /// restart; what it emitted before then is discarded. If it fails or
    /// panics, its output is discarded and the stage is restarted per its
    /// policy.
    fn on_timer(
        &mut self,
        out: &mut Emitter<Out>,
        cx: &Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (out, cx);
        async { Ok(()) }
    }
}

/// A stage at the end of a pipeline (GenStage's `:consumer`).
///
/// # Example
///
/// ```
/// use demandflow::{BoxError, Consumer, Context};
///
/// #[derive(Clone, Default)]
/// struct Printer;
///
/// impl Consumer<u64> for Printer {
///     async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
///         for e in events {
///             println!("{e}");
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Consumer<T>: Send + 'static {
    /// Handles one batch. The engine asks upstream for more as batches are
    /// handled, following the subscription's `min_demand` / `max_demand`.
    ///
    /// # Cancel safety
    ///
    /// As for [`Processor::process`]: dropped on cancel, redelivered on
    /// failure.
    fn consume(
        &mut self,
        events: &[T],
        cx: &Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Whether this stage asks for its own demand through
    /// [`Context::ask`]; when `true`, all of its subscriptions are manual.
    /// The default is `false`.
    fn manual_demand(&self) -> bool {
        false
    }

    /// Called when an instance starts, before any batch: a consumer with
    /// manual demand sends its first asks here. The default does nothing.
    ///
    /// # Cancel safety
    ///
    /// As for [`Processor::start`]: dropped on cancel, deadline or a
    /// supervisor restart; asks already made stand.
    fn start(&mut self, cx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }

    /// Called once when every input has ended. The default does nothing.
    ///
    /// # Cancel safety
    ///
    /// The engine may drop this future on cancel or deadline. A failure or
    /// panic here fails the stage; a restarted instance is called with
    /// `finish` again (its inputs have already ended, so it gets no batch
    /// first).
    fn finish(&mut self, cx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }
}
