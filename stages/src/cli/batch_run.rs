//! `demandflow batch`'s run: the input file through the request stage to
//! the output file, as one demandflow pipeline (`docs/llm-batch.md`,
//! "Running it"). `bench --shape llm-batch` runs the same [`execute`].
//!
//! ```text
//! read (BatchReader as a source; bad lines written here) -> llm (RequestStage) -> write (BatchWriter)
//! ```
//!
//! The reader is polled only while the request stage has asked for more
//! (it uses manual demand, in units of free slots and budget), so the
//! input is read as capacity frees up. A bad line is written to the output
//! the moment it is read, by the same writer (shared behind a mutex), and
//! never enters the pipeline: at most one is held at a time and it is
//! written exactly once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use demandflow::{source, BoxError, Consumer, Context, Pipeline, Restart, Subscribe};
use demandflow_stages::batch::{
    prescan, resume, BatchItem, BatchReader, BatchResult, BatchWriter, Counters, Held, OutputError,
    ProgressMode, ProgressTask, ResultError, Summary, DEFAULT_MAX_LINE_BYTES,
};
use demandflow_stages::llm::{LlmRequest, LlmResult, RequestStage, StatsSnapshot};
use demandflow_stages::provider::{Api, ApiKey, ProviderConfig};
use demandflow_stages::ratelimit::Limits;
use tokio::io::BufReader;
use tokio::sync::watch;

use super::batch::BatchArgs;

/// Sent when the key's variable is unset: local servers accept anything.
const PLACEHOLDER_KEY: &str = "demandflow-no-key";

/// Exit status after Ctrl-C (128 + SIGINT, as shells report it).
pub(crate) const INTERRUPTED: i32 = 130;

/// Bad lines reported one by one on stderr; the rest are counted (all are
/// in the output and the failures file).
const MAX_REPORTED_LINES: u64 = 100;

/// How often the run samples its counters for the rates over time.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// The write stage's `max_demand`: results on their way to the writer are
/// at most this many (part of [`Outcome::buffer_bound`]).
pub(crate) const WRITE_MAX_DEMAND: usize = demandflow::DEFAULT_MAX_DEMAND;

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) api: Option<Api>,
    pub(crate) base_url: String,
    /// Where the API key comes from (`BatchArgs::key_var`); `None`: the
    /// placeholder (the benchmark's mock).
    pub(crate) key_from: Option<BatchArgs>,
    pub(crate) limits: Limits,
    pub(crate) concurrency: usize,
    pub(crate) max_attempts: u32,
    pub(crate) raw: bool,
    pub(crate) resume: bool,
    pub(crate) grace: Duration,
    pub(crate) progress: ProgressMode,
    /// Print each bad line on stderr.
    pub(crate) report_lines: bool,
    /// Serve the dashboard of the run's pipeline here.
    pub(crate) dashboard: Option<std::net::SocketAddr>,
}

/// Why a run could not be made or did not finish.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The user's to fix (a missing input, an output that already holds
    /// results without --resume): exit status 2.
    Usage(String),
    /// Anything else: exit status 1. The output is left resumable.
    Failed(String),
}

/// What one run did.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) summary: Summary,
    /// Ctrl-C came before the input was read to its end.
    pub(crate) interrupted: bool,
    /// The request stage's counters at the end.
    pub(crate) stage: StatsSnapshot,
    /// The most requests held at once: read from the input and not yet
    /// written ([`Held`]), exact.
    pub(crate) peak_buffered: u64,
    /// What `peak_buffered` can reach at most by construction: the
    /// request stage holds (asked for, queued, in flight) at most the
    /// concurrency, one call of it emits at most that many results, and
    /// the writer takes at most [`WRITE_MAX_DEMAND`] at a time.
    pub(crate) buffer_bound: u64,
    /// Results written and tokens over time (every ~200 ms), for
    /// sustained rates.
    pub(crate) samples: Vec<Sample>,
}

impl Job {
    /// The job of `demandflow batch ARGS`.
    pub(crate) fn from_args(a: &BatchArgs) -> Result<Job, String> {
        if a.input == a.output {
            return Err("--input and --output must be different files".into());
        }
        // Checked here so that a bad URL is a usage error, not one failed
        // result per request.
        ProviderConfig::new(a.api.unwrap_or(Api::OpenAiChat), &a.base_url)
            .map_err(|e| format!("--base-url {}: {e}", a.base_url))?;
        let mut limits = Limits::none();
        if let Some(rpm) = a.rpm {
            limits = limits.rpm(rpm as f64);
        }
        if let Some(tpm) = a.tpm {
            limits = limits.tpm(tpm as f64);
        }
        Ok(Job {
            input: a.input.clone(),
            output: a.output.clone(),
            api: a.api,
            base_url: a.base_url.clone(),
            key_from: Some(a.clone()),
            limits,
            concurrency: a.concurrency as usize,
            max_attempts: a.max_attempts,
            raw: a.raw,
            resume: a.resume,
            grace: a.grace,
            progress: ProgressMode::detect(),
            report_lines: true,
            dashboard: a.dashboard,
        })
    }

