//! `sse_conformance` (CONFORMANCE.md §7) for whole transcripts: every
//! fixture decodes to its `.expected.json` (status, text or text_sha256,
//! usage, stop_reason; plus tool calls and error kinds where stated) fed
//! whole, in 1-, 7- and 4096-byte chunks and in random chunkings (G-P1), with
//! exactly one terminal `Done` and nothing after it (G-T4).
//!
//! Fixtures come from `tests/fixtures/sse` and, when present, from the shared
//! `../../shared/fixtures/sse` (new shared fixtures are picked up).

mod sse_support;

use demandflow_stages::provider::{Api, ProviderEvent, Status};
use proptest::prelude::*;
use sse_support::{check_against_expected, decode_provider, decode_sse, fixtures, outcome, split};

fn check_fixed_chunking(size: usize) {
    for fixture in fixtures() {
        let body = fixture.body();
        let (events, err) = decode_provider(fixture.api(), &split(&body, &[size]));
        assert_eq!(err, None, "{}: decode error", fixture.name);
        check_against_expected(&fixture, &format!("{size}-byte chunks"), &events);
    }
}

#[test]
fn g_p1_every_fixture_matches_expected_fed_whole() {
    for fixture in fixtures() {
        let body = fixture.body();
        let (events, err) = decode_provider(fixture.api(), &[&body]);
        assert_eq!(err, None, "{}: decode error", fixture.name);
        check_against_expected(&fixture, "whole", &events);
    }
}

#[test]
fn g_p1_every_fixture_matches_expected_in_1_byte_chunks() {
    check_fixed_chunking(1);
}

#[test]
fn g_p1_every_fixture_matches_expected_in_7_byte_chunks() {
    check_fixed_chunking(7);
}

#[test]
fn g_p1_every_fixture_matches_expected_in_4096_byte_chunks() {
    check_fixed_chunking(4096);
}

#[test]
fn g_p1_empty_chunks_change_nothing() {
    for fixture in fixtures() {
        let body = fixture.body();
        let whole = decode_provider(fixture.api(), &[&body]);
        let mut chunks = vec![&b""[..]];
        for piece in split(&body, &[3, 0, 11, 0, 0, 5]) {
            chunks.push(piece);
            chunks.push(b"");
        }
        assert_eq!(
            decode_provider(fixture.api(), &chunks),
            whole,
            "{}",
            fixture.name
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn g_p1_random_chunkings_of_every_fixture_give_identical_events(
        sizes in proptest::collection::vec(1usize..300, 1..24),
        fixture_pick in any::<prop::sample::Index>(),
    ) {
        let all = fixtures();
        let fixture = &all[fixture_pick.index(all.len())];
        let body = fixture.body();
        let whole = decode_provider(fixture.api(), &[&body]);
        let chunked = decode_provider(fixture.api(), &split(&body, &sizes));
        prop_assert_eq!(&chunked, &whole);
        check_against_expected(fixture, "random chunking", &chunked.0);
    }
}

#[test]
fn g_t4_fixture_06_error_midstream_keeps_text_and_fails_once() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("06_"))
        .unwrap();
    let (events, _) = decode_provider(Api::AnthropicMessages, &[&fixture.body()]);
    let n = events.len();
    assert_eq!(
        events[n - 2..],
        [
            ProviderEvent::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            },
            ProviderEvent::Done {
                status: Status::Failed,
                stop_reason: None
            },
        ]
    );
    // The text deltas all come before the error.
    assert!(events[..n - 2]
        .iter()
        .all(|e| !matches!(e, ProviderEvent::Error { .. } | ProviderEvent::Done { .. })));
}

#[test]
fn fixture_08_tool_input_fragments_concatenate_to_valid_json() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("08_"))
        .unwrap();
    for size in [1, 7, usize::MAX] {
        let body = fixture.body();
        let (events, _) = decode_provider(Api::AnthropicMessages, &split(&body, &[size]));
        let o = outcome(&events);
        assert_eq!(o.tool_calls.len(), 1);
        let (id, name, arguments) = &o.tool_calls[&1];
        assert_eq!(id.as_deref(), Some("toolu_fx08"));
        assert_eq!(name.as_deref(), Some("get_weather"));
        let input: serde_json::Value = serde_json::from_str(arguments).unwrap();
        assert_eq!(
            input,
            serde_json::json!({"city": "Oslo", "unit": "celsius"})
        );
    }
}

#[test]
fn fixture_05_sse_fields_ids_retry_and_multiline_data() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("05_"))
        .unwrap();
    let body = fixture.body();
    for size in [1, 2, 7, usize::MAX] {
        let (events, err) = decode_sse(&split(&body, &[size]), 1 << 20);
        assert_eq!(err, None);
        let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(
            ids,
            [
                Some("evt-1"),
                Some("evt-2"),
                Some("evt-3"),
                // `id` with NUL ignored: still evt-3.
                Some("evt-3"),
                // Lone CR ended the `id: evt-5` line.
                Some("evt-5"),
                Some("evt-6"),
                Some("evt-6"),
                Some("evt-6"),
                // The id-only block dispatched nothing but set the id.
                Some("evt-final"),
            ],
            "chunk size {size}"
        );
        assert!(events
            .iter()
            .all(|e| e.event == "message" && e.retry == Some(2500)));
        // Multi-line data joined with LF; the bare `data` line adds an empty line.
        assert!(events[1]
            .data
            .starts_with("{\n \"id\": \"chatcmpl-fx05\",\n\n \"object\""));
        assert!(events[1].data.ends_with("\n}"));
        // Only one space after the colon is removed.
        assert!(events[3].data.starts_with(" {\"id\""));
        assert_eq!(events[8].data, "[DONE]");
        // The leading BOM did not leak into the first field.
        assert!(events[0].data.starts_with("{\"id\""));
    }
}
