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
    /// Google Gemini (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`).
    #[serde(rename = "gemini")]
    Gemini,
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
///
/// The same outcome means the same thing whatever the API; the provider's
/// own reason stays verbatim in [`ProviderEvent::Done::stop_reason`]. The
/// mapping (also in `docs/providers.md`):
///
/// | outcome | Anthropic Messages `stop_reason` | Chat `finish_reason` | Responses terminal event | Gemini `finishReason` |
/// |---|---|---|---|---|
/// | `Completed` | `end_turn`, `stop_sequence`, `tool_use`, unknown | `stop`, `tool_calls`, `function_call`, unknown | `response.completed` | `STOP`, unknown |
/// | `Incomplete` | `max_tokens`, `model_context_window_exceeded`, `pause_turn` | `length` | `response.incomplete` (any reason but `content_filter`) | `MAX_TOKENS` |
/// | `Refused` | `refusal` | `content_filter` | `response.incomplete` with reason `content_filter` | `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY`, …; `promptFeedback.blockReason` |
/// | `Failed` | `error` event | a chunk with `error` | `response.failed`, `error` | a chunk with `error`; `MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`, … |
///
/// Gemini has no terminal event: its stream ends with the body, after a
/// chunk carrying `finishReason` (a body that ends without one is
/// `Truncated`).
///
/// A stream that would be `Completed` but carried refusal text
/// ([`ProviderEvent::RefusalDelta`]) is `Refused`: the model declined, so the
/// answer is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// The model finished normally.
    Completed,
    /// The output was cut before the model finished: a token limit (max
    /// tokens, context window) or a paused turn to be continued.
    Incomplete,
    /// The model declined to answer or the provider's safety system stopped
    /// it (refusal, content filter).
    Refused,
    /// The provider reported an error (in-stream error event, failed response, HTTP error).
    Failed,
    /// The body ended before any terminal event: never success.
    Truncated,
    /// The consumer or the pipeline cancelled the stream.
    Cancelled,
    /// The pipeline's deadline (`cx.deadline()`, [`ProviderStream::deadline`])
    /// ended the stream: the caller's time ran out.
    ///
    /// [`ProviderStream::deadline`]: crate::provider::ProviderStream::deadline
    DeadlineExceeded,
    /// One of the request's own read timeouts ended the stream: the server
    /// was too slow (connect, first event, idle, total; see
    /// [`TimeoutKind`](crate::provider::TimeoutKind)). The
    /// [`ProviderEvent::Error`] before it names which one
    /// (`connect_timeout`, `first_event_timeout`, `idle_timeout`,
    /// `total_timeout`).
    TimedOut,
}

impl Status {
    /// The outcome's snake_case name, as serialized: `completed`,
    /// `incomplete`, `refused`, `failed`, `truncated`, `cancelled`,
    /// `deadline_exceeded` or `timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Refused => "refused",
            Status::Failed => "failed",
            Status::Truncated => "truncated",
            Status::Cancelled => "cancelled",
            Status::DeadlineExceeded => "deadline_exceeded",
            Status::TimedOut => "timed_out",
        }
    }
}

/// What kind of client tool a [`ProviderEvent::ToolCall`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolKind {
    /// A function tool with JSON arguments (Chat `tool_calls` and the
    /// deprecated `function_call`, Responses `function_call`, Anthropic
    /// `tool_use`).
    #[default]
    Function,
    /// A free-form tool whose input is plain text (Responses
    /// `custom_tool_call`); its arguments are a JSON string holding the
    /// text.
    Custom,
}