    fn template(&self, api: Api) -> Result<ProviderConfig, String> {
        let key = self
            .key_from
            .as_ref()
            .and_then(|a| ApiKey::from_env(a.key_var(api)))
            .unwrap_or_else(|| ApiKey::new(PLACEHOLDER_KEY));
        Ok(ProviderConfig::new(api, &self.base_url)
            .map_err(|e| format!("--base-url {}: {e}", self.base_url))?
            .api_key(key))
    }
}

/// Runs `demandflow batch`.
pub(crate) fn run(args: BatchArgs) -> i32 {
    let json = args.json;
    super::run_async("batch", Job::from_args(&args), |job| async move {
        let interrupts = Interrupts::watch();
        match execute(job, interrupts).await {
            Ok(outcome) => Ok(report(&outcome, json)),
            Err(RunError::Usage(e)) => Ok(super::usage_error("batch", &e)),
            Err(RunError::Failed(e)) => Err(e),
        }
    })
}

/// Prints the summary and returns the exit status: 130 after Ctrl-C, 1
/// when a result is a failure (it is in the failures file), else 0.
fn report(outcome: &Outcome, json: bool) -> i32 {
    if json {
        outln!("{}", outcome.summary.to_json_line());
    } else {
        outln!("{}", outcome.summary);
    }
    if outcome.interrupted {
        errln!("demandflow batch: interrupted; run again with --resume to send the rest");
        INTERRUPTED
    } else if outcome.summary.failures() > 0 {
        1
    } else {
        0
    }
}

/// Ctrl-C presses, counted (the first stops reading, the second cancels).
#[derive(Debug, Clone)]
pub(crate) struct Interrupts(watch::Receiver<u32>);

