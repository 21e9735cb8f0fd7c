//! What a provider request is made of: endpoint, key, model, prompt,
//! timeouts and retry policy, and the request each API expects.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE};
use reqwest::Url;
use serde_json::Value;

use super::request::{Message, ReasoningConfig, RequestSpec, Tool, ToolChoice};
use super::retry::{ExponentialBackoff, RetryPolicy};
use super::Api;
use crate::sse::DEFAULT_MAX_EVENT_BYTES;

/// An API key. Its `Debug` never shows it and it has no `Display`; read it
/// with [`ApiKey::expose`] only to put it in a header.
///
/// ```
/// use demandflow_stages::provider::ApiKey;
///
/// let key = ApiKey::new("sk-very-secret");
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
/// assert_eq!(key.expose(), "sk-very-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl AsRef<str>) -> ApiKey {
        ApiKey(Arc::from(key.as_ref()))
    }

    /// Reads the key from environment variable `var`, if set and not empty.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var)
            .ok()
            .filter(|k| !k.is_empty())
            .map(ApiKey::new)
    }

    /// The key itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> ApiKey {
        ApiKey::new(s)
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> ApiKey {
        ApiKey::new(s)
    }
}

/// A configuration that cannot make a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL is not usable.
    #[error("invalid base url `{url}`: {reason}")]
    BaseUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The key cannot be sent in an HTTP header (control characters).
    #[error("the api key contains characters not allowed in an HTTP header")]
    InvalidKey,
    /// An extra header is not a valid header.
    #[error("invalid header `{0}`")]
    InvalidHeader(String),
}

/// Read timeouts of a provider request.
///
/// The defaults are chosen so that a server that never answers fails within
/// about half a minute with the default retry policy (two retries): a
/// server that never finishes its headers fails after
/// `3 × first_event + backoff` ≈ 31 s, not the 181 s of the earlier 60 s
/// default. Each that fires ends the stream [`Status::TimedOut`] with an
/// error of kind `connect_timeout`, `first_event_timeout`, `idle_timeout`
/// or `total_timeout`; the pipeline's deadline (`cx.deadline()`) ends it
/// [`Status::DeadlineExceeded`] instead, so the two can be told apart.
///
/// | timeout | default | counts | retried |
/// |---|---|---|---|
/// | `connect` | 5 s | TCP (and TLS) connect, per attempt | yes |
/// | `first_event` | 10 s | from sending a request to its first decoded event (headers included), per attempt | yes |
/// | `idle` | 60 s | once streaming, from the consumer asking for more to the next decoded event; bytes that complete no event (a trickle, comments, pings) do not reset it | no |
/// | `total` | none | the whole request from its first attempt, retries included | no |
///
/// Raise `first_event` for a server that holds its first event back while
/// a model thinks, and `idle` for long silent reasoning.
///
/// [`Status::TimedOut`]: super::Status::TimedOut
/// [`Status::DeadlineExceeded`]: super::Status::DeadlineExceeded
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Establishing the connection (default 5 s, as the SDKs).
    pub connect: Duration,
    /// From sending a request to its first decoded event, per attempt
    /// (default 10 s).
    pub first_event: Duration,
    /// Once streaming, the longest wait for the next decoded event while
    /// the consumer asks for one (default 60 s). It starts when the
    /// producer asks for more, so a consumer that pauses never trips it;
    /// it counts complete events, not bytes, so a server trickling bytes
    /// that never complete an event cannot keep a stream alive.
    pub idle: Duration,
    /// The whole request, retries included (default none).
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_event: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            total: None,
        }
    }
}

impl Timeouts {
    /// Sets the connect timeout.
    pub fn connect(mut self, d: Duration) -> Self {
        self.connect = d;
        self
    }

    /// Sets the first-event timeout.
    pub fn first_event(mut self, d: Duration) -> Self {
        self.first_event = d;
        self
    }

    /// Sets the idle timeout.
    pub fn idle(mut self, d: Duration) -> Self {
        self.idle = d;
        self
    }

    /// Sets the total timeout.
    pub fn total(mut self, d: Duration) -> Self {
        self.total = Some(d);
        self
    }
}

