//! The event a [`JetStreamSource`](super::JetStreamSource) emits and the
//! acknowledgement handle it carries.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::{Client, HeaderMap, Subject};
use bytes::Bytes;

use super::NatsError;

/// Where an acknowledgement handle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckState {
    /// Delivered, not yet settled.
    Pending,
    /// Negatively acknowledged at least once; not settled: a later ack (the
    /// engine's retry succeeded) or term still applies.
    Nacked,
    /// Acknowledged: JetStream will not deliver it again.
    Acked,
    /// Terminated: JetStream will not deliver it again, and it was not
    /// handled (dead-lettered).
    Terminated,
}

const PENDING: u8 = 0;
const NACKED: u8 = 1;
const ACKED: u8 = 2;
const TERMINATED: u8 = 3;

struct AckInner {
    client: Client,
    reply: Option<Subject>,
    state: AtomicU8,
    failures: AtomicU32,
}

/// The acknowledgement handle of one JetStream delivery.
///
/// Cheap to clone: clones share one state, so a processor that turns a
/// [`JetStreamMessage`] into its own event type keeps a clone
/// ([`JetStreamMessage::ack_handle`]) in that event, and whichever stage
/// handles it last acknowledges it.
///
/// Settling is idempotent: once acked or terminated, further calls send
/// nothing. A nak does not settle: the engine may hand the same batch to a
/// restarted stage, which then acks it.
///
/// A handle dropped without being settled sends nothing; JetStream
/// redelivers the message after the consumer's `ack_wait`.
#[derive(Clone)]
pub struct Ack(Arc<AckInner>);

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("reply", &self.0.reply)
            .field("state", &self.state())
            .field("failures", &self.failures())
            .finish()
    }
}

impl Ack {
    pub(crate) fn new(client: Client, reply: Option<Subject>) -> Ack {
        Ack(Arc::new(AckInner {
            client,
            reply,
            state: AtomicU8::new(PENDING),
            failures: AtomicU32::new(0),
        }))
    }

    /// Where the handle stands.
    pub fn state(&self) -> AckState {
        match self.0.state.load(Ordering::Acquire) {
            PENDING => AckState::Pending,
            NACKED => AckState::Nacked,
            ACKED => AckState::Acked,
            _ => AckState::Terminated,
        }
    }

    /// Whether it was acked or terminated.
    pub fn is_settled(&self) -> bool {
        self.0.state.load(Ordering::Acquire) >= ACKED
    }

