//! The running pipeline: its handle, stats and final report.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cancel::CancelCause;
use crate::error::{PipelineError, StageFailure};
use crate::runtime::driver::StageEnd;
use crate::runtime::shared::*;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Every stage finished its work.
    Completed,
    /// Cancelled: by the user, by a dropped owner, or by a shutdown whose
    /// grace period ran out.
    Cancelled(CancelCause),
    /// The deadline passed first.
    DeadlineExceeded,
    /// A stage failed beyond its restart policy.
    Failed {
        /// The stage.
        stage: String,
        /// Its last error, as the stage returned it (see [`StageFailure`]).
        error: StageFailure,
    },
}

impl fmt::Display for Status {
    /// `completed`, `cancelled by the user`, `deadline exceeded`, `failed:
    /// stage `parse`: <its error>`... With `{:#}`, a failure's error is
    /// followed by its sources.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Completed => write!(f, "completed"),
            Status::Cancelled(CancelCause::User) => write!(f, "cancelled by the user"),
            Status::Cancelled(CancelCause::OwnerDropped) => {
                write!(f, "cancelled: its handle was dropped")
            }
            Status::Cancelled(CancelCause::Shutdown) => {
                write!(f, "cancelled: the shutdown's grace period ran out")
            }
            Status::Cancelled(CancelCause::StageFailed(stage)) => {
                write!(f, "cancelled: stage `{stage}` failed")
            }
            Status::Cancelled(CancelCause::DeadlineExceeded) | Status::DeadlineExceeded => {
                write!(f, "deadline exceeded")
            }
            Status::Failed { stage, error } if f.alternate() => {
                write!(f, "failed: stage `{stage}`: {error:#}")
            }
            Status::Failed { stage, error } => write!(f, "failed: stage `{stage}`: {error}"),
        }
    }
}

impl Status {
    /// The failed stage's error, for a run that failed.
    pub fn failure(&self) -> Option<&StageFailure> {
        match self {
            Status::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Whether `name` is `base` or one of its concurrent instances, `base[i]`.
fn is_instance_of(name: &str, base: &str) -> bool {
    match name.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Sums the stages named `base` or `base[i]` into one value, starting from
/// a clone of the first (so fields that do not add up keep its value).
/// Adds the event counters every ledger has (`StageReport`, `StageStats`).
macro_rules! add_counts {
    ($sum:expr, $s:expr) => {
        $sum.received += $s.received;
        $sum.processed += $s.processed;
        $sum.emitted += $s.emitted;
        $sum.dead_lettered += $s.dead_lettered;
        $sum.dropped += $s.dropped;
        $sum.abandoned += $s.abandoned;
        $sum.restarts += $s.restarts;
    };
}

fn total<'a, T: Clone + 'a>(
    mut items: impl Iterator<Item = &'a T>,
    base: &str,
    name: impl Fn(&mut T) -> &mut String,
    add: impl Fn(&mut T, &T),
) -> Option<T> {
    let first = items.next()?;
    let mut sum = first.clone();
    for other in items {
        add(&mut sum, other);
    }
    *name(&mut sum) = base.to_owned();
    Some(sum)
}

/// One stage's ledger at the end of a run.
///
/// For a stage that was handed events: `received == processed +
/// dead_lettered + abandoned` (minus what a stage's own outputs abandoned,
/// which is also counted in `abandoned`). Every event ends processed,
/// dead-lettered, dropped by an overflow strategy, or abandoned by a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// The stage's name.
    pub name: String,
    /// Events taken from its subscriptions.
    pub received: u64,
    /// Events its handler finished successfully.
    pub processed: u64,
    /// Events it emitted.
    pub emitted: u64,
    /// Events handed to the dead-letter handler.
    pub dead_lettered: u64,
    /// Events dropped by an overflow strategy the user chose.
    pub dropped: u64,
    /// Events it held when it was cancelled or lost its subscribers.
    pub abandoned: u64,
    /// How many times it was restarted.
    pub restarts: u64,
    /// How it ended, in words (`completed`, `cancelled`, `failed: ...`).
    pub end: String,
}

/// The ledger of a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How the run ended.
    pub status: Status,
    /// Per stage, in the order they were added.
    pub stages: Vec<StageReport>,
}

impl Report {
    /// The ledger of the stage named `name`, summed over its concurrent
    /// instances.
    ///
    /// A stage built with [`concurrency(n)`](crate::pipeline::ProcessorBuilder::concurrency)
    /// runs `n` instances named `name[0]`..`name[n-1]`: `stage("upload")`
    /// adds their counters up (the `end` is the first instance's that did
    /// not complete, else `completed`), and `stage("upload[2]")` is the one
    /// instance. `None` if no stage has that name. The per-instance ledgers
    /// are [`instances`](Self::instances).
    ///
    /// ```
    /// use demandflow::{sink, source, stage, Pipeline, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = Pipeline::new();
    /// let n = p.producer("numbers", source::iter(0..100u32));
    /// let up = p
    ///     .processor("upload", stage::map(|x: u32| x))
    ///     .concurrency(4)
    ///     .subscribe(&n, Subscribe::max_demand(10));
    /// p.consumer("sink", sink::drain()).subscribe(&up, Subscribe::default());
    /// let report = p.spawn()?.join().await?;
    /// assert_eq!(report.stage("upload").unwrap().processed, 100);
    /// assert_eq!(report.instances("upload").count(), 4);
    /// # Ok(()) }
    /// ```
    pub fn stage(&self, name: &str) -> Option<StageReport> {
        total(
            self.instances(name),
            name,
            |s| &mut s.name,
            |sum, s| {
                add_counts!(sum, s);
                if sum.end == "completed" {
                    sum.end.clone_from(&s.end);
                }
            },
        )
    }

    /// The stage named `name` and its concurrent instances `name[i]`, in
    /// the order they were added.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a StageReport> + 'a {
        self.stages
            .iter()
            .filter(move |s| is_instance_of(&s.name, name))
    }

    /// `Ok(self)` for a completed run, else the error carrying it.
    pub fn into_result(self) -> Result<Report, PipelineError> {
        match PipelineError::from_report(self.clone()) {
            None => Ok(self),
            Some(e) => Err(e),
        }
    }
}

/// Where a stage is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageState {
    /// Running an instance.
    Running,
    /// Waiting out the backoff before a restart.
    Restarting,
    /// Ended for good.
    Ended,
}

