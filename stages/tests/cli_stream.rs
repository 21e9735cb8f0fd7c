//! `demandflow stream` against the embedded mock provider, from outside:
//! the binary is run as a process, the mock runs in the test.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_demandflow");

/// Runs the binary off the runtime's threads (the mock keeps serving).
async fn run(args: Vec<String>, env: Vec<(&'static str, &'static str)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.arg("stream")
            .args(&args)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("the binary runs")
    })
    .await
    .expect("the runner thread")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("some output");
    let v: Value = serde_json::from_str(last).expect("the last line is JSON");
    v["summary"].clone()
}

async fn mock(behaviour: Behaviour) -> MockServer {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    server.set_default(behaviour);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_stream_prints_the_text_then_the_summary() {
    let server = mock(Behaviour::Generate(GenerateSpec::tokens(20))).await;
    let url = server.url();
    let out = run(
        args(&[
            "--api",
            "anthropic-messages",
            "--base-url",
            &url,
            "--consumer-delay-ms",
            "1",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["status"], "completed");
    let text = s["text"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(s["usage"]["output_tokens"], 20);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The text came first, as it arrived, then the summary line.
    assert!(stdout.starts_with(text.trim_start()), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    // The placeholder key was sent; the standard path was appended.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_one_line_per_event_and_no_second_v1() {
    let server = mock(Behaviour::Generate(GenerateSpec::tokens(5))).await;
    let url = format!("{}/v1", server.url());
    let out = run(
        args(&["--api", "openai-chat", "--base-url", &url, "--json"]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let (last, events) = lines.split_last().unwrap();
    assert_eq!(
        last["summary"]["events"].as_u64().unwrap() as usize,
        events.len()
    );
    assert_eq!(events.last().unwrap()["type"], "done");
    assert!(events.iter().any(|e| e["type"] == "text_delta"));
    assert_eq!(server.requests()[0].path, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_answer_is_incomplete_and_exits_0() {
    let server = mock(Behaviour::Generate(GenerateSpec::tokens(50))).await;
    let url = server.url();
    let out = run(
        args(&[
            "--api",
            "openai-responses",
            "--base-url",
            &url,
            "--max-tokens",
            "5",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(summary(&out)["status"], "incomplete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_401_fails_with_exit_1_and_never_shows_the_key() {
    let server = MockServer::start(MockConfig::default().api_key("the-right-key"))
        .await
        .unwrap();
    let url = server.url();
    let out = run(
        args(&["--api", "openai-chat", "--base-url", &url]),
        vec![("OPENAI_API_KEY", "sk-wrong-but-secret")],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(summary(&out)["status"], "failed");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("sk-wrong-but-secret"), "{all}");
    assert!(all.contains("401") || all.contains("API key"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_the_stream_as_deadline_exceeded() {
    let slow = GenerateSpec::tokens(10_000).pace(Pace::trickle(Duration::from_millis(20)));
    let server = mock(Behaviour::Generate(slow)).await;
    let url = server.url();
    let started = Instant::now();
    let out = run(
        args(&[
            "--api",
            "anthropic-messages",
            "--base-url",
            &url,
            "--deadline-ms",
            "300",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(summary(&out)["status"], "deadline_exceeded");
    // 10 000 tokens at 20 ms would take minutes; generous bound for CI.
    assert!(started.elapsed() < Duration::from_secs(30));
    // The connection was closed, as the server saw it.
    assert!(server
        .wait_connection_closed(0, Duration::from_secs(10))
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_echo_what_was_typed_and_show_usage() {
    for (bad, echo) in [
        (&["--base-url", "http://127.0.0.1:1"][..], "--api <API>"),
        (&["--api", "openai-chat"], "--base-url <URL>"),
        (
            &["--api", "cohere", "--base-url", "http://127.0.0.1:1"],
            "'cohere'",
        ),
        (
            &["--api", "openai-chat", "--base-url", "not a url"],
            "invalid --base-url 'not a url': ",
        ),
        (
            &["--api", "openai-chat", "--base-url", "not-a-url"],
            "invalid --base-url 'not-a-url': ",
        ),
        (
            &[
                "--api",
                "openai-chat",
                "--base-url",
                "http://127.0.0.1:1",
                "--deadline-ms",
                "soon",
            ],
            "'soon'",
        ),
    ] {
        let out = run(args(bad), vec![]).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{bad:?}: {stderr}");
        assert!(stderr.contains(echo), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("Usage: demandflow stream"),
            "{bad:?}: {stderr}"
        );
        assert!(!stderr.contains("<unparsable>"), "{bad:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_pushes_back_to_the_server() {
    // 100 000 tokens: over 10 MB of SSE (each Anthropic text delta event is
    // more than 100 bytes), sent as fast as the client reads.
    let server = MockServer::start(
        MockConfig::default()
            .send_buffer_size(64 * 1024)
            .default_behaviour(Behaviour::Generate(GenerateSpec::tokens(100_000))),
    )
    .await
    .unwrap();
    let url = server.url();
    let runner = tokio::spawn(run(
        args(&[
            "--api",
            "anthropic-messages",
            "--base-url",
            &url,
            "--max-tokens",
            "200000",
            "--consumer-delay-ms",
            "50",
            "--deadline-ms",
            "3000",
            "--json",
        ]),
        vec![],
    ));
    // While the consumer dawdles, the server's writes stall far short of
    // the answer's size.
    let written = server
        .wait_writes_quiet(0, Duration::from_millis(300), Duration::from_secs(20))
        .await
        .expect("the server's writes stall");
    assert!(written < 3_000_000, "server wrote {written} bytes");
    let out = runner.await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(summary(&out)["status"], "deadline_exceeded");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_closes_the_connection_and_still_prints_the_summary() {
    let slow = GenerateSpec::tokens(10_000).pace(Pace::trickle(Duration::from_millis(20)));
    let server = mock(Behaviour::Generate(slow)).await;
    let url = server.url();
    let child = Command::new(BIN)
        .args(["stream", "--api", "openai-chat", "--base-url", &url])
        .env_remove("OPENAI_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    assert!(
        server.wait_for_requests(1, Duration::from_secs(20)).await,
        "the request arrives"
    );
    // Let a few tokens through, then interrupt as a terminal would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let s = summary(&out);
    assert_eq!(s["status"], "cancelled");
    assert!(!s["text"].as_str().unwrap().is_empty());
    assert!(server
        .wait_connection_closed(0, Duration::from_secs(10))
        .await
        .is_some());
}
