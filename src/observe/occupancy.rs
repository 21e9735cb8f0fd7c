//! Backpressure, measured: how a stage spent the last few seconds.
//!
//! Each stage has a [`StateClock`]: the state it is in (busy inside a
//! handler, backpressured waiting for downstream demand, idle waiting for
//! input), since when, and the nanoseconds spent in each state so far. The
//! stage's task moves it between states where it already changes what it
//! does (it enters a handler, it parks), and only reads the time when the
//! state actually changes: a stage that runs handler after handler without
//! parking pays one load and compare per handler call, nothing per event.
//!
//! The windowing is done by readers ([`Window`], pure: time is passed in).
//! Each read of `stats()` records the cumulative totals, at most one sample
//! per [`BUCKET_NS`], and the fractions are the change in the totals since
//! the newest sample at least [`WINDOW_NS`] old. A reader that comes back
//! at least once per bucket therefore sees a sliding window of 5 to 5.5
//! seconds; one that reads less often sees the time since its previous read
//! (there is no sample in between), and the first read covers the time
//! since the stage was built.
//!
//! # Invariants
//!
//! * One writer: only the stage's own task calls [`StateClock::switch`]
//!   (a stage's task runs its instances, its restarts and its end).
//! * Every nanosecond from the clock's start is attributed to exactly one
//!   state until the clock is switched [`OFF`]: a consistent read at `now`
//!   sums to `now - start` while the stage runs.
//! * Readers never see a torn update (the time of a transition counted in
//!   two states, or in none): the writer brackets each update with a
//!   sequence number, odd while it writes, and a reader retries when the
//!   number was odd or changed under it (a seqlock; model-checked by
//!   `loom_occupancy_read_is_never_torn`).

#[cfg(all(test, loom))]
use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{fence, AtomicU64};

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// The fractions of the last few seconds a stage spent in each state.
///
/// Read from [`StageStats::occupancy`](crate::pipeline::StageStats::occupancy).
/// The window is a sliding one of about 5 seconds, sampled in 0.5 s buckets
/// as `stats()` is read (see the module docs of `observe` in
/// `docs/observability.md`); the three fractions are in `0..=1` and sum to
/// 1 whenever the stage ran during the window. A stage that has ended shows
/// all zeros once its end is more than a window old.
///
/// * `busy`: inside one of its handlers (`produce`, `process`, `consume`,
///   `start`, `finish`, `on_timer`), including the time a handler awaits
///   something, and the engine's own bookkeeping around it.
/// * `backpressured`: it would run or has events to send, but downstream
///   has not asked for them (no demand, or its dispatcher still holds
///   output).
/// * `idle`: it waits for input (a processor or consumer with nothing
///   delivered, a producer that has nothing now), and the backoff before a
///   restart.
///
/// Each instance of a stage built with `.concurrency(n)` is its own stage
/// (`name[i]`) with its own occupancy. Stages chained into one task are
/// measured separately too, each by its own wall clock: while one member of
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

/// A stage's state and the time it spent in each (see the module docs).
///
/// The writer is the only one to write these words, so it writes them
/// with plain stores of values it computed from its own earlier writes:
/// no read-modify-write (a `lock`ed instruction on x86) on the stage's hot
/// path, where a stage in a chain switches state once per batch it sends.
#[derive(Debug)]
pub(crate) struct StateClock {
    /// Even when `acc` and `mark` are consistent; odd while the writer
    /// updates them.
    seq: AtomicU64,
    acc: [AtomicU64; 3],
    /// The current state (low 2 bits) and when it began (the rest, in
    /// nanoseconds from `start`; 62 bits last 146 years).
    mark: AtomicU64,
    time: Timebase,
}

const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

impl StateClock {
    /// A clock that starts now, in state `IDLE`.
    pub(crate) fn new() -> StateClock {
        StateClock {
            seq: AtomicU64::new(0),
            acc: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            mark: AtomicU64::new(u64::from(IDLE)),
            time: Timebase::new(),
        }
    }

    /// Nanoseconds since the clock started.
    pub(crate) fn now(&self) -> u64 {
        self.time.elapsed_ns()
    }

