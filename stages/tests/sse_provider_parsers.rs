//! The three provider parsers behind `ProviderDecoder` (CONFORMANCE.md
//! §5.2–5.4): G-T4 (exactly one terminal outcome, nothing after it, EOF is
//! never success), G-P3 (unknown event types are skipped, never fatal, but
//! their data must be JSON), typed decode errors, and the issue 11 event
//! model: reasoning, refusals, finished tool calls, server tools, citations
//! and one outcome mapping across the APIs.

mod sse_support;

use demandflow_stages::provider::{
    Api, DecodeErrorKind, ProviderDecoder, ProviderEvent, Status, Usage,
};
use proptest::prelude::*;
use sse_support::{decode_provider, outcome, split};

fn decode(api: Api, body: &str) -> Vec<ProviderEvent> {
    let (events, err) = decode_provider(api, &[body.as_bytes()]);
    assert_eq!(err, None);
    events
}

fn done(status: Status, stop_reason: Option<&str>) -> ProviderEvent {
    ProviderEvent::Done {
        status,
        stop_reason: stop_reason.map(Into::into),
    }
}

fn text(t: &str) -> ProviderEvent {
    ProviderEvent::TextDelta { text: t.into() }
}

#[test]
fn api_names_and_paths_round_trip() {
    for api in Api::ALL {
        assert_eq!(api.as_str().parse::<Api>(), Ok(api));
        assert_eq!(api.to_string(), api.as_str());
        assert_eq!(
            serde_json::to_value(api).unwrap(),
            serde_json::Value::from(api.as_str())
        );
    }
    assert_eq!(Api::OpenAiResponses.path(), "/v1/responses");
    assert_eq!(Api::OpenAiChat.path(), "/v1/chat/completions");
    assert_eq!(Api::AnthropicMessages.path(), "/v1/messages");
    let err = "openai".parse::<Api>().unwrap_err();
    assert!(err.to_string().starts_with("unknown api `openai`"));
}

#[test]
fn g_t4_empty_body_is_truncated_for_every_api() {
    for api in Api::ALL {
        assert_eq!(decode(api, ""), [done(Status::Truncated, None)]);
    }
}

#[test]
fn g_t4_nothing_is_emitted_after_done_even_in_the_same_chunk() {
    let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"late\"}}]}\n\ndata: [DONE]\n\n";
    for size in [1, 5, body.len()] {
        let (events, err) = decode_provider(Api::OpenAiChat, &split(body.as_bytes(), &[size]));
        assert_eq!(err, None);
        assert_eq!(outcome(&events).text, "a");
        assert_eq!(outcome(&events).dones, 1);
    }
}

#[test]
fn g_t4_garbage_after_done_is_not_an_error() {
    let mut decoder = ProviderDecoder::with_max_event_bytes(Api::AnthropicMessages, 64);
    let mut out = Vec::new();
    decoder
        .feed(b"event: message_stop\ndata: {}\n\n", &mut out)
        .unwrap();
    assert!(decoder.is_finished());
    // Beyond the cap and not JSON: ignored because the stream is over.
    decoder.feed(&[b'x'; 1000], &mut out).unwrap();
    decoder.finish(&mut out).unwrap();
    assert_eq!(out, [done(Status::Completed, None)]);
}

