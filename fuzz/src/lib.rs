//! Shared checks for the fuzz targets.
//!
//! Input layout (so that SSE transcripts make good seeds): byte 0 drives the
//! chunking, byte 1 the size cap, the rest is the body.

use demandflow_stages::provider::{Api, ProviderDecoder, ProviderEvent};
use demandflow_stages::sse::SseDecoder;

/// Splits an input into (chunk sizes, cap, body).
pub fn split_input(data: &[u8]) -> Option<(Vec<usize>, usize, &[u8])> {
    let (&[chunk_seed, cap_seed], body) = data.split_first_chunk::<2>()?;
    // A tiny LCG turns one byte into a varied, reproducible chunking.
    let mut state = u32::from(chunk_seed) | 1;
    let sizes = (0..16)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (state >> 16) as usize % 64
        })
        .collect();
    // Half the inputs get a small cap so the size limit path is exercised.
    let cap = if cap_seed & 0x80 != 0 {
        1 + usize::from(cap_seed & 0x7f)
    } else {
        1 << 20
    };
    Some((sizes, cap, body))
}

/// Cuts `body` into pieces of the given sizes, cycling.
pub fn chunks<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// The SSE decoder's output for `pieces`: events and the error, if any.
pub fn sse(
    pieces: &[&[u8]],
    cap: usize,
) -> (Vec<demandflow_stages::sse::SseEvent>, Option<String>) {
    let mut decoder = SseDecoder::with_max_event_bytes(cap);
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = decoder.feed(piece, &mut out) {
            return (out, Some(e.to_string()));
        }
    }
    let err = decoder.finish(&mut out).err().map(|e| e.to_string());
    (out, err)
}

/// The provider decoder's output for `pieces`.
pub fn provider(api: Api, pieces: &[&[u8]], cap: usize) -> (Vec<ProviderEvent>, Option<String>) {
    let mut decoder = ProviderDecoder::with_max_event_bytes(api, cap);
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = decoder.feed(piece, &mut out) {
            assert!(!decoder.is_finished(), "error after the terminal event");
            return (out, Some(e.to_string()));
        }
    }
    let err = decoder.finish(&mut out).err().map(|e| e.to_string());
    assert_eq!(decoder.is_finished(), err.is_none());
    (out, err)
}

/// The parser target body: never panics, at most one terminal `Done` and
/// nothing after it, exactly one when decoding succeeded, and the same
/// output whatever the chunking.
pub fn check_provider(api: Api, data: &[u8]) {
    let Some((sizes, cap, body)) = split_input(data) else {
        return;
    };
    let whole = provider(api, &[body], cap);
    let chunked = provider(api, &chunks(body, &sizes), cap);
    assert_eq!(whole, chunked, "chunking changed the events");
    let (events, err) = whole;
    let dones = events.iter().filter(|e| e.is_done()).count();
    if err.is_none() {
        assert_eq!(dones, 1, "exactly one Done");
        assert!(
            events.last().is_some_and(ProviderEvent::is_done),
            "Done is last"
        );
    } else {
        assert_eq!(dones, 0, "a failed decode emitted a Done");
    }
}
