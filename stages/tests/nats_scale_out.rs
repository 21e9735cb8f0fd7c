//! Two worker processes share one durable consumer; one is killed with
//! SIGKILL mid-stream and the survivor finishes: every message is processed
//! at least once, and the duplicates are bounded by what the killed worker
//! had in flight.
//!
//! The workers are this test binary run again with `--ignored --exact
//! scale_out_worker_process`, so no separate binary has to be located. Its
//! name leaves it out of the `nats_` filter that runs the NATS tests.
#![cfg(feature = "nats")]

mod nats_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use demandflow::{BoxError, Consumer, Context, Pipeline, Subscribe};
use demandflow_stages::nats::async_nats::jetstream::consumer::{pull, AckPolicy};
use demandflow_stages::nats::{Acked, JetStreamMessage, JetStreamSource};
use nats_support::*;

const MESSAGES: u64 = 1500;
/// Each worker's in-flight bound: its consumer's `max_demand`.
const MAX_DEMAND: usize = 10;
const DURABLE: &str = "workers";
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Appends the id of each message to a file before the batch is acked, so
/// the file is the record of what was processed, even if the process dies.
#[derive(Clone)]
struct Record {
    path: String,
    delay: Duration,
}

impl Consumer<JetStreamMessage> for Record {
    async fn consume(
        &mut self,
        events: &[JetStreamMessage],
        _cx: &Context,
    ) -> Result<(), BoxError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        for m in events {
            tokio::time::sleep(self.delay).await;
            let id = std::str::from_utf8(&m.payload)?;
            // One write per line: a kill leaves whole lines behind.
            file.write_all(format!("{id} {}\n", m.delivery.delivered).as_bytes())?;
        }
        Ok(())
    }
}

/// The worker: not a test, only run when spawned by the test below.
#[test]
#[ignore = "not a test: the worker process that nats_killed_worker_loses_nothing spawns"]
fn scale_out_worker_process() {
    let var = |k: &str| std::env::var(k).ok();
    let (Some(url), Some(stream), Some(out)) = (
        var("NATS_WORKER_URL"),
        var("NATS_WORKER_STREAM"),
        var("NATS_WORKER_OUT"),
    ) else {
        // Run by hand or by a bare `--ignored`: there is nothing to check.
        eprintln!("scale_out_worker_process: not spawned by nats_killed_worker_loses_nothing, nothing to do");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = demandflow_stages::nats::async_nats::connect(&url)
            .await
            .unwrap();
        let mut p = Pipeline::new().timeout(Duration::from_secs(120));
        let src = p.producer(
            "nats",
            JetStreamSource::new(client, &stream, DURABLE).expires(Duration::from_millis(500)),
        );
        let record = Record {
            path: out,
            delay: Duration::from_millis(1),
        };
        p.consumer("record", Acked::new(record))
            .subscribe(&src, Subscribe::max_demand(MAX_DEMAND));
        // Runs until killed (or the safety timeout).
        let _ = p.spawn().unwrap().join().await;
    });
}

fn spawn_worker(url: &str, stream: &str, out: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "scale_out_worker_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NATS_WORKER_URL", url)
        .env("NATS_WORKER_STREAM", stream)
        .env("NATS_WORKER_OUT", out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

/// The `(id, delivery count)` lines a worker wrote.
fn read_records(path: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (id, delivered) = l.trim().split_once(' ')?;
            Some((id.parse().ok()?, delivered.parse().ok()?))
        })
        .collect()
}

fn read_ids(path: &str) -> Vec<u64> {
    read_records(path).into_iter().map(|(id, _)| id).collect()
}

/// Kills the workers if the test fails half-way.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a NATS JetStream server: set DEMANDFLOW_NATS_URL, run with --ignored (docs/testing.md)"]
async fn nats_killed_worker_loses_nothing() {
    let url = nats_url();
    let (_client, js) = connect(&url).await;
    let name = unique("SCALE");
    create_stream(&js, &name).await;
    // The durable is created here, before either worker, so both share this
    // configuration: a short ack_wait makes the killed worker's messages
    // come back quickly, and max_ack_pending is both workers' bound.
    js.get_stream(&name)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some(DURABLE.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: (2 * MAX_DEMAND) as i64,
            ..Default::default()
        })
        .await
        .unwrap();
    publish_ids(&js, &name, MESSAGES).await;

    let dir = std::env::temp_dir().join(unique("demandflow_nats_workers"));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.txt").to_string_lossy().into_owned();
    let b = dir.join("b.txt").to_string_lossy().into_owned();
    let mut workers = Workers(vec![
        spawn_worker(&url, &name, &a),
        spawn_worker(&url, &name, &b),
    ]);

    // Both work; kill A mid-stream.
    let mid = eventually(Duration::from_secs(30), || async {
        read_ids(&a).len() >= 200 && !read_ids(&b).is_empty()
    })
    .await;
    assert!(mid, "the workers did not both start processing");
    workers.0[0].kill().expect("SIGKILL worker A");
    workers.0[0].wait().unwrap();
    let a_ids = read_ids(&a);
    assert!(
        (a_ids.len() as u64) < MESSAGES,
        "worker A finished before it was killed: the test proves nothing"
    );

    // The survivor finishes everything, A's unacked messages included.
    let finished = eventually(Duration::from_secs(60), || async {
        let i = consumer_info(&js, &name, DURABLE).await;
        i.num_pending == 0 && i.num_ack_pending == 0
    })
    .await;
    let info = consumer_info(&js, &name, DURABLE).await;
    drop(workers);
    assert!(finished, "the survivor did not finish: {info:?}");

    let b_records = read_records(&b);
    let b_ids: Vec<u64> = b_records.iter().map(|r| r.0).collect();
    // A was killed holding unacked messages; JetStream gave them to B.
    let redelivered_to_b = b_records.iter().filter(|r| r.1 > 1).count();
    let mut counts = BTreeMap::<u64, u32>::new();
    for &id in a_ids.iter().chain(&b_ids) {
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=MESSAGES)
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} messages: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(counts.keys().all(|&id| (1..=MESSAGES).contains(&id)));
    let duplicates = (a_ids.len() + b_ids.len()) as u64 - MESSAGES;
    eprintln!(
        "nats_killed_worker_loses_nothing: A processed {}, B processed {}, duplicates {duplicates}, \
         redelivered to B {redelivered_to_b}",
        a_ids.len(),
        b_ids.len(),
    );
    assert!(
        redelivered_to_b >= 1,
        "nothing of the killed worker was redelivered: it held nothing in flight?"
    );
    // Only what A recorded but had not acked when killed can come twice,
    // and A never held more than its demand.
    assert!(
        duplicates <= MAX_DEMAND as u64,
        "{duplicates} duplicates exceed the killed worker's in-flight bound {MAX_DEMAND}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    delete_stream(&js, &name).await;
}
