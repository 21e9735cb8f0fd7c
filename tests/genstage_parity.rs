//! GenStage's own behaviour tests (CONFORMANCE.md §2, items 1–36), ported.
//! Each test is named after the behaviour it checks (`genstage_...`) and
//! says its item number.
//!
//! # Behaviours with no meaning here, and why
//!
//! * 13, 14 (`demand: :accumulate` / `:forward`): a demandflow producer is
//!   only called with demand, and a source that cannot wait uses the push
//!   buffer ([`demandflow::push`]); there is no demand mode to switch.
//! * 16 (invalid demand mode from `handle_subscribe`): the mode is a typed
//!   option ([`Subscribe::manual`]), and a producer has no subscriptions.
//! * 21 (`format_discarded`): drops are counted in `PushStats` (checked in
//!   18, 19) and the report, not logged through a user callback.
//! * 23, 24 (buffer "permanent" entries, `sync_info`/`async_info`): there
//!   are no in-band info messages.
//! * 28 (subscribing to a dead producer at run time): a foreign stage is a
//!   build error (tested here); subscribing at run time to a stage that has
//!   ended is refused with `SubscribeError::Ended` (tested, with the rest
//!   of run-time subscription, in `late_subscribers.rs`).
//! * 30 (duplicated subscription ref, events for an unknown subscription,
//!   messages to the wrong stage type): edges are typed values made by the
//!   builder; the dispatcher-level duplicates/unknowns are tested (12).
//! * 31 (`handle_call` replies): stages have no call interface.
//! * 33 (`shuffle_demands_on_first_dispatch`, max-demand warning): no
//!   shuffling option; the largest-pending-demand rule is tested.
//! * 35, 36 (`ConsumerSupervisor`): there is none; `concurrency(n)` runs a
//!   fixed set of instances, and supervision has its own suite.
#![cfg(feature = "testkit")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use demandflow::dispatcher::{
    BroadcastDispatcher, DemandDispatcher, DispatchError, Dispatcher, PartitionDispatcher,
    SubscriberSpec, SubscriptionId,
};
use demandflow::push::{self, Overflow, PushConfig};
use demandflow::testkit::{self, Checker};
use demandflow::{
    sink, source, stage, BoxError, BuildError, CancelMode, Consumer, Context, Dispatch, Pipeline,
    Restart, Subscribe,
};

/// A consumer recording the size of every batch it is handed.
#[derive(Clone, Default)]
struct Batches(Arc<Mutex<Vec<usize>>>);

impl Consumer<u64> for Batches {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        self.0.lock().unwrap().push(events.len());
        Ok(())
    }
}

fn batches(n: u64, options: Subscribe) -> Vec<usize> {
    let b = Batches::default();
    let seen = b.0.clone();
    testkit::Runner::new()
        .run_with(|p| {
            let src = p.producer("producer", source::iter(0..n));
            p.consumer("consumer", b).subscribe(&src, options);
            Vec::<u64>::new
        })
        .unwrap();
    let out = seen.lock().unwrap().clone();
    assert_eq!(out.iter().sum::<usize>() as u64, n);
    out
}

#[test]
fn genstage_defaults_give_batches_of_500() {
    // 1
    assert_eq!(batches(2000, Subscribe::default()), [500; 4]);
}

#[test]
fn genstage_min_demand_80_gives_batches_of_20() {
    // 2
    assert!(batches(200, Subscribe::max_demand(100).min_demand(80))
        .iter()
        .all(|&b| b == 20));
}

#[test]
fn genstage_min_demand_20_gives_80_then_the_20_left_then_80() {
    // 3
    let b = batches(300, Subscribe::max_demand(100).min_demand(20));
    assert_eq!(&b[..3], &[80, 20, 80]);
}

#[test]
fn genstage_max_demand_1_gives_one_event_per_batch() {
    // 4
    assert_eq!(batches(50, Subscribe::max_demand(1).min_demand(0)), [1; 50]);
}

