//! The pipeline: a graph of named stages, validated, then run on tokio.
//!
//! Build it with [`Pipeline::new`], add stages (each returns a typed
//! [`StageRef`] that later stages subscribe to, so a type mismatch is a
//! compile error), then [`Pipeline::spawn`] it on the current tokio runtime.
//! The [`PipelineHandle`] owns the run: dropping it cancels every stage.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;

mod builder;
mod dispatch;
mod display;
mod handle;
mod late;
mod stream;
mod subscribe;

use builder::Common;
pub use builder::{ConsumerBuilder, ProcessorBuilder, ProducerBuilder};
pub use dispatch::Dispatch;
pub use handle::{
    Canceller, EdgeStats, PipelineHandle, PipelineWatch, Report, StageReport, StageState,
    StageStats, Stall, Stats, Status,
};
pub use late::{LastCancel, LateConsumer, LateProcessor, Subscription};
pub use stream::PipelineStream;
#[cfg(any(test, feature = "testkit"))]
pub(crate) use subscribe::Observer;
pub use subscribe::{CancelMode, Subscribe};

use crate::cancel::{CancelCause, CancelScope};
use crate::dispatcher::{SubscriberSpec, SubscriptionId};
use crate::error::BuildError;
use crate::runtime::driver::{
    supervise, ConsumerDriver, ProcessorDriver, ProducerDriver, StageCx, StageEnd,
};
use crate::runtime::edge::Edge;
use crate::runtime::group::Group;
use crate::runtime::inputs::{Input, Inputs};
use crate::runtime::late::{Attach, AttachPoint, LateRegistry};
use crate::runtime::outputs::{Output, Outputs};
use crate::runtime::shared::{DeadLetter, DeadLetterFn, EdgeStat, PipelineShared, StageShared};
use crate::stage::{Consumer, Processor, Producer};
use crate::supervisor::{Backoff, Child, Intensity, Restart, Strategy, Supervisor};
use crate::SubscriberDemand;

static NEXT_PIPELINE: AtomicU64 = AtomicU64::new(1);

/// A typed reference to a stage (or to the instances of a concurrent
/// stage) whose events are of type `T`.
pub struct StageRef<T> {
    pipeline: u64,
    name: Arc<str>,
    ids: Vec<usize>,
    _events: PhantomData<fn() -> T>,
}

impl<T> Clone for StageRef<T> {
    fn clone(&self) -> Self {
        StageRef {
            pipeline: self.pipeline,
            name: self.name.clone(),
            ids: self.ids.clone(),
            _events: PhantomData,
        }
    }
}

impl<T> fmt::Debug for StageRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageRef")
            .field("name", &self.name)
            .field("instances", &self.ids.len())
            .finish()
    }
}

impl<T> StageRef<T> {
    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Producer,
    Processor,
    Consumer,
}

type Slot = Option<Box<dyn Any + Send>>;
type Launch = Box<dyn FnOnce(StageCx, Slot, Slot) -> BoxFuture<'static, StageEnd> + Send>;

struct StageDecl {
    name: Arc<str>,
    shared: Arc<StageShared>,
    kind: Kind,
    restart: Restart,
    inputs: Slot,
    outputs: Slot,
    n_inputs: usize,
    n_outputs: usize,
    partitions: Option<usize>,
    manual: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// Never shares a task with its neighbours (see `Pipeline::spawn`).
    own_task: bool,
    launch: Option<Launch>,
    /// Accepts subscribers while running (`late_subscribers`); such a stage
    /// runs in its own task.
    late: Option<LastCancel>,
    /// Its `Arc<Attach<T>>`, when `late` is set.
    attach: Option<AttachPoint>,
}

struct OutSlot<T> {
    dispatch: Option<Dispatch<T>>,
    subs: Vec<(SubscriptionId, Arc<Edge<T>>, SubscriberSpec<T>)>,
    /// Where late subscribers attach (`late_subscribers`).
    late: Option<Arc<Attach<T>>>,
}

struct InSlot<T> {
    inputs: Vec<Input<T>>,
}

/// One subscription, as validation sees it.
struct SubDecl {
    from: usize,
    to: Option<usize>,
    partition: Option<usize>,
}

