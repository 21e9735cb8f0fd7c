//! Subscribers that join and leave a running pipeline (GenStage's
//! `GenStage.sync_subscribe/3` and `GenStage.cancel/2` on a live producer).
//!
//! A stage built with `late_subscribers` keeps an attachment point
//! (`runtime::late::Attach`). [`PipelineHandle::consumer`] and
//! [`PipelineHandle::processor`] create the new stage's edges, offer them
//! there, and start the new stage in a task of its own, under a one-stage
//! supervisor with the pipeline's restart intensity. The upstream's driver
//! adopts the edges at its next collect; from then on the subscription
//! follows the same protocol as any other (D1-D4 are enforced by the same
//! edge and dispatcher code). The new stage is a child of the pipeline's
//! cancel scope, counts as a live stage (so `join` waits for it and its
//! ledger is in the report), and its edges are in `stats()`.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt;

use super::{Dispatch, StageRef, Subscribe};
use crate::demand::SubscriberDemand;
use crate::dispatcher::{Selector, SubscriberSpec, SubscriptionId};
use crate::error::{StageFailure, SubscribeError};
use crate::runtime::driver::{supervise, ConsumerDriver, ProcessorDriver, StageCx, StageEnd};
use crate::runtime::edge::Edge;
use crate::runtime::inputs::{Input, Inputs};
use crate::runtime::late::{Attach, LateStage, Pending, Refused};
use crate::runtime::outputs::Outputs;
use crate::runtime::shared::{EdgeStat, PipelineShared, StageShared};
use crate::stage::{Consumer, Processor};
use crate::supervisor::{Backoff, Child, Restart, Strategy, Supervisor};

/// What a stage that accepts late subscribers does when its last
/// subscriber leaves (GenStage leaves a producer running with no
/// consumers and lets demand accumulate; a demandflow stage chooses).
///
/// Either way the stage does not end for lack of subscribers before its
/// first one came, and it still ends when its own work ends (a finished
/// stream, its inputs ended, a cancel, a shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastCancel {
    /// End, as a stage with only build-time subscribers does: nobody is left
    /// to serve (an HTTP producer drops its body). The default.
    #[default]
    End,
    /// Keep running for the next subscriber. With no subscriber there is
    /// no demand, so a producer is not called and a processor takes no
    /// input: the stage waits, holding nothing beyond its bounded buffers.
    Wait,
}

/// A subscription made while the pipeline runs; [`Subscription::cancel`]
/// ends it.
///
/// Dropping it does not cancel: as in GenStage, a subscription lasts until
/// it is cancelled or its upstream ends.
pub struct Subscription {
    stage: Arc<str>,
    cancels: Vec<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("stage", &self.stage)
            .field("edges", &self.cancels.len())
            .finish()
    }
}

impl Subscription {
    /// The subscribing stage's name.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Unsubscribes (GenStage's `cancel/2`). The upstream sends nothing
    /// more and releases the subscriber's demand (and partition); what was
    /// already delivered is still handled; then the subscribing stage sees
    /// a normal end of this input and, having no other, finishes and ends
    /// `completed`. Idempotent, non-blocking.
    pub fn cancel(&self) {
        for c in &self.cancels {
            c();
        }
    }
}

/// A consumer joining a running pipeline; from
/// [`PipelineHandle::consumer`](crate::PipelineHandle::consumer), finish with
/// [`LateConsumer::subscribe`].
#[must_use = "call .subscribe(..) to start the stage"]
pub struct LateConsumer<T, C> {
    pub(super) shared: Arc<PipelineShared>,
    pub(super) name: Arc<str>,
    pub(super) consumer: C,
    pub(super) restart: Restart,
    pub(super) selector: Option<Selector<T>>,
}

impl<T, C> std::fmt::Debug for LateConsumer<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateConsumer")
            .field("stage", &self.name)
            .finish()
    }
}

