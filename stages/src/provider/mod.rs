//! LLM provider streams, normalised into [`ProviderEvent`].

mod event;

pub use event::{Api, ProviderEvent, Status, Usage};
