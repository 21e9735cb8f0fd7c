//! The requests a batch run holds: read from the input and not yet written
//! to the output, wherever they are in between.
//!
//! Counting at the two ends (a line parsed into a request, its result line
//! written) covers every place in the middle without naming them: the
//! reader's stream, the subscriptions and dispatcher buffers, the request
//! stage's queue, its attempts in flight and their reports, and results on
//! their way to the writer. A place added later is covered too. It is a
//! count of requests, not bytes: memory bounds are checked by counting
//! items (`docs/llm-batch.md`, "The benchmark").

use std::sync::{Arc, Mutex};

/// The pure count: how many are held now and the most ever held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HeldCount {
    /// Read and not yet written.
    pub current: u64,
    /// The largest `current` has been.
    pub peak: u64,
}

impl HeldCount {
    /// One request read.
    pub fn enter(&mut self) {
        self.current += 1;
        // The count only rises here, so its maximum is always seen here.
        self.peak = self.peak.max(self.current);
    }

    /// One result written. A result with no matching read (which a run
    /// does not produce) leaves the count at zero rather than wrapping.
    pub fn leave(&mut self) {
        self.current = self.current.saturating_sub(1);
    }
}

/// A [`HeldCount`] shared by the reading side and the writing side of a run
/// (clones share it). A mutex rather than atomics: two updates per request
/// are nothing beside an HTTP call, and the peak is exact without any
/// ordering argument.
///
/// ```
/// use demandflow_stages::batch::Held;
///
/// let held = Held::new();
/// held.enter();
/// held.enter();
/// held.leave();
/// held.enter();
/// let now = held.snapshot();
/// assert_eq!((now.current, now.peak), (2, 2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<Mutex<HeldCount>>);

impl Held {
    /// Nothing held yet.
    pub fn new() -> Held {
        Held::default()
    }

    fn update(&self, f: impl FnOnce(&mut HeldCount)) {
        // The critical section cannot panic, so a poisoned lock still holds
        // a consistent count.
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// One request read from the input (a valid line, about to be sent).
    pub fn enter(&self) {
        self.update(HeldCount::enter);
    }

    /// One request's result written to the output.
    pub fn leave(&self) {
        self.update(HeldCount::leave);
    }

    /// The count now and its peak so far.
    pub fn snapshot(&self) -> HeldCount {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The peak is the largest prefix count of any sequence of reads
        /// and writes (writes never outnumbering reads), and the count is
        /// reads minus writes.
        #[test]
        fn peak_is_the_largest_count(steps in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut c = HeldCount::default();
            let (mut reads, mut writes, mut largest) = (0u64, 0u64, 0u64);
            for enter in steps {
                if enter {
                    c.enter();
                    reads += 1;
                } else if writes < reads {
                    c.leave();
                    writes += 1;
                }
                largest = largest.max(reads - writes);
                prop_assert_eq!(c.current, reads - writes);
                prop_assert_eq!(c.peak, largest);
            }
        }
    }

    #[test]
    fn leave_without_enter_stays_at_zero() {
        let mut c = HeldCount::default();
        c.leave();
        assert_eq!(c, HeldCount::default());
    }
}
