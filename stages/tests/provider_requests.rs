//! Request bodies (issue 11, build item 1): one conversation with tools,
//! tool choice, images, a tool call and its result, reasoning sent back,
//! sampling and reasoning settings and extra fields, serialized for each API
//! and compared with the exact JSON that API expects (field names from the
//! official SDKs' request types).

use demandflow_stages::provider::{
    Api, Image, Message, Part, ProviderConfig, ReasoningConfig, Role, Tool, ToolChoice, ToolKind,
};
use serde_json::{json, Value};

fn config(api: Api) -> ProviderConfig {
    let weather = Tool::function(
        "get_weather",
        "Current weather for a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    );
    let mut reasoning = ReasoningConfig::default();
    reasoning.effort = Some("low".into());
    reasoning.summary = Some("auto".into());
    reasoning.budget_tokens = Some(2048);
    ProviderConfig::official(api)
        .model("m")
        .max_tokens(4096)
        .system("Be brief.")
        .messages([
            Message::new(
                Role::User,
                vec![
                    Part::Text("Weather here?".into()),
                    Part::Image(Image::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    }),
                ],
            ),
            Message::new(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        id: Some("rs_1".into()),
                        text: "Looks like Oslo.".into(),
                        signature: Some("sig_1".into()),
                        redacted: None,
                    },
                    Part::Text("Checking.".into()),
                    Part::ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        kind: ToolKind::Function,
                        arguments: json!({"city": "Oslo"}),
                    },
                ],
            ),
            Message::new(
                Role::User,
                vec![Part::ToolResult {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    kind: ToolKind::Function,
                    content: "{\"temp_c\":3}".into(),
                    is_error: false,
                }],
            ),
        ])
        .tools([weather, Tool::custom("run_sql", "Runs one SQL query")])
        .tool_choice(ToolChoice::Tool("get_weather".into()))
        .temperature(0.5)
        .top_p(0.25)
        .stop(["END"])
        .reasoning(reasoning)
        .extra_body(json!({"metadata": {"trace": "t1"}}))
}

fn schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

#[test]
fn anthropic_messages_body() {
    assert_eq!(
        config(Api::AnthropicMessages).request_body(),
        json!({
            "model": "m",
            "max_tokens": 4096,
            "stream": true,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Looks like Oslo.", "signature": "sig_1"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp_c\":3}", "is_error": false},
                ]},
            ],
            "tools": [
                {"name": "get_weather", "description": "Current weather for a city", "input_schema": schema()},
                {"name": "run_sql", "description": "Runs one SQL query", "input_schema":
                    {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}},
            ],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "temperature": 0.5,
            "top_p": 0.25,
            "stop_sequences": ["END"],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "metadata": {"trace": "t1"},
        })
    );
}

#[test]
fn gemini_body() {
    let mut reasoning = ReasoningConfig::default();
    reasoning.budget_tokens = Some(2048);
    reasoning.include_thoughts = Some(true);
    let cfg = config(Api::Gemini).reasoning(reasoning);
    assert_eq!(
        cfg.request_body(),
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                ]},
                {"role": "model", "parts": [
                    {"text": "Looks like Oslo.", "thought": true, "thoughtSignature": "sig_1"},
                    {"text": "Checking."},
                    {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Oslo"}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"temp_c": 3}}},
                ]},
            ],
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "description": "Current weather for a city", "parametersJsonSchema": schema()},
                {"name": "run_sql", "description": "Runs one SQL query", "parametersJsonSchema":
                    {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}},
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {
                "maxOutputTokens": 4096,
                "temperature": 0.5,
                "topP": 0.25,
                "stopSequences": ["END"],
                "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true},
            },
            "metadata": {"trace": "t1"},
        })
    );
    assert_eq!(
        cfg.endpoint().as_str(),
        "https://generativelanguage.googleapis.com/v1beta/models/m:streamGenerateContent?alt=sse"
    );
    let headers = cfg.api_key("AIza-secret").request_headers().unwrap();
    assert_eq!(headers["x-goog-api-key"], "AIza-secret");
    assert!(headers.get("authorization").is_none());
}

