//! What the mock answers to a request: the scripted behaviours and faults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::request::ParsedRequest;
use crate::provider::Api;

/// How the mock answers one request.
///
/// Chosen per request: a JSON `x-mock-behaviour` request header wins, then the
/// next entry of the server's script ([`MockServer::script`]), then the
/// server's default ([`MockConfig::default_behaviour`]).
///
/// [`MockServer::script`]: crate::mock::MockServer::script
/// [`MockConfig::default_behaviour`]: crate::mock::MockConfig::default_behaviour
///
/// # Example
///
/// ```
/// use demandflow_stages::mock::{Behaviour, ErrorSpec, Fault, GenerateSpec};
///
/// // 529 with a retry hint, as Anthropic sends when overloaded.
/// let overloaded = Behaviour::Error(
///     ErrorSpec::anthropic(529, "overloaded_error", "Overloaded").header("retry-after-ms", "50"),
/// );
/// // 100 tokens, then an error event in the stream.
/// let failing = Behaviour::Generate(GenerateSpec::tokens(100).fault(Fault::ErrorEvent {
///     after: 10,
///     kind: "overloaded_error".into(),
///     message: "Overloaded".into(),
/// }));
/// // Both can also travel as JSON in an `x-mock-behaviour` header.
/// let json = serde_json::to_string(&failing).unwrap();
/// assert_eq!(serde_json::from_str::<Behaviour>(&json).unwrap(), failing);
/// # let _ = overloaded;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Behaviour {
    /// Generate a streamed answer in the API's own SSE format.
    Generate(GenerateSpec),
    /// Replay a recorded SSE transcript verbatim.
    Replay(ReplaySpec),
    /// Answer with an HTTP error (status, headers, provider-shaped body).
    Error(ErrorSpec),
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Generate(GenerateSpec::default())
    }
}

/// A generated streamed answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GenerateSpec {
    /// How many tokens the "model" wants to say; `None` is 64. When the
    /// request's `max_tokens` is smaller, the answer stops there with the
    /// API's incomplete / `length` / `max_tokens` ending.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Where the words come from.
    #[serde(default)]
    pub text: TextSource,
    /// Delays before and between events.
    #[serde(default)]
    pub pace: Pace,
    /// A fault to inject.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Say exactly the request's max tokens when it names them (`tokens`
    /// only when it does not), so the usage reported is the output charged
    /// by the rate limits ([`RateLimits`](crate::mock::RateLimits)).
    #[serde(default)]
    pub fill_max_tokens: bool,
}

impl GenerateSpec {
    /// An answer of `n` tokens, sent as fast as the client reads.
    pub fn tokens(n: u64) -> GenerateSpec {
        GenerateSpec {
            tokens: Some(n),
            ..GenerateSpec::default()
        }
    }

    /// Answers with the request's max tokens when it names them (see
    /// [`GenerateSpec::fill_max_tokens`](#structfield.fill_max_tokens)).
    pub fn fill_max_tokens(mut self) -> GenerateSpec {
        self.fill_max_tokens = true;
        self
    }

    /// The tokens to generate for `req`.
    pub(crate) fn wanted_tokens(&self, req: &ParsedRequest) -> Option<u64> {
        if self.fill_max_tokens {
            req.max_tokens.or(self.tokens)
        } else {
            self.tokens
        }
    }

    /// Sets the pacing.
    pub fn pace(mut self, pace: Pace) -> GenerateSpec {
        self.pace = pace;
        self
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> GenerateSpec {
        self.fault = Some(fault);
        self
    }

    /// Sets the text source.
    pub fn text(mut self, text: TextSource) -> GenerateSpec {
        self.text = text;
        self
    }
}

/// Where a generated answer's words come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TextSource {
    /// "lorem ipsum dolor ..." repeated.
    #[default]
    Lorem,
    /// The prompt's words, repeated (lorem when the prompt is empty).
    EchoPrompt,
}

/// A recorded transcript, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplaySpec {
    /// The bytes to send.
    pub transcript: Transcript,
    /// Split the transcript into chunks of this many bytes (`None`: one
    /// chunk). Pacing and faults count these chunks.
    #[serde(default)]
    pub chunk_bytes: Option<usize>,
    /// Delays before and between chunks.
    #[serde(default)]
    pub pace: Pace,
    /// A fault to inject; `after` counts chunks.
    #[serde(default)]
    pub fault: Option<Fault>,
}

impl ReplaySpec {
    /// Replays the `.sse` file at `path` (read when a request arrives; a
    /// missing file is answered with a 500).
    pub fn file(path: impl Into<PathBuf>) -> ReplaySpec {
        ReplaySpec::new(Transcript::File(path.into()))
    }

