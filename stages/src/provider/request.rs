//! What a request asks for beyond the prompt: conversation parts (images,
//! tool calls and their results, reasoning sent back), tools, tool choice,
//! sampling and reasoning settings, and extra body fields; and how each API
//! spells them.
//!
//! One model, four spellings (checked against the official SDKs' request
//! types; Gemini's against `google-genai`'s, in the API's camelCase):
//!
//! | setting | Anthropic Messages | Chat Completions | Responses | Gemini |
//! |---|---|---|---|---|
//! | system | `system` | `system` message | `instructions` | `systemInstruction: {parts:[{text}]}` |
//! | max tokens | `max_tokens` | `max_tokens` | `max_output_tokens` | `generationConfig.maxOutputTokens` |
//! | tool | `{name, description, input_schema}` | `{type:"function", function:{name, description, parameters, strict}}` | `{type:"function", name, description, parameters, strict}` | `tools: [{functionDeclarations: [{name, description, parametersJsonSchema}]}]` |
//! | custom tool | — (sent as a function tool taking a string) | `{type:"custom", custom:{name, description}}` | `{type:"custom", name, description}` | — (as Anthropic) |
//! | tool choice | `{type:"auto"\|"any"\|"none"}`, `{type:"tool", name}` | `"auto"\|"required"\|"none"`, `{type:"function", function:{name}}` | `"auto"\|"required"\|"none"`, `{type:"function", name}` | `toolConfig: {functionCallingConfig: {mode:"AUTO"\|"ANY"\|"NONE", allowedFunctionNames}}` |
//! | assistant tool call | `tool_use` block `{id, name, input}` | `tool_calls: [{id, type:"function", function:{name, arguments}}]` | `function_call` / `custom_tool_call` item | `model` turn part `{functionCall: {id?, name, args}}` |
//! | tool result | `tool_result` block `{tool_use_id, content, is_error}` in a user turn | `{role:"tool", tool_call_id, content}` | `function_call_output` / `custom_tool_call_output` item | `user` turn part `{functionResponse: {id?, name, response}}` |
//! | image | `{type:"image", source:{type:"url"\|"base64", …}}` | `{type:"image_url", image_url:{url}}` | `{type:"input_image", image_url, detail:"auto"}` | `{inlineData:{mimeType, data}}`, `{fileData:{fileUri, mimeType?}}` |
//! | reasoning sent back | `thinking {thinking, signature}`, `redacted_thinking {data}` | — (dropped) | `reasoning` item `{id, summary, encrypted_content}` | `{text, thought:true, thoughtSignature}`; a signature without text goes on the turn's function call (else its text) |
//! | temperature, top_p | `temperature`, `top_p` | same | same | `generationConfig.temperature`, `.topP` |
//! | stop sequences | `stop_sequences` | `stop` | — (the API has none; ignored) | `generationConfig.stopSequences` |
//! | reasoning effort | — | `reasoning_effort` | `reasoning: {effort, summary}` | `generationConfig.thinkingConfig.thinkingLevel` (upper case) |
//! | thinking budget | `thinking: {type:"enabled", budget_tokens}` | — | — | `generationConfig.thinkingConfig.thinkingBudget` |
//! | include thoughts | — | — | — | `generationConfig.thinkingConfig.includeThoughts` |
//!
//! Gemini details: a tool's schema goes in `parametersJsonSchema` (full
//! JSON Schema, as the other APIs take it; `parameters` is an OpenAPI
//! subset that rejects e.g. `additionalProperties`). A tool result whose
//! content is a JSON object is the `response` as is; other content is
//! `{"output": content}`, or `{"error": content}` when `is_error` (the
//! keys Gemini's documentation names). Call ids the parser made up
//! (`gemini-call-{n}`) are left out of `functionCall` and
//! `functionResponse`.
//!
//! Settings an API has no field for are left out of its body; put anything
//! else in with [`ProviderConfig::extra_body`](super::ProviderConfig::extra_body).

use serde_json::{json, Map, Value};

use super::{Api, ToolKind};

/// Who speaks in a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The user (and the tool results the application sends back).
    User,
    /// The model, in earlier turns.
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// An image given to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Image {
    /// An `https:` URL the provider fetches.
    Url(String),
    /// Inline bytes, base64-encoded.
    Base64 {
        /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
        media_type: String,
        /// The base64 text.
        data: String,
    },
}

