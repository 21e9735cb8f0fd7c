//! [`TestConsumer`]: a subscriber driven by hand from the test, as the
//! Reactive Streams TCK's `ManualSubscriber`.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::error::AskError;
use crate::runtime::edge::{Edge, EdgeEnd, Recv};
use crate::runtime::signal::Signal;
use crate::{Pipeline, StageRef, Subscribe};

/// How long the `expect_*` methods wait (virtual time under the testkit's
/// paused clock), as the TCK's default timeout.
pub const EXPECT_TIMEOUT: Duration = Duration::from_millis(100);

/// What a [`TestConsumer`] saw last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signalled<T> {
    /// An event.
    Next(T),
    /// Every upstream ended normally.
    Complete,
    /// An upstream failed or was cancelled.
    Error(String),
}

/// A subscriber whose demand is asked by the test itself (manual demand)
/// and whose events the test pulls: `ask(n)`, `cancel()`,
/// `expect_next/expect_none/expect_complete/expect_error`.
///
/// It subscribes like a stage (the pipeline's stats call it `name`) but
/// runs in the test's own task, so the test sees each signal in order.
/// Made by [`consumer`] / [`consumer_named`].
pub struct TestConsumer<T> {
    edges: Vec<Arc<Edge<T>>>,
    signal: Arc<Signal>,
    queue: VecDeque<T>,
    failed: Option<String>,
    cancelled: bool,
    received: u64,
    batches: Vec<usize>,
}

impl<T> fmt::Debug for TestConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestConsumer")
            .field("open_inputs", &self.edges.len())
            .field("queued", &self.queue.len())
            .field("received", &self.received)
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

/// Subscribes a [`TestConsumer`] called `"testkit.consumer"` to `upstream`.
/// No demand is asked until the test calls [`TestConsumer::ask`] (the
/// options' `max_demand`/`min_demand` do not apply).
pub fn consumer<T: Send + 'static>(
    p: &mut Pipeline,
    upstream: &StageRef<T>,
    options: Subscribe,
) -> TestConsumer<T> {
    consumer_named(p, "testkit.consumer", upstream, options)
}

/// As [`consumer`], with the subscriber's name.
pub fn consumer_named<T: Send + 'static>(
    p: &mut Pipeline,
    name: &str,
    upstream: &StageRef<T>,
    options: Subscribe,
) -> TestConsumer<T> {
    let (edges, signal) = p.probe_edges(upstream, &options, name);
    TestConsumer {
        edges,
        signal,
        queue: VecDeque::new(),
        failed: None,
        cancelled: false,
        received: 0,
        batches: Vec::new(),
    }
}

impl<T> TestConsumer<T> {
    /// Asks for `n` more events on every subscription. Zero is refused
    /// (RS 3.9); after [`TestConsumer::cancel`] this is a no-op (RS 3.6).
    pub fn ask(&self, n: usize) -> Result<(), AskError> {
        if n == 0 {
            return Err(AskError::Zero);
        }
        for e in &self.edges {
            e.ask(n, None);
        }
        Ok(())
    }

    /// Cancels every subscription: the upstream stops serving it. Events
    /// already delivered stay readable (RS 2.8). Idempotent (RS 3.7).
    pub fn cancel(&mut self) {
        if !self.cancelled {
            self.cancelled = true;
            for e in &self.edges {
                e.cancel();
            }
        }
    }

    /// Events received so far (taken from the subscriptions).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The size of every batch taken so far.
    pub fn batches(&self) -> &[usize] {
        &self.batches
    }

    /// Takes whatever the subscriptions hold now, without waiting.
    fn pump(&mut self) {
        let mut i = 0;
        while i < self.edges.len() {
            match self.edges[i].recv() {
                Recv::Batch(b) => {
                    self.received += b.len() as u64;
                    self.batches.push(b.len());
                    self.queue.extend(b);
                }
                Recv::Empty => i += 1,
                Recv::Ended(end) => {
                    if let EdgeEnd::Failed(e) = end {
                        self.failed.get_or_insert(e);
                    }
                    self.edges.remove(i);
                }
            }
        }
    }

