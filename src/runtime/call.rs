//! A producer's request to be called again after it returned nothing.
//!
//! A producer whose `produce` returns `Flow::Continue` having emitted
//! nothing is not called again until new demand arrives or it asks to be
//! called, from anywhere, through a [`StageWaker`](crate::StageWaker). The
//! request is a flag beside the stage's [`Signal`]: the flag says *why* the
//! stage was woken (the signal is also notified for every edge operation,
//! which must not count as a request).
//!
//! # Invariants
//!
//! * A request is never lost: `request` sets the flag, then notifies the
//!   signal. The driver, going idle, looks at the flag after the producer's
//!   last call returned and again after each wake-up of the signal; the
//!   signal's own invariant (a notify after the waiter last consumed one
//!   completes its next wait) makes the flag store visible to the look that
//!   follows the wake-up.
//! * A request is satisfied by any call that *starts* after it. The driver
//!   clears the flag before the first call of each batch, so a request made
//!   while the producer was busy emitting costs no extra call later, and one
//!   made during the batch is still seen when the batch ends. Clearing and
//!   taking read the flag with an acquiring read-modify-write, so a call
//!   that consumed a request sees everything the requester wrote before
//!   asking (its source's new data, however that source is synchronised).

use super::signal::Signal;
use crate::loom::sync::atomic::{AtomicBool, Ordering};

/// Whether a producer asked to be called again; see the module docs.
#[derive(Debug)]
pub(crate) struct CallRequest {
    wanted: AtomicBool,
}

impl CallRequest {
    pub(crate) fn new() -> CallRequest {
        CallRequest {
            wanted: AtomicBool::new(false),
        }
    }

    /// Asks for a call and wakes the stage parked on `signal`.
    pub(crate) fn request(&self, signal: &Signal) {
        self.wanted.store(true, Ordering::Release);
        signal.notify();
    }

    /// Consumes a pending request: whether there was one.
    pub(crate) fn take(&self) -> bool {
        // The load keeps the common answer (no request) free of a locked
        // instruction.
        self.wanted.load(Ordering::Acquire) && self.wanted.swap(false, Ordering::AcqRel)
    }

    /// Forgets a pending request: the call about to start satisfies it.
    pub(crate) fn clear(&self) {
        // A swap, not a store: a plain store could overwrite a request it
        // never read, and the call that follows would not be ordered after
        // what the requester wrote before asking (loom finds that loss).
        let _ = self.take();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A producer finds its external source empty and goes idle while
    /// another thread fills the source and asks for a call: however the
    /// two interleave (including the driver's clear before the call), the
    /// producer is called again and sees the event.
    #[test]
    fn loom_call_request_is_never_lost() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let call = Arc::new(CallRequest::new());
            let source = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let (s2, c2, src2) = (signal.clone(), call.clone(), source.clone());
            let th = loom::thread::spawn(move || {
                src2.store(true, Ordering::Release);
                c2.request(&s2);
            });
            loom::future::block_on(async {
                // The batch: clear, then the call.
                call.clear();
                let mut got = source.load(Ordering::Acquire);
                // Idle: called again only on a request.
                while !got {
                    if call.take() {
                        got = source.load(Ordering::Acquire);
                    } else {
                        signal.notified().await;
                    }
                }
            });
            th.join().unwrap();
        });
    }

    /// Wake-ups of the signal that are not requests (an edge's notify)
    /// do not count as one.
    #[test]
    fn loom_a_plain_notify_is_not_a_request() {
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let call = Arc::new(CallRequest::new());
            let s2 = signal.clone();
            let th = loom::thread::spawn(move || s2.notify());
            loom::future::block_on(signal.notified());
            assert!(!call.take());
            th.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_taken_once_and_clear_forgets_it() {
        let (signal, call) = (Signal::new(), CallRequest::new());
        assert!(!call.take());
        call.request(&signal);
        assert!(call.take());
        assert!(!call.take());
        call.request(&signal);
        call.clear();
        assert!(!call.take());
    }
}
