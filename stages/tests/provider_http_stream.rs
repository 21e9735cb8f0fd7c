//! End-to-end streams over loopback TCP: the HTTP producer against the mock
//! provider, for each API, through both the `Stream` and the `Producer` form.

use std::time::Duration;

use demandflow::{Context, Emitter, Flow, Producer};
use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, TextSource};
use demandflow_stages::provider::{
    Api, ProviderConfig, ProviderEvent, ProviderProducer, ProviderStream, Status, Usage,
};
use futures::StreamExt;

fn config(api: Api, server: &MockServer) -> ProviderConfig {
    ProviderConfig::new(api, &server.url())
        .unwrap()
        .api_key("sk-test-key")
        .model("mock-model-x")
        .max_tokens(1000)
        .prompt("alpha beta gamma")
}

fn text_of(events: &[ProviderEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn done_of(events: &[ProviderEvent]) -> Option<(Status, Option<String>)> {
    match events.last() {
        Some(ProviderEvent::Done {
            status,
            stop_reason,
        }) => Some((*status, stop_reason.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn each_api_streams_a_generated_answer_to_completion() {
    let server = MockServer::start(
        MockConfig::default()
            .api_key("sk-test-key")
            .default_behaviour(Behaviour::Generate(
                GenerateSpec::tokens(25).text(TextSource::EchoPrompt),
            )),
    )
    .await
    .unwrap();
    for api in Api::ALL {
        let events: Vec<_> = ProviderStream::new(config(api, &server))
            .unwrap()
            .collect()
            .await;
        let text = text_of(&events);
        assert_eq!(text.split_whitespace().count(), 25, "{api}: {text}");
        assert!(text.starts_with("alpha beta gamma alpha"), "{api}: {text}");
        let (status, _) = done_of(&events).unwrap();
        assert_eq!(status, Status::Completed, "{api}: {events:?}");
        assert_eq!(events.iter().filter(|e| e.is_done()).count(), 1);
        let usage = events.iter().rev().find_map(|e| match e {
            ProviderEvent::Usage(u) => Some(*u),
            _ => None,
        });
        assert_eq!(
            usage.map(|u| u.output_tokens),
            Some(25),
            "{api}: {events:?}"
        );
        assert!(
            matches!(events[0], ProviderEvent::Start { .. }),
            "{api}: {events:?}"
        );
    }
    // Each request carried the API's request shape and auth.
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    for r in &reqs[..3] {
        assert_eq!(r.key_ok, Some(true));
        assert_eq!(r.body["stream"], true);
        assert_eq!(r.body["model"], "mock-model-x");
    }
    assert_eq!(reqs[0].path, "/v1/responses");
    assert_eq!(reqs[0].body["max_output_tokens"], 1000);
    assert_eq!(reqs[1].path, "/v1/chat/completions");
    assert_eq!(reqs[1].header("authorization"), Some("<redacted>"));
    assert_eq!(reqs[2].path, "/v1/messages");
    assert_eq!(reqs[2].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(reqs[2].header("x-api-key"), Some("<redacted>"));
    // Gemini names the model and streaming in the path, not the body.
    assert_eq!(reqs[3].key_ok, Some(true));
    assert_eq!(
        reqs[3].path,
        "/v1beta/models/mock-model-x:streamGenerateContent"
    );
    assert_eq!(reqs[3].body["generationConfig"]["maxOutputTokens"], 1000);
    assert_eq!(reqs[3].header("x-goog-api-key"), Some("<redacted>"));
    server.shutdown().await;
}

#[tokio::test]
async fn max_tokens_gives_each_apis_incomplete_ending() {
    let server = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(50))),
    )
    .await
    .unwrap();
    let expected = [
        (Api::OpenAiResponses, Status::Incomplete),
        (Api::OpenAiChat, Status::Incomplete),
        (Api::AnthropicMessages, Status::Incomplete),
        (Api::Gemini, Status::Incomplete),
    ];
    for (api, want) in expected {
        let cfg = config(api, &server).max_tokens(7);
        let events: Vec<_> = ProviderStream::new(cfg).unwrap().collect().await;
        assert_eq!(text_of(&events).split_whitespace().count(), 7, "{api}");
        let (status, reason) = done_of(&events).unwrap();
        assert_eq!(status, want, "{api}: {events:?}");
        assert!(reason.is_some(), "{api}: a stop reason is reported");
    }
}

#[tokio::test]
async fn producer_emits_at_most_the_demand_and_ends_with_done() {
    let server = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(40))),
    )
    .await
    .unwrap();
    let mut producer = ProviderProducer::new(config(Api::AnthropicMessages, &server)).unwrap();
    let cx = Context::detached("llm");
    let mut all = Vec::new();
    let mut calls = 0;
    loop {
        let mut out = Emitter::new();
        let demand = 1 + calls % 3;
        let flow = producer.produce(demand, &mut out, &cx).await.unwrap();
        calls += 1;
        assert!(
            out.len() <= demand,
            "emitted {} for demand {demand}",
            out.len()
        );
        assert!(!out.is_empty(), "each call emits at least one event");
        all.extend(out.take());
        if flow == Flow::Done {
            break;
        }
    }
    assert_eq!(text_of(&all).split_whitespace().count(), 40);
    assert_eq!(done_of(&all).unwrap().0, Status::Completed);
    assert_eq!(all.iter().filter(|e| e.is_done()).count(), 1);
    // A clone is a fresh producer: it sends a new request.
    let mut again = producer.clone();
    let mut out = Emitter::new();
    again.produce(1, &mut out, &cx).await.unwrap();
    assert!(server.wait_for_requests(2, Duration::from_secs(5)).await);
    // Usage arrives for anthropic in message_start and message_delta.
    assert!(all.contains(&ProviderEvent::Usage(Usage {
        input_tokens: 11,
        output_tokens: 40
    })));
}

#[tokio::test]
async fn replayed_fixture_decodes_like_the_transcript() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sse/03_anthropic_messages_text.sse"
    );
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    server.set_default(Behaviour::Replay(
        demandflow_stages::mock::ReplaySpec::file(path).chunk_bytes(7),
    ));
    let events: Vec<_> = ProviderStream::new(config(Api::AnthropicMessages, &server))
        .unwrap()
        .collect()
        .await;
    assert_eq!(
        text_of(&events),
        "A supervisor restarts failed children within its restart budget."
    );
    assert_eq!(
        done_of(&events),
        Some((Status::Completed, Some("end_turn".into())))
    );
}
