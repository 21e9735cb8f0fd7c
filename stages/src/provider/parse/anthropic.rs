//! Anthropic Messages stream (`event: <type>` + `data: <json>`; ends with
//! `message_stop`, or `error`).
//!
//! Usage: `message_start` carries the input tokens, `message_delta` the
//! cumulative output tokens, which replace (never add to) earlier values.
//! Thinking blocks become reasoning events, never text. `tool_use` blocks
//! are client tool calls; `server_tool_use`/`mcp_tool_use` and the
//! `*_tool_result` blocks are server tool activity. Tool input arrives as
//! `input_json_delta` fragments, parsed at `content_block_stop`.

use std::collections::HashMap;

use serde::Deserialize;

use super::{event_type, finished_tool_call, json, skip, DecodeError};
use crate::provider::{ProviderEvent, Status, ToolKind, Usage};
use crate::sse::SseEvent;

#[derive(Debug, Default)]
pub(super) struct AnthropicParser {
    usage: Usage,
    stop_reason: Option<String>,
    /// Tool blocks whose input is still arriving, by block index.
    tools: HashMap<usize, ToolBlock>,
}

/// A tool block between its start and its stop.
#[derive(Debug)]
struct ToolBlock {
    server: bool,
    id: Option<String>,
    name: Option<String>,
    /// The `input` sent at the block's start: the value when no fragment
    /// follows.
    input: Option<serde_json::Value>,
    json: String,
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
    #[serde(default)]
    input: Option<serde_json::Value>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BlockStop {
    #[serde(default)]
    index: usize,
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
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    citation: Option<serde_json::Value>,
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

/// The status a finished Messages stream reports for its `stop_reason`
/// (the table on [`Status`]).
fn status_for(stop_reason: Option<&str>) -> Status {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded" | "pause_turn") => Status::Incomplete,
        Some("refusal") => Status::Refused,
        _ => Status::Completed,
    }
}

impl ToolBlock {
    /// The event a finished tool block becomes.
    fn finish(self, index: usize) -> ProviderEvent {
        if !self.server {
            return finished_tool_call(
                index,
                self.id,
                self.name,
                ToolKind::Function,
                self.json,
                self.input,
            );
        }
        // Server tool input is informational: keep what arrived even when it
        // does not parse, rather than fail the stream over it.
        let input = if self.json.trim().is_empty() {
            self.input.unwrap_or_else(|| serde_json::json!({}))
        } else {
            serde_json::from_str(&self.json).unwrap_or(serde_json::Value::String(self.json))
        };
        ProviderEvent::ServerToolCall {
            index,
            id: self.id.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            input,
        }
    }
}

impl AnthropicParser {
    fn on_block_start(&mut self, start: BlockStart, out: &mut Vec<ProviderEvent>) {
        let index = start.index;
        let block = start.content_block;
        match block.r#type.as_str() {
            "text" => {
                if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::TextDelta { text });
                }
            }
            "thinking" => {
                if let Some(text) = block.thinking.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::ReasoningDelta {
                        index,
                        id: None,
                        text,
                    });
                }
                if let Some(signature) = block.signature.filter(|s| !s.is_empty()) {
                    out.push(ProviderEvent::ReasoningSignature { index, signature });
                }
            }
            "redacted_thinking" => out.push(ProviderEvent::RedactedReasoning {
                index,
                data: block.data.unwrap_or_default(),
            }),
            "tool_use" => {
                out.push(ProviderEvent::ToolCallDelta {
                    index,
                    id: block.id.clone(),
                    name: block.name.clone(),
                    arguments: String::new(),
                });
                self.tools.insert(
                    index,
                    ToolBlock {
                        server: false,
                        id: block.id,
                        name: block.name,
                        input: block.input,
                        json: String::new(),
                    },
                );
            }
            "server_tool_use" | "mcp_tool_use" => {
                self.tools.insert(
                    index,
                    ToolBlock {
                        server: true,
                        id: block.id,
                        name: block.name,
                        input: block.input,
                        json: String::new(),
                    },
                );
            }
            kind if kind.ends_with("_tool_result") => out.push(ProviderEvent::ServerToolResult {
                index,
                tool_use_id: block.tool_use_id.unwrap_or_default(),
                kind: kind.to_owned(),
                content: block.content.unwrap_or(serde_json::Value::Null),
            }),
            // container_upload and anything newer.
            _ => {}
        }
    }

    fn on_block_delta(&mut self, delta: BlockDelta, out: &mut Vec<ProviderEvent>) {
        let index = delta.index;
        let delta = delta.delta;
        match delta.r#type.as_str() {
            "text_delta" => {
                if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::TextDelta { text });
                }
            }
            "input_json_delta" => {
                let fragment = delta.partial_json.unwrap_or_default();
                match self.tools.get_mut(&index) {
                    Some(block) if block.server => block.json.push_str(&fragment),
                    Some(block) => {
                        block.json.push_str(&fragment);
                        out.push(ProviderEvent::ToolCallDelta {
                            index,
                            id: None,
                            name: None,
                            arguments: fragment,
                        });
                    }
                    // Input for a block never started: still a client call's
                    // fragment, as before, but it can never finish.
                    None => out.push(ProviderEvent::ToolCallDelta {
                        index,
                        id: None,
                        name: None,
                        arguments: fragment,
                    }),
                }
            }
            "thinking_delta" => {
                if let Some(text) = delta.thinking.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::ReasoningDelta {
                        index,
                        id: None,
                        text,
                    });
                }
            }
            "signature_delta" => {
                if let Some(signature) = delta.signature {
                    out.push(ProviderEvent::ReasoningSignature { index, signature });
                }
            }
            "citations_delta" => {
                if let Some(citation) = delta.citation {
                    out.push(ProviderEvent::Citation { index, citation });
                }
            }
            _ => {}
        }
    }

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
        let ty = event_type(event)?;
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
                self.on_block_start(start, out);
                Ok(false)
            }
            "content_block_delta" => {
                let delta: BlockDelta = json(ty, &event.data)?;
                self.on_block_delta(delta, out);
                Ok(false)
            }
            "content_block_stop" => {
                let stop: BlockStop = json(ty, &event.data)?;
                if let Some(block) = self.tools.remove(&stop.index) {
                    out.push(block.finish(stop.index));
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
            // ping and anything newer.
            _ => skip(ty, &event.data).map(|()| false),
        }
    }
}
