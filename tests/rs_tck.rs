//! Reactive Streams TCK rules (CONFORMANCE.md §1), ported to demandflow.
//!
//! Each test keeps the TCK method's name (`required_spec303_...`) or names
//! the rule (`rs_3_9_...`), so results map back 1:1. The subscriber is the
//! testkit's hand-driven [`TestConsumer`] (the TCK's `ManualSubscriber`):
//! `ask(n)` is `request(n)`, `cancel()` is `cancel()`, and the `expect_*`
//! methods wait 100 ms of virtual time, the TCK's default timeout. Every
//! test runs under a paused clock.
//!
//! # Rules with no meaning here, and why
//!
//! * 1.9 / 2.5 / 2.12 / 2.13 (`onSubscribe` exactly once, null subscriber
//!   or element → NPE): subscriptions are made by the pipeline builder at
//!   build time, once per edge, and Rust has no null. A rejected
//!   subscription is a typed `BuildError` before anything runs
//!   (`required_spec109_may_reject_calls_to_subscribe_...`).
//! * 1.10 (same subscriber twice): a stage subscribes through the builder;
//!   each `subscribe` call makes a distinct edge.
//! * 2.2, 2.11, 3.1, 3.4, 3.10, 3.11, 3.14–3.16 (untested in the TCK too:
//!   recommendations about threads and return values): `ask`/`cancel`
//!   return `()`/`Result` without blocking and never call back into the
//!   subscriber; handlers run on the stage's own task.
//! * 2.3 / 2.4 (no calls on the subscription from a terminal handler):
//!   `Consumer::finish` has no subscription to call; after the end an ask
//!   is ignored (`required_spec107_...`).
//! * 2.7 (serial `request`/`cancel`): stage handlers take `&mut self`, so
//!   the compiler makes them serial; `TestConsumer::cancel` takes
//!   `&mut self`.
//! * 3.9 with negative `n`: demand is a `usize`; only zero is expressible.
//! * 1.6 / 1.8 are covered by 1.7 and 3.12.
//! * 2.9 "without a preceding request", for an empty producer: a producer
//!   is only called with demand (invariant D4), so it reports its end on
//!   the first request (see the test's docs).
#![cfg(feature = "testkit")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use demandflow::dispatcher::{DemandDispatcher, DispatchError, Dispatcher, SubscriptionId};
use demandflow::testkit::{self, Signalled, TestConsumer};
use demandflow::{
    sink, source, stage, AskError, BoxError, BuildError, Consumer, Context, Dispatch, Emitter,
    Pipeline, Processor, Restart, Subscribe,
};
use tokio::time::Instant;

/// `source::iter(0..n)` with a hand-driven subscriber.
fn publisher(n: u64) -> (Pipeline, TestConsumer<u64>) {
    let mut p = Pipeline::new();
    let src = p.producer("publisher", source::iter(0..n));
    let sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
    (p, sub)
}

#[test]
fn required_spec101_subscription_request_must_result_in_the_correct_number_of_produced_elements() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(10);
        let _run = p.spawn().unwrap();
        sub.expect_none().await; // nothing before the first request
        sub.ask(1).unwrap();
        assert_eq!(sub.expect_next().await, 0);
        sub.ask(1).unwrap();
        sub.ask(2).unwrap();
        assert_eq!(sub.expect_n(3).await, [1, 2, 3]);
        sub.expect_none().await;
        assert_eq!(sub.received(), 4);
    });
}

#[test]
fn required_spec102_may_signal_less_than_requested_and_terminate_subscription() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(3);
        let run = p.spawn().unwrap();
        sub.ask(10).unwrap();
        assert_eq!(sub.expect_n(3).await, [0, 1, 2]);
        sub.expect_complete().await;
        run.join().await.unwrap();
    });
}

