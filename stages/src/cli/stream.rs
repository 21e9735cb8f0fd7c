//! `demandflow stream`: one real streaming request through a pipeline
//! whose consumer sleeps a given delay per event (issue 4, item 6).
//!
//! The text is printed as it arrives (or, with `--json`, each normalised
//! event as one JSON line, as `replay` prints them), then the same
//! `{"summary":{...}}` line as `replay`. Exit status: 0 for `completed` or
//! `incomplete`, 1 for any other outcome, 2 for a usage error.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use demandflow::{BoxError, Consumer, Context, Pipeline, Restart, Subscribe};
use demandflow_stages::provider::{
    Api, ApiKey, ConfigError, ExponentialBackoff, ProviderConfig, ProviderEvent, ProviderProducer,
    Status, Timeouts, Usage,
};
use serde::Serialize;

use super::demo::status_name;
use super::{args, output};

/// One real streaming request to an LLM provider (or a local server).
///
/// Sends one streaming request and runs the answer through a pipeline whose
/// consumer sleeps --consumer-delay-ms per event (a slow consumer pushes back
/// to the server through TCP). Prints the text as it arrives (--json: each
/// normalised event as a JSON line), then one summary line:
///   {"summary":{"status":S,"text":T,"usage":U,"events":N}}
/// S is completed, incomplete, refused, failed, truncated, cancelled,
/// deadline_exceeded (--deadline-ms passed) or timed_out (a read timeout
/// fired; stderr names which: connect_timeout, first_event_timeout,
/// idle_timeout, total_timeout). docs/providers.md maps each API's stop
/// reasons to these.
///
/// While nothing arrives, stderr says what the command waits for and for how
/// long (redrawn in place on a terminal, a line every 5 s otherwise).
///
/// The key is read from OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY
/// (a placeholder is sent when unset, for local servers).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 completed or incomplete, 1 any other outcome (refused \
included), 2 usage error. A closed stdout ends the request quietly with 0."
)]
pub(crate) struct StreamArgs {
    /// The provider's streaming API
    #[arg(long, value_name = "API", value_parser = args::api())]
    api: Api,
    /// Scheme, host, port and optional path prefix; the API's path
    /// (/v1/responses, /v1/chat/completions, /v1/messages,
    /// /v1beta/models/MODEL:streamGenerateContent?alt=sse) is appended,
    /// without a second /v1
    #[arg(long = "base-url", value_name = "URL")]
    base_url: String,
    /// The model (default: the API's default model)
    #[arg(long, value_name = "M")]
    model: Option<String>,
    /// The user message
    #[arg(long, value_name = "P", default_value = "Say hello.")]
    prompt: String,
    /// Most tokens to generate
    #[arg(long = "max-tokens", value_name = "N", value_parser = args::positive::<u32>)]
    max_tokens: Option<u32>,
    /// End the pipeline after this many ms (status deadline_exceeded)
    #[arg(long = "deadline-ms", value_name = "MS", value_parser = args::millis)]
    deadline: Option<Duration>,
    /// The consumer's delay per event, in ms
    #[arg(long = "consumer-delay-ms", value_name = "MS", default_value = "0", value_parser = args::millis)]
    delay: Duration,
    /// Print each normalised event as one JSON line instead of the text
    #[arg(long)]
    json: bool,
    /// TCP/TLS connect, per attempt [default: 5000]
    #[arg(long = "connect-timeout-ms", value_name = "MS", value_parser = args::positive_millis)]
    connect_timeout: Option<Duration>,
    /// Request sent to first event, per attempt [default: 10000]
    #[arg(long = "first-event-timeout-ms", value_name = "MS", value_parser = args::positive_millis)]
    first_event_timeout: Option<Duration>,
    /// Consumer asking to the next event once streaming [default: 60000]
    #[arg(long = "idle-timeout-ms", value_name = "MS", value_parser = args::positive_millis)]
    idle_timeout: Option<Duration>,
    /// The whole request, retries included [default: none]
    #[arg(long = "total-timeout-ms", value_name = "MS", value_parser = args::positive_millis)]
    total_timeout: Option<Duration>,
    /// Retries before the first event [default: 2]
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
}

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
    retries: u32,
}

