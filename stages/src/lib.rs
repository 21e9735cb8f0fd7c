//! Ready-made [`demandflow`] stages: the SSE decoder, LLM provider
//! producers, the embedded mock provider, NATS JetStream connectors, and the
//! `demandflow` binary.
//!
//! # What is in the crate
//!
//! | module | what |
//! |---|---|
//! | [`sse`] | [`SseDecoder`](sse::SseDecoder): an incremental WHATWG Server-Sent Events decoder. It is pure (bytes in, events out), and its output does not depend on how the bytes were split into chunks |
//! | [`provider`] | [`ProviderProducer`](provider::ProviderProducer) (a demandflow producer) and [`ProviderStream`](provider::ProviderStream) (a `futures::Stream`) for OpenAI Responses, OpenAI Chat Completions and Anthropic Messages streams, normalised into [`ProviderEvent`](provider::ProviderEvent) (text, reasoning, refusals, tool calls, server tools, citations; one outcome vocabulary); [`FinalMessage`](provider::FinalMessage) accumulation ([`final_messages`](provider::final_messages), [`ProviderStream::final_message`](provider::ProviderStream::final_message)); the request model ([`Message`](provider::Message), [`Tool`](provider::Tool), [`ReasoningConfig`](provider::ReasoningConfig)). Also the configuration ([`ProviderConfig`](provider::ProviderConfig), [`Timeouts`](provider::Timeouts), [`ApiKey`](provider::ApiKey)), retries ([`RetryPolicy`](provider::RetryPolicy)) and the immutable [`ProviderRegistry`](provider::ProviderRegistry) |
//! | [`llm`] | [`RequestStage`](llm::RequestStage): a processor that sends many requests ([`LlmRequest`](llm::LlmRequest) in, [`LlmResult`](llm::LlmResult) out) under a concurrency limit and per-endpoint request and token budgets, adapting to the providers' rate-limit headers, retrying before the first token |
//! | [`ratelimit`] | the pure rate-limit code under it: [`TokenBucket`](ratelimit::TokenBucket), [`RateLimitSnapshot`](ratelimit::RateLimitSnapshot) (the providers' rate-limit headers), [`EndpointLimiter`](ratelimit::EndpointLimiter), [`Scheduler`](ratelimit::Scheduler) |
//! | [`mock`] | [`MockServer`](mock::MockServer): a loopback HTTP server that streams generated or recorded answers, with pacing and faults. It is the default for the demo, the tests and the benchmarks |
//! | [`batch`] | the file side of `demandflow batch`: [`BatchReader`](batch::BatchReader) streams OpenAI Batch API and Anthropic Message Batches JSONL lines (one [`LineError`](batch::LineError) per malformed line, never a stop), [`BatchWriter`](batch::BatchWriter) writes one whole [`BatchResult`](batch::BatchResult) line per request plus `<output>.failed.jsonl`, [`resume`](batch::resume) finds what a killed run finished, [`Counters`](batch::Counters), [`ProgressTask`](batch::ProgressTask) and [`Summary`](batch::Summary) show how far it got |
//! | [`replay`] | `demandflow replay`: a recorded transcript through the same decoder as the live producers |
//! | `nats` | feature `nats`: `JetStreamSource`, `JetStreamSink`, `Acked`, `term_dead_letters`, for splitting a pipeline across processes |
//! | `dashboard` | feature `dashboard`: `Dashboard::serve(watch, addr)`, a live page of a running pipeline (graph coloured by backpressure, throughput, restarts, dead letters, stalls) over server-sent events; see `docs/dashboard.md` |
//!
//! The HTTP body is read only while demand is pending: one chunk at a time,
//! and only when the events decoded from the previous chunk have been handed
//! out. A slow consumer therefore pushes back through TCP to the server.
//! Reads have connect, first-event, idle and total timeouts. The total
//! timeout is capped by the pipeline's deadline. Retries happen only before
//! the first event, so a token is never produced twice.
//!
//! # Example
//!
//! A provider stream from the embedded mock, through a pipeline:
//!
//! ```
//! use demandflow::{sink, Pipeline, Subscribe};
//! use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer};
//! use demandflow_stages::provider::{Api, ProviderConfig, ProviderEvent, ProviderProducer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = MockServer::start(
//!     MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(20))),
//! )
//! .await?;
//! let config = ProviderConfig::new(Api::OpenAiChat, &server.url())?.prompt("Hello");
//!
//! let mut p = Pipeline::new();
//! let llm = p.producer("llm", ProviderProducer::new(config)?);
//! let (collect, events) = sink::collect();
//! p.consumer("out", collect).subscribe(&llm, Subscribe::max_demand(4));
//! p.spawn()?.join().await?;
//!
//! let events = events.take();
//! let words: usize = events
//!     .iter()
//!     .filter_map(|e| match e {
//!         ProviderEvent::TextDelta { text } => Some(text.split_whitespace().count()),
//!         _ => None,
//!     })
//!     .sum();
//! assert_eq!(words, 20);
//! assert!(events.last().is_some_and(|e| e.is_done()));
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | (default) | SSE decoder, provider producers over reqwest with rustls, mock server, replay, the binary |
//! | `nats` | the `nats` module (NATS JetStream source and sink, through `async-nats` with rustls and ring) |
//! | `dashboard` | the `dashboard` module (the live pipeline dashboard, served by `axum`) |
//!
//! # Cancel safety
//!
//! Dropping a `ProviderProducer` or `ProviderStream` drops the response body
//! and closes the connection. Cancelling the stage's scope ends the stream
//! with `Done { status: Cancelled }`. Every public async function documents
//! what dropping its future does in a `# Cancel safety` section.
//!
//! # More
//!
//! In the repository: `docs/architecture.md` (how these stages fit the
//! engine, invariants D1–D8), `docs/cancellation-and-deadlines.md` (provider
//! timeouts, cancel safety), `docs/scale-out.md` (the NATS stages), and
//! `docs/testing.md` (fuzz targets for the decoder and parsers). `demandflow
//! --help` lists the commands of the binary.
// docs.rs (nightly, `--cfg docsrs`) marks the `nats` module with its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod batch;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod llm;
pub mod mock;
#[cfg(feature = "nats")]
pub mod nats;
pub mod provider;
pub mod ratelimit;
pub mod replay;
pub mod sse;
