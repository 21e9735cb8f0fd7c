//! One subscription's channel: batches flow down, demand flows up.
//!
//! An edge carries `Vec<T>` batches from the upstream stage to the
//! downstream one, and demand (`ask`) the other way. It is the only place two
//! stage tasks share state, and it enforces invariant D1 itself: `send`
//! refuses a batch that would take delivered events past granted demand, so
//! no bug elsewhere can over-deliver.
//!
//! # Invariants
//!
//! * `delivered <= granted` at every instant (D1).
//! * `buffered == sum of queued batch lengths`, and
//!   `buffered + (granted - delivered) <= granted - handled`: with the
//!   subscriber's accounting that bounds it by `max_demand` (D2).
//! * After `close`, no batch is accepted; the receiver sees the end only
//!   after every queued batch (D3: nothing lost at the end).
//! * After `cancel`, sends are refused and hand the batch back (the upstream
//!   counts it as abandoned, never silently lost).
//! * Emptied batch buffers travel back upstream for reuse, at most
//!   [`FREE_MAX`] at a time, so steady state allocates nothing.
//!
//! # Lock order
//!
//! One mutex, never held across an await or while calling a waker: signals
//! are notified after the guard is dropped. An [`EdgeObserver`] (testkit
//! only) is called *under* that mutex, so it sees asks and sends in the
//! order the edge applied them; it must not call back into the edge.

use std::collections::VecDeque;

use super::signal::Signal;
use std::sync::Arc;

use super::sync::{Mutex, MutexGuard};

/// Most recycled buffers kept per edge.
pub(crate) const FREE_MAX: usize = 4;

/// How an upstream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EdgeEnd {
    /// The upstream finished its stream normally.
    Done,
    /// The upstream failed (beyond its restart policy) or was cancelled.
    Failed(String),
}

/// What the receiver finds.
#[derive(Debug)]
pub(crate) enum Recv<T> {
    Batch(Vec<T>),
    Empty,
    Ended(EdgeEnd),
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<Vec<T>>,
    buffered: usize,
    /// Asked by the downstream, not yet collected by the upstream.
    new_demand: usize,
    granted: u64,
    delivered: u64,
    /// Non-empty batches delivered (for metrics; changes with `delivered`).
    batches: u64,
    free: Vec<Vec<T>>,
    end: Option<EdgeEnd>,
    cancelled: bool,
}

/// A point-in-time view of an edge, for stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EdgeSnapshot {
    pub(crate) granted: u64,
    pub(crate) delivered: u64,
    pub(crate) buffered: usize,
    pub(crate) batches: u64,
}

/// What an [`EdgeObserver`] is told, in the order the edge applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EdgeEvent {
    /// The downstream asked for `n > 0` more.
    Asked(usize),
    /// The upstream delivered a batch of `n` events.
    Sent(usize),
    /// A batch of `len` was refused because it exceeds granted demand.
    Refused {
        len: usize,
        granted: u64,
        delivered: u64,
    },
    /// The downstream took a batch of `n` events.
    Taken(usize),
    /// The upstream ended the subscription (`Some` = failed, with why).
    Closed(Option<String>),
    /// The downstream cancelled; `dropped` queued events are abandoned.
    Cancelled { dropped: usize },
}

/// Watches one edge's traffic (the testkit's checker). Checked once per
/// batch, not per event: free when absent.
pub(crate) type EdgeObserver = Arc<dyn Fn(EdgeEvent) + Send + Sync>;