/// A stage's live counters.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    /// The stage's name.
    pub name: String,
    /// See [`StageReport::received`].
    pub received: u64,
    /// See [`StageReport::processed`].
    pub processed: u64,
    /// See [`StageReport::emitted`].
    pub emitted: u64,
    /// See [`StageReport::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`StageReport::dropped`].
    pub dropped: u64,
    /// See [`StageReport::abandoned`].
    pub abandoned: u64,
    /// Restarts so far.
    pub restarts: u64,
    /// Lifecycle state.
    pub state: StageState,
    /// How it spent the last few seconds: busy, backpressured or idle.
    pub occupancy: crate::observe::Occupancy,
}

/// One subscription's live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeStats {
    /// The upstream stage.
    pub from: String,
    /// The subscriber.
    pub to: String,
    /// Demand granted and not yet met.
    pub pending_demand: u64,
    /// Events delivered and not yet taken by the subscriber.
    pub buffered: usize,
    /// Events delivered so far.
    pub delivered: u64,
    /// Demand granted so far (`delivered <= granted` always: invariant D1).
    pub granted: u64,
    /// Non-empty batches delivered so far.
    pub batches: u64,
}

/// An edge the stall detector flagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The upstream stage.
    pub from: String,
    /// The subscriber.
    pub to: String,
    /// `true`: demand but no events; `false`: events but no demand.
    pub starved: bool,
    /// For how long, when detected.
    pub for_how_long: Duration,
}

/// A point-in-time view of a running pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Per stage.
    pub stages: Vec<StageStats>,
    /// Per subscription.
    pub edges: Vec<EdgeStats>,
    /// Why the run was cancelled, once it was.
    pub cancel_cause: Option<CancelCause>,
    /// Stalls detected so far (see [`Pipeline::stall_timeout`](crate::Pipeline::stall_timeout)).
    pub stalls: Vec<Stall>,
}

