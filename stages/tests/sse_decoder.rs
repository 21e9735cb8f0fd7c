//! `sse_conformance` micro-cases (CONFORMANCE.md §5.1, §7): WPT-style
//! checks of the WHATWG rules one by one, the size cap (G-P2), and chunking
//! invariance against a naive whole-stream reference decoder (G-P1).

mod sse_support;

use demandflow_stages::sse::{SseDecoder, SseError, SseEvent};
use proptest::prelude::*;
use sse_support::{decode_sse, split};

const MAX: usize = 1 << 20;

/// Decodes `input` whole, and checks 1-byte and 2-byte feeding agree.
fn decode(input: &[u8]) -> Vec<SseEvent> {
    let (whole, err) = decode_sse(&[input], MAX);
    assert_eq!(err, None);
    for size in [1, 2] {
        assert_eq!(
            decode_sse(&split(input, &[size]), MAX),
            (whole.clone(), None),
            "{size}-byte chunks differ for {input:?}"
        );
    }
    whole
}

fn datas(input: &[u8]) -> Vec<String> {
    decode(input).into_iter().map(|e| e.data).collect()
}

fn ev(event: &str, data: &str, id: Option<&str>, retry: Option<u64>) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
        id: id.map(Into::into),
        retry,
    }
}

#[test]
fn line_ends_lf_crlf_and_lone_cr_are_equivalent() {
    assert_eq!(datas(b"data: a\n\ndata: b\n\n"), ["a", "b"]);
    assert_eq!(datas(b"data: a\r\n\r\ndata: b\r\n\r\n"), ["a", "b"]);
    assert_eq!(datas(b"data: a\r\rdata: b\r\r"), ["a", "b"]);
    assert_eq!(datas(b"data: a\r\n\rdata: b\n\r\n"), ["a", "b"]);
}

#[test]
fn cr_cr_lf_is_a_line_end_then_an_empty_line() {
    // CR ends "data: a"; CR LF is one line end of an empty line: dispatch.
    assert_eq!(datas(b"data: a\r\r\ndata: b\n\n"), ["a", "b"]);
}

#[test]
fn cr_and_lf_split_across_chunks_are_one_line_end() {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    decoder.feed(b"data: a\r", &mut out).unwrap();
    decoder.feed(b"\ndata: b\r", &mut out).unwrap();
    decoder.feed(b"\n\r", &mut out).unwrap();
    decoder.feed(b"\n", &mut out).unwrap();
    // Had the split CR LF counted twice, "a" would have been dispatched alone.
    assert_eq!(out, [ev("message", "a\nb", None, None)]);
}

