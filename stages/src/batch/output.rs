//! The output of `demandflow batch`: one JSON line per input line, written
//! whole, and a copy of the failures in `<output>.failed.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::input::LineError;
use super::progress::Counters;
use crate::provider::{FinalMessage, Status, Usage};

/// How a request of the batch ended: the provider outcomes of
/// [`Status`] under the same names, plus `invalid` for an input line that
/// was not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResultStatus {
    /// The model finished normally ([`Status::Completed`]).
    Completed,
    /// The output was cut by a token limit or a paused turn
    /// ([`Status::Incomplete`]: `max_tokens`, `length`, …).
    Incomplete,
    /// The model declined or a content filter stopped it
    /// ([`Status::Refused`]).
    Refused,
    /// The provider reported an error, or every attempt failed
    /// ([`Status::Failed`]).
    Failed,
    /// The body ended before any terminal event ([`Status::Truncated`]).
    Truncated,
    /// Cancelled before it finished ([`Status::Cancelled`]). Never written:
    /// the request was not answered, so `--resume` sends it again.
    Cancelled,
    /// The run's deadline passed ([`Status::DeadlineExceeded`]).
    DeadlineExceeded,
    /// A read timeout of the request fired ([`Status::TimedOut`]).
    TimedOut,
    /// The input line is not a valid request ([`LineError`]).
    Invalid,
}

impl ResultStatus {
    /// Every status, in the order summaries list them.
    pub const ALL: [ResultStatus; 9] = [
        ResultStatus::Completed,
        ResultStatus::Incomplete,
        ResultStatus::Refused,
        ResultStatus::Failed,
        ResultStatus::Truncated,
        ResultStatus::Cancelled,
        ResultStatus::DeadlineExceeded,
        ResultStatus::TimedOut,
        ResultStatus::Invalid,
    ];

    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Completed => "completed",
            ResultStatus::Incomplete => "incomplete",
            ResultStatus::Refused => "refused",
            ResultStatus::Failed => "failed",
            ResultStatus::Truncated => "truncated",
            ResultStatus::Cancelled => "cancelled",
            ResultStatus::DeadlineExceeded => "deadline_exceeded",
            ResultStatus::TimedOut => "timed_out",
            ResultStatus::Invalid => "invalid",
        }
    }

    /// Whether the result also goes to the failures file: the request got
    /// no answer (`failed`, `truncated`, `timed_out`, `deadline_exceeded`)
    /// or was never a request (`invalid`). `completed`, `incomplete` and
    /// `refused` are answers of the model.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ResultStatus::Failed
                | ResultStatus::Truncated
                | ResultStatus::DeadlineExceeded
                | ResultStatus::TimedOut
                | ResultStatus::Invalid
        )
    }

    /// The position in [`ResultStatus::ALL`].
    pub(crate) fn index(self) -> usize {
        ResultStatus::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(0)
    }
}

impl From<Status> for ResultStatus {
    fn from(status: Status) -> ResultStatus {
        match status {
            Status::Completed => ResultStatus::Completed,
            Status::Incomplete => ResultStatus::Incomplete,
            Status::Refused => ResultStatus::Refused,
            Status::Truncated => ResultStatus::Truncated,
            Status::Cancelled => ResultStatus::Cancelled,
            Status::DeadlineExceeded => ResultStatus::DeadlineExceeded,
            Status::TimedOut => ResultStatus::TimedOut,
            // `Failed`, and any outcome added later: not an answer.
            _ => ResultStatus::Failed,
        }
    }
}

/// The `error` of a result line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResultError {
    /// Machine-readable: a provider error kind (`rate_limit_error`,
    /// `http_500`, `first_event_timeout`, …), `refusal`, or a
    /// [`LineErrorKind`](super::LineErrorKind) name for an invalid line.
    pub kind: String,
    /// For people.
    pub message: String,
}

