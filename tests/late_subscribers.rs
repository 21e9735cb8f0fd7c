//! Subscribers that join and leave a running pipeline (issue 10, item 5),
//! in the style of `genstage_parity.rs`: each test names the GenStage test
//! it mirrors (`test/gen_stage_test.exs` and the dispatcher tests under
//! `test/gen_stage/`), and checks D1-D4 on the late subscriptions with the
//! testkit's [`Checker`].
#![cfg(feature = "testkit")]

use std::time::Duration;

use demandflow::dispatcher::DispatchError;
use demandflow::pipeline::StageState;
use demandflow::testkit::{self, Checker};
use demandflow::{
    sink, source, stage, Dispatch, LastCancel, Pipeline, Status, Subscribe, SubscribeError,
};

/// Lets the pipeline (on the same current-thread runtime) run until `done`
/// holds, or fails after a long while. Yields rather than sleeps: a busy
/// pipeline never lets the paused clock advance.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

#[test]
fn genstage_broadcast_late_subscriber_gets_events_from_when_it_joined() {
    // gen_stage_test.exs "producer-to-consumer demand / with shared
    // (broadcast) demand", with the second consumer subscribing to the
    // running producer (sync_subscribe); broadcast_dispatcher_test.exs
    // "multiple subscriptions with late demand".
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .dispatch(Dispatch::broadcast())
            .late_subscribers(LastCancel::End)
            .build();
        let (a, seen_a) = sink::collect();
        p.consumer("a", a)
            .subscribe(&src, Subscribe::max_demand(10).min_demand(5));
        let run = p.spawn().unwrap();
        handle.extend(0..25);
        until(|| seen_a.len() == 25).await;

        let checker = Checker::new("producer → b");
        let (b, seen_b) = sink::collect();
        let sub = run
            .consumer("b", b)
            .subscribe(&src, checker.on(Subscribe::max_demand(10).min_demand(5)))
            .unwrap();
        assert_eq!(sub.stage(), "b");
        testkit::settle().await;
        handle.extend(25..100);
        until(|| seen_a.len() == 100 && seen_b.len() == 75).await;
        // The late edge and stage are in the stats.
        let stats = run.stats();
        let edge = stats.edges.iter().find(|e| e.to == "b").unwrap();
        assert_eq!((edge.from.as_str(), edge.delivered), ("producer", 75));
        assert!(stats.stages.iter().any(|s| s.name == "b"));

        handle.close();
        let report = run.join().await.unwrap();
        assert_eq!(seen_a.take(), (0..100).collect::<Vec<_>>());
        assert_eq!(seen_b.take(), (25..100).collect::<Vec<_>>());
        let b = report.stage("b").unwrap();
        assert_eq!((b.received, b.processed), (75, 75));
        assert_eq!(b.end, "completed");
        checker.assert_ok();
    });
}

#[test]
fn genstage_demand_late_consumer_shares_the_work_from_then_on() {
    // demand_dispatcher_test.exs "subscribes, asks multiple consumers" and
    // "subscribes twice, asks twice and cancel one", with the second
    // consumer joining and leaving while the producer runs.
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .late_subscribers(LastCancel::End)
            .build();
        let (a, seen_a) = sink::collect();
        p.consumer("a", a)
            .subscribe(&src, Subscribe::max_demand(10));
        let run = p.spawn().unwrap();
        handle.extend(0..20);
        until(|| seen_a.len() == 20).await;

        let checker = Checker::new("producer → b");
        let (b, seen_b) = sink::collect();
        let sub = run
            .consumer("b", b)
            .subscribe(&src, checker.on(Subscribe::max_demand(10)))
            .unwrap();
        testkit::settle().await;
        handle.extend(20..1000);
        until(|| seen_a.len() + seen_b.len() == 1000).await;
        let (a_now, b_now) = (seen_a.len(), seen_b.len());
        assert!(b_now > 0 && a_now > 20, "a {a_now}, b {b_now}");

        // b leaves: a takes everything from then on.
        sub.cancel();
        testkit::settle().await;
        handle.extend(1000..1100);
        until(|| seen_a.len() == a_now + 100).await;
        assert_eq!(seen_b.len(), b_now);

        handle.close();
        let report = run.join().await.unwrap();
        let (mut all, b) = (seen_a.take(), seen_b.take());
        // Each subscriber sees its share in the producer's order (D3).
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        all.extend(b);
        all.sort_unstable();
        assert_eq!(all, (0..1100).collect::<Vec<_>>());
        assert_eq!(report.stage("b").unwrap().end, "completed");
        checker.assert_ok();
    });
}

