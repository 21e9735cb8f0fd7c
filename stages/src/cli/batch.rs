//! `demandflow batch`'s flags. The run itself is built from
//! `demandflow_stages::batch` (the files) and the request stage.

use std::path::PathBuf;
use std::time::Duration;

use demandflow_stages::provider::Api;

/// Sends every request of a JSONL file through the rate-limited request
/// stage and writes one result line per request; `docs/llm-batch.md`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub(crate) struct BatchArgs {
    /// The API of the requests: openai-responses, openai-chat or
    /// anthropic-messages. Default: the API of the first valid line (an
    /// OpenAI line's url names it; an Anthropic line is
    /// anthropic-messages). Lines for another API are reported as invalid.
    #[arg(long, value_name = "API", value_parser = parse_api)]
    pub(crate) api: Option<Api>,

    /// Scheme, host, port and optional path prefix of the provider; the
    /// API's path (/v1/chat/completions, /v1/responses, /v1/messages) is
    /// appended.
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: String,

    /// The requests: OpenAI Batch API lines
    /// ({"custom_id","method","url","body"}) or Anthropic Message Batches
    /// lines ({"custom_id","params"}), one per line. Read as a stream.
    #[arg(long, value_name = "FILE")]
    pub(crate) input: PathBuf,

    /// The results, one JSON line per input line; failures are also
    /// written to <FILE>.failed.jsonl. Must be empty or missing unless
    /// --resume is given.
    #[arg(long, value_name = "FILE")]
    pub(crate) output: PathBuf,

    /// Requests per minute the provider allows; default: learnt from its
    /// rate-limit headers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rpm: Option<u64>,

    /// Tokens per minute the provider allows (input estimate plus
    /// max_tokens per request); default: learnt from its rate-limit
    /// headers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) tpm: Option<u64>,

    /// Requests in flight at most.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: u32,

    /// Carry on an interrupted run: skip every request whose result is
    /// already in --output (a torn last line is removed first).
    #[arg(long)]
    pub(crate) resume: bool,

    /// Print the final summary as one JSON line on stdout
    /// ({"summary":{...}}) instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// Add the provider's raw final body to each result line ("raw").
    #[arg(long)]
    pub(crate) raw: bool,

    /// Attempts per request, the first included; retries happen only
    /// before the first token. After the last, the result is "failed".
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_attempts: u32,

    /// After Ctrl-C, how long in-flight requests may take to finish
    /// (e.g. 10s, 500ms, 2m); then they are cancelled and left out of the
    /// output, so --resume sends them again.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) grace: Duration,

    /// The environment variable holding the API key. Default:
    /// OPENAI_API_KEY or ANTHROPIC_API_KEY by API (a placeholder is sent
    /// when unset, for local servers).
    #[arg(long, value_name = "VAR")]
    pub(crate) api_key_env: Option<String>,

    /// Serve a live page of the run's pipeline (read → llm → write, coloured
    /// by backpressure) on ADDR, e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    pub(crate) dashboard: Option<std::net::SocketAddr>,
}

impl BatchArgs {
    /// The variable the key is read from for `api`: --api-key-env, or the
    /// one `demandflow stream` uses.
    pub(crate) fn key_var(&self, api: Api) -> &str {
        match (&self.api_key_env, api) {
            (Some(var), _) => var,
            (None, Api::AnthropicMessages) => "ANTHROPIC_API_KEY",
            (None, Api::Gemini) => "GEMINI_API_KEY",
            (None, _) => "OPENAI_API_KEY",
        }
    }
}

/// `--api`: the APIs that have a batch line format (not gemini).
fn parse_api(s: &str) -> Result<Api, String> {
    match s.parse::<Api>().map_err(|e| e.to_string())? {
        Api::Gemini => Err("gemini has no batch line format here; use openai-responses, openai-chat or anthropic-messages".into()),
        api => Ok(api),
    }
}

/// A duration: a whole number and a unit, `ms`, `s`, `m` or `h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s, 500ms or 2m"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("`{s}`: the unit must be ms, s, m or h")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long"))
}
