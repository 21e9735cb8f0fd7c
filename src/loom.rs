//! Swaps `std::sync` for `loom::sync` when the crate's own tests run under
//! loom (`RUSTFLAGS="--cfg loom" cargo test --lib --release`).
//!
//! Every module with shared state imports its synchronisation types from
//! here, so the same code is what loom model-checks and what ships. The switch
//! is `cfg(all(test, loom))`, not `cfg(loom)`: loom is only a dev-dependency,
//! so integration tests and dependents compiled with `--cfg loom` still get
//! `std`.

pub(crate) mod sync {
    #[cfg(all(test, loom))]
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    #[cfg(not(all(test, loom)))]
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

    pub(crate) mod atomic {
        #[cfg(all(test, loom))]
        pub(crate) use loom::sync::atomic::AtomicBool;
        #[cfg(not(all(test, loom)))]
        pub(crate) use std::sync::atomic::AtomicBool;

        pub(crate) use std::sync::atomic::Ordering;
    }

    /// Locks `mutex`, ignoring poisoning.
    ///
    /// The crate's critical sections run no user code that can panic while
    /// an invariant is broken (user values are moved, never inspected, and
    /// wakers are woken after the lock is released), so a poisoned lock
    /// still guards consistent data. Propagating the poison would turn one
    /// panic into a cascade of them, which is exactly what a supervisor must
    /// not suffer.
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
