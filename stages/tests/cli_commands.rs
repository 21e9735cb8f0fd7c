//! The `demandflow` binary from outside: `demo`, `bench`, `chaos`, `replay`
//! wiring and usage errors (DESIGN.md §9).

use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_demandflow");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn demo_streams_the_text_and_ends_with_a_summary() {
    let out = run(&[
        "demo",
        "--tokens",
        "40",
        "--delay-ms",
        "0",
        "--pace-ms",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("lorem ipsum dolor"), "{text}");
    assert!(text.contains("summary"), "{text}");
    assert!(text.contains("40 output tokens"), "{text}");
    assert!(text.contains("provider      completed"), "{text}");
    for stage in ["provider", "reflow", "printer"] {
        assert!(text.contains(stage), "{text}");
    }
    // stderr is not a terminal here: plain status lines, no escapes.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pending demand"), "{err}");
    assert!(!err.contains('\x1b'), "{err}");
}

#[test]
fn bench_json_has_every_shape_and_key() {
    let out = run(&["bench", "--events", "20000", "--reps", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON document");
    let results = v["results"].as_array().unwrap();
    let shapes: Vec<&str> = results
        .iter()
        .map(|r| r["shape"].as_str().unwrap())
        .collect();
    assert_eq!(
        shapes,
        [
            "linear",
            "chain3",
            "fanout2",
            "broadcast2",
            "partition2",
            "chain3-per-event",
            "fanout2-slow",
            "fanout4-slow",
            "chain3-slow"
        ]
    );
    for r in results {
        assert_eq!(r["events"], 20000);
        let e = r["engine_events_per_sec"].as_f64().unwrap();
        let b = r["baseline_events_per_sec"].as_f64().unwrap();
        assert!(e > 0.0 && b > 0.0, "{r}");
        let ratio = r["ratio"].as_f64().unwrap();
        assert!((ratio - e / b).abs() <= 1e-9 * (e / b), "{r}");
        assert!(r["max_buffered"].as_u64().unwrap() <= r["buffer_bound"].as_u64().unwrap());
    }
    // The first five keys, in the documented order.
    let first = stdout(&out);
    let i = |k: &str| first.find(&format!("\"{k}\"")).unwrap();
    assert!(i("shape") < i("events") && i("events") < i("engine_events_per_sec"));
    assert!(i("baseline_events_per_sec") < i("ratio"));
}

#[test]
fn bench_latency_json_has_both_sides_percentiles() {
    let out = run(&[
        "bench",
        "--latency",
        "--events",
        "40",
        "--reps",
        "1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(v["events"], 40);
    for side in ["engine", "baseline"] {
        let p = |q: &str| v[format!("{side}_{q}_us")].as_f64().unwrap();
        assert!(p("p50") > 0.0, "{v}");
        assert!(
            p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("max"),
            "{v}"
        );
    }
    let bad = run(&["bench", "--latency", "--shape", "chain3"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn bench_one_shape_prints_a_table() {
    let out = run(&[
        "bench", "--shape", "chain3", "--events", "10000", "--reps", "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("chain3") && text.contains("ratio"), "{text}");
    assert!(!text.contains("linear"), "{text}");
}

#[test]
fn bench_llm_batch_smoke() {
    // A small N: the figures are not checked (speed is for the benchmark),
    // only that both runs complete every request through the batch
    // machinery and report their keys.
    let out = run(&[
        "bench",
        "--shape",
        "llm-batch",
        "--requests",
        "60",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(v["shape"], "llm-batch");
    let runs = v["runs"].as_array().unwrap();
    let clients: Vec<&str> = runs.iter().map(|r| r["client"].as_str().unwrap()).collect();
    assert_eq!(clients, ["told-real-limits", "told-twice-the-limits"]);
    for r in runs {
        assert_eq!(
            (r["requests"].as_u64(), r["completed"].as_u64()),
            (Some(60), Some(60)),
            "{r}"
        );
        assert!(r["requests_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_in_flight"].as_u64().unwrap() >= 1, "{r}");
        for k in [
            "request_limit_fraction",
            "token_limit_fraction",
            "rate_limited",
            "peak_buffered",
        ] {
            assert!(r.get(k).is_some(), "{k}: {r}");
        }
    }
}

#[test]
fn chaos_loses_nothing() {
    let out = run(&["chaos", "--seconds", "2", "--json", "--crash-rate", "0.05"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{v}");
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(n("lost"), 0, "{v}");
    assert!(n("restarts") > 0, "{v}");
    assert!(n("produced") > 0, "{v}");
    assert_eq!(n("produced"), n("processed") + n("dead_lettered"), "{v}");
    let _ = n("duplicates");
    // Injected panics are kept off stderr.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn replay_is_wired() {
    let out = run(&["replay", "--api", "openai-chat", "/no/such/file.sse"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    let dir = std::env::temp_dir().join(format!("demandflow-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("chat.sse");
    std::fs::write(
        &file,
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
         data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
         data: [DONE]\n\n",
    )
    .unwrap();
    let out = run(&["replay", "--api", "openai-chat", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["text"], "Hi");
    assert_eq!(last["summary"]["status"], "completed");
}

#[test]
fn usage_errors_exit_2_with_usage_and_help_exits_0() {
    for bad in [
        &[][..],
        &["nope"],
        &["demo", "--tokens", "many"],
        &["demo", "--api", "cohere"],
        &["bench", "--shape", "triangle"],
        &["chaos", "--crash-rate", "2"],
        &["chaos", "--frobnicate"],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Usage: demandflow"), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?}");
    }
    for help in [
        &["--help"][..],
        &["help"],
        &["demo", "--help"],
        &["bench", "--help"],
        &["stream", "--help"],
        &["chaos", "--help"],
        &["replay", "--help"],
        &["mock", "--help"],
        &["completions", "--help"],
    ] {
        let out = run(help);
        assert_eq!(out.status.code(), Some(0), "{help:?}: {out:?}");
        assert!(stdout(&out).contains("Usage: demandflow"), "{help:?}");
        assert!(out.stderr.is_empty(), "{help:?}");
    }
}
