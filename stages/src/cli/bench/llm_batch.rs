//! `demandflow bench --shape llm-batch`: N requests through `demandflow
//! batch`'s machinery (reader -> request stage -> writer, to a temp file)
//! against the embedded mock enforcing 6,000 requests/min and 600,000
//! tokens/min, twice: with the client told the real limits, and told twice
//! them (it must learn the real ones from the headers). The options of
//! [`LlmBatchArgs`] change the mock's limits and pace and the concurrency,
//! so that a million requests take minutes, not hours.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use demandflow_stages::batch::ProgressMode;
use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace, RateLimits};
use demandflow_stages::provider::Api;
use demandflow_stages::ratelimit::Limits;
use serde::Serialize;

use super::super::args;
use super::super::batch_run::{execute, Interrupts, Job, RunError};

/// Requests per run unless `--requests` says otherwise.
pub(super) const DEFAULT_REQUESTS: u64 = 3_000;

/// The defaults are the issue's shape. The mock's limits:
const RPM: u64 = 6_000;
const TPM: u64 = 600_000;
/// Output tokens per answer (each request's max_tokens; the mock fills it).
const OUTPUT_TOKENS: u64 = 20;
const FIRST_TOKEN: Duration = Duration::from_millis(200);
const PER_TOKEN: Duration = Duration::from_millis(2);
/// Requests in flight at most: 100 requests/s of ~0.25 s each need ~25.
const CONCURRENCY: usize = 64;
/// The rates are measured after this much of the run: the mock's buckets
/// start full (1 s of limit), a burst no sustained rate includes.
const SETTLE: f64 = 3.0;

/// What `peak_buffered` counts, in the JSON and the text report.
const PEAK_BUFFERED_COUNTS: &str =
    "requests read from the input and not yet written to the output, \
counted when a line is parsed into a request and when its result line is written, so every place \
in between is included: the reader's stream, subscriptions and dispatcher buffers, the request \
stage's queue, its attempts in flight and their reports, results on their way to the writer; \
exact (not sampled); not bytes";

/// The options of `--shape llm-batch` (flattened into `bench`'s).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "llm-batch")]
pub(crate) struct LlmBatchArgs {
    /// The mock's requests-per-minute limit [default: 6000]
    #[arg(long = "mock-rpm", value_name = "N", value_parser = args::positive::<u64>)]
    mock_rpm: Option<u64>,
    /// The mock's tokens-per-minute limit [default: 600000]
    #[arg(long = "mock-tpm", value_name = "N", value_parser = args::positive::<u64>)]
    mock_tpm: Option<u64>,
    /// Output tokens per answer (each request's max_tokens; the mock
    /// fills it) [default: 20]
    #[arg(long, value_name = "N", value_parser = args::positive::<u64>)]
    tokens: Option<u64>,
    /// The mock's delay after the headers, before the first event, in ms
    /// [default: 200]
    #[arg(long = "first-event-delay-ms", value_name = "MS", value_parser = args::millis)]
    first_event_delay: Option<Duration>,
    /// The mock's delay between events, in ms [default: 2]
    #[arg(long, value_name = "MS", value_parser = args::millis)]
    pacing: Option<Duration>,
    /// Requests in flight at most (the client's --concurrency)
    /// [default: 64]
    #[arg(long, value_name = "N", value_parser = args::positive::<usize>)]
    concurrency: Option<usize>,
    /// Which client runs: told the real limits, told twice them, or both
    /// (one after the other) [default: both]
    #[arg(long, value_name = "WHICH", value_parser = ["both", "real", "twice"])]
    client: Option<String>,
}

