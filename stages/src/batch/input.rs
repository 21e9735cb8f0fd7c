//! The input of `demandflow batch`: OpenAI Batch API and Anthropic Message
//! Batches JSONL lines, read as a stream and validated one line at a time.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;

use futures::Stream;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::AsyncBufRead;

use super::line::{read_capped_line, Line};
use super::resume::Finished;
use crate::provider::Api;

/// The longest input line read (8 MiB): a longer one is a [`LineError`] of
/// kind [`LineErrorKind::TooLong`], skipped without being held in memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// The file format a line was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InputFormat {
    /// OpenAI Batch API: `{"custom_id", "method": "POST", "url", "body"}`;
    /// `url` is `/v1/chat/completions` or `/v1/responses` and names the API.
    OpenAiBatch,
    /// Anthropic Message Batches: `{"custom_id", "params"}` (one element of
    /// the `requests` array of `POST /v1/messages/batches`), for Anthropic
    /// Messages.
    AnthropicBatch,
}

/// One valid input line: a request to send.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BatchItem {
    /// Its 1-based line number in the input.
    pub line: u64,
    /// The caller's id for it, unique in the input; the result line quotes
    /// it.
    pub custom_id: String,
    /// The API the request is for (from the OpenAI line's `url`; Anthropic
    /// Messages for an Anthropic line).
    pub api: Api,
    /// The format of the line.
    pub format: InputFormat,
    /// The request body as given (`body` or `params`): the API's own
    /// request object, `model`, `messages`, `max_tokens` and the rest.
    pub body: Map<String, Value>,
}

/// Why an input line is not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineErrorKind {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is not valid JSON.
    InvalidJson,
    /// The line is longer than the cap ([`DEFAULT_MAX_LINE_BYTES`]).
    TooLong,
    /// The line is JSON but not an object.
    NotAnObject,
    /// The object is neither an OpenAI Batch line (`body`, `url`,
    /// `method`) nor an Anthropic one (`params`), or has keys of both.
    UnknownFormat,
    /// No `custom_id`.
    MissingCustomId,
    /// `custom_id` is not a string, or is empty.
    InvalidCustomId,
    /// An earlier line has the same `custom_id` (the later line is the
    /// error; the earlier one is sent).
    DuplicateCustomId,
    /// An OpenAI line whose `method` is missing or not `POST`.
    InvalidMethod,
    /// An OpenAI line whose `url` is missing or not one demandflow sends
    /// (`/v1/chat/completions`, `/v1/responses`).
    UnsupportedUrl,
    /// `body` or `params` is missing or not an object.
    InvalidBody,
    /// The line is for another API than the batch (`--api`, or the API of
    /// the first valid line).
    ApiMismatch,
}

impl LineErrorKind {
    /// The snake_case name, as serialized (`invalid_json`, `too_long`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LineErrorKind::InvalidUtf8 => "invalid_utf8",
            LineErrorKind::InvalidJson => "invalid_json",
            LineErrorKind::TooLong => "too_long",
            LineErrorKind::NotAnObject => "not_an_object",
            LineErrorKind::UnknownFormat => "unknown_format",
            LineErrorKind::MissingCustomId => "missing_custom_id",
            LineErrorKind::InvalidCustomId => "invalid_custom_id",
            LineErrorKind::DuplicateCustomId => "duplicate_custom_id",
            LineErrorKind::InvalidMethod => "invalid_method",
            LineErrorKind::UnsupportedUrl => "unsupported_url",
            LineErrorKind::InvalidBody => "invalid_body",
            LineErrorKind::ApiMismatch => "api_mismatch",
        }
    }
}

impl fmt::Display for LineErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A malformed input line: reported with its line number, written to the
/// output and the failures file with status `invalid`, and the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
#[non_exhaustive]
pub struct LineError {
    /// The 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub kind: LineErrorKind,
    /// The line's `custom_id`, when it has a usable one.
    pub custom_id: Option<String>,
    /// A sentence for people, without the line number.
    pub message: String,
}

