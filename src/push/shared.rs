//! The synchronised wrapper: one mutex around the pure [`PushState`] and
//! three lists of parked tasks, shared by every `Pusher` and `PushProducer`
//! of one buffer.
//!
//! # Invariants
//!
//! * Those of [`PushState`], at every release of the lock.
//! * A task parks only after seeing, under the lock, that it cannot proceed,
//!   and every change that could let it proceed takes its waker under the
//!   same lock: producers are woken when the queue grows or the phase
//!   changes, blocked senders when the queue shrinks or the phase changes,
//!   result waiters when the stream ends. So no wake-up is lost.
//! * `pushers` and `producers` count the live handles of each side. The last
//!   `Pusher` dropped closes the stream (it drains, then completes, like an
//!   mpsc channel); the last `PushProducer` dropped cancels it with
//!   [`CancelCause::OwnerDropped`], since nobody is left to deliver to.
//!
//! # Lock order
//!
//! One lock. Wakers are woken and discarded events dropped only after it is
//! released, so no user code runs under it.

use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use super::error::PushError;
use super::state::{Discard, Phase, Pop, PushState};
use super::{Overflow, PushOutcome, PushStats};
use crate::cancel::waiters::{wake_all, Waiters};
use crate::cancel::CancelCause;
use crate::loom::sync::{lock, Mutex};

#[derive(Debug)]
pub(crate) struct Shared<T> {
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    state: PushState<T>,
    producers_parked: Waiters,
    senders_parked: Waiters,
    results_parked: Waiters,
    pushers: usize,
    producers: usize,
}

/// Which list a parked future's slot belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Park {
    Producer,
    Sender,
    Result,
}

impl<T> Inner<T> {
    fn list(&mut self, park: Park) -> &mut Waiters {
        match park {
            Park::Producer => &mut self.producers_parked,
            Park::Sender => &mut self.senders_parked,
            Park::Result => &mut self.results_parked,
        }
    }
}

/// What the wakers care about, taken before an operation.
struct Before {
    len: usize,
    phase: u8,
}

fn phase_tag(phase: &Phase) -> u8 {
    match phase {
        Phase::Open => 0,
        Phase::Closing => 1,
        Phase::Ended(_) => 2,
    }
}

impl<T> Shared<T> {
    /// A buffer with one pusher and one producer handle.
    pub(crate) fn new(max_queue: usize, overflow: Overflow) -> Self {
        Shared {
            inner: Mutex::new(Inner {
                state: PushState::new(max_queue, overflow),
                producers_parked: Waiters::new(),
                senders_parked: Waiters::new(),
                results_parked: Waiters::new(),
                pushers: 1,
                producers: 1,
            }),
        }
    }

    /// Runs `op` on the state under the lock, then wakes whoever the change
    /// concerns and drops discarded events, with the lock released.
    fn update<R>(&self, op: impl FnOnce(&mut Inner<T>) -> (R, Discard<T>)) -> R {
        let mut wakers: Vec<Waker> = Vec::new();
        let (result, discard) = {
            let mut inner = lock(&self.inner);
            let before = Before {
                len: inner.state.len(),
                phase: phase_tag(inner.state.phase()),
            };
            let out = op(&mut inner);
            let len = inner.state.len();
            let phase = phase_tag(inner.state.phase());
            let phase_changed = phase != before.phase;
            if len > before.len || phase_changed {
                inner.producers_parked.take_all(&mut wakers);
            }
            if len < before.len || phase_changed {
                inner.senders_parked.take_all(&mut wakers);
            }
            if phase_changed && inner.state.outcome().is_some() {
                inner.results_parked.take_all(&mut wakers);
            }
            out
        };
        drop(discard);
        wake_all(wakers);
        result
    }

    pub(crate) fn push(&self, event: T) -> Result<(), PushError<T>> {
        self.update(|inner| inner.state.push(event))
    }

