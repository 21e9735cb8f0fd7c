//! JetStream sink against a real nats-server: bounded publishes awaiting
//! acks, every event stored, and a bridge that acks the source message only
//! after its copy is stored.
#![cfg(feature = "nats")]

mod nats_support;

use std::time::Duration;

use demandflow::{source, Pipeline, Subscribe};
use demandflow_stages::nats::{Acked, JetStreamMessage, JetStreamSink, JetStreamSource, Publish};
use nats_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a NATS JetStream server: set DEMANDFLOW_NATS_URL, run with --ignored (docs/testing.md)"]
async fn nats_sink_bounds_publishes_awaiting_acks() {
    let url = nats_url();
    let (client, js) = connect(&url).await;
    let name = unique("SINK");
    create_stream(&js, &name).await;

    const MAX_OUTSTANDING: usize = 16;
    let subject = format!("{name}.out");
    let sink = JetStreamSink::new(client, move |i: &u32| {
        Publish::new(subject.clone(), i.to_string()).with_id(i.to_string())
    })
    .max_outstanding(MAX_OUTSTANDING);
    let stats = sink.stats();
    let mut p = Pipeline::new().timeout(Duration::from_secs(30));
    let n = p.producer("numbers", source::iter(0..500u32));
    p.consumer("publish", sink)
        .subscribe(&n, Subscribe::max_demand(100));
    let report = p.spawn().unwrap().join().await.expect("pipeline");
    assert_eq!(report.stage("publish").unwrap().processed, 500);

    assert_eq!(stats.published(), 500);
    assert_eq!(
        stats.acked(),
        500,
        "consume returned before every ack came back"
    );
    assert!(
        stats.largest_outstanding() <= MAX_OUTSTANDING as u64,
        "{} publishes awaited acks at once, bound {MAX_OUTSTANDING}",
        stats.largest_outstanding()
    );
    assert_eq!(
        stats.largest_outstanding(),
        MAX_OUTSTANDING as u64,
        "publishes were not pipelined"
    );
    let mut stream = js.get_stream(&name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 500);
    delete_stream(&js, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a NATS JetStream server: set DEMANDFLOW_NATS_URL, run with --ignored (docs/testing.md)"]
async fn nats_bridge_acks_source_after_sink_stored() {
    let url = nats_url();
    let (client, js) = connect(&url).await;
    let from = unique("BRIDGEIN");
    let to = unique("BRIDGEOUT");
    create_stream(&js, &from).await;
    create_stream(&js, &to).await;
    publish_ids(&js, &from, 300).await;

    let target = format!("{to}.copy");
    let sink = JetStreamSink::new(client.clone(), move |m: &JetStreamMessage| {
        Publish::new(target.clone(), m.payload.clone())
            .with_id(m.delivery.stream_sequence.to_string())
    })
    .max_outstanding(32);
    let mut p = Pipeline::new();
    let src = p.producer("in", JetStreamSource::new(client, &from, "bridge"));
    p.consumer("out", Acked::new(sink))
        .subscribe(&src, Subscribe::max_demand(64));
    let handle = p.spawn().unwrap();
    let copied = eventually(Duration::from_secs(20), || async {
        let i = consumer_info(&js, &from, "bridge").await;
        i.num_pending == 0 && i.num_ack_pending == 0
    })
    .await;
    handle.cancel();
    let _ = handle.join().await;
    assert!(copied, "the bridge did not ack every source message");
    let mut out = js.get_stream(&to).await.unwrap();
    assert_eq!(out.info().await.unwrap().state.messages, 300);
    delete_stream(&js, &from).await;
    delete_stream(&js, &to).await;
}