    /// The next signal, waiting for it as long as it takes.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is taken until it is returned.
    pub async fn next(&mut self) -> Signalled<T> {
        poll_fn(|cx| loop {
            self.pump();
            if let Some(e) = self.queue.pop_front() {
                return Poll::Ready(Signalled::Next(e));
            }
            if self.edges.is_empty() {
                return Poll::Ready(match &self.failed {
                    Some(e) => Signalled::Error(e.clone()),
                    None => Signalled::Complete,
                });
            }
            if self.signal.poll_notified(cx).is_pending() {
                return Poll::Pending;
            }
        })
        .await
    }

    /// The next signal, or `None` if nothing comes within `timeout`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`TestConsumer::next`]: an event is taken from the
    /// consumer's queue only when it is returned, so dropping the future
    /// loses nothing.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Signalled<T>> {
        tokio::time::timeout(timeout, self.next()).await.ok()
    }

    /// Everything that arrives until nothing more comes within `timeout`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: events collected so far live in the future and are
    /// lost if it is dropped before it returns (they are no longer in the
    /// consumer's queue).
    pub async fn drain_within(&mut self, timeout: Duration) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(Signalled::Next(e)) = self.next_within(timeout).await {
            out.push(e);
        }
        out
    }

    /// Waits for one event; panics if another signal or nothing comes.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`TestConsumer::next`]: an event is taken from the
    /// consumer's queue only when it is returned, so dropping the future
    /// loses nothing.
    #[track_caller]
    pub fn expect_next(&mut self) -> impl std::future::Future<Output = T> + '_
    where
        T: fmt::Debug,
    {
        let at = std::panic::Location::caller();
        async move {
            match self.next_within(EXPECT_TIMEOUT).await {
                Some(Signalled::Next(e)) => e,
                other => panic!("{at}: expected an event, got {other:?}"),
            }
        }
    }

    /// Waits for `n` events; panics if anything else comes first.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the events received so far live in the future and
    /// are lost if it is dropped before all `n` have come.
    #[track_caller]
    pub fn expect_n(&mut self, n: usize) -> impl std::future::Future<Output = Vec<T>> + '_
    where
        T: fmt::Debug,
    {
        let at = std::panic::Location::caller();
        async move {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                match self.next_within(EXPECT_TIMEOUT).await {
                    Some(Signalled::Next(e)) => out.push(e),
                    other => panic!(
                        "{at}: expected {n} events, got {} ({out:?}) then {other:?}",
                        out.len()
                    ),
                }
            }
            out
        }
    }

    /// Panics if any signal comes within [`EXPECT_TIMEOUT`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`TestConsumer::next`]: an event is taken from the
    /// consumer's queue only when it is returned, so dropping the future
    /// loses nothing.
    #[track_caller]
    pub fn expect_none(&mut self) -> impl std::future::Future<Output = ()> + '_
    where
        T: fmt::Debug,
    {
        let at = std::panic::Location::caller();
        async move {
            if let Some(s) = self.next_within(EXPECT_TIMEOUT).await {
                panic!("{at}: expected no signal, got {s:?}");
            }
        }
    }

    /// Waits for the normal end; panics on anything else.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`TestConsumer::next`]: an event is taken from the
    /// consumer's queue only when it is returned, so dropping the future
    /// loses nothing.
    #[track_caller]
    pub fn expect_complete(&mut self) -> impl std::future::Future<Output = ()> + '_
    where
        T: fmt::Debug,
    {
        let at = std::panic::Location::caller();
        async move {
            match self.next_within(EXPECT_TIMEOUT).await {
                Some(Signalled::Complete) => {}
                other => panic!("{at}: expected completion, got {other:?}"),
            }
        }
    }

    /// Waits for the failed end; returns why. Panics on anything else.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`TestConsumer::next`]: an event is taken from the
    /// consumer's queue only when it is returned, so dropping the future
    /// loses nothing.
    #[track_caller]
    pub fn expect_error(&mut self) -> impl std::future::Future<Output = String> + '_
    where
        T: fmt::Debug,
    {
        let at = std::panic::Location::caller();
        async move {
            match self.next_within(EXPECT_TIMEOUT).await {
                Some(Signalled::Error(e)) => e,
                other => panic!("{at}: expected an error, got {other:?}"),
            }
        }
    }
}

impl<T> Drop for TestConsumer<T> {
    fn drop(&mut self) {
        // As a dropped stream: the upstream stops serving us.
        self.cancel();
    }
}
