//! A whole response accumulated from its events: what the official SDKs'
//! `get_final_message()` / `get_final_completion()` / `get_final_response()`
//! give. [`MessageBuilder`] is the pure accumulator; [`final_messages`] a
//! ready-made pipeline consumer around it; [`ProviderStream::final_message`]
//! drains a stream into one.
//!
//! [`ProviderStream::final_message`]: super::ProviderStream::final_message

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use demandflow::{BoxError, Consumer, Context};
use serde_json::{json, Value};

use super::{ProviderEvent, Status, ToolKind, Usage};

/// Function arguments that are not valid JSON: the typed error of a
/// [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool call arguments are not valid JSON: {message}")]
pub struct ToolArgumentsError {
    /// The arguments as received.
    pub raw: String,
    /// Why they do not parse (serde_json's message).
    pub message: String,
}

/// One client tool call of a [`FinalMessage`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The call's index in the response.
    pub index: usize,
    /// The id a tool result must quote; empty when none was sent.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Function or custom tool.
    pub kind: ToolKind,
    /// The parsed arguments (a JSON string of the raw input for custom
    /// tools), or why they do not parse.
    pub arguments: Result<serde_json::Value, ToolArgumentsError>,
    /// Whether the provider finished the call. `false` when the stream
    /// ended (truncated, failed) while its arguments were still arriving:
    /// the arguments were parsed from what had arrived.
    pub finished: bool,
}

/// One reasoning block of a [`FinalMessage`], with what is needed to send it
/// back in the next turn.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Reasoning {
    /// The block or item index.
    pub index: usize,
    /// The item id (Responses `rs_…`), if sent.
    pub id: Option<String>,
    /// The visible reasoning text (thinking, summary).
    pub text: String,
    /// The signature (Anthropic) or encrypted content (Responses).
    pub signature: Option<String>,
    /// Redacted reasoning's opaque data (Anthropic `redacted_thinking`).
    pub redacted: Option<String>,
}

/// Server tool activity of a [`FinalMessage`]: calls and results, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerTool {
    /// A call the provider ran ([`ProviderEvent::ServerToolCall`]).
    Call {
        /// The block or item index.
        index: usize,
        /// The provider's id for the call.
        id: String,
        /// The tool.
        name: String,
        /// What it was given (Responses: the whole item).
        input: serde_json::Value,
    },
    /// A result ([`ProviderEvent::ServerToolResult`]).
    Result {
        /// The block index.
        index: usize,
        /// The call it answers.
        tool_use_id: String,
        /// The block type.
        kind: String,
        /// The content, verbatim.
        content: serde_json::Value,
    },
}

/// A citation of a [`FinalMessage`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Citation {
    /// The text block or message item it belongs to.
    pub index: usize,
    /// The citation object, verbatim.
    pub citation: serde_json::Value,
}

/// An error the stream reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamError {
    /// The machine-readable kind.
    pub kind: String,
    /// The message.
    pub message: String,
}

/// A whole response, accumulated from its events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FinalMessage {
    /// The response or message id, if sent.
    pub id: Option<String>,
    /// The model, if sent.
    pub model: Option<String>,
    /// The answer's text.
    pub text: String,
    /// Reasoning blocks, by index.
    pub reasoning: Vec<Reasoning>,
    /// The refusal text, if the model declined.
    pub refusal: Option<String>,
    /// Client tool calls to run, by index.
    pub tool_calls: Vec<ToolCall>,
    /// Server tool calls and results, in stream order.
    pub server_tools: Vec<ServerTool>,
    /// Citations, in stream order.
    pub citations: Vec<Citation>,
    /// The last usage reported.
    pub usage: Option<Usage>,
    /// How the stream ended ([`Status::Truncated`] if it never said).
    pub status: Status,
    /// The provider's stop or finish reason, verbatim.
    pub stop_reason: Option<String>,
    /// Errors reported, in order.
    pub errors: Vec<StreamError>,
}

