//! Property tests of invariants D1–D4 on random graphs: chains of 1–4
//! stages, fan-out of 1–4 subscribers under each dispatcher, and broadcast
//! graphs with random selectors, with random demand limits, random consumer
//! speeds and random manual-demand schedules.
//!
//! Every run uses a paused tokio clock, so consumer "speed" is virtual time
//! and the tests are fast and repeatable on a loaded machine. A monitor task
//! samples `stats()` at every scheduling point and checks, per subscription,
//! that delivered ≤ granted (D1) and buffered ≤ max_demand (D2).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demandflow::{
    stage, BoxError, Consumer, Context, Dispatch, Emitter, Flow, Pipeline, PipelineHandle,
    Producer, Subscribe,
};
use proptest::prelude::*;

/// Counts up to `end`; records any call with zero demand (D4).
#[derive(Clone)]
struct Counter {
    next: u64,
    end: u64,
    zero_demand_calls: Arc<AtomicU64>,
    /// Emit at most this many per call (exercises "emit fewer now").
    max_per_call: usize,
}

impl Producer<u64> for Counter {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if demand == 0 {
            self.zero_demand_calls.fetch_add(1, Ordering::Relaxed);
        }
        let n = demand.min(self.max_per_call) as u64;
        let end = (self.next + n).min(self.end);
        out.extend(self.next..end);
        self.next = end;
        Ok(if self.next >= self.end {
            Flow::Done
        } else {
            Flow::Continue
        })
    }
}

/// Records what it receives; sleeps (virtual time) per batch; optionally
/// asks manually with a scripted schedule.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<u64>>>,
    delay: Duration,
    manual: Option<Arc<Mutex<Vec<usize>>>>,
    /// The first manual ask, sent when the instance starts.
    first: usize,
}

impl Consumer<u64> for Recorder {
    async fn consume(&mut self, events: &[u64], cx: &Context) -> Result<(), BoxError> {
        self.seen.lock().unwrap().extend_from_slice(events);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(script) = &self.manual {
            let next = script.lock().unwrap().pop();
            cx.ask(next.unwrap_or(7))?;
        }
        Ok(())
    }

    async fn start(&mut self, cx: &Context) -> Result<(), BoxError> {
        if self.manual.is_some() {
            cx.ask(self.first)?;
        }
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// How often (virtual time) the monitor samples `stats()` while edges move.
const MONITOR_PAUSE: Duration = Duration::from_micros(20);

/// Runs the pipeline to completion while checking D1 and D2 on every edge.
async fn run_checked(handle: PipelineHandle, bounds: Vec<(String, u64)>) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let watch = handle.watch();
    let violation = Arc::new(Mutex::new(None::<String>));
    let monitor = {
        let (stop, violation) = (stop.clone(), violation.clone());
        tokio::spawn(async move {
            let (mut last, mut moved) = (None, tokio::time::Instant::now());
            while !stop.load(Ordering::Relaxed) {
                let stats = watch.stats();
                // Sample slowly once no edge has moved for a (virtual)
                // second, far longer than any stage here pauses: a stalled
                // run then reaches the join timeout in thousands of samples,
                // not 10^8. Any movement brings back the full rate.
                let now: Vec<_> = stats
                    .edges
                    .iter()
                    .map(|e| (e.granted, e.delivered, e.buffered))
                    .collect();
                if last.as_ref() != Some(&now) {
                    moved = tokio::time::Instant::now();
                }
                last = Some(now);
                let pause = if moved.elapsed() > Duration::from_secs(1) {
                    Duration::from_millis(100)
                } else {
                    MONITOR_PAUSE
                };
                for e in &stats.edges {
                    if e.delivered > e.granted {
                        *violation.lock().unwrap() = Some(format!(
                            "D1: edge {}→{} delivered {} > granted {}",
                            e.from, e.to, e.delivered, e.granted
                        ));
                    }
                    let bound = bounds
                        .iter()
                        .find(|(to, _)| *to == e.to)
                        .map(|(_, b)| *b)
                        .unwrap_or(u64::MAX);
                    if e.buffered as u64 + e.pending_demand > bound {
                        *violation.lock().unwrap() = Some(format!(
                            "D2: edge {}→{} buffered {} + pending {} > max_demand {bound}",
                            e.from, e.to, e.buffered, e.pending_demand
                        ));
                    }
                }
                // A virtual-time sleep, not a yield: with a paused clock the runtime
                // must go idle for time (and the stages' sleeps) to advance.
                tokio::time::sleep(pause).await;
            }
        })
    };
    let report = tokio::time::timeout(Duration::from_secs(3600), handle.join())
        .await
        .map_err(|_| "pipeline did not finish".to_string())?
        .map_err(|e| format!("{e}"))?;
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.await;
    if let Some(v) = violation.lock().unwrap().take() {
        return Err(v);
    }
    for s in &report.stages {
        if s.abandoned != 0 || s.dead_lettered != 0 {
            return Err(format!("stage {} lost events: {s:?}", s.name));
        }
    }
    Ok(())
}

fn demand_strategy() -> impl Strategy<Value = (usize, usize)> {
    (1usize..200).prop_flat_map(|max| (Just(max), 0..max))
}

/// A broadcast subscriber's selector, as data so the expected output can be
/// computed from it.
#[derive(Debug, Clone, Copy)]
enum Sel {
    /// No selector.
    All,
    /// `x % m == r`.
    Residue(u64, u64),
    /// `x % m != r`.
    NotResidue(u64, u64),
    /// A selector that keeps nothing.
    Nothing,
}

impl Sel {
    fn test(self, x: u64) -> bool {
        match self {
            Sel::All => true,
            Sel::Residue(m, r) => x % m == r,
            Sel::NotResidue(m, r) => x % m != r,
            Sel::Nothing => false,
        }
    }