#[test]
fn genstage_partition_buffers_events_before_subscription_up_to_its_bound() {
    // partition_dispatcher_test.exs "buffers events before subscription":
    // events for a partition nobody has taken wait in its buffer and go to
    // the subscriber that takes it. Here the buffer is bounded: once it is
    // full the producer is held back (never unbounded).
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .dispatch(Dispatch::partition_with_buffer(2, 4, |x: &u64| *x as usize))
            .late_subscribers(LastCancel::End)
            .build();
        let (even, seen_even) = sink::collect();
        p.consumer("even", even)
            .subscribe(&src, Subscribe::max_demand(10).partition(0));
        let run = p.spawn().unwrap();
        handle.extend(0..100);
        for _ in 0..50 {
            testkit::settle().await;
        }
        // Partition 1 holds at most its 4 events; the producer waits.
        let emitted = handle.emitted();
        assert!(emitted <= 4 + 10 + 4, "emitted {emitted}");
        assert!(seen_even.len() as u64 <= emitted);

        let checker = Checker::new("producer → odd");
        let (odd, seen_odd) = sink::collect();
        run.consumer("odd", odd)
            .subscribe(&src, checker.on(Subscribe::max_demand(10).partition(1)))
            .unwrap();
        until(|| seen_even.len() == 50 && seen_odd.len() == 50).await;
        handle.close();
        run.join().await.unwrap();
        assert_eq!(
            seen_odd.take(),
            (0..100).filter(|x| x % 2 == 1).collect::<Vec<_>>()
        );
        assert_eq!(
            seen_even.take(),
            (0..100).filter(|x| x % 2 == 0).collect::<Vec<_>>()
        );
        checker.assert_ok();
    });
}

#[test]
fn genstage_partition_late_subscribe_errors() {
    // partition_dispatcher_test.exs "errors on subscribe": a taken
    // partition and one out of range are refused, synchronously; a
    // partition freed by a cancel can be taken again.
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .dispatch(Dispatch::partition(2, |x: &u64| *x as usize))
            .late_subscribers(LastCancel::Wait)
            .build();
        p.consumer("even", sink::drain())
            .subscribe(&src, Subscribe::new().partition(0));
        let run = p.spawn().unwrap();
        let err = run
            .consumer("again", sink::drain())
            .subscribe(&src, Subscribe::new().partition(0))
            .unwrap_err();
        assert!(matches!(
            err,
            SubscribeError::Dispatch {
                error: DispatchError::PartitionTaken(0),
                ..
            }
        ));
        let err = run
            .consumer("out", sink::drain())
            .subscribe(&src, Subscribe::new().partition(2))
            .unwrap_err();
        assert!(matches!(
            err,
            SubscribeError::Dispatch {
                error: DispatchError::BadPartition { .. },
                ..
            }
        ));
        let (odd, seen_odd) = sink::collect();
        let first = run
            .consumer("odd", sink::drain())
            .subscribe(&src, Subscribe::new().partition(1))
            .unwrap();
        // The producer is waiting inside `produce` with the demand of both
        // partitions...
        until(|| !handle.demands().is_empty()).await;
        first.cancel();
        // ...when partition 1 is taken again at once: the producer sees the
        // new subscriber (before routing its next events) before the
        // cancel (at its next collect).
        run.consumer("odd-again", odd)
            .subscribe(&src, Subscribe::max_demand(10).partition(1))
            .unwrap();
        handle.extend(0..20);
        until(|| seen_odd.len() == 10).await;
        handle.close();
        let report = run.join().await.unwrap();
        assert_eq!(
            seen_odd.take(),
            (0..20).filter(|x| x % 2 == 1).collect::<Vec<_>>()
        );
        assert_eq!(report.stage("odd").unwrap().end, "completed");
    });
}

