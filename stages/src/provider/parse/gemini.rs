//! Google Gemini stream (`streamGenerateContent?alt=sse`: `data: <json>`
//! with no `event:` line, each a whole `GenerateContentResponse` holding
//! the new parts only). There is no terminal event: the stream ends with
//! the body, after a chunk carrying the candidate's `finishReason` (or a
//! `promptFeedback.blockReason` when the prompt itself was blocked), so the
//! outcome is decided at the end of the body ([`GeminiParser::on_end`]).
//!
//! Only candidate 0 is followed, as in Chat.
//!
//! Indices: parts are numbered in blocks, in order of arrival across
//! chunks: a run of consecutive `thought: true` parts is one block, a run of
//! consecutive text parts another, and every `functionCall` (and
//! `executableCode` / `codeExecutionResult`) part is a block of its own. A
//! `thoughtSignature` is reported for the block of the part that carries it
//! — a thought run, a text run or a function call — so a signature sent on
//! a function call part has the call's index.
//!
//! Function calls arrive whole: each becomes a `tool_call_delta` (id, name,
//! the `args` as JSON text) followed by the finished `tool_call`. Gemini
//! usually sends no call id: the call then gets `gemini-call-{n}`, `n`
//! counting the response's function calls from 0, and the request builder
//! leaves such synthetic ids out when the call and its result go back
//! (Gemini matches a `functionResponse` to its call by name and order).
//!
//! Usage: `usageMetadata` is cumulative; `input_tokens` is
//! `promptTokenCount + toolUsePromptTokenCount`, `output_tokens` is
//! `candidatesTokenCount + thoughtsTokenCount` (what is billed as output;
//! OpenAI's `output_tokens` also include reasoning).

use serde::Deserialize;

use super::{json, push_stream_error, skip, DecodeError};
use crate::provider::{ProviderEvent, Status, ToolKind, Usage};
use crate::sse::SseEvent;

/// The prefix of the ids given to function calls Gemini sent without one.
pub(crate) const SYNTHETIC_CALL_ID_PREFIX: &str = "gemini-call-";

/// What the last block was, so consecutive parts of one kind share an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Thought,
    Text,
}

#[derive(Debug, Default)]
pub(super) struct GeminiParser {
    started: bool,
    /// The next block index to hand out.
    next_index: usize,
    /// The open run of thought or text parts and its index.
    run: Option<(Run, usize)>,
    /// Function calls seen, for synthetic ids.
    calls: usize,
    finish_reason: Option<String>,
    finish_message: Option<String>,
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    #[serde(default)]
    candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    finish_message: Option<String>,
    #[serde(default)]
    citation_metadata: Option<CitationMetadata>,
    #[serde(default)]
    grounding_metadata: Option<GroundingMetadata>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Option<Vec<Part>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    thought_signature: Option<String>,
    #[serde(default)]
    function_call: Option<FunctionCall>,
    #[serde(default)]
    executable_code: Option<serde_json::Value>,
    #[serde(default)]
    code_execution_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct FunctionCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    args: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CitationMetadata {
    #[serde(default)]
    citation_sources: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroundingMetadata {
    #[serde(default)]
    grounding_chunks: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// The status a Gemini `finishReason` maps to (the table on [`Status`]).
fn status_for(finish_reason: &str) -> Status {
    match finish_reason {
        "STOP" => Status::Completed,
        "MAX_TOKENS" | "CONTINUATION" => Status::Incomplete,
        // The safety system, a blocklist or a policy stopped the answer.
        "SAFETY"
        | "RECITATION"
        | "LANGUAGE"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR"
        | "ESCALATION"
        | "PUP_LIMITED_DISABLED" => Status::Refused,
        // The model's output (or the request) was unusable: no answer and
        // no call an application could run.
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "MALFORMED_RESPONSE" => Status::Failed,
        // Stopped for a reason not stated: not a success.
        "OTHER" | "IMAGE_OTHER" | "NO_IMAGE" | "FINISH_REASON_UNSPECIFIED" => Status::Incomplete,
        // Newer values: as the other APIs' unknown reasons.
        _ => Status::Completed,
    }
}

impl GeminiParser {
    /// The index of the run of `kind` the next part belongs to, opening a
    /// new run when the previous block was of another kind.
    fn run_index(&mut self, kind: Run) -> usize {
        match self.run {
            Some((open, index)) if open == kind => index,
            _ => {
                let index = self.block();
                self.run = Some((kind, index));
                index
            }
        }
    }

    /// A new block of its own (function call, code execution).
    fn block(&mut self) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        self.run = None;
        index
    }

    fn on_part(&mut self, part: Part, out: &mut Vec<ProviderEvent>) {
        let signature = part.thought_signature.filter(|s| !s.is_empty());
        let index = if let Some(call) = part.function_call {
            let index = self.block();
            if let Some(signature) = signature {
                out.push(ProviderEvent::ReasoningSignature { index, signature });
            }
            let id = call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("{SYNTHETIC_CALL_ID_PREFIX}{}", self.calls));
            self.calls += 1;
            let arguments = match call.args {
                Some(args @ serde_json::Value::Object(_)) => args,
                _ => serde_json::Value::Object(Default::default()),
            };
            out.push(ProviderEvent::ToolCallDelta {
                index,
                id: Some(id.clone()),
                name: call.name.clone(),
                arguments: arguments.to_string(),
            });
            out.push(ProviderEvent::ToolCall {
                index,
                id,
                name: call.name.unwrap_or_default(),
                kind: ToolKind::Function,
                arguments,
            });
            return;
        } else if let Some(code) = part.executable_code {
            let index = self.block();
            out.push(ProviderEvent::ServerToolCall {
                index,
                id: String::new(),
                name: "code_execution".to_owned(),
                input: code,
            });
            index
        } else if let Some(result) = part.code_execution_result {
            let index = self.block();
            out.push(ProviderEvent::ServerToolResult {
                index,
                tool_use_id: String::new(),
                kind: "code_execution_result".to_owned(),
                content: result,
            });
            index
        } else if part.thought == Some(true) {
            let index = self.run_index(Run::Thought);
            if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                out.push(ProviderEvent::ReasoningDelta {
                    index,
                    id: None,
                    text,
                });
            }
            index
        } else if let Some(text) = part.text {
            let index = self.run_index(Run::Text);
            if !text.is_empty() {
                out.push(ProviderEvent::TextDelta { text });
            }
            index
        } else if signature.is_some() {
            // A part with only a signature: it belongs to the open run.
            self.run.map_or_else(|| self.block(), |(_, index)| index)
        } else {
            // inlineData, fileData and anything newer.
            return;
        };
        if let Some(signature) = signature {
            out.push(ProviderEvent::ReasoningSignature { index, signature });
        }
    }

