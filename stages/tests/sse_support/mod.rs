//! Shared helpers for the SSE and provider-parser tests: fixture discovery,
//! chunked decoding and the outcome a fixture's `.expected.json` describes.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use demandflow_stages::provider::{
    Api, DecodeError, MessageBuilder, ProviderDecoder, ProviderEvent, Status,
};
use demandflow_stages::sse::{SseDecoder, SseError, SseEvent};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One transcript and what it must decode to.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub sse: PathBuf,
    pub expected: Value,
}

impl Fixture {
    pub fn api(&self) -> Api {
        self.expected["api"]
            .as_str()
            .expect("expected.json has an api")
            .parse()
            .expect("known api")
    }

    pub fn body(&self) -> Vec<u8> {
        std::fs::read(&self.sse).expect("fixture readable")
    }
}

/// The project's copy first; the shared directory, when present, adds
/// fixtures the project has not copied yet.
pub fn fixtures() -> Vec<Fixture> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        manifest.join("tests/fixtures/sse"),
        manifest.join("../../shared/fixtures/sse"),
    ];
    let mut found: BTreeMap<String, Fixture> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable dir").path();
            if path.extension().and_then(|e| e.to_str()) != Some("sse") {
                continue;
            }
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if found.contains_key(&name) {
                continue;
            }
            let expected_path = path.with_file_name(format!("{name}.expected.json"));
            let expected: Value = serde_json::from_slice(
                &std::fs::read(&expected_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
            )
            .expect("expected.json is JSON");
            found.insert(
                name.clone(),
                Fixture {
                    name,
                    sse: path,
                    expected,
                },
            );
        }
    }
    let list: Vec<Fixture> = found.into_values().collect();
    assert!(list.len() >= 7, "fixtures missing: found {}", list.len());
    list
}

/// Splits `body` at the given cut sizes (cycled; 0 means an empty chunk).
pub fn split<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (head, tail) = rest.split_at(n);
        chunks.push(head);
        rest = tail;
        i += 1;
        if i > body.len() * 2 + 16 {
            chunks.push(rest);
            break;
        }
    }
    chunks
}

/// Decodes a provider body fed as `chunks`. On error returns the events
/// produced before it together with the error.
pub fn decode_provider(api: Api, chunks: &[&[u8]]) -> (Vec<ProviderEvent>, Option<DecodeError>) {
    let mut decoder = ProviderDecoder::new(api);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(err) = decoder.feed(chunk, &mut out) {
            return (out, Some(err));
        }
    }
    let err = decoder.finish(&mut out).err();
    (out, err)
}

/// Decodes an SSE body fed as `chunks` with cap `max`.
pub fn decode_sse(chunks: &[&[u8]], max: usize) -> (Vec<SseEvent>, Option<SseError>) {
    let mut decoder = SseDecoder::with_max_event_bytes(max);
    let mut out = Vec::new();
    for chunk in chunks {
        if let Err(err) = decoder.feed(chunk, &mut out) {
            return (out, Some(err));
        }
    }
    let err = decoder.finish(&mut out).err();
    (out, err)
}

/// What a stream of normalised events amounts to, in the vocabulary of the
/// fixtures' `.expected.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Option<Status>,
    pub stop_reason: Option<String>,
    pub text: String,
    pub usage: Option<(u64, u64)>,
    /// index → (id, name, arguments)
    pub tool_calls: BTreeMap<usize, (Option<String>, Option<String>, String)>,
    pub errors: Vec<String>,
    pub dones: usize,
    pub done_is_last: bool,
}

pub fn outcome(events: &[ProviderEvent]) -> Outcome {
    let mut o = Outcome {
        status: None,
        stop_reason: None,
        text: String::new(),
        usage: None,
        tool_calls: BTreeMap::new(),
        errors: Vec::new(),
        dones: 0,
        done_is_last: matches!(events.last(), Some(ProviderEvent::Done { .. })),
    };
    for event in events {
        match event {
            ProviderEvent::TextDelta { text } => o.text.push_str(text),
            ProviderEvent::Usage(u) => o.usage = Some((u.input_tokens, u.output_tokens)),
            ProviderEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let call = o.tool_calls.entry(*index).or_default();
                if id.is_some() {
                    call.0.clone_from(id);
                }
                if name.is_some() {
                    call.1.clone_from(name);
                }
                call.2.push_str(arguments);
            }
            ProviderEvent::Done {
                status,
                stop_reason,
            } => {
                o.dones += 1;
                o.status = Some(*status);
                o.stop_reason.clone_from(stop_reason);
            }
            ProviderEvent::Error { kind, .. } => o.errors.push(kind.clone()),
            _ => {}
        }
    }
    o
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Completed => "completed",
        Status::Incomplete => "incomplete",
        Status::Refused => "refused",
        Status::Failed => "failed",
        Status::Truncated => "truncated",
        Status::Cancelled => "cancelled",
        Status::DeadlineExceeded => "deadline_exceeded",
        _ => "unknown",
    }
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that `events` match everything `fixture.expected` states.
pub fn check_against_expected(fixture: &Fixture, how: &str, events: &[ProviderEvent]) {
    let ctx = format!("{} ({how})", fixture.name);
    let e = &fixture.expected;
    let o = outcome(events);
    assert_eq!(o.dones, 1, "{ctx}: exactly one Done");
    assert!(o.done_is_last, "{ctx}: nothing after Done");
    assert_eq!(
        Some(status_name(o.status.unwrap())),
        e["status"].as_str(),
        "{ctx}: status"
    );
    assert_eq!(
        o.stop_reason.as_deref(),
        e["stop_reason"].as_str(),
        "{ctx}: stop_reason"
    );
    let usage = match &e["usage"] {
        Value::Null => None,
        u => Some((
            u["input_tokens"].as_u64().unwrap(),
            u["output_tokens"].as_u64().unwrap(),
        )),
    };
    assert_eq!(o.usage, usage, "{ctx}: usage");
    if let Some(text) = e["text"].as_str() {
        assert_eq!(o.text, text, "{ctx}: text");
    }
    if let Some(sha) = e["text_sha256"].as_str() {
        assert_eq!(sha256_hex(&o.text), sha, "{ctx}: text_sha256");
    }
    if let Some(len) = e["text_len_chars"].as_u64() {
        assert_eq!(o.text.chars().count() as u64, len, "{ctx}: text_len_chars");
    }
    assert!(
        e["text"].is_string() || e["text_sha256"].is_string(),
        "{ctx}: expected.json states the text"
    );
    if let Some(calls) = e["tool_calls"].as_array() {
        let expected: BTreeMap<usize, (Option<String>, Option<String>, String)> = calls
            .iter()
            .map(|c| {
                (
                    c["index"].as_u64().unwrap() as usize,
                    (
                        c["id"].as_str().map(str::to_owned),
                        c["name"].as_str().map(str::to_owned),
                        c["arguments"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect();
        assert_eq!(o.tool_calls, expected, "{ctx}: tool calls");
    }
    if let Some(expected) = e["final"].as_object() {
        let mut builder = MessageBuilder::default();
        events.iter().for_each(|event| builder.push(event));
        let message = builder.finish().to_json();
        for (key, value) in expected {
            assert_eq!(&message[key], value, "{ctx}: final.{key}");
        }
    }
    if let Some(errors) = e["errors"].as_array() {
        let expected: Vec<&str> = errors.iter().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(o.errors, expected, "{ctx}: error kinds");
    }
}
