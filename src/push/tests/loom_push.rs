//! Loom models of the push buffer: a pushing thread racing a producing
//! thread under each overflow strategy, checking the bound and the
//! accounting identity, that what is delivered keeps push order, and that
//! nobody sleeps through a wake-up (loom reports that as a deadlock).

use loom::future::block_on;
use loom::thread;

use crate::cancel::CancelCause;
use crate::push::{channel, Overflow, PushConfig, PushOutcome, PushProducer, PushStats, Pusher};
use crate::stage::{Context, Emitter, Flow, Producer};

/// Runs `producer` with demand 1 until the stream ends; returns what it
/// emitted and whether it ended with an error.
fn drain(producer: &mut PushProducer<u32>) -> (Vec<u32>, bool) {
    let cx = Context::detached("push");
    let mut out = Emitter::new();
    loop {
        let flow = block_on(producer.produce(1, &mut out, &cx));
        let stats = producer.stats();
        assert!(stats.queued <= stats.max_queue, "bound broken: {stats:?}");
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Done) => return (out.take(), false),
            Err(_) => return (out.take(), true),
        }
    }
}

fn assert_accounted(stats: &PushStats) {
    assert_eq!(
        stats.pushed,
        stats.delivered
            + stats.dropped_oldest
            + stats.dropped_newest
            + stats.abandoned
            + stats.queued as u64,
        "accounting broken: {stats:?}"
    );
    assert!(stats.queued <= stats.max_queue);
}

fn assert_in_push_order(delivered: &[u32]) {
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "order broken: {delivered:?}"
    );
}

/// Pushes 0, 1, 2 into a one-slot buffer from another thread, then closes;
/// the producer drains concurrently.
fn push_three_then_close(overflow: Overflow) -> (Vec<u32>, bool, PushStats, PushOutcome) {
    let config = PushConfig::default()
        .with_max_queue(1)
        .with_overflow(overflow);
    let (pusher, mut producer) = channel::<u32>(config).unwrap();
    let source = pusher.clone();
    let th = thread::spawn(move || {
        for e in 0..3 {
            let _ = source.push(e);
        }
        source.close();
    });
    let (delivered, failed) = drain(&mut producer);
    th.join().unwrap();
    let stats = pusher.stats();
    let outcome = pusher.try_result().expect("ended");
    assert_accounted(&stats);
    assert_in_push_order(&delivered);
    assert_eq!(stats.delivered, delivered.len() as u64);
    (delivered, failed, stats, outcome)
}

#[test]
fn drop_oldest_push_vs_produce() {
    loom::model(|| {
        let (delivered, failed, stats, outcome) = push_three_then_close(Overflow::DropOldest);
        assert!(!failed);
        assert_eq!(outcome, PushOutcome::Completed);
        assert_eq!(delivered.last(), Some(&2), "the newest is always kept");
        assert_eq!(stats.dropped_newest + stats.abandoned, 0);
        assert_eq!(stats.pushed, 3);
    });
}

#[test]
fn drop_newest_push_vs_produce() {
    loom::model(|| {
        let (delivered, failed, stats, outcome) = push_three_then_close(Overflow::DropNewest);
        assert!(!failed);
        assert_eq!(outcome, PushOutcome::Completed);
        assert_eq!(delivered.first(), Some(&0), "the oldest is always kept");
        assert_eq!(stats.dropped_oldest + stats.abandoned, 0);
        assert_eq!(stats.pushed, 3);
    });
}

#[test]
fn fail_push_vs_produce() {
    loom::model(|| {
        let (delivered, failed, stats, outcome) = push_three_then_close(Overflow::Fail);
        match outcome {
            PushOutcome::Completed => {
                assert!(!failed);
                assert_eq!(delivered, [0, 1, 2]);
            }
            PushOutcome::Failed(e) => {
                assert!(failed, "a failed stream fails its producer");
                assert_eq!(e.max_queue(), 1);
                assert_eq!(stats.dropped_newest, 1);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    });
}

/// Under `Block`, `send` parks on a full queue and the producer's pop wakes
/// it: every event arrives, in order, with nothing dropped.
#[test]
fn block_send_wakes_on_room() {
    loom::model(|| {
        let config = PushConfig::default()
            .with_max_queue(1)
            .with_overflow(Overflow::Block);
        let (pusher, mut producer) = channel::<u32>(config).unwrap();
        let source = pusher.clone();
        let th = thread::spawn(move || {
            for e in 0..3 {
                block_on(source.send(e)).unwrap();
            }
            source.close();
        });
        let (delivered, failed) = drain(&mut producer);
        th.join().unwrap();
        assert!(!failed);
        assert_eq!(delivered, [0, 1, 2]);
        let stats = pusher.stats();
        assert_accounted(&stats);
        assert_eq!(stats.dropped() + stats.abandoned, 0);
    });
}

/// A sender parked on a full queue is woken by a cancel and gets its event
/// back; a cancel racing pushes leaves every event accounted for.
#[test]
fn cancel_races_blocked_send() {
    loom::model(|| {
        let config = PushConfig::default()
            .with_max_queue(1)
            .with_overflow(Overflow::Block);
        let (pusher, producer) = channel::<u32>(config).unwrap();
        pusher.push(0).unwrap();
        let canceller = pusher.clone();
        let th = thread::spawn(move || canceller.cancel(CancelCause::User));
        let sent = block_on(pusher.send(1));
        th.join().unwrap();
        assert_eq!(sent.unwrap_err().into_inner(), 1);
        let stats = pusher.stats();
        assert_accounted(&stats);
        assert_eq!((stats.pushed, stats.abandoned), (1, 1));
        assert_eq!(
            pusher.try_result(),
            Some(PushOutcome::Cancelled(CancelCause::User))
        );
        drop(producer);
    });
}

/// The last producer dropping while a sender waits ends the stream, so the
/// sender does not wait forever for a reader that is gone.
#[test]
fn producer_drop_releases_blocked_send() {
    loom::model(|| {
        let config = PushConfig::default()
            .with_max_queue(1)
            .with_overflow(Overflow::Block);
        let (pusher, producer) = channel::<u32>(config).unwrap();
        pusher.push(0).unwrap();
        let th = thread::spawn(move || drop(producer));
        let sent = block_on(pusher.send(1));
        th.join().unwrap();
        assert!(sent.unwrap_err().is_closed());
        assert_eq!(
            pusher.try_result(),
            Some(PushOutcome::Cancelled(CancelCause::OwnerDropped))
        );
    });
}

/// `Pusher` is used from two threads at once; the single-threaded drain sees
/// each source's events in that source's order.
#[test]
fn two_pushers_one_producer() {
    loom::model(|| {
        let config = PushConfig::default()
            .with_max_queue(2)
            .with_overflow(Overflow::DropNewest);
        let (pusher, mut producer): (Pusher<u32>, _) = channel(config).unwrap();
        let a = pusher.clone();
        let b = pusher.clone();
        drop(pusher);
        let th_a = thread::spawn(move || {
            let _ = a.push(10);
            let _ = a.push(11);
        });
        let th_b = thread::spawn(move || {
            let _ = b.push(20);
        });
        // The stream closes when both sources have dropped their pushers.
        let (delivered, failed) = drain(&mut producer);
        th_a.join().unwrap();
        th_b.join().unwrap();
        assert!(!failed);
        let from_a: Vec<_> = delivered.iter().filter(|e| **e < 20).collect();
        assert!(from_a.windows(2).all(|w| w[0] < w[1]));
        let stats = producer.stats();
        assert_accounted(&stats);
        assert_eq!(stats.pushed, 3);
    });
}