/// Everything needed to make (and re-make, after a restart) one streaming
/// request. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use demandflow_stages::provider::{Api, ProviderConfig, Timeouts};
///
/// let cfg = ProviderConfig::new(Api::AnthropicMessages, "http://127.0.0.1:8080/v1")
///     .unwrap()
///     .api_key("sk-ant-secret")
///     .model("claude-sonnet-4-5")
///     .max_tokens(256)
///     .prompt("Say hi")
///     .timeouts(Timeouts::default().idle(Duration::from_secs(5)));
/// // No second `/v1`: the base already ends in it.
/// assert_eq!(cfg.endpoint().as_str(), "http://127.0.0.1:8080/v1/messages");
/// assert!(!format!("{cfg:?}").contains("sk-ant-secret"));
/// ```
#[derive(Clone)]
pub struct ProviderConfig {
    api: Api,
    base_url: Url,
    endpoint: Url,
    api_key: Option<ApiKey>,
    spec: RequestSpec,
    timeouts: Timeouts,
    retry: Arc<dyn RetryPolicy>,
    max_event_bytes: usize,
    extra_headers: HeaderMap,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("api", &self.api)
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key)
            .field("model", &self.spec.model)
            .field("max_tokens", &self.spec.max_tokens)
            .field("messages", &self.spec.messages.len())
            .field("tools", &self.spec.tools.len())
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The public endpoint of each API.
pub fn default_base_url(api: Api) -> &'static str {
    match api {
        Api::AnthropicMessages => "https://api.anthropic.com",
        Api::Gemini => "https://generativelanguage.googleapis.com",
        _ => "https://api.openai.com/v1",
    }
}

fn default_model(api: Api) -> &'static str {
    match api {
        Api::AnthropicMessages => "claude-sonnet-4-5",
        Api::Gemini => "gemini-2.5-flash",
        _ => "gpt-4.1-mini",
    }
}

fn default_spec(api: Api) -> RequestSpec {
    RequestSpec {
        model: default_model(api).to_owned(),
        max_tokens: 1024,
        ..RequestSpec::default()
    }
}

/// `base` (scheme, host, port, optional path prefix) joined with the API's
/// standard path, without a second `/v1` when `base` already ends in `/v1`.
/// Gemini's path names the model: this gives the default model's
/// (`gemini-2.5-flash`) URL, with `?alt=sse`; a [`ProviderConfig`] follows
/// its own model.
///
/// ```
/// use demandflow_stages::provider::{endpoint_url, Api};
///
/// let url = |b| endpoint_url(Api::OpenAiChat, b).unwrap().to_string();
/// assert_eq!(url("http://localhost:8000"), "http://localhost:8000/v1/chat/completions");
/// assert_eq!(url("http://localhost:8000/v1/"), "http://localhost:8000/v1/chat/completions");
/// assert_eq!(url("https://gw.example/openai"), "https://gw.example/openai/v1/chat/completions");
/// assert!(endpoint_url(Api::OpenAiChat, "ftp://x").is_err());
/// ```
///
/// # Errors
///
/// When `base` does not parse, is not http(s), has no host, or carries
/// credentials, a query or a fragment.
pub fn endpoint_url(api: Api, base: &str) -> Result<Url, ConfigError> {
    let base = parse_base(base)?;
    Ok(join_endpoint(api, &base, default_model(api)))
}

