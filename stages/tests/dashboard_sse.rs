//! The dashboard's HTTP side, without a browser: the event stream, the
//! one-shot snapshot, the page's embedded first snapshot, a closed client
//! costing nothing, and the end of the server with the pipeline.

mod dashboard_support;

use std::time::Duration;

use demandflow_stages::dashboard::Dashboard;
use demandflow_stages::sse::{SseDecoder, SseEvent};
use futures::StreamExt;
use serde_json::Value;

use dashboard_support::{serve_slow_pipeline, STAGES};

/// Generous: the machine running the tests may be loaded.
const PATIENCE: Duration = Duration::from_secs(20);

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An open `/events` response and the events decoded from it so far.
struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<SseEvent>,
}

impl Events {
    async fn open(d: &Dashboard) -> (reqwest::header::HeaderMap, Events) {
        let r = client()
            .get(format!("{}events", d.url()))
            .send()
            .await
            .expect("GET /events");
        assert!(r.status().is_success(), "status {}", r.status());
        let headers = r.headers().clone();
        let events = Events {
            body: r.bytes_stream().boxed(),
            decoder: SseDecoder::new(),
            ready: Default::default(),
        };
        (headers, events)
    }

    /// The next snapshot, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                assert_eq!(e.event, "snapshot");
                return Some(serde_json::from_str(&e.data).expect("the data is JSON"));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("an event within the patience")?
                .expect("the body reads");
            let mut out = Vec::new();
            self.decoder.feed(&chunk, &mut out).expect("valid SSE");
            self.ready.extend(out);
        }
    }
}