/// A pipeline under construction.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, stage, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Pipeline::new();
/// let numbers = p.producer("numbers", source::iter(1..=100u64));
/// let squares = p
///     .processor("square", stage::map(|x: u64| x * x))
///     .subscribe(&numbers, Subscribe::default());
/// let (sum, total) = sink::fold(0u64, |acc, x: u64| acc + x);
/// p.consumer("sum", sum).subscribe(&squares, Subscribe::max_demand(10));
/// let report = p.spawn()?.join().await?;
/// assert_eq!(total.get(), 338_350);
/// assert_eq!(report.stage("sum").unwrap().processed, 100);
/// # Ok(()) }
/// ```
#[must_use = "a pipeline does nothing until it is spawned"]
pub struct Pipeline {
    id: u64,
    stages: Vec<StageDecl>,
    subs: Vec<SubDecl>,
    errors: Vec<BuildError>,
    next_sub: u64,
    next_group: usize,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Option<Backoff>,
    max_attempts: u32,
    dead_letter: Option<DeadLetterFn>,
    stall_timeout: Option<Duration>,
    edge_stats: Vec<EdgeStat>,
    name: Option<String>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "stages",
                &self.stages.iter().map(|s| &*s.name).collect::<Vec<_>>(),
            )
            .field("subscriptions", &self.subs.len())
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .finish()
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    /// An empty pipeline with default supervision: one-for-one, 3 restarts
    /// in 5 s, 3 attempts per batch before it is dead-lettered.
    pub fn new() -> Pipeline {
        Pipeline {
            id: NEXT_PIPELINE.fetch_add(1, Ordering::Relaxed),
            stages: Vec::new(),
            subs: Vec::new(),
            errors: Vec::new(),
            next_sub: 0,
            next_group: 0,
            deadline: None,
            timeout: None,
            strategy: Strategy::default(),
            intensity: Intensity::default(),
            backoff: None,
            max_attempts: 3,
            dead_letter: None,
            stall_timeout: None,
            edge_stats: Vec::new(),
            name: None,
        }
    }

    /// Names the pipeline, for the operator: the `pipeline` field of its
    /// `tracing` span and the `pipeline` label of its metrics (see
    /// `docs/observability.md`). Default: `pipeline-N`, with `N` the
    /// pipeline's id in this process.
    pub fn name(mut self, name: impl Into<String>) -> Pipeline {
        self.name = Some(name.into());
        self
    }

    /// The run must end by `deadline`; past it every stage is cancelled and
    /// the run ends with [`Status::DeadlineExceeded`].
    pub fn deadline(mut self, deadline: Instant) -> Pipeline {
        self.deadline = Some(deadline);
        self
    }

    /// The run must end within `timeout` of [`Pipeline::spawn`].
    pub fn timeout(mut self, timeout: Duration) -> Pipeline {
        self.timeout = Some(timeout);
        self
    }

    /// Sets which stages restart together when one fails.
    pub fn strategy(mut self, strategy: Strategy) -> Pipeline {
        self.strategy = strategy;
        self
    }

    /// Sets the restart intensity: more than `max_restarts` restarts within
    /// `period` and the pipeline fails.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Pipeline {
        self.intensity = Intensity {
            max_restarts,
            period,
        };
        self
    }

    /// Sets the backoff between restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Pipeline {
        self.backoff = Some(backoff);
        self
    }

    /// How many times a batch is handed to a failing stage before it goes to
    /// the dead-letter handler (at least 1; default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Pipeline {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Receives every batch a stage failed on `max_attempts` times. The
    /// default logs a warning; the count is in the report either way.
    pub fn on_dead_letter(
        mut self,
        handler: impl Fn(DeadLetter) + Send + Sync + 'static,
    ) -> Pipeline {
        self.dead_letter = Some(Arc::new(handler));
        self
    }

    /// Reports an edge that has had demand but no events, or events but no
    /// demand, for longer than `timeout` (a `tracing` warning and an entry in
    /// [`Stats::stalls`]).
    pub fn stall_timeout(mut self, timeout: Duration) -> Pipeline {
        self.stall_timeout = Some(timeout);
        self
    }

    fn declare(
        &mut self,
        name: &str,
        kind: Kind,
        inputs: Slot,
        outputs: Slot,
        launch: Launch,
    ) -> usize {
        let name: Arc<str> = Arc::from(name);
        self.stages.push(StageDecl {
            shared: Arc::new(StageShared::new(name.clone())),
            name,
            kind,
            restart: Restart::default(),
            inputs,
            outputs,
            n_inputs: 0,
            n_outputs: 0,
            partitions: None,
            manual: None,
            own_task: false,
            launch: Some(launch),
            late: None,
            attach: None,
        });
        self.stages.len() - 1
    }

    /// Adds a producer with default options. `producer` is a template:
    /// each (re)start of the stage runs a fresh clone of it.
    pub fn producer<T, P>(&mut self, name: &str, producer: P) -> StageRef<T>
    where
        T: Send + 'static,
        P: Producer<T> + Clone,
    {
        self.add_producer(name, producer).build()
    }

    /// Adds a producer and returns a builder for its options.
    pub fn add_producer<T, P>(&mut self, name: &str, producer: P) -> ProducerBuilder<'_, T>
    where
        T: Send + 'static,
        P: Producer<T> + Clone,
    {
        let launch: Launch = Box::new(move |cx: StageCx, _inputs: Slot, outputs: Slot| {
            let outputs = take_outputs::<T>(outputs);
            let driver = ProducerDriver {
                factory: Box::new(move || producer.clone()),
                outputs,
                acc: Vec::new(),
                done: false,
            };
            supervise(cx, driver).boxed()
        });
        let slot = OutSlot::<T> {
            dispatch: Some(Dispatch::demand()),
            subs: Vec::new(),
            late: None,
        };
        let id = self.declare(name, Kind::Producer, None, Some(Box::new(slot)), launch);
        ProducerBuilder {
            pipeline: self,
            id,
            _events: PhantomData,
        }
    }

    /// Adds a processor; finish with [`ProcessorBuilder::subscribe`].
    /// `processor` is a template: each (re)start runs a fresh clone.
    pub fn processor<In, Out, S>(
        &mut self,
        name: &str,
        processor: S,
    ) -> ProcessorBuilder<'_, In, Out>
    where
        In: Send + 'static,
        Out: Send + 'static,
        S: Processor<In, Out> + Clone,
    {
        let manual = processor.manual_demand();
        let make = move |pipeline: &mut Pipeline, name: &str| {
            let processor = processor.clone();
            let launch: Launch = Box::new(move |cx: StageCx, inputs: Slot, outputs: Slot| {
                let driver = ProcessorDriver {
                    factory: Box::new(move || processor.clone()),
                    inputs: take_inputs::<In>(inputs),
                    outputs: take_outputs::<Out>(outputs),
                    finished: false,
                };
                supervise(cx, driver).boxed()
            });
            let outs = OutSlot::<Out> {
                dispatch: None,
                subs: Vec::new(),
                late: None,
            };
            let ins = InSlot::<In> { inputs: Vec::new() };
            pipeline.declare(
                name,
                Kind::Processor,
                Some(Box::new(ins)),
                Some(Box::new(outs)),
                launch,
            )
        };
        let mut common = Common::new(self, name, Box::new(make));
        common.manual = manual;
        ProcessorBuilder {
            common,
            dispatch: None,
            late: None,
        }
    }

    /// Adds a consumer; finish with [`ConsumerBuilder::subscribe`].
    /// `consumer` is a template: each (re)start runs a fresh clone.
    pub fn consumer<T, C>(&mut self, name: &str, consumer: C) -> ConsumerBuilder<'_, T>
    where
        T: Send + 'static,
        C: Consumer<T> + Clone,
    {
        let manual = consumer.manual_demand();
        let make = move |pipeline: &mut Pipeline, name: &str| {
            let consumer = consumer.clone();
            let launch: Launch = Box::new(move |cx: StageCx, inputs: Slot, _outputs: Slot| {
                let driver = ConsumerDriver {
                    factory: Box::new(move || consumer.clone()),
                    inputs: take_inputs::<T>(inputs),
                };
                supervise(cx, driver).boxed()
            });
            let ins = InSlot::<T> { inputs: Vec::new() };
            pipeline.declare(name, Kind::Consumer, Some(Box::new(ins)), None, launch)
        };
        let mut common = Common::new(self, name, Box::new(make));
        common.manual = manual;
        ConsumerBuilder { common }
    }

    /// Subscribes a [`futures::Stream`] to `upstream`: the caller pulls the
    /// pipeline's output, and demand follows what the caller takes.
    pub fn stream<T: Send + 'static>(
        &mut self,
        upstream: &StageRef<T>,
        options: Subscribe,
    ) -> PipelineStream<T> {
        let signal = Arc::new(crate::runtime::signal::Signal::new());
        let limits = match options.limits() {
            Ok(l) => l,
            Err(error) => {
                self.errors.push(BuildError::BadDemand {
                    stage: "stream".into(),
                    upstream: upstream.name.to_string(),
                    error,
                });
                Default::default()
            }
        };
        let mut demands = Vec::new();
        let mut edges = Vec::new();
        if upstream.pipeline != self.id {
            self.errors.push(BuildError::UnknownStage {
                stage: "stream".into(),
                upstream: upstream.name.to_string(),
            });
        }
        let ours = upstream.pipeline == self.id;
        for &up in upstream.ids.iter().filter(|_| ours) {
            let spec = SubscriberSpec {
                partition: options.partition,
                selector: None,
            };
            if let Some(edge) =
                self.connect::<T>(up, None, signal.clone(), spec, &options, "stream")
            {
                let mut demand = SubscriberDemand::new(limits);
                edge.ask(demand.initial_ask(), None);
                edges.push(edge);
                demands.push(demand);
            }
        }
        PipelineStream::new(edges, demands, signal)
    }

    /// Subscribes a probe driven by hand (the testkit's manual subscriber):
    /// the edges to `upstream`'s instances and the signal they wake, with no
    /// demand asked yet. `name` is what stats call the subscriber.
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn probe_edges<T: Send + 'static>(
        &mut self,
        upstream: &StageRef<T>,
        options: &Subscribe,
        name: &str,
    ) -> (Vec<Arc<Edge<T>>>, Arc<crate::runtime::signal::Signal>) {
        let signal = Arc::new(crate::runtime::signal::Signal::new());
        if upstream.pipeline != self.id {
            self.errors.push(BuildError::UnknownStage {
                stage: name.into(),
                upstream: upstream.name.to_string(),
            });
            return (Vec::new(), signal);
        }
        let mut edges = Vec::new();
        for &up in &upstream.ids {
            let spec = SubscriberSpec {
                partition: options.partition,
                selector: None,
            };
            if let Some(edge) = self.connect::<T>(up, None, signal.clone(), spec, options, name) {
                edges.push(edge);
            }
        }
        (edges, signal)
    }

    /// Creates the edge `from → to`, registering it with `from`'s outputs.
    fn connect<T: Send + 'static>(
        &mut self,
        from: usize,
        to: Option<usize>,
        down_signal: Arc<crate::runtime::signal::Signal>,
        spec: SubscriberSpec<T>,
        options: &Subscribe,
        to_name: &str,
    ) -> Option<Arc<Edge<T>>> {
        let up = &mut self.stages[from];
        let observer = options.observer.as_ref().map(|o| o.0.clone());
        let edge = Arc::new(Edge::new(up.shared.signal.clone(), down_signal).observed(observer));
        let id = SubscriptionId(self.next_sub);
        self.next_sub += 1;
        let slot = up
            .outputs
            .as_mut()
            .and_then(|s| s.downcast_mut::<OutSlot<T>>())?;
        slot.subs.push((id, edge.clone(), spec));
        up.n_outputs += 1;
        let e = edge.clone();
        self.subs.push(SubDecl {
            from,
            to,
            partition: options.partition,
        });
        let from_name = up.name.clone();
        let to_name: Arc<str> = Arc::from(to_name);
        let stat = EdgeStat {
            from: from_name,
            to: to_name,
            snapshot: Box::new(move || e.snapshot()),
            stall: Mutex::new(Default::default()),
        };
        self.edge_stats.push(stat);
        Some(edge)
    }
}

