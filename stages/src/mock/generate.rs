//! Generated answers in each API's exact SSE wire format (CONFORMANCE.md
//! §5.2–5.4), produced lazily so a 20 MB answer costs no 20 MB up front.
//!
//! What the answer is follows the request (shapes copied from the
//! fixtures in `tests/fixtures/sse/`, which the official SDKs accept):
//! - reasoning asked for: a short reasoning block comes first (Anthropic
//!   `thinking` block with a `signature_delta`; Responses `reasoning` item
//!   with summary text deltas and `encrypted_content`; Gemini `thought: true`
//!   parts, the last with a `thoughtSignature`; Chat `reasoning_content`
//!   deltas, as compatible servers send them);
//! - tools offered and the last turn not a tool result: one call to the
//!   first function tool with placeholder arguments
//!   ([`placeholder`](super::request::placeholder)), its JSON sent in two
//!   argument deltas, and the API's tool stop (`tool_use`, `tool_calls`,
//!   a `function_call` output item, a `functionCall` part with `STOP`);
//! - the last turn a tool result: text saying `The tool returned: {result}`,
//!   once (unless a token count is set);
//! - else text of `tokens` words.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::{MockToolCall, ParsedRequest};
use crate::provider::Api;

const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
];

/// The reasoning a generated answer shows when asked to reason, one token
/// per piece.
const REASONING: &[&str] = &["Thinking", " about", " the", " request."];

/// Tokens a generated answer has when neither the behaviour nor the request
/// says otherwise.
pub(crate) const DEFAULT_TOKENS: u64 = 64;

/// Yields the SSE events of one answer, one `Bytes` per event.
pub(crate) struct Generator {
    api: Api,
    model: String,
    id: String,
    item_id: String,
    words: Vec<String>,
    input_tokens: u64,
    to_emit: u64,
    hit_limit: bool,
    include_usage: bool,
    emitted: u64,
    seq: u64,
    /// Kept only for the Responses API, whose closing events repeat the text.
    text: String,
    pending: VecDeque<Bytes>,
    tokens_done: bool,
    serial: u64,
    /// The call to make instead of text.
    tool: Option<MockToolCall>,
    reasoning: bool,
    /// Reasoning tokens sent (counted in the output usage).
    reasoning_tokens: u64,
    /// Block (Anthropic) or output item (Responses) index of the text or
    /// tool call: 1 after a reasoning block, else 0.
    first: usize,
    /// Responses output items finished so far, for the closing response.
    outputs: Vec<Value>,
}

