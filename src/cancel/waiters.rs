//! A keyed list of parked tasks, kept under the owner's mutex.
//!
//! Shared by the cancellation tree and the push buffer. Each waiting future
//! owns one slot (`Option<usize>`): polling again updates its waker in place
//! instead of adding another, and dropping the future frees the slot, so the
//! list never grows past the number of futures alive at once, however often
//! they are polled.

use std::task::Waker;

/// Parked wakers, indexed by slot.
///
/// # Invariants
///
/// * A slot index is owned by exactly one future from `register` until
///   `remove`; `free` holds exactly the indices nobody owns.
/// * `take_all` empties the wakers but not the ownership: a woken future keeps
///   its slot and may park in it again.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Waiters {
    /// An empty list.
    pub(crate) const fn new() -> Waiters {
        Waiters {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Parks `waker` in the future's `slot`, claiming a slot on first use.
    pub(crate) fn register(&mut self, slot: &mut Option<usize>, waker: &Waker) {
        if let Some(idx) = *slot {
            if let Some(entry) = self.slots.get_mut(idx) {
                match entry {
                    Some(old) if old.will_wake(waker) => {}
                    _ => *entry = Some(waker.clone()),
                }
                return;
            }
        }
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx] = Some(waker.clone());
                idx
            }
            None => {
                self.slots.push(Some(waker.clone()));
                self.slots.len() - 1
            }
        };
        *slot = Some(idx);
    }

    /// Releases the future's slot, if it holds one.
    pub(crate) fn remove(&mut self, slot: &mut Option<usize>) {
        if let Some(idx) = slot.take() {
            if let Some(entry) = self.slots.get_mut(idx) {
                *entry = None;
                self.free.push(idx);
            }
        }
    }

    /// Moves every parked waker into `out`, to be woken once the lock is
    /// released.
    pub(crate) fn take_all(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.slots.iter_mut().filter_map(Option::take));
    }

    /// Whether any future is parked right now.
    #[cfg(test)]
    pub(crate) fn has_parked(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Number of slots in use (parked or not); for leak tests.
    #[cfg(test)]
    pub(crate) fn owned(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Wakes every waker of `wakers`; called with no lock held.
pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn repolling_reuses_the_slot_and_drop_frees_it() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut list = Waiters::new();
        let mut a = None;
        let mut b = None;
        list.register(&mut a, &waker);
        list.register(&mut a, &waker);
        list.register(&mut b, &waker);
        assert_eq!((a, b), (Some(0), Some(1)));
        assert_eq!(list.owned(), 2);
        list.remove(&mut a);
        assert_eq!(a, None);
        assert_eq!(list.owned(), 1);
        let mut c = None;
        list.register(&mut c, &waker);
        assert_eq!(c, Some(0), "freed slot is reused");

        let mut woken = Vec::new();
        list.take_all(&mut woken);
        assert_eq!(woken.len(), 2);
        assert!(!list.has_parked());
        assert_eq!(list.owned(), 2, "woken futures keep their slots");
        wake_all(woken);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        list.register(&mut b, &waker);
        assert_eq!(b, Some(1));
        assert!(list.has_parked());
    }
}
