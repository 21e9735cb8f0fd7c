//! Progress of a batch: counters the run updates, a display that reads
//! them (a bar on a terminal, plain lines otherwise), and the final
//! summary.
//!
//! The counters are independent relaxed atomics: a snapshot may mix values
//! from a few microseconds apart, which a display does not mind, and no
//! decision is taken on them.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::output::{BatchResult, ResultStatus};

const STATUSES: usize = ResultStatus::ALL.len();

/// `total` before it is known.
const UNKNOWN: u64 = u64::MAX;

/// The counters of a batch run, shared (`Arc`) between the stages that
/// update them and the progress display.
#[derive(Debug)]
pub struct Counters {
    total: AtomicU64,
    resumed: AtomicU64,
    written: AtomicU64,
    by_status: [AtomicU64; STATUSES],
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    rate_limited: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            total: AtomicU64::new(UNKNOWN),
            resumed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }
}

impl Counters {
    /// Counters at zero, the total unknown.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Sets the number of result lines the run will end with (resumed ones
    /// included): [`Prescan::lines`](super::Prescan::lines).
    pub fn set_total(&self, total: u64) {
        self.total.store(total.min(UNKNOWN - 1), Relaxed);
    }

    /// Sets the number of results already in the output
    /// ([`ResumeState::records`](super::ResumeState::records)).
    pub fn set_resumed(&self, resumed: u64) {
        self.resumed.store(resumed, Relaxed);
    }

    /// Counts one written result: done, its status, its tokens.
    /// [`BatchWriter`](super::BatchWriter) calls it when given the
    /// counters.
    pub fn record(&self, result: &BatchResult) {
        self.written.fetch_add(1, Relaxed);
        self.by_status[result.status.index()].fetch_add(1, Relaxed);
        if let Some(usage) = result.usage {
            self.input_tokens.fetch_add(usage.input_tokens, Relaxed);
            self.output_tokens.fetch_add(usage.output_tokens, Relaxed);
        }
    }

    /// Counts `n` responses with status 429 (or 529) seen by the request
    /// stage.
    pub fn add_rate_limited(&self, n: u64) {
        self.rate_limited.fetch_add(n, Relaxed);
    }

    /// The values now.
    pub fn snapshot(&self) -> Snapshot {
        let total = self.total.load(Relaxed);
        Snapshot {
            total: (total != UNKNOWN).then_some(total),
            resumed: self.resumed.load(Relaxed),
            written: self.written.load(Relaxed),
            by_status: std::array::from_fn(|i| self.by_status[i].load(Relaxed)),
            input_tokens: self.input_tokens.load(Relaxed),
            output_tokens: self.output_tokens.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
        }
    }
}

/// The [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Result lines the run will end with, once known.
    pub total: Option<u64>,
    /// Results already in the output when the run started.
    pub resumed: u64,
    /// Results written by this run.
    pub written: u64,
    /// Of those, per status, in the order of [`ResultStatus::ALL`].
    pub by_status: [u64; STATUSES],
    /// Prompt tokens reported by this run's results.
    pub input_tokens: u64,
    /// Generated tokens reported by this run's results.
    pub output_tokens: u64,
    /// 429/529 responses seen.
    pub rate_limited: u64,
}

/// Rates of a [`Snapshot`] over the time the run has taken.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Rates {
    /// This run's results per second.
    pub requests_per_sec: f64,
    /// This run's tokens (in + out) per second.
    pub tokens_per_sec: f64,
    /// Time left at the average rate so far; `None` while the total or the
    /// rate is unknown.
    pub eta: Option<Duration>,
}

impl Snapshot {
    /// Results in the output: resumed and written.
    pub fn done(&self) -> u64 {
        self.resumed + self.written
    }

    /// Tokens in and out.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// The count for `status` (this run's).
    pub fn count(&self, status: ResultStatus) -> u64 {
        self.by_status[status.index()]
    }

    /// The rates after `elapsed` (the run's time so far, passed in).
    pub fn rates(&self, elapsed: Duration) -> Rates {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Rates::default();
        }
        let requests_per_sec = self.written as f64 / secs;
        let eta = match self.total {
            Some(total) if requests_per_sec > 0.0 => {
                let left = total.saturating_sub(self.done()) as f64;
                Duration::try_from_secs_f64(left / requests_per_sec).ok()
            }
            _ => None,
        };
        Rates {
            requests_per_sec,
            tokens_per_sec: self.tokens() as f64 / secs,
            eta,
        }
    }
}

