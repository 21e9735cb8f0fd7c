//! An incremental Server-Sent Events decoder following the WHATWG rules
//! (HTML §9.2.5–9.2.6).
//!
//! The decoder is a pure state machine: bytes in, [`SseEvent`]s out, no I/O.
//! Its output never depends on how the input was split into chunks: a CR at
//! the end of one chunk and an LF at the start of the next are one line end,
//! a UTF-8 sequence split across chunks decodes as one character (conversion
//! happens on complete lines), and a BOM split across chunks is still
//! recognised.
//!
//! # Rules implemented
//!
//! - Line ends: LF, CRLF, lone CR.
//! - One leading UTF-8 BOM is stripped, at stream start only.
//! - Lines starting with `:` are comments; a line without a colon is a field
//!   name with an empty value; one space after the colon is removed.
//! - `data` lines are joined with `\n`; a block without any `data` line
//!   dispatches nothing; `event` sets the type (default `message`); `id`
//!   containing NUL is ignored; `retry` is used only when all ASCII digits.
//! - An unfinished event at end of stream is discarded.
//! - Invalid UTF-8 becomes U+FFFD; it never panics.
//!
//! # Cost and memory
//!
//! Each byte is scanned once (`memchr` on the newly fed bytes only). Only the
//! unfinished tail line and the current event's data are buffered, and both
//! are capped by `max_event_bytes` (1 MiB by default): going beyond it is an
//! [`SseError::EventTooLarge`], after which the decoder stays failed.
//!
//! ```
//! use demandflow_stages::sse::SseDecoder;
//!
//! let mut decoder = SseDecoder::new();
//! let mut out = Vec::new();
//! // The CR LF pair is split across the two chunks: still one line end.
//! decoder.feed(b"event: greet\r\ndata: hel", &mut out).unwrap();
//! decoder.feed(b"lo\r", &mut out).unwrap();
//! decoder.feed(b"\n\r\n", &mut out).unwrap();
//! decoder.finish(&mut out).unwrap();
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].event, "greet");
//! assert_eq!(out[0].data, "hello");
//! ```

mod event;

pub use event::SseEvent;

use std::mem;

/// The default cap on one line and on one event's data, in bytes (1 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Why the SSE decoder stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line, or the data of one event, grew beyond the configured cap.
    #[error("sse line or event larger than {max} bytes")]
    EventTooLarge {
        /// The configured cap in bytes.
        max: usize,
    },
}

/// Where the decoder is in recognising a leading BOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// This many leading bytes matched the BOM so far.
    Matching(usize),
    /// Decided: stripped or absent.
    Done,
}

/// Incremental WHATWG Server-Sent Events decoder.
///
/// See the [module docs](self) for the rules and guarantees.
#[derive(Debug, Clone)]
pub struct SseDecoder {
    max: usize,
    bom: Bom,
    /// The previous chunk ended in CR: an LF at the start of the next chunk
    /// belongs to the same line end.
    pending_cr: bool,
    /// Bytes of a line whose end has not arrived yet.
    line: Vec<u8>,
    data: String,
    /// Whether the current block had a `data` field; an empty `data:` still
    /// dispatches (with empty data), no `data` field dispatches nothing.
    has_data: bool,
    event_type: String,
    last_id: String,
    retry: Option<u64>,
    failed: Option<SseError>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the default cap ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that rejects any line or event data longer than `max` bytes.
    ///
    /// ```
    /// use demandflow_stages::sse::{SseDecoder, SseError};
    ///
    /// let mut decoder = SseDecoder::with_max_event_bytes(8);
    /// let err = decoder.feed(b"data: far too long\n", &mut Vec::new()).unwrap_err();
    /// assert_eq!(err, SseError::EventTooLarge { max: 8 });
    /// ```
    pub fn with_max_event_bytes(max: usize) -> Self {
        Self {
            max,
            bom: Bom::Matching(0),
            pending_cr: false,
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            last_id: String::new(),
            retry: None,
            failed: None,
        }
    }

    /// The configured cap in bytes.
    pub fn max_event_bytes(&self) -> usize {
        self.max
    }

