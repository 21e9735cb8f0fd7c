//! Every case of `http_error_cases.json` (copied from the shared conformance
//! fixtures), checked three ways:
//!
//! 1. the pure retry decision with a fake clock (exact delays, jitter fixed);
//! 2. on the wire: the mock serves the case's status, headers and body, and
//!    the decision and error class are computed from what reqwest received;
//! 3. end to end through [`ProviderStream`] against the mock, scripted "this
//!    case, then success". Server waits too long for a test (7 s, 12 s, 90 s)
//!    are checked by giving the stream a 1 s deadline: it must fail with
//!    `deadline_exceeded` at once, after one request — never retry early,
//!    never sleep past the deadline (G-C3, G-S4, G-S5).

use std::time::{Duration, SystemTime};

use demandflow_stages::mock::{Behaviour, ErrorSpec, GenerateSpec, MockConfig, MockServer};
use demandflow_stages::provider::{
    Api, Decision, ExponentialBackoff, Failure, GiveUp, Jitter, ProviderConfig, ProviderError,
    ProviderEvent, ProviderStream, RetryInput, RetryPolicy, Status,
};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;

const CASES: &str = include_str!("fixtures/http_error_cases.json");

fn case(id: &str) -> Value {
    let all: Value = serde_json::from_str(CASES).unwrap();
    all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))
        .clone()
}

fn headers_of(c: &Value) -> Vec<(String, String)> {
    c["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn api_of(c: &Value) -> Api {
    match c["provider"].as_str().unwrap() {
        "anthropic" => Api::AnthropicMessages,
        "openai" => Api::OpenAiChat,
        _ => Api::OpenAiResponses,
    }
}

fn error_spec(c: &Value, headers: &[(String, String)]) -> ErrorSpec {
    let mut spec = ErrorSpec::status(c["status"].as_u64().unwrap() as u16);
    for (k, v) in headers {
        spec = spec.header(k, v);
    }
    if !c["body"].is_null() {
        spec = spec.body(c["body"].to_string());
    }
    spec
}

/// The SDK policy with the jitter pinned so delays are exact.
fn policy() -> ExponentialBackoff {
    ExponentialBackoff::default().jitter(Jitter::fixed(0.0))
}

/// What the case expects of the retry decision.
fn check_decision(c: &Value, d: Decision, exact: bool) {
    let exp = &c["engine_expectation"];
    let id = c["id"].as_str().unwrap();
    if exp["retry"] == true {
        let Decision::Retry(delay) = d else {
            panic!("{id}: expected a retry, got {d:?}")
        };
        match &exp["delay_ms"] {
            Value::Number(ms) if exact => {
                assert_eq!(delay, Duration::from_millis(ms.as_u64().unwrap()), "{id}")
            }
            // On the wire with a real clock: an HTTP-date hint may lose up to 1 s.
            Value::Number(ms) => {
                let want = Duration::from_millis(ms.as_u64().unwrap());
                assert!(
                    delay <= want && delay + Duration::from_secs(1) >= want,
                    "{id}: {delay:?}"
                )
            }
            Value::String(s) if s == "backoff" => {
                assert_eq!(delay, Duration::from_millis(500), "{id}: first SDK backoff")
            }
            Value::String(s) if s.starts_with(">= ") => {
                let ms: u64 = s[3..].split_whitespace().next().unwrap().parse().unwrap();
                assert!(delay >= Duration::from_millis(ms), "{id}: {delay:?}")
            }
            Value::Null => {}
            other => panic!("{id}: unknown delay_ms {other}"),
        }
    } else {
        let Decision::GiveUp(reason) = d else {
            panic!("{id}: expected no retry, got {d:?}")
        };
        match exp["error_class"].as_str() {
            Some("deadline_exceeded") => {
                assert!(
                    matches!(reason, GiveUp::Deadline { .. }),
                    "{id}: {reason:?}"
                )
            }
            Some("rate_limited_non_transient") => {
                assert!(
                    matches!(reason, GiveUp::RetryAfterTooLong(_)),
                    "{id}: {reason:?}"
                )
            }
            _ => assert_eq!(reason, GiveUp::NotRetryable, "{id}"),
        }
    }
}

fn check_class(c: &Value, err: &ProviderError) {
    if let Some(class) = c["engine_expectation"]["error_class"].as_str() {
        assert_eq!(err.class().as_str(), class, "{}: {err}", c["id"]);
    }
}

/// Step 1: the pure decision, with the case's clock and deadline.
fn pure(c: &Value) {
    let headers = header_map(&headers_of(c));
    let now = Instant::now();
    let wall = c["request_time"]
        .as_str()
        .map(|t| httpdate::parse_http_date(t).unwrap())
        .unwrap_or_else(SystemTime::now);
    let deadline = c["stage_deadline_remaining_ms"]
        .as_u64()
        .map(|ms| now + Duration::from_millis(ms));
    let status = c["status"].as_u64().unwrap() as u16;
    let input = RetryInput::new(
        Failure::Status {
            status,
            headers: &headers,
        },
        0,
    )
    .at(now, wall)
    .deadline(deadline);
    let d = policy().decide(&input);
    check_decision(c, d, true);
    let body = if c["body"].is_null() {
        Vec::new()
    } else {
        c["body"].to_string().into_bytes()
    };
    let err = ProviderError::from_http(status, &body);
    let err = match d {
        Decision::GiveUp(reason) => err.given_up(reason),
        Decision::Retry(_) => err,
    };
    check_class(c, &err);
    if let Some(msg) = c["body"].pointer("/error/message").and_then(Value::as_str) {
        assert!(err.to_string().contains(msg), "{err}");
    }
}

/// Step 2: the same decision from what actually crossed the wire.
async fn wire(c: &Value, headers: &[(String, String)]) {
    let api = api_of(c);
    let server = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Error(error_spec(c, headers))),
    )
    .await
    .unwrap();
    let cfg = ProviderConfig::new(api, &server.url()).unwrap();
    let resp = reqwest::Client::new()
        .post(cfg.endpoint().clone())
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status as u64, c["status"].as_u64().unwrap());
    let got_headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    let now = Instant::now();
    let deadline = c["stage_deadline_remaining_ms"]
        .as_u64()
        .map(|ms| now + Duration::from_millis(ms));
    let input = RetryInput::new(
        Failure::Status {
            status,
            headers: &got_headers,
        },
        0,
    )
    .at(now, SystemTime::now())
    .deadline(deadline);
    let d = policy().decide(&input);
    check_decision(c, d, c["request_time"].is_null());
    let err = ProviderError::from_http(status, &body);
    let err = match d {
        Decision::GiveUp(reason) => err.given_up(reason),
        Decision::Retry(_) => err,
    };
    check_class(c, &err);
    server.shutdown().await;
}

