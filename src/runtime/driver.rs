//! Stage tasks: each runs its stage's instance, restarts it when the
//! supervisor says so, and turns the stage's output into edge sends.
//!
//! Everything that must survive a restart (subscriptions, their demand, the
//! batch being handled, the dispatcher and its buffer) lives in the driver,
//! not in the instance. A restart drops the instance and builds a new one
//! from the stage's factory; the batch it was handling is handed to the new
//! one (D7).

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use tokio::time::Instant;

use super::edge::EdgeEnd;
use super::inputs::{Inputs, Next};
use super::outputs::Outputs;
use super::shared::*;
use crate::cancel::CancelScope;
use crate::error::{BoxError, StageFailure};
use crate::observe::occupancy::{BACKPRESSURED, BUSY, IDLE, OFF};
use crate::stage::{Consumer, Context, Emitter, Flow, Processor, Producer};
use crate::supervisor::{Decision, ExitReason};

/// How one instance's run ended.
#[derive(Debug)]
pub(crate) enum InstanceExit {
    /// Its work is done (stream finished, inputs ended, subscribers gone).
    Normal,
    /// The handler returned an error or panicked.
    Failed(StageFailure),
    /// The pipeline was cancelled.
    Cancelled,
    /// An upstream failed and this stage's cancel mode does not survive it.
    UpstreamFailed(String),
    /// The supervisor restarts this stage because another one failed.
    Restart,
    /// The supervisor stops this stage (a temporary bystander).
    Stop,
}

/// How a stage task ended, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StageEnd {
    Completed,
    Cancelled,
    Failed(StageFailure),
    Stopped(String),
}

/// What every driver gets: the stage's identity and the pipeline around it.
pub(crate) struct StageCx {
    pub(crate) pipeline: Arc<PipelineShared>,
    pub(crate) index: usize,
    pub(crate) stage: Arc<StageShared>,
    pub(crate) scope: CancelScope,
    pub(crate) manual: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// A late subscriber's own one-stage supervisor (`index` is then 0);
    /// `None` for the stages built with the pipeline, which share
    /// `pipeline.supervisor`.
    pub(crate) supervisor: Option<Arc<std::sync::Mutex<crate::supervisor::Supervisor>>>,
    /// Its subscriber shares its task (a chain link, `runtime::group`):
    /// after sending, the stage steps aside so the subscriber runs first.
    pub(crate) hands_off: bool,
}

pub(crate) type HandlerResult<T> = std::thread::Result<Result<T, BoxError>>;

impl StageCx {
    pub(crate) fn context(&self, attempt: u32) -> Context {
        Context {
            name: self.stage.name.clone(),
            attempt,
            deadline: self.pipeline.deadline,
            scope: self.scope.clone(),
            manual: self.manual.clone(),
            counters: Some(self.stage.clone()),
        }
    }

    /// Cancellation or a supervisor request that must interrupt the instance.
    #[inline]
    fn interrupt(&self) -> Option<InstanceExit> {
        if self.scope.is_cancelled() {
            return Some(InstanceExit::Cancelled);
        }
        match self.stage.control.load(Ordering::Acquire) {
            CONTROL_RESTART => {
                self.stage.control.store(CONTROL_NONE, Ordering::Release);
                Some(InstanceExit::Restart)
            }
            CONTROL_STOP => Some(InstanceExit::Stop),
            _ => None,
        }
    }

    #[inline]
    fn draining(&self) -> bool {
        self.stage.control.load(Ordering::Acquire) == CONTROL_DRAIN
    }