impl FinalMessage {
    /// Whether the model finished normally ([`Status::Completed`]).
    pub fn is_success(&self) -> bool {
        self.status == Status::Completed
    }

    /// The message as JSON, the form `demandflow replay`'s summary and the
    /// fixtures' `final` use: `id`, `model`, `text`, `reasoning` (blocks
    /// `{index,id?,text,signature?,redacted?}`), `refusal`, `tool_calls`
    /// (`{index,id,name,kind,finished,arguments}`, with `error` and `raw`
    /// in place of `arguments` when they are not JSON), `server_tools`
    /// (`{type:"call",index,id,name,input}` or
    /// `{type:"result",index,tool_use_id,kind}`), `citations` (the
    /// citation objects), `usage`, `status`, `stop_reason`, `errors`
    /// (kinds).
    pub fn to_json(&self) -> Value {
        let m = self;
        let reasoning: Vec<Value> = m
            .reasoning
            .iter()
            .map(|r| {
                let mut v = json!({"index": r.index, "text": r.text});
                for (key, value) in [
                    ("id", &r.id),
                    ("signature", &r.signature),
                    ("redacted", &r.redacted),
                ] {
                    if let Some(value) = value {
                        v[key] = json!(value);
                    }
                }
                v
            })
            .collect();
        let tool_calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let mut v = json!({
                    "index": c.index,
                    "id": c.id,
                    "name": c.name,
                    "kind": c.kind,
                    "finished": c.finished,
                });
                match &c.arguments {
                    Ok(arguments) => v["arguments"] = arguments.clone(),
                    Err(err) => {
                        v["error"] = json!(err.message);
                        v["raw"] = json!(err.raw);
                    }
                }
                v
            })
            .collect();
        let server_tools: Vec<Value> = m
            .server_tools
            .iter()
            .map(|t| match t {
                ServerTool::Call {
                    index,
                    id,
                    name,
                    input,
                } => json!({"type": "call", "index": index, "id": id, "name": name, "input": input}),
                ServerTool::Result {
                    index,
                    tool_use_id,
                    kind,
                    ..
                } => json!({"type": "result", "index": index, "tool_use_id": tool_use_id, "kind": kind}),
            })
            .collect();
        json!({
            "id": m.id,
            "model": m.model,
            "text": m.text,
            "reasoning": reasoning,
            "refusal": m.refusal,
            "tool_calls": tool_calls,
            "server_tools": server_tools,
            "citations": m.citations.iter().map(|c| c.citation.clone()).collect::<Vec<_>>(),
            "usage": m.usage,
            "status": m.status,
            "stop_reason": m.stop_reason,
            "errors": m.errors.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        })
    }
}

/// An open tool call: its identity and argument fragments so far.
#[derive(Debug, Clone, Default)]
struct OpenCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// Accumulates the events of one stream into a [`FinalMessage`]. Pure: no
/// I/O, no clock.
///
/// ```
/// use demandflow_stages::provider::{Api, MessageBuilder, ProviderDecoder, Status};
///
/// let mut decoder = ProviderDecoder::new(Api::OpenAiChat);
/// let mut events = Vec::new();
/// decoder.feed(concat!(
///     "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
///     "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
///     "data: [DONE]\n\n",
/// ).as_bytes(), &mut events).unwrap();
/// let mut builder = MessageBuilder::default();
/// events.iter().for_each(|e| builder.push(e));
/// let message = builder.finish();
/// assert_eq!(message.status, Status::Completed);
/// assert_eq!(message.tool_calls[0].name, "f");
/// assert_eq!(message.tool_calls[0].arguments, Ok(serde_json::json!({"a": 1})));
/// ```
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    message: FinalMessage,
    reasoning: BTreeMap<usize, Reasoning>,
    open: BTreeMap<usize, OpenCall>,
    finished: BTreeMap<usize, ToolCall>,
    refusal: Option<String>,
    done: bool,
}

