//! The one wake-up primitive of the runtime: a stage task parks on its
//! [`Signal`] and every edge operation that may give it work notifies it.
//!
//! # Invariants
//!
//! * A notification is never lost: a `notify` that happens at any point after
//!   a waiter last consumed a notification makes the waiter's next (or
//!   current) `notified().await` complete.
//! * Notifications coalesce: many `notify` calls before the waiter runs cost
//!   one wake-up, and a `notify` while the waiter is running (not parked)
//!   costs no wake-up at all. The waiter re-checks all of its inputs after
//!   each wake-up, so coalescing loses no work.
//!
//! # States
//!
//! `IDLE` (nothing pending, waiter not parked), `NOTIFIED` (a notification is
//! pending), `WAITING` (the waiter is parked with its waker registered).
//! `notify` stores `NOTIFIED` and wakes only if it replaced `WAITING`. The
//! waiter registers its waker *before* publishing `WAITING`, so a notifier
//! that sees `WAITING` always finds the waker. A waiter that finds
//! `NOTIFIED` consumes it without registering: it is not going to park.
//!
//! A signal may instead be bound, before its waiter first waits, to the one
//! waker that waiter always parks with (a stage inside a group and its
//! member waker): the waker is then there from the start, a park registers
//! nothing, and a notify wakes it by reference.
//!
//! `WAITING` carries a small tag the waiter chose (`WAITING + tag`): why it
//! parked, for the occupancy sampler ([`Signal::parked`]). It rides in the
//! word the waiter writes anyway, so it costs the stage nothing. A
//! [`Notified`] dropped while still parked (a `select!` that took another
//! branch) puts the state back to `IDLE`, so a stage that is running never
//! reads as parked.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(not(all(test, loom)))]
use futures::task::AtomicWaker;
#[cfg(all(test, loom))]
use loom::future::AtomicWaker;
#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{AtomicU8, Ordering};

const IDLE: u8 = 0;
const NOTIFIED: u8 = 1;
/// The lowest `WAITING` state; `WAITING + tag` for a waiter's tag.
const WAITING: u8 = 2;

/// A coalescing, single-waiter notification.
#[derive(Debug)]
pub(crate) struct Signal {
    state: AtomicU8,
    waker: AtomicWaker,
    /// The one waker the waiter ever parks with, when that is known before
    /// it first waits: a stage inside a `Group` is only ever polled with
    /// its member waker. Bound, the signal wakes it by reference and the
    /// waiter parks without registering: no waker is taken out, cloned or
    /// dropped per wake-up.
    bound: std::sync::OnceLock<std::task::Waker>,
}

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal {
            state: AtomicU8::new(IDLE),
            waker: AtomicWaker::new(),
            bound: std::sync::OnceLock::new(),
        }
    }

    /// Makes the waiter's next `notified()` complete, waking it if parked.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) >= WAITING {
            match self.bound.get() {
                Some(waker) => waker.wake_by_ref(),
                None => self.waker.wake(),
            }
        }
    }

    /// Fixes the waker the waiter will always park with (see `bound`).
    /// Called before the waiter first waits; a second call is ignored.
    pub(crate) fn bind(&self, waker: std::task::Waker) {
        let _ = self.bound.set(waker);
    }

    /// Completes once a notification is pending, consuming it.
    ///
    /// Only one task may wait on a signal at a time.
    #[cfg(all(test, loom))]
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.notified_as(0)
    }

    /// [`Signal::notified`], parking with `tag` (at most `u8::MAX - 2`,
    /// larger ones read as that) for [`Signal::parked`] to report.
    #[inline]
    pub(crate) fn notified_as(&self, tag: u8) -> Notified<'_> {
        Notified { signal: self, tag }
    }

    /// The waiter's tag while it is parked; `None` while it runs (or has a
    /// notification pending, which it is about to run for).
    pub(crate) fn parked(&self) -> Option<u8> {
        self.state.load(Ordering::Relaxed).checked_sub(WAITING)
    }

    /// Polls for a notification, consuming it if pending.
    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_notified_as(cx, 0)
    }

    /// [`Signal::poll_notified`], parking with `tag`.
    #[inline]
    pub(crate) fn poll_notified_as(&self, cx: &mut Context<'_>, tag: u8) -> Poll<()> {
        // A pending notification is consumed without touching the waker:
        // a waiter only needs one registered when it parks, and a waiter
        // woken by `notify` comes back to exactly this case (its waker was
        // taken by the wake, so registering again would clone it).
        if self.state.load(Ordering::Acquire) == NOTIFIED
            && self
                .state
                .compare_exchange(NOTIFIED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Poll::Ready(());
        }
        self.park_as(cx, tag)
    }

    /// The rest of [`Signal::poll_notified_as`]: parks, unless a
    /// notification comes in meanwhile. Out of line, so that the check
    /// above inlines into every wait.
    #[inline(never)]
    fn park_as(&self, cx: &mut Context<'_>, tag: u8) -> Poll<()> {
        let waiting = WAITING.saturating_add(tag);
        match self.bound.get() {
            Some(bound) => debug_assert!(
                bound.will_wake(cx.waker()),
                "a bound signal's waiter parks with another waker"
            ),
            #[cfg(not(all(test, loom)))]
            None => self.waker.register(cx.waker()),
            #[cfg(all(test, loom))]
            None => self.waker.register(cx.waker().clone()),
        }
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (to, ready) = if s == NOTIFIED {
                (IDLE, true)
            } else {
                (waiting, false)
            };
            match self
                .state
                .compare_exchange(s, to, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if ready => return Poll::Ready(()),
                Ok(_) => return Poll::Pending,
                Err(actual) => s = actual,
            }
        }
    }
}

