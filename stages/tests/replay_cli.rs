//! The `demandflow replay` contract (DESIGN.md §9): one JSON line per
//! normalised event, then one summary line; usage errors give one line on
//! stderr and exit status 2.

mod sse_support;

use demandflow_stages::replay;
use serde_json::Value;
use sse_support::{fixtures, sha256_hex};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = replay::run(&args, &mut stdout, &mut stderr);
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
        assert_eq!(out.stderr, "");
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
    assert!(summary["usage"].is_null());
}

#[test]
fn replay_usage_errors_exit_2_with_one_line_on_stderr() {
    let fixture = fixtures().into_iter().next().unwrap();
    let path = fixture.sse.to_str().unwrap();
    let missing = std::env::temp_dir().join("demandflow-replay-no-such-file.sse");
    let missing = missing.to_str().unwrap();
    for args in [
        &["--api", "openai-chat", missing][..],
        &["--api", "gemini-stream", path],
        &["--api", "openai-chat", "--chunk", "0", path],
        &["--api", "openai-chat", "--chunk", "many", path],
        &["--api", "openai-chat", "--bogus", path],
        &["--api", "openai-chat"],
        &[path],
        &[],
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.ends_with('\n'));
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
