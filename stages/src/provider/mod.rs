//! LLM provider streams, normalised into [`ProviderEvent`].

mod event;
mod parse;

pub use event::{Api, ProviderEvent, Status, Usage};
pub use parse::{DecodeError, DecodeErrorKind, ParseApiError, ProviderDecoder};