#[test]
fn stochastic_spec103_must_signal_on_methods_sequentially() {
    #[derive(Clone)]
    struct Serial(Arc<AtomicBool>, Arc<AtomicU64>);
    impl Consumer<u64> for Serial {
        async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
            assert!(!self.0.swap(true, Ordering::SeqCst), "overlapping calls");
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.1.fetch_add(events.len() as u64, Ordering::SeqCst);
            self.0.store(false, Ordering::SeqCst);
            Ok(())
        }
    }
    let seen = Arc::new(AtomicU64::new(0));
    let s = Serial(Arc::new(AtomicBool::new(false)), seen.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut p = Pipeline::new();
        let src = p.producer("publisher", source::iter(0..200u64));
        p.consumer("serial", s)
            .subscribe(&src, Subscribe::max_demand(4));
        p.spawn().unwrap().join().await.unwrap();
    });
    assert_eq!(seen.load(Ordering::SeqCst), 200);
}

#[test]
fn optional_spec104_must_signal_on_error_when_fails() {
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("publisher", producer)
            .restart(Restart::Temporary)
            .build();
        let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
        let run = p.spawn().unwrap();
        sub.ask(1).unwrap();
        handle.fail("boom");
        let e = sub.expect_error().await;
        assert!(e.contains("boom"), "{e}");
        assert!(run.join().await.unwrap_err().is_stage_failed());
    });
}

#[test]
fn required_spec105_must_signal_on_complete_when_finite_stream_terminates() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(3);
        let _run = p.spawn().unwrap();
        for i in 0..3 {
            sub.ask(1).unwrap();
            assert_eq!(sub.expect_next().await, i);
        }
        sub.ask(1).unwrap();
        sub.expect_complete().await;
    });
}

#[test]
fn optional_spec105_empty_stream_must_terminate_by_signalling_on_complete() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(0);
        let _run = p.spawn().unwrap();
        sub.ask(1).unwrap();
        sub.expect_complete().await;
    });
}

#[test]
fn required_spec107_must_not_emit_further_signals_once_on_complete_has_been_signalled() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(1);
        let run = p.spawn().unwrap();
        sub.ask(10).unwrap();
        assert_eq!(sub.expect_next().await, 0);
        sub.expect_complete().await;
        sub.ask(10).unwrap(); // after the end: a no-op
        testkit::settle().await;
        // The terminal state is sticky: no event, no second kind of end.
        assert_eq!(sub.next().await, Signalled::Complete);
        assert_eq!(sub.received(), 1);
        run.join().await.unwrap();
    });
}

#[test]
fn required_spec109_may_reject_calls_to_subscribe_if_publisher_is_unable_or_unwilling_to_serve_them(
) {
    // A partition dispatcher refuses a subscriber naming no partition: a
    // typed error before the run, never a panic (G-T2).
    let mut p = Pipeline::new();
    let src = p
        .add_producer("publisher", source::iter(0..10u64))
        .dispatch(Dispatch::partition(2, |x: &u64| *x as usize))
        .build();
    p.consumer("a", sink::drain())
        .subscribe(&src, Subscribe::new().partition(0));
    p.consumer("b", sink::drain())
        .subscribe(&src, Subscribe::new());
    assert!(matches!(
        p.validate(),
        Err(BuildError::Dispatch {
            error: DispatchError::BadPartition {
                partition: None,
                ..
            },
            ..
        })
    ));
}

#[test]
fn optional_spec111_multicast_must_produce_the_same_elements_in_the_same_sequence_to_all_its_subscribers(
) {
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p
            .add_producer("publisher", source::iter(0..50u64))
            .dispatch(Dispatch::broadcast())
            .build();
        let mut a = testkit::consumer_named(&mut p, "a", &src, Subscribe::new().manual());
        let mut b = testkit::consumer_named(&mut p, "b", &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        a.ask(50).unwrap();
        b.ask(50).unwrap();
        let (xa, xb) = (a.expect_n(50).await, b.expect_n(50).await);
        assert_eq!(xa, (0..50).collect::<Vec<_>>());
        assert_eq!(xa, xb);
    });
}

#[test]
fn required_spec201_must_signal_demand_via_subscription_request() {
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p.producer("publisher", producer);
        let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        handle.extend(0..5);
        sub.expect_none().await;
        demandflow::assert_demand!(handle, []);
        sub.ask(2).unwrap();
        assert_eq!(sub.expect_n(2).await, [0, 1]);
        demandflow::assert_demand!(handle, [2]);
    });
}