/// Checks what clap cannot check alone (the URL) and builds the request.
fn options(a: StreamArgs) -> Result<Options, String> {
    let var = match a.api {
        Api::AnthropicMessages => "ANTHROPIC_API_KEY",
        Api::Gemini => "GEMINI_API_KEY",
        _ => "OPENAI_API_KEY",
    };
    let key = ApiKey::from_env(var).unwrap_or_else(|| ApiKey::new(PLACEHOLDER_KEY));
    let mut config = ProviderConfig::new(a.api, &a.base_url)
        .map_err(|e| base_url_error(&a.base_url, e))?
        .api_key(key)
        .prompt(a.prompt.as_str());
    if let Some(model) = &a.model {
        config = config.model(model.as_str());
    }
    if let Some(n) = a.max_tokens {
        config = config.max_tokens(n);
    }
    let mut t = Timeouts::default();
    if let Some(d) = a.connect_timeout {
        t = t.connect(d);
    }
    if let Some(d) = a.first_event_timeout {
        t = t.first_event(d);
    }
    if let Some(d) = a.idle_timeout {
        t = t.idle(d);
    }
    if let Some(d) = a.total_timeout {
        t = t.total(d);
    }
    config = config.timeouts(t);
    let retries = a
        .retries
        .unwrap_or_else(|| ExponentialBackoff::default().retries());
    if let Some(n) = a.retries {
        config = config.retry_policy(ExponentialBackoff::default().max_retries(n));
    }
    Ok(Options {
        config,
        deadline: a.deadline,
        delay: a.delay,
        json: a.json,
        retries,
    })
}

/// `invalid --base-url 'TYPED': REASON`. What was typed is echoed unless it
/// may hold credentials (an `@`): then the library's redacted form.
fn base_url_error(typed: &str, e: ConfigError) -> String {
    match e {
        ConfigError::BaseUrl { url, reason } => {
            let shown = if !typed.contains('@') {
                typed
            } else if url != "<unparsable>" {
                url.as_str()
            } else {
                "(not shown: it may hold credentials)"
            };
            format!("invalid --base-url '{shown}': {reason}")
        }
        other => other.to_string(),
    }
}

/// Runs the subcommand.
pub(crate) fn run(args: StreamArgs) -> i32 {
    super::run_async("stream", options(args), stream)
}

