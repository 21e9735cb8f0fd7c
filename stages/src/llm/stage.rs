//! [`RequestStage`] and its pass-through form [`EventStage`]: the tokio
//! side of the request stage, around the pure [`Scheduler`].

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use demandflow::{BoxError, CancelCause, CancelScope, Context, Emitter, Processor, StageWaker};
use futures::{FutureExt, StreamExt};
use reqwest::header::HeaderMap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::request::LlmRequest;
use super::result::{LlmError, LlmEvent, LlmResult};
use crate::provider::{
    http_client, Decision, ExponentialBackoff, Failure, FinalMessage, MessageBuilder, Observed,
    ProviderError, ProviderEvent, ProviderStream, RetryInput, RetryPolicy, Status, TimeoutKind,
};
use crate::ratelimit::{
    AdaptiveConfig, Dispatch, Job, Limits, RateLimitSnapshot, Scheduler, SchedulerConfig,
};

/// Most messages handled per call, so one call's output stays bounded.
const MAX_MESSAGES_PER_CALL: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of a request stage, shared by its clones and readable while
/// it runs (for a progress bar or a benchmark). Cheap to clone.
#[derive(Clone, Default)]
pub struct RequestStats(Arc<StatsInner>);

#[derive(Default)]
struct StatsInner {
    attempts: AtomicU64,
    retries: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    rate_limited: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    queued: AtomicU64,
    peak_queued: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
}

/// A reading of [`RequestStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// HTTP attempts started.
    pub attempts: u64,
    /// Attempts scheduled again after a failure before the first token.
    pub retries: u64,
    /// Results emitted that succeeded.
    pub succeeded: u64,
    /// Results emitted that failed (the dead letters).
    pub failed: u64,
    /// Responses with status 429 or 529.
    pub rate_limited: u64,
    /// Requests being sent or streamed now.
    pub in_flight: u64,
    /// The most requests ever in flight at once.
    pub peak_in_flight: u64,
    /// Requests received and waiting to be sent (for budget, a slot or a
    /// retry) now.
    pub queued: u64,
    /// The most requests ever waiting at once.
    pub peak_queued: u64,
    /// Input tokens reported by the providers.
    pub input_tokens: u64,
    /// Output tokens reported by the providers.
    pub output_tokens: u64,
}

impl StatsSnapshot {
    /// Results emitted.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed
    }
}

impl RequestStats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            attempts: get(&s.attempts),
            retries: get(&s.retries),
            succeeded: get(&s.succeeded),
            failed: get(&s.failed),
            rate_limited: get(&s.rate_limited),
            in_flight: get(&s.in_flight),
            peak_in_flight: get(&s.peak_in_flight),
            queued: get(&s.queued),
            peak_queued: get(&s.peak_queued),
            input_tokens: get(&s.input_tokens),
            output_tokens: get(&s.output_tokens),
        }
    }

    fn gauges(&self, in_flight: usize, queued: usize) {
        let s = &self.0;
        s.in_flight.store(in_flight as u64, Ordering::Relaxed);
        s.peak_in_flight
            .fetch_max(in_flight as u64, Ordering::Relaxed);
        s.queued.store(queued as u64, Ordering::Relaxed);
        s.peak_queued.fetch_max(queued as u64, Ordering::Relaxed);
    }
}

impl fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[derive(Clone)]
struct Settings {
    concurrency: usize,
    limits: Limits,
    endpoint_limits: Vec<(String, Limits)>,
    adaptive: AdaptiveConfig,
    retry: Arc<dyn RetryPolicy>,
    client: Option<reqwest::Client>,
    channel: usize,
}

/// A processor that sends each [`LlmRequest`] as one streamed provider
/// call and emits one [`LlmResult`] per request, under a concurrency limit
/// and per-endpoint request and token budgets that adapt to the
/// providers' rate-limit headers. See the [module docs](super) for the
/// model and an example.
///
/// It asks for its own input (manual demand): only as many requests as
/// there are free slots and budget for, so a million-line input is read as
/// capacity frees up, not held in memory. Give it one upstream.
///
/// Clones share their [`RequestStats`]; each running instance has its own
/// queue and limiters (one instance runs many requests at once: there is
/// no need for the engine's `concurrency`).
pub struct RequestStage {
    settings: Settings,
    stats: RequestStats,
    core: Option<Core>,
}

