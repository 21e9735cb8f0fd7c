//! `demandflow batch` end to end, against the binary: each input format,
//! bad lines, a rate-limited provider, `kill -9` then `--resume`, and
//! Ctrl-C. The provider is a `MockServer` started in this process on
//! 127.0.0.1:0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace, RateLimits};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_demandflow");

/// Long enough for a loaded 2-core machine; the runs take seconds.
const PATIENCE: Duration = Duration::from_secs(120);

fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "demandflow-batch-cli-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/batch")
        .join(name)
}

async fn mock(generate: GenerateSpec, limits: Option<RateLimits>) -> MockServer {
    let mut config = MockConfig::default().default_behaviour(Behaviour::Generate(generate));
    if let Some(limits) = limits {
        config = config.rate_limits(limits);
    }
    MockServer::start(config).await.unwrap()
}

fn batch(url: &str, input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["batch", "--base-url", url, "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to its end off the runtime (the mock serves meanwhile).
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let child = cmd.spawn().unwrap();
        wait_output(child, PATIENCE)
    })
    .await
    .unwrap()
}

fn wait_output(mut child: Child, patience: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > patience {
            let _ = child.kill();
            panic!("demandflow batch did not end within {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Every line of `path`, parsed; panics on a torn or non-JSON line.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// custom_id -> times it occurs.
fn counts(results: &[Value]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in results {
        if let Some(id) = r["custom_id"].as_str() {
            *m.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    m
}

fn assert_exactly_once(results: &[Value], n: usize) {
    let c = counts(results);
    assert_eq!(results.len(), n, "results: {}", results.len());
    assert_eq!(c.len(), n, "distinct ids");
    assert!(c.values().all(|&k| k == 1), "an id twice");
    for i in 0..n {
        assert_eq!(c.get(&format!("r{i}")), Some(&1), "r{i}");
    }
}

/// `n` Anthropic lines `r0..r{n-1}`.
fn anthropic_input(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("in.jsonl");
    let mut text = String::new();
    for i in 0..n {
        let line = json!({"custom_id": format!("r{i}"), "params": {
            "model": "claude-test", "max_tokens": 8,
            "messages": [{"role": "user", "content": format!("question {i}")}]}});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `--resume` after an interrupted run: it ends with status 0 and the
/// output then holds each of the `n` requests exactly once.
async fn resume_completes(url: &str, input: &Path, out_path: &Path, n: usize) {
    let out = output(batch(url, input, out_path, &["--resume", "--json"])).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&lines(out_path), n);
}

/// Sends SIGINT (Ctrl-C) to the child through kill(1).
fn interrupt(child: &Child) {
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
}

/// Runs `batch` with `args` on a blocking thread, lets `drive` act on the
/// child (wait, send Ctrl-C), then waits for its output; returns it with
/// what `drive` returned.
async fn driven<R: Send + 'static>(
    url: &str,
    input: &Path,
    out_path: &Path,
    args: &'static [&'static str],
    drive: impl FnOnce(&mut Child) -> R + Send + 'static,
) -> (Output, R) {
    let (url, input, out_path) = (url.to_owned(), input.to_owned(), out_path.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut child = batch(&url, &input, &out_path, args).spawn().unwrap();
        let r = drive(&mut child);
        (wait_output(child, PATIENCE), r)
    })
    .await
    .unwrap()
}

fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))["summary"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_chat_fixture_end_to_end_with_bad_lines() {
    let server = mock(GenerateSpec::tokens(4), None).await;
    let dir = temp_dir("chat");
    let out_path = dir.join("out.jsonl");
    let out = output(batch(
        &server.url(),
        &fixture("openai_chat.jsonl"),
        &out_path,
        &["--json"],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Bad lines: exit 1 (failures), each reported with its line number.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for n in [4, 5, 6, 7, 8, 9] {
        assert!(
            stderr.contains(&format!("line {n}: ")),
            "line {n}: {stderr}"
        );
    }
    let results = lines(&out_path);
    assert_eq!(results.len(), 10);
    let completed: Vec<&str> = results
        .iter()
        .filter(|r| r["status"] == "completed")
        .map(|r| r["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(completed.len(), 4, "{results:?}");
    for r in results.iter().filter(|r| r["status"] == "completed") {
        assert_eq!(r["text"].as_str().unwrap().split_whitespace().count(), 4);
        assert_eq!(r["attempts"], 1);
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
    let failed = lines(&dir.join("out.jsonl.failed.jsonl"));
    let mut bad: Vec<u64> = failed.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    bad.sort_unstable();
    assert_eq!(bad, vec![4, 5, 6, 7, 8, 9]);
    assert!(failed.iter().all(|r| r["status"] == "invalid"));
    let s = summary(&out);
    assert_eq!(
        (s["written"].as_u64(), s["total"].as_u64()),
        (Some(10), Some(10))
    );
    assert_eq!(s["statuses"]["invalid"], 6);
    // Only the valid lines reached the provider, each once.
    assert_eq!(server.stats().served, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_fixture_end_to_end() {
    let server = mock(GenerateSpec::tokens(3), None).await;
    let dir = temp_dir("anthropic");
    let out_path = dir.join("out.jsonl");
    let out = output(batch(
        &server.url(),
        &fixture("anthropic.jsonl"),
        &out_path,
        &["--json"],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let results = lines(&out_path);
    let completed = results
        .iter()
        .filter(|r| r["status"] == "completed")
        .count();
    let invalid = results.iter().filter(|r| r["status"] == "invalid").count();
    assert!(completed >= 2, "{results:?}");
    assert_eq!(completed + invalid, results.len());
    assert_eq!(server.stats().served as usize, completed);
    assert_eq!(
        out.status.code(),
        Some(if invalid > 0 { 1 } else { 0 }),
        "{stderr}"
    );
    for r in results.iter().filter(|r| r["status"] == "completed") {
        assert_eq!(r["text"].as_str().unwrap().split_whitespace().count(), 3);
    }
    // The requests went to the Messages API.
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().all(|p| p == "/v1/messages"), "{paths:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_responses_lines_end_to_end_and_raw() {
    let server = mock(GenerateSpec::tokens(2), None).await;
    let dir = temp_dir("responses");
    let input = dir.join("in.jsonl");
    let mut text = String::new();
    for i in 0..5 {
        let line = json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/responses",
            "body": {"model": "gpt-test", "input": format!("question {i}"), "max_output_tokens": 16}});
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let out_path = dir.join("out.jsonl");
    let out = output(batch(&server.url(), &input, &out_path, &["--raw"])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Without --json the summary is text on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("status: completed 5"), "{stdout}");
    let results = lines(&out_path);
    assert_exactly_once(&results, 5);
    assert!(results.iter().all(|r| r["status"] == "completed"
        && r["text"].as_str().unwrap().split_whitespace().count() == 2
        && r["raw"].is_object()));
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().all(|p| p == "/v1/responses"), "{paths:?}");
    assert!(lines(&dir.join("out.jsonl.failed.jsonl")).is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_a_full_output_needs_resume() {
    let dir = temp_dir("usage");
    let input = anthropic_input(&dir, 1);
    let out_path = dir.join("out.jsonl");
    let missing = output(batch(
        "http://127.0.0.1:9",
        &dir.join("nope.jsonl"),
        &out_path,
        &[],
    ))
    .await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.jsonl"));
    std::fs::write(&out_path, "{}\n").unwrap();
    let full = output(batch("http://127.0.0.1:9", &input, &out_path, &[])).await;
    assert_eq!(full.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&full.stderr).contains("--resume"));
    let bad_url = output(batch("not a url", &input, &dir.join("o2.jsonl"), &[])).await;
    assert_eq!(bad_url.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_provider_still_gets_every_request_once() {
    // 600 requests/min = 10/s with a burst of 10: 60 requests need ~5 s,
    // and a client that starts without limits meets 429s until it learns
    // them from the headers.
    let server = mock(
        GenerateSpec::tokens(2),
        Some(RateLimits::per_minute(600, 1_000_000)),
    )
    .await;
    let dir = temp_dir("limited");
    let n = 60;
    let input = anthropic_input(&dir, n);
    let out_path = dir.join("out.jsonl");
    let out = output(batch(
        &server.url(),
        &input,
        &out_path,
        &["--json", "--max-attempts", "20", "--concurrency", "64"],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = lines(&out_path);
    assert_exactly_once(&results, n);
    assert!(results.iter().all(|r| r["status"] == "completed"));
    let stats = server.stats();
    assert_eq!(stats.served as usize, n);
    // 64 sent at once into a burst of 10: the limit was met.
    assert!(
        stats.rate_limited > 0,
        "no 429 at all: the test tests nothing"
    );
    let s = summary(&out);
    assert_eq!(s["rate_limited"].as_u64(), Some(stats.rate_limited));
    let attempts: u64 = results
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts, n as u64 + stats.rate_limited);
    server.shutdown().await;
}

/// Waits until `path` has at least `n` lines (or the child ended).
fn wait_lines(path: &Path, n: usize, child: &mut Child) {
    let start = Instant::now();
    loop {
        let have = std::fs::read(path)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if have >= n || child.try_wait().unwrap().is_some() {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "no {n} results");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Requests paced so that a run takes a few seconds.
fn paced() -> GenerateSpec {
    GenerateSpec::tokens(4).pace(Pace::trickle(Duration::from_millis(15)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_resume_gives_every_result_exactly_once() {
    let server = mock(paced(), None).await;
    let url = server.url();
    let n = 240;
    // Different moments: early, middle, late; a short sleep after the
    // threshold moves the kill off the write boundaries.
    for (round, (kill_after, extra_ms)) in
        [(1, 0), (60, 3), (150, 7), (30, 1)].into_iter().enumerate()
    {
        let dir = temp_dir("kill");
        let input = anthropic_input(&dir, n);
        let out_path = dir.join("out.jsonl");
        let (url2, input2, out2) = (url.clone(), input.clone(), out_path.clone());
        tokio::task::spawn_blocking(move || {
            let mut child = batch(&url2, &input2, &out2, &["--concurrency", "16"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_lines(&out2, kill_after, &mut child);
            std::thread::sleep(Duration::from_millis(extra_ms));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        })
        .await
        .unwrap();
        let before = std::fs::read(&out_path).unwrap_or_default().len();
        let out = output(batch(
            &url,
            &input,
            &out_path,
            &["--resume", "--json", "--concurrency", "16"],
        ))
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "round {round}: {stderr}");
        let results = lines(&out_path);
        assert_exactly_once(&results, n);
        assert!(results.iter().all(|r| r["status"] == "completed"));
        let s = summary(&out);
        assert_eq!(
            s["resumed"].as_u64().unwrap() + s["written"].as_u64().unwrap(),
            n as u64,
            "round {round}, {before} bytes before"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_in_flight_within_grace_and_resume_completes() {
    let server = mock(paced(), None).await;
    let url = server.url();
    let dir = temp_dir("ctrlc");
    let n = 300;
    let input = anthropic_input(&dir, n);
    let out_path = dir.join("out.jsonl");
    let out2 = out_path.clone();
    let (first, sent) = driven(
        &url,
        &input,
        &out_path,
        &["--concurrency", "8", "--grace", "30s", "--json"],
        move |child| {
            wait_lines(&out2, 20, child);
            let sent = Instant::now();
            interrupt(child);
            sent
        },
    )
    .await;
    let waited = sent.elapsed();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    // In flight requests take ~60 ms each: well within the grace period.
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    let partial = lines(&out_path);
    assert!(partial.len() < n, "stopped reading: {}", partial.len());
    assert!(partial.iter().all(|r| r["status"] == "completed"));
    let c = counts(&partial);
    assert!(c.values().all(|&k| k == 1));
    // The summary still comes out, and says what was written.
    assert_eq!(
        summary(&first)["written"].as_u64(),
        Some(partial.len() as u64)
    );

    resume_completes(&url, &input, &out_path, n).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_after_grace_cancels_and_leaves_the_rest_for_resume() {
    // Answers that take ~4 s: the 1 s grace runs out, the requests in
    // flight are cancelled and left out of the output.
    let slow = GenerateSpec::tokens(4).pace(Pace::trickle(Duration::from_secs(1)));
    let server = mock(slow, None).await;
    let url = server.url();
    let dir = temp_dir("grace");
    let n = 6;
    let input = anthropic_input(&dir, n);
    let out_path = dir.join("out.jsonl");
    let (first, ()) = driven(
        &url,
        &input,
        &out_path,
        &["--grace", "1s", "--json"],
        |child| {
            // Let the requests start.
            std::thread::sleep(Duration::from_millis(1500));
            interrupt(child);
        },
    )
    .await;
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    let partial = lines(&out_path);
    assert!(partial.len() < n, "{partial:?}");
    resume_completes(&url, &input, &out_path, n).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_cancels_at_once() {
    // Answers take seconds and the grace is long: only the second Ctrl-C
    // can keep them out of the output.
    let slow = GenerateSpec::tokens(4).pace(Pace::trickle(Duration::from_secs(1)));
    let server = mock(slow, None).await;
    let url = server.url();
    let dir = temp_dir("second");
    let n = 6;
    let input = anthropic_input(&dir, n);
    let out_path = dir.join("out.jsonl");
    let (first, ()) = driven(
        &url,
        &input,
        &out_path,
        &["--grace", "120s", "--json"],
        |child| {
            for _ in 0..2 {
                std::thread::sleep(Duration::from_millis(700));
                interrupt(child);
            }
        },
    )
    .await;
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    assert!(
        lines(&out_path).is_empty(),
        "answers written: the second Ctrl-C waited"
    );
    resume_completes(&url, &input, &out_path, n).await;
    server.shutdown().await;
}
