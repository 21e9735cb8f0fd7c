//! Generated answers in each API's exact SSE wire format (CONFORMANCE.md
//! §5.2–5.4), produced lazily so a 20 MB answer costs no 20 MB up front.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::ParsedRequest;
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
}

impl Generator {
    pub(crate) fn new(
        api: Api,
        req: &ParsedRequest,
        wanted: Option<u64>,
        echo: bool,
        serial: u64,
    ) -> Generator {
        let wanted = wanted.unwrap_or(DEFAULT_TOKENS);
        let limit = req.max_tokens.unwrap_or(u64::MAX);
        let words: Vec<String> = if echo {
            req.prompt.split_whitespace().map(str::to_owned).collect()
        } else {
            Vec::new()
        };
        let words = if words.is_empty() {
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
            input_tokens: 8 + req.prompt.split_whitespace().count() as u64,
            to_emit: wanted.min(limit),
            hit_limit: wanted > limit,
            include_usage: req.include_usage,
            emitted: 0,
            seq: 0,
            text: String::new(),
            pending: VecDeque::new(),
            tokens_done: false,
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

    fn response_object(&self, status: &str, with_output: bool) -> Value {
        let item_status = if status == "in_progress" {
            "in_progress"
        } else {
            status
        };
        let output = if with_output {
            json!([{
                "id": self.item_id, "type": "message", "status": item_status, "role": "assistant",
                "content": [{"type": "output_text", "text": self.text, "annotations": []}]
            }])
        } else {
            json!([])
        };
        let usage = if with_output {
            json!({
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.emitted,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.emitted
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
        gemini_data(&json!({
            "candidates": [candidate],
            "usageMetadata": {"promptTokenCount": self.input_tokens,
                              "candidatesTokenCount": self.emitted,
                              "totalTokenCount": self.input_tokens + self.emitted},
            "modelVersion": self.model, "responseId": self.id
        }))
    }

    fn preamble(&mut self) {
        match self.api {
            // Gemini's first chunk is the first token's.
            Api::Gemini => {}
            Api::OpenAiResponses => {
                let created = self.response_object("in_progress", false);
                let evs = [
                    json!({"type": "response.created", "response": created}),
                    json!({"type": "response.in_progress", "response": created}),
                    json!({"type": "response.output_item.added", "output_index": 0,
                        "item": {"id": self.item_id, "type": "message", "status": "in_progress",
                                 "role": "assistant", "content": []}}),
                    json!({"type": "response.content_part.added", "item_id": self.item_id,
                        "output_index": 0, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": []}}),
                ];
                for v in evs {
                    let b = self.responses_event(v);
                    self.pending.push_back(b);
                }
            }
            Api::OpenAiChat => {
                let b = self.chat_chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                );
                self.pending.push_back(b);
            }
            _ => {
                self.pending.push_back(named(
                    "message_start",
                    &json!({"type": "message_start", "message": {
                        "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                                  "cache_read_input_tokens": 0, "output_tokens": 1}}}),
                ));
                self.pending.push_back(named(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}),
                ));
                self.pending
                    .push_back(named("ping", &json!({"type": "ping"})));
            }
        }
    }

    fn next_token_event(&mut self) -> Bytes {
        let tok = self.token(self.emitted);
        self.emitted += 1;
        match self.api {
            Api::OpenAiResponses => {
                self.text.push_str(&tok);
                let v = json!({"type": "response.output_text.delta", "item_id": self.item_id,
                    "output_index": 0, "content_index": 0, "delta": tok, "logprobs": []});
                self.responses_event(v)
            }
            Api::OpenAiChat => self.chat_chunk(json!({"content": tok}), None),
            Api::Gemini => self.gemini_chunk(json!([{"text": tok}]), None),
            _ => named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": tok}}),
            ),
        }
    }

    fn trailer(&mut self) {
        match self.api {
            Api::OpenAiResponses => {
                let status = if self.hit_limit {
                    "incomplete"
                } else {
                    "completed"
                };
                let part = json!({"type": "output_text", "text": self.text, "annotations": []});
                let evs = vec![
                    json!({"type": "response.output_text.done", "item_id": self.item_id,
                        "output_index": 0, "content_index": 0, "text": self.text, "logprobs": []}),
                    json!({"type": "response.content_part.done", "item_id": self.item_id,
                        "output_index": 0, "content_index": 0, "part": part}),
                    json!({"type": "response.output_item.done", "output_index": 0,
                        "item": {"id": self.item_id, "type": "message", "status": status,
                                 "role": "assistant", "content": [part]}}),
                    json!({"type": format!("response.{status}"),
                        "response": self.response_object(status, true)}),
                ];
                for v in evs {
                    let b = self.responses_event(v);
                    self.pending.push_back(b);
                }
            }
            Api::OpenAiChat => {
                let finish = if self.hit_limit { "length" } else { "stop" };
                let b = self.chat_chunk(json!({}), Some(finish));
                self.pending.push_back(b);
                if self.include_usage {
                    self.pending.push_back(data_only(&json!({
                        "id": self.id, "object": "chat.completion.chunk",
                        "created": 1_767_225_600u64, "model": self.model,
                        "system_fingerprint": "fp_mock", "choices": [],
                        "usage": {"prompt_tokens": self.input_tokens,
                                  "completion_tokens": self.emitted,
                                  "total_tokens": self.input_tokens + self.emitted}
                    })));
                }
                self.pending
                    .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            Api::Gemini => {
                let finish = if self.hit_limit { "MAX_TOKENS" } else { "STOP" };
                let b = self.gemini_chunk(json!([{"text": ""}]), Some(finish));
                self.pending.push_back(b);
            }
            _ => {
                let stop = if self.hit_limit {
                    "max_tokens"
                } else {
                    "end_turn"
                };
                self.pending.push_back(named(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                self.pending.push_back(named(
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop, "stop_sequence": null},
                            "usage": {"output_tokens": self.emitted}}),
                ));
                self.pending
                    .push_back(named("message_stop", &json!({"type": "message_stop"})));
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

/// A non-streaming JSON answer (`stream: false`), in the API's shape.
pub(crate) fn non_streaming_body(api: Api, req: &ParsedRequest, wanted: Option<u64>) -> Value {
    let mut g = Generator::new(api, req, wanted, false, 0);
    let mut text = String::new();
    for i in 0..g.to_emit {
        text.push_str(&g.token(i));
    }
    g.emitted = g.to_emit;
    match api {
        Api::OpenAiResponses => {
            g.text = text;
            let status = if g.hit_limit {
                "incomplete"
            } else {
                "completed"
            };
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
    }
}
