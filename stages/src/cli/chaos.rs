//! `demandflow chaos`: a supervised pipeline whose processors crash at
//! random, and a consumer that checks by its own bookkeeping that nothing
//! was lost (issue 3, item 8).
//!
//! ```text
//! source ──▶ work ×2 (concurrency 2, crash at random) ──▶ ledger
//! ```
//!
//! * `source` emits the ids 0, 1, 2, ... as demanded and counts what it
//!   emitted: that count is `produced`.
//! * Each call of a `work` instance fails with probability `--crash-rate`
//!   (half the failures panic, half return an error): the rate is **per
//!   batch**, i.e. per call of the processor. A batch holding a *poison* id
//!   (every `--poison-every`th id) fails every time, so after
//!   `max_attempts` (3) it is dead-lettered: that exercises the dead-letter
//!   path, which random crashes alone reach only with probability rate³.
//! * `ledger` marks each id it receives in a bitmap; a mark already set is a
//!   duplicate delivery. The dead-letter handler marks dead-lettered ids in
//!   another bitmap.
//!
//! After `--seconds`, the pipeline is shut down gracefully: the source stops,
//! everything already emitted drains. Then `lost` counts ids below
//! `produced` that are in neither bitmap; `lost` must be 0 and `produced`
//! must equal `processed + dead_lettered`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use demandflow::supervisor::Backoff;
use demandflow::{
    BoxError, Consumer, Context, DeadLetter, Emitter, Flow, Pipeline, Processor, Producer,
    Subscribe,
};
use serde::Serialize;

/// A supervised pipeline whose processors crash at random; checks that
/// nothing is lost.
///
/// Runs source -> work x2 (concurrent processors that panic or return errors
/// at random) -> ledger under supervision, then shuts it down gracefully and
/// checks by the ledger's own count that every produced event was processed
/// or dead-lettered.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when lost is 0 and produced == processed + dead_lettered, \
1 otherwise."
)]
pub(crate) struct ChaosArgs {
    /// How long to run, in seconds (fractions allowed; at most 86400)
    #[arg(long = "seconds", value_name = "N", default_value = "10", value_parser = seconds)]
    run_for: Duration,
    /// Probability that one processor call (one batch) fails, half by panic,
    /// half by error
    #[arg(long = "crash-rate", value_name = "P", default_value_t = 0.01, value_parser = probability)]
    crash_rate: f64,
    /// Every Nth id is a poison pill: its batch fails on every attempt and is
    /// dead-lettered (0: none)
    #[arg(long = "poison-every", value_name = "N", default_value_t = 1_000_000)]
    poison_every: u64,
    /// Seed of the crash draws [default: from the clock]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Print one object: produced, processed, dead_lettered, duplicates,
    /// restarts, lost
    #[arg(long)]
    json: bool,
    /// Serve a live page of the pipeline (graph coloured by backpressure,
    /// restarts, dead letters) on ADDR, e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<std::net::SocketAddr>,
}

/// Panic messages that start with this are injected, and kept off stderr.
const INJECTED: &str = "chaos: injected";

#[derive(Debug)]
struct Options {
    run_for: Duration,
    crash_rate: f64,
    poison_every: u64,
    seed: u64,
    json: bool,
    dashboard: Option<std::net::SocketAddr>,
}

/// `--seconds`: in (0, 86400].
fn seconds(text: &str) -> Result<Duration, String> {
    let s: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        return Err("must be in (0, 86400]".into());
    }
    Ok(Duration::from_secs_f64(s))
}

/// `--crash-rate`: in [0, 1].
fn probability(text: &str) -> Result<f64, String> {
    let p: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err("must be in [0, 1]".into());
    }
    Ok(p)
}

fn options(a: ChaosArgs) -> Options {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5EED, |d| d.as_nanos() as u64)
    });
    Options {
        run_for: a.run_for,
        crash_rate: a.crash_rate,
        poison_every: a.poison_every,
        seed,
        json: a.json,
        dashboard: a.dashboard,
    }
}

/// Runs the subcommand.
pub(crate) fn run(args: ChaosArgs) -> i32 {
    super::run_async("chaos", Ok(options(args)), |o| {
        quiet_injected_panics();
        chaos(o)
    })
}

/// Thousands of injected panics would bury the output: drop their default
/// report, keep every other panic's.
fn quiet_injected_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        if !message.is_some_and(|m| m.starts_with(INJECTED)) {
            previous(info);
        }
    }));
}

