//! State shared between a pipeline's stage tasks and its handle.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::call::CallRequest;
use super::edge::EdgeSnapshot;
use super::signal::Signal;
use crate::cancel::{CancelCause, CancelScope};
use crate::supervisor::Supervisor;

/// Per-stage counters: the ledger, kept live.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) processed: AtomicU64,
    pub(crate) emitted: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

impl Counters {
    /// Adds `n` to one of the stage's counters.
    ///
    /// Only the stage's own task calls this (the one writer of these
    /// counters; `Context::record_dropped`, which user code may call from
    /// anywhere, uses an atomic add on `dropped`, which nothing here
    /// writes), so a plain load and store does: it costs no locked
    /// instruction on the per-batch path, and readers (`stats()`) see each
    /// counter at most one update behind.
    #[inline]
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            let now = counter.load(Ordering::Relaxed);
            counter.store(now.wrapping_add(n as u64), Ordering::Relaxed);
        }
    }
}

/// A request from the supervisor to a stage that did not fail itself.
pub(crate) const CONTROL_NONE: u8 = 0;
pub(crate) const CONTROL_RESTART: u8 = 1;
pub(crate) const CONTROL_STOP: u8 = 2;
/// Graceful shutdown: producers stop producing and end normally.
pub(crate) const CONTROL_DRAIN: u8 = 3;

/// Stage lifecycle, for stats.
pub(crate) const STATE_RUNNING: u8 = 0;
pub(crate) const STATE_RESTARTING: u8 = 1;
pub(crate) const STATE_ENDED: u8 = 2;

#[derive(Debug)]
pub(crate) struct StageShared {
    pub(crate) name: Arc<str>,
    pub(crate) signal: Arc<Signal>,
    /// Set when the stage's producer asks to be called again.
    pub(crate) call: CallRequest,
    pub(crate) counters: Counters,
    pub(crate) control: AtomicU8,
    /// Notified with `signal` whenever the stage must look at its scope or
    /// its `control` byte; a handler call that waits also waits on this
    /// (never on `signal`, which every edge operation notifies: a busy
    /// stage is not woken per batch sent to it).
    pub(crate) control_signal: Signal,
    pub(crate) state: AtomicU8,
    /// Time spent busy, backpressured and idle (`observe::occupancy`).
    pub(crate) meter: crate::observe::occupancy::Meter,
    /// Which instance of a concurrent stage this is (`name[instance]`);
    /// 0 for a stage of one instance.
    pub(crate) instance: usize,
    /// Where handler times go (`observe::metrics`), once the stage runs.
    #[cfg(feature = "metrics")]
    pub(crate) handler_seconds: std::sync::OnceLock<metrics::Histogram>,
}

impl StageShared {
    pub(crate) fn new(name: Arc<str>) -> StageShared {
        StageShared {
            name,
            signal: Arc::new(Signal::new()),
            call: CallRequest::new(),
            counters: Counters::default(),
            control: AtomicU8::new(CONTROL_NONE),
            control_signal: Signal::new(),
            state: AtomicU8::new(STATE_RUNNING),
            meter: crate::observe::occupancy::Meter::new(),
            instance: 0,
            #[cfg(feature = "metrics")]
            handler_seconds: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn request(&self, control: u8) {
        self.control.store(control, Ordering::Release);
        self.look_at_control();
    }

    /// Wakes the stage, wherever it waits, to look at its scope and its
    /// `control` byte.
    pub(crate) fn look_at_control(&self) {
        self.control_signal.notify();
        self.signal.notify();
    }
}

/// Everything the handler of dead letters is told.
pub struct DeadLetter {
    /// The stage whose handler kept failing.
    pub stage: String,
    /// The last error (or panic message).
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The events of the failed batch, as a `Vec<T>` of the stage's input type.
    pub events: Box<dyn Any + Send>,
    /// How many events.
    pub len: usize,
}

impl DeadLetter {
    /// The events, if `T` is the stage's input type.
    pub fn events<T: 'static>(&self) -> Option<&[T]> {
        self.events.downcast_ref::<Vec<T>>().map(Vec::as_slice)
    }

    /// Takes the events out, if `T` is the stage's input type.
    pub fn into_events<T: 'static>(self) -> Result<Vec<T>, DeadLetter> {
        match self.events.downcast::<Vec<T>>() {
            Ok(v) => Ok(*v),
            Err(events) => Err(DeadLetter { events, ..self }),
        }
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("stage", &self.stage)
            .field("error", &self.error)
            .field("attempts", &self.attempts)
            .field("len", &self.len)
            .finish()
    }
}

pub(crate) type DeadLetterFn = Arc<dyn Fn(DeadLetter) + Send + Sync>;

pub(crate) struct EdgeStat {
    pub(crate) from: Arc<str>,
    pub(crate) to: Arc<str>,
    pub(crate) snapshot: Box<dyn Fn() -> EdgeSnapshot + Send + Sync>,
    pub(crate) stall: Mutex<StallWatch>,
}

/// Stall detection state for one edge: when it last made progress.
#[derive(Debug, Default)]
pub(crate) struct StallWatch {
    pub(crate) last: EdgeSnapshot,
    pub(crate) since: Option<Instant>,
    pub(crate) reported: bool,
}

pub(crate) struct PipelineShared {
    /// The pipeline's name (`Pipeline::name`, else `pipeline-{id}`).
    pub(crate) name: Arc<str>,
    /// The parent of every stage's span (`observe::span`).
    pub(crate) span: tracing::Span,
    pub(crate) scope: CancelScope,
    pub(crate) stages: Vec<Arc<StageShared>>,
    pub(crate) edges: Vec<EdgeStat>,
    pub(crate) supervisor: Mutex<Supervisor>,
    /// The stage that made the supervisor give up, with its error.
    pub(crate) failure: Mutex<Option<(String, crate::error::StageFailure)>>,
    pub(crate) dead_letter: DeadLetterFn,
    pub(crate) max_attempts: u32,
    pub(crate) deadline: Option<Instant>,
    pub(crate) live: AtomicUsize,
    pub(crate) all_done: Notify,
    pub(crate) stall_timeout: Option<std::time::Duration>,
    pub(crate) stalls: Mutex<Vec<crate::pipeline::Stall>>,
    /// Subscribers added while the pipeline runs.
    pub(crate) late: super::late::LateRegistry,
}

impl fmt::Debug for PipelineShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineShared")
            .field("stages", &self.stages.len())
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl PipelineShared {
    pub(crate) fn record_failure(&self, stage: &str, error: &crate::error::StageFailure) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some((stage.to_owned(), error.clone()));
        }
    }

    /// Cancels the run with `cause`, or with `DeadlineExceeded` if the
    /// deadline has already passed: a run still going at its deadline ends
    /// `DeadlineExceeded` whatever happens after it, even when the watcher,
    /// which cancels at the deadline, has not had a turn yet (a stage
    /// blocking a current-thread runtime's only thread, say).
    pub(crate) fn cancel(&self, cause: CancelCause) {
        let cause = if self.deadline_passed() {
            CancelCause::DeadlineExceeded
        } else {
            cause
        };
        self.scope.cancel(cause);
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|at| Instant::now() >= at)
    }

    /// Called by each stage task as it ends; the last one wakes the watchers.
    pub(crate) fn stage_ended(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The run ends now; if that is past its deadline, it ran over it.
            if self.deadline_passed() {
                self.scope.cancel(CancelCause::DeadlineExceeded);
            }
            self.all_done.notify_waiters();
            self.all_done.notify_one();
        }
    }
}
