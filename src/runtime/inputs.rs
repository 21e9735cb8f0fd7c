//! The subscriber side of a stage: its subscriptions, their demand, and the
//! batch being handled.

use std::sync::Arc;

use super::edge::{Edge, EdgeEnd, Recv};
use super::shared::{Counters, StageShared};
use crate::demand::SubscriberDemand;
use crate::pipeline::CancelMode;

pub(crate) struct Input<T> {
    pub(crate) edge: Arc<Edge<T>>,
    /// `None` for manual demand: the stage asks itself.
    pub(crate) demand: Option<SubscriberDemand>,
    pub(crate) mode: CancelMode,
    pub(crate) upstream: Arc<str>,
    /// Inputs from the instances of one concurrent stage share a group: the
    /// group ends normally only when all of them have.
    pub(crate) group: usize,
    pub(crate) open: bool,
    /// Longest allowed gap between events while demand is outstanding.
    pub(crate) idle_timeout: Option<std::time::Duration>,
    /// When this subscription last saw an event (or started waiting).
    pub(crate) last_event: Option<tokio::time::Instant>,
}

/// The batch being handled, kept by the runtime (not the stage instance) so a
/// restarted instance gets it again.
pub(crate) struct Current<T> {
    pub(crate) batch: Vec<T>,
    pub(crate) pos: usize,
    pub(crate) input: usize,
    /// Failed attempts at the chunk starting at `pos`.
    pub(crate) attempts: u32,
}

pub(crate) enum Next {
    /// A chunk of this many events is ready at `current`.
    Chunk(usize),
    /// Nothing to do until the signal fires.
    Idle,
    /// Every input has ended; `Some` if one ended in failure that this
    /// stage's cancel mode does not tolerate.
    Ended(Option<String>),
}

pub(crate) struct Inputs<T> {
    pub(crate) list: Vec<Input<T>>,
    next: usize,
    pub(crate) current: Option<Current<T>>,
    started: bool,
    /// Whether any subscription has an idle timeout: without one, an idle
    /// stage has no deadline to compute each time it parks.
    timed: bool,
}

impl<T> Inputs<T> {
    pub(crate) fn new(list: Vec<Input<T>>) -> Inputs<T> {
        let timed = list.iter().any(|i| i.idle_timeout.is_some());
        Inputs {
            list,
            next: 0,
            current: None,
            started: false,
            timed,
        }
    }

    /// Sends the initial asks, once per pipeline run (not per instance:
    /// subscriptions and their demand survive restarts).
    ///
    /// Every instance start restarts the idle clocks: a restarted instance
    /// gets a full idle timeout before it is judged.
    pub(crate) fn start(&mut self) {
        let now = tokio::time::Instant::now();
        for input in &mut self.list {
            if input.idle_timeout.is_some() {
                input.last_event = Some(now);
            }
        }
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        for input in &mut self.list {
            if let Some(d) = &mut input.demand {
                input.edge.ask(d.initial_ask(), None);
            }
        }
    }

    /// When the earliest idle timeout of an open subscription with demand
    /// outstanding expires.
    #[inline]
    pub(crate) fn idle_deadline(&self) -> Option<(tokio::time::Instant, &str)> {
        if !self.timed {
            return None;
        }
        self.earliest_idle_deadline()
    }

    /// [`Inputs::idle_deadline`] of a stage with idle timeouts: out of line,
    /// so a stage without them parks without this scan's call overhead.
    #[inline(never)]
    fn earliest_idle_deadline(&self) -> Option<(tokio::time::Instant, &str)> {
        self.list
            .iter()
            .filter(|i| i.open && i.demand.as_ref().is_none_or(|d| d.outstanding() > 0))
            .filter_map(|i| Some((i.last_event? + i.idle_timeout?, &*i.upstream)))
            .min_by_key(|(at, _)| *at)
    }

    /// Fails with a message if an idle timeout has expired.
    pub(crate) fn check_idle(&self) -> Result<(), String> {
        match self.idle_deadline() {
            Some((at, upstream)) if at <= tokio::time::Instant::now() => {
                Err(format!("idle timeout: no event from `{upstream}` in time"))
            }
            _ => Ok(()),
        }
    }

    fn chunk_len(&self, c: &Current<T>, limit: usize) -> usize {
        let left = c.batch.len() - c.pos;
        let by_demand = match &self.list[c.input].demand {
            Some(d) => d.chunk(left),
            None => left,
        };
        by_demand.min(limit).max(1).min(left)
    }

