//! G-D6 and G-C2 over real loopback TCP: with no demand the producer reads
//! nothing and the server's writes block; dropping or cancelling closes the
//! connection, and the server sees it.

use std::time::Duration;

use demandflow::{CancelCause, Context, Emitter, Flow, Producer};
use demandflow_stages::mock::{Behaviour, Fault, GenerateSpec, MockConfig, MockServer};
use demandflow_stages::provider::{
    Api, ProviderConfig, ProviderEvent, ProviderProducer, ProviderStream, Status,
};
use futures::StreamExt;

/// Generous bound for "the server saw the close", for a loaded CI machine.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

fn config(api: Api, server: &MockServer) -> ProviderConfig {
    ProviderConfig::new(api, &server.url())
        .unwrap()
        .max_tokens(u32::MAX)
        .prompt("go")
}

/// About 44 MB of Anthropic SSE (each text delta event is ~110 bytes): far
/// more than any socket buffers, so a stall cannot be mistaken for the end.
const HUGE_TOKENS: u64 = 400_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_demand_stops_reading_and_the_servers_writes_block() {
    // Server send buffer, client receive window and hyper's read buffer.
    zero_demand_holds_the_server(Some(64 * 1024), 2 * 1024 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_demand_holds_the_server_with_default_socket_buffers() {
    // Kernel autotuning may grow both socket buffers to several MB.
    zero_demand_holds_the_server(None, HUGE_TOKENS * 110 / 2).await;
}

async fn zero_demand_holds_the_server(send_buffer: Option<u32>, bound: u64) {
    let mut mock = MockConfig::default()
        .default_behaviour(Behaviour::Generate(GenerateSpec::tokens(HUGE_TOKENS)));
    if let Some(b) = send_buffer {
        mock = mock.send_buffer_size(b);
    }
    let server = MockServer::start(mock).await.unwrap();
    let mut producer = ProviderProducer::new(config(Api::AnthropicMessages, &server)).unwrap();
    let cx = Context::detached("llm");
    let mut out = Emitter::new();
    assert_eq!(
        producer.produce(10, &mut out, &cx).await.unwrap(),
        Flow::Continue
    );
    assert_eq!(out.len(), 10);

    // Demand is now zero: nobody calls `produce`. The server must stall.
    let accepted = server
        .wait_writes_quiet(0, Duration::from_millis(300), Duration::from_secs(20))
        .await
        .expect("the server's writes stop while demand is zero");
    let total_bytes = HUGE_TOKENS * 110;
    eprintln!(
        "SO_SNDBUF {send_buffer:?}: bytes accepted by the socket with zero demand: \
         {accepted} of ~{total_bytes}"
    );
    assert!(
        accepted < bound,
        "{accepted} bytes accepted; the client kept reading without demand"
    );
    let conn = &server.connections()[0];
    assert!(
        conn.closed_at.is_none(),
        "the connection is held open, not dropped"
    );
    assert!(conn.body_bytes_sent < total_bytes / 2);

    // Demand again: the server resumes writing.
    let mut got = 0;
    while got < 20_000 {
        let mut out = Emitter::new();
        producer.produce(1000, &mut out, &cx).await.unwrap();
        got += out.len();
    }
    let later = server.connections()[0].bytes_written;
    assert!(later > accepted, "writes resumed once demand returned");

    // Dropping the producer closes the connection.
    drop(producer);
    assert!(
        server
            .wait_connection_closed(0, CLOSE_BOUND)
            .await
            .is_some(),
        "server saw the close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_closes_the_connection() {
    let server = MockServer::start(
        MockConfig::default()
            .default_behaviour(Behaviour::Generate(GenerateSpec::tokens(HUGE_TOKENS))),
    )
    .await
    .unwrap();
    let mut stream = ProviderStream::new(config(Api::OpenAiChat, &server)).unwrap();
    for _ in 0..5 {
        assert!(stream.next().await.is_some());
    }
    assert!(server.connections()[0].closed_at.is_none());
    drop(stream);
    let closed = server.wait_connection_closed(0, CLOSE_BOUND).await;
    assert!(closed.is_some(), "server saw the connection close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_producer_ends_it_and_closes_the_connection() {
    // The server stalls after a few events: the producer is waiting on the
    // socket when the cancel arrives.
    let server = MockServer::start(MockConfig::default().default_behaviour(Behaviour::Generate(
        GenerateSpec::tokens(100).fault(Fault::Stall { after: 4 }),
    )))
    .await
    .unwrap();
    let mut producer = ProviderProducer::new(config(Api::OpenAiResponses, &server)).unwrap();
    let cx = Context::detached("llm");
    let mut events = Vec::new();
    let mut out = Emitter::new();
    producer.produce(100, &mut out, &cx).await.unwrap();
    events.extend(out.take());
    let canceller = {
        let scope = cx.scope().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            scope.cancel(CancelCause::User);
        })
    };
    let started = tokio::time::Instant::now();
    let flow = loop {
        let flow = producer.produce(100, &mut out, &cx).await.unwrap();
        events.extend(out.take());
        if flow == Flow::Done {
            break flow;
        }
    };
    canceller.await.unwrap();
    assert_eq!(flow, Flow::Done);
    assert!(started.elapsed() < CLOSE_BOUND);
    assert_eq!(
        events.last(),
        Some(&ProviderEvent::Done {
            status: Status::Cancelled,
            stop_reason: None
        })
    );
    assert!(
        server
            .wait_connection_closed(0, CLOSE_BOUND)
            .await
            .is_some(),
        "the body was dropped on cancel"
    );
    drop(producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_produce_future_mid_read_drops_nothing_and_drop_closes() {
    // The engine drops `produce` futures on cancel; the producer must stay
    // usable and dropping it must still close the connection.
    let server = MockServer::start(MockConfig::default().default_behaviour(Behaviour::Generate(
        GenerateSpec::tokens(100).fault(Fault::Stall { after: 3 }),
    )))
    .await
    .unwrap();
    let mut producer = ProviderProducer::new(config(Api::AnthropicMessages, &server)).unwrap();
    let cx = Context::detached("llm");
    let mut out = Emitter::new();
    producer.produce(100, &mut out, &cx).await.unwrap();
    let first = out.take();
    assert!(!first.is_empty());
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        producer.produce(100, &mut out, &cx),
    )
    .await;
    assert!(timed_out.is_err(), "the server stalls, so produce waits");
    drop(producer);
    assert!(server
        .wait_connection_closed(0, CLOSE_BOUND)
        .await
        .is_some());
}
