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
