//! `demandflow bench`: throughput of the standard shapes, each beside a
//! hand-written tokio baseline of the same shape measured in the same run
//! (the shapes live in `bench/shapes.rs`, shared with the criterion bench
//! `stages/benches/pipeline_throughput.rs`), plus the memory check
//! `chain3-slow`; with `--latency`, the per-event latency of a paced
//! producer → map → consumer chain beside three tokio tasks joined by `mpsc`
//! channels.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde::Serialize;

use super::args;

mod llm_batch;
mod shapes;

/// Throughput of the standard shapes beside hand-written tokio baselines.
///
/// Runs each shape on the engine and as a hand-written tokio baseline
/// (bounded mpsc channels of Vec<u64> batches of 500, room for 1000 events per
/// channel), alternately (after one untimed warm-up run of each, in
/// alternating order), --reps times each, on a 2-worker multi-thread runtime,
/// and reports the medians. While the engine runs, edge_stats() is sampled every
/// few ms for the largest number of buffered events, reported against the
/// bound: the sum of max_demand over the shape's subscriptions.
///
/// Shapes: linear, chain3, fanout2, broadcast2, partition2, chain3-per-event,
/// fanout2-slow, fanout4-slow (work shared by demand among 2 or 4 consumers,
/// one of them ~100x slower per event than the others; the baseline's
/// consumers take turns at one shared channel, behind a tokio Mutex, which
/// does not steer batches away from the slow one), chain3-slow (chain3 whose
/// consumer is ~100x slower than its producer: the memory check).
///
/// llm-batch (not part of `all`): --requests requests through `demandflow
/// batch`'s machinery against the embedded mock at 6,000 requests/min and
/// 600,000 tokens/min, once with the client told those limits and once
/// told twice them; reports requests/s and tokens/s as a fraction of the
/// limits, 429s, peak in-flight and peak buffered requests (read and not
/// yet written), and the peak RSS. The options under "llm-batch" raise the
/// mock's limits and pace and the client's concurrency, for runs of a
/// million requests.
#[derive(Debug, clap::Args)]
#[command(after_long_help = LATENCY_HELP)]
pub(crate) struct BenchArgs {
    /// One shape, or all
    #[arg(long, value_name = "NAME", default_value = "all", value_parser = shape_names())]
    shape: String,
    /// Events per run [default: 20000000; chain3-slow 5000000; --latency 3000]
    #[arg(long, value_name = "N", value_parser = args::positive::<u64>)]
    events: Option<u64>,
    /// Requests per run of --shape llm-batch [default: 3000]
    #[arg(long, value_name = "N", value_parser = args::positive::<u64>)]
    requests: Option<u64>,
    /// Repetitions per side; the median is reported
    #[arg(long, value_name = "N", default_value = "5", value_parser = args::positive::<usize>)]
    reps: usize,
    /// Print {"results":[{"shape","events","engine_events_per_sec",
    /// "baseline_events_per_sec","ratio","max_buffered","buffer_bound",
    /// "max_pending_demand"}]}
    #[arg(long)]
    json: bool,
    /// Per-event latency of one fixed chain instead of throughput (see
    /// --help)
    #[arg(long, conflicts_with = "shape")]
    latency: bool,
    #[command(flatten)]
    llm: llm_batch::LlmBatchArgs,
}

