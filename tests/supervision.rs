//! Supervision in running pipelines: restarts, redelivery, dead letters,
//! escalation, strategies (CONFORMANCE.md §3.2, invariant D7).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demandflow::supervisor::Backoff;
use demandflow::{
    sink, source, stage, BoxError, Consumer, Context, Pipeline, Restart, Status, Strategy,
    Subscribe,
};

/// Fails (error or panic) on chosen events, a chosen number of times each.
#[derive(Clone)]
struct Flaky {
    fail_on: Arc<Vec<u64>>,
    times: u32,
    panic: bool,
    failures: Arc<Mutex<Vec<(u64, u32)>>>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Flaky {
    fn new(fail_on: Vec<u64>, times: u32, panic: bool) -> Flaky {
        Flaky {
            fail_on: Arc::new(fail_on),
            times,
            panic,
            failures: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Consumer<u64> for Flaky {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        for e in events {
            if self.fail_on.contains(e) {
                let mut f = self.failures.lock().unwrap();
                let n = f.iter().filter(|(x, _)| x == e).count() as u32;
                if n < self.times {
                    f.push((*e, n + 1));
                    drop(f);
                    if self.panic {
                        panic!("boom on {e}");
                    }
                    return Err(format!("failed on {e}").into());
                }
            }
        }
        self.seen.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn a_panicking_consumer_is_restarted_and_gets_the_batch_again() {
    paused().block_on(async {
        let flaky = Flaky::new(vec![42], 1, true);
        let seen = flaky.seen.clone();
        let mut p = Pipeline::new();
        let n = p.producer("n", source::iter(0..100u64));
        p.consumer("flaky", flaky)
            .subscribe(&n, Subscribe::max_demand(10));
        let report = p.spawn().unwrap().join().await.unwrap();
        let stage = report.stage("flaky").unwrap();
        assert_eq!(stage.restarts, 1);
        assert_eq!(stage.processed, 100);
        assert_eq!(stage.dead_lettered, 0);
        // The failed chunk was redelivered whole: everything seen once, in order.
        assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn an_error_is_handled_like_a_panic() {
    paused().block_on(async {
        let flaky = Flaky::new(vec![3, 70], 2, false);
        let seen = flaky.seen.clone();
        let mut p = Pipeline::new().intensity(10, Duration::from_secs(5));
        let n = p.producer("n", source::iter(0..100u64));
        p.consumer("flaky", flaky)
            .subscribe(&n, Subscribe::max_demand(10));
        let report = p.spawn().unwrap().join().await.unwrap();
        assert_eq!(report.stage("flaky").unwrap().restarts, 4);
        assert_eq!(seen.lock().unwrap().len(), 100);
    });
}

#[test]
fn a_poison_batch_goes_to_the_dead_letter_handler_after_max_attempts() {
    paused().block_on(async {
        let flaky = Flaky::new(vec![5], u32::MAX, false);
        let seen = flaky.seen.clone();
        let letters = Arc::new(Mutex::new(Vec::new()));
        let l2 = letters.clone();
        let mut p = Pipeline::new()
            .max_attempts(3)
            .intensity(10, Duration::from_secs(5))
            .on_dead_letter(move |dl| {
                l2.lock().unwrap().push((
                    dl.stage.clone(),
                    dl.attempts,
                    dl.events::<u64>().unwrap().to_vec(),
                ))
            });
        let n = p.producer("n", source::iter(0..20u64));
        p.consumer("flaky", flaky)
            .subscribe(&n, Subscribe::max_demand(4).min_demand(2));
        let report = p.spawn().unwrap().join().await.unwrap();
        let s = report.stage("flaky").unwrap();
        let letters = letters.lock().unwrap().clone();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].0, "flaky");
        assert_eq!(letters[0].1, 3);
        assert!(letters[0].2.contains(&5));
        // Every event ends processed or dead-lettered: nothing lost.
        let dead: HashSet<u64> = letters[0].2.iter().copied().collect();
        let seen: HashSet<u64> = seen.lock().unwrap().iter().copied().collect();
        assert_eq!(seen.len() + dead.len(), 20);
        assert!(seen.is_disjoint(&dead));
        assert_eq!(s.processed + s.dead_lettered, 20);
        assert_eq!(s.restarts, 3);
    });
}

#[test]
fn escalation_past_intensity_fails_the_pipeline_naming_the_stage() {
    paused().block_on(async {
        let flaky = Flaky::new((0..1000).collect(), u32::MAX, true);
        let mut p = Pipeline::new().max_attempts(1000);
        let n = p.producer("n", source::iter(0..1000u64));
        p.consumer("doomed", flaky)
            .subscribe(&n, Subscribe::default());
        let err = p.spawn().unwrap().join().await.unwrap_err();
        assert!(err.is_stage_failed());
        match &err.report().status {
            Status::Failed { stage, error } => {
                assert_eq!(stage, "doomed");
                assert!(error.to_string().contains("boom"), "{error}");
            }
            s => panic!("{s:?}"),
        }
        // Default intensity: 3 restarts allowed, the 4th failure escalates.
        assert_eq!(err.report().stage("doomed").unwrap().restarts, 3);
    });
}

#[test]
fn a_temporary_stage_is_never_restarted() {
    paused().block_on(async {
        let flaky = Flaky::new(vec![1], 1, false);
        let mut p = Pipeline::new();
        let n = p.producer("n", source::iter(0..10u64));
        p.consumer("temp", flaky)
            .restart(Restart::Temporary)
            .subscribe(&n, Subscribe::default());
        let err = p.spawn().unwrap().join().await.unwrap_err();
        assert!(err.is_stage_failed());
        assert_eq!(err.report().stage("temp").unwrap().restarts, 0);
    });
}

#[test]
fn a_permanent_producer_is_restarted_after_finishing() {
    paused().block_on(async {
        let runs = Arc::new(AtomicU32::new(0));
        let r2 = runs.clone();
        let mut p = Pipeline::new().intensity(2, Duration::from_secs(60));
        let n = p
            .add_producer("n", source::iter(0..5u64))
            .restart(Restart::Permanent)
            .build();
        let counting = stage::map(move |x: u64| {
            if x == 0 {
                r2.fetch_add(1, Ordering::Relaxed);
            }
            x
        });
        let m = p
            .processor("count", counting)
            .subscribe(&n, Subscribe::default());
        p.consumer("sink", sink::drain())
            .subscribe(&m, Subscribe::default());
        // Restarted twice (the intensity), then escalated.
        let err = p.spawn().unwrap().join().await.unwrap_err();
        assert!(err.is_stage_failed());
        assert_eq!(err.report().stage("n").unwrap().restarts, 2);
        // The events of the last run may be abandoned by the escalation.
        assert!(runs.load(Ordering::Relaxed) >= 2);
    });
}

/// Counts instance starts (through `start`) per stage name.
#[derive(Clone)]
struct Starts {
    starts: Arc<AtomicU64>,
}

impl demandflow::Processor<u64, u64> for Starts {
    async fn start(&mut self, _cx: &Context) -> Result<(), BoxError> {
        self.starts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn process(
        &mut self,
        events: &[u64],
        out: &mut demandflow::Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().copied());
        Ok(())
    }
}

fn strategy_run(strategy: Strategy) -> (u64, u64, u64) {
    paused().block_on(async {
        let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut p = Pipeline::new().strategy(strategy).backoff(Backoff::none());
        let n = p.producer("n", source::iter(0..50u64));
        let first = p
            .processor("first", Starts { starts: a.clone() })
            .subscribe(&n, Subscribe::max_demand(10));
        let second = p
            .processor("second", Starts { starts: b.clone() })
            .subscribe(&first, Subscribe::max_demand(10));
        let flaky = Flaky::new(vec![25], 1, true);
        let seen = flaky.seen.clone();
        p.consumer("last", flaky)
            .subscribe(&second, Subscribe::max_demand(10));
        p.spawn().unwrap().join().await.unwrap();
        let seen = seen.lock().unwrap().clone();
        if strategy == Strategy::OneForAll {
            // The producer restarts too, and `source::iter` replays from the
            // start: at least once, every event.
            let distinct: HashSet<u64> = seen.iter().copied().collect();
            assert_eq!(distinct.len(), 50);
        } else {
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
        }
        (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed), 0)
    })
}

#[test]
fn restart_one_for_one_restarts_only_the_failed_stage() {
    let (a, b, _) = strategy_run(Strategy::OneForOne);
    assert_eq!((a, b), (1, 1));
}

#[test]
fn restart_one_for_all_restarts_every_stage() {
    let (a, b, _) = strategy_run(Strategy::OneForAll);
    assert_eq!((a, b), (2, 2));
}

#[test]
fn restart_rest_for_one_restarts_the_failed_stage_and_downstream() {
    // The failing stage is last: nothing downstream of it, so the upstream
    // processors keep their instances.
    let (a, b, _) = strategy_run(Strategy::RestForOne);
    assert_eq!((a, b), (1, 1));
}

/// A processor that fails once on a chosen event.
#[derive(Clone)]
struct FailOnce {
    on: u64,
    failed: Arc<AtomicU32>,
}

impl demandflow::Processor<u64, u64> for FailOnce {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut demandflow::Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        if events.contains(&self.on) && self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
            return Err("once".into());
        }
        out.extend(events.iter().copied());
        Ok(())
    }
}

#[test]
fn restart_rest_for_one_takes_the_downstream_stage_along() {
    paused().block_on(async {
        let starts = Arc::new(AtomicU64::new(0));
        let mut p = Pipeline::new()
            .strategy(Strategy::RestForOne)
            .backoff(Backoff::none());
        let n = p.producer("n", source::iter(0..50u64));
        let f = p
            .processor(
                "fails",
                FailOnce {
                    on: 20,
                    failed: Arc::new(AtomicU32::new(0)),
                },
            )
            .subscribe(&n, Subscribe::max_demand(10));
        let d = p
            .processor(
                "downstream",
                Starts {
                    starts: starts.clone(),
                },
            )
            .subscribe(&f, Subscribe::max_demand(10));
        let (c, out) = sink::collect();
        p.consumer("sink", c)
            .subscribe(&d, Subscribe::max_demand(10));
        let report = p.spawn().unwrap().join().await.unwrap();
        assert_eq!(out.take(), (0..50).collect::<Vec<_>>());
        assert_eq!(report.stage("fails").unwrap().restarts, 1);
        assert_eq!(report.stage("downstream").unwrap().restarts, 1);
        assert_eq!(report.stage("n").unwrap().restarts, 0);
        assert_eq!(starts.load(Ordering::Relaxed), 2);
    });
}

#[test]
fn a_panic_never_takes_another_pipeline_down() {
    paused().block_on(async {
        let mut bad = Pipeline::new();
        let n = bad.producer("n", source::iter(0..10u64));
        bad.consumer("doomed", Flaky::new((0..10).collect(), u32::MAX, true))
            .restart(Restart::Temporary)
            .subscribe(&n, Subscribe::default());
        let mut good = Pipeline::new();
        let m = good.producer("m", source::iter(0..1000u64));
        let (sum, total) = sink::fold(0u64, |a, x: u64| a + x);
        good.consumer("sum", sum)
            .subscribe(&m, Subscribe::default());
        let (b, g) = (bad.spawn().unwrap(), good.spawn().unwrap());
        assert!(b.join().await.is_err());
        g.join().await.unwrap();
        assert_eq!(total.get(), 499_500);
    });
}

mod random_crashes {
    //! Random crash schedules (panic or error, at random events, on random
    //! stages of random chains): every event is accounted for in the ledger,
    //! none is lost, and order is kept per subscription.

    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest, ProptestConfig};

    /// A pass-through that fails on scheduled events, before emitting
    /// anything for the chunk (so a failed call leaves no output).
    #[derive(Clone)]
    struct Crashy {
        /// (event, remaining failures, panic?) shared across restarts.
        plan: Arc<Mutex<Vec<(u64, u32, bool)>>>,
    }

    impl Crashy {
        fn check(&self, events: &[u64]) -> Result<(), BoxError> {
            let mut plan = self.plan.lock().unwrap();
            for (e, left, panic) in plan.iter_mut() {
                if *left > 0 && events.contains(e) {
                    *left -= 1;
                    let (e, panic) = (*e, *panic);
                    drop(plan);
                    if panic {
                        panic!("scheduled panic on {e}");
                    }
                    return Err(format!("scheduled error on {e}").into());
                }
            }
            Ok(())
        }
    }

    impl demandflow::Processor<u64, u64> for Crashy {
        async fn process(
            &mut self,
            events: &[u64],
            out: &mut demandflow::Emitter<u64>,
            _cx: &Context,
        ) -> Result<(), BoxError> {
            self.check(events)?;
            out.extend(events.iter().copied());
            Ok(())
        }
    }

    #[derive(Clone)]
    struct CrashyConsumer {
        crash: Crashy,
        seen: Arc<Mutex<Vec<u64>>>,
    }

    impl Consumer<u64> for CrashyConsumer {
        async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
            self.crash.check(events)?;
            self.seen.lock().unwrap().extend_from_slice(events);
            Ok(())
        }
    }

    fn plan_strategy(n: u64) -> impl proptest::strategy::Strategy<Value = Vec<(u64, u32, bool)>> {
        proptest::collection::vec((0..n.max(1), 1u32..5, any::<bool>()), 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn random_crash_schedules_lose_nothing(
            n in 1u64..600,
            stages in 0usize..3,
            plans in proptest::collection::vec(plan_strategy(600), 4),
            max in 1usize..64,
            attempts in 1u32..4,
        ) {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let dead = Arc::new(Mutex::new(Vec::<u64>::new()));
            let (report, dead_letters) = paused().block_on(async {
                let d2 = dead.clone();
                let mut p = Pipeline::new()
                    .intensity(10_000, Duration::from_secs(1))
                    .max_attempts(attempts)
                    .on_dead_letter(move |dl| d2.lock().unwrap().extend(dl.events::<u64>().unwrap().iter().copied()));
                let mut up = p.producer("n", source::iter(0..n));
                for (i, plan) in plans.iter().enumerate().take(stages) {
                    let crashy = Crashy { plan: Arc::new(Mutex::new(plan.clone())) };
                    up = p.processor(&format!("p{i}"), crashy).subscribe(&up, Subscribe::max_demand(max));
                }
                let consumer = CrashyConsumer { crash: Crashy { plan: Arc::new(Mutex::new(plans[3].clone())) }, seen: seen.clone() };
                p.consumer("sink", consumer).subscribe(&up, Subscribe::max_demand(max));
                let report = p.spawn().unwrap().join().await.unwrap();
                (report, dead.lock().unwrap().clone())
            });
            let seen = seen.lock().unwrap().clone();
            // Order kept: what reached the consumer is increasing (each event
            // once; failed calls emitted nothing).
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "order: {seen:?}");
            // Nothing lost: consumed ∪ dead-lettered = everything, disjoint.
            let mut all: Vec<u64> = seen.iter().chain(dead_letters.iter()).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
            // The ledger balances on every stage that receives.
            for s in report.stages.iter().filter(|s| s.name != "n") {
                prop_assert_eq!(s.received, s.processed + s.dead_lettered + s.abandoned, "{:?}", s);
                prop_assert_eq!(s.abandoned, 0);
            }
            let dead_total: u64 = report.stages.iter().map(|s| s.dead_lettered).sum();
            prop_assert_eq!(dead_total as usize, dead_letters.len());
        }
    }
}

/// A processor that records the size of every chunk, whether its emitter
/// was empty when the call began, and fails (error or panic) once on the
/// chunk holding a chosen event.
#[derive(Clone)]
struct ChunkProbe {
    fail_on: u64,
    panic: bool,
    failed: Arc<AtomicU32>,
    chunks: Arc<Mutex<Vec<usize>>>,
    non_empty_emitter: Arc<AtomicU32>,
}

impl demandflow::Processor<u64, u64> for ChunkProbe {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut demandflow::Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        let visible = (out.len(), out.as_slice().len(), out.is_empty());
        if visible != (0, 0, true) {
            self.non_empty_emitter.fetch_add(1, Ordering::Relaxed);
        }
        self.chunks.lock().unwrap().push(events.len());
        // Emit before failing: that output must be discarded, never delivered.
        out.extend(events.iter().map(|x| x * 10));
        if events.contains(&self.fail_on) && self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
            if self.panic {
                panic!("boom on {}", self.fail_on);
            }
            return Err("failed".into());
        }
        Ok(())
    }
}