/// The pass-through form of [`RequestStage`]: emits each request's
/// provider events as they arrive ([`LlmEvent::Event`], tagged with the
/// request's id), then its [`LlmEvent::Finished`] result. Made by
/// [`RequestStage::events`].
#[derive(Clone)]
pub struct EventStage(RequestStage);

/// A clone has the same settings and shares the stats; it starts with
/// nothing queued or in flight (what a restarted instance is).
impl Clone for RequestStage {
    fn clone(&self) -> RequestStage {
        RequestStage {
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            core: None,
        }
    }
}

impl fmt::Debug for RequestStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestStage")
            .field("concurrency", &self.settings.concurrency)
            .field("limits", &self.settings.limits)
            .field("endpoint_limits", &self.settings.endpoint_limits)
            .field("retry", &self.settings.retry)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for EventStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventStage").field(&self.0).finish()
    }
}

impl Default for RequestStage {
    fn default() -> RequestStage {
        RequestStage::new()
    }
}

impl RequestStage {
    /// A stage with 64 requests in flight at most, no request or token
    /// limit (until [`limits`](Self::limits) or the providers' headers set
    /// one), and up to 5 attempts per request.
    pub fn new() -> RequestStage {
        RequestStage {
            settings: Settings {
                concurrency: 64,
                limits: Limits::none(),
                endpoint_limits: Vec::new(),
                adaptive: AdaptiveConfig::default(),
                retry: Arc::new(ExponentialBackoff::default().max_retries(4)),
                client: None,
                channel: 256,
            },
            stats: RequestStats::default(),
            core: None,
        }
    }

    /// Sets the most requests in flight at once, all endpoints together
    /// (at least 1).
    pub fn concurrency(mut self, n: usize) -> RequestStage {
        self.settings.concurrency = n.max(1);
        self
    }

    /// Sets the request and token budgets of every endpoint not given its
    /// own with [`endpoint_limits`](Self::endpoint_limits).
    pub fn limits(mut self, limits: Limits) -> RequestStage {
        self.settings.limits = limits;
        self
    }

    /// Sets the budgets of one endpoint, named by
    /// [`endpoint_key`](super::endpoint_key) or
    /// [`LlmRequest::endpoint_key`].
    pub fn endpoint_limits(mut self, endpoint: impl Into<String>, limits: Limits) -> RequestStage {
        self.settings
            .endpoint_limits
            .push((endpoint.into(), limits));
        self
    }

    /// Sets how the endpoints' rates adapt.
    pub fn adaptive(mut self, config: AdaptiveConfig) -> RequestStage {
        self.settings.adaptive = config;
        self
    }

    /// Sets the retry policy for failures before the first token (the
    /// requests' own policies are not used). Its retry count is per
    /// request.
    pub fn retry_policy(mut self, policy: impl RetryPolicy) -> RequestStage {
        self.settings.retry = Arc::new(policy);
        self
    }

    /// Sets the attempts per request (at least 1), with the SDKs' backoff
    /// between them.
    pub fn max_attempts(self, n: u32) -> RequestStage {
        let retries = n.max(1) - 1;
        self.retry_policy(ExponentialBackoff::default().max_retries(retries))
    }

    /// Uses `client` for every request (by default one client per
    /// endpoint is built with [`http_client`]).
    pub fn client(mut self, client: reqwest::Client) -> RequestStage {
        self.settings.client = Some(client);
        self
    }

    /// The stage's counters (shared with its clones).
    pub fn stats(&self) -> RequestStats {
        self.stats.clone()
    }

    /// The pass-through form: each request's events, then its result.
    pub fn events(self) -> EventStage {
        EventStage(self)
    }

    fn core(&mut self, cx: &Context) -> &mut Core {
        let settings = &self.settings;
        self.core.get_or_insert_with(|| Core::new(settings, cx))
    }

    async fn run_start(&mut self, cx: &Context, pass_through: bool) {
        let (settings, stats) = (self.settings.clone(), self.stats.clone());
        let core = self.core(cx);
        core.pass_through = pass_through;
        let mut out = Vec::new();
        core.pump(&settings, &stats, cx, &mut out);
    }

    async fn run_process(&mut self, events: &[LlmRequest], cx: &Context, out: &mut Vec<LlmEvent>) {
        let (settings, stats) = (self.settings.clone(), self.stats.clone());
        let core = self.core(cx);
        core.accept(events, cx);
        core.pump(&settings, &stats, cx, out);
    }

