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
//! Exit status (the command line is the binary's; this module reads a file):
//!
//! * 0: the transcript was replayed, whatever the stream's outcome. One that
//!   decodes but ends without a terminal event (a cut recording) is replayed
//!   as `truncated`, exit 0, with a one-line note on stderr.
//! * 1, after the output: the transcript cannot be decoded (oversized event,
//!   invalid JSON; the events decoded so far, a `decode_error` event, a failed
//!   `done` and the summary are printed, so the output always ends with one
//!   terminal event); nothing in it decodes as the named API (an empty file,
//!   random bytes, a transcript of another API), with a warning naming the
//!   API it does decode as, if any; or it ends without a terminal event while
//!   it decodes to a complete stream as another API (a warning names it).
//! * 2: the file cannot be read.
//!
//! A closed stdout ends the replay quietly with 0.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::provider::{
    Api, FinalMessage, MessageBuilder, ProviderDecoder, ProviderEvent, Status, Usage,
};

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

/// Replays the transcript `file` as `api`, fed to the decoder in pieces of
/// `chunk` bytes (all at once when `None`); writes the event lines and the
/// summary to `stdout`, warnings to `stderr`; returns the process exit
/// status (see the module documentation).
///
/// ```no_run
/// use demandflow_stages::provider::Api;
/// let code = demandflow_stages::replay::run_file(
///     Api::OpenAiChat,
///     std::num::NonZeroUsize::new(7),
///     std::path::Path::new("transcript.sse"),
///     &mut std::io::stdout(),
///     &mut std::io::stderr(),
/// );
/// std::process::exit(code);
/// ```
pub fn run_file(
    api: Api,
    chunk: Option<NonZeroUsize>,
    file: &Path,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let shown = file.display();
    let body = match std::fs::read(file) {
        Ok(body) => body,
        Err(err) => {
            let _ = writeln!(stderr, "demandflow replay: cannot read {shown}: {err}");
            return 2;
        }
    };
    let outcome = match replay(api, &body, chunk, stdout) {
        Ok(outcome) => outcome,
        // The reader is gone (`replay ... | head`): it has what it wanted.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return 0,
        Err(err) => {
            let _ = writeln!(stderr, "demandflow replay: cannot write output: {err}");
            return 1;
        }
    };
    let other = || {
        Api::ALL
            .into_iter()
            .filter(|a| *a != api)
            .find(|a| completes_as(*a, &body))
    };
    if let Some(decode_error) = outcome.failure {
        let hint = match other() {
            Some(a) => format!(" (it decodes as {a}: try --api {a})"),
            None => String::new(),
        };
        let _ = writeln!(stderr, "demandflow replay: {shown}: {decode_error}{hint}");
        return 1;
    }
    if outcome.decoded == 0 {
        let what = if body.is_empty() {
            "the file is empty".to_owned()
        } else {
            format!("{} bytes, no {api} event in them", body.len())
        };
        let hint = match other() {
            Some(a) => format!("; it decodes as {a}: try --api {a}"),
            None => String::new(),
        };
        let _ = writeln!(
            stderr,
            "demandflow replay: warning: {shown}: nothing decoded ({what}){hint}"
        );
        return 1;
    }
    if !outcome.terminal {
        // Events of this API's shape but no ending: a cut recording, or a
        // transcript of another API whose events partly look like these.
        if let Some(a) = other() {
            let _ = writeln!(
                stderr,
                "demandflow replay: warning: {shown} is a transcript of {a}, not {api} \
                 ({} events decoded as {api}, without an ending): try --api {a}",
                outcome.decoded
            );
            return 1;
        }
        let _ = writeln!(
            stderr,
            "demandflow replay: note: {shown} ends without a terminal event (status truncated)"
        );
    }
    0
}

/// Whether `body` decodes as `api` to a stream that ends with the API's own
/// terminal event.
fn completes_as(api: Api, body: &[u8]) -> bool {
    let mut decoder = ProviderDecoder::new(api);
    let mut events = Vec::new();
    if decoder.feed(body, &mut events).is_err() {
        return false;
    }
    if decoder.is_finished() {
        return true;
    }
    // Gemini's stream ends with its body: its ending comes from `finish`.
    decoder.finish(&mut events).is_ok()
        && !matches!(
            events.last(),
            Some(ProviderEvent::Done {
                status: Status::Truncated,
                ..
            })
        )
}

/// What a replay found, besides what it printed.
struct Outcome {
    /// Why decoding stopped early.
    failure: Option<crate::provider::DecodeError>,
    /// Events decoded from the transcript, not counting the `done` that
    /// the decoder adds when the transcript ends without one.
    decoded: usize,
    /// Whether the transcript ended with the API's own terminal event.
    terminal: bool,
}

/// Replays `body`; the decode error, if any, is reported once its terminal
/// events and the summary are written.
fn replay(
    api: Api,
    body: &[u8],
    chunk: Option<NonZeroUsize>,
    stdout: &mut dyn Write,
) -> std::io::Result<Outcome> {
    let mut decoder = ProviderDecoder::new(api);
    let mut totals = Totals::default();
    let mut events = Vec::new();
    let chunk = chunk.map_or(body.len(), NonZeroUsize::get).max(1);
    let mut failure = None;
    for piece in body.chunks(chunk) {
        let result = decoder.feed(piece, &mut events);
        totals.write(&mut events, stdout)?;
        if let Err(err) = result {
            failure = Some(err);
            break;
        }
    }
    let mut added_done = false;
    if failure.is_none() {
        let finished = decoder.is_finished();
        if let Err(err) = decoder.finish(&mut events) {
            failure = Some(err);
        }
        added_done = !finished
            && matches!(
                events.last(),
                Some(ProviderEvent::Done {
                    status: Status::Truncated,
                    stop_reason: None
                })
            );
        totals.write(&mut events, stdout)?;
    }
    let decoded = totals.events - usize::from(added_done);
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
    Ok(Outcome {
        failure,
        decoded,
        terminal: !added_done,
    })
}