#[test]
fn genstage_each_hop_keeps_its_own_accounting() {
    // 5: producer → processor (10/5) → consumer (4/2)
    let first = Checker::new("producer → middle");
    let second = Checker::new("middle → consumer");
    let (a, b) = (first.clone(), second.clone());
    let out = testkit::run(move |p| {
        let src = p.producer("producer", source::iter(0..100u64));
        let mid = p
            .processor("middle", stage::map(|x: u64| x))
            .subscribe(&src, a.on(Subscribe::max_demand(10).min_demand(5)));
        p.processor("last", stage::map(|x: u64| x))
            .subscribe(&mid, b.on(Subscribe::max_demand(4).min_demand(2)))
    });
    assert_eq!(out, (0..100).collect::<Vec<_>>());
    let (a, b) = (first.asks(), second.asks());
    // The middle stage handles chunks as its own downstream allows; each
    // re-ask tops its outstanding demand back up to 10 once it fell to 5
    // or below (the checkers also held D2: never more than 10 buffered).
    assert_eq!(a[0], 10);
    assert!(a[1..].iter().all(|&n| (5..=10).contains(&n)), "{a:?}");
    assert_eq!(b[0], 4);
    assert!(b[1..].iter().all(|&n| n == 2), "{b:?}");
}

#[test]
fn genstage_stops_asking_when_consumer_stops_asking() {
    // 6
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        handle.extend(0..10_000);
        let mut p = Pipeline::new();
        let src = p.producer("producer", producer);
        let mid = p
            .processor("middle", stage::map(|x: u64| x))
            .subscribe(&src, Subscribe::max_demand(10));
        let mut sub = testkit::consumer(&mut p, &mid, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        sub.ask(5).unwrap();
        assert_eq!(sub.expect_n(5).await, [0, 1, 2, 3, 4]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The middle stage holds at most its max_demand beyond what went on.
        assert!(handle.emitted() <= 15, "{}", handle.emitted());
        sub.expect_none().await;
    });
}

#[test]
fn genstage_keeps_asking_even_when_every_event_is_discarded() {
    // 7
    let outcome = testkit::Runner::new().run(|p| {
        let src = p.producer("producer", source::iter(0..1000u64));
        p.processor("drop-all", stage::filter(|_: &u64| false))
            .subscribe(&src, Subscribe::max_demand(10))
    });
    assert!(outcome.violations.is_empty());
    let report = outcome.result.unwrap();
    assert_eq!(report.stage("drop-all").unwrap().processed, 1000);
}

#[test]
fn genstage_queued_events_are_delivered_after_a_temporary_upstream_is_lost() {
    // 8
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .restart(Restart::Temporary)
            .build();
        let mid = p.processor("middle", stage::map(|x: u64| x)).subscribe(
            &src,
            Subscribe::max_demand(10).cancel(CancelMode::Temporary),
        );
        let mut sub = testkit::consumer(&mut p, &mid, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        handle.extend(0..5);
        testkit::settle().await; // queued on producer → middle
        handle.fail("producer lost");
        testkit::settle().await;
        sub.ask(10).unwrap();
        assert_eq!(sub.expect_n(5).await, [0, 1, 2, 3, 4]);
        sub.expect_complete().await; // temporary: the middle ends normally
    });
}

#[test]
fn genstage_broadcast_demand_is_the_minimum_across_consumers() {
    // 9, 11
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        handle.extend(0..100);
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", producer)
            .dispatch(Dispatch::broadcast())
            .build();
        let mut a = testkit::consumer_named(&mut p, "a", &src, Subscribe::new().manual());
        let mut b = testkit::consumer_named(&mut p, "b", &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        a.ask(10).unwrap();
        b.ask(20).unwrap();
        assert_eq!(a.expect_n(10).await, b.expect_n(10).await);
        a.expect_none().await;
        b.expect_none().await;
        // One demand of 10 upstream, not one per consumer.
        demandflow::assert_demand!(handle, [10]);
    });
}