#[test]
fn genstage_on_cancel_stop_ends_the_producer_with_its_last_subscriber() {
    // gen_stage_test.exs "from_enumerable/2 accepts a :on_cancel option"
    // (`on_cancel: :stop`): a producer with no build-time subscriber waits
    // for its first, and ends when the last one leaves.
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", source::iter(0u64..))
            .late_subscribers(LastCancel::End)
            .build();
        let run = p.spawn().unwrap();
        for _ in 0..10 {
            testkit::settle().await;
        }
        assert_eq!(run.stats().stages[0].state, StageState::Running);
        let (c, seen) = sink::collect();
        let sub = run
            .consumer("viewer", c)
            .subscribe(&src, Subscribe::max_demand(10))
            .unwrap();
        until(|| seen.len() >= 30).await;
        sub.cancel();
        let report = tokio::time::timeout(Duration::from_secs(60), run.join())
            .await
            .expect("the producer ends with its last subscriber")
            .unwrap();
        assert_eq!(report.status, Status::Completed);
        assert_eq!(report.stage("producer").unwrap().end, "completed");
        let viewer = report.stage("viewer").unwrap();
        assert_eq!(viewer.end, "completed");
        assert_eq!(viewer.received, viewer.processed);
        let seen = seen.take();
        assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    });
}

#[test]
fn genstage_on_cancel_continue_keeps_the_producer_for_the_next_subscriber() {
    // gen_stage_test.exs "from_enumerable/2 accepts a :on_cancel option"
    // (`on_cancel: :continue`) and "demand can be set to :accumulate via
    // API using broadcast": consumers leave, the producer stays, and the
    // next consumer gets what comes next. With no subscriber there is no
    // demand, so nothing is produced meanwhile.
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .dispatch(Dispatch::broadcast())
            .late_subscribers(LastCancel::Wait)
            .build();
        let run = p.spawn().unwrap();
        let (first, seen_first) = sink::collect();
        let sub = run
            .consumer("first", first)
            .subscribe(&src, Subscribe::max_demand(10))
            .unwrap();
        handle.extend(0..5);
        until(|| seen_first.len() == 5).await;
        sub.cancel();
        handle.extend(5..30);
        for _ in 0..50 {
            testkit::settle().await;
        }
        let stats = run.stats();
        assert_eq!(stats.stages[0].state, StageState::Running);
        // At most the demand `first` had granted before it left (the
        // producer may have been called with it already); nothing more
        // without a subscriber. What was emitted waits, bounded by that.
        let emitted = handle.emitted();
        assert!(emitted <= 15, "emitted {emitted}");

        let checker = Checker::new("producer → second");
        let (second, seen_second) = sink::collect();
        run.consumer("second", second)
            .subscribe(&src, checker.on(Subscribe::max_demand(10)))
            .unwrap();
        // Events the producer had already routed to `first` when it left
        // are abandoned, and counted (never silently lost).
        let abandoned = || run.stats().stages[0].abandoned;
        until(|| seen_second.len() as u64 + abandoned() == 25).await;
        let abandoned = abandoned();
        assert!(abandoned <= 10, "abandoned {abandoned}");
        handle.close();
        let report = run.join().await.unwrap();
        assert_eq!(seen_first.take(), [0, 1, 2, 3, 4]);
        assert_eq!(seen_second.take(), (5 + abandoned..30).collect::<Vec<_>>());
        assert_eq!(report.stage("first").unwrap().end, "completed");
        assert_eq!(report.stage("second").unwrap().end, "completed");
        checker.assert_ok();
    });
}

#[test]
fn genstage_late_processor_and_consumer_chain() {
    // gen_stage_test.exs "producer-producer_consumer-consumer demand / with
    // 80% min demand with late subscription": both hops subscribed while
    // running, each keeping its own accounting.
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", source::iter(0..1000u64))
            .late_subscribers(LastCancel::End)
            .build();
        let run = p.spawn().unwrap();
        let first = Checker::new("producer → doubler");
        let (doubled, _) = run
            .processor("doubler", stage::map(|x: u64| x * 2))
            .subscribe(&src, first.on(Subscribe::max_demand(100).min_demand(80)))
            .unwrap();
        let second = Checker::new("doubler → consumer");
        let (c, seen) = sink::collect();
        run.consumer("consumer", c)
            .subscribe(
                &doubled,
                second.on(Subscribe::max_demand(100).min_demand(50)),
            )
            .unwrap();
        let report = run.join().await.unwrap();
        assert_eq!(seen.take(), (0..1000).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(report.stage("doubler").unwrap().processed, 1000);
        assert_eq!(report.stage("consumer").unwrap().processed, 1000);
        first.assert_ok();
        second.assert_ok();
        assert!(
            first.asks()[1..].iter().all(|&n| n <= 20),
            "{:?}",
            first.asks()
        );
    });
}

