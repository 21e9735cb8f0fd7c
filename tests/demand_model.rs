//! A state-machine property test of the demand protocol against a small
//! reference model (CONFORMANCE.md §4.2 (a), §7 `demand_model`), hand-rolled
//! with proptest.
//!
//! The system under test is a real pipeline on a paused clock: a
//! [`TestProducer`](demandflow::testkit::TestProducer) (restarted on
//! failure) feeding a hand-driven manual subscriber watched by a checker.
//! Transitions: push events, ask, cancel, fail the producer (it is
//! restarted), close the stream, advance time. After each one the pipeline
//! is run to quiescence and these hold:
//!
//! * G-D1: received ≤ granted, and the checker saw no violation (D1–D4).
//! * No demand forgotten, nothing lost (D3/D4/D7): while subscribed,
//!   received = min(granted, pushed), in push order, across restarts.
//! * G-C1: after cancel nothing more is received.
//! * G-T1: completion comes only after everything pushed was
//!   received, and as soon as it is due (closed, all received, demand left).
#![cfg(feature = "testkit")]

use std::time::Duration;

use proptest::prelude::*;

use demandflow::testkit::{self, Checker, Signalled};
use demandflow::{Pipeline, Subscribe};

#[derive(Debug, Clone)]
enum Transition {
    Push(u64),
    Ask(usize),
    Cancel,
    Fail,
    Close,
    Advance(u64),
}

fn transition() -> impl Strategy<Value = Transition> {
    prop_oneof![
        4 => (1..20u64).prop_map(Transition::Push),
        4 => (1..25usize).prop_map(Transition::Ask),
        1 => Just(Transition::Cancel),
        2 => Just(Transition::Fail),
        1 => Just(Transition::Close),
        1 => (1..500u64).prop_map(Transition::Advance),
    ]
}

/// The reference model: what the subscriber must have seen.
#[derive(Debug, Default)]
struct Model {
    pushed: u64,
    granted: u64,
    cancelled: bool,
    closed: bool,
    /// What `received` was when the subscriber cancelled.
    frozen: Option<u64>,
}

impl Model {
    fn apply(&mut self, t: &Transition, received: u64) {
        match t {
            Transition::Push(k) if !self.closed => self.pushed += k,
            Transition::Ask(n) if !self.cancelled => self.granted += *n as u64,
            Transition::Cancel if !self.cancelled => {
                self.cancelled = true;
                self.frozen = Some(received);
            }
            Transition::Close => self.closed = true,
            _ => {}
        }
    }

    fn expected_received(&self) -> u64 {
        self.granted.min(self.pushed)
    }
}

fn run(transitions: Vec<Transition>) -> Result<(), TestCaseError> {
    testkit::block_on(async move {
        let (producer, handle) = testkit::producer::<u64>();
        let p = Pipeline::new().intensity(10_000, Duration::from_secs(1));
        let mut p = p;
        let src = p.producer("producer", producer);
        let checker = Checker::new("producer → subscriber");
        let mut sub = testkit::consumer(&mut p, &src, checker.on(Subscribe::new().manual()));
        let _run = p.spawn().unwrap();
        let mut model = Model::default();
        let mut received: Vec<u64> = vec![];
        let mut completions = 0;
        for t in &transitions {
            match t {
                Transition::Push(k) if !model.closed => {
                    handle.extend(model.pushed..model.pushed + k);
                }
                Transition::Push(_) => {}
                Transition::Ask(n) => sub.ask(*n).unwrap(),
                Transition::Cancel => sub.cancel(),
                Transition::Fail if !model.closed => handle.fail("scheduled failure"),
                Transition::Fail => {}
                Transition::Close => handle.close(),
                Transition::Advance(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            }
            model.apply(t, received.len() as u64);
            // Quiescence, restart backoffs included (virtual time).
            tokio::time::sleep(Duration::from_secs(60)).await;
            // The end is a sticky state of the subscriber: read it once.
            while completions == 0 {
                let Some(s) = sub.next_within(Duration::from_millis(1)).await else {
                    break;
                };
                match s {
                    Signalled::Next(e) => received.push(e),
                    Signalled::Complete => {
                        completions += 1;
                        break;
                    }
                    Signalled::Error(e) => {
                        return Err(TestCaseError::fail(format!("unexpected error: {e}")))
                    }
                }
            }
            let got = received.len() as u64;
            prop_assert!(
                got <= model.granted,
                "D1: {got} received, {} granted",
                model.granted
            );
            if let Err(v) = checker.check() {
                return Err(TestCaseError::fail(v.to_string()));
            }
            match model.frozen {
                Some(at) => prop_assert_eq!(got, at, "received after cancel"),
                None => prop_assert_eq!(got, model.expected_received(), "after {:?}", t),
            }
            prop_assert!(
                received.iter().copied().eq(0..got),
                "order/dupes: {:?}",
                received
            );
            // After a cancel the upstream, left with no subscriber, ends
            // normally: that end is not an early completion.
            if completions > 0 && !model.cancelled {
                prop_assert!(model.closed && got == model.pushed, "early completion");
            }
            let due =
                !model.cancelled && model.closed && got == model.pushed && model.granted > got;
            if due {
                prop_assert!(completions > 0, "completion due and not seen");
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn demand_protocol_matches_the_reference_model(
        transitions in prop::collection::vec(transition(), 1..30)
    ) {
        run(transitions)?;
    }
}