impl Image {
    /// The image as one URL (a `data:` URL for inline bytes), as the OpenAI
    /// APIs take it.
    fn url(&self) -> String {
        match self {
            Image::Url(url) => url.clone(),
            Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// One piece of a [`Message`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Part {
    /// Text.
    Text(String),
    /// An image (user turns).
    Image(Image),
    /// A tool call the model made in an earlier turn (assistant turns):
    /// send it back as received, with its result in the next user turn.
    ToolCall {
        /// The call id ([`ProviderEvent::ToolCall`](super::ProviderEvent::ToolCall)'s `id`).
        id: String,
        /// The tool's name.
        name: String,
        /// Function or custom tool.
        kind: ToolKind,
        /// The arguments (a JSON string of the raw input for custom tools).
        arguments: Value,
    },
    /// The application's result for a tool call (user turns).
    ToolResult {
        /// The id of the call it answers.
        id: String,
        /// The tool's name (some APIs want it; harmless elsewhere).
        name: String,
        /// Function or custom tool, as the call was.
        kind: ToolKind,
        /// The result as text (JSON text for structured results).
        content: String,
        /// Whether the tool failed (Anthropic `is_error`; the OpenAI APIs
        /// have no such flag and see only the content).
        is_error: bool,
    },
    /// Reasoning from an earlier turn, sent back so the model can go on
    /// (assistant turns; Anthropic requires it with tools and thinking).
    Reasoning {
        /// The Responses reasoning item id (`rs_…`).
        id: Option<String>,
        /// The visible reasoning text or summary.
        text: String,
        /// The signature (Anthropic) or encrypted content (Responses).
        signature: Option<String>,
        /// Redacted reasoning's data (Anthropic).
        redacted: Option<String>,
    },
}

/// One turn of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said, in order.
    pub content: Vec<Part>,
}

impl Message {
    /// A user turn of plain text.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new(Role::User, vec![Part::Text(content.into())])
    }

    /// An assistant turn of plain text.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new(Role::Assistant, vec![Part::Text(content.into())])
    }

    /// A turn made of `parts`.
    pub fn new(role: Role, content: Vec<Part>) -> Message {
        Message { role, content }
    }

    /// The assistant turn that replays a [`FinalMessage`]: its reasoning
    /// (with signatures), text and tool calls, in the order the APIs want
    /// them back. Push it, then a user turn of [`Part::ToolResult`]s, to
    /// continue an agent loop.
    ///
    /// [`FinalMessage`]: super::FinalMessage
    pub fn from_final(message: &super::FinalMessage) -> Message {
        let mut content = Vec::new();
        for r in &message.reasoning {
            content.push(Part::Reasoning {
                id: r.id.clone(),
                text: r.text.clone(),
                signature: r.signature.clone(),
                redacted: r.redacted.clone(),
            });
        }
        if !message.text.is_empty() {
            content.push(Part::Text(message.text.clone()));
        }
        for call in &message.tool_calls {
            let arguments = match &call.arguments {
                Ok(value) => value.clone(),
                Err(err) => Value::String(err.raw.clone()),
            };
            content.push(Part::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                kind: call.kind,
                arguments,
            });
        }
        Message::new(Role::Assistant, content)
    }

    /// The text parts, joined.
    fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Tool {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Function or custom (free-form text input) tool.
    pub kind: ToolKind,
    /// The arguments' JSON schema (function tools).
    pub schema: Value,
    /// Ask the OpenAI APIs for strict schema adherence.
    pub strict: bool,
}