#[test]
fn gemini_synthetic_ids_stay_home_and_signatures_go_back_on_the_call() {
    let turn = Message::new(
        Role::Assistant,
        vec![
            Part::Reasoning {
                id: None,
                text: String::new(),
                signature: Some("c2ln".into()),
                redacted: None,
            },
            Part::Text("Let me look.".into()),
            Part::ToolCall {
                id: "gemini-call-0".into(),
                name: "get_weather".into(),
                kind: ToolKind::Function,
                arguments: json!({"city": "Oslo"}),
            },
        ],
    );
    let result = Message::new(
        Role::User,
        vec![Part::ToolResult {
            id: "gemini-call-0".into(),
            name: "get_weather".into(),
            kind: ToolKind::Function,
            content: "sunny".into(),
            is_error: false,
        }],
    );
    let mut effort = ReasoningConfig::default();
    effort.effort = Some("low".into());
    let body = ProviderConfig::official(Api::Gemini)
        .messages([Message::user("Weather?"), turn, result])
        .tool_choice(ToolChoice::Required)
        .reasoning(effort)
        .extra_body(json!({"generationConfig": {"seed": 7}, "safetySettings": []}))
        .request_body();
    assert_eq!(
        body["contents"][1]["parts"],
        json!([
            {"text": "Let me look."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"},
        ])
    );
    assert_eq!(
        body["contents"][2]["parts"],
        json!([{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    assert_eq!(
        body["generationConfig"],
        json!({"maxOutputTokens": 1024, "thinkingConfig": {"thinkingLevel": "LOW"}, "seed": 7})
    );
    assert_eq!(body["safetySettings"], json!([]));
}

#[test]
fn openai_chat_body() {
    assert_eq!(
        config(Api::OpenAiChat).request_body(),
        json!({
            "model": "m",
            "max_tokens": 4096,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":3}"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city", "parameters": schema(), "strict": false}},
                {"type": "custom", "custom": {"name": "run_sql", "description": "Runs one SQL query"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.5,
            "top_p": 0.25,
            "stop": ["END"],
            "reasoning_effort": "low",
            "metadata": {"trace": "t1"},
        })
    );
}

#[test]
fn openai_responses_body() {
    assert_eq!(
        config(Api::OpenAiResponses).request_body(),
        json!({
            "model": "m",
            "max_output_tokens": 4096,
            "stream": true,
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "Weather here?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                ]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Looks like Oslo."}], "encrypted_content": "sig_1"},
                {"role": "assistant", "content": "Checking."},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp_c\":3}"},
            ],
            "tools": [
                {"type": "function", "name": "get_weather", "description": "Current weather for a city", "parameters": schema(), "strict": false},
                {"type": "custom", "name": "run_sql", "description": "Runs one SQL query"},
            ],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "temperature": 0.5,
            "top_p": 0.25,
            "reasoning": {"effort": "low", "summary": "auto"},
            "metadata": {"trace": "t1"},
        })
    );
}

#[test]
fn custom_tool_calls_and_choices_use_the_custom_spelling() {
    let call = Message::new(
        Role::Assistant,
        vec![Part::ToolCall {
            id: "call_9".into(),
            name: "run_sql".into(),
            kind: ToolKind::Custom,
            arguments: json!("SELECT 1"),
        }],
    );
    let result = Message::new(
        Role::User,
        vec![Part::ToolResult {
            id: "call_9".into(),
            name: "run_sql".into(),
            kind: ToolKind::Custom,
            content: "1".into(),
            is_error: false,
        }],
    );
    let cfg = |api| {
        ProviderConfig::official(api)
            .messages([Message::user("go"), call.clone(), result.clone()])
            .tools([Tool::custom("run_sql", "SQL")])
            .tool_choice(ToolChoice::Tool("run_sql".into()))
            .request_body()
    };
    let responses = cfg(Api::OpenAiResponses);
    assert_eq!(
        responses["input"],
        json!([
            {"role": "user", "content": "go"},
            {"type": "custom_tool_call", "call_id": "call_9", "name": "run_sql", "input": "SELECT 1"},
            {"type": "custom_tool_call_output", "call_id": "call_9", "output": "1"},
        ])
    );
    assert_eq!(
        responses["tool_choice"],
        json!({"type": "custom", "name": "run_sql"})
    );
    let chat = cfg(Api::OpenAiChat);
    assert_eq!(
        chat["messages"][1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_9", "type": "custom", "custom": {"name": "run_sql", "input": "SELECT 1"}},
        ]})
    );
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "custom", "custom": {"name": "run_sql"}})
    );
    let anthropic = cfg(Api::AnthropicMessages);
    assert_eq!(
        anthropic["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "call_9", "name": "run_sql", "input": {"input": "SELECT 1"}})
    );
}

#[test]
fn plain_prompts_keep_the_short_forms_and_extra_null_removes_a_field() {
    for api in Api::ALL {
        let body = ProviderConfig::official(api)
            .prompt("hi")
            .extra_body(json!({"stream": null}))
            .request_body();
        assert_eq!(body.get("stream"), None, "{api}");
        assert_eq!(body.get("tools"), None, "{api}");
        assert_eq!(body.get("temperature"), None, "{api}");
        if api == Api::Gemini {
            let first = &body["contents"][0];
            assert_eq!(first, &json!({"role": "user", "parts": [{"text": "hi"}]}));
            continue;
        }
        let first = match api {
            Api::OpenAiResponses => &body["input"][0],
            _ => &body["messages"][0],
        };
        assert_eq!(first, &json!({"role": "user", "content": "hi"}), "{api}");
    }
}

#[test]
fn a_final_message_replays_as_the_next_assistant_turn() {
    use demandflow_stages::provider::{MessageBuilder, ProviderDecoder};
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sse/35_anthropic_thinking_signature_tool_use.sse"
    ))
    .unwrap();
    let mut decoder = ProviderDecoder::new(Api::AnthropicMessages);
    let mut events = Vec::new();
    decoder.feed(&body, &mut events).unwrap();
    decoder.finish(&mut events).unwrap();
    let mut builder = MessageBuilder::default();
    events.iter().for_each(|e| builder.push(e));
    let turn = Message::from_final(&builder.finish());
    let body = ProviderConfig::official(Api::AnthropicMessages)
        .messages([Message::user("Weather in Oslo?"), turn])
        .request_body();
    let content = &body["messages"][1]["content"];
    assert_eq!(content[0]["type"], "thinking");
    assert_eq!(
        content[0]["signature"],
        "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
    );
    assert_eq!(content[1]["type"], "redacted_thinking");
    assert_eq!(
        content[2],
        json!({"type": "text", "text": "Checking Oslo."})
    );
    assert_eq!(
        content[3],
        json!({"type": "tool_use", "id": "toolu_x35", "name": "get_weather", "input": {"city": "Oslo"}})
    );
}