const LATENCY_HELP: &str = "\
--latency: per-event latency instead of throughput. A producer sleeps
500 us before each event (tokio's timer ends it at the next millisecond
tick), stamps it with the time and emits it through map to a consumer,
which records now - stamp. The same chain by hand is three tokio tasks
joined by mpsc channels of single events, paced the same way. In each
run both chains are alive and take turns of 300 measured events, so that
a busy spell of the host falls on both alike; only one emits at a time.
Each turn opens and closes with an event that is not measured (the first
comes after idling a whole turn, after the last the producer waits for
its next turn), so what is measured is a steady stream. A short warm-up
run comes first, then --reps runs (default 5) of --events measured events
per side (default 3000); p50/p90/p99/max are computed per run and side,
and the medians over runs reported. --json prints
{\"events\",\"reps\",\"engine_p50_us\",\"engine_p90_us\",\"engine_p99_us\",
\"engine_max_us\",\"baseline_p50_us\",\"baseline_p90_us\",\"baseline_p99_us\",
\"baseline_max_us\",\"p50_ratio\",\"p99_ratio\"}.

Exit status: 0, or 1 when a shape buffered more than its bound.";

/// `--shape`'s values: every shape and `all`, with did-you-mean.
fn shape_names() -> clap::builder::PossibleValuesParser {
    let mut names = all_shapes();
    names.push(LLM_BATCH);
    names.push("all");
    clap::builder::PossibleValuesParser::new(names)
}

/// The rate-limited LLM batch shape (`bench/llm_batch.rs`): not in `all`,
/// it takes a minute against a paced mock.
const LLM_BATCH: &str = "llm-batch";

const DEFAULT_EVENTS: u64 = 20_000_000;
const DEFAULT_SLOW_EVENTS: u64 = 5_000_000;

/// One line of the `--json` output; the first five keys are the contract.
#[derive(Debug, Serialize)]
struct Result {
    shape: String,
    events: u64,
    engine_events_per_sec: f64,
    baseline_events_per_sec: f64,
    ratio: f64,
    max_buffered: usize,
    buffer_bound: usize,
    max_pending_demand: u64,
}

#[derive(Debug, Serialize)]
struct Output {
    results: Vec<Result>,
}

#[derive(Debug)]
struct Options {
    shapes: Vec<&'static str>,
    events: Option<u64>,
    /// `Some(settings)` for --shape llm-batch.
    llm_batch: Option<llm_batch::Settings>,
    reps: usize,
    json: bool,
    latency: bool,
}

fn all_shapes() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = shapes::SHAPES.to_vec();
    v.push(shapes::SLOW_SHAPE);
    v
}

fn options(a: BenchArgs) -> std::result::Result<Options, String> {
    let shapes = match all_shapes().into_iter().find(|s| *s == a.shape) {
        Some(s) => vec![s],
        None => all_shapes(),
    };
    let llm_batch = if a.shape == LLM_BATCH {
        Some(a.llm.settings(a.requests))
    } else if let Some(flag) = a.llm.given() {
        return Err(format!("{flag} is an option of --shape {LLM_BATCH}"));
    } else {
        None
    };
    Ok(Options {
        llm_batch,
        shapes,
        events: a.events,
        reps: a.reps,
        json: a.json,
        latency: a.latency,
    })
}

