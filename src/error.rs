//! Errors.

/// The error type user stage callbacks return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
