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
    /// The tool call to answer with: the first offered function tool, when
    /// the last turn is not a tool result.
    pub(crate) tool: Option<MockToolCall>,
    /// The last turn's tool result, as text, when the last turn is one.
    pub(crate) tool_result: Option<String>,
    /// Whether the request asks for reasoning (Anthropic `thinking`,
    /// Responses `reasoning`, Chat `reasoning_effort`, Gemini
    /// `thinkingConfig.includeThoughts`).
    pub(crate) reasoning: bool,
    /// The input tokens the rate limits charged, reported as the answer's
    /// input usage instead of the word-count estimate.
    pub(crate) charged_input: Option<u64>,
}

/// A tool call the mock makes up: the tool's name and placeholder
/// arguments from its schema (see [`placeholder`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MockToolCall {
    pub(crate) name: String,
    pub(crate) arguments: Value,
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
        let tool_result = last_tool_result(api, v);
        let tool = if tool_result.is_some() {
            None
        } else {
            first_function_tool(api, v).map(|(name, schema)| MockToolCall {
                name,
                arguments: placeholder(schema.unwrap_or(&Value::Null), 0),
            })
        };
        let reasoning = match api {
            Api::OpenAiResponses => v.get("reasoning").is_some_and(Value::is_object),
            Api::OpenAiChat => v.get("reasoning_effort").is_some_and(Value::is_string),
            Api::Gemini => v
                .pointer("/generationConfig/thinkingConfig/includeThoughts")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            _ => v.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled"),
        };
        ParsedRequest {
            tool,
            tool_result,
            reasoning,
            charged_input: None,
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

/// The name and schema of the first function tool the request offers
/// (custom, free-form tools are passed over: the mock calls functions only).
fn first_function_tool(api: Api, v: &Value) -> Option<(String, Option<&Value>)> {
    let name = |t: &Value| t.get("name").and_then(Value::as_str).map(str::to_owned);
    match api {
        Api::Gemini => v
            .get("tools")?
            .as_array()?
            .iter()
            .filter_map(|t| t.get("functionDeclarations")?.as_array())
            .flatten()
            .find_map(|d| {
                let schema = d
                    .get("parametersJsonSchema")
                    .or_else(|| d.get("parameters"));
                Some((name(d)?, schema))
            }),
        Api::OpenAiChat => v.get("tools")?.as_array()?.iter().find_map(|t| {
            let f = t.get("function").filter(|_| t["type"] == "function")?;
            Some((name(f)?, f.get("parameters")))
        }),
        Api::OpenAiResponses => v.get("tools")?.as_array()?.iter().find_map(|t| {
            (t["type"] == "function").then_some(())?;
            Some((name(t)?, t.get("parameters")))
        }),
        // Anthropic server tools (`web_search_…`) have a `type` and no schema.
        _ => v
            .get("tools")?
            .as_array()?
            .iter()
            .find_map(|t| Some((name(t)?, Some(t.get("input_schema")?)))),
    }
}

/// The last turn's tool result as text, if the last turn is a tool result.
fn last_tool_result(api: Api, v: &Value) -> Option<String> {
    let as_text = |c: &Value| -> String {
        match c {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                let mut out = String::new();
                parts.iter().for_each(|p| content(&mut out, p));
                out
            }
            other => other.to_string(),
        }
    };
    match api {
        Api::OpenAiChat => {
            let last = v.get("messages")?.as_array()?.last()?;
            (last["role"] == "tool").then(|| as_text(&last["content"]))
        }
        Api::OpenAiResponses => {
            let last = v.get("input")?.as_array()?.last()?;
            let kind = last.get("type")?.as_str()?;
            matches!(kind, "function_call_output" | "custom_tool_call_output")
                .then(|| as_text(&last["output"]))
        }
        Api::Gemini => {
            let last = v.get("contents")?.as_array()?.last()?;
            let response = last
                .get("parts")?
                .as_array()?
                .iter()
                .find_map(|p| p.pointer("/functionResponse/response"))?;
            // The project sends non-object results as `{"output": …}` or
            // `{"error": …}`; show the text itself then.
            Some(
                ["output", "error"]
                    .iter()
                    .find_map(|k| response.get(*k).and_then(Value::as_str))
                    .map_or_else(|| response.to_string(), str::to_owned),
            )
        }
        _ => {
            let last = v.get("messages")?.as_array()?.last()?;
            let result = last
                .get("content")?
                .as_array()?
                .iter()
                .find(|b| b["type"] == "tool_result")?;
            Some(as_text(result.get("content").unwrap_or(&Value::Null)))
        }
    }
}

/// Placeholder arguments for a JSON schema, kept simple: an object gets its
/// `required` properties only (none when there are none), each a value of
/// its schema's type — the first `enum` value if there is one, else
/// `"mock"` for a string, `1` for an integer or number, `true` for a
/// boolean, `[]` for an array, `null` for null, and a placeholder object
/// for an object. A schema with no usable `type` gets `"mock"`; a union
/// type (`["string", "null"]`) takes its first non-null member. Nesting is
/// cut at depth 8 (a self-referencing schema gets `{}` there).
pub(crate) fn placeholder(schema: &Value, depth: usize) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        // The top-level schema of a tool is an object even when unsaid.
        _ if depth == 0 => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = serde_json::Map::new();
            if depth < 8 {
                let required = schema.get("required").and_then(Value::as_array);
                for key in required.into_iter().flatten().filter_map(Value::as_str) {
                    let prop = schema
                        .pointer(&format!(
                            "/properties/{}",
                            key.replace('~', "~0").replace('/', "~1")
                        ))
                        .unwrap_or(&Value::Null);
                    out.insert(key.to_owned(), placeholder(prop, depth + 1));
                }
            }
            Value::Object(out)
        }
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "array" => Value::Array(Vec::new()),
        "null" => Value::Null,
        _ => Value::String("mock".to_owned()),
    }
}
