//! The mock provider's rate-limit mode, spoken to with plain reqwest: the
//! headers of each API on every answer, 429s with a `retry-after` that is
//! enough, refill over time, Anthropic's output refund, overloads and the
//! load counters. Time bounds are generous: waiting longer only helps.

use std::collections::HashMap;
use std::time::Duration;

use demandflow_stages::mock::{
    Behaviour, GenerateSpec, MockConfig, MockServer, MockStats, Pace, RateLimits,
};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Responses,
    Messages,
    Gemini,
}

const ALL: [Api; 4] = [Api::Chat, Api::Responses, Api::Messages, Api::Gemini];

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
            Api::Gemini => "/v1beta/models/gemini-mock:streamGenerateContent",
        }
    }

    /// A streamed request of `prompt` asking for at most `max` tokens.
    fn body(self, prompt: &str, max: u64) -> Value {
        match self {
            Api::Chat => json!({"model": "m", "stream": true, "max_completion_tokens": max,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": prompt}]}),
            Api::Responses => {
                json!({"model": "m", "stream": true, "max_output_tokens": max, "input": prompt})
            }
            Api::Messages => json!({"model": "m", "stream": true, "max_tokens": max,
                "messages": [{"role": "user", "content": prompt}]}),
            Api::Gemini => json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"maxOutputTokens": max}}),
        }
    }

    fn key_header(self) -> &'static str {
        match self {
            Api::Messages => "x-api-key",
            Api::Gemini => "x-goog-api-key",
            _ => "authorization",
        }
    }
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
    }

    fn num(&self, name: &str) -> u64 {
        self.header(name).parse().unwrap()
    }

    fn retry_after(&self) -> Duration {
        Duration::from_secs(self.num("retry-after"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// (input, output) usage reported in a streamed body.
    fn usage(&self, api: Api) -> (u64, u64) {
        let events: Vec<Value> = self
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d.trim_end()).unwrap())
            .collect();
        let n = |v: &Value| v.as_u64().unwrap();
        let last = events.last().unwrap();
        match api {
            Api::Chat => (
                n(&last["usage"]["prompt_tokens"]),
                n(&last["usage"]["completion_tokens"]),
            ),
            Api::Responses => {
                let u = &last["response"]["usage"];
                (n(&u["input_tokens"]), n(&u["output_tokens"]))
            }
            Api::Messages => {
                let start = &events[0]["message"]["usage"];
                let delta = events
                    .iter()
                    .find(|e| e["type"] == "message_delta")
                    .unwrap();
                (
                    n(&start["input_tokens"]),
                    n(&delta["usage"]["output_tokens"]),
                )
            }
            Api::Gemini => {
                let u = &last["usageMetadata"];
                (n(&u["promptTokenCount"]), n(&u["candidatesTokenCount"]))
            }
        }
    }
}

async fn send(server: &MockServer, api: Api, key: &str, body: &Value) -> Answer {
    let key_value = if api.key_header() == "authorization" {
        format!("Bearer {key}")
    } else {
        key.to_owned()
    };
    let resp = reqwest::Client::new()
        .post(format!("{}{}", server.url(), api.path()))
        .header("content-type", "application/json")
        .header(api.key_header(), key_value)
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = resp.text().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

async fn start(limits: RateLimits, generate: GenerateSpec) -> MockServer {
    MockServer::start(
        MockConfig::default()
            .rate_limits(limits)
            .default_behaviour(Behaviour::Generate(generate)),
    )
    .await
    .unwrap()
}

/// Parses Go's duration format (`6m0s`, `1.5s`, `120ms`, `0s`).
fn go_duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        return Duration::from_millis(ms.parse().unwrap());
    }
    let mut total = 0.0;
    let mut num = String::new();
    for c in s.chars() {
        match c {
            'h' | 'm' | 's' => {
                let v: f64 = num.parse().unwrap();
                total += v * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => num.push(c),
        }
    }
    assert!(num.is_empty(), "trailing `{num}` in {s}");
    Duration::from_secs_f64(total)
}

/// Checks an RFC 3339 UTC stamp to the second: `2026-01-01T00:00:00Z`.
fn assert_rfc3339(s: &str) {
    let b = s.as_bytes();
    assert_eq!(b.len(), 20, "{s}");
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{s}"),
            10 => assert_eq!(*c, b'T', "{s}"),
            13 | 16 => assert_eq!(*c, b':', "{s}"),
            19 => assert_eq!(*c, b'Z', "{s}"),
            _ => assert!(c.is_ascii_digit(), "{s}"),
        }
    }
}