fn parse_base(base: &str) -> Result<Url, ConfigError> {
    let err = |url: &str, reason: &str| ConfigError::BaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(base.trim()).map_err(|e| {
        // The string may hold credentials; name only what parsing said.
        err("<unparsable>", &e.to_string())
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(err(
            shown.as_str(),
            "credentials in the URL are not allowed; use an api key",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(url.as_str(), "scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err(url.as_str(), "no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(url.as_str(), "query and fragment are not allowed"));
    }
    Ok(url)
}

fn join_endpoint(api: Api, base: &Url, model: &str) -> Url {
    let prefix = base.path().trim_end_matches('/');
    if api == Api::Gemini {
        // `/v1beta` is the version the SDK uses; a base that already names
        // a version (`…/v1beta`, `…/v1`) keeps it. The model is one path
        // segment: `/` and `?` in a model name must not escape it.
        let versioned = prefix.ends_with("/v1beta") || prefix.ends_with("/v1");
        let version = if versioned { "" } else { "/v1beta" };
        let mut url = base.clone();
        url.set_path(&format!("{prefix}{version}/models/"));
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop()
                .push(&format!("{model}:streamGenerateContent"));
        }
        url.set_query(Some("alt=sse"));
        return url;
    }
    let path = api.path();
    let joined = match path.strip_prefix("/v1") {
        Some(rest) if prefix.ends_with("/v1") => format!("{prefix}{rest}"),
        _ => format!("{prefix}{path}"),
    };
    let mut url = base.clone();
    url.set_path(&joined);
    url
}

impl ProviderConfig {
    /// A configuration for `api` at `base_url` with default model, 1024 max
    /// tokens, default timeouts and the SDKs' retry policy.
    ///
    /// # Errors
    ///
    /// See [`endpoint_url`].
    pub fn new(api: Api, base_url: &str) -> Result<ProviderConfig, ConfigError> {
        let base_url = parse_base(base_url)?;
        Ok(ProviderConfig {
            api,
            endpoint: join_endpoint(api, &base_url, default_model(api)),
            base_url,
            api_key: None,
            spec: default_spec(api),
            timeouts: Timeouts::default(),
            retry: Arc::new(ExponentialBackoff::default()),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            extra_headers: HeaderMap::new(),
        })
    }

    /// A configuration for `api` at its public endpoint.
    pub fn official(api: Api) -> ProviderConfig {
        // The constant URLs always parse; fall back to a rebuilt value
        // rather than panicking if that ever changed.
        ProviderConfig::new(api, default_base_url(api)).unwrap_or_else(|_| {
            let url = Url::parse("https://invalid.invalid").expect("constant URL parses");
            ProviderConfig {
                api,
                endpoint: join_endpoint(api, &url, default_model(api)),
                base_url: url,
                api_key: None,
                spec: default_spec(api),
                timeouts: Timeouts::default(),
                retry: Arc::new(ExponentialBackoff::default()),
                max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
                extra_headers: HeaderMap::new(),
            }
        })
    }

    /// Replaces the base URL.
    ///
    /// # Errors
    ///
    /// See [`endpoint_url`].
    pub fn base_url(mut self, base_url: &str) -> Result<ProviderConfig, ConfigError> {
        self.base_url = parse_base(base_url)?;
        self.endpoint = join_endpoint(self.api, &self.base_url, &self.spec.model);
        Ok(self)
    }

    /// Sets the key.
    pub fn api_key(mut self, key: impl Into<ApiKey>) -> ProviderConfig {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the model (for Gemini, also the endpoint, whose path names it).
    pub fn model(mut self, model: impl Into<String>) -> ProviderConfig {
        self.spec.model = model.into();
        self.endpoint = join_endpoint(self.api, &self.base_url, &self.spec.model);
        self
    }

    /// Sets the output token limit.
    pub fn max_tokens(mut self, n: u32) -> ProviderConfig {
        self.spec.max_tokens = n;
        self
    }

    /// Replaces the tools the model may call.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Tool>) -> ProviderConfig {
        self.spec.tools = tools.into_iter().collect();
        self
    }

    /// Sets whether and which tool the model must call.
    pub fn tool_choice(mut self, choice: ToolChoice) -> ProviderConfig {
        self.spec.tool_choice = Some(choice);
        self
    }

    /// Sets the sampling temperature.
    pub fn temperature(mut self, t: f64) -> ProviderConfig {
        self.spec.temperature = Some(t);
        self
    }

    /// Sets nucleus sampling's `top_p`.
    pub fn top_p(mut self, p: f64) -> ProviderConfig {
        self.spec.top_p = Some(p);
        self
    }

    /// Sets the stop sequences (Anthropic `stop_sequences`, Chat `stop`;
    /// the Responses API has none and ignores them).
    pub fn stop(mut self, stop: impl IntoIterator<Item = impl Into<String>>) -> ProviderConfig {
        self.spec.stop = stop.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the reasoning settings (each API takes the one it has; see
    /// [`ReasoningConfig`]).
    pub fn reasoning(mut self, reasoning: ReasoningConfig) -> ProviderConfig {
        self.spec.reasoning = reasoning;
        self
    }

    /// Merges `extra` (a JSON object) into every request body: objects
    /// merge key by key, other values replace, `null` removes a key. The
    /// escape hatch for fields this crate does not model.
    ///
    /// ```
    /// use demandflow_stages::provider::{Api, ProviderConfig};
    ///
    /// let cfg = ProviderConfig::official(Api::OpenAiChat)
    ///     .extra_body(serde_json::json!({"seed": 7, "stream_options": {"include_obfuscation": false}}));
    /// let body = cfg.request_body();
    /// assert_eq!(body["seed"], 7);
    /// assert_eq!(body["stream_options"], serde_json::json!({"include_usage": true, "include_obfuscation": false}));
    /// ```
    pub fn extra_body(mut self, extra: serde_json::Value) -> ProviderConfig {
        if let serde_json::Value::Object(map) = extra {
            self.spec.extra = map;
        }
        self
    }

    /// Sends `body` (a JSON object, as the API's own clients would POST it:
    /// a Chat or Responses body, an Anthropic Messages body, a Gemini
    /// `generateContent` body) instead of one built from this
    /// configuration's conversation and settings. Streaming is forced on,
    /// Chat also gets `stream_options.include_usage`, and
    /// [`extra_body`](Self::extra_body) still merges in. A string `model`
    /// in it becomes this configuration's model (for Gemini, the path's).
    /// Anything but an object is ignored.
    ///
    /// ```
    /// use demandflow_stages::provider::{Api, ProviderConfig};
    ///
    /// let body = serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    /// let cfg = ProviderConfig::official(Api::OpenAiChat).raw_body(body);
    /// let sent = cfg.request_body();
    /// assert_eq!(sent["stream"], true);
    /// assert_eq!(sent["stream_options"]["include_usage"], true);
    /// assert_eq!(cfg.model_name(), "gpt-4o");
    /// ```
    pub fn raw_body(mut self, body: serde_json::Value) -> ProviderConfig {
        let serde_json::Value::Object(map) = body else {
            return self;
        };
        if let Some(model) = map.get("model").and_then(|m| m.as_str()) {
            let model = model.to_owned();
            self = self.model(model);
        }
        self.spec.raw = Some(map);
        self
    }

    /// Sets the system prompt (Responses `instructions`, Anthropic `system`,
    /// a Chat `system` message).
    pub fn system(mut self, system: impl Into<String>) -> ProviderConfig {
        self.spec.system = Some(system.into());
        self
    }

    /// Replaces the conversation with one user message.
    pub fn prompt(mut self, prompt: impl Into<String>) -> ProviderConfig {
        self.spec.messages = vec![Message::user(prompt)];
        self
    }

    /// Replaces the conversation.
    pub fn messages(mut self, messages: impl IntoIterator<Item = Message>) -> ProviderConfig {
        self.spec.messages = messages.into_iter().collect();
        self
    }

    /// Sets the timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> ProviderConfig {
        self.timeouts = timeouts;
        self
    }

    /// Sets the retry policy.
    pub fn retry_policy(mut self, policy: impl RetryPolicy) -> ProviderConfig {
        self.retry = Arc::new(policy);
        self
    }

    /// Sets the decoder's cap on one SSE line or event.
    pub fn max_event_bytes(mut self, max: usize) -> ProviderConfig {
        self.max_event_bytes = max;
        self
    }

    /// Adds a header sent with every request.
    ///
    /// # Errors
    ///
    /// When the name or value is not a valid header.
    pub fn header(mut self, name: &str, value: &str) -> Result<ProviderConfig, ConfigError> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::InvalidHeader(name.to_owned()))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| ConfigError::InvalidHeader(name.to_owned()))?;
        self.extra_headers.append(n, v);
        Ok(self)
    }

    /// The API.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The full request URL.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&ApiKey> {
        self.api_key.as_ref()
    }

    /// The model.
    pub fn model_name(&self) -> &str {
        &self.spec.model
    }

    /// The conversation.
    pub fn conversation(&self) -> &[Message] {
        &self.spec.messages
    }

    /// The timeouts.
    pub fn timeout_settings(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The retry policy.
    pub fn retry(&self) -> &dyn RetryPolicy {
        &*self.retry
    }

    /// The decoder's event cap.
    pub fn event_cap(&self) -> usize {
        self.max_event_bytes
    }

    /// Whether the endpoint is on this machine (no proxy can reach it).
    pub(crate) fn is_loopback(&self) -> bool {
        let host = self.endpoint.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The streaming request body in the API's format.
    ///
    /// ```
    /// use demandflow_stages::provider::{Api, ProviderConfig};
    ///
    /// let cfg = ProviderConfig::new(Api::OpenAiChat, "http://127.0.0.1:1").unwrap().prompt("hi");
    /// let body = cfg.request_body();
    /// assert_eq!(body["stream"], true);
    /// assert_eq!(body["stream_options"]["include_usage"], true);
    /// assert_eq!(body["messages"][0]["content"], "hi");
    /// ```
    pub fn request_body(&self) -> Value {
        self.spec.body(self.api)
    }

    /// The request headers: JSON in, SSE out, `Accept-Encoding: identity`
    /// (a compressed body is refused, not decompressed: see
    /// `docs/providers.md`, "Hostile servers"), and the API's auth
    /// (`Authorization: Bearer` for OpenAI, `x-api-key` plus
    /// `anthropic-version: 2023-06-01` for Anthropic, `x-goog-api-key` for
    /// Gemini). The key's header value is marked sensitive.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the key cannot be a header value.
    pub fn request_headers(&self) -> Result<HeaderMap, ConfigError> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if self.api == Api::AnthropicMessages {
            h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        if let Some(key) = &self.api_key {
            let (name, value) = match self.api {
                Api::AnthropicMessages => ("x-api-key", key.expose().to_owned()),
                Api::Gemini => ("x-goog-api-key", key.expose().to_owned()),
                _ => ("authorization", format!("Bearer {}", key.expose())),
            };
            let mut v = HeaderValue::from_str(&value).map_err(|_| ConfigError::InvalidKey)?;
            v.set_sensitive(true);
            h.insert(name, v);
        }
        for (k, v) in &self.extra_headers {
            h.append(k.clone(), v.clone());
        }
        Ok(h)
    }
}
