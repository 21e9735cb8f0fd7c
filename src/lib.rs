//! Demand-driven streaming pipelines in the style of Elixir's GenStage.
//!
//! # Overview
//!
//! A pipeline is a graph of named stages: [`Producer`]s emit events when
//! asked, [`Processor`]s turn batches into batches, [`Consumer`]s handle
//! them at the end. Subscribers pass explicit demand upstream, so every
//! producer, including one that streams an LLM response over HTTP (see the
//! `demandflow-stages` crate), emits only what it was asked for. Every stage
//! runs under a supervisor ([`Restart`], [`Strategy`]). Cancellation and
//! deadlines travel through the whole graph, and the final [`Report`] is a
//! ledger of every event.
//!
//! Build a [`Pipeline`], add stages (each returns a typed [`StageRef`], so a
//! type mismatch between stages is a compile error), then
//! [`spawn`](Pipeline::spawn) it on the current tokio runtime. The
//! [`PipelineHandle`] owns the run.
//!
//! ```
//! use std::time::Duration;
//! use demandflow::{sink, source, stage, Pipeline, Subscribe};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut p = Pipeline::new();
//! let numbers = p.producer("numbers", source::iter(1..=1000u64));
//! let squares = p
//!     .processor("square", stage::map(|x: u64| x * x))
//!     .subscribe(&numbers, Subscribe::default());
//! let (sum, total) = sink::fold(0u64, |acc, x: u64| acc + x);
//! p.consumer("sum", sum).subscribe(&squares, Subscribe::max_demand(100));
//!
//! let report = p.timeout(Duration::from_secs(5)).spawn()?.join().await?;
//! assert_eq!(total.get(), 333_833_500);
//! assert_eq!(report.stage("sum").unwrap().processed, 1000);
//! # Ok(()) }
//! ```
//!
//! Ready-made stages: [`source`] (`iter`, `from_stream`, `from_fn`,
//! `lines`), [`stage`] (`map`, `map_ref`, `try_map`, `then`, `try_then`,
//! `filter`, `flat_map`, `batch`, `rate_limit`, `factory`), [`sink`]
//! (`for_each`, `fold`, `count`, `collect`, `drain`), and [`push`] for
//! sources that cannot wait. [`Pipeline::stream`] hands a pipeline's output
//! to the caller as a `futures::Stream`.
//!
//! # Reading the outcome
//!
//! A [`Report`] prints as a table (`println!("{report}")`), and
//! [`Report::stage`] sums a stage's concurrent instances. A failed run's
//! [`Status::Failed`] keeps the error the stage returned, as a
//! [`StageFailure`] that downcasts to it. [`PipelineHandle::canceller`]
//! cancels while [`join`](PipelineHandle::join) owns the handle (the
//! Ctrl-C recipe is in [`PipelineHandle`]'s docs). `main` can return
//! `Result<(), Box<dyn std::error::Error>>`: the engine's errors print
//! their message, not their structure.
//!
//! # Demand model
//!
//! Each subscription has a `max_demand` (default 1000) and a `min_demand`
//! (default half of max), set with [`Subscribe`]. The subscriber asks
//! `max_demand` at first. Its stage is handed chunks of at most
//! `max_demand - min_demand` events (500 by default), and after each chunk
//! the subscriber asks enough to bring its outstanding demand back to
//! `max_demand` once it has fallen to `min_demand`. A producer is never
//! called with zero demand, and no subscription ever receives more than it
//! asked for: the engine enforces it where events cross between tasks.
//! Dispatchers ([`Dispatch::demand`], [`Dispatch::broadcast`],
//! [`Dispatch::partition`]) route a stage's output among several
//! subscribers. Manual demand ([`Subscribe::manual`], [`Context::ask`]) lets
//! a stage ask for itself.
//!
//! The full protocol, as a MUST/MAY spec with a worked example, is
//! `docs/protocol.md` in the repository. The other guides there are
//! `docs/architecture.md` (modules, data flow, invariants D1–D8 and their
//! tests), `docs/supervision.md`, `docs/cancellation-and-deadlines.md`,
//! `docs/writing-a-stage.md` (a tutorial) and `docs/testing.md`. Their
//! examples are compiled as doc tests of this crate.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | (default) | the engine: stages, demand, dispatchers, pipeline, supervisor, cancellation and deadlines, push buffer |
//! | `testkit` | `demandflow::testkit`: scripted test producers and consumers, checkers that assert the demand invariants on any subscription, proptest strategies, and a paused-clock runner (pulls in `proptest` and tokio's `test-util`) |
//!
//! # Cancel safety
//!
//! The [`PipelineHandle`] owns its run. Dropping it, or dropping a
//! [`join`](PipelineHandle::join) or [`shutdown`](PipelineHandle::shutdown)
//! future before it completes, cancels every stage with
//! [`CancelCause::OwnerDropped`], unless the handle was
//! [`detach`](PipelineHandle::detach)ed. No stage task outlives its pipeline.
//! Dropping a [`PipelineStream`] cancels its subscriptions.
//!
//! Stage handlers are futures the engine may drop at any `.await` on cancel,
//! deadline or a supervisor restart. A chunk whose handler failed is handed
//! again to the restarted instance; a chunk interrupted by a cancel is
//! counted as abandoned. Every public async function documents what
//! dropping its future does in a `# Cancel safety` section.
//! [`CancelScope::cancelled`], [`Context::cancelled`] and
//! [`PipelineWatch::stopped`](pipeline::PipelineWatch::stopped) are cancel
//! safe.
//!
//! # Stability
//!
//! This is a 0.x crate: minor versions may break the API. Within a version,
//! the behaviour documented in `docs/protocol.md` and the invariants of
//! `docs/architecture.md` are the contract, and the conformance tests check
//! them. The `Display` text of errors and of [`Status`] is for people and may
//! change: match on the enums and on the `is_*` predicates of
//! [`PipelineError`] instead. Enums marked `#[non_exhaustive]` may gain
//! variants. The minimum supported Rust version is the workspace's
//! `rust-version` (1.85).
#![forbid(unsafe_code)]
// docs.rs (nightly, `--cfg docsrs`) marks feature-gated items such as the
// testkit with the feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cancel;
mod demand;
pub mod dispatcher;
pub mod error;
pub(crate) mod loom;
pub mod observe;
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
pub use error::{AskError, BoxError, BuildError, PipelineError, StageFailure, SubscribeError};
pub use observe::Occupancy;
pub use pipeline::{
    CancelMode, Canceller, Dispatch, LastCancel, Pipeline, PipelineHandle, PipelineStream, Report,
    StageRef, Stats, Status, Subscribe, Subscription,
};
pub use runtime::shared::DeadLetter;
pub use stage::{Consumer, Context, Emitter, Flow, Processor, Producer, StageWaker};
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

#[cfg(doctest)]
#[doc = include_str!("../docs/observability.md")]
struct ObservabilityDoctests;
