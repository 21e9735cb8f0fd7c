//! Faults over real loopback TCP: timeouts, truncation, mid-stream errors,
//! fail-fast statuses, retries before the first token only, and the key
//! never leaking (G-T4, G-S4, G-S5, G-C3).

use std::time::Duration;

use demandflow::{Context, Emitter, Flow, Producer};
use demandflow_stages::mock::{
    Behaviour, ErrorSpec, Fault, GenerateSpec, MockConfig, MockServer, Pace,
};
use demandflow_stages::provider::{
    Api, ErrorClass, ExponentialBackoff, ProviderConfig, ProviderError, ProviderEvent,
    ProviderProducer, ProviderStream, Status, Timeouts,
};
use futures::StreamExt;
use tokio::time::Instant;

const KEY: &str = "sk-SECRET-never-shown-4242";

fn fast_retries() -> ExponentialBackoff {
    ExponentialBackoff::default().delays(Duration::from_millis(10), Duration::from_millis(40))
}

fn config(api: Api, server: &MockServer) -> ProviderConfig {
    ProviderConfig::new(api, &server.url())
        .unwrap()
        .api_key(KEY)
        .prompt("hello")
        .retry_policy(fast_retries())
}

async fn start(b: Behaviour) -> MockServer {
    MockServer::start(MockConfig::default().default_behaviour(b))
        .await
        .unwrap()
}