/// One non-blank input line: its number and what it holds.
pub type BatchLine = (u64, Result<BatchItem, LineError>);

/// What [`BatchReader`] has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct ReadStats {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Blank lines (only whitespace), skipped.
    pub blank: u64,
    /// Lines left out because the output already has their result
    /// ([`BatchReader::skip`]).
    pub skipped: u64,
    /// Valid requests handed out.
    pub items: u64,
    /// Malformed lines handed out.
    pub invalid: u64,
}

/// Where the batch's API came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiOrigin {
    Flag,
    Line(u64),
}

/// Reads a batch input file line by line from any [`AsyncBufRead`], never
/// holding more than one line (at most `max_line_bytes`) of it.
///
/// Every non-blank line gives one [`BatchLine`]: a [`BatchItem`] to send,
/// or a [`LineError`]; a malformed line never stops the reading. Blank lines
/// are skipped. Lines whose result the output already holds
/// ([`BatchReader::skip`]) are validated like the others, so the
/// duplicate and API checks decide the same as in an uninterrupted run,
/// and then left out.
///
/// All requests of one batch are for one API: `--api`
/// ([`BatchReader::api`]) or, without it, the API of the first valid line.
/// A line for another API is a [`LineErrorKind::ApiMismatch`] error, so a
/// file mixing Chat and Responses lines sends the first kind and reports the
/// others.
///
/// Memory: one line buffer, plus each distinct `custom_id` and its line
/// number (for the duplicate check), about 40 bytes plus the id's length
/// per request; given the [`prescan`]'s [`RepeatedIds`]
/// ([`BatchReader::repeated_ids`]), only the ids that may occur twice,
/// none in a file without duplicates.
///
/// ```
/// use demandflow_stages::batch::{BatchReader, LineErrorKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let input = br#"{"custom_id":"a","params":{"model":"m","max_tokens":8,"messages":[]}}
///
/// {"custom_id":"a","params":{}}
/// not json
/// "#;
/// let mut reader = BatchReader::new(&input[..]);
/// let (line, item) = reader.next().await?.unwrap();
/// assert_eq!((line, item.unwrap().custom_id.as_str()), (1, "a"));
/// let (line, err) = reader.next().await?.unwrap();
/// assert_eq!((line, err.unwrap_err().kind), (3, LineErrorKind::DuplicateCustomId));
/// let (line, err) = reader.next().await?.unwrap();
/// assert_eq!((line, err.unwrap_err().kind), (4, LineErrorKind::InvalidJson));
/// assert!(reader.next().await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BatchReader<R> {
    reader: R,
    buf: Vec<u8>,
    line: u64,
    max_line_bytes: usize,
    api: Option<(Api, ApiOrigin)>,
    seen: HashMap<Box<str>, u64>,
    /// `Some`: only ids these may match are remembered in `seen`.
    repeated: Option<RepeatedIds>,
    finished: Finished,
    ended: bool,
    stats: ReadStats,
}

impl<R: AsyncBufRead + Unpin> BatchReader<R> {
    /// A reader of `reader`, with the default line cap, the API taken from
    /// the first valid line, and nothing skipped.
    pub fn new(reader: R) -> BatchReader<R> {
        BatchReader {
            reader,
            buf: Vec::new(),
            line: 0,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            api: None,
            seen: HashMap::new(),
            repeated: None,
            finished: Finished::default(),
            ended: false,
            stats: ReadStats::default(),
        }
    }

    /// Requires every line to be for `api` (`--api`).
    pub fn api(mut self, api: Api) -> BatchReader<R> {
        self.api = Some((api, ApiOrigin::Flag));
        self
    }

    /// Caps the length of a line (default [`DEFAULT_MAX_LINE_BYTES`]).
    pub fn max_line_bytes(mut self, max: usize) -> BatchReader<R> {
        self.max_line_bytes = max;
        self
    }

    /// Leaves out the lines whose result is already in the output (from
    /// [`resume`](super::resume)): requests by `custom_id`, malformed lines
    /// by line number.
    pub fn skip(mut self, finished: Finished) -> BatchReader<R> {
        self.finished = finished;
        self
    }

