//! JetStream source against a real nats-server: demand-sized fetches,
//! engine redelivery of a panicked batch without acks, and termination of
//! dead letters.
#![cfg(feature = "nats")]

mod nats_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demandflow::supervisor::Backoff;
use demandflow::{BoxError, Consumer, Context, Pipeline, Subscribe};
use demandflow_stages::nats::async_nats::jetstream;
use demandflow_stages::nats::{
    term_dead_letters, AckState, Acked, JetStreamMessage, JetStreamSource,
};
use nats_support::*;
use tokio::sync::Semaphore;

fn id_of(m: &JetStreamMessage) -> u64 {
    std::str::from_utf8(&m.payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("payload is an id")
}

/// Holds each batch until the test hands out a permit, and records ids.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    seen: Arc<Mutex<Vec<u64>>>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl Consumer<JetStreamMessage> for Gated {
    async fn consume(
        &mut self,
        events: &[JetStreamMessage],
        _cx: &Context,
    ) -> Result<(), BoxError> {
        self.gate.acquire().await?.forget();
        self.batches.lock().unwrap().push(events.len());
        self.seen.lock().unwrap().extend(events.iter().map(id_of));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a NATS JetStream server: set DEMANDFLOW_NATS_URL, run with --ignored (docs/testing.md)"]
async fn nats_demand_equals_fetch_size() {
    let url = nats_url();
    let (client, js) = connect(&url).await;
    let name = unique("DEMAND");
    create_stream(&js, &name).await;
    publish_ids(&js, &name, 100).await;

    const MAX_DEMAND: usize = 8;
    let source = JetStreamSource::new(client, &name, "d").max_ack_pending(1000);
    let stats = source.stats();
    let gated = Gated {
        gate: Arc::new(Semaphore::new(0)),
        seen: Arc::default(),
        batches: Arc::default(),
    };
    let mut p = Pipeline::new();
    let src = p.producer("nats", source);
    p.consumer("work", Acked::new(gated.clone())).subscribe(
        &src,
        Subscribe::max_demand(MAX_DEMAND).min_demand(MAX_DEMAND / 2),
    );
    let handle = p.spawn().unwrap();

    // The consumer holds its first batch: exactly the demand is delivered
    // and unacknowledged at the server, and nothing more is asked for.
    let filled = eventually(Duration::from_secs(10), || async {
        consumer_info(&js, &name, "d").await.num_ack_pending == MAX_DEMAND
    })
    .await;
    assert!(
        filled,
        "the first fetch never delivered {MAX_DEMAND} messages"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = consumer_info(&js, &name, "d").await;
    assert_eq!(
        info.num_ack_pending, MAX_DEMAND,
        "more in flight than demanded"
    );
    assert_eq!(info.num_pending, 100 - MAX_DEMAND as u64);
    assert_eq!(
        stats.fetches(),
        1,
        "one pull request for the initial demand"
    );
    assert_eq!(stats.requested(), MAX_DEMAND as u64, "fetch size = demand");

    // Let it run: every fetch stays within the demand, every message is acked.
    gated.gate.add_permits(1_000);
    let done = eventually(Duration::from_secs(20), || async {
        gated.seen.lock().unwrap().len() >= 100
    })
    .await;
    assert!(done, "not every message was handled");
    let drained = eventually(Duration::from_secs(10), || async {
        let i = consumer_info(&js, &name, "d").await;
        i.num_ack_pending == 0 && i.num_pending == 0
    })
    .await;
    assert!(drained, "handled messages were not all acked");
    handle.cancel();
    let _ = handle.join().await;

    assert!(stats.largest_demand() <= MAX_DEMAND as u64);
    assert!(
        stats.largest_fetch() <= stats.largest_demand(),
        "a fetch larger than the demand: {} > {}",
        stats.largest_fetch(),
        stats.largest_demand()
    );
    let seen: BTreeSet<u64> = gated.seen.lock().unwrap().iter().copied().collect();
    assert_eq!(seen, (1..=100).collect::<BTreeSet<u64>>());
    assert_eq!(
        gated.seen.lock().unwrap().len(),
        100,
        "no duplicates without failures"
    );
    assert!(gated
        .batches
        .lock()
        .unwrap()
        .iter()
        .all(|&b| b <= MAX_DEMAND));
    delete_stream(&js, &name).await;
}

/// What the panicking consumer observed, attempt by attempt.
#[derive(Default)]
struct PanicLog {
    /// (restarts, stream sequences of the batch, deliveries of each, ack
    /// pending at the server when the batch came in)
    attempts: Vec<(u32, Vec<u64>, Vec<u64>, usize)>,
    handled: BTreeSet<u64>,
    panicked: bool,
}

#[derive(Clone)]
struct PanicsOnce {
    js: jetstream::Context,
    stream: String,
    log: Arc<Mutex<PanicLog>>,
}

impl Consumer<JetStreamMessage> for PanicsOnce {
    async fn consume(&mut self, events: &[JetStreamMessage], cx: &Context) -> Result<(), BoxError> {
        let pending = consumer_info(&self.js, &self.stream, "p")
            .await
            .num_ack_pending;
        let seqs = events.iter().map(|m| m.delivery.stream_sequence).collect();
        let delivered = events.iter().map(|m| m.delivery.delivered).collect();
        let first_failure = {
            let mut log = self.log.lock().unwrap();
            log.attempts.push((cx.restarts(), seqs, delivered, pending));
            !log.panicked && events.len() >= 2
        };
        for (i, m) in events.iter().enumerate() {
            if first_failure && i == events.len() / 2 {
                self.log.lock().unwrap().panicked = true;
                panic!("injected panic mid-batch");
            }
            assert_ne!(
                m.ack_handle().state(),
                AckState::Acked,
                "handed an acked message"
            );
            self.log.lock().unwrap().handled.insert(id_of(m));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a NATS JetStream server: set DEMANDFLOW_NATS_URL, run with --ignored (docs/testing.md)"]
async fn nats_consumer_panicking_mid_batch_gets_the_batch_again() {
    let url = nats_url();
    let (client, js) = connect(&url).await;
    let name = unique("PANIC");
    create_stream(&js, &name).await;
    publish_ids(&js, &name, 40).await;

    let log = Arc::new(Mutex::new(PanicLog::default()));
    let consumer = PanicsOnce {
        js: js.clone(),
        stream: name.clone(),
        log: log.clone(),
    };
    let mut p = Pipeline::new().backoff(Backoff::none()).max_attempts(3);
    let source = JetStreamSource::new(client, &name, "p").max_ack_pending(100);
    let stats = source.stats();
    let src = p.producer("nats", source);
    // The nak asks JetStream to redeliver after NAK_DELAY; the engine's retry
    // acks long before, and that ack must cancel the redelivery.
    const NAK_DELAY: Duration = Duration::from_millis(700);
    p.consumer(
        "work",
        Acked::new(consumer).nak_backoff(NAK_DELAY, NAK_DELAY),
    )
    .subscribe(&src, Subscribe::max_demand(10));
    let handle = p.spawn().unwrap();

    let done = eventually(Duration::from_secs(20), || async {
        log.lock().unwrap().handled.len() >= 40
    })
    .await;
    assert!(done, "not every message was handled");
    let acked = eventually(Duration::from_secs(10), || async {
        let i = consumer_info(&js, &name, "p").await;
        i.num_ack_pending == 0 && i.num_pending == 0
    })
    .await;
    let info = consumer_info(&js, &name, "p").await;
    assert!(acked, "messages left unacked: {info:?}");
    // Past the nak delay: nothing comes back.
    tokio::time::sleep(NAK_DELAY * 2).await;
    handle.cancel();
    let _ = handle.join().await;
    assert_eq!(
        stats.received(),
        40,
        "JetStream redelivered: the retry's ack did not cancel the nak"
    );

    delete_stream(&js, &name).await;
    let log = log.lock().unwrap();
    assert!(log.panicked, "the consumer never panicked");
    let failed = log
        .attempts
        .iter()
        .position(|a| a.0 == 0 && a.1.len() >= 2)
        .expect("the first instance's batch");
    let (_, batch, _, _) = &log.attempts[failed];
    let (restarts, again, delivered, pending) = &log.attempts[failed + 1];
    assert_eq!(*restarts, 1, "the batch went to the restarted instance");
    assert_eq!(again, batch, "the restarted consumer got the same batch");
    assert!(
        delivered.iter().all(|&d| d == 1),
        "the batch came from the engine, not a JetStream redelivery: {delivered:?}"
    );
    assert!(
        *pending >= batch.len(),
        "the failed batch was acked before it was handled: {pending} pending < {}",
        batch.len()
    );
    assert_eq!(log.handled, (1..=40).collect::<BTreeSet<u64>>());
}

#[derive(Clone)]
struct RejectsSeven;

impl Consumer<JetStreamMessage> for RejectsSeven {
    async fn consume(
        &mut self,
        events: &[JetStreamMessage],
        _cx: &Context,
    ) -> Result<(), BoxError> {
        if events.iter().any(|m| id_of(m) == 7) {
            return Err("id 7 is poison".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a NATS JetStream server: set DEMANDFLOW_NATS_URL, run with --ignored (docs/testing.md)"]
async fn nats_dead_letters_are_terminated_and_the_rest_acked() {
    let url = nats_url();
    let (client, js) = connect(&url).await;
    let name = unique("DEAD");
    create_stream(&js, &name).await;
    publish_ids(&js, &name, 20).await;

    let dead = Arc::new(Mutex::new(Vec::<u64>::new()));
    let dead_in = dead.clone();
    let mut p = Pipeline::new()
        .backoff(Backoff::none())
        .intensity(100, Duration::from_secs(1))
        .max_attempts(2)
        .on_dead_letter(term_dead_letters::<JetStreamMessage>(move |dl| {
            let ids = dl
                .events::<JetStreamMessage>()
                .unwrap_or_default()
                .iter()
                .map(id_of);
            dead_in.lock().unwrap().extend(ids);
        }));
    let source = JetStreamSource::new(client, &name, "dl");
    let stats = source.stats();
    let src = p.producer("nats", source);
    const NAK_DELAY: Duration = Duration::from_millis(700);
    p.consumer(
        "work",
        Acked::new(RejectsSeven).nak_backoff(NAK_DELAY, NAK_DELAY),
    )
    // One message per batch, so only the poison message is dead-lettered.
    .subscribe(&src, Subscribe::max_demand(1).min_demand(0));
    let handle = p.spawn().unwrap();

    let settled = eventually(Duration::from_secs(20), || async {
        let i = consumer_info(&js, &name, "dl").await;
        i.num_ack_pending == 0 && i.num_pending == 0
    })
    .await;
    let info = consumer_info(&js, &name, "dl").await;
    assert!(settled, "messages left unsettled: {info:?}");
    // Past the nak delay: the terminated message does not come back.
    tokio::time::sleep(NAK_DELAY * 2).await;
    handle.cancel();
    let _ = handle.join().await;
    assert_eq!(
        *dead.lock().unwrap(),
        vec![7],
        "only the poison message is dead-lettered"
    );
    assert_eq!(
        stats.received(),
        20,
        "the terminated message was redelivered"
    );
    delete_stream(&js, &name).await;
}