impl<T: Send + 'static, C: Consumer<T> + Clone> LateConsumer<T, C> {
    /// Sets the restart type (default [`Restart::Transient`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Only events for which `keep` returns `true` reach this consumer from
    /// a broadcast upstream.
    pub fn selector(mut self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.selector = Some(Arc::new(keep));
        self
    }

    /// Subscribes to `upstream` (every instance of it) and starts the
    /// consumer. Events reach it from this point on: under broadcast, what
    /// is emitted from now (and what the dispatcher still holds for
    /// everyone); under demand dispatch, its share of what comes next;
    /// under partition dispatch, its partition's buffered events first.
    ///
    /// The edge is typed: a consumer of `String` cannot subscribe to a stage
    /// of `u64`.
    ///
    /// ```compile_fail
    /// use demandflow::{sink, source, LastCancel, Pipeline, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut p = Pipeline::new();
    /// let n = p
    ///     .add_producer("n", source::iter(0..10u64))
    ///     .late_subscribers(LastCancel::End)
    ///     .build();
    /// let run = p.spawn().unwrap();
    /// let (texts, _) = sink::collect::<String>();
    /// run.consumer("texts", texts).subscribe(&n, Subscribe::default());
    /// # }
    /// ```
    pub fn subscribe(
        self,
        upstream: &StageRef<T>,
        options: Subscribe,
    ) -> Result<Subscription, SubscribeError> {
        let manual = self.consumer.manual_demand();
        let LateConsumer {
            shared,
            name,
            consumer,
            restart,
            selector,
        } = self;
        let mut started = start(&shared, &name, upstream, &options, selector, manual)?;
        let driver = ConsumerDriver {
            factory: Box::new(move || consumer.clone()),
            inputs: Inputs::new(std::mem::take(&mut started.inputs)),
        };
        let (_, sub) = spawn_late(&shared, started, restart, None, move |cx| {
            supervise(cx, driver).boxed()
        })?;
        Ok(sub)
    }
}

/// A processor joining a running pipeline; from
/// [`PipelineHandle::processor`](crate::PipelineHandle::processor), finish
/// with [`LateProcessor::subscribe`].
#[must_use = "call .subscribe(..) to start the stage"]
pub struct LateProcessor<In, Out, S> {
    pub(super) shared: Arc<PipelineShared>,
    pub(super) name: Arc<str>,
    pub(super) processor: S,
    pub(super) restart: Restart,
    pub(super) selector: Option<Selector<In>>,
    pub(super) dispatch: Option<Dispatch<Out>>,
    pub(super) last_cancel: LastCancel,
}

impl<In, Out, S> std::fmt::Debug for LateProcessor<In, Out, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateProcessor")
            .field("stage", &self.name)
            .finish()
    }
}

impl<In, Out, S> LateProcessor<In, Out, S>
where
    In: Send + 'static,
    Out: Send + 'static,
    S: Processor<In, Out> + Clone,
{
    /// Sets the restart type (default [`Restart::Transient`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Only events for which `keep` returns `true` reach this stage from a
    /// broadcast upstream.
    pub fn selector(mut self, keep: impl Fn(&In) -> bool + Send + Sync + 'static) -> Self {
        self.selector = Some(Arc::new(keep));
        self
    }

    /// Sets how this stage routes its output (default [`Dispatch::demand`]).
    pub fn dispatch(mut self, dispatch: Dispatch<Out>) -> Self {
        self.dispatch = Some(dispatch);
        self
    }

    /// What the stage does when its last subscriber leaves (default
    /// [`LastCancel::End`]). It always accepts late subscribers: it starts
    /// with none.
    pub fn on_last_cancel(mut self, when_last_leaves: LastCancel) -> Self {
        self.last_cancel = when_last_leaves;
        self
    }

    /// Subscribes to `upstream` and starts the processor. Returns its
    /// reference, for late subscribers of its own, and the subscription.
    pub fn subscribe(
        self,
        upstream: &StageRef<In>,
        options: Subscribe,
    ) -> Result<(StageRef<Out>, Subscription), SubscribeError> {
        let manual = self.processor.manual_demand();
        let LateProcessor {
            shared,
            name,
            processor,
            restart,
            selector,
            dispatch,
            last_cancel,
        } = self;
        let mut started = start(&shared, &name, upstream, &options, selector, manual)?;
        let dispatch = dispatch.unwrap_or_default();
        let attach = Arc::new(Attach::<Out>::new(last_cancel == LastCancel::Wait));
        if let Some(n) = dispatch.partitions {
            attach.set_owners(vec![None; n]);
        }
        let outputs = Outputs::new((dispatch.make)(), Vec::new()).with_late(Some(attach.clone()));
        let driver = ProcessorDriver {
            factory: Box::new(move || processor.clone()),
            inputs: Inputs::new(std::mem::take(&mut started.inputs)),
            outputs,
            finished: false,
        };
        let (index, sub) = spawn_late(
            &shared,
            started,
            restart,
            Some(attach as crate::runtime::late::AttachPoint),
            move |cx| supervise(cx, driver).boxed(),
        )?;
        let reference = StageRef {
            pipeline: shared.late.pipeline,
            name,
            ids: vec![index],
            _events: PhantomData,
        };
        Ok((reference, sub))
    }
}

