//! NATS JetStream stages: split a pipeline across processes and machines.
//!
//! * [`JetStreamSource`] — a [`Producer`](demandflow::Producer) reading a
//!   stream through a durable pull consumer. Each pull request asks for
//!   exactly the demand pending, so a process never holds more unacknowledged
//!   messages than its pipeline asked for. Several processes naming the same
//!   durable share the work.
//! * [`JetStreamMessage`] — its event: subject, payload, headers, delivery
//!   metadata and an [`Ack`] handle (ack, nak with delay, term, in-progress).
//! * [`Acked`] — wraps the consumer that handles the messages: acks a batch
//!   when the inner consumer returns `Ok`, naks it with backoff when it fails
//!   (the engine retries it), and with [`term_dead_letters`] as the
//!   pipeline's dead-letter handler, terminates what was dead-lettered.
//! * [`JetStreamSink`] — a [`Consumer`](demandflow::Consumer) publishing with
//!   a bounded number of publish acks outstanding; it returns, and so asks
//!   upstream for more, only as acks come back.
//!
//! Delivery is at least once across processes: a message is acked only after
//! the consuming stage returned `Ok` for its batch; a stage that fails or
//! panics gets the batch again from the engine; a process that dies leaves
//! its messages unacknowledged and JetStream redelivers them to the others
//! (after the nak delay, or `ack_wait`). `docs/scale-out.md` states the
//! guarantees exactly.
//!
//! Enabled by the crate feature `nats`.
//!
//! # Example: one worker process
//!
//! ```no_run
//! use demandflow::{Pipeline, Subscribe};
//! use demandflow_stages::nats::{term_dead_letters, Acked, JetStreamMessage, JetStreamSource};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! let mut p = Pipeline::new()
//!     .max_attempts(3)
//!     .on_dead_letter(term_dead_letters::<JetStreamMessage>(|dl| {
//!         eprintln!("terminated {} messages: {}", dl.len, dl.error)
//!     }));
//! let jobs = p.producer("jobs", JetStreamSource::new(client, "JOBS", "workers"));
//! let work = demandflow::sink::for_each(|m: JetStreamMessage| {
//!     println!("job {}", m.delivery.stream_sequence);
//! });
//! p.consumer("work", Acked::new(work))
//!     .concurrency(4)
//!     .subscribe(&jobs, Subscribe::max_demand(32));
//! p.spawn()?.join().await?;
//! # Ok(()) }
//! ```

mod acked;
mod error;
mod message;
mod sink;
mod source;

pub use acked::{term_dead_letters, Acked};
pub use error::NatsError;
pub use message::{Ack, AckState, Acknowledged, Delivery, JetStreamMessage};
pub use sink::{JetStreamSink, Publish, SinkStats};
pub use source::{JetStreamSource, SourceStats};

/// The `async-nats` crate these stages are built on, so that callers use
/// the same version for `connect` and the JetStream context.
pub use async_nats;