/// Runs the subcommand.
pub(crate) fn run(args: BenchArgs) -> i32 {
    let o = match options(args) {
        Ok(o) => o,
        Err(e) => return super::usage_error("bench", &e),
    };
    // The reference figures were measured on 2 workers.
    let rt = match super::runtime(2) {
        Ok(rt) => rt,
        Err(e) => return super::failure("bench", &format!("cannot start the runtime: {e}")),
    };
    if o.latency {
        return run_latency(&rt, &o);
    }
    if let Some(settings) = o.llm_batch {
        return llm_batch::run(&rt, &settings, o.json);
    }
    let mut progress = Progress::new(o.shapes.len() * (o.reps + 1) * 2);
    let mut results = Vec::new();
    for &shape in &o.shapes {
        let slow = shape == shapes::SLOW_SHAPE;
        let events = o.events.unwrap_or(if slow {
            DEFAULT_SLOW_EVENTS
        } else {
            DEFAULT_EVENTS
        });
        let every = Duration::from_millis(if slow { 1 } else { 5 });
        let mut engine = Vec::with_capacity(o.reps);
        let mut baseline = Vec::with_capacity(o.reps);
        let (mut max_buffered, mut max_pending, mut bound) = (0, 0, 0);
        // One untimed run of each side first (caches, allocator, worker
        // threads), then timed runs in alternating order, so neither side
        // always runs first in a pair: slow drifts of a shared machine
        // fall on both.
        for rep in 0..=o.reps {
            let warmup = rep == 0;
            let label = |side: &'static str| if warmup { "warm-up" } else { side };
            let sides = if rep % 2 == 1 {
                [true, false]
            } else {
                [false, true]
            };
            for on_engine in sides {
                if on_engine {
                    progress.step(shape, label("engine"), rep, o.reps);
                    let e = match rt.block_on(shapes::engine_sampled(shape, events, every)) {
                        Ok(m) => m,
                        Err(e) => {
                            progress.clear();
                            return super::failure("bench", &format!("{shape} (engine): {e}"));
                        }
                    };
                    max_buffered = max_buffered.max(e.max_buffered);
                    max_pending = max_pending.max(e.max_pending);
                    bound = e.buffer_bound;
                    if !warmup {
                        engine.push(e.per_sec());
                    }
                } else {
                    progress.step(shape, label("baseline"), rep, o.reps);
                    let b = match rt.block_on(shapes::baseline(shape, events)) {
                        Ok(m) => m,
                        Err(e) => {
                            progress.clear();
                            return super::failure("bench", &format!("{shape} (baseline): {e}"));
                        }
                    };
                    if !warmup {
                        baseline.push(b.per_sec());
                    }
                }
            }
        }
        // Whole events per second; the ratio is exactly that of the two
        // figures printed.
        let (e, b) = (median(&mut engine).round(), median(&mut baseline).round());
        progress.done(shape, e, b);
        results.push(Result {
            shape: shape.to_owned(),
            events,
            engine_events_per_sec: e,
            baseline_events_per_sec: b,
            ratio: e / b,
            max_buffered,
            buffer_bound: bound,
            max_pending_demand: max_pending,
        });
    }
    progress.clear();
    let over: Vec<String> = results
        .iter()
        .filter(|r| r.max_buffered > r.buffer_bound)
        .map(|r| r.shape.clone())
        .collect();
    let mut out = std::io::stdout().lock();
    if o.json {
        let _ = serde_json::to_writer(&mut out, &Output { results });
        let _ = out.write_all(b"\n");
    } else {
        let _ = print_table(&mut out, &results, o.reps);
    }
    let _ = out.flush();
    if !over.is_empty() {
        return super::failure(
            "bench",
            &format!("buffered events exceeded the bound in: {}", over.join(", ")),
        );
    }
    0
}

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `nanos` (sorted in place).
    fn of(nanos: &mut [u64]) -> Percentiles {
        nanos.sort_unstable();
        let rank = |p: f64| {
            if nanos.is_empty() {
                return 0.0;
            }
            let i = ((p * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len()) - 1;
            nanos[i] as f64 / 1e3
        };
        Percentiles {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }

    /// The median of each percentile over `runs`.
    fn median_of(runs: &[Percentiles]) -> Percentiles {
        let m = |f: fn(&Percentiles) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        Percentiles {
            p50: m(|p| p.p50),
            p90: m(|p| p.p90),
            p99: m(|p| p.p99),
            max: m(|p| p.max),
        }
    }
}

/// The `--json` output of `--latency`; the four `_p50_us` / `_p99_us` keys
/// are the contract.
#[derive(Debug, Serialize)]
struct LatencyOutput {
    events: u64,
    reps: usize,
    engine_p50_us: f64,
    engine_p90_us: f64,
    engine_p99_us: f64,
    engine_max_us: f64,
    baseline_p50_us: f64,
    baseline_p90_us: f64,
    baseline_p99_us: f64,
    baseline_max_us: f64,
    p50_ratio: f64,
    p99_ratio: f64,
}

/// `bench --latency`: both sides together, taking turns
/// (`shapes::LATENCY_TURN`); medians of per-run percentiles.
fn run_latency(rt: &tokio::runtime::Runtime, o: &Options) -> i32 {
    let events = o.events.unwrap_or(shapes::LATENCY_EVENTS);
    // A short warm-up: worker threads, allocator, timer wheel.
    let warmup = events.min(shapes::LATENCY_TURN);
    let every = shapes::LATENCY_EVERY;
    let mut progress = Progress::new(o.reps + 1);
    let (mut engine, mut baseline) = (Vec::new(), Vec::new());
    for rep in 0..=o.reps {
        let n = if rep == 0 { warmup } else { events };
        let side = if rep == 0 { "warm-up" } else { "both sides" };
        progress.step("latency", side, rep, o.reps);
        // Who starts alternates, so neither side always has the first turn.
        let (on_engine, on_baseline) = shapes::Turn::pair(n, rep % 2 == 1);
        let (e, b) = rt.block_on(async {
            tokio::join!(
                shapes::engine_latency(every, on_engine),
                shapes::baseline_latency(every, on_baseline),
            )
        });
        for (side, r, runs) in [("engine", e, &mut engine), ("baseline", b, &mut baseline)] {
            let mut nanos = match r {
                Ok(v) if v.len() as u64 == n => v,
                Ok(v) => {
                    progress.clear();
                    let msg = format!("{side}: {} of {n} events arrived", v.len());
                    return super::failure("bench", &msg);
                }
                Err(e) => {
                    progress.clear();
                    return super::failure("bench", &format!("latency ({side}): {e}"));
                }
            };
            if rep > 0 {
                runs.push(Percentiles::of(&mut nanos));
            }
        }
    }
    progress.clear();
    let (e, b) = (
        Percentiles::median_of(&engine),
        Percentiles::median_of(&baseline),
    );
    let mut out = std::io::stdout().lock();
    if o.json {
        let json = LatencyOutput {
            events,
            reps: o.reps,
            engine_p50_us: e.p50,
            engine_p90_us: e.p90,
            engine_p99_us: e.p99,
            engine_max_us: e.max,
            baseline_p50_us: b.p50,
            baseline_p90_us: b.p90,
            baseline_p99_us: b.p99,
            baseline_max_us: b.max,
            p50_ratio: e.p50 / b.p50,
            p99_ratio: e.p99 / b.p99,
        };
        let _ = serde_json::to_writer(&mut out, &json);
        let _ = out.write_all(b"\n");
    } else {
        let _ = print_latency(&mut out, &e, &b, events, o.reps);
    }
    let _ = out.flush();
    0
}

fn print_latency(
    out: &mut dyn Write,
    e: &Percentiles,
    b: &Percentiles,
    events: u64,
    reps: usize,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<26} {:>9} {:>9} {:>9} {:>9}",
        "latency (us)", "p50", "p90", "p99", "max"
    )?;
    for (name, p) in [("engine", e), ("baseline (tokio mpsc)", b)] {
        writeln!(
            out,
            "{:<26} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            name, p.p50, p.p90, p.p99, p.max
        )?;
    }
    writeln!(
        out,
        "{:<26} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        "ratio",
        e.p50 / b.p50,
        e.p90 / b.p90,
        e.p99 / b.p99,
        e.max / b.max
    )?;
    writeln!(
        out,
        "producer -> map -> consumer, one event per ~1 ms tick, {events} events per run; \
         medians over {reps} run(s) per side; 2 tokio workers"
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn print_table(out: &mut dyn Write, results: &[Result], reps: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<17} {:>11} {:>12} {:>14} {:>6} {:>21}",
        "shape", "events", "engine M/s", "baseline M/s", "ratio", "max buffered / bound"
    )?;
    for r in results {
        writeln!(
            out,
            "{:<17} {:>11} {:>12.1} {:>14.1} {:>6.2} {:>21}",
            r.shape,
            r.events,
            r.engine_events_per_sec / 1e6,
            r.baseline_events_per_sec / 1e6,
            r.ratio,
            format!(
                "{}{} / {}",
                if r.max_buffered > r.buffer_bound {
                    "OVER "
                } else {
                    ""
                },
                r.max_buffered,
                r.buffer_bound
            ),
        )?;
    }
    writeln!(
        out,
        "medians of {reps} run(s) per side; 2 tokio workers; buffered sampled from edge_stats() while the engine ran"
    )?;
    if let Some(rss) = peak_rss() {
        writeln!(
            out,
            "peak RSS of this process: {:.1} MiB",
            rss as f64 / 1048576.0
        )?;
    }
    Ok(())
}