/// The rate-limit headers of `api`'s answer `a`, checked for names,
/// formats and consistency with the limits; returns remaining (requests,
/// tokens).
fn check_headers(api: Api, a: &Answer, rpm: u64, tpm: u64) -> Option<(u64, u64)> {
    let rl: Vec<&String> = a
        .headers
        .keys()
        .filter(|k| k.contains("ratelimit"))
        .collect();
    match api {
        Api::Gemini => {
            assert!(rl.is_empty(), "Gemini sends no rate-limit headers: {rl:?}");
            None
        }
        Api::Chat | Api::Responses => {
            assert_eq!(rl.len(), 6, "{rl:?}");
            assert_eq!(a.num("x-ratelimit-limit-requests"), rpm);
            assert_eq!(a.num("x-ratelimit-limit-tokens"), tpm);
            let (req, tok) = (
                a.num("x-ratelimit-remaining-requests"),
                a.num("x-ratelimit-remaining-tokens"),
            );
            assert!(req <= rpm && tok <= tpm);
            for name in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
                assert!(go_duration(a.header(name)) <= Duration::from_secs(60));
            }
            Some((req, tok))
        }
        Api::Messages => {
            assert_eq!(rl.len(), 12, "{rl:?}");
            for dim in ["requests", "tokens", "input-tokens", "output-tokens"] {
                let p = format!("anthropic-ratelimit-{dim}");
                let limit = a.num(&format!("{p}-limit"));
                assert_eq!(limit, if dim == "requests" { rpm } else { tpm });
                assert!(a.num(&format!("{p}-remaining")) <= limit);
                assert_rfc3339(a.header(&format!("{p}-reset")));
            }
            Some((
                a.num("anthropic-ratelimit-requests-remaining"),
                a.num("anthropic-ratelimit-tokens-remaining"),
            ))
        }
    }
}

#[tokio::test]
async fn every_answer_carries_its_apis_headers_and_usage_matches_the_charge() {
    // A minute's burst: 600 requests, 60,000 tokens; refill 10 requests
    // and 1,000 tokens a second.
    let (rpm, tpm) = (600, 60_000);
    let server = start(
        RateLimits::per_minute(rpm, tpm).burst(Duration::from_secs(60)),
        GenerateSpec::tokens(64).fill_max_tokens(),
    )
    .await;
    let mut reported = 0;
    for api in ALL {
        let mut last: Option<(u64, u64)> = None;
        for round in 0..3u64 {
            let before = std::time::Instant::now();
            let a = send(
                &server,
                api,
                "k",
                &api.body("one two three four five six seven", 5 + round),
            )
            .await;
            assert_eq!(a.status, 200, "{api:?}: {}", a.body);
            let (input, output) = a.usage(api);
            assert_eq!(output, 5 + round, "{api:?}: the answer fills max tokens");
            // 33 characters of text: 9 tokens by the chars/4 estimate.
            assert_eq!(input, 9, "{api:?}: input usage is the estimate charged");
            reported += input + output;
            let Some((req, tok)) = check_headers(api, &a, rpm, tpm) else {
                continue;
            };
            let charged = input + output;
            match last {
                // The first answer of each provider: full buckets less
                // this request, read at the instant it was charged.
                None if api != Api::Responses => {
                    assert_eq!((req, tok), (rpm - 1, tpm - charged), "{api:?}");
                }
                None => {}
                Some((prev_req, prev_tok)) => {
                    // One request and its tokens less, give or take the
                    // refill (10 requests and 1,000 tokens a second).
                    let slack = before.elapsed().as_secs() + 1;
                    assert!(
                        req < prev_req + 10 * slack,
                        "{api:?}: {req} after {prev_req}"
                    );
                    assert!(
                        tok + charged <= prev_tok + 1000 * slack,
                        "{api:?}: {tok} after {prev_tok}"
                    );
                }
            }
            last = Some((req, tok));
        }
    }
    let stats = server.stats();
    assert_eq!(stats.served, 12);
    assert_eq!(stats.rate_limited, 0);
    assert_eq!(stats.tokens_charged, reported, "charged = reported usage");
    assert_eq!(stats.tokens_refunded, 0, "nothing unused to give back");
}