impl Stats {
    /// The live counters of the stage named `name`, summed over its
    /// concurrent instances `name[i]` (as [`Report::stage`]). The state is
    /// `Running` if any instance runs, else `Restarting` if any restarts,
    /// else `Ended`. The occupancy is the instances' mean.
    pub fn stage(&self, name: &str) -> Option<StageStats> {
        let instances = self.instances(name).count() as f64;
        let mut sum = total(
            self.instances(name),
            name,
            |s| &mut s.name,
            |sum, s| {
                add_counts!(sum, s);
                sum.occupancy.busy += s.occupancy.busy;
                sum.occupancy.backpressured += s.occupancy.backpressured;
                sum.occupancy.idle += s.occupancy.idle;
                sum.state = match (sum.state, s.state) {
                    (StageState::Running, _) | (_, StageState::Running) => StageState::Running,
                    (StageState::Restarting, _) | (_, StageState::Restarting) => {
                        StageState::Restarting
                    }
                    _ => StageState::Ended,
                };
            },
        )?;
        // Instances share the stage's work: its occupancy is their mean.
        sum.occupancy.busy /= instances;
        sum.occupancy.backpressured /= instances;
        sum.occupancy.idle /= instances;
        Some(sum)
    }

    /// The stage named `name` and its concurrent instances `name[i]`.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a StageStats> + 'a {
        self.stages
            .iter()
            .filter(move |s| is_instance_of(&s.name, name))
    }

    /// Events buffered on all subscriptions.
    pub fn buffered(&self) -> usize {
        self.edges.iter().map(|e| e.buffered).sum()
    }

    /// Demand pending on all subscriptions.
    pub fn pending_demand(&self) -> u64 {
        self.edges.iter().map(|e| e.pending_demand).sum()
    }

    /// Restarts of all stages.
    pub fn restarts(&self) -> u64 {
        self.stages.iter().map(|s| s.restarts).sum()
    }
}

fn stage_stats(s: &StageShared) -> StageStats {
    let c = &s.counters;
    StageStats {
        name: s.name.to_string(),
        received: c.received.load(Ordering::Relaxed),
        processed: c.processed.load(Ordering::Relaxed),
        emitted: c.emitted.load(Ordering::Relaxed),
        dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
        abandoned: c.abandoned.load(Ordering::Relaxed),
        restarts: c.restarts.load(Ordering::Relaxed),
        state: match s.state.load(Ordering::Acquire) {
            STATE_RUNNING => StageState::Running,
            STATE_RESTARTING => StageState::Restarting,
            _ => StageState::Ended,
        },
        occupancy: s.meter.occupancy(),
    }
}

fn edge_stats(e: &EdgeStat) -> EdgeStats {
    let snap = (e.snapshot)();
    EdgeStats {
        from: e.from.to_string(),
        to: e.to.to_string(),
        pending_demand: snap.granted.saturating_sub(snap.delivered),
        buffered: snap.buffered,
        delivered: snap.delivered,
        granted: snap.granted,
        batches: snap.batches,
    }
}

/// A user's read of the live counters, occupancy included: the stages are
/// sampled for the next few seconds (runtime::sampler).
fn watched_stats_of(shared: &PipelineShared) -> Stats {
    crate::runtime::sampler::watch();
    stats_of(shared)
}

fn stats_of(shared: &PipelineShared) -> Stats {
    let mut stages: Vec<StageStats> = shared.stages.iter().map(|s| stage_stats(s)).collect();
    // Late subscribers (late.rs), after the build-time stages.
    let late_stages = shared.late.stages.lock().unwrap_or_else(|e| e.into_inner());
    stages.extend(late_stages.iter().map(|s| stage_stats(&s.shared)));
    drop(late_stages);
    Stats {
        stages,
        edges: edge_stats_of(shared),
        cancel_cause: shared.scope.cause(),
        stalls: shared
            .stalls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    }
}

fn edge_stats_of(shared: &PipelineShared) -> Vec<EdgeStats> {
    let mut edges: Vec<EdgeStats> = shared.edges.iter().map(edge_stats).collect();
    // Late subscribers (late.rs), after the build-time edges.
    let late_edges = shared.late.edges.lock().unwrap_or_else(|e| e.into_inner());
    edges.extend(late_edges.iter().map(edge_stats));
    edges
}