/// A late stage with its subscriptions offered upstream, not yet running.
struct Started<In> {
    stage: Arc<StageShared>,
    inputs: Vec<Input<In>>,
    cancels: Vec<Box<dyn Fn() + Send + Sync>>,
    /// `Context::ask` for a manual subscription.
    manual: Option<Manual>,
}

type Manual = Arc<dyn Fn(usize) + Send + Sync>;

/// Checks the request, reserves a live-stage slot, creates the new stage's
/// edges and offers them to every instance of `upstream`. On any refusal
/// nothing is left behind: offered edges are withdrawn and the slot freed.
fn start<In: Send + 'static>(
    shared: &Arc<PipelineShared>,
    name: &Arc<str>,
    upstream: &StageRef<In>,
    options: &Subscribe,
    selector: Option<Selector<In>>,
    manual_stage: bool,
) -> Result<Started<In>, SubscribeError> {
    let stage = name.to_string();
    let up_name = upstream.name.to_string();
    let late = &shared.late;
    if upstream.pipeline != late.pipeline {
        return Err(SubscribeError::UnknownStage {
            stage,
            upstream: up_name,
        });
    }
    let limits = options
        .limits()
        .map_err(|error| SubscribeError::BadDemand {
            stage: stage.clone(),
            upstream: up_name.clone(),
            error,
        })?;
    let mut points = Vec::new();
    for &id in &upstream.ids {
        let not_accepting = || SubscribeError::NotAccepting {
            stage: stage.clone(),
            upstream: up_name.clone(),
        };
        let (up, point) = late.stage(&shared.stages, id).ok_or_else(not_accepting)?;
        let attach = point
            .and_then(|p| p.downcast::<Attach<In>>().ok())
            .ok_or_else(not_accepting)?;
        points.push((up, attach));
    }
    let ended = || SubscribeError::Ended {
        stage: stage.clone(),
        upstream: up_name.clone(),
    };
    // A live-stage slot, taken only while stages still run: once the count
    // reached zero the run is over and `join` may already have returned.
    if shared.scope.is_cancelled()
        || shared
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 0).then_some(n + 1)
            })
            .is_err()
    {
        return Err(ended());
    }
    let me = Arc::new(StageShared::new(name.clone()));
    let observer = options.observer.as_ref().map(|o| o.0.clone());
    let mut inputs = Vec::new();
    let mut cancels: Vec<Box<dyn Fn() + Send + Sync>> = Vec::new();
    let mut stats = Vec::new();
    let manual = options.manual || manual_stage;
    let mut manual_edges = Vec::new();
    for (up, attach) in points {
        let id = SubscriptionId(late.next_sub.fetch_add(1, Ordering::Relaxed));
        let edge =
            Arc::new(Edge::new(up.signal.clone(), me.signal.clone()).observed(observer.clone()));
        let pending = Pending {
            id,
            edge: edge.clone(),
            spec: SubscriberSpec {
                partition: options.partition,
                selector: selector.clone(),
            },
        };
        if let Err((refused, _)) = attach.offer(pending) {
            for c in &cancels {
                c();
            }
            shared.stage_ended();
            return Err(match refused {
                Refused::Ended => ended(),
                Refused::Dispatch(error) => SubscribeError::Dispatch {
                    stage,
                    upstream: up_name,
                    error,
                },
            });
        }
        up.signal.notify();
        let partition = options.partition;
        let (e, a) = (edge.clone(), attach.clone());
        cancels.push(Box::new(move || {
            e.unsubscribe();
            a.release(partition, id);
        }));
        let e = edge.clone();
        stats.push(EdgeStat {
            from: up.name.clone(),
            to: name.clone(),
            snapshot: Box::new(move || e.snapshot()),
            stall: Default::default(),
        });
        if manual {
            manual_edges.push(edge.clone());
        }
        inputs.push(Input {
            edge,
            demand: (!manual).then(|| SubscriberDemand::new(limits)),
            mode: options.cancel,
            upstream: up.name.clone(),
            group: 0,
            open: true,
            idle_timeout: options.idle_timeout,
            last_event: None,
        });
    }
    late.edges
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(stats);
    let manual: Option<Manual> = (!manual_edges.is_empty()).then(|| {
        Arc::new(move |n: usize| {
            for e in &manual_edges {
                e.ask(n, None);
            }
        }) as Manual
    });
    Ok(Started {
        stage: me,
        inputs,
        cancels,
        manual,
    })
}