async fn collect(cfg: ProviderConfig) -> Vec<ProviderEvent> {
    ProviderStream::new(cfg).unwrap().collect().await
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

fn ending(events: &[ProviderEvent]) -> (Option<String>, Status) {
    let n = events.len();
    let Some(ProviderEvent::Done { status, .. }) = events.last() else {
        panic!("no Done at the end: {events:?}");
    };
    let err = match n.checked_sub(2).map(|i| &events[i]) {
        Some(ProviderEvent::Error { kind, .. }) => Some(kind.clone()),
        _ => None,
    };
    assert_eq!(events.iter().filter(|e| e.is_done()).count(), 1);
    (err, *status)
}

fn assert_no_key(events: &[ProviderEvent]) {
    let dump = format!("{events:?}");
    assert!(!dump.contains(KEY), "the key leaked: {dump}");
}

#[tokio::test]
async fn a_stalled_server_trips_the_idle_timeout() {
    let server = start(Behaviour::Generate(
        GenerateSpec::tokens(50).fault(Fault::Stall { after: 6 }),
    ))
    .await;
    let cfg = config(Api::AnthropicMessages, &server)
        .timeouts(Timeouts::default().idle(Duration::from_millis(200)));
    let started = Instant::now();
    let events = collect(cfg).await;
    let elapsed = started.elapsed();
    assert_eq!(
        ending(&events),
        (Some("idle_timeout".into()), Status::TimedOut)
    );
    assert!(
        !text_of(&events).is_empty(),
        "events before the stall are kept"
    );
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(server.total_requests(), 1, "no retry after the first event");
}

#[tokio::test]
async fn a_silent_start_trips_the_first_event_timeout_and_is_retried() {
    let slow = Behaviour::Generate(
        GenerateSpec::tokens(5).pace(Pace::default().first_event_delay(Duration::from_secs(30))),
    );
    let server = start(slow).await;
    let cfg = config(Api::OpenAiChat, &server)
        .timeouts(Timeouts::default().first_event(Duration::from_millis(150)))
        .retry_policy(fast_retries().max_retries(1));
    let started = Instant::now();
    let events = collect(cfg).await;
    assert_eq!(
        ending(&events),
        (Some("first_event_timeout".into()), Status::TimedOut)
    );
    assert_eq!(events.len(), 2, "nothing but the error: {events:?}");
    assert_eq!(server.total_requests(), 2, "one retry, then give up");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_first_event_timeout_then_a_good_attempt_yields_one_clean_answer() {
    let server = start(Behaviour::Generate(GenerateSpec::tokens(12))).await;
    server.script([Behaviour::Generate(
        GenerateSpec::tokens(12).pace(Pace::default().first_event_delay(Duration::from_secs(30))),
    )]);
    let cfg = config(Api::OpenAiResponses, &server)
        .timeouts(Timeouts::default().first_event(Duration::from_millis(150)));
    let events = collect(cfg).await;
    assert_eq!(ending(&events), (None, Status::Completed));
    assert_eq!(text_of(&events).split_whitespace().count(), 12);
    let starts = events
        .iter()
        .filter(|e| matches!(e, ProviderEvent::Start { .. }))
        .count();
    assert_eq!(starts, 1);
    assert_eq!(server.total_requests(), 2);
}

#[tokio::test]
async fn a_clean_truncation_is_reported_as_truncated_never_success() {
    for api in Api::ALL {
        let server = start(Behaviour::Generate(
            GenerateSpec::tokens(50).fault(Fault::Truncate { after: 8 }),
        ))
        .await;
        let events = collect(config(api, &server)).await;
        assert_eq!(
            ending(&events),
            (None, Status::Truncated),
            "{api}: {events:?}"
        );
        assert!(!text_of(&events).is_empty());
        assert_eq!(server.total_requests(), 1);
    }
}

#[tokio::test]
async fn an_aborted_connection_mid_body_is_truncated_with_an_error() {
    let server = start(Behaviour::Generate(
        GenerateSpec::tokens(50).fault(Fault::Abort { after: 8 }),
    ))
    .await;
    let events = collect(config(Api::AnthropicMessages, &server)).await;
    assert_eq!(
        ending(&events),
        (Some("body_error".into()), Status::Truncated),
        "{events:?}"
    );
    assert!(
        !text_of(&events).is_empty(),
        "text before the abort is kept"
    );
    assert_eq!(server.total_requests(), 1, "no retry after the first event");
    assert_no_key(&events);
}

#[tokio::test]
async fn a_mid_stream_error_event_ends_with_error_and_failed() {
    for api in Api::ALL {
        let server = start(Behaviour::Generate(GenerateSpec::tokens(50).fault(
            Fault::ErrorEvent {
                after: 7,
                kind: "overloaded_error".into(),
                message: "Overloaded".into(),
            },
        )))
        .await;
        let events = collect(config(api, &server)).await;
        assert_eq!(
            ending(&events),
            (Some("overloaded_error".into()), Status::Failed),
            "{api}: {events:?}"
        );
        let ProviderEvent::Error { message, .. } = &events[events.len() - 2] else {
            unreachable!()
        };
        assert_eq!(message, "Overloaded");
        assert!(
            !text_of(&events).is_empty(),
            "{api}: deltas before the error are kept"
        );
        assert_eq!(
            server.total_requests(),
            1,
            "{api}: mid-stream errors are not retried"
        );
    }
}

#[tokio::test]
async fn unauthorized_fails_fast_with_the_message_and_no_retry() {
    for (api, kind, message) in [
        (
            Api::AnthropicMessages,
            "authentication_error",
            "invalid x-api-key",
        ),
        (
            Api::OpenAiChat,
            "invalid_api_key",
            "Incorrect API key provided.",
        ),
    ] {
        let server = MockServer::start(MockConfig::default().api_key("sk-the-right-one"))
            .await
            .unwrap();
        let started = Instant::now();
        let events = collect(config(api, &server)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[0],
            ProviderEvent::Error {
                kind: kind.into(),
                message: format!("HTTP 401 ({kind}): {message}"),
            }
        );
        assert_eq!(ending(&events).1, Status::Failed);
        assert_eq!(server.total_requests(), 1, "401 is never retried");
        assert_eq!(server.requests()[0].key_ok, Some(false));
        assert_no_key(&events);
    }
}

#[tokio::test]
async fn permanent_errors_are_events_not_restarts_in_the_producer() {
    let server = start(Behaviour::Error(ErrorSpec::openai(
        422,
        "invalid_request_error",
        None,
        "bad input",
    )))
    .await;
    let mut p = ProviderProducer::new(config(Api::OpenAiResponses, &server)).unwrap();
    let cx = Context::detached("llm");
    let mut out = Emitter::new();
    let flow = p.produce(10, &mut out, &cx).await.unwrap();
    assert_eq!(flow, Flow::Done);
    let events = out.take();
    assert_eq!(
        ending(&events),
        (Some("invalid_request_error".into()), Status::Failed)
    );
    assert_eq!(server.total_requests(), 1);
}

#[tokio::test]
async fn transient_errors_exhausting_retries_fail_the_producer_for_its_supervisor() {
    let server = start(Behaviour::Error(
        ErrorSpec::anthropic(529, "overloaded_error", "Overloaded").header("retry-after-ms", "20"),
    ))
    .await;
    let mut p = ProviderProducer::new(config(Api::AnthropicMessages, &server)).unwrap();
    let cx = Context::detached("llm");
    let mut out = Emitter::new();
    let err = p.produce(10, &mut out, &cx).await.unwrap_err();
    assert!(out.is_empty(), "nothing emitted before the error");
    let err = err.downcast::<ProviderError>().unwrap();
    assert_eq!(err.status(), Some(529));
    assert_eq!(err.class(), ErrorClass::Overloaded);
    assert_eq!(
        server.total_requests(),
        3,
        "the first attempt and 2 retries"
    );
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test]
async fn retries_happen_before_the_first_token_and_honour_retry_after() {
    let overloaded =
        ErrorSpec::anthropic(529, "overloaded_error", "Overloaded").header("retry-after-ms", "150");
    let server = start(Behaviour::Generate(GenerateSpec::tokens(30))).await;
    server.script([
        Behaviour::Error(overloaded.clone()),
        Behaviour::Error(overloaded),
    ]);
    let started = Instant::now();
    let events = collect(config(Api::AnthropicMessages, &server)).await;
    let elapsed = started.elapsed();
    assert_eq!(ending(&events), (None, Status::Completed), "{events:?}");
    assert_eq!(
        text_of(&events).split_whitespace().count(),
        30,
        "no duplicated tokens"
    );
    assert_eq!(server.total_requests(), 3);
    // Two waits of at least the server's 150 ms (the backoff is shorter).
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    let reqs = server.requests();
    for w in reqs.windows(2) {
        assert!(w[1].at - w[0].at >= Duration::from_millis(150));
    }
}

#[tokio::test]
async fn a_total_timeout_ends_a_trickling_stream_as_timed_out() {
    let server = start(Behaviour::Generate(
        GenerateSpec::tokens(1000).pace(Pace::trickle(Duration::from_millis(20))),
    ))
    .await;
    let cfg = config(Api::OpenAiResponses, &server)
        .timeouts(Timeouts::default().total(Duration::from_millis(400)));
    let started = Instant::now();
    let events = collect(cfg).await;
    assert_eq!(
        ending(&events),
        (Some("total_timeout".into()), Status::TimedOut)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!text_of(&events).is_empty());
}

#[tokio::test]
async fn a_deadline_shorter_than_retry_after_fails_at_once_without_sleeping() {
    let server = start(Behaviour::Generate(GenerateSpec::tokens(3))).await;
    server.script([Behaviour::Error(
        ErrorSpec::openai(429, "tokens", Some("rate_limit_exceeded"), "slow down")
            .header("retry-after", "30"),
    )]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let events: Vec<_> = ProviderStream::new(config(Api::OpenAiChat, &server))
        .unwrap()
        .deadline(deadline)
        .collect()
        .await;
    assert_eq!(
        ending(&events),
        (Some("deadline_exceeded".into()), Status::DeadlineExceeded)
    );
    assert!(started.elapsed() < Duration::from_secs(4), "did not sleep");
    assert_eq!(server.total_requests(), 1);
}

#[tokio::test]
async fn connect_errors_are_retried_then_reported_without_the_key() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = ProviderConfig::new(Api::OpenAiChat, &format!("http://127.0.0.1:{port}"))
        .unwrap()
        .api_key(KEY)
        .prompt("x")
        .retry_policy(fast_retries());
    let started = Instant::now();
    let events = collect(cfg.clone()).await;
    assert_eq!(
        ending(&events),
        (Some("connect_error".into()), Status::Failed)
    );
    // Two backoffs of at least 0.75 * 10 ms and 0.75 * 20 ms.
    assert!(started.elapsed() >= Duration::from_millis(22));
    assert_no_key(&events);
    assert!(!format!("{cfg:?}").contains(KEY));
    let stream = ProviderStream::new(cfg.clone()).unwrap();
    assert!(!format!("{stream:?}").contains(KEY));
    let producer = ProviderProducer::new(cfg).unwrap();
    assert!(!format!("{producer:?}").contains(KEY));
}

#[tokio::test]
async fn a_provider_echoing_the_key_is_redacted() {
    let server = start(Behaviour::Error(ErrorSpec::openai(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        &format!("Incorrect API key provided: {KEY}."),
    )))
    .await;
    let events = collect(config(Api::OpenAiResponses, &server)).await;
    assert_no_key(&events);
    let ProviderEvent::Error { message, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert!(message.contains("[redacted]"), "{message}");
}
