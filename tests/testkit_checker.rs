//! The checking wrapper catches deliberately broken stages, each with a
//! message that names the subscription, shows its demand history and the
//! offending event; and stays quiet on healthy pipelines of random shapes,
//! speeds and crash schedules.
#![cfg(feature = "testkit")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use demandflow::testkit::{self, strategies, Checker, Monitor, Op, Rule, Sequence};
use demandflow::{source, BoxError, Context, Emitter, Pipeline, Processor, Subscribe};
use tokio::time::Instant;

#[test]
fn over_delivery_on_a_scripted_sequence_is_caught_with_its_history() {
    let mut m = Monitor::new("numbers → sum");
    m.ask(2);
    m.deliver(1);
    m.take(1);
    m.deliver(2); // one more than the 2 asked
    let v = m.violation().expect("caught");
    assert_eq!(v.rule, Rule::D1MoreThanAsked);
    assert_eq!(
        v.history,
        [Op::Ask(2), Op::Deliver(1), Op::Take(1), Op::Deliver(2)]
    );
    let msg = v.to_string();
    assert!(
        msg.contains("D1 broken: more delivered than asked"),
        "{msg}"
    );
    assert!(msg.contains("subscription `numbers → sum`"), "{msg}");
    assert!(
        msg.contains("a batch of 2 delivered with 2 granted and 1 delivered before"),
        "{msg}"
    );
    assert!(msg.contains("ask 2, deliver 1, take 1, deliver 2"), "{msg}");
}

#[test]
fn an_over_delivery_attempt_refused_by_the_engine_is_reported() {
    let mut m = Monitor::new("p → c");
    m.ask(1);
    m.refused(4, 1, 0);
    let v = m.check().unwrap_err();
    assert_eq!(v.rule, Rule::D1MoreThanAsked);
    assert!(
        v.to_string().contains("tried to deliver 4 with 1 granted"),
        "{v}"
    );
}

#[test]
fn buffer_over_bound_ask_zero_and_signal_after_end_are_caught() {
    let mut m = Monitor::new("p → c").with_bound(3);
    m.ask(10);
    m.deliver(4);
    assert_eq!(m.violation().unwrap().rule, Rule::D2OverBound);

    let mut m = Monitor::new("p → c");
    m.ask(0);
    assert_eq!(m.violation().unwrap().rule, Rule::AskZero);

    let mut m = Monitor::new("p → c");
    m.ask(5);
    m.end(None);
    m.deliver(1);
    assert_eq!(m.violation().unwrap().rule, Rule::AfterEnd);
}

#[test]
fn a_reordered_sequence_is_caught_with_the_offending_event() {
    let mut m = Monitor::new("dispatcher → c").with_sequence(Sequence::Consecutive);
    for k in [0, 1, 3] {
        m.event(k, || format!("Event {{ seq: {k} }}"));
    }
    let v = m.violation().unwrap();
    assert_eq!(v.rule, Rule::D3Order);
    assert_eq!(v.event.as_deref(), Some("Event { seq: 3 }"));
    assert!(
        v.to_string().contains("key 3 after key 1: a gap before it"),
        "{v}"
    );

    let mut m = Monitor::new("dispatcher → c").with_sequence(Sequence::Increasing);
    for k in [0, 5, 2] {
        m.event(k, || k.to_string());
    }
    assert!(m
        .violation()
        .unwrap()
        .detail
        .contains("reordered or duplicated"));
}

#[test]
fn a_demand_forgotten_on_a_scripted_sequence_is_caught_at_quiescence() {
    let mut m = Monitor::new("p → c");
    m.ask(2);
    m.deliver(2);
    m.take(2);
    m.quiescent();
    let v = m.violation().unwrap();
    assert_eq!(v.rule, Rule::D4DemandForgotten);
    assert!(v.to_string().contains("nobody asked again"), "{v}");
    // Outstanding demand at quiescence is the upstream's business, not a
    // forgotten demand.
    let mut m = Monitor::new("p → c");
    m.ask(3);
    m.deliver(2);
    m.take(2);
    m.quiescent();
    assert!(m.violation().is_none());
}

