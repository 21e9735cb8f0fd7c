//! The push buffer as a pure state machine: a bounded queue, its counters and
//! its overflow decisions. No locks, no wakers, no clock; the synchronised
//! wrapper in `shared.rs` drives it and wakes tasks from what changed.
//!
//! # Invariants
//!
//! After every call:
//!
//! 1. `queued <= max_queue` (G-B1).
//! 2. `pushed == delivered + dropped_oldest + dropped_newest + abandoned +
//!    queued`: every event accepted for a decision ends delivered, dropped by
//!    the overflow strategy, or abandoned when the stream ended early, and is
//!    counted once (D7).
//! 3. Once the phase is `Ended`, the queue is empty and never refills, and the
//!    outcome never changes (the first terminal event wins).
//! 4. `Closing` implies a non-empty queue: a close with nothing queued ends
//!    the stream at once, and the pop that empties a closing queue ends it.

use std::collections::VecDeque;

use super::error::{OverflowError, PushError};
use super::{Overflow, PushOutcome, PushStats};
use crate::cancel::CancelCause;

/// Where the stream is in its life.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// Accepting pushes.
    Open,
    /// `close()` was called: no more pushes; the queue drains, then ends.
    Closing,
    /// Over; the outcome is final.
    Ended(PushOutcome),
}

/// Events the state machine let go of, to be dropped by the caller once it
/// has released its lock (dropping a user value runs user code).
#[derive(Debug)]
#[must_use = "discarded events are dropped by the caller, outside its lock"]
// The payloads are only ever dropped, which the dead-code lint does not count
// as a read outside tests.
#[allow(dead_code)]
pub(crate) enum Discard<T> {
    Nothing,
    One(T),
    All(VecDeque<T>),
}

/// The result of a pop.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pop {
    /// `count` events were moved out; `last` when they end the stream.
    Emitted { count: usize, last: bool },
    /// Open with nothing queued: wait for a push or the end.
    Empty,
    /// The stream ended normally or was cancelled; nothing more will come.
    Ended,
    /// The stream failed on overflow.
    Failed(OverflowError),
}

/// The bounded queue and its accounting.
#[derive(Debug)]
pub(crate) struct PushState<T> {
    queue: VecDeque<T>,
    max_queue: usize,
    overflow: Overflow,
    phase: Phase,
    pushed: u64,
    delivered: u64,
    dropped_oldest: u64,
    dropped_newest: u64,
    abandoned: u64,
}

impl<T> PushState<T> {
    /// A new open buffer. `max_queue` must be at least 1 (checked by the
    /// public constructor); a 0 here is raised to 1 rather than panicking.
    pub(crate) fn new(max_queue: usize, overflow: Overflow) -> Self {
        let max_queue = max_queue.max(1);
        PushState {
            // Pre-allocating a huge bound would cost memory the stream may
            // never use; the queue grows on demand up to the bound.
            queue: VecDeque::with_capacity(max_queue.min(64)),
            max_queue,
            overflow,
            phase: Phase::Open,
            pushed: 0,
            delivered: 0,
            dropped_oldest: 0,
            dropped_newest: 0,
            abandoned: 0,
        }
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }

