//! Errors of the NATS JetStream stages.

use std::error::Error as StdError;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong talking to JetStream.
///
/// The variants say which step failed; the source carries the client's own
/// error. Display texts are for people, not for matching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The durable consumer could not be looked up or created.
    #[error("durable consumer `{durable}` on stream `{stream}` unavailable")]
    Consumer {
        /// The stream.
        stream: String,
        /// The durable consumer's name.
        durable: String,
        /// Why.
        #[source]
        source: Source,
    },
    /// A pull request failed or the server answered it with an error status.
    #[error("fetch from durable consumer `{durable}` failed")]
    Fetch {
        /// The durable consumer's name.
        durable: String,
        /// Why.
        #[source]
        source: Source,
    },
    /// An acknowledgement (`+ACK`, `-NAK`, `+TERM`, `+WPI`) could not be sent
    /// or, when confirmed, was not confirmed.
    #[error("acknowledgement `{kind}` not sent")]
    Ack {
        /// The acknowledgement kind, as sent on the wire.
        kind: &'static str,
        /// Why.
        #[source]
        source: Source,
    },
    /// The message carries no reply subject, so it cannot be acknowledged
    /// (it did not come from a JetStream consumer).
    #[error("message has no reply subject: not a JetStream delivery")]
    NoReply,
    /// A publish was not sent, or its acknowledgement from the stream did not
    /// come back or was an error.
    #[error("publish to `{subject}` not acknowledged by the stream")]
    Publish {
        /// The subject published to.
        subject: String,
        /// Why.
        #[source]
        source: Source,
    },
}
