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
//! [`in_span`] then leaves it out of the stage's future altogether: a
//! stage's poll costs a branch for it. The spans are entered once per poll
//! of a stage, which handles a batch, never once per event.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

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

pin_project_lite::pin_project! {
    /// `fut` inside `span`, as [`Instrument::instrument`] makes it, or
    /// `fut` alone when `span` is disabled.
    ///
    /// Entering a disabled span does nothing, but `Instrumented` still
    /// costs a call and reads of the span per poll, and a stage is polled
    /// through two of them (its span and its attempt's) several times per
    /// event on a latency-bound path. The one difference: with `tracing`'s
    /// `log` feature and no subscriber, a disabled span's entry and exit
    /// are not logged.
    #[project = InSpanProj]
    pub(crate) enum InSpan<F> {
        Entered { #[pin] fut: Instrumented<F> },
        Bare { #[pin] fut: F },
    }
}

/// Runs `fut` inside `span` (see [`InSpan`]).
pub(crate) fn in_span<F: Future>(fut: F, span: Span) -> InSpan<F> {
    if span.is_disabled() {
        InSpan::Bare { fut }
    } else {
        InSpan::Entered {
            fut: fut.instrument(span),
        }
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            InSpanProj::Entered { fut } => fut.poll(cx),
            InSpanProj::Bare { fut } => fut.poll(cx),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_disabled_span_is_left_out_of_the_future() {
        // No subscriber: every span is disabled at creation.
        let fut = in_span(async { Span::current().is_disabled() }, attempt(0));
        assert!(matches!(fut, InSpan::Bare { .. }));
        assert_eq!(fut.now_or_never(), Some(true));
    }

    #[test]
    fn an_enabled_span_is_entered_around_each_poll() {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = attempt(3);
            let id = span.id();
            assert!(id.is_some());
            let fut = in_span(async { Span::current().id() }, span);
            assert!(matches!(fut, InSpan::Entered { .. }));
            assert_eq!(fut.now_or_never(), Some(id.clone()));
            // Outside the future the span is not entered.
            assert_ne!(Span::current().id(), id);
        });
    }
}
