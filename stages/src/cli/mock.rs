//! `demandflow mock`: the embedded mock provider as a standalone server
//! (DESIGN.md §9), for applications and official SDKs to point at.
//!
//! The first line on stdout is the base URL it listens on, alone, so a
//! script can read it; the server then runs until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use demandflow_stages::mock::{
    Behaviour, ErrorSpec, Fault, GenerateSpec, MockConfig, MockServer, Pace, RateLimits, ReplaySpec,
};
use demandflow_stages::provider::Api;

use super::args;

/// Run the embedded mock provider as a server until Ctrl-C.
///
/// It serves the OpenAI Responses (/v1/responses), OpenAI Chat Completions
/// (/v1/chat/completions), Anthropic Messages (/v1/messages) and Gemini
/// (/v1beta/models/MODEL:streamGenerateContent) streaming APIs on the same
/// port. The first line on stdout is the base URL to point an application or
/// an official SDK at (e.g. http://127.0.0.1:40123); the rest goes to
/// stderr.
///
/// A request can still choose its own behaviour with an x-mock-behaviour
/// JSON header.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 after Ctrl-C, 1 when the address cannot be bound, \
2 usage error."
)]
pub(crate) struct MockArgs {
    /// Where to listen (default: loopback, a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// What every request gets: `generate` (a generated answer in the API's
    /// format: a call to the first offered tool, text naming a tool result,
    /// reasoning first when the request asks for it), `replay FILE` (an .sse
    /// transcript, byte for byte), `error:STATUS` (an HTTP error in the API's
    /// error shape: 529 Anthropic overload, 429, 500, ...) or `{JSON}` (any
    /// behaviour as JSON, as the x-mock-behaviour request header)
    #[arg(long, value_name = "B", default_value = "generate")]
    behaviour: String,
    /// The transcript of `--behaviour replay`
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Tokens of a generated answer (the request's max tokens cuts it with
    /// the API's length ending)
    #[arg(long, value_name = "N", default_value_t = 64)]
    tokens: u64,
    /// Replay the transcript in chunks of N bytes
    #[arg(long, value_name = "N", value_parser = args::positive::<usize>)]
    chunk: Option<usize>,
    /// stall:N | truncate:N | abort:N | error:N: after N events (generate)
    /// or chunks (replay), stop sending and hold the connection, end the body
    /// without a terminal event, reset the connection, or send the API's
    /// in-stream error event
    #[arg(long, value_name = "F", value_parser = fault)]
    fault: Option<Fault>,
    /// Delay between events (or replay chunks), in ms
    #[arg(long, value_name = "MS", default_value = "0", value_parser = args::millis)]
    pacing: Duration,
    /// Delay after the headers, before the first event, in ms
    #[arg(long = "first-event-delay-ms", value_name = "MS", default_value = "0", value_parser = args::millis)]
    first_event_delay: Duration,
    /// Require this key (Authorization: Bearer, x-api-key); 401 otherwise
    #[arg(long = "api-key", value_name = "KEY")]
    api_key: Option<String>,
    /// Enforce a requests-per-minute limit (with --tpm): token buckets per
    /// API key, the API's rate-limit headers on every answer, 429 with
    /// retry-after when a bucket is empty
    #[arg(long, value_name = "N", requires = "tpm", value_parser = args::positive::<u64>)]
    rpm: Option<u64>,
    /// Enforce a tokens-per-minute limit (with --rpm); a request costs its
    /// input (text length / 4) plus its max tokens
    #[arg(long, value_name = "N", requires = "rpm", value_parser = args::positive::<u64>)]
    tpm: Option<u64>,
    /// Anthropic's separate input-tokens-per-minute limit (default: --tpm)
    #[arg(long, value_name = "N", requires = "rpm", value_parser = args::positive::<u64>)]
    itpm: Option<u64>,
    /// Anthropic's separate output-tokens-per-minute limit (default: --tpm)
    #[arg(long, value_name = "N", requires = "rpm", value_parser = args::positive::<u64>)]
    otpm: Option<u64>,
    /// How much of a minute's limit may arrive at once, in ms (the buckets'
    /// capacity); OpenAI enforces per-minute limits over shorter periods
    #[arg(long = "burst-ms", value_name = "MS", requires = "rpm", value_parser = args::positive_millis)]
    burst: Option<Duration>,
    /// The max tokens charged for a request that names none
    #[arg(long = "default-max-tokens", value_name = "N", requires = "rpm", value_parser = args::positive::<u64>)]
    default_max_tokens: Option<u64>,
    /// Answer every Nth request as overloaded (Anthropic 529, 503 elsewhere;
    /// with --rpm)
    #[arg(long = "overload-every", value_name = "N", requires = "rpm", value_parser = args::positive::<u64>)]
    overload_every: Option<u64>,
    /// Also send retry-after-ms on a 429
    #[arg(long = "retry-after-ms", requires = "rpm")]
    retry_after_ms: bool,
    /// A generated answer is exactly the request's max tokens long (so the
    /// usage it reports equals what the limits charged)
    #[arg(long = "fill-max-tokens")]
    fill_max_tokens: bool,
    /// Keep only the first N request records in memory (counts go on): for
    /// long load runs
    #[arg(long = "max-records", value_name = "N")]
    max_records: Option<usize>,
}

#[derive(Debug)]
struct Options {
    config: MockConfig,
}

/// Checks what clap cannot check alone (the behaviour and its file).
fn options(a: MockArgs) -> Result<Options, String> {
    let pace = Pace::trickle(a.pacing).first_event_delay(a.first_event_delay);
    let behaviour = behaviour(&a, pace)?;
    let mut config = MockConfig::default()
        .addr(a.addr)
        .default_behaviour(behaviour);
    if let Some(key) = &a.api_key {
        config = config.api_key(key.as_str());
    }
    if let Some(limits) = rate_limits(&a) {
        config = config.rate_limits(limits);
    }
    if let Some(n) = a.max_records {
        config = config.max_records(n);
    }
    Ok(Options { config })
}

/// The rate-limit mode, when `--rpm` and `--tpm` ask for it (clap's
/// `requires` ties the other limit flags to them).
fn rate_limits(a: &MockArgs) -> Option<RateLimits> {
    let (Some(rpm), Some(tpm)) = (a.rpm, a.tpm) else {
        return None;
    };
    let mut limits = RateLimits::per_minute(rpm, tpm);
    if a.itpm.is_some() || a.otpm.is_some() {
        limits = limits.input_output_per_minute(a.itpm.unwrap_or(tpm), a.otpm.unwrap_or(tpm));
    }
    if let Some(b) = a.burst {
        limits = limits.burst(b);
    }
    if let Some(n) = a.default_max_tokens {
        limits = limits.default_max_tokens(n);
    }
    if let Some(n) = a.overload_every {
        limits = limits.overload_every(n);
    }
    Some(limits.retry_after_ms(a.retry_after_ms))
}

fn behaviour(a: &MockArgs, pace: Pace) -> Result<Behaviour, String> {
    let name = a.behaviour.as_str();
    let mut file = a.file.as_ref();
    let behaviour = if name.starts_with('{') {
        serde_json::from_str(name).map_err(|e| format!("invalid --behaviour JSON: {e}"))?
    } else if name == "generate" {
        let mut spec = GenerateSpec::tokens(a.tokens).pace(pace);
        if a.fill_max_tokens {
            spec = spec.fill_max_tokens();
        }
        if let Some(f) = &a.fault {
            spec = spec.fault(f.clone());
        }
        Behaviour::Generate(spec)
    } else if name == "replay" {
        let path = file
            .take()
            .ok_or("--behaviour replay needs a transcript FILE")?;
        if !path.is_file() {
            return Err(format!("cannot read transcript '{}'", path.display()));
        }
        let mut spec = ReplaySpec::file(path.clone()).pace(pace);
        if let Some(n) = a.chunk {
            spec = spec.chunk_bytes(n);
        }
        if let Some(f) = &a.fault {
            spec = spec.fault(f.clone());
        }
        Behaviour::Replay(spec)
    } else if let Some(status) = name.strip_prefix("error:") {
        let status: u16 = status
            .parse()
            .ok()
            .filter(|s| (400..600).contains(s))
            .ok_or_else(|| {
                format!("invalid --behaviour '{name}': error:STATUS needs a 4xx or 5xx status")
            })?;
        let spec = match status {
            529 => ErrorSpec::anthropic(529, "overloaded_error", "Overloaded"),
            429 => ErrorSpec::openai(
                429,
                "requests",
                Some("rate_limit_exceeded"),
                "Rate limit reached",
            )
            .header("retry-after", "1"),
            s => ErrorSpec::for_api(Api::OpenAiChat, s, "mock_error", "mock error"),
        };
        Behaviour::Error(spec)
    } else {
        return Err(format!(
            "invalid --behaviour '{name}' (generate, replay FILE, error:STATUS or JSON)"
        ));
    };
    if let Some(extra) = file {
        return Err(format!(
            "unexpected argument '{}': only --behaviour replay takes a FILE",
            extra.display()
        ));
    }
    Ok(behaviour)
}

/// `stall:N`, `truncate:N`, `abort:N` or `error:N`.
fn fault(text: &str) -> Result<Fault, String> {
    let bad = || "expects stall:N, truncate:N, abort:N or error:N".to_owned();
    let (kind, n) = text.split_once(':').ok_or_else(bad)?;
    let after: u64 = n.parse().map_err(|_| bad())?;
    Ok(match kind {
        "stall" => Fault::Stall { after },
        "truncate" => Fault::Truncate { after },
        "abort" => Fault::Abort { after },
        "error" => Fault::ErrorEvent {
            after,
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
        },
        _ => return Err(bad()),
    })
}

/// Runs the subcommand.
pub(crate) fn run(args: MockArgs) -> i32 {
    super::run_async("mock", options(args), serve)
}

async fn serve(o: Options) -> Result<i32, String> {
    let addr = o.config.addr;
    let server = MockServer::start(o.config)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // The URL is what a script reads: without it the server is of no use.
    let printed = {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.url()).and_then(|()| out.flush())
    };
    if let Err(e) = printed {
        server.shutdown().await;
        return Err(format!("cannot print the URL on stdout: {e}"));
    }
    errln!(
        "demandflow mock: serving {} /v1/responses, /v1/chat/completions, /v1/messages, /v1beta/models/MODEL:streamGenerateContent until Ctrl-C",
        server.url()
    );
    super::interrupted().await;
    let requests = server.total_requests();
    server.shutdown().await;
    errln!("demandflow mock: stopped after {requests} requests");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options of `demandflow mock ARGS`, or the error's text.
    fn options_of(list: &[&str]) -> Result<Options, String> {
        use clap::Parser;
        let argv = ["demandflow", "mock"].iter().chain(list);
        match super::super::Cli::try_parse_from(argv).map_err(|e| e.to_string())? {
            super::super::Cli {
                command: super::super::Command::Mock(a),
            } => options(a),
            other => panic!("not mock: {other:?}"),
        }
    }

