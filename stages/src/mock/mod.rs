//! An embedded mock LLM provider: a loopback HTTP/1.1 server that speaks the
//! OpenAI Responses, OpenAI Chat Completions, Anthropic Messages and Gemini
//! (`…/models/{model}:streamGenerateContent`) streaming APIs, replays `.sse`
//! transcripts, and injects faults.
//!
//! It is what the demo, the tests and the benchmarks talk to. Every response
//! body is written through a bounded channel of one frame into hyper, and the
//! bytes the socket accepted are counted per connection: when the client
//! stops reading, the server's writes block and the count stops growing,
//! which is how tests see TCP backpressure end to end.
//!
//! # Example
//!
//! ```
//! use demandflow_stages::mock::{Behaviour, ErrorSpec, GenerateSpec, MockConfig, MockServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = MockServer::start(MockConfig::default()).await?;
//! // The first two requests are overloaded, then answers stream normally.
//! let overloaded = ErrorSpec::anthropic(529, "overloaded_error", "Overloaded")
//!     .header("retry-after-ms", "50");
//! server.script([Behaviour::Error(overloaded.clone()), Behaviour::Error(overloaded)]);
//! server.set_default(Behaviour::Generate(GenerateSpec::tokens(10)));
//! println!("point a provider at {}", server.url());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod behaviour;
mod generate;
mod limits;
mod request;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use behaviour::{
    Behaviour, ErrorSpec, Fault, GenerateSpec, Pace, ReplaySpec, TextSource, Transcript,
};
pub use limits::{ParseRateLimitsError, RateLimits, DEFAULT_MAX_TOKENS};

use crate::provider::Api;
use generate::Generator;
use limits::{Buckets, Cost, Family};
use request::{api_for_path, ParsedRequest};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Header a request can carry to choose its own [`Behaviour`] (JSON).
pub const BEHAVIOUR_HEADER: &str = "x-mock-behaviour";

/// Body bytes coalesced into one chunk when an answer is not paced.
const COALESCE_BYTES: usize = 16 * 1024;

/// Request headers whose values are never recorded.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
];

/// How a [`MockServer`] starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MockConfig {
    /// What requests get when neither a header nor the script chooses.
    pub default_behaviour: Behaviour,
    /// When set, requests must carry this key (`Authorization: Bearer` for
    /// the OpenAI paths, `x-api-key` for Anthropic) or get a 401.
    pub api_key: Option<String>,
    /// The kernel send buffer of accepted sockets (`SO_SNDBUF`), to make
    /// backpressure show up after fewer bytes. `None` keeps the default.
    pub send_buffer_size: Option<u32>,
    /// Largest request body accepted (413 beyond).
    pub max_request_bytes: usize,
    /// Where to listen (default `127.0.0.1:0`: loopback, a free port).
    pub addr: SocketAddr,
    /// Enforce these limits, with the providers' rate-limit headers on
    /// every answer and 429s beyond them (`None`: unlimited, no headers).
    pub rate_limits: Option<RateLimits>,
    /// Keep at most this many [`RequestRecord`]s (the first ones), so a
    /// long load run does not hold every request body; counts go on.
    pub max_records: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            default_behaviour: Behaviour::default(),
            api_key: None,
            send_buffer_size: None,
            max_request_bytes: 4 * 1024 * 1024,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            rate_limits: None,
            max_records: usize::MAX,
        }
    }
}

impl MockConfig {
    /// Sets the default behaviour.
    pub fn default_behaviour(mut self, b: Behaviour) -> MockConfig {
        self.default_behaviour = b;
        self
    }