/// The owner of a running pipeline.
///
/// Dropping it cancels every stage with [`CancelCause::OwnerDropped`]
/// (owner semantics: no task outlives its pipeline), unless
/// [`PipelineHandle::detach`] was called.
///
/// # Cancelling while waiting: Ctrl-C
///
/// [`join`](Self::join) takes the handle, so take a [`Canceller`] first:
/// it is `Clone + Send + Sync` and cancels from anywhere (another task, a
/// signal handler). Keep awaiting the same `join` future after cancelling,
/// to get the report of what was done:
///
/// ```no_run
/// use demandflow::{sink, source, Pipeline, Subscribe};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..u64::MAX));
/// p.consumer("sink", sink::drain()).subscribe(&n, Subscribe::default());
/// let run = p.spawn()?;
/// let canceller = run.canceller();
/// let join = run.join();
/// tokio::pin!(join);
/// let result = tokio::select! {
///     r = &mut join => r,
///     _ = tokio::signal::ctrl_c() => {
///         canceller.cancel();
///         join.await
///     }
/// };
/// match result {
///     Ok(report) => println!("{report}"),
///     Err(e) if e.is_cancelled() => println!("interrupted\n{}", e.report()),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
///
/// The same with the cancel coming from another task, run as a test:
///
/// ```
/// use std::time::Duration;
/// use demandflow::{sink, source, CancelCause, Pipeline, Status, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..u64::MAX));
/// let (count, seen) = sink::count();
/// p.consumer("count", count).subscribe(&n, Subscribe::default());
/// let run = p.spawn()?;
/// let canceller = run.canceller();
/// let (interrupt, interrupted) = tokio::sync::oneshot::channel::<()>();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_millis(20)).await;
///     let _ = interrupt.send(()); // stands in for `ctrl_c()`
/// });
/// let join = run.join();
/// tokio::pin!(join);
/// let result = tokio::select! {
///     r = &mut join => r,
///     _ = interrupted => {
///         canceller.cancel();
///         join.await
///     }
/// };
/// let err = result.unwrap_err();
/// assert_eq!(err.report().status, Status::Cancelled(CancelCause::User));
/// assert_eq!(err.to_string(), "pipeline cancelled by the user");
/// assert!(seen.get() > 0); // the count so far survives the cancel
/// # Ok(()) }
/// ```
#[must_use = "dropping the handle cancels the pipeline"]
pub struct PipelineHandle {
    shared: Arc<PipelineShared>,
    /// One per task; a task runs one stage or a chain of them (see
    /// `Pipeline::spawn`) and ends with each one's `(index, end)`.
    tasks: Vec<JoinHandle<Vec<(usize, StageEnd)>>>,
    watcher: Option<JoinHandle<()>>,
    armed: bool,
}

impl fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("stages", &self.shared.stages.len())
            .field("cancelled", &self.shared.scope.is_cancelled())
            .finish()
    }
}

impl PipelineHandle {
    pub(crate) fn new(
        shared: Arc<PipelineShared>,
        tasks: Vec<JoinHandle<Vec<(usize, StageEnd)>>>,
        watcher: JoinHandle<()>,
    ) -> Self {
        PipelineHandle {
            shared,
            tasks,
            watcher: Some(watcher),
            armed: true,
        }
    }

    /// Cancels every stage ([`CancelCause::User`]). Idempotent, non-blocking.
    pub fn cancel(&self) {
        self.shared.cancel(CancelCause::User);
    }

    /// A cloneable handle that cancels this pipeline, usable while
    /// [`join`](Self::join) owns the handle (see the Ctrl-C recipe above).
    pub fn canceller(&self) -> Canceller {
        Canceller {
            shared: self.shared.clone(),
        }
    }

    /// The pipeline's name (see [`Pipeline::name`](crate::Pipeline::name)).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Live counters: per stage, per subscription, and the cancel cause.
    ///
    /// Reading it counts as watching the stages' occupancy, which is then
    /// sampled fast for the next few seconds (`docs/observability.md`).
    pub fn stats(&self) -> Stats {
        watched_stats_of(&self.shared)
    }

