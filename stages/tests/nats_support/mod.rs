//! Shared set-up of the NATS tests: the server's URL from the environment,
//! unique stream names, stream creation and consumer inspection.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use demandflow_stages::nats::async_nats;
use demandflow_stages::nats::async_nats::jetstream;

/// The server's URL from `DEMANDFLOW_NATS_URL`. The NATS tests are
/// `#[ignore]`d, so they run only when asked for (`--ignored`): a missing
/// URL then fails the test rather than letting it pass without a server.
pub fn nats_url() -> String {
    match std::env::var("DEMANDFLOW_NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DEMANDFLOW_NATS_URL is unset: start `nats-server -js -a 127.0.0.1 -p 4222` and run \
             `DEMANDFLOW_NATS_URL=nats://127.0.0.1:4222 cargo test -p demandflow-stages --features nats \
             -- --ignored nats_` (docs/testing.md)"
        ),
    }
}

/// A stream name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

pub async fn connect(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(url)
        .await
        .expect("connect to nats-server");
    let js = jetstream::new(client.clone());
    (client, js)
}

/// Creates stream `name` capturing `name.>` (file storage, so it behaves as
/// in production).
pub async fn create_stream(js: &jetstream::Context, name: &str) {
    js.create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Publishes ids `1..=n` as payloads on `name.in`, waiting for every ack.
pub async fn publish_ids(js: &jetstream::Context, name: &str, n: u64) {
    let mut acks = Vec::new();
    for id in 1..=n {
        acks.push(
            js.publish(format!("{name}.in"), id.to_string().into())
                .await
                .expect("publish"),
        );
        if acks.len() >= 256 {
            for a in acks.drain(..) {
                a.await.expect("publish ack");
            }
        }
    }
    for a in acks {
        a.await.expect("publish ack");
    }
}

/// The durable consumer's state as the server reports it, waiting up to
/// 10 s for the source to create it.
pub async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> jetstream::consumer::Info {
    let s = js.get_stream(stream).await.expect("get stream");
    let mut tries = 0;
    loop {
        match s.consumer_info(durable).await {
            Ok(info) => return info,
            Err(e) if tries < 500 => {
                let _ = e;
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("consumer info: {e}"),
        }
    }
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn delete_stream(js: &jetstream::Context, name: &str) {
    let _ = js.delete_stream(name).await;
}