#[test]
fn genstage_broadcast_subscriber_that_never_asks_holds_everyone_until_it_cancels() {
    // 10
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p
            .add_producer("producer", source::iter(0..100u64))
            .dispatch(Dispatch::broadcast())
            .build();
        let mut a = testkit::consumer_named(&mut p, "a", &src, Subscribe::new().manual());
        let mut sync = testkit::consumer_named(&mut p, "sync", &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        a.ask(10).unwrap();
        a.expect_none().await;
        sync.cancel();
        assert_eq!(a.expect_n(10).await, (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn genstage_broadcast_cancel_releases_demand_selector_reasks_and_duplicates_are_refused() {
    // 12
    let (a, b) = (SubscriptionId(1), SubscriptionId(2));
    let mut d = BroadcastDispatcher::<u64>::new();
    d.subscribe(a, SubscriberSpec::default()).unwrap();
    let even = SubscriberSpec {
        partition: None,
        selector: Some(Arc::new(|x: &u64| x % 2 == 0)),
    };
    d.subscribe(b, even.clone()).unwrap();
    assert_eq!(
        d.subscribe(b, even),
        Err(DispatchError::AlreadySubscribed(b))
    );
    d.ask(a, 4).unwrap();
    assert_eq!(d.demand(), 0, "b holds demand back");
    d.ask(b, 4).unwrap();
    let mut out = vec![];
    d.dispatch(vec![1, 2, 3, 4], &mut out);
    // b's selector filters; GenStage asks again on b's behalf for the 2 it
    // discarded, so only the 2 it received use its demand.
    assert_eq!(out, vec![(a, vec![1, 2, 3, 4]), (b, vec![2, 4])]);
    d.ask(a, 5).unwrap();
    assert_eq!(d.demand(), 2, "b still has the 2 it discarded");
    out.clear();
    d.dispatch(vec![5, 6], &mut out);
    assert_eq!(out, vec![(a, vec![5, 6]), (b, vec![6])]);
    assert_eq!(d.demand(), 1);
    assert_eq!(d.cancel(b), Ok(0));
    assert_eq!(
        d.demand(),
        3,
        "cancelling the slow subscriber releases demand"
    );
}

#[test]
fn genstage_manual_demand_each_ask_50_yields_exactly_50() {
    // 15
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p.producer("producer", source::iter(0..1000u64));
        let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        for round in 0..3u64 {
            sub.ask(50).unwrap();
            let got = sub.expect_n(50).await;
            assert_eq!(got, (round * 50..round * 50 + 50).collect::<Vec<_>>());
            sub.expect_none().await;
        }
    });
}

#[test]
fn genstage_events_produced_without_demand_are_buffered_then_delivered_in_order() {
    // 17
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        handle.over_deliver(50); // emits up to 50 more than asked
        handle.extend(0..60);
        let mut p = Pipeline::new();
        let src = p.producer("producer", producer);
        let checker = Checker::new("producer → consumer");
        let mut sub = testkit::consumer(&mut p, &src, checker.on(Subscribe::new().manual()));
        let run = p.spawn().unwrap();
        sub.ask(5).unwrap();
        assert_eq!(sub.expect_n(5).await, [0, 1, 2, 3, 4]);
        sub.expect_none().await; // the surplus waits for demand
        let stats = run.stats();
        assert_eq!(stats.stages[0].emitted, 55);
        sub.ask(55).unwrap();
        assert_eq!(sub.expect_n(55).await, (5..60).collect::<Vec<_>>());
        checker.assert_ok();
    });
}

async fn push_then_read(overflow: Overflow) -> (Vec<char>, push::PushStats) {
    let config = PushConfig::default()
        .with_max_queue(5)
        .with_overflow(overflow);
    let (pusher, producer) = push::channel::<char>(config).unwrap();
    for c in 'a'..='h' {
        let _ = pusher.push(c);
    }
    let mut p = Pipeline::new();
    let src = p.producer("producer", producer);
    let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
    let _run = p.spawn().unwrap();
    sub.ask(10).unwrap();
    let got = sub.drain_within(Duration::from_millis(100)).await;
    (got, pusher.stats())
}

#[test]
fn genstage_buffer_keep_first_drops_the_new_overflow() {
    // 18
    testkit::block_on(async {
        let (got, stats) = push_then_read(Overflow::DropNewest).await;
        assert_eq!(got, ['a', 'b', 'c', 'd', 'e']);
        assert_eq!(stats.dropped_newest, 3);
    });
}

#[test]
fn genstage_buffer_keep_last_drops_the_oldest() {
    // 19
    testkit::block_on(async {
        let (got, stats) = push_then_read(Overflow::DropOldest).await;
        assert_eq!(got, ['d', 'e', 'f', 'g', 'h']);
        assert_eq!(stats.dropped_oldest, 3);
    });
}

