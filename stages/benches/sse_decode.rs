//! SSE decoding throughput: our incremental decoder against the
//! `eventsource-stream` crate on the same input, a generated ~1 MB OpenAI
//! Chat transcript fed in 4 KiB chunks. Also the full provider decode (SSE +
//! Chat JSON parsing into `ProviderEvent`s) for scale.
//!
//! Run: `cargo bench -p demandflow-stages --bench sse_decode`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use demandflow_stages::provider::{Api, ProviderDecoder};
use demandflow_stages::sse::SseDecoder;
use eventsource_stream::Eventsource;
use futures::{executor::block_on, stream, StreamExt};

const CHUNK: usize = 4096;

/// A Chat Completions transcript of about `target` bytes: realistic chunk
/// JSON with varied deltas, a finish chunk, a usage chunk and `[DONE]`.
fn chat_transcript(target: usize) -> Vec<u8> {
    let words = [
        "Demand",
        " flows",
        " upstream",
        ";",
        " data",
        " flows",
        " downstream",
        ".",
        " Grøn",
        " ✓",
        " back",
        "pressure",
        " holds",
        " 🚀",
        "\\n",
        " \\\"quoted\\\"",
    ];
    let mut body = String::new();
    let mut i = 0usize;
    while body.len() < target {
        let word = words[i % words.len()];
        body.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225601,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
        i += 1;
    }
    body.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225601,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n");
    body.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225601,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\n");
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

fn chunks(body: &[u8]) -> Vec<Bytes> {
    body.chunks(CHUNK).map(Bytes::copy_from_slice).collect()
}

/// Our decoder; the consumer looks at every event like the baseline's does.
fn decode_ours(chunks: &[Bytes]) -> (usize, usize) {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    let (mut events, mut bytes) = (0, 0);
    for chunk in chunks {
        decoder.feed(chunk, &mut out).expect("valid transcript");
        for event in out.drain(..) {
            events += 1;
            bytes += event.data.len();
        }
    }
    decoder.finish(&mut out).expect("valid transcript");
    (events, bytes)
}

/// `eventsource-stream` over the same chunks (it only offers a `Stream`
/// adapter; polling a ready in-memory stream adds little).
fn decode_baseline(chunks: Vec<Bytes>) -> (usize, usize) {
    let input = stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
    block_on(input.eventsource().fold((0, 0), |(events, bytes), event| {
        let event = event.expect("valid transcript");
        futures::future::ready((events + 1, bytes + event.data.len()))
    }))
}

fn decode_provider(chunks: &[Bytes]) -> usize {
    let mut decoder = ProviderDecoder::new(Api::OpenAiChat);
    let mut out = Vec::new();
    let mut events = 0;
    for chunk in chunks {
        decoder.feed(chunk, &mut out).expect("valid transcript");
        events += out.len();
        out.clear();
    }
    decoder.finish(&mut out).expect("valid transcript");
    events + out.len()
}

fn bench(c: &mut Criterion) {
    let body = chat_transcript(1_000_000);
    let input = chunks(&body);
    // Both decoders must agree before their speed means anything.
    let ours = decode_ours(&input);
    assert_eq!(ours, decode_baseline(input.clone()));
    assert!(ours.0 > 1000);

    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("demandflow", |b| b.iter(|| decode_ours(&input)));
    group.bench_function("eventsource-stream", |b| {
        // The baseline consumes its chunks; cloning `Bytes` is a refcount bump.
        b.iter_batched(|| input.clone(), decode_baseline, BatchSize::SmallInput)
    });
    group.finish();

    let mut group = c.benchmark_group("provider_decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("openai-chat", |b| b.iter(|| decode_provider(&input)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
