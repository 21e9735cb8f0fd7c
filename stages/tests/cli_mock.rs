//! `demandflow mock` as a process: it prints its URL on the first line,
//! serves streaming requests until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use demandflow_stages::provider::{Api, ProviderDecoder, ProviderEvent, Status};

/// Kills the server when the test ends, pass or fail.
struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_prints_its_url_and_serves_a_stream() {
    let (_child, url) = start_mock(&["--addr", "127.0.0.1:0", "--tokens", "7"]).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({
                "model": "gpt-4.1-mini",
                "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]
            })
            .to_string(),
        )
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.bytes().await.unwrap();
    let mut decoder = ProviderDecoder::new(Api::OpenAiChat);
    let mut events = Vec::new();
    decoder.feed(&body, &mut events).unwrap();
    decoder.finish(&mut events).unwrap();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text.split_whitespace().count(), 7, "{text:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProviderEvent::Usage(u) if u.output_tokens == 7)),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&ProviderEvent::Done {
            status: Status::Completed,
            stop_reason: Some("stop".into())
        })
    );
}

#[test]
fn bad_flags_exit_2_with_the_value_and_the_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_demandflow"))
        .args(["mock", "--behaviour", "dance"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: invalid --behaviour 'dance'"),
        "{err}"
    );
    assert!(err.contains("Usage: demandflow mock"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Starts `demandflow mock ARGS` and returns it with the URL it printed.
async fn start_mock(args: &[&str]) -> (Killer, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_demandflow"))
        .arg("mock")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demandflow starts");
    let mut child = Killer(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let url = tokio::time::timeout(Duration::from_secs(60), line)
        .await
        .expect("the url line within 60 s")
        .unwrap()
        .unwrap();
    (child, url.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_enforces_rpm_with_the_apis_headers_and_a_429() {
    // Two requests a minute with a one-minute burst: the third within the
    // minute is refused, whatever the machine's load.
    let (_child, url) = start_mock(&[
        "--rpm",
        "2",
        "--tpm",
        "1000000",
        "--burst-ms",
        "60000",
        "--tokens",
        "3",
    ])
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = client
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 16,
                    "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]
                })
                .to_string(),
            )
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        assert_eq!(
            h.get("anthropic-ratelimit-requests-limit")
                .map(|v| v.to_str().unwrap()),
            Some("2"),
            "{h:?}"
        );
        assert!(
            h.contains_key("anthropic-ratelimit-tokens-remaining"),
            "{h:?}"
        );
        let status = resp.status().as_u16();
        if status == 429 {
            let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&wait), "retry-after {wait}");
        }
        let _ = resp.bytes().await;
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[test]
fn rate_limit_flags_come_in_pairs() {
    let out = Command::new(env!("CARGO_BIN_EXE_demandflow"))
        .args(["mock", "--rpm", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tpm"), "{err}");
}