/// A processor that reverses each batch: what a reordering dispatcher
/// would do to a subscriber.
#[derive(Clone)]
struct Reverse;

impl Processor<u64, u64> for Reverse {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().rev().copied());
        Ok(())
    }
}

#[test]
fn a_stage_that_reorders_is_caught_in_a_pipeline() {
    let outcome = testkit::Runner::new().run(|p| {
        let src = p.producer("numbers", source::iter(0..100u64));
        let rev = p
            .processor("reverse", Reverse)
            .subscribe(&src, Subscribe::max_demand(4));
        let (out, _c) =
            testkit::checked_sequence(p, &rev, Subscribe::default(), Sequence::Consecutive, |x| *x);
        out
    });
    assert_eq!(outcome.violations.len(), 1);
    let v = &outcome.violations[0];
    assert_eq!(v.rule, Rule::D3Order);
    assert_eq!(v.subscription, "reverse → reverse/checked");
    assert!(v.event.is_some());
    let msg = std::panic::catch_unwind(|| outcome.unwrap()).unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("D3 broken: sequence gap or reorder"), "{msg}");
    assert!(msg.contains("reverse → reverse/checked"), "{msg}");
}

#[test]
fn an_over_delivering_producer_is_held_at_the_edge_and_what_reaches_the_consumer_checks() {
    testkit::block_on(async {
        let (producer, handle) = testkit::producer::<u64>();
        handle.over_deliver(100);
        handle.extend(0..1000);
        let mut p = Pipeline::new();
        let src = p.producer("greedy", producer);
        let checker = Checker::new("greedy → consumer");
        let mut sub = testkit::consumer(&mut p, &src, checker.on(Subscribe::new().manual()));
        let run = p.spawn().unwrap();
        for ask in [1, 7, 3] {
            sub.ask(ask).unwrap();
        }
        assert_eq!(sub.drain_within(Duration::from_millis(100)).await.len(), 11);
        // The producer emitted far more; the engine kept the surplus.
        assert!(handle.emitted() > 11, "{}", handle.emitted());
        assert_eq!(checker.delivered(), 11);
        checker.assert_ok();
        drop(run);
    });
}

/// A manual-demand stage that asks once and then forgets to ask again.
#[derive(Clone)]
struct Forgetful {
    asked: bool,
}

impl Processor<u64, u64> for Forgetful {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().copied());
        Ok(()) // should ask for more here, and does not
    }
    fn manual_demand(&self) -> bool {
        true
    }
    fn timer(&self) -> Option<Instant> {
        (!self.asked).then(Instant::now)
    }
    async fn on_timer(&mut self, _out: &mut Emitter<u64>, cx: &Context) -> Result<(), BoxError> {
        self.asked = true;
        cx.ask(5)?;
        Ok(())
    }
}

#[test]
fn a_consumer_that_forgets_demand_is_caught() {
    let checker = Checker::new("numbers → forgetful");
    let on = checker.clone();
    let outcome = testkit::Runner::new()
        .timeout(Duration::from_secs(5))
        .run(move |p| {
            let src = p.producer("numbers", source::iter(0..100u64));
            p.processor("forgetful", Forgetful { asked: false })
                .subscribe(&src, on.on(Subscribe::new()))
        });
    assert!(outcome.stalled());
    assert_eq!(outcome.events, [0, 1, 2, 3, 4]);
    let v = checker
        .violation()
        .unwrap_or_else(|| panic!("not caught: {checker:?} {:?}", checker.history()));
    assert_eq!(v.rule, Rule::D4DemandForgotten);
    assert_eq!(v.counts, (5, 5, 5));
    let msg = v.to_string();
    assert!(msg.contains("subscription `numbers → forgetful`"), "{msg}");
    assert!(msg.contains("ask 5, deliver 5, take 5"), "{msg}");
}

