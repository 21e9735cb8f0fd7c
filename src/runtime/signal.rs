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
//! that sees `WAITING` always finds the waker.

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
const WAITING: u8 = 2;

/// A coalescing, single-waiter notification.
#[derive(Debug)]
pub(crate) struct Signal {
    state: AtomicU8,
    waker: AtomicWaker,
}

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal {
            state: AtomicU8::new(IDLE),
            waker: AtomicWaker::new(),
        }
    }

    /// Makes the waiter's next `notified()` complete, waking it if parked.
    pub(crate) fn notify(&self) {
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == WAITING {
            self.waker.wake();
        }
    }

    /// Completes once a notification is pending, consuming it.
    ///
    /// Only one task may wait on a signal at a time.
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified { signal: self }
    }

    /// Polls for a notification, consuming it if pending.
    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        #[cfg(not(all(test, loom)))]
        self.waker.register(cx.waker());
        #[cfg(all(test, loom))]
        self.waker.register(cx.waker().clone());
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (to, ready) = if s == NOTIFIED {
                (IDLE, true)
            } else {
                (WAITING, false)
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
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll_notified(cx)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// A notify racing the waiter's park is never lost.
    #[test]
    fn loom_signal_notify_is_never_lost() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let work = Arc::new(AtomicBool::new(false));
            let (s2, w2) = (signal.clone(), work.clone());
            let th = loom::thread::spawn(move || {
                w2.store(true, Ordering::Release);
                s2.notify();
            });
            loom::future::block_on(async {
                while !work.load(Ordering::Acquire) {
                    signal.notified().await;
                }
            });
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
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use futures::task::noop_waker;

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
