//! `demandflow demo`: the embedded mock provider streams a generated answer
//! through provider → reflow processor → slow printer, with a live line of
//! pending demand, buffered events and restarts, then a summary.
//!
//! Everything runs on loopback: no network, no key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use demandflow::{BoxError, Consumer, Context, Emitter, Pipeline, Processor, Stats, Subscribe};
use demandflow_stages::mock::{Behaviour, GenerateSpec, MockConfig, MockServer, Pace};
use demandflow_stages::provider::{
    Api, ProviderConfig, ProviderEvent, ProviderProducer, Status, Usage,
};

use super::live::Screen;
use super::{args, output};

/// Stream a generated answer through a pipeline with live demand stats.
///
/// Starts the embedded mock provider on 127.0.0.1, streams a generated
/// answer of N tokens through provider -> reflow (wraps and counts the text)
/// -> printer (a deliberately slow consumer that sleeps per event), and shows
/// pending demand, buffered events and restarts live on stderr: a status line
/// redrawn in place when stderr is a terminal, one final plain line when it is
/// not. The answer alone goes to stdout, then a summary.
///
/// Everything runs on loopback: no network, no key.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the answer completed within the buffer bound, \
1 otherwise. A closed stdout (`demandflow demo | head`) stops the demo quietly with 0."
)]
pub(crate) struct DemoArgs {
    /// Tokens in the answer
    #[arg(long, value_name = "N", default_value_t = 300)]
    tokens: u64,
    /// The printer's delay per event, in ms
    #[arg(long = "delay-ms", value_name = "MS", default_value = "20", value_parser = args::millis)]
    delay: Duration,
    /// The mock's delay between SSE events, in ms
    #[arg(long = "pace-ms", value_name = "MS", default_value = "4", value_parser = args::millis)]
    pace: Duration,
    /// The API the mock speaks and the provider decodes
    #[arg(long, value_name = "API", default_value = "anthropic-messages", value_parser = args::api())]
    api: Api,
    /// Serve a live page of the pipeline (graph coloured by backpressure,
    /// throughput, demand and buffers) on ADDR, e.g. 127.0.0.1:8080
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<std::net::SocketAddr>,
}

/// `max_demand` of provider → reflow and of reflow → printer: small, so
/// that backpressure is visible at the pace of a human reader.
const REFLOW_DEMAND: usize = 8;
const PRINTER_DEMAND: usize = 16;

/// Wrap column of the reflowed text.
const WIDTH: usize = 64;

/// Runs the subcommand.
pub(crate) fn run(args: DemoArgs) -> i32 {
    super::run_async("demo", Ok(args), demo)
}

/// What the printer saw, for the summary.
#[derive(Debug, Default)]
struct Outcome {
    events: u64,
    status: Option<Status>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    errors: Vec<String>,
}

/// Wraps the text at [`WIDTH`] columns (a newline replaces the first space
/// past it) and counts words. Other events pass through unchanged.
#[derive(Debug, Clone)]
struct Reflow {
    column: usize,
    in_word: bool,
    words: Arc<AtomicU64>,
}

impl Processor<ProviderEvent, ProviderEvent> for Reflow {
    async fn process(
        &mut self,
        events: &[ProviderEvent],
        out: &mut Emitter<ProviderEvent>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for event in events {
            let ProviderEvent::TextDelta { text } = event else {
                out.emit(event.clone());
                continue;
            };
            let mut wrapped = String::with_capacity(text.len() + 1);
            for c in text.chars() {
                if c == '\n' {
                    self.column = 0;
                    self.in_word = false;
                    wrapped.push(c);
                } else if c.is_whitespace() {
                    self.in_word = false;
                    if self.column >= WIDTH {
                        wrapped.push('\n');
                        self.column = 0;
                    } else {
                        wrapped.push(' ');
                        self.column += 1;
                    }
                } else {
                    if !self.in_word {
                        self.words.fetch_add(1, Ordering::Relaxed);
                        self.in_word = true;
                    }
                    wrapped.push(c);
                    self.column += 1;
                }
            }
            out.emit(ProviderEvent::TextDelta { text: wrapped });
        }
        Ok(())
    }
}

