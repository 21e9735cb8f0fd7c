//! OpenAI Chat Completions stream (`data: <chunk json>` with no `event:`
//! line; ends with the `data: [DONE]` sentinel).
//!
//! Only choice 0 is followed: the normalised stream has no notion of several
//! alternative answers (`n > 1`).
//!
//! Tool calls (and the deprecated `function_call`, as tool call 0) are
//! finished when choice 0 reports its `finish_reason`, or at `[DONE]`.
//! `reasoning_content` (DeepSeek, vLLM, …) or else `reasoning` (OpenRouter,
//! newer vLLM) from compatible servers become reasoning deltas of index 0.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{finished_tool_call, json, push_stream_error, skip, DecodeError};
use crate::provider::{ProviderEvent, Status, ToolKind, Usage};
use crate::sse::SseEvent;

#[derive(Debug, Default)]
pub(super) struct ChatParser {
    started: bool,
    /// The last `finish_reason` seen; it decides the status at `[DONE]`.
    finish_reason: Option<String>,
    /// Whether a refusal delta was seen: the stream then ends refused.
    refused: bool,
    /// Tool calls still open, by index: (id, name, arguments).
    calls: BTreeMap<usize, (Option<String>, Option<String>, String)>,
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
    #[serde(default)]
    function_call: Option<Function>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
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

/// The status a finished Chat stream reports for its `finish_reason` (the
/// table on [`Status`]).
fn status_for(finish_reason: Option<&str>, refused: bool) -> Status {
    match finish_reason {
        Some("length") => Status::Incomplete,
        Some("content_filter") => Status::Refused,
        _ if refused => Status::Refused,
        _ => Status::Completed,
    }
}

impl ChatParser {
    /// Emits every open tool call as finished.
    fn finish_calls(&mut self, out: &mut Vec<ProviderEvent>) {
        for (index, (id, name, arguments)) in std::mem::take(&mut self.calls) {
            out.push(finished_tool_call(
                index,
                id,
                name,
                ToolKind::Function,
                arguments,
                None,
            ));
        }
    }

    fn on_delta(&mut self, delta: Delta, out: &mut Vec<ProviderEvent>) {
        let reasoning = delta.reasoning_content.or(delta.reasoning);
        if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
            out.push(ProviderEvent::ReasoningDelta {
                index: 0,
                id: None,
                text,
            });
        }
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            out.push(ProviderEvent::TextDelta { text });
        }
        if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
            self.refused = true;
            out.push(ProviderEvent::RefusalDelta { text });
        }
        // The deprecated form: one call, no id, no index.
        let legacy = delta.function_call.map(|f| ToolCall {
            index: 0,
            id: None,
            function: Some(f),
        });
        for call in delta.tool_calls.into_iter().flatten().chain(legacy) {
            let (name, arguments) = call
                .function
                .map(|f| (f.name, f.arguments.unwrap_or_default()))
                .unwrap_or_default();
            let open = self.calls.entry(call.index).or_default();
            if call.id.is_some() {
                open.0.clone_from(&call.id);
            }
            if name.is_some() {
                open.1.clone_from(&name);
            }
            open.2.push_str(&arguments);
            out.push(ProviderEvent::ToolCallDelta {
                index: call.index,
                id: call.id,
                name,
                arguments,
            });
        }
    }

    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ProviderEvent>,
    ) -> Result<bool, DecodeError> {
        // Chat sends only unnamed events; an `error` type is tolerated
        // because some compatible servers name their error events.
        if !(event.is_message() || event.event == "error") {
            return skip(&event.event, &event.data).map(|()| false);
        }
        if event.data.starts_with("[DONE]") {
            self.finish_calls(out);
            out.push(ProviderEvent::Done {
                status: status_for(self.finish_reason.as_deref(), self.refused),
                stop_reason: self.finish_reason.take(),
            });
            return Ok(true);
        }
        let chunk: Chunk = json(&event.event, &event.data)?;
        if let Some(error) = chunk.error {
            push_stream_error(error.r#type, error.code, error.message, out);
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
                self.on_delta(delta, out);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
                self.finish_calls(out);
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