#[tokio::test]
async fn an_empty_bucket_answers_429_and_its_retry_after_is_enough() {
    // One request per 2 s, held one at a time.
    let limits = RateLimits::per_minute(30, 1_000_000).burst(Duration::from_secs(2));
    let server = start(limits, GenerateSpec::tokens(3)).await;
    // Chat and Responses share OpenAI's buckets per key: one key per API
    // keeps the four runs apart.
    let runs = ALL.map(|api| {
        let server = &server;
        async move {
            let key = format!("{api:?}");
            let body = api.body("hi", 16);
            let first = send(server, api, &key, &body).await;
            assert_eq!(first.status, 200, "{api:?}");
            let refused = send(server, api, &key, &body).await;
            assert_eq!(refused.status, 429, "{api:?}: {}", refused.body);
            let wait = refused.retry_after();
            assert!(
                (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&wait),
                "{api:?}: retry-after {wait:?}"
            );
            if check_headers(api, &refused, 30, 1_000_000).is_some() {
                let name = if api == Api::Messages {
                    "anthropic-ratelimit-requests-remaining"
                } else {
                    "x-ratelimit-remaining-requests"
                };
                assert_eq!(refused.num(name), 0, "{api:?}");
            }
            let err = refused.json();
            match api {
                Api::Chat | Api::Responses => {
                    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
                    assert_eq!(err["error"]["type"], "requests");
                    let msg = err["error"]["message"].as_str().unwrap();
                    assert!(msg.contains("requests per min (RPM): Limit 30"), "{msg}");
                }
                Api::Messages => {
                    assert_eq!(err["type"], "error");
                    assert_eq!(err["error"]["type"], "rate_limit_error");
                }
                Api::Gemini => {
                    assert_eq!(err["error"]["code"], 429);
                    assert_eq!(err["error"]["status"], "RESOURCE_EXHAUSTED");
                    assert_eq!(
                        err["error"]["details"][0]["retryDelay"],
                        format!("{}s", wait.as_secs())
                    );
                }
            }
            tokio::time::sleep(wait).await;
            let again = send(server, api, &key, &body).await;
            assert_eq!(
                again.status, 200,
                "{api:?}: after retry-after: {}",
                again.body
            );
        }
    });
    futures::future::join_all(runs).await;
    let stats = server.stats();
    assert_eq!((stats.served, stats.rate_limited), (8, 4));
}

#[tokio::test]
async fn buckets_refill_over_time() {
    // Three requests held, one more every second.
    let limits = RateLimits::per_minute(60, 1_000_000).burst(Duration::from_secs(3));
    let server = start(limits, GenerateSpec::tokens(2)).await;
    let body = Api::Chat.body("hi", 8);
    let answers =
        futures::future::join_all((0..6).map(|_| send(&server, Api::Chat, "k", &body))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let refused = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(ok + refused, 6);
    assert!(ok >= 3, "a full bucket holds three");
    assert!(
        refused >= 1,
        "six at once do not fit in three (+1 a second)"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send(&server, Api::Chat, "k", &body).await.status, 200);
    // Another key has its own full bucket.
    assert_eq!(send(&server, Api::Chat, "k2", &body).await.status, 200);
}

#[tokio::test]
async fn tokens_run_out_and_only_anthropic_gives_unused_output_back() {
    // 600 tokens held, refilled at 10 a second; requests are plentiful.
    let limits = RateLimits::per_minute(10_000, 600).burst(Duration::from_secs(60));
    // The model says 10 tokens whatever the request's max.
    let server = start(limits, GenerateSpec::tokens(10)).await;
    for api in [Api::Chat, Api::Messages] {
        let body = api.body("hi", 400);
        let first = send(&server, api, "k", &body).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.usage(api).1, 10);
        let second = send(&server, api, "k", &body).await;
        match api {
            Api::Messages => {
                // 390 of 400 output tokens came back when the answer ended.
                assert_eq!(second.status, 200, "{}", second.body);
            }
            _ => {
                assert_eq!(second.status, 429, "{}", second.body);
                assert_eq!(second.json()["error"]["type"], "tokens");
                // ~200 tokens short at 10 a second.
                assert!(second.retry_after() >= Duration::from_secs(10));
            }
        }
    }
    let stats = server.stats();
    assert_eq!(stats.tokens_refunded, 2 * 390);
    // 1 input token ("hi") + 400 output, three times admitted.
    assert_eq!(stats.tokens_charged, 3 * 401);
}

#[tokio::test]
async fn every_nth_request_is_overloaded_uncharged() {
    let limits = RateLimits::per_minute(600, 60_000)
        .burst(Duration::from_secs(60))
        .overload_every(3);
    let server = start(limits, GenerateSpec::tokens(2)).await;
    let mut statuses = Vec::new();
    for api in [
        Api::Messages,
        Api::Messages,
        Api::Messages,
        Api::Chat,
        Api::Chat,
        Api::Chat,
    ] {
        let a = send(&server, api, "k", &api.body("hi", 2)).await;
        if a.status != 200 {
            let err = a.json();
            if api == Api::Messages {
                assert_eq!(err["error"]["type"], "overloaded_error");
            } else {
                assert_eq!(err["error"]["type"], "server_error");
            }
            check_headers(api, &a, 600, 60_000);
        }
        statuses.push(a.status);
    }
    assert_eq!(statuses, [200, 200, 529, 200, 200, 503]);
    let stats = server.stats();
    assert_eq!((stats.served, stats.overloaded), (4, 2));
    assert_eq!(stats.tokens_charged, 4 * 3, "1 input + 2 output each");
}