    pub(crate) fn phase(&self) -> &Phase {
        &self.phase
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Offers `event` to the queue under the overflow strategy.
    pub(crate) fn push(&mut self, event: T) -> (Result<(), PushError<T>>, Discard<T>) {
        if self.phase != Phase::Open {
            return (Err(PushError::Closed(event)), Discard::Nothing);
        }
        if self.queue.len() < self.max_queue {
            self.queue.push_back(event);
            self.pushed += 1;
            return (Ok(()), Discard::Nothing);
        }
        let out = match self.overflow {
            Overflow::DropOldest => {
                let oldest = self.queue.pop_front();
                self.queue.push_back(event);
                self.pushed += 1;
                self.dropped_oldest += 1;
                (Ok(()), oldest.map_or(Discard::Nothing, Discard::One))
            }
            Overflow::DropNewest => {
                self.pushed += 1;
                self.dropped_newest += 1;
                (Err(PushError::Overflow(event)), Discard::Nothing)
            }
            Overflow::Fail => {
                // The rejected event counts as dropped by overflow; what was
                // queued is abandoned, as the stream ends with an error at
                // once instead of delivering a backlog it could not keep.
                self.pushed += 1;
                self.dropped_newest += 1;
                let failed = PushOutcome::Failed(OverflowError {
                    max_queue: self.max_queue,
                });
                let abandoned = self.end(failed);
                (Err(PushError::Overflow(event)), abandoned)
            }
            Overflow::Block => (Err(PushError::Full(event)), Discard::Nothing),
        };
        self.debug_check();
        out
    }

    /// Stops accepting pushes; what is queued is still delivered, then the
    /// stream completes. Does nothing once closing or ended.
    pub(crate) fn close(&mut self) {
        if self.phase == Phase::Open {
            if self.queue.is_empty() {
                self.phase = Phase::Ended(PushOutcome::Completed);
            } else {
                self.phase = Phase::Closing;
            }
        }
        self.debug_check();
    }

    /// Ends the stream now; queued events are abandoned. Does nothing once
    /// ended (the first terminal event wins).
    pub(crate) fn cancel(&mut self, cause: CancelCause) -> Discard<T> {
        let discard = self.end(PushOutcome::Cancelled(cause));
        self.debug_check();
        discard
    }

    fn end(&mut self, outcome: PushOutcome) -> Discard<T> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Discard::Nothing;
        }
        self.phase = Phase::Ended(outcome);
        self.abandoned += self.queue.len() as u64;
        if self.queue.is_empty() {
            Discard::Nothing
        } else {
            Discard::All(std::mem::take(&mut self.queue))
        }
    }

    /// Moves up to `demand` queued events, oldest first, into `out`.
    pub(crate) fn pop(&mut self, demand: usize, out: &mut impl Extend<T>) -> Pop {
        let result = match &self.phase {
            Phase::Ended(PushOutcome::Failed(e)) => Pop::Failed(e.clone()),
            Phase::Ended(_) => Pop::Ended,
            Phase::Open if self.queue.is_empty() => Pop::Empty,
            Phase::Open | Phase::Closing => {
                let count = demand.min(self.queue.len());
                out.extend(self.queue.drain(..count));
                self.delivered += count as u64;
                let last = self.phase == Phase::Closing && self.queue.is_empty();
                if last {
                    self.phase = Phase::Ended(PushOutcome::Completed);
                }
                Pop::Emitted { count, last }
            }
        };
        self.debug_check();
        result
    }

    /// The terminal outcome, once the stream has ended.
    pub(crate) fn outcome(&self) -> Option<&PushOutcome> {
        match &self.phase {
            Phase::Ended(outcome) => Some(outcome),
            _ => None,
        }
    }

    pub(crate) fn stats(&self) -> PushStats {
        PushStats {
            queued: self.queue.len(),
            max_queue: self.max_queue,
            pushed: self.pushed,
            delivered: self.delivered,
            dropped_oldest: self.dropped_oldest,
            dropped_newest: self.dropped_newest,
            abandoned: self.abandoned,
        }
    }

    /// Invariants 1–4; `Err` names the first that fails.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.queue.len() > self.max_queue {
            return Err("queued > max_queue");
        }
        let accounted = self.delivered
            + self.dropped_oldest
            + self.dropped_newest
            + self.abandoned
            + self.queue.len() as u64;
        if self.pushed != accounted {
            return Err("pushed != delivered + dropped + abandoned + queued");
        }
        match self.phase {
            Phase::Ended(_) if !self.queue.is_empty() => Err("ended with events queued"),
            Phase::Closing if self.queue.is_empty() => Err("closing with nothing queued"),
            _ => Ok(()),
        }
    }

    fn debug_check(&self) {
        debug_assert_eq!(self.check(), Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max: usize, overflow: Overflow) -> PushState<u32> {
        PushState::new(max, overflow)
    }

    fn stats(
        queued: usize,
        pushed: u64,
        delivered: u64,
        dropped: (u64, u64),
        abandoned: u64,
    ) -> PushStats {
        PushStats {
            queued,
            max_queue: 2,
            pushed,
            delivered,
            dropped_oldest: dropped.0,
            dropped_newest: dropped.1,
            abandoned,
        }
    }

    fn queue(s: &PushState<u32>) -> Vec<u32> {
        s.queue.iter().copied().collect()
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let mut s = state(2, Overflow::DropOldest);
        assert!(matches!(s.push(1), (Ok(()), Discard::Nothing)));
        assert!(matches!(s.push(2), (Ok(()), Discard::Nothing)));
        assert!(matches!(s.push(3), (Ok(()), Discard::One(1))));
        assert_eq!(queue(&s), [2, 3]);
        assert_eq!(s.stats(), stats(2, 3, 0, (1, 0), 0));
    }

    #[test]
    fn drop_newest_keeps_the_oldest_and_hands_the_event_back() {
        let mut s = state(2, Overflow::DropNewest);
        let _ = s.push(1);
        let _ = s.push(2);
        let (result, discard) = s.push(3);
        assert_eq!(result, Err(PushError::Overflow(3)));
        assert!(matches!(discard, Discard::Nothing));
        assert_eq!(queue(&s), [1, 2]);
        assert_eq!(s.stats(), stats(2, 3, 0, (0, 1), 0));
        assert_eq!(s.phase(), &Phase::Open, "DropNewest keeps the stream open");
    }

    #[test]
    fn fail_ends_the_stream_and_abandons_the_backlog() {
        let mut s = state(2, Overflow::Fail);
        let _ = s.push(1);
        let _ = s.push(2);
        let (result, discard) = s.push(3);
        assert_eq!(result, Err(PushError::Overflow(3)));
        assert!(matches!(discard, Discard::All(q) if q == [1, 2]));
        assert_eq!(s.stats(), stats(0, 3, 0, (0, 1), 2));
        let failed = OverflowError { max_queue: 2 };
        assert_eq!(s.outcome(), Some(&PushOutcome::Failed(failed.clone())));
        assert_eq!(s.pop(5, &mut Vec::new()), Pop::Failed(failed));
        assert_eq!(s.push(4).0, Err(PushError::Closed(4)));
        assert_eq!(
            s.stats(),
            stats(0, 3, 0, (0, 1), 2),
            "closed pushes are not counted"
        );
    }

    #[test]
    fn block_refuses_without_counting() {
        let mut s = state(2, Overflow::Block);
        let _ = s.push(1);
        let _ = s.push(2);
        assert_eq!(s.push(3).0, Err(PushError::Full(3)));
        assert_eq!(s.stats(), stats(2, 2, 0, (0, 0), 0));
        let mut out = Vec::new();
        assert_eq!(
            s.pop(1, &mut out),
            Pop::Emitted {
                count: 1,
                last: false
            }
        );
        assert_eq!(s.push(3).0, Ok(()));
        assert_eq!(queue(&s), [2, 3]);
        assert_eq!(out, [1]);
    }

    #[test]
    fn pop_takes_at_most_demand_in_order() {
        let mut s = state(2, Overflow::DropOldest);
        let mut out = Vec::new();
        assert_eq!(s.pop(3, &mut out), Pop::Empty);
        let _ = s.push(1);
        let _ = s.push(2);
        assert_eq!(
            s.pop(1, &mut out),
            Pop::Emitted {
                count: 1,
                last: false
            }
        );
        assert_eq!(out, [1]);
        assert_eq!(
            s.pop(9, &mut out),
            Pop::Emitted {
                count: 1,
                last: false
            }
        );
        assert_eq!(out, [1, 2]);
        assert_eq!(s.stats(), stats(0, 2, 2, (0, 0), 0));
        assert_eq!(s.pop(9, &mut out), Pop::Empty);
    }

    #[test]
    fn close_delivers_the_backlog_then_completes() {
        let mut s = state(2, Overflow::DropOldest);
        let _ = s.push(1);
        let _ = s.push(2);
        s.close();
        assert_eq!(s.phase(), &Phase::Closing);
        assert_eq!(s.push(3).0, Err(PushError::Closed(3)));
        let mut out = Vec::new();
        assert_eq!(
            s.pop(1, &mut out),
            Pop::Emitted {
                count: 1,
                last: false
            }
        );
        assert_eq!(s.outcome(), None);
        assert_eq!(
            s.pop(1, &mut out),
            Pop::Emitted {
                count: 1,
                last: true
            }
        );
        assert_eq!(s.outcome(), Some(&PushOutcome::Completed));
        assert_eq!(s.pop(1, &mut out), Pop::Ended);
        assert_eq!(out, [1, 2]);
        assert_eq!(s.stats(), stats(0, 2, 2, (0, 0), 0));
    }

    #[test]
    fn close_on_an_empty_queue_completes_at_once() {
        let mut s = state(2, Overflow::Block);
        s.close();
        assert_eq!(s.outcome(), Some(&PushOutcome::Completed));
        assert_eq!(s.pop(1, &mut Vec::new()), Pop::Ended);
    }

    #[test]
    fn cancel_abandons_the_backlog_and_the_first_end_wins() {
        let mut s = state(2, Overflow::DropOldest);
        let _ = s.push(1);
        let _ = s.push(2);
        s.close();
        let discard = s.cancel(CancelCause::User);
        assert!(matches!(discard, Discard::All(q) if q == [1, 2]));
        assert_eq!(s.stats(), stats(0, 2, 0, (0, 0), 2));
        assert_eq!(
            s.outcome(),
            Some(&PushOutcome::Cancelled(CancelCause::User))
        );
        assert!(matches!(s.cancel(CancelCause::Shutdown), Discard::Nothing));
        s.close();
        assert_eq!(
            s.outcome(),
            Some(&PushOutcome::Cancelled(CancelCause::User))
        );
        assert_eq!(s.pop(1, &mut Vec::new()), Pop::Ended);
    }

    #[test]
    fn zero_bound_is_raised_to_one_instead_of_panicking() {
        let mut s = state(0, Overflow::DropNewest);
        assert_eq!(s.push(1).0, Ok(()));
        assert_eq!(s.push(2).0, Err(PushError::Overflow(2)));
    }

    mod model {
        //! The state machine against a naive model: every event pushed gets
        //! a fate, and the queue is the list of events whose fate is still
        //! "queued", in push order.

        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone, Copy, PartialEq)]
        enum Fate {
            Queued,
            Delivered,
            DroppedOldest,
            DroppedNewest,
            Abandoned,
        }

        #[derive(Debug, Clone)]
        enum Op {
            Push,
            Pop(usize),
            Close,
            Cancel,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => Just(Op::Push),
                4 => (1usize..5).prop_map(Op::Pop),
                1 => Just(Op::Close),
                1 => Just(Op::Cancel),
            ]
        }

        fn strategy() -> impl Strategy<Value = Overflow> {
            prop_oneof![
                Just(Overflow::DropOldest),
                Just(Overflow::DropNewest),
                Just(Overflow::Fail),
                Just(Overflow::Block),
            ]
        }

        struct Model {
            max: usize,
            overflow: Overflow,
            fates: Vec<(u32, Fate)>,
            closing: bool,
            outcome: Option<PushOutcome>,
        }

        impl Model {
            fn queued(&self) -> Vec<u32> {
                self.fates
                    .iter()
                    .filter(|(_, f)| *f == Fate::Queued)
                    .map(|(e, _)| *e)
                    .collect()
            }

            fn count(&self, fate: Fate) -> u64 {
                self.fates.iter().filter(|(_, f)| *f == fate).count() as u64
            }

            fn set(&mut self, event: u32, fate: Fate) {
                for entry in &mut self.fates {
                    if entry.0 == event {
                        entry.1 = fate;
                    }
                }
            }

            fn abandon_all(&mut self) {
                for q in self.queued() {
                    self.set(q, Fate::Abandoned);
                }
            }

            /// What `push` must return: `Ok` or the error's kind.
            fn push(&mut self, e: u32) -> Result<(), &'static str> {
                if self.closing || self.outcome.is_some() {
                    return Err("closed");
                }
                let queued = self.queued();
                if queued.len() < self.max {
                    self.fates.push((e, Fate::Queued));
                    return Ok(());
                }
                match self.overflow {
                    Overflow::DropOldest => {
                        self.set(queued[0], Fate::DroppedOldest);
                        self.fates.push((e, Fate::Queued));
                        Ok(())
                    }
                    Overflow::DropNewest => {
                        self.fates.push((e, Fate::DroppedNewest));
                        Err("overflow")
                    }
                    Overflow::Fail => {
                        self.fates.push((e, Fate::DroppedNewest));
                        self.abandon_all();
                        self.outcome = Some(PushOutcome::Failed(OverflowError {
                            max_queue: self.max,
                        }));
                        Err("overflow")
                    }
                    Overflow::Block => Err("full"),
                }
            }

            fn pop(&mut self, demand: usize) -> (Vec<u32>, Pop) {
                match &self.outcome {
                    Some(PushOutcome::Failed(e)) => return (vec![], Pop::Failed(e.clone())),
                    Some(_) => return (vec![], Pop::Ended),
                    None => {}
                }
                let queued = self.queued();
                if queued.is_empty() {
                    return (vec![], Pop::Empty);
                }
                let taken: Vec<u32> = queued.into_iter().take(demand).collect();
                for &e in &taken {
                    self.set(e, Fate::Delivered);
                }
                let last = self.closing && self.queued().is_empty();
                if last {
                    self.outcome = Some(PushOutcome::Completed);
                }
                let count = taken.len();
                (taken, Pop::Emitted { count, last })
            }

            fn close(&mut self) {
                if self.outcome.is_none() && !self.closing {
                    if self.queued().is_empty() {
                        self.outcome = Some(PushOutcome::Completed);
                    } else {
                        self.closing = true;
                    }
                }
            }

            fn cancel(&mut self) {
                if self.outcome.is_none() {
                    self.abandon_all();
                    self.outcome = Some(PushOutcome::Cancelled(CancelCause::User));
                }
            }
        }

        fn kind(r: &Result<(), PushError<u32>>) -> Result<(), &'static str> {
            match r {
                Ok(()) => Ok(()),
                Err(PushError::Overflow(_)) => Err("overflow"),
                Err(PushError::Full(_)) => Err("full"),
                Err(PushError::Closed(_)) => Err("closed"),
            }
        }

        proptest! {
            #[test]
            fn matches_the_naive_model(
                max in 1usize..5,
                overflow in strategy(),
                ops in proptest::collection::vec(op(), 0..60),
            ) {
                let mut s = PushState::new(max, overflow);
                let mut m = Model { max, overflow, fates: vec![], closing: false, outcome: None };
                let mut next = 0u32;
                for op in ops {
                    match op {
                        Op::Push => {
                            let e = next;
                            next += 1;
                            let (got, discard) = s.push(e);
                            let want = m.push(e);
                            prop_assert_eq!(kind(&got), want);
                            if let Err(err) = got {
                                prop_assert_eq!(err.into_inner(), e, "the event is handed back");
                            }
                            // Discarded events are exactly the newly dropped or abandoned ones.
                            let discarded: Vec<u32> = match discard {
                                Discard::Nothing => vec![],
                                Discard::One(x) => vec![x],
                                Discard::All(q) => q.into(),
                            };
                            for x in discarded {
                                let fate = m.fates.iter().find(|(y, _)| *y == x).map(|(_, f)| *f);
                                prop_assert!(matches!(fate, Some(Fate::DroppedOldest | Fate::Abandoned)));
                            }
                        }
                        Op::Pop(n) => {
                            let mut out = Vec::new();
                            let got = s.pop(n, &mut out);
                            let (want_events, want) = m.pop(n);
                            prop_assert_eq!(out, want_events);
                            prop_assert_eq!(got, want);
                        }
                        Op::Close => {
                            s.close();
                            m.close();
                        }
                        Op::Cancel => {
                            let _ = s.cancel(CancelCause::User);
                            m.cancel();
                        }
                    }
                    prop_assert_eq!(s.check(), Ok(()));
                    prop_assert_eq!(queue(&s), m.queued());
                    prop_assert_eq!(s.outcome(), m.outcome.as_ref());
                    let st = s.stats();
                    prop_assert_eq!(st.pushed, m.fates.len() as u64);
                    prop_assert_eq!(st.delivered, m.count(Fate::Delivered));
                    prop_assert_eq!(st.dropped_oldest, m.count(Fate::DroppedOldest));
                    prop_assert_eq!(st.dropped_newest, m.count(Fate::DroppedNewest));
                    prop_assert_eq!(st.abandoned, m.count(Fate::Abandoned));
                }
            }
        }
    }
}
