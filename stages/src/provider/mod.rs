//! LLM provider streams, normalised into [`ProviderEvent`].

mod config;
mod error;
mod event;
mod http;
mod message;
mod parse;
mod registry;
mod request;
mod retry;

pub use config::{default_base_url, endpoint_url, ApiKey, ConfigError, ProviderConfig, Timeouts};
pub use error::{ErrorClass, ProviderError, TimeoutKind};
pub use event::{Api, ProviderEvent, Status, ToolKind, Usage};
pub use http::{http_client, Observed, ProviderProducer, ProviderStream};
pub use message::{
    final_messages, Citation, FinalMessage, FinalMessageSlot, FinalMessages, MessageBuilder,
    Reasoning, ServerTool, StreamError, ToolArgumentsError, ToolCall,
};
pub use parse::{DecodeError, DecodeErrorKind, ParseApiError, ProviderDecoder};
pub use registry::{ProviderEntry, ProviderRegistry, RegistryBuilder, RegistryError};
pub use request::{Image, Message, Part, ReasoningConfig, Role, Tool, ToolChoice};
pub use retry::{
    backoff_delay, server_hint, should_retry_status, Decision, ExponentialBackoff, Failure, GiveUp,
    Jitter, RetryInput, RetryPolicy,
};