impl ResultError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> ResultError {
        ResultError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// One line of the output:
/// `{"custom_id", "status", "text", "tool_calls", "usage", "attempts",
/// "error"}`, plus `"line"` for an invalid input line and `"raw"` when
/// asked for.
///
/// Every key is always written (`null` or `[]` when empty), so each line
/// has the same shape; `line` and `raw` only when set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BatchResult {
    /// The request's `custom_id`; `null` only for an invalid line without a
    /// usable one.
    pub custom_id: Option<String>,
    /// How it ended.
    pub status: ResultStatus,
    /// The answer's text; `null` when there was no answer.
    pub text: Option<String>,
    /// The client tool calls, in the form of
    /// [`FinalMessage::to_json`]'s `tool_calls`:
    /// `{index, id, name, kind, finished, arguments}` (`error` and `raw`
    /// in place of `arguments` when they are not JSON).
    pub tool_calls: Vec<Value>,
    /// The tokens reported, if any.
    pub usage: Option<Usage>,
    /// Attempts made (1 when the first succeeded; 0 for an invalid line).
    pub attempts: u32,
    /// What went wrong, if anything did.
    pub error: Option<ResultError>,
    /// The input line number: set for an invalid line (it is how
    /// `--resume` knows the line is done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The raw final body, under `--raw`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

impl BatchResult {
    /// The result of a request that got an answer (whatever its outcome).
    /// `error` is the last error the stream reported, or for a refusal the
    /// refusal text (kind `refusal`).
    pub fn from_final(
        custom_id: impl Into<String>,
        message: &FinalMessage,
        attempts: u32,
    ) -> BatchResult {
        let tool_calls = match message.to_json()["tool_calls"].take() {
            Value::Array(calls) => calls,
            _ => Vec::new(),
        };
        let error = match (message.errors.last(), &message.refusal) {
            (Some(e), _) => Some(ResultError::new(&e.kind, &e.message)),
            (None, Some(refusal)) => Some(ResultError::new("refusal", refusal)),
            (None, None) => None,
        };
        BatchResult {
            custom_id: Some(custom_id.into()),
            status: message.status.into(),
            text: Some(message.text.clone()),
            tool_calls,
            usage: message.usage,
            attempts,
            error,
            line: None,
            raw: None,
        }
    }

    /// The result of a request that got no answer: status `failed`, with
    /// why.
    pub fn failed(custom_id: impl Into<String>, attempts: u32, error: ResultError) -> BatchResult {
        BatchResult {
            custom_id: Some(custom_id.into()),
            status: ResultStatus::Failed,
            text: None,
            tool_calls: Vec::new(),
            usage: None,
            attempts,
            error: Some(error),
            line: None,
            raw: None,
        }
    }

    /// The result of a malformed input line: status `invalid`, its line
    /// number, its `custom_id` if it has a usable one.
    pub fn invalid(error: &LineError) -> BatchResult {
        BatchResult {
            custom_id: error.custom_id.clone(),
            status: ResultStatus::Invalid,
            text: None,
            tool_calls: Vec::new(),
            usage: None,
            attempts: 0,
            error: Some(ResultError::new(error.kind.as_str(), &error.message)),
            line: Some(error.line),
            raw: None,
        }
    }

    /// Sets the status (e.g. `timed_out` for a request that failed that
    /// way).
    pub fn with_status(mut self, status: ResultStatus) -> BatchResult {
        self.status = status;
        self
    }

    /// Adds the raw final body (`--raw`).
    pub fn with_raw(mut self, raw: Value) -> BatchResult {
        self.raw = Some(raw);
        self
    }

    /// The line as written: compact JSON and `\n`. JSON escapes newlines
    /// in strings, so the only `\n` is the last byte.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            // Serializing plain data cannot fail; keep the line whole anyway.
            format!(
                "{{\"custom_id\":null,\"status\":\"failed\",\"error\":{{\"kind\":\"serialize\",\"message\":{:?}}}}}",
                e.to_string()
            )
            .into_bytes()
        });
        line.push(b'\n');
        line
    }
}

/// The failures file of `output`: `<output>.failed.jsonl`.
///
/// ```
/// use std::path::Path;
/// use demandflow_stages::batch::failed_path;
///
/// assert_eq!(failed_path(Path::new("out/results.jsonl")), Path::new("out/results.jsonl.failed.jsonl"));
/// ```
pub fn failed_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".failed.jsonl");
    PathBuf::from(name)
}

