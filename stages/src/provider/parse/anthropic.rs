//! Anthropic Messages stream (`event: <type>` + `data: <json>`; ends with
//! `message_stop`, or `error`).
//!
//! Usage: `message_start` carries the input tokens, `message_delta` the
//! cumulative output tokens, which replace (never add to) earlier values.
//! Thinking blocks stay out of the text.

use serde::Deserialize;

use super::{event_type, json, DecodeError};
use crate::provider::{ProviderEvent, Status, Usage};
use crate::sse::SseEvent;

#[derive(Debug, Default)]
pub(super) struct AnthropicParser {
    usage: Usage,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct MessageStart {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<MessageUsage>,
}

#[derive(Deserialize)]
struct MessageUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct BlockStart {
    #[serde(default)]
    index: usize,
    content_block: ContentBlock,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct BlockDelta {
    #[serde(default)]
    index: usize,
    delta: Delta,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    delta: Option<StopDelta>,
    #[serde(default)]
    usage: Option<MessageUsage>,
}

#[derive(Deserialize)]
struct StopDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEvent {
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The status a finished Messages stream reports for its `stop_reason`.
fn status_for(stop_reason: Option<&str>) -> Status {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => Status::Incomplete,
        _ => Status::Completed,
    }
}

impl AnthropicParser {
    fn apply_usage(&mut self, usage: Option<MessageUsage>, out: &mut Vec<ProviderEvent>) {
        let Some(usage) = usage else { return };
        if let Some(input) = usage.input_tokens {
            self.usage.input_tokens = input;
        }
        if let Some(output) = usage.output_tokens {
            self.usage.output_tokens = output;
        }
        out.push(ProviderEvent::Usage(self.usage));
    }

    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ProviderEvent>,
    ) -> Result<bool, DecodeError> {
        let ty = event_type(event);
        let ty = ty.as_ref();
        match ty {
            "message_start" => {
                let start: MessageStart = json(ty, &event.data)?;
                out.push(ProviderEvent::Start {
                    id: start.message.id,
                    model: start.message.model,
                });
                self.apply_usage(start.message.usage, out);
                Ok(false)
            }
            "content_block_start" => {
                let start: BlockStart = json(ty, &event.data)?;
                let block = start.content_block;
                match block.r#type.as_str() {
                    "text" => {
                        if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                            out.push(ProviderEvent::TextDelta { text });
                        }
                    }
                    "tool_use" => out.push(ProviderEvent::ToolCallDelta {
                        index: start.index,
                        id: block.id,
                        name: block.name,
                        arguments: String::new(),
                    }),
                    // thinking, redacted_thinking, server tool blocks.
                    _ => {}
                }
                Ok(false)
            }
            "content_block_delta" => {
                let delta: BlockDelta = json(ty, &event.data)?;
                match delta.delta.r#type.as_str() {
                    "text_delta" => {
                        if let Some(text) = delta.delta.text.filter(|t| !t.is_empty()) {
                            out.push(ProviderEvent::TextDelta { text });
                        }
                    }
                    "input_json_delta" => out.push(ProviderEvent::ToolCallDelta {
                        index: delta.index,
                        id: None,
                        name: None,
                        arguments: delta.delta.partial_json.unwrap_or_default(),
                    }),
                    // thinking_delta, signature_delta, citations_delta.
                    _ => {}
                }
                Ok(false)
            }
            "message_delta" => {
                let delta: MessageDelta = json(ty, &event.data)?;
                if let Some(reason) = delta.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                self.apply_usage(delta.usage, out);
                Ok(false)
            }
            "message_stop" => {
                out.push(ProviderEvent::Done {
                    status: status_for(self.stop_reason.as_deref()),
                    stop_reason: self.stop_reason.take(),
                });
                Ok(true)
            }
            "error" => {
                let error: ErrorEvent = json(ty, &event.data)?;
                let (kind, message) = error
                    .error
                    .map(|e| (e.r#type, e.message))
                    .unwrap_or_default();
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
            // ping, content_block_stop and anything newer.
            _ => Ok(false),
        }
    }
}
