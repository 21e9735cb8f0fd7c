//! The standard benchmark shapes, each as a demandflow pipeline and as a
//! hand-written tokio baseline of the same shape.
//!
//! Shared by `demandflow bench` and the criterion bench
//! `stages/benches/pipeline_throughput.rs` (which includes this file by
//! path, inside the package so that it can be published), so both measure
//! exactly the same code.
//!
//! Baselines follow the definition: bounded `mpsc` channels carrying
//! `Vec<u64>` batches of 500 (`max_demand - min_demand` at the defaults),
//! with room for 1000 events (2 batches) per channel.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::{Duration, Instant};

use demandflow::{
    sink, source, stage, BoxError, Consumer, Context, Dispatch, Emitter, Flow, Pipeline, Producer,
    Subscribe,
};
use tokio::sync::{mpsc, watch};

/// Names of the standard shapes.
pub(crate) const SHAPES: &[&str] = &[
    "linear",
    "chain3",
    "fanout2",
    "broadcast2",
    "partition2",
    "chain3-per-event",
    "fanout2-slow",
    "fanout4-slow",
];

/// Consumers of a `fanout*-slow` shape: work shared by demand, one of the
/// consumers [`SlowSum`], the rest [`Sum`].
fn slow_fanout_width(shape: &str) -> Option<usize> {
    match shape {
        "fanout2-slow" => Some(2),
        "fanout4-slow" => Some(4),
        _ => None,
    }
}

const BATCH: usize = 500;
const CHANNEL_BATCHES: usize = 2;

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measure {
    pub(crate) events: u64,
    pub(crate) elapsed: Duration,
    /// Largest buffered event count (`edge_stats()`) seen while it ran (engine only).
    pub(crate) max_buffered: usize,
    /// Largest outstanding demand (`edge_stats()`) seen while it ran (engine only).
    pub(crate) max_pending: u64,
    /// Sum of `max_demand` over the shape's subscriptions (engine only).
    pub(crate) buffer_bound: usize,
}

impl Measure {
    pub(crate) fn per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Emits one event per call: the per-event path of the engine.
#[derive(Clone)]
struct OnePerCall {
    next: u64,
    end: u64,
}

impl Producer<u64> for OnePerCall {
    async fn produce(
        &mut self,
        _demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if self.next >= self.end {
            return Ok(Flow::Done);
        }
        out.emit(self.next);
        self.next += 1;
        Ok(Flow::Continue)
    }
}

/// Sums what it receives, so no stage's work can be optimised away.
#[derive(Clone, Default)]
struct Sum(u64);

impl Consumer<u64> for Sum {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        self.0 = events.iter().fold(self.0, |a, &x| a.wrapping_add(x));
        std::hint::black_box(self.0);
        Ok(())
    }
}

/// The memory-check shape: `chain3` whose consumer is about 100 times
/// slower per event than the producer (busy work, no sleeps).
pub(crate) const SLOW_SHAPE: &str = "chain3-slow";

/// Rounds of [`busy`] per event in the slow consumer. A round costs about
/// 2 ns here (a dependent multiply, rotate and xor through `black_box`), so
/// an event costs 100-150 ns: about 100 times the producer's per-event cost
/// (`source::iter` emitting into a batch, ~1 ns).
pub(crate) const SLOW_ROUNDS: u32 = 64;

/// Busy work: `SLOW_ROUNDS` dependent multiply-rotate rounds, which the
/// compiler can neither vectorise nor skip.
#[inline]
pub(crate) fn busy(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..SLOW_ROUNDS {
        h = std::hint::black_box(h.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ x);
    }
    h
}

/// The slow consumer of [`SLOW_SHAPE`].
#[derive(Clone, Default)]
struct SlowSum(u64);

impl Consumer<u64> for SlowSum {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        for &x in events {
            self.0 = self.0.wrapping_add(busy(x));
        }
        std::hint::black_box(self.0);
        Ok(())
    }
}