impl Tool {
    /// A function tool taking JSON arguments described by `schema`.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        schema: Value,
    ) -> Tool {
        Tool {
            name: name.into(),
            description: description.into(),
            kind: ToolKind::Function,
            schema,
            strict: false,
        }
    }

    /// A custom tool taking free-form text (OpenAI). Anthropic, which has no
    /// such tool, gets a function tool with one string property `input`.
    pub fn custom(name: impl Into<String>, description: impl Into<String>) -> Tool {
        Tool {
            name: name.into(),
            description: description.into(),
            kind: ToolKind::Custom,
            schema: json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}),
            strict: false,
        }
    }

    /// Sets strict schema adherence (OpenAI `strict`).
    pub fn strict(mut self, strict: bool) -> Tool {
        self.strict = strict;
        self
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides (the APIs' default).
    Auto,
    /// No tool call.
    None,
    /// Some tool call (Anthropic `any`, OpenAI `required`).
    Required,
    /// This tool.
    Tool(String),
}

/// Reasoning settings; each API takes the one it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReasoningConfig {
    /// OpenAI effort (`minimal`, `low`, `medium`, `high`): Chat
    /// `reasoning_effort`, Responses `reasoning.effort`.
    pub effort: Option<String>,
    /// Responses `reasoning.summary` (`auto`, `concise`, `detailed`).
    pub summary: Option<String>,
    /// Thinking budget in tokens: Anthropic `thinking.budget_tokens` (at
    /// least 1024 and below `max_tokens`), Gemini
    /// `thinkingConfig.thinkingBudget` (0 disables, -1 is automatic; sent
    /// as given, saturating at `i32::MAX`).
    pub budget_tokens: Option<u32>,
    /// Gemini `thinkingConfig.includeThoughts`: stream thought summaries
    /// (as reasoning deltas).
    pub include_thoughts: Option<bool>,
}

/// Everything a request body is built from (kept by the
/// [`ProviderConfig`](super::ProviderConfig)).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestSpec {
    pub(crate) model: String,
    pub(crate) max_tokens: u32,
    pub(crate) system: Option<String>,
    pub(crate) messages: Vec<Message>,
    pub(crate) tools: Vec<Tool>,
    pub(crate) tool_choice: Option<ToolChoice>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) stop: Vec<String>,
    pub(crate) reasoning: ReasoningConfig,
    pub(crate) extra: Map<String, Value>,
    /// A caller-given body sent instead of one built from the fields above
    /// (streaming forced on; see `ProviderConfig::raw_body`).
    pub(crate) raw: Option<Map<String, Value>>,
}