    /// Requires `key` on every request.
    pub fn api_key(mut self, key: impl Into<String>) -> MockConfig {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the address to listen on (`demandflow mock --addr`).
    pub fn addr(mut self, addr: SocketAddr) -> MockConfig {
        self.addr = addr;
        self
    }

    /// Sets `SO_SNDBUF` on accepted sockets.
    pub fn send_buffer_size(mut self, bytes: u32) -> MockConfig {
        self.send_buffer_size = Some(bytes);
        self
    }

    /// Keeps at most `n` request records (see
    /// [`max_records`](#structfield.max_records)).
    pub fn max_records(mut self, n: usize) -> MockConfig {
        self.max_records = n;
        self
    }

    /// Enforces `limits` (see [`RateLimits`] for the model).
    pub fn rate_limits(mut self, limits: RateLimits) -> MockConfig {
        self.rate_limits = Some(limits);
        self
    }
}

/// Load counters of a [`MockServer`] ([`MockServer::stats`]), for tests
/// and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MockStats {
    /// Requests that reached their behaviour (not refused by a limit, an
    /// overload, a bad key or a bad request).
    pub served: u64,
    /// Requests answered 429 by the rate limits.
    pub rate_limited: u64,
    /// Requests answered with the overload error
    /// ([`RateLimits::overload_every`]).
    pub overloaded: u64,
    /// Streamed bodies being written now.
    pub active_streams: u64,
    /// The most streamed bodies written at once.
    pub peak_streams: u64,
    /// Tokens (input + output) charged to the buckets, before refunds.
    pub tokens_charged: u64,
    /// Unused output tokens given back at the end of answers (Anthropic).
    pub tokens_refunded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    rate_limited: AtomicU64,
    overloaded: AtomicU64,
    active_streams: AtomicU64,
    peak_streams: AtomicU64,
    tokens_charged: AtomicU64,
    tokens_refunded: AtomicU64,
}

#[derive(Debug)]
struct LimitState {
    limits: RateLimits,
    buckets: Mutex<Buckets>,
    /// Requests that reached the limits, to pick every `n`th to overload.
    arrivals: AtomicU64,
}

/// What an admitted request owes back when its answer ends: Anthropic
/// refunds output tokens charged but not generated.
#[derive(Debug)]
struct Settle {
    family: Family,
    key: String,
    charged_output: u64,
    used_output: u64,
}

/// Held by a streamed body's writer: counts it as active, and settles its
/// charge when the body ends (however it ends).
struct StreamGuard {
    shared: Arc<Shared>,
    settle: Option<Settle>,
}

impl StreamGuard {
    fn new(shared: &Arc<Shared>, settle: Option<Settle>) -> StreamGuard {
        let c = &shared.counters;
        let now = c.active_streams.fetch_add(1, Ordering::Relaxed) + 1;
        c.peak_streams.fetch_max(now, Ordering::Relaxed);
        StreamGuard {
            shared: shared.clone(),
            settle,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.shared
            .counters
            .active_streams
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(s) = self.settle.take() {
            self.shared.settle(s);
        }
    }
}

/// One request the mock received. Secret headers are recorded as
/// `<redacted>`; the key itself is never stored.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestRecord {
    /// The connection it came on (see [`ConnectionStats::id`]).
    pub connection: u64,
    /// When it arrived.
    pub at: Instant,
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// Headers, lower-case names, secrets redacted.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when it was not JSON).
    pub body: serde_json::Value,
    /// Whether the required key matched (`None` when none is required).
    pub key_ok: Option<bool>,
}

impl RequestRecord {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the mock saw of one TCP connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Numbered from 0 in accept order.
    pub id: u64,
    /// When it was accepted.
    pub opened_at: Instant,
    /// When it ended (client closed, reset, or server shutdown).
    pub closed_at: Option<Instant>,
    /// Bytes the socket accepted (headers, chunk framing and body).
    pub bytes_written: u64,
    /// Body bytes handed to hyper (at most one frame ahead of the socket).
    pub body_bytes_sent: u64,
    /// Requests served on it.
    pub requests: u64,
}

#[derive(Debug)]
struct ConnState {
    id: u64,
    opened_at: Instant,
    bytes_written: AtomicU64,
    body_bytes: AtomicU64,
    requests: AtomicU64,
    closed: watch::Sender<Option<Instant>>,
}

