//! `--dashboard ADDR` on `demo` and `chaos`: the command says where the page
//! is, on stderr, and the page serves that command's pipeline.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the command when the test ends, pass or fail.
struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `demandflow ARGS --dashboard 127.0.0.1:0` and returns the page's
/// snapshot of the pipeline while it runs.
async fn snapshot_of(args: &[&str]) -> serde_json::Value {
    let child = Command::new(env!("CARGO_BIN_EXE_demandflow"))
        .args(args)
        .env_remove("ANTHROPIC_API_KEY")
        .args(["--dashboard", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demandflow starts");
    let mut child = Killer(child);
    let stderr = child.0.stderr.take().expect("stderr");
    let url = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.ok()?;
            if let Some(url) = line.strip_prefix("demandflow: dashboard on ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    });
    let url = tokio::time::timeout(Duration::from_secs(120), url)
        .await
        .expect("the dashboard line within 120 s")
        .unwrap()
        .expect("a `dashboard on URL` line on stderr");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = client
        .get(format!("{url}snapshot.json"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).expect("the snapshot is JSON")
}

fn stage_names(snapshot: &serde_json::Value) -> Vec<String> {
    snapshot["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_its_pipeline_on_the_dashboard() {
    let snapshot = snapshot_of(&["demo", "--tokens", "2000"]).await;
    assert_eq!(snapshot["title"], "demandflow demo");
    assert_eq!(stage_names(&snapshot), ["provider", "reflow", "printer"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_serves_its_pipeline_on_the_dashboard() {
    let snapshot = snapshot_of(&["chaos", "--seconds", "30"]).await;
    assert_eq!(snapshot["title"], "demandflow chaos");
    let names = stage_names(&snapshot);
    assert!(names.iter().any(|n| n == "ledger"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_serves_its_pipeline_on_the_dashboard() {
    use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace};
    // Slow answers, so the run is still going when the page is read.
    let server = MockServer::start(MockConfig::default().default_behaviour(Behaviour::Generate(
        GenerateSpec::tokens(8).pace(Pace::trickle(Duration::from_millis(50))),
    )))
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("df-batch-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let lines: String = (0..400)
        .map(|i| {
            serde_json::json!({"custom_id": format!("r{i}"), "params": {
                "model": "claude-test", "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}]}})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let output = dir.join("out.jsonl");
    let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
    let url = server.url();
    let snapshot = snapshot_of(&[
        "batch",
        "--api",
        "anthropic-messages",
        "--base-url",
        &url,
        "--input",
        input,
        "--output",
        output,
        "--concurrency",
        "4",
    ])
    .await;
    assert_eq!(snapshot["title"], "demandflow batch");
    assert_eq!(stage_names(&snapshot), ["read", "llm", "write"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_dashboard_address_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_demandflow"))
        .args(["demo", "--dashboard", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-an-address"), "{err}");
}
