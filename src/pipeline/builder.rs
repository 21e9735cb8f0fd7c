//! Stage builders: options, then the terminal `subscribe` / `build`.

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Dispatch, InSlot, LastCancel, OutSlot, Pipeline, StageRef, Subscribe};
use crate::dispatcher::{Selector, SubscriberSpec};
use crate::error::BuildError;
use crate::runtime::edge::Edge;
use crate::runtime::inputs::Input;
use crate::runtime::late::Attach;
use crate::supervisor::Restart;
use crate::SubscriberDemand;

/// Options of a producer; finish with [`ProducerBuilder::build`].
#[must_use = "call .build() to get the stage's reference"]
pub struct ProducerBuilder<'p, T> {
    pub(super) pipeline: &'p mut Pipeline,
    pub(super) id: usize,
    pub(super) _events: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ProducerBuilder<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("stage", &self.pipeline.stages[self.id].name)
            .finish()
    }
}

impl<'p, T: Send + 'static> ProducerBuilder<'p, T> {
    /// Sets the restart type (default [`Restart::Transient`]).
    pub fn restart(self, restart: Restart) -> Self {
        self.pipeline.stages[self.id].restart = restart;
        self
    }

    /// Runs this stage in a task of its own.
    ///
    /// By default the stages of a straight chain (each subscription the only
    /// input of one stage and the only output of the other) share one task,
    /// so a hand-off between them costs no task wake-up. That suits stages
    /// that do little work per event. A producer that does heavy CPU work
    /// per event should run in its own task, so that it runs in parallel
    /// with its subscriber.
    ///
    /// ```
    /// use demandflow::{sink, source, Pipeline, Subscribe};
    ///
    /// let mut p = Pipeline::new();
    /// let n = p.add_producer("n", source::iter(0..10u64)).own_task().build();
    /// p.consumer("sink", sink::drain()).subscribe(&n, Subscribe::default());
    /// ```
    pub fn own_task(self) -> Self {
        self.pipeline.stages[self.id].own_task = true;
        self
    }

    /// Sets how events are routed among subscribers (default
    /// [`Dispatch::demand`]).
    pub fn dispatch(self, dispatch: Dispatch<T>) -> Self {
        let decl = &mut self.pipeline.stages[self.id];
        decl.partitions = dispatch.partitions;
        if let Some(slot) = decl
            .outputs
            .as_mut()
            .and_then(|s| s.downcast_mut::<OutSlot<T>>())
        {
            slot.dispatch = Some(dispatch);
        }
        self
    }

    /// Lets subscribers join and leave this producer while the pipeline
    /// runs (see [`PipelineHandle::consumer`](crate::PipelineHandle::consumer)),
    /// and says what it does when its last subscriber leaves.
    ///
    /// Such a stage runs in its own task (it never shares a chain's task,
    /// since it may gain outputs), may be built with no subscriber at all,
    /// and, under partition dispatch, may leave partitions for late
    /// subscribers (their events wait in the partition's bounded buffer,
    /// then hold the producer back). It never ends for lack of subscribers
    /// before its first one came.
    ///
    /// ```
    /// use demandflow::{sink, source, Dispatch, LastCancel, Pipeline, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut p = Pipeline::new();
    /// let answer = p
    ///     .add_producer("answer", source::iter(0..100u64))
    ///     .dispatch(Dispatch::broadcast())
    ///     .late_subscribers(LastCancel::End)
    ///     .build();
    /// let run = p.spawn()?;
    /// let (viewer, seen) = sink::collect();
    /// run.consumer("viewer", viewer).subscribe(&answer, Subscribe::max_demand(10))?;
    /// let report = run.join().await?;
    /// assert_eq!(seen.len(), 100); // it was there from the start
    /// assert_eq!(report.stage("viewer").unwrap().processed, 100);
    /// # Ok(()) }
    /// ```
    pub fn late_subscribers(self, when_last_leaves: LastCancel) -> Self {
        let decl = &mut self.pipeline.stages[self.id];
        let attach = Arc::new(Attach::<T>::new(when_last_leaves == LastCancel::Wait));
        decl.late = Some(when_last_leaves);
        decl.attach = Some(attach.clone());
        if let Some(slot) = decl
            .outputs
            .as_mut()
            .and_then(|s| s.downcast_mut::<OutSlot<T>>())
        {
            slot.late = Some(attach);
        }
        self
    }

    /// The stage's reference, for subscribers.
    pub fn build(self) -> StageRef<T> {
        let decl = &self.pipeline.stages[self.id];
        StageRef {
            pipeline: self.pipeline.id,
            name: decl.name.clone(),
            ids: vec![self.id],
            _events: PhantomData,
        }
    }
}