    /// The last event ID seen so far (what a client would send as
    /// `Last-Event-ID` on reconnect); empty when unset. Updated by `id:`
    /// fields even in blocks that dispatch nothing.
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// The reconnection time in milliseconds last set by a valid `retry:`.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Decodes `chunk`, appending every event it completes to `out`.
    ///
    /// Events completed before an error are still appended. After an error
    /// the decoder stays failed and returns the same error.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.feed_inner(chunk, out);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// End of stream: discards an unfinished line and event (WHATWG: they are
    /// never dispatched). Nothing is appended to `out`; it is there so that
    /// callers treat both calls alike. The last event ID and retry survive,
    /// so the decoder can go on with a reconnected stream.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let _ = out;
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.line.clear();
        self.pending_cr = false;
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
        // A new stream may start with its own BOM.
        self.bom = Bom::Matching(0);
        Ok(())
    }

    fn feed_inner(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        while let Bom::Matching(matched) = self.bom {
            let Some((&byte, rest)) = chunk.split_first() else {
                return Ok(());
            };
            if byte == BOM[matched] {
                chunk = rest;
                self.bom = if matched + 1 == BOM.len() {
                    Bom::Done
                } else {
                    Bom::Matching(matched + 1)
                };
            } else {
                self.bom = Bom::Done;
                // The bytes held back while they looked like a BOM are data.
                self.feed_lines(&BOM[..matched], out)?;
            }
        }
        self.feed_lines(chunk, out)
    }

    fn feed_lines(&mut self, input: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut pos = 0;
        if self.pending_cr && !input.is_empty() {
            self.pending_cr = false;
            if input[0] == b'\n' {
                pos = 1;
            }
        }
        while pos < input.len() {
            let Some(offset) = memchr::memchr2(b'\n', b'\r', &input[pos..]) else {
                let rest = &input[pos..];
                if self.line.len() + rest.len() > self.max {
                    return Err(SseError::EventTooLarge { max: self.max });
                }
                self.line.extend_from_slice(rest);
                return Ok(());
            };
            let end = pos + offset;
            let piece = &input[pos..end];
            if self.line.is_empty() {
                // Fast path: the whole line is in this chunk, no copy.
                if piece.len() > self.max {
                    return Err(SseError::EventTooLarge { max: self.max });
                }
                self.process_line(piece, out)?;
            } else {
                if self.line.len() + piece.len() > self.max {
                    return Err(SseError::EventTooLarge { max: self.max });
                }
                self.line.extend_from_slice(piece);
                // Taken out and put back so the buffer keeps its capacity.
                let line = mem::take(&mut self.line);
                let result = self.process_line(&line, out);
                self.line = line;
                self.line.clear();
                result?;
            }
            pos = end + 1;
            if input[end] == b'\r' {
                match input.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (&line[..colon], value)
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                push_lossy(&mut self.data, value);
                if self.data.len() > self.max {
                    return Err(SseError::EventTooLarge { max: self.max });
                }
            }
            b"event" => {
                self.event_type.clear();
                push_lossy(&mut self.event_type, value);
            }
            b"id" if memchr::memchr(0, value).is_none() => {
                self.last_id.clear();
                push_lossy(&mut self.last_id, value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All digits, so only overflow can fail: such a value is
                // ignored like any other unusable one.
                if let Ok(ms) = parse_u64(value) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        let event = if self.event_type.is_empty() {
            String::from("message")
        } else {
            mem::take(&mut self.event_type)
        };
        // A clone is one exact-size allocation, and `self.data` keeps its
        // capacity for the next event.
        let data = self.data.clone();
        self.data.clear();
        self.has_data = false;
        out.push(SseEvent {
            event,
            data,
            id: (!self.last_id.is_empty()).then(|| self.last_id.clone()),
            retry: self.retry,
        });
    }
}

/// Appends `bytes` as UTF-8, replacing invalid sequences with U+FFFD. Called
/// on complete field values only, which split the stream at ASCII bytes, so
/// this equals decoding the whole stream at once.
fn push_lossy(buf: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => buf.push_str(text),
        Err(_) => buf.push_str(&String::from_utf8_lossy(bytes)),
    }
}

fn parse_u64(digits: &[u8]) -> Result<u64, ()> {
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
            .ok_or(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        decoder.feed(input, &mut out).unwrap();
        decoder.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn pending_cr_state_is_kept_between_chunks() {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        decoder.feed(b"data: a\r", &mut out).unwrap();
        assert!(decoder.pending_cr);
        assert!(decoder.has_data);
        assert_eq!(decoder.data, "a");
        decoder.feed(b"\n", &mut out).unwrap();
        assert!(!decoder.pending_cr);
        assert!(out.is_empty());
        decoder.feed(b"\r", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(decoder.line.is_empty());
    }

    #[test]
    fn partial_bom_is_held_back_then_replayed_as_data() {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        decoder.feed(&[0xEF, 0xBB], &mut out).unwrap();
        assert_eq!(decoder.bom, Bom::Matching(2));
        decoder.feed(b"data: x\n\n", &mut out).unwrap();
        assert_eq!(decoder.bom, Bom::Done);
        // The two bytes became part of the first field name, which is then
        // no longer `data`.
        assert!(out.is_empty());
    }

    #[test]
    fn retry_overflow_is_ignored() {
        let out = decode(b"retry: 99999999999999999999999\ndata: x\n\n");
        assert_eq!(out[0].retry, None);
    }

    #[test]
    fn failed_decoder_stays_failed() {
        let mut decoder = SseDecoder::with_max_event_bytes(4);
        let mut out = Vec::new();
        assert!(decoder.feed(b"data: 12345\n", &mut out).is_err());
        assert_eq!(
            decoder.feed(b"\n", &mut out),
            Err(SseError::EventTooLarge { max: 4 })
        );
        assert!(decoder.finish(&mut out).is_err());
    }
}