pub(crate) struct Edge<T> {
    state: Mutex<State<T>>,
    observer: Option<EdgeObserver>,
    /// The upstream stage's signal: new demand or a cancel.
    up: Arc<Signal>,
    /// The downstream stage's signal: a batch or the end.
    down: Arc<Signal>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Edge<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("state", &self.state)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl<T> Edge<T> {
    pub(crate) fn new(up: Arc<Signal>, down: Arc<Signal>) -> Edge<T> {
        Edge {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                buffered: 0,
                new_demand: 0,
                granted: 0,
                delivered: 0,
                batches: 0,
                free: Vec::new(),
                end: None,
                cancelled: false,
            }),
            observer: None,
            up,
            down,
        }
    }

    /// Reports this edge's traffic to `observer` (testkit).
    pub(crate) fn observed(mut self, observer: Option<EdgeObserver>) -> Edge<T> {
        self.observer = observer;
        self
    }

    fn tell(&self, event: EdgeEvent) {
        if let Some(o) = &self.observer {
            o(event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding this lock; recover rather than
        // propagate a poison that cannot mean a broken invariant.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Downstream: asks for `n` more events and hands back an emptied buffer.
    pub(crate) fn ask(&self, n: usize, recycled: Option<Vec<T>>) {
        let mut s = self.lock();
        if let Some(mut buf) = recycled {
            if s.free.len() < FREE_MAX && buf.capacity() > 0 {
                buf.clear();
                s.free.push(buf);
            }
        }
        if n == 0 || s.cancelled {
            return;
        }
        s.new_demand = s.new_demand.saturating_add(n);
        s.granted = s.granted.saturating_add(n as u64);
        self.tell(EdgeEvent::Asked(n));
        drop(s);
        self.up.notify();
    }

    /// Upstream: collects demand asked since the last call, and whether the
    /// downstream has cancelled.
    pub(crate) fn take_demand(&self) -> (usize, bool) {
        let mut s = self.lock();
        (std::mem::take(&mut s.new_demand), s.cancelled)
    }

    /// Upstream: sends a batch. On success returns a recycled buffer, if one
    /// is available. Refused (batch handed back) when the downstream has
    /// cancelled, the edge is closed, or the batch exceeds granted demand.
    pub(crate) fn send(&self, batch: Vec<T>) -> Result<Option<Vec<T>>, Vec<T>> {
        let mut s = self.lock();
        let n = batch.len() as u64;
        if s.cancelled || s.end.is_some() || s.delivered + n > s.granted {
            if !s.cancelled && s.end.is_none() {
                self.tell(EdgeEvent::Refused {
                    len: batch.len(),
                    granted: s.granted,
                    delivered: s.delivered,
                });
            }
            return Err(batch);
        }
        self.tell(EdgeEvent::Sent(batch.len()));
        s.delivered += n;
        s.batches += u64::from(n > 0);
        s.buffered += batch.len();
        s.queue.push_back(batch);
        let free = s.free.pop();
        drop(s);
        self.down.notify();
        Ok(free)
    }

    /// Downstream: takes the next batch, or learns that the upstream ended
    /// (only once every queued batch has been taken).
    pub(crate) fn recv(&self) -> Recv<T> {
        let mut s = self.lock();
        match s.queue.pop_front() {
            Some(b) => {
                s.buffered -= b.len();
                self.tell(EdgeEvent::Taken(b.len()));
                Recv::Batch(b)
            }
            None => match &s.end {
                Some(end) => Recv::Ended(end.clone()),
                None => Recv::Empty,
            },
        }
    }

    /// Upstream: no more batches. The first end wins.
    pub(crate) fn close(&self, end: EdgeEnd) {
        let mut s = self.lock();
        if s.end.is_none() {
            self.tell(EdgeEvent::Closed(match &end {
                EdgeEnd::Done => None,
                EdgeEnd::Failed(e) => Some(e.clone()),
            }));
            s.end = Some(end);
        }
        drop(s);
        self.down.notify();
    }

    /// Downstream: unsubscribes. Returns how many queued events it will never
    /// take (to be counted as abandoned).
    pub(crate) fn cancel(&self) -> usize {
        let mut s = self.lock();
        let dropped = s.buffered;
        if !s.cancelled {
            self.tell(EdgeEvent::Cancelled { dropped });
        }
        s.cancelled = true;
        s.queue.clear();
        s.buffered = 0;
        drop(s);
        self.up.notify();
        dropped
    }

    /// The subscriber's owner ends the subscription from outside the
    /// subscriber's task (`Subscription::cancel`). The upstream sees a
    /// cancel and sends nothing more; the subscriber still takes what is
    /// queued (nothing delivered is lost), then sees a normal end.
    pub(crate) fn unsubscribe(&self) {
        let mut s = self.lock();
        if !s.cancelled {
            self.tell(EdgeEvent::Cancelled { dropped: 0 });
        }
        s.cancelled = true;
        if s.end.is_none() {
            s.end = Some(EdgeEnd::Done);
        }
        drop(s);
        self.up.notify();
        self.down.notify();
    }

    pub(crate) fn snapshot(&self) -> EdgeSnapshot {
        let s = self.lock();
        EdgeSnapshot {
            granted: s.granted,
            delivered: s.delivered,
            buffered: s.buffered,
            batches: s.batches,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn edge() -> Edge<u32> {
        Edge::new(Arc::new(Signal::new()), Arc::new(Signal::new()))
    }

    #[test]
    fn never_more_than_asked() {
        let e = edge();
        assert_eq!(e.send(vec![1]), Err(vec![1]));
        e.ask(2, None);
        assert_eq!(e.take_demand(), (2, false));
        assert_eq!(e.send(vec![1, 2, 3]), Err(vec![1, 2, 3]));
        assert!(e.send(vec![1, 2]).is_ok());
        assert_eq!(e.send(vec![3]), Err(vec![3]));
        let snap = e.snapshot();
        assert_eq!((snap.granted, snap.delivered, snap.buffered), (2, 2, 2));
    }

    #[test]
    fn end_is_seen_after_queued_batches() {
        let e = edge();
        e.ask(5, None);
        e.send(vec![1, 2]).unwrap();
        e.close(EdgeEnd::Done);
        assert!(matches!(e.recv(), Recv::Batch(b) if b == vec![1, 2]));
        assert!(matches!(e.recv(), Recv::Ended(EdgeEnd::Done)));
        assert_eq!(e.send(vec![3]), Err(vec![3]));
    }

    #[test]
    fn cancel_reports_queued_events_and_refuses_sends() {
        let e = edge();
        e.ask(5, None);
        e.send(vec![1, 2, 3]).unwrap();
        assert_eq!(e.cancel(), 3);
        assert_eq!(e.take_demand(), (5, true));
        assert_eq!(e.send(vec![4]), Err(vec![4]));
    }

    #[test]
    fn unsubscribe_keeps_what_was_delivered_then_ends() {
        let e = edge();
        e.ask(5, None);
        e.send(vec![1, 2]).unwrap();
        e.unsubscribe();
        assert_eq!(e.take_demand(), (5, true));
        assert_eq!(e.send(vec![3]), Err(vec![3]));
        assert!(matches!(e.recv(), Recv::Batch(b) if b == vec![1, 2]));
        assert!(matches!(e.recv(), Recv::Ended(EdgeEnd::Done)));
    }

    #[test]
    fn buffers_are_recycled() {
        let e = edge();
        e.ask(1, Some(Vec::with_capacity(8)));
        let free = e.send(vec![1]).unwrap();
        assert!(free.is_some_and(|b| b.is_empty() && b.capacity() >= 8));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Demand racing a send racing a cancel: never more delivered than
    /// granted, and every event either received or reported abandoned.
    #[test]
    fn loom_edge_ask_send_cancel() {
        loom::model(|| {
            let e = Arc::new(Edge::<u32>::new(
                Arc::new(Signal::new()),
                Arc::new(Signal::new()),
            ));
            let down = e.clone();
            let t = loom::thread::spawn(move || {
                down.ask(2, None);
                let got = match down.recv() {
                    Recv::Batch(b) => b.len(),
                    _ => 0,
                };
                got + down.cancel()
            });
            let mut sent = 0;
            for _ in 0..2 {
                let (n, _) = e.take_demand();
                if n > 0 && e.send(vec![7; n.min(1)]).is_ok() {
                    sent += 1;
                }
                loom::thread::yield_now();
            }
            let seen = t.join().unwrap();
            let snap = e.snapshot();
            assert!(snap.delivered <= snap.granted);
            assert_eq!(seen, sent);
        });
    }
}