type Make<'p> = Box<dyn FnMut(&mut Pipeline, &str) -> usize + 'p>;

struct PendingSub<In> {
    upstream: StageRef<In>,
    options: Subscribe,
    selector: Option<Selector<In>>,
}

/// What processor and consumer builders share.
pub(super) struct Common<'p, In> {
    pipeline: &'p mut Pipeline,
    name: String,
    make: Make<'p>,
    subs: Vec<PendingSub<In>>,
    concurrency: usize,
    restart: Restart,
    selector: Option<Selector<In>>,
    /// The stage asks for its own demand (all subscriptions manual).
    pub(super) manual: bool,
    own_task: bool,
}

impl<'p, In: Send + 'static> Common<'p, In> {
    pub(super) fn new(pipeline: &'p mut Pipeline, name: &str, make: Make<'p>) -> Self {
        Common {
            pipeline,
            name: name.to_owned(),
            make,
            subs: Vec::new(),
            concurrency: 1,
            restart: Restart::default(),
            selector: None,
            manual: false,
            own_task: false,
        }
    }

    fn push(&mut self, upstream: &StageRef<In>, options: Subscribe) {
        self.subs.push(PendingSub {
            upstream: upstream.clone(),
            options,
            selector: self.selector.clone(),
        });
    }

    /// Declares the stage's instances and wires their subscriptions.
    fn finish(mut self) -> (Vec<usize>, &'p mut Pipeline, String) {
        let p = &mut *self.pipeline;
        let n = self.concurrency;
        if n == 0 {
            p.errors
                .push(BuildError::ZeroConcurrency(self.name.clone()));
        }
        let mut ids = Vec::new();
        for i in 0..n.max(1) {
            let name = if n > 1 {
                format!("{}[{i}]", self.name)
            } else {
                self.name.clone()
            };
            let id = (self.make)(p, &name);
            if let Some(shared) = Arc::get_mut(&mut p.stages[id].shared) {
                shared.instance = i;
            }
            p.stages[id].restart = self.restart;
            p.stages[id].own_task = self.own_task;
            ids.push(id);
        }
        for &id in &ids {
            let to_name = p.stages[id].name.to_string();
            let down_signal = p.stages[id].shared.signal.clone();
            let mut inputs = Vec::new();
            let mut manual_edges: Vec<Arc<Edge<In>>> = Vec::new();
            for sub in &self.subs {
                if sub.upstream.pipeline != p.id {
                    p.errors.push(BuildError::UnknownStage {
                        stage: to_name.clone(),
                        upstream: sub.upstream.name.to_string(),
                    });
                    continue;
                }
                let limits = match sub.options.limits() {
                    Ok(l) => l,
                    Err(error) => {
                        p.errors.push(BuildError::BadDemand {
                            stage: to_name.clone(),
                            upstream: sub.upstream.name.to_string(),
                            error,
                        });
                        continue;
                    }
                };
                let group = p.next_group;
                p.next_group += 1;
                for &up in &sub.upstream.ids {
                    let spec = SubscriberSpec {
                        partition: sub.options.partition,
                        selector: sub.selector.clone(),
                    };
                    let Some(edge) = p.connect::<In>(
                        up,
                        Some(id),
                        down_signal.clone(),
                        spec,
                        &sub.options,
                        &to_name,
                    ) else {
                        continue;
                    };
                    let manual = sub.options.manual || self.manual;
                    if manual {
                        manual_edges.push(edge.clone());
                    }
                    inputs.push(Input {
                        edge,
                        demand: (!manual).then(|| SubscriberDemand::new(limits)),
                        mode: sub.options.cancel,
                        upstream: p.stages[up].name.clone(),
                        group,
                        open: true,
                        idle_timeout: sub.options.idle_timeout,
                        last_event: None,
                    });
                }
            }
            let decl = &mut p.stages[id];
            decl.n_inputs = inputs.len();
            if let Some(slot) = decl
                .inputs
                .as_mut()
                .and_then(|s| s.downcast_mut::<InSlot<In>>())
            {
                slot.inputs = inputs;
            }
            if !manual_edges.is_empty() {
                decl.manual = Some(Arc::new(move |n: usize| {
                    for e in &manual_edges {
                        e.ask(n, None);
                    }
                }));
            }
        }
        let name = self.name.clone();
        (ids, self.pipeline, name)
    }
}