/// What the summary line reports, and what the waiting line needs.
#[derive(Debug, Default)]
struct Totals {
    text: String,
    usage: Option<Usage>,
    status: Option<Status>,
    events: usize,
    ends_with_newline: bool,
    /// When the consumer last received an event.
    last_event: Option<Instant>,
    /// The waiting line is drawn on the terminal (stderr).
    waiting_drawn: bool,
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
                t.last_event = Some(Instant::now());
                if std::mem::take(&mut t.waiting_drawn) {
                    clear_waiting_line();
                }
                // A closed stdout is noticed by the run loop, which ends
                // the request.
                if self.json {
                    let mut line = serde_json::to_vec(event).unwrap_or_default();
                    line.push(b'\n');
                    output::out_bytes(&line);
                }
                match event {
                    ProviderEvent::TextDelta { text } => {
                        t.text.push_str(text);
                        if !self.json && !text.is_empty() {
                            output::out_bytes(text.as_bytes());
                            t.ends_with_newline = text.ends_with('\n');
                        }
                    }
                    ProviderEvent::Usage(u) => t.usage = Some(*u),
                    ProviderEvent::Done { status, .. } => t.status = Some(*status),
                    ProviderEvent::Error { kind, message } if !self.json => {
                        errln!("demandflow stream: provider error: {kind}: {message}");
                    }
                    _ => {}
                }
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

/// Erases the waiting line drawn on the terminal.
fn clear_waiting_line() {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\r\x1b[K");
    let _ = err.flush();
}

/// `5 s`, `1.5 s`, `none`.
fn secs(d: Option<Duration>) -> String {
    match d {
        None => "none".to_owned(),
        Some(d) => format!("{} s", d.as_secs_f64()),
    }
}

/// What the request waits for, said once before it is sent.
fn announce(config: &ProviderConfig, retries: u32) -> String {
    let t = config.timeout_settings();
    format!(
        "demandflow stream: POST {}: connecting and waiting for the first event \
         (timeouts: connect {}, first event {} per attempt, idle {}, total {}; {} retries)",
        config.endpoint(),
        secs(Some(t.connect)),
        secs(Some(t.first_event)),
        secs(Some(t.idle)),
        secs(t.total),
        retries,
    )
}

/// The waiting line after `waited` without an event; `None` while the wait
/// is too short to mention.
fn waiting_line(events: usize, waited: Duration, t: &Timeouts) -> Option<String> {
    if waited < Duration::from_secs(1) {
        return None;
    }
    let (what, limit) = if events == 0 {
        (
            "the first event",
            format!(
                "first-event timeout {} per attempt",
                secs(Some(t.first_event))
            ),
        )
    } else {
        (
            "the next event",
            format!("idle timeout {}", secs(Some(t.idle))),
        )
    };
    Some(format!(
        "demandflow stream: waiting for {what}: {} s ({limit}; Ctrl-C to stop)",
        waited.as_secs()
    ))
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
    let timeouts = *o.config.timeout_settings();
    errln!("{}", announce(&o.config, o.retries));
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
    let start = Instant::now();
    let handle = p.spawn().map_err(|e| e.to_string())?;
    // Ctrl-C cancels the pipeline (closing the connection) and still ends
    // with the summary line, status `cancelled`.
    let watch = handle.watch();
    let stopped = watch.stopped();
    tokio::pin!(stopped);
    let on_terminal = std::io::stderr().is_terminal();
    // The waiting line must not land inside the text: on a shared terminal
    // it is drawn only before the first text or after a complete line.
    let text_on_terminal = !o.json && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut plain_reported = 0u64;
    let mut cancelled = false;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = super::interrupted(), if !cancelled => {
                cancelled = true;
                handle.cancel();
            }
            _ = tick.tick() => {
                if output::stdout_closed() && !cancelled {
                    // Nobody reads the answer any more: end the request.
                    cancelled = true;
                    handle.cancel();
                }
                let mut t = totals.lock().unwrap_or_else(PoisonError::into_inner);
                let waited = t.last_event.unwrap_or(start).elapsed();
                let Some(line) = waiting_line(t.events, waited, &timeouts) else {
                    plain_reported = 0;
                    continue;
                };
                if on_terminal {
                    let clean_row = !text_on_terminal || t.text.is_empty() || t.ends_with_newline;
                    if clean_row {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "\r{line}\x1b[K");
                        let _ = err.flush();
                        t.waiting_drawn = true;
                    }
                } else if waited.as_secs() / 5 > plain_reported {
                    // A plain line every 5 s of waiting: logs stay short.
                    plain_reported = waited.as_secs() / 5;
                    errln!("{line}");
                }
            }
        }
    }
    {
        let mut t = totals.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut t.waiting_drawn) {
            clear_waiting_line();
        }
    }
    let report = match handle.join().await {
        Ok(r) => r,
        Err(e) => e.into_report(),
    };
    if output::stdout_closed() {
        // The reader took what it wanted; no summary, no complaint.
        return Ok(0);
    }
    let t = std::mem::take(&mut *totals.lock().unwrap_or_else(PoisonError::into_inner));
    let status = outcome(t.status, &report.status);
    if let demandflow::Status::Failed { stage, error } = &report.status {
        errln!("demandflow stream: stage `{stage}` failed: {error}");
    }
    if !o.json && !t.text.is_empty() && !t.ends_with_newline {
        output::out_bytes(b"\n");
    }
    let line = SummaryLine {
        summary: Summary {
            status: status_name(status),
            text: &t.text,
            usage: t.usage,
            events: t.events,
        },
    };
    let mut json = serde_json::to_vec(&line).map_err(|e| e.to_string())?;
    json.push(b'\n');
    output::out_bytes(&json);
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

    /// The options of `demandflow stream ARGS`, or the error's text.
    fn parse(list: &[&str]) -> Result<Options, String> {
        use clap::Parser;
        let argv = ["demandflow", "stream"].iter().chain(list);
        match super::super::Cli::try_parse_from(argv).map_err(|e| e.to_string())? {
            super::super::Cli {
                command: super::super::Command::Stream(a),
            } => options(a),
            other => panic!("not stream: {other:?}"),
        }
    }

    #[test]
    fn usage_errors_echo_what_was_typed() {
        let base = ["--api", "openai-chat", "--base-url", "http://127.0.0.1:1"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        for (bad, echo) in [
            (&["--base-url", "http://127.0.0.1:1"][..], "--api"),
            (&["--api", "openai-chat"], "--base-url"),
            (&["--api", "cohere", "--base-url", "http://x"], "'cohere'"),
            (
                &["--api", "openai-chat", "--base-url", "nope"],
                "invalid --base-url 'nope': ",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(echo), "{bad:?}: {e}");
        }
        for (extra, echo) in [
            (&["--max-tokens", "0"][..], "'0'"),
            (&["--idle-timeout-ms", "0"], "'0'"),
            (&["--first-event-timeout-ms", "soon"], "'soon'"),
            (&["--retries", "-1"], "'-1'"),
        ] {
            let e = with(extra).unwrap_err();
            assert!(e.contains(echo), "{extra:?}: {e}");
        }
    }

    #[test]
    fn a_url_with_credentials_is_not_echoed() {
        let e = parse(&[
            "--api",
            "openai-chat",
            "--base-url",
            "ftp://user:secret@host",
        ])
        .unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(e.contains("invalid --base-url"), "{e}");
    }

    #[test]
    fn waiting_lines_name_what_and_the_timeout() {
        let t = Timeouts::default();
        assert_eq!(waiting_line(0, Duration::from_millis(500), &t), None);
        let first = waiting_line(0, Duration::from_secs(3), &t).unwrap();
        assert!(
            first.contains("first event: 3 s") && first.contains("10 s"),
            "{first}"
        );
        let next = waiting_line(4, Duration::from_secs(7), &t).unwrap();
        assert!(
            next.contains("next event: 7 s") && next.contains("idle timeout 60 s"),
            "{next}"
        );
    }

    #[test]
    fn timeout_flags_set_each_timeout() {
        let base = ["--api", "openai-chat", "--base-url", "http://127.0.0.1:1"];
        let o = parse(
            &[
                &base[..],
                &[
                    "--connect-timeout-ms",
                    "11",
                    "--first-event-timeout-ms",
                    "22",
                    "--idle-timeout-ms=33",
                    "--total-timeout-ms",
                    "44",
                ],
            ]
            .concat(),
        )
        .unwrap();
        let t = o.config.timeout_settings();
        assert_eq!(t.connect, Duration::from_millis(11));
        assert_eq!(t.first_event, Duration::from_millis(22));
        assert_eq!(t.idle, Duration::from_millis(33));
        assert_eq!(t.total, Some(Duration::from_millis(44)));
        let defaults = parse(&base).unwrap();
        assert_eq!(*defaults.config.timeout_settings(), Timeouts::default());
        assert!(announce(&o.config, 2).contains("connect 0.011 s"));
    }
}
