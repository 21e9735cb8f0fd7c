//! The bounded push buffer through its public API (DESIGN §6; goals G-B1,
//! G-B2; invariant D7): overflow strategies with GenStage's `buffer_keep`
//! semantics, the accounting identity, `close` vs `cancel`, `result` with a
//! timeout, `Block` backpressure, restarts continuing from the queue, and
//! cancel safety. `PushProducer::produce` is driven by hand with
//! `Context::detached` and `Emitter::new`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use demandflow::push::{
    self, Overflow, OverflowError, PushConfig, PushConfigError, PushError, PushOutcome,
    PushProducer, PushStats, Pusher,
};
use demandflow::{CancelCause, Context, Emitter, Flow, Producer};

fn buffer(max_queue: usize, overflow: Overflow) -> (Pusher<u32>, PushProducer<u32>) {
    push::channel(
        PushConfig::default()
            .with_max_queue(max_queue)
            .with_overflow(overflow),
    )
    .expect("valid config")
}

/// One `produce` call; returns what it emitted and the flow.
async fn produce(
    producer: &mut PushProducer<u32>,
    demand: usize,
) -> (Vec<u32>, Result<Flow, demandflow::BoxError>) {
    let mut out = Emitter::new();
    let flow = producer
        .produce(demand, &mut out, &Context::detached("push"))
        .await;
    (out.take(), flow)
}

fn assert_accounted(stats: PushStats) {
    assert_eq!(
        stats.pushed,
        stats.delivered
            + stats.dropped_oldest
            + stats.dropped_newest
            + stats.abandoned
            + stats.queued as u64,
        "{stats:?}"
    );
    assert!(stats.queued <= stats.max_queue, "{stats:?}");
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(NoopWake));
    fut.poll(&mut TaskContext::from_waker(&waker))
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pusher<u32>>();
    send_sync::<PushProducer<u32>>();
    send_sync::<PushError<u32>>();
    fn send_future<F: Future + Send>(_: F) {}
    let (pusher, _producer) = buffer(1, Overflow::Block);
    send_future(pusher.send(1));
    send_future(pusher.result(Duration::from_secs(1)));
}

#[test]
fn zero_max_queue_is_a_typed_error() {
    let err = push::channel::<u32>(PushConfig::default().with_max_queue(0)).unwrap_err();
    assert_eq!(err, PushConfigError::ZeroMaxQueue);
    assert_eq!(err.to_string(), "max_queue must be at least 1");
}

#[test]
fn defaults_match_the_design() {
    let config = PushConfig::default();
    assert_eq!(config.max_queue, 1000);
    assert_eq!(config.overflow, Overflow::DropOldest);
}

// GenStage behaviour 19: buffer_keep :last drops the oldest (keeps d..h).
#[tokio::test]
async fn drop_oldest_keeps_the_newest() {
    let (pusher, mut producer) = buffer(5, Overflow::DropOldest);
    for e in 0..8 {
        assert_eq!(pusher.push(e), Ok(()));
    }
    let (events, flow) = produce(&mut producer, 100).await;
    assert_eq!(events, [3, 4, 5, 6, 7]);
    assert_eq!(flow.unwrap(), Flow::Continue);
    let stats = pusher.stats();
    assert_eq!(
        (stats.pushed, stats.delivered, stats.dropped_oldest),
        (8, 5, 3)
    );
    assert_accounted(stats);
}

// GenStage behaviour 18: buffer_keep :first drops the new overflow (keeps a..e).
#[tokio::test]
async fn drop_newest_keeps_the_oldest_and_hands_events_back() {
    let (pusher, mut producer) = buffer(5, Overflow::DropNewest);
    let mut refused = Vec::new();
    for e in 0..8 {
        if let Err(err) = pusher.push(e) {
            assert!(err.is_overflow());
            refused.push(err.into_inner());
        }
    }
    assert_eq!(refused, [5, 6, 7]);
    let (events, _) = produce(&mut producer, 100).await;
    assert_eq!(events, [0, 1, 2, 3, 4]);
    let stats = pusher.stats();
    assert_eq!(
        (stats.pushed, stats.dropped_newest, stats.dropped()),
        (8, 3, 3)
    );
    assert_accounted(stats);
}

