//! The testkit: make demand visible and property-test backpressure in your
//! own pipelines (feature `testkit`).
//!
//! * [`producer`] — a [`TestProducer`] whose [`ProducerHandle`] pushes
//!   events, closes or fails the stream, and reads every demand the
//!   producer was called with.
//! * [`consumer`] — a [`TestConsumer`] whose demand the test asks by hand
//!   (`ask(n)`, `cancel()`) and whose signals the test expects in order
//!   (`expect_next`, `expect_none`, `expect_complete`, `expect_error`).
//! * [`Checker`] — the checking wrapper: put it on any subscription
//!   ([`Checker::on`]) or insert a checked stage ([`checked`],
//!   [`checked_sequence`]); it fails the moment D1–D4 break, with the
//!   subscription, its demand history and the offending event.
//!   [`Monitor`] is the same checker as a pure state machine, to feed by hand.
//! * [`strategies`] — proptest strategies for demand schedules, consumer
//!   speeds, crash schedules and graph shapes, and the stages that play
//!   them ([`strategies::slow`], [`strategies::crashing`]).
//! * [`run`] / [`Runner`] — run a pipeline under a paused tokio clock
//!   (fast and repeatable: time advances only when every task waits) and
//!   check every checker made meanwhile; [`block_on`] and [`settle`] for
//!   tests that drive handles themselves.
//! * [`assert_events!`](crate::assert_events) and
//!   [`assert_demand!`](crate::assert_demand).
//!
//! `docs/testing.md` has a worked example, the commands and the conformance
//! coverage table; it is compiled with the doc tests.
//!
//! # Example
//!
//! ```
//! use demandflow::testkit;
//! use demandflow::{source, stage, Subscribe};
//!
//! let out = testkit::run(|p| {
//!     let n = p.producer("n", source::iter(1..=5u32));
//!     p.processor("double", stage::map(|x: u32| x * 2))
//!         .subscribe(&n, Subscribe::max_demand(2))
//! });
//! demandflow::assert_events!(out, [2, 4, 6, 8, 10]);
//! ```

use std::fmt;
use std::future::Future;
use std::time::Duration;

mod checker;
mod consumer;
mod monitor;
mod producer;
pub mod strategies;

pub use checker::{checked, checked_sequence, Checker};
pub use consumer::{consumer, consumer_named, Signalled, TestConsumer, EXPECT_TIMEOUT};
pub use monitor::{Monitor, Op, Rule, Sequence, Violation};
pub use producer::{producer, ProducerHandle, TestProducer};

use crate::error::PipelineError;
use crate::pipeline::Report;
use crate::{sink, Pipeline, StageRef, Subscribe};

/// A current-thread tokio runtime with time enabled and paused: timers
/// fire in virtual time, as soon as every task is waiting.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("testkit: cannot build a tokio runtime: {e}"))
}

/// Runs `fut` to completion on a fresh [`runtime`] (paused clock).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

/// Lets every task run until all of them wait (one virtual millisecond
/// under the paused clock): the pipeline has done all it can for now.
///
/// # Cancel safety
///
/// Cancel safe: it only sleeps.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Runs pipelines under a paused clock and checks every [`Checker`] made
/// while building and running them.
#[derive(Debug, Clone)]
pub struct Runner {
    timeout: Duration,
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new()
    }
}

/// What a [`Runner`] run gave.
#[derive(Debug)]
pub struct Outcome<T> {
    /// What reached the collecting consumer, in order.
    pub events: Vec<T>,
    /// How the run ended.
    pub result: Result<Report, PipelineError>,
    /// Every violation found by the run's checkers.
    pub violations: Vec<Violation>,
    /// Whether the run stopped making progress and was cancelled at the
    /// runner's virtual time limit.
    pub stalled: bool,
}

impl<T> Outcome<T> {
    /// The run's report, completed or not.
    pub fn report(&self) -> &Report {
        match &self.result {
            Ok(r) => r,
            Err(e) => e.report(),
        }
    }

    /// Whether the run stopped making progress and was cancelled at the
    /// runner's virtual time limit.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// The events, if the run completed and no checker found anything;
    /// else panics with every violation and the run's status.
    #[track_caller]
    pub fn unwrap(self) -> Vec<T> {
        if self.violations.is_empty() && self.result.is_ok() {
            return self.events;
        }
        let mut msg = format!("testkit: the run ended {}", self.report().status);
        if self.stalled() {
            msg.push_str(
                " (the runner's virtual time limit: the pipeline stopped making progress)",
            );
        }
        for v in &self.violations {
            msg.push_str("\n\n");
            msg.push_str(&v.to_string());
        }
        panic!("{msg}");
    }
}

