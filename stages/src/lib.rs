//! Ready-made demandflow stages: the SSE decoder, LLM provider producers,
//! the embedded mock provider and the `demandflow` binary.

pub mod mock;
#[cfg(feature = "nats")]
pub mod nats;
pub mod provider;
pub mod replay;
pub mod sse;