#[test]
fn late_subscribers_stop_with_the_pipeline() {
    // D5: a cancelled pipeline stops its late stages too, and `join`
    // reports them.
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .late_subscribers(LastCancel::Wait)
            .build();
        let run = p.spawn().unwrap();
        let (mid, _) = run
            .processor("mid", stage::map(|x: u64| x + 1))
            .subscribe(&src, Subscribe::max_demand(10))
            .unwrap();
        run.consumer("end", sink::drain())
            .subscribe(&mid, Subscribe::max_demand(10))
            .unwrap();
        handle.extend(0..5);
        testkit::settle().await;
        let watch = run.watch();
        assert_eq!(watch.live_stages(), 3);
        run.cancel();
        let report = tokio::time::timeout(Duration::from_secs(60), run.join())
            .await
            .expect("every stage stops")
            .unwrap_err()
            .into_report();
        assert!(matches!(report.status, Status::Cancelled(_)));
        for name in ["producer", "mid", "end"] {
            assert_eq!(report.stage(name).unwrap().end, "cancelled", "{name}");
        }
        assert_eq!(watch.live_stages(), 0);
    });
}

#[test]
fn late_subscribers_stop_when_the_handle_is_dropped() {
    // D5, owner semantics: dropping the handle stops the late stages.
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", source::iter(0u64..))
            .late_subscribers(LastCancel::Wait)
            .build();
        let run = p.spawn().unwrap();
        let (viewer, seen) = sink::collect();
        run.consumer("viewer", viewer)
            .subscribe(&src, Subscribe::max_demand(10))
            .unwrap();
        until(|| seen.len() >= 30).await;
        let watch = run.watch();
        drop(run);
        tokio::time::timeout(Duration::from_secs(60), watch.stopped())
            .await
            .expect("every stage stops");
    });
}

#[test]
fn refused_late_subscriptions_say_why() {
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let fixed = p.producer("fixed", source::iter(0..10u64));
        p.consumer("c", sink::drain())
            .subscribe(&fixed, Subscribe::default());
        let open = p
            .add_producer("open", source::iter(0..10u64))
            .late_subscribers(LastCancel::End)
            .build();
        p.consumer("d", sink::drain())
            .subscribe(&open, Subscribe::default());
        let mut other = Pipeline::new();
        let foreign = other.producer("foreign", source::iter(0..1u64));
        let run = p.spawn().unwrap();
        let err = run
            .consumer("x", sink::drain())
            .subscribe(&fixed, Subscribe::default())
            .unwrap_err();
        assert!(matches!(err, SubscribeError::NotAccepting { .. }), "{err}");
        let err = run
            .consumer("x", sink::drain())
            .subscribe(&foreign, Subscribe::default())
            .unwrap_err();
        assert!(matches!(err, SubscribeError::UnknownStage { .. }), "{err}");
        let err = run
            .consumer("x", sink::drain())
            .subscribe(&open, Subscribe::max_demand(0))
            .unwrap_err();
        assert!(matches!(err, SubscribeError::BadDemand { .. }), "{err}");
        // Once `open` has ended, nobody can join it.
        until(|| run.stats().stages[2].state == StageState::Ended).await;
        let err = run
            .consumer("x", sink::drain())
            .subscribe(&open, Subscribe::default())
            .unwrap_err();
        assert!(matches!(err, SubscribeError::Ended { .. }), "{err}");
        let report = run.join().await.unwrap();
        // Refused subscribers left nothing behind.
        assert!(report.stage("x").is_none());
    });
}

#[test]
fn a_late_subscriber_stuck_in_its_handler_stops_on_cancel() {
    // D5 for a late stage the watcher does not know about: its own task
    // wakes it on cancel, which interrupts a handler stuck at an await.
    #[derive(Clone)]
    struct Stuck;
    impl demandflow::Consumer<u64> for Stuck {
        async fn consume(
            &mut self,
            _events: &[u64],
            _cx: &demandflow::Context,
        ) -> Result<(), demandflow::BoxError> {
            std::future::pending().await
        }
    }
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .late_subscribers(LastCancel::Wait)
            .build();
        let run = p.spawn().unwrap();
        run.consumer("stuck", Stuck)
            .subscribe(&src, Subscribe::max_demand(10))
            .unwrap();
        handle.extend(0..3);
        until(|| run.stats().stages[1].received == 3).await;
        run.cancel();
        let report = tokio::time::timeout(Duration::from_secs(60), run.join())
            .await
            .expect("the stuck stage is interrupted")
            .unwrap_err()
            .into_report();
        let stuck = report.stage("stuck").unwrap();
        assert_eq!(stuck.end, "cancelled");
        assert_eq!(stuck.abandoned, 3);
    });
}
