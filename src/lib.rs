//! demandflow: demand-driven streaming pipelines in the style of Elixir's
//! GenStage.
#![forbid(unsafe_code)]

pub mod cancel;
mod demand;
pub mod dispatcher;
pub mod error;
pub(crate) mod loom;
pub mod pipeline;
pub mod push;
pub(crate) mod runtime;
pub mod sink;
pub mod source;
pub mod stage;
pub mod supervisor;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use cancel::{CancelCause, CancelGuard, CancelScope};
pub use demand::{DemandLimits, DemandLimitsError, SubscriberDemand, DEFAULT_MAX_DEMAND};
pub use error::{AskError, BoxError, BuildError, PipelineError};
pub use pipeline::{
    CancelMode, Dispatch, Pipeline, PipelineHandle, PipelineStream, Report, StageRef, Stats,
    Status, Subscribe,
};
pub use runtime::shared::DeadLetter;
pub use stage::{Consumer, Context, Emitter, Flow, Processor, Producer};
pub use supervisor::{Restart, Strategy};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The narrative guides in docs/ are compiled and run as doc tests, so their
// examples cannot drift from the API (the way timely tests its mdbook).
#[cfg(doctest)]
#[doc = include_str!("../docs/protocol.md")]
struct ProtocolDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/supervision.md")]
struct SupervisionDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/cancellation-and-deadlines.md")]
struct CancellationDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/writing-a-stage.md")]
struct WritingAStageDoctests;