    /// How many times a handler failed on this delivery in this process
    /// (counted by [`Acked`](super::Acked); drives its nak backoff).
    pub fn failures(&self) -> u32 {
        self.0.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn record_failure(&self) -> u32 {
        self.0.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Moves to a final state; `false` if already there.
    fn settle(&self, to: u8) -> bool {
        let mut cur = self.0.state.load(Ordering::Acquire);
        loop {
            if cur >= ACKED {
                return false;
            }
            match self
                .0
                .state
                .compare_exchange(cur, to, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    async fn send(&self, kind: AckKind, label: &'static str) -> Result<(), NatsError> {
        let reply = self.0.reply.clone().ok_or(NatsError::NoReply)?;
        self.0
            .client
            .publish(reply, Bytes::from(kind))
            .await
            .map_err(|e| NatsError::Ack {
                kind: label,
                source: Box::new(e),
            })
    }

    /// Acknowledges: the message was handled. Returns `Ok(false)` without
    /// sending when already settled.
    ///
    /// The ack is queued on the client's connection; call
    /// [`Ack::flush`] (or use [`Ack::ack_confirmed`]) to know it left.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the handle is marked settled before the message is
    /// handed to the client, so a future dropped in between may leave it
    /// settled with nothing sent (later calls return `Ok(false)`). Nothing
    /// is lost: JetStream redelivers an unacknowledged message after
    /// `ack_wait`, at worst as a duplicate.
    pub async fn ack(&self) -> Result<bool, NatsError> {
        if !self.settle(ACKED) {
            return Ok(false);
        }
        self.send(AckKind::Ack, "+ACK").await.map(|_| true)
    }

    /// Acknowledges and waits for the server to confirm it (a round trip per
    /// message): after `Ok(true)` the message will not be redelivered.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Ack::ack`]: dropped before the confirmation,
    /// the handle stays settled and the ack may or may not have reached the
    /// server; if it did not, JetStream redelivers after `ack_wait`.
    pub async fn ack_confirmed(&self) -> Result<bool, NatsError> {
        if !self.settle(ACKED) {
            return Ok(false);
        }
        let reply = self.0.reply.clone().ok_or(NatsError::NoReply)?;
        self.0
            .client
            .request(reply, Bytes::from(AckKind::Ack))
            .await
            .map(|_| true)
            .map_err(|e| NatsError::Ack {
                kind: "+ACK",
                source: Box::new(e),
            })
    }

    /// Negatively acknowledges: JetStream redelivers the message after
    /// `delay` (at once when `None`) unless it is acked first. Sends nothing
    /// when already settled.
    ///
    /// # Cancel safety
    ///
    /// Dropping it before the `-NAK` is sent leaves the handle marked
    /// nacked but not settled: a later `ack`, `term` or `nak` still works,
    /// and without one JetStream redelivers after `ack_wait` anyway.
    pub async fn nak(&self, delay: Option<Duration>) -> Result<bool, NatsError> {
        if self
            .0
            .state
            .compare_exchange(PENDING, NACKED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            && self.is_settled()
        {
            return Ok(false);
        }
        self.send(AckKind::Nak(delay), "-NAK").await.map(|_| true)
    }

    /// Terminates: JetStream never delivers the message again. Used for
    /// dead letters. Sends nothing when already settled.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Ack::ack`]: dropped before the `+TERM` is
    /// sent, the handle stays settled and JetStream redelivers the message
    /// after `ack_wait`.
    pub async fn term(&self) -> Result<bool, NatsError> {
        if !self.settle(TERMINATED) {
            return Ok(false);
        }
        self.send(AckKind::Term, "+TERM").await.map(|_| true)
    }

    /// Tells JetStream that work is still going on, restarting the ack-wait
    /// timer (for handlers slower than `ack_wait`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it changes no state; a dropped call just may not have
    /// reset the timer.
    pub async fn in_progress(&self) -> Result<(), NatsError> {
        if self.is_settled() {
            return Ok(());
        }
        self.send(AckKind::Progress, "+WPI").await
    }

    /// Flushes the client's connection: acknowledgements queued before the
    /// call have been written to the socket when it returns.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it only stops waiting; queued acks are still
    /// written by the client.
    pub async fn flush(&self) -> Result<(), NatsError> {
        self.0.client.flush().await.map_err(|e| NatsError::Ack {
            kind: "flush",
            source: Box::new(e),
        })
    }
}

/// An event that carries a JetStream acknowledgement handle.
///
/// Implemented by [`JetStreamMessage`]; implement it for your own event type
/// (keeping the handle from [`JetStreamMessage::ack_handle`]) so that
/// [`Acked`](super::Acked) and [`term_dead_letters`](super::term_dead_letters)
/// work after a processor has transformed the messages.
///
/// ```
/// use demandflow_stages::nats::{Ack, Acknowledged};
///
/// struct Order {
///     id: u64,
///     ack: Ack,
/// }
///
/// impl Acknowledged for Order {
///     fn ack_handle(&self) -> &Ack {
///         &self.ack
///     }
/// }
/// ```
pub trait Acknowledged {
    /// The delivery's acknowledgement handle.
    fn ack_handle(&self) -> &Ack;
}

/// Delivery metadata JetStream attaches to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The message's sequence number in the stream: stable across
    /// redeliveries, so it identifies the message.
    pub stream_sequence: u64,
    /// The delivery's sequence number in the consumer.
    pub consumer_sequence: u64,
    /// How many times JetStream has delivered it, this time included
    /// (1 on first delivery).
    pub delivered: u64,
    /// Messages still pending for the consumer when this one was sent.
    pub pending: u64,
}

/// One message delivered by a [`JetStreamSource`](super::JetStreamSource).
///
/// It carries its acknowledgement: wrap the consuming stage in
/// [`Acked`](super::Acked), or call [`JetStreamMessage::ack`] yourself once
/// it is handled.
#[derive(Debug, Clone)]
pub struct JetStreamMessage {
    /// The subject it was published on.
    pub subject: Subject,
    /// Its payload.
    pub payload: Bytes,
    /// Its headers, if it had any.
    pub headers: Option<HeaderMap>,
    /// Delivery metadata.
    pub delivery: Delivery,
    ack: Ack,
}

impl JetStreamMessage {
    pub(crate) fn from_jetstream(client: &Client, m: async_nats::jetstream::Message) -> Self {
        let delivery = match m.info() {
            Ok(i) => Delivery {
                stream_sequence: i.stream_sequence,
                consumer_sequence: i.consumer_sequence,
                delivered: u64::try_from(i.delivered).unwrap_or(0),
                pending: i.pending,
            },
            // A JetStream delivery always has a parsable reply subject; if a
            // server sends something else we still hand the payload on.
            Err(_) => Delivery {
                stream_sequence: 0,
                consumer_sequence: 0,
                delivered: 0,
                pending: 0,
            },
        };
        let msg = m.message;
        JetStreamMessage {
            subject: msg.subject,
            payload: msg.payload,
            headers: msg.headers,
            delivery,
            ack: Ack::new(client.clone(), msg.reply),
        }
    }

    /// The acknowledgement handle (clone it to carry it along).
    pub fn ack_handle(&self) -> &Ack {
        &self.ack
    }

    /// Acknowledges the message; see [`Ack::ack`].
    ///
    /// # Cancel safety
    ///
    /// As [`Ack::ack`].
    pub async fn ack(&self) -> Result<bool, NatsError> {
        self.ack.ack().await
    }

    /// Negatively acknowledges the message; see [`Ack::nak`].
    ///
    /// # Cancel safety
    ///
    /// As [`Ack::nak`].
    pub async fn nak(&self, delay: Option<Duration>) -> Result<bool, NatsError> {
        self.ack.nak(delay).await
    }

    /// Terminates the message; see [`Ack::term`].
    ///
    /// # Cancel safety
    ///
    /// As [`Ack::term`].
    pub async fn term(&self) -> Result<bool, NatsError> {
        self.ack.term().await
    }
}

impl Acknowledged for JetStreamMessage {
    fn ack_handle(&self) -> &Ack {
        &self.ack
    }
}
