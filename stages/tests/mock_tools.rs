//! The mock provider's generated answers speak tools and reasoning (issue
//! 11, build item 6): for each API a request offering a tool gets a call
//! to it with placeholder arguments and the API's tool stop, a request
//! whose last turn is a tool result gets text naming the result, and a
//! request asking for reasoning gets a reasoning block first — all read
//! back through the project's own decoder into a final message.

use demandflow_stages::mock::{MockConfig, MockServer};
use demandflow_stages::provider::{
    Api, Message, Part, ProviderConfig, ProviderStream, ReasoningConfig, Role, Status, Tool,
    ToolKind,
};
use serde_json::json;

const APIS: [Api; 4] = [
    Api::OpenAiChat,
    Api::OpenAiResponses,
    Api::AnthropicMessages,
    Api::Gemini,
];

fn weather_tool() -> Tool {
    Tool::function(
        "get_weather",
        "The weather in a city.",
        json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"}
            },
            "required": ["city", "days", "unit"]
        }),
    )
}

/// Reasoning settings every API reads one of.
fn reasoning() -> ReasoningConfig {
    let mut r = ReasoningConfig::default();
    r.effort = Some("low".into());
    r.budget_tokens = Some(1024);
    r.include_thoughts = Some(true);
    r
}

fn config(api: Api, server: &MockServer) -> ProviderConfig {
    ProviderConfig::new(api, &server.url())
        .unwrap()
        .api_key("test-key")
        .max_tokens(2048)
}

#[tokio::test]
async fn offered_tool_is_called_with_placeholder_arguments_and_the_tool_stop() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    for api in APIS {
        let cfg = config(api, &server)
            .prompt("Weather in Oslo?")
            .tools([weather_tool()]);
        let m = ProviderStream::new(cfg).unwrap().final_message().await;
        assert_eq!(m.status, Status::Completed, "{api:?}: {m:?}");
        assert_eq!(m.text, "", "{api:?}: a tool call, not text");
        assert!(m.reasoning.is_empty(), "{api:?}: no reasoning unasked");
        assert_eq!(m.tool_calls.len(), 1, "{api:?}: {m:?}");
        let call = &m.tool_calls[0];
        assert_eq!(call.name, "get_weather", "{api:?}");
        assert_eq!(call.kind, ToolKind::Function, "{api:?}");
        assert!(call.finished, "{api:?}");
        assert!(
            !call.id.is_empty(),
            "{api:?}: a tool result must quote an id"
        );
        assert_eq!(
            call.arguments,
            Ok(json!({"city": "mock", "days": 1, "unit": "celsius"})),
            "{api:?}"
        );
        let stop = match api {
            Api::OpenAiChat => Some("tool_calls"),
            Api::AnthropicMessages => Some("tool_use"),
            Api::Gemini => Some("STOP"),
            _ => m.stop_reason.as_deref(),
        };
        assert_eq!(m.stop_reason.as_deref(), stop, "{api:?}");
    }
}

#[tokio::test]
async fn a_tool_result_turn_is_answered_with_text_naming_the_result() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    for api in APIS {
        let first = ProviderStream::new(
            config(api, &server)
                .prompt("Weather in Oslo?")
                .tools([weather_tool()]),
        )
        .unwrap()
        .final_message()
        .await;
        let call = &first.tool_calls[0];
        let conversation = [
            Message::user("Weather in Oslo?"),
            Message::from_final(&first),
            Message::new(
                Role::User,
                vec![Part::ToolResult {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    kind: call.kind,
                    content: "Sunny, 21 degrees".into(),
                    is_error: false,
                }],
            ),
        ];
        let cfg = config(api, &server)
            .messages(conversation)
            .tools([weather_tool()]);
        let m = ProviderStream::new(cfg).unwrap().final_message().await;
        assert!(m.is_success(), "{api:?}: {m:?}");
        assert!(m.tool_calls.is_empty(), "{api:?}: {m:?}");
        assert_eq!(m.text, "The tool returned: Sunny, 21 degrees", "{api:?}");
    }
}

#[tokio::test]
async fn reasoning_asked_for_comes_first_in_each_apis_format() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    for api in APIS {
        for with_tool in [false, true] {
            let mut cfg = config(api, &server)
                .prompt("Weather in Oslo?")
                .reasoning(reasoning());
            if with_tool {
                cfg = cfg.tools([weather_tool()]);
            }
            let m = ProviderStream::new(cfg).unwrap().final_message().await;
            assert!(m.is_success(), "{api:?}: {m:?}");
            assert_eq!(m.reasoning.len(), 1, "{api:?}: {m:?}");
            let r = &m.reasoning[0];
            assert_eq!(r.text, "Thinking about the request.", "{api:?}");
            // Chat has no signature; the others send one to be sent back.
            assert_eq!(
                r.signature.is_some(),
                api != Api::OpenAiChat,
                "{api:?}: {r:?}"
            );
            if with_tool {
                assert_eq!(m.tool_calls.len(), 1, "{api:?}: {m:?}");
                assert_eq!(m.text, "", "{api:?}");
            } else {
                assert!(m.tool_calls.is_empty(), "{api:?}");
                assert!(m.text.starts_with("lorem ipsum"), "{api:?}: {}", m.text);
            }
        }
    }
}

#[tokio::test]
async fn no_reasoning_and_no_tools_leaves_plain_text() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    for api in APIS {
        let m = ProviderStream::new(config(api, &server).prompt("Hi"))
            .unwrap()
            .final_message()
            .await;
        assert!(m.is_success(), "{api:?}: {m:?}");
        assert!(m.reasoning.is_empty() && m.tool_calls.is_empty(), "{api:?}");
        assert_eq!(m.text.split_whitespace().count(), 64, "{api:?}");
    }
}

// The example's own code, run for every API.
#[allow(dead_code)]
#[path = "../examples/tool_conversation.rs"]
mod tool_conversation;

#[tokio::test]
async fn the_tool_conversation_example_holds_two_turns_with_every_api() {
    for api in APIS {
        let c = tool_conversation::run(api).await.unwrap();
        assert_eq!(c.call.name, "get_weather", "{api:?}");
        assert_eq!(c.call.arguments, Ok(json!({"city": "mock"})), "{api:?}");
        assert_eq!(c.tool_output, "Sunny and 21 C in mock");
        assert!(c.answer.tool_calls.is_empty(), "{api:?}: {:?}", c.answer);
        assert_eq!(
            c.answer.text, "The tool returned: Sunny and 21 C in mock",
            "{api:?}"
        );
    }
}