#[tokio::test]
async fn the_counters_see_concurrent_streams() {
    let limits = RateLimits::per_minute(6_000, 600_000);
    let pace =
        Pace::trickle(Duration::from_millis(2)).first_event_delay(Duration::from_millis(300));
    let server = start(limits, GenerateSpec::tokens(5).pace(pace)).await;
    let body = Api::Messages.body("hi", 5);
    let answers =
        futures::future::join_all((0..5).map(|_| send(&server, Api::Messages, "k", &body))).await;
    assert!(answers.iter().all(|a| a.status == 200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stats: MockStats = loop {
        let s = server.stats();
        if s.active_streams == 0 || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(stats.active_streams, 0, "every stream ended");
    assert!(stats.peak_streams >= 2, "{stats:?}");
    assert!(stats.peak_streams <= 5, "{stats:?}");
    assert_eq!(stats.served, 5);
}

#[tokio::test]
async fn a_refused_request_leaves_the_script_alone() {
    use demandflow_stages::mock::ErrorSpec;
    let limits = RateLimits::per_minute(30, 1_000_000).burst(Duration::from_secs(2));
    let server = start(limits, GenerateSpec::tokens(2)).await;
    let body = Api::Chat.body("hi", 2);
    server.script([Behaviour::Error(ErrorSpec::openai(
        500,
        "server_error",
        None,
        "boom",
    ))]);
    let first = send(&server, Api::Chat, "k", &body).await;
    assert_eq!(first.status, 500);
    check_headers(Api::Chat, &first, 30, 1_000_000).expect("scripted errors carry them too");
    server.script([Behaviour::Error(ErrorSpec::status(418))]);
    let refused = send(&server, Api::Chat, "k", &body).await;
    assert_eq!(refused.status, 429);
    tokio::time::sleep(refused.retry_after()).await;
    assert_eq!(
        send(&server, Api::Chat, "k", &body).await.status,
        418,
        "the script's entry waited"
    );
}

#[tokio::test]
async fn a_load_run_can_keep_only_the_first_records() {
    let server = MockServer::start(MockConfig::default().max_records(2))
        .await
        .unwrap();
    for _ in 0..3 {
        let a = send(&server, Api::Chat, "k", &Api::Chat.body("hi", 2)).await;
        assert_eq!(a.status, 200);
        assert!(
            a.headers.keys().all(|k| !k.contains("ratelimit")),
            "no limits, no headers"
        );
    }
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.total_requests(), 3);
    assert_eq!(server.stats().served, 3);
}

/// The benchmark's mock at full load: 6,000 requests/min, 600,000
/// tokens/min, 200 ms to the first token, 20 tokens 2 ms apart, 3,000
/// requests from a client that keeps 400 in flight and waits out each
/// 429's `retry-after-ms`. Prints what it saw; asserts nothing about
/// speed. `cargo test -p demandflow-stages --test mock_rate_limit --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a load smoke run, about 30 s"]
async fn smoke_the_benchmark_load() {
    use futures::StreamExt;
    let pace =
        Pace::trickle(Duration::from_millis(2)).first_event_delay(Duration::from_millis(200));
    let server = start(
        RateLimits::per_minute(6_000, 600_000).retry_after_ms(true),
        GenerateSpec::tokens(20).fill_max_tokens().pace(pace),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}{}", server.url(), Api::Messages.path());
    let started = std::time::Instant::now();
    let body = Api::Messages
        .body("classify this row please", 20)
        .to_string();
    let done = futures::stream::iter(0..3000)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                loop {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    if resp.status() == 429 {
                        let ms: u64 = resp.headers()["retry-after-ms"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        continue;
                    }
                    assert_eq!(resp.status(), 200);
                    let _ = resp.bytes().await.unwrap();
                    return;
                }
            }
        })
        .buffer_unordered(400)
        .count()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let stats = server.stats();
    println!(
        "{done} requests in {secs:.1} s = {:.0} requests/min (limit 6000); {stats:?}",
        done as f64 / secs * 60.0
    );
    assert_eq!(done, 3000);
    assert_eq!(stats.served, 3000);
}