    /// Parks until an edge, the supervisor, the cancel watcher or the timer
    /// has something for this stage; `why` (`IDLE` or `BACKPRESSURED`) is
    /// the state the wait counts as (`observe::occupancy`).
    async fn wait(&self, why: u8, timer: Option<Instant>) {
        match timer {
            Some(at) => {
                tokio::select! {
                    _ = self.stage.signal.notified_as(why) => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => self.stage.signal.notified_as(why).await,
        }
    }

    /// Runs a handler future to completion, catching panics. If it does not
    /// complete on its first poll, the wait can be interrupted by cancel or
    /// the supervisor (`Err` then carries the reason; the future is dropped).
    ///
    /// The future comes pinned by the caller: a producer's batch future is
    /// large, and taking it by value would copy it twice per call.
    async fn run_handler<F: Future>(
        &self,
        mut fut: Pin<&mut F>,
    ) -> Result<std::thread::Result<F::Output>, InstanceExit> {
        #[cfg(feature = "metrics")]
        let _timer = HandlerTimer::start(&self.stage);
        if let Poll::Ready(r) = poll_fn(|c| Poll::Ready(poll_catching(fut.as_mut(), c))).await {
            return Ok(r);
        }
        loop {
            if let Some(exit) = self.interrupt() {
                return Err(exit);
            }
            // The handler first, as a biased select would: its completion
            // wins over a request that came with it.
            // (The control signal's parked tag is never read.)
            let mut control = pin!(self.stage.control_signal.notified_as(0));
            let done = poll_fn(|c| match poll_catching(fut.as_mut(), c) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => control.as_mut().poll(c).map(|()| None),
            })
            .await;
            if let Some(r) = done {
                return Ok(r);
            }
        }
    }

    fn dead_letter(
        &self,
        error: &StageFailure,
        attempts: u32,
        events: Box<dyn Any + Send>,
        len: usize,
    ) {
        Counters::add(&self.stage.counters.dead_lettered, len);
        tracing::warn!(stage = %self.stage.name, %error, attempts, events = len, "batch dead-lettered");
        (self.pipeline.dead_letter)(DeadLetter {
            stage: self.stage.name.to_string(),
            error: error.to_string(),
            attempts,
            events,
            len,
        });
    }
}

/// Records a handler call's duration in the stage's histogram when dropped
/// (however the call ended). Only with the `metrics` feature.
#[cfg(feature = "metrics")]
struct HandlerTimer<'a> {
    histogram: Option<&'a metrics::Histogram>,
    start: std::time::Instant,
}

#[cfg(feature = "metrics")]
impl<'a> HandlerTimer<'a> {
    fn start(stage: &'a StageShared) -> Self {
        HandlerTimer {
            histogram: stage.handler_seconds.get(),
            start: std::time::Instant::now(),
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for HandlerTimer<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.histogram {
            h.record(self.start.elapsed().as_secs_f64());
        }
    }
}

/// Polls a handler future once, turning a panic into a value.
fn poll_catching<F: Future>(
    fut: Pin<&mut F>,
    cx: &mut std::task::Context<'_>,
) -> Poll<std::thread::Result<F::Output>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(p) => Poll::Ready(Err(p)),
    }
}

/// After a send to a subscriber in the same group, gives the group's
/// worker to that subscriber before this stage does its own bookkeeping
/// (re-arming a producer's wait, re-checking a processor's inputs): the
/// event crosses the chain without waiting for them. Outside a group, only
/// the coop budget is spent (a yield there would re-queue the task).
///
/// A hand-off spends no budget: the group bounds its turn itself
/// (`runtime::group`), and the last stage of the chain, which hands off to
/// nobody, spends a unit per batch for the whole chain.
async fn after_send(cx: &StageCx, sent: bool) {
    if !(sent && cx.hands_off) {
        tokio::task::consume_budget().await;
        return;
    }
    hand_off(cx).await;
}

