//! An immutable registry of providers: id → how to build its configuration.
//!
//! Built once with [`RegistryBuilder`], then frozen. It holds no mutable
//! global state and no lock, so a panic anywhere (another task, another
//! thread, a stage being restarted) can never make a provider disappear
//! (invariant D8). Clones share the same frozen map.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::config::{default_base_url, ApiKey, ConfigError, ProviderConfig};
use super::http::ProviderProducer;
use super::{Api, ProviderError};

type Customize = Arc<dyn Fn(ProviderConfig) -> ProviderConfig + Send + Sync>;

/// One registered provider: the API it speaks, where, with which model and
/// key, plus an optional final touch to its configuration.
#[derive(Clone)]
pub struct ProviderEntry {
    id: Arc<str>,
    api: Api,
    base_url: String,
    model: Option<String>,
    key_env: Option<String>,
    customize: Option<Customize>,
}

impl fmt::Debug for ProviderEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEntry")
            .field("id", &self.id)
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("key_env", &self.key_env)
            .field("customized", &self.customize.is_some())
            .finish()
    }
}

impl ProviderEntry {
    /// A provider `id` speaking `api` at `base_url` (see
    /// [`endpoint_url`](super::endpoint_url) for the URL rules).
    pub fn new(id: &str, api: Api, base_url: &str) -> ProviderEntry {
        ProviderEntry {
            id: Arc::from(id),
            api,
            base_url: base_url.to_owned(),
            model: None,
            key_env: None,
            customize: None,
        }
    }

    /// Sets the model.
    pub fn model(mut self, model: &str) -> ProviderEntry {
        self.model = Some(model.to_owned());
        self
    }

    /// Reads the key from environment variable `var` when a configuration
    /// is built.
    pub fn key_env(mut self, var: &str) -> ProviderEntry {
        self.key_env = Some(var.to_owned());
        self
    }

    /// Applies `f` to every configuration built from this entry (headers,
    /// timeouts, retry policy, ...).
    pub fn customize(
        mut self,
        f: impl Fn(ProviderConfig) -> ProviderConfig + Send + Sync + 'static,
    ) -> ProviderEntry {
        self.customize = Some(Arc::new(f));
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The API.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A configuration at the entry's base URL.
    ///
    /// # Errors
    ///
    /// When the base URL is invalid.
    pub fn config(&self) -> Result<ProviderConfig, ConfigError> {
        self.config_at(&self.base_url)
    }

    /// A configuration at another base URL (the `--base-url` override).
    ///
    /// # Errors
    ///
    /// When `base_url` is invalid.
    pub fn config_at(&self, base_url: &str) -> Result<ProviderConfig, ConfigError> {
        let mut cfg = ProviderConfig::new(self.api, base_url)?;
        if let Some(m) = &self.model {
            cfg = cfg.model(m.as_str());
        }
        if let Some(key) = self.key_env.as_deref().and_then(ApiKey::from_env) {
            cfg = cfg.api_key(key);
        }
        if let Some(f) = &self.customize {
            cfg = f(cfg);
        }
        Ok(cfg)
    }
}

/// A look-up or construction through the registry failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No provider has this id.
    #[error("unknown provider `{0}`")]
    Unknown(String),
    /// The entry's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The producer could not be built.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// Collects entries; [`RegistryBuilder::build`] freezes them.
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    entries: BTreeMap<Arc<str>, ProviderEntry>,
}

impl RegistryBuilder {
    /// A builder with no entries.
    pub fn empty() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// A builder with the four built-in providers: `openai-responses`,
    /// `openai-chat` (key from `OPENAI_API_KEY`), `anthropic-messages`
    /// (key from `ANTHROPIC_API_KEY`) and `gemini` (key from
    /// `GEMINI_API_KEY`, the google-genai SDK's variable), at their public
    /// endpoints.
    pub fn with_builtins() -> RegistryBuilder {
        Api::ALL
            .into_iter()
            .fold(RegistryBuilder::empty(), |b, api| {
                let var = match api {
                    Api::AnthropicMessages => "ANTHROPIC_API_KEY",
                    Api::Gemini => "GEMINI_API_KEY",
                    _ => "OPENAI_API_KEY",
                };
                b.register(
                    ProviderEntry::new(api.as_str(), api, default_base_url(api)).key_env(var),
                )
            })
    }

    /// Adds `entry`, replacing any entry with the same id.
    pub fn register(mut self, entry: ProviderEntry) -> RegistryBuilder {
        self.entries.insert(entry.id.clone(), entry);
        self
    }

    /// Freezes the entries.
    pub fn build(self) -> ProviderRegistry {
        ProviderRegistry {
            entries: Arc::new(self.entries),
        }
    }
}

/// A frozen map from provider id to [`ProviderEntry`]. Cheap to clone and
/// share across threads.
///
/// ```
/// use demandflow_stages::provider::{Api, ProviderEntry, ProviderRegistry, RegistryBuilder};
///
/// let registry: ProviderRegistry = RegistryBuilder::with_builtins()
///     .register(ProviderEntry::new("local", Api::OpenAiChat, "http://127.0.0.1:8000/v1").model("llama"))
///     .build();
/// let cfg = registry.config("local").unwrap();
/// assert_eq!(cfg.endpoint().as_str(), "http://127.0.0.1:8000/v1/chat/completions");
/// assert!(registry.get("anthropic-messages").is_some());
/// assert!(registry.config("nope").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct ProviderRegistry {
    entries: Arc<BTreeMap<Arc<str>, ProviderEntry>>,
}

impl Default for ProviderRegistry {
    /// The built-in providers.
    fn default() -> Self {
        RegistryBuilder::with_builtins().build()
    }
}

impl ProviderRegistry {
    /// The entry for `id`.
    pub fn get(&self, id: &str) -> Option<&ProviderEntry> {
        self.entries.get(id)
    }

    /// Every id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| &**k)
    }

    /// The configuration of `id` at its base URL.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Unknown`] or an invalid entry.
    pub fn config(&self, id: &str) -> Result<ProviderConfig, RegistryError> {
        let entry = self
            .get(id)
            .ok_or_else(|| RegistryError::Unknown(id.to_owned()))?;
        Ok(entry.config()?)
    }

    /// A producer for `id`, its configuration passed through `f` first
    /// (prompt, key, timeouts).
    ///
    /// # Errors
    ///
    /// As [`ProviderRegistry::config`], or when the HTTP client cannot be
    /// built.
    pub fn producer(
        &self,
        id: &str,
        f: impl FnOnce(ProviderConfig) -> ProviderConfig,
    ) -> Result<ProviderProducer, RegistryError> {
        let cfg = f(self.config(id)?);
        Ok(ProviderProducer::new(cfg)?)
    }
}