    /// Remembers for the duplicate check only the ids that `repeated`
    /// (from the [`prescan`] of the same input) says may occur on more than
    /// one line: any other id occurs once in the whole input, so it can be
    /// neither a duplicate nor the first use of one. The verdicts are those
    /// of a reader remembering every id, as long as the input is the one
    /// that was prescanned; the memory is that of the repeated ids alone.
    pub fn repeated_ids(mut self, repeated: RepeatedIds) -> BatchReader<R> {
        self.repeated = Some(repeated);
        self
    }

    /// How many ids the duplicate check holds now (see
    /// [`BatchReader::repeated_ids`]).
    pub fn remembered_ids(&self) -> usize {
        self.seen.len()
    }

    /// The batch's API: the one given to [`BatchReader::api`], or the one of
    /// the first valid line once it has been read.
    pub fn current_api(&self) -> Option<Api> {
        self.api.map(|(api, _)| api)
    }

    /// What has been read so far.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The next non-blank, not skipped line, or `None` at the end of the
    /// input. An I/O error ends the reading (the next call returns `None`):
    /// it is not a property of a line, so it is returned as an error rather
    /// than as a [`LineError`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future in the middle of a line loses
    /// that line.
    pub async fn next(&mut self) -> io::Result<Option<BatchLine>> {
        while !self.ended {
            let read = read_capped_line(&mut self.reader, &mut self.buf, self.max_line_bytes).await;
            let read = match read {
                Ok(read) => read,
                Err(err) => {
                    self.ended = true;
                    return Err(err);
                }
            };
            let line = self.line + 1;
            let result = match read {
                Line::Eof => {
                    self.ended = true;
                    return Ok(None);
                }
                Line::TooLong { len, .. } => Err(LineError {
                    line,
                    kind: LineErrorKind::TooLong,
                    custom_id: None,
                    message: format!(
                        "the line is {len} bytes long, more than the limit of {} bytes",
                        self.max_line_bytes
                    ),
                }),
                Line::Whole { .. } => {
                    let mut bytes = &self.buf[..];
                    if line == 1 {
                        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                    }
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        self.line = line;
                        self.stats.lines += 1;
                        self.stats.blank += 1;
                        continue;
                    }
                    self.validate(line)
                }
            };
            self.line = line;
            self.stats.lines += 1;
            let skip = match &result {
                Ok(item) => self.finished.ids.contains(item.custom_id.as_str()),
                Err(_) => self.finished.lines.contains(&line),
            };
            if skip {
                self.stats.skipped += 1;
                continue;
            }
            match result {
                Ok(_) => self.stats.items += 1,
                Err(_) => self.stats.invalid += 1,
            }
            return Ok(Some((line, result)));
        }
        Ok(None)
    }

    /// Validates the line in the buffer: its shape, then the checks that
    /// depend on earlier lines (duplicates, the batch's API).
    fn validate(&mut self, line: u64) -> Result<BatchItem, LineError> {
        let mut bytes = &self.buf[..];
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let (custom_id, parsed) = parse_line(bytes, line)?;
        // Every usable id is remembered, even on a line with other errors,
        // so which line is the duplicate does not depend on the others;
        // an id the prescan saw once is on no other line.
        let may_repeat = self
            .repeated
            .as_ref()
            .is_none_or(|r| r.may_repeat(&custom_id));
        match self.seen.get(custom_id.as_str()) {
            Some(&first) => {
                return Err(LineError {
                    line,
                    kind: LineErrorKind::DuplicateCustomId,
                    message: format!(
                        "custom_id {} was already used on line {first}",
                        quote(&custom_id)
                    ),
                    custom_id: Some(custom_id),
                })
            }
            None if may_repeat => {
                self.seen.insert(custom_id.clone().into_boxed_str(), line);
            }
            None => {}
        }
        let (api, format, body) = parsed.map_err(|(kind, message)| LineError {
            line,
            kind,
            custom_id: Some(custom_id.clone()),
            message,
        })?;
        match self.api {
            None => self.api = Some((api, ApiOrigin::Line(line))),
            Some((want, origin)) if want != api => {
                let from = match origin {
                    ApiOrigin::Flag => "--api".to_string(),
                    ApiOrigin::Line(n) => format!("the first valid line ({n})"),
                };
                return Err(LineError {
                    line,
                    kind: LineErrorKind::ApiMismatch,
                    custom_id: Some(custom_id),
                    message: format!(
                        "the line is for {} but the batch is for {} (from {from}); one batch sends to one API",
                        api.as_str(),
                        want.as_str()
                    ),
                });
            }
            Some(_) => {}
        }
        Ok(BatchItem {
            line,
            custom_id,
            api,
            format,
            body,
        })
    }

    /// The lines as a [`Stream`], for [`demandflow::source::from_stream`].
    /// It ends after the last line, or after an I/O error.
    pub fn into_stream(self) -> impl Stream<Item = io::Result<BatchLine>> + Send + 'static
    where
        R: Send + 'static,
    {
        futures::stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            match reader.next().await {
                Ok(Some(line)) => Some((Ok(line), Some(reader))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }
}

/// A `custom_id` for a message: JSON-quoted, and shortened if very long.
fn quote(id: &str) -> String {
    const MAX: usize = 80;
    if id.len() <= MAX {
        return serde_json::to_string(id).unwrap_or_default();
    }
    let mut end = MAX;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", serde_json::to_string(&id[..end]).unwrap_or_default())
}

/// A line's shape once its `custom_id` is known: the request, or the kind
/// and message of what is wrong.
type Shape = Result<(Api, InputFormat, Map<String, Value>), (LineErrorKind, String)>;

/// Checks one line on its own (no duplicate or API checks). The error
/// comes first when the line has no usable `custom_id`; otherwise the id
/// is returned with the rest of the verdict.
fn parse_line(bytes: &[u8], line: u64) -> Result<(String, Shape), LineError> {
    let fail = |kind, message: String| LineError {
        line,
        kind,
        custom_id: None,
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        fail(
            LineErrorKind::InvalidUtf8,
            format!("the line is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        fail(
            LineErrorKind::InvalidJson,
            format!("the line is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(fail(
            LineErrorKind::NotAnObject,
            format!("the line is a JSON {}, not an object", type_name(&value)),
        ));
    };
    let custom_id = match object.remove("custom_id") {
        None => {
            return Err(fail(
                LineErrorKind::MissingCustomId,
                "the line has no custom_id".into(),
            ))
        }
        Some(Value::String(id)) if id.is_empty() => {
            return Err(fail(
                LineErrorKind::InvalidCustomId,
                "custom_id is empty".into(),
            ))
        }
        Some(Value::String(id)) => id,
        Some(other) => {
            return Err(fail(
                LineErrorKind::InvalidCustomId,
                format!("custom_id is a {}, not a string", type_name(&other)),
            ))
        }
    };
    Ok((custom_id, shape(object)))
}

fn shape(mut object: Map<String, Value>) -> Shape {
    let openai = ["body", "url", "method"]
        .iter()
        .any(|k| object.contains_key(*k));
    let anthropic = object.contains_key("params");
    match (openai, anthropic) {
        (true, true) => Err((
            LineErrorKind::UnknownFormat,
            "the line has both params (Anthropic Message Batches) and body/url/method (OpenAI Batch API)".into(),
        )),
        (false, false) => Err((
            LineErrorKind::UnknownFormat,
            "the line has neither body, url and method (OpenAI Batch API) nor params (Anthropic Message Batches)".into(),
        )),
        (false, true) => match object.remove("params") {
            Some(Value::Object(params)) => Ok((Api::AnthropicMessages, InputFormat::AnthropicBatch, params)),
            other => Err(not_an_object("params", other.as_ref())),
        },
        (true, false) => {
            match object.get("method") {
                Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => {}
                Some(other) => {
                    return Err((
                        LineErrorKind::InvalidMethod,
                        format!("method is {other}; only \"POST\" is supported"),
                    ))
                }
                None => {
                    return Err((
                        LineErrorKind::InvalidMethod,
                        "the line has no method (OpenAI Batch lines have \"method\": \"POST\")".into(),
                    ))
                }
            }
            let api = match object.get("url") {
                Some(Value::String(url)) => match url.as_str() {
                    "/v1/chat/completions" => Api::OpenAiChat,
                    "/v1/responses" => Api::OpenAiResponses,
                    _ => {
                        return Err((
                            LineErrorKind::UnsupportedUrl,
                            format!(
                                "url {} is not supported; demandflow batch sends /v1/chat/completions and /v1/responses",
                                quote(url)
                            ),
                        ))
                    }
                },
                Some(other) => {
                    return Err((
                        LineErrorKind::UnsupportedUrl,
                        format!("url is a {}, not a string", type_name(other)),
                    ))
                }
                None => {
                    return Err((
                        LineErrorKind::UnsupportedUrl,
                        "the line has no url (/v1/chat/completions or /v1/responses)".into(),
                    ))
                }
            };
            match object.remove("body") {
                Some(Value::Object(body)) => Ok((api, InputFormat::OpenAiBatch, body)),
                other => Err(not_an_object("body", other.as_ref())),
            }
        }
    }
}

fn not_an_object(key: &str, value: Option<&Value>) -> (LineErrorKind, String) {
    let message = match value {
        None => format!("the line has no {key}"),
        Some(v) => format!("{key} is a {}, not an object", type_name(v)),
    };
    (LineErrorKind::InvalidBody, message)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The `custom_id`s that may occur on more than one line of an input, found
/// by [`prescan`], for [`BatchReader::repeated_ids`]: held as 64-bit
/// fingerprints, so two different ids may share one and both count as
/// possibly repeated (the reader then compares the ids themselves: the
/// verdicts stay exact, only a little memory is spent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepeatedIds(HashSet<u64>);

impl RepeatedIds {
    /// Whether `id` may occur on more than one line.
    pub fn may_repeat(&self, id: &str) -> bool {
        self.0.contains(&fingerprint(id))
    }

    /// How many fingerprints are held (0 for an input whose ids are all
    /// distinct, barring a collision).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no id may repeat.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fingerprints that occur more than once in `prints` (sorted in
    /// place).
    fn of(prints: &mut [u64]) -> RepeatedIds {
        prints.sort_unstable();
        RepeatedIds(
            prints
                .windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| w[0])
                .collect(),
        )
    }
}

/// A `custom_id`'s fingerprint: `DefaultHasher::new()` is the same hasher
/// in the prescan and the reader of one process.
fn fingerprint(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// What a pre-count pass over the input found ([`prescan`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Prescan {
    /// Non-blank lines: each gives one result line, a request or an
    /// `invalid` one, so this is the progress total.
    pub lines: u64,
    /// Blank lines.
    pub blank: u64,
    /// The API of the first line that is a valid request on its own (what
    /// [`BatchReader`] takes as the batch's API without `--api`).
    pub api: Option<Api>,
    /// The ids that may occur on more than one line, for
    /// [`BatchReader::repeated_ids`].
    pub repeated_ids: RepeatedIds,
}

/// Counts the input's non-blank lines (the progress total) and finds the
/// batch's API, and the ids that may repeat, reading the input as a
/// stream. Every line is parsed (as [`BatchReader`] will parse it) for its
/// `custom_id`, whose 64-bit fingerprint is kept until the end: 8 bytes a
/// line for the length of the pass (8 MB for a million lines), then only
/// the [`RepeatedIds`].
///
/// # Cancel safety
///
/// Cancel safe in the sense that dropping it loses nothing but the count;
/// the reader is consumed.
pub async fn prescan<R: AsyncBufRead + Unpin>(
    mut reader: R,
    max_line_bytes: usize,
) -> io::Result<Prescan> {
    let mut scan = Prescan::default();
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut prints = Vec::new();
    loop {
        let read = read_capped_line(&mut reader, &mut buf, max_line_bytes).await?;
        line += 1;
        let mut bytes = &buf[..];
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        match read {
            Line::Eof => {
                scan.repeated_ids = RepeatedIds::of(&mut prints);
                return Ok(scan);
            }
            Line::TooLong { .. } => scan.lines += 1,
            Line::Whole { .. } if bytes.iter().all(u8::is_ascii_whitespace) => scan.blank += 1,
            Line::Whole { .. } => {
                scan.lines += 1;
                if let Ok((id, shape)) = parse_line(bytes, line) {
                    prints.push(fingerprint(&id));
                    if let (None, Ok((api, _, _))) = (scan.api, shape) {
                        scan.api = Some(api);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    async fn read_all(
        input: &[u8],
        chunk: usize,
        reader: impl FnOnce(
            BatchReader<tokio::io::BufReader<&[u8]>>,
        ) -> BatchReader<tokio::io::BufReader<&[u8]>>,
    ) -> (Vec<BatchLine>, ReadStats) {
        let mut r = reader(BatchReader::new(tokio::io::BufReader::with_capacity(
            chunk, input,
        )));
        let mut out = Vec::new();
        while let Some(line) = r.next().await.unwrap() {
            out.push(line);
        }
        (out, r.stats())
    }

    fn kinds(lines: &[BatchLine]) -> Vec<(u64, Result<String, LineErrorKind>)> {
        lines
            .iter()
            .map(|(n, r)| {
                (
                    *n,
                    r.as_ref().map(|i| i.custom_id.clone()).map_err(|e| e.kind),
                )
            })
            .collect()
    }

    #[test]
    fn each_malformed_line_is_reported_with_its_kind_and_number() {
        let input = [
            r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#,
            r#"{"custom_id":"b","method":"GET","url":"/v1/chat/completions","body":{}}"#,
            r#"{"custom_id":"c","method":"POST","url":"/v1/embeddings","body":{}}"#,
            r#"{"custom_id":"d","method":"POST","url":"/v1/chat/completions","body":"x"}"#,
            r#"{"custom_id":"","params":{}}"#,
            r#"{"custom_id":7,"params":{}}"#,
            r#"{"params":{}}"#,
            r#"[1]"#,
            r#"{"custom_id":"e"}"#,
            r#"{"custom_id":"f","params":{},"body":{}}"#,
            r#"{"custom_id":"g","params":{}}"#,
            r#"{"custom_id":"h","method":"POST","url":"/v1/responses","body":{}}"#,
            r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}"#,
            "{\"custom_id\":\"i@\"}",
            r#"{"custom_id": "j", "#,
            r#"{"custom_id":"k","method":"POST","url":"/v1/chat/completions"}"#,
            r#"{"custom_id":"l","method":"POST","body":{}}"#,
        ]
        .join("\n")
        .replace('@', "\u{1}");
        // Line 14 gets a byte that is never valid UTF-8.
        let input: Vec<u8> = input
            .bytes()
            .map(|b| if b == 1 { 0xff } else { b })
            .collect();
        let (lines, stats) = block_on(read_all(&input, 7, |r| r));
        use LineErrorKind::*;
        let want: Vec<(u64, Result<String, LineErrorKind>)> = vec![
            (1, Ok("a".into())),
            (2, Err(InvalidMethod)),
            (3, Err(UnsupportedUrl)),
            (4, Err(InvalidBody)),
            (5, Err(InvalidCustomId)),
            (6, Err(InvalidCustomId)),
            (7, Err(MissingCustomId)),
            (8, Err(NotAnObject)),
            (9, Err(UnknownFormat)),
            (10, Err(UnknownFormat)),
            (11, Err(ApiMismatch)),
            (12, Err(ApiMismatch)),
            (13, Err(DuplicateCustomId)),
            (14, Err(InvalidUtf8)),
            (15, Err(InvalidJson)),
            (16, Err(InvalidBody)),
            (17, Err(UnsupportedUrl)),
        ];
        assert_eq!(kinds(&lines), want);
        assert_eq!(stats.items, 1);
        assert_eq!(stats.invalid, 16);
        let dup = lines[12].1.as_ref().unwrap_err();
        assert_eq!(
            dup.to_string(),
            "line 13: custom_id \"a\" was already used on line 1"
        );
        assert_eq!(dup.custom_id.as_deref(), Some("a"));
        let mismatch = lines[10].1.as_ref().unwrap_err();
        assert!(
            mismatch.message.contains("anthropic-messages"),
            "{mismatch}"
        );
        assert!(
            mismatch
                .message
                .contains("openai-chat (from the first valid line (1))"),
            "{mismatch}"
        );
    }

    #[test]
    fn both_formats_give_their_api_and_the_body_as_given() {
        let input = concat!(
            "\u{feff}{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/responses\",\"body\":{\"model\":\"m\",\"input\":\"hi\"}}\r\n",
            "   \n",
            "{\"custom_id\":\"y\",\"params\":{\"model\":\"c\",\"max_tokens\":5,\"messages\":[]}}",
        );
        let (lines, stats) = block_on(read_all(input.as_bytes(), 3, |r| {
            r.api(Api::OpenAiResponses)
        }));
        let first = lines[0].1.as_ref().unwrap();
        assert_eq!(first.api, Api::OpenAiResponses);
        assert_eq!(first.format, InputFormat::OpenAiBatch);
        assert_eq!(
            Value::Object(first.body.clone()),
            json!({"model":"m","input":"hi"})
        );
        let second = lines[1].1.as_ref().unwrap_err();
        assert_eq!((lines[1].0, second.kind), (3, LineErrorKind::ApiMismatch));
        assert!(second.message.contains("(from --api)"), "{second}");
        assert_eq!(stats.blank, 1);

        let (lines, _) = block_on(read_all(input.as_bytes(), 64, |r| {
            r.api(Api::AnthropicMessages)
        }));
        let anthropic = lines[1].1.as_ref().unwrap();
        assert_eq!(
            (anthropic.api, anthropic.format),
            (Api::AnthropicMessages, InputFormat::AnthropicBatch)
        );
        assert_eq!(
            Value::Object(anthropic.body.clone()),
            json!({"model":"c","max_tokens":5,"messages":[]})
        );
    }

    #[test]
    fn an_over_long_line_is_an_error_and_the_next_line_is_read() {
        let long = format!(
            "{{\"custom_id\":\"big\",\"params\":{{\"p\":\"{}\"}}}}",
            "x".repeat(500)
        );
        let input = format!("{long}\n{{\"custom_id\":\"ok\",\"params\":{{}}}}\n");
        let (lines, _) = block_on(read_all(input.as_bytes(), 16, |r| r.max_line_bytes(100)));
        assert_eq!(
            kinds(&lines),
            vec![(1, Err(LineErrorKind::TooLong)), (2, Ok("ok".into()))]
        );
        assert!(lines[0]
            .1
            .as_ref()
            .unwrap_err()
            .message
            .contains(&format!("{} bytes long", long.len())));
    }

    #[test]
    fn finished_lines_are_validated_then_left_out() {
        let input = concat!(
            "{\"custom_id\":\"a\",\"params\":{}}\n",
            "oops\n",
            "{\"custom_id\":\"b\",\"params\":{}}\n",
            "{\"custom_id\":\"a\",\"params\":{}}\n",
        );
        let mut finished = Finished::default();
        finished.ids.insert("a".into());
        finished.lines.insert(2);
        let (lines, stats) = block_on(read_all(input.as_bytes(), 5, |r| r.skip(finished)));
        // "a" is done but still counts for the duplicate check on line 4.
        assert_eq!(
            kinds(&lines),
            vec![
                (3, Ok("b".into())),
                (4, Err(LineErrorKind::DuplicateCustomId))
            ]
        );
        assert_eq!(stats.skipped, 2);
    }

    #[test]
    fn prescan_counts_non_blank_lines_and_finds_the_api() {
        let input = "\n  \nbad\n{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/responses\",\"body\":{}}\n{\"custom_id\":\"b\",\"params\":{}}";
        let scan = block_on(prescan(
            tokio::io::BufReader::with_capacity(4, input.as_bytes()),
            1024,
        ))
        .unwrap();
        assert_eq!(
            scan,
            Prescan {
                lines: 3,
                blank: 2,
                api: Some(Api::OpenAiResponses),
                repeated_ids: RepeatedIds::default(),
            }
        );
    }

    /// A line of the model: what to write, and what the reader must make of
    /// it given the lines before.
    #[derive(Debug, Clone)]
    enum Gen {
        Chat(u8),
        Anthropic(u8),
        Blank,
        Garbage,
        Long,
    }

    fn gen() -> impl Strategy<Value = Gen> {
        prop_oneof![
            4 => (0u8..12).prop_map(Gen::Chat),
            2 => (0u8..12).prop_map(Gen::Anthropic),
            1 => Just(Gen::Blank),
            1 => Just(Gen::Garbage),
            1 => Just(Gen::Long),
        ]
    }

    proptest! {
        /// Against a model: every non-blank line gives exactly one result
        /// with its line number; the first use of an id is the request and
        /// later ones are duplicates; lines of another API than the first
        /// valid one are mismatches; the chunking of the input changes
        /// nothing; and the prescan count equals the results.
        #[test]
        fn reader_matches_the_model(lines in proptest::collection::vec(gen(), 0..30), chunk in 1usize..40) {
            let cap = 120;
            let mut text = String::new();
            let mut want = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut api = None;
            for (i, g) in lines.iter().enumerate() {
                let n = i as u64 + 1;
                let (line, verdict) = match g {
                    Gen::Chat(id) | Gen::Anthropic(id) => {
                        let chat = matches!(g, Gen::Chat(_));
                        let line = if chat {
                            format!(r#"{{"custom_id":"r{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"m"}}}}"#)
                        } else {
                            format!(r#"{{"custom_id":"r{id}","params":{{"model":"m"}}}}"#)
                        };
                        let this = if chat { Api::OpenAiChat } else { Api::AnthropicMessages };
                        let verdict = if !seen.insert(*id) {
                            Err(LineErrorKind::DuplicateCustomId)
                        } else if api.is_some_and(|a| a != this) {
                            Err(LineErrorKind::ApiMismatch)
                        } else {
                            api = Some(this);
                            Ok(format!("r{id}"))
                        };
                        (line, Some(verdict))
                    }
                    Gen::Blank => (" ".to_string(), None),
                    Gen::Garbage => ("{nope".to_string(), Some(Err(LineErrorKind::InvalidJson))),
                    Gen::Long => ("y".repeat(cap + 1), Some(Err(LineErrorKind::TooLong))),
                };
                text.push_str(&line);
                text.push('\n');
                if let Some(v) = verdict {
                    want.push((n, v));
                }
            }
            let (got, _) = block_on(read_all(text.as_bytes(), chunk, |r| r.max_line_bytes(cap)));
            prop_assert_eq!(kinds(&got), want.clone());
            let scan = block_on(prescan(tokio::io::BufReader::with_capacity(chunk, text.as_bytes()), cap)).unwrap();
            prop_assert_eq!(scan.lines, want.len() as u64);
            // Remembering only the prescan's repeated ids decides the same,
            // and remembers exactly the ids used more than once.
            let mut uses = std::collections::HashMap::new();
            for g in &lines {
                if let Gen::Chat(id) | Gen::Anthropic(id) = g {
                    *uses.entry(*id).or_insert(0) += 1;
                }
            }
            let repeated = uses.values().filter(|&&n| n > 1).count();
            prop_assert_eq!(scan.repeated_ids.len(), repeated);
            let mut r = BatchReader::new(tokio::io::BufReader::with_capacity(chunk, text.as_bytes()))
                .max_line_bytes(cap)
                .repeated_ids(scan.repeated_ids.clone());
            let mut got = Vec::new();
            while let Some(line) = block_on(r.next()).unwrap() {
                got.push(line);
            }
            prop_assert_eq!(kinds(&got), want);
            prop_assert_eq!(r.remembered_ids(), repeated);
        }
    }
}
