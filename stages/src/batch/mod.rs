//! The file side of `demandflow batch`: reading a JSONL file of requests
//! as a stream, writing one result line per request so that a killed run
//! can be resumed, and showing progress.
//!
//! A run is: [`prescan`] the input (the progress total and the API), or
//! [`resume`] the output; read the input with a [`BatchReader`] (skipping
//! what is [`Finished`]) into the request stage; write each
//! [`BatchResult`] (and each [`LineError`] as [`BatchResult::invalid`])
//! with a [`BatchWriter`]; show [`Counters`] with a [`ProgressTask`]; print
//! the [`Summary`]. [`Held`] counts the requests between reading and
//! writing (the benchmark's memory figure).
//!
//! ```
//! use std::sync::Arc;
//! use demandflow_stages::batch::{
//!     resume, BatchReader, BatchResult, BatchWriter, Counters, ResultError, ResultStatus,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("batch-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let output = dir.join("results.jsonl");
//! # let _ = std::fs::remove_file(&output);
//! let input = br#"{"custom_id":"a","params":{"model":"m","max_tokens":8,"messages":[]}}
//! {"custom_id":"b","params":"oops"}
//! "#;
//! let state = resume(&output).await?; // nothing yet: a missing output is empty
//! let counters = Arc::new(Counters::new());
//! let mut writer = BatchWriter::append(&output)?.counters(counters.clone());
//! let mut reader = BatchReader::new(&input[..]).skip(state.finished);
//! while let Some((_line, item)) = reader.next().await? {
//!     let result = match item {
//!         // The request stage goes here.
//!         Ok(item) => BatchResult::failed(item.custom_id, 1, ResultError::new("demo", "not sent")),
//!         Err(bad) => BatchResult::invalid(&bad),
//!     };
//!     writer.write(&result)?;
//! }
//! assert_eq!(counters.snapshot().count(ResultStatus::Invalid), 1);
//! // Run again with --resume: everything is done.
//! let state = resume(&output).await?;
//! assert_eq!(state.records, 2);
//! let mut reader = BatchReader::new(&input[..]).skip(state.finished);
//! assert!(reader.next().await?.is_none());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
//!
//! `docs/llm-batch.md` describes the formats, the output and resuming.

mod held;
mod input;
mod line;
mod output;
mod progress;
mod resume;

pub use held::{Held, HeldCount};
pub use input::{
    prescan, BatchItem, BatchLine, BatchReader, InputFormat, LineError, LineErrorKind, Prescan,
    ReadStats, RepeatedIds, DEFAULT_MAX_LINE_BYTES,
};
pub use output::{
    failed_path, BatchResult, BatchWriter, OutputError, ResultError, ResultStatus, Written,
};
pub use progress::{progress_line, Counters, ProgressMode, ProgressTask, Rates, Snapshot, Summary};
pub use resume::{resume, Finished, ResumeState, MAX_RESULT_LINE_BYTES};