fn take_outputs<T: Send + 'static>(slot: Slot) -> Outputs<T> {
    let slot = slot
        .and_then(|s| s.downcast::<OutSlot<T>>().ok())
        .map(|b| *b);
    let Some(mut slot) = slot else {
        return Outputs::new(
            Box::new(crate::dispatcher::DemandDispatcher::new()),
            Vec::new(),
        );
    };
    let dispatch = slot.dispatch.take().unwrap_or_default();
    let partitions = dispatch.partitions;
    let mut dispatcher = (dispatch.make)();
    let mut list = Vec::new();
    for (id, edge, spec) in slot.subs {
        let partition = spec.partition;
        // Validated at build time; a refusal here leaves the edge closed.
        let open = dispatcher.subscribe(id, spec).is_ok();
        list.push(Output {
            id,
            edge,
            open,
            partition,
        });
    }
    if let (Some(late), Some(n)) = (&slot.late, partitions) {
        let mut owners = vec![None; n];
        for o in list.iter().filter(|o| o.open) {
            if let Some(p) = o.partition.filter(|&p| p < n) {
                owners[p] = Some(o.id);
            }
        }
        late.set_owners(owners);
    }
    Outputs::new(dispatcher, list).with_late(slot.late)
}

fn take_inputs<T: Send + 'static>(slot: Slot) -> Inputs<T> {
    let inputs = slot
        .and_then(|s| s.downcast::<InSlot<T>>().ok())
        .map(|b| b.inputs)
        .unwrap_or_default();
    Inputs::new(inputs)
}