/// Starts a late stage's task (its slot in `live` is already reserved):
/// registers it for stats and `join`, and wakes it when the pipeline is
/// cancelled (the pipeline's watcher only knows the build-time stages).
fn spawn_late<In>(
    shared: &Arc<PipelineShared>,
    started: Started<In>,
    restart: Restart,
    point: Option<crate::runtime::late::AttachPoint>,
    launch: impl FnOnce(StageCx) -> futures::future::BoxFuture<'static, StageEnd>,
) -> Result<(usize, Subscription), SubscribeError> {
    let late = &shared.late;
    let supervisor = Supervisor::new(
        vec![Child {
            restart,
            downstream: Vec::new(),
        }],
        Strategy::OneForOne,
        late.intensity,
        Backoff::default(),
    );
    let Started {
        stage,
        cancels,
        manual,
        ..
    } = started;
    let scope = shared.scope.child();
    let cx = StageCx {
        pipeline: shared.clone(),
        index: 0,
        stage: stage.clone(),
        scope: scope.clone(),
        manual,
        supervisor: Some(Arc::new(std::sync::Mutex::new(supervisor))),
        // A late stage runs in a task of its own: no subscriber shares it.
        hands_off: false,
    };
    let run = launch(cx);
    let (me, pipeline) = (stage.clone(), shared.clone());
    let task = async move {
        let wake = async {
            scope.cancelled().await;
            me.look_at_control();
            std::future::pending::<()>().await
        };
        let end = tokio::select! {
            biased;
            end = run => end,
            () = wake => StageEnd::Cancelled,
        };
        pipeline.stage_ended();
        end
    };
    let mut stages = late.stages.lock().unwrap_or_else(|e| e.into_inner());
    let index = late.statics + stages.len();
    let handle = late.runtime.spawn(task);
    stages.push(LateStage {
        shared: stage.clone(),
        point,
        task: Some(handle),
    });
    drop(stages);
    tracing::debug!(stage = %stage.name, "late subscriber started");
    Ok((
        index,
        Subscription {
            stage: stage.name.clone(),
            cancels,
        },
    ))
}

/// Waits for every late stage's task; their ends, in the order they were
/// added (the order of `stats().stages` after the build-time stages).
pub(super) async fn join_late(shared: &PipelineShared) -> Vec<StageEnd> {
    let tasks: Vec<_> = shared
        .late
        .stages
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter_mut()
        .map(|s| s.task.take())
        .collect();
    let mut ends = Vec::with_capacity(tasks.len());
    for t in tasks {
        ends.push(match t {
            Some(t) => t.await.unwrap_or_else(|e| {
                StageEnd::Failed(StageFailure::message(format!(
                    "stage task ended abnormally: {e}"
                )))
            }),
            None => StageEnd::Failed(StageFailure::message("stage task ended abnormally")),
        });
    }
    ends
}