/// Gives the group's worker to the subscriber this stage just sent to,
/// once (see [`after_send`]).
async fn hand_off(cx: &StageCx) {
    // While its subscriber runs on this worker, the stage waits on
    // downstream: counted as backpressured, not busy, until it has the
    // worker back, or until the wait is dropped (a producer's hand-off
    // happens inside its handler call, which cancel can interrupt).
    struct BusyAgain<'a>(&'a crate::observe::occupancy::StateClock);
    impl Drop for BusyAgain<'_> {
        fn drop(&mut self) {
            self.0.enter(BUSY);
        }
    }
    cx.stage.meter.clock.enter(BACKPRESSURED);
    let _busy = BusyAgain(&cx.stage.meter.clock);
    let mut yielded = false;
    poll_fn(|c| {
        if std::mem::replace(&mut yielded, true) {
            return Poll::Ready(());
        }
        // Inside a group this marks the member ready again: one atomic
        // store, no task wake-up; the group polls the subscriber first.
        c.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The exit a unit handler (`start`, `finish`) calls for, if any.
fn unit_exit(r: Result<HandlerResult<()>, InstanceExit>) -> Option<InstanceExit> {
    match r.map(failure_message) {
        Err(exit) => Some(exit),
        Ok(Err(e)) => Some(InstanceExit::Failed(e)),
        Ok(Ok(())) => None,
    }
}

fn failure_message<T>(r: HandlerResult<T>) -> Result<T, StageFailure> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StageFailure::new(e)),
        Err(p) => Err(StageFailure::panic("", p.as_ref())),
    }
}

/// A stage kind's run of one instance. The supervise loop around it is
/// shared by all kinds.
pub(crate) trait Driver: Send {
    fn run_instance(
        &mut self,
        cx: &StageCx,
        attempt: u32,
    ) -> impl Future<Output = InstanceExit> + Send;
    /// Gives up everything held: returns how many events are abandoned.
    fn abandon(&mut self, stage: &StageShared) -> usize;
    /// Ends the outgoing subscriptions.
    fn close(&mut self, end: EdgeEnd) -> usize;
    /// Forgets that the previous instance finished (a permanent stage is
    /// restarted even after a normal end).
    fn rearm(&mut self) {}
}

/// Runs a stage under the pipeline's supervisor until it ends for good,
/// inside the stage's span (`observe::span`): what the supervisor logs
/// about the stage (restarts, failures, its end) carries it.
///
/// A plain function, not an `async fn`: every poll of a stage passes
/// through the future it returns, and an `async fn` would add a state
/// machine of its own to that path.
pub(crate) fn supervise(cx: StageCx, driver: impl Driver) -> impl Future<Output = StageEnd> + Send {
    let span = crate::observe::span::stage(&cx.pipeline, &cx.stage);
    #[cfg(feature = "metrics")]
    cx.stage.handler_seconds.get_or_init(|| {
        crate::observe::metrics::handler_seconds(&cx.pipeline.name, &cx.stage.name)
    });
    crate::observe::span::in_span(supervise_in_span(cx, driver), span)
}

