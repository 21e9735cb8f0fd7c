//! Typed errors of the HTTP provider producers.
//!
//! No error ever contains the API key: messages taken from the network (a
//! provider's error body, a transport error) pass through [`redact`] before
//! they are stored.

use std::fmt;
use std::time::Duration;

use super::config::ApiKey;
use super::retry::GiveUp;
use super::{DecodeError, ProviderEvent, Status};

/// How a failure should be treated, named after `http_error_cases.json`'s
/// `error_class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Retrying will not help (400, 401, 403, 404, 413, 422, a bad config).
    Permanent,
    /// A transient failure (5xx, 408, 409, a dropped connection).
    Transient,
    /// 429 with a wait the policy accepts.
    RateLimited,
    /// 429 whose `retry-after` is longer than the policy will wait (e.g. a
    /// quota that is used up).
    RateLimitedNonTransient,
    /// Anthropic's 529 / `overloaded_error`.
    Overloaded,
    /// A read timeout fired.
    Timeout,
    /// The deadline passed or would pass before a retry could start.
    DeadlineExceeded,
}

impl ErrorClass {
    /// The snake_case name used in `http_error_cases.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::RateLimitedNonTransient => "rate_limited_non_transient",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Timeout => "timeout",
            ErrorClass::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the read timeouts fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Establishing the TCP (and TLS) connection.
    Connect,
    /// From sending the request to the first decoded event.
    FirstEvent,
    /// The longest wait, once streaming, for the next decoded event while
    /// the consumer asks for one.
    Idle,
    /// The whole request, retries included ([`Timeouts::total`]).
    ///
    /// [`Timeouts::total`]: super::Timeouts::total
    Total,
}

impl TimeoutKind {
    fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::FirstEvent => "first_event",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Total => "total",
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a provider request or stream failed.
///
/// ```
/// use demandflow_stages::provider::{ErrorClass, ProviderError};
///
/// let e = ProviderError::Http {
///     status: 401,
///     kind: "authentication_error".into(),
///     message: "invalid x-api-key".into(),
///     class: ErrorClass::Permanent,
/// };
/// assert_eq!(e.to_string(), "HTTP 401 (authentication_error): invalid x-api-key");
/// assert!(!e.class().is_retryable_by_restart());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The configuration cannot make a request.
    #[error("invalid provider configuration: {0}")]
    Config(String),
    /// The connection could not be made or broke before a response.
    #[error("connection to {endpoint} failed: {message}")]
    Connect {
        /// The URL (never with credentials).
        endpoint: String,
        /// What the transport said.
        message: String,
    },
    /// The provider answered with an error status.
    #[error("HTTP {status} ({kind}): {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The provider's error type or code, or `http_<status>`.
        kind: String,
        /// The provider's message.
        message: String,
        /// How to treat it.
        class: ErrorClass,
    },
    /// One of the request's read timeouts fired (the stream ends
    /// [`Status::TimedOut`]).
    #[error("{which} timeout after {after:?}")]
    Timeout {
        /// Which one.
        which: TimeoutKind,
        /// Its configured length.
        after: Duration,
    },
    /// The pipeline's deadline passed, or a retry would have started after
    /// the request's deadline (the stream ends [`Status::DeadlineExceeded`]).
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The response body broke off (connection reset, incomplete chunk).
    #[error("response body failed: {0}")]
    Body(String),
    /// The body was not a valid stream of the API.
    #[error("undecodable stream: {0}")]
    Decode(#[from] DecodeError),
    /// The response body is compressed (`Content-Encoding` other than
    /// `identity`) although the request asked for `Accept-Encoding:
    /// identity`: it is not read, so a compression bomb costs nothing.
    #[error("unsupported response Content-Encoding `{0}` (the request asked for identity)")]
    ContentEncoding(String),
}

impl ProviderError {
    /// The error for an HTTP error response: the provider's error kind and
    /// message read from `body` (OpenAI or Anthropic shape, else the text),
    /// classed by status.
    ///
    /// ```
    /// use demandflow_stages::provider::{ErrorClass, ProviderError};
    ///
    /// let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    /// let e = ProviderError::from_http(529, body);
    /// assert_eq!(e.kind(), "overloaded_error");
    /// assert_eq!(e.class(), ErrorClass::Overloaded);
    /// ```
    pub fn from_http(status: u16, body: &[u8]) -> ProviderError {
        let (kind, message) = parse_error_body(status, body);
        let class = class_for_status(status, &kind);
        ProviderError::Http {
            status,
            kind,
            message,
            class,
        }
    }

    /// The error to report once a retry policy gave up on this one: a
    /// deadline error when the retry would have passed the deadline, a
    /// non-transient rate limit when the server asked for too long a wait,
    /// else this error unchanged.
    pub fn given_up(self, reason: GiveUp) -> ProviderError {
        match (reason, self) {
            (GiveUp::Deadline { delay, remaining }, err) => ProviderError::DeadlineExceeded(format!(
                "a retry in {delay:?} would pass the deadline ({remaining:?} left); last error: {err}"
            )),
            (
                GiveUp::RetryAfterTooLong(_),
                ProviderError::Http {
                    status,
                    kind,
                    message,
                    ..
                },
            ) => ProviderError::Http {
                status,
                kind,
                message,
                class: ErrorClass::RateLimitedNonTransient,
            },
            (_, err) => err,
        }
    }