/// An error opening, scanning or writing the output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// An I/O error on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A new run was asked for but the output already holds results.
    #[error("{} already holds results: pass --resume to carry on, or remove it", path.display())]
    NotEmpty {
        /// The output.
        path: PathBuf,
    },
    /// A line of the output (not the last) is not a result line, so
    /// resuming could send a request twice or lose one.
    #[error("{} line {line}: {message}; fix or remove the line to resume", path.display())]
    Corrupt {
        /// The output.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl OutputError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
        move |source| OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Whether [`BatchWriter::write`] wrote the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Written {
    /// Written to the output.
    Output,
    /// Written to the output and the failures file.
    OutputAndFailed,
    /// A `cancelled` result: left out, so that `--resume` sends it again.
    Skipped,
}

/// Writes result lines to the output and failures to the failures file.
///
/// Each line goes out in one `write_all` of the whole line and its `\n`,
/// on files opened for append, with no buffering across lines: after a
/// `kill -9` at any moment the output holds whole lines plus at most one
/// torn last line, which [`resume`](super::resume) removes. A result goes
/// to the output first and then, if it is a failure, to the failures file,
/// so the failures file never holds a line the output lacks (and `resume`
/// rebuilds it from the output anyway).
///
/// The writes are blocking `std::fs` writes of one line into the page
/// cache (microseconds); no `fsync`, since a killed process loses nothing
/// the kernel has (call [`BatchWriter::sync`] at the end against power
/// loss).
#[derive(Debug)]
pub struct BatchWriter {
    output: File,
    output_path: PathBuf,
    failed: File,
    failed_path: PathBuf,
    counters: Option<Arc<Counters>>,
}

impl BatchWriter {
    /// Opens `output` for a new run: created if missing; an error
    /// ([`OutputError::NotEmpty`]) if it already holds anything. The
    /// failures file is created or emptied.
    pub fn create(output: &Path) -> Result<BatchWriter, OutputError> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(output)
            .map_err(OutputError::io(output))?;
        let len = out.metadata().map_err(OutputError::io(output))?.len();
        if len > 0 {
            return Err(OutputError::NotEmpty {
                path: output.to_path_buf(),
            });
        }
        let failed = failed_path(output);
        File::create(&failed).map_err(OutputError::io(&failed))?;
        BatchWriter::append(output)
    }

    /// Opens `output` and its failures file for append, as they are: after
    /// [`resume`](super::resume) has removed any torn line.
    pub fn append(output: &Path) -> Result<BatchWriter, OutputError> {
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(OutputError::io(path))
        };
        let failed_path = failed_path(output);
        Ok(BatchWriter {
            output: open(output)?,
            output_path: output.to_path_buf(),
            failed: open(&failed_path)?,
            failed_path,
            counters: None,
        })
    }

    /// Counts each written result in `counters` (done, per status, tokens).
    pub fn counters(mut self, counters: Arc<Counters>) -> BatchWriter {
        self.counters = Some(counters);
        self
    }

    /// Writes `result`: to the output, and to the failures file if it
    /// [is a failure](ResultStatus::is_failure). A `cancelled` result is not
    /// written.
    pub fn write(&mut self, result: &BatchResult) -> Result<Written, OutputError> {
        if result.status == ResultStatus::Cancelled {
            return Ok(Written::Skipped);
        }
        let line = result.to_line();
        self.output
            .write_all(&line)
            .map_err(OutputError::io(&self.output_path))?;
        if let Some(counters) = &self.counters {
            counters.record(result);
        }
        if !result.status.is_failure() {
            return Ok(Written::Output);
        }
        self.failed
            .write_all(&line)
            .map_err(OutputError::io(&self.failed_path))?;
        Ok(Written::OutputAndFailed)
    }

    /// Flushes both files to disk (`fsync`).
    pub fn sync(&self) -> Result<(), OutputError> {
        self.output
            .sync_data()
            .map_err(OutputError::io(&self.output_path))?;
        self.failed
            .sync_data()
            .map_err(OutputError::io(&self.failed_path))
    }

    /// The failures file's path.
    pub fn failed_path(&self) -> &Path {
        &self.failed_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{MessageBuilder, ProviderEvent};
    use serde_json::json;

    fn message(events: &[ProviderEvent]) -> FinalMessage {
        let mut b = MessageBuilder::default();
        events.iter().for_each(|e| b.push(e));
        b.finish()
    }

    #[test]
    fn a_completed_message_becomes_one_line_with_every_key() {
        let m = message(&[
            ProviderEvent::TextDelta {
                text: "hi\nthere".into(),
            },
            ProviderEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 2,
            }),
            ProviderEvent::Done {
                status: Status::Completed,
                stop_reason: Some("stop".into()),
            },
        ]);
        let line = BatchResult::from_final("r1", &m, 2).to_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            json!({"custom_id":"r1","status":"completed","text":"hi\nthere","tool_calls":[],
                   "usage":{"input_tokens":3,"output_tokens":2},"attempts":2,"error":null})
        );
    }

    #[test]
    fn a_refusal_and_a_stream_error_fill_error() {
        let m = message(&[
            ProviderEvent::RefusalDelta { text: "no".into() },
            ProviderEvent::Done {
                status: Status::Refused,
                stop_reason: None,
            },
        ]);
        let r = BatchResult::from_final("r", &m, 1);
        assert_eq!(
            (r.status, r.error),
            (
                ResultStatus::Refused,
                Some(ResultError::new("refusal", "no"))
            )
        );
        let m = message(&[
            ProviderEvent::Error {
                kind: "overloaded_error".into(),
                message: "busy".into(),
            },
            ProviderEvent::Done {
                status: Status::Failed,
                stop_reason: None,
            },
        ]);
        let r = BatchResult::from_final("r", &m, 3).with_raw(json!({"x":1}));
        assert!(r.status.is_failure());
        let v: Value = serde_json::from_slice(&r.to_line()).unwrap();
        assert_eq!(
            v["error"],
            json!({"kind":"overloaded_error","message":"busy"})
        );
        assert_eq!(v["raw"], json!({"x":1}));
    }

    #[test]
    fn every_provider_status_keeps_its_name() {
        for s in [
            Status::Completed,
            Status::Incomplete,
            Status::Refused,
            Status::Failed,
            Status::Truncated,
            Status::Cancelled,
            Status::DeadlineExceeded,
            Status::TimedOut,
        ] {
            assert_eq!(ResultStatus::from(s).as_str(), s.as_str());
        }
        for s in ResultStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(ResultStatus::ALL[s.index()], s);
        }
    }
}
