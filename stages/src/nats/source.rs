//! The JetStream source: a durable pull consumer driven by demand.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Batch, Config as PullConfig};
use async_nats::jetstream::consumer::{AckPolicy, Consumer as JsConsumer};
use async_nats::Client;
use demandflow::{BoxError, Context, Emitter, Flow, Producer, DEFAULT_MAX_DEMAND};
use futures::{FutureExt, StreamExt};

use super::{JetStreamMessage, NatsError};

/// Counters of a [`JetStreamSource`], shared by every (re)started instance
/// of one template and readable while the pipeline runs.
#[derive(Debug, Default)]
pub struct SourceStats {
    fetches: AtomicU64,
    requested: AtomicU64,
    received: AtomicU64,
    largest_fetch: AtomicU64,
    largest_demand: AtomicU64,
}

impl SourceStats {
    /// Pull requests sent.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
    /// Messages asked for, summed over all pull requests.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }
    /// Messages received and emitted.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// The largest single pull request.
    pub fn largest_fetch(&self) -> u64 {
        self.largest_fetch.load(Ordering::Relaxed)
    }
    /// The largest demand the engine passed to the source.
    pub fn largest_demand(&self) -> u64 {
        self.largest_demand.load(Ordering::Relaxed)
    }
}

/// Live state of one instance; a restarted instance starts without it.
struct Live {
    consumer: JsConsumer<PullConfig>,
    /// The pull request being served, and how many of its messages have not
    /// arrived yet.
    batch: Option<(Batch, usize)>,
}

/// A demandflow [`Producer`] reading a JetStream stream through a durable
/// pull consumer.
///
/// Each pull request asks for exactly the demand pending when it is sent,
/// so the messages delivered to this process and not yet acknowledged are
/// never more than downstream asked for. While a request is being served,
/// no second one is sent: demand that grows meanwhile is asked for when it
/// completes or expires ([`JetStreamSource::expires`]).
///
/// The durable consumer is created on first use if missing (explicit acks,
/// deliver-all). Every process that names the same stream and durable
/// shares it: JetStream hands each message to one of them, and redelivers
/// what one of them does not acknowledge within `ack_wait`.
///
/// `max_ack_pending` is the server-side bound on unacknowledged messages
/// across *all* processes sharing the consumer. Set it to the pipeline's
/// own bound times the number of processes: for `source → consumer` with
/// `Subscribe::max_demand(m)` the bound is `m` per process; each processor
/// on the way adds its own subscription's `max_demand`. A smaller value
/// throttles the pipeline below its demand; a larger one only matters if a
/// process stops acknowledging. The default, [`DEFAULT_MAX_DEMAND`] × 4,
/// covers a few processes with default subscriptions.
///
/// Events are [`JetStreamMessage`]s; they must be acknowledged downstream
/// (see [`Acked`](super::Acked)).
///
/// # Example
///
/// ```no_run
/// use demandflow::{Pipeline, Subscribe};
/// use demandflow_stages::nats::{Acked, JetStreamSource};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("127.0.0.1:4222").await?;
/// let source = JetStreamSource::new(client, "ORDERS", "billing").max_ack_pending(4 * 64);
/// let mut p = Pipeline::new();
/// let orders = p.producer("orders", source);
/// let handler = demandflow::sink::for_each(|m: demandflow_stages::nats::JetStreamMessage| {
///     println!("order {}", m.delivery.stream_sequence);
/// });
/// p.consumer("bill", Acked::new(handler))
///     .subscribe(&orders, Subscribe::max_demand(64));
/// p.spawn()?.join().await?;
/// # Ok(()) }
/// ```
pub struct JetStreamSource {
    client: Client,
    stream: String,
    config: PullConfig,
    expires: Duration,
    stats: Arc<SourceStats>,
    live: Option<Live>,
}

impl fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("stream", &self.stream)
            .field("durable", &self.config.durable_name)
            .field("max_ack_pending", &self.config.max_ack_pending)
            .field("expires", &self.expires)
            .field("connected", &self.live.is_some())
            .finish()
    }
}

impl Clone for JetStreamSource {
    /// A clone shares the client and the stats but not the live consumer:
    /// the engine clones the template on each (re)start.
    fn clone(&self) -> Self {
        JetStreamSource {
            client: self.client.clone(),
            stream: self.stream.clone(),
            config: self.config.clone(),
            expires: self.expires,
            stats: self.stats.clone(),
            live: None,
        }
    }
}