/// The process's peak resident set (Linux `VmHWM`), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A text progress bar on stderr: redrawn in place on a terminal, one line
/// per finished shape otherwise.
#[derive(Debug)]
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn step(&mut self, shape: &str, side: &str, rep: usize, reps: usize) {
        if self.tty {
            const WIDTH: usize = 30;
            let filled = WIDTH * self.done / self.total.max(1);
            let _ = write!(
                std::io::stderr().lock(),
                "\r[{}{}] {:>3}/{} {shape} {side} {}/{reps}\x1b[K",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                self.done,
                self.total,
                rep,
            );
        }
        self.done += 1;
    }

    fn done(&mut self, shape: &str, engine: f64, baseline: f64) {
        if !self.tty {
            let _ = writeln!(
                std::io::stderr().lock(),
                "bench: {:>3}/{} {shape}: engine {:.1} M/s, baseline {:.1} M/s",
                self.done,
                self.total,
                engine / 1e6,
                baseline / 1e6
            );
        }
    }

    fn clear(&self) {
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        let one = Percentiles::of(&mut [2500]);
        assert_eq!((one.p50, one.max), (2.5, 2.5));
        assert_eq!(Percentiles::of(&mut []).p99, 0.0);
    }

    /// The sides of a latency run emit in whole turns, one side at a time,
    /// starting with the one chosen, until each has measured all its
    /// events; each turn opens and closes with an event not measured.
    #[test]
    fn latency_sides_take_turns() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let n = 2 * shapes::LATENCY_TURN + 100;
        for engine_first in [true, false] {
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (on_engine, on_baseline) = shapes::Turn::pair(n, engine_first);
            // A side: a producer that logs each event it emits, and a
            // recorder that receives them in a task of its own and counts
            // those measured.
            let side = |mut turn: shapes::Turn| {
                let log = log.clone();
                let mut recorder_turn = turn.clone();
                let emit = turn.to_emit();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let producer = async move {
                    for _ in 0..emit {
                        turn.wait().await;
                        log.lock().unwrap().push(turn.is_engine());
                        tx.send(()).unwrap();
                        turn.emitted();
                    }
                };
                let recorder = async move {
                    let mut measured = 0;
                    for _ in 0..emit {
                        rx.recv().await.unwrap();
                        // Were the other side (or this producer's next
                        // turn) let through early, it would emit now.
                        tokio::task::yield_now().await;
                        measured += u64::from(recorder_turn.recorded());
                    }
                    measured
                };
                (tokio::spawn(producer), tokio::spawn(recorder))
            };
            let measured = rt.block_on(async {
                let (a, b) = side(on_engine);
                let (c, d) = side(on_baseline);
                let (a, b, c, d) = tokio::join!(a, b, c, d);
                a.unwrap();
                c.unwrap();
                [b.unwrap(), d.unwrap()]
            });
            assert_eq!(measured, [n, n]);
            let log = log.lock().unwrap();
            let mut runs: Vec<(bool, u64)> = Vec::new();
            for &engine in log.iter() {
                match runs.last_mut() {
                    Some((side, len)) if *side == engine => *len += 1,
                    _ => runs.push((engine, 1)),
                }
            }
            let (first, second) = (engine_first, !engine_first);
            let turn = shapes::LATENCY_TURN + 2;
            assert_eq!(
                runs,
                [
                    (first, turn),
                    (second, turn),
                    (first, turn),
                    (second, turn),
                    (first, 102),
                    (second, 102),
                ]
            );
        }
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The options of `demandflow bench ARGS`, or the error's text.
    fn parse(list: &[&str]) -> std::result::Result<Options, String> {
        use clap::Parser;
        let argv = ["demandflow", "bench"].iter().chain(list);
        match super::super::Cli::try_parse_from(argv).map_err(|e| e.to_string())? {
            super::super::Cli {
                command: super::super::Command::Bench(a),
            } => options(a),
            other => panic!("not bench: {other:?}"),
        }
    }

    #[test]
    fn options_validate() {
        let o = parse(&["--shape", "chain3", "--events", "10"]).unwrap();
        assert_eq!((o.shapes, o.events, o.reps), (vec!["chain3"], Some(10), 5));
        assert_eq!(parse(&[]).unwrap().shapes.len(), 9);
        assert_eq!(parse(&["--shape", "all"]).unwrap().shapes.len(), 9);
        assert!(parse(&["--latency"]).unwrap().latency);
        for bad in [
            &["--shape", "nope"][..],
            &["--events", "0"],
            &["--reps", "0"],
            &["--events", "x"],
            &["--latency", "--shape", "chain3"],
            &["--shape", "chain3", "--mock-rpm", "10"],
            &["--shape", "llm-batch", "--client", "half"],
            &["--shape", "llm-batch", "--concurrency", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // llm-batch: the shape unless told otherwise.
        let o = parse(&["--shape", "llm-batch"]).unwrap();
        let d = o.llm_batch.unwrap();
        assert_eq!(
            (d.requests, d.rpm, d.tpm, d.tokens),
            (3000, 6000, 600_000, 20)
        );
        assert_eq!((d.first_event_delay, d.pacing), (ms(200), ms(2)));
        assert_eq!((d.concurrency, d.real, d.twice), (64, true, true));
        let o = parse(&[
            "--shape",
            "llm-batch",
            "--requests",
            "7",
            "--mock-rpm",
            "60",
            "--mock-tpm",
            "600",
            "--tokens",
            "3",
            "--first-event-delay-ms",
            "0",
            "--pacing",
            "0",
            "--concurrency",
            "9",
            "--client",
            "twice",
        ])
        .unwrap();
        let f = o.llm_batch.unwrap();
        assert_eq!((f.requests, f.rpm, f.tpm, f.tokens), (7, 60, 600, 3));
        assert_eq!((f.first_event_delay, f.pacing), (ms(0), ms(0)));
        assert_eq!((f.concurrency, f.real, f.twice), (9, false, true));
        let e = parse(&["--shape", "chain3", "--tokens", "5"]).unwrap_err();
        assert!(
            e.contains("--tokens is an option of --shape llm-batch"),
            "{e}"
        );
        let e = parse(&["--shape", "chian3"]).unwrap_err();
        assert!(e.contains("'chian3'") && e.contains("chain3"), "{e}");
    }
}