impl Default for MessageBuilder {
    fn default() -> Self {
        MessageBuilder {
            message: FinalMessage {
                id: None,
                model: None,
                text: String::new(),
                reasoning: Vec::new(),
                refusal: None,
                tool_calls: Vec::new(),
                server_tools: Vec::new(),
                citations: Vec::new(),
                usage: None,
                status: Status::Truncated,
                stop_reason: None,
                errors: Vec::new(),
            },
            reasoning: BTreeMap::new(),
            open: BTreeMap::new(),
            finished: BTreeMap::new(),
            refusal: None,
            done: false,
        }
    }
}

impl MessageBuilder {
    /// Adds one event. Events after [`ProviderEvent::Done`] are ignored.
    pub fn push(&mut self, event: &ProviderEvent) {
        if self.done {
            return;
        }
        let m = &mut self.message;
        match event {
            ProviderEvent::Start { id, model } => {
                m.id.clone_from(id);
                m.model.clone_from(model);
            }
            ProviderEvent::TextDelta { text } => m.text.push_str(text),
            ProviderEvent::ReasoningDelta { index, id, text } => {
                let block = self.reasoning.entry(*index).or_default();
                block.index = *index;
                if id.is_some() {
                    block.id.clone_from(id);
                }
                block.text.push_str(text);
            }
            ProviderEvent::ReasoningSignature { index, signature } => {
                let block = self.reasoning.entry(*index).or_default();
                block.index = *index;
                block.signature = Some(signature.clone());
            }
            ProviderEvent::RedactedReasoning { index, data } => {
                let block = self.reasoning.entry(*index).or_default();
                block.index = *index;
                block.redacted = Some(data.clone());
            }
            ProviderEvent::RefusalDelta { text } => {
                self.refusal.get_or_insert_with(String::new).push_str(text);
            }
            ProviderEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let call = self.open.entry(*index).or_default();
                if id.is_some() {
                    call.id.clone_from(id);
                }
                if name.is_some() {
                    call.name.clone_from(name);
                }
                call.arguments.push_str(arguments);
            }
            ProviderEvent::ToolCall {
                index,
                id,
                name,
                kind,
                arguments,
            } => self.close_call(*index, id, name, *kind, Ok(arguments.clone())),
            ProviderEvent::ToolCallInvalid {
                index,
                id,
                name,
                arguments,
                error,
            } => self.close_call(
                *index,
                id,
                name,
                ToolKind::Function,
                Err(ToolArgumentsError {
                    raw: arguments.clone(),
                    message: error.clone(),
                }),
            ),
            ProviderEvent::ServerToolCall {
                index,
                id,
                name,
                input,
            } => m.server_tools.push(ServerTool::Call {
                index: *index,
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            }),
            ProviderEvent::ServerToolResult {
                index,
                tool_use_id,
                kind,
                content,
            } => m.server_tools.push(ServerTool::Result {
                index: *index,
                tool_use_id: tool_use_id.clone(),
                kind: kind.clone(),
                content: content.clone(),
            }),
            ProviderEvent::Citation { index, citation } => m.citations.push(Citation {
                index: *index,
                citation: citation.clone(),
            }),
            ProviderEvent::Usage(usage) => m.usage = Some(*usage),
            ProviderEvent::Done {
                status,
                stop_reason,
            } => {
                m.status = *status;
                m.stop_reason.clone_from(stop_reason);
                self.done = true;
            }
            ProviderEvent::Error { kind, message } => m.errors.push(StreamError {
                kind: kind.clone(),
                message: message.clone(),
            }),
        }
    }

    /// A tool call's end (parsed or not): it leaves the open calls.
    fn close_call(
        &mut self,
        index: usize,
        id: &str,
        name: &str,
        kind: ToolKind,
        arguments: Result<Value, ToolArgumentsError>,
    ) {
        self.open.remove(&index);
        self.finished.insert(
            index,
            ToolCall {
                index,
                id: id.to_owned(),
                name: name.to_owned(),
                kind,
                arguments,
                finished: true,
            },
        );
    }

    /// Whether the terminal event has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The message so far. Tool calls the provider never finished are
    /// included with `finished: false`, their arguments parsed from what
    /// arrived.
    pub fn finish(mut self) -> FinalMessage {
        for (index, call) in std::mem::take(&mut self.open) {
            let arguments = if call.arguments.trim().is_empty() {
                Ok(serde_json::json!({}))
            } else {
                serde_json::from_str(&call.arguments).map_err(|err| ToolArgumentsError {
                    raw: call.arguments.clone(),
                    message: err.to_string(),
                })
            };
            self.finished.insert(
                index,
                ToolCall {
                    index,
                    id: call.id.unwrap_or_default(),
                    name: call.name.unwrap_or_default(),
                    kind: ToolKind::Function,
                    arguments,
                    finished: false,
                },
            );
        }
        self.message.tool_calls = self.finished.into_values().collect();
        self.message.reasoning = self.reasoning.into_values().collect();
        self.message.refusal = self.refusal;
        self.message
    }

    /// Takes the message so far and starts again empty.
    pub fn take(&mut self) -> FinalMessage {
        std::mem::take(self).finish()
    }
}

