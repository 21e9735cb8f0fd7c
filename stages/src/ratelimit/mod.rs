//! Rate limits, as pure code: a continuously refilled [`TokenBucket`], the
//! providers' rate-limit headers read into one [`RateLimitSnapshot`], the
//! adaptive [`EndpointLimiter`] of one endpoint, and the [`Scheduler`] that
//! decides which waiting request goes next.
//!
//! Nothing here reads a clock or needs a runtime: every method takes the
//! time as an argument, so the behaviour is a function of its inputs and is
//! tested with simulated time (including property tests over random limits,
//! latencies and failures). The request stage
//! ([`crate::llm::RequestStage`]) drives it from tokio.
//!
//! # The model
//!
//! * Each endpoint (base URL and API) has a request bucket and a token
//!   bucket, refilled continuously at a fraction of its per-minute limits.
//!   A request's token cost is an estimate (input length plus `max_tokens`)
//!   taken before it is sent and corrected from the usage reported after.
//! * The fraction starts at one half and grows with every clean response;
//!   a lower limit reported by the headers replaces the configured one, a
//!   `remaining` caps the bucket.
//! * A 429 or 529 blocks that endpoint alone, for exactly as long as the
//!   server says (`retry-after-ms`, `retry-after`, else the reset of the
//!   limit reported exhausted), shrinks its fraction and empties its
//!   buckets, so sending resumes paced rather than in a burst.

mod bucket;
mod controller;
mod headers;
mod scheduler;

pub use bucket::TokenBucket;
pub use controller::{AdaptiveConfig, EndpointLimiter, Limits, Outcome};
pub use headers::{parse_go_duration, parse_rfc3339, RateLimitSnapshot, Window};
pub use scheduler::{Dispatch, Job, Scheduler, SchedulerConfig};