    /// Moves the stage to `to`, reading the time only if that is a change.
    /// Called by the stage's own task only.
    #[inline(always)]
    pub(crate) fn enter(&self, to: u8) {
        if self.mark.load(Ordering::Relaxed) & STATE_MASK != u64::from(to) {
            self.switch_now(to);
        }
    }

    /// [`StateClock::switch`] at the current time, kept out of line: the
    /// stage's driver calls `enter` from five places in its state machines,
    /// and the clock read and the switch inlined at each cost more in code
    /// size than the call.
    #[inline(never)]
    fn switch_now(&self, to: u8) {
        self.switch(to, self.now());
    }

    /// Moves the stage to `to` at `now` (nanoseconds since the start),
    /// crediting the time since the last switch to the state it leaves.
    /// Called by the stage's own task only (the one writer).
    pub(crate) fn switch(&self, to: u8, now: u64) {
        let now = now & (u64::MAX >> STATE_BITS);
        let mark = self.mark.load(Ordering::Relaxed);
        let (from, since) = (mark & STATE_MASK, mark >> STATE_BITS);
        if now <= since {
            // Within the clock's tick the state began in (most changes:
            // the coarse clock ticks every few ms): no time to credit, so
            // only the state bits change, in the one word a reader reads
            // the state and its start from. It sees the stage just before
            // or just after the change, each a consistent total, so no
            // sequence number is needed.
            set(&self.mark, since << STATE_BITS | u64::from(to));
            return;
        }
        bump(&self.seq, 1, Ordering::Relaxed);
        // The odd sequence number is visible before any of the data below.
        fence(Ordering::Release);
        set(&self.mark, now << STATE_BITS | u64::from(to));
        if let Some(acc) = self.acc.get(from as usize) {
            bump(acc, now - since, Ordering::Relaxed);
        }
        bump(&self.seq, 1, Ordering::Release);
    }

    /// The nanoseconds spent in each state up to `now`, the current state's
    /// time so far included.
    pub(crate) fn totals(&self, now: u64) -> Totals {
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            if seq % 2 == 1 {
                std::hint::spin_loop();
                #[cfg(all(test, loom))]
                loom::thread::yield_now();
                continue;
            }
            let mut totals = [0; 3];
            for (t, acc) in totals.iter_mut().zip(&self.acc) {
                *t = acc.load(Ordering::Relaxed);
            }
            let mark = self.mark.load(Ordering::Relaxed);
            // The loads above happen before the second look at `seq`.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != seq {
                #[cfg(all(test, loom))]
                loom::thread::yield_now();
                continue;
            }
            let (state, since) = (mark & STATE_MASK, mark >> STATE_BITS);
            if let Some(t) = totals.get_mut(state as usize) {
                *t += now.saturating_sub(since);
            }
            return totals;
        }
    }
}

// The writer's two operations on its words (`bump`, `set`). It is their only writer, so
// a load of its own last store followed by a store is as good as a
// read-modify-write, without the `lock`ed instruction (on x86) that a
// stage in a chain would pay on every state change, twice per batch sent.
//
// Under loom they are the read-modify-writes, which have the same effect
// for a sole writer. Loom's search links an access to the last access of
// the same word, which for the writer's store is its own load just before,
// so it never tries a reader's load in between and cannot find a torn
// read: with load-and-store under loom, `loom_occupancy_read_is_never_torn`
// passes even with the odd sequence number removed; with these it fails.

/// Adds `delta` to a word only the writer writes.
#[inline]
fn bump(word: &AtomicU64, delta: u64, order: Ordering) {
    #[cfg(all(test, loom))]
    word.fetch_add(delta, order);
    #[cfg(not(all(test, loom)))]
    word.store(word.load(Ordering::Relaxed).wrapping_add(delta), order);
}

/// Stores `value` in a word only the writer writes.
#[inline]
fn set(word: &AtomicU64, value: u64) {
    #[cfg(all(test, loom))]
    word.swap(value, Ordering::Relaxed);
    #[cfg(not(all(test, loom)))]
    word.store(value, Ordering::Relaxed);
}