async fn supervise_in_span(cx: StageCx, mut driver: impl Driver) -> StageEnd {
    let name = cx.stage.name.clone();
    // Busy from here (its `start` handler comes first), and sampled until
    // the task ends or is dropped.
    cx.stage.meter.clock.enter(BUSY);
    let _sampled = super::sampler::sample(&cx.stage.meter.clock, &cx.stage.signal);
    tracing::debug!(stage = %name, "stage started");
    let mut attempt = 0u32;
    let end = loop {
        // One span per attempt, entered whenever the instance is polled:
        // around every handler call, never per event.
        let exit = crate::observe::span::in_span(
            driver.run_instance(&cx, attempt),
            crate::observe::span::attempt(attempt),
        )
        .await;
        let reason = match &exit {
            // A stage that ends because of a graceful shutdown is not
            // restarted, whatever its restart type.
            InstanceExit::Normal if cx.draining() => ExitReason::Shutdown,
            InstanceExit::Normal => ExitReason::Normal,
            InstanceExit::Failed(_) => ExitReason::Failed,
            InstanceExit::Restart => {
                attempt += 1;
                cx.stage.counters.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(stage = %name, attempt, "stage restarted with its group");
                continue;
            }
            InstanceExit::Cancelled => {
                let abandoned = driver.abandon(&cx.stage);
                Counters::add(&cx.stage.counters.abandoned, abandoned);
                let cause = cx
                    .scope
                    .cause()
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_default();
                let n = driver.close(EdgeEnd::Failed(format!("cancelled ({cause})")));
                Counters::add(&cx.stage.counters.abandoned, n);
                break StageEnd::Cancelled;
            }
            InstanceExit::Stop => {
                let abandoned =
                    driver.abandon(&cx.stage) + driver.close(EdgeEnd::Failed("stopped".into()));
                Counters::add(&cx.stage.counters.abandoned, abandoned);
                break StageEnd::Stopped("stopped by the supervisor".into());
            }
            InstanceExit::UpstreamFailed(e) => {
                let abandoned =
                    driver.abandon(&cx.stage) + driver.close(EdgeEnd::Failed(e.clone()));
                Counters::add(&cx.stage.counters.abandoned, abandoned);
                break StageEnd::Stopped(e.clone());
            }
        };
        let decision = {
            let mut sup = cx
                .supervisor
                .as_deref()
                .unwrap_or(&cx.pipeline.supervisor)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            sup.on_exit(cx.index, reason, Instant::now())
        };
        match (decision, exit) {
            (Decision::Stop, InstanceExit::Normal) => {
                // Normal end, or shutdown: what was delivered has drained.
                let n = driver.close(EdgeEnd::Done);
                Counters::add(&cx.stage.counters.abandoned, n);
                break StageEnd::Completed;
            }
            (Decision::Stop, exit) => {
                let e = match exit {
                    InstanceExit::Failed(e) => e,
                    other => StageFailure::message(format!("{other:?}")),
                };
                tracing::warn!(stage = %name, error = %e, "stage failed and is not restarted");
                let abandoned =
                    driver.abandon(&cx.stage) + driver.close(EdgeEnd::Failed(e.to_string()));
                Counters::add(&cx.stage.counters.abandoned, abandoned);
                break StageEnd::Failed(e);
            }
            (Decision::Escalate, exit) => {
                let e = match exit {
                    InstanceExit::Failed(e) => e,
                    _ => StageFailure::message("restarted too often"),
                };
                tracing::error!(stage = %name, error = %e, "restart intensity exceeded: the pipeline fails");
                cx.pipeline.record_failure(&name, &e);
                cx.pipeline
                    .cancel(crate::cancel::CancelCause::StageFailed(name.to_string()));
                let abandoned =
                    driver.abandon(&cx.stage) + driver.close(EdgeEnd::Failed(e.to_string()));
                Counters::add(&cx.stage.counters.abandoned, abandoned);
                break StageEnd::Failed(e);
            }
            (
                Decision::Restart {
                    restart,
                    stop,
                    delay,
                },
                exit,
            ) => {
                if let InstanceExit::Failed(e) = &exit {
                    tracing::warn!(stage = %name, error = %e, ?delay, "stage failed, restarting");
                }
                for &i in &restart {
                    if i != cx.index {
                        cx.pipeline.stages[i].request(CONTROL_RESTART);
                    }
                }
                for &i in &stop {
                    cx.pipeline.stages[i].request(CONTROL_STOP);
                }
                cx.stage.state.store(STATE_RESTARTING, Ordering::Release);
                cx.stage.meter.clock.enter(IDLE);
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cx.scope.cancelled() => {}
                    }
                }
                cx.stage.meter.clock.enter(BUSY);
                cx.stage.state.store(STATE_RUNNING, Ordering::Release);
                driver.rearm();
                attempt += 1;
                cx.stage.counters.restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    cx.stage.state.store(STATE_ENDED, Ordering::Release);
    cx.stage.meter.clock.enter(OFF);
    tracing::debug!(stage = %name, end = ?end, "stage ended");
    end
}

// ---------------------------------------------------------------- producer

pub(crate) struct ProducerDriver<T, P> {
    pub(crate) factory: Box<dyn FnMut() -> P + Send>,
    pub(crate) outputs: Outputs<T>,
    /// Events emitted and not yet routed (kept across a failure: what a
    /// producer emitted before it failed is still delivered).
    pub(crate) acc: Vec<T>,
    pub(crate) done: bool,
}

impl<T: Send + 'static, P: Producer<T>> ProducerDriver<T, P> {
    fn flush(&mut self, stage: &StageShared) {
        if !self.acc.is_empty() {
            let batch = std::mem::take(&mut self.acc);
            self.outputs.emit(batch, stage);
        }
    }
}

