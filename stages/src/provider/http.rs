//! Provider streams over HTTP: [`ProviderStream`] (a `futures::Stream`) and
//! [`ProviderProducer`] (a demandflow producer).
//!
//! # Demand-gated reads
//!
//! The response body is read only inside `poll_next` / `produce`: there is no
//! background task and no channel between the socket and the consumer. One
//! body chunk is read at a time, and only when the events decoded from the
//! previous one have all been handed out, so the events waiting inside are
//! bounded by one chunk. With no demand nothing is read, the socket's
//! receive window fills, and TCP pushes back to the server.
//!
//! # Retries and timeouts
//!
//! Connect errors, error statuses the [`RetryPolicy`] accepts and a missing
//! first event are retried, and only until the first event of the body has
//! been decoded: after that a failure ends the stream with
//! [`ProviderEvent::Error`] and a terminal [`ProviderEvent::Done`] (a token is
//! never produced twice). Timeouts: connect (in the HTTP client), first event
//! (from sending a request), idle (from asking for more to the next decoded
//! event: bytes that complete no event do not count), total (the earlier of
//! [`Timeouts::total`] and the pipeline's deadline; retry waits never go past
//! it). A read timeout ends the stream [`Status::TimedOut`], the pipeline's
//! deadline [`Status::DeadlineExceeded`].
//!
//! # Hostile bodies
//!
//! Requests ask for `Accept-Encoding: identity`; a response with any other
//! `Content-Encoding` is refused before its body is read
//! ([`ProviderError::ContentEncoding`]). A line or event longer than the
//! decoder's cap ([`ProviderConfig::max_event_bytes`], 1 MiB by default)
//! fails the stream, so buffered bytes stay below the cap plus one chunk.
//!
//! [`RetryPolicy`]: super::RetryPolicy
//! [`Timeouts::total`]: super::Timeouts::total

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::SystemTime;

use demandflow::{BoxError, CancelScope, Context, Emitter, Flow, Producer};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::config::ProviderConfig;
use super::error::{error_chain, redact};
use super::message::{FinalMessage, MessageBuilder};
use super::retry::{Decision, Failure, GiveUp, RetryInput};
use super::{ProviderDecoder, ProviderError, ProviderEvent, Status, TimeoutKind};

/// Largest error body read from a failed response.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Builds the HTTP client a configuration needs: its connect timeout, no
/// proxy for loopback endpoints, and a user agent.
///
/// Share one client between producers of the same endpoint to reuse
/// connections; pass it to [`ProviderStream::with_client`] or
/// [`ProviderProducer::with_client`].
///
/// # Errors
///
/// [`ProviderError::Config`] when the TLS backend cannot be set up.
pub fn http_client(config: &ProviderConfig) -> Result<reqwest::Client, ProviderError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(config.timeout_settings().connect)
        .user_agent(concat!("demandflow/", env!("CARGO_PKG_VERSION")))
        .tcp_nodelay(true);
    if config.is_loopback() {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| ProviderError::Config(error_chain(&e)))
}

/// What a [`ProviderStream`] tells the observer set with
/// [`ProviderStream::observe`], for rate-limit accounting: every response's
/// head, and the error the stream ends with.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Observed<'a> {
    /// A response arrived (success or error status), before its body is
    /// read.
    Response {
        /// The HTTP status.
        status: u16,
        /// The response headers (the rate-limit headers among them).
        headers: &'a HeaderMap,
    },
    /// The stream is about to end with this error (after the retry policy
    /// gave up, or at once for a permanent one).
    Failed(&'a ProviderError),
}