impl Interrupts {
    /// Starts watching SIGINT now (so that one arriving during the
    /// prescan is not the default "terminate").
    pub(crate) fn watch() -> Interrupts {
        let (tx, rx) = watch::channel(0u32);
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                super::interrupted().await;
                n += 1;
                if tx.send(n).is_err() {
                    return;
                }
            }
        });
        Interrupts(rx)
    }

    /// Never interrupted (the benchmark): the sender is gone, so `wait`
    /// never completes.
    pub(crate) fn never() -> Interrupts {
        Interrupts(watch::channel(0u32).1)
    }

    /// Completes once Ctrl-C has been pressed `n` times in all.
    async fn wait(&mut self, n: u32) {
        if self.0.wait_for(|&seen| seen >= n).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The output writer, shared by the reader (bad lines) and the writing
/// stage (results). Every write goes through one `BatchWriter`, so each
/// line is whole and the order is the order of the writes.
#[derive(Clone)]
struct SharedWriter(Arc<Mutex<BatchWriter>>);

impl SharedWriter {
    fn write(&self, result: &BatchResult) -> Result<(), OutputError> {
        lock(&self.0).write(result).map(|_| ())
    }
}

/// The last stage: writes each result. (Clones share the writer; the
/// stage runs one instance and is never restarted.)
#[derive(Clone)]
struct WriteResults {
    writer: SharedWriter,
    counters: Arc<Counters>,
    held: Held,
    raw: bool,
}

impl Consumer<LlmResult> for WriteResults {
    async fn consume(&mut self, results: &[LlmResult], _cx: &Context) -> Result<(), BoxError> {
        for r in results {
            self.counters.add_rate_limited(u64::from(r.rate_limited));
            self.writer.write(&batch_result(r, self.raw))?;
            self.held.leave();
        }
        Ok(())
    }
}

/// The output line of a request's result.
fn batch_result(r: &LlmResult, raw: bool) -> BatchResult {
    let mut b = match &r.message {
        Some(m) => BatchResult::from_final(&*r.id, m, r.attempts),
        None => BatchResult::failed(
            &*r.id,
            r.attempts,
            ResultError::new("no_answer", "the request ended without an answer"),
        ),
    };
    if let Some(e) = &r.error {
        b.error = Some(ResultError::new(&e.kind, &e.message));
    }
    b = b.with_status(r.status.into());
    if raw {
        if let Some(m) = &r.message {
            b = b.with_raw(m.to_json());
        }
    }
    b
}

/// Turns the reader's lines into requests: a bad line is written here and
/// left out; an I/O error ends the stream and is kept for the report.
struct Prepare {
    writer: SharedWriter,
    templates: Vec<(Api, ProviderConfig)>,
    job: Arc<Job>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    reported: u64,
    /// Counts each request as it is read.
    held: Held,
}

impl Prepare {
    fn request(&mut self, item: BatchItem) -> Result<LlmRequest, String> {
        let template = match self.templates.iter().find(|(api, _)| *api == item.api) {
            Some((_, t)) => t,
            None => {
                let t = self.job.template(item.api)?;
                self.templates.push((item.api, t));
                &self.templates[self.templates.len() - 1].1
            }
        };
        Ok(LlmRequest::with_template(
            item.custom_id,
            template,
            serde_json::Value::Object(item.body),
        ))
    }

    /// The next request to send: bad lines on the way are written here;
    /// `None` at the end of the input, after an error (kept for the
    /// report), or once Ctrl-C asked to stop reading.
    async fn next<R>(&mut self, reader: &mut BatchReader<R>) -> Option<LlmRequest>
    where
        R: tokio::io::AsyncBufRead + Unpin,
    {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            let line = match reader.next().await {
                Ok(Some(line)) => Ok(line),
                Ok(None) => return None,
                Err(e) => Err(e),
            };
            match self.line(line) {
                Ok(Some(request)) => return Some(request),
                Ok(None) => {}
                Err(e) => {
                    *lock(&self.error) = Some(e);
                    return None;
                }
            }
        }
    }

    /// `Some(request)` to send, `None` for a line handled here; `Err` ends
    /// the input.
    fn line(
        &mut self,
        line: std::io::Result<demandflow_stages::batch::BatchLine>,
    ) -> Result<Option<LlmRequest>, String> {
        let (_, item) = line.map_err(|e| format!("reading {}: {e}", self.job.input.display()))?;
        match item {
            Ok(item) => {
                let request = self.request(item)?;
                self.held.enter();
                Ok(Some(request))
            }
            Err(bad) => {
                if self.job.report_lines {
                    let n = self.reported;
                    self.reported += 1;
                    if n < MAX_REPORTED_LINES {
                        errln!("demandflow batch: {}: {bad}", self.job.input.display());
                    } else if n == MAX_REPORTED_LINES {
                        errln!(
                            "demandflow batch: more bad lines: see {}",
                            demandflow_stages::batch::failed_path(&self.job.output).display()
                        );
                    }
                }
                self.writer
                    .write(&BatchResult::invalid(&bad))
                    .map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    }
}

/// Runs a batch job until its input is done, or Ctrl-C and the grace
/// period; the output is resumable whatever happens.
pub(crate) async fn execute(job: Job, mut interrupts: Interrupts) -> Result<Outcome, RunError> {
    let job = Arc::new(job);
    let open = |what: &str, e: std::io::Error| {
        RunError::Usage(format!("{what} {}: {e}", job.input.display()))
    };
    let file = tokio::fs::File::open(&job.input)
        .await
        .map_err(|e| open("cannot open --input", e))?;
    let mut scan = prescan(BufReader::new(file), DEFAULT_MAX_LINE_BYTES)
        .await
        .map_err(|e| RunError::Failed(format!("reading {}: {e}", job.input.display())))?;

    let counters = Arc::new(Counters::new());
    counters.set_total(scan.lines);
    let (writer, finished) = if job.resume {
        let state = resume(&job.output)
            .await
            .map_err(|e| RunError::Failed(e.to_string()))?;
        if state.duplicates > 0 {
            errln!(
                "demandflow batch: warning: {} holds {} repeated results (was it written by two runs at once?)",
                job.output.display(),
                state.duplicates
            );
        }
        counters.set_resumed(state.records);
        let writer =
            BatchWriter::append(&job.output).map_err(|e| RunError::Failed(e.to_string()))?;
        (writer, state.finished)
    } else {
        let writer = BatchWriter::create(&job.output).map_err(|e| match e {
            OutputError::NotEmpty { .. } => RunError::Usage(e.to_string()),
            e => RunError::Failed(e.to_string()),
        })?;
        (writer, Default::default())
    };
    let writer = SharedWriter(Arc::new(Mutex::new(writer.counters(counters.clone()))));

    let file = tokio::fs::File::open(&job.input)
        .await
        .map_err(|e| open("cannot open --input", e))?;
    // The prescan found which ids may repeat: the duplicate check holds
    // those alone, so memory does not grow with the file.
    let mut reader = BatchReader::new(BufReader::new(file))
        .skip(finished)
        .repeated_ids(std::mem::take(&mut scan.repeated_ids));
    // Without --api the reader takes the first valid line's, as the
    // prescan did.
    if let Some(api) = job.api {
        reader = reader.api(api);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let held = Held::new();
    let read_error = Arc::new(Mutex::new(None::<String>));
    let prepare = Prepare {
        writer: writer.clone(),
        templates: Vec::new(),
        job: job.clone(),
        stop: stop.clone(),
        error: read_error.clone(),
        reported: 0,
        held: held.clone(),
    };
    let requests =
        futures::stream::unfold((reader, prepare), |(mut reader, mut prepare)| async move {
            let request = prepare.next(&mut reader).await?;
            Some((request, (reader, prepare)))
        });

    let stage = RequestStage::new()
        .concurrency(job.concurrency)
        .limits(job.limits)
        .max_attempts(job.max_attempts);
    let stage_stats = stage.stats();

    let mut p = Pipeline::new();
    let read = p
        .add_producer("read", source::from_stream(requests))
        .restart(Restart::Temporary)
        .build();
    let llm = p
        .processor("llm", stage)
        .restart(Restart::Temporary)
        .subscribe(&read, Subscribe::default());
    p.consumer(
        "write",
        WriteResults {
            writer: writer.clone(),
            counters: counters.clone(),
            held: held.clone(),
            raw: job.raw,
        },
    )
    .restart(Restart::Temporary)
    .subscribe(&llm, Subscribe::max_demand(WRITE_MAX_DEMAND));

    let progress = ProgressTask::spawn(counters.clone(), job.progress);
    let handle = p
        .spawn()
        .map_err(|e| RunError::Failed(format!("cannot start the pipeline: {e}")))?;
    // The pipeline's live view (stages, edges, demand), for a dashboard.
    let watch = handle.watch();
    let dashboard = super::dashboard::serve(watch.clone(), job.dashboard, "demandflow batch")
        .await
        .map_err(RunError::Usage)?;
    let canceller = handle.canceller();
    let sampler = Sampler::spawn(counters.clone());

    let mut interrupted = false;
    tokio::select! {
        _ = watch.stopped() => {}
        _ = interrupts.wait(1) => interrupted = true,
    }
    let result = if interrupted {
        errln!(
            "demandflow batch: Ctrl-C: no new requests; waiting up to {:?} for the {} in flight (Ctrl-C again to stop now)",
            job.grace,
            stage_stats.snapshot().in_flight
        );
        stop.store(true, Ordering::Release);
        let shutdown = handle.shutdown(job.grace);
        tokio::pin!(shutdown);
        tokio::select! {
            r = &mut shutdown => r,
            _ = interrupts.wait(2) => {
                canceller.cancel();
                shutdown.await
            }
        }
    } else {
        handle.join().await
    };
    super::dashboard::close(dashboard).await;
    let elapsed = progress.finish().await;
    let samples = sampler.finish().await;
    if let Err(e) = lock(&writer.0).sync() {
        return Err(RunError::Failed(e.to_string()));
    }
    if let Some(e) = lock(&read_error).take() {
        return Err(RunError::Failed(e));
    }
    // After Ctrl-C the pipeline may end cancelled: that is the plan, the
    // unfinished requests are left for --resume.
    if let Err(e) = result {
        if !(interrupted && e.is_cancelled()) {
            return Err(RunError::Failed(format!(
                "{e}; the output is resumable (--resume)"
            )));
        }
    }
    let summary = Summary::new(&counters.snapshot(), elapsed);
    // Interrupted means something was left unread or unsent.
    let interrupted = interrupted && summary.resumed + summary.written < scan.lines;
    Ok(Outcome {
        summary,
        interrupted,
        stage: stage_stats.snapshot(),
        peak_buffered: held.snapshot().peak,
        buffer_bound: (2 * job.concurrency.max(1) + WRITE_MAX_DEMAND) as u64,
        samples,
    })
}

/// `(seconds since the start, results written, tokens)`.
pub(crate) type Sample = (f64, u64, u64);

/// Samples the results written over time, for the rates.
struct Sampler {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn spawn(counters: Arc<Counters>) -> Sampler {
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let s = counters.snapshot();
                samples.push((started.elapsed().as_secs_f64(), s.written, s.tokens()));
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
            }
            let s = counters.snapshot();
            samples.push((started.elapsed().as_secs_f64(), s.written, s.tokens()));
            samples
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}
