//! The one event enum every provider stream is normalised into.
//!
//! CONTRACT shared by the SSE/parser work and the HTTP/mock work: change it
//! only in agreement.

use serde::Serialize;

/// Which streaming API a transcript or endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Api {
    /// OpenAI Responses (`POST /v1/responses`, `stream: true`).
    #[serde(rename = "openai-responses")]
    OpenAiResponses,
    /// OpenAI Chat Completions (`POST /v1/chat/completions`, `stream: true`).
    #[serde(rename = "openai-chat")]
    OpenAiChat,
    /// Anthropic Messages (`POST /v1/messages`, `stream: true`).
    #[serde(rename = "anthropic-messages")]
    AnthropicMessages,
}

/// Token counts reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

/// How a provider stream ended. Exactly one per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// The model finished normally.
    Completed,
    /// The output was cut by a limit (max tokens, content filter).
    Incomplete,
    /// The provider reported an error (in-stream error event, failed response, HTTP error).
    Failed,
    /// The body ended before any terminal event: never success.
    Truncated,
    /// The consumer or the pipeline cancelled the stream.
    Cancelled,
    /// The pipeline's deadline or a read timeout ended the stream.
    DeadlineExceeded,
}

/// One normalised streaming event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderEvent {
    /// The response started.
    Start {
        /// The provider's response or message id, if sent.
        id: Option<String>,
        /// The model that answers, if sent.
        model: Option<String>,
    },
    /// A piece of the answer's text.
    TextDelta {
        /// The text to append.
        text: String,
    },
    /// A piece of a tool call: its identity on the first delta, argument JSON
    /// fragments after.
    ToolCallDelta {
        /// The tool call's index in the response.
        index: usize,
        /// The call id, when this delta carries it.
        id: Option<String>,
        /// The tool's name, when this delta carries it.
        name: Option<String>,
        /// A fragment of the arguments' JSON text.
        arguments: String,
    },
    /// Token usage (cumulative: the latest replaces earlier ones).
    Usage(Usage),
    /// The terminal event: how the stream ended and the provider's reason.
    Done {
        /// The outcome.
        status: Status,
        /// The provider's stop or finish reason, verbatim, if any.
        stop_reason: Option<String>,
    },
    /// An error reported by the provider or met while reading.
    Error {
        /// A short machine-readable kind (`overloaded_error`, `timeout`, ...).
        kind: String,
        /// The human-readable message.
        message: String,
    },
}
