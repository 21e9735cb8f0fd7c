use std::sync::Arc;

use tokio::time::Instant;

use crate::cancel::{CancelCause, CancelScope};
use crate::error::AskError;
use crate::runtime::shared::StageShared;

/// What a stage can see of the pipeline around it: its name, the deadline and
/// the cancellation of its scope.
///
/// Handed to every stage call. Cloning is cheap.
///
/// # Example
///
/// ```
/// use demandflow::{BoxError, Consumer, Context};
///
/// struct Slow;
///
/// impl Consumer<u64> for Slow {
///     async fn consume(&mut self, events: &[u64], cx: &Context) -> Result<(), BoxError> {
///         for _ in events {
///             tokio::select! {
///                 _ = cx.cancelled() => return Ok(()),
///                 _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) name: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) deadline: Option<Instant>,
    pub(crate) scope: CancelScope,
    /// Asks on the stage's manual-demand subscriptions, if it has any.
    pub(crate) manual: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// The stage's live counters and wake-up, when running in a pipeline.
    pub(crate) counters: Option<Arc<StageShared>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("restarts", &self.attempt)
            .field("deadline", &self.deadline)
            .field("cancelled", &self.is_cancelled())
            .field("manual_demand", &self.manual.is_some())
            .finish()
    }
}

impl Context {
    /// A context for driving a stage by hand, outside a pipeline (tests,
    /// adapters). It is never cancelled unless `scope` is.
    pub fn detached(name: &str) -> Context {
        Context {
            name: Arc::from(name),
            attempt: 0,
            deadline: None,
            scope: CancelScope::new(),
            manual: None,
            counters: None,
        }
    }

    /// A detached context whose deadline is `deadline` and whose
    /// cancellation follows `scope`.
    pub fn with_scope(name: &str, scope: CancelScope, deadline: Option<Instant>) -> Context {
        Context {
            name: Arc::from(name),
            attempt: 0,
            deadline,
            scope,
            manual: None,
            counters: None,
        }
    }

    /// Asks for `n` more events on each of this stage's manual-demand
    /// subscriptions (see [`Subscribe::manual`](crate::Subscribe::manual)).
    ///
    /// Asking zero is a protocol error (Reactive Streams 3.9). Demand adds up
    /// and saturates; it never wraps.
    pub fn ask(&self, n: usize) -> Result<(), AskError> {
        if n == 0 {
            return Err(AskError::Zero);
        }
        match &self.manual {
            Some(ask) => {
                ask(n);
                Ok(())
            }
            None => Err(AskError::NotManual),
        }
    }

