//! The operator's view of a running pipeline: how each stage spends its
//! time ([`Occupancy`], in `stats()`), spans and metrics. See
//! `docs/observability.md`.

pub(crate) mod occupancy;

pub use occupancy::Occupancy;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod span;