#[tokio::test]
async fn fail_ends_the_stream_with_an_overflow_error() {
    let (pusher, mut producer) = buffer(2, Overflow::Fail);
    pusher.push(0).unwrap();
    pusher.push(1).unwrap();
    let err = pusher.push(2).unwrap_err();
    assert!(err.is_overflow());
    assert!(pusher.push(3).unwrap_err().is_closed());

    let (events, flow) = produce(&mut producer, 10).await;
    assert!(events.is_empty());
    let err = flow.unwrap_err();
    let overflow = err.downcast_ref::<OverflowError>().expect("typed error");
    assert_eq!(overflow.max_queue(), 2);
    assert_eq!(
        pusher.result(Duration::from_secs(1)).await.unwrap(),
        PushOutcome::Failed(overflow.clone())
    );
    let stats = pusher.stats();
    assert_eq!((stats.abandoned, stats.dropped_newest), (2, 1));
    assert_accounted(stats);
    // A restarted instance sees the same failure.
    let (_, again) = produce(&mut producer.clone(), 1).await;
    assert!(again.is_err());
}

#[tokio::test]
async fn block_push_returns_full_without_counting() {
    let (pusher, mut producer) = buffer(1, Overflow::Block);
    pusher.push(0).unwrap();
    let err = pusher.push(1).unwrap_err();
    assert!(err.is_full());
    assert_eq!(err.into_inner(), 1);
    assert_eq!(pusher.stats().pushed, 1);
    let (events, _) = produce(&mut producer, 1).await;
    assert_eq!(events, [0]);
    assert_eq!(pusher.push(1), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn block_send_waits_for_room() {
    let (pusher, mut producer) = buffer(2, Overflow::Block);
    let sender = tokio::spawn(async move {
        for e in 0..6 {
            pusher.send(e).await.unwrap();
        }
        pusher
    });
    let mut received = Vec::new();
    while received.len() < 6 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The sender can never be more than the bound ahead.
        assert!(producer.stats().queued <= 2);
        let (events, flow) = produce(&mut producer, 1).await;
        assert_eq!(flow.unwrap(), Flow::Continue);
        received.extend(events);
    }
    assert_eq!(received, [0, 1, 2, 3, 4, 5]);
    let pusher = sender.await.unwrap();
    let stats = pusher.stats();
    assert_eq!((stats.pushed, stats.dropped(), stats.queued), (6, 0, 0));
}

#[tokio::test]
async fn send_behaves_like_push_for_other_strategies() {
    let (pusher, _producer) = buffer(1, Overflow::DropNewest);
    pusher.send(0).await.unwrap();
    assert!(pusher.send(1).await.unwrap_err().is_overflow());
}

#[tokio::test]
async fn close_delivers_the_queue_then_completes() {
    let (pusher, mut producer) = buffer(10, Overflow::DropOldest);
    for e in 0..3 {
        pusher.push(e).unwrap();
    }
    pusher.close();
    assert!(pusher.push(9).unwrap_err().is_closed());
    assert_eq!(
        pusher.try_result(),
        None,
        "not complete while events are queued"
    );

    let (events, flow) = produce(&mut producer, 2).await;
    assert_eq!((events, flow.unwrap()), (vec![0, 1], Flow::Continue));
    let (events, flow) = produce(&mut producer, 2).await;
    assert_eq!((events, flow.unwrap()), (vec![2], Flow::Done));
    let (events, flow) = produce(&mut producer, 2).await;
    assert_eq!((events, flow.unwrap()), (vec![], Flow::Done));
    assert_eq!(
        pusher.result(Duration::from_secs(1)).await.unwrap(),
        PushOutcome::Completed
    );
    assert_accounted(pusher.stats());
}

#[tokio::test]
async fn cancel_ends_now_and_counts_the_queue_as_abandoned() {
    let (pusher, mut producer) = buffer(10, Overflow::DropOldest);
    for e in 0..4 {
        pusher.push(e).unwrap();
    }
    pusher.cancel(CancelCause::User);
    pusher.close(); // the first terminal event wins
    let (events, flow) = produce(&mut producer, 10).await;
    assert_eq!((events, flow.unwrap()), (vec![], Flow::Done));
    assert_eq!(
        pusher.try_result(),
        Some(PushOutcome::Cancelled(CancelCause::User))
    );
    assert!(pusher.push(5).unwrap_err().is_closed());
    let stats = pusher.stats();
    assert_eq!((stats.pushed, stats.abandoned, stats.queued), (4, 4, 0));
    assert_accounted(stats);
}

#[tokio::test(start_paused = true)]
async fn result_times_out_instead_of_blocking_forever() {
    let (pusher, _producer) = buffer(10, Overflow::DropOldest);
    let started = tokio::time::Instant::now();
    assert!(pusher.result(Duration::from_secs(5)).await.is_err());
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn result_wakes_when_the_stream_ends() {
    let (pusher, _producer) = buffer(10, Overflow::DropOldest);
    let waiter = {
        let pusher = pusher.clone();
        tokio::spawn(async move { pusher.result(Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    pusher.cancel(CancelCause::DeadlineExceeded);
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        PushOutcome::Cancelled(CancelCause::DeadlineExceeded)
    );
}

#[tokio::test(start_paused = true)]
async fn produce_waits_for_a_push() {
    let (pusher, mut producer) = buffer(10, Overflow::DropOldest);
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        pusher.push(42).unwrap();
        pusher
    });
    let started = tokio::time::Instant::now();
    let (events, flow) = produce(&mut producer, 5).await;
    assert_eq!((events, flow.unwrap()), (vec![42], Flow::Continue));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    drop(feeder.await.unwrap()); // the last pusher: closes the stream
    let (events, flow) = produce(&mut producer, 5).await;
    assert_eq!((events, flow.unwrap()), (vec![], Flow::Done));
}

#[tokio::test(start_paused = true)]
async fn produce_returns_promptly_when_the_stage_is_cancelled() {
    let (pusher, mut producer) = buffer(10, Overflow::DropOldest);
    let cx = Context::detached("push");
    let scope = cx.scope().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        scope.cancel(CancelCause::Shutdown);
    });
    let mut out = Emitter::new();
    let flow = tokio::time::timeout(Duration::from_secs(10), producer.produce(5, &mut out, &cx))
        .await
        .expect("returns on cancel");
    assert_eq!(flow.unwrap(), Flow::Continue);
    assert!(out.is_empty());
    // A cancelled stage still hands over what is already queued.
    pusher.push(1).unwrap();
    let flow = producer.produce(5, &mut out, &cx).await.unwrap();
    assert_eq!((out.take(), flow), (vec![1], Flow::Continue));
}

#[tokio::test]
async fn a_restarted_producer_continues_from_the_queue() {
    let (pusher, producer) = buffer(10, Overflow::DropOldest);
    for e in 0..4 {
        pusher.push(e).unwrap();
    }
    let template = producer;
    let mut first = template.clone();
    let (events, _) = produce(&mut first, 2).await;
    assert_eq!(events, [0, 1]);
    drop(first); // "crashed"
    let mut second = template.clone();
    let (events, _) = produce(&mut second, 10).await;
    assert_eq!(events, [2, 3]);
    assert_eq!(
        pusher.try_result(),
        None,
        "a live clone keeps the stream open"
    );
}

#[tokio::test]
async fn dropping_every_producer_cancels_the_stream() {
    let (pusher, producer) = buffer(10, Overflow::Block);
    pusher.push(0).unwrap();
    drop(producer);
    assert!(pusher.push(1).unwrap_err().is_closed());
    assert!(pusher.send(2).await.unwrap_err().is_closed());
    assert_eq!(
        pusher.try_result(),
        Some(PushOutcome::Cancelled(CancelCause::OwnerDropped))
    );
    assert_eq!(pusher.stats().abandoned, 1);
}

#[tokio::test]
async fn dropping_every_pusher_closes_the_stream() {
    let (pusher, mut producer) = buffer(10, Overflow::DropOldest);
    let other = pusher.clone();
    pusher.push(7).unwrap();
    drop(pusher);
    assert_eq!(producer.try_result(), None, "one pusher is still alive");
    drop(other);
    let (events, flow) = produce(&mut producer, 10).await;
    assert_eq!((events, flow.unwrap()), (vec![7], Flow::Done));
    assert_eq!(producer.try_result(), Some(PushOutcome::Completed));
}

#[test]
fn dropped_produce_future_loses_nothing() {
    let (pusher, mut producer) = buffer(10, Overflow::DropOldest);
    let cx = Context::detached("push");
    let mut out = Emitter::new();
    {
        let fut = pin!(producer.produce(3, &mut out, &cx));
        assert!(poll_once(fut).is_pending());
    }
    pusher.push(5).unwrap();
    {
        let fut = pin!(producer.produce(3, &mut out, &cx));
        assert!(matches!(poll_once(fut), Poll::Ready(Ok(Flow::Continue))));
    }
    assert_eq!(out.take(), [5]);
}

#[test]
fn dropped_send_future_queues_nothing() {
    let (pusher, _producer) = buffer(1, Overflow::Block);
    pusher.push(0).unwrap();
    {
        let fut = pin!(pusher.send(1));
        assert!(poll_once(fut).is_pending());
    }
    let stats = pusher.stats();
    assert_eq!((stats.pushed, stats.queued), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sources_keep_the_books_balanced() {
    for overflow in [
        Overflow::DropOldest,
        Overflow::DropNewest,
        Overflow::Fail,
        Overflow::Block,
    ] {
        let (pusher, mut producer) = buffer(8, overflow);
        let mut sources = Vec::new();
        for s in 0..4u32 {
            let pusher = pusher.clone();
            sources.push(tokio::spawn(async move {
                for i in 0..500 {
                    if pusher.send(s * 1000 + i).await.is_err() && overflow == Overflow::Fail {
                        break;
                    }
                }
            }));
        }
        drop(pusher);
        let consumer = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let (events, flow) = produce(&mut producer, 3).await;
                assert!(producer.stats().queued <= 8);
                seen.extend(events);
                match flow {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Done) | Err(_) => return (seen, producer),
                }
            }
        });
        for source in sources {
            source.await.unwrap();
        }
        let (seen, producer) = tokio::time::timeout(Duration::from_secs(20), consumer)
            .await
            .expect("stream ends")
            .unwrap();
        let stats = producer.stats();
        assert_accounted(stats);
        assert_eq!(stats.delivered, seen.len() as u64);
        // Each source's events arrive in that source's order.
        for s in 0..4 {
            let mine: Vec<_> = seen.iter().filter(|e| **e / 1000 == s).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "{overflow:?}");
        }
        if overflow == Overflow::Block {
            assert_eq!(stats.delivered, 2000, "Block loses nothing");
        }
    }
}

#[test]
fn overflow_drops_reach_the_pipelines_report() {
    use demandflow::{sink, Pipeline, Subscribe};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (pusher, producer) = demandflow::push::channel::<u32>(
            demandflow::push::PushConfig::default()
                .with_max_queue(2)
                .with_overflow(demandflow::push::Overflow::DropOldest),
        )
        .unwrap();
        for i in 0..10 {
            pusher.push(i).unwrap();
        }
        pusher.close();
        let mut p = Pipeline::new();
        let src = p.producer("push", producer);
        let (c, out) = sink::collect();
        p.consumer("sink", c).subscribe(&src, Subscribe::default());
        let report = p.spawn().unwrap().join().await.unwrap();
        assert_eq!(out.take(), vec![8, 9]);
        assert_eq!(report.stage("push").unwrap().dropped, 8);
    });
}