/// Chunks of one input batch are handled back to back and their output
/// leaves together; a failure on a later chunk must still deliver the
/// earlier chunks' output exactly once, discard the failed call's output,
/// and hand the failed chunk to the next instance. Each call sees an empty
/// emitter and at most `max - min` events.
#[test]
fn a_failure_on_a_later_chunk_of_a_batch_keeps_the_earlier_output_once() {
    for panic in [false, true] {
        paused().block_on(async {
            let probe = ChunkProbe {
                // 7 is in the second chunk (5..10) of the first batch (0..10).
                fail_on: 7,
                panic,
                failed: Arc::new(AtomicU32::new(0)),
                chunks: Arc::new(Mutex::new(Vec::new())),
                non_empty_emitter: Arc::new(AtomicU32::new(0)),
            };
            let (chunks, dirty) = (probe.chunks.clone(), probe.non_empty_emitter.clone());
            let mut p = Pipeline::new().backoff(Backoff::none());
            let n = p.producer("n", source::iter(0..40u64));
            let m = p
                .processor("probe", probe)
                .subscribe(&n, Subscribe::max_demand(10).min_demand(5));
            let (collect, out) = sink::collect();
            p.consumer("out", collect)
                .subscribe(&m, Subscribe::max_demand(10).min_demand(5));
            let report = p.spawn().unwrap().join().await.unwrap();
            assert_eq!(report.status, Status::Completed, "panic: {panic}");
            let stage = report.stage("probe").unwrap();
            assert_eq!(stage.restarts, 1);
            assert_eq!(stage.processed, 40);
            assert_eq!(
                out.take(),
                (0..40).map(|x| x * 10).collect::<Vec<_>>(),
                "panic: {panic}"
            );
            assert_eq!(
                dirty.load(Ordering::Relaxed),
                0,
                "a call saw earlier output"
            );
            let chunks = chunks.lock().unwrap();
            assert!(chunks.iter().all(|&c| (1..=5).contains(&c)), "{chunks:?}");
        });
    }
}