/// Step 3: through the producer's stream, "this case, then success".
async fn end_to_end(c: &Value, headers: &[(String, String)]) {
    let id = c["id"].as_str().unwrap();
    let exp = &c["engine_expectation"];
    let server = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(5))),
    )
    .await
    .unwrap();
    server.script([Behaviour::Error(error_spec(c, headers))]);
    let cfg = ProviderConfig::new(api_of(c), &server.url())
        .unwrap()
        .prompt("hi")
        .retry_policy(policy().delays(Duration::from_millis(10), Duration::from_millis(40)));
    let long_wait = match &exp["delay_ms"] {
        Value::Number(ms) => ms.as_u64().unwrap() > 2000,
        Value::String(s) => s.starts_with(">="),
        _ => false,
    };
    let deadline = match c["stage_deadline_remaining_ms"].as_u64() {
        Some(ms) => Some(Duration::from_millis(ms)),
        None if long_wait => Some(Duration::from_secs(1)),
        None => None,
    };
    let started = Instant::now();
    let mut stream = ProviderStream::new(cfg).unwrap();
    if let Some(d) = deadline {
        stream = stream.deadline(started + d);
    }
    let events: Vec<ProviderEvent> = stream.collect().await;
    let elapsed = started.elapsed();
    let Some(ProviderEvent::Done { status, .. }) = events.last() else {
        panic!("{id}: {events:?}")
    };
    if exp["retry"] == true && !long_wait {
        assert_eq!(*status, Status::Completed, "{id}: {events:?}");
        assert_eq!(server.total_requests(), 2, "{id}");
        if let Value::Number(ms) = &exp["delay_ms"] {
            let r = server.requests();
            let gap = r[1].at - r[0].at;
            assert!(
                gap >= Duration::from_millis(ms.as_u64().unwrap()),
                "{id}: {gap:?}"
            );
        }
    } else {
        assert_eq!(server.total_requests(), 1, "{id}: no retry");
        let ProviderEvent::Error { kind, .. } = &events[events.len() - 2] else {
            panic!("{id}: {events:?}")
        };
        if exp["retry"] == true || exp["error_class"] == "deadline_exceeded" {
            assert_eq!(*status, Status::DeadlineExceeded, "{id}");
            assert_eq!(kind, "deadline_exceeded", "{id}");
            assert!(
                elapsed < Duration::from_millis(900),
                "{id}: slept {elapsed:?}"
            );
        } else {
            assert_eq!(*status, Status::Failed, "{id}");
        }
    }
    server.shutdown().await;
}

async fn run(id: &str) {
    let c = case(id);
    pure(&c);
    let mut headers = headers_of(&c);
    // The fixture's date is fixed; on the wire, send one 2 s ahead of now so
    // the HTTP-date path is exercised with the real clock.
    if c["request_time"].is_string() {
        let ahead = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
        for (k, v) in &mut headers {
            if k == "retry-after" {
                *v = ahead.clone();
            }
        }
        let mut c2 = c.clone();
        c2["engine_expectation"]["delay_ms"] = Value::from(2000);
        wire(&c2, &headers).await;
        c2["engine_expectation"]["delay_ms"] = Value::from(1000);
        end_to_end(&c2, &headers).await;
        return;
    }
    wire(&c, &headers).await;
    end_to_end(&c, &headers).await;
}

macro_rules! cases {
    ($($id:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $id() {
                run(stringify!($id)).await;
            }
        )*

        #[test]
        fn every_fixture_case_has_a_test() {
            let all: Value = serde_json::from_str(CASES).unwrap();
            let mut ids: Vec<&str> = all["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect();
            ids.sort_unstable();
            let mut tested = vec![$(stringify!($id)),*];
            tested.sort_unstable();
            assert_eq!(ids, tested);
        }
    };
}

cases!(
    openai_429_retry_after_seconds,
    openai_429_retry_after_ms,
    openai_429_retry_after_too_long,
    http_date_retry_after,
    anthropic_529_overloaded,
    anthropic_429_rate_limit,
    anthropic_429_retry_after_above_window,
    server_500,
    server_500_x_should_retry_false,
    bad_request_400,
    request_timeout_408,
    deadline_shorter_than_retry_after,
);