impl LlmBatchArgs {
    /// The first of these options given, for the error when the shape is
    /// not llm-batch.
    pub(super) fn given(&self) -> Option<&'static str> {
        [
            (self.mock_rpm.is_some(), "--mock-rpm"),
            (self.mock_tpm.is_some(), "--mock-tpm"),
            (self.tokens.is_some(), "--tokens"),
            (self.first_event_delay.is_some(), "--first-event-delay-ms"),
            (self.pacing.is_some(), "--pacing"),
            (self.concurrency.is_some(), "--concurrency"),
            (self.client.is_some(), "--client"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The run's settings: the options given, the issue's shape otherwise.
    pub(super) fn settings(&self, requests: Option<u64>) -> Settings {
        let client = self.client.as_deref().unwrap_or("both");
        Settings {
            requests: requests.unwrap_or(DEFAULT_REQUESTS),
            rpm: self.mock_rpm.unwrap_or(RPM),
            tpm: self.mock_tpm.unwrap_or(TPM),
            tokens: self.tokens.unwrap_or(OUTPUT_TOKENS),
            first_event_delay: self.first_event_delay.unwrap_or(FIRST_TOKEN),
            pacing: self.pacing.unwrap_or(PER_TOKEN),
            concurrency: self.concurrency.unwrap_or(CONCURRENCY),
            real: client != "twice",
            twice: client != "real",
        }
    }
}

/// What one invocation runs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settings {
    pub(super) requests: u64,
    /// The mock's limits, per minute.
    pub(super) rpm: u64,
    pub(super) tpm: u64,
    pub(super) tokens: u64,
    pub(super) first_event_delay: Duration,
    pub(super) pacing: Duration,
    pub(super) concurrency: usize,
    /// Run the client told the real limits; the one told twice them.
    pub(super) real: bool,
    pub(super) twice: bool,
}

/// One run's figures; `--json` prints them.
#[derive(Debug, Serialize)]
pub(super) struct LlmBatchRun {
    /// `told-real-limits` or `told-twice-the-limits`.
    client: &'static str,
    client_rpm: u64,
    client_tpm: u64,
    requests: u64,
    completed: u64,
    wall_secs: f64,
    /// Where the rates were measured: seconds from the start of the run.
    measured_from_secs: f64,
    measured_to_secs: f64,
    requests_per_sec: f64,
    tokens_per_sec: f64,
    /// Of the mock's limits (100 requests/s, 10,000 tokens/s).
    request_limit_fraction: f64,
    token_limit_fraction: f64,
    /// Requests answered 429 by the mock, and as a fraction of requests.
    rate_limited: u64,
    rate_limited_fraction: f64,
    concurrency: usize,
    peak_in_flight: u64,
    /// The most requests waiting in the request stage for a slot, budget
    /// or retry time (part of `peak_buffered`).
    peak_queued: u64,
    /// The most requests held at once ([`PEAK_BUFFERED_COUNTS`]).
    peak_buffered: u64,
    /// What `peak_buffered` can reach at most: 2 x concurrency + the
    /// writer's max_demand.
    buffer_bound: u64,
    /// The process's peak resident set so far (`VmHWM`), in bytes, as
    /// information: it includes the mock, the runtime and earlier runs of
    /// the same invocation. `None` where /proc is missing.
    peak_rss_bytes: Option<u64>,
}

/// Runs the shape and prints its figures; exit status 1 when a run did
/// not complete every request.
pub(super) fn run(rt: &tokio::runtime::Runtime, settings: &Settings, json: bool) -> i32 {
    let mut runs = Vec::new();
    let (rpm, tpm) = (settings.rpm, settings.tpm);
    let configs = [
        (settings.real, "told-real-limits", rpm, tpm),
        (settings.twice, "told-twice-the-limits", 2 * rpm, 2 * tpm),
    ];
    for (_, client, client_rpm, client_tpm) in configs.into_iter().filter(|c| c.0) {
        eprintln!(
            "bench: llm-batch, {} requests, client told rpm {client_rpm} tpm {client_tpm} ...",
            settings.requests
        );
        match rt.block_on(one_run(settings, client, client_rpm, client_tpm)) {
            Ok(r) => runs.push(r),
            Err(e) => return super::super::failure("bench", &format!("llm-batch ({client}): {e}")),
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "shape": "llm-batch",
                "mock": {
                    "rpm": rpm,
                    "tpm": tpm,
                    "tokens": settings.tokens,
                    "first_event_delay_ms": settings.first_event_delay.as_millis() as u64,
                    "pacing_ms": settings.pacing.as_millis() as u64,
                },
                "peak_buffered_counts": PEAK_BUFFERED_COUNTS,
                "runs": &runs,
            }),
        );
        let _ = out.write_all(b"\n");
    } else {
        let _ = print(&mut out, settings, &runs);
    }
    let _ = out.flush();
    if runs.iter().any(|r| r.completed != r.requests) {
        return super::super::failure("bench", "llm-batch: a run did not complete every request");
    }
    0
}