#[test]
fn genstage_a_large_buffer_never_drops_and_reports_its_count() {
    // 20, 22
    let (pusher, mut producer) = push::channel::<u32>(PushConfig::default()).unwrap();
    pusher.push(1).unwrap();
    for i in 0..4 {
        pusher.push(i).unwrap();
    }
    assert_eq!(pusher.stats().queued, 5);
    for i in 0..3 {
        pusher.push(i).unwrap();
    }
    assert_eq!(pusher.stats().queued, 8);
    testkit::block_on(async {
        use demandflow::{Emitter, Producer};
        let mut out = Emitter::new();
        producer
            .produce(100, &mut out, &Context::detached("p"))
            .await
            .unwrap();
        assert_eq!(out.len(), 8);
    });
    assert_eq!(pusher.stats().queued, 0);
    assert_eq!(pusher.stats().dropped(), 0);
}

/// Two producers feeding one consumer with `mode`; the first fails (not
/// restarted) or ends normally. Returns how the consumer ended and what it
/// received.
fn cancel_mode(mode: CancelMode, first_fails: bool) -> (String, usize) {
    let (producer, handle) = testkit::producer::<u64>();
    let (other, other_handle) = testkit::producer::<u64>();
    handle.extend(0..3);
    if first_fails {
        handle.fail("gone");
    } else {
        handle.close();
    }
    other_handle.extend(100..103);
    let (collect, got) = sink::collect();
    let outcome = testkit::Runner::new()
        .timeout(Duration::from_secs(10))
        .run_with(|p| {
            let a = p
                .add_producer("first", producer)
                .restart(Restart::Temporary)
                .build();
            let b = p.producer("second", other);
            p.consumer("consumer", collect)
                .also_subscribe(&a, Subscribe::max_demand(1).min_demand(0).cancel(mode))
                .subscribe(&b, Subscribe::max_demand(10).cancel(mode));
            Vec::<u64>::new
        });
    let end = outcome.report().stage("consumer").unwrap().end.clone();
    (end, got.len())
}

#[test]
fn genstage_cancel_permanent_consumer_ends_with_its_producer() {
    // 25
    let (end, _) = cancel_mode(CancelMode::Permanent, true);
    assert!(end.starts_with("stopped"), "{end}");
    let (end, _) = cancel_mode(CancelMode::Permanent, false);
    assert!(end == "completed", "{end}");
}

#[test]
fn genstage_cancel_transient_consumer_survives_a_normal_end_only() {
    // 26
    let (end, got) = cancel_mode(CancelMode::Transient, false);
    assert_eq!(end, "cancelled", "still running at the time limit: {end}");
    assert_eq!(got, 6);
    let (end, _) = cancel_mode(CancelMode::Transient, true);
    assert!(end.starts_with("stopped"), "{end}");
}

#[test]
fn genstage_cancel_temporary_consumer_never_ends_with_its_producer() {
    // 27
    let (end, got) = cancel_mode(CancelMode::Temporary, true);
    assert_eq!(end, "cancelled", "still running at the time limit: {end}");
    assert_eq!(got, 6);
}

#[test]
fn genstage_subscribe_to_unknown_producer_is_a_build_error() {
    // 28
    let mut other = Pipeline::new();
    let foreign = other.producer("foreign", source::iter(0..1u64));
    let mut p = Pipeline::new();
    let _own = p.producer("own", source::iter(0..1u64));
    p.consumer("c", sink::drain())
        .subscribe(&foreign, Subscribe::new());
    assert!(matches!(p.validate(), Err(BuildError::UnknownStage { .. })));
}

#[test]
fn genstage_bad_options_are_rejected_at_subscribe() {
    // 29
    for (opts, msg) in [
        (Subscribe::max_demand(0), "max_demand must be at least 1"),
        (
            Subscribe::max_demand(1000).min_demand(1000),
            "min_demand (1000) must be below max_demand (1000), at most 999",
        ),
    ] {
        let mut p = Pipeline::new();
        let src = p.producer("producer", source::iter(0..1u64));
        p.consumer("c", sink::drain()).subscribe(&src, opts);
        let e = p.validate().unwrap_err();
        assert!(e.to_string().ends_with(msg), "{e}");
    }
}

