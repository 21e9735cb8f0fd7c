//! `demandflow replay`: runs a recorded SSE transcript through the same
//! decoder and parser as the live producers ([`ProviderDecoder`]).
//!
//! ```text
//! demandflow replay --api openai-responses|openai-chat|anthropic-messages|gemini [--chunk N] FILE
//! ```
//!
//! Output (stdout): each normalised event as one JSON line, then one line
//! `{"summary":{"status":S,"text":T,"usage":U,"events":N,...}}` where `S` is
//! `completed`, `incomplete`, `refused`, `failed` or `truncated`, `T` the
//! concatenated text deltas, `U` `{"input_tokens":I,"output_tokens":O}` (the
//! last usage reported) or `null`, and `N` the number of event lines. The
//! summary goes on with the rest of the [`FinalMessage`]:
//! `stop_reason` (string or null), `reasoning` (blocks
//! `{index,id?,text,signature?,redacted?}`), `refusal` (string or null),
//! `tool_calls` (`{index,id,name,kind,finished,arguments}`, or `error` and
//! `raw` in place of `arguments` when they are not JSON), `server_tools`
//! (`{type:"call",index,id,name}` or `{type:"result",index,tool_use_id,kind}`)
//! and `citations` (their number).
//!
//! Exit status: 0 when the transcript was replayed (whatever the stream's
//! outcome); 2 with a one-line message on stderr for a usage error (missing
//! or unreadable file, unknown api, bad flag, `--chunk 0`); 1 when the
//! transcript cannot be decoded (oversized event, invalid JSON), after
//! printing the events decoded so far, a `decode_error` event, a failed
//! `done` and the summary, so the output always ends with one terminal event.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use crate::provider::{Api, FinalMessage, MessageBuilder, ProviderDecoder, ProviderEvent, Usage};

const USAGE: &str =
    "usage: demandflow replay --api openai-responses|openai-chat|anthropic-messages|gemini [--chunk N] FILE";

/// Parsed command line of `replay`.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    api: Api,
    chunk: Option<usize>,
    file: String,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut api = None;
    let mut chunk = None;
    let mut file = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if arg.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "--api" => {
                let name = value("--api")?;
                api = Some(name.parse::<Api>().map_err(|e| e.to_string())?);
            }
            "--chunk" => {
                let text = value("--chunk")?;
                let n: usize = text.parse().map_err(|_| {
                    format!("--chunk expects a positive number of bytes, got `{text}`")
                })?;
                if n == 0 {
                    return Err("--chunk must be at least 1".to_owned());
                }
                chunk = Some(n);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown flag `{arg}`"));
            }
            _ => {
                if file.replace(arg.clone()).is_some() {
                    return Err(format!(
                        "unexpected argument `{arg}`: only one FILE is replayed"
                    ));
                }
            }
        }
    }
    let api = api.ok_or("missing --api openai-responses|openai-chat|anthropic-messages|gemini")?;
    let file = file.ok_or("missing FILE")?;
    Ok(Args { api, chunk, file })
}

/// The last line of the output.
#[derive(Serialize)]
struct SummaryLine<'a> {
    summary: Summary<'a>,
}

/// Field order is the documented one: status, text, usage, events, then
/// the rest of the final message.
#[derive(Serialize)]
struct Summary<'a> {
    status: &'static str,
    text: &'a str,
    usage: Option<Usage>,
    events: usize,
    stop_reason: Option<&'a str>,
    reasoning: Vec<Value>,
    refusal: Option<&'a str>,
    tool_calls: Vec<Value>,
    server_tools: Vec<Value>,
    citations: usize,
}

