//! OpenAI Responses API stream (`event: <type>` + `data: <json>`; ends with
//! `response.completed`, `response.incomplete`, `response.failed` or `error`;
//! no `[DONE]`).

use serde::Deserialize;

use super::{event_type, json, DecodeError};
use crate::provider::{ProviderEvent, Status, Usage};
use crate::sse::SseEvent;

#[derive(Debug, Default)]
pub(super) struct ResponsesParser {
    started: bool,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    response: Option<Response>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<ResponseUsage>,
    #[serde(default)]
    incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ResponseUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct IncompleteDetails {
    #[serde(default)]
    reason: Option<String>,
}

/// `{code, message}` as in `response.failed`'s `response.error` and the
/// `error` event; some servers nest it under `error` instead.
#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<Box<ApiError>>,
}

impl ApiError {
    /// (kind, message), preferring the nested form when present.
    fn into_parts(self) -> (Option<String>, Option<String>) {
        if let Some(inner) = self.error {
            let (kind, message) = inner.into_parts();
            return (kind.or(code_text(self.code)), message.or(self.message));
        }
        (code_text(self.code), self.message)
    }
}

/// Error codes are strings in the spec; tolerate numbers rather than fail.
fn code_text(code: Option<serde_json::Value>) -> Option<String> {
    match code? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[derive(Deserialize)]
struct TextDelta {
    #[serde(default)]
    delta: String,
}

#[derive(Deserialize)]
struct OutputItemAdded {
    #[serde(default)]
    output_index: usize,
    item: OutputItem,
}

#[derive(Deserialize)]
struct OutputItem {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct ArgumentsDelta {
    #[serde(default)]
    output_index: usize,
    #[serde(default)]
    delta: String,
}

impl ResponsesParser {
    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ProviderEvent>,
    ) -> Result<bool, DecodeError> {
        let ty = event_type(event);
        let ty = ty.as_ref();
        match ty {
            "response.created" | "response.in_progress" | "response.queued" => {
                // Some servers skip `created`; whichever comes first starts.
                if !self.started {
                    let envelope: Envelope = json(ty, &event.data)?;
                    let (id, model) = envelope
                        .response
                        .map(|r| (r.id, r.model))
                        .unwrap_or_default();
                    self.started = true;
                    out.push(ProviderEvent::Start { id, model });
                }
                Ok(false)
            }
            "response.output_text.delta" => {
                let delta: TextDelta = json(ty, &event.data)?;
                if !delta.delta.is_empty() {
                    out.push(ProviderEvent::TextDelta { text: delta.delta });
                }
                Ok(false)
            }
            "response.output_item.added" => {
                let added: OutputItemAdded = json(ty, &event.data)?;
                if added.item.r#type == "function_call" {
                    out.push(ProviderEvent::ToolCallDelta {
                        index: added.output_index,
                        // `call_id` is what a tool result must quote back.
                        id: added.item.call_id.or(added.item.id),
                        name: added.item.name,
                        arguments: added.item.arguments,
                    });
                }
                Ok(false)
            }
            "response.function_call_arguments.delta" => {
                let delta: ArgumentsDelta = json(ty, &event.data)?;
                out.push(ProviderEvent::ToolCallDelta {
                    index: delta.output_index,
                    id: None,
                    name: None,
                    arguments: delta.delta,
                });
                Ok(false)
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let envelope: Envelope = json(ty, &event.data)?;
                let response = envelope.response;
                let usage = response.as_ref().and_then(|r| r.usage.as_ref());
                if let Some(usage) = usage {
                    out.push(ProviderEvent::Usage(Usage {
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                    }));
                }
                let (status, stop_reason) = match ty {
                    "response.completed" => (Status::Completed, None),
                    "response.incomplete" => (
                        Status::Incomplete,
                        response
                            .and_then(|r| r.incomplete_details)
                            .and_then(|d| d.reason),
                    ),
                    _ => {
                        let (kind, message) = response
                            .and_then(|r| r.error)
                            .map(ApiError::into_parts)
                            .unwrap_or_default();
                        out.push(ProviderEvent::Error {
                            kind: kind.unwrap_or_else(|| "response_failed".to_owned()),
                            message: message.unwrap_or_else(|| "response failed".to_owned()),
                        });
                        (Status::Failed, None)
                    }
                };
                out.push(ProviderEvent::Done {
                    status,
                    stop_reason,
                });
                Ok(true)
            }
            "error" => {
                let error: ApiError = json(ty, &event.data)?;
                let (kind, message) = error.into_parts();
                out.push(ProviderEvent::Error {
                    kind: kind.unwrap_or_else(|| "error".to_owned()),
                    message: message.unwrap_or_default(),
                });
                out.push(ProviderEvent::Done {
                    status: Status::Failed,
                    stop_reason: None,
                });
                Ok(true)
            }
            // Reasoning, refusals, annotations, built-in tools, `.done`
            // events repeating what the deltas said: not part of the
            // normalised stream.
            _ => Ok(false),
        }
    }
}