/// Builds `shape` with `n` events; also returns the sum of `max_demand`
/// over its subscriptions (the bound on buffered events).
fn build(shape: &str, n: u64) -> Result<(Pipeline, usize), String> {
    let mut p = Pipeline::new();
    let src = source::iter(0..n);
    let d = Subscribe::default;
    match shape {
        "linear" => {
            let a = p.producer("source", src);
            p.consumer("sink", Sum::default()).subscribe(&a, d());
        }
        "chain3" => {
            let a = p.producer("source", src);
            let b = p
                .processor("map", stage::map(|x: u64| x + 1))
                .subscribe(&a, d());
            p.consumer("sink", Sum::default()).subscribe(&b, d());
        }
        "chain3-per-event" => {
            let a = p.producer("source", OnePerCall { next: 0, end: n });
            let b = p
                .processor("map", stage::map(|x: u64| x + 1))
                .subscribe(&a, d());
            p.consumer("sink", Sum::default()).subscribe(&b, d());
        }
        "linear-per-event" => {
            let a = p.producer("source", OnePerCall { next: 0, end: n });
            p.consumer("sink", Sum::default()).subscribe(&a, d());
        }
        "fanout2" => {
            let a = p.producer("source", src);
            p.consumer("sink", Sum::default())
                .concurrency(2)
                .subscribe(&a, d());
        }
        "broadcast2" => {
            let a = p
                .add_producer("source", src)
                .dispatch(Dispatch::broadcast())
                .build();
            p.consumer("sink-a", Sum::default()).subscribe(&a, d());
            p.consumer("sink-b", Sum::default()).subscribe(&a, d());
        }
        "partition2" => {
            let a = p
                .add_producer("source", src)
                .dispatch(Dispatch::partition(2, |x: &u64| *x as usize))
                .build();
            p.consumer("sink-even", Sum::default())
                .subscribe(&a, d().partition(0));
            p.consumer("sink-odd", Sum::default())
                .subscribe(&a, d().partition(1));
        }
        "fanout2-slow" | "fanout4-slow" => {
            let width = slow_fanout_width(shape).unwrap_or(2);
            let a = p.producer("source", src);
            for i in 0..width - 1 {
                p.consumer(&format!("fast-{i}"), Sum::default())
                    .subscribe(&a, d());
            }
            p.consumer("slow", SlowSum::default()).subscribe(&a, d());
        }
        "chain3-slow" => {
            let a = p.producer("source", src);
            let b = p
                .processor("map", stage::map(|x: u64| x + 1))
                .subscribe(&a, d());
            p.consumer("sink", SlowSum::default()).subscribe(&b, d());
        }
        other => return Err(format!("unknown shape `{other}`")),
    }
    let _ = sink::drain();
    let max_demand = d().limits().map_err(|e| e.to_string())?.max();
    let subscriptions = match shape {
        "linear" | "linear-per-event" => 1,
        _ => slow_fanout_width(shape).unwrap_or(2),
    };
    Ok((p, max_demand * subscriptions))
}

/// Runs `shape` on the engine with `n` events.
pub(crate) async fn engine(shape: &str, n: u64) -> Result<Measure, String> {
    let (p, buffer_bound) = build(shape, n)?;
    let start = Instant::now();
    let handle = p.spawn().map_err(|e| e.to_string())?;
    let watch = handle.watch();
    let report = handle.join().await.map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    let _ = (report, watch);
    Ok(Measure {
        events: n,
        elapsed,
        max_buffered: 0,
        max_pending: 0,
        buffer_bound,
    })
}

/// Runs `shape` on the engine with `n` events like [`engine`], sampling
/// `edge_stats()` every `every` from the calling task to record the largest
/// buffered count and pending demand seen.
pub(crate) async fn engine_sampled(
    shape: &str,
    n: u64,
    every: Duration,
) -> Result<Measure, String> {
    let (p, buffer_bound) = build(shape, n)?;
    let start = Instant::now();
    let handle = p.spawn().map_err(|e| e.to_string())?;
    let watch = handle.watch();
    let join = handle.join();
    tokio::pin!(join);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut max_buffered, mut max_pending) = (0, 0);
    let report = loop {
        tokio::select! {
            r = &mut join => break r,
            _ = tick.tick() => {
                // The edges alone: the stages' counters and occupancy are
                // not what this monitor checks.
                let edges = watch.edge_stats();
                let buffered = edges.iter().map(|e| e.buffered).sum();
                let pending = edges.iter().map(|e| e.pending_demand).sum();
                max_buffered = max_buffered.max(buffered);
                max_pending = max_pending.max(pending);
            }
        }
    };
    let elapsed = start.elapsed();
    report.map_err(|e| e.to_string())?;
    Ok(Measure {
        events: n,
        elapsed,
        max_buffered,
        max_pending,
        buffer_bound,
    })
}

fn consume_sum(acc: &mut u64, batch: &[u64]) {
    *acc = batch.iter().fold(*acc, |a, &x| a.wrapping_add(x));
    std::hint::black_box(*acc);
}