/// Options and subscriptions of a processor; finish with
/// [`ProcessorBuilder::subscribe`].
#[must_use = "call .subscribe(..) to add the stage"]
pub struct ProcessorBuilder<'p, In, Out> {
    pub(super) common: Common<'p, In>,
    pub(super) dispatch: Option<Dispatch<Out>>,
    pub(super) late: Option<LastCancel>,
}

impl<In, Out> std::fmt::Debug for ProcessorBuilder<'_, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorBuilder")
            .field("stage", &self.common.name)
            .field("concurrency", &self.common.concurrency)
            .finish()
    }
}

impl<'p, In: Send + 'static, Out: Send + 'static> ProcessorBuilder<'p, In, Out> {
    /// Sets the restart type (default [`Restart::Transient`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.common.restart = restart;
        self
    }

    /// Runs `n` instances of the stage, each subscribed to the same
    /// upstreams (whose dispatcher balances between them); subscribers of
    /// this stage subscribe to all of them.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.common.concurrency = n;
        self
    }

    /// Runs this stage in a task of its own.
    ///
    /// By default the stages of a straight chain (each subscription the only
    /// input of one stage and the only output of the other) share one task,
    /// so a hand-off between them costs no task wake-up. That suits stages
    /// that do little work per event. A stage that does heavy CPU work
    /// should run in its own task (or as [`concurrency`](Self::concurrency)
    /// instances), so that it runs in parallel with its neighbours.
    ///
    /// ```
    /// use demandflow::{sink, source, stage, Pipeline, Subscribe};
    ///
    /// let mut p = Pipeline::new();
    /// let n = p.producer("n", source::iter(0..10u64));
    /// let hashed = p
    ///     .processor("hash", stage::map(|x: u64| x.wrapping_mul(0x9E37_79B9)))
    ///     .own_task()
    ///     .subscribe(&n, Subscribe::default());
    /// p.consumer("sink", sink::drain()).subscribe(&hashed, Subscribe::default());
    /// ```
    pub fn own_task(mut self) -> Self {
        self.common.own_task = true;
        self
    }

    /// Sets how this stage routes its output among its subscribers.
    pub fn dispatch(mut self, dispatch: Dispatch<Out>) -> Self {
        self.dispatch = Some(dispatch);
        self
    }

    /// Only events for which `keep` returns `true` reach this stage from a
    /// broadcast upstream (subscriptions added after this call).
    pub fn selector(mut self, keep: impl Fn(&In) -> bool + Send + Sync + 'static) -> Self {
        self.common.selector = Some(Arc::new(keep));
        self
    }

    /// Lets subscribers join and leave this stage while the pipeline runs;
    /// see [`ProducerBuilder::late_subscribers`].
    pub fn late_subscribers(mut self, when_last_leaves: LastCancel) -> Self {
        self.late = Some(when_last_leaves);
        self
    }

    /// Adds a subscription and keeps building (for several upstreams).
    pub fn also_subscribe(mut self, upstream: &StageRef<In>, options: Subscribe) -> Self {
        self.common.push(upstream, options);
        self
    }

    /// Adds the last subscription and the stage; returns its reference.
    pub fn subscribe(mut self, upstream: &StageRef<In>, options: Subscribe) -> StageRef<Out> {
        self.common.push(upstream, options);
        let mut dispatch = self.dispatch.take();
        let (ids, p, name) = self.common.finish();
        for &id in &ids {
            let d = match ids.len() {
                1 => dispatch.take(),
                // Each instance needs its own dispatcher; a custom one is
                // only meaningful for a single instance.
                _ => None,
            };
            if let Some(mode) = self.late {
                let attach = Arc::new(Attach::<Out>::new(mode == LastCancel::Wait));
                let decl = &mut p.stages[id];
                decl.late = Some(mode);
                decl.attach = Some(attach.clone());
                if let Some(slot) = decl
                    .outputs
                    .as_mut()
                    .and_then(|s| s.downcast_mut::<OutSlot<Out>>())
                {
                    slot.late = Some(attach);
                }
            }
            if let Some(d) = d {
                p.stages[id].partitions = d.partitions;
                if let Some(slot) = p.stages[id]
                    .outputs
                    .as_mut()
                    .and_then(|s| s.downcast_mut::<OutSlot<Out>>())
                {
                    slot.dispatch = Some(d);
                }
            }
        }
        StageRef {
            pipeline: p.id,
            name: Arc::from(name.as_str()),
            ids,
            _events: PhantomData,
        }
    }
}

