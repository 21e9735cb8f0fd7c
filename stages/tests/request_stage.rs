//! The request stage against the embedded mock: 429s with `retry-after`,
//! independent endpoints, dead letters after the last attempt, deadlines,
//! cancellation, pass-through events, raw bodies and bounded intake.

#[path = "request_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demandflow::{
    sink, BoxError, CancelScope, Context, Emitter, Flow, Pipeline, Producer, Subscribe,
};
use demandflow_stages::llm::{LlmEvent, LlmRequest, LlmResult, RequestStage};
use demandflow_stages::mock::{Behaviour, ErrorSpec, GenerateSpec, MockConfig, MockServer, Pace};
use demandflow_stages::provider::{Api, ProviderConfig, ProviderEvent, Status};
use demandflow_stages::ratelimit::Limits;
use serde_json::json;
use support::run;

async fn mock(tokens: u64, pace: Pace) -> MockServer {
    MockServer::start(
        MockConfig::default()
            .default_behaviour(Behaviour::Generate(GenerateSpec::tokens(tokens).pace(pace))),
    )
    .await
    .expect("mock starts")
}

fn requests(server: &MockServer, api: Api, prefix: &str, n: usize) -> Vec<LlmRequest> {
    let template = ProviderConfig::new(api, &server.url())
        .unwrap()
        .max_tokens(32);
    (0..n)
        .map(|i| {
            LlmRequest::new(
                format!("{prefix}{i}"),
                template.clone().prompt(format!("q{i}")),
            )
        })
        .collect()
}

fn by_id(results: &[LlmResult]) -> HashMap<String, LlmResult> {
    let mut map = HashMap::new();
    for r in results {
        assert!(
            map.insert(r.id.to_string(), r.clone()).is_none(),
            "{} emitted twice",
            r.id
        );
    }
    map
}

