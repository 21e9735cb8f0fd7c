//! Reading the four APIs' request bodies.

use serde_json::Value;

use crate::provider::Api;

/// Which API a request path addresses. Matched on the path's end so a base
/// URL with a prefix (`/proxy/v1/messages`) reaches the mock too.
pub(crate) fn api_for_path(path: &str) -> Option<Api> {
    let path = path.trim_end_matches('/');
    // Gemini names the model and the method in the last segment:
    // `/v1beta/models/{model}:streamGenerateContent`.
    if path.ends_with(":streamGenerateContent") || path.ends_with(":generateContent") {
        return Some(Api::Gemini);
    }
    if path.ends_with("/responses") {
        Some(Api::OpenAiResponses)
    } else if path.ends_with("/chat/completions") {
        Some(Api::OpenAiChat)
    } else if path.ends_with("/messages") {
        Some(Api::AnthropicMessages)
    } else {
        None
    }
}

/// The fields of a request the mock acts on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParsedRequest {
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) prompt: String,
    pub(crate) include_usage: bool,
}

impl ParsedRequest {
    pub(crate) fn from_json(api: Api, v: &Value) -> ParsedRequest {
        let max_tokens = ["max_output_tokens", "max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_u64))
            .or_else(|| {
                v.pointer("/generationConfig/maxOutputTokens")
                    .and_then(Value::as_u64)
            });
        let mut prompt = String::new();
        match api {
            Api::OpenAiResponses => {
                if let Some(s) = v.get("instructions").and_then(Value::as_str) {
                    push_text(&mut prompt, s);
                }
                match v.get("input") {
                    Some(Value::String(s)) => push_text(&mut prompt, s),
                    Some(Value::Array(items)) => items.iter().for_each(|m| message(&mut prompt, m)),
                    _ => {}
                }
            }
            Api::Gemini => {
                if let Some(Value::Array(parts)) = v.pointer("/systemInstruction/parts") {
                    parts.iter().for_each(|p| content(&mut prompt, p));
                }
                if let Some(Value::Array(turns)) = v.get("contents") {
                    for turn in turns {
                        if let Some(Value::Array(parts)) = turn.get("parts") {
                            parts.iter().for_each(|p| content(&mut prompt, p));
                        }
                    }
                }
            }
            _ => {
                if let Some(system) = v.get("system") {
                    content(&mut prompt, system);
                }
                if let Some(Value::Array(msgs)) = v.get("messages") {
                    msgs.iter().for_each(|m| message(&mut prompt, m));
                }
            }
        }
        ParsedRequest {
            model: v.get("model").and_then(Value::as_str).map(str::to_owned),
            stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
            max_tokens,
            prompt,
            include_usage: v
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

impl ParsedRequest {
    /// Gemini puts in the path what the other APIs put in the body: the
    /// model, and whether to stream (`:streamGenerateContent`).
    pub(crate) fn with_path(mut self, api: Api, path: &str) -> ParsedRequest {
        if api == Api::Gemini {
            let last = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let (model, method) = last.split_once(':').unwrap_or((last, ""));
            self.model = Some(model.to_owned()).filter(|m| !m.is_empty());
            self.stream = method == "streamGenerateContent";
            // Gemini always reports usage.
            self.include_usage = true;
        }
        self
    }
}

fn push_text(out: &mut String, s: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

fn message(out: &mut String, m: &Value) {
    if let Some(c) = m.get("content") {
        content(out, c);
    }
}

/// Content is a string, a list of typed parts (`{"type":"text","text":..}`,
/// `{"type":"input_text","text":..}`), or one Gemini part (`{"text":..}`).
fn content(out: &mut String, c: &Value) {
    match c {
        Value::String(s) => push_text(out, s),
        Value::Array(parts) => {
            for p in parts {
                if let Some(s) = p.get("text").and_then(Value::as_str) {
                    push_text(out, s);
                }
            }
        }
        Value::Object(part) => {
            if let Some(s) = part.get("text").and_then(Value::as_str) {
                push_text(out, s);
            }
        }
        _ => {}
    }
}
