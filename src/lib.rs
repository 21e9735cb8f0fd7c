//! demandflow: demand-driven streaming pipelines.
#![forbid(unsafe_code)]

pub mod cancel;
pub mod error;
pub(crate) mod loom;
pub mod push;
pub mod stage;

pub use cancel::{CancelCause, CancelGuard, CancelScope};
pub use error::BoxError;
pub use stage::{Consumer, Context, Emitter, Flow, Processor, Producer};
