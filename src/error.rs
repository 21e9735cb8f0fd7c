//! Errors: precise leaves, and one opaque [`PipelineError`] for a run.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::demand::DemandLimitsError;
use crate::dispatcher::DispatchError;
use crate::pipeline::Report;

/// The error type user stage callbacks return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error a stage failed with, kept as the stage returned it.
///
/// It is the error of [`Status::Failed`](crate::Status::Failed): the value
/// the handler returned (boxed into a [`BoxError`]), shared (an `Arc`, so a
/// [`Report`] stays `Clone`), with its [`source`](Error::source) chain. A
/// panic in a handler becomes a failure whose message contains the panic's
/// text ([`is_panic`](Self::is_panic)). Failures the engine makes itself (an
/// idle timeout, a factory that panicked) carry a message only.
///
/// Two failures are equal when their messages are: the error types behind
/// them need not be `PartialEq`.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, stage, Pipeline, Restart, Status, Subscribe};
///
/// #[derive(Debug)]
/// struct Rejected(u32);
/// impl std::fmt::Display for Rejected {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "event {} rejected", self.0)
///     }
/// }
/// impl std::error::Error for Rejected {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..10u32));
/// let checked = p
///     .processor("check", stage::try_map(|x: u32| if x == 3 { Err(Rejected(x)) } else { Ok(x) }))
///     .restart(Restart::Temporary)
///     .subscribe(&n, Subscribe::default());
/// p.consumer("sink", sink::drain()).subscribe(&checked, Subscribe::default());
/// let err = p.spawn().unwrap().join().await.unwrap_err();
/// let Status::Failed { stage, error } = &err.report().status else { panic!() };
/// assert_eq!(stage, "check");
/// assert_eq!(error.downcast_ref::<Rejected>().unwrap().0, 3);
/// assert_eq!(error.to_string(), "event 3 rejected");
/// # }
/// ```
#[derive(Clone)]
pub struct StageFailure {
    error: Arc<dyn Error + Send + Sync + 'static>,
}

// A report (and so a failure) stays usable across `catch_unwind`, as it was
// when failures were strings: the engine only reads the error, through a
// shared reference, and `UnwindSafe` is advisory (std's `Mutex` makes the
// same promise). A user error with interior mutability it changes in
// `Display` is the only case this glosses over.
impl std::panic::UnwindSafe for StageFailure {}
impl std::panic::RefUnwindSafe for StageFailure {}

/// A panic caught in a stage handler or factory.
#[derive(Debug)]
struct Panicked(String);

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Panicked {}

/// A failure the engine describes itself (no user error behind it).
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

impl StageFailure {
    /// Wraps the error a handler returned.
    pub fn new(error: BoxError) -> StageFailure {
        StageFailure {
            error: Arc::from(error),
        }
    }

    /// A failure described by the engine, with no error value behind it.
    pub(crate) fn message(message: impl Into<String>) -> StageFailure {
        StageFailure {
            error: Arc::new(Message(message.into())),
        }
    }

    /// A caught panic; `what` is prefixed to the message (`factory `).
    pub(crate) fn panic(what: &str, payload: &(dyn std::any::Any + Send)) -> StageFailure {
        let text = if let Some(s) = payload.downcast_ref::<&str>() {
            format!("{what}panicked: {s}")
        } else if let Some(s) = payload.downcast_ref::<String>() {
            format!("{what}panicked: {s}")
        } else {
            format!("{what}panicked")
        };
        StageFailure {
            error: Arc::new(Panicked(text)),
        }
    }