    /// One attempt of `send`: like `push`, but under `Block` a full queue
    /// parks the sender and hands the event back to be retried.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        event: T,
        slot: &mut Option<usize>,
    ) -> Poll<Result<(), PushError<T>>> {
        self.update(|inner| {
            let (result, discard) = inner.state.push(event);
            match result {
                Err(PushError::Full(event)) if inner.state.overflow() == Overflow::Block => {
                    inner.senders_parked.register(slot, cx.waker());
                    (Poll::Ready(Err(PushError::Full(event))), discard)
                }
                other => {
                    inner.senders_parked.remove(slot);
                    (Poll::Ready(other), discard)
                }
            }
        })
    }

    /// Waits for room under `Block`, then queues `event`.
    pub(crate) async fn send(&self, event: T) -> Result<(), PushError<T>> {
        let mut parked = Parked::new(self, Park::Sender);
        let mut pending = Some(event);
        poll_fn(|cx| {
            let Some(event) = pending.take() else {
                // Only reachable if polled after completion.
                return Poll::Pending;
            };
            match parked.shared.poll_send(cx, event, &mut parked.slot) {
                Poll::Ready(Err(PushError::Full(event))) => {
                    pending = Some(event);
                    Poll::Pending
                }
                ready => ready,
            }
        })
        .await
    }

    /// Moves up to `demand` events into `out`, or parks the producer while
    /// the queue is empty and the stream open.
    pub(crate) fn poll_pop(
        &self,
        cx: &mut Context<'_>,
        demand: usize,
        out: &mut impl Extend<T>,
        slot: &mut Option<usize>,
    ) -> Poll<Pop> {
        self.update(|inner| {
            let pop = inner.state.pop(demand, out);
            if pop == Pop::Empty {
                inner.producers_parked.register(slot, cx.waker());
                (Poll::Pending, Discard::Nothing)
            } else {
                inner.producers_parked.remove(slot);
                (Poll::Ready(pop), Discard::Nothing)
            }
        })
    }

    pub(crate) fn poll_outcome(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<usize>,
    ) -> Poll<PushOutcome> {
        let mut inner = lock(&self.inner);
        match inner.state.outcome().cloned() {
            Some(outcome) => {
                inner.results_parked.remove(slot);
                Poll::Ready(outcome)
            }
            None => {
                inner.results_parked.register(slot, cx.waker());
                Poll::Pending
            }
        }
    }

    /// Completes with the terminal outcome.
    pub(crate) async fn outcome(&self) -> PushOutcome {
        let mut parked = Parked::new(self, Park::Result);
        poll_fn(|cx| parked.shared.poll_outcome(cx, &mut parked.slot)).await
    }

    pub(crate) fn try_outcome(&self) -> Option<PushOutcome> {
        lock(&self.inner).state.outcome().cloned()
    }

    pub(crate) fn close(&self) {
        self.update(|inner| {
            inner.state.close();
            ((), Discard::Nothing)
        })
    }

    pub(crate) fn cancel(&self, cause: CancelCause) {
        self.update(|inner| ((), inner.state.cancel(cause)))
    }

    pub(crate) fn stats(&self) -> PushStats {
        lock(&self.inner).state.stats()
    }

    pub(crate) fn add_pusher(&self) {
        lock(&self.inner).pushers += 1;
    }

    pub(crate) fn drop_pusher(&self) {
        self.update(|inner| {
            inner.pushers = inner.pushers.saturating_sub(1);
            if inner.pushers == 0 {
                inner.state.close();
            }
            ((), Discard::Nothing)
        })
    }

    pub(crate) fn add_producer(&self) {
        lock(&self.inner).producers += 1;
    }

    pub(crate) fn drop_producer(&self) {
        self.update(|inner| {
            inner.producers = inner.producers.saturating_sub(1);
            if inner.producers == 0 {
                ((), inner.state.cancel(CancelCause::OwnerDropped))
            } else {
                ((), Discard::Nothing)
            }
        })
    }

    fn unpark(&self, park: Park, slot: &mut Option<usize>) {
        if slot.is_some() {
            lock(&self.inner).list(park).remove(slot);
        }
    }

    /// Slots owned in the producer, sender and result lists; for leak tests.
    #[cfg(test)]
    pub(crate) fn parked_slots(&self) -> [usize; 3] {
        let inner = lock(&self.inner);
        [
            inner.producers_parked.owned(),
            inner.senders_parked.owned(),
            inner.results_parked.owned(),
        ]
    }

    /// Invariants of the state; for tests.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        lock(&self.inner).state.check()
    }
}

/// A waiting future's slot in one of the parked lists, released on drop so
/// that a cancelled wait leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Parked<'a, T> {
    pub(crate) shared: &'a Shared<T>,
    pub(crate) slot: Option<usize>,
    park: Park,
}

impl<'a, T> Parked<'a, T> {
    pub(crate) fn new(shared: &'a Shared<T>, park: Park) -> Self {
        Parked {
            shared,
            slot: None,
            park,
        }
    }
}

impl<T> Drop for Parked<'_, T> {
    fn drop(&mut self) {
        self.shared.unpark(self.park, &mut self.slot);
    }
}
