//! Parsing of the four streaming APIs into [`ProviderEvent`]s: the SSE
//! decoder plus one pure parser per API, driven incrementally by
//! [`ProviderDecoder`].
//!
//! # Guarantees
//!
//! - Exactly one terminal [`ProviderEvent::Done`] per stream, and nothing
//!   after it: bytes fed after the terminal event are ignored.
//! - A body that ends before the API's terminal event ends with
//!   `Done { status: Truncated }`, never with success.
//! - Event types the parser does not know are skipped, never fatal; but the
//!   data of every event must be JSON (Chat's `[DONE]` sentinel aside), known
//!   or not, and every event name valid UTF-8, so a corrupted stream is never
//!   read as a good one.
//! - A client tool call ends with one [`ProviderEvent::ToolCall`] (arguments
//!   parsed) or [`ProviderEvent::ToolCallInvalid`] after its deltas, unless
//!   the stream ends first.
//! - The events produced never depend on how the body was split into chunks.

mod anthropic;
mod chat;
mod gemini;
mod responses;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

pub(crate) use gemini::SYNTHETIC_CALL_ID_PREFIX;

use super::{Api, ProviderEvent, Status, ToolKind};
use crate::sse::{SseDecoder, SseError, SseEvent, DEFAULT_MAX_EVENT_BYTES};

impl Api {
    /// Every supported API, in a stable order.
    pub const ALL: [Api; 4] = [
        Api::OpenAiResponses,
        Api::OpenAiChat,
        Api::AnthropicMessages,
        Api::Gemini,
    ];

    /// The API's command-line and serde name: `openai-responses`,
    /// `openai-chat`, `anthropic-messages` or `gemini`.
    ///
    /// ```
    /// use demandflow_stages::provider::Api;
    ///
    /// assert_eq!(Api::OpenAiChat.as_str(), "openai-chat");
    /// assert_eq!("anthropic-messages".parse::<Api>().unwrap(), Api::AnthropicMessages);
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAiResponses => "openai-responses",
            Api::OpenAiChat => "openai-chat",
            Api::AnthropicMessages => "anthropic-messages",
            Api::Gemini => "gemini",
        }
    }

    /// The HTTP path the API streams from, relative to its base URL.
    /// Gemini's names the model: `{model}` stands for it, and the request
    /// adds the query `alt=sse`
    /// ([`ProviderConfig::endpoint`](super::ProviderConfig::endpoint) has
    /// the full URL).
    ///
    /// ```
    /// use demandflow_stages::provider::Api;
    ///
    /// assert_eq!(Api::OpenAiResponses.path(), "/v1/responses");
    /// assert_eq!(Api::Gemini.path(), "/v1beta/models/{model}:streamGenerateContent");
    /// ```
    pub fn path(self) -> &'static str {
        match self {
            Api::OpenAiResponses => "/v1/responses",
            Api::OpenAiChat => "/v1/chat/completions",
            Api::AnthropicMessages => "/v1/messages",
            Api::Gemini => "/v1beta/models/{model}:streamGenerateContent",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given to [`Api::from_str`] is not a supported API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown api `{name}` (expected openai-responses, openai-chat, anthropic-messages or gemini)"
)]
pub struct ParseApiError {
    name: String,
}

impl FromStr for Api {
    type Err = ParseApiError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Api::ALL
            .into_iter()
            .find(|api| api.as_str() == name)
            .ok_or_else(|| ParseApiError {
                name: name.to_owned(),
            })
    }
}

impl ProviderEvent {
    /// Whether this is the terminal [`ProviderEvent::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self, ProviderEvent::Done { .. })
    }
}

/// Why a provider stream could not be decoded.
///
/// After an error the [`ProviderDecoder`] stays failed and returns the same
/// error. A caller that must still end the stream with one terminal event can
/// use [`DecodeError::to_events`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    kind: DecodeErrorKind,
}

/// What went wrong in a [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// A line or one event's data went beyond the configured cap.
    #[error("sse line or event larger than {max} bytes")]
    EventTooLarge {
        /// The cap in bytes.
        max: usize,
    },
    /// The data of an event the parser needs is not the JSON it expects.
    #[error("invalid json in `{event}` event: {message}")]
    InvalidJson {
        /// The SSE event type (or the JSON `type`) being parsed.
        event: String,
        /// serde_json's description of the problem.
        message: String,
    },
    /// An event name (`event:` field) was not valid UTF-8. The SSE decoder
    /// replaces invalid bytes with U+FFFD (WHATWG), which would make the
    /// event an unknown type and skip it silently; no API's event names
    /// contain U+FFFD, so any such name is reported instead.
    #[error("event name is not valid UTF-8: `{name}`")]
    InvalidEventName {
        /// The name as decoded, invalid bytes shown as U+FFFD.
        name: String,
    },
}