impl<'a> Summary<'a> {
    fn new(m: &'a FinalMessage, events: usize) -> Self {
        let mut json = m.to_json();
        let mut take = |key: &str| match json[key].take() {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        Summary {
            status: m.status.as_str(),
            text: &m.text,
            usage: m.usage,
            events,
            stop_reason: m.stop_reason.as_deref(),
            reasoning: take("reasoning"),
            refusal: m.refusal.as_deref(),
            tool_calls: take("tool_calls"),
            // The input is in the event lines; the summary names the calls.
            server_tools: take("server_tools")
                .into_iter()
                .map(|mut tool| {
                    if let Value::Object(fields) = &mut tool {
                        fields.remove("input");
                    }
                    tool
                })
                .collect(),
            citations: m.citations.len(),
        }
    }
}

/// Accumulates what the summary line reports.
#[derive(Default)]
struct Totals {
    message: MessageBuilder,
    events: usize,
}

impl Totals {
    fn write(
        &mut self,
        events: &mut Vec<ProviderEvent>,
        stdout: &mut dyn Write,
    ) -> std::io::Result<()> {
        for event in events.drain(..) {
            self.message.push(&event);
            serde_json::to_writer(&mut *stdout, &event)?;
            stdout.write_all(b"\n")?;
            self.events += 1;
        }
        Ok(())
    }
}

/// Runs `demandflow replay` with `args` (without the program name and the
/// word `replay`); returns the process exit status.
///
/// ```no_run
/// let args = ["--api", "openai-chat", "--chunk", "7", "transcript.sse"].map(String::from);
/// let code = demandflow_stages::replay::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
/// std::process::exit(code);
/// ```
pub fn run(args: &[String], stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(message) => {
            let _ = writeln!(stderr, "demandflow replay: {message}");
            return 2;
        }
    };
    let body = match std::fs::read(&args.file) {
        Ok(body) => body,
        Err(err) => {
            let _ = writeln!(
                stderr,
                "demandflow replay: cannot read {}: {err}",
                args.file
            );
            return 2;
        }
    };
    match replay(args.api, &body, args.chunk, stdout) {
        Ok(None) => 0,
        Ok(Some(decode_error)) => {
            let _ = writeln!(stderr, "demandflow replay: {}: {decode_error}", args.file);
            1
        }
        Err(err) => {
            let _ = writeln!(stderr, "demandflow replay: cannot write output: {err}");
            1
        }
    }
}

/// Replays `body`; returns the decode error, if any, once its terminal
/// events and the summary are written.
fn replay(
    api: Api,
    body: &[u8],
    chunk: Option<usize>,
    stdout: &mut dyn Write,
) -> std::io::Result<Option<crate::provider::DecodeError>> {
    let mut decoder = ProviderDecoder::new(api);
    let mut totals = Totals::default();
    let mut events = Vec::new();
    let chunk = chunk.unwrap_or(body.len()).max(1);
    let mut failure = None;
    for piece in body.chunks(chunk) {
        let result = decoder.feed(piece, &mut events);
        totals.write(&mut events, stdout)?;
        if let Err(err) = result {
            failure = Some(err);
            break;
        }
    }
    if failure.is_none() {
        if let Err(err) = decoder.finish(&mut events) {
            failure = Some(err);
        }
        totals.write(&mut events, stdout)?;
    }
    if let Some(err) = &failure {
        events.extend(err.to_events());
        totals.write(&mut events, stdout)?;
    }
    let message = totals.message.finish();
    let summary = SummaryLine {
        summary: Summary::new(&message, totals.events),
    };
    serde_json::to_writer(&mut *stdout, &summary)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_parse_in_both_forms_and_any_order() {
        let expected = Args {
            api: Api::AnthropicMessages,
            chunk: Some(7),
            file: "f.sse".to_owned(),
        };
        assert_eq!(
            parse_args(&args(&[
                "f.sse",
                "--chunk",
                "7",
                "--api",
                "anthropic-messages"
            ])),
            Ok(expected)
        );
        let parsed = parse_args(&args(&["--api=openai-chat", "--chunk=3", "x"])).unwrap();
        assert_eq!((parsed.api, parsed.chunk), (Api::OpenAiChat, Some(3)));
        let parsed = parse_args(&args(&["--api", "gemini", "x"])).unwrap();
        assert_eq!(parsed.api, Api::Gemini);
    }

    #[test]
    fn bad_command_lines_are_rejected() {
        for bad in [
            &["--api", "openai-chat"][..],
            &["x.sse"],
            &["--api", "cohere", "x.sse"],
            &["--api", "openai-chat", "--chunk", "0", "x.sse"],
            &["--api", "openai-chat", "--chunk", "-3", "x.sse"],
            &["--api", "openai-chat", "--chunk"],
            &["--api", "openai-chat", "--fast", "x.sse"],
            &["--api", "openai-chat", "a.sse", "b.sse"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