/// Most a producer's batch buffer is sized for up front, in bytes.
const RESERVE_MAX_BYTES: usize = 64 * 1024;

/// How one batch of producer calls ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BatchEnd {
    /// The demand was met.
    Met,
    /// The last call returned `Flow::Continue` having emitted nothing: the
    /// producer has nothing now.
    Dry,
    /// The producer returned `Flow::Done`.
    Done,
}

/// How the first poll of one producer call came out.
#[derive(Clone, Copy)]
enum Step {
    Continue,
    Done,
    Failed,
    Pending,
}

fn make<S>(factory: &mut (dyn FnMut() -> S + Send)) -> Result<S, StageFailure> {
    std::panic::catch_unwind(AssertUnwindSafe(factory))
        .map_err(|p| StageFailure::panic("factory ", p.as_ref()))
}

impl<T: Send + 'static, P: Producer<T>> Driver for ProducerDriver<T, P> {
    async fn run_instance(&mut self, cx: &StageCx, attempt: u32) -> InstanceExit {
        let mut instance = match make(&mut *self.factory) {
            Ok(i) => i,
            Err(e) => return InstanceExit::Failed(e),
        };
        let ctx = cx.context(attempt);
        let stage = &*cx.stage;
        let mut em = Emitter::with_buffer(self.outputs.buffer());
        // The producer's last call returned nothing: it is called again only
        // when new demand arrives or it asks (`StageWaker`), as GenStage
        // calls `handle_demand` only when demand arrives. Calling it again
        // at once would spin.
        let mut dry = false;
        loop {
            if let Some(exit) = cx.interrupt() {
                return exit;
            }
            let asked = self.outputs.collect(stage);
            if !self.outputs.alive() {
                // Downstream cancellation reached us: nobody is left to serve.
                return InstanceExit::Normal;
            }
            if (self.done || cx.draining()) && self.outputs.buffered() == 0 {
                return InstanceExit::Normal;
            }
            let demand = self.outputs.demand();
            if demand == 0 || self.done || cx.draining() {
                cx.wait(BACKPRESSURED, None).await;
                continue;
            }
            if dry && !asked && !stage.call.take() {
                cx.wait(IDLE, None).await;
                continue;
            }
            // The call about to start satisfies any earlier request.
            stage.call.clear();
            // Call the producer until the demand is met, it runs dry, or it
            // would wait; coalesce what it emits into one batch. The whole
            // loop is one guarded future: a panic is caught once per batch,
            // not once per call, which keeps the per-event path cheap.
            let acc = &mut self.acc;
            let outputs = &mut self.outputs;
            let em_ref = &mut em;
            let instance = &mut instance;
            let ctx = &ctx;
            let batch = async move {
                let em = em_ref;
                let mut remaining = demand;
                // Room for the whole demand up front (bounded): a recycled
                // buffer that is too small would otherwise grow by
                // reallocation, which copies it.
                let want = demand.min(RESERVE_MAX_BYTES / std::mem::size_of::<T>().max(1));
                let mut waited = false;
                if em.buf.capacity() < want {
                    let spare = outputs.buffer();
                    em.buf = if spare.capacity() >= want {
                        spare
                    } else {
                        Vec::with_capacity(want)
                    };
                }
                let end = loop {
                    if remaining == 0 {
                        break Ok(BatchEnd::Met);
                    }
                    if em.buf.capacity() == 0 {
                        em.buf = outputs.buffer();
                    }
                    let flow = {
                        let mut fut = pin!(instance.produce(remaining, em, ctx));
                        // The first poll's outcome comes out as a one-byte
                        // `Step` (an error is parked in `failed`): moving the
                        // whole `Poll<Result<..>>` through the async frame
                        // costs a store-forwarding stall on every call.
                        let mut failed = None;
                        let step = poll_fn(|c| {
                            Poll::Ready(match fut.as_mut().poll(c) {
                                Poll::Ready(Ok(Flow::Continue)) => Step::Continue,
                                Poll::Ready(Ok(Flow::Done)) => Step::Done,
                                Poll::Ready(Err(e)) => {
                                    failed = Some(e);
                                    Step::Failed
                                }
                                Poll::Pending => Step::Pending,
                            })
                        })
                        .await;
                        match step {
                            Step::Continue => Ok(Flow::Continue),
                            Step::Done => Ok(Flow::Done),
                            // `failed` is always set with `Step::Failed`;
                            // the fallback only avoids a panic path.
                            Step::Failed => Err(failed.take().unwrap_or_else(|| "failed".into())),
                            Step::Pending => {
                                // The producer would wait: deliver what it gave so far.
                                if !acc.is_empty() {
                                    outputs.emit(std::mem::take(acc), stage);
                                }
                                // What it waited for goes out as soon as
                                // this call returns, before the call
                                // unwinds (below), not after the next call
                                // has armed its next wait: this ends the
                                // batch (no test in the loop).
                                waited = true;
                                remaining = 0;
                                fut.await
                            }
                        }
                    };
                    let emitted = em.buf.len();
                    if acc.is_empty() {
                        std::mem::swap(acc, &mut em.buf);
                    } else if emitted == 1 {
                        // The per-event case: a move, not a call to memmove.
                        acc.extend(em.buf.pop());
                    } else {
                        acc.append(&mut em.buf);
                    }
                    match flow {
                        Ok(Flow::Continue) if emitted > 0 => {
                            remaining = remaining.saturating_sub(emitted)
                        }
                        Ok(Flow::Continue) => break Ok(BatchEnd::Dry),
                        Ok(Flow::Done) => break Ok(BatchEnd::Done),
                        Err(e) => break Err(e),
                    }
                };
                // A call that waited ended the batch. What it emitted
                // leaves now, and crosses a chain before this call has
                // unwound. (Out of the loop: the per-call path stays as
                // tight as it was.)
                if waited && !acc.is_empty() {
                    outputs.emit(std::mem::take(acc), stage);
                    if cx.hands_off {
                        hand_off(cx).await;
                    }
                }
                end
            };
            let r = cx.run_handler(pin!(batch)).await;
            // What was emitted before an error or panic is still delivered.
            if !em.is_empty() {
                self.acc.append(&mut em.buf);
            }
            self.flush(stage);
            match r.map(failure_message) {
                Err(exit) => return exit,
                Ok(Ok(end)) => {
                    self.done = end == BatchEnd::Done;
                    dry = end == BatchEnd::Dry;
                }
                Ok(Err(e)) => return InstanceExit::Failed(e),
            }
            // A batch that waited has handed off inside the call already;
            // one that did not goes on producing, spending only budget.
            tokio::task::consume_budget().await;
        }
    }

    fn abandon(&mut self, _stage: &StageShared) -> usize {
        std::mem::take(&mut self.acc).len()
    }

    fn close(&mut self, end: EdgeEnd) -> usize {
        self.outputs.close(end)
    }

    fn rearm(&mut self) {
        self.done = false;
    }
}