impl Pipeline {
    /// Checks the graph without running it: every error [`Pipeline::spawn`]
    /// would return.
    pub fn validate(&self) -> Result<(), BuildError> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        if self.stages.is_empty() {
            return Err(BuildError::Empty);
        }
        let mut seen = HashSet::new();
        for s in &self.stages {
            if !seen.insert(&*s.name) {
                return Err(BuildError::DuplicateName(s.name.to_string()));
            }
        }
        for s in &self.stages {
            if s.kind != Kind::Producer && s.n_inputs == 0 {
                return Err(BuildError::NotFed(s.name.to_string()));
            }
            // A stage that accepts late subscribers may start with none.
            if s.kind != Kind::Consumer && s.n_outputs == 0 && s.late.is_none() {
                return Err(BuildError::NoSubscribers(s.name.to_string()));
            }
        }
        for (i, s) in self.stages.iter().enumerate() {
            let Some(partitions) = s.partitions else {
                continue;
            };
            let mut taken = vec![false; partitions];
            for sub in self.subs.iter().filter(|d| d.from == i) {
                let subscriber = sub
                    .to
                    .map_or_else(|| "stream".to_owned(), |t| self.stages[t].name.to_string());
                let error = match sub.partition {
                    Some(p) if p < partitions && !taken[p] => {
                        taken[p] = true;
                        continue;
                    }
                    Some(p) if p < partitions => {
                        crate::dispatcher::DispatchError::PartitionTaken(p)
                    }
                    partition => crate::dispatcher::DispatchError::BadPartition {
                        partition,
                        partitions,
                    },
                };
                return Err(BuildError::Dispatch {
                    stage: s.name.to_string(),
                    subscriber,
                    error,
                });
            }
            // Late subscribers may take the rest; until then those
            // partitions buffer up to their bound, then hold the producer.
            if s.late.is_some() {
                continue;
            }
            if let Some(p) = taken.iter().position(|t| !t) {
                return Err(BuildError::UncoveredPartition {
                    stage: s.name.to_string(),
                    partition: p,
                });
            }
        }
        self.topological_order().map(|_| ())
    }

    /// Kahn's algorithm: stages in an order where every upstream comes first.
    fn topological_order(&self) -> Result<Vec<usize>, BuildError> {
        let n = self.stages.len();
        let mut indegree = vec![0usize; n];
        for s in &self.subs {
            if let Some(t) = s.to {
                indegree[t] += 1;
            }
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for s in self.subs.iter().filter(|s| s.from == i) {
                if let Some(t) = s.to {
                    indegree[t] -= 1;
                    if indegree[t] == 0 {
                        ready.push(t);
                    }
                }
            }
        }
        match (0..n).find(|&i| indegree[i] > 0) {
            Some(i) => Err(BuildError::Cycle(self.stages[i].name.to_string())),
            None => Ok(order),
        }
    }

    fn downstream_of(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.stages.len()];
        let mut stack = vec![i];
        while let Some(x) = stack.pop() {
            for s in self.subs.iter().filter(|s| s.from == x) {
                if let Some(t) = s.to {
                    if !seen[t] {
                        seen[t] = true;
                        stack.push(t);
                    }
                }
            }
        }
        (0..seen.len()).filter(|&j| seen[j] && j != i).collect()
    }

    /// Validates the graph and starts every stage as a task on the current
    /// tokio runtime.
    ///
    /// The returned handle owns the run: dropping it cancels every stage
    /// (see [`PipelineHandle::detach`]).
    pub fn spawn(mut self) -> Result<PipelineHandle, BuildError> {
        self.validate()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let now = Instant::now();
        let deadline = match (self.deadline, self.timeout) {
            (Some(d), Some(t)) => Some(d.min(now + t)),
            (d, t) => d.or(t.map(|t| now + t)),
        };
        let children = (0..self.stages.len())
            .map(|i| Child {
                restart: self.stages[i].restart,
                downstream: self.downstream_of(i),
            })
            .collect();
        let supervisor = Supervisor::new(
            children,
            self.strategy,
            self.intensity,
            self.backoff.take().unwrap_or_default(),
        );
        let scope = CancelScope::new();
        let dead_letter = self
            .dead_letter
            .take()
            .unwrap_or_else(|| Arc::new(|_dl: DeadLetter| {}));
        let name: Arc<str> = match self.name.take() {
            Some(name) => name.into(),
            None => format!("pipeline-{}", self.id).into(),
        };
        let span = crate::observe::span::pipeline(&name, self.id);
        let shared = Arc::new(PipelineShared {
            name,
            span,
            scope: scope.clone(),
            stages: self.stages.iter().map(|s| s.shared.clone()).collect(),
            edges: std::mem::take(&mut self.edge_stats),
            supervisor: Mutex::new(supervisor),
            failure: Mutex::new(None),
            dead_letter,
            max_attempts: self.max_attempts,
            deadline,
            live: AtomicUsize::new(self.stages.len()),
            all_done: tokio::sync::Notify::new(),
            stall_timeout: self.stall_timeout,
            stalls: Mutex::new(Vec::new()),
            late: LateRegistry {
                pipeline: self.id,
                statics: self.stages.len(),
                points: self.stages.iter().map(|s| s.attach.clone()).collect(),
                next_sub: AtomicU64::new(self.next_sub),
                intensity: self.intensity,
                runtime: rt.clone(),
                stages: Mutex::new(Vec::new()),
                edges: Mutex::new(Vec::new()),
            },
        });
        if deadline.is_some_and(|d| d <= now) {
            scope.cancel(CancelCause::DeadlineExceeded);
        }
        let watcher = rt.spawn(tracing::Instrument::instrument(
            handle::watch(shared.clone()),
            shared.span.clone(),
        ));
        #[cfg(feature = "metrics")]
        rt.spawn(crate::observe::metrics::run(shared.clone()));
        let groups = self.task_groups();
        // Which stages hand their output to a subscriber in their own task
        // (the upstream side of a chain link): they let it run at once.
        let mut task_of = vec![0; self.stages.len()];
        for (g, group) in groups.iter().enumerate() {
            for &i in group {
                task_of[i] = g;
            }
        }
        let hands_off: Vec<bool> = (0..self.stages.len())
            .map(|i| {
                self.subs
                    .iter()
                    .any(|s| s.from == i && s.to.is_some_and(|t| task_of[t] == task_of[i]))
            })
            .collect();
        let mut members = Vec::with_capacity(self.stages.len());
        for (index, decl) in self.stages.iter_mut().enumerate() {
            let cx = StageCx {
                pipeline: shared.clone(),
                index,
                stage: decl.shared.clone(),
                scope: scope.child(),
                manual: decl.manual.clone(),
                supervisor: None,
                hands_off: hands_off[index],
            };
            let Some(launch) = decl.launch.take() else {
                members.push(None);
                continue;
            };
            let fut = launch(cx, decl.inputs.take(), decl.outputs.take());
            let done = shared.clone();
            // A combinator, not a boxed `async` block: each poll of the
            // stage passes through this, and the stage is boxed already.
            members.push(Some(fut.map(move |end| {
                done.stage_ended();
                (index, end)
            })));
        }
        let mut tasks = Vec::with_capacity(groups.len());
        for group in groups {
            let (stages, mut futs): (Vec<usize>, Vec<_>) = group
                .iter()
                .filter_map(|&i| Some((i, members[i].take()?)))
                .unzip();
            tasks.push(match futs.len() {
                0 => continue,
                1 => {
                    let fut = futs.remove(0);
                    rt.spawn(async move { vec![fut.await] })
                }
                _ => {
                    let group = Group::new(futs);
                    // A member's stage waits on its signals only inside the
                    // group, so they can wake its member waker directly.
                    for (member, &i) in stages.iter().enumerate() {
                        let stage = &self.stages[i].shared;
                        stage.signal.bind(group.member_waker(member));
                        stage.control_signal.bind(group.member_waker(member));
                    }
                    rt.spawn(group)
                }
            });
        }
        shared.span.in_scope(|| {
            tracing::debug!(
                stages = self.stages.len(),
                tasks = tasks.len(),
                "pipeline spawned"
            )
        });
        Ok(PipelineHandle::new(shared, tasks, watcher))
    }

    /// Which stages share a task. A stage joins its upstream's task when
    /// the subscription between them is the only input of the one and the
    /// only output of the other (a straight chain, where every hand-off
    /// would otherwise be a task wake-up) and neither asked for its own
    /// task. Stages that fan out, fan in or run as concurrent instances
    /// keep their own tasks, so they run in parallel.
    fn task_groups(&self) -> Vec<Vec<usize>> {
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let n = self.stages.len();
        let mut parent: Vec<usize> = (0..n).collect();
        for sub in &self.subs {
            let Some(to) = sub.to else { continue };
            let (up, down) = (&self.stages[sub.from], &self.stages[to]);
            // A stage that accepts late subscribers may gain outputs while
            // it runs, which a chain's shared task does not allow for.
            let alone = |s: &StageDecl| s.own_task || s.late.is_some();
            if up.n_outputs == 1 && down.n_inputs == 1 && !alone(up) && !alone(down) {
                let (a, b) = (root(&mut parent, sub.from), root(&mut parent, to));
                parent[b] = a;
            }
        }
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 0..n {
            let r = root(&mut parent, i);
            groups[r].push(i);
        }
        groups.retain(|g| !g.is_empty());
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sink, source, stage};

    fn groups(p: &Pipeline) -> Vec<Vec<&str>> {
        p.task_groups()
            .into_iter()
            .map(|g| g.iter().map(|&i| &*p.stages[i].name).collect())
            .collect()
    }

    #[test]
    fn a_straight_chain_shares_one_task() {
        let mut p = Pipeline::new();
        let a = p.producer("a", source::iter(0..10u64));
        let b = p
            .processor("b", stage::map(|x: u64| x))
            .subscribe(&a, Subscribe::default());
        p.consumer("c", sink::drain())
            .subscribe(&b, Subscribe::default());
        assert_eq!(groups(&p), vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn own_task_splits_the_chain_around_the_stage() {
        let mut p = Pipeline::new();
        let a = p.producer("a", source::iter(0..10u64));
        let b = p
            .processor("b", stage::map(|x: u64| x))
            .own_task()
            .subscribe(&a, Subscribe::default());
        let c = p
            .processor("c", stage::map(|x: u64| x))
            .subscribe(&b, Subscribe::default());
        p.consumer("d", sink::drain())
            .subscribe(&c, Subscribe::default());
        assert_eq!(groups(&p), vec![vec!["a"], vec!["b"], vec!["c", "d"]]);
    }

    #[test]
    fn a_stage_that_accepts_late_subscribers_keeps_its_own_task() {
        let mut p = Pipeline::new();
        let a = p.producer("a", source::iter(0..10u64));
        let b = p
            .processor("b", stage::map(|x: u64| x))
            .late_subscribers(LastCancel::Wait)
            .subscribe(&a, Subscribe::default());
        let c = p
            .processor("c", stage::map(|x: u64| x))
            .subscribe(&b, Subscribe::default());
        p.consumer("d", sink::drain())
            .subscribe(&c, Subscribe::default());
        assert_eq!(groups(&p), vec![vec!["a"], vec!["b"], vec!["c", "d"]]);
    }

    #[test]
    fn fan_out_fan_in_and_instances_keep_their_own_tasks() {
        let mut p = Pipeline::new();
        let a = p
            .add_producer("a", source::iter(0..10u64))
            .dispatch(Dispatch::broadcast())
            .build();
        let b = p
            .processor("b", stage::map(|x: u64| x))
            .subscribe(&a, Subscribe::default());
        let c = p
            .processor("c", stage::map(|x: u64| x))
            .subscribe(&a, Subscribe::default());
        // Fan-in: d has two inputs.
        let d = p
            .processor("d", stage::map(|x: u64| x))
            .also_subscribe(&b, Subscribe::default())
            .subscribe(&c, Subscribe::default());
        // Two instances behind d's dispatcher.
        let e = p
            .processor("e", stage::map(|x: u64| x))
            .concurrency(2)
            .subscribe(&d, Subscribe::default());
        p.consumer("f", sink::drain())
            .subscribe(&e, Subscribe::default());
        assert_eq!(
            groups(&p),
            vec![
                vec!["a"],
                vec!["b"],
                vec!["c"],
                vec!["d"],
                vec!["e[0]"],
                vec!["e[1]"],
                vec!["f"]
            ]
        );
    }
}
