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
    Behaviour, ErrorSpec, Fault, GenerateSpec, MockConfig, MockServer, Pace, ReplaySpec,
};
use demandflow_stages::provider::Api;

use super::args;

const HELP: &str = "\
usage: demandflow mock [--addr ADDR] [--behaviour B] [--tokens N] [--chunk N]
                       [--fault F] [--pacing MS] [--first-event-delay-ms MS]
                       [--api-key KEY]

Runs the embedded mock provider until Ctrl-C. It serves the OpenAI Responses
(/v1/responses), OpenAI Chat Completions (/v1/chat/completions) and Anthropic
Messages (/v1/messages) streaming APIs on the same port. The first line on
stdout is the base URL to point an application or an official SDK at
(e.g. http://127.0.0.1:40123); the rest goes to stderr.

  --addr ADDR      where to listen (default 127.0.0.1:0: loopback, free port)
  --behaviour B    what every request gets (default generate):
                     generate        a generated answer in the API's format:
                                     a call to the first offered tool, text
                                     naming a tool result, reasoning first
                                     when the request asks for it
                     replay FILE     an .sse transcript, byte for byte
                     error:STATUS    an HTTP error in the API's error shape
                                     (529 Anthropic overload, 429, 500, ...)
                     {JSON}          any behaviour as JSON (the same as the
                                     x-mock-behaviour request header)
  --tokens N       tokens of a generated answer (default 64; the request's
                   max tokens cuts it with the API's length ending)
  --chunk N        replay the transcript in chunks of N bytes
  --fault F        stall:N | truncate:N | abort:N | error:N — after N events
                   (generate) or chunks (replay): stop sending and hold the
                   connection, end the body without a terminal event, reset
                   the connection, or send the API's in-stream error event
  --pacing MS      delay between events (or replay chunks); default none
  --first-event-delay-ms MS   delay after the headers, before the first event
  --api-key KEY    require this key (Authorization: Bearer, x-api-key); 401
                   otherwise

A request can still choose its own behaviour with an x-mock-behaviour JSON
header. Exit status: 0 after Ctrl-C, 1 when the address cannot be bound,
2 usage error.";

#[derive(Debug)]
struct Options {
    config: MockConfig,
}

fn options(argv: &[String]) -> Result<Option<Options>, String> {
    let parsed = args::parse(
        argv,
        &[
            "--addr",
            "--behaviour",
            "--tokens",
            "--chunk",
            "--fault",
            "--pacing",
            "--first-event-delay-ms",
            "--api-key",
        ],
        &[],
    )?;
    if parsed.help {
        return Ok(None);
    }
    let addr: SocketAddr = parsed.get(
        "--addr",
        "an address such as 127.0.0.1:8080",
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )?;
    let pace = Pace::trickle(Duration::from_millis(parsed.get(
        "--pacing",
        "milliseconds",
        0u64,
    )?))
    .first_event_delay(Duration::from_millis(parsed.get(
        "--first-event-delay-ms",
        "milliseconds",
        0u64,
    )?));
    let fault = parsed.raw("--fault").map(fault).transpose()?;
    let behaviour = behaviour(&parsed, pace, fault)?;
    let mut config = MockConfig::default()
        .addr(addr)
        .default_behaviour(behaviour);
    if let Some(key) = parsed.raw("--api-key") {
        config = config.api_key(key);
    }
    Ok(Some(Options { config }))
}

fn behaviour(parsed: &args::Parsed, pace: Pace, fault: Option<Fault>) -> Result<Behaviour, String> {
    let name = parsed.raw("--behaviour").unwrap_or("generate");
    let mut positionals = parsed.positionals.iter();
    let behaviour = if name.starts_with('{') {
        serde_json::from_str(name).map_err(|e| format!("--behaviour JSON: {e}"))?
    } else if name == "generate" {
        let mut spec =
            GenerateSpec::tokens(parsed.get("--tokens", "a number of tokens", 64u64)?).pace(pace);
        if let Some(f) = fault {
            spec = spec.fault(f);
        }
        Behaviour::Generate(spec)
    } else if name == "replay" {
        let file = positionals
            .next()
            .ok_or("--behaviour replay needs a transcript FILE")?;
        let path = PathBuf::from(file);
        if !path.is_file() {
            return Err(format!("cannot read transcript `{file}`"));
        }
        let mut spec = ReplaySpec::file(path).pace(pace);
        if let Some(n) = parsed.opt::<usize>("--chunk", "a number of bytes")? {
            spec = spec.chunk_bytes(n);
        }
        if let Some(f) = fault {
            spec = spec.fault(f);
        }
        Behaviour::Replay(spec)
    } else if let Some(status) = name.strip_prefix("error:") {
        let status: u16 = status
            .parse()
            .ok()
            .filter(|s| (400..600).contains(s))
            .ok_or_else(|| {
                format!("--behaviour error:STATUS needs a 4xx or 5xx status, got `{status}`")
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
            "unknown --behaviour `{name}` (generate, replay FILE, error:STATUS or JSON)"
        ));
    };
    if let Some(extra) = positionals.next() {
        return Err(format!("unexpected argument `{extra}`"));
    }
    Ok(behaviour)
}

/// `stall:N`, `truncate:N`, `abort:N` or `error:N`.
fn fault(text: &str) -> Result<Fault, String> {
    let bad = || format!("--fault expects stall:N, truncate:N, abort:N or error:N, got `{text}`");
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
pub(crate) fn run(argv: &[String]) -> i32 {
    super::run_async("mock", HELP, options(argv), serve)
}

async fn serve(o: Options) -> Result<i32, String> {
    let addr = o.config.addr;
    let server = MockServer::start(o.config)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.url()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "demandflow mock: serving {} /v1/responses, /v1/chat/completions, /v1/messages, /v1beta/models/MODEL:streamGenerateContent until Ctrl-C",
        server.url()
    );
    super::interrupted().await;
    let requests = server.total_requests();
    server.shutdown().await;
    let _ = writeln!(
        std::io::stderr().lock(),
        "demandflow mock: stopped after {requests} requests"
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn behaviours_faults_and_pacing_parse() {
        let o = options(&args(&[
            "--addr",
            "127.0.0.1:0",
            "--tokens",
            "5",
            "--fault",
            "stall:3",
            "--pacing",
            "20",
        ]))
        .unwrap()
        .unwrap();
        let Behaviour::Generate(spec) = o.config.default_behaviour else {
            panic!("generate expected");
        };
        assert_eq!(spec.tokens, Some(5));
        assert_eq!(spec.fault, Some(Fault::Stall { after: 3 }));
        assert_eq!(spec.pace.event_delay, Duration::from_millis(20));
        let o = options(&args(&["--behaviour", "error:529"]))
            .unwrap()
            .unwrap();
        assert!(matches!(o.config.default_behaviour, Behaviour::Error(ref e) if e.status == 529));
        let json = r#"{"kind":"generate","tokens":2}"#;
        let o = options(&args(&["--behaviour", json])).unwrap().unwrap();
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
            assert!(options(&args(bad)).is_err(), "{bad:?}");
        }
        assert!(matches!(options(&args(&["--help"])), Ok(None)));
    }
}