impl JetStreamSource {
    /// Reads `stream` through the durable pull consumer `durable`.
    pub fn new(client: Client, stream: &str, durable: &str) -> JetStreamSource {
        JetStreamSource {
            client,
            stream: stream.to_owned(),
            config: PullConfig {
                durable_name: Some(durable.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: (DEFAULT_MAX_DEMAND * 4) as i64,
                ..Default::default()
            },
            expires: Duration::from_secs(2),
            stats: Arc::new(SourceStats::default()),
            live: None,
        }
    }

    /// Only messages whose subject matches `filter` (wildcards allowed).
    pub fn filter_subject(mut self, filter: &str) -> Self {
        self.config.filter_subject = filter.to_owned();
        self
    }

    /// The consumer's `max_ack_pending` (see the type's docs for how to
    /// choose it). Zero is taken as one.
    pub fn max_ack_pending(mut self, n: usize) -> Self {
        self.config.max_ack_pending = i64::try_from(n.max(1)).unwrap_or(i64::MAX);
        self
    }

    /// How long JetStream waits for an acknowledgement before redelivering
    /// (default 30 s). This is how long a killed process's messages stay
    /// invisible to the others.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.config.ack_wait = wait;
        self
    }

    /// After this many deliveries JetStream stops redelivering a message
    /// (default: no limit).
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.config.max_deliver = i64::from(n.max(1));
        self
    }

    /// How long the server keeps one pull request open waiting for
    /// messages (default 2 s). Shorter means demand that grows while a
    /// request is partly served is asked for sooner, at the cost of more
    /// requests on an idle stream.
    pub fn expires(mut self, expires: Duration) -> Self {
        self.expires = expires.max(Duration::from_millis(10));
        self
    }

    /// The consumer configuration this source creates when the durable is
    /// missing.
    pub fn config(&self) -> &PullConfig {
        &self.config
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    fn durable(&self) -> String {
        self.config.durable_name.clone().unwrap_or_default()
    }

    async fn connect(&self) -> Result<Live, NatsError> {
        let js = async_nats::jetstream::new(self.client.clone());
        let consumer_err = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Consumer {
            stream: self.stream.clone(),
            durable: self.durable(),
            source: e,
        };
        let stream = js
            .get_stream(&self.stream)
            .await
            .map_err(|e| consumer_err(Box::new(e)))?;
        let consumer = stream
            .get_or_create_consumer(&self.durable(), self.config.clone())
            .await
            .map_err(|e| consumer_err(Box::new(e)))?;
        Ok(Live {
            consumer,
            batch: None,
        })
    }
}

impl Producer<JetStreamMessage> for JetStreamSource {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<JetStreamMessage>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        self.stats
            .largest_demand
            .fetch_max(demand as u64, Ordering::Relaxed);
        // Returning nothing would leave this producer uncalled until new
        // demand arrives, so there is no "not connected yet" return.
        let live = match self.live.take() {
            Some(live) => live,
            None => self.connect().await?,
        };
        let live = self.live.insert(live);
        let durable = || self.config.durable_name.clone().unwrap_or_default();
        loop {
            let (batch, outstanding) = match &mut live.batch {
                Some(b) => b,
                None => {
                    // Everything previously requested has arrived or expired,
                    // so the whole pending demand is ours to ask for.
                    let batch = live
                        .consumer
                        .batch()
                        .max_messages(demand)
                        .expires(self.expires)
                        .messages()
                        .await
                        .map_err(|e| NatsError::Fetch {
                            durable: durable(),
                            source: Box::new(e),
                        })?;
                    self.stats.fetches.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .requested
                        .fetch_add(demand as u64, Ordering::Relaxed);
                    self.stats
                        .largest_fetch
                        .fetch_max(demand as u64, Ordering::Relaxed);
                    live.batch.insert((batch, demand))
                }
            };
            // Wait for the first message, then take whatever else is already
            // here without waiting: what we emit is delivered only when this
            // call returns, so returning early keeps latency low.
            let mut got = 0usize;
            let mut ended = false;
            let mut next = batch.next().await;
            loop {
                match next {
                    Some(Ok(m)) => {
                        out.emit(JetStreamMessage::from_jetstream(&self.client, m));
                        got += 1;
                        *outstanding = outstanding.saturating_sub(1);
                    }
                    Some(Err(e)) => {
                        live.batch = None;
                        self.stats.received.fetch_add(got as u64, Ordering::Relaxed);
                        if got > 0 {
                            // Deliver what arrived; the next call asks again.
                            tracing::warn!(durable = %durable(), error = %e, "pull request ended with an error");
                            return Ok(Flow::Continue);
                        }
                        return Err(NatsError::Fetch {
                            durable: durable(),
                            source: e,
                        }
                        .into());
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
                if *outstanding == 0 || got >= demand {
                    break;
                }
                match batch.next().now_or_never() {
                    Some(n) => next = n,
                    None => break,
                }
            }
            if ended || *outstanding == 0 {
                live.batch = None;
            }
            self.stats.received.fetch_add(got as u64, Ordering::Relaxed);
            if got > 0 {
                return Ok(Flow::Continue);
            }
            // The request expired empty: ask again with the same demand.
        }
    }
}
