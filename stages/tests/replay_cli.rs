//! The `demandflow replay` contract (DESIGN.md §9): one JSON line per
//! normalised event, then one summary line; an unreadable file exits 2, a
//! transcript that does not decode as the named API exits 1 with a warning
//! (the command line's own usage errors are in `cli_errors.rs`).

mod sse_support;

use std::num::NonZeroUsize;
use std::path::Path;

use demandflow_stages::provider::Api;
use demandflow_stages::replay;
use serde_json::Value;
use sse_support::{fixtures, sha256_hex};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `demandflow replay --api API [--chunk N] FILE`, in process.
fn run(args: &[&str]) -> Run {
    let (mut api, mut chunk, mut file) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--api" => api = it.next().map(|n| n.parse::<Api>().unwrap()),
            "--chunk" => chunk = it.next().map(|n| n.parse::<NonZeroUsize>().unwrap()),
            path => file = Some(path),
        }
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = replay::run_file(
        api.unwrap(),
        chunk,
        Path::new(file.unwrap()),
        &mut stdout,
        &mut stderr,
    );
    Run {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[test]
fn replay_prints_events_then_a_summary_matching_each_fixture() {
    for fixture in fixtures() {
        let path = fixture.sse.to_str().unwrap();
        let api = fixture.expected["api"].as_str().unwrap();
        let out = run(&["--api", api, path]);
        assert_eq!(out.code, 0, "{}: {}", fixture.name, out.stderr);
        if fixture.expected["status"] == "truncated" {
            // A cut recording is replayed, with a note.
            assert!(out.stderr.contains("note:"), "{}", fixture.name);
            assert_eq!(out.stderr.lines().count(), 1, "{}", fixture.name);
        } else {
            assert_eq!(out.stderr, "", "{}", fixture.name);
        }
        let lines = lines(&out.stdout);
        let (summary, events) = lines.split_last().unwrap();
        let summary = &summary["summary"];
        assert_eq!(summary["events"].as_u64().unwrap() as usize, events.len());
        assert_eq!(
            summary["status"], fixture.expected["status"],
            "{}",
            fixture.name
        );
        assert_eq!(
            summary["usage"], fixture.expected["usage"],
            "{}",
            fixture.name
        );
        let text = summary["text"].as_str().unwrap();
        match fixture.expected["text"].as_str() {
            Some(expected) => assert_eq!(text, expected),
            None => assert_eq!(
                sha256_hex(text),
                fixture.expected["text_sha256"].as_str().unwrap()
            ),
        }
        // Every event line is a tagged event; the last one is the only `done`.
        assert!(events.iter().all(|e| e["type"].is_string()));
        let dones: Vec<usize> = (0..events.len())
            .filter(|&i| events[i]["type"] == "done")
            .collect();
        assert_eq!(dones, [events.len() - 1], "{}", fixture.name);
        assert_eq!(
            events.last().unwrap()["stop_reason"],
            fixture.expected["stop_reason"]
        );
    }
}

#[test]
fn replay_output_is_the_same_for_every_chunk_size() {
    for fixture in fixtures() {
        let path = fixture.sse.to_str().unwrap();
        let api = fixture.expected["api"].as_str().unwrap();
        let whole = run(&["--api", api, path]).stdout;
        for chunk in ["1", "7", "4096"] {
            let out = run(&["--api", api, "--chunk", chunk, path]);
            assert_eq!(out.stdout, whole, "{} --chunk {chunk}", fixture.name);
        }
    }
}

#[test]
fn replay_summary_line_has_the_documented_shape() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("02_"))
        .unwrap();
    let out = run(&["--api", "openai-chat", fixture.sse.to_str().unwrap()]);
    let last = out.stdout.lines().last().unwrap();
    assert_eq!(
        last,
        r#"{"summary":{"status":"completed","text":"Demand flows upstream; data flows downstream.","usage":{"input_tokens":18,"output_tokens":8},"events":9,"stop_reason":"stop","reasoning":[],"refusal":null,"tool_calls":[],"server_tools":[],"citations":0}}"#
    );
    let first = out.stdout.lines().next().unwrap();
    assert_eq!(
        first,
        r#"{"type":"start","id":"chatcmpl-fx02","model":"gpt-4o-mini"}"#
    );
}

#[test]
fn replay_truncated_transcript_reports_truncated_and_null_usage() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("25_"))
        .unwrap();
    let out = run(&["--api", "openai-chat", fixture.sse.to_str().unwrap()]);
    let lines = lines(&out.stdout);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["status"], "truncated");
    // A cut recording decodes: exit 0, with a note.
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("ends without a terminal event"),
        "{}",
        out.stderr
    );
    assert!(summary["usage"].is_null());
}

#[test]
fn replay_of_an_unreadable_file_exits_2_with_one_line() {
    let missing = std::env::temp_dir().join("demandflow-replay-no-such-file.sse");
    let out = run(&["--api", "openai-chat", missing.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}

/// A file in a fresh directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, body: &[u8]) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("demandflow-replay-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Bytes that look random (xorshift), the same on every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn replay_of_nothing_decodable_exits_1_with_a_warning() {
    let empty = TempFile::new("empty.sse", b"");
    let random = TempFile::new("random.bin", &noise(10 << 20));
    for (file, says) in [
        (&empty, "the file is empty"),
        (&random, "10485760 bytes, no openai-chat event"),
    ] {
        let out = run(&["--api", "openai-chat", file.path()]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains("warning"), "{}", out.stderr);
        assert!(out.stderr.contains("nothing decoded"), "{}", out.stderr);
        assert!(out.stderr.contains(says), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        // The output keeps its shape: a terminal event, then the summary.
        let lines = lines(&out.stdout);
        assert_eq!(lines.last().unwrap()["summary"]["status"], "truncated");
    }
}

#[test]
fn replay_of_another_apis_transcript_exits_1_and_names_the_api() {
    let by_name = |prefix: &str| {
        fixtures()
            .into_iter()
            .find(|f| f.name.starts_with(prefix))
            .unwrap()
    };
    for (fixture, named, actual) in [
        (by_name("03_"), "openai-chat", "anthropic-messages"),
        (by_name("01_"), "gemini", "openai-responses"),
        (by_name("01_"), "openai-chat", "openai-responses"),
        (by_name("02_"), "anthropic-messages", "openai-chat"),
    ] {
        assert_eq!(fixture.expected["api"], actual);
        let out = run(&["--api", named, fixture.sse.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{named} {}: {}", fixture.name, out.stderr);
        assert!(
            out.stderr.contains(&format!("try --api {actual}")),
            "{named} {}: {}",
            fixture.name,
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

#[test]
fn replay_undecodable_transcript_ends_with_failed_done_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("demandflow-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.sse");
    std::fs::write(
        &path,
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}\n\ndata: {not json\n\n",
    )
    .unwrap();
    let out = run(&[
        "--api",
        "openai-chat",
        "--chunk",
        "5",
        path.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1);
    let lines = lines(&out.stdout);
    let types: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["start", "text_delta", "error", "done"]);
    assert_eq!(lines[2]["kind"], "decode_error");
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["text"], "ok");
    assert_eq!(summary["events"], 4);
}
