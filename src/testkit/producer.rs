//! [`TestProducer`]: a producer driven by its handle, that records the
//! demand it is called with.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::error::BoxError;
use crate::stage::{Context, Emitter, Flow, Producer};

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
    fail: Option<String>,
    demands: Vec<usize>,
    emitted: u64,
    over: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`Producer`] that emits what its [`ProducerHandle`] pushes, and records
/// every `demand` it is called with. Made by [`producer`].
///
/// Clones (restarted instances) share the queue, so a restart continues
/// where the failed instance stopped.
pub struct TestProducer<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for TestProducer<T> {
    fn clone(&self) -> Self {
        TestProducer {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for TestProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("TestProducer")
            .field("queued", &s.queue.len())
            .field("closed", &s.closed)
            .finish()
    }
}

/// Drives a [`TestProducer`] from the test.
pub struct ProducerHandle<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for ProducerHandle<T> {
    fn clone(&self) -> Self {
        ProducerHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for ProducerHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("ProducerHandle")
            .field("queued", &s.queue.len())
            .field("demands", &s.demands)
            .field("emitted", &s.emitted)
            .finish()
    }
}

/// A test producer and its handle.
///
/// # Example
///
/// ```
/// use demandflow::testkit;
/// use demandflow::{Pipeline, Subscribe};
///
/// testkit::block_on(async {
///     let (producer, handle) = testkit::producer::<u32>();
///     let mut p = Pipeline::new();
///     let src = p.producer("src", producer);
///     let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
///     let _run = p.spawn().unwrap();
///     sub.ask(3).unwrap();
///     handle.extend([1, 2, 3, 4]);
///     assert_eq!(sub.expect_n(3).await, [1, 2, 3]);
///     sub.expect_none().await; // 4 waits for demand
///     assert_eq!(handle.demands(), [3]);
/// });
/// ```
pub fn producer<T>() -> (TestProducer<T>, ProducerHandle<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            closed: false,
            fail: None,
            demands: Vec::new(),
            emitted: 0,
            over: 0,
        }),
        wake: Notify::new(),
    });
    (
        TestProducer {
            shared: shared.clone(),
        },
        ProducerHandle { shared },
    )
}

impl<T> ProducerHandle<T> {
    /// Queues one event.
    pub fn push(&self, event: T) {
        self.shared.lock().queue.push_back(event);
        self.shared.wake.notify_one();
    }

    /// Queues every event of `events`, in order.
    pub fn extend(&self, events: impl IntoIterator<Item = T>) {
        self.shared.lock().queue.extend(events);
        self.shared.wake.notify_one();
    }

    /// Ends the stream once the queue has been emitted.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }

    /// Makes the producer fail with `error` (once), after it has emitted
    /// the events pushed so far: a stream that errors after its items.
    pub fn fail(&self, error: &str) {
        self.shared.lock().fail = Some(error.to_owned());
        self.shared.wake.notify_one();
    }

    /// A deliberately broken producer: each call emits up to `extra` more
    /// events than the demand it was called with.
    pub fn over_deliver(&self, extra: usize) {
        self.shared.lock().over = extra;
    }

    /// The `demand` of every call so far, in order.
    pub fn demands(&self) -> Vec<usize> {
        self.shared.lock().demands.clone()
    }

    /// Events emitted so far.
    pub fn emitted(&self) -> u64 {
        self.shared.lock().emitted
    }

    /// Events pushed and not yet emitted.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

impl<T: Send + 'static> Producer<T> for TestProducer<T> {
    /// Emits up to `demand` queued events, waiting for a push or `close`
    /// while the queue is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: events leave the queue only when the call returns.
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        self.shared.lock().demands.push(demand);
        loop {
            let notified = self.shared.wake.notified();
            {
                let mut s = self.shared.lock();
                if s.queue.is_empty() {
                    if let Some(e) = s.fail.take() {
                        return Err(e.into());
                    }
                }
                let n = demand.saturating_add(s.over).min(s.queue.len());
                if n > 0 {
                    out.extend(s.queue.drain(..n));
                    s.emitted += n as u64;
                    let done = s.closed && s.queue.is_empty();
                    return Ok(if done { Flow::Done } else { Flow::Continue });
                }
                if s.closed {
                    return Ok(Flow::Done);
                }
            }
            notified.await;
        }
    }
}