/// Where a [`FinalMessages`] consumer puts each finished message.
#[derive(Debug, Clone, Default)]
pub struct FinalMessageSlot {
    messages: Arc<Mutex<Vec<FinalMessage>>>,
}

impl FinalMessageSlot {
    /// Takes every message finished so far.
    pub fn take(&self) -> Vec<FinalMessage> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The last message finished so far.
    pub fn last(&self) -> Option<FinalMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()
    }

    fn push(&self, message: FinalMessage) {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }
}

/// A consumer of provider events that puts one [`FinalMessage`] per stream
/// (per [`ProviderEvent::Done`]) into its [`FinalMessageSlot`]; see
/// [`final_messages`]. Events of a stream left without a `Done` when the
/// stage finishes give a [`Status::Truncated`] message.
#[derive(Clone, Default)]
pub struct FinalMessages {
    builder: MessageBuilder,
    started: bool,
    slot: FinalMessageSlot,
}

impl fmt::Debug for FinalMessages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinalMessages").finish_non_exhaustive()
    }
}

/// A consumer accumulating provider events into final messages, and the
/// slot where they land.
///
/// ```no_run
/// use demandflow::{Pipeline, Subscribe};
/// use demandflow_stages::provider::{final_messages, Api, ProviderConfig, ProviderProducer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = ProviderConfig::official(Api::AnthropicMessages).prompt("Say hi");
/// let mut p = Pipeline::new();
/// let llm = p.producer("llm", ProviderProducer::new(config).unwrap());
/// let (consumer, slot) = final_messages();
/// p.consumer("final", consumer).subscribe(&llm, Subscribe::default());
/// p.spawn().unwrap().join().await.unwrap();
/// let message = slot.last().unwrap();
/// println!("{:?}: {}", message.status, message.text);
/// # }
/// ```
pub fn final_messages() -> (FinalMessages, FinalMessageSlot) {
    let slot = FinalMessageSlot::default();
    (
        FinalMessages {
            builder: MessageBuilder::default(),
            started: false,
            slot: slot.clone(),
        },
        slot,
    )
}

impl Consumer<ProviderEvent> for FinalMessages {
    async fn consume(&mut self, events: &[ProviderEvent], _cx: &Context) -> Result<(), BoxError> {
        for event in events {
            self.started = true;
            self.builder.push(event);
            if self.builder.is_done() {
                self.slot.push(self.builder.take());
                self.started = false;
            }
        }
        Ok(())
    }

    async fn finish(&mut self, _cx: &Context) -> Result<(), BoxError> {
        if self.started {
            self.slot.push(self.builder.take());
            self.started = false;
        }
        Ok(())
    }
}