/// One normalised streaming event.
///
/// Deltas carry an `index` naming the content block (Anthropic), output item
/// (Responses) or tool call (Chat) they belong to, so pieces of the same
/// block can be put together; `index` values of different kinds of block
/// never collide within one API's stream except in Chat, whose reasoning,
/// text and refusal have no index of their own (0).
///
/// Order guarantees: a [`ProviderEvent::ToolCall`] (or
/// [`ProviderEvent::ToolCallInvalid`]) comes after every
/// [`ProviderEvent::ToolCallDelta`] of the same index; [`ProviderEvent::Done`]
/// is last.
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
    /// A piece of the model's visible reasoning: Anthropic `thinking`,
    /// Responses reasoning summaries and reasoning text, Chat
    /// `reasoning_content` (or `reasoning`) from compatible servers. Never
    /// part of the answer's text.
    ReasoningDelta {
        /// The reasoning block's index.
        index: usize,
        /// The reasoning item's id, when this delta carries it (Responses
        /// `rs_…`, needed to send the item back).
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The text to append.
        text: String,
    },
    /// The opaque token that lets reasoning be sent back in the next turn:
    /// Anthropic `signature_delta`, Responses `encrypted_content` of a
    /// finished reasoning item. Replaces any earlier one of the same index.
    ReasoningSignature {
        /// The reasoning block's index.
        index: usize,
        /// The signature, verbatim.
        signature: String,
    },
    /// Reasoning the provider withheld, as opaque data to send back
    /// unchanged (Anthropic `redacted_thinking`).
    RedactedReasoning {
        /// The block's index.
        index: usize,
        /// The encrypted data, verbatim.
        data: String,
    },
    /// A piece of a refusal: the model declines, in words (Chat
    /// `delta.refusal`, Responses `response.refusal.delta`). A stream with a
    /// refusal ends [`Status::Refused`].
    RefusalDelta {
        /// The text to append.
        text: String,
    },
    /// A piece of a client tool call: its identity on the first delta,
    /// argument fragments after (JSON text for function tools, plain text for
    /// custom tools).
    ToolCallDelta {
        /// The tool call's index in the response.
        index: usize,
        /// The call id, when this delta carries it.
        id: Option<String>,
        /// The tool's name, when this delta carries it.
        name: Option<String>,
        /// A fragment of the arguments.
        arguments: String,
    },
    /// A finished client tool call, its arguments parsed: the application
    /// should run it and send the result back. Comes after the call's
    /// deltas.
    ToolCall {
        /// The tool call's index in the response (as in its deltas).
        index: usize,
        /// The call id a tool result must quote (`call_…`, `toolu_…`);
        /// empty when the provider sent none (Chat's legacy `function_call`).
        id: String,
        /// The tool's name.
        name: String,
        /// Function or custom tool.
        kind: ToolKind,
        /// The arguments: a JSON value for function tools (`{}` when the
        /// model sent none), a JSON string holding the raw input for custom
        /// tools.
        arguments: serde_json::Value,
    },
    /// A finished client tool call whose arguments are not valid JSON (the
    /// model wrote bad JSON, or a token limit cut it). The stream goes on;
    /// an agent can answer the call with an error.
    ToolCallInvalid {
        /// The tool call's index in the response.
        index: usize,
        /// The call id, empty when none was sent.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments as received.
        arguments: String,
        /// Why they do not parse (serde_json's message).
        error: String,
    },
    /// A tool the provider runs itself (Anthropic `server_tool_use` and
    /// `mcp_tool_use`; Responses built-in tool items such as
    /// `web_search_call`). Informational: the application must not run it.
    ServerToolCall {
        /// The block or item index.
        index: usize,
        /// The provider's id for the call.
        id: String,
        /// The tool (`web_search`, `code_execution`, …; for Responses the
        /// item type without `_call`).
        name: String,
        /// What the tool was given (Anthropic `input`); for Responses the
        /// whole finished item, which holds the call and its outcome.
        input: serde_json::Value,
    },
    /// The result of a server tool (Anthropic `*_tool_result` blocks such as
    /// `web_search_tool_result`).
    ServerToolResult {
        /// The block index.
        index: usize,
        /// The [`ProviderEvent::ServerToolCall`] id it answers.
        tool_use_id: String,
        /// The block type, e.g. `web_search_tool_result`.
        kind: String,
        /// The block's `content`, verbatim.
        content: serde_json::Value,
    },
    /// A citation attached to the text of block `index` (Anthropic
    /// `citations_delta`, Responses `response.output_text.annotation.added`).
    Citation {
        /// The text block or message item index.
        index: usize,
        /// The citation object, verbatim (its `type` says which kind).
        citation: serde_json::Value,
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