/// Future returned by [`Signal::notified`].
#[derive(Debug)]
pub(crate) struct Notified<'a> {
    signal: &'a Signal,
    tag: u8,
}

impl Future for Notified<'_> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll_notified_as(cx, self.tag)
    }
}

impl Drop for Notified<'_> {
    /// Unparks a waiter that leaves without a notification. A load when
    /// the wait completed (the usual case: the state is already `IDLE`);
    /// if a `notify` races the reset, its `NOTIFIED` stays for the next
    /// wait, as if it had come after this one.
    #[inline]
    fn drop(&mut self) {
        let s = self.signal.state.load(Ordering::Relaxed);
        if s >= WAITING {
            let _ =
                self.signal
                    .state
                    .compare_exchange(s, IDLE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// A thread that sets the flag it returns, then notifies `signal`.
    fn worker(signal: &Arc<Signal>) -> (Arc<AtomicBool>, loom::thread::JoinHandle<()>) {
        let work = Arc::new(AtomicBool::new(false));
        let (s2, w2) = (signal.clone(), work.clone());
        let th = loom::thread::spawn(move || {
            w2.store(true, Ordering::Release);
            s2.notify();
        });
        (work, th)
    }

    /// Waits on `signal` until `work` is set: hangs (a loom deadlock) if a
    /// notification is lost.
    fn wait_for(signal: &Signal, work: &AtomicBool) {
        loom::future::block_on(async {
            while !work.load(Ordering::Acquire) {
                signal.notified().await;
            }
        });
    }

    /// A notify racing the waiter's park is never lost.
    #[test]
    fn loom_signal_notify_is_never_lost() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let (work, th) = worker(&signal);
            wait_for(&signal, &work);
            th.join().unwrap();
        });
    }

    /// Two notifiers, one waiter that needs both pieces of work.
    #[test]
    fn loom_signal_two_notifiers() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let a = Arc::new(AtomicBool::new(false));
            let b = Arc::new(AtomicBool::new(false));
            let mut ths = vec![];
            for flag in [a.clone(), b.clone()] {
                let s = signal.clone();
                ths.push(loom::thread::spawn(move || {
                    flag.store(true, Ordering::Release);
                    s.notify();
                }));
            }
            loom::future::block_on(async {
                while !(a.load(Ordering::Acquire) && b.load(Ordering::Acquire)) {
                    signal.notified().await;
                }
            });
            for t in ths {
                t.join().unwrap();
            }
        });
    }

    /// A wait abandoned while parked (a `select!` that took its timer
    /// branch) racing a notify: the notification is kept for the next wait,
    /// and the parked tag is gone once the wait is dropped.
    #[test]
    fn loom_signal_abandoned_wait_keeps_a_racing_notify() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let (work, th) = worker(&signal);
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            {
                let mut first = Box::pin(signal.notified_as(1));
                let _ = first.as_mut().poll(&mut cx);
            }
            assert_eq!(
                signal.parked(),
                None,
                "a dropped wait still reads as parked"
            );
            wait_for(&signal, &work);
            th.join().unwrap();
        });
    }

    /// A parked wait polled again at once with the same waker, racing
    /// notifies: none is lost, however the second poll falls around them.
    ///
    /// This is why every poll registers its waker, even a poll that finds
    /// the wait still parked with the same waker: a registration that
    /// raced a wake-up in progress did not store the waker (it woke it
    /// instead), so skipping the next registration leaves the signal with
    /// no waker for the following notify. A version that skipped it
    /// (checking only "still `WAITING`, same waker") deadlocked here.
    #[test]
    fn loom_signal_repoll_while_parked_sees_a_racing_notify() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let (a, th_a) = worker(&signal);
            let (b, th_b) = worker(&signal);
            loom::future::block_on(async {
                while !(a.load(Ordering::Acquire) && b.load(Ordering::Acquire)) {
                    let mut wait = std::pin::pin!(signal.notified());
                    std::future::poll_fn(|cx| match wait.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(()),
                        // Polled again at once, as a handler's own wake-up
                        // would: parked, same waker.
                        Poll::Pending => wait.as_mut().poll(cx),
                    })
                    .await;
                }
            });
            th_a.join().unwrap();
            th_b.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn a_parked_waiter_shows_its_tag_until_it_runs() {
        let s = Signal::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(s.parked(), None);
        let mut wait = Box::pin(s.notified_as(2));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(s.parked(), Some(2));
        s.notify();
        assert_eq!(s.parked(), None);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(()));
        drop(wait);
        // Abandoned while parked: no longer parked, and a later notify
        // still completes the next wait.
        let mut wait = Box::pin(s.notified_as(u8::MAX - WAITING));
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(s.parked(), Some(u8::MAX - WAITING));
        drop(wait);
        assert_eq!(s.parked(), None);
        s.notify();
        assert_eq!(s.poll_notified(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn notify_before_wait_completes_immediately() {
        let s = Signal::new();
        s.notify();
        s.notify();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(s.poll_notified(&mut cx), Poll::Ready(()));
        assert_eq!(s.poll_notified(&mut cx), Poll::Pending);
        s.notify();
        assert_eq!(s.poll_notified(&mut cx), Poll::Ready(()));
    }
}
