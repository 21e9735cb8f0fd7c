//! [`LlmRequest`]: one request for the request stage.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use demandflow::CancelScope;
use serde_json::Value;

use crate::provider::{Api, ConfigError, ProviderConfig};

/// Output tokens assumed for a body that names no limit (for the token
/// estimate only; the usage reported corrects it).
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

/// One request for the [`RequestStage`](super::RequestStage): an id, the
/// provider configuration that makes the call (endpoint, key, body,
/// timeouts), and optionally a deadline, a cancellation scope and a token
/// estimate.
///
/// The configuration's own retry policy is not used: the stage retries
/// itself, so that every attempt passes its endpoint's budgets (see the
/// module docs).
///
/// ```
/// use std::time::Duration;
/// use demandflow_stages::llm::LlmRequest;
/// use demandflow_stages::provider::{Api, ProviderConfig};
///
/// // From a configuration:
/// let cfg = ProviderConfig::new(Api::AnthropicMessages, "http://127.0.0.1:9")
///     .unwrap()
///     .max_tokens(100)
///     .prompt("Say hi");
/// let a = LlmRequest::new("a", cfg).deadline(Duration::from_secs(30));
/// assert!(a.estimated_tokens() > 100);
///
/// // From a body as the user would POST it (an OpenAI Batch line's `body`):
/// let body = serde_json::json!({
///     "model": "gpt-4o-mini",
///     "max_completion_tokens": 50,
///     "messages": [{"role": "user", "content": "Say hi"}],
/// });
/// let b = LlmRequest::from_body("b", Api::OpenAiChat, "http://127.0.0.1:9", body).unwrap();
/// assert_eq!(b.config().request_body()["stream"], true);
/// assert_eq!(b.config().model_name(), "gpt-4o-mini");
/// ```
#[derive(Clone)]
pub struct LlmRequest {
    id: Arc<str>,
    config: ProviderConfig,
    deadline: Option<Duration>,
    cancel: Option<CancelScope>,
    estimate: Option<u64>,
}

impl fmt::Debug for LlmRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmRequest")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("deadline", &self.deadline)
            .field("cancellable", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

impl LlmRequest {
    /// A request made by `config` (its conversation and settings, or its
    /// [`raw_body`](ProviderConfig::raw_body)).
    pub fn new(id: impl Into<String>, config: ProviderConfig) -> LlmRequest {
        LlmRequest {
            id: Arc::from(id.into()),
            config,
            deadline: None,
            cancel: None,
            estimate: None,
        }
    }

    /// A request sending `body` (a JSON object: a Chat or Responses body,
    /// an Anthropic Messages `params` body, a Gemini body) to `api` at
    /// `base_url`, with default timeouts and no key. Streaming is forced on;
    /// Chat also gets `stream_options.include_usage`.
    ///
    /// # Errors
    ///
    /// When `base_url` is not a usable base URL.
    pub fn from_body(
        id: impl Into<String>,
        api: Api,
        base_url: &str,
        body: Value,
    ) -> Result<LlmRequest, ConfigError> {
        let config = ProviderConfig::new(api, base_url)?;
        Ok(LlmRequest::with_template(id, &config, body))
    }

    /// A request sending `body` with everything else (endpoint, key,
    /// headers, timeouts) from `template`: the usual way to turn many
    /// input lines into requests.
    pub fn with_template(
        id: impl Into<String>,
        template: &ProviderConfig,
        body: Value,
    ) -> LlmRequest {
        LlmRequest::new(id, template.clone().raw_body(body))
    }

    /// Gives up on the request if it has not ended within `after` of
    /// reaching the stage (waiting for budget counts). The pipeline's
    /// deadline applies too; the earlier wins.
    pub fn deadline(mut self, after: Duration) -> LlmRequest {
        self.deadline = Some(after);
        self
    }

    /// Cancels the request when `scope` is cancelled: a waiting request
    /// ends at once, a running one as soon as its stream notices.
    pub fn cancel_on(mut self, scope: CancelScope) -> LlmRequest {
        self.cancel = Some(scope);
        self
    }

    /// Replaces the token estimate (see
    /// [`estimated_tokens`](Self::estimated_tokens)).
    pub fn estimate(mut self, tokens: u64) -> LlmRequest {
        self.estimate = Some(tokens);
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> Arc<str> {
        self.id.clone()
    }

    /// The provider configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The relative deadline, if set.
    pub fn deadline_after(&self) -> Option<Duration> {
        self.deadline
    }

    /// The cancellation scope, if set.
    pub fn cancel_scope(&self) -> Option<&CancelScope> {
        self.cancel.as_ref()
    }

    /// The endpoint whose budgets the request spends; see [`endpoint_key`].
    pub fn endpoint_key(&self) -> String {
        endpoint_key(&self.config)
    }

    /// The tokens the request is expected to cost, charged to its
    /// endpoint's token budget before it is sent: the input's length in
    /// characters divided by four (the request body's, a rough count that
    /// errs high for JSON) plus the output limit the body names
    /// (`max_tokens`, `max_completion_tokens`, `max_output_tokens`,
    /// `generationConfig.maxOutputTokens`; [`DEFAULT_OUTPUT_ESTIMATE`] when
    /// none). Replaced by [`estimate`](Self::estimate) when set.
    pub fn estimated_tokens(&self) -> u64 {
        if let Some(e) = self.estimate {
            return e;
        }
        let body = self.config.request_body();
        let chars = serde_json::to_string(&body).map_or(0, |s| s.chars().count()) as u64;
        chars.div_ceil(4) + output_limit(&body).unwrap_or(DEFAULT_OUTPUT_ESTIMATE)
    }
}

fn output_limit(body: &Value) -> Option<u64> {
    ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(k).and_then(Value::as_u64))
        .or_else(|| body.pointer("/generationConfig/maxOutputTokens")?.as_u64())
}

/// The key under which a configuration's endpoint has its budgets: the API
/// and the request URL (so two base URLs, or two APIs on one host, are
/// limited independently; for Gemini, whose URL names the model, each
/// model is).
///
/// ```
/// use demandflow_stages::llm::endpoint_key;
/// use demandflow_stages::provider::{Api, ProviderConfig};
///
/// let cfg = ProviderConfig::new(Api::OpenAiChat, "http://127.0.0.1:9").unwrap();
/// assert_eq!(endpoint_key(&cfg), "openai-chat http://127.0.0.1:9/v1/chat/completions");
/// ```
pub fn endpoint_key(config: &ProviderConfig) -> String {
    format!("{} {}", config.api(), config.endpoint())
}