#[test]
fn g_p3_unknown_event_types_are_skipped() {
    let responses = decode(
        Api::OpenAiResponses,
        "event: response.brand_new\ndata: {\"future\":[1,2]}\n\nevent: response.output_text.delta\ndata: {\"delta\":\"x\"}\n\nevent: response.completed\ndata: {\"response\":{}}\n\n",
    );
    assert_eq!(responses, [text("x"), done(Status::Completed, None)]);
    let anthropic = decode(
        Api::AnthropicMessages,
        "event: surprise\ndata: {\"x\":null}\n\nevent: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"future_delta\",\"x\":1}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    assert_eq!(anthropic, [done(Status::Completed, None)]);
    let chat = decode(
        Api::OpenAiChat,
        "event: keepalive\ndata: {}\n\ndata: [DONE]\n\n",
    );
    assert_eq!(chat, [done(Status::Completed, None)]);
}

#[test]
fn responses_and_anthropic_fall_back_to_json_type_without_event_line() {
    let events = decode(
        Api::OpenAiResponses,
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\ndata: {\"type\":\"response.incomplete\",\"response\":{\"incomplete_details\":{\"reason\":\"content_filter\"}}}\n\n",
    );
    assert_eq!(
        events,
        [text("hi"), done(Status::Refused, Some("content_filter"))]
    );
    let events = decode(
        Api::AnthropicMessages,
        "data: {\"type\":\"message_stop\"}\n\n",
    );
    assert_eq!(events, [done(Status::Completed, None)]);
}

#[test]
fn responses_start_carries_id_and_model_once() {
    let events = decode(
        Api::OpenAiResponses,
        "event: response.created\ndata: {\"response\":{\"id\":\"r1\",\"model\":\"m\"}}\n\nevent: response.in_progress\ndata: {\"response\":{\"id\":\"r1\"}}\n\n",
    );
    assert_eq!(
        events,
        [
            ProviderEvent::Start {
                id: Some("r1".into()),
                model: Some("m".into())
            },
            done(Status::Truncated, None)
        ]
    );
}

#[test]
fn chat_error_chunk_is_an_error_then_failed_done() {
    let events = decode(
        Api::OpenAiChat,
        "data: {\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_exceeded\",\"code\":429}}\n\n",
    );
    assert_eq!(
        events,
        [
            ProviderEvent::Error {
                kind: "rate_limit_exceeded".into(),
                message: "Rate limit".into()
            },
            done(Status::Failed, None)
        ]
    );
}

#[test]
fn chat_follows_choice_zero_only() {
    let events = decode(
        Api::OpenAiChat,
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"B\"}},{\"index\":0,\"delta\":{\"content\":\"A\"},\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n",
    );
    let o = outcome(&events);
    assert_eq!(o.text, "A");
    assert_eq!(o.status, Some(Status::Refused));
    assert_eq!(o.stop_reason.as_deref(), Some("content_filter"));
}

#[test]
fn anthropic_usage_is_cumulative_and_replaces() {
    let events = decode(
        Api::AnthropicMessages,
        concat!(
            "event: message_start\ndata: {\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_delta\ndata: {\"delta\":{},\"usage\":{\"output_tokens\":9,\"input_tokens\":6}}\n\n",
            "event: message_stop\ndata: {}\n\n",
        ),
    );
    let usages: Vec<Usage> = events
        .iter()
        .filter_map(|e| match e {
            ProviderEvent::Usage(u) => Some(*u),
            _ => None,
        })
        .collect();
    let u = |i, o| Usage {
        input_tokens: i,
        output_tokens: o,
    };
    assert_eq!(usages, [u(5, 1), u(5, 7), u(6, 9)]);
    assert_eq!(
        events.last(),
        Some(&done(Status::Completed, Some("end_turn")))
    );
}

#[test]
fn anthropic_thinking_is_reasoning_never_text() {
    let events = decode(
        Api::AnthropicMessages,
        concat!(
            "event: content_block_start\ndata: {\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"secret\"}}\n\n",
            "event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"more secret\"}}\n\n",
            "event: content_block_start\ndata: {\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"Hi\"}}\n\n",
            "event: message_stop\ndata: {}\n\n",
        ),
    );
    let reasoning = |t: &str| ProviderEvent::ReasoningDelta {
        index: 0,
        id: None,
        text: t.into(),
    };
    assert_eq!(
        events,
        [
            reasoning("secret"),
            reasoning("more secret"),
            text("Hi"),
            done(Status::Completed, None)
        ]
    );
}

#[test]
fn invalid_json_in_a_known_event_is_a_typed_error_after_earlier_events() {
    let body = "event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\nevent: message_delta\ndata: {broken\n\n";
    for size in [1, 9, body.len()] {
        let (events, err) =
            decode_provider(Api::AnthropicMessages, &split(body.as_bytes(), &[size]));
        assert_eq!(events, [text("ok")]);
        let err = err.expect("invalid json is an error");
        assert!(err.is_invalid_json());
        assert!(
            matches!(err.kind(), DecodeErrorKind::InvalidJson { event, .. } if event == "message_delta")
        );
        assert!(err
            .to_string()
            .starts_with("invalid json in `message_delta` event"));
    }
}

#[test]
fn decoder_stays_failed_after_an_error() {
    let mut decoder = ProviderDecoder::new(Api::OpenAiChat);
    let mut out = Vec::new();
    let err = decoder.feed(b"data: nope\n\n", &mut out).unwrap_err();
    assert_eq!(
        decoder.feed(b"data: [DONE]\n\n", &mut out),
        Err(err.clone())
    );
    assert_eq!(decoder.finish(&mut out), Err(err.clone()));
    assert!(out.is_empty());
    assert!(!decoder.is_finished());
    let [error, failed] = err.to_events();
    assert!(matches!(error, ProviderEvent::Error { ref kind, .. } if kind == "decode_error"));
    assert_eq!(failed, done(Status::Failed, None));
}

#[test]
fn g_p2_oversized_event_is_a_typed_error() {
    let mut decoder = ProviderDecoder::with_max_event_bytes(Api::OpenAiChat, 100);
    let mut out = Vec::new();
    let body = format!("data: {{\"x\":\"{}\"}}\n\n", "y".repeat(200));
    let err = decoder.feed(body.as_bytes(), &mut out).unwrap_err();
    assert!(err.is_event_too_large());
    assert_eq!(err.kind(), &DecodeErrorKind::EventTooLarge { max: 100 });
    assert_eq!(err.to_string(), "sse line or event larger than 100 bytes");
}

#[test]
fn terminal_event_before_an_oversized_line_in_the_same_chunk_wins() {
    let body = format!("data: [DONE]\n\ndata: {}\n\n", "z".repeat(500));
    for size in [1, 13, body.len()] {
        let mut decoder = ProviderDecoder::with_max_event_bytes(Api::OpenAiChat, 100);
        let mut out = Vec::new();
        for chunk in split(body.as_bytes(), &[size]) {
            decoder.feed(chunk, &mut out).unwrap();
        }
        decoder.finish(&mut out).unwrap();
        assert_eq!(out, [done(Status::Completed, None)], "{size}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bodies: no panic, at most one Done, always last, and the
    /// events do not depend on the chunking.
    #[test]
    fn g_t4_arbitrary_bodies_end_with_at_most_one_done(
        body in proptest::collection::vec(
            prop_oneof![
                Just(b"data: [DONE]\n\n".to_vec()),
                Just(b"event: message_stop\ndata: {}\n\n".to_vec()),
                Just(b"event: error\ndata: {\"error\":{\"type\":\"x\"}}\n\n".to_vec()),
                Just(b"event: response.completed\ndata: {}\n\n".to_vec()),
                Just(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t\"}}]}\n\n".to_vec()),
                Just(b"event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"t\"}}\n\n".to_vec()),
                Just(b"\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..16),
            ],
            0..12,
        ).prop_map(|p| p.concat()),
        sizes in proptest::collection::vec(1usize..17, 1..6),
        api in prop::sample::select(Api::ALL.to_vec()),
    ) {
        let whole = decode_provider(api, &[&body]);
        let chunked = decode_provider(api, &split(&body, &sizes));
        prop_assert_eq!(&chunked, &whole);
        let (events, err) = whole;
        let o = outcome(&events);
        if err.is_none() {
            prop_assert_eq!(o.dones, 1);
            prop_assert!(o.done_is_last);
        } else {
            prop_assert_eq!(o.dones, 0);
        }
    }
}

#[test]
fn invalid_json_in_an_event_the_parser_skips_is_an_error_for_every_api() {
    let cases = [
        (
            Api::OpenAiResponses,
            "event: response.output_text.done\ndata: {cut\n\n",
        ),
        (Api::OpenAiResponses, "data: not json\n\n"),
        (Api::AnthropicMessages, "event: ping\ndata: <html>\n\n"),
        (
            Api::AnthropicMessages,
            "event: content_block_stop\ndata: {\"index\":\n\n",
        ),
        (Api::OpenAiChat, "event: keepalive\ndata: whatever\n\n"),
    ];
    for (api, body) in cases {
        let (events, err) = decode_provider(api, &[body.as_bytes()]);
        assert!(events.is_empty(), "{api}: {body:?}");
        assert!(
            err.as_ref().is_some_and(|e| e.is_invalid_json()),
            "{api}: {body:?} gave {err:?}"
        );
    }
}

/// The outcome table on `Status`: one mapping across the APIs, refusals and
/// content filters apart from both success and token limits.
#[test]
fn stop_reasons_map_to_one_outcome_vocabulary() {
    let anthropic = |reason: &str| {
        decode(
            Api::AnthropicMessages,
            &format!("event: message_delta\ndata: {{\"delta\":{{\"stop_reason\":\"{reason}\"}}}}\n\nevent: message_stop\ndata: {{}}\n\n"),
        )
        .pop()
        .unwrap()
    };
    let chat = |reason: &str| {
        decode(
            Api::OpenAiChat,
            &format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{reason}\"}}]}}\n\ndata: [DONE]\n\n"),
        )
        .pop()
        .unwrap()
    };
    let responses = |reason: &str| {
        decode(
            Api::OpenAiResponses,
            &format!("event: response.incomplete\ndata: {{\"response\":{{\"incomplete_details\":{{\"reason\":\"{reason}\"}}}}}}\n\n"),
        )
        .pop()
        .unwrap()
    };
    for (reason, status) in [
        ("end_turn", Status::Completed),
        ("tool_use", Status::Completed),
        ("stop_sequence", Status::Completed),
        ("max_tokens", Status::Incomplete),
        ("model_context_window_exceeded", Status::Incomplete),
        ("pause_turn", Status::Incomplete),
        ("refusal", Status::Refused),
    ] {
        assert_eq!(
            anthropic(reason),
            done(status, Some(reason)),
            "anthropic {reason}"
        );
    }
    for (reason, status) in [
        ("stop", Status::Completed),
        ("tool_calls", Status::Completed),
        ("function_call", Status::Completed),
        ("length", Status::Incomplete),
        ("content_filter", Status::Refused),
    ] {
        assert_eq!(chat(reason), done(status, Some(reason)), "chat {reason}");
    }
    for (reason, status) in [
        ("max_output_tokens", Status::Incomplete),
        ("content_filter", Status::Refused),
    ] {
        assert_eq!(
            responses(reason),
            done(status, Some(reason)),
            "responses {reason}"
        );
    }
}

#[test]
fn a_refusal_delta_makes_an_otherwise_complete_answer_refused() {
    let chat = decode(
        Api::OpenAiChat,
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I can't\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    );
    assert_eq!(
        chat[1..],
        [
            ProviderEvent::RefusalDelta {
                text: "I can't".into()
            },
            done(Status::Refused, Some("stop"))
        ]
    );
    let responses = decode(
        Api::OpenAiResponses,
        "event: response.refusal.delta\ndata: {\"output_index\":0,\"content_index\":0,\"delta\":\"No.\"}\n\nevent: response.completed\ndata: {\"response\":{}}\n\n",
    );
    assert_eq!(
        responses,
        [
            ProviderEvent::RefusalDelta { text: "No.".into() },
            done(Status::Refused, None)
        ]
    );
}

#[test]
fn bad_tool_arguments_are_a_typed_event_and_the_stream_goes_on() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    );
    let events = decode(Api::OpenAiChat, body);
    assert!(events.contains(&ProviderEvent::ToolCallInvalid {
        index: 0,
        id: "call_1".into(),
        name: "f".into(),
        arguments: "{\"a\":".into(),
        error: "EOF while parsing a value at line 1 column 5".into(),
    }));
    assert_eq!(
        events.last(),
        Some(&done(Status::Incomplete, Some("length")))
    );
}

#[test]
fn anthropic_server_tool_use_is_not_a_client_tool_call() {
    let events = decode(
        Api::AnthropicMessages,
        concat!(
            "event: content_block_start\ndata: {\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"query\\\": \\\"x\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"index\":0}\n\n",
            "event: message_stop\ndata: {}\n\n",
        ),
    );
    assert_eq!(
        events,
        [
            ProviderEvent::ServerToolCall {
                index: 0,
                id: "srvtoolu_1".into(),
                name: "web_search".into(),
                input: serde_json::json!({"query": "x"}),
            },
            done(Status::Completed, None)
        ]
    );
}

#[test]
fn chat_legacy_function_call_is_a_tool_call() {
    let events = decode(
        Api::OpenAiChat,
        concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"name\":\"f\",\"arguments\":\"\"}}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"{}\"}},\"finish_reason\":\"function_call\"}]}\n\n",
            "data: [DONE]\n\n",
        ),
    );
    assert!(events.contains(&ProviderEvent::ToolCall {
        index: 0,
        id: String::new(),
        name: "f".into(),
        kind: demandflow_stages::provider::ToolKind::Function,
        arguments: serde_json::json!({}),
    }));
}
