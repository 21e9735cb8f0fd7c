//! The request stage and error events inside a 200 stream: one of a
//! transient kind (Anthropic's `event: error` with `overloaded_error` right
//! after `message_start`, an OpenAI error chunk with `server_error`) that
//! comes before any content is retried like an HTTP error, the attempt
//! counted; after content, or of a permanent kind, it is the result. The
//! mock sends each API's own error event (`Fault::ErrorEvent`).

#[path = "request_support/mod.rs"]
mod support;

use support::run;

use demandflow_stages::llm::{LlmEvent, LlmRequest, LlmResult, RequestStage};
use demandflow_stages::mock::{Behaviour, Fault, GenerateSpec, MockConfig, MockServer};
use demandflow_stages::provider::{Api, ProviderConfig, ProviderEvent, Status};

const TOKENS: u64 = 5;

async fn mock() -> MockServer {
    MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(TOKENS))),
    )
    .await
    .expect("mock starts")
}

/// An answer that fails with an error event of `kind` after `after`
/// events.
fn failing(after: u64, kind: &str) -> Behaviour {
    Behaviour::Generate(GenerateSpec::tokens(TOKENS).fault(Fault::ErrorEvent {
        after,
        kind: kind.into(),
        message: "from the mock".into(),
    }))
}

fn request(server: &MockServer, api: Api) -> LlmRequest {
    let template = ProviderConfig::new(api, &server.url())
        .unwrap()
        .max_tokens(32);
    LlmRequest::new("q", template.prompt("question"))
}

/// One request through a fresh stage (fast retries); its result and the
/// stage's retries.
async fn one(server: &MockServer, api: Api) -> (LlmResult, u64) {
    let stage = RequestStage::new().max_attempts(3);
    let stats = stage.stats();
    let mut results = run(stage, vec![request(server, api)]).await;
    assert_eq!(results.len(), 1);
    (results.remove(0), stats.snapshot().retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_error_event_before_any_token_is_retried() {
    let server = mock().await;
    // message_start, then `event: error` overloaded_error.
    server.script([failing(1, "overloaded_error")]);
    let (r, retries) = one(&server, Api::AnthropicMessages).await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.attempts, 2, "{r:?}");
    assert_eq!(r.text().split_whitespace().count() as u64, TOKENS);
    assert_eq!(retries, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_server_error_chunk_before_any_token_is_retried() {
    let server = mock().await;
    server.script([failing(0, "server_error"), failing(0, "server_error")]);
    let (r, retries) = one(&server, Api::OpenAiChat).await;
    assert!(r.is_success(), "{r:?}");
    assert_eq!((r.attempts, retries), (3, 2), "{r:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_keeps_the_streams_error() {
    let server = mock().await;
    server.script([
        failing(1, "overloaded_error"),
        failing(1, "overloaded_error"),
        failing(1, "overloaded_error"),
    ]);
    let (r, _) = one(&server, Api::AnthropicMessages).await;
    assert_eq!((r.status, r.attempts), (Status::Failed, 3), "{r:?}");
    assert_eq!(
        r.error.as_ref().map(|e| e.kind.as_str()),
        Some("overloaded_error")
    );
    server.shutdown().await;
}

/// The scripted request through a fresh stage, which must fail on its
/// first attempt without a retry.
async fn failed_once(server: &MockServer) -> LlmResult {
    let (r, retries) = one(server, Api::AnthropicMessages).await;
    assert_eq!(
        (r.status, r.attempts, retries),
        (Status::Failed, 1, 0),
        "{r:?}"
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_token_or_of_a_permanent_kind_it_is_not_retried() {
    let server = mock().await;
    // message_start, content_block_start, two deltas: content has arrived.
    server.script([failing(4, "overloaded_error")]);
    let r = failed_once(&server).await;
    assert!(!r.text().is_empty(), "{r:?}");

    server.script([failing(1, "invalid_request_error")]);
    let r = failed_once(&server).await;
    assert_eq!(
        r.error.as_ref().map(|e| e.kind.as_str()),
        Some("invalid_request_error")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_shows_nothing_of_the_retried_attempt() {
    let server = mock().await;
    server.script([failing(1, "overloaded_error")]);
    let stage = RequestStage::new().max_attempts(3).events();
    let events: Vec<LlmEvent> = run(stage, vec![request(&server, Api::AnthropicMessages)]).await;
    let provider: Vec<&ProviderEvent> = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Event { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    let starts = provider
        .iter()
        .filter(|e| matches!(e, ProviderEvent::Start { .. }))
        .count();
    assert_eq!(starts, 1, "{provider:?}");
    assert!(
        !provider
            .iter()
            .any(|e| matches!(e, ProviderEvent::Error { .. })),
        "{provider:?}"
    );
    match events.last() {
        Some(LlmEvent::Finished(r)) => {
            assert!(r.is_success() && r.attempts == 2, "{r:?}")
        }
        other => panic!("last: {other:?}"),
    }
    server.shutdown().await;
}
