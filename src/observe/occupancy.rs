//! Backpressure, measured: how a stage spent the last few seconds.
//!
//! Each stage has a [`StateClock`]: the nanoseconds credited to each state
//! (busy inside a handler, backpressured waiting for downstream demand,
//! idle waiting for input) so far. No clock is read on the stage's path.
//! Which state a stage is in comes from two words, [`sampled_state`]:
//!
//! * why it is parked, when it is: the stage parks on its `Signal` with
//!   the reason (idle or backpressured) as the tag of the `WAITING` state
//!   it stores there anyway, at no cost;
//! * otherwise its own state byte, which its task stores only where it is
//!   neither busy nor parked on its signal: while it hands its worker to a
//!   subscriber in its chain (backpressured), in the backoff before a
//!   restart (idle), and at its end (`OFF`).
//!
//! The time is credited by the sampler thread (`runtime::sampler`), which,
//! while someone reads occupancy, wakes every 4 ms, reads each running
//! stage's state and adds the time since its previous tick to that state:
//! Flink's way of measuring backpressure, by sampling, at 250 samples a
//! second. While nobody reads it, nothing is sampled and nothing wakes.
//!
//! The windowing is done by readers ([`Window`], pure: time is passed in).
//! Each read of `stats()` records the cumulative totals, at most one sample
//! per [`BUCKET_NS`], and the fractions are the change in the totals since
//! the newest sample at least [`WINDOW_NS`] old. A reader that comes back
//! at least once per bucket therefore sees a sliding window of 5 to 5.5
//! seconds; one that reads less often sees the time since its previous read
//! (there is no sample in between). The first read of all starts the
//! sampling and shows zeros: no time was credited before it.
//!
//! # Invariants
//!
//! * One writer per word: only the stage's own task stores its state byte
//!   (a stage's task runs its instances, its restarts and its end), and
//!   only the sampler adds to the totals. (The signal's word has its own
//!   protocol, `runtime::signal`; the sampler only loads it.)
//! * Each tick adds to exactly one total, so every total only grows and a
//!   reader's three loads see, word by word, a value the totals had. A
//!   read that spans a tick mixes totals from either side of it; the
//!   fractions are shares of the sum of the changes, so they are still in
//!   `0..=1` and sum to 1. There is no multi-word invariant to protect (no
//!   seqlock, nothing for a loom model to find).
//! * [`OFF`] is final: a stage that has ended is never credited again, and
//!   the sampler forgets it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The fractions of the last few seconds a stage spent in each state.
///
/// Read from [`StageStats::occupancy`](crate::pipeline::StageStats::occupancy).
/// The window is a sliding one of about 5 seconds, sampled in 0.5 s buckets
/// as `stats()` is read (see `docs/observability.md`); the three fractions
/// are in `0..=1` and sum to 1 whenever the stage ran, watched, during the
/// window. The stages' states are sampled only while someone reads
/// occupancy (`stats()`, the metrics, a dashboard; until 10 s after the
/// last read), so the first read shows all zeros and later reads the time
/// since. A stage that has ended shows all zeros once its end is more than
/// a window old.
///
/// * `busy`: inside one of its handlers (`produce`, `process`, `consume`,
///   `start`, `finish`, `on_timer`), including the time a handler awaits
///   something, and the engine's own bookkeeping around it (from the moment
///   the stage is woken: a stage woken but waiting for a worker counts as
///   busy).
/// * `backpressured`: it would run or has events to send, but downstream
///   has not asked for them (no demand, or its dispatcher still holds
///   output).
/// * `idle`: it waits for input (a processor or consumer with nothing
///   delivered, a producer that has nothing now), and the backoff before a
///   restart.
///
/// Each instance of a stage built with `.concurrency(n)` is its own stage
/// (`name[i]`) with its own occupancy. Stages chained into one task are
/// measured separately too, each sampled on its own: while one member of
/// the chain runs its handler, the others stay in the state they parked in
/// (usually idle or backpressured), so the fractions of a chain's members
/// can add up to more than one worker's time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Occupancy {
    /// The fraction of the window spent inside a handler.
    pub busy: f64,
    /// The fraction of the window spent blocked on downstream demand.
    pub backpressured: f64,
    /// The fraction of the window spent waiting for input.
    pub idle: f64,
}

