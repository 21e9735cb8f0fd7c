//! The mock provider on its own, spoken to with a plain HTTP client: wire
//! formats, replay, scripted behaviours, faults and what it records.

use std::time::Duration;

use demandflow_stages::mock::{
    Behaviour, ErrorSpec, Fault, GenerateSpec, MockConfig, MockServer, Pace, ReplaySpec,
    BEHAVIOUR_HEADER,
};
use serde_json::{json, Value};
use tokio::time::Instant;

async fn post(server: &MockServer, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .json_body(body)
        .send()
        .await
        .unwrap()
}

trait JsonBody {
    fn json_body(self, v: Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: Value) -> Self {
        self.header("content-type", "application/json")
            .body(v.to_string())
    }
}

fn data_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn generated_streams_follow_each_apis_wire_format() {
    let server = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(5))),
    )
    .await
    .unwrap();

    let chat = post(
        &server,
        "/v1/chat/completions",
        json!({"model": "m1", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(chat.headers()["content-type"], "text/event-stream");
    let text = chat.text().await.unwrap();
    assert!(!text.contains("event:"), "chat has no event lines");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks = data_lines(&text);
    assert_eq!(chunks[0]["model"], "m1");
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 5);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );

    let resp = post(
        &server,
        "/v1/responses",
        json!({"stream": true, "input": "hi"}),
    )
    .await;
    let text = resp.text().await.unwrap();
    let events = data_lines(&text);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64, "gap-free sequence numbers");
        assert!(text.contains(&format!("event: {}\n", e["type"].as_str().unwrap())));
    }
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(
        events.last().unwrap()["response"]["usage"]["output_tokens"],
        5
    );
    assert!(!text.contains("[DONE]"));

    let msgs = post(
        &server,
        "/v1/messages",
        json!({"stream": true, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let text = msgs.text().await.unwrap();
    let events = data_lines(&text);
    assert_eq!(events[0]["type"], "message_start");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(
        delta["delta"]["stop_reason"], "max_tokens",
        "3 < 5 tokens asked"
    );
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(events.last().unwrap()["type"], "message_stop");

    assert_eq!(server.request_count("/v1/messages"), 1);
    assert_eq!(server.total_requests(), 3);
}

#[tokio::test]
async fn non_streaming_requests_get_json() {
    let server = MockServer::start(
        MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(4))),
    )
    .await
    .unwrap();
    let v: Value = post(&server, "/v1/messages", json!({"max_tokens": 100}))
        .await
        .json_text()
        .await;
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 4);
    let v: Value = post(&server, "/v1/chat/completions", json!({"max_tokens": 2}))
        .await
        .json_text()
        .await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

trait JsonText {
    async fn json_text(self) -> Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn replays_a_transcript_verbatim() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sse/02_openai_chat_text_usage.sse"
    );
    let want = std::fs::read(path).unwrap();
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    server.set_default(Behaviour::Replay(ReplaySpec::file(path).chunk_bytes(13)));
    let got = post(&server, "/v1/chat/completions", json!({"stream": true}))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), want.as_slice());
    // A missing transcript is a visible 500, not a hang or a panic.
    server.set_default(Behaviour::Replay(ReplaySpec::file("/no/such/file.sse")));
    let r = post(&server, "/v1/chat/completions", json!({"stream": true})).await;
    assert_eq!(r.status(), 500);
}

#[tokio::test]
async fn script_then_default_and_the_header_overrides_both() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    server.script([
        Behaviour::Error(
            ErrorSpec::anthropic(529, "overloaded_error", "Overloaded")
                .header("retry-after-ms", "50"),
        ),
        Behaviour::Error(
            ErrorSpec::openai(500, "server_error", None, "boom").header("x-should-retry", "false"),
        ),
    ]);
    let header_choice = serde_json::to_string(&Behaviour::Error(ErrorSpec::status(418))).unwrap();
    let teapot = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.url()))
        .header(BEHAVIOUR_HEADER, header_choice)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        teapot.status(),
        418,
        "the header wins and does not use up the script"
    );

    let first = post(&server, "/v1/messages", json!({"stream": true})).await;
    assert_eq!(first.status(), 529);
    assert_eq!(first.headers()["retry-after-ms"], "50");
    let body: Value = first.json_text().await;
    assert_eq!(body["error"]["type"], "overloaded_error");
    let second = post(&server, "/v1/messages", json!({"stream": true})).await;
    assert_eq!(second.status(), 500);
    assert_eq!(second.headers()["x-should-retry"], "false");
    assert_eq!(second.json_text().await["error"]["message"], "boom");
    let third = post(&server, "/v1/messages", json!({"stream": true})).await;
    assert_eq!(third.status(), 200, "script used up: the default");

    let bad = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.url()))
        .header(BEHAVIOUR_HEADER, "{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn unknown_paths_methods_and_keys_are_rejected_and_keys_never_recorded() {
    let server = MockServer::start(MockConfig::default().api_key("sk-mock-secret"))
        .await
        .unwrap();
    assert_eq!(post(&server, "/v2/other", json!({})).await.status(), 404);
    let get = reqwest::get(format!("{}/v1/messages", server.url()))
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let c = reqwest::Client::new();
    let wrong = c
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", "sk-wrong-secret")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = c
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("authorization", "Bearer sk-mock-secret")
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let _ = right.bytes().await;
    let records = server.requests();
    let dump = format!("{records:?}");
    assert!(!dump.contains("sk-mock-secret") && !dump.contains("sk-wrong-secret"));
    assert_eq!(records[2].key_ok, Some(false));
    assert_eq!(records[3].key_ok, Some(true));
}

#[tokio::test]
async fn trickle_stall_and_close_are_observable() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    server.script([Behaviour::Generate(
        GenerateSpec::tokens(3).pace(Pace::trickle(Duration::from_millis(40))),
    )]);
    let started = Instant::now();
    let r = post(&server, "/v1/messages", json!({"stream": true})).await;
    let _ = r.bytes().await.unwrap();
    // 3 tokens + 6 framing events: 8 gaps of 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(320));

    server.script([Behaviour::Generate(
        GenerateSpec::tokens(100).fault(Fault::Stall { after: 2 }),
    )]);
    let client = reqwest::Client::new();
    let mut resp = client
        .post(format!("{}/v1/messages", server.url()))
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"event: message_start"));
    let stalled = tokio::time::timeout(Duration::from_millis(200), resp.chunk()).await;
    assert!(stalled.is_err(), "a stalled body sends nothing more");
    let conns = server.connections();
    let id = conns.last().unwrap().id;
    assert!(conns.last().unwrap().closed_at.is_none());
    drop(resp);
    drop(client);
    assert!(server
        .wait_connection_closed(id, Duration::from_secs(5))
        .await
        .is_some());
    server.shutdown().await;
}
