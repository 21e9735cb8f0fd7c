//! What the request stage emits: [`LlmResult`] and, in pass-through mode,
//! [`LlmEvent`].

use std::sync::Arc;

use serde_json::{json, Value};

use crate::provider::{ErrorClass, FinalMessage, ProviderError, ProviderEvent, Status, Usage};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmError {
    /// Machine-readable kind: the provider's error type (`rate_limit_error`,
    /// `overloaded_error`, `http_500`, ...) or this crate's
    /// (`connect_error`, `first_event_timeout`, `deadline_exceeded`,
    /// `cancelled`, ...).
    pub kind: String,
    /// What went wrong, for people.
    pub message: String,
    /// The HTTP status of the last attempt, when it was an error status.
    pub status: Option<u16>,
    /// How the error was classed, when it came from the provider layer.
    pub class: Option<ErrorClass>,
}

impl LlmError {
    /// The error for a provider failure.
    pub fn from_provider(err: &ProviderError) -> LlmError {
        LlmError {
            kind: err.kind().to_owned(),
            message: err.to_string(),
            status: err.status(),
            class: Some(err.class()),
        }
    }

    pub(crate) fn new(kind: &str, message: impl Into<String>) -> LlmError {
        LlmError {
            kind: kind.to_owned(),
            message: message.into(),
            status: None,
            class: None,
        }
    }
}

/// The outcome of one [`LlmRequest`](super::LlmRequest), after all its
/// attempts: exactly one per request.
///
/// A failed result (not [`is_success`](Self::is_success), with an
/// [`error`](Self::error)) is the request's dead letter: the stage does
/// not stop for it.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmResult {
    /// The request's id.
    pub id: Arc<str>,
    /// How it ended: the stream's outcome ([`Status::Completed`],
    /// [`Status::Incomplete`], [`Status::Refused`], ...), or
    /// [`Status::Failed`], [`Status::Cancelled`], [`Status::DeadlineExceeded`],
    /// [`Status::TimedOut`] when it failed.
    pub status: Status,
    /// The final message of the last attempt (text, tool calls, usage,
    /// outcome). `None` when no attempt was made (cancelled or expired
    /// while waiting for budget).
    pub message: Option<FinalMessage>,
    /// Attempts made (0 when none was).
    pub attempts: u32,
    /// Rate-limit answers (429, 529) this request received.
    pub rate_limited: u32,
    /// Why it failed, if it did.
    pub error: Option<LlmError>,
    /// The endpoint (see [`endpoint_key`](super::endpoint_key)).
    pub endpoint: String,
}

impl LlmResult {
    /// Whether the model answered and finished normally.
    pub fn is_success(&self) -> bool {
        self.error.is_none() && self.status == Status::Completed
    }

    /// The answer's text (empty without a message).
    pub fn text(&self) -> &str {
        self.message.as_ref().map_or("", |m| m.text.as_str())
    }

    /// The usage reported, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.message.as_ref().and_then(|m| m.usage)
    }

    /// The result as one JSON object, in the shape of `demandflow batch`'s
    /// output lines: `custom_id`, `status`, `text`, `tool_calls` (as
    /// [`FinalMessage::to_json`] gives them), `usage`, `attempts`,
    /// `error` (`{kind, message, status}` or `null`).
    pub fn to_json(&self) -> Value {
        let message = self.message.as_ref().map(FinalMessage::to_json);
        let field = |k: &str| {
            message
                .as_ref()
                .and_then(|m| m.get(k).cloned())
                .unwrap_or(Value::Null)
        };
        json!({
            "custom_id": &*self.id,
            "status": self.status.as_str(),
            "text": self.text(),
            "tool_calls": message.as_ref().map_or(json!([]), |_| field("tool_calls")),
            "usage": field("usage"),
            "attempts": self.attempts,
            "error": self.error.as_ref().map(|e| json!({
                "kind": e.kind,
                "message": e.message,
                "status": e.status,
            })),
        })
    }
}

/// What the stage emits in pass-through mode
/// ([`RequestStage::events`](super::RequestStage::events)): each request's
/// provider events as they arrive, tagged with its id, then its result.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// One event of a request's stream. Only events of the attempt that
    /// produced output are passed on: an attempt that failed before its
    /// first token (and is retried) shows none.
    Event {
        /// The request's id.
        id: Arc<str>,
        /// The event.
        event: ProviderEvent,
    },
    /// The request's result, after its last event (boxed: results are few
    /// and large next to events).
    Finished(Box<LlmResult>),
}

impl LlmEvent {
    /// The request's id.
    pub fn id(&self) -> &str {
        match self {
            LlmEvent::Event { id, .. } => id,
            LlmEvent::Finished(r) => &r.id,
        }
    }
}