/// The length of the sliding window, in nanoseconds.
pub(crate) const WINDOW_NS: u64 = 5_000_000_000;
/// At most one sample of the totals is kept per bucket, in nanoseconds.
pub(crate) const BUCKET_NS: u64 = 500_000_000;

/// Inside a handler.
pub(crate) const BUSY: u8 = 0;
/// Blocked on downstream demand.
pub(crate) const BACKPRESSURED: u8 = 1;
/// Waiting for input.
pub(crate) const IDLE: u8 = 2;
/// Not running (ended): its time is not counted.
pub(crate) const OFF: u8 = 3;

/// Nanoseconds per state (indexed by `BUSY`, `BACKPRESSURED`, `IDLE`).
pub(crate) type Totals = [u64; 3];

/// A stage's own state byte and the time the sampler credited to each
/// state (see the module docs).
#[derive(Debug)]
pub(crate) struct StateClock {
    /// `BUSY` (which includes parked on its signal, see
    /// [`sampled_state`]), `BACKPRESSURED`, `IDLE` or `OFF`.
    state: AtomicU8,
    /// Nanoseconds per state, indexed by the state.
    acc: [AtomicU64; 3],
}

impl StateClock {
    /// A clock in state `IDLE` with nothing credited.
    pub(crate) fn new() -> StateClock {
        StateClock {
            state: AtomicU8::new(IDLE),
            acc: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Moves the stage to `to`. Called by the stage's own task only: one
    /// plain store, unconditional (a compare first would put a branch on a
    /// path taken twice per batch by each stage of a chain).
    #[inline(always)]
    pub(crate) fn enter(&self, to: u8) {
        self.state.store(to, Ordering::Relaxed);
    }

    /// The state byte the stage's task stored last.
    pub(crate) fn own(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// Credits `ns` nanoseconds to `state`; `false` for `OFF` (the stage
    /// has ended, and never leaves it). Called by the sampler only.
    pub(crate) fn credit(&self, state: u8, ns: u64) -> bool {
        match self.acc.get(usize::from(state)) {
            Some(acc) => {
                acc.fetch_add(ns, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The nanoseconds credited to each state so far.
    pub(crate) fn totals(&self) -> Totals {
        [0, 1, 2].map(|i| self.acc[i].load(Ordering::Relaxed))
    }
}

/// The state a stage is in, from its own state byte and, if it is parked
/// on its signal, the reason it parked with: parked, it is in that state;
/// otherwise it is busy unless its byte says it is handing off, backing
/// off or ended. Pure.
pub(crate) fn sampled_state(own: u8, parked: Option<u8>) -> u8 {
    match parked {
        Some(why) if own == BUSY => why,
        _ => own,
    }
}

/// Samples of a clock's totals, turned into fractions of the last window
/// (see the module docs). Pure: time is passed in.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// `(time, totals)`, oldest first, at least `BUCKET_NS` apart.
    samples: VecDeque<(u64, Totals)>,
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

impl Window {
    /// A window whose first sample is the clock's start (all zeros).
    pub(crate) fn new() -> Window {
        let mut samples = VecDeque::with_capacity((WINDOW_NS / BUCKET_NS) as usize + 2);
        samples.push_back((0, [0; 3]));
        Window { samples }
    }

    /// Records `totals` read at `now` and returns the fractions of the
    /// window ending at `now`.
    pub(crate) fn observe(&mut self, now: u64, totals: Totals) -> Occupancy {
        let newest = self.samples.back().map_or(0, |s| s.0);
        if self.samples.is_empty() || now >= newest.saturating_add(BUCKET_NS) {
            self.samples.push_back((now, totals));
        }
        // The base is the newest sample at least a window old; older ones
        // are no longer needed.
        let cutoff = now.saturating_sub(WINDOW_NS);
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|s| s.0 <= cutoff) {
            self.samples.pop_front();
        }
        let base = self.samples.front().map_or([0; 3], |s| s.1);
        fractions(base, totals)
    }
}

/// The share of each state in the time between two readings of the totals.
pub(crate) fn fractions(base: Totals, totals: Totals) -> Occupancy {
    let d = [0, 1, 2].map(|i| totals[i].saturating_sub(base[i]));
    let sum = d[0] as f64 + d[1] as f64 + d[2] as f64;
    if sum <= 0.0 {
        return Occupancy::default();
    }
    Occupancy {
        busy: d[0] as f64 / sum,
        backpressured: d[1] as f64 / sum,
        idle: d[2] as f64 / sum,
    }
}

/// A stage's clock and the window its readers share.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Shared with the sampler while the stage runs.
    pub(crate) clock: Arc<StateClock>,
    /// Where the readers' window measures its buckets from.
    start: Instant,
    window: Mutex<Window>,
}

impl Meter {
    pub(crate) fn new() -> Meter {
        Meter {
            clock: Arc::new(StateClock::new()),
            start: Instant::now(),
            window: Mutex::new(Window::new()),
        }
    }

    /// The nanoseconds spent in each state so far (for metrics).
    #[cfg(feature = "metrics")]
    pub(crate) fn totals(&self) -> Totals {
        self.clock.totals()
    }

    /// The stage's occupancy over the last window, as of now.
    pub(crate) fn occupancy(&self) -> Occupancy {
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let totals = self.clock.totals();
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(now, totals)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn each_tick_goes_to_the_state_the_stage_is_in() {
        let c = StateClock::new();
        let tick = |parked: Option<u8>, ns| c.credit(sampled_state(c.own(), parked), ns);
        assert!(tick(None, 5)); // a new clock is idle
        c.enter(BUSY);
        assert!(tick(None, 20));
        // Parked on its signal: the reason it parked with.
        assert!(tick(Some(BACKPRESSURED), 30));
        assert!(tick(Some(IDLE), 7));
        // Handing its worker off is backpressure, whatever the signal says.
        c.enter(BACKPRESSURED);
        assert!(tick(None, 1));
        assert_eq!(c.totals(), [20, 31, 12]);
        c.enter(OFF);
        // An ended stage is credited nothing, and says so.
        assert!(!tick(Some(IDLE), 500));
        assert_eq!(c.totals(), [20, 31, 12]);
    }

    #[test]
    fn the_window_slides() {
        let mut w = Window::new();
        // 10 s busy, then 10 s idle, read every half second.
        let mut last = Occupancy::default();
        for i in 1..=40u64 {
            let now = i * S / 2;
            let busy = now.min(10 * S);
            let idle = now - busy;
            last = w.observe(now, [busy, 0, idle]);
            if now == 10 * S {
                assert_eq!(last.busy, 1.0);
            }
        }
        assert_eq!(last.idle, 1.0);
        assert!(w.samples.len() <= (WINDOW_NS / BUCKET_NS) as usize + 2);
    }

    #[test]
    fn sparse_reads_cover_the_time_since_the_previous_read() {
        let mut w = Window::new();
        w.observe(60 * S, [60 * S, 0, 0]);
        let o = w.observe(120 * S, [60 * S, 30 * S, 30 * S]);
        assert_eq!(o.backpressured, 0.5);
        assert_eq!(o.idle, 0.5);
    }

    proptest! {
        /// Whatever the sequence of states, ticks and reads, the fractions
        /// are in 0..=1 and sum to 1 (or are all 0 when no time passed),
        /// and a running clock's totals add up to the time credited.
        #[test]
        fn fractions_are_shares_of_the_time(
            steps in proptest::collection::vec((0u8..3, 0u64..2 * S, any::<bool>()), 1..60)
        ) {
            let c = StateClock::new();
            let mut w = Window::new();
            let mut now = 0;
            for (state, dt, read) in steps {
                prop_assert!(c.credit(state, dt));
                now += dt;
                let totals = c.totals();
                prop_assert_eq!(totals.iter().sum::<u64>(), now);
                if read {
                    let o = w.observe(now, totals);
                    let sum = o.busy + o.backpressured + o.idle;
                    for f in [o.busy, o.backpressured, o.idle] {
                        prop_assert!((0.0..=1.0).contains(&f));
                    }
                    prop_assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9, "sum {}", sum);
                }
            }
        }
    }
}