/// Merges `extra` into `body`: objects merge key by key, anything else
/// replaces; a `null` removes the key.
fn merge(body: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (key, value) in extra {
        match (body.get_mut(key), value) {
            (_, Value::Null) => {
                body.remove(key);
            }
            (Some(Value::Object(into)), Value::Object(from)) => merge(into, from),
            _ => {
                body.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The arguments as the OpenAI APIs carry them: JSON text (a custom call's
/// input is the raw string).
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl RequestSpec {
    /// The streaming request body for `api`.
    pub(crate) fn body(&self, api: Api) -> Value {
        if let Some(raw) = &self.raw {
            let mut map = raw.clone();
            merge(&mut map, &self.extra);
            if api != Api::Gemini {
                // Gemini streams by URL (`:streamGenerateContent?alt=sse`).
                map.insert("stream".to_owned(), Value::Bool(true));
            }
            if api == Api::OpenAiChat {
                // Without it Chat reports no usage, and the token budget
                // could not be corrected.
                let options = map
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(Map::new()));
                if !options.is_object() {
                    *options = Value::Object(Map::new());
                }
                options["include_usage"] = Value::Bool(true);
            }
            return Value::Object(map);
        }
        let mut body = match api {
            Api::OpenAiResponses => self.responses(),
            Api::OpenAiChat => self.chat(),
            Api::Gemini => self.gemini(),
            _ => self.anthropic(),
        };
        if let Value::Object(map) = &mut body {
            merge(map, &self.extra);
        }
        body
    }

    fn sampling(&self, body: &mut Value) {
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = self.top_p {
            body["top_p"] = json!(p);
        }
    }

    fn anthropic(&self) -> Value {
        let messages: Vec<Value> = self
            .messages
            .iter()
            .map(|m| {
                let only_text = m.content.iter().all(|p| matches!(p, Part::Text(_)));
                let content = if only_text {
                    json!(m.text())
                } else {
                    Value::Array(m.content.iter().filter_map(anthropic_part).collect())
                };
                json!({"role": m.role.as_str(), "content": content})
            })
            .collect();
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": messages,
            "stream": true,
        });
        if let Some(s) = &self.system {
            body["system"] = json!(s);
        }
        if !self.tools.is_empty() {
            body["tools"] = self
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.schema}))
                .collect();
        }
        if let Some(choice) = &self.tool_choice {
            body["tool_choice"] = match choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
            };
        }
        self.sampling(&mut body);
        if !self.stop.is_empty() {
            body["stop_sequences"] = json!(self.stop);
        }
        if let Some(budget) = self.reasoning.budget_tokens {
            body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        }
        body
    }

    fn chat(&self) -> Value {
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push(json!({"role": "system", "content": s}));
        }
        for m in &self.messages {
            chat_messages(m, &mut messages);
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !self.tools.is_empty() {
            body["tools"] = self
                .tools
                .iter()
                .map(|t| match t.kind {
                    ToolKind::Custom => json!({"type": "custom", "custom": {"name": t.name, "description": t.description}}),
                    _ => json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.schema, "strict": t.strict,
                    }}),
                })
                .collect();
        }
        if let Some(choice) = &self.tool_choice {
            body["tool_choice"] = match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => match self.tool_kind(name) {
                    ToolKind::Custom => json!({"type": "custom", "custom": {"name": name}}),
                    _ => json!({"type": "function", "function": {"name": name}}),
                },
            };
        }
        self.sampling(&mut body);
        if !self.stop.is_empty() {
            body["stop"] = json!(self.stop);
        }
        if let Some(effort) = &self.reasoning.effort {
            body["reasoning_effort"] = json!(effort);
        }
        body
    }

    fn responses(&self) -> Value {
        let mut input = Vec::new();
        for m in &self.messages {
            responses_items(m, &mut input);
        }
        let mut body = json!({
            "model": self.model,
            "input": input,
            "max_output_tokens": self.max_tokens,
            "stream": true,
        });
        if let Some(s) = &self.system {
            body["instructions"] = json!(s);
        }
        if !self.tools.is_empty() {
            body["tools"] = self
                .tools
                .iter()
                .map(|t| match t.kind {
                    ToolKind::Custom => {
                        json!({"type": "custom", "name": t.name, "description": t.description})
                    }
                    _ => json!({
                        "type": "function", "name": t.name, "description": t.description,
                        "parameters": t.schema, "strict": t.strict,
                    }),
                })
                .collect();
        }
        if let Some(choice) = &self.tool_choice {
            body["tool_choice"] = match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => match self.tool_kind(name) {
                    ToolKind::Custom => json!({"type": "custom", "name": name}),
                    _ => json!({"type": "function", "name": name}),
                },
            };
        }
        self.sampling(&mut body);
        let r = &self.reasoning;
        if r.effort.is_some() || r.summary.is_some() {
            let mut reasoning = Map::new();
            if let Some(effort) = &r.effort {
                reasoning.insert("effort".into(), json!(effort));
            }
            if let Some(summary) = &r.summary {
                reasoning.insert("summary".into(), json!(summary));
            }
            body["reasoning"] = Value::Object(reasoning);
        }
        body
    }

    fn gemini(&self) -> Value {
        let contents: Vec<Value> = self
            .messages
            .iter()
            .filter_map(|m| {
                let parts = gemini_parts(m);
                let role = match m.role {
                    Role::User => "user",
                    Role::Assistant => "model",
                };
                (!parts.is_empty()).then(|| json!({"role": role, "parts": parts}))
            })
            .collect();
        let mut generation = Map::new();
        generation.insert("maxOutputTokens".into(), json!(self.max_tokens));
        if let Some(t) = self.temperature {
            generation.insert("temperature".into(), json!(t));
        }
        if let Some(p) = self.top_p {
            generation.insert("topP".into(), json!(p));
        }
        if !self.stop.is_empty() {
            generation.insert("stopSequences".into(), json!(self.stop));
        }
        let r = &self.reasoning;
        let mut thinking = Map::new();
        if let Some(budget) = r.budget_tokens {
            let budget = i32::try_from(budget).unwrap_or(i32::MAX);
            thinking.insert("thinkingBudget".into(), json!(budget));
        }
        if let Some(effort) = &r.effort {
            thinking.insert("thinkingLevel".into(), json!(effort.to_ascii_uppercase()));
        }
        if let Some(include) = r.include_thoughts {
            thinking.insert("includeThoughts".into(), json!(include));
        }
        if !thinking.is_empty() {
            generation.insert("thinkingConfig".into(), Value::Object(thinking));
        }
        let mut body = json!({"contents": contents, "generationConfig": generation});
        if let Some(s) = &self.system {
            body["systemInstruction"] = json!({"parts": [{"text": s}]});
        }
        if !self.tools.is_empty() {
            let declarations: Vec<Value> = self
                .tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": t.schema}))
                .collect();
            body["tools"] = json!([{"functionDeclarations": declarations}]);
        }
        if let Some(choice) = &self.tool_choice {
            body["toolConfig"] = json!({"functionCallingConfig": match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            }});
        }
        body
    }

    fn tool_kind(&self, name: &str) -> ToolKind {
        self.tools
            .iter()
            .find(|t| t.name == name)
            .map_or(ToolKind::Function, |t| t.kind)
    }
}