// --------------------------------------------------------------- processor

pub(crate) struct ProcessorDriver<In, Out, S> {
    pub(crate) factory: Box<dyn FnMut() -> S + Send>,
    pub(crate) inputs: Inputs<In>,
    pub(crate) outputs: Outputs<Out>,
    pub(crate) finished: bool,
}

impl<In, Out, S> Driver for ProcessorDriver<In, Out, S>
where
    In: Send + 'static,
    Out: Send + 'static,
    S: Processor<In, Out>,
{
    async fn run_instance(&mut self, cx: &StageCx, attempt: u32) -> InstanceExit {
        let mut instance = match make(&mut *self.factory) {
            Ok(i) => i,
            Err(e) => return InstanceExit::Failed(e),
        };
        let ctx = cx.context(attempt);
        let stage = &*cx.stage;
        self.inputs.start();
        if let Some(exit) = unit_exit(cx.run_handler(pin!(instance.start(&ctx))).await) {
            return exit;
        }
        let mut em = Emitter::with_buffer(self.outputs.buffer());
        loop {
            if let Some(exit) = cx.interrupt() {
                return exit;
            }
            self.outputs.collect(stage);
            if !self.outputs.alive() {
                let abandoned = self.inputs.cancel_all(stage);
                Counters::add(&stage.counters.abandoned, abandoned);
                return InstanceExit::Normal;
            }
            if self.finished {
                if self.outputs.buffered() == 0 {
                    return InstanceExit::Normal;
                }
                cx.wait(BACKPRESSURED, None).await;
                continue;
            }
            // Leftovers from an expanding call go first: no new input while
            // the dispatcher still holds output (the bound of D2).
            let demand = self.outputs.demand();
            if demand == 0 || self.outputs.buffered() > 0 {
                // Timers only matter when output can go somewhere.
                cx.wait(BACKPRESSURED, None).await;
                continue;
            }
            if let Some(at) = instance.timer() {
                if at <= Instant::now() {
                    let r = cx.run_handler(pin!(instance.on_timer(&mut em, &ctx))).await;
                    match r.map(failure_message) {
                        Err(exit) => return exit,
                        Ok(Ok(())) => {
                            let out = std::mem::take(&mut em.buf);
                            self.outputs.emit(out, stage);
                        }
                        Ok(Err(e)) => {
                            em.buf.clear();
                            return InstanceExit::Failed(e);
                        }
                    }
                    continue;
                }
            }
            match self.inputs.next(demand, stage) {
                Next::Idle => {
                    if let Err(e) = self.inputs.check_idle() {
                        return InstanceExit::Failed(StageFailure::message(e));
                    }
                    let idle = self.inputs.idle_deadline().map(|(at, _)| at);
                    cx.wait(IDLE, earliest(instance.timer(), idle)).await
                }
                Next::Ended(Some(e)) => return InstanceExit::UpstreamFailed(e),
                Next::Ended(None) => {
                    let r = cx.run_handler(pin!(instance.finish(&mut em, &ctx))).await;
                    match r.map(failure_message) {
                        Err(exit) => return exit,
                        Ok(Ok(())) => {
                            let out = std::mem::take(&mut em.buf);
                            self.outputs.emit(out, stage);
                            self.finished = true;
                        }
                        Ok(Err(e)) => {
                            em.buf.clear();
                            return InstanceExit::Failed(e);
                        }
                    }
                }
                Next::Chunk(mut len) => {
                    if em.buf.capacity() == 0 {
                        em.buf = self.outputs.buffer();
                    }
                    // The chunks of an input batch already here are handled
                    // back to back while output demand lasts, and their
                    // output leaves as one batch: fewer sends and wake-ups,
                    // the same events in the same order. A successful
                    // chunk's output is kept behind `em.start`, so a chunk
                    // that fails discards only its own and what came before
                    // is still delivered.
                    let exit = loop {
                        let chunk = self.inputs.chunk(len);
                        let r = cx
                            .run_handler(pin!(instance.process(chunk, &mut em, &ctx)))
                            .await;
                        match r.map(failure_message) {
                            Err(exit) => break Some(exit),
                            Ok(Ok(())) => {
                                Counters::add(&stage.counters.processed, len);
                                self.inputs.handled(len);
                                em.keep();
                            }
                            // The failed chunk is handled again by the next
                            // instance.
                            Ok(Err(e)) => break Some(self.fail_chunk(cx, len, e)),
                        }
                        let room = demand.saturating_sub(em.buf.len());
                        let next = match room {
                            0 => None,
                            room => self.inputs.next_in_batch(room),
                        };
                        let Some(n) = next else { break None };
                        if let Some(exit) = cx.interrupt() {
                            break Some(exit);
                        }
                        len = n;
                    };
                    em.discard();
                    let out = em.take_all();
                    let sent = !out.is_empty();
                    self.outputs.emit(out, stage);
                    if let Some(exit) = exit {
                        return exit;
                    }
                    after_send(cx, sent).await;
                }
            }
        }
    }

    fn abandon(&mut self, stage: &StageShared) -> usize {
        self.inputs.cancel_all(stage)
    }

    fn close(&mut self, end: EdgeEnd) -> usize {
        self.outputs.close(end)
    }
}

