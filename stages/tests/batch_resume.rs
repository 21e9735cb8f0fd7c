//! `demandflow batch --resume` after a kill at any moment: every request
//! ends up in the output exactly once.
//!
//! The writer appends whole lines in order, so a kill after `k` bytes
//! leaves the first `k` bytes of the uninterrupted output. Cutting that
//! output at every offset and resuming is therefore every kill point.

#[path = "batch_support/mod.rs"]
mod support;

use std::path::Path;

use demandflow_stages::batch::failed_path;
use proptest::prelude::*;
use serde_json::Value;
use support::{assert_same_results, lines, run, temp_dir};

/// Both kinds of line, bad ones and a blank one, one API (Anthropic).
fn input() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..9 {
        match i {
            3 => s.push_str("{\"custom_id\":\"r1\",\"params\":{}}\n"),
            5 => s.push_str("not json\n"),
            6 => s.push('\n'),
            7 => s.push_str("{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/responses\",\"body\":{}}\n"),
            _ => s.push_str(&format!(
                "{{\"custom_id\":\"r{i}\",\"params\":{{\"model\":\"m\",\"max_tokens\":4,\"messages\":[{{\"role\":\"user\",\"content\":\"q{i}\"}}]}}}}\n"
            )),
        }
    }
    s.into_bytes()
}

/// The failures file a kill after `k` bytes of output can leave: the
/// failures among the whole lines written, the last of them possibly torn
/// (the kill fell between the two writes).
fn failed_at_kill(output: &[u8], k: usize) -> Vec<u8> {
    let mut failed = Vec::new();
    for line in output[..k]
        .split_inclusive(|b| *b == b'\n')
        .filter(|l| l.ends_with(b"\n"))
    {
        let v: Value = serde_json::from_slice(line).unwrap();
        if ["failed", "invalid"].contains(&v["status"].as_str().unwrap()) {
            failed.extend_from_slice(line);
        }
    }
    if k % 2 == 1 && !failed.is_empty() {
        failed.truncate(failed.len() - 1 - k % 7);
    }
    failed
}

async fn reference(input: &[u8], dir: &Path) -> (Vec<u8>, Vec<Value>) {
    let output = dir.join("reference.jsonl");
    run(input, &output, false).await;
    (std::fs::read(&output).unwrap(), lines(&output))
}

#[tokio::test]
async fn a_kill_at_every_byte_offset_resumes_to_every_request_exactly_once() {
    let input = input();
    let dir = temp_dir("batch-kill");
    let (whole, results) = reference(&input, &dir).await;
    assert_eq!(results.len(), 8, "8 non-blank lines");
    assert!(results.iter().any(|v| v["status"] == "invalid"));
    assert!(results.iter().any(|v| v["status"] == "failed"));
    let output = dir.join("results.jsonl");
    for k in 0..=whole.len() {
        std::fs::write(&output, &whole[..k]).unwrap();
        std::fs::write(failed_path(&output), failed_at_kill(&whole, k)).unwrap();
        let (state, _) = run(&input, &output, true).await;
        let whole_lines = whole[..k].iter().filter(|b| **b == b'\n').count();
        assert_eq!(state.records as usize, whole_lines, "kill at {k}");
        let torn = k - whole[..k]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        assert_eq!(state.truncated_bytes as usize, torn, "kill at {k}");
        assert_same_results(&output, &results);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Several kills in a row, each after some of the resumed run's
    /// bytes: still every request exactly once.
    #[test]
    fn repeated_kills_still_give_exactly_once(
        n in 1usize..25,
        bad in proptest::collection::vec(0usize..25, 0..5),
        cuts in proptest::collection::vec(0.0f64..1.0, 1..4),
    ) {
        let mut text = String::new();
        for i in 0..n {
            if bad.contains(&i) {
                text.push_str(&format!("{{\"custom_id\":\"q{}\",\"params\":1}}\n", i / 2));
            } else {
                text.push_str(&format!("{{\"custom_id\":\"q{i}\",\"params\":{{\"max_tokens\":1}}}}\n"));
            }
        }
        let input = text.into_bytes();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dir = temp_dir("batch-kills");
            let (whole, results) = reference(&input, &dir).await;
            let output = dir.join("results.jsonl");
            std::fs::write(&output, b"").unwrap();
            for cut in &cuts {
                run(&input, &output, true).await;
                // Kill somewhere after what was already on disk.
                let done = std::fs::read(&output).unwrap();
                let start = done.len().min(whole.len());
                let k = start + ((done.len() - start) as f64 * cut) as usize;
                std::fs::write(&output, &done[..k]).unwrap();
            }
            run(&input, &output, true).await;
            assert_same_results(&output, &results);
            std::fs::remove_dir_all(dir).unwrap();
        });
    }
}
