//! A live dashboard of a running pipeline, in the browser (feature
//! `dashboard`).
//!
//! [`Dashboard::serve`] serves, on an address you pick:
//!
//! | route | what |
//! |---|---|
//! | `/` | the page, with a first snapshot in it: the pipeline's graph (stages as boxes, laid out left to right, coloured by backpressure; edges as arrows labelled with demand outstanding and buffered events), throughput, restarts, dead letters and stalls. Self-contained HTML, CSS and JavaScript: nothing is fetched from elsewhere |
//! | `/events` | server-sent events (`event: snapshot`, the JSON in `data`): the first snapshot after 250 ms, then one every [`DashboardBuilder::interval`] (500 ms by default), and a last one when the pipeline stops |
//! | `/snapshot.json` | one snapshot, for scripts |
//!
//! Throughput (events per second, per stage) is the change in the counters
//! since the client's previous snapshot; `/`, `/snapshot.json` and the
//! first event of a stream watch the counters for 250 ms before answering,
//! so every snapshot has it.
//!
//! Snapshots are computed only for connected clients, each by its own
//! event stream: with no page open the dashboard costs an idle listening
//! socket. A stream ends when its client goes away
//! ([`Dashboard::live_streams`] counts those still open).
//!
//! When every stage task has ended, each open page gets a final snapshot
//! (it then shows the final counters and "stopped") and the server closes.
//! Dropping the [`Dashboard`] or calling [`Dashboard::shutdown`] closes it
//! earlier; the pipeline is not affected either way.
//!
//! ```no_run
//! use demandflow::{sink, source, Pipeline, Subscribe};
//! use demandflow_stages::dashboard::Dashboard;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut p = Pipeline::new();
//! let numbers = p.producer("numbers", source::iter(0u64..));
//! p.consumer("drain", sink::drain()).subscribe(&numbers, Subscribe::max_demand(10));
//! let run = p.spawn()?;
//! let dashboard = Dashboard::serve(run.watch(), "127.0.0.1:8080".parse()?).await?;
//! println!("dashboard on {}", dashboard.url());
//! run.join().await?;
//! # Ok(()) }
//! ```
//!
//! The page is described in `docs/dashboard.md`.

mod layout;
mod snapshot;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use demandflow::pipeline::PipelineWatch;
use futures::Stream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use snapshot::{snapshot, to_json, to_script_json, Previous, Snapshot};

/// The page, with `/*SNAPSHOT*/null` where the first snapshot goes.
const PAGE: &str = include_str!("page.html");
const PAGE_SNAPSHOT_SLOT: &str = "/*SNAPSHOT*/null";

/// The default time between two snapshots on `/events`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// A dashboard being served. See the [module docs](self).
///
/// Dropping it stops the server (open event streams end, the listening
/// socket closes); the pipeline keeps running.
#[must_use = "dropping the dashboard stops serving it"]
pub struct Dashboard {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dashboard")
            .field("local_addr", &self.local_addr)
            .field("live_streams", &self.live_streams())
            .finish()
    }
}

/// Options for a [`Dashboard`], from [`Dashboard::builder`].
#[derive(Debug, Clone)]
pub struct DashboardBuilder {
    watch: PipelineWatch,
    title: String,
    interval: Duration,
}

impl DashboardBuilder {
    /// The page's title and header (default `demandflow pipeline`).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The time between two snapshots on `/events` (default
    /// [`DEFAULT_INTERVAL`]; at least 50 ms, at most 1 s, so the page
    /// updates at least once a second without flooding it).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.clamp(Duration::from_millis(50), Duration::from_secs(1));
        self
    }

    /// Binds `addr` (port 0 picks a free port: see
    /// [`Dashboard::local_addr`]) and serves the dashboard from a task on
    /// the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The address cannot be bound (in use, not local, no permission).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes binds nothing or closes
    /// what it bound.
    pub async fn serve(self, addr: SocketAddr) -> io::Result<Dashboard> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            watch: self.watch,
            title: self.title,
            interval: self.interval,
            started: Instant::now(),
            live_streams: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .route("/snapshot.json", get(snapshot_json))
            .with_state(shared.clone());
        let until = shared.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    tokio::select! {
                        _ = until.watch.stopped() => {}
                        _ = until.stop.cancelled() => {}
                    }
                })
                .await
        });
        Ok(Dashboard {
            local_addr,
            shared,
            task: Some(task),
        })
    }
}

impl Dashboard {
    /// Serves the dashboard of the pipeline `watch` observes on `addr`,
    /// with the default options: the one call for a running pipeline
    /// (`Dashboard::serve(handle.watch(), addr).await?`). See
    /// [`DashboardBuilder::serve`].
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    ///
    /// # Cancel safety
    ///
    /// As [`DashboardBuilder::serve`].
    pub async fn serve(watch: PipelineWatch, addr: SocketAddr) -> io::Result<Dashboard> {
        Dashboard::builder(watch).serve(addr).await
    }

    /// Options (title, update interval) before serving.
    pub fn builder(watch: PipelineWatch) -> DashboardBuilder {
        DashboardBuilder {
            watch,
            title: "demandflow pipeline".to_owned(),
            interval: DEFAULT_INTERVAL,
        }
    }

