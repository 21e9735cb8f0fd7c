//! Errors: precise leaves, and one opaque [`PipelineError`] for a run.

use std::fmt;

use crate::demand::DemandLimitsError;
use crate::dispatcher::DispatchError;
use crate::pipeline::Report;

/// The error type user stage callbacks return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A pipeline that cannot be built. Every variant names the stage at fault.
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineError")
            .field("status", &self.report.status)
            .finish()
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipeline {}", self.report.status)
    }
}

impl std::error::Error for PipelineError {}

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl std::error::Error for SubscribeError {}
