//! The JetStream sink: publishes with a bounded number of acks outstanding.

use std::fmt;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream::context::Publish as JsPublish;
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use demandflow::{BoxError, Consumer, Context};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use super::NatsError;

/// One message for [`JetStreamSink`] to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The subject; a stream must capture it or the publish fails.
    pub subject: String,
    /// The payload.
    pub payload: Bytes,
    /// Headers, if any.
    pub headers: Option<HeaderMap>,
    /// Sent as `Nats-Msg-Id`: the stream drops a second message with the
    /// same id within its duplicate window, so a batch published again after
    /// a failure does not duplicate what already landed.
    pub message_id: Option<String>,
}

impl Publish {
    /// A message with no headers and no id.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Publish {
        Publish {
            subject: subject.into(),
            payload: payload.into(),
            headers: None,
            message_id: None,
        }
    }

    /// Sets the deduplication id.
    pub fn with_id(mut self, id: impl Into<String>) -> Publish {
        self.message_id = Some(id.into());
        self
    }
}

/// Counters of a [`JetStreamSink`], shared by its instances.
#[derive(Debug, Default)]
pub struct SinkStats {
    published: AtomicU64,
    acked: AtomicU64,
    largest_outstanding: AtomicU64,
}

impl SinkStats {
    /// Messages handed to the connection.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Publishes the stream acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    /// The most publishes ever awaiting their ack at once.
    pub fn largest_outstanding(&self) -> u64 {
        self.largest_outstanding.load(Ordering::Relaxed)
    }
}

type ToPublish<T> = Arc<dyn Fn(&T) -> Publish + Send + Sync>;

/// A demandflow [`Consumer`] that publishes each event to JetStream.
///
/// At most [`JetStreamSink::max_outstanding`] publishes await their ack
/// from the stream at any time; the next publish waits for one to return.
/// `consume` returns only when every publish of the batch is acknowledged,
/// so the engine asks upstream for more only as acks come back, and an
/// event counts as handled only once the stream has stored it. A publish
/// that fails or times out fails the batch (`Err`): the engine retries it,
/// and [`Publish::message_id`] keeps the retry from duplicating what
/// already landed.
///
/// Wrapped in [`Acked`](super::Acked), a sink of [`JetStreamMessage`]s
/// acks each source message only after its copy is stored: a bridge
/// between streams that loses nothing.
///
/// [`JetStreamMessage`]: super::JetStreamMessage
///
/// # Example
///
/// ```no_run
/// use demandflow::{source, Pipeline, Subscribe};
/// use demandflow_stages::nats::{JetStreamSink, Publish};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("127.0.0.1:4222").await?;
/// let mut p = Pipeline::new();
/// let n = p.producer("numbers", source::iter(0..1000u32));
/// let sink = JetStreamSink::new(client, |i: &u32| {
///     Publish::new("orders.new", i.to_string()).with_id(i.to_string())
/// })
/// .max_outstanding(128);
/// p.consumer("publish", sink).subscribe(&n, Subscribe::max_demand(256));
/// p.spawn()?.join().await?;
/// # Ok(()) }
/// ```
pub struct JetStreamSink<T> {
    js: async_nats::jetstream::Context,
    to_publish: ToPublish<T>,
    max_outstanding: usize,
    stats: Arc<SinkStats>,
}

impl<T> Clone for JetStreamSink<T> {
    fn clone(&self) -> Self {
        JetStreamSink {
            js: self.js.clone(),
            to_publish: self.to_publish.clone(),
            max_outstanding: self.max_outstanding,
            stats: self.stats.clone(),
        }
    }
}

impl<T> fmt::Debug for JetStreamSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("max_outstanding", &self.max_outstanding)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<T> JetStreamSink<T> {
    /// Publishes each event as `to_publish` describes it; at most 256
    /// outstanding acks by default.
    pub fn new(
        client: Client,
        to_publish: impl Fn(&T) -> Publish + Send + Sync + 'static,
    ) -> JetStreamSink<T> {
        JetStreamSink {
            js: async_nats::jetstream::new(client),
            to_publish: Arc::new(to_publish),
            max_outstanding: 256,
            stats: Arc::new(SinkStats::default()),
        }
    }

    /// The most publishes awaiting their ack at once (zero is taken as one).
    pub fn max_outstanding(mut self, n: usize) -> Self {
        self.max_outstanding = n.max(1);
        self
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }
}

impl<T: Send + Sync + 'static> Consumer<T> for JetStreamSink<T> {
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        let mut outstanding = FuturesUnordered::new();
        for event in events {
            while outstanding.len() >= self.max_outstanding {
                if let Some(r) = outstanding.next().await {
                    self.settled(r)?;
                }
            }
            let p = (self.to_publish)(event);
            let mut msg = JsPublish::build().payload(p.payload);
            if let Some(h) = p.headers {
                msg = msg.headers(h);
            }
            if let Some(id) = &p.message_id {
                msg = msg.message_id(id);
            }
            let subject = p.subject;
            let ack = self
                .js
                .send_publish(subject.clone(), msg)
                .await
                .map_err(|e| NatsError::Publish {
                    subject: subject.clone(),
                    source: Box::new(e),
                })?;
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            outstanding.push(async move { (subject, ack.into_future().await) });
            self.stats
                .largest_outstanding
                .fetch_max(outstanding.len() as u64, Ordering::Relaxed);
        }
        while let Some(r) = outstanding.next().await {
            self.settled(r)?;
        }
        Ok(())
    }
}

impl<T> JetStreamSink<T> {
    fn settled<A, E>(&self, (subject, r): (String, Result<A, E>)) -> Result<(), NatsError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match r {
            Ok(_) => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(NatsError::Publish {
                subject,
                source: Box::new(e),
            }),
        }
    }
}
