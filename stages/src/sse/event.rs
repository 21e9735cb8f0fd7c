//! The event type the SSE decoder dispatches.

/// One dispatched Server-Sent Event.
///
/// `id` and `retry` are stream-level state in the WHATWG model (they persist
/// across events), so each event carries the values in force when it was
/// dispatched rather than only the fields written inside its own block.
///
/// ```
/// use demandflow_stages::sse::{SseDecoder, SseEvent};
///
/// let mut decoder = SseDecoder::new();
/// let mut out = Vec::new();
/// decoder.feed(b"id: 7\ndata: hi\n\n", &mut out).unwrap();
/// assert_eq!(
///     out,
///     [SseEvent { event: "message".into(), data: "hi".into(), id: Some("7".into()), retry: None }]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: the last `event:` field of the block, `message` when
    /// there was none or it was empty.
    pub event: String,
    /// The `data:` lines of the block joined with `\n`.
    pub data: String,
    /// The last event ID at dispatch time (`None` when unset or reset by an
    /// empty `id:`).
    pub id: Option<String>,
    /// The reconnection time in milliseconds last set by a valid `retry:`
    /// field, if any.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// Whether the event has the default type `message` (as OpenAI Chat
    /// Completions streams send every chunk).
    pub fn is_message(&self) -> bool {
        self.event == "message"
    }
}