    async fn run_timer(&mut self, cx: &Context, out: &mut Vec<LlmEvent>) {
        let (settings, stats) = (self.settings.clone(), self.stats.clone());
        self.core(cx).pump(&settings, &stats, cx, out);
    }

    async fn run_finish(&mut self, cx: &Context, out: &mut Vec<LlmEvent>) {
        let (settings, stats) = (self.settings.clone(), self.stats.clone());
        self.core(cx).finish(&settings, &stats, cx, out).await;
    }

    fn next_timer(&self) -> Option<Instant> {
        self.core.as_ref().and_then(Core::timer)
    }
}

fn results(events: Vec<LlmEvent>, out: &mut Emitter<LlmResult>) {
    for e in events {
        if let LlmEvent::Finished(r) = e {
            out.emit(*r);
        }
    }
}

impl Processor<LlmRequest, LlmResult> for RequestStage {
    async fn process(
        &mut self,
        events: &[LlmRequest],
        out: &mut Emitter<LlmResult>,
        cx: &Context,
    ) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        self.run_process(events, cx, &mut buf).await;
        results(buf, out);
        Ok(())
    }

    async fn start(&mut self, cx: &Context) -> Result<(), BoxError> {
        self.run_start(cx, false).await;
        Ok(())
    }

    async fn finish(&mut self, out: &mut Emitter<LlmResult>, cx: &Context) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        self.run_finish(cx, &mut buf).await;
        results(buf, out);
        Ok(())
    }

    fn timer(&self) -> Option<Instant> {
        self.next_timer()
    }

    fn manual_demand(&self) -> bool {
        true
    }

    async fn on_timer(
        &mut self,
        out: &mut Emitter<LlmResult>,
        cx: &Context,
    ) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        self.run_timer(cx, &mut buf).await;
        results(buf, out);
        Ok(())
    }
}

impl EventStage {
    /// The stage's counters (shared with its clones).
    pub fn stats(&self) -> RequestStats {
        self.0.stats()
    }
}

impl Processor<LlmRequest, LlmEvent> for EventStage {
    async fn process(
        &mut self,
        events: &[LlmRequest],
        out: &mut Emitter<LlmEvent>,
        cx: &Context,
    ) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        self.0.run_process(events, cx, &mut buf).await;
        out.extend(buf);
        Ok(())
    }

    async fn start(&mut self, cx: &Context) -> Result<(), BoxError> {
        self.0.run_start(cx, true).await;
        Ok(())
    }

    async fn finish(&mut self, out: &mut Emitter<LlmEvent>, cx: &Context) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        self.0.run_finish(cx, &mut buf).await;
        out.extend(buf);
        Ok(())
    }

    fn timer(&self) -> Option<Instant> {
        self.0.next_timer()
    }

    fn manual_demand(&self) -> bool {
        true
    }

    async fn on_timer(
        &mut self,
        out: &mut Emitter<LlmEvent>,
        cx: &Context,
    ) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        self.0.run_timer(cx, &mut buf).await;
        out.extend(buf);
        Ok(())
    }
}

// ------------------------------------------------------------------ core

/// A request in the scheduler: the request and what its attempts saw.
struct Pending {
    req: LlmRequest,
    rate_limited: u32,
}

struct Head {
    endpoint: String,
    status: u16,
    snapshot: RateLimitSnapshot,
}

/// What one attempt's task reports.
struct AttemptDone {
    seq: u64,
    message: FinalMessage,
    /// The error the stream ended with.
    error: Option<ProviderError>,
    /// The last response's status and headers.
    response: Option<(u16, HeaderMap)>,
    /// Whether any event of the answer (a token, a tool call; not `Start`,
    /// `Usage` or the error) arrived: from then on the attempt is never
    /// retried.
    content: bool,
    /// Pass-through: events held back until the first content event (so
    /// a retried attempt shows nothing).
    held: Vec<ProviderEvent>,
    /// Whether the request's own scope cancelled it.
    cancelled: bool,
}

enum Msg {
    Event(Arc<str>, ProviderEvent),
    Done(Box<AttemptDone>),
}