async fn baseline_source(n: u64, tx: mpsc::Sender<Vec<u64>>) {
    let mut i = 0;
    while i < n {
        let end = (i + BATCH as u64).min(n);
        let batch: Vec<u64> = (i..end).collect();
        i = end;
        if tx.send(batch).await.is_err() {
            return;
        }
    }
}

async fn baseline_sink(mut rx: mpsc::Receiver<Vec<u64>>) {
    let mut acc = 0;
    while let Some(b) = rx.recv().await {
        consume_sum(&mut acc, &b);
    }
}

async fn baseline_slow_sink(mut rx: mpsc::Receiver<Vec<u64>>) {
    let mut acc = 0u64;
    while let Some(b) = rx.recv().await {
        for &x in &b {
            acc = acc.wrapping_add(busy(x));
        }
        std::hint::black_box(acc);
    }
}

/// Runs `shape` as a hand-written tokio pipeline with `n` events.
pub(crate) async fn baseline(shape: &str, n: u64) -> Result<Measure, String> {
    let start = Instant::now();
    let ch = || mpsc::channel::<Vec<u64>>(CHANNEL_BATCHES);
    match shape {
        "linear" => {
            let (tx, rx) = ch();
            let a = tokio::spawn(baseline_source(n, tx));
            let b = tokio::spawn(baseline_sink(rx));
            let _ = tokio::join!(a, b);
        }
        "chain3" | "chain3-per-event" | "chain3-slow" => {
            let slow = shape == "chain3-slow";
            let (tx1, mut rx1) = ch();
            let (tx2, rx2) = ch();
            let a = tokio::spawn(baseline_source(n, tx1));
            let m = tokio::spawn(async move {
                while let Some(b) = rx1.recv().await {
                    let out: Vec<u64> = b.into_iter().map(|x| x + 1).collect();
                    if tx2.send(out).await.is_err() {
                        return;
                    }
                }
            });
            let c = tokio::spawn(async move {
                if slow {
                    baseline_slow_sink(rx2).await
                } else {
                    baseline_sink(rx2).await
                }
            });
            let _ = tokio::join!(a, m, c);
        }
        "fanout2" => {
            // Work-sharing: two consumers pull from one channel (the
            // hand-written equivalent of a demand dispatcher).
            let (tx, rx) = ch();
            let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
            let a = tokio::spawn(baseline_source(n, tx));
            let sinks: Vec<_> = (0..2)
                .map(|_| {
                    let rx = rx.clone();
                    tokio::spawn(async move {
                        let mut acc = 0;
                        loop {
                            let b = rx.lock().await.recv().await;
                            match b {
                                Some(b) => consume_sum(&mut acc, &b),
                                None => return,
                            }
                        }
                    })
                })
                .collect();
            let _ = a.await;
            for s in sinks {
                let _ = s.await;
            }
        }
        "fanout2-slow" | "fanout4-slow" => {
            // Work-sharing as in fanout2; the last consumer is the slow one.
            let width = slow_fanout_width(shape).unwrap_or(2);
            let (tx, rx) = ch();
            let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
            let a = tokio::spawn(baseline_source(n, tx));
            let sinks: Vec<_> = (0..width)
                .map(|i| {
                    let rx = rx.clone();
                    let slow = i == width - 1;
                    tokio::spawn(async move {
                        let mut acc = 0u64;
                        loop {
                            let b = rx.lock().await.recv().await;
                            match b {
                                Some(b) if slow => {
                                    for &x in &b {
                                        acc = acc.wrapping_add(busy(x));
                                    }
                                    std::hint::black_box(acc);
                                }
                                Some(b) => consume_sum(&mut acc, &b),
                                None => return,
                            }
                        }
                    })
                })
                .collect();
            let _ = a.await;
            for s in sinks {
                let _ = s.await;
            }
        }
        "broadcast2" => {
            let (tx1, rx1) = ch();
            let (tx2, rx2) = ch();
            let a = tokio::spawn(async move {
                let mut i = 0;
                while i < n {
                    let end = (i + BATCH as u64).min(n);
                    let batch: Vec<u64> = (i..end).collect();
                    i = end;
                    if tx1.send(batch.clone()).await.is_err() || tx2.send(batch).await.is_err() {
                        return;
                    }
                }
            });
            let b = tokio::spawn(baseline_sink(rx1));
            let c = tokio::spawn(baseline_sink(rx2));
            let _ = tokio::join!(a, b, c);
        }
        "partition2" => {
            let (tx1, rx1) = ch();
            let (tx2, rx2) = ch();
            let a = tokio::spawn(async move {
                let mut i = 0;
                while i < n {
                    let end = (i + 2 * BATCH as u64).min(n);
                    let (even, odd): (Vec<u64>, Vec<u64>) = (i..end).partition(|x| x % 2 == 0);
                    i = end;
                    if tx1.send(even).await.is_err() || tx2.send(odd).await.is_err() {
                        return;
                    }
                }
            });
            let b = tokio::spawn(baseline_sink(rx1));
            let c = tokio::spawn(baseline_sink(rx2));
            let _ = tokio::join!(a, b, c);
        }
        other => return Err(format!("unknown shape `{other}`")),
    }
    Ok(Measure {
        events: n,
        elapsed: start.elapsed(),
        max_buffered: 0,
        max_pending: 0,
        buffer_bound: 0,
    })
}