    /// The error the stage returned, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.error.downcast_ref::<E>()
    }

    /// Whether the stage panicked rather than returned an error.
    pub fn is_panic(&self) -> bool {
        self.error.is::<Panicked>()
    }

    /// The error itself.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The error and its [`source`](Error::source)s, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn Error + 'static)> {
        let first: &(dyn Error + 'static) = &*self.error;
        std::iter::successors(Some(first), |e: &&(dyn Error + 'static)| (*e).source())
    }
}

impl From<BoxError> for StageFailure {
    fn from(error: BoxError) -> Self {
        StageFailure::new(error)
    }
}

/// A failure that is only a message (to build a [`Status`](crate::Status)
/// in a test, say).
impl From<String> for StageFailure {
    fn from(message: String) -> Self {
        StageFailure::message(message)
    }
}

/// A failure that is only a message.
impl From<&str> for StageFailure {
    fn from(message: &str) -> Self {
        StageFailure::message(message)
    }
}

impl fmt::Display for StageFailure {
    /// The error's message; with `{:#}`, its sources too (`: `-separated).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if f.alternate() {
            for e in self.chain().skip(1) {
                write!(f, ": {e}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for StageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StageFailure")
            .field(&format!("{self:#}"))
            .finish()
    }
}

impl Error for StageFailure {
    // Transparent: the stage's error is this failure, so its source is the
    // error's source (a chain printer does not see the message twice).
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

impl PartialEq for StageFailure {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for StageFailure {}

/// A pipeline that cannot be built. Every variant names the stage at fault.
///
/// Its `Debug` is its message, so that `main` returning `Result<_,
/// BuildError>` (or `Box<dyn Error>`) prints ``Error: two stages are named
/// `square` ``: match on the variants for the structure.
///
/// # Example
///
/// ```
/// use demandflow::{source, sink, BuildError, Pipeline, Subscribe};
///
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..10u64));
/// p.consumer("sum", sink::for_each(|_: u64| {}))
///     .subscribe(&n, Subscribe::max_demand(0));
/// let err = p.validate().unwrap_err();
/// assert!(matches!(err, BuildError::BadDemand { .. }));
/// assert_eq!(err.to_string(), "stage `sum`: subscription to `numbers`: max_demand must be at least 1");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The pipeline has no stages.
    Empty,
    /// Two stages share a name.
    DuplicateName(String),
    /// A stage reference from another pipeline was used.
    UnknownStage {
        /// The stage that subscribed.
        stage: String,
        /// The foreign stage's name.
        upstream: String,
    },
    /// A processor or consumer subscribes to nothing.
    NotFed(String),
    /// A producer or processor has no subscriber: its events would go nowhere.
    NoSubscribers(String),
    /// `max_demand` / `min_demand` out of range.
    BadDemand {
        /// The subscribing stage.
        stage: String,
        /// The upstream stage.
        upstream: String,
        /// What is wrong.
        error: DemandLimitsError,
    },
    /// The dispatcher refused a subscription (bad or taken partition, ...).
    Dispatch {
        /// The upstream stage whose dispatcher refused.
        stage: String,
        /// The subscribing stage.
        subscriber: String,
        /// What is wrong.
        error: DispatchError,
    },
    /// A partition of a partition dispatcher has no subscriber: its events
    /// would pile up.
    UncoveredPartition {
        /// The producing stage.
        stage: String,
        /// The partition nobody takes.
        partition: usize,
    },
    /// The subscription graph has a cycle through this stage.
    Cycle(String),
    /// The concurrency of a stage must be at least 1.
    ZeroConcurrency(String),
    /// No tokio runtime is running on this thread.
    NoRuntime,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Empty => write!(f, "the pipeline has no stages"),
            BuildError::DuplicateName(n) => write!(f, "two stages are named `{n}`"),
            BuildError::UnknownStage { stage, upstream } => write!(
                f,
                "stage `{stage}`: subscribes to `{upstream}`, a stage of another pipeline"
            ),
            BuildError::NotFed(n) => {
                write!(f, "stage `{n}`: subscribes to no stage, nothing feeds it")
            }
            BuildError::NoSubscribers(n) => {
                write!(
                    f,
                    "stage `{n}`: has no subscriber, its events would go nowhere"
                )
            }
            BuildError::BadDemand {
                stage,
                upstream,
                error,
            } => write!(f, "stage `{stage}`: subscription to `{upstream}`: {error}"),
            BuildError::Dispatch {
                stage,
                subscriber,
                error,
            } => write!(
                f,
                "stage `{stage}`: cannot take subscriber `{subscriber}`: {error}"
            ),
            BuildError::UncoveredPartition { stage, partition } => write!(
                f,
                "stage `{stage}`: partition {partition} has no subscriber, its events would pile up"
            ),
            BuildError::Cycle(n) => write!(f, "stage `{n}`: is part of a subscription cycle"),
            BuildError::ZeroConcurrency(n) => {
                write!(f, "stage `{n}`: concurrency must be at least 1")
            }
            BuildError::NoRuntime => write!(
                f,
                "no tokio runtime is running: spawn a pipeline from within one"
            ),
        }
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for BuildError {}

/// `ask(0)` or an ask outside a manual subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AskError {
    /// Asking for zero events is a protocol error (Reactive Streams 3.9).
    Zero,
    /// The stage has no manual-demand subscription to ask on.
    NotManual,
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Zero => write!(
                f,
                "asked for zero events: a request must be positive (Reactive Streams rule 3.9)"
            ),
            AskError::NotManual => write!(f, "the stage has no manual-demand subscription"),
        }
    }
}

impl std::error::Error for AskError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cancelled,
    DeadlineExceeded,
    StageFailed,
}

