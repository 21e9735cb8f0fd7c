//! OpenAI Responses API stream (`event: <type>` + `data: <json>`; ends with
//! `response.completed`, `response.incomplete`, `response.failed` or `error`;
//! no `[DONE]`).
//!
//! Output items are indexed by `output_index`. Client tool calls
//! (`function_call`, `custom_tool_call`) stream as deltas and finish at
//! `response.output_item.done`, whose item is the final word; so do
//! reasoning items (their `encrypted_content` becomes the signature) and
//! built-in tool items (`web_search_call`, …), which become server tool
//! activity.

use serde::Deserialize;
use serde_json::Value;

use super::{event_type, finished_tool_call, json, skip, DecodeError};
use crate::provider::{ProviderEvent, Status, ToolKind, Usage};
use crate::sse::SseEvent;

#[derive(Debug, Default)]
pub(super) struct ResponsesParser {
    started: bool,
    /// Whether a refusal delta was seen: the stream then ends refused.
    refused: bool,
}

/// Output item types the server runs itself (built-in tools).
const SERVER_TOOL_ITEMS: [&str; 6] = [
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "mcp_call",
    "mcp_list_tools",
];

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
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
struct OutputItemDone {
    #[serde(default)]
    output_index: usize,
    item: Value,
}

#[derive(Deserialize)]
struct AnnotationAdded {
    #[serde(default)]
    output_index: usize,
    #[serde(default)]
    annotation: Value,
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
        let ty = event_type(event)?;
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
                let index = added.output_index;
                let item = added.item;
                match item.r#type.as_str() {
                    "function_call" | "custom_tool_call" => {
                        let arguments = if item.r#type == "function_call" {
                            item.arguments
                        } else {
                            item.input
                        };
                        out.push(ProviderEvent::ToolCallDelta {
                            index,
                            // `call_id` is what a tool result must quote back.
                            id: item.call_id.or(item.id),
                            name: item.name,
                            arguments,
                        });
                    }
                    "reasoning" => out.push(ProviderEvent::ReasoningDelta {
                        index,
                        id: item.id,
                        text: String::new(),
                    }),
                    _ => {}
                }
                Ok(false)
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                let delta: ArgumentsDelta = json(ty, &event.data)?;
                out.push(ProviderEvent::ToolCallDelta {
                    index: delta.output_index,
                    id: None,
                    name: None,
                    arguments: delta.delta,
                });
                Ok(false)
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let delta: ArgumentsDelta = json(ty, &event.data)?;
                if !delta.delta.is_empty() {
                    out.push(ProviderEvent::ReasoningDelta {
                        index: delta.output_index,
                        id: None,
                        text: delta.delta,
                    });
                }
                Ok(false)
            }
            "response.refusal.delta" => {
                let delta: TextDelta = json(ty, &event.data)?;
                if !delta.delta.is_empty() {
                    self.refused = true;
                    out.push(ProviderEvent::RefusalDelta { text: delta.delta });
                }
                Ok(false)
            }
            "response.output_text.annotation.added" => {
                let added: AnnotationAdded = json(ty, &event.data)?;
                out.push(ProviderEvent::Citation {
                    index: added.output_index,
                    citation: added.annotation,
                });
                Ok(false)
            }
            "response.output_item.done" => {
                let done: OutputItemDone = json(ty, &event.data)?;
                item_done(done.output_index, done.item, out);
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
                    "response.completed" if self.refused => (Status::Refused, None),
                    "response.completed" => (Status::Completed, None),
                    "response.incomplete" => {
                        let reason = response
                            .and_then(|r| r.incomplete_details)
                            .and_then(|d| d.reason);
                        let status = match reason.as_deref() {
                            Some("content_filter") => Status::Refused,
                            _ => Status::Incomplete,
                        };
                        (status, reason)
                    }
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
            // `.done` events repeating what the deltas said, progress of
            // built-in tools, anything newer.
            _ => skip(ty, &event.data).map(|()| false),
        }
    }
}

/// The events a finished output item gives (`response.output_item.done`).
fn item_done(index: usize, item: Value, out: &mut Vec<ProviderEvent>) {
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "function_call" | "custom_tool_call" => {
            let (tool, arguments) = if kind == "function_call" {
                (ToolKind::Function, text("arguments"))
            } else {
                (ToolKind::Custom, text("input"))
            };
            out.push(finished_tool_call(
                index,
                text("call_id").or_else(|| text("id")),
                text("name"),
                tool,
                arguments.unwrap_or_default(),
                None,
            ));
        }
        "reasoning" => {
            if let Some(signature) = text("encrypted_content").filter(|s| !s.is_empty()) {
                out.push(ProviderEvent::ReasoningSignature { index, signature });
            }
        }
        kind if SERVER_TOOL_ITEMS.contains(&kind) => {
            let name = kind.strip_suffix("_call").unwrap_or(kind).to_owned();
            out.push(ProviderEvent::ServerToolCall {
                index,
                id: text("id").unwrap_or_default(),
                name,
                input: item,
            });
        }
        _ => {}
    }
}