    /// Finds the next chunk of at most `limit` (≥ 1) events.
    pub(crate) fn next(&mut self, limit: usize, stage: &StageShared) -> Next {
        if let Some(len) = self.next_in_batch(limit) {
            return Next::Chunk(len);
        }
        let n = self.list.len();
        // Round robin from `next`, wrapping by comparison (no division on
        // the per-batch path).
        let mut cursor = self.next;
        for _ in 0..n {
            let i = if cursor >= n { 0 } else { cursor };
            cursor = i + 1;
            if !self.list[i].open {
                continue;
            }
            match self.list[i].edge.recv() {
                Recv::Batch(batch) if batch.is_empty() => continue,
                Recv::Batch(batch) => {
                    Counters::add(&stage.counters.received, batch.len());
                    if self.list[i].idle_timeout.is_some() {
                        self.list[i].last_event = Some(tokio::time::Instant::now());
                    }
                    self.next = cursor;
                    let c = Current {
                        batch,
                        pos: 0,
                        input: i,
                        attempts: 0,
                    };
                    let len = self.chunk_len(&c, limit);
                    self.current = Some(c);
                    return Next::Chunk(len);
                }
                Recv::Empty => {}
                Recv::Ended(end) => {
                    self.list[i].open = false;
                    let group = self.list[i].group;
                    let group_open = self.list.iter().any(|x| x.open && x.group == group);
                    let input = &self.list[i];
                    let fatal = match (input.mode, &end) {
                        (CancelMode::Permanent, EdgeEnd::Done) if !group_open => Some(None),
                        (CancelMode::Permanent, EdgeEnd::Done) => None,
                        (CancelMode::Permanent | CancelMode::Transient, EdgeEnd::Failed(e)) => {
                            Some(Some(format!("upstream `{}` failed: {e}", input.upstream)))
                        }
                        _ => None,
                    };
                    if let Some(reason) = fatal {
                        // Permanent: stop after what was delivered; the other
                        // inputs are left (their queued events abandoned).
                        let abandoned = self.cancel_all(stage);
                        Counters::add(&stage.counters.abandoned, abandoned);
                        return Next::Ended(reason);
                    }
                }
            }
        }
        if self.list.iter().any(|i| i.open) {
            Next::Idle
        } else {
            Next::Ended(None)
        }
    }

    /// The next chunk (of at most `limit` ≥ 1 events) of the batch being
    /// handled, if any of it is left; never takes a new batch.
    pub(crate) fn next_in_batch(&self, limit: usize) -> Option<usize> {
        self.current.as_ref().map(|c| self.chunk_len(c, limit))
    }

    /// The events of the chunk of `len` at the current position.
    pub(crate) fn chunk(&self, len: usize) -> &[T] {
        match &self.current {
            Some(c) => &c.batch[c.pos..c.pos + len],
            None => &[],
        }
    }

    /// Records that the chunk of `len` was handled (processed or
    /// dead-lettered) and asks upstream per the subscription's demand.
    pub(crate) fn handled(&mut self, len: usize) {
        if let Some(c) = &mut self.current {
            c.pos += len;
        }
        self.settle(len);
    }

    /// Removes the chunk of `len` at the current position (for the dead
    /// letter handler), then accounts it as handled.
    pub(crate) fn take_chunk(&mut self, len: usize) -> Vec<T> {
        let Some(c) = &mut self.current else {
            return Vec::new();
        };
        // `pos` stays: the drained events are gone, the next ones moved up.
        let events: Vec<T> = c.batch.drain(c.pos..c.pos + len).collect();
        self.settle(len);
        events
    }

    /// The accounting shared by `handled` and `take_chunk`, once `pos` points
    /// past the chunk: asks per the subscription's demand, and hands the
    /// batch's buffer back upstream when it is used up.
    fn settle(&mut self, len: usize) {
        let Some(c) = &mut self.current else { return };
        c.attempts = 0;
        let input = &mut self.list[c.input];
        let ask = input.demand.as_mut().map_or(0, |d| d.handled(len));
        if c.pos >= c.batch.len() {
            if let Some(c) = self.current.take() {
                input.edge.ask(ask, Some(c.batch));
            }
        } else if ask > 0 {
            input.edge.ask(ask, None);
        }
    }

    /// Unsubscribes from every input; returns the events this stage will
    /// never handle (the rest of the current batch and everything queued).
    /// Queued events were delivered to this stage, so they count as received
    /// too: the ledger keeps `received == processed + dead_lettered +
    /// abandoned`.
    pub(crate) fn cancel_all(&mut self, stage: &StageShared) -> usize {
        let current = self.current.take().map_or(0, |c| c.batch.len() - c.pos);
        let mut queued = 0;
        for input in &mut self.list {
            input.open = false;
            queued += input.edge.cancel();
        }
        Counters::add(&stage.counters.received, queued);
        current + queued
    }
}
