//! The tokio driver: runs each stage's state machines as a task.

pub(crate) mod call;
pub(crate) mod driver;
pub(crate) mod edge;
pub(crate) mod group;
pub(crate) mod inputs;
pub(crate) mod late;
pub(crate) mod outputs;
pub(crate) mod sampler;
pub(crate) mod shared;
pub(crate) mod signal;
pub(crate) mod sync;
