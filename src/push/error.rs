//! The push buffer's errors.

use std::error::Error;
use std::fmt;

/// A push that did not queue its event; the event is handed back.
///
/// Like tokio's `SendError<T>`, it carries the event so that the caller can
/// retry, log or reroute it. Its `Debug` output does not print the event, so
/// it is an [`Error`] for any `T`.
///
/// # Example
///
/// ```
/// use demandflow::push::{self, Overflow, PushConfig};
///
/// let (pusher, _producer) =
///     push::channel::<u32>(PushConfig::default().with_max_queue(1).with_overflow(Overflow::DropNewest))?;
/// pusher.push(1)?;
/// let err = pusher.push(2).unwrap_err();
/// assert!(err.is_overflow());
/// assert_eq!(err.into_inner(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError<T> {
    /// The queue was full and the overflow strategy rejected the event:
    /// [`Overflow::DropNewest`](super::Overflow::DropNewest) (counted in
    /// `dropped_newest`), or [`Overflow::Fail`](super::Overflow::Fail), which
    /// has also failed the stream.
    Overflow(T),
    /// The queue was full under [`Overflow::Block`](super::Overflow::Block)
    /// and the caller used the non-waiting `push`; nothing was counted. Use
    /// `send` to wait for room.
    Full(T),
    /// The stream has ended (closed, cancelled, failed, or every producer
    /// dropped); nothing was counted.
    Closed(T),
}

impl<T> PushError<T> {
    /// The event that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Overflow(e) | PushError::Full(e) | PushError::Closed(e) => e,
        }
    }

    /// Whether the overflow strategy rejected the event.
    pub fn is_overflow(&self) -> bool {
        matches!(self, PushError::Overflow(_))
    }

    /// Whether the queue was full under `Block` (retry with `send`).
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// Whether the stream had already ended.
    pub fn is_closed(&self) -> bool {
        matches!(self, PushError::Closed(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PushError::Overflow(_) => "Overflow",
            PushError::Full(_) => "Full",
            PushError::Closed(_) => "Closed",
        };
        write!(f, "{name}(..)")
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Overflow(_) => "push buffer overflowed; event dropped",
            PushError::Full(_) => "push buffer full",
            PushError::Closed(_) => "push buffer closed",
        })
    }
}

impl<T> Error for PushError<T> {}

/// The stream failed because its queue overflowed under
/// [`Overflow::Fail`](super::Overflow::Fail). The producer returns it (boxed)
/// from `produce`, and [`PushOutcome::Failed`](super::PushOutcome::Failed)
/// carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverflowError {
    pub(super) max_queue: usize,
}

impl OverflowError {
    /// The bound that was exceeded.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }
}

impl fmt::Display for OverflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "push buffer overflowed its bound of {} events",
            self.max_queue
        )
    }
}

impl Error for OverflowError {}

/// A [`PushConfig`](super::PushConfig) that cannot make a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushConfigError {
    /// `max_queue` was 0: such a buffer could hold nothing.
    ZeroMaxQueue,
}

impl fmt::Display for PushConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushConfigError::ZeroMaxQueue => f.write_str("max_queue must be at least 1"),
        }
    }
}

impl Error for PushConfigError {}