impl ConnState {
    fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            id: self.id,
            opened_at: self.opened_at,
            closed_at: *self.closed.borrow(),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            body_bytes_sent: self.body_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Shared {
    api_key: Option<String>,
    max_request_bytes: usize,
    default: Mutex<Behaviour>,
    script: Mutex<VecDeque<Behaviour>>,
    requests: Mutex<Vec<RequestRecord>>,
    request_count: watch::Sender<usize>,
    max_records: usize,
    conns: Mutex<Vec<Arc<ConnState>>>,
    conn_count: watch::Sender<usize>,
    serial: AtomicU64,
    shutdown: CancellationToken,
    limits: Option<LimitState>,
    counters: Counters,
}

impl Shared {
    fn settle(&self, s: Settle) {
        let Some(state) = &self.limits else { return };
        let now = Instant::now().into_std();
        let refunded = lock(&state.buckets).limiter(s.family, &s.key, now).settle(
            s.charged_output,
            s.used_output,
            now,
        );
        self.counters
            .tokens_refunded
            .fetch_add(refunded, Ordering::Relaxed);
    }
}

/// A poisoned lock only means a test thread panicked while holding it; the
/// data (records, a script) is still meaningful, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running mock provider, on `127.0.0.1` unless [`MockConfig::addr`]
/// says otherwise.
///
/// Dropping it stops the server and aborts its connections; [`shutdown`]
/// also waits for that.
///
/// [`shutdown`]: MockServer::shutdown
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockServer {
    /// Binds [`MockConfig::addr`] (`127.0.0.1:0` by default) and starts
    /// serving.
    ///
    /// # Errors
    ///
    /// When the socket cannot be created, configured or bound.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is spawned until the socket is bound, and the
    /// server task is spawned in the same poll that returns the server.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        let socket = if config.addr.is_ipv6() {
            TcpSocket::new_v6()?
        } else {
            TcpSocket::new_v4()?
        };
        if let Some(size) = config.send_buffer_size {
            // Accepted sockets inherit the listener's buffer sizes on Linux.
            socket.set_send_buffer_size(size)?;
        }
        socket.bind(config.addr)?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            api_key: config.api_key,
            max_request_bytes: config.max_request_bytes,
            default: Mutex::new(config.default_behaviour),
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            request_count: watch::Sender::new(0),
            max_records: config.max_records,
            conns: Mutex::new(Vec::new()),
            conn_count: watch::Sender::new(0),
            serial: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            limits: config.rate_limits.map(|limits| LimitState {
                buckets: Mutex::new(Buckets::new(limits.clone())),
                limits,
                arrivals: AtomicU64::new(0),
            }),
            counters: Counters::default(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(MockServer {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// The base URL, `http://127.0.0.1:<port>`, without a path.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends behaviours to the script: each request takes the next one
    /// (unless it carries an [`BEHAVIOUR_HEADER`]); once the script is empty,
    /// requests get the default.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.shared.script).extend(behaviours);
    }

    /// Replaces the default behaviour.
    pub fn set_default(&self, behaviour: Behaviour) {
        *lock(&self.shared.default) = behaviour;
    }

    /// Every request received so far, in arrival order (the first
    /// [`MockConfig::max_records`](MockConfig#structfield.max_records)).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests have arrived for `path` (e.g. `/v1/messages`),
    /// among those recorded.
    pub fn request_count(&self, path: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// How many requests have arrived in all.
    pub fn total_requests(&self) -> usize {
        *self.shared.request_count.borrow()
    }

    /// The load counters so far.
    pub fn stats(&self) -> MockStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MockStats {
            served: get(&c.served),
            rate_limited: get(&c.rate_limited),
            overloaded: get(&c.overloaded),
            active_streams: get(&c.active_streams),
            peak_streams: get(&c.peak_streams),
            tokens_charged: get(&c.tokens_charged),
            tokens_refunded: get(&c.tokens_refunded),
        }
    }

    /// Every connection accepted so far.
    pub fn connections(&self) -> Vec<ConnectionStats> {
        lock(&self.shared.conns).iter().map(|c| c.stats()).collect()
    }

    /// Waits until at least `n` requests have arrived; `false` on timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.shared.request_count.subscribe();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok();
        ok
    }

    /// Waits until connection `id` exists and has closed; returns when it
    /// closed, or `None` on timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn wait_connection_closed(&self, id: u64, timeout: Duration) -> Option<Instant> {
        let wait = async {
            let mut count = self.shared.conn_count.subscribe();
            let _ = count.wait_for(|c| *c as u64 > id).await;
            let conn = lock(&self.shared.conns).get(id as usize).cloned()?;
            let mut rx = conn.closed.subscribe();
            let at = rx.wait_for(Option::is_some).await.ok()?;
            *at
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Waits until connection `id` has written nothing for `quiet`, and
    /// returns its [`ConnectionStats::bytes_written`] then; `None` if it kept
    /// writing (or did not exist) until `timeout`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn wait_writes_quiet(
        &self,
        id: u64,
        quiet: Duration,
        timeout: Duration,
    ) -> Option<u64> {
        let give_up = Instant::now() + timeout;
        let mut last = None;
        let mut since = Instant::now();
        while Instant::now() < give_up {
            let now_bytes = self.connections().get(id as usize).map(|c| c.bytes_written);
            if now_bytes != last {
                last = now_bytes;
                since = Instant::now();
            } else if last.is_some() && since.elapsed() >= quiet {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Stops accepting, aborts open connections and waits for the server
    /// task to end.
    ///
    /// # Cancel safety
    ///
    /// The shutdown is requested on the first poll; dropping the future
    /// after that only stops waiting for the server task, which still ends
    /// on its own (as it does when the server is dropped).
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set so that stopping the loop aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = {
                    let mut all = lock(&shared.conns);
                    let state = Arc::new(ConnState {
                        id: all.len() as u64,
                        opened_at: Instant::now(),
                        bytes_written: AtomicU64::new(0),
                        body_bytes: AtomicU64::new(0),
                        requests: AtomicU64::new(0),
                        closed: watch::Sender::new(None),
                    });
                    all.push(state.clone());
                    shared.conn_count.send_replace(all.len());
                    state
                };
                conns.spawn(serve_connection(stream, state, shared.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Record the close of connections aborted by shutdown as well.
    let all: Vec<_> = lock(&shared.conns).clone();
    conns.shutdown().await;
    let now = Instant::now();
    for c in all {
        c.closed.send_if_modified(|at| {
            let changed = at.is_none();
            at.get_or_insert(now);
            changed
        });
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<ConnState>, shared: Arc<Shared>) {
    let io = CountingIo {
        inner: stream,
        written: state.clone(),
    };
    let svc_state = state.clone();
    let service =
        hyper::service::service_fn(move |req| handle(req, svc_state.clone(), shared.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
    state.closed.send_replace(Some(Instant::now()));
}

/// A socket that counts the bytes the kernel accepted.
struct CountingIo {
    inner: TcpStream,
    written: Arc<ConnState>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.written
                .bytes_written
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            self.written
                .bytes_written
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn error_response(
    api: Option<Api>,
    status: StatusCode,
    kind: &str,
    message: &str,
) -> Response<Body> {
    let spec = ErrorSpec::for_api(
        api.unwrap_or(Api::OpenAiChat),
        status.as_u16(),
        kind,
        message,
    );
    full(status, "application/json", spec.body.unwrap_or_default())
}

async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    conn.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let api = api_for_path(&path);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_owned();
            let value = if SECRET_HEADERS.contains(&name.as_str()) {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect();
    let presented = presented_key(api, &parts.headers);
    let key_ok = shared.api_key.as_deref().map(|key| presented == Some(key));
    let (body, too_large) = match Limited::new(body, shared.max_request_bytes).collect().await {
        Ok(b) => (b.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    {
        let mut records = lock(&shared.requests);
        let keep = records.len() < shared.max_records;
        let record = keep.then(|| RequestRecord {
            connection: conn.id,
            at: Instant::now(),
            method: parts.method.to_string(),
            path: path.clone(),
            headers,
            body: json.clone(),
            key_ok,
        });
        records.extend(record);
        shared.request_count.send_modify(|n| *n += 1);
    }

    if too_large {
        return Ok(error_response(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ));
    }
    let Some(api) = api else {
        return Ok(error_response(
            None,
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("Unknown path {path}"),
        ));
    };
    if parts.method != hyper::Method::POST {
        return Ok(error_response(
            Some(api),
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "Use POST.",
        ));
    }
    if key_ok == Some(false) {
        let resp = match api {
            Api::AnthropicMessages => {
                ErrorSpec::anthropic(401, "authentication_error", "invalid x-api-key")
            }
            Api::Gemini => {
                ErrorSpec::gemini(401, "API key not valid. Please pass a valid API key.")
            }
            _ => ErrorSpec::openai(
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
                "Incorrect API key provided.",
            ),
        };
        return Ok(error_answer(&resp));
    }
    let chosen = match parts.headers.get(BEHAVIOUR_HEADER) {
        Some(v) => match serde_json::from_slice::<Behaviour>(v.as_bytes()) {
            Ok(b) => Some(b),
            Err(e) => {
                return Ok(error_response(
                    Some(api),
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &format!("bad {BEHAVIOUR_HEADER} header: {e}"),
                ));
            }
        },
        None => None,
    };
    let mut parsed = ParsedRequest::from_json(api, &json).with_path(api, &path);
    let (limit_headers, mut settle) = match admit(&shared, api, presented, &mut parsed) {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(error_answer(&refused)),
    };
    // Only an admitted request takes the script's next entry.
    let behaviour = chosen.unwrap_or_else(|| {
        let next = lock(&shared.script).pop_front();
        next.unwrap_or_else(|| lock(&shared.default).clone())
    });
    shared.counters.served.fetch_add(1, Ordering::Relaxed);
    let serial = shared.serial.fetch_add(1, Ordering::Relaxed);
    let mut resp = match behaviour {
        Behaviour::Error(spec) => {
            if let Some(s) = settle.take() {
                shared.settle(Settle {
                    used_output: 0,
                    ..s
                });
            }
            error_answer(&spec)
        }
        Behaviour::Generate(spec) if !parsed.stream => {
            let wanted = spec.wanted_tokens(&parsed);
            let (v, used) = generate::non_streaming_body(api, &parsed, wanted);
            if let Some(s) = settle.take() {
                shared.settle(Settle {
                    used_output: used,
                    ..s
                });
            }
            full(StatusCode::OK, "application/json", v.to_string())
        }
        Behaviour::Generate(spec) => {
            let echo = spec.text == TextSource::EchoPrompt;
            let wanted = spec.wanted_tokens(&parsed);
            let source = Generator::new(api, &parsed, wanted, echo, serial);
            if let Some(s) = settle.as_mut() {
                s.used_output = source.output_tokens_planned();
            }
            stream_answer(api, source, spec.pace, spec.fault, conn, &shared, settle)
        }
        Behaviour::Replay(spec) => {
            let bytes = match &spec.transcript {
                Transcript::Bytes(b) => Bytes::from(b.clone()),
                Transcript::File(p) => match std::fs::read(p) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        return Ok(error_response(
                            Some(api),
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "api_error",
                            &format!("mock cannot read transcript {}: {e}", p.display()),
                        ));
                    }
                },
            };
            let chunk = spec.chunk_bytes.unwrap_or(bytes.len()).max(1);
            let chunks = (0..bytes.len())
                .step_by(chunk)
                .map(move |i| bytes.slice(i..(i + chunk).min(bytes.len())));
            // A transcript's usage is not read: the charge stands.
            stream_answer(api, chunks, spec.pace, spec.fault, conn, &shared, settle)
        }
    };
    append_headers(&mut resp, &limit_headers);
    Ok(resp)
}

/// The key a request presents: `x-api-key` (Anthropic), `x-goog-api-key`
/// (Gemini), else `Authorization: Bearer`.
fn presented_key(api: Option<Api>, headers: &hyper::HeaderMap) -> Option<&str> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match api {
        Some(Api::AnthropicMessages) => h("x-api-key"),
        Some(Api::Gemini) => h("x-goog-api-key"),
        _ => h("authorization").and_then(|v| v.strip_prefix("Bearer ")),
    }
}

type Admitted = (Vec<(String, String)>, Option<Settle>);

/// The rate-limit step: `Ok` with the headers to send and the charge to
/// settle (nothing when no limits are set), or the overload or 429 answer.
/// Sets the request's input usage to the estimate charged, so the usage
/// the answer reports is what the buckets were charged.
fn admit(
    shared: &Shared,
    api: Api,
    key: Option<&str>,
    parsed: &mut ParsedRequest,
) -> Result<Admitted, ErrorSpec> {
    let Some(state) = &shared.limits else {
        return Ok((Vec::new(), None));
    };
    let family = Family::of(api);
    let key = key.unwrap_or_default();
    let (now, wall) = (Instant::now().into_std(), SystemTime::now());
    let nth = state.arrivals.fetch_add(1, Ordering::Relaxed) + 1;
    let cost = Cost {
        input: limits::estimate_input_tokens(&parsed.prompt),
        output: parsed.max_tokens.unwrap_or(state.limits.default_max_tokens),
    };
    let mut buckets = lock(&state.buckets);
    let limiter = buckets.limiter(family, key, now);
    if state.limits.overload_every.is_some_and(|n| nth % n == 0) {
        let readings = limiter.readings(now);
        drop(buckets);
        shared.counters.overloaded.fetch_add(1, Ordering::Relaxed);
        let mut spec = limits::overloaded_answer(api);
        spec.headers
            .extend(limits::headers(family, &readings, wall));
        return Err(spec);
    }
    match limiter.admit(cost, now) {
        Ok(readings) => {
            drop(buckets);
            shared
                .counters
                .tokens_charged
                .fetch_add(cost.input + cost.output, Ordering::Relaxed);
            parsed.charged_input = Some(cost.input);
            let settle = Settle {
                family,
                key: key.to_owned(),
                charged_output: cost.output,
                used_output: cost.output,
            };
            Ok((limits::headers(family, &readings, wall), Some(settle)))
        }
        Err(refusal) => {
            drop(buckets);
            shared.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            let model = parsed.model.as_deref().unwrap_or("mock-model");
            Err(limits::refusal_answer(
                api,
                model,
                &refusal,
                &state.limits,
                wall,
            ))
        }
    }
}

fn append_headers(resp: &mut Response<Body>, headers: &[(String, String)]) {
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
}

fn error_answer(spec: &ErrorSpec) -> Response<Body> {
    let status = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = spec.body.clone().unwrap_or_default();
    let ct = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    let mut resp = full(status, ct, body);
    append_headers(&mut resp, &spec.headers);
    resp
}

type FrameResult = Result<Frame<Bytes>, BoxError>;

fn stream_answer(
    api: Api,
    source: impl Iterator<Item = Bytes> + Send + 'static,
    pace: Pace,
    fault: Option<Fault>,
    conn: Arc<ConnState>,
    shared: &Arc<Shared>,
    settle: Option<Settle>,
) -> Response<Body> {
    // One frame of slack: when the client stops reading, hyper stops polling
    // the body, this channel fills and the writer's `send` waits.
    let (tx, mut rx) = mpsc::channel::<FrameResult>(1);
    let stop = shared.shutdown.child_token();
    let guard = StreamGuard::new(shared, settle);
    tokio::spawn(async move {
        write_body(api, tx, source, pace, fault, conn, stop).await;
        drop(guard);
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

/// Feeds one streamed body. Ends when the source is exhausted, a fault
/// fires, the client goes away (the channel closes) or the server shuts down.
async fn write_body(
    api: Api,
    tx: mpsc::Sender<FrameResult>,
    mut source: impl Iterator<Item = Bytes>,
    pace: Pace,
    fault: Option<Fault>,
    conn: Arc<ConnState>,
    stop: CancellationToken,
) {
    let send = |b: Bytes| {
        let tx = &tx;
        let conn = &conn;
        let stop = &stop;
        async move {
            let n = b.len() as u64;
            tokio::select! {
                _ = stop.cancelled() => false,
                r = tx.send(Ok(Frame::data(b))) => {
                    conn.body_bytes.fetch_add(n, Ordering::Relaxed);
                    r.is_ok()
                }
            }
        }
    };
    let pause = |d: Duration| {
        let tx = &tx;
        let stop = &stop;
        async move {
            tokio::select! {
                _ = stop.cancelled() => false,
                _ = tx.closed() => false,
                _ = tokio::time::sleep(d) => true,
            }
        }
    };
    if !pace.first_event_delay.is_zero() && !pause(pace.first_event_delay).await {
        return;
    }
    let mut batch = BytesMut::new();
    let mut sent: u64 = 0;
    loop {
        if let Some(f) = fault.as_ref().filter(|f| f.after() == sent) {
            if !batch.is_empty() && !send(batch.split().freeze()).await {
                return;
            }
            match f {
                Fault::ErrorEvent { kind, message, .. } => {
                    let _ = send(generate::error_event(api, kind, message, sent)).await;
                }
                Fault::Truncate { .. } => {}
                Fault::Abort { .. } => {
                    // Let hyper take and flush what was sent before the
                    // error frame makes it drop the connection.
                    while tx.capacity() < tx.max_capacity() && !tx.is_closed() {
                        if !pause(Duration::from_millis(5)).await {
                            return;
                        }
                    }
                    let _ = pause(Duration::from_millis(20)).await;
                    let err: BoxError = Box::new(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock fault: abort",
                    ));
                    let _ = tx.send(Err(err)).await;
                }
                Fault::Stall { .. } => {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tx.closed() => {}
                    }
                }
            }
            return;
        }
        let Some(event) = source.next() else { break };
        sent += 1;
        if pace.event_delay.is_zero() {
            batch.extend_from_slice(&event);
            if batch.len() >= COALESCE_BYTES && !send(batch.split().freeze()).await {
                return;
            }
        } else {
            if sent > 1 && !pause(pace.event_delay).await {
                return;
            }
            if !send(event).await {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = send(batch.freeze()).await;
    }
}