impl Generator {
    pub(crate) fn new(
        api: Api,
        req: &ParsedRequest,
        wanted: Option<u64>,
        echo: bool,
        serial: u64,
    ) -> Generator {
        let limit = req.max_tokens.unwrap_or(u64::MAX);
        let words: Vec<String> = if echo {
            req.prompt.split_whitespace().map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        let result_words: Vec<String> = match &req.tool_result {
            Some(result) => format!("The tool returned: {result}")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        // A tool result is answered once, not cycled to 64 tokens.
        let wanted = match (&req.tool_result, wanted) {
            (Some(_), None) => result_words.len() as u64,
            (_, w) => w.unwrap_or(DEFAULT_TOKENS),
        };
        let words = if !result_words.is_empty() {
            result_words
        } else if words.is_empty() {
            LOREM.iter().map(|w| (*w).to_owned()).collect()
        } else {
            words
        };
        let model = req.model.clone().unwrap_or_else(|| "mock-model".to_owned());
        let mut g = Generator {
            api,
            model,
            id: String::new(),
            item_id: format!("msg_mock_{serial}"),
            words,
            input_tokens: req
                .charged_input
                .unwrap_or(8 + req.prompt.split_whitespace().count() as u64),
            // A tool call replaces the text (and is not cut by the limit).
            to_emit: if req.tool.is_some() {
                0
            } else {
                wanted.min(limit)
            },
            hit_limit: req.tool.is_none() && wanted > limit,
            include_usage: req.include_usage,
            emitted: 0,
            seq: 0,
            text: String::new(),
            pending: VecDeque::new(),
            tokens_done: false,
            serial,
            tool: req.tool.clone(),
            reasoning: req.reasoning,
            reasoning_tokens: 0,
            first: usize::from(req.reasoning),
            outputs: Vec::new(),
        };
        g.id = match api {
            Api::OpenAiResponses => format!("resp_mock_{serial}"),
            Api::OpenAiChat => format!("chatcmpl-mock{serial}"),
            Api::Gemini => format!("mockGemini{serial}"),
            _ => format!("msg_mock_{serial}"),
        };
        g.preamble();
        g
    }

    fn token(&self, i: u64) -> String {
        let w = &self.words[(i % self.words.len() as u64) as usize];
        if i == 0 {
            w.clone()
        } else {
            format!(" {w}")
        }
    }

    fn responses_event(&mut self, mut v: Value) -> Bytes {
        let name = v["type"].as_str().unwrap_or("unknown").to_owned();
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        named(&name, &v)
    }

    /// Output tokens: text plus reasoning.
    fn output_tokens(&self) -> u64 {
        self.emitted + self.reasoning_tokens
    }

    /// The output tokens the finished answer reports.
    pub(crate) fn output_tokens_planned(&self) -> u64 {
        self.to_emit + self.reasoning_tokens
    }

    fn response_object(&self, status: &str, with_output: bool) -> Value {
        let output = if with_output {
            Value::Array(self.outputs.clone())
        } else {
            json!([])
        };
        let usage = if with_output {
            json!({
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens(),
                "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
                "total_tokens": self.input_tokens + self.output_tokens()
            })
        } else {
            Value::Null
        };
        let incomplete = if status == "incomplete" {
            json!({"reason": "max_output_tokens"})
        } else {
            Value::Null
        };
        json!({
            "id": self.id, "object": "response", "created_at": 1_767_225_600u64,
            "status": status, "error": null, "incomplete_details": incomplete,
            "model": self.model, "output": output, "usage": usage
        })
    }

    /// The Responses message item holding the text so far.
    fn message_item(&self, status: &str) -> Value {
        json!({
            "id": self.item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": self.text, "annotations": []}]
        })
    }

    fn chat_chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        data_only(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": 1_767_225_600u64,
            "model": self.model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": null
        }))
    }

    /// One Gemini chunk: `parts` of candidate 0, its finish reason, and the
    /// cumulative usage (Gemini reports it on every chunk).
    fn gemini_chunk(&self, parts: Value, finish: Option<&str>) -> Bytes {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut usage = json!({"promptTokenCount": self.input_tokens,
                               "candidatesTokenCount": self.emitted,
                               "totalTokenCount": self.input_tokens + self.output_tokens()});
        if self.reasoning_tokens > 0 {
            usage["thoughtsTokenCount"] = json!(self.reasoning_tokens);
        }
        gemini_data(&json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model, "responseId": self.id
        }))
    }

    fn push(&mut self, b: Bytes) {
        self.pending.push_back(b);
    }

    fn push_responses(&mut self, v: Value) {
        let b = self.responses_event(v);
        self.pending.push_back(b);
    }

    fn anthropic_event(&mut self, v: Value) {
        let name = v["type"].as_str().unwrap_or("unknown").to_owned();
        self.pending.push_back(named(&name, &v));
    }

    fn preamble(&mut self) {
        match self.api {
            // Gemini's first chunk is the first token's (or thought's).
            Api::Gemini => {}
            Api::OpenAiResponses => {
                let created = self.response_object("in_progress", false);
                self.push_responses(json!({"type": "response.created", "response": created}));
                self.push_responses(json!({"type": "response.in_progress", "response": created}));
            }
            Api::OpenAiChat => {
                let b = self.chat_chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                );
                self.push(b);
            }
            _ => {
                self.anthropic_event(json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1}}}));
            }
        }
        if self.reasoning {
            self.reasoning_block();
        }
        if self.tool.is_some() {
            self.tool_call();
            return;
        }
        match self.api {
            Api::OpenAiResponses => {
                let item = json!({"id": self.item_id, "type": "message", "status": "in_progress",
                                  "role": "assistant", "content": []});
                self.push_responses(json!({"type": "response.output_item.added",
                    "output_index": self.first, "item": item}));
                self.push_responses(json!({"type": "response.content_part.added",
                    "item_id": self.item_id, "output_index": self.first, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}));
            }
            Api::AnthropicMessages => {
                self.anthropic_event(json!({"type": "content_block_start", "index": self.first,
                    "content_block": {"type": "text", "text": ""}}));
                self.anthropic_event(json!({"type": "ping"}));
            }
            _ => {}
        }
    }

    /// The reasoning block every API sends before the answer when asked.
    fn reasoning_block(&mut self) {
        let serial = self.serial;
        let text: String = REASONING.concat();
        self.reasoning_tokens = REASONING.len() as u64;
        match self.api {
            Api::OpenAiResponses => {
                let id = format!("rs_mock_{serial}");
                let (i, o) = ("item_id", "output_index");
                self.push_responses(json!({"type": "response.output_item.added", o: 0,
                    "item": {"id": id, "type": "reasoning", "summary": [], "encrypted_content": null}}));
                self.push_responses(json!({"type": "response.reasoning_summary_part.added",
                    i: id, o: 0, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
                for piece in REASONING {
                    self.push_responses(json!({"type": "response.reasoning_summary_text.delta",
                        i: id, o: 0, "summary_index": 0, "delta": piece}));
                }
                self.push_responses(json!({"type": "response.reasoning_summary_text.done",
                    i: id, o: 0, "summary_index": 0, "text": text}));
                let part = json!({"type": "summary_text", "text": text});
                self.push_responses(json!({"type": "response.reasoning_summary_part.done",
                    i: id, o: 0, "summary_index": 0, "part": part}));
                let item = json!({"id": id, "type": "reasoning", "summary": [part],
                                  "encrypted_content": format!("mock-encrypted-{serial}")});
                self.push_responses(
                    json!({"type": "response.output_item.done", o: 0, "item": item}),
                );
                self.outputs.push(item);
            }
            Api::OpenAiChat => {
                for piece in REASONING {
                    let b =
                        self.chat_chunk(json!({"content": null, "reasoning_content": piece}), None);
                    self.push(b);
                }
            }
            Api::Gemini => {
                for (n, piece) in REASONING.iter().enumerate() {
                    let mut part = json!({"text": piece, "thought": true});
                    // The signature rides on the run's last thought part.
                    if n + 1 == REASONING.len() {
                        part["thoughtSignature"] = json!("bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==");
                    }
                    let b = self.gemini_chunk(json!([part]), None);
                    self.push(b);
                }
            }
            _ => {
                self.anthropic_event(json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}));
                for piece in REASONING {
                    self.anthropic_event(json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "thinking_delta", "thinking": piece}}));
                }
                self.anthropic_event(json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta",
                              "signature": format!("mock-signature-{serial}")}}));
                self.anthropic_event(json!({"type": "content_block_stop", "index": 0}));
            }
        }
    }

    /// One call to the offered tool, its arguments' JSON in two deltas.
    fn tool_call(&mut self) {
        let Some(tool) = self.tool.clone() else {
            return;
        };
        let serial = self.serial;
        let args = tool.arguments.to_string();
        let mut cut = args.len() / 2;
        while !args.is_char_boundary(cut) {
            cut -= 1;
        }
        let pieces = [&args[..cut], &args[cut..]];
        let first = self.first;
        match self.api {
            Api::OpenAiResponses => {
                let id = format!("fc_mock_{serial}");
                let call_id = format!("call_mock_{serial}");
                let item = |status: &str, arguments: &str| {
                    json!({"id": id, "type": "function_call", "status": status,
                           "arguments": arguments, "call_id": call_id, "name": tool.name})
                };
                self.push_responses(json!({"type": "response.output_item.added",
                    "output_index": first, "item": item("in_progress", "")}));
                for piece in pieces {
                    self.push_responses(json!({"type": "response.function_call_arguments.delta",
                        "item_id": id, "output_index": first, "delta": piece}));
                }
                self.push_responses(json!({"type": "response.function_call_arguments.done",
                    "item_id": id, "output_index": first, "name": tool.name, "arguments": args}));
                let done = item("completed", &args);
                self.push_responses(json!({"type": "response.output_item.done",
                    "output_index": first, "item": done}));
                self.outputs.push(done);
            }
            Api::OpenAiChat => {
                let b = self.chat_chunk(
                    json!({"tool_calls": [{"index": 0, "id": format!("call_mock_{serial}"),
                        "type": "function", "function": {"name": tool.name, "arguments": ""}}]}),
                    None,
                );
                self.push(b);
                for piece in pieces {
                    let b = self.chat_chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        None,
                    );
                    self.push(b);
                }
            }
            Api::Gemini => {
                // Gemini sends a call whole, in the chunk that ends the turn.
                let b = self.gemini_chunk(
                    json!([{"functionCall": {"name": tool.name, "args": tool.arguments}}]),
                    Some("STOP"),
                );
                self.push(b);
            }
            _ => {
                self.anthropic_event(json!({"type": "content_block_start", "index": first,
                    "content_block": {"type": "tool_use", "id": format!("toolu_mock_{serial}"),
                                      "name": tool.name, "input": {}}}));
                for piece in pieces {
                    self.anthropic_event(json!({"type": "content_block_delta", "index": first,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}));
                }
                self.anthropic_event(json!({"type": "content_block_stop", "index": first}));
            }
        }
    }

    fn next_token_event(&mut self) -> Bytes {
        let tok = self.token(self.emitted);
        self.emitted += 1;
        let first = self.first;
        match self.api {
            Api::OpenAiResponses => {
                self.text.push_str(&tok);
                let v = json!({"type": "response.output_text.delta", "item_id": self.item_id,
                    "output_index": first, "content_index": 0, "delta": tok, "logprobs": []});
                self.responses_event(v)
            }
            Api::OpenAiChat => self.chat_chunk(json!({"content": tok}), None),
            Api::Gemini => self.gemini_chunk(json!([{"text": tok}]), None),
            _ => named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": first,
                        "delta": {"type": "text_delta", "text": tok}}),
            ),
        }
    }

    fn trailer(&mut self) {
        let tool = self.tool.is_some();
        let first = self.first;
        match self.api {
            Api::OpenAiResponses => {
                let status = if self.hit_limit {
                    "incomplete"
                } else {
                    "completed"
                };
                if !tool {
                    let part = json!({"type": "output_text", "text": self.text, "annotations": []});
                    self.push_responses(json!({"type": "response.output_text.done",
                        "item_id": self.item_id, "output_index": first, "content_index": 0,
                        "text": self.text, "logprobs": []}));
                    self.push_responses(json!({"type": "response.content_part.done",
                        "item_id": self.item_id, "output_index": first, "content_index": 0,
                        "part": part}));
                    let item = self.message_item(status);
                    self.push_responses(json!({"type": "response.output_item.done",
                        "output_index": first, "item": item}));
                    self.outputs.push(item);
                }
                let response = self.response_object(status, true);
                self.push_responses(json!({"type": format!("response.{status}"),
                    "response": response}));
            }
            Api::OpenAiChat => {
                let finish = if tool {
                    "tool_calls"
                } else if self.hit_limit {
                    "length"
                } else {
                    "stop"
                };
                let b = self.chat_chunk(json!({}), Some(finish));
                self.push(b);
                if self.include_usage {
                    let mut usage = json!({"prompt_tokens": self.input_tokens,
                                           "completion_tokens": self.output_tokens(),
                                           "total_tokens": self.input_tokens + self.output_tokens()});
                    if self.reasoning_tokens > 0 {
                        usage["completion_tokens_details"] =
                            json!({"reasoning_tokens": self.reasoning_tokens});
                    }
                    self.push(data_only(&json!({
                        "id": self.id, "object": "chat.completion.chunk",
                        "created": 1_767_225_600u64, "model": self.model,
                        "system_fingerprint": "fp_mock", "choices": [], "usage": usage
                    })));
                }
                self.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            Api::Gemini => {
                // A tool call's chunk already ended the turn.
                if !tool {
                    let finish = if self.hit_limit { "MAX_TOKENS" } else { "STOP" };
                    let b = self.gemini_chunk(json!([{"text": ""}]), Some(finish));
                    self.push(b);
                }
            }
            _ => {
                let stop = if tool {
                    "tool_use"
                } else if self.hit_limit {
                    "max_tokens"
                } else {
                    "end_turn"
                };
                if !tool {
                    self.anthropic_event(json!({"type": "content_block_stop", "index": first}));
                }
                self.anthropic_event(json!({"type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens()}}));
                self.anthropic_event(json!({"type": "message_stop"}));
            }
        }
    }
}

impl Iterator for Generator {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(b) = self.pending.pop_front() {
            return Some(b);
        }
        if self.emitted < self.to_emit {
            return Some(self.next_token_event());
        }
        if !self.tokens_done {
            self.tokens_done = true;
            self.trailer();
            return self.pending.pop_front();
        }
        None
    }
}

/// The API's in-stream error event, as the provider sends it. `seq` is the
/// Responses API's `sequence_number` (the count of events sent before it).
pub(crate) fn error_event(api: Api, kind: &str, message: &str, seq: u64) -> Bytes {
    match api {
        Api::OpenAiChat => data_only(&json!({
            "error": {"message": message, "type": kind, "param": null, "code": kind}
        })),
        Api::OpenAiResponses => named(
            "error",
            &json!({"type": "error", "code": kind, "message": message, "param": null,
                    "sequence_number": seq}),
        ),
        Api::Gemini => gemini_data(&json!({
            "error": {"code": 500, "message": message, "status": kind}
        })),
        _ => named(
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": message}}),
        ),
    }
}

/// `event: <name>` + `data: <json>` + blank line.
fn named(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// `data: <json>` + blank line (Chat Completions has no `event:` lines).
fn data_only(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// `data: <json>` + CRLF blank line, as Gemini sends its chunks.
fn gemini_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\r\n\r\n"))
}

/// A non-streaming JSON answer (`stream: false`), in the API's shape, and
/// the output tokens it reports.
pub(crate) fn non_streaming_body(
    api: Api,
    req: &ParsedRequest,
    wanted: Option<u64>,
) -> (Value, u64) {
    let mut g = Generator::new(api, req, wanted, false, 0);
    let mut text = String::new();
    for i in 0..g.to_emit {
        text.push_str(&g.token(i));
    }
    g.emitted = g.to_emit;
    let body = match api {
        Api::OpenAiResponses => {
            g.text = text;
            let status = if g.hit_limit {
                "incomplete"
            } else {
                "completed"
            };
            g.outputs = vec![g.message_item(status)];
            g.response_object(status, true)
        }
        Api::OpenAiChat => json!({
            "id": g.id, "object": "chat.completion", "created": 1_767_225_600u64, "model": g.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": if g.hit_limit { "length" } else { "stop" }}],
            "usage": {"prompt_tokens": g.input_tokens, "completion_tokens": g.emitted,
                      "total_tokens": g.input_tokens + g.emitted}
        }),
        Api::Gemini => json!({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "finishReason": if g.hit_limit { "MAX_TOKENS" } else { "STOP" },
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": g.input_tokens,
                              "candidatesTokenCount": g.emitted,
                              "totalTokenCount": g.input_tokens + g.emitted},
            "modelVersion": g.model, "responseId": g.id
        }),
        _ => json!({
            "id": g.id, "type": "message", "role": "assistant", "model": g.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": if g.hit_limit { "max_tokens" } else { "end_turn" },
            "stop_sequence": null,
            "usage": {"input_tokens": g.input_tokens, "output_tokens": g.emitted}
        }),
    };
    (body, g.emitted)
}
