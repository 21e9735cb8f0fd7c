//! Shared helpers for the `batch_*` tests: a fake request stage (a pure
//! function of the request), a sequential run of the file pieces, and the
//! exactly-once check.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use demandflow_stages::batch::{
    resume, BatchItem, BatchReader, BatchResult, BatchWriter, Counters, ResultError, ResumeState,
};
use demandflow_stages::provider::{MessageBuilder, ProviderEvent, Status, Usage};
use serde_json::Value;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "demandflow-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the request stage would answer, decided by the id alone so that a
/// resumed run writes the same lines as an uninterrupted one.
pub fn fake_result(item: &BatchItem) -> BatchResult {
    let h = item
        .custom_id
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    if h % 5 == 0 {
        return BatchResult::failed(
            item.custom_id.clone(),
            3,
            ResultError::new("http_500", "internal error after 3 attempts"),
        );
    }
    let (status, stop) = match h % 5 {
        1 => (Status::Incomplete, "max_tokens"),
        2 => (Status::Refused, "refusal"),
        _ => (Status::Completed, "end_turn"),
    };
    let mut b = MessageBuilder::default();
    let mut events = vec![ProviderEvent::TextDelta {
        text: format!("answer to {}\n(line {})", item.custom_id, item.line),
    }];
    if status == Status::Refused {
        events.push(ProviderEvent::RefusalDelta { text: "no".into() });
    }
    events.push(ProviderEvent::Usage(Usage {
        input_tokens: 10 + item.line,
        output_tokens: 5,
    }));
    events.push(ProviderEvent::Done {
        status,
        stop_reason: Some(stop.into()),
    });
    events.iter().for_each(|e| b.push(e));
    BatchResult::from_final(item.custom_id.clone(), &b.finish(), 1 + h % 2)
}

/// Runs the file side of `demandflow batch` with the fake stage, one line
/// at a time: a fresh run, or `--resume`. Returns the resume state (empty
/// for a fresh run) and the counters.
pub async fn run(input: &[u8], output: &Path, resume_run: bool) -> (ResumeState, Arc<Counters>) {
    let counters = Arc::new(Counters::new());
    let (state, writer) = if resume_run {
        let state = resume(output).await.unwrap();
        counters.set_resumed(state.records);
        (state, BatchWriter::append(output).unwrap())
    } else {
        (ResumeState::default(), BatchWriter::create(output).unwrap())
    };
    let mut writer = writer.counters(counters.clone());
    let mut reader = BatchReader::new(input).skip(state.finished.clone());
    while let Some((_, line)) = reader.next().await.unwrap() {
        let result = match line {
            Ok(item) => fake_result(&item),
            Err(bad) => BatchResult::invalid(&bad),
        };
        writer.write(&result).unwrap();
    }
    (state, counters)
}

/// The output's lines, each parsed.
pub fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a torn line",
        path.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// What a result line stands for: its request, or its invalid line.
pub fn key(v: &Value) -> String {
    if v["status"] == "invalid" {
        format!("line:{}", v["line"])
    } else {
        format!("id:{}", v["custom_id"].as_str().unwrap())
    }
}

/// Checks that `output` holds exactly the lines of `reference` (each
/// once, in any order) and that its failures file holds exactly its
/// failures, in order.
pub fn assert_same_results(output: &Path, reference: &[Value]) {
    let got = lines(output);
    let mut keys: Vec<String> = got.iter().map(key).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(
        keys.len(),
        before,
        "a request has two results in {}",
        output.display()
    );
    let sorted = |v: &[Value]| {
        let mut s: Vec<String> = v.iter().map(|l| l.to_string()).collect();
        s.sort();
        s
    };
    assert_eq!(sorted(&got), sorted(reference));
    let failures: Vec<Value> = got
        .iter()
        .filter(|l| {
            [
                "failed",
                "truncated",
                "timed_out",
                "deadline_exceeded",
                "invalid",
            ]
            .contains(&l["status"].as_str().unwrap())
        })
        .cloned()
        .collect();
    let failed = demandflow_stages::batch::failed_path(output);
    assert_eq!(lines(&failed), failures, "{}", failed.display());
}
