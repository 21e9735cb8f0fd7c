//! Ready-made demandflow stages: the SSE decoder, LLM provider producers,
//! the embedded mock provider and the `demandflow` binary.

pub mod mock;
pub mod provider;
pub mod replay;
pub mod sse;