fn anthropic_part(part: &Part) -> Option<Value> {
    Some(match part {
        Part::Text(text) => json!({"type": "text", "text": text}),
        Part::Image(Image::Url(url)) => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
        Part::Image(Image::Base64 { media_type, data }) => json!({
            "type": "image", "source": {"type": "base64", "media_type": media_type, "data": data},
        }),
        Part::ToolCall {
            id,
            name,
            kind,
            arguments,
        } => {
            let input = match kind {
                ToolKind::Custom => json!({"input": arguments_text(arguments)}),
                _ => arguments.clone(),
            };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Part::ToolResult {
            id,
            content,
            is_error,
            ..
        } => {
            json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error})
        }
        Part::Reasoning {
            redacted: Some(data),
            ..
        } => json!({"type": "redacted_thinking", "data": data}),
        Part::Reasoning {
            text,
            signature: Some(signature),
            ..
        } => json!({"type": "thinking", "thinking": text, "signature": signature}),
        // Unsigned reasoning (from another API) cannot be sent back.
        Part::Reasoning { .. } => return None,
    })
}

fn chat_messages(m: &Message, out: &mut Vec<Value>) {
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for part in &m.content {
        match part {
            Part::Text(text) => parts.push(json!({"type": "text", "text": text})),
            Part::Image(image) => {
                parts.push(json!({"type": "image_url", "image_url": {"url": image.url()}}));
            }
            Part::ToolCall {
                id,
                name,
                kind,
                arguments,
            } => calls.push(match kind {
                ToolKind::Custom => json!({"id": id, "type": "custom", "custom": {"name": name, "input": arguments_text(arguments)}}),
                _ => json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments_text(arguments)}}),
            }),
            // Each result is a `tool` message of its own, right after the
            // assistant turn that made the calls.
            Part::ToolResult { id, content, .. } => {
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            Part::Reasoning { .. } => {}
        }
    }
    let content = if parts.is_empty() {
        Value::Null
    } else if parts.iter().all(|p| p["type"] == "text") {
        json!(m.text())
    } else {
        Value::Array(parts)
    };
    // A user turn of tool results only is all `tool` messages.
    if content.is_null() && calls.is_empty() {
        return;
    }
    let mut message = json!({"role": m.role.as_str(), "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    out.push(message);
}

fn responses_items(m: &Message, out: &mut Vec<Value>) {
    let mut parts: Vec<Value> = Vec::new();
    let flush = |parts: &mut Vec<Value>, out: &mut Vec<Value>| {
        if parts.is_empty() {
            return;
        }
        let content = if parts.iter().all(|p| p["type"] == "input_text") {
            json!(parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<String>())
        } else {
            Value::Array(std::mem::take(parts))
        };
        parts.clear();
        out.push(json!({"role": m.role.as_str(), "content": content}));
    };
    for part in &m.content {
        match part {
            Part::Text(text) => parts.push(json!({"type": "input_text", "text": text})),
            Part::Image(image) => {
                parts.push(
                    json!({"type": "input_image", "image_url": image.url(), "detail": "auto"}),
                );
            }
            Part::ToolCall {
                id,
                name,
                kind,
                arguments,
            } => {
                flush(&mut parts, out);
                out.push(match kind {
                    ToolKind::Custom => json!({"type": "custom_tool_call", "call_id": id, "name": name, "input": arguments_text(arguments)}),
                    _ => json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments_text(arguments)}),
                });
            }
            Part::ToolResult {
                id, kind, content, ..
            } => {
                flush(&mut parts, out);
                let ty = match kind {
                    ToolKind::Custom => "custom_tool_call_output",
                    _ => "function_call_output",
                };
                out.push(json!({"type": ty, "call_id": id, "output": content}));
            }
            Part::Reasoning {
                id: Some(id),
                text,
                signature,
                ..
            } => {
                flush(&mut parts, out);
                let summary: Vec<Value> = if text.is_empty() {
                    Vec::new()
                } else {
                    vec![json!({"type": "summary_text", "text": text})]
                };
                let mut item = json!({"type": "reasoning", "id": id, "summary": summary});
                if let Some(encrypted) = signature {
                    item["encrypted_content"] = json!(encrypted);
                }
                out.push(item);
            }
            // Reasoning without an item id is not a Responses item.
            Part::Reasoning { .. } => {}
        }
    }
    flush(&mut parts, out);
}

