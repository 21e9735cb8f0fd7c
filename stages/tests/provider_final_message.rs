//! Final messages over loopback (issue 11, build item 3): the mock provider
//! replays real-shaped transcripts; `ProviderStream::final_message()` and
//! the `final_messages()` pipeline consumer accumulate them into one value.

use demandflow::{Pipeline, Subscribe};
use demandflow_stages::mock::{Behaviour, MockConfig, MockServer, ReplaySpec};
use demandflow_stages::provider::{
    final_messages, Api, ProviderConfig, ProviderProducer, ProviderStream, ServerTool, Status,
    ToolKind,
};
use serde_json::json;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sse")
        .join(name)
}

async fn server(name: &str) -> MockServer {
    MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Replay(ReplaySpec::file(fixture(name)))),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn final_message_holds_reasoning_signatures_and_parsed_tool_calls() {
    let server = server("35_anthropic_thinking_signature_tool_use.sse").await;
    let cfg = ProviderConfig::new(Api::AnthropicMessages, &server.url())
        .unwrap()
        .prompt("Weather in Oslo?");
    let m = ProviderStream::new(cfg).unwrap().final_message().await;
    assert_eq!(m.status, Status::Completed);
    assert_eq!(m.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(m.id.as_deref(), Some("msg_x35"));
    assert_eq!(m.text, "Checking Oslo.");
    assert_eq!(m.reasoning.len(), 2);
    assert_eq!(
        m.reasoning[0].signature.as_deref(),
        Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds")
    );
    assert!(m.reasoning[1].redacted.is_some());
    assert_eq!(m.tool_calls.len(), 1);
    let call = &m.tool_calls[0];
    assert_eq!(
        (call.id.as_str(), call.name.as_str()),
        ("toolu_x35", "get_weather")
    );
    assert_eq!(call.kind, ToolKind::Function);
    assert_eq!(call.arguments, Ok(json!({"city": "Oslo"})));
    assert!(call.finished);
    let usage = m.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (410, 236));
}

#[tokio::test]
async fn final_messages_consumer_gathers_one_message_per_stream() {
    let server = server("32_anthropic_web_search_citations.sse").await;
    let cfg = ProviderConfig::new(Api::AnthropicMessages, &server.url())
        .unwrap()
        .prompt("What is GenStage?");
    let mut p = Pipeline::new();
    let llm = p.producer("llm", ProviderProducer::new(cfg).unwrap());
    let (consumer, slot) = final_messages();
    p.consumer("final", consumer)
        .subscribe(&llm, Subscribe::default());
    p.spawn().unwrap().join().await.unwrap();
    let messages = slot.take();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m.is_success());
    assert!(
        m.tool_calls.is_empty(),
        "a server tool is not a client call"
    );
    assert!(matches!(&m.server_tools[0], ServerTool::Call { name, .. } if name == "web_search"));
    assert!(
        matches!(&m.server_tools[1], ServerTool::Result { kind, .. } if kind == "web_search_tool_result")
    );
    assert_eq!(m.citations.len(), 1);
    assert_eq!(m.citations[0].index, 3);
}

#[tokio::test]
async fn a_refusal_is_neither_success_nor_a_limit() {
    let server = server("37_openai_chat_refusal.sse").await;
    let cfg = ProviderConfig::new(Api::OpenAiChat, &server.url())
        .unwrap()
        .prompt("x");
    let m = ProviderStream::new(cfg).unwrap().final_message().await;
    assert_eq!(m.status, Status::Refused);
    assert!(!m.is_success());
    assert_eq!(m.text, "");
    assert_eq!(
        m.refusal.as_deref(),
        Some("I'm sorry, but I can't assist with that.")
    );
}