/// Where a [`StateClock`] reads the time: the kernel's coarse monotonic
/// clock where there is one, else [`std::time::Instant`].
///
/// The coarse clock is read from memory the kernel updates once per tick
/// (1 to 10 ms, 4 ms on most Linux builds): about 5 ns a read (through
/// libc) against about 25 ns for `Instant::now`, which on this path is paid
/// twice per batch a chained stage sends. Its ticks make each stamp late by less
/// than one tick, so a stay shorter than a tick is counted as zero or as a
/// whole tick depending on whether a tick fell inside it. The stage's
/// phase is not tied to the kernel's ticks, so that is right on average:
/// over the 5 s window every tick's time goes to the state the stage was
/// in when the tick fell, a sample of the state 250 times a second
/// (standard error under 1.5 points of a fraction).
#[derive(Debug, Clone, Copy)]
enum Timebase {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Coarse {
        start_ns: u64,
    },
    Precise {
        start: std::time::Instant,
    },
}

impl Timebase {
    fn new() -> Timebase {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(start_ns) = coarse_now_ns() {
            return Timebase::Coarse { start_ns };
        }
        Timebase::Precise {
            start: std::time::Instant::now(),
        }
    }

    #[inline]
    fn elapsed_ns(&self) -> u64 {
        match *self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Timebase::Coarse { start_ns } => {
                coarse_now_ns().map_or(0, |now| now.saturating_sub(start_ns))
            }
            Timebase::Precise { start } => {
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds, or `None` where the kernel
/// (or a sandbox in front of it) does not offer it.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn coarse_now_ns() -> Option<u64> {
    use rustix::time::{clock_gettime_dynamic, ClockId, DynamicClockId};
    let ts = clock_gettime_dynamic(DynamicClockId::Known(ClockId::MonotonicCoarse)).ok()?;
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
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
    pub(crate) clock: StateClock,
    window: std::sync::Mutex<Window>,
}

impl Meter {
    pub(crate) fn new() -> Meter {
        Meter {
            clock: StateClock::new(),
            window: std::sync::Mutex::new(Window::new()),
        }
    }

    /// The nanoseconds spent in each state so far (for metrics).
    #[cfg(feature = "metrics")]
    pub(crate) fn totals(&self) -> Totals {
        self.clock.totals(self.clock.now())
    }

    /// The stage's occupancy over the last window, as of now.
    pub(crate) fn occupancy(&self) -> Occupancy {
        let now = self.clock.now();
        let totals = self.clock.totals(now);
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(now, totals)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_clock_credits_each_state_its_time() {
        let c = StateClock::new();
        c.switch(BUSY, 10);
        c.switch(BACKPRESSURED, 30);
        c.switch(BACKPRESSURED, 35); // the same state: its time runs on
        c.switch(IDLE, 60);
        assert_eq!(c.totals(100), [20, 30, 50]);
        c.switch(OFF, 100);
        // Time after the end is not counted.
        assert_eq!(c.totals(500), [20, 30, 50]);
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
        /// Whatever the sequence of switches and reads, the fractions are
        /// in 0..=1 and sum to 1 (or are all 0 when no time passed), and
        /// a running clock's totals add up to the time since its start.
        #[test]
        fn fractions_are_shares_of_the_time(
            steps in proptest::collection::vec((0u8..3, 0u64..2 * S, any::<bool>()), 1..60)
        ) {
            let c = StateClock::new();
            let mut w = Window::new();
            let mut now = 0;
            for (state, dt, read) in steps {
                now += dt;
                c.switch(state, now);
                let totals = c.totals(now);
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

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A reader racing the writer's switches sees a state of the clock that
    /// existed: its totals always add up to the time since the start.
    #[test]
    fn loom_occupancy_read_is_never_torn() {
        loom::model(|| {
            let c = Arc::new(StateClock::new());
            let w = c.clone();
            let th = loom::thread::spawn(move || {
                w.switch(BUSY, 10);
                // The same tick: only the state changes.
                w.switch(IDLE, 10);
                w.switch(BACKPRESSURED, 25);
            });
            let t = c.totals(100);
            assert_eq!(t.iter().sum::<u64>(), 100, "torn read: {t:?}");
            th.join().unwrap();
            assert_eq!(c.totals(100), [0, 75, 25]);
        });
    }
}
