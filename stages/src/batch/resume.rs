//! `--resume`: what an existing output already holds, after removing the
//! torn line a killed run may have left.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::line::{read_capped_line, Line};
use super::output::{failed_path, OutputError, ResultStatus};

/// The longest output line [`resume`] reads (64 MiB; a line with `--raw`
/// holds the whole final body). A longer line that is not the last is
/// [`OutputError::Corrupt`].
pub const MAX_RESULT_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The input lines whose result the output holds: requests by
/// `custom_id`, malformed lines (status `invalid`) by line number. Given to
/// [`BatchReader::skip`](super::BatchReader::skip).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// The `custom_id`s of the requests with a result.
    pub ids: HashSet<String>,
    /// The line numbers of the invalid lines reported.
    pub lines: HashSet<u64>,
}

impl Finished {
    /// How many input lines are done.
    pub fn len(&self) -> usize {
        self.ids.len() + self.lines.len()
    }

    /// Whether nothing is done.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`resume`] found in the output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResumeState {
    /// What to skip.
    pub finished: Finished,
    /// Whole result lines in the output.
    pub records: u64,
    /// Of those, per status, in the order of [`ResultStatus::ALL`].
    pub by_status: [u64; ResultStatus::ALL.len()],
    /// Bytes of a torn last line removed from the output (0 when it ended
    /// cleanly).
    pub truncated_bytes: u64,
    /// Lines that repeat an earlier line's `custom_id` (or invalid line
    /// number); none unless the output was edited or written by two runs
    /// at once.
    pub duplicates: u64,
    /// Lines of the rebuilt failures file.
    pub failed: u64,
}

impl ResumeState {
    /// The count for `status`.
    pub fn count(&self, status: ResultStatus) -> u64 {
        self.by_status[status.index()]
    }
}

/// The part of a result line `resume` needs.
#[derive(Deserialize)]
struct Record {
    custom_id: Option<String>,
    status: ResultStatus,
    #[serde(default)]
    line: Option<u64>,
}

/// Reads the output at `output` as a stream and returns what it holds, so
/// the run can carry on where it stopped:
///
/// - a torn last line (no `\n` at its end, or not a result line) is cut
///   off the file: its request was not finished and is sent again;
/// - any other line that is not a result line is an error
///   ([`OutputError::Corrupt`]): something else wrote to the file;
/// - the failures file is rebuilt from the output's failures (written
///   aside, then renamed over it), so it matches the output exactly even
///   if the run was killed between its two writes;
/// - a missing output is an empty one.
///
/// Then open the output with [`BatchWriter::append`](super::BatchWriter::append)
/// and hand [`ResumeState::finished`] to the reader.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future may leave the torn line in place
/// or the new failures file unrenamed (`<failed>.tmp`); calling `resume`
/// again finishes the work.
pub async fn resume(output: &Path) -> Result<ResumeState, OutputError> {
    resume_with_cap(output, MAX_RESULT_LINE_BYTES).await
}

pub(crate) async fn resume_with_cap(output: &Path, cap: usize) -> Result<ResumeState, OutputError> {
    let io = OutputError::io;
    let failed = failed_path(output);
    let mut tmp_name = failed.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let scanned = scan(output, &tmp, cap).await;
    match scanned {
        Ok(state) => {
            tokio::fs::rename(&tmp, &failed)
                .await
                .map_err(io(&failed))?;
            Ok(state)
        }
        Err(err) => {
            // The failures file stays as it was; only the half-built copy goes.
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(err)
        }
    }
}

/// Scans `output`, cutting a torn tail, and writes its failures to `tmp`.
async fn scan(output: &Path, tmp: &Path, cap: usize) -> Result<ResumeState, OutputError> {
    let io = OutputError::io;
    let mut state = ResumeState::default();
    let mut failures = tokio::fs::File::create(tmp).await.map_err(io(tmp))?;

    let file = match tokio::fs::File::open(output).await {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(output)(e)),
    };
    if let Some(file) = file {
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut buf = Vec::new();
        let mut offset: u64 = 0;
        let mut number: u64 = 0;
        let mut torn_at = None;
        loop {
            let read = read_capped_line(&mut reader, &mut buf, cap)
                .await
                .map_err(io(output))?;
            number += 1;
            let corrupt = |message: String| OutputError::Corrupt {
                path: output.to_path_buf(),
                line: number,
                message,
            };
            let (len, terminated) = match read {
                Line::Eof => break,
                Line::Whole { terminated } => (buf.len() as u64, terminated),
                Line::TooLong { len, terminated } => (len, terminated),
            };
            if !terminated {
                torn_at = Some((offset, len));
                break;
            }
            let record = match read {
                Line::TooLong { len, .. } => Err(format!(
                    "the line is {len} bytes long, more than the limit of {cap} bytes"
                )),
                _ => serde_json::from_slice::<Record>(&buf)
                    .map_err(|e| format!("not a result line: {e}")),
            };
            let record = match record {
                Ok(record) => record,
                // A line ending in `\n` that is not a result can only be
                // the tail of a kill if nothing follows it.
                Err(_) if reader.fill_buf().await.map_err(io(output))?.is_empty() => {
                    torn_at = Some((offset, len + 1));
                    break;
                }
                Err(message) => return Err(corrupt(message)),
            };
            let new = match (record.status, record.custom_id, record.line) {
                (ResultStatus::Invalid, _, Some(line)) => state.finished.lines.insert(line),
                (ResultStatus::Invalid, _, None) => {
                    return Err(corrupt("an invalid result without its line number".into()))
                }
                // Never written by `BatchWriter`; if present, not an answer.
                (ResultStatus::Cancelled, _, _) => true,
                (_, Some(id), _) => state.finished.ids.insert(id),
                (_, None, _) => return Err(corrupt("a result without custom_id".into())),
            };
            if !new {
                state.duplicates += 1;
            }
            state.records += 1;
            state.by_status[record.status.index()] += 1;
            if record.status.is_failure() {
                buf.push(b'\n');
                failures.write_all(&buf).await.map_err(io(tmp))?;
                state.failed += 1;
            }
            offset += len + 1;
        }
        if let Some((at, len)) = torn_at {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(output)
                .await
                .map_err(io(output))?;
            file.set_len(at).await.map_err(io(output))?;
            state.truncated_bytes = len;
        }
    }
    failures.flush().await.map_err(io(tmp))?;
    failures.sync_all().await.map_err(io(tmp))?;
    Ok(state)
}