#[test]
fn genstage_dispatcher_refuses_duplicate_and_unknown_subscriptions() {
    // 12, 30
    let mut d = DemandDispatcher::<u8>::new();
    d.subscribe(SubscriptionId(1), SubscriberSpec::default())
        .unwrap();
    assert_eq!(
        d.subscribe(SubscriptionId(1), SubscriberSpec::default()),
        Err(DispatchError::AlreadySubscribed(SubscriptionId(1)))
    );
    assert_eq!(
        d.ask(SubscriptionId(7), 1),
        Err(DispatchError::UnknownSubscription(SubscriptionId(7)))
    );
    assert_eq!(
        d.cancel(SubscriptionId(7)),
        Err(DispatchError::UnknownSubscription(SubscriptionId(7)))
    );
}

#[test]
fn genstage_stream_take_10_leaves_nothing_running() {
    // 32
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p.producer("producer", source::iter(0u64..));
        let out = p.stream(&src, Subscribe::default());
        let run = p.spawn().unwrap();
        let first: Vec<u64> = out.take(10).collect().await;
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        // The stream was dropped: the producer lost its subscriber and ends.
        let report = run.join().await.unwrap();
        assert!(report.stage("producer").unwrap().emitted <= 1000);
    });
}

#[test]
fn genstage_demand_dispatcher_sends_to_the_largest_pending_demand() {
    // 33
    let (a, b) = (SubscriptionId(1), SubscriptionId(2));
    let mut d = DemandDispatcher::<u8>::new();
    d.subscribe(a, SubscriberSpec::default()).unwrap();
    d.subscribe(b, SubscriberSpec::default()).unwrap();
    d.ask(a, 3).unwrap();
    d.ask(b, 5).unwrap();
    let mut out = vec![];
    d.dispatch(vec![1, 2, 3], &mut out);
    assert_eq!(out, vec![(b, vec![1, 2, 3])]);
    out.clear();
    d.dispatch(vec![4, 5, 6], &mut out);
    assert_eq!(out, vec![(a, vec![4, 5, 6])]);
}

#[test]
fn genstage_demand_dispatcher_forwards_the_sum_of_demand_to_the_producer() {
    // 33: GenStage's DemandDispatcher passes every ask on to the producer.
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        handle.extend(0..100);
        let mut p = Pipeline::new();
        let src = p.producer("producer", producer);
        let mut a = testkit::consumer_named(&mut p, "a", &src, Subscribe::new().manual());
        let mut b = testkit::consumer_named(&mut p, "b", &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        a.ask(3).unwrap();
        b.ask(5).unwrap();
        // One call for both asks; its batch goes to the hungriest first.
        assert_eq!(b.expect_n(5).await, (0..5).collect::<Vec<_>>());
        assert_eq!(a.expect_n(3).await, (5..8).collect::<Vec<_>>());
        a.expect_none().await;
        b.expect_none().await;
        demandflow::assert_demand!(handle, [8]);
    });
}

#[test]
fn genstage_partition_buffers_events_without_demand_and_refuses_unknown_partitions() {
    // 34
    let (a, b) = (SubscriptionId(1), SubscriptionId(2));
    let mut d = PartitionDispatcher::new(2, 10, |x: &u64| *x as usize);
    let part = |p| SubscriberSpec {
        partition: Some(p),
        selector: None,
    };
    assert_eq!(
        d.subscribe(a, part(2)),
        Err(DispatchError::BadPartition {
            partition: Some(2),
            partitions: 2
        })
    );
    d.subscribe(a, part(0)).unwrap();
    d.subscribe(b, part(1)).unwrap();
    d.ask(a, 10).unwrap();
    let mut out = vec![];
    d.dispatch(vec![0, 1, 2, 3, 4], &mut out);
    assert_eq!(out, vec![(a, vec![0, 2, 4])]);
    assert_eq!(d.buffered(), 2, "partition 1 has no demand yet");
    out.clear();
    d.ask(b, 1).unwrap();
    d.flush(&mut out);
    assert_eq!(out, vec![(b, vec![1])]);
    out.clear();
    d.ask(b, 5).unwrap();
    d.flush(&mut out);
    assert_eq!(out, vec![(b, vec![3])]);
}
