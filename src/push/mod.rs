//! A bounded push buffer: a [`Producer`](crate::Producer) fed by `push`, for
//! sources that cannot be paused (callbacks, websockets, UI events).
//!
//! Demand cannot reach such a source, so the buffer is where backpressure
//! ends: it holds at most `max_queue` events (default 1000) and, when full,
//! applies the [`Overflow`] strategy the user chose. Every event pushed ends
//! in exactly one of these places, all counted in [`PushStats`]:
//!
//! | fate | when |
//! |---|---|
//! | `delivered` | the producer emitted it downstream |
//! | `dropped_oldest` | `DropOldest` made room for a newer event |
//! | `dropped_newest` | `DropNewest` (or `Fail`) refused it; `push` handed it back |
//! | `abandoned` | it was queued when the stream was cancelled or failed |
//! | `queued` | still waiting |
//!
//! so `pushed == delivered + dropped_oldest + dropped_newest + abandoned +
//! queued` holds at every instant, and `queued <= max_queue` (goals G-B1,
//! G-B2; invariant D7). Pushes refused with `Full` (under `Block`) or
//! `Closed` are not counted: the event was never accepted and is handed back.
//!
//! # Ending the stream
//!
//! * [`Pusher::close`] (or dropping every `Pusher`): no more pushes; the
//!   queue is delivered, then the producer returns `Flow::Done` and the
//!   outcome is [`PushOutcome::Completed`].
//! * [`Pusher::cancel`]: ends now; queued events are abandoned (counted),
//!   the producer returns `Flow::Done`, the outcome is
//!   [`PushOutcome::Cancelled`] with the cause. Dropping every
//!   `PushProducer` does the same with `CancelCause::OwnerDropped`.
//! * An overflow under [`Overflow::Fail`]: ends now; queued events are
//!   abandoned, the producer returns an [`OverflowError`], the outcome is
//!   [`PushOutcome::Failed`].
//!
//! The first of these wins. [`Pusher::result`] waits for the outcome with a
//! timeout, so it never blocks forever.
//!
//! # Example
//!
//! ```
//! use demandflow::push::{self, Overflow, PushConfig};
//! use demandflow::{CancelCause, Context, Emitter, Flow, Producer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), demandflow::BoxError> {
//! let config = PushConfig::default()
//!     .with_max_queue(3)
//!     .with_overflow(Overflow::DropOldest);
//! let (pusher, mut producer) = push::channel::<u32>(config)?;
//! for tick in 0..5 {
//!     pusher.push(tick)?; // never refused under DropOldest
//! }
//!
//! let mut out = Emitter::new();
//! let cx = Context::detached("ticks");
//! assert_eq!(producer.produce(10, &mut out, &cx).await?, Flow::Continue);
//! assert_eq!(out.take(), [2, 3, 4], "the newest three are kept");
//!
//! pusher.cancel(CancelCause::User);
//! assert_eq!(producer.produce(10, &mut out, &cx).await?, Flow::Done);
//! let stats = pusher.stats();
//! assert_eq!((stats.pushed, stats.delivered, stats.dropped_oldest), (5, 3, 2));
//! # Ok(())
//! # }
//! ```
//!
//! # Invariants and lock order
//!
//! The queue and its accounting are a pure state machine (`state.rs`, unit-
//! and property-tested against a naive model); `shared.rs` wraps it in one
//! mutex with lists of parked tasks and documents why no wake-up is lost.
//! Both are model-checked with loom (`src/push/tests/`).

use std::fmt;

mod error;
mod producer;
mod pusher;
mod shared;
mod state;

#[cfg(test)]
mod tests;

pub use error::{OverflowError, PushConfigError, PushError};
pub use producer::PushProducer;
pub use pusher::Pusher;

use crate::cancel::CancelCause;
use crate::loom::sync::Arc;

/// What a full push buffer does with one more event (GenStage's
/// `buffer_keep`, goal G-B2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest queued event to make room: keeps the newest
    /// (GenStage's `:last`, its default and ours).
    #[default]
    DropOldest,
    /// Refuse the new event, handing it back in
    /// `Err(PushError::Overflow(event))`: keeps the oldest (GenStage's
    /// `:first`).
    DropNewest,
    /// End the stream with an [`OverflowError`]; queued events are abandoned.
    Fail,
    /// Apply backpressure to the source: [`Pusher::send`] waits for room and
    /// [`Pusher::push`] returns `Err(PushError::Full(event))`.
    Block,
}

/// How to build a push buffer.
///
/// ```
/// use demandflow::push::{Overflow, PushConfig};
///
/// let config = PushConfig::default().with_max_queue(64).with_overflow(Overflow::Block);
/// assert_eq!((config.max_queue, config.overflow), (64, Overflow::Block));
/// assert_eq!(PushConfig::default().max_queue, 1000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushConfig {
    /// The most events the buffer holds (default 1000). Must be at least 1.
    pub max_queue: usize,
    /// What a full buffer does (default [`Overflow::DropOldest`]).
    pub overflow: Overflow,
}

impl PushConfig {
    /// Sets `max_queue`.
    pub fn with_max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// Sets the overflow strategy.
    pub fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            max_queue: 1000,
            overflow: Overflow::default(),
        }
    }
}

/// A snapshot of a push buffer's counters, taken atomically.
///
/// `pushed == delivered + dropped_oldest + dropped_newest + abandoned +
/// queued` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PushStats {
    /// Events waiting in the queue now.
    pub queued: usize,
    /// The queue's bound.
    pub max_queue: usize,
    /// Events accepted for a decision (queued, or dropped by the overflow
    /// strategy). Pushes refused as `Full` or `Closed` are not counted.
    pub pushed: u64,
    /// Events the producer emitted.
    pub delivered: u64,
    /// Events dropped by `DropOldest` to make room.
    pub dropped_oldest: u64,
    /// Events refused on overflow by `DropNewest` or `Fail`.
    pub dropped_newest: u64,
    /// Events that were queued when the stream was cancelled or failed.
    pub abandoned: u64,
}

impl PushStats {
    /// Events dropped by the overflow strategy, oldest and newest together.
    pub fn dropped(&self) -> u64 {
        self.dropped_oldest + self.dropped_newest
    }
}

/// How a push stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Closed, and everything queued was delivered.
    Completed,
    /// Cancelled (by [`Pusher::cancel`], or because every producer was
    /// dropped: `CancelCause::OwnerDropped`).
    Cancelled(CancelCause),
    /// The queue overflowed under [`Overflow::Fail`].
    Failed(OverflowError),
}

impl fmt::Display for PushOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushOutcome::Completed => f.write_str("completed"),
            PushOutcome::Cancelled(cause) => write!(f, "cancelled: {cause}"),
            PushOutcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Makes a push buffer: the [`Pusher`] to feed it and the [`PushProducer`]
/// to put in a pipeline.
///
/// # Errors
///
/// [`PushConfigError::ZeroMaxQueue`] if `config.max_queue` is 0.
///
/// ```
/// use demandflow::push::{self, PushConfig, PushConfigError};
///
/// let err = push::channel::<u8>(PushConfig::default().with_max_queue(0)).unwrap_err();
/// assert_eq!(err, PushConfigError::ZeroMaxQueue);
/// ```
pub fn channel<T>(config: PushConfig) -> Result<(Pusher<T>, PushProducer<T>), PushConfigError> {
    if config.max_queue == 0 {
        return Err(PushConfigError::ZeroMaxQueue);
    }
    let shared = Arc::new(shared::Shared::new(config.max_queue, config.overflow));
    Ok((Pusher::new(shared.clone()), PushProducer::new(shared)))
}