/// A call id worth sending back to Gemini: not one the parser made up.
fn gemini_call_id(id: &str) -> Option<&str> {
    (!id.is_empty() && !id.starts_with(super::parse::SYNTHETIC_CALL_ID_PREFIX)).then_some(id)
}

/// The MIME type an image URL's extension names, when it names one.
fn image_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

fn gemini_parts(m: &Message) -> Vec<Value> {
    let mut parts = Vec::new();
    // Signatures that came on a non-thought part (a function call, the
    // text): Gemini wants them back on the part they came with, which the
    // message no longer records; function calls first, where Gemini puts
    // (and checks) them.
    let mut loose: std::collections::VecDeque<&String> = std::collections::VecDeque::new();
    for part in &m.content {
        match part {
            Part::Text(text) => parts.push(json!({"text": text})),
            Part::Image(Image::Base64 { media_type, data }) => {
                parts.push(json!({"inlineData": {"mimeType": media_type, "data": data}}));
            }
            Part::Image(Image::Url(url)) => {
                let mut file = json!({"fileUri": url});
                if let Some(mime) = image_mime(url) {
                    file["mimeType"] = json!(mime);
                }
                parts.push(json!({"fileData": file}));
            }
            Part::ToolCall {
                id,
                name,
                kind,
                arguments,
            } => {
                let args = match kind {
                    ToolKind::Custom => json!({"input": arguments_text(arguments)}),
                    _ if arguments.is_object() => arguments.clone(),
                    // Arguments that did not parse: Gemini's `args` is an
                    // object, so the raw text goes in one field.
                    _ => json!({"input": arguments_text(arguments)}),
                };
                let mut call = json!({"name": name, "args": args});
                if let Some(id) = gemini_call_id(id) {
                    call["id"] = json!(id);
                }
                let mut part = json!({"functionCall": call});
                if let Some(signature) = loose.pop_front() {
                    part["thoughtSignature"] = json!(signature);
                }
                parts.push(part);
            }
            Part::ToolResult {
                id,
                name,
                content,
                is_error,
                ..
            } => {
                let response = match serde_json::from_str::<Value>(content) {
                    Ok(object @ Value::Object(_)) if !is_error => object,
                    _ if *is_error => json!({"error": content}),
                    _ => json!({"output": content}),
                };
                let mut result = json!({"name": name, "response": response});
                if let Some(id) = gemini_call_id(id) {
                    result["id"] = json!(id);
                }
                parts.push(json!({"functionResponse": result}));
            }
            Part::Reasoning {
                text,
                signature,
                redacted: None,
                ..
            } if !text.is_empty() => {
                let mut part = json!({"text": text, "thought": true});
                if let Some(signature) = signature {
                    part["thoughtSignature"] = json!(signature);
                }
                parts.push(part);
            }
            Part::Reasoning {
                signature: Some(signature),
                redacted: None,
                ..
            } => loose.push_back(signature),
            // Redacted reasoning (Anthropic) has no Gemini form.
            Part::Reasoning { .. } => {}
        }
    }
    // Signatures no function call took: on the last text part, else alone.
    if let Some(signature) = loose.pop_front() {
        let text = parts
            .iter_mut()
            .rev()
            .find(|p| p.get("text").is_some() && p.get("thought").is_none());
        match text {
            Some(part) => part["thoughtSignature"] = json!(signature),
            None => parts.push(json!({"text": "", "thoughtSignature": signature})),
        }
    }
    parts
}
