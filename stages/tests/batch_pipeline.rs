//! The file side of `demandflow batch` without the request stage: the
//! fixture inputs (both formats, with bad lines) through the reader, fake
//! results through the writer, resume; and the reader inside a pipeline,
//! read only as fast as results are written.

#[path = "batch_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use demandflow::{source, BoxError, Consumer, Context, Pipeline, Subscribe};
use demandflow_stages::batch::{
    failed_path, prescan, resume, BatchLine, BatchReader, BatchResult, BatchWriter, OutputError,
    ResultStatus, Summary, DEFAULT_MAX_LINE_BYTES,
};
use demandflow_stages::provider::Api;
use serde_json::Value;
use support::{fake_result, lines, run, temp_dir};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/batch")
        .join(name);
    std::fs::read(path).unwrap()
}

/// `line -> (status, error kind)` of an output.
fn by_line(results: &[Value], input: &[u8]) -> BTreeMap<u64, (String, String)> {
    // Requests carry no line number: find it from the id in the input.
    let text = String::from_utf8_lossy(input);
    let line_of = |id: &str| {
        let needle = format!("\"custom_id\": \"{id}\"");
        text.lines().position(|l| l.contains(&needle)).unwrap() as u64 + 1
    };
    results
        .iter()
        .map(|v| {
            let line = v["line"]
                .as_u64()
                .unwrap_or_else(|| line_of(v["custom_id"].as_str().unwrap()));
            let kind = v["error"]["kind"].as_str().unwrap_or("").to_string();
            (line, (v["status"].as_str().unwrap().to_string(), kind))
        })
        .collect()
}