impl<In: Send + 'static, Out: Send + 'static, S> ProcessorDriver<In, Out, S> {
    fn fail_chunk(&mut self, cx: &StageCx, len: usize, e: StageFailure) -> InstanceExit {
        fail_chunk(&mut self.inputs, cx, len, e)
    }
}

/// Counts a failed attempt at the current chunk; after `max_attempts` the
/// chunk goes to the dead-letter handler and the stream moves on.
fn fail_chunk<T: Send + 'static>(
    inputs: &mut Inputs<T>,
    cx: &StageCx,
    len: usize,
    e: StageFailure,
) -> InstanceExit {
    let attempts = match &mut inputs.current {
        Some(c) => {
            c.attempts += 1;
            c.attempts
        }
        None => 0,
    };
    if attempts >= cx.pipeline.max_attempts {
        let events = inputs.take_chunk(len);
        cx.dead_letter(&e, attempts, Box::new(events), len);
    }
    InstanceExit::Failed(e)
}

// ---------------------------------------------------------------- consumer

pub(crate) struct ConsumerDriver<T, C> {
    pub(crate) factory: Box<dyn FnMut() -> C + Send>,
    pub(crate) inputs: Inputs<T>,
}

impl<T: Send + 'static, C: Consumer<T>> Driver for ConsumerDriver<T, C> {
    async fn run_instance(&mut self, cx: &StageCx, attempt: u32) -> InstanceExit {
        let mut instance = match make(&mut *self.factory) {
            Ok(i) => i,
            Err(e) => return InstanceExit::Failed(e),
        };
        let ctx = cx.context(attempt);
        let stage = &*cx.stage;
        self.inputs.start();
        if let Some(exit) = unit_exit(cx.run_handler(pin!(instance.start(&ctx))).await) {
            return exit;
        }
        loop {
            if let Some(exit) = cx.interrupt() {
                return exit;
            }
            match self.inputs.next(usize::MAX, stage) {
                Next::Idle => {
                    if let Err(e) = self.inputs.check_idle() {
                        return InstanceExit::Failed(StageFailure::message(e));
                    }
                    cx.wait(IDLE, self.inputs.idle_deadline().map(|(at, _)| at))
                        .await
                }
                Next::Ended(Some(e)) => return InstanceExit::UpstreamFailed(e),
                Next::Ended(None) => {
                    let r = cx.run_handler(pin!(instance.finish(&ctx))).await;
                    return unit_exit(r).unwrap_or(InstanceExit::Normal);
                }
                Next::Chunk(mut len) => {
                    // The chunks of a batch already in hand run back to
                    // back: one pass through the checks above and one unit
                    // of the task's coop budget per batch, not per chunk.
                    loop {
                        let chunk = self.inputs.chunk(len);
                        let r = cx.run_handler(pin!(instance.consume(chunk, &ctx))).await;
                        match r.map(failure_message) {
                            Err(exit) => return exit,
                            Ok(Ok(())) => {
                                Counters::add(&stage.counters.processed, len);
                                self.inputs.handled(len);
                            }
                            Ok(Err(e)) => return fail_chunk(&mut self.inputs, cx, len, e),
                        }
                        let Some(n) = self.inputs.next_in_batch(usize::MAX) else {
                            break;
                        };
                        if let Some(exit) = cx.interrupt() {
                            return exit;
                        }
                        len = n;
                    }
                    tokio::task::consume_budget().await;
                }
            }
        }
    }

    fn abandon(&mut self, stage: &StageShared) -> usize {
        self.inputs.cancel_all(stage)
    }

    fn close(&mut self, _end: EdgeEnd) -> usize {
        0
    }
}