impl DecodeError {
    /// What went wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// Whether a line or event was larger than the cap.
    pub fn is_event_too_large(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::EventTooLarge { .. })
    }

    /// Whether an event's JSON could not be parsed.
    pub fn is_invalid_json(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::InvalidJson { .. })
    }

    /// The events that end a stream that failed to decode: an
    /// [`ProviderEvent::Error`] of kind `decode_error` and a failed
    /// [`ProviderEvent::Done`].
    pub fn to_events(&self) -> [ProviderEvent; 2] {
        [
            ProviderEvent::Error {
                kind: "decode_error".to_owned(),
                message: self.to_string(),
            },
            ProviderEvent::Done {
                status: Status::Failed,
                stop_reason: None,
            },
        ]
    }

    pub(crate) fn invalid_json(event: &str, err: &serde_json::Error) -> Self {
        DecodeErrorKind::InvalidJson {
            event: event.to_owned(),
            message: err.to_string(),
        }
        .into()
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        Self { kind }
    }
}

impl From<SseError> for DecodeError {
    fn from(err: SseError) -> Self {
        match err {
            SseError::EventTooLarge { max } => DecodeErrorKind::EventTooLarge { max }.into(),
        }
    }
}

/// Parses `data` as JSON of type `T`, naming `event` in the error.
pub(crate) fn json<'a, T: Deserialize<'a>>(event: &str, data: &'a str) -> Result<T, DecodeError> {
    serde_json::from_str(data).map_err(|err| DecodeError::invalid_json(event, &err))
}

/// Checks that the data of an event the parser skips is JSON.
pub(crate) fn skip(event: &str, data: &str) -> Result<(), DecodeError> {
    json::<serde::de::IgnoredAny>(event, data).map(|_| ())
}

/// The JSON `type` field of an event, used when the SSE block carried no
/// `event:` line.
#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(borrow, default)]
    r#type: Option<std::borrow::Cow<'a, str>>,
}

/// The event's type: its SSE `event:` field, or the JSON `type` of its data
/// when the block had none (Responses and Messages both put it in both).
/// JSON without a `type` gives `message`, a type no parser knows, so such an
/// event is skipped like any unknown one; data that is not JSON is an error.
pub(crate) fn event_type(event: &SseEvent) -> Result<std::borrow::Cow<'_, str>, DecodeError> {
    if !event.is_message() {
        return Ok(std::borrow::Cow::Borrowed(&event.event));
    }
    let typed: TypeOnly<'_> = json("message", &event.data)?;
    Ok(typed
        .r#type
        .unwrap_or(std::borrow::Cow::Borrowed("message")))
}

/// The finished client tool call made of `arguments`: parsed JSON for a
/// function tool (`empty` when the model sent no argument text), the raw
/// text as a JSON string for a custom tool, or
/// [`ProviderEvent::ToolCallInvalid`] when function arguments do not parse.
pub(crate) fn finished_tool_call(
    index: usize,
    id: Option<String>,
    name: Option<String>,
    kind: ToolKind,
    arguments: String,
    empty: Option<serde_json::Value>,
) -> ProviderEvent {
    let id = id.unwrap_or_default();
    let name = name.unwrap_or_default();
    let parsed = match kind {
        ToolKind::Custom => Ok(serde_json::Value::String(arguments.clone())),
        _ if arguments.trim().is_empty() => {
            Ok(empty.unwrap_or_else(|| serde_json::Value::Object(Default::default())))
        }
        _ => serde_json::from_str(&arguments),
    };
    match parsed {
        Ok(arguments) => ProviderEvent::ToolCall {
            index,
            id,
            name,
            kind,
            arguments,
        },
        Err(err) => ProviderEvent::ToolCallInvalid {
            index,
            id,
            name,
            arguments,
            error: err.to_string(),
        },
    }
}

/// The per-API parser behind a [`ProviderDecoder`].
#[derive(Debug)]
enum Parser {
    Responses(responses::ResponsesParser),
    Chat(chat::ChatParser),
    Anthropic(anthropic::AnthropicParser),
    Gemini(gemini::GeminiParser),
}

impl Parser {
    fn new(api: Api) -> Self {
        match api {
            Api::OpenAiResponses => Parser::Responses(responses::ResponsesParser::default()),
            Api::OpenAiChat => Parser::Chat(chat::ChatParser::default()),
            Api::AnthropicMessages => Parser::Anthropic(anthropic::AnthropicParser::default()),
            Api::Gemini => Parser::Gemini(gemini::GeminiParser::default()),
        }
    }

    /// Handles one SSE event; returns whether it was terminal.
    fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ProviderEvent>,
    ) -> Result<bool, DecodeError> {
        match self {
            Parser::Responses(p) => p.on_event(event, out),
            Parser::Chat(p) => p.on_event(event, out),
            Parser::Anthropic(p) => p.on_event(event, out),
            Parser::Gemini(p) => p.on_event(event, out),
        }
    }

    /// The body ended with no terminal event: the terminal events an API
    /// whose stream ends with its body (Gemini) makes of what it saw, or
    /// `false` when the stream is truncated.
    fn on_end(&mut self, out: &mut Vec<ProviderEvent>) -> bool {
        match self {
            Parser::Gemini(p) => p.on_end(out),
            _ => false,
        }
    }
}

