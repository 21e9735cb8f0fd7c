//! Arbitrary bytes with arbitrary chunking must decode exactly like the
//! unchunked input (events and error alike), and never panic.
#![no_main]

use demandflow_fuzz::{chunks, split_input, sse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sizes, cap, body)) = split_input(data) else {
        return;
    };
    let whole = sse(&[body], cap);
    let chunked = sse(&chunks(body, &sizes), cap);
    assert_eq!(whole, chunked, "chunking changed the output");
    let one_byte = sse(&chunks(body, &[1]), cap);
    assert_eq!(whole, one_byte, "1-byte chunking changed the output");
});