    /// The subscriptions' live counters alone (as [`Stats::edges`], in
    /// the same order), without the stages': cheap to poll often, as a
    /// monitor of buffered events and outstanding demand does, and not a
    /// read of occupancy.
    pub fn edge_stats(&self) -> Vec<EdgeStats> {
        edge_stats_of(&self.shared)
    }

    /// A watcher that outlives the handle, to see when every stage task has
    /// ended.
    pub fn watch(&self) -> PipelineWatch {
        PipelineWatch {
            shared: self.shared.clone(),
        }
    }

    /// Lets the pipeline run on its own: dropping the handle no longer
    /// cancels it. Its deadline still applies.
    pub fn detach(mut self) {
        self.armed = false;
    }

    /// Waits for every stage to end and returns the ledger.
    ///
    /// `Ok` for a completed run; otherwise a [`PipelineError`] that says why
    /// and still carries the report.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future drops the handle, which cancels the pipeline.
    pub async fn join(mut self) -> Result<Report, PipelineError> {
        self.wait_report().await.into_result()
    }

    /// Graceful shutdown: producers stop producing, what was already emitted
    /// drains through the pipeline, and after `grace` whatever is still
    /// running is cancelled ([`CancelCause::Shutdown`]; the ledger counts
    /// what was abandoned).
    ///
    /// # Cancel safety
    ///
    /// Dropping this future cancels the pipeline.
    pub async fn shutdown(mut self, grace: Duration) -> Result<Report, PipelineError> {
        for s in &self.shared.stages {
            if s.control.load(Ordering::Acquire) == CONTROL_NONE {
                s.control.store(CONTROL_DRAIN, Ordering::Release);
            }
            s.signal.notify();
        }
        let shared = self.shared.clone();
        let watch = PipelineWatch {
            shared: shared.clone(),
        };
        if tokio::time::timeout(grace, watch.stopped()).await.is_err() {
            shared.cancel(CancelCause::Shutdown);
        }
        self.wait_report().await.into_result()
    }

    async fn wait_report(&mut self) -> Report {
        let mut ends: Vec<Option<StageEnd>> = vec![None; self.shared.stages.len()];
        let mut abnormal = None;
        for t in std::mem::take(&mut self.tasks) {
            match t.await {
                Ok(done) => {
                    for (i, end) in done {
                        ends[i] = Some(end);
                    }
                }
                Err(e) => abnormal = Some(format!("stage task ended abnormally: {e}")),
            }
        }
        // A stage whose task died (a panic outside every handler, which the
        // engine does not expect) has no end of its own.
        let mut ends: Vec<StageEnd> = ends
            .into_iter()
            .map(|e| {
                e.unwrap_or_else(|| {
                    StageEnd::Failed(StageFailure::message(
                        abnormal
                            .clone()
                            .unwrap_or_else(|| "stage task ended abnormally".to_owned()),
                    ))
                })
            })
            .collect();
        // Late subscribers end after the build-time stages that feed them.
        let late_ends = super::late::join_late(&self.shared).await;
        self.armed = false;
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        let shared = &self.shared;
        let failure = shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let first_failed = ends.iter().enumerate().find_map(|(i, e)| match e {
            StageEnd::Failed(err) => Some((shared.stages[i].name.to_string(), err.clone())),
            _ => None,
        });
        let late_failed = late_failure(shared, &late_ends);
        ends.extend(late_ends);
        // A run still going at its deadline ended `DeadlineExceeded`, even if
        // a stage failed after it (what a stage does once the deadline has
        // passed depends on when the runtime let the watcher run).
        let cause = shared.scope.cause();
        let status = if cause == Some(CancelCause::DeadlineExceeded) {
            Status::DeadlineExceeded
        } else if let Some((stage, error)) = failure.or(first_failed).or(late_failed) {
            Status::Failed { stage, error }
        } else {
            match cause {
                Some(cause) => Status::Cancelled(cause),
                None => Status::Completed,
            }
        };
        // The final counters are published before the report is returned.
        #[cfg(feature = "metrics")]
        crate::observe::metrics::publish(shared);
        let stats = stats_of(shared);
        let stages = stats
            .stages
            .into_iter()
            .zip(ends)
            .map(|(s, end)| StageReport {
                name: s.name,
                received: s.received,
                processed: s.processed,
                emitted: s.emitted,
                dead_lettered: s.dead_lettered,
                dropped: s.dropped,
                abandoned: s.abandoned,
                restarts: s.restarts,
                end: match end {
                    StageEnd::Completed => "completed".to_owned(),
                    StageEnd::Cancelled => "cancelled".to_owned(),
                    StageEnd::Failed(e) => format!("failed: {e}"),
                    StageEnd::Stopped(e) => format!("stopped: {e}"),
                },
            })
            .collect();
        Report { status, stages }
    }
}