/// Incremental decoder of one provider response body: the SSE decoder plus
/// the API's parser.
///
/// ```
/// use demandflow_stages::provider::{Api, ProviderDecoder, ProviderEvent, Status};
///
/// let mut decoder = ProviderDecoder::new(Api::OpenAiChat);
/// let mut out = Vec::new();
/// decoder
///     .feed(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n", &mut out)
///     .unwrap();
/// decoder.feed(b"data: [DONE]\n\n", &mut out).unwrap();
/// decoder.finish(&mut out).unwrap();
/// // Chat has no start event: the first chunk starts the response.
/// assert_eq!(out[0], ProviderEvent::Start { id: None, model: None });
/// assert_eq!(out[1], ProviderEvent::TextDelta { text: "Hi".into() });
/// assert_eq!(out.last(), Some(&ProviderEvent::Done { status: Status::Completed, stop_reason: None }));
/// assert!(decoder.is_finished());
/// ```
#[derive(Debug)]
pub struct ProviderDecoder {
    api: Api,
    sse: SseDecoder,
    parser: Parser,
    /// Reused between feeds so decoding allocates no per-chunk vector.
    scratch: Vec<SseEvent>,
    finished: bool,
    failed: Option<DecodeError>,
}

impl ProviderDecoder {
    /// A decoder for `api` with the default 1 MiB cap per line and event.
    pub fn new(api: Api) -> Self {
        Self::with_max_event_bytes(api, DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder for `api` that rejects lines or events longer than `max`
    /// bytes with [`DecodeErrorKind::EventTooLarge`].
    pub fn with_max_event_bytes(api: Api, max: usize) -> Self {
        Self {
            api,
            sse: SseDecoder::with_max_event_bytes(max),
            parser: Parser::new(api),
            scratch: Vec::new(),
            finished: false,
            failed: None,
        }
    }

    /// The API this decoder parses.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Feeds body bytes; appends every normalised event completed by them to
    /// `out`.
    ///
    /// Events completed before an error are appended too. After the terminal
    /// event, further bytes are ignored (nothing follows `Done`); after an
    /// error, every call returns that error again.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<ProviderEvent>) -> Result<(), DecodeError> {
        if self.finished {
            return Ok(());
        }
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut events = std::mem::take(&mut self.scratch);
        let sse_result = self.sse.feed(chunk, &mut events);
        // The events decoded before an SSE error come first, so the outcome is
        // the same whichever chunk the error falls in.
        let result = self.parse(&events, out).and_then(|()| {
            if self.finished {
                Ok(())
            } else {
                sse_result.map_err(DecodeError::from)
            }
        });
        events.clear();
        self.scratch = events;
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// End of body: flushes; if no terminal event was seen, appends
    /// `Done { status: Truncated, stop_reason: None }` — except for Gemini,
    /// whose stream ends with its body: a Gemini stream that reported a
    /// `finishReason` (or a blocked prompt) ends with the outcome it stated.
    pub fn finish(&mut self, out: &mut Vec<ProviderEvent>) -> Result<(), DecodeError> {
        if self.finished {
            return Ok(());
        }
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut events = std::mem::take(&mut self.scratch);
        self.sse.finish(&mut events)?;
        self.parse(&events, out)?;
        events.clear();
        self.scratch = events;
        if !self.finished && self.parser.on_end(out) {
            self.finished = true;
        }
        if !self.finished {
            self.finished = true;
            out.push(ProviderEvent::Done {
                status: Status::Truncated,
                stop_reason: None,
            });
        }
        Ok(())
    }

    /// Whether a terminal [`ProviderEvent::Done`] has been emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn parse(
        &mut self,
        events: &[SseEvent],
        out: &mut Vec<ProviderEvent>,
    ) -> Result<(), DecodeError> {
        for event in events {
            if event.event.contains(char::REPLACEMENT_CHARACTER) {
                return Err(DecodeErrorKind::InvalidEventName {
                    name: event.event.clone(),
                }
                .into());
            }
            if self.parser.on_event(event, out)? {
                self.finished = true;
                break;
            }
        }
        Ok(())
    }
}

/// Ends a stream on an error object sent in its body (Chat, Gemini): one
/// `Error` whose kind is the API's own name for it, else its code, else
/// `error`, then a failed `Done`.
pub(super) fn push_stream_error(
    kind: Option<String>,
    code: Option<serde_json::Value>,
    message: Option<String>,
    out: &mut Vec<ProviderEvent>,
) {
    let kind = kind
        .or_else(|| match code {
            Some(serde_json::Value::Null) | None => None,
            Some(serde_json::Value::String(code)) => Some(code),
            Some(code) => Some(code.to_string()),
        })
        .unwrap_or_else(|| "error".to_owned());
    out.push(ProviderEvent::Error {
        kind,
        message: message.unwrap_or_default(),
    });
    out.push(ProviderEvent::Done {
        status: Status::Failed,
        stop_reason: None,
    });
}