fn limited(api: Api, retry_after_ms: u64) -> Behaviour {
    Behaviour::Error(
        ErrorSpec::for_api(api, 429, "rate_limit_exceeded", "slow down")
            .header("retry-after-ms", &retry_after_ms.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_result_through_429s() {
    for api in [
        Api::OpenAiChat,
        Api::OpenAiResponses,
        Api::AnthropicMessages,
        Api::Gemini,
    ] {
        let server = mock(6, Pace::default()).await;
        server.script([limited(api, 20), limited(api, 20), limited(api, 20)]);
        let stage = RequestStage::new().concurrency(3);
        let stats = stage.stats();
        let results = run(stage, requests(&server, api, "r", 20)).await;
        let results = by_id(&results);
        assert_eq!(results.len(), 20, "{api}");
        for r in results.values() {
            assert!(r.is_success(), "{api}: {r:?}");
            assert_eq!(r.text().split_whitespace().count(), 6, "{api}");
            assert!(r.usage().is_some(), "{api}: usage reported");
        }
        let attempts: u32 = results.values().map(|r| r.attempts).sum();
        let limited: u32 = results.values().map(|r| r.rate_limited).sum();
        assert_eq!(attempts, 23, "{api}");
        assert_eq!(limited, 3, "{api}");
        assert_eq!(
            server.total_requests(),
            23,
            "{api}: every attempt reached the server once"
        );
        let s = stats.snapshot();
        assert_eq!(
            (s.rate_limited, s.retries, s.succeeded, s.failed),
            (3, 3, 20, 0),
            "{api}"
        );
        assert!(s.peak_in_flight <= 3, "{api}: {s:?}");
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_blocks_only_its_endpoint_for_the_time_the_server_names() {
    let slow = mock(3, Pace::default()).await;
    let fast = mock(3, Pace::default()).await;
    // The first request to `slow` is told to wait 1.5 s.
    slow.script([limited(Api::OpenAiChat, 1500)]);
    let mut input = requests(&slow, Api::OpenAiChat, "slow", 1);
    input.extend(requests(&fast, Api::OpenAiChat, "fast", 10));
    let started = tokio::time::Instant::now();
    let results = run(RequestStage::new().concurrency(4), input).await;
    let elapsed = started.elapsed();
    assert_eq!(results.len(), 11);
    // The other endpoint did not wait: all its results came first.
    let position = results.iter().position(|r| &*r.id == "slow0").unwrap();
    assert_eq!(
        position,
        10,
        "{:?}",
        results.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    let slow0 = &results[position];
    assert!(slow0.is_success());
    assert_eq!((slow0.attempts, slow0.rate_limited), (2, 1));
    // The retry waited for the server's 1.5 s (no less).
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    let reqs = slow.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(1450), "retried after {gap:?}");
    slow.shutdown().await;
    fast.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_the_last_attempt_and_the_run_goes_on() {
    let broken = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Error(
            ErrorSpec::for_api(
                Api::AnthropicMessages,
                529,
                "overloaded_error",
                "Overloaded",
            )
            .header("retry-after-ms", "10"),
        )),
    )
    .await
    .unwrap();
    let refusing = MockServer::start(MockConfig::default().default_behaviour(Behaviour::Error(
        ErrorSpec::for_api(Api::AnthropicMessages, 400, "invalid_request_error", "bad"),
    )))
    .await
    .unwrap();
    let healthy = mock(4, Pace::default()).await;
    let mut input = requests(&broken, Api::AnthropicMessages, "broken", 2);
    input.extend(requests(&refusing, Api::AnthropicMessages, "refused", 1));
    input.extend(requests(&healthy, Api::AnthropicMessages, "ok", 5));
    let stage = RequestStage::new().max_attempts(3);
    let stats = stage.stats();
    let results = by_id(&run(stage, input).await);
    assert_eq!(results.len(), 8);
    for i in 0..2 {
        let r = &results[&format!("broken{i}")];
        assert!(!r.is_success());
        assert_eq!(r.status, Status::Failed);
        assert_eq!((r.attempts, r.rate_limited), (3, 3));
        let e = r.error.as_ref().unwrap();
        assert_eq!((e.kind.as_str(), e.status), ("overloaded_error", Some(529)));
    }
    let refused = &results["refused0"];
    assert_eq!(refused.attempts, 1, "a 400 is not retried");
    assert_eq!(refused.error.as_ref().unwrap().status, Some(400));
    assert!((0..5).all(|i| results[&format!("ok{i}")].is_success()));
    assert_eq!(broken.total_requests(), 6);
    let s = stats.snapshot();
    assert_eq!((s.succeeded, s.failed), (5, 3));
    for m in [broken, refusing, healthy] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadlines_in_flight_and_while_waiting() {
    let stalled = mock(
        3,
        Pace::default().first_event_delay(Duration::from_secs(30)),
    )
    .await;
    let healthy = mock(3, Pace::default()).await;
    let mut input: Vec<LlmRequest> = requests(&stalled, Api::OpenAiChat, "stalled", 1)
        .into_iter()
        .map(|r| r.deadline(Duration::from_millis(300)))
        .collect();
    // One request a minute to `healthy`: the first goes at once, the
    // second would wait about two minutes and expires first.
    input.extend(
        requests(&healthy, Api::OpenAiChat, "waiting", 2)
            .into_iter()
            .map(|r| r.deadline(Duration::from_millis(300))),
    );
    let key = input[1].endpoint_key();
    let stage = RequestStage::new().endpoint_limits(key, Limits::none().rpm(1.0));
    let started = tokio::time::Instant::now();
    let results = by_id(&run(stage, input).await);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let stalled_r = &results["stalled0"];
    assert_eq!(stalled_r.status, Status::DeadlineExceeded);
    assert_eq!(stalled_r.attempts, 1);
    assert!(results["waiting0"].is_success());
    let waited = &results["waiting1"];
    assert_eq!(waited.status, Status::DeadlineExceeded);
    assert_eq!(waited.attempts, 0, "never sent");
    assert_eq!(waited.error.as_ref().unwrap().kind, "deadline_exceeded");
    assert_eq!(healthy.total_requests(), 1);
    stalled.shutdown().await;
    healthy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_deadline_ends_requests_in_flight() {
    let stalled = mock(
        3,
        Pace::default().first_event_delay(Duration::from_secs(30)),
    )
    .await;
    let mut p = Pipeline::new().deadline(tokio::time::Instant::now() + Duration::from_millis(400));
    let input = p.producer(
        "input",
        demandflow::source::iter(requests(&stalled, Api::OpenAiChat, "r", 2)),
    );
    let llm = p
        .processor("llm", RequestStage::new())
        .subscribe(&input, Subscribe::default());
    let (collect, _results) = sink::collect::<LlmResult>();
    p.consumer("out", collect)
        .subscribe(&llm, Subscribe::default());
    let started = tokio::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(20), p.spawn().unwrap().join())
        .await
        .expect("the deadline ends the run");
    assert!(started.elapsed() < Duration::from_secs(20));
    stalled.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_request_leaves_the_others() {
    let server = mock(20, Pace::trickle(Duration::from_millis(100))).await;
    let scope = CancelScope::new();
    let mut input = requests(&server, Api::OpenAiResponses, "r", 3);
    input[1] = input[1].clone().cancel_on(scope.clone());
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        scope.cancel(demandflow::CancelCause::User);
    });
    let results = by_id(&run(RequestStage::new(), input).await);
    canceller.await.unwrap();
    assert!(results["r0"].is_success());
    assert!(results["r2"].is_success());
    let cancelled = &results["r1"];
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.attempts, 1);
    assert!(cancelled.text().split_whitespace().count() < 20);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_tags_events_and_hides_retried_attempts() {
    let server = mock(5, Pace::default()).await;
    server.script([limited(Api::AnthropicMessages, 10)]);
    let stage = RequestStage::new().concurrency(2).events();
    let out: Vec<LlmEvent> = run(stage, requests(&server, Api::AnthropicMessages, "c", 4)).await;
    for i in 0..4 {
        let id = format!("c{i}");
        let mine: Vec<&LlmEvent> = out.iter().filter(|e| e.id() == id).collect();
        let LlmEvent::Finished(result) = mine.last().unwrap() else {
            panic!("{id}: the result comes last")
        };
        assert!(result.is_success());
        let events: Vec<&ProviderEvent> = mine
            .iter()
            .filter_map(|e| match e {
                LlmEvent::Event { event, .. } => Some(event),
                LlmEvent::Finished(_) => None,
            })
            .collect();
        let starts = events
            .iter()
            .filter(|e| matches!(e, ProviderEvent::Start { .. }))
            .count();
        let dones = events.iter().filter(|e| e.is_done()).count();
        assert_eq!(
            (starts, dones),
            (1, 1),
            "{id}: one attempt's events, whatever was retried"
        );
        assert!(events.last().unwrap().is_done());
        let words: usize = events
            .iter()
            .map(|e| match e {
                ProviderEvent::TextDelta { text } => text.split_whitespace().count(),
                _ => 0,
            })
            .sum();
        assert_eq!(words, 5, "{id}");
    }
    assert_eq!(server.total_requests(), 5);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bodies_are_sent_streaming() {
    let server = mock(3, Pace::default()).await;
    let anthropic = LlmRequest::from_body(
        "a",
        Api::AnthropicMessages,
        &server.url(),
        json!({"model": "claude-x", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let chat = LlmRequest::from_body(
        "c",
        Api::OpenAiChat,
        &server.url(),
        json!({"model": "gpt-x", "stream": false, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    let results = by_id(&run(RequestStage::new().concurrency(1), vec![anthropic, chat]).await);
    assert!(results.values().all(LlmResult::is_success));
    let bodies: Vec<serde_json::Value> = server.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.len(), 2);
    let a = bodies.iter().find(|b| b["model"] == "claude-x").unwrap();
    assert_eq!(
        (a["stream"].clone(), a["max_tokens"].clone()),
        (json!(true), json!(7))
    );
    let c = bodies.iter().find(|b| b["model"] == "gpt-x").unwrap();
    assert_eq!(c["stream"], true);
    assert_eq!(c["stream_options"]["include_usage"], true);
    server.shutdown().await;
}

/// A source of `n` requests that counts how many it has handed out.
#[derive(Clone)]
struct Counting {
    requests: Arc<Vec<LlmRequest>>,
    next: usize,
    handed: Arc<AtomicUsize>,
}

impl Producer<LlmRequest> for Counting {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<LlmRequest>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        for _ in 0..demand {
            let Some(r) = self.requests.get(self.next) else {
                return Ok(Flow::Done);
            };
            out.emit(r.clone());
            self.next += 1;
            self.handed.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Flow::Continue)
    }
}

/// A consumer that checks, at every result, how many requests the source
/// has handed out beyond those finished.
#[derive(Clone)]
struct Watch {
    handed: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    peak_ahead: Arc<AtomicUsize>,
}

impl demandflow::Consumer<LlmResult> for Watch {
    async fn consume(&mut self, events: &[LlmResult], _cx: &Context) -> Result<(), BoxError> {
        let finished = self.finished.fetch_add(events.len(), Ordering::SeqCst) + events.len();
        let ahead = self.handed.load(Ordering::SeqCst).saturating_sub(finished);
        self.peak_ahead.fetch_max(ahead, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_follows_capacity_not_input_size() {
    let server = mock(
        2,
        Pace::default().first_event_delay(Duration::from_millis(20)),
    )
    .await;
    let handed = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        requests: Arc::new(requests(&server, Api::OpenAiChat, "r", 300)),
        next: 0,
        handed: handed.clone(),
    };
    let watch = Watch {
        handed: handed.clone(),
        finished: Arc::default(),
        peak_ahead: Arc::default(),
    };
    let peak_ahead = watch.peak_ahead.clone();
    let stage = RequestStage::new().concurrency(4);
    let stats = stage.stats();
    let mut p = Pipeline::new();
    let input = p.producer("input", source);
    let llm = p
        .processor("llm", stage)
        .subscribe(&input, Subscribe::default());
    p.consumer("out", watch)
        .subscribe(&llm, Subscribe::default());
    tokio::time::timeout(Duration::from_secs(120), p.spawn().unwrap().join())
        .await
        .unwrap()
        .unwrap();
    let s = stats.snapshot();
    assert_eq!(s.succeeded, 300);
    assert!(s.peak_in_flight <= 4, "{s:?}");
    assert!(s.peak_queued <= 4, "{s:?}");
    // Handed out but not finished: in flight, waiting, or results on
    // their way to the consumer; never the whole input.
    let ahead = peak_ahead.load(Ordering::SeqCst);
    assert!(ahead <= 16, "the stage read {ahead} requests ahead");
    server.shutdown().await;
}