#[tokio::test]
async fn openai_fixture_gives_one_result_per_line_and_the_failures_aside() {
    let input = fixture("openai_chat.jsonl");
    let scan = prescan(&input[..], DEFAULT_MAX_LINE_BYTES).await.unwrap();
    assert_eq!(
        (scan.lines, scan.blank, scan.api),
        (10, 1, Some(Api::OpenAiChat))
    );

    let dir = temp_dir("batch-openai");
    let output = dir.join("results.jsonl");
    let (_, counters) = run(&input, &output, false).await;
    let results = lines(&output);
    assert_eq!(results.len() as u64, scan.lines);
    let got = by_line(&results, &input);
    let invalid = |kind: &str| ("invalid".to_string(), kind.to_string());
    assert_eq!(got[&4], invalid("invalid_json"));
    assert_eq!(got[&5], invalid("invalid_method"));
    assert_eq!(got[&6], invalid("unsupported_url"));
    assert_eq!(got[&7], invalid("duplicate_custom_id"));
    assert_eq!(got[&8], invalid("api_mismatch"));
    assert_eq!(got[&9], invalid("missing_custom_id"));
    for line in [1, 2, 10, 11] {
        assert_ne!(got[&line].0, "invalid", "line {line}");
    }
    // The duplicate names the id it repeats; the JSON error has no id.
    let dup = results.iter().find(|v| v["line"] == 7).unwrap();
    assert_eq!(dup["custom_id"], "chat-1");
    assert!(
        dup["error"]["message"].as_str().unwrap().contains("line 1"),
        "{dup}"
    );
    assert_eq!(
        results.iter().find(|v| v["line"] == 4).unwrap()["custom_id"],
        Value::Null
    );

    support::assert_same_results(&output, &results);
    let summary = Summary::new(&counters.snapshot(), Duration::from_secs(1));
    assert_eq!(summary.written, 10);
    assert_eq!(summary.statuses["invalid"], 6);
    assert_eq!(
        summary.failures() as usize,
        lines(&failed_path(&output)).len()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn anthropic_fixture_gives_one_result_per_line() {
    let input = fixture("anthropic.jsonl");
    let dir = temp_dir("batch-anthropic");
    let output = dir.join("results.jsonl");
    run(&input, &output, false).await;
    let results = lines(&output);
    let got = by_line(&results, &input);
    let kinds: Vec<(u64, &str)> = got
        .iter()
        .filter(|(_, (s, _))| s == "invalid")
        .map(|(l, (_, k))| (*l, k.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (3, "invalid_body"),
            (5, "invalid_custom_id"),
            (6, "invalid_json"),
            (8, "api_mismatch")
        ]
    );
    assert_eq!(results.len(), 8);
    // A request's result: every key, text and usage from the answer.
    let first = results.iter().find(|v| v["custom_id"] == "msg-1").unwrap();
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "custom_id",
        "status",
        "text",
        "tool_calls",
        "usage",
        "attempts",
        "error",
    ] {
        assert!(keys.contains(&key), "{key} missing from {first}");
    }
    support::assert_same_results(&output, &results);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn resume_after_a_whole_run_sends_nothing_and_a_new_run_refuses_the_output() {
    let input = fixture("anthropic.jsonl");
    let dir = temp_dir("batch-rerun");
    let output = dir.join("results.jsonl");
    run(&input, &output, false).await;
    let before = std::fs::read(&output).unwrap();
    let (state, counters) = run(&input, &output, true).await;
    assert_eq!(std::fs::read(&output).unwrap(), before);
    assert_eq!(
        (state.records, state.truncated_bytes, state.duplicates),
        (8, 0, 0)
    );
    assert_eq!(state.count(ResultStatus::Invalid), 4);
    assert_eq!(counters.snapshot().written, 0);
    match BatchWriter::create(&output) {
        Err(OutputError::NotEmpty { .. }) => {}
        other => panic!("a new run over results: {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn resume_cuts_a_torn_tail_and_refuses_a_foreign_line_in_the_middle() {
    let dir = temp_dir("batch-corrupt");
    let output = dir.join("results.jsonl");
    let input = fixture("anthropic.jsonl");
    run(&input, &output, false).await;
    let whole = std::fs::read(&output).unwrap();

    // A last line that ends in `\n` but is not a result: also a torn tail.
    let mut tail = whole.clone();
    tail.extend_from_slice(b"{\"custom_id\":\"msg-9\",\"sta\n");
    std::fs::write(&output, &tail).unwrap();
    let state = resume(&output).await.unwrap();
    assert_eq!(state.truncated_bytes, 26);
    assert_eq!(std::fs::read(&output).unwrap(), whole);

    let mut middle = b"hello\n".to_vec();
    middle.extend_from_slice(&whole);
    std::fs::write(&output, &middle).unwrap();
    match resume(&output).await {
        Err(OutputError::Corrupt { line: 1, .. }) => {}
        other => panic!("a foreign first line: {other:?}"),
    }
    assert_eq!(std::fs::read(&output).unwrap(), middle, "left as it was");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "output and failures file only: {leftovers:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// An input of `total` generated lines, never held whole; `produced`
/// counts the lines handed to the reader so far.
struct Generated {
    next: u64,
    total: u64,
    line: Vec<u8>,
    pos: usize,
    produced: Arc<AtomicU64>,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.line.len() {
            if this.next == this.total {
                return Poll::Ready(Ok(()));
            }
            this.next += 1;
            this.line = if this.next % 1000 == 0 {
                b"{broken\n".to_vec()
            } else {
                format!(
                    "{{\"custom_id\":\"r{}\",\"params\":{{\"model\":\"m\",\"max_tokens\":16,\"messages\":[{{\"role\":\"user\",\"content\":\"row {}\"}}]}}}}\n",
                    this.next, this.next
                )
                .into_bytes()
            };
            this.pos = 0;
            this.produced.store(this.next, Ordering::SeqCst);
        }
        let n = buf.remaining().min(this.line.len() - this.pos);
        buf.put_slice(&this.line[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Writes each line's fake result and records how far the input was read
/// ahead of it.
#[derive(Clone)]
struct WriteAndWatch {
    writer: Arc<Mutex<BatchWriter>>,
    produced: Arc<AtomicU64>,
    max_ahead: Arc<AtomicU64>,
    batches: u64,
}

impl Consumer<io::Result<BatchLine>> for WriteAndWatch {
    async fn consume(
        &mut self,
        events: &[io::Result<BatchLine>],
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for event in events {
            let (line, item) = event.as_ref().map_err(|e| e.to_string())?;
            let ahead = self
                .produced
                .load(Ordering::SeqCst)
                .checked_sub(*line)
                .ok_or("behind")?;
            self.max_ahead.fetch_max(ahead, Ordering::SeqCst);
            let result = match item {
                Ok(item) => fake_result(item),
                Err(bad) => BatchResult::invalid(bad),
            };
            self.writer.lock().unwrap().write(&result)?;
        }
        // A slower consumer now and then: an eager reader would run ahead.
        self.batches += 1;
        if self.batches % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_pipeline_the_input_is_read_only_as_fast_as_results_are_written() {
    const LINES: u64 = 100_000;
    let dir = temp_dir("batch-flat");
    let output = dir.join("results.jsonl");
    let produced = Arc::new(AtomicU64::new(0));
    let input = tokio::io::BufReader::with_capacity(
        4096,
        Generated {
            next: 0,
            total: LINES,
            line: Vec::new(),
            pos: 0,
            produced: produced.clone(),
        },
    );
    let reader = BatchReader::new(input).api(Api::AnthropicMessages);
    let consumer = WriteAndWatch {
        writer: Arc::new(Mutex::new(BatchWriter::create(&output).unwrap())),
        produced: produced.clone(),
        max_ahead: Arc::new(AtomicU64::new(0)),
        batches: 0,
    };
    let max_ahead = consumer.max_ahead.clone();

    let mut p = Pipeline::new();
    let read = p.producer("read", source::from_stream(reader.into_stream()));
    p.consumer("write", consumer)
        .subscribe(&read, Subscribe::max_demand(16));
    tokio::time::timeout(Duration::from_secs(300), p.spawn().unwrap().join())
        .await
        .expect("the run ends")
        .unwrap();

    // Lines read but not yet written: the 4 KiB read buffer (about 30
    // lines) and the subscription's demand (16), whatever the file's size.
    let ahead = max_ahead.load(Ordering::SeqCst);
    eprintln!("read ahead of the writer: at most {ahead} lines");
    assert!(
        ahead <= 100,
        "the reader ran {ahead} lines ahead of the writer"
    );
    let results = lines(&output);
    assert_eq!(results.len() as u64, LINES);
    let invalid = results.iter().filter(|v| v["status"] == "invalid").count() as u64;
    assert_eq!(invalid, LINES / 1000);
    support::assert_same_results(&output, &results);
    std::fs::remove_dir_all(dir).unwrap();
}
