//! The `tracing` spans of a pipeline and its stages.
//!
//! * `pipeline{pipeline=NAME id=N}`: one per spawned pipeline; the watcher
//!   (deadline, cancellation, stall detection) runs in it.
//! * `stage{stage=NAME instance=I}`: one per stage (per instance of a
//!   concurrent stage; `stage` is the name `stats()` shows, `NAME[I]`),
//!   child of the pipeline's span, entered whenever the stage's task polls
//!   the stage: the supervisor's restarts and failures are events in it.
//! * `attempt{attempt=A}`: one per run of an instance (0, then one more per
//!   restart), child of the stage's span: every handler call
//!   (`produce`, `process`, `consume`, ...) runs inside it, so a user's own
//!   `tracing` events carry the pipeline, the stage and the attempt.
//!
//! All are at level `INFO` with target `demandflow`, so a filter such as
//! `demandflow=info` (or anything that enables `INFO`) turns them on. When
//! no subscriber is interested a span is disabled at creation, and
//! entering it costs a branch; the spans are entered once per poll of a
//! stage, which handles a batch, never once per event.

use tracing::Span;

use crate::runtime::shared::{PipelineShared, StageShared};

/// The span of a pipeline about to be spawned.
pub(crate) fn pipeline(name: &str, id: u64) -> Span {
    tracing::info_span!(target: "demandflow", "pipeline", pipeline = %name, id)
}

/// The span of one stage (one instance of a concurrent stage).
pub(crate) fn stage(pipeline: &PipelineShared, stage: &StageShared) -> Span {
    tracing::info_span!(
        target: "demandflow",
        parent: &pipeline.span,
        "stage",
        stage = %stage.name,
        instance = stage.instance,
    )
}

/// The span of one run of a stage's instance, inside its stage's span.
pub(crate) fn attempt(attempt: u32) -> Span {
    tracing::info_span!(target: "demandflow", "attempt", attempt)
}
