//! The thread that credits time to each running stage's state, while
//! someone watches.
//!
//! Stages never read a clock for their occupancy (`observe::occupancy`).
//! Every stage registers here when it starts ([`sample`]) and leaves when
//! its task ends or is dropped unfinished (the [`Sampled`] guard). While
//! someone reads occupancy ([`watch`]: each `stats()`, each publication of
//! the metrics, and so the dashboard), one thread for the process wakes
//! every [`TICK`], reads the state of every registered stage (its own
//! state byte and its signal's parked tag) and credits it the time since
//! its previous tick. [`WATCH`] after the last read it stops, and the next
//! read starts it again.
//!
//! Why only while watched: a wake-up is cheap in CPU, but on a machine
//! whose cores are all taken by the runtime's workers each one preempts a
//! worker, and the workers' park/unpark rhythm pays for it. On 2 cores
//! saturated by 2 workers, a sampler waking every 4 ms cost `demandflow
//! bench`'s broadcast shape about 8% of its throughput, and one waking
//! every 100 ms still about 6%; with no thread awake the stages pay
//! nothing. Flink, too, sampled backpressure only while someone looked.
//!
//! # Accuracy
//!
//! Each tick's time goes to the state the stage is in when the tick falls.
//! Stages do not change state in step with the ticks, so that is right on
//! average: over a 5 s window, about 1,250 samples of the state, within
//! about 1.5 points of the exact fraction. When the machine is so loaded
//! that the thread wakes late, the longer gap goes to the state seen at
//! its end (each tick measures the real time since the previous one).
//! Time while nobody watched is credited to no state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::signal::Signal;
use crate::observe::occupancy::{sampled_state, StateClock};

/// How often the sampler reads the stages' states.
pub(crate) const TICK: Duration = Duration::from_millis(4);

/// How long the sampler runs after the last read of occupancy: two
/// windows, so that a reader that comes back every few seconds (a
/// dashboard, a metrics scrape) reads windows sampled throughout.
pub(crate) const WATCH: Duration = Duration::from_secs(10);

/// What the sampler reads of one stage.
struct Probe {
    clock: Arc<StateClock>,
    signal: Arc<Signal>,
}

impl Probe {
    /// Credits `ns` to the stage's state; `false` once it has ended.
    fn tick(&self, ns: u64) -> bool {
        let state = sampled_state(self.clock.own(), self.signal.parked());
        self.clock.credit(state, ns)
    }
}

/// The running stages, whether the thread runs, and until when.
struct Registry {
    stages: Vec<Probe>,
    running: bool,
    watched_until: Option<Instant>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    stages: Vec::new(),
    running: false,
    watched_until: None,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers a starting stage, its `clock` and its `signal`: it is sampled
/// whenever someone watches, until the returned guard is dropped (the
/// stage's task ends, or is dropped unfinished with its runtime).
#[must_use = "the stage is sampled until the guard is dropped"]
pub(crate) fn sample(clock: &Arc<StateClock>, signal: &Arc<Signal>) -> Sampled {
    registry().stages.push(Probe {
        clock: clock.clone(),
        signal: signal.clone(),
    });
    Sampled {
        clock: clock.clone(),
    }
}

/// A stage's registration with the sampler; dropping it lets go of the
/// stage now rather than at a tick, so that its memory is freed with its
/// pipeline and a registry nobody samples never grows past the running
/// stages.
#[derive(Debug)]
pub(crate) struct Sampled {
    clock: Arc<StateClock>,
}

impl Drop for Sampled {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(i) = r
            .stages
            .iter()
            .position(|p| Arc::ptr_eq(&p.clock, &self.clock))
        {
            r.stages.swap_remove(i);
        }
    }
}

/// Someone reads occupancy now: sample for the next [`WATCH`], starting
/// the thread if it is not running. Where threads cannot be started,
/// nothing is sampled and occupancy reads zero (logged once, at `warn`).
pub(crate) fn watch() {
    let mut r = registry();
    r.watched_until = Some(Instant::now() + WATCH);
    if r.running {
        return;
    }
    match std::thread::Builder::new()
        .name("demandflow-occupancy".into())
        .spawn(run)
    {
        Ok(_) => r.running = true,
        Err(e) => {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot start the occupancy sampler; stage occupancy reads zero");
            }
        }
    }
}

/// The sampler thread's loop: ticks until nobody has watched for
/// [`WATCH`].
fn run() {
    let mut last = Instant::now();
    loop {
        std::thread::sleep(TICK);
        let now = Instant::now();
        let ns = u64::try_from(now.duration_since(last).as_nanos()).unwrap_or(u64::MAX);
        last = now;
        let mut r = registry();
        r.stages.retain(|s| s.tick(ns));
        if r.watched_until.is_none_or(|until| now >= until) {
            r.running = false;
            return;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::observe::occupancy::{BACKPRESSURED, BUSY, IDLE, OFF};
    use std::future::Future;
    use std::task::Context;

    /// Waits, up to 5 s, for `done`.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if done() {
                return true;
            }
            std::thread::sleep(TICK);
        }
        done()
    }

    #[test]
    fn a_running_stage_is_credited_real_time_in_its_state() {
        let clock = Arc::new(StateClock::new());
        let signal = Arc::new(Signal::new());
        clock.enter(BACKPRESSURED);
        let begun = Instant::now();
        let _sampled = sample(&clock, &signal);
        watch();
        std::thread::sleep(Duration::from_millis(300));
        let [busy, backpressured, idle] = clock.totals();
        let elapsed = begun.elapsed().as_nanos() as u64;
        assert_eq!((busy, idle), (0, 0));
        // Most of the time, never more than the time that passed plus the
        // tick in which it was added.
        assert!(backpressured >= 150_000_000, "{backpressured}");
        let slack = TICK.as_nanos() as u64;
        assert!(
            backpressured <= elapsed + slack,
            "{backpressured} > {elapsed}"
        );
        clock.enter(BUSY);
        assert!(eventually(|| clock.totals()[0] > 0));
        // Parked on its signal: the reason it gave.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = Box::pin(signal.notified_as(IDLE));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(eventually(|| clock.totals()[2] > 0));
        drop(wait);
        clock.enter(OFF);
        std::thread::sleep(TICK * 3);
        let ended = clock.totals();
        std::thread::sleep(TICK * 5);
        assert_eq!(clock.totals(), ended, "an ended stage is credited nothing");
    }

    #[test]
    fn the_sampler_lets_go_of_an_ended_stage() {
        let ended = Arc::new(StateClock::new());
        let signal = Arc::new(Signal::new());
        let _kept = sample(&ended, &signal);
        watch();
        ended.enter(OFF);
        // Left: the guard's and the test's.
        assert!(eventually(|| Arc::strong_count(&ended) == 2));
    }

    #[test]
    fn a_dropped_guard_leaves_the_registry_at_once() {
        let clock = Arc::new(StateClock::new());
        let signal = Arc::new(Signal::new());
        let guard = sample(&clock, &signal);
        assert_eq!(Arc::strong_count(&clock), 3); // the test, the registry, the guard
        drop(guard);
        assert_eq!(Arc::strong_count(&clock), 1);
    }
}