struct Core {
    scheduler: Scheduler<Pending>,
    running: HashMap<u64, Job<Pending>>,
    next_seq: u64,
    tasks: JoinSet<()>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    heads: Arc<Mutex<Vec<Head>>>,
    clients: HashMap<String, reqwest::Client>,
    /// Asked upstream and not received yet.
    outstanding: usize,
    input_ended: bool,
    wake: Option<Instant>,
    waker: StageWaker,
    pass_through: bool,
}

fn std_now() -> std::time::Instant {
    Instant::now().into_std()
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Core {
    fn new(settings: &Settings, cx: &Context) -> Core {
        let mut scheduler = Scheduler::new(SchedulerConfig {
            concurrency: settings.concurrency,
            adaptive: settings.adaptive,
        });
        scheduler.set_default_limits(settings.limits);
        let now = std_now();
        for (endpoint, limits) in &settings.endpoint_limits {
            scheduler.set_limits(endpoint, *limits, now);
        }
        let (tx, rx) = mpsc::channel(settings.channel.max(1));
        Core {
            scheduler,
            running: HashMap::new(),
            next_seq: 0,
            tasks: JoinSet::new(),
            tx,
            rx,
            heads: Arc::default(),
            clients: HashMap::new(),
            outstanding: 0,
            input_ended: false,
            wake: None,
            waker: cx.waker(),
            pass_through: false,
        }
    }

    fn timer(&self) -> Option<Instant> {
        if !self.rx.is_empty() || !lock(&self.heads).is_empty() {
            return Some(Instant::now());
        }
        self.wake
    }

    fn accept(&mut self, requests: &[LlmRequest], cx: &Context) {
        self.outstanding = self.outstanding.saturating_sub(requests.len());
        let now = Instant::now();
        for req in requests {
            let deadline = earliest(req.deadline_after().map(|d| now + d), cx.deadline());
            let job = Job::new(
                Pending {
                    req: req.clone(),
                    rate_limited: 0,
                },
                req.endpoint_key(),
                req.estimated_tokens(),
            )
            .deadline(deadline.map(Instant::into_std));
            self.scheduler.submit(job, now.into_std());
        }
    }

    fn drain_heads(&mut self, stats: &RequestStats) {
        let heads = std::mem::take(&mut *lock(&self.heads));
        let now = std_now();
        for h in heads {
            if matches!(h.status, 429 | 529) {
                stats.0.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            self.scheduler
                .observe(&h.endpoint, h.status, &h.snapshot, now);
        }
    }

    /// Takes in what the tasks reported, starts what can start, asks
    /// upstream for what there is room for, and sets the next wake-up.
    fn pump(
        &mut self,
        settings: &Settings,
        stats: &RequestStats,
        cx: &Context,
        out: &mut Vec<LlmEvent>,
    ) {
        self.drain_heads(stats);
        for _ in 0..MAX_MESSAGES_PER_CALL {
            match self.rx.try_recv() {
                Ok(msg) => self.handle(msg, settings, stats, out),
                Err(_) => break,
            }
        }
        // Finished tasks have already reported (or will: their message is
        // sent before they end); reaping frees their memory.
        while self.tasks.try_join_next().is_some() {}
        let cancelled = self
            .scheduler
            .take_where(|p| p.req.cancel_scope().is_some_and(CancelScope::is_cancelled));
        for job in cancelled {
            let err = LlmError::new("cancelled", "the request was cancelled while it waited");
            self.emit_result(job, Status::Cancelled, None, Some(err), stats, out);
        }
        let now = std_now();
        while let Some(d) = self.scheduler.next(now) {
            match d {
                Dispatch::Send(job) => self.spawn(job, settings, stats, cx, out),
                Dispatch::Expired(job) => {
                    let err = LlmError::new(
                        "deadline_exceeded",
                        "the deadline passed while the request waited for its turn",
                    );
                    self.emit_result(job, Status::DeadlineExceeded, None, Some(err), stats, out);
                }
            }
        }
        if !self.input_ended {
            let room = self.scheduler.room(now);
            let want = room.saturating_sub(self.outstanding);
            if want > 0 && cx.ask(want).is_ok() {
                self.outstanding += want;
            }
        }
        self.wake = self.scheduler.wake_at(now).map(Instant::from_std);
        stats.gauges(self.scheduler.in_flight(), self.scheduler.queued());
    }

    fn spawn(
        &mut self,
        mut job: Job<Pending>,
        settings: &Settings,
        stats: &RequestStats,
        cx: &Context,
        out: &mut Vec<LlmEvent>,
    ) {
        let req = job.item.req.clone();
        if req.cancel_scope().is_some_and(CancelScope::is_cancelled) {
            self.scheduler.complete(&job, Some(0), std_now());
            job.attempts -= 1;
            let err = LlmError::new("cancelled", "the request was cancelled while it waited");
            self.emit_result(job, Status::Cancelled, None, Some(err), stats, out);
            return;
        }
        let client = match &settings.client {
            Some(c) => Ok(c.clone()),
            None => match self.clients.get(&job.endpoint) {
                Some(c) => Ok(c.clone()),
                None => http_client(req.config()).inspect(|c| {
                    self.clients.insert(job.endpoint.clone(), c.clone());
                }),
            },
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                self.scheduler.complete(&job, Some(0), std_now());
                let err = LlmError::from_provider(&e);
                self.emit_result(job, Status::Failed, None, Some(err), stats, out);
                return;
            }
        };
        stats.0.attempts.fetch_add(1, Ordering::Relaxed);
        let seq = self.next_seq;
        self.next_seq += 1;
        let attempt = Attempt {
            seq,
            req,
            client,
            endpoint: job.endpoint.clone(),
            deadline: job.deadline.map(Instant::from_std),
            scope: cx.scope().child(),
            heads: self.heads.clone(),
            waker: self.waker.clone(),
            tx: self.tx.clone(),
            pass_through: self.pass_through,
        };
        self.running.insert(seq, job);
        self.tasks.spawn(attempt.run());
    }

    fn handle(
        &mut self,
        msg: Msg,
        settings: &Settings,
        stats: &RequestStats,
        out: &mut Vec<LlmEvent>,
    ) {
        match msg {
            Msg::Event(id, event) => out.push(LlmEvent::Event { id, event }),
            Msg::Done(done) => self.attempt_done(*done, settings, stats, out),
        }
    }

    fn attempt_done(
        &mut self,
        done: AttemptDone,
        settings: &Settings,
        stats: &RequestStats,
        out: &mut Vec<LlmEvent>,
    ) {
        // The response's head was recorded before this message was sent:
        // let the endpoint learn from it before deciding on a retry.
        self.drain_heads(stats);
        let Some(mut job) = self.running.remove(&done.seq) else {
            return;
        };
        let now = Instant::now();
        let usage = done.message.usage;
        if let Some(u) = usage {
            stats
                .0
                .input_tokens
                .fetch_add(u.input_tokens, Ordering::Relaxed);
            stats
                .0
                .output_tokens
                .fetch_add(u.output_tokens, Ordering::Relaxed);
        }
        let actual = usage.map(|u| u.input_tokens + u.output_tokens);
        self.scheduler.complete(&job, actual, now.into_std());
        if let Some((429 | 529, _)) = &done.response {
            job.item.rate_limited += 1;
        }
        let mut error = done.error.clone();
        // Before the first content event nothing of the answer has gone
        // downstream (pass-through holds those events back), so a failure
        // there is retried: an HTTP or connection error, or an error event
        // in the stream (Anthropic's `event: error` right after
        // `message_start`, an OpenAI error chunk) of a transient kind.
        let early = !done.content && !done.cancelled;
        let stream_status = match (&done.error, early) {
            (None, true) => in_stream_status(&done.message),
            _ => None,
        };
        if early && (done.error.is_some() || stream_status.is_some()) {
            let empty = HeaderMap::new();
            let failure = match (&done.error, stream_status) {
                (Some(ProviderError::Http { status, .. }), _) => Some(Failure::Status {
                    status: *status,
                    headers: done.response.as_ref().map_or(&empty, |(_, h)| h),
                }),
                (Some(ProviderError::Connect { .. } | ProviderError::Body(_)), _) => {
                    Some(Failure::Connect)
                }
                (
                    Some(ProviderError::Timeout {
                        which: TimeoutKind::Connect | TimeoutKind::FirstEvent,
                        ..
                    }),
                    _,
                ) => Some(Failure::Timeout),
                (Some(_), _) => None,
                // The response itself was a 200: its headers carry no
                // retry hint, so the policy's backoff applies.
                (None, Some(status)) => Some(Failure::Status {
                    status,
                    headers: &empty,
                }),
                (None, None) => None,
            };
            if let Some(failure) = failure {
                let input = RetryInput::new(failure, job.attempts.saturating_sub(1))
                    .at(now, SystemTime::now())
                    .deadline(job.deadline.map(Instant::from_std));
                match settings.retry.decide(&input) {
                    Decision::Retry(delay) => {
                        // A rate-limit answer that says how long to wait is
                        // taken at its word: the endpoint is blocked for
                        // exactly that long, and the retry needs no extra
                        // backoff on top (the endpoint's rate already
                        // dropped).
                        let delay = match &done.response {
                            Some((429 | 529, headers)) => {
                                RateLimitSnapshot::from_headers(headers, SystemTime::now())
                                    .wait_hint()
                                    .unwrap_or(delay)
                            }
                            _ => delay,
                        };
                        stats.0.retries.fetch_add(1, Ordering::Relaxed);
                        self.scheduler.retry(job, (now + delay).into_std());
                        return;
                    }
                    Decision::GiveUp(reason) => {
                        // An in-stream error keeps its own kind and message
                        // (from the stream) in the result.
                        if let Some(err) = &done.error {
                            error = Some(err.clone().given_up(reason));
                        }
                    }
                }
            }
        }
        let id = job.item.req.id_arc();
        out.extend(done.held.into_iter().map(|event| LlmEvent::Event {
            id: id.clone(),
            event,
        }));
        let (status, err) = if done.cancelled {
            let e = LlmError::new("cancelled", "the request was cancelled");
            (Status::Cancelled, Some(e))
        } else if let Some(e) = &error {
            (e.status_on_stream(), Some(LlmError::from_provider(e)))
        } else {
            let status = done.message.status;
            let err = match status {
                Status::Completed | Status::Incomplete | Status::Refused => None,
                Status::Cancelled => Some(LlmError::new("cancelled", "the run was cancelled")),
                _ => Some(done.message.errors.last().map_or_else(
                    || {
                        LlmError::new(
                            "stream_error",
                            format!("the stream ended {}", status.as_str()),
                        )
                    },
                    |e| LlmError::new(&e.kind, e.message.clone()),
                )),
            };
            (status, err)
        };
        self.emit_result(job, status, Some(done.message), err, stats, out);
    }

    fn emit_result(
        &mut self,
        job: Job<Pending>,
        status: Status,
        message: Option<FinalMessage>,
        error: Option<LlmError>,
        stats: &RequestStats,
        out: &mut Vec<LlmEvent>,
    ) {
        let result = LlmResult {
            id: job.item.req.id_arc(),
            status,
            message,
            attempts: job.attempts,
            rate_limited: job.item.rate_limited,
            error,
            endpoint: job.endpoint,
        };
        let counter = if result.is_success() {
            &stats.0.succeeded
        } else {
            &stats.0.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        out.push(LlmEvent::Finished(Box::new(result)));
    }

    /// Runs everything still queued or in flight to its result: input has
    /// ended.
    async fn finish(
        &mut self,
        settings: &Settings,
        stats: &RequestStats,
        cx: &Context,
        out: &mut Vec<LlmEvent>,
    ) {
        self.input_ended = true;
        loop {
            self.pump(settings, stats, cx, out);
            if self.scheduler.queued() == 0 && self.running.is_empty() && self.rx.is_empty() {
                return;
            }
            let until = self
                .wake
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.handle(msg, settings, stats, out);
                    }
                }
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// The HTTP status an attempt's in-stream error stands for, when it is of a
/// kind worth retrying and the stream ended on it: `overloaded_error` is
/// Anthropic's 529; rate-limit kinds 429; server errors 500 or 503. `None`
/// for any other kind (`invalid_request_error`, a refusal, ...) and for a
/// stream that did not fail.
fn in_stream_status(message: &FinalMessage) -> Option<u16> {
    if message.status != Status::Failed {
        return None;
    }
    let kind = message.errors.last()?.kind.as_str();
    match kind {
        "overloaded_error" => Some(529),
        "rate_limit_error" | "rate_limit_exceeded" | "RESOURCE_EXHAUSTED" => Some(429),
        "api_error" | "server_error" | "internal_error" | "INTERNAL" => Some(500),
        "service_unavailable" | "UNAVAILABLE" => Some(503),
        _ => None,
    }
}

// --------------------------------------------------------------- attempt

/// One attempt of one request, run as its own task.
struct Attempt {
    seq: u64,
    req: LlmRequest,
    client: reqwest::Client,
    endpoint: String,
    deadline: Option<Instant>,
    scope: CancelScope,
    heads: Arc<Mutex<Vec<Head>>>,
    waker: StageWaker,
    tx: mpsc::Sender<Msg>,
    pass_through: bool,
}

#[derive(Default)]
struct Seen {
    response: Option<(u16, HeaderMap)>,
    error: Option<ProviderError>,
}

impl Attempt {
    async fn run(self) {
        let (seq, tx, waker) = (self.seq, self.tx.clone(), self.waker.clone());
        let done = match AssertUnwindSafe(self.stream()).catch_unwind().await {
            Ok(done) => done,
            // Never lose a request to a bug: the panic becomes its error.
            Err(_) => AttemptDone {
                seq,
                message: {
                    let mut b = MessageBuilder::default();
                    b.push(&ProviderEvent::Done {
                        status: Status::Failed,
                        stop_reason: None,
                    });
                    b.finish()
                },
                error: Some(ProviderError::Body(
                    "the attempt's task panicked".to_owned(),
                )),
                response: None,
                content: true,
                held: Vec::new(),
                cancelled: false,
            },
        };
        if tx.send(Msg::Done(Box::new(done))).await.is_ok() {
            waker.wake();
        }
    }

    async fn stream(self) -> AttemptDone {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let observer = {
            let (seen, heads, waker) = (seen.clone(), self.heads.clone(), self.waker.clone());
            let endpoint = self.endpoint.clone();
            move |o: Observed<'_>| match o {
                Observed::Response { status, headers } => {
                    let snapshot = RateLimitSnapshot::from_headers(headers, SystemTime::now());
                    lock(&heads).push(Head {
                        endpoint: endpoint.clone(),
                        status,
                        snapshot,
                    });
                    lock(&seen).response = Some((status, headers.clone()));
                    waker.wake();
                }
                Observed::Failed(err) => lock(&seen).error = Some(err.clone()),
            }
        };
        // The stage retries, so that every attempt passes the budgets.
        let config = self
            .req
            .config()
            .clone()
            .retry_policy(ExponentialBackoff::default().max_retries(0));
        let mut stream = ProviderStream::with_client(config, self.client.clone())
            .cancel_on(self.scope.clone())
            .observe(observer);
        if let Some(d) = self.deadline {
            stream = stream.deadline(d);
        }
        let id = self.req.id_arc();
        let mut builder = MessageBuilder::default();
        let mut held = Vec::new();
        let mut content = false;
        let mut cancelled = false;
        let request_scope = self.req.cancel_scope().cloned();
        loop {
            let next = match (&request_scope, cancelled) {
                (Some(scope), false) => tokio::select! {
                    biased;
                    _ = scope.cancelled() => {
                        cancelled = true;
                        self.scope.cancel(CancelCause::User);
                        continue;
                    }
                    ev = stream.next() => ev,
                },
                _ => stream.next().await,
            };
            let Some(event) = next else { break };
            builder.push(&event);
            let terminal = builder.is_done();
            // Usage is bookkeeping, not the answer: Anthropic reports the
            // input tokens in `message_start`, before any content, and an
            // overload may follow it.
            let is_content = !matches!(
                event,
                ProviderEvent::Start { .. }
                    | ProviderEvent::Usage(_)
                    | ProviderEvent::Error { .. }
                    | ProviderEvent::Done { .. }
            );
            if is_content && !content {
                content = true;
                if self.pass_through {
                    for e in held.drain(..) {
                        if !self.send(id.clone(), e).await {
                            break;
                        }
                    }
                }
            }
            if self.pass_through {
                if content {
                    self.send(id.clone(), event).await;
                } else {
                    held.push(event);
                }
            }
            if terminal {
                break;
            }
        }
        let seen = std::mem::take(&mut *lock(&seen));
        AttemptDone {
            seq: self.seq,
            message: builder.finish(),
            error: seen.error,
            response: seen.response,
            content,
            held,
            cancelled,
        }
    }

    async fn send(&self, id: Arc<str>, event: ProviderEvent) -> bool {
        let ok = self.tx.send(Msg::Event(id, event)).await.is_ok();
        self.waker.wake();
        ok
    }
}