/// A growable set of ids.
#[derive(Debug, Default)]
struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    /// Marks `id`; returns whether it was marked already.
    fn insert(&mut self, id: u64) -> bool {
        let (w, b) = ((id / 64) as usize, id % 64);
        if w >= self.words.len() {
            self.words.resize((w + 1).next_power_of_two(), 0);
        }
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        was
    }

    fn contains(&self, id: u64) -> bool {
        self.words
            .get((id / 64) as usize)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Ids at or above `limit`.
    fn count_from(&self, limit: u64) -> u64 {
        let first = (limit / 64) as usize;
        let mut n = 0;
        for (i, w) in self.words.iter().enumerate().skip(first) {
            let mut w = *w;
            if i == first {
                w &= !((1u64 << (limit % 64)) - 1);
            }
            n += u64::from(w.count_ones());
        }
        n
    }
}

/// Emits consecutive ids; the counter is shared so that a restarted
/// instance would continue rather than repeat.
#[derive(Debug, Clone)]
struct Source {
    next: Arc<AtomicU64>,
}

impl Producer<u64> for Source {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        // Counted and emitted in the same synchronous step: an id counted
        // as produced is always in the emitter.
        let first = self.next.fetch_add(demand as u64, Ordering::Relaxed);
        out.extend(first..first + demand as u64);
        Ok(Flow::Continue)
    }
}

/// splitmix64: well-spread draws from a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Passes ids on, failing at random. The draw counter is shared by every
/// instance (templates are cloned at each restart, so per-instance state
/// would replay the same draws after every restart).
#[derive(Debug, Clone)]
struct Worker {
    draws: Arc<AtomicU64>,
    seed: u64,
    crash_rate: f64,
    poison_every: u64,
}

impl Worker {
    fn is_poison(&self, id: u64) -> bool {
        self.poison_every > 0 && id % self.poison_every == self.poison_every - 1
    }
}

impl Processor<u64, u64> for Worker {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        let draw = mix(self.seed ^ mix(self.draws.fetch_add(1, Ordering::Relaxed)));
        let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
        let poisoned = events.iter().any(|&id| self.is_poison(id));
        if poisoned || uniform < self.crash_rate {
            // Emit first, then fail: the engine must discard this output.
            out.extend(events.iter().copied());
            if draw & 1 == 0 {
                panic!("{INJECTED} panic");
            }
            return Err(format!("{INJECTED} error").into());
        }
        out.extend(events.iter().copied());
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Book {
    seen: Bitmap,
    duplicates: u64,
}

/// Marks what it receives.
#[derive(Debug, Clone)]
struct Ledger {
    book: Arc<Mutex<Book>>,
}

impl Consumer<u64> for Ledger {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        for &id in events {
            if book.seen.insert(id) {
                book.duplicates += 1;
            }
        }
        Ok(())
    }
}

/// The result, in the documented key order.
#[derive(Debug, Serialize)]
struct Counts {
    produced: u64,
    processed: u64,
    dead_lettered: u64,
    duplicates: u64,
    restarts: u64,
    lost: u64,
}