#[test]
fn bom_is_stripped_once_only_at_stream_start() {
    assert_eq!(
        datas(b"\xEF\xBB\xBFdata: 1\n\n\xEF\xBB\xBFdata: 2\n\ndata: 3\n\n"),
        ["1", "3"]
    );
    // A second leading BOM is part of the first field name.
    assert_eq!(
        datas(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: 1\n\ndata: 2\n\n"),
        ["2"]
    );
}

#[test]
fn bom_split_across_chunks_is_still_stripped() {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for chunk in [&b"\xEF"[..], b"\xBB", b"\xBF", b"data: x\n\n"] {
        decoder.feed(chunk, &mut out).unwrap();
    }
    assert_eq!(out, [ev("message", "x", None, None)]);
}

#[test]
fn utf16_bom_is_not_recognised() {
    // WPT format-bom-utf-16: the bytes become U+FFFD and spoil the field name.
    assert_eq!(datas(b"\xFE\xFFdata: 1\n\ndata: 2\n\n"), ["2"]);
}

#[test]
fn comment_lines_are_ignored_even_between_data_lines() {
    assert_eq!(
        datas(b": hello\ndata: a\n: in between\ndata: b\n:\n\n"),
        ["a\nb"]
    );
}

#[test]
fn one_space_after_colon_is_removed_and_no_more() {
    assert_eq!(
        datas(b"data:x\n\ndata: x\n\ndata:  x\n\n"),
        ["x", "x", " x"]
    );
}

#[test]
fn field_without_colon_has_empty_value() {
    assert_eq!(datas(b"data\n\n"), [""]);
    assert_eq!(datas(b"data\ndata\n\n"), ["\n"]);
    assert_eq!(datas(b"data: a\ndata\ndata: b\n\n"), ["a\n\nb"]);
}

#[test]
fn field_parsing_follows_wpt_format_field_parsing() {
    // WPT eventsource/format-field-parsing.htm.
    let input = b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n";
    assert_eq!(datas(input), ["\0\n 2\n1\n3\n\n4"]);
}

#[test]
fn empty_data_line_dispatches_an_event_with_empty_data() {
    assert_eq!(decode(b"data:\n\n"), [ev("message", "", None, None)]);
}

#[test]
fn block_without_data_field_dispatches_nothing_and_resets_type() {
    assert_eq!(
        decode(b"event: x\n\nid: 1\n\nevent: y\n\ndata: z\n\n"),
        [ev("message", "z", Some("1"), None)]
    );
}

#[test]
fn event_field_sets_type_and_empty_event_means_message() {
    assert_eq!(
        decode(b"event: delta\ndata: a\n\nevent:\ndata: b\n\nevent: a\nevent: b\ndata: c\n\n"),
        [
            ev("delta", "a", None, None),
            ev("message", "b", None, None),
            ev("b", "c", None, None),
        ]
    );
}

#[test]
fn field_names_are_case_sensitive_and_unknown_ones_ignored() {
    assert_eq!(
        datas(b"Data: no\nDATA: no\nfoo: bar\ndata: yes\n\n"),
        ["yes"]
    );
}

#[test]
fn id_persists_across_events_and_empty_id_resets_it() {
    assert_eq!(
        decode(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\n\ndata: d\n\n"),
        [
            ev("message", "a", Some("1"), None),
            ev("message", "b", Some("1"), None),
            ev("message", "c", None, None),
            ev("message", "d", Some("2"), None),
        ]
    );
}

#[test]
fn id_containing_nul_is_ignored() {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    decoder
        .feed(b"id: good\ndata: a\n\nid: b\0d\ndata: b\n\n", &mut out)
        .unwrap();
    assert_eq!(out[1].id.as_deref(), Some("good"));
    assert_eq!(decoder.last_event_id(), "good");
}

#[test]
fn id_only_block_updates_last_event_id_without_dispatch() {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    decoder
        .feed(b"data: a\n\nid: evt-final\n\n", &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(decoder.last_event_id(), "evt-final");
}

#[test]
fn retry_is_used_only_when_all_ascii_digits() {
    let retries: Vec<Option<u64>> = decode(
        b"data: a\n\nretry: 3s\ndata: b\n\nretry: 2500\ndata: c\n\nretry: -1\nretry:  7\nretry:\nretry: 1.5\nretry: \xD9\xA3\ndata: d\n\nretry: 0\ndata: e\n\n",
    )
    .into_iter()
    .map(|e| e.retry)
    .collect();
    assert_eq!(retries, [None, None, Some(2500), Some(2500), Some(0)]);
}

#[test]
fn final_event_without_blank_line_is_not_dispatched() {
    assert_eq!(datas(b"data: a\n\ndata: b\n"), ["a"]);
    assert_eq!(datas(b"data: a\n\ndata: b"), ["a"]);
    assert_eq!(datas(b"data: a\n\ndata: b\r"), ["a"]);
}

#[test]
fn multibyte_utf8_split_across_chunks_decodes_whole() {
    let input = "event: ünï\ndata: Grøn ✓ 🚀\n\n".as_bytes();
    for size in 1..8 {
        let (events, _) = decode_sse(&split(input, &[size]), MAX);
        assert_eq!(events, [ev("ünï", "Grøn ✓ 🚀", None, None)], "{size}");
    }
}

#[test]
fn invalid_utf8_becomes_replacement_characters_without_panic() {
    assert_eq!(datas(b"data: a\xFFb\xE2\x82\n\n"), ["a\u{FFFD}b\u{FFFD}"]);
    // A truncated sequence just before a line end does not swallow it.
    assert_eq!(datas(b"data: \xF0\x9F\ndata: x\n\n"), ["\u{FFFD}\nx"]);
}

#[test]
fn finish_discards_unfinished_event_but_keeps_last_event_id() {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    decoder.feed(b"id: 9\ndata: partial\n", &mut out).unwrap();
    decoder.finish(&mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(decoder.last_event_id(), "9");
    // A reconnected stream starts clean.
    decoder.feed(b"data: next\n\n", &mut out).unwrap();
    assert_eq!(out, [ev("message", "next", Some("9"), None)]);
}

#[test]
fn g_p2_line_longer_than_cap_is_a_typed_error() {
    let (events, err) = decode_sse(&[b"data: ok\n\ndata: 0123456789\n\n"], 12);
    assert_eq!(events, [ev("message", "ok", None, None)]);
    assert_eq!(err, Some(SseError::EventTooLarge { max: 12 }));
}

#[test]
fn g_p2_line_exactly_at_cap_is_accepted() {
    let (events, err) = decode_sse(&[b"data: 012345\n\n"], 12);
    assert_eq!(err, None);
    assert_eq!(events[0].data, "012345");
}

#[test]
fn g_p2_unterminated_line_beyond_cap_fails_before_buffering_it() {
    let mut decoder = SseDecoder::with_max_event_bytes(1024);
    let mut out = Vec::new();
    let mut result = Ok(());
    // 1 MiB with no line end: the decoder must refuse once past 1 KiB.
    for _ in 0..1024 {
        result = decoder.feed(&[b'x'; 1024], &mut out);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SseError::EventTooLarge { max: 1024 }));
}

#[test]
fn g_p2_event_data_beyond_cap_over_many_lines_is_a_typed_error() {
    let input = b"data: 0123456789\n".repeat(10);
    let (events, err) = decode_sse(&[&input], 64);
    assert!(events.is_empty());
    assert_eq!(err, Some(SseError::EventTooLarge { max: 64 }));
}

#[test]
fn g_p2_default_cap_allows_a_one_mebibyte_line_fed_byte_by_byte() {
    // Linear time: fed one byte at a time, a quadratic decoder would rescan
    // ~10^12 bytes here and never finish within the test run.
    let mut input = b"data: ".to_vec();
    input.resize(MAX - 1, b'a');
    input.extend_from_slice(b"\n\n");
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for byte in &input {
        decoder.feed(std::slice::from_ref(byte), &mut out).unwrap();
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data.len(), MAX - 1 - 6);
}

/// A deliberately naive decoder written straight from the spec text: decode
/// the whole stream as UTF-8 first, then split lines. The oracle for the
/// property tests.
fn reference_decode(input: &[u8]) -> Vec<SseEvent> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = String::from_utf8_lossy(input);
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    // `current` is an unterminated line: discarded at EOF.
    let (mut data, mut event_type, mut last_id, mut retry) =
        (String::new(), String::new(), String::new(), None);
    let mut out = Vec::new();
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                out.push(SseEvent {
                    event: if event_type.is_empty() {
                        "message".into()
                    } else {
                        event_type.clone()
                    },
                    data: std::mem::take(&mut data),
                    id: (!last_id.is_empty()).then(|| last_id.clone()),
                    retry,
                });
            }
            data.clear();
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match name {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    out
}

/// Streams made of the pieces that matter to the grammar.
fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event:".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"42".to_vec()),
        Just("é✓🚀".as_bytes().to_vec()),
        Just(b"\xF0\x9F".to_vec()),
        Just(b"\xFF".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
        "[a-z0-9{}\" ]{0,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn g_p1_random_streams_match_the_reference_under_random_chunking(
        input in stream_strategy(),
        sizes in proptest::collection::vec(1usize..9, 1..8),
    ) {
        let expected = reference_decode(&input);
        prop_assert_eq!(decode_sse(&[&input], MAX), (expected.clone(), None));
        prop_assert_eq!(decode_sse(&split(&input, &sizes), MAX), (expected, None));
    }

    #[test]
    fn g_p1_g_p2_with_a_small_cap_chunking_still_changes_nothing(
        input in stream_strategy(),
        sizes in proptest::collection::vec(1usize..9, 1..8),
        max in 1usize..40,
    ) {
        let whole = decode_sse(&[&input], max);
        prop_assert_eq!(decode_sse(&split(&input, &sizes), max), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_invariantly(
        input in proptest::collection::vec(any::<u8>(), 0..512),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let whole = decode_sse(&[&input], MAX);
        prop_assert_eq!(&whole, &(reference_decode(&input), None));
        prop_assert_eq!(decode_sse(&split(&input, &sizes), MAX), whole);
    }
}