    /// Replays `bytes`.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> ReplaySpec {
        ReplaySpec::new(Transcript::Bytes(bytes.into()))
    }

    fn new(transcript: Transcript) -> ReplaySpec {
        ReplaySpec {
            transcript,
            chunk_bytes: None,
            pace: Pace::default(),
            fault: None,
        }
    }

    /// Sends the transcript in chunks of `n` bytes.
    pub fn chunk_bytes(mut self, n: usize) -> ReplaySpec {
        self.chunk_bytes = Some(n.max(1));
        self
    }

    /// Sets the pacing.
    pub fn pace(mut self, pace: Pace) -> ReplaySpec {
        self.pace = pace;
        self
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> ReplaySpec {
        self.fault = Some(fault);
        self
    }
}

/// The bytes of a replayed transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Transcript {
    /// A file, read when the request arrives.
    File(PathBuf),
    /// Bytes held in memory.
    Bytes(Vec<u8>),
}

/// Delays the mock puts into a streamed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pace {
    /// After the response headers, before the first event.
    #[serde(default, with = "millis")]
    pub first_event_delay: Duration,
    /// Between two events (a slow trickle). Zero sends as fast as the client
    /// reads, coalescing events into larger body chunks.
    #[serde(default, with = "millis")]
    pub event_delay: Duration,
}

impl Pace {
    /// A trickle: `delay` between events.
    pub fn trickle(delay: Duration) -> Pace {
        Pace {
            first_event_delay: Duration::ZERO,
            event_delay: delay,
        }
    }

    /// Waits `delay` before the first event.
    pub fn first_event_delay(mut self, delay: Duration) -> Pace {
        self.first_event_delay = delay;
        self
    }
}

/// A fault in a streamed body. `after` counts SSE events for generated
/// answers and chunks for replays: the fault happens once that many have
/// been sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Send the API's in-stream error event, then end the body.
    ErrorEvent {
        /// Events sent before the error.
        after: u64,
        /// The provider's error type (`overloaded_error`, `server_error`).
        kind: String,
        /// The message.
        message: String,
    },
    /// End the body cleanly (proper chunked end) without a terminal event.
    Truncate {
        /// Events or chunks sent first.
        after: u64,
    },
    /// Abort the connection mid-body (no chunked terminator).
    Abort {
        /// Events or chunks sent first.
        after: u64,
    },
    /// Stop sending and keep the connection open until the client leaves.
    Stall {
        /// Events or chunks sent first.
        after: u64,
    },
}

impl Fault {
    pub(crate) fn after(&self) -> u64 {
        match self {
            Fault::ErrorEvent { after, .. }
            | Fault::Truncate { after }
            | Fault::Abort { after }
            | Fault::Stall { after } => *after,
        }
    }
}

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorSpec {
    /// The HTTP status.
    pub status: u16,
    /// Extra response headers (`retry-after`, `x-should-retry`, ...).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, sent as `application/json` when it parses as JSON.
    #[serde(default)]
    pub body: Option<String>,
}

impl ErrorSpec {
    /// A status with no body.
    pub fn status(status: u16) -> ErrorSpec {
        ErrorSpec {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// An OpenAI-shaped error: `{"error":{message,type,param,code}}`.
    pub fn openai(status: u16, kind: &str, code: Option<&str>, message: &str) -> ErrorSpec {
        let body = serde_json::json!({
            "error": {"message": message, "type": kind, "param": null, "code": code}
        });
        ErrorSpec::status(status).body(body.to_string())
    }

    /// An Anthropic-shaped error: `{"type":"error","error":{type,message}}`.
    pub fn anthropic(status: u16, kind: &str, message: &str) -> ErrorSpec {
        let body = serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_mock"
        });
        ErrorSpec::status(status).body(body.to_string())
    }

    /// A Google-shaped error (Gemini): `{"error":{code,message,status}}`,
    /// `status` the canonical name of the HTTP status (`RESOURCE_EXHAUSTED`
    /// for 429, `UNAVAILABLE` for 503, …).
    pub fn gemini(status: u16, message: &str) -> ErrorSpec {
        let body = serde_json::json!({
            "error": {"code": status, "message": message, "status": google_status(status)}
        });
        ErrorSpec::status(status).body(body.to_string())
    }

    /// The error shape of `api` (Gemini's has no `kind`: its `status` comes
    /// from the HTTP status).
    pub fn for_api(api: Api, status: u16, kind: &str, message: &str) -> ErrorSpec {
        match api {
            Api::AnthropicMessages => ErrorSpec::anthropic(status, kind, message),
            Api::Gemini => ErrorSpec::gemini(status, message),
            _ => ErrorSpec::openai(status, kind, None, message),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> ErrorSpec {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<String>) -> ErrorSpec {
        self.body = Some(body.into());
        self
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The canonical Google RPC status name of an HTTP status.
pub(crate) fn google_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}