    fn on_candidate(&mut self, candidate: Candidate, out: &mut Vec<ProviderEvent>) {
        let parts = candidate.content.and_then(|c| c.parts).unwrap_or_default();
        for part in parts {
            self.on_part(part, out);
        }
        // Citations belong to the text: the open text run, or the next one.
        let text_index = match self.run {
            Some((Run::Text, index)) => index,
            _ => self.next_index,
        };
        let sources = candidate
            .citation_metadata
            .and_then(|c| c.citation_sources)
            .unwrap_or_default();
        let chunks = candidate
            .grounding_metadata
            .and_then(|g| g.grounding_chunks)
            .unwrap_or_default();
        let typed = |kind: &str, v: serde_json::Value| match v {
            serde_json::Value::Object(mut map) => {
                map.insert("type".to_owned(), kind.into());
                serde_json::Value::Object(map)
            }
            other => serde_json::json!({"type": kind, "value": other}),
        };
        for source in sources {
            out.push(ProviderEvent::Citation {
                index: text_index,
                citation: typed("citation_source", source),
            });
        }
        for chunk in chunks {
            out.push(ProviderEvent::Citation {
                index: text_index,
                citation: typed("grounding_chunk", chunk),
            });
        }
        if candidate.finish_reason.is_some() {
            self.finish_reason = candidate.finish_reason;
            self.finish_message = candidate.finish_message;
        }
    }

    pub(super) fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ProviderEvent>,
    ) -> Result<bool, DecodeError> {
        // Gemini sends only unnamed events; a named `error` is read too.
        if !(event.is_message() || event.event == "error") {
            return skip(&event.event, &event.data).map(|()| false);
        }
        let chunk: Chunk = json(&event.event, &event.data)?;
        if let Some(error) = chunk.error {
            push_stream_error(error.status, error.code, error.message, out);
            return Ok(true);
        }
        if !self.started {
            self.started = true;
            out.push(ProviderEvent::Start {
                id: chunk.response_id,
                model: chunk.model_version,
            });
        }
        for candidate in chunk.candidates.into_iter().flatten() {
            if candidate.index.unwrap_or(0) == 0 {
                self.on_candidate(candidate, out);
            }
        }
        if let Some(reason) = chunk.prompt_feedback.and_then(|f| f.block_reason) {
            self.block_reason = Some(reason);
        }
        if let Some(u) = chunk.usage_metadata {
            out.push(ProviderEvent::Usage(Usage {
                input_tokens: u
                    .prompt_token_count
                    .saturating_add(u.tool_use_prompt_token_count),
                output_tokens: u
                    .candidates_token_count
                    .saturating_add(u.thoughts_token_count),
            }));
        }
        Ok(false)
    }

    /// The end of the body: the outcome the stream stated, or `false` when
    /// it stated none (truncated).
    pub(super) fn on_end(&mut self, out: &mut Vec<ProviderEvent>) -> bool {
        if let Some(reason) = self.block_reason.take() {
            out.push(ProviderEvent::Done {
                status: Status::Refused,
                stop_reason: Some(reason),
            });
            return true;
        }
        let Some(reason) = self.finish_reason.take() else {
            return false;
        };
        let status = status_for(&reason);
        if status == Status::Failed {
            out.push(ProviderEvent::Error {
                kind: reason.to_ascii_lowercase(),
                message: self.finish_message.take().unwrap_or_default(),
            });
        }
        out.push(ProviderEvent::Done {
            status,
            stop_reason: Some(reason),
        });
        true
    }
}