/// One progress line: `done/total, requests/s, tokens/s, 429s, ETA`, the
/// text of the plain lines and of the bar's message.
///
/// ```
/// use std::time::Duration;
/// use demandflow_stages::batch::{progress_line, Counters};
///
/// let c = Counters::new();
/// c.set_total(100);
/// c.set_resumed(40);
/// assert_eq!(
///     progress_line(&c.snapshot(), Duration::from_secs(2)),
///     "40/100 done, 0.0 req/s, 0 tok/s, 0 429s, ETA ?"
/// );
/// ```
pub fn progress_line(snapshot: &Snapshot, elapsed: Duration) -> String {
    let rates = snapshot.rates(elapsed);
    let total = snapshot
        .total
        .map_or_else(|| "?".to_string(), |t| t.to_string());
    let eta = rates.eta.map_or_else(|| "?".to_string(), format_duration);
    format!(
        "{}/{total} done, {:.1} req/s, {:.0} tok/s, {} 429s, ETA {eta}",
        snapshot.done(),
        rates.requests_per_sec,
        rates.tokens_per_sec,
        snapshot.rate_limited,
    )
}

/// `1h02m03s`, `4m05s`, `6s`.
fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressMode {
    /// An indicatif bar on stderr, redrawn a few times a second.
    Bar,
    /// A [`progress_line`] every `every`, for logs and pipes.
    Lines {
        /// The interval between lines.
        every: Duration,
    },
    /// Nothing.
    Off,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, a line every 10 s otherwise.
    pub fn detect() -> ProgressMode {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines {
                every: Duration::from_secs(10),
            }
        }
    }
}

/// The running display; [`ProgressTask::finish`] stops it.
#[derive(Debug)]
#[must_use = "the display runs until finish() is called"]
pub struct ProgressTask {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    started: tokio::time::Instant,
}

impl ProgressTask {
    /// Shows the progress of `counters` in `mode` on stderr until
    /// [`ProgressTask::finish`]. Must be called within a tokio runtime.
    pub fn spawn(counters: Arc<Counters>, mode: ProgressMode) -> ProgressTask {
        ProgressTask::spawn_to(counters, mode, std::io::stderr())
    }

    /// [`ProgressTask::spawn`] with plain lines written to `out` (the bar
    /// always draws on stderr).
    pub fn spawn_to(
        counters: Arc<Counters>,
        mode: ProgressMode,
        mut out: impl Write + Send + 'static,
    ) -> ProgressTask {
        let stop = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            match mode {
                ProgressMode::Off => token.cancelled().await,
                ProgressMode::Lines { every } => {
                    let mut tick = tokio::time::interval_at(started + every, every);
                    loop {
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        let line = progress_line(&counters.snapshot(), started.elapsed());
                        // A closed stderr must not stop the batch.
                        let _ = writeln!(out, "demandflow batch: {line}");
                    }
                }
                ProgressMode::Bar => {
                    let bar = indicatif::ProgressBar::new_spinner();
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    let every = Duration::from_millis(200);
                    let mut tick = tokio::time::interval(every);
                    loop {
                        let s = counters.snapshot();
                        if let Some(total) = s.total {
                            bar.set_length(total);
                        }
                        bar.set_position(s.done());
                        bar.set_message(progress_line(&s, started.elapsed()));
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                    }
                    bar.finish_and_clear();
                }
            }
        });
        ProgressTask {
            stop,
            task,
            started,
        }
    }

    /// Stops the display and returns the time since it started (the run's
    /// wall time for [`Summary::new`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the display is already told to stop; it ends on its
    /// own.
    pub async fn finish(self) -> Duration {
        self.stop.cancel();
        let _ = self.task.await;
        self.started.elapsed()
    }
}

/// The end-of-run summary: counts per status, tokens, 429s, wall time and
/// rates. `Display` gives the text; [`Summary::to_json_line`] the `--json`
/// line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Result lines expected, if counted.
    pub total: Option<u64>,
    /// Results already in the output at the start.
    pub resumed: u64,
    /// Results written by this run.
    pub written: u64,
    /// This run's results per status, by status name (every status, zeros
    /// included).
    pub statuses: std::collections::BTreeMap<&'static str, u64>,
    /// Prompt tokens of this run.
    pub input_tokens: u64,
    /// Generated tokens of this run.
    pub output_tokens: u64,
    /// 429/529 responses seen.
    pub rate_limited: u64,
    /// Wall time in seconds.
    pub wall_secs: f64,
    /// This run's results per second.
    pub requests_per_sec: f64,
    /// This run's tokens per second.
    pub tokens_per_sec: f64,
}

impl Summary {
    /// The summary of `snapshot` after `elapsed`.
    pub fn new(snapshot: &Snapshot, elapsed: Duration) -> Summary {
        let rates = snapshot.rates(elapsed);
        Summary {
            total: snapshot.total,
            resumed: snapshot.resumed,
            written: snapshot.written,
            statuses: ResultStatus::ALL
                .iter()
                .map(|s| (s.as_str(), snapshot.count(*s)))
                .collect(),
            input_tokens: snapshot.input_tokens,
            output_tokens: snapshot.output_tokens,
            rate_limited: snapshot.rate_limited,
            wall_secs: elapsed.as_secs_f64(),
            requests_per_sec: rates.requests_per_sec,
            tokens_per_sec: rates.tokens_per_sec,
        }
    }