    fn keep(self) -> Option<impl Fn(&u64) -> bool + Send + Sync + 'static> {
        (!matches!(self, Sel::All)).then_some(move |x: &u64| self.test(*x))
    }
}

/// A sink of a selector graph: its name, what it received, and the
/// selectors on its path from the broadcasting stage.
type Sink = (String, Arc<Mutex<Vec<u64>>>, Vec<Sel>);

fn selector_strategy() -> impl Strategy<Value = Sel> {
    prop_oneof![
        Just(Sel::All),
        (1u64..6).prop_flat_map(|m| (0..m).prop_map(move |r| Sel::Residue(m, r))),
        (2u64..6).prop_flat_map(|m| (0..m).prop_map(move |r| Sel::NotResidue(m, r))),
        Just(Sel::Nothing),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// D1–D4 on chains: producer → 0..=2 processors → consumer.
    #[test]
    fn chain_keeps_d1_to_d4(
        n in 0u64..3000,
        processors in 0usize..=2,
        limits in proptest::collection::vec(demand_strategy(), 4),
        delay_us in 0u64..200,
        per_call in 1usize..1500,
    ) {
        let zero = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rt = runtime();
        let result: Result<(), String> = rt.block_on(async {
            let mut p = Pipeline::new();
            let mut bounds = Vec::new();
            let mut up = p.producer("source", Counter { next: 0, end: n, zero_demand_calls: zero.clone(), max_per_call: per_call });
            for (i, &(max, min)) in limits.iter().enumerate().take(processors) {
                let name = format!("p{i}");
                bounds.push((name.clone(), max as u64));
                up = p.processor(&name, stage::map(|x: u64| x)).subscribe(&up, Subscribe::max_demand(max).min_demand(min));
            }
            let (max, min) = limits[3];
            bounds.push(("sink".into(), max as u64));
            p.consumer("sink", Recorder { seen: seen.clone(), delay: Duration::from_micros(delay_us), manual: None, first: 0 })
                .subscribe(&up, Subscribe::max_demand(max).min_demand(min));
            run_checked(p.spawn().unwrap(), bounds).await
        });
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(zero.load(Ordering::Relaxed), 0, "D4: producer called with zero demand");
        let seen = seen.lock().unwrap().clone();
        prop_assert_eq!(seen, (0..n).collect::<Vec<_>>(), "D3: exact sequence");
    }

    /// D1–D4 under each dispatcher with 1–4 subscribers.
    #[test]
    fn fanout_keeps_d1_to_d4(
        n in 0u64..3000,
        kind in 0usize..3,
        subs in 1usize..=4,
        limits in proptest::collection::vec(demand_strategy(), 4),
        delays in proptest::collection::vec(0u64..300, 4),
    ) {
        let zero = Arc::new(AtomicU64::new(0));
        let seen: Vec<_> = (0..subs).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        let rt = runtime();
        let result: Result<(), String> = rt.block_on(async {
            let mut p = Pipeline::new();
            let src = Counter { next: 0, end: n, zero_demand_calls: zero.clone(), max_per_call: usize::MAX };
            let dispatch = match kind {
                0 => Dispatch::demand(),
                1 => Dispatch::broadcast(),
                _ => Dispatch::partition(subs, |x: &u64| *x as usize),
            };
            let up = p.add_producer("source", src).dispatch(dispatch).build();
            let mut bounds = Vec::new();
            for (i, seen) in seen.iter().enumerate() {
                let (max, min) = limits[i];
                let name = format!("sink{i}");
                bounds.push((name.clone(), max as u64));
                let mut opts = Subscribe::max_demand(max).min_demand(min);
                if kind == 2 {
                    opts = opts.partition(i);
                }
                p.consumer(&name, Recorder { seen: seen.clone(), delay: Duration::from_micros(delays[i]), manual: None, first: 0 })
                    .subscribe(&up, opts);
            }
            run_checked(p.spawn().unwrap(), bounds).await
        });
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(zero.load(Ordering::Relaxed), 0);
        let seen: Vec<Vec<u64>> = seen.iter().map(|s| s.lock().unwrap().clone()).collect();
        match kind {
            0 => {
                // Each event exactly once overall, in order per subscriber.
                for s in &seen {
                    prop_assert!(s.windows(2).all(|w| w[0] < w[1]), "order per subscription");
                }
                let mut all: Vec<u64> = seen.concat();
                all.sort_unstable();
                prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
            1 => {
                for s in &seen {
                    prop_assert_eq!(s, &(0..n).collect::<Vec<_>>());
                }
            }
            _ => {
                for (i, s) in seen.iter().enumerate() {
                    let expected: Vec<u64> = (0..n).filter(|x| *x as usize % subs == i).collect();
                    prop_assert_eq!(s, &expected, "per-partition sequence");
                }
            }
        }
    }

    /// Selectors on random broadcast graphs: the broadcasting stage is the
    /// producer or a processor after it; each of its 1–4 subscribers is a
    /// consumer, a processor feeding a consumer, or a broadcasting processor
    /// feeding a plain consumer and a selective one; each selector is
    /// random (none, a residue class, its complement, nothing at all).
    /// Every sink gets exactly what its selectors let through, in order,
    /// the run completes (no stall: demand a selector discarded is asked
    /// again), and D1, D2, D4 hold on every edge.
    #[test]
    fn broadcast_selectors_deliver_everything_selected(
        n in 0u64..3000,
        per_call in 1usize..1500,
        mid in any::<bool>(),
        subs in 1usize..=4,
        shapes in proptest::collection::vec(0usize..3, 4),
        selectors in proptest::collection::vec(selector_strategy(), 8),
        limits in proptest::collection::vec(demand_strategy(), 13),
        delays in proptest::collection::vec(0u64..300, 8),
    ) {
        let zero = Arc::new(AtomicU64::new(0));
        let mut sinks: Vec<Sink> = Vec::new();
        let rt = runtime();
        let result: Result<(), String> = rt.block_on(async {
            let mut p = Pipeline::new();
            let mut bounds = Vec::new();
            let mut limits = limits.iter().copied();
            let mut opts = |name: &str, bounds: &mut Vec<(String, u64)>| {
                let (max, min) = limits.next().unwrap();
                bounds.push((name.to_string(), max as u64));
                Subscribe::max_demand(max).min_demand(min)
            };
            let src = Counter { next: 0, end: n, zero_demand_calls: zero.clone(), max_per_call: per_call };
            let hub = if mid {
                let up = p.producer("source", src);
                let o = opts("mid", &mut bounds);
                p.processor("mid", stage::map(|x: u64| x)).dispatch(Dispatch::broadcast()).subscribe(&up, o)
            } else {
                p.add_producer("source", src).dispatch(Dispatch::broadcast()).build()
            };
            let mut delays = delays.iter().copied();
            let mut sink = |p: &mut Pipeline, name: String, up: &demandflow::StageRef<u64>, sel: Sel, o: Subscribe| {
                let seen = Arc::new(Mutex::new(Vec::new()));
                let rec = Recorder { seen: seen.clone(), delay: Duration::from_micros(delays.next().unwrap()), manual: None, first: 0 };
                let c = p.consumer(&name, rec);
                match sel.keep() {
                    Some(keep) => c.selector(keep).subscribe(up, o),
                    None => c.subscribe(up, o),
                }
                seen
            };
            for (i, &shape) in shapes.iter().enumerate().take(subs) {
                let (outer, inner) = (selectors[2 * i], selectors[2 * i + 1]);
                if shape == 0 {
                    let name = format!("sink{i}");
                    let o = opts(&name, &mut bounds);
                    let seen = sink(&mut p, name.clone(), &hub, outer, o);
                    sinks.push((name, seen, vec![outer]));
                    continue;
                }
                let via = format!("via{i}");
                let o = opts(&via, &mut bounds);
                let b = p.processor(&via, stage::map(|x: u64| x)).dispatch(Dispatch::broadcast());
                let b = match outer.keep() {
                    Some(keep) => b.selector(keep),
                    None => b,
                };
                let up = b.subscribe(&hub, o);
                let name = format!("sink{i}");
                let o = opts(&name, &mut bounds);
                let seen = sink(&mut p, name.clone(), &up, Sel::All, o);
                sinks.push((name, seen, vec![outer]));
                if shape == 2 {
                    let name = format!("sink{i}b");
                    let o = opts(&name, &mut bounds);
                    let seen = sink(&mut p, name.clone(), &up, inner, o);
                    sinks.push((name, seen, vec![outer, inner]));
                }
            }
            run_checked(p.spawn().unwrap(), bounds).await
        });
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(zero.load(Ordering::Relaxed), 0, "D4: producer called with zero demand");
        for (name, seen, path) in &sinks {
            let expected: Vec<u64> = (0..n).filter(|x| path.iter().all(|s| s.test(*x))).collect();
            let seen = seen.lock().unwrap().clone();
            prop_assert_eq!(&seen, &expected, "{} got the wrong sequence", name);
        }
    }

    /// Manual demand: the consumer asks scripted amounts; never more is
    /// delivered than it asked for, and everything arrives in order.
    #[test]
    fn manual_demand_schedules_keep_d1_and_d3(
        n in 1u64..2000,
        script in proptest::collection::vec(1usize..50, 1..40),
        first in 1usize..50,
    ) {
        let zero = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let asked = first as u64 + script.iter().map(|&x| x as u64).sum::<u64>();
        let rt = runtime();
        let result: Result<(), String> = rt.block_on(async {
            let mut p = Pipeline::new();
            let up = p.producer("source", Counter { next: 0, end: n, zero_demand_calls: zero.clone(), max_per_call: usize::MAX });
            let script = Arc::new(Mutex::new(script.iter().rev().copied().collect::<Vec<_>>()));
            p.consumer("sink", Recorder { seen: seen.clone(), delay: Duration::ZERO, manual: Some(script), first })
                .subscribe(&up, Subscribe::default().manual());
            let handle = p.spawn().unwrap();
            // The consumer's own asks come through `kick`; once the script is
            // exhausted it keeps asking 7 at a time, so the run ends.
            run_checked(handle, vec![]).await
        });
        prop_assert_eq!(result, Ok(()));
        let seen = seen.lock().unwrap().clone();
        prop_assert!(seen.len() as u64 <= n.max(asked));
        prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
}

/// Emits `0..n` one per call, and signals `reached` once it has emitted
/// `signal_at` events.
#[derive(Clone)]
struct Signalling {
    next: u64,
    n: u64,
    signal_at: u64,
    reached: Arc<tokio::sync::Notify>,
}

impl Producer<u64> for Signalling {
    async fn produce(
        &mut self,
        _demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if self.next == self.n {
            return Ok(Flow::Done);
        }
        out.emit(self.next);
        self.next += 1;
        if self.next == self.signal_at {
            self.reached.notify_one();
        }
        Ok(Flow::Continue)
    }
}

/// Waits (asynchronously) in its first call until the producer has gone
/// further than this consumer's own demand could have let it: only
/// possible if the producer keeps running while this stage awaits, also
/// when the chain's stages share one task.
#[derive(Clone)]
struct WaitsForTheProducer {
    reached: Arc<tokio::sync::Notify>,
    seen: Arc<Mutex<Vec<u64>>>,
    waited: Arc<AtomicBool>,
}

impl Consumer<u64> for WaitsForTheProducer {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        if !self.waited.swap(true, Ordering::Relaxed) {
            self.reached.notified().await;
        }
        self.seen.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

#[test]
fn a_stage_that_awaits_holds_up_none_of_its_chain() {
    runtime().block_on(async {
        let reached = Arc::new(tokio::sync::Notify::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut p = Pipeline::new();
        // The consumer's first call gets events 1..=5 (max 10, min 5) and
        // waits; the map, having handled 10, has asked the producer for 10
        // more, so the producer reaches 15 only by running meanwhile.
        let n = p.producer(
            "n",
            Signalling {
                next: 0,
                n: 50,
                signal_at: 15,
                reached: reached.clone(),
            },
        );
        let m = p
            .processor("m", stage::map(|x: u64| x + 1))
            .subscribe(&n, Subscribe::max_demand(10).min_demand(5));
        p.consumer(
            "c",
            WaitsForTheProducer {
                reached,
                seen: seen.clone(),
                waited: Arc::new(AtomicBool::new(false)),
            },
        )
        .subscribe(&m, Subscribe::max_demand(10).min_demand(5));
        let report = tokio::time::timeout(Duration::from_secs(10), p.spawn().unwrap().join())
            .await
            .expect("the chain stalled behind the waiting consumer")
            .unwrap();
        assert_eq!(report.stage("c").unwrap().processed, 50);
        assert_eq!(*seen.lock().unwrap(), (1..=50).collect::<Vec<_>>());
    });
}

/// Waits before each event; records, as each call starts, how many events
/// the consumer has seen.
#[derive(Clone)]
struct WaitsThenEmits {
    next: u64,
    n: u64,
    consumed: Arc<AtomicU64>,
    seen_at_call: Arc<Mutex<Vec<u64>>>,
}

impl Producer<u64> for WaitsThenEmits {
    async fn produce(
        &mut self,
        _demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        let seen = self.consumed.load(Ordering::SeqCst);
        self.seen_at_call.lock().unwrap().push(seen);
        if self.next == self.n {
            return Ok(Flow::Done);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        out.emit(self.next);
        self.next += 1;
        Ok(Flow::Continue)
    }
}

#[derive(Clone)]
struct Counts(Arc<AtomicU64>);

impl Consumer<u64> for Counts {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        self.0.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// The latency path: an event a producer had to wait for crosses the chain
/// to the consumer before the producer is called again (it is not held
/// back in the producer's batch while the next call arms its next wait).
#[test]
fn an_event_the_producer_waited_for_is_consumed_before_its_next_call() {
    runtime().block_on(async {
        let consumed = Arc::new(AtomicU64::new(0));
        let seen_at_call = Arc::new(Mutex::new(Vec::new()));
        let mut p = Pipeline::new();
        let a = p.producer(
            "a",
            WaitsThenEmits {
                next: 0,
                n: 20,
                consumed: consumed.clone(),
                seen_at_call: seen_at_call.clone(),
            },
        );
        let b = p
            .processor("b", stage::map(|x: u64| x + 1))
            .subscribe(&a, Subscribe::default());
        p.consumer("c", Counts(consumed.clone()))
            .subscribe(&b, Subscribe::default());
        tokio::time::timeout(Duration::from_secs(10), p.spawn().unwrap().join())
            .await
            .expect("the chain stalled")
            .unwrap();
        assert_eq!(consumed.load(Ordering::SeqCst), 20);
        // Call k starts after the k events of the calls before it arrived.
        assert_eq!(*seen_at_call.lock().unwrap(), (0..=20).collect::<Vec<_>>());
    });
}