#[test]
fn required_spec208_must_be_prepared_to_receive_on_next_signals_after_having_called_subscription_cancel(
) {
    testkit::block_on(async {
        let (p, mut sub) = publisher(u64::MAX);
        let run = p.spawn().unwrap();
        sub.ask(20).unwrap();
        assert_eq!(sub.expect_next().await, 0);
        sub.cancel();
        // What was in flight may still be read, never more than was asked.
        let rest = sub.drain_within(Duration::from_millis(100)).await;
        assert!((rest.len() as u64) < 20);
        assert_eq!(rest, (1..1 + rest.len() as u64).collect::<Vec<_>>());
        run.join().await.unwrap();
    });
}

/// Deliberate difference: a producer is only ever called with demand
/// (D4), so an empty *producer* learns it is empty, and says so, on the
/// first request. An end that does not come from the producer (a cancel,
/// an upstream failure) needs no request: see `required_spec210_...`.
#[test]
fn required_spec209_must_be_prepared_to_receive_an_on_complete_signal_without_preceding_request_call(
) {
    testkit::block_on(async {
        let (p, mut sub) = publisher(0);
        let _run = p.spawn().unwrap();
        sub.expect_none().await;
        sub.ask(1).unwrap();
        sub.expect_complete().await;
    });
}

#[test]
fn required_spec209_must_be_prepared_to_receive_an_on_complete_signal_with_preceding_request_call()
{
    testkit::block_on(async {
        let (p, mut sub) = publisher(0);
        let _run = p.spawn().unwrap();
        sub.ask(5).unwrap();
        sub.expect_complete().await;
    });
}

#[test]
fn required_spec210_must_be_prepared_to_receive_an_on_error_signal_without_preceding_request_call()
{
    testkit::block_on(async {
        let (p, mut sub) = publisher(10);
        let run = p.spawn().unwrap();
        run.cancel();
        let e = sub.expect_error().await;
        assert!(e.contains("cancelled"), "{e}");
        assert_eq!(sub.received(), 0);
    });
}

#[test]
fn required_spec210_must_be_prepared_to_receive_an_on_error_signal_with_preceding_request_call() {
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p
            .add_producer("publisher", producer)
            .restart(Restart::Temporary)
            .build();
        let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        sub.ask(3).unwrap();
        handle.push(7);
        assert_eq!(sub.expect_next().await, 7);
        handle.fail("upstream broke");
        assert!(sub.expect_error().await.contains("upstream broke"));
    });
}

#[test]
fn required_spec302_must_allow_synchronous_request_calls_from_on_next_and_on_subscribe() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(10);
        let _run = p.spawn().unwrap();
        for _ in 0..3 {
            sub.ask(1).unwrap();
        }
        let mut got = vec![];
        loop {
            match sub.next().await {
                Signalled::Next(x) => {
                    got.push(x);
                    sub.ask(1).unwrap(); // from "inside onNext"
                }
                Signalled::Complete => break,
                Signalled::Error(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

/// The stack depth never grows with the number of events: a million
/// events, each asked for alone (`max_demand = 1`), in a thread with a
/// 256 KiB stack. Asks and sends only touch the edge and wake the other task; no
/// stage ever calls into another.
#[test]
fn required_spec303_must_not_allow_unbounded_recursion() {
    const EVENTS: u64 = 1_000_000;
    let t = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let one = || Subscribe::max_demand(1).min_demand(0);
                let mut p = Pipeline::new();
                let src = p.producer("publisher", source::iter(0..EVENTS));
                let (sum, total) = sink::fold(0u64, |n, _x: u64| n + 1);
                p.consumer("count", sum).subscribe(&src, one());
                p.spawn().unwrap().join().await.unwrap();
                total.get()
            })
        })
        .unwrap();
    assert_eq!(t.join().unwrap(), EVENTS);
}

#[test]
fn required_spec306_after_subscription_is_cancelled_request_must_be_nops() {
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        let mut p = Pipeline::new();
        let src = p.producer("publisher", producer);
        let mut sub = testkit::consumer(&mut p, &src, Subscribe::new().manual());
        let _run = p.spawn().unwrap();
        sub.cancel();
        for _ in 0..3 {
            sub.ask(1).unwrap();
        }
        handle.extend(0..3);
        testkit::settle().await;
        assert_eq!(sub.received(), 0);
        demandflow::assert_demand!(handle, []);
    });
}