/// Prints text as it arrives, slowly.
#[derive(Debug, Clone)]
struct Printer {
    delay: Duration,
    screen: Arc<Mutex<Screen>>,
    outcome: Arc<Mutex<Outcome>>,
}

impl Consumer<ProviderEvent> for Printer {
    async fn consume(&mut self, events: &[ProviderEvent], cx: &Context) -> Result<(), BoxError> {
        for event in events {
            {
                let mut o = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
                o.events += 1;
                match event {
                    ProviderEvent::TextDelta { text } => {
                        // A closed stdout is noticed by the run loop,
                        // which stops the demo.
                        let _ = self
                            .screen
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .text(text);
                    }
                    ProviderEvent::Usage(u) => o.usage = Some(*u),
                    ProviderEvent::Done {
                        status,
                        stop_reason,
                    } => {
                        o.status = Some(*status);
                        o.stop_reason.clone_from(stop_reason);
                    }
                    ProviderEvent::Error { kind, message } => {
                        o.errors.push(format!("{kind}: {message}"))
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

fn status_line(stats: &Stats, words: u64, elapsed: Duration, bound: usize) -> String {
    let printed = stats
        .stages
        .iter()
        .find(|s| s.name == "printer")
        .map_or(0, |s| s.processed);
    format!(
        "[{:5.1}s] pending demand {:3} | buffered {:3}/{} | restarts {} | printed {} events | {} words reflowed",
        elapsed.as_secs_f64(),
        stats.pending_demand(),
        stats.buffered(),
        bound,
        stats.restarts(),
        printed,
        words,
    )
}

async fn demo(o: DemoArgs) -> Result<i32, String> {
    let server = MockServer::start(MockConfig::default())
        .await
        .map_err(|e| format!("cannot start the mock provider: {e}"))?;
    server.set_default(Behaviour::Generate(
        GenerateSpec::tokens(o.tokens).pace(Pace::trickle(o.pace)),
    ));
    let max_tokens = u32::try_from(o.tokens.max(1024)).unwrap_or(u32::MAX);
    let config = ProviderConfig::new(o.api, &server.url())
        .map_err(|e| e.to_string())?
        .api_key("demo-key-not-secret")
        .prompt("Tell me about demand-driven pipelines.")
        .max_tokens(max_tokens);
    let producer = ProviderProducer::new(config).map_err(|e| e.to_string())?;

    let screen = Arc::new(Mutex::new(Screen::detect()));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let words = Arc::new(AtomicU64::new(0));
    let bound = REFLOW_DEMAND + PRINTER_DEMAND;

    let mut p = Pipeline::new();
    let provider = p.producer("provider", producer);
    let reflow = p
        .processor(
            "reflow",
            Reflow {
                column: 0,
                in_word: false,
                words: words.clone(),
            },
        )
        .subscribe(&provider, Subscribe::max_demand(REFLOW_DEMAND));
    p.consumer(
        "printer",
        Printer {
            delay: o.delay,
            screen: screen.clone(),
            outcome: outcome.clone(),
        },
    )
    .subscribe(&reflow, Subscribe::max_demand(PRINTER_DEMAND));

    errln!(
        "demandflow demo: mock {} at {} -> provider -> reflow -> printer ({} ms per event)",
        o.api.as_str(),
        server.url(),
        o.delay.as_millis()
    );
    let start = Instant::now();
    let handle = p.spawn().map_err(|e| e.to_string())?;
    let watch = handle.watch();
    let dashboard = super::dashboard::serve(watch.clone(), o.dashboard, "demandflow demo").await?;
    // Sample often for the maximum, redraw ~10 times a second.
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut max_buffered = 0usize;
    let mut max_pending = 0u64;
    let mut last_draw: Option<Instant> = None;
    let mut interrupted = false;
    let stopped = watch.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = super::interrupted(), if !interrupted => {
                interrupted = true;
                handle.cancel();
            }
            _ = tick.tick() => {
                // Nobody reads the answer any more (`demo | head`): stop.
                if output::stdout_closed() && !interrupted {
                    interrupted = true;
                    handle.cancel();
                }
                let stats = watch.stats();
                max_buffered = max_buffered.max(stats.buffered());
                max_pending = max_pending.max(stats.pending_demand());
                if last_draw.is_none_or(|at| at.elapsed() >= Duration::from_millis(100)) {
                    last_draw = Some(Instant::now());
                    let line = status_line(&stats, words.load(Ordering::Relaxed), start.elapsed(), bound);
                    screen.lock().unwrap_or_else(PoisonError::into_inner).status(&line);
                }
            }
        }
    }
    // The final state, once: a fast run may end before the first redraw.
    let last = watch.stats();
    max_buffered = max_buffered.max(last.buffered());
    let line = status_line(&last, words.load(Ordering::Relaxed), start.elapsed(), bound);
    screen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .status(&line);
    let result = handle.join().await;
    let elapsed = start.elapsed();
    super::dashboard::close(dashboard).await;
    screen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .finish(&line);
    server.shutdown().await;
    if output::stdout_closed() {
        // The reader took what it wanted; no summary, no complaint.
        return Ok(0);
    }

    let report = match result {
        Ok(r) => r,
        Err(e) => e.into_report(),
    };
    let outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(PoisonError::into_inner));
    let provider_status = outcome
        .status
        .map_or("none (no terminal event)", status_name);
    outln!();
    outln!("summary");
    outln!("  pipeline      {}", report.status);
    outln!(
        "  provider      {provider_status}{}",
        outcome
            .stop_reason
            .as_deref()
            .map(|r| format!(" (stop reason `{r}`)"))
            .unwrap_or_default()
    );
    for e in &outcome.errors {
        outln!("  error         {e}");
    }
    match outcome.usage {
        Some(u) => outln!(
            "  usage         {} input tokens, {} output tokens",
            u.input_tokens,
            u.output_tokens
        ),
        None => outln!("  usage         not reported"),
    }
    outln!(
        "  text          {} words in {} events",
        words.load(Ordering::Relaxed),
        outcome.events
    );
    outln!("  elapsed       {:.2} s", elapsed.as_secs_f64());
    outln!(
        "  max buffered  {max_buffered} events (bound: sum of max_demand = {REFLOW_DEMAND} + {PRINTER_DEMAND} = {bound}){}",
        if max_buffered <= bound { "" } else { "  ** OVER THE BOUND **" }
    );
    outln!("  max pending   {max_pending} demand");
    outln!(
        "  {:<10} {:>9} {:>9} {:>9} {:>9} {:>9}  end",
        "stage",
        "received",
        "emitted",
        "processed",
        "abandoned",
        "restarts"
    );
    for s in &report.stages {
        outln!(
            "  {:<10} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
            s.name,
            s.received,
            s.emitted,
            s.processed,
            s.abandoned,
            s.restarts,
            s.end
        );
    }
    let ok = report.status == demandflow::Status::Completed
        && outcome.status == Some(Status::Completed)
        && max_buffered <= bound;
    Ok(if ok { 0 } else { 1 })
}

/// The name `replay` and `stream` use for a status.
pub(crate) fn status_name(status: Status) -> &'static str {
    status.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reflow_wraps_lines_and_counts_words_whatever_the_split() {
        let text = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(20);
        for piece in [1, 3, 7, 1000] {
            let words = Arc::new(AtomicU64::new(0));
            let mut r = Reflow {
                column: 0,
                in_word: false,
                words: words.clone(),
            };
            let events: Vec<ProviderEvent> = text
                .as_bytes()
                .chunks(piece)
                .map(|c| ProviderEvent::TextDelta {
                    text: String::from_utf8(c.to_vec()).unwrap(),
                })
                .chain([ProviderEvent::Usage(Usage::default())])
                .collect();
            let mut out = Emitter::new();
            r.process(&events, &mut out, &Context::detached("reflow"))
                .await
                .unwrap();
            let out = out.take();
            assert_eq!(out.len(), events.len(), "one event out per event in");
            assert_eq!(out.last(), Some(&ProviderEvent::Usage(Usage::default())));
            let joined: String = out
                .iter()
                .filter_map(|e| match e {
                    ProviderEvent::TextDelta { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                joined.replace('\n', " "),
                text,
                "only spaces become newlines"
            );
            assert!(joined.lines().count() > 1);
            assert!(joined
                .lines()
                .all(|l| l.len() <= WIDTH + "consectetur".len()));
            assert_eq!(words.load(Ordering::Relaxed), 160);
        }
    }
}