async fn one_run(
    settings: &Settings,
    client: &'static str,
    client_rpm: u64,
    client_tpm: u64,
) -> Result<LlmBatchRun, String> {
    let (rpm, tpm, requests) = (settings.rpm, settings.tpm, settings.requests);
    let generate = GenerateSpec::tokens(settings.tokens)
        .fill_max_tokens()
        .pace(Pace::trickle(settings.pacing).first_event_delay(settings.first_event_delay));
    let server = MockServer::start(
        MockConfig::default()
            .default_behaviour(Behaviour::Generate(generate))
            .rate_limits(RateLimits::per_minute(rpm, tpm))
            // Only counts are needed; no per-request records for 1M runs.
            .max_records(0),
    )
    .await
    .map_err(|e| format!("cannot start the mock: {e}"))?;
    let dir = TempDir::new()?;
    let input = dir.0.join("requests.jsonl");
    write_input(&input, requests, settings.tokens)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let job = Job {
        input,
        output: dir.0.join("results.jsonl"),
        api: Some(Api::OpenAiChat),
        base_url: server.url(),
        key_from: None,
        limits: Limits::none().rpm(client_rpm as f64).tpm(client_tpm as f64),
        concurrency: settings.concurrency,
        max_attempts: 10,
        raw: false,
        resume: false,
        grace: Duration::from_secs(10),
        progress: ProgressMode::Off,
        report_lines: false,
        dashboard: None,
    };
    let outcome = execute(job, Interrupts::never())
        .await
        .map_err(|e| match e {
            RunError::Usage(e) | RunError::Failed(e) => e,
        })?;
    let mock = server.stats();
    server.shutdown().await;

    // The sustained rates: from the first sample after SETTLE seconds to
    // the end; a run too short for that is measured whole.
    let samples = &outcome.samples;
    let last = samples.last().copied().unwrap_or_default();
    let first = samples
        .iter()
        .copied()
        .find(|s| s.0 >= SETTLE && last.0 - s.0 >= SETTLE)
        .unwrap_or_default();
    let secs = (last.0 - first.0).max(1e-9);
    let requests_per_sec = (last.1 - first.1) as f64 / secs;
    let tokens_per_sec = (last.2 - first.2) as f64 / secs;
    let completed = outcome
        .summary
        .statuses
        .get("completed")
        .copied()
        .unwrap_or(0);
    Ok(LlmBatchRun {
        client,
        client_rpm,
        client_tpm,
        requests,
        completed,
        wall_secs: outcome.summary.wall_secs,
        measured_from_secs: first.0,
        measured_to_secs: last.0,
        requests_per_sec,
        tokens_per_sec,
        request_limit_fraction: requests_per_sec / (rpm as f64 / 60.0),
        token_limit_fraction: tokens_per_sec / (tpm as f64 / 60.0),
        rate_limited: mock.rate_limited,
        rate_limited_fraction: mock.rate_limited as f64 / requests.max(1) as f64,
        concurrency: settings.concurrency,
        peak_in_flight: outcome.stage.peak_in_flight,
        peak_queued: outcome.stage.peak_queued,
        peak_buffered: outcome.peak_buffered,
        buffer_bound: outcome.buffer_bound,
        peak_rss_bytes: peak_rss(),
    })
}

/// The process's peak resident set (`VmHWM` in /proc/self/status), in
/// bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `n` OpenAI Batch chat lines, each asking for `tokens`.
fn write_input(path: &Path, n: u64, tokens: u64) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        writeln!(
            w,
            r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"bench","max_tokens":{tokens},"messages":[{{"role":"user","content":"Classify item {i}"}}]}}}}"#
        )?;
    }
    w.flush()
}

fn print(out: &mut dyn Write, settings: &Settings, runs: &[LlmBatchRun]) -> std::io::Result<()> {
    writeln!(
        out,
        "llm-batch: mock at {} requests/min and {} tokens/min, {} ms to first token, \
         {} tokens at {} ms each; concurrency {}",
        settings.rpm,
        settings.tpm,
        settings.first_event_delay.as_millis(),
        settings.tokens,
        settings.pacing.as_millis(),
        settings.concurrency,
    )?;
    writeln!(
        out,
        "{:<22} {:>8} {:>8} {:>16} {:>16} {:>12} {:>8} {:>13} {:>9}",
        "client",
        "requests",
        "wall s",
        "req/s (limit)",
        "tok/s (limit)",
        "429s",
        "peak in",
        "peak buffered",
        "peak RSS"
    )?;
    for r in runs {
        writeln!(
            out,
            "{:<22} {:>8} {:>8.1} {:>16} {:>16} {:>12} {:>8} {:>13} {:>9}",
            r.client,
            r.requests,
            r.wall_secs,
            format!(
                "{:.1} ({:.1}%)",
                r.requests_per_sec,
                100.0 * r.request_limit_fraction
            ),
            format!(
                "{:.0} ({:.1}%)",
                r.tokens_per_sec,
                100.0 * r.token_limit_fraction
            ),
            format!(
                "{} ({:.2}%)",
                r.rate_limited,
                100.0 * r.rate_limited_fraction
            ),
            r.peak_in_flight,
            format!("{} / {}", r.peak_buffered, r.buffer_bound),
            r.peak_rss_bytes
                .map_or_else(|| "-".to_string(), |b| format!("{} MiB", b >> 20)),
        )?;
    }
    for r in runs {
        writeln!(
            out,
            "{}: rates over {:.1}..{:.1} s of the run (results written; the first {SETTLE:.0} s hold the mock's 1 s burst){}",
            r.client,
            r.measured_from_secs,
            r.measured_to_secs,
            if r.measured_from_secs == 0.0 { ", the whole run: too short to leave the burst out" } else { "" }
        )?;
    }
    writeln!(
        out,
        "peak buffered / its bound (2 x concurrency + the writer's max_demand): {PEAK_BUFFERED_COUNTS}"
    )?;
    writeln!(
        out,
        "peak RSS: the process's VmHWM so far (mock, runtime and earlier runs included), information only"
    )?;
    writeln!(
        out,
        "targets: >= 95% of the request limit and <= 1% 429s told the real limits; >= 90% told twice them"
    )
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let dir = std::env::temp_dir().join(format!(
            "demandflow-bench-llm-batch-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