impl Runner {
    /// A runner whose runs stop after one virtual hour.
    pub fn new() -> Runner {
        Runner {
            timeout: Duration::from_secs(3600),
        }
    }

    /// Stops each run after `timeout` of virtual time (default one hour):
    /// a run still going then has stopped making progress; every checker is
    /// asked whether its subscription forgot its demand (D4), then the run
    /// is cancelled.
    pub fn timeout(mut self, timeout: Duration) -> Runner {
        self.timeout = timeout;
        self
    }

    /// Builds a pipeline with `build`, collects what the stage it returns
    /// emits (through a checked subscription), runs it and checks.
    pub fn run<T, F>(&self, build: F) -> Outcome<T>
    where
        T: Clone + fmt::Debug + Send + Sync + 'static,
        F: FnOnce(&mut Pipeline) -> StageRef<T>,
    {
        self.run_with(|p| {
            let out = build(p);
            let (collect, collected) = sink::collect();
            let checker = Checker::new(&format!("{} → testkit.collect", out.name()));
            p.consumer("testkit.collect", collect)
                .subscribe(&out, checker.on(Subscribe::default()));
            move || collected.take()
        })
    }

    /// Builds a pipeline with `build` (which adds its own consumers and
    /// returns what reads the result afterwards), runs it and checks.
    pub fn run_with<T, R, F>(&self, build: F) -> Outcome<T>
    where
        F: FnOnce(&mut Pipeline) -> R,
        R: FnOnce() -> Vec<T>,
    {
        checker::session_start();
        let timeout = self.timeout;
        let (result, read, stalled) = block_on(async move {
            let mut p = Pipeline::new();
            let read = build(&mut p);
            let handle = match p.spawn() {
                Ok(h) => h,
                Err(e) => panic!("testkit: the pipeline does not build: {e}"),
            };
            let watch = handle.watch();
            // Under the paused clock this returns as soon as every stage
            // has ended, or, if the pipeline stops making progress, once
            // virtual time reaches the limit: then every subscription is
            // judged as it stands, before the cancel ends them.
            let stalled = tokio::time::timeout(timeout, watch.stopped())
                .await
                .is_err();
            if stalled {
                for c in checker::session_snapshot() {
                    c.quiescent();
                }
                handle.cancel();
            }
            (handle.join().await, read, stalled)
        });
        let checkers = checker::session_end();
        Outcome {
            events: read(),
            result,
            stalled,
            violations: checkers.iter().filter_map(Checker::violation).collect(),
        }
    }
}

/// Runs the pipeline `build` makes under a paused clock and returns what
/// the stage it returns emitted; panics if the run fails or any checker
/// finds a violation. The one-call runner for doc tests.
///
/// ```
/// let out = demandflow::testkit::run(|p| p.producer("n", demandflow::source::iter(0..3u8)));
/// assert_eq!(out, [0, 1, 2]);
/// ```
#[track_caller]
pub fn run<T, F>(build: F) -> Vec<T>
where
    T: Clone + fmt::Debug + Send + Sync + 'static,
    F: FnOnce(&mut Pipeline) -> StageRef<T>,
{
    Runner::new().run(build).unwrap()
}

#[doc(hidden)]
#[track_caller]
pub fn __assert_events<T: PartialEq + fmt::Debug>(got: &[T], want: &[T]) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    let i = at.unwrap_or(got.len().min(want.len()));
    let lo = i.saturating_sub(3);
    panic!(
        "events differ at index {i} (got {} events, want {}):\n  got  [{lo}..]: {:?}\n  want [{lo}..]: {:?}",
        got.len(),
        want.len(),
        &got[lo..got.len().min(i + 4)],
        &want[lo..want.len().min(i + 4)],
    );
}

/// Asserts two event sequences are equal; on failure shows the first
/// differing index with a little context on each side.
///
/// ```
/// demandflow::assert_events!(vec![1, 2, 3], [1, 2, 3]);
/// ```
#[macro_export]
macro_rules! assert_events {
    ($got:expr, $want:expr $(,)?) => {
        $crate::testkit::__assert_events(&$got[..], &$want[..])
    };
}

/// Asserts the demands a [`TestProducer`] was called with, in order.
///
/// ```
/// let (_producer, handle) = demandflow::testkit::producer::<u8>();
/// demandflow::assert_demand!(handle, []);
/// ```
#[macro_export]
macro_rules! assert_demand {
    ($handle:expr, [$($d:expr),* $(,)?] $(,)?) => {{
        let got: ::std::vec::Vec<usize> = $handle.demands();
        let want: ::std::vec::Vec<usize> = ::std::vec![$($d),*];
        assert_eq!(got, want, "the demands the producer was called with");
    }};
}

#[cfg(doctest)]
#[doc = include_str!("../../docs/testing.md")]
struct TestingGuide;