#[test]
fn required_spec307_after_subscription_is_cancelled_additional_cancelations_must_be_nops() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(10);
        let run = p.spawn().unwrap();
        sub.cancel();
        sub.cancel();
        sub.cancel();
        // The publisher lost its only subscriber and ends normally.
        assert_eq!(sub.next().await, Signalled::Complete);
        run.join().await.unwrap();
    });
}

#[test]
fn required_spec308_request_must_register_given_number_elements_to_be_produced() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(100);
        let _run = p.spawn().unwrap();
        sub.ask(3).unwrap();
        sub.ask(4).unwrap();
        assert_eq!(sub.expect_n(7).await, (0..7).collect::<Vec<_>>());
        sub.expect_none().await;
    });
}

#[test]
fn rs_3_9_ask_zero_is_an_error() {
    // The subscriber's ask.
    testkit::block_on(async {
        let (p, mut sub) = publisher(5);
        let _run = p.spawn().unwrap();
        assert_eq!(sub.ask(0), Err(AskError::Zero));
        sub.expect_none().await;
    });
    // A stage's manual ask.
    let cx = Context::detached("stage");
    assert_eq!(cx.ask(0), Err(AskError::Zero));
    // The message names the rule, so a user reading the error knows why.
    assert_eq!(
        AskError::Zero.to_string(),
        "asked for zero events: a request must be positive (Reactive Streams rule 3.9)"
    );
    // The dispatcher's.
    let mut d = DemandDispatcher::<u8>::new();
    d.subscribe(SubscriptionId(1), Default::default()).unwrap();
    assert_eq!(
        d.ask(SubscriptionId(1), 0),
        Err(DispatchError::AskZero(SubscriptionId(1)))
    );
    assert_eq!(
        DispatchError::AskZero(SubscriptionId(1)).to_string(),
        "subscription #1 asked for zero events: a request must be positive (Reactive Streams rule 3.9)"
    );
}

#[test]
fn required_spec309_request_zero_must_signal_illegal_argument_exception_in_a_running_stage() {
    /// A manual-demand processor that asks 0, then 3, from its timer.
    #[derive(Clone)]
    struct Asker(Arc<Mutex<Vec<Result<(), AskError>>>>, bool);
    impl Processor<u64, u64> for Asker {
        async fn process(
            &mut self,
            events: &[u64],
            out: &mut Emitter<u64>,
            _cx: &Context,
        ) -> Result<(), BoxError> {
            out.extend(events.iter().copied());
            Ok(())
        }
        fn manual_demand(&self) -> bool {
            true
        }
        fn timer(&self) -> Option<Instant> {
            (!self.1).then(Instant::now)
        }
        async fn on_timer(
            &mut self,
            _out: &mut Emitter<u64>,
            cx: &Context,
        ) -> Result<(), BoxError> {
            self.1 = true;
            let mut seen = self.0.lock().unwrap();
            seen.push(cx.ask(0));
            seen.push(cx.ask(3));
            Ok(())
        }
    }
    let seen = Arc::new(Mutex::new(vec![]));
    let asker = Asker(seen.clone(), false);
    let outcome = testkit::Runner::new()
        .timeout(Duration::from_secs(1))
        .run(|p| {
            let src = p.producer("publisher", source::iter(0..10u64));
            p.processor("asker", asker)
                .subscribe(&src, Subscribe::new())
        });
    assert_eq!(*seen.lock().unwrap(), [Err(AskError::Zero), Ok(())]);
    // Only the 3 asked for arrive; the run then waits for more asks.
    assert_eq!(outcome.events, [0, 1, 2]);
    assert!(outcome.stalled());
}

#[test]
fn required_spec312_cancel_must_make_the_publisher_to_eventually_stop_signaling() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(u64::MAX);
        let run = p.spawn().unwrap();
        sub.ask(10).unwrap();
        sub.ask(5).unwrap();
        let first = sub.expect_next().await;
        sub.cancel();
        let rest = sub.drain_within(Duration::from_millis(100)).await;
        assert!(rest.len() < 15, "{first} then {rest:?}");
        // The publisher stops: the run ends.
        let report = run.join().await.unwrap();
        assert!(report.stage("publisher").unwrap().emitted <= 15);
    });
}

