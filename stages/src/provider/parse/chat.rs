//! OpenAI Chat Completions stream (`data: <chunk json>` with no `event:`
//! line; ends with the `data: [DONE]` sentinel).
//!
//! Only choice 0 is followed: the normalised stream has no notion of several
//! alternative answers (`n > 1`).

use serde::Deserialize;

use super::{json, DecodeError};
use crate::provider::{ProviderEvent, Status, Usage};
use crate::sse::SseEvent;

#[derive(Debug, Default)]
pub(super) struct ChatParser {
    started: bool,
    /// The last `finish_reason` seen; it decides the status at `[DONE]`.
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<ChatUsage>,
    #[serde(default)]
    error: Option<ChatError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Deserialize)]
struct ToolCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<Function>,
}

#[derive(Deserialize)]
struct Function {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct ChatError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// The status a finished Chat stream reports for its `finish_reason`.
fn status_for(finish_reason: Option<&str>) -> Status {
    match finish_reason {
        Some("length" | "content_filter") => Status::Incomplete,
        _ => Status::Completed,
    }
}

impl ChatParser {
    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ProviderEvent>,
    ) -> Result<bool, DecodeError> {
        // Chat sends only unnamed events; an `error` type is tolerated
        // because some compatible servers name their error events.
        if !(event.is_message() || event.event == "error") {
            return Ok(false);
        }
        if event.data.starts_with("[DONE]") {
            out.push(ProviderEvent::Done {
                status: status_for(self.finish_reason.as_deref()),
                stop_reason: self.finish_reason.take(),
            });
            return Ok(true);
        }
        let chunk: Chunk = json(&event.event, &event.data)?;
        if let Some(error) = chunk.error {
            let kind = error
                .r#type
                .or_else(|| match error.code {
                    Some(serde_json::Value::String(code)) => Some(code),
                    Some(serde_json::Value::Null) | None => None,
                    Some(code) => Some(code.to_string()),
                })
                .unwrap_or_else(|| "error".to_owned());
            out.push(ProviderEvent::Error {
                kind,
                message: error.message.unwrap_or_default(),
            });
            out.push(ProviderEvent::Done {
                status: Status::Failed,
                stop_reason: None,
            });
            return Ok(true);
        }
        if !self.started {
            self.started = true;
            out.push(ProviderEvent::Start {
                id: chunk.id,
                model: chunk.model,
            });
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(ProviderEvent::TextDelta { text });
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    let (name, arguments) = call
                        .function
                        .map(|f| (f.name, f.arguments.unwrap_or_default()))
                        .unwrap_or_default();
                    out.push(ProviderEvent::ToolCallDelta {
                        index: call.index,
                        id: call.id,
                        name,
                        arguments,
                    });
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(ProviderEvent::Usage(Usage {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
            }));
        }
        Ok(false)
    }
}