fn stage_names(snapshot: &Value) -> Vec<String> {
    snapshot["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["name"].as_str().expect("a name").to_owned())
        .collect()
}

fn counter(snapshot: &Value, stage: &str, field: &str) -> u64 {
    snapshot["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .and_then(|s| s[field].as_u64())
        .unwrap_or_else(|| panic!("{stage}.{field} in {snapshot}"))
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + PATIENCE;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_snapshots_of_every_stage_and_edge() {
    let (run, dashboard) = serve_slow_pipeline().await;
    let (headers, mut events) = Events::open(&dashboard).await;
    let content_type = headers[reqwest::header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );

    let first = events.next().await.expect("a first snapshot");
    let second = events.next().await.expect("a second snapshot");
    let third = events.next().await.expect("a third snapshot");
    for s in [&first, &second, &third] {
        assert_eq!(stage_names(s), STAGES);
        assert_eq!(s["status"], "running");
        assert_eq!(s["title"], "dashboard test");
        assert_eq!(s["edges"].as_array().unwrap().len(), 4, "{s}");
    }
    // Columns left to right by depth; instances one under the other.
    let cells: Vec<(u64, u64)> = first["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["depth"].as_u64().unwrap(), s["row"].as_u64().unwrap()))
        .collect();
    assert_eq!(cells, [(0, 0), (1, 0), (1, 1), (2, 0)]);
    assert_eq!(first["stages"][1]["group"], "double");
    // Time passes and work is done between snapshots; every snapshot has
    // rates (the first one's over the 250 ms before it was sent).
    assert!(second["t_ms"].as_u64() > first["t_ms"].as_u64());
    assert!(counter(&third, "slow_sink", "processed") > counter(&first, "slow_sink", "processed"));
    for s in [&first, &second, &third] {
        for stage in s["stages"].as_array().unwrap() {
            assert!(stage["throughput"].as_f64().is_some(), "{s}");
        }
    }

    drop(events);
    run.cancel();
    let _ = run.join().await;
    dashboard.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_leaves_no_stream_behind() {
    let (run, dashboard) = serve_slow_pipeline().await;
    assert_eq!(dashboard.live_streams(), 0);
    let (_, mut a) = Events::open(&dashboard).await;
    let (_, mut b) = Events::open(&dashboard).await;
    a.next().await.expect("a snapshot");
    b.next().await.expect("a snapshot");
    assert_eq!(dashboard.live_streams(), 2);

    // The tab closes: its stream (and the work it did per tick) goes.
    drop(a);
    wait_for("the closed client's stream to end", || {
        dashboard.live_streams() == 1
    })
    .await;
    // The other one keeps going.
    b.next().await.expect("still streaming");
    drop(b);
    wait_for("every stream to end", || dashboard.live_streams() == 0).await;

    run.cancel();
    let _ = run.join().await;
    dashboard.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_the_snapshot_carry_the_pipeline() {
    let (run, dashboard) = serve_slow_pipeline().await;
    let page = client().get(dashboard.url()).send().await.unwrap();
    assert!(page.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = page.text().await.unwrap();
    // The first snapshot is in the page, so it draws on load.
    assert!(!page.contains("/*SNAPSHOT*/"), "the slot was filled");
    assert!(page.contains(r#""name":"slow_sink""#));
    // Self-contained: nothing is loaded from elsewhere.
    for external in [
        "src=\"http",
        "href=\"http",
        "https://",
        "url(http",
        "@import",
    ] {
        assert!(
            !page.contains(external),
            "the page loads nothing from elsewhere: {external}"
        );
    }

    let snap = client()
        .get(format!("{}snapshot.json", dashboard.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        snap.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    let snap: Value = serde_json::from_slice(&snap.bytes().await.unwrap()).unwrap();
    assert_eq!(stage_names(&snap), STAGES);
    assert!(snap["stages"][0]["throughput"].as_f64().is_some(), "{snap}");

    run.cancel();
    let _ = run.join().await;
    dashboard.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_ends_with_the_pipeline_after_a_final_snapshot() {
    let (run, mut dashboard) = serve_slow_pipeline().await;
    let (_, mut events) = Events::open(&dashboard).await;
    events.next().await.expect("a snapshot");
    run.cancel();
    let report = run.join().await;
    assert!(report.is_err(), "cancelled");
    // Snapshots until the final one says stopped; then the stream ends
    // (bounded: a stream that went on would fail here, not hang).
    let mut last = None;
    let until = tokio::time::Instant::now() + PATIENCE;
    while let Some(s) = events.next().await {
        assert!(
            tokio::time::Instant::now() < until,
            "the stream outlived the pipeline: {s}"
        );
        last = Some(s);
    }
    let last = last.expect("a final snapshot");
    assert_eq!(last["status"], "stopped", "{last}");
    assert_eq!(last["live_stages"], 0);
    assert_eq!(last["cancel_cause"], "cancelled by the user");
    tokio::time::timeout(PATIENCE, dashboard.closed())
        .await
        .expect("the server closes by itself")
        .unwrap();
    assert_eq!(dashboard.live_streams(), 0);
    assert!(
        client().get(dashboard.url()).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let (run, dashboard) = serve_slow_pipeline().await;
    let (_, mut events) = Events::open(&dashboard).await;
    events.next().await.expect("a snapshot");
    tokio::time::timeout(PATIENCE, dashboard.shutdown())
        .await
        .expect("shutdown returns although a client is connected")
        .unwrap();
    // The stream ends (no final snapshot needed: the pipeline runs on).
    let until = tokio::time::Instant::now() + PATIENCE;
    while events.next().await.is_some() {
        assert!(
            tokio::time::Instant::now() < until,
            "the stream outlived the shutdown"
        );
    }
    assert!(run.stats().stage("slow_sink").is_some());
    run.cancel();
    let _ = run.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_appears_in_the_next_snapshots() {
    use demandflow::{sink, source, LastCancel, Pipeline, Subscribe};
    let mut p = Pipeline::new();
    let numbers = p
        .add_producer("numbers", source::iter(0u64..))
        .late_subscribers(LastCancel::Wait)
        .build();
    p.consumer("first", sink::drain())
        .subscribe(&numbers, Subscribe::max_demand(8));
    let run = p.spawn().unwrap();
    let dashboard = Dashboard::serve(run.watch(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_, mut events) = Events::open(&dashboard).await;
    let before = events.next().await.unwrap();
    assert_eq!(stage_names(&before), ["numbers", "first"]);

    let sub = run
        .consumer("late", sink::drain())
        .subscribe(&numbers, Subscribe::max_demand(8))
        .unwrap();
    let after = loop {
        let s = events.next().await.expect("still streaming");
        if stage_names(&s).len() == 3 {
            break s;
        }
    };
    assert_eq!(stage_names(&after), ["numbers", "first", "late"]);
    // Drawn in the consumers' column, below the stage that was there first.
    let late = &after["stages"][2];
    assert_eq!(
        (late["depth"].as_u64(), late["row"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(after["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["from"] == "numbers" && e["to"] == "late"));

    sub.cancel();
    run.cancel();
    let _ = run.join().await;
    dashboard.shutdown().await.unwrap();
}
