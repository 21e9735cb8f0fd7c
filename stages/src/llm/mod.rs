//! The request stage: many LLM requests through one processor, under
//! concurrency and per-endpoint rate limits.
//!
//! [`RequestStage`] takes [`LlmRequest`]s and emits one [`LlmResult`] per
//! request (its final message, attempts, error); [`RequestStage::events`]
//! gives the pass-through form, [`EventStage`], which emits each request's
//! provider events tagged with its id ([`LlmEvent`]) before its result.
//!
//! * **Budgets.** At most [`concurrency`](RequestStage::concurrency)
//!   requests in flight; per endpoint (API and URL, see [`endpoint_key`]) a
//!   request bucket and a token bucket refilled continuously
//!   ([`limits`](RequestStage::limits),
//!   [`endpoint_limits`](RequestStage::endpoint_limits)). A request's token
//!   cost is estimated before it is sent
//!   ([`LlmRequest::estimated_tokens`]) and corrected from the usage
//!   reported after.
//! * **Demand.** The stage uses manual demand: it asks upstream only for
//!   as many requests as there are free slots and budget for, so input is
//!   read as capacity frees up and the requests held in the stage stay
//!   bounded by the concurrency.
//! * **Adaptation.** Every response's rate-limit headers (OpenAI
//!   `x-ratelimit-*`, Anthropic `anthropic-ratelimit-*`, `retry-after`,
//!   `retry-after-ms`) feed its endpoint's limiter: it starts at half the
//!   limit, grows while responses are clean, lowers a configured limit the
//!   headers contradict, and after a 429/529 blocks that endpoint alone for
//!   exactly as long as the server says. The pure logic lives in
//!   [`crate::ratelimit`].
//! * **Retries.** The stage retries failures before the first token (an
//!   HTTP or connection error, or a transient error event in the stream
//!   before any content, such as Anthropic's `overloaded_error` right after
//!   `message_start`) with its own
//!   [`retry_policy`](RequestStage::retry_policy) (5 attempts by default),
//!   so that every attempt waits for its endpoint's budget and backoff;
//!   attempts are counted per request. After the last attempt the
//!   request's result carries the error (a dead letter) and the run goes on.
//! * **Deadlines and cancellation.** [`LlmRequest::deadline`] (from
//!   arrival at the stage, waiting included) and [`LlmRequest::cancel_on`]
//!   apply per request; the pipeline's deadline and cancellation apply to
//!   all.
//!
//! # Example
//!
//! Ten requests against the embedded mock, the first two answered 429 with
//! `retry-after`:
//!
//! ```
//! use demandflow::{sink, Pipeline, Subscribe};
//! use demandflow_stages::llm::{LlmRequest, RequestStage};
//! use demandflow_stages::mock::{Behaviour, ErrorSpec, GenerateSpec, MockConfig, MockServer};
//! use demandflow_stages::provider::{Api, ProviderConfig};
//! use demandflow_stages::ratelimit::Limits;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = MockServer::start(
//!     MockConfig::default().default_behaviour(Behaviour::Generate(GenerateSpec::tokens(5))),
//! )
//! .await?;
//! let limited = ErrorSpec::for_api(Api::OpenAiChat, 429, "rate_limit_exceeded", "slow down")
//!     .header("retry-after-ms", "50");
//! server.script([Behaviour::Error(limited.clone()), Behaviour::Error(limited)]);
//!
//! let template = ProviderConfig::new(Api::OpenAiChat, &server.url())?.max_tokens(16);
//! let requests: Vec<LlmRequest> = (0..10)
//!     .map(|i| LlmRequest::new(format!("r{i}"), template.clone().prompt(format!("question {i}"))))
//!     .collect();
//!
//! let stage = RequestStage::new().concurrency(4).limits(Limits::none().rpm(6000.0));
//! let stats = stage.stats();
//! let mut p = Pipeline::new();
//! let input = p.producer("input", demandflow::source::iter(requests));
//! let llm = p.processor("llm", stage).subscribe(&input, Subscribe::default());
//! let (collect, results) = sink::collect();
//! p.consumer("out", collect).subscribe(&llm, Subscribe::default());
//! p.spawn()?.join().await?;
//!
//! let results = results.take();
//! assert_eq!(results.len(), 10);
//! assert!(results.iter().all(|r| r.is_success() && r.text().split_whitespace().count() == 5));
//! assert_eq!(results.iter().map(|r| r.attempts).sum::<u32>(), 12);
//! assert_eq!(stats.snapshot().rate_limited, 2);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod request;
mod result;
mod stage;

pub use request::{endpoint_key, LlmRequest, DEFAULT_OUTPUT_ESTIMATE};
pub use result::{LlmError, LlmEvent, LlmResult};
pub use stage::{EventStage, RequestStage, RequestStats, StatsSnapshot};