/// Options and subscriptions of a consumer; finish with
/// [`ConsumerBuilder::subscribe`].
#[must_use = "call .subscribe(..) to add the stage"]
pub struct ConsumerBuilder<'p, T> {
    pub(super) common: Common<'p, T>,
}

impl<T> std::fmt::Debug for ConsumerBuilder<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("stage", &self.common.name)
            .field("concurrency", &self.common.concurrency)
            .finish()
    }
}

impl<'p, T: Send + 'static> ConsumerBuilder<'p, T> {
    /// Sets the restart type (default [`Restart::Transient`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.common.restart = restart;
        self
    }

    /// Runs this stage in a task of its own.
    ///
    /// By default the stages of a straight chain (each subscription the only
    /// input of one stage and the only output of the other) share one task,
    /// so a hand-off between them costs no task wake-up. That suits stages
    /// that do little work per event. A consumer that does heavy CPU work
    /// should run in its own task (or as [`concurrency`](Self::concurrency)
    /// instances), so that it runs in parallel with its upstream.
    ///
    /// ```
    /// use demandflow::{sink, source, Pipeline, Subscribe};
    ///
    /// let mut p = Pipeline::new();
    /// let n = p.producer("n", source::iter(0..10u64));
    /// p.consumer("sink", sink::drain())
    ///     .own_task()
    ///     .subscribe(&n, Subscribe::default());
    /// ```
    pub fn own_task(mut self) -> Self {
        self.common.own_task = true;
        self
    }

    /// Runs `n` instances of the consumer behind the upstream's dispatcher.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.common.concurrency = n;
        self
    }

    /// Only events for which `keep` returns `true` reach this consumer from a
    /// broadcast upstream (subscriptions added after this call).
    pub fn selector(mut self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.common.selector = Some(Arc::new(keep));
        self
    }

    /// Adds a subscription and keeps building (for several upstreams).
    pub fn also_subscribe(mut self, upstream: &StageRef<T>, options: Subscribe) -> Self {
        self.common.push(upstream, options);
        self
    }

    /// Adds the last subscription and the stage.
    pub fn subscribe(mut self, upstream: &StageRef<T>, options: Subscribe) {
        self.common.push(upstream, options);
        self.common.finish();
    }
}