async fn chaos(o: Options) -> Result<i32, String> {
    let produced = Arc::new(AtomicU64::new(0));
    let book = Arc::new(Mutex::new(Book::default()));
    let dead = Arc::new(Mutex::new(Bitmap::default()));
    let dead_twice = Arc::new(AtomicU64::new(0));

    let on_dead = {
        let dead = dead.clone();
        let dead_twice = dead_twice.clone();
        move |dl: DeadLetter| {
            let Some(events) = dl.events::<u64>() else {
                return;
            };
            let mut dead = dead.lock().unwrap_or_else(PoisonError::into_inner);
            for &id in events {
                if dead.insert(id) {
                    dead_twice.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    // Random crashes must not escalate: allow far more restarts than the
    // crash rate can cause, and keep the backoff short so the run makes
    // progress between them.
    let mut p = Pipeline::new()
        .intensity(10_000_000, Duration::from_secs(1))
        .backoff(Backoff::exponential(
            Duration::from_micros(100),
            Duration::from_millis(2),
        ))
        .max_attempts(3)
        .on_dead_letter(on_dead);
    let source = p.producer(
        "source",
        Source {
            next: produced.clone(),
        },
    );
    let work = p
        .processor(
            "work",
            Worker {
                draws: Arc::new(AtomicU64::new(0)),
                seed: o.seed,
                crash_rate: o.crash_rate,
                poison_every: o.poison_every,
            },
        )
        .concurrency(2)
        .subscribe(&source, Subscribe::default());
    p.consumer("ledger", Ledger { book: book.clone() })
        .subscribe(&work, Subscribe::default());

    if !o.json {
        errln!(
            "demandflow chaos: {:.1} s, crash rate {} per batch, poison every {} ids, seed {}",
            o.run_for.as_secs_f64(),
            o.crash_rate,
            o.poison_every,
            o.seed
        );
    }
    let start = Instant::now();
    let handle = p.spawn().map_err(|e| e.to_string())?;
    let watch = handle.watch();
    let dashboard = super::dashboard::serve(watch.clone(), o.dashboard, "demandflow chaos").await?;
    let until = tokio::time::Instant::now() + o.run_for;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            // Ctrl-C ends the run early, through the same graceful shutdown.
            _ = super::interrupted() => break,
            // A failed pipeline ends early: no point waiting out the time.
            _ = watch.stopped() => break,
            _ = tick.tick(), if !o.json => {
                let s = watch.stats();
                errln!(
                    "[{:4.1}s] produced {} | restarts {} | dead-lettered {} | buffered {}",
                    start.elapsed().as_secs_f64(),
                    produced.load(Ordering::Relaxed),
                    s.restarts(),
                    s.stages.iter().map(|st| st.dead_lettered).sum::<u64>(),
                    s.buffered(),
                );
            }
        }
    }
    let report = match handle.shutdown(Duration::from_secs(30)).await {
        Ok(r) => r,
        Err(e) => e.into_report(),
    };
    let elapsed = start.elapsed();
    super::dashboard::close(dashboard).await;

    let produced = produced.load(Ordering::Relaxed);
    let book = std::mem::take(&mut *book.lock().unwrap_or_else(PoisonError::into_inner));
    let dead = std::mem::take(&mut *dead.lock().unwrap_or_else(PoisonError::into_inner));
    let lost = (0..produced)
        .filter(|&id| !book.seen.contains(id) && !dead.contains(id))
        .count() as u64;
    let strays = book.seen.count_from(produced) + dead.count_from(produced);
    let counts = Counts {
        produced,
        processed: book.seen.len(),
        dead_lettered: dead.len(),
        duplicates: book.duplicates,
        restarts: report.stages.iter().map(|s| s.restarts).sum(),
        lost,
    };
    let balanced = counts.produced == counts.processed + counts.dead_lettered;
    let ok = lost == 0 && balanced && strays == 0 && report.status == demandflow::Status::Completed;

    if o.json {
        let line = serde_json::to_string(&counts).map_err(|e| e.to_string())?;
        outln!("{line}");
    } else {
        outln!("ran {:.2} s ({})", elapsed.as_secs_f64(), report.status);
        outln!("produced       {:>12}", counts.produced);
        outln!("processed      {:>12}", counts.processed);
        outln!("dead_lettered  {:>12}", counts.dead_lettered);
        outln!("duplicates     {:>12}", counts.duplicates);
        outln!("restarts       {:>12}", counts.restarts);
        outln!("lost           {:>12}", counts.lost);
        outln!(
            "produced {} processed + dead_lettered",
            if balanced { "==" } else { "!=" }
        );
        let (mut received, mut dl, mut abandoned) = (0, 0, 0);
        for s in report.stages.iter().filter(|s| s.name.starts_with("work")) {
            received += s.received;
            dl += s.dead_lettered;
        }
        for s in &report.stages {
            abandoned += s.abandoned;
        }
        outln!(
            "engine ledger: source emitted {}, work received {}, work dead-lettered {}, abandoned {}",
            report.stage("source").map_or(0, |s| s.emitted),
            received,
            dl,
            abandoned
        );
    }
    if strays > 0 {
        errln!("demandflow chaos: {strays} ids seen that were never produced");
    }
    let twice = dead_twice.load(Ordering::Relaxed);
    if twice > 0 {
        errln!("demandflow chaos: {twice} ids dead-lettered more than once");
    }
    if report.status != demandflow::Status::Completed {
        errln!("demandflow chaos: the pipeline ended as: {}", report.status);
    }
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_counts_and_finds() {
        let mut b = Bitmap::default();
        assert!(!b.insert(3));
        assert!(b.insert(3));
        assert!(!b.insert(200));
        assert!(b.contains(200) && b.contains(3) && !b.contains(4));
        assert_eq!(b.len(), 2);
        assert_eq!(b.count_from(4), 1);
        assert_eq!(b.count_from(3), 2);
        assert_eq!(b.count_from(201), 0);
        assert_eq!(b.count_from(10_000), 0);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        use clap::Parser;
        let parse = |list: &[&str]| {
            let argv = ["demandflow", "chaos"].iter().chain(list);
            match super::super::Cli::try_parse_from(argv).map_err(|e| e.to_string())? {
                super::super::Cli {
                    command: super::super::Command::Chaos(a),
                } => Ok(options(a)),
                other => panic!("not chaos: {other:?}"),
            }
        };
        for bad in [
            &["--seconds", "0"][..],
            &["--seconds", "-1"],
            &["--seconds", "nan"],
            &["--crash-rate", "1.5"],
            &["--crash-rate", "x"],
            &["extra"],
        ] {
            let e: String = parse(bad).unwrap_err();
            assert!(e.contains(bad[bad.len() - 1]), "{bad:?}: {e}");
        }
        let o = parse(&["--seconds", "0.5", "--seed", "7", "--json"]).unwrap();
        assert_eq!(
            (o.run_for, o.seed, o.json),
            (Duration::from_millis(500), 7, true)
        );
    }
}