    /// Records `n` events dropped by an overflow strategy the user chose
    /// (a push buffer's `DropOldest`, say), so the pipeline's stats and
    /// report count them. Outside a pipeline it does nothing.
    pub fn record_dropped(&self, n: u64) {
        if let (Some(stage), true) = (&self.counters, n > 0) {
            stage
                .counters
                .dropped
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A handle that asks the engine to call this stage's producer again,
    /// usable from any task, thread or timer; see [`StageWaker`].
    ///
    /// A producer whose `produce` returns [`Flow::Continue`] having emitted
    /// nothing is not called again until new demand arrives or it asks, with
    /// [`StageWaker::wake`]. Getting the handle is an `Arc` clone; waking is
    /// two atomic operations and, if the stage is parked, one task wake-up.
    ///
    /// On a [`detached`](Context::detached) context the handle does nothing.
    ///
    /// # Example
    ///
    /// A producer over a queue that other code fills, which it looks at
    /// again every 100 ms while the queue is empty:
    ///
    /// ```
    /// use std::collections::VecDeque;
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// use demandflow::{sink, BoxError, Context, Emitter, Flow, Pipeline, Producer, Subscribe};
    ///
    /// /// Emits what is queued; `None` in the queue ends the stream.
    /// #[derive(Clone)]
    /// struct Polling(Arc<Mutex<VecDeque<Option<u64>>>>);
    ///
    /// impl Producer<u64> for Polling {
    ///     async fn produce(
    ///         &mut self,
    ///         demand: usize,
    ///         out: &mut Emitter<u64>,
    ///         cx: &Context,
    ///     ) -> Result<Flow, BoxError> {
    ///         let mut queue = self.0.lock().unwrap();
    ///         let mut emitted = 0;
    ///         while emitted < demand {
    ///             match queue.pop_front() {
    ///                 Some(Some(x)) => out.emit(x),
    ///                 Some(None) => return Ok(Flow::Done),
    ///                 None => break,
    ///             }
    ///             emitted += 1;
    ///         }
    ///         if emitted == 0 {
    ///             // Returning nothing means "call me when there is new
    ///             // demand or when I ask": ask in 100 ms.
    ///             let waker = cx.waker();
    ///             tokio::spawn(async move {
    ///                 tokio::time::sleep(Duration::from_millis(100)).await;
    ///                 waker.wake();
    ///             });
    ///         }
    ///         Ok(Flow::Continue)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let queue = Arc::new(Mutex::new(VecDeque::new()));
    /// let mut p = Pipeline::new();
    /// let src = p.producer("poll", Polling(queue.clone()));
    /// let (c, out) = sink::collect();
    /// p.consumer("collect", c).subscribe(&src, Subscribe::default());
    /// let run = p.spawn().unwrap();
    /// tokio::time::sleep(Duration::from_millis(50)).await;
    /// queue.lock().unwrap().extend([Some(1), Some(2), None]);
    /// run.join().await.unwrap();
    /// assert_eq!(out.take(), vec![1, 2]);
    /// # }
    /// ```
    ///
    /// [`Flow::Continue`]: crate::Flow::Continue
    pub fn waker(&self) -> StageWaker {
        StageWaker {
            stage: self.counters.clone(),
        }
    }

    /// The stage's name, as given to the pipeline builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times this stage has been restarted (0 for the first instance).
    pub fn restarts(&self) -> u32 {
        self.attempt
    }

    /// The pipeline's deadline, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether this stage's scope has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.scope.is_cancelled()
    }

    /// Why this stage's scope was cancelled, once it has been.
    pub fn cancel_cause(&self) -> Option<CancelCause> {
        self.scope.cause()
    }

    /// Completes when this stage's scope is cancelled (by the user, the
    /// deadline, the owner dropping its handle, or shutdown).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it loses nothing.
    pub async fn cancelled(&self) {
        self.scope.cancelled().await
    }

    /// The stage's cancellation scope, to hand to work the stage spawns.
    pub fn scope(&self) -> &CancelScope {
        &self.scope
    }
}

/// Asks the engine to call a stage's producer again; made by
/// [`Context::waker`].
///
/// Cloneable, `Send` and `Sync`: hand it to a timer, another task, a
/// callback of an external library or another thread. Converts into a
/// [`std::task::Waker`] for poll-based APIs. Wakes that come while the
/// producer is being called anyway cost nothing more than a flag; a wake
/// after the pipeline has ended does nothing.
#[derive(Clone)]
pub struct StageWaker {
    stage: Option<Arc<StageShared>>,
}

impl StageWaker {
    /// Makes the engine call the producer again, once, if it has demand: a
    /// call that starts after this `wake` is guaranteed. Wakes that come
    /// before the producer is next called coalesce into one call.
    pub fn wake(&self) {
        if let Some(stage) = &self.stage {
            stage.call.request(&stage.signal);
        }
    }
}

impl std::fmt::Debug for StageWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageWaker")
            .field("stage", &self.stage.as_ref().map(|s| &s.name))
            .finish()
    }
}

impl From<StageWaker> for std::task::Waker {
    fn from(w: StageWaker) -> std::task::Waker {
        match w.stage {
            Some(stage) => std::task::Waker::from(stage),
            None => std::task::Waker::noop().clone(),
        }
    }
}

impl std::task::Wake for StageShared {
    fn wake(self: Arc<Self>) {
        self.call.request(&self.signal);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.call.request(&self.signal);
    }
}