// ------------------------------------------------------ late subscribers
// (see late.rs)

impl PipelineHandle {
    /// Starts building a consumer that subscribes to a running stage
    /// (GenStage's `sync_subscribe` on a live producer). The upstream must
    /// have been built with
    /// [`late_subscribers`](crate::pipeline::ProducerBuilder::late_subscribers);
    /// the edge is typed, so subscribing to a stage of another event type
    /// does not compile.
    ///
    /// The consumer runs in its own task under a one-stage supervisor (the
    /// pipeline's restart intensity, default backoff), stops with the
    /// pipeline, appears in [`stats`](Self::stats) and in the report of
    /// [`join`](Self::join), and ends when its upstream ends or when the
    /// returned [`Subscription`](crate::Subscription) is cancelled.
    ///
    /// # Example
    ///
    /// A viewer joining a stream mid-way, then leaving:
    ///
    /// ```
    /// use std::time::Duration;
    /// use demandflow::{sink, source, Dispatch, LastCancel, Pipeline, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = Pipeline::new();
    /// let answer = p
    ///     .add_producer("answer", source::iter(0..u32::MAX))
    ///     .dispatch(Dispatch::broadcast())
    ///     .late_subscribers(LastCancel::End)
    ///     .build();
    /// let run = p.spawn()?;
    /// let (viewer, seen) = sink::collect();
    /// let sub = run
    ///     .consumer("viewer", viewer)
    ///     .subscribe(&answer, Subscribe::max_demand(10))?;
    /// while seen.len() < 10 {
    ///     tokio::time::sleep(Duration::from_millis(1)).await;
    /// }
    /// // The only viewer leaves, so `answer` ends (`LastCancel::End`).
    /// sub.cancel();
    /// let report = run.join().await?;
    /// assert_eq!(report.stage("viewer").unwrap().end, "completed");
    /// assert_eq!(seen.take()[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    /// # Ok(()) }
    /// ```
    pub fn consumer<T, C>(&self, name: &str, consumer: C) -> super::LateConsumer<T, C>
    where
        T: Send + 'static,
        C: crate::Consumer<T> + Clone,
    {
        super::LateConsumer {
            shared: self.shared.clone(),
            name: Arc::from(name),
            consumer,
            restart: crate::Restart::default(),
            selector: None,
        }
    }

    /// Starts building a processor that subscribes to a running stage; as
    /// [`consumer`](Self::consumer), and the processor itself accepts late
    /// subscribers (it starts with none).
    pub fn processor<In, Out, S>(
        &self,
        name: &str,
        processor: S,
    ) -> super::LateProcessor<In, Out, S>
    where
        In: Send + 'static,
        Out: Send + 'static,
        S: crate::Processor<In, Out> + Clone,
    {
        super::LateProcessor {
            shared: self.shared.clone(),
            name: Arc::from(name),
            processor,
            restart: crate::Restart::default(),
            selector: None,
            dispatch: None,
            last_cancel: super::LastCancel::End,
        }
    }
}

/// The first late subscriber that failed, with its error.
fn late_failure(shared: &PipelineShared, ends: &[StageEnd]) -> Option<(String, StageFailure)> {
    let stages = shared.late.stages.lock().unwrap_or_else(|e| e.into_inner());
    ends.iter()
        .zip(stages.iter())
        .find_map(|(end, s)| match end {
            StageEnd::Failed(err) => Some((s.shared.name.to_string(), err.clone())),
            _ => None,
        })
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        if self.armed {
            self.shared.cancel(CancelCause::OwnerDropped);
        }
    }
}