    /// The address the server listens on (the port it picked, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The page's URL, `http://{local_addr}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// Event streams (`/events` clients) open now. A stream is counted from
    /// its request until its client has gone and the server noticed (at
    /// its next write at the latest).
    pub fn live_streams(&self) -> usize {
        self.shared.live_streams.load(Ordering::Acquire)
    }

    /// Waits until the server has closed: after the pipeline stopped and the
    /// open pages got their final snapshot, or after [`Dashboard::shutdown`].
    ///
    /// # Errors
    ///
    /// The server failed (an I/O error accepting connections).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the server keeps running, and `closed` can be called
    /// again.
    pub async fn closed(&mut self) -> io::Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let r = task.await;
        self.task = None;
        match r {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Stops serving: open event streams end, the listening socket closes.
    /// Returns once the server has closed.
    ///
    /// # Errors
    ///
    /// As [`Dashboard::closed`].
    ///
    /// # Cancel safety
    ///
    /// The server is told to stop before the first await: dropping the
    /// future still stops it, without waiting.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.shared.stop.cancel();
        self.closed().await
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        // Graceful: open streams see the token and end, which lets their
        // connections and then the server task finish on their own.
        self.shared.stop.cancel();
    }
}

/// What every route reads.
#[derive(Debug)]
struct Shared {
    watch: PipelineWatch,
    title: String,
    interval: Duration,
    started: Instant,
    live_streams: AtomicUsize,
    stop: CancellationToken,
}

impl Shared {
    fn t_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A snapshot now, and what to keep for the next one's rates.
    fn snapshot(&self, prev: Option<&Previous>) -> (Snapshot, Previous) {
        let t_ms = self.t_ms();
        // Live stages first: a stage that ends between the two reads then
        // shows its final counters under a status that is at worst one
        // update behind, never "stopped" with counters still moving.
        let live = self.watch.live_stages();
        let stats = self.watch.stats();
        let snap = snapshot(&self.title, t_ms, live, &stats, prev);
        (snap, Previous { t_ms, stats })
    }

    /// A snapshot with rates measured over [`ONE_SHOT_RATE_WINDOW`]: for
    /// the page's first drawing and `/snapshot.json`, which have no previous
    /// snapshot of their own.
    async fn one_shot(&self) -> Snapshot {
        let (_, before) = self.snapshot(None);
        tokio::select! {
            _ = tokio::time::sleep(ONE_SHOT_RATE_WINDOW) => {}
            _ = self.watch.stopped() => {}
        }
        self.snapshot(Some(&before)).0
    }
}

/// How long `/` and `/snapshot.json` watch the counters before answering,
/// so that their snapshot has throughput too.
const ONE_SHOT_RATE_WINDOW: Duration = Duration::from_millis(250);

async fn page(State(shared): State<Arc<Shared>>) -> Html<String> {
    let snap = shared.one_shot().await;
    Html(PAGE.replacen(PAGE_SNAPSHOT_SLOT, &to_script_json(&snap), 1))
}

async fn snapshot_json(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let snap = shared.one_shot().await;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        to_json(&snap),
    )
}

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(snapshots(shared))
}

/// Counts an open event stream for as long as it lives.
struct LiveStream(Arc<Shared>);

impl LiveStream {
    fn new(shared: Arc<Shared>) -> LiveStream {
        shared.live_streams.fetch_add(1, Ordering::AcqRel);
        LiveStream(shared)
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        self.0.live_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where one client's stream is.
enum Step {
    /// Send a snapshot at the next tick (or at once if the pipeline stops),
    /// with rates since the one before.
    Next(Previous),
    /// The final snapshot was sent.
    Done,
}

/// One client's snapshots: the first after [`ONE_SHOT_RATE_WINDOW`] (so it
/// has rates), then one per tick, then a final one when the pipeline stops.
/// Nothing runs between ticks, and the stream (its timer, its previous
/// `Stats`, its `LiveStream` count) is dropped when the server drops the
/// response body, which it does when the client goes away or the server
/// shuts down.
fn snapshots(shared: Arc<Shared>) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = tokio::time::Instant::now() + ONE_SHOT_RATE_WINDOW;
    let mut ticks = tokio::time::interval_at(start, shared.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (_, first) = shared.snapshot(None);
    let live = LiveStream::new(shared);
    futures::stream::unfold(
        (live, ticks, Step::Next(first)),
        |(live, mut ticks, step)| async move {
            let Step::Next(prev) = step else {
                return None;
            };
            let shared = live.0.clone();
            let stopped = tokio::select! {
                _ = shared.stop.cancelled() => return None,
                _ = shared.watch.stopped() => true,
                _ = ticks.tick() => false,
            };
            let (snap, now) = shared.snapshot(Some(&prev));
            let next = if stopped || snap.status == "stopped" {
                Step::Done
            } else {
                Step::Next(now)
            };
            let event = Event::default().event("snapshot").data(to_json(&snap));
            Some((Ok(event), (live, ticks, next)))
        },
    )
}