    /// How to treat this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Config(_)
            | ProviderError::Decode(_)
            | ProviderError::ContentEncoding(_) => ErrorClass::Permanent,
            ProviderError::Connect { .. } | ProviderError::Body(_) => ErrorClass::Transient,
            ProviderError::Http { class, .. } => *class,
            ProviderError::Timeout { .. } => ErrorClass::Timeout,
            ProviderError::DeadlineExceeded(_) => ErrorClass::DeadlineExceeded,
        }
    }

    /// The HTTP status, for [`ProviderError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The machine-readable kind put in [`ProviderEvent::Error`].
    pub fn kind(&self) -> &str {
        match self {
            ProviderError::Config(_) => "config_error",
            ProviderError::Connect { .. } => "connect_error",
            ProviderError::Http { kind, .. } => kind,
            ProviderError::Timeout { which, .. } => match which {
                TimeoutKind::Connect => "connect_timeout",
                TimeoutKind::FirstEvent => "first_event_timeout",
                TimeoutKind::Idle => "idle_timeout",
                TimeoutKind::Total => "total_timeout",
            },
            ProviderError::DeadlineExceeded(_) => "deadline_exceeded",
            ProviderError::Body(_) => "body_error",
            ProviderError::Decode(_) => "decode_error",
            ProviderError::ContentEncoding(_) => "unsupported_content_encoding",
        }
    }

    /// The terminal status a stream that ends with this error reports.
    pub fn status_on_stream(&self) -> Status {
        match self {
            ProviderError::Timeout { .. } => Status::TimedOut,
            ProviderError::DeadlineExceeded(_) => Status::DeadlineExceeded,
            ProviderError::Body(_) => Status::Truncated,
            _ => Status::Failed,
        }
    }

    /// The two events that end a stream with this error:
    /// [`ProviderEvent::Error`] then [`ProviderEvent::Done`].
    pub fn to_events(&self) -> [ProviderEvent; 2] {
        [
            ProviderEvent::Error {
                kind: self.kind().to_owned(),
                message: self.to_string(),
            },
            ProviderEvent::Done {
                status: self.status_on_stream(),
                stop_reason: None,
            },
        ]
    }
}

impl ErrorClass {
    /// Whether a supervisor restart may help: `false` for permanent errors
    /// (G-S5: they fail fast and do not count as restarts) and for deadlines.
    pub fn is_retryable_by_restart(self) -> bool {
        !matches!(
            self,
            ErrorClass::Permanent
                | ErrorClass::RateLimitedNonTransient
                | ErrorClass::DeadlineExceeded
        )
    }
}

/// The class of an HTTP error status (before any retry-after consideration).
pub(crate) fn class_for_status(status: u16, kind: &str) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited,
        529 => ErrorClass::Overloaded,
        _ if kind == "overloaded_error" => ErrorClass::Overloaded,
        408 | 409 => ErrorClass::Transient,
        s if s >= 500 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Reads a provider error body: OpenAI's `{"error":{message,type,code}}` or
/// Anthropic's `{"type":"error","error":{type,message}}`. Returns the kind
/// (OpenAI's `code` when set, else the `type`) and the message; a body that
/// is neither gives its text, cut to 512 bytes.
pub(crate) fn parse_error_body(status: u16, body: &[u8]) -> (String, String) {
    let fallback_kind = format!("http_{status}");
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let mut end = text.len().min(512);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let message = if text.is_empty() {
                http_reason(status).to_owned()
            } else {
                text[..end].to_owned()
            };
            return (fallback_kind, message);
        }
    };
    let err = v.get("error").unwrap_or(&v);
    let s = |k: &str| err.get(k).and_then(serde_json::Value::as_str);
    let kind = s("code")
        .or_else(|| s("type").filter(|t| *t != "error"))
        .map(str::to_owned)
        .unwrap_or(fallback_kind);
    let message = s("message")
        .map(str::to_owned)
        .unwrap_or_else(|| http_reason(status).to_owned());
    (kind, message)
}

fn http_reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or(if status == 529 { "Overloaded" } else { "error" })
}

/// Replaces every occurrence of the key in `text` with `[redacted]`: a
/// provider or a proxy may echo a bad key back in its message.
pub(crate) fn redact(text: String, key: Option<&ApiKey>) -> String {
    match key {
        Some(k) if !k.expose().is_empty() && text.contains(k.expose()) => {
            text.replace(k.expose(), "[redacted]")
        }
        _ => text,
    }
}

/// A transport error as one line, with its causes (reqwest's own `Display`
/// hides them).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