#[test]
fn required_spec313_cancel_must_make_the_publisher_eventually_drop_all_references_to_the_subscriber(
) {
    #[derive(Clone)]
    struct Holds(#[allow(dead_code)] Arc<()>);
    impl Consumer<u64> for Holds {
        async fn consume(&mut self, _e: &[u64], _cx: &Context) -> Result<(), BoxError> {
            Ok(())
        }
    }
    testkit::block_on(async {
        let token = Arc::new(());
        let weak: Weak<()> = Arc::downgrade(&token);
        let (producer, handle) = testkit::producer::<u64>();
        handle.extend(0..10);
        let mut p = Pipeline::new();
        let src = p.producer("publisher", producer);
        p.consumer("subscriber", Holds(token))
            .subscribe(&src, Subscribe::max_demand(1));
        let run = p.spawn().unwrap();
        let watch = run.watch();
        testkit::settle().await;
        run.cancel();
        tokio::time::timeout(Duration::from_millis(300), watch.stopped())
            .await
            .expect("every stage task ends within 300 ms of cancel");
        drop(run);
        assert!(weak.upgrade().is_none(), "the subscriber was not dropped");
    });
}

#[test]
fn required_spec317_must_support_a_pending_element_count_up_to_long_max_value() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(3);
        let _run = p.spawn().unwrap();
        sub.ask(usize::MAX).unwrap();
        assert_eq!(sub.expect_n(3).await, [0, 1, 2]);
        sub.expect_complete().await;
    });
}

#[test]
fn required_spec317_must_support_a_cumulative_pending_element_count_up_to_long_max_value() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(3);
        let _run = p.spawn().unwrap();
        sub.ask(usize::MAX / 2).unwrap();
        sub.ask(usize::MAX / 2).unwrap();
        sub.ask(1).unwrap();
        assert_eq!(sub.expect_n(3).await, [0, 1, 2]);
        sub.expect_complete().await;
    });
}

#[test]
fn required_spec317_must_not_signal_on_error_when_pending_above_long_max_value() {
    testkit::block_on(async {
        let (p, mut sub) = publisher(100);
        let run = p.spawn().unwrap();
        sub.ask(usize::MAX - 1).unwrap();
        let mut n = 0;
        loop {
            match sub.next().await {
                Signalled::Next(_) => {
                    n += 1;
                    sub.ask(usize::MAX - 1).unwrap(); // saturates, never wraps
                }
                Signalled::Complete => break,
                Signalled::Error(e) => panic!("{e}"),
            }
        }
        assert_eq!(n, 100);
        run.join().await.unwrap();
    });
    // The arithmetic itself saturates.
    let mut d = DemandDispatcher::<u8>::new();
    d.subscribe(SubscriptionId(1), Default::default()).unwrap();
    d.ask(SubscriptionId(1), usize::MAX).unwrap();
    d.ask(SubscriptionId(1), usize::MAX).unwrap();
    assert_eq!(d.demand(), usize::MAX);
}

#[test]
fn rs_4_2_processor_failure_propagates_on_error_downstream() {
    testkit::block_on(async {
        let mut p = Pipeline::new();
        let src = p.producer("publisher", source::iter(0..10u64));
        let mid = p
            .processor(
                "fails",
                stage::map(|x: u64| {
                    assert!(x < 3, "processor broke at {x}");
                    x
                }),
            )
            .restart(Restart::Temporary)
            .subscribe(&src, Subscribe::max_demand(1).min_demand(0));
        let mut sub = testkit::consumer(&mut p, &mid, Subscribe::new().manual());
        let run = p.spawn().unwrap();
        sub.ask(10).unwrap();
        assert_eq!(sub.expect_n(3).await, [0, 1, 2]);
        assert!(sub.expect_error().await.contains("processor broke at 3"));
        assert!(run.join().await.unwrap_err().is_stage_failed());
    });
}