/// Cancels a pipeline from anywhere: another task, a signal handler, a
/// callback. Made by [`PipelineHandle::canceller`]; `Clone + Send + Sync`.
///
/// Holding one keeps no stage running: the pipeline ends as it would
/// without it.
#[derive(Clone)]
pub struct Canceller {
    shared: Arc<PipelineShared>,
}

impl Canceller {
    /// Cancels every stage ([`CancelCause::User`]), as
    /// [`PipelineHandle::cancel`]. Idempotent, non-blocking; does nothing
    /// once the run has ended.
    pub fn cancel(&self) {
        self.shared.cancel(CancelCause::User);
    }

    /// Whether the pipeline was cancelled (by anyone, for any cause).
    pub fn is_cancelled(&self) -> bool {
        self.shared.scope.is_cancelled()
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceller")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Observes a pipeline's tasks, even after its handle is gone.
#[derive(Debug, Clone)]
pub struct PipelineWatch {
    shared: Arc<PipelineShared>,
}

impl PipelineWatch {
    /// Stage tasks still running.
    pub fn live_stages(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Completes once every stage task has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn stopped(&self) {
        loop {
            let notified = self.shared.all_done.notified();
            if self.live_stages() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Live counters (as [`PipelineHandle::stats`]).
    pub fn stats(&self) -> Stats {
        watched_stats_of(&self.shared)
    }

    /// The subscriptions' live counters alone (as
    /// [`PipelineHandle::edge_stats`]).
    pub fn edge_stats(&self) -> Vec<EdgeStats> {
        edge_stats_of(&self.shared)
    }
}

/// The pipeline's watcher task: enforces the deadline, wakes every stage on
/// cancel, runs the stall detector, and ends with the pipeline.
///
/// It runs until the last stage task has ended, never less: a stage still
/// running after a cancel is woken again at the deadline, so the deadline
/// holds for as long as any stage lives. A stage's own scope is a child of
/// the root, and the cancellation tree marks children before their parent
/// (`cancel::tree`, invariant 5), so by the time this task sees the root
/// cancelled every stage sees its own scope cancelled too, and one wake-up
/// each is enough for it to stop.
pub(crate) async fn watch(shared: Arc<PipelineShared>) {
    let tick = shared
        .stall_timeout
        .map(|t| (t / 2).max(Duration::from_millis(1)));
    let watch = PipelineWatch {
        shared: shared.clone(),
    };
    let mut deadline = shared.deadline;
    let mut cancel_seen = false;
    loop {
        let next_tick = tick.filter(|_| !cancel_seen).map(|t| Instant::now() + t);
        tokio::select! {
            _ = watch.stopped() => return,
            _ = shared.scope.cancelled(), if !cancel_seen => {
                cancel_seen = true;
                tracing::debug!(cause = ?shared.scope.cause(), "pipeline cancelled");
                wake_every_stage(&shared);
            }
            _ = sleep_until_opt(deadline) => {
                deadline = None;
                shared.scope.cancel(CancelCause::DeadlineExceeded);
                wake_every_stage(&shared);
            }
            _ = sleep_until_opt(next_tick) => check_stalls(&shared),
        }
    }
}

/// Tells every stage to look at its scope and its control flag.
fn wake_every_stage(shared: &PipelineShared) {
    for s in &shared.stages {
        s.look_at_control();
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn check_stalls(shared: &PipelineShared) {
    let Some(limit) = shared.stall_timeout else {
        return;
    };
    let now = Instant::now();
    for e in &shared.edges {
        let snap = (e.snapshot)();
        let mut w = e.stall.lock().unwrap_or_else(|e| e.into_inner());
        let pending = snap.granted.saturating_sub(snap.delivered);
        let moved = snap != w.last;
        w.last = snap;
        let stuck = !moved && (pending > 0 || snap.buffered > 0);
        if !stuck {
            w.since = None;
            w.reported = false;
            continue;
        }
        let since = *w.since.get_or_insert(now);
        let idle = now - since;
        if idle >= limit && !w.reported {
            w.reported = true;
            let starved = pending > 0 && snap.buffered == 0;
            tracing::warn!(from = %e.from, to = %e.to, starved, ?idle, "edge stalled");
            shared
                .stalls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Stall {
                    from: e.from.to_string(),
                    to: e.to.to_string(),
                    starved,
                    for_how_long: idle,
                });
        }
    }
}
