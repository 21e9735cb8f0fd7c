//! `demandflow bench --shape llm-batch`: N requests through `demandflow
//! batch`'s machinery (reader -> request stage -> writer, to a temp file)
//! against the embedded mock enforcing 6,000 requests/min and 600,000
//! tokens/min, twice: with the client told the real limits, and told twice
//! them (it must learn the real ones from the headers).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use demandflow_stages::batch::ProgressMode;
use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace, RateLimits};
use demandflow_stages::provider::Api;
use demandflow_stages::ratelimit::Limits;
use serde::Serialize;

use super::super::batch_run::{execute, Interrupts, Job, RunError};

/// Requests per run unless `--requests` says otherwise.
pub(super) const DEFAULT_REQUESTS: u64 = 3_000;

/// The mock's limits.
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
    peak_in_flight: u64,
    /// The most requests held at once: on the pipeline's subscriptions plus
    /// queued in the request stage.
    peak_buffered: u64,
}

/// Runs the shape and prints its figures; exit status 1 when a run did
/// not complete every request.
pub(super) fn run(rt: &tokio::runtime::Runtime, requests: u64, json: bool) -> i32 {
    let mut runs = Vec::new();
    let configs = [
        ("told-real-limits", RPM, TPM),
        ("told-twice-the-limits", 2 * RPM, 2 * TPM),
    ];
    for (client, rpm, tpm) in configs {
        eprintln!("bench: llm-batch, {requests} requests, client told rpm {rpm} tpm {tpm} ...");
        match rt.block_on(one_run(client, rpm, tpm, requests)) {
            Ok(r) => runs.push(r),
            Err(e) => return super::super::failure("bench", &format!("llm-batch ({client}): {e}")),
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer(
            &mut out,
            &serde_json::json!({"shape": "llm-batch", "runs": &runs}),
        );
        let _ = out.write_all(b"\n");
    } else {
        let _ = print(&mut out, &runs);
    }
    let _ = out.flush();
    if runs.iter().any(|r| r.completed != r.requests) {
        return super::super::failure("bench", "llm-batch: a run did not complete every request");
    }
    0
}

async fn one_run(
    client: &'static str,
    rpm: u64,
    tpm: u64,
    requests: u64,
) -> Result<LlmBatchRun, String> {
    let generate = GenerateSpec::tokens(OUTPUT_TOKENS)
        .fill_max_tokens()
        .pace(Pace::trickle(PER_TOKEN).first_event_delay(FIRST_TOKEN));
    let server = MockServer::start(
        MockConfig::default()
            .default_behaviour(Behaviour::Generate(generate))
            .rate_limits(RateLimits::per_minute(RPM, TPM))
            // Only counts are needed; no per-request records for 100k runs.
            .max_records(0),
    )
    .await
    .map_err(|e| format!("cannot start the mock: {e}"))?;
    let dir = TempDir::new()?;
    let input = dir.0.join("requests.jsonl");
    write_input(&input, requests).map_err(|e| format!("{}: {e}", input.display()))?;
    let job = Job {
        input,
        output: dir.0.join("results.jsonl"),
        api: Some(Api::OpenAiChat),
        base_url: server.url(),
        key_from: None,
        limits: Limits::none().rpm(rpm as f64).tpm(tpm as f64),
        concurrency: CONCURRENCY,
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
        client_rpm: rpm,
        client_tpm: tpm,
        requests,
        completed,
        wall_secs: outcome.summary.wall_secs,
        measured_from_secs: first.0,
        measured_to_secs: last.0,
        requests_per_sec,
        tokens_per_sec,
        request_limit_fraction: requests_per_sec / (RPM as f64 / 60.0),
        token_limit_fraction: tokens_per_sec / (TPM as f64 / 60.0),
        rate_limited: mock.rate_limited,
        rate_limited_fraction: mock.rate_limited as f64 / requests.max(1) as f64,
        peak_in_flight: outcome.stage.peak_in_flight,
        peak_buffered: outcome.peak_buffered,
    })
}

/// `n` OpenAI Batch chat lines, each asking for [`OUTPUT_TOKENS`].
fn write_input(path: &Path, n: u64) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..n {
        writeln!(
            w,
            r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"bench","max_tokens":{OUTPUT_TOKENS},"messages":[{{"role":"user","content":"Classify item {i}"}}]}}}}"#
        )?;
    }
    w.flush()
}

fn print(out: &mut dyn Write, runs: &[LlmBatchRun]) -> std::io::Result<()> {
    writeln!(
        out,
        "llm-batch: mock at {RPM} requests/min and {TPM} tokens/min, {} ms to first token, \
         {OUTPUT_TOKENS} tokens at {} ms each; concurrency {CONCURRENCY}",
        FIRST_TOKEN.as_millis(),
        PER_TOKEN.as_millis()
    )?;
    writeln!(
        out,
        "{:<22} {:>8} {:>8} {:>14} {:>14} {:>12} {:>10} {:>13}",
        "client",
        "requests",
        "wall s",
        "req/s (limit)",
        "tok/s (limit)",
        "429s",
        "peak in",
        "peak buffered"
    )?;
    for r in runs {
        writeln!(
            out,
            "{:<22} {:>8} {:>8.1} {:>14} {:>14} {:>12} {:>10} {:>13}",
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
            r.peak_buffered,
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
