//! `demandflow stream`: one real streaming request through a pipeline
//! whose consumer sleeps a given delay per event (issue 4, item 6).
//!
//! The text is printed as it arrives (or, with `--json`, each normalised
//! event as one JSON line, as `replay` prints them), then the same
//! `{"summary":{...}}` line as `replay`. Exit status: 0 for `completed` or
//! `incomplete`, 1 for any other outcome, 2 for a usage error.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use demandflow::{BoxError, Consumer, Context, Pipeline, Restart, Subscribe};
use demandflow_stages::provider::{
    Api, ApiKey, ExponentialBackoff, ProviderConfig, ProviderEvent, ProviderProducer, Status,
    Timeouts, Usage,
};
use serde::Serialize;

use super::args;
use super::demo::status_name;

const HELP: &str = "\
usage: demandflow stream --api API --base-url URL [--model M] [--prompt P]
                         [--max-tokens N] [--deadline-ms N] [--consumer-delay-ms N] [--json]
                         [--connect-timeout-ms N] [--first-event-timeout-ms N]
                         [--idle-timeout-ms N] [--total-timeout-ms N] [--retries N]

Sends one streaming request and runs the answer through a pipeline whose
consumer sleeps --consumer-delay-ms per event (a slow consumer pushes back to
the server through TCP). Prints the text as it arrives (--json: each
normalised event as a JSON line), then one summary line:
  {\"summary\":{\"status\":S,\"text\":T,\"usage\":U,\"events\":N}}
S is completed, incomplete, refused, failed, truncated, cancelled,
deadline_exceeded (--deadline-ms passed) or timed_out (a read timeout fired;
stderr names which: connect_timeout, first_event_timeout, idle_timeout,
total_timeout). docs/providers.md maps each API's stop reasons to these.

  --api API        openai-responses | openai-chat | anthropic-messages | gemini
  --base-url URL   scheme, host, port and optional path prefix; the API's path
                   (/v1/responses, /v1/chat/completions, /v1/messages,
                   /v1beta/models/MODEL:streamGenerateContent?alt=sse) is
                   appended, without a second /v1
  --connect-timeout-ms N      TCP/TLS connect, per attempt (default 5000)
  --first-event-timeout-ms N  request sent to first event, per attempt
                              (default 10000)
  --idle-timeout-ms N         consumer asking to the next event once
                              streaming (default 60000)
  --total-timeout-ms N        the whole request, retries included (default none)
  --retries N                 retries before the first event (default 2)
The key is read from OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY (a
placeholder is sent when unset, for local servers).

exit status: 0 completed or incomplete, 1 any other outcome (refused
included), 2 usage error";

/// Sent when the key's variable is unset: local servers accept anything.
const PLACEHOLDER_KEY: &str = "demandflow-no-key";

/// `max_demand` of the consumer: small, so a slow consumer holds few events
/// and the rest stays in the socket (and then in the server).
const DEMAND: usize = 16;

#[derive(Debug)]
struct Options {
    config: ProviderConfig,
    deadline: Option<Duration>,
    delay: Duration,
    json: bool,
}

fn options(argv: &[String]) -> Result<Option<Options>, String> {
    let parsed = args::parse(
        argv,
        &[
            "--api",
            "--base-url",
            "--model",
            "--prompt",
            "--max-tokens",
            "--deadline-ms",
            "--consumer-delay-ms",
            "--connect-timeout-ms",
            "--first-event-timeout-ms",
            "--idle-timeout-ms",
            "--total-timeout-ms",
            "--retries",
        ],
        &["--json"],
    )?;
    if parsed.help {
        return Ok(None);
    }
    parsed.no_positionals()?;
    let api: Api = parsed
        .raw("--api")
        .ok_or("missing --api openai-responses|openai-chat|anthropic-messages|gemini")?
        .parse()
        .map_err(|e: demandflow_stages::provider::ParseApiError| e.to_string())?;
    let base = parsed.raw("--base-url").ok_or("missing --base-url URL")?;
    let var = match api {
        Api::AnthropicMessages => "ANTHROPIC_API_KEY",
        Api::Gemini => "GEMINI_API_KEY",
        _ => "OPENAI_API_KEY",
    };
    let key = ApiKey::from_env(var).unwrap_or_else(|| ApiKey::new(PLACEHOLDER_KEY));
    let mut config = ProviderConfig::new(api, base)
        .map_err(|e| e.to_string())?
        .api_key(key)
        .prompt(parsed.raw("--prompt").unwrap_or("Say hello."));
    if let Some(model) = parsed.raw("--model") {
        config = config.model(model);
    }
    if let Some(n) = parsed.opt::<u32>("--max-tokens", "a number of tokens")? {
        if n == 0 {
            return Err("--max-tokens must be at least 1".into());
        }
        config = config.max_tokens(n);
    }
    config = config.timeouts(timeouts(&parsed)?);
    if let Some(n) = parsed.opt::<u32>("--retries", "a number of retries")? {
        config = config.retry_policy(ExponentialBackoff::default().max_retries(n));
    }
    let deadline = parsed
        .opt::<u64>("--deadline-ms", "milliseconds")?
        .map(Duration::from_millis);
    let delay = Duration::from_millis(parsed.get("--consumer-delay-ms", "milliseconds", 0u64)?);
    Ok(Some(Options {
        config,
        deadline,
        delay,
        json: parsed.flag("--json"),
    }))
}

/// The read timeouts given by flags, the defaults for the rest. Zero is
/// refused: it would fail every request at once.
fn timeouts(parsed: &args::Parsed) -> Result<Timeouts, String> {
    let ms = |name: &str| -> Result<Option<Duration>, String> {
        match parsed.opt::<u64>(name, "milliseconds")? {
            Some(0) => Err(format!("{name} must be at least 1")),
            other => Ok(other.map(Duration::from_millis)),
        }
    };
    let mut t = Timeouts::default();
    if let Some(d) = ms("--connect-timeout-ms")? {
        t = t.connect(d);
    }
    if let Some(d) = ms("--first-event-timeout-ms")? {
        t = t.first_event(d);
    }
    if let Some(d) = ms("--idle-timeout-ms")? {
        t = t.idle(d);
    }
    if let Some(d) = ms("--total-timeout-ms")? {
        t = t.total(d);
    }
    Ok(t)
}

/// Runs the subcommand.
pub(crate) fn run(argv: &[String]) -> i32 {
    super::run_async("stream", HELP, options(argv), stream)
}

/// What the summary line reports.
#[derive(Debug, Default)]
struct Totals {
    text: String,
    usage: Option<Usage>,
    status: Option<Status>,
    events: usize,
    ends_with_newline: bool,
}

#[derive(Debug, Clone)]
struct Sink {
    delay: Duration,
    json: bool,
    totals: Arc<Mutex<Totals>>,
}

impl Consumer<ProviderEvent> for Sink {
    async fn consume(&mut self, events: &[ProviderEvent], cx: &Context) -> Result<(), BoxError> {
        for event in events {
            {
                let mut t = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
                t.events += 1;
                let mut out = std::io::stdout().lock();
                if self.json {
                    // A closed stdout is not the stream's failure.
                    let _ = serde_json::to_writer(&mut out, event);
                    let _ = out.write_all(b"\n");
                }
                match event {
                    ProviderEvent::TextDelta { text } => {
                        t.text.push_str(text);
                        if !self.json && !text.is_empty() {
                            let _ = out.write_all(text.as_bytes());
                            t.ends_with_newline = text.ends_with('\n');
                        }
                    }
                    ProviderEvent::Usage(u) => t.usage = Some(*u),
                    ProviderEvent::Done { status, .. } => t.status = Some(*status),
                    ProviderEvent::Error { kind, message } if !self.json => {
                        let _ = out.flush();
                        let _ = writeln!(
                            std::io::stderr().lock(),
                            "demandflow stream: provider error: {kind}: {message}"
                        );
                    }
                    _ => {}
                }
                let _ = out.flush();
            }
            if !self.delay.is_zero() {
                tokio::select! {
                    _ = cx.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.delay) => {}
                }
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: Summary<'a>,
}

/// Field order is `replay`'s: status, text, usage, events.
#[derive(Serialize)]
struct Summary<'a> {
    status: &'static str,
    text: &'a str,
    usage: Option<Usage>,
    events: usize,
}

/// The outcome: the provider's own terminal event when the consumer saw
/// one, else what ended the pipeline.
fn outcome(seen: Option<Status>, pipeline: &demandflow::Status) -> Status {
    match (seen, pipeline) {
        // A cancel seen by the producer may be the deadline's doing.
        (None | Some(Status::Cancelled), demandflow::Status::DeadlineExceeded) => {
            Status::DeadlineExceeded
        }
        (Some(s), _) => s,
        (None, demandflow::Status::Cancelled(_)) => Status::Cancelled,
        (None, demandflow::Status::Failed { .. }) => Status::Failed,
        // The producer ended without a terminal event.
        (None, _) => Status::Truncated,
    }
}

async fn stream(o: Options) -> Result<i32, String> {
    let producer = ProviderProducer::new(o.config).map_err(|e| e.to_string())?;
    let totals = Arc::new(Mutex::new(Totals::default()));
    let mut p = Pipeline::new();
    // One request: the producer retries by its own policy before the first
    // event; a restart would send a second request.
    let provider = p
        .add_producer("provider", producer)
        .restart(Restart::Temporary)
        .build();
    p.consumer(
        "consumer",
        Sink {
            delay: o.delay,
            json: o.json,
            totals: totals.clone(),
        },
    )
    .subscribe(&provider, Subscribe::max_demand(DEMAND));
    if let Some(d) = o.deadline {
        p = p.timeout(d);
    }
    let handle = p.spawn().map_err(|e| e.to_string())?;
    // Ctrl-C cancels the pipeline (closing the connection) and still ends
    // with the summary line, status `cancelled`.
    let watch = handle.watch();
    tokio::select! {
        _ = watch.stopped() => {}
        _ = super::interrupted() => handle.cancel(),
    }
    let report = match handle.join().await {
        Ok(r) => r,
        Err(e) => e.into_report(),
    };
    let t = std::mem::take(&mut *totals.lock().unwrap_or_else(PoisonError::into_inner));
    let status = outcome(t.status, &report.status);
    if let demandflow::Status::Failed { stage, error } = &report.status {
        let _ = writeln!(
            std::io::stderr().lock(),
            "demandflow stream: stage `{stage}` failed: {error}"
        );
    }
    let mut out = std::io::stdout().lock();
    if !o.json && !t.text.is_empty() && !t.ends_with_newline {
        let _ = out.write_all(b"\n");
    }
    let line = SummaryLine {
        summary: Summary {
            status: status_name(status),
            text: &t.text,
            usage: t.usage,
            events: t.events,
        },
    };
    serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    Ok(match status {
        Status::Completed | Status::Incomplete => 0,
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_event_wins_except_a_cancel_caused_by_the_deadline() {
        use demandflow::Status as P;
        let failed = P::Failed {
            stage: "provider".into(),
            error: "x".into(),
        };
        assert_eq!(
            outcome(Some(Status::Completed), &P::Completed),
            Status::Completed
        );
        assert_eq!(
            outcome(Some(Status::Completed), &P::DeadlineExceeded),
            Status::Completed
        );
        assert_eq!(
            outcome(Some(Status::Cancelled), &P::DeadlineExceeded),
            Status::DeadlineExceeded
        );
        assert_eq!(
            outcome(None, &P::DeadlineExceeded),
            Status::DeadlineExceeded
        );
        assert_eq!(outcome(None, &failed), Status::Failed);
        assert_eq!(outcome(None, &P::Completed), Status::Truncated);
        assert_eq!(
            outcome(None, &P::Cancelled(demandflow::CancelCause::User)),
            Status::Cancelled
        );
    }

    #[test]
    fn usage_errors() {
        let args = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(options(&args(&["--base-url", "http://127.0.0.1:1"])).is_err());
        assert!(options(&args(&["--api", "openai-chat"])).is_err());
        assert!(options(&args(&["--api", "cohere", "--base-url", "http://x"])).is_err());
        assert!(options(&args(&["--api", "openai-chat", "--base-url", "nope"])).is_err());
        assert!(options(&args(&[
            "--api",
            "openai-chat",
            "--base-url",
            "http://127.0.0.1:1",
            "--max-tokens",
            "0"
        ]))
        .is_err());
        assert!(matches!(options(&args(&["--help"])), Ok(None)));
        let base = ["--api", "openai-chat", "--base-url", "http://127.0.0.1:1"];
        let with = |extra: &[&str]| options(&args(&[&base[..], extra].concat()));
        assert!(with(&["--idle-timeout-ms", "0"]).is_err());
        assert!(with(&["--first-event-timeout-ms", "soon"]).is_err());
        assert!(with(&["--retries", "-1"]).is_err());
    }

    #[test]
    fn timeout_flags_set_each_timeout() {
        let argv: Vec<String> = [
            "--api",
            "openai-chat",
            "--base-url",
            "http://127.0.0.1:1",
            "--connect-timeout-ms",
            "11",
            "--first-event-timeout-ms",
            "22",
            "--idle-timeout-ms=33",
            "--total-timeout-ms",
            "44",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let o = options(&argv).unwrap().unwrap();
        let t = o.config.timeout_settings();
        assert_eq!(t.connect, Duration::from_millis(11));
        assert_eq!(t.first_event, Duration::from_millis(22));
        assert_eq!(t.idle, Duration::from_millis(33));
        assert_eq!(t.total, Some(Duration::from_millis(44)));
        let defaults = options(&argv[..4]).unwrap().unwrap();
        assert_eq!(*defaults.config.timeout_settings(), Timeouts::default());
    }
}
