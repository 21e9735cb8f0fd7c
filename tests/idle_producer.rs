//! A producer with nothing to give is not called again at once (issue 10,
//! item 4): returning `Flow::Continue` having emitted nothing means "wait".
//! The engine calls it again only when new demand arrives or when it asks
//! through [`StageWaker`], as GenStage calls `handle_demand` only when demand
//! arrives and otherwise leaves the producer to `send` itself a message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demandflow::{
    sink, stage, BoxError, Context, Emitter, Flow, Pipeline, PipelineHandle, Producer, StageWaker,
    Subscribe,
};

/// Generous bound for anything that should happen promptly (a loaded
/// 2-core machine).
const PATIENCE: Duration = Duration::from_secs(20);

/// How a [`Queue`] producer asks to be called again when it finds nothing.
#[derive(Clone, Copy, Debug)]
enum Ask {
    /// It never asks.
    Never,
    /// A tokio task, after a short sleep, fills the queue and wakes it.
    FromTask,
    /// A plain thread does the same.
    FromThread,
    /// The same through the handle turned into a `std::task::Waker`.
    AsTaskWaker,
}

/// Emits what is queued (`None` ends the stream) and counts its calls.
/// Finding the queue empty on its first call, it has `fill` pushed into
/// the queue from elsewhere, then asked to be called as `ask` says.
#[derive(Clone)]
struct Queue {
    queue: Arc<Mutex<VecDeque<Option<u64>>>>,
    calls: Arc<AtomicU64>,
    ask: Ask,
    fill: Vec<Option<u64>>,
}

impl Queue {
    fn new(ask: Ask, fill: Vec<Option<u64>>) -> Queue {
        Queue {
            queue: Arc::default(),
            calls: Arc::default(),
            ask,
            fill,
        }
    }

    fn later(&self, waker: StageWaker) {
        let (queue, fill) = (self.queue.clone(), self.fill.clone());
        let pause = Duration::from_millis(30);
        let deliver = move || {
            queue.lock().unwrap().extend(fill);
        };
        match self.ask {
            Ask::Never => {}
            Ask::FromTask => {
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    deliver();
                    waker.wake();
                });
            }
            Ask::FromThread => {
                std::thread::spawn(move || {
                    std::thread::sleep(pause);
                    deliver();
                    waker.wake();
                });
            }
            Ask::AsTaskWaker => {
                let waker = std::task::Waker::from(waker);
                std::thread::spawn(move || {
                    std::thread::sleep(pause);
                    deliver();
                    waker.wake();
                });
            }
        }
    }
}

impl Producer<u64> for Queue {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<u64>,
        cx: &Context,
    ) -> Result<Flow, BoxError> {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        let mut emitted = 0;
        {
            let mut queue = self.queue.lock().unwrap();
            while emitted < demand {
                match queue.pop_front() {
                    Some(Some(x)) => out.emit(x),
                    Some(None) => return Ok(Flow::Done),
                    None => break,
                }
                emitted += 1;
            }
        }
        if emitted == 0 && first {
            self.later(cx.waker());
        }
        Ok(Flow::Continue)
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stop(handle: PipelineHandle) {
    handle.cancel();
    tokio::time::timeout(PATIENCE, handle.join())
        .await
        .expect("the pipeline stops once cancelled")
        .ok();
}

/// The measurement of issue 10, item 4: a producer that returns nothing
/// and never asks, left alone for a second with no new demand, is called
/// exactly once (before the fix: tens of thousands of times). With its
/// consumer in its task and in a task of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_returns_nothing_is_called_once_per_demand() {
    for own_task in [false, true] {
        let producer = Queue::new(Ask::Never, vec![]);
        let calls = producer.calls.clone();
        let mut p = Pipeline::new();
        let mut src = p.add_producer("nothing", producer);
        if own_task {
            src = src.own_task();
        }
        let src = src.build();
        p.consumer("drain", sink::drain())
            .subscribe(&src, Subscribe::max_demand(10));
        let handle = p.spawn().unwrap();
        eventually("the first call", || calls.load(Ordering::SeqCst) >= 1).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "called again with no new demand and no request (own_task: {own_task})"
        );
        stop(handle).await;
    }
}

/// A producer that returned nothing and then asks to be called (from a
/// tokio task, from a plain thread, through a `std::task::Waker`) is
/// called again, and what it then emits arrives. Covers a producer alone
/// in its task and one sharing its chain's task with a processor and a
/// consumer, where the wake-up must reach the group's member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_asks_to_be_called_is_called_and_its_events_arrive() {
    for ask in [Ask::FromTask, Ask::FromThread, Ask::AsTaskWaker] {
        for own_task in [false, true] {
            let producer = Queue::new(ask, vec![Some(1), Some(2), Some(3), None]);
            let calls = producer.calls.clone();
            let mut p = Pipeline::new();
            let mut src = p.add_producer("queue", producer);
            if own_task {
                src = src.own_task();
            }
            let src = src.build();
            let plus = p
                .processor("plus", stage::map(|x: u64| x + 10))
                .subscribe(&src, Subscribe::max_demand(10));
            let (c, out) = sink::collect();
            p.consumer("collect", c).subscribe(&plus, Subscribe::new());
            let handle = p.spawn().unwrap();
            tokio::time::timeout(PATIENCE, handle.join())
                .await
                .unwrap_or_else(|_| panic!("{ask:?}, own_task {own_task}: never called again"))
                .unwrap();
            assert_eq!(out.take(), vec![11, 12, 13], "{ask:?}, own_task {own_task}");
            // One call found nothing; the one it asked for emitted all
            // three and the end.
            assert_eq!(
                calls.load(Ordering::SeqCst),
                2,
                "{ask:?}, own_task {own_task}"
            );
        }
    }
}

/// New demand calls an idle producer again, without any request: events
/// queued meanwhile (with nobody asking) go out only once a subscriber
/// asks for more, as `handle_demand` runs on each ask.
#[cfg(feature = "testkit")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_demand_calls_an_idle_producer_again() {
    let producer = Queue::new(Ask::Never, vec![]);
    let (calls, queue) = (producer.calls.clone(), producer.queue.clone());
    let mut p = Pipeline::new();
    let src = p.producer("queue", producer);
    let mut sub = demandflow::testkit::consumer(&mut p, &src, Subscribe::new().manual());
    let handle = p.spawn().unwrap();
    sub.ask(2).unwrap();
    eventually("the first call", || calls.load(Ordering::SeqCst) >= 1).await;
    queue.lock().unwrap().extend([Some(7), Some(8), Some(9)]);
    // Nobody asks and the producer did not ask to be called: nothing moves.
    sub.expect_none().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // One more event of demand: the producer is called with all 3 pending.
    sub.ask(1).unwrap();
    assert_eq!(sub.expect_n(3).await, [7, 8, 9]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    stop(handle).await;
}