// ------------------------------------------------------------------ latency

/// Events per latency run (the figure).
pub(crate) const LATENCY_EVENTS: u64 = 3_000;

/// The pause before each emission of a latency run. tokio's timer counts
/// whole milliseconds, so a 500 µs sleep ends at the next tick: events come
/// about one per millisecond, each alone in the pipeline.
pub(crate) const LATENCY_EVERY: Duration = Duration::from_micros(500);

/// Events one side of a latency run measures in a turn, before the other
/// side's turn.
///
/// Both chains of a run are alive from start to end and take turns, so
/// that a spell of a busy host (a neighbour on the machine, an interrupt
/// storm) falls on both sides alike instead of on whichever side happened
/// to run then: on a shared machine such spells last from milliseconds to
/// seconds and decide a run's p99. Only one side emits at a time, so each
/// event still crosses a pipeline that is otherwise idle, with its own
/// timer the only one pending, as when it runs alone.
pub(crate) const LATENCY_TURN: u64 = 300;

/// One side's part in the turn-taking of a latency run.
///
/// Its producer waits for the side's turn before each event and counts
/// what it emitted; its recorder hands the turn over once the turn's last
/// event has been recorded, so that the other side's wake-up (after a long
/// idle, the costliest poll of a run) is off both sides' measured paths.
///
/// A turn opens and closes with an event that is not measured: the
/// measured events are those of a steady stream, one every pause, as when
/// a side runs alone. The opening event is the first after the side idled
/// a whole turn while the other side ran other code (7-17 µs where a
/// steady event takes 0.3-1 µs), and after the closing event the producer
/// waits for its next turn instead of its pause timer.
#[derive(Clone)]
pub(crate) struct Turn {
    engine: bool,
    /// 0 when this side takes the even turns, 1 for the odd ones.
    parity: u64,
    /// How many turns have ended, of both sides.
    ended: watch::Sender<u64>,
    rx: watch::Receiver<u64>,
    /// Events the side measures in all.
    measured: u64,
    /// Turns of this side this copy has gone through.
    turns: u64,
    /// Events this copy has emitted, or recorded, in the current turn.
    into_turn: u64,
}

impl Turn {
    /// The two sides of a run measuring `measured` events each;
    /// `engine_first` says who starts. Each side gives its producer one
    /// clone and its recorder another.
    pub(crate) fn pair(measured: u64, engine_first: bool) -> (Turn, Turn) {
        let ended = watch::Sender::new(0);
        let side = |engine: bool| Turn {
            engine,
            parity: u64::from(engine != engine_first),
            rx: ended.subscribe(),
            ended: ended.clone(),
            measured,
            turns: 0,
            into_turn: 0,
        };
        (side(true), side(false))
    }

    /// Whether this is the engine's side.
    pub(crate) fn is_engine(&self) -> bool {
        self.engine
    }

    /// Events the side's producer emits: the measured ones, and an opening
    /// and a closing event per turn.
    pub(crate) fn to_emit(&self) -> u64 {
        self.measured + 2 * self.measured.div_ceil(LATENCY_TURN)
    }

    /// The producer's part: waits for the turn its next event belongs to.
    pub(crate) async fn wait(&mut self) {
        let mine = self.parity + 2 * self.turns;
        // The sender lives in `self`, so the channel cannot close.
        let _ = self.rx.wait_for(|&ended| ended == mine).await;
    }

    /// The producer's part: counts an emitted event.
    pub(crate) fn emitted(&mut self) {
        self.step();
    }

    /// The recorder's part: counts a recorded event, ends the turn after
    /// its closing event, and says whether the event is measured.
    pub(crate) fn recorded(&mut self) -> bool {
        let (measured, closing) = self.step();
        if closing {
            self.ended.send_modify(|ended| *ended += 1);
        }
        measured
    }