#[test]
fn the_runner_reports_a_failed_run_with_its_status() {
    let outcome = testkit::Runner::new().run(|p| {
        let src = p
            .add_producer("numbers", source::iter(0..10u64))
            .restart(demandflow::Restart::Temporary)
            .build();
        p.processor(
            "boom",
            demandflow::stage::map(|x: u64| {
                assert!(x < 5, "boom at {x}");
                x
            }),
        )
        .restart(demandflow::Restart::Temporary)
        .subscribe(&src, Subscribe::max_demand(1).min_demand(0))
    });
    let msg = std::panic::catch_unwind(|| outcome.unwrap()).unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("failed: stage `boom`"), "{msg}");
}

fn healthy(
    n: u64,
    shape: strategies::Shape,
    speeds: Vec<Duration>,
    crashes: strategies::CrashSchedule,
) -> Result<(), TestCaseError> {
    let keeps_order = shape.keeps_order();
    let outcome = testkit::Runner::new().run(|p| {
        *p = std::mem::take(p)
            .max_attempts(1000)
            .intensity(10_000, Duration::from_secs(1));
        let src = p.producer("numbers", source::iter(0..n));
        let crashy = p
            .processor("crashy", strategies::crashing(crashes))
            .subscribe(&src, Subscribe::max_demand(8));
        let last = shape.build(p, &crashy);
        let slow = p
            .processor("slow", strategies::slow(speeds))
            .subscribe(&last, Subscribe::max_demand(16));
        let seq = if keeps_order {
            Sequence::Consecutive
        } else {
            Sequence::Any
        };
        let (out, _c) = testkit::checked_sequence(p, &slow, Subscribe::max_demand(5), seq, |x| *x);
        out
    });
    prop_assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    let mut events = outcome.unwrap();
    if !keeps_order {
        events.sort_unstable();
    }
    prop_assert_eq!(events, (0..n).collect::<Vec<_>>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// D1–D4 hold, nothing is lost or duplicated, and order is kept where
    /// the shape promises it, whatever the shape, speeds and crashes.
    #[test]
    fn healthy_pipelines_of_any_shape_speed_and_crash_schedule_pass_the_checkers(
        n in 0..300u64,
        shape in strategies::graph_shape(3, 12),
        speeds in strategies::consumer_speeds(20, 5),
        crashes in strategies::crash_schedule(300, 4),
    ) {
        healthy(n, shape, speeds, crashes)?;
    }

    /// A hand-driven subscriber gets exactly what it asked for, never more.
    #[test]
    fn a_manual_subscriber_gets_exactly_its_asks(
        schedule in strategies::demand_schedule(40, 8),
        n in 0..200u64,
    ) {
        let got = testkit::block_on(async {
            let mut p = Pipeline::new();
            let src = p.producer("numbers", source::iter(0..n));
            let checker = Checker::new("numbers → manual");
            let mut sub = testkit::consumer(&mut p, &src, checker.on(Subscribe::new().manual()));
            let _run = p.spawn().unwrap();
            let mut got = vec![];
            let mut asked = 0u64;
            for ask in schedule {
                sub.ask(ask).unwrap();
                asked += ask as u64;
                got.extend(sub.drain_within(Duration::from_millis(10)).await);
                assert_eq!(got.len() as u64, asked.min(n));
            }
            checker.assert_ok();
            got
        });
        prop_assert_eq!(got.clone(), (0..got.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn every_checker_made_during_a_run_is_checked() {
    let shared = Arc::new(Mutex::new(None));
    let keep = shared.clone();
    let outcome = testkit::Runner::new().run(move |p| {
        let src = p.producer("numbers", source::iter(0..10u64));
        let c = Checker::new("scripted");
        c.with(|m| m.ask(0)); // a violation the runner must report
        *keep.lock().unwrap() = Some(c);
        src
    });
    assert_eq!(outcome.violations.len(), 1);
    assert_eq!(outcome.violations[0].rule, Rule::AskZero);
    assert!(shared.lock().unwrap().is_some());
}