    /// `{"summary":{...}}`, as `demandflow stream` and `replay` print
    /// theirs.
    pub fn to_json_line(&self) -> String {
        serde_json::json!({ "summary": self }).to_string()
    }

    /// Results with a failure status (they are in the failures file).
    pub fn failures(&self) -> u64 {
        ResultStatus::ALL
            .iter()
            .filter(|s| s.is_failure())
            .map(|s| self.statuses.get(s.as_str()).copied().unwrap_or(0))
            .sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "demandflow batch: {} results written in {:.1} s ({} already in the output)",
            self.written, self.wall_secs, self.resumed
        )?;
        let counts: Vec<String> = ResultStatus::ALL
            .iter()
            .filter_map(|s| {
                let n = self.statuses.get(s.as_str()).copied().unwrap_or(0);
                (n > 0).then(|| format!("{} {n}", s.as_str()))
            })
            .collect();
        let counts = if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        };
        writeln!(f, "  status: {counts}")?;
        write!(
            f,
            "  tokens: {} in, {} out; {:.1} req/s, {:.0} tok/s; 429s: {}",
            self.input_tokens,
            self.output_tokens,
            self.requests_per_sec,
            self.tokens_per_sec,
            self.rate_limited
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ResultError;
    use crate::provider::Usage;
    use proptest::prelude::*;

    fn result(status: ResultStatus, tokens: u64) -> BatchResult {
        let mut r = BatchResult::failed("x", 1, ResultError::new("k", "m")).with_status(status);
        r.usage = Some(Usage {
            input_tokens: tokens,
            output_tokens: tokens,
        });
        r
    }

    #[test]
    fn summary_counts_statuses_tokens_and_rates() {
        let c = Counters::new();
        c.set_total(10);
        c.set_resumed(2);
        c.record(&result(ResultStatus::Completed, 5));
        c.record(&result(ResultStatus::Completed, 5));
        c.record(&result(ResultStatus::Invalid, 0));
        c.add_rate_limited(4);
        let s = Summary::new(&c.snapshot(), Duration::from_secs(2));
        assert_eq!(s.statuses["completed"], 2);
        assert_eq!(s.statuses["invalid"], 1);
        assert_eq!(s.statuses["failed"], 0);
        assert_eq!(s.failures(), 1);
        assert_eq!((s.written, s.resumed, s.rate_limited), (3, 2, 4));
        assert_eq!((s.requests_per_sec, s.tokens_per_sec), (1.5, 10.0));
        let text = s.to_string();
        assert!(text.contains("status: completed 2, invalid 1"), "{text}");
        assert!(text.contains("429s: 4"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&s.to_json_line()).unwrap();
        assert_eq!(json["summary"]["statuses"]["completed"], 2);
        assert_eq!(json["summary"]["total"], 10);
        assert_eq!(
            progress_line(&c.snapshot(), Duration::from_secs(2)),
            "5/10 done, 1.5 req/s, 10 tok/s, 4 429s, ETA 3s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn plain_lines_come_at_the_interval_and_stop_at_finish() {
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let c = Arc::new(Counters::new());
        let every = Duration::from_secs(10);
        let task = ProgressTask::spawn_to(c.clone(), ProgressMode::Lines { every }, out.clone());
        c.record(&result(ResultStatus::Completed, 1));
        tokio::time::sleep(Duration::from_secs(25)).await;
        let elapsed = task.finish().await;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("demandflow batch: 1/? done, 0.1 req/s"),
            "{text}"
        );
        assert_eq!(elapsed, Duration::from_secs(25));
    }

    proptest! {
        /// The ETA is the time the rest takes at the rate so far, never
        /// negative, and zero once everything is done.
        #[test]
        fn eta_is_the_rest_at_the_rate_so_far(
            total in 0u64..10_000, resumed in 0u64..10_000, written in 1u64..10_000, ms in 1u64..10_000_000,
        ) {
            let s = Snapshot { total: Some(total), resumed, written, ..Snapshot::default() };
            let elapsed = Duration::from_millis(ms);
            let rates = s.rates(elapsed);
            let eta = rates.eta.unwrap().as_secs_f64();
            let left = total.saturating_sub(resumed + written) as f64;
            prop_assert!((eta * rates.requests_per_sec - left).abs() <= 1e-6 * left.max(1.0));
            if resumed + written >= total {
                prop_assert_eq!(eta, 0.0);
            }
        }
    }
}