/// Why a pipeline run did not complete normally. The run's ledger stays
/// available through [`PipelineError::report`].
///
/// Its `Display` text is for people and may change; match on the `is_*`
/// predicates or on [`Report::status`] instead.
pub struct PipelineError {
    kind: Kind,
    report: Box<Report>,
}

impl PipelineError {
    pub(crate) fn from_report(report: Report) -> Option<PipelineError> {
        use crate::pipeline::Status;
        let kind = match report.status {
            Status::Completed => return None,
            Status::Cancelled(_) => Kind::Cancelled,
            Status::DeadlineExceeded => Kind::DeadlineExceeded,
            Status::Failed { .. } => Kind::StageFailed,
        };
        Some(PipelineError {
            kind,
            report: Box::new(report),
        })
    }

    /// Cancelled by the user, a dropped owner or a shutdown.
    pub fn is_cancelled(&self) -> bool {
        self.kind == Kind::Cancelled
    }

    /// The deadline passed.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.kind == Kind::DeadlineExceeded
    }

    /// A stage failed beyond its restart policy.
    pub fn is_stage_failed(&self) -> bool {
        self.kind == Kind::StageFailed
    }

    /// The run's ledger.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The run's ledger, by value.
    pub fn into_report(self) -> Report {
        *self.report
    }
}

impl fmt::Debug for PipelineError {
    /// The message and its causes, one per line (what `main` returning
    /// `Result<(), PipelineError>` or `Box<dyn Error>` prints on failure).
    /// The structure is in [`report`](Self::report).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut cause = self.source();
        while let Some(e) = cause {
            write!(f, "\n  caused by: {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Display for PipelineError {
    /// `pipeline cancelled by the user`, `pipeline failed: stage `parse`:
    /// <its error>`... The failed stage's error's own sources are this
    /// error's [`source`](Error::source) chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipeline {}", self.report.status)
    }
}

impl Error for PipelineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        // The stage's error is already in the message: its causes follow.
        self.report.status.failure().and_then(|e| e.source())
    }
}

/// A subscription to a running pipeline that was refused
/// ([`PipelineHandle::consumer`](crate::PipelineHandle::consumer),
/// [`PipelineHandle::processor`](crate::PipelineHandle::processor)).
/// Every variant names the new stage and the upstream it asked for.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Pipeline, Subscribe, SubscribeError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..10u64));
/// p.consumer("sum", sink::drain()).subscribe(&n, Subscribe::default());
/// let run = p.spawn().unwrap();
/// // `numbers` was not built with `late_subscribers`.
/// let err = run.consumer("late", sink::drain()).subscribe(&n, Subscribe::default()).unwrap_err();
/// assert!(matches!(err, SubscribeError::NotAccepting { .. }));
/// # }
/// ```
///
/// Its `Debug` is its message (as [`BuildError`]'s).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The stage reference belongs to another pipeline.
    UnknownStage {
        /// The new stage.
        stage: String,
        /// The foreign stage's name.
        upstream: String,
    },
    /// The upstream was not built with `late_subscribers`.
    NotAccepting {
        /// The new stage.
        stage: String,
        /// The upstream.
        upstream: String,
    },
    /// The upstream, or the whole pipeline, has ended or been cancelled.
    Ended {
        /// The new stage.
        stage: String,
        /// The upstream.
        upstream: String,
    },
    /// `max_demand` / `min_demand` out of range.
    BadDemand {
        /// The new stage.
        stage: String,
        /// The upstream.
        upstream: String,
        /// What is wrong.
        error: DemandLimitsError,
    },
    /// The upstream's dispatcher refused the subscription (a partition that
    /// is taken or out of range).
    Dispatch {
        /// The new stage.
        stage: String,
        /// The upstream.
        upstream: String,
        /// What is wrong.
        error: DispatchError,
    },
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::UnknownStage { stage, upstream } => write!(
                f,
                "stage `{stage}`: `{upstream}` belongs to another pipeline"
            ),
            SubscribeError::NotAccepting { stage, upstream } => write!(
                f,
                "stage `{stage}`: `{upstream}` does not accept subscribers while running \
                 (build it with `late_subscribers`)"
            ),
            SubscribeError::Ended { stage, upstream } => {
                write!(f, "stage `{stage}`: `{upstream}` has ended")
            }
            SubscribeError::BadDemand {
                stage,
                upstream,
                error,
            } => write!(f, "stage `{stage}`: subscription to `{upstream}`: {error}"),
            SubscribeError::Dispatch {
                stage,
                upstream,
                error,
            } => write!(f, "stage `{stage}`: subscription to `{upstream}`: {error}"),
        }
    }
}

impl fmt::Debug for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for SubscribeError {}
