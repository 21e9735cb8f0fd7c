//! Where the binary's output goes, against the built binary: a closed
//! stdout never panics (exit 101), the demo's status line never lands in
//! the answer text, and `stream` says what it waits for.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace};

const BIN: &str = env!("CARGO_BIN_EXE_demandflow");

/// Runs `args` with stdout (and, with `close_stderr`, stderr) a pipe whose
/// reading end is closed at once, as `demandflow ... | head -0` would;
/// returns the exit status and what reached stderr.
fn with_closed_stdout(args: &[&str], close_stderr: bool) -> (ExitStatus, String) {
    let mut child: Child = Command::new(BIN)
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let mut err = String::new();
    if close_stderr {
        drop(child.stderr.take());
    } else if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (child.wait().expect("the binary ends"), err)
}

#[track_caller]
fn quiet_exit_0(args: &[&str]) {
    for close_stderr in [false, true] {
        let (status, err) = with_closed_stdout(args, close_stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            status.code(),
            Some(0),
            "{args:?} (stderr closed: {close_stderr}): {err}"
        );
    }
}

#[test]
fn a_closed_stdout_ends_each_printing_command_quietly() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sse/10_openai_chat_long_deltas.sse"
    );
    quiet_exit_0(&[
        "demo",
        "--tokens",
        "2000",
        "--delay-ms",
        "0",
        "--pace-ms",
        "0",
    ]);
    quiet_exit_0(&["replay", "--api", "openai-chat", "--chunk", "1", fixture]);
    quiet_exit_0(&[
        "bench", "--shape", "linear", "--events", "1000", "--reps", "1",
    ]);
    quiet_exit_0(&["chaos", "--seconds", "0.3"]);
    quiet_exit_0(&["chaos", "--seconds", "0.3", "--json"]);
    quiet_exit_0(&["--help"]);
    quiet_exit_0(&["help", "stream"]);
    quiet_exit_0(&["--version"]);
    quiet_exit_0(&["completions", "zsh"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_stream_quietly() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    server.set_default(Behaviour::Generate(
        GenerateSpec::tokens(5_000).pace(Pace::trickle(Duration::from_millis(1))),
    ));
    let url = server.url();
    let (status, err) = tokio::task::spawn_blocking(move || {
        with_closed_stdout(
            &["stream", "--api", "openai-chat", "--base-url", &url],
            false,
        )
    })
    .await
    .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn the_mock_without_a_stdout_for_its_url_fails_with_a_message() {
    let (status, err) = with_closed_stdout(&["mock"], false);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot print the URL"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_demo_status_line_never_lands_inside_the_answer() {
    // stdout and stderr into one file, as `demo > log 2>&1`: the run lasts
    // a few seconds, long enough for periodic status lines.
    let path = std::env::temp_dir().join(format!("demandflow-demo-{}.log", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let status = Command::new(BIN)
        .args([
            "demo",
            "--tokens",
            "150",
            "--delay-ms",
            "15",
            "--pace-ms",
            "0",
        ])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .expect("the binary runs");
    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(status.code(), Some(0), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let status_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("pending demand"))
        .collect();
    let last_text = (0..lines.len())
        .rev()
        .find(|&i| lines[i].contains("lorem") || lines[i].contains("dolor"))
        .unwrap();
    // One status line, whole, on its own line, after all of the text.
    assert_eq!(status_lines.len(), 1, "{log}");
    let at = status_lines[0];
    assert!(at > last_text, "{log}");
    assert!(lines[at].starts_with('['), "{log}");
    assert!(lines[at].ends_with("words reflowed"), "{log}");
    assert!(!log.contains('\x1b'), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_says_what_it_waits_for() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let shown = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "stream",
                "--api",
                "openai-chat",
                "--base-url",
                &url,
                "--first-event-timeout-ms",
                "6000",
                "--retries",
                "0",
            ])
            .env_remove("OPENAI_API_KEY")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    silent.abort();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("POST {shown}/v1/chat/completions")),
        "{err}"
    );
    assert!(first.contains("waiting for the first event"), "{err}");
    assert!(
        first.contains("first event 6 s") && first.contains("0 retries"),
        "{err}"
    );
    assert!(err.contains("waiting for the first event: 5 s"), "{err}");
    assert!(err.contains("first_event timeout after 6s"), "{err}");
}