    /// Moves past one event of the current turn: whether it is measured,
    /// and whether it closes the turn.
    fn step(&mut self) -> (bool, bool) {
        let in_turn = (self.measured - self.turns * LATENCY_TURN).min(LATENCY_TURN);
        self.into_turn += 1;
        let closing = self.into_turn == in_turn + 2;
        let measured = self.into_turn != 1 && !closing;
        if closing {
            self.turns += 1;
            self.into_turn = 0;
        }
        (measured, closing)
    }
}

/// Emits `left` timestamps, sleeping `every` before each: the producer of a
/// latency run. The stamp is taken right before the event is emitted.
#[derive(Clone)]
struct Paced {
    left: u64,
    every: Duration,
    turn: Turn,
}

impl Producer<Instant> for Paced {
    async fn produce(
        &mut self,
        _demand: usize,
        out: &mut Emitter<Instant>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if self.left == 0 {
            return Ok(Flow::Done);
        }
        self.turn.wait().await;
        tokio::time::sleep(self.every).await;
        out.emit(Instant::now());
        self.left -= 1;
        self.turn.emitted();
        Ok(Flow::Continue)
    }
}

/// Records, for each measured event, the time since its stamp, in
/// nanoseconds, and ends its side's turns ([`Turn::recorded`]). Clones
/// share the record; only one of them records.
#[derive(Clone)]
struct Record {
    nanos: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
    turn: Turn,
}

impl Record {
    fn new(turn: Turn) -> Record {
        let nanos = Vec::with_capacity(turn.measured as usize);
        Record {
            nanos: std::sync::Arc::new(std::sync::Mutex::new(nanos)),
            turn,
        }
    }

    fn record(&mut self, stamps: &[Instant]) {
        let now = Instant::now();
        let mut nanos = self.nanos.lock().unwrap_or_else(|e| e.into_inner());
        for stamp in stamps {
            if self.turn.recorded() {
                nanos.push(now.saturating_duration_since(*stamp).as_nanos() as u64);
            }
        }
    }

    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.nanos.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Consumer<Instant> for Record {
    async fn consume(&mut self, events: &[Instant], _cx: &Context) -> Result<(), BoxError> {
        self.record(events);
        Ok(())
    }
}

/// Producer → map → consumer on the engine, one stamped event every
/// `every` while it is `turn`'s turn: the latency of each measured event
/// from emission to consumption, in nanoseconds, in arrival order.
pub(crate) async fn engine_latency(every: Duration, turn: Turn) -> Result<Vec<u64>, String> {
    let rec = Record::new(turn.clone());
    let mut p = Pipeline::new();
    let a = p.producer(
        "source",
        Paced {
            left: turn.to_emit(),
            every,
            turn,
        },
    );
    let b = p
        .processor("map", stage::map(|t: Instant| t))
        .subscribe(&a, Subscribe::default());
    p.consumer("sink", rec.clone())
        .subscribe(&b, Subscribe::default());
    p.spawn()
        .map_err(|e| e.to_string())?
        .join()
        .await
        .map_err(|e| e.to_string())?;
    Ok(rec.take())
}

/// The same as [`engine_latency`] by hand: three tokio tasks joined by
/// bounded `mpsc` channels of single events (room for 1000, the engine's
/// default `max_demand`), paced by the same sleep and taking the same turns.
pub(crate) async fn baseline_latency(every: Duration, mut turn: Turn) -> Result<Vec<u64>, String> {
    let rec = Record::new(turn.clone());
    let (tx1, mut rx1) = mpsc::channel::<Instant>(1000);
    let (tx2, mut rx2) = mpsc::channel::<Instant>(1000);
    let a = tokio::spawn(async move {
        for _ in 0..turn.to_emit() {
            turn.wait().await;
            tokio::time::sleep(every).await;
            if tx1.send(Instant::now()).await.is_err() {
                return;
            }
            turn.emitted();
        }
    });
    let m = tokio::spawn(async move {
        while let Some(t) = rx1.recv().await {
            if tx2.send(t).await.is_err() {
                return;
            }
        }
    });
    let mut r = rec.clone();
    let c = tokio::spawn(async move {
        while let Some(t) = rx2.recv().await {
            r.record(&[t]);
        }
    });
    let (x, y, z) = tokio::join!(a, m, c);
    x.and(y).and(z).map_err(|e| e.to_string())?;
    Ok(rec.take())
}