type Observer = Arc<dyn Fn(Observed<'_>) + Send + Sync>;

enum State {
    Start,
    Backoff(Instant),
    /// Boxed: a response and a decoder are large next to the other states.
    Streaming(Box<Streaming>),
    Finished,
}

struct Streaming {
    resp: reqwest::Response,
    decoder: ProviderDecoder,
    first_event_by: Option<Instant>,
}

/// One logical request: its attempts, the body being read, and the events
/// decoded but not yet handed out.
struct Session {
    cfg: ProviderConfig,
    client: reqwest::Client,
    pipeline_deadline: Option<Instant>,
    /// Set on the first call: the earlier of the pipeline's deadline and
    /// `timeouts.total` from then.
    total: Option<Option<Instant>>,
    state: State,
    retries: u32,
    /// Whether the current attempt has decoded an event: from then on
    /// nothing is retried.
    decoded_any: bool,
    /// Events decoded and not handed out yet; refilled from one body chunk
    /// only when empty.
    lookahead: VecDeque<ProviderEvent>,
    /// Producer mode: a transient failure that used up the retries before
    /// any event is returned as `Err` so the supervisor can restart.
    transient_as_error: bool,
    observer: Option<Observer>,
}

enum Guarded<T> {
    Ready(T),
    TimedOut,
    Cancelled,
}

/// Runs `fut` until it completes, `until` passes or `cancel` fires; a ready
/// result wins over a timer that fired in the same poll.
async fn guarded<T>(
    cancel: Option<&CancelScope>,
    until: Option<Instant>,
    fut: impl Future<Output = T>,
) -> Guarded<T> {
    let cancelled = async {
        match cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let timer = async {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = cancelled => Guarded::Cancelled,
        r = fut => Guarded::Ready(r),
        _ = timer => Guarded::TimedOut,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Session {
    fn new(
        cfg: ProviderConfig,
        client: reqwest::Client,
        pipeline_deadline: Option<Instant>,
        transient_as_error: bool,
    ) -> Session {
        Session {
            cfg,
            client,
            pipeline_deadline,
            total: None,
            state: State::Start,
            retries: 0,
            decoded_any: false,
            lookahead: VecDeque::new(),
            transient_as_error,
            observer: None,
        }
    }

    fn total_deadline(&mut self) -> Option<Instant> {
        let pipeline = self.pipeline_deadline;
        let total = self.cfg.timeout_settings().total;
        *self
            .total
            .get_or_insert_with(|| earliest(pipeline, total.map(|t| Instant::now() + t)))
    }

    /// An event decoded earlier, without any I/O.
    fn pop_ready(&mut self) -> Option<ProviderEvent> {
        self.lookahead.pop_front()
    }

    /// The next event, reading (and retrying) as needed; `None` after the
    /// terminal event.
    async fn next(
        &mut self,
        cancel: Option<&CancelScope>,
    ) -> Result<Option<ProviderEvent>, ProviderError> {
        if self.lookahead.is_empty() {
            self.fill(cancel).await?;
        }
        Ok(self.lookahead.pop_front())
    }

    fn finish_with(&mut self, err: ProviderError) {
        if let Some(observe) = &self.observer {
            observe(Observed::Failed(&err));
        }
        let key = self.cfg.key().cloned();
        let [e, done] = err.to_events();
        let e = match e {
            ProviderEvent::Error { kind, message } => ProviderEvent::Error {
                kind,
                message: redact(message, key.as_ref()),
            },
            other => other,
        };
        self.lookahead.extend([e, done]);
        self.state = State::Finished;
    }

    fn finish_cancelled(&mut self) {
        self.lookahead.push_back(ProviderEvent::Done {
            status: Status::Cancelled,
            stop_reason: None,
        });
        self.state = State::Finished;
    }

    /// The error for the total deadline having passed: the pipeline's own
    /// deadline when that is what passed, else the total read timeout.
    fn deadline_error(&self) -> ProviderError {
        let timeouts = self.cfg.timeout_settings();
        match (self.pipeline_deadline, timeouts.total) {
            (Some(d), _) if d <= Instant::now() => ProviderError::DeadlineExceeded(
                "the pipeline's deadline passed during the request".to_owned(),
            ),
            (_, Some(after)) => ProviderError::Timeout {
                which: TimeoutKind::Total,
                after,
            },
            // Unreachable in practice (a deadline passed, so one was set);
            // name the pipeline's rather than panic.
            (_, None) => ProviderError::DeadlineExceeded(
                "the pipeline's deadline passed during the request".to_owned(),
            ),
        }
    }

    /// Advances until there is an event to hand out or the stream is over.
    async fn fill(&mut self, cancel: Option<&CancelScope>) -> Result<(), ProviderError> {
        let total = self.total_deadline();
        let timeouts = *self.cfg.timeout_settings();
        // The consumer asks for an event now: the idle timer runs from here
        // to the next decoded event, whatever bytes arrive meanwhile (a body
        // trickling bytes that complete no event must not keep it alive).
        let idle_by = Instant::now() + timeouts.idle;
        while self.lookahead.is_empty() {
            let now = Instant::now();
            match &mut self.state {
                State::Finished => return Ok(()),
                State::Backoff(until) => {
                    let until = *until;
                    match guarded(cancel, None, tokio::time::sleep_until(until)).await {
                        Guarded::Cancelled => self.finish_cancelled(),
                        _ => self.state = State::Start,
                    }
                }
                State::Start => {
                    let first_event_by = Some(now + timeouts.first_event);
                    let until = earliest(first_event_by, total);
                    let request = self.request();
                    match guarded(cancel, until, request).await {
                        Guarded::Cancelled => self.finish_cancelled(),
                        Guarded::TimedOut if total.is_some_and(|t| t <= Instant::now()) => {
                            self.finish_with(self.deadline_error());
                        }
                        Guarded::TimedOut => {
                            let err = ProviderError::Timeout {
                                which: TimeoutKind::FirstEvent,
                                after: timeouts.first_event,
                            };
                            self.attempt_failed(err, Failure::Timeout)?;
                        }
                        Guarded::Ready(Ok(Ok(resp))) => {
                            self.decoded_any = false;
                            self.state = State::Streaming(Box::new(Streaming {
                                resp,
                                decoder: ProviderDecoder::with_max_event_bytes(
                                    self.cfg.api(),
                                    self.cfg.event_cap(),
                                ),
                                first_event_by,
                            }));
                        }
                        Guarded::Ready(Ok(Err((err, _)))) if err.status().is_none() => {
                            // Not an HTTP error status (a refused
                            // Content-Encoding): permanent, never retried.
                            self.finish_with(err);
                        }
                        Guarded::Ready(Ok(Err((err, headers)))) => {
                            let status = err.status().unwrap_or(500);
                            let failure = Failure::Status {
                                status,
                                headers: &headers,
                            };
                            self.attempt_failed(err, failure)?;
                        }
                        Guarded::Ready(Err(err)) => self.attempt_failed(err, Failure::Connect)?,
                    }
                }
                State::Streaming(streaming) => {
                    let Streaming {
                        resp,
                        decoder,
                        first_event_by,
                    } = &mut **streaming;
                    let wait = if self.decoded_any {
                        Some(idle_by)
                    } else {
                        *first_event_by
                    };
                    let chunk = guarded(cancel, earliest(wait, total), resp.chunk()).await;
                    let mut out = Vec::new();
                    match chunk {
                        Guarded::Cancelled => self.finish_cancelled(),
                        Guarded::TimedOut if total.is_some_and(|t| t <= Instant::now()) => {
                            self.finish_with(self.deadline_error());
                        }
                        Guarded::TimedOut if self.decoded_any => {
                            self.finish_with(ProviderError::Timeout {
                                which: TimeoutKind::Idle,
                                after: timeouts.idle,
                            });
                        }
                        Guarded::TimedOut => {
                            let err = ProviderError::Timeout {
                                which: TimeoutKind::FirstEvent,
                                after: timeouts.first_event,
                            };
                            self.attempt_failed(err, Failure::Timeout)?;
                        }
                        Guarded::Ready(Ok(Some(bytes))) => {
                            let res = decoder.feed(&bytes, &mut out);
                            let finished = decoder.is_finished();
                            self.decoded_any |= !out.is_empty();
                            self.lookahead.extend(out);
                            if let Err(e) = res {
                                self.finish_with(ProviderError::Decode(e));
                            } else if finished {
                                // The terminal event is decoded: drop the
                                // body (and its connection) now.
                                self.state = State::Finished;
                            }
                        }
                        Guarded::Ready(Ok(None)) => {
                            let res = decoder.finish(&mut out);
                            self.lookahead.extend(out);
                            match res {
                                Err(e) => self.finish_with(ProviderError::Decode(e)),
                                Ok(()) => self.state = State::Finished,
                            }
                        }
                        Guarded::Ready(Err(e)) => {
                            let key = self.cfg.key().cloned();
                            let err = ProviderError::Body(redact(error_chain(&e), key.as_ref()));
                            if self.decoded_any {
                                self.finish_with(err);
                            } else {
                                self.attempt_failed(err, Failure::Connect)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends one attempt. `Ok(Ok(resp))`: a success status, body unread.
    /// `Ok(Err((err, headers)))`: an error status with its parsed body, or
    /// a refused `Content-Encoding` (no status, not retried).
    /// `Err`: the request never got a response.
    async fn request(
        &self,
    ) -> Result<Result<reqwest::Response, (ProviderError, HeaderMap)>, ProviderError> {
        let key = self.cfg.key();
        let endpoint = self.cfg.endpoint().as_str().to_owned();
        let headers = self
            .cfg
            .request_headers()
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        let body = serde_json::to_vec(&self.cfg.request_body())
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        let sent = self
            .client
            .post(self.cfg.endpoint().clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let message = redact(error_chain(&e), key);
                return Err(if e.is_connect() && e.is_timeout() {
                    ProviderError::Timeout {
                        which: TimeoutKind::Connect,
                        after: self.cfg.timeout_settings().connect,
                    }
                } else {
                    ProviderError::Connect { endpoint, message }
                });
            }
        };
        let status = resp.status();
        if let Some(observe) = &self.observer {
            observe(Observed::Response {
                status: status.as_u16(),
                headers: resp.headers(),
            });
        }
        if status.is_success() {
            if let Some(encoding) = unsupported_encoding(resp.headers()) {
                // Dropping the response closes the connection unread.
                return Ok(Err((
                    ProviderError::ContentEncoding(encoding),
                    HeaderMap::new(),
                )));
            }
            return Ok(Ok(resp));
        }
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        // The error body is small; a broken one still leaves the status.
        while let Ok(Some(chunk)) = resp.chunk().await {
            let room = MAX_ERROR_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        let err = match ProviderError::from_http(status.as_u16(), &body) {
            ProviderError::Http {
                status,
                kind,
                message,
                class,
            } => ProviderError::Http {
                status,
                kind,
                message: redact(message, key),
                class,
            },
            other => other,
        };
        Ok(Err((err, headers)))
    }

    /// Consults the retry policy about a failed attempt: schedules the retry,
    /// or ends the stream (or, in producer mode, returns a transient error).
    fn attempt_failed(
        &mut self,
        err: ProviderError,
        failure: Failure<'_>,
    ) -> Result<(), ProviderError> {
        let total = self.total_deadline();
        let now = Instant::now();
        let input = RetryInput::new(failure, self.retries)
            .at(now, SystemTime::now())
            .deadline(total);
        let decision = self.cfg.retry().decide(&input);
        tracing::debug!(
            endpoint = %self.cfg.endpoint(),
            retries = self.retries,
            error = %err,
            ?decision,
            "provider request attempt failed"
        );
        match decision {
            Decision::Retry(delay) => {
                self.retries += 1;
                self.state = State::Backoff(now + delay);
                Ok(())
            }
            Decision::GiveUp(reason) => {
                let err = err.given_up(reason);
                let restartable = matches!(reason, GiveUp::Exhausted { .. })
                    && err.class().is_retryable_by_restart();
                if self.transient_as_error && restartable {
                    self.state = State::Finished;
                    return Err(err);
                }
                self.finish_with(err);
                Ok(())
            }
        }
    }
}

/// The response's `Content-Encoding` when it is anything but `identity`
/// (the request asked for identity; decoding is not attempted, so a
/// compression bomb is never inflated).
fn unsupported_encoding(headers: &HeaderMap) -> Option<String> {
    let mut codings = Vec::new();
    for value in headers.get_all(reqwest::header::CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        codings.extend(
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
                .map(str::to_owned),
        );
    }
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// A provider's streamed answer as a `futures::Stream` of normalised events.
///
/// Ends after exactly one [`ProviderEvent::Done`]. Failures become an
/// [`ProviderEvent::Error`] followed by that `Done`. Dropping the stream
/// drops the response body, which closes the connection.
///
/// ```no_run
/// use futures::StreamExt;
/// use demandflow_stages::provider::{Api, ProviderConfig, ProviderEvent, ProviderStream};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cfg = ProviderConfig::new(Api::OpenAiChat, "http://127.0.0.1:8080")?.prompt("Hello");
/// let mut stream = ProviderStream::new(cfg)?;
/// while let Some(event) = stream.next().await {
///     if let ProviderEvent::TextDelta { text } = event {
///         print!("{text}");
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct ProviderStream {
    inner: Inner,
}

enum Inner {
    NotStarted(Box<(Session, Option<CancelScope>)>),
    Running(BoxStream<'static, ProviderEvent>),
    Taken,
}

impl fmt::Debug for ProviderStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::NotStarted(_) => "not started",
            Inner::Running(_) => "running",
            Inner::Taken => "ended",
        };
        f.debug_struct("ProviderStream")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ProviderStream {
    /// A stream for `config`, with its own HTTP client. Nothing is sent
    /// until it is first polled.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(config: ProviderConfig) -> Result<ProviderStream, ProviderError> {
        let client = http_client(&config)?;
        Ok(ProviderStream::with_client(config, client))
    }

    /// A stream for `config` over an existing client (see [`http_client`]).
    pub fn with_client(config: ProviderConfig, client: reqwest::Client) -> ProviderStream {
        ProviderStream {
            inner: Inner::NotStarted(Box::new((Session::new(config, client, None, false), None))),
        }
    }

    /// Ends the stream by `deadline` (with `Done { DeadlineExceeded }`).
    /// Only effective before the first poll.
    pub fn deadline(mut self, deadline: Instant) -> ProviderStream {
        if let Inner::NotStarted(s) = &mut self.inner {
            s.0.pipeline_deadline = earliest(s.0.pipeline_deadline, Some(deadline));
        }
        self
    }

    /// Calls `observer` with every response's status and headers and with
    /// the error the stream ends with, if any (see [`Observed`]). It runs
    /// inside the stream's poll: keep it short. Only effective before the
    /// first poll.
    pub fn observe(
        mut self,
        observer: impl Fn(Observed<'_>) + Send + Sync + 'static,
    ) -> ProviderStream {
        if let Inner::NotStarted(s) = &mut self.inner {
            s.0.observer = Some(Arc::new(observer));
        }
        self
    }

    /// Ends the stream with `Done { Cancelled }` when `scope` is cancelled.
    /// Only effective before the first poll.
    pub fn cancel_on(mut self, scope: CancelScope) -> ProviderStream {
        if let Inner::NotStarted(s) = &mut self.inner {
            s.1 = Some(scope);
        }
        self
    }
}

impl ProviderStream {
    /// Drains the stream into one [`FinalMessage`]: text, reasoning, tool
    /// calls with parsed arguments, server tool activity, citations, usage,
    /// outcome, stop reason and ids.
    ///
    /// ```no_run
    /// use demandflow_stages::provider::{Api, ProviderConfig, ProviderStream};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ProviderConfig::official(Api::OpenAiResponses).prompt("Say hi");
    /// let message = ProviderStream::new(config)?.final_message().await;
    /// println!("{:?} {}", message.status, message.text);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn final_message(mut self) -> FinalMessage {
        let mut builder = MessageBuilder::default();
        while let Some(event) = self.next().await {
            builder.push(&event);
            if builder.is_done() {
                break;
            }
        }
        builder.finish()
    }
}

impl Stream for ProviderStream {
    type Item = ProviderEvent;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<ProviderEvent>> {
        if let Inner::NotStarted(_) = self.inner {
            let Inner::NotStarted(boxed) = std::mem::replace(&mut self.inner, Inner::Taken) else {
                return Poll::Ready(None);
            };
            let (session, cancel) = *boxed;
            let stream = futures::stream::unfold(Some((session, cancel)), |state| async move {
                let (mut session, cancel) = state?;
                // Stream mode never returns Err (transient_as_error is
                // false); map defensively to the same events anyway.
                let ev = match session.next(cancel.as_ref()).await {
                    Ok(ev) => ev,
                    Err(e) => {
                        session.finish_with(e);
                        session.pop_ready()
                    }
                }?;
                Some((ev, Some((session, cancel))))
            });
            self.inner = Inner::Running(stream.boxed());
        }
        match &mut self.inner {
            Inner::Running(s) => s.poll_next_unpin(cx),
            _ => Poll::Ready(None),
        }
    }
}

/// A demandflow producer of one provider's streamed answer.
///
/// Each `produce` call waits for at least one event, then hands out what is
/// already decoded, up to the demand. Cloning gives a fresh producer that
/// will send a new request (what a supervisor restart uses).
///
/// Permanent failures (400, 401, ...) and failures after the first event end
/// the stream with [`ProviderEvent::Error`] and [`ProviderEvent::Done`]. A
/// transient failure that used up the retries before any event is returned
/// as `Err`, so the stage's supervisor may restart it with its backoff.
///
/// ```no_run
/// use demandflow::{Context, Emitter, Flow, Producer};
/// use demandflow_stages::provider::{Api, ProviderConfig, ProviderProducer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let cfg = ProviderConfig::new(Api::AnthropicMessages, "http://127.0.0.1:8080")?.prompt("Hi");
/// let mut producer = ProviderProducer::new(cfg)?;
/// let cx = Context::detached("llm");
/// let mut out = Emitter::new();
/// while producer.produce(16, &mut out, &cx).await? == Flow::Continue {
///     for event in out.take() {
///         println!("{event:?}");
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct ProviderProducer {
    cfg: ProviderConfig,
    client: reqwest::Client,
    session: Option<Session>,
}

impl fmt::Debug for ProviderProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderProducer")
            .field("config", &self.cfg)
            .field("started", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl Clone for ProviderProducer {
    fn clone(&self) -> Self {
        ProviderProducer::with_client(self.cfg.clone(), self.client.clone())
    }
}

impl ProviderProducer {
    /// A producer for `config`, with its own HTTP client.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(config: ProviderConfig) -> Result<ProviderProducer, ProviderError> {
        let client = http_client(&config)?;
        Ok(ProviderProducer::with_client(config, client))
    }

    /// A producer for `config` over an existing client.
    pub fn with_client(config: ProviderConfig, client: reqwest::Client) -> ProviderProducer {
        ProviderProducer {
            cfg: config,
            client,
            session: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.cfg
    }
}

impl Producer<ProviderEvent> for ProviderProducer {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<ProviderEvent>,
        cx: &Context,
    ) -> Result<Flow, BoxError> {
        let (cfg, client) = (&self.cfg, &self.client);
        let session = self
            .session
            .get_or_insert_with(|| Session::new(cfg.clone(), client.clone(), cx.deadline(), true));
        let first = match session.next(Some(cx.scope())).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return Ok(Flow::Done),
            Err(e) => return Err(Box::new(e)),
        };
        let mut emitted = 0;
        let mut next = Some(first);
        while let Some(ev) = next {
            let done = ev.is_done();
            out.emit(ev);
            emitted += 1;
            if done {
                return Ok(Flow::Done);
            }
            next = if emitted < demand {
                session.pop_ready()
            } else {
                None
            };
        }
        Ok(Flow::Continue)
    }
}