    #[test]
    fn behaviours_faults_and_pacing_parse() {
        let o = options_of(&[
            "--addr",
            "127.0.0.1:0",
            "--tokens",
            "5",
            "--fault",
            "stall:3",
            "--pacing",
            "20",
        ])
        .unwrap();
        let Behaviour::Generate(spec) = o.config.default_behaviour else {
            panic!("generate expected");
        };
        assert_eq!(spec.tokens, Some(5));
        assert_eq!(spec.fault, Some(Fault::Stall { after: 3 }));
        assert_eq!(spec.pace.event_delay, Duration::from_millis(20));
        let o = options_of(&["--behaviour", "error:529"]).unwrap();
        assert!(matches!(o.config.default_behaviour, Behaviour::Error(ref e) if e.status == 529));
        let json = r#"{"kind":"generate","tokens":2}"#;
        let o = options_of(&["--behaviour", json]).unwrap();
        assert!(matches!(o.config.default_behaviour, Behaviour::Generate(_)));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        for bad in [
            &["--behaviour", "dance"][..],
            &["--behaviour", "replay"],
            &["--behaviour", "replay", "/nonexistent/x.sse"],
            &["--behaviour", "error:200"],
            &["--fault", "explode:1"],
            &["--fault", "stall"],
            &["--addr", "nowhere"],
            &["stray"],
        ] {
            let e = options_of(bad).unwrap_err();
            assert!(e.contains(bad[bad.len() - 1]), "{bad:?}: {e}");
        }
    }
}
