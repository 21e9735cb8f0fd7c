//! Throughput through JetStream: source → processor → sink with demandflow,
//! against the plain async-nats client doing the same work by hand.
//!
//! Both variants read a backlog of `--messages` from a stream through a
//! durable pull consumer, transform each payload, publish the result to a
//! second stream waiting for its publish ack, and ack the source message
//! only after its result is stored (at least once, nothing lost).
//!
//! ```text
//! DEMANDFLOW_NATS_URL=nats://127.0.0.1:4222 \
//!     cargo run --release -p demandflow-stages --features nats --example nats_throughput -- \
//!     [--messages N] [--batch B] [--rounds R]
//! ```
//!
//! `--batch` is demandflow's `max_demand` and the hand-written loop's fetch
//! size; both keep at most that many publishes awaiting acks.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use bytes::Bytes;
use demandflow::{stage, Pipeline, Subscribe};
use demandflow_stages::nats::{
    async_nats, Ack, Acked, Acknowledged, JetStreamMessage, JetStreamSink, JetStreamSource, Publish,
};
use futures::StreamExt;

/// The processor's output: the transformed payload and the source's ack.
struct Transformed {
    subject: String,
    payload: Bytes,
    ack: Ack,
}

impl Acknowledged for Transformed {
    fn ack_handle(&self) -> &Ack {
        &self.ack
    }
}

/// The per-message work: checksum the payload and append it.
fn transform(payload: &[u8]) -> Bytes {
    let sum = payload
        .iter()
        .fold(0u32, |h, &b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut out = Vec::with_capacity(payload.len() + 9);
    out.extend_from_slice(payload);
    out.extend_from_slice(format!(":{sum:08x}").as_bytes());
    Bytes::from(out)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn setup(js: &jetstream::Context, tag: &str, n: usize) -> (String, String) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    let input = format!("BENCH_IN_{tag}_{stamp}");
    let output = format!("BENCH_OUT_{tag}_{stamp}");
    for name in [&input, &output] {
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
    let payload = Bytes::from(vec![b'x'; 64]);
    let mut acks = Vec::with_capacity(1024);
    for _ in 0..n {
        acks.push(
            js.publish(format!("{input}.in"), payload.clone())
                .await
                .expect("publish"),
        );
        if acks.len() == 1024 {
            for a in acks.drain(..) {
                a.await.expect("publish ack");
            }
        }
    }
    for a in acks {
        a.await.expect("publish ack");
    }
    (input, output)
}

async fn stored(js: &jetstream::Context, stream: &str) -> u64 {
    let mut s = js.get_stream(stream).await.expect("stream");
    s.info().await.expect("info").state.messages
}

async fn wait_stored(js: &jetstream::Context, stream: &str, n: usize) {
    while stored(js, stream).await < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run_demandflow(client: &async_nats::Client, n: usize, batch: usize) -> Duration {
    let js = jetstream::new(client.clone());
    let (input, output) = setup(&js, "DF", n).await;
    let start = Instant::now();
    let mut p = Pipeline::new();
    let src = p.producer(
        "source",
        JetStreamSource::new(client.clone(), &input, "bench").max_ack_pending(4 * batch),
    );
    let subject = format!("{output}.out");
    let work = p
        .processor(
            "transform",
            stage::map_ref(move |m: &JetStreamMessage| Transformed {
                subject: subject.clone(),
                payload: transform(&m.payload),
                ack: m.ack_handle().clone(),
            }),
        )
        .subscribe(&src, Subscribe::max_demand(batch));
    let sink = JetStreamSink::new(client.clone(), |t: &Transformed| Publish {
        subject: t.subject.clone(),
        payload: t.payload.clone(),
        headers: None,
        message_id: None,
    })
    .max_outstanding(batch);
    p.consumer("sink", Acked::new(sink))
        .subscribe(&work, Subscribe::max_demand(batch));
    let handle = p.spawn().expect("spawn");
    wait_stored(&js, &output, n).await;
    let took = start.elapsed();
    handle.cancel();
    let _ = handle.join().await;
    let _ = js.delete_stream(&input).await;
    let _ = js.delete_stream(&output).await;
    took
}

async fn run_by_hand(client: &async_nats::Client, n: usize, batch: usize) -> Duration {
    let js = jetstream::new(client.clone());
    let (input, output) = setup(&js, "HAND", n).await;
    let start = Instant::now();
    let consumer = js
        .get_stream(&input)
        .await
        .expect("stream")
        .get_or_create_consumer(
            "bench",
            pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: (4 * batch) as i64,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let subject = format!("{output}.out");
    let mut done = 0;
    while done < n {
        let mut msgs = consumer
            .batch()
            .max_messages(batch)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch");
        let mut got = Vec::with_capacity(batch);
        while let Some(m) = msgs.next().await {
            got.push(m.expect("message"));
            if got.len() == batch || done + got.len() == n {
                break;
            }
        }
        let mut pending = Vec::with_capacity(got.len());
        for m in &got {
            pending.push(
                js.publish(subject.clone(), transform(&m.payload))
                    .await
                    .expect("publish"),
            );
        }
        for a in pending {
            a.await.expect("publish ack");
        }
        for m in &got {
            m.ack().await.expect("ack");
        }
        client.flush().await.expect("flush");
        done += got.len();
    }
    wait_stored(&js, &output, n).await;
    let took = start.elapsed();
    let _ = js.delete_stream(&input).await;
    let _ = js.delete_stream(&output).await;
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = arg(&args, "--messages", 20_000);
    let batch = arg(&args, "--batch", 256).max(1);
    let rounds = arg(&args, "--rounds", 3).max(1);
    let Ok(url) = std::env::var("DEMANDFLOW_NATS_URL") else {
        eprintln!("set DEMANDFLOW_NATS_URL (e.g. nats://127.0.0.1:4222) to a JetStream server");
        std::process::exit(2);
    };
    let client = async_nats::connect(&url).await.expect("connect");
    println!("messages={n} batch={batch} rounds={rounds} (64-byte payloads, file storage)");
    for round in 1..=rounds {
        let df = run_demandflow(&client, n, batch).await;
        let hand = run_by_hand(&client, n, batch).await;
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "round {round}: demandflow {:>9.0} msg/s ({:?})   async-nats by hand {:>9.0} msg/s ({:?})   ratio {:.2}",
            rate(df),
            df,
            rate(hand),
            hand,
            rate(df) / rate(hand)
        );
    }
}
