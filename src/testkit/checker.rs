//! The checking wrapper: a [`Monitor`] fed by a live subscription.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::monitor::{Monitor, Op, Sequence, Violation};
use crate::error::BoxError;
use crate::pipeline::Observer;
use crate::runtime::edge::EdgeEvent;
use crate::stage::{Context, Emitter, Processor};
use crate::{Pipeline, StageRef, Subscribe};

thread_local! {
    /// Checkers made while a testkit runner is building or running a
    /// pipeline on this thread; the runner checks them all at the end.
    static SESSION: RefCell<Option<Vec<Checker>>> = const { RefCell::new(None) };
}

/// Starts collecting the checkers made on this thread.
pub(super) fn session_start() {
    SESSION.with(|s| *s.borrow_mut() = Some(Vec::new()));
}

/// The checkers collected so far.
pub(super) fn session_snapshot() -> Vec<Checker> {
    SESSION.with(|s| s.borrow().clone()).unwrap_or_default()
}

/// Stops collecting; returns what was made.
pub(super) fn session_end() -> Vec<Checker> {
    SESSION.with(|s| s.borrow_mut().take()).unwrap_or_default()
}

/// Checks D1–D4 on a subscription of a running pipeline, as the engine's
/// own edge sees it: every ask, every delivered batch, every batch taken,
/// the end and the cancel, in the order the edge applied them.
///
/// Put it on any subscription with [`Checker::on`] (no extra stage), or
/// insert a checked identity stage with [`checked`] / [`checked_sequence`]
/// to also check the events' order (D3). The first violation is kept with
/// the subscription's recent history; [`Checker::assert_ok`] panics with it,
/// and the testkit runners check every checker made during a run.
///
/// Cloning is cheap and shares the state.
///
/// # Example
///
/// ```
/// use demandflow::testkit::{self, Checker};
/// use demandflow::{sink, source, Subscribe};
///
/// let checker = Checker::new("numbers → sum");
/// let watched = checker.clone();
/// let out = testkit::run(move |p| {
///     let n = p.producer("numbers", source::iter(0..100u64));
///     p.processor("id", demandflow::stage::map(|x: u64| x))
///         .subscribe(&n, watched.on(Subscribe::max_demand(10)))
/// });
/// assert_eq!(out.len(), 100);
/// checker.assert_ok();
/// assert_eq!(checker.delivered(), 100);
/// ```
#[derive(Clone)]
pub struct Checker {
    inner: Arc<Mutex<Monitor>>,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.lock();
        f.debug_struct("Checker")
            .field("subscription", &m.name())
            .field("granted", &m.granted())
            .field("delivered", &m.delivered())
            .field("taken", &m.taken())
            .field("violation", &m.violation().map(|v| v.rule))
            .finish()
    }
}

impl Checker {
    /// A checker for the subscription called `name` (used in messages).
    pub fn new(name: &str) -> Checker {
        Checker::from_monitor(Monitor::new(name))
    }

    /// A checker around a configured monitor (bound, sequence).
    pub fn from_monitor(monitor: Monitor) -> Checker {
        let c = Checker {
            inner: Arc::new(Mutex::new(monitor)),
        };
        c.join_session();
        c
    }

    /// Joins the runner's session on this thread, if one is open and this
    /// checker is not in it yet.
    fn join_session(&self) {
        SESSION.with(|s| {
            if let Some(list) = s.borrow_mut().as_mut() {
                if !list.iter().any(|c| Arc::ptr_eq(&c.inner, &self.inner)) {
                    list.push(self.clone());
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, Monitor> {
        // A panic while holding it cannot leave the counters half-updated
        // in a way that matters more than the panic itself.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns `options` with this checker watching the subscription made
    /// with them. With automatic demand, D2's bound is the subscription's
    /// `max_demand` (per upstream instance: for a concurrent upstream, set
    /// a bound with [`Checker::from_monitor`] instead).
    pub fn on(&self, mut options: Subscribe) -> Subscribe {
        // A checker made before a runner started still gets checked by it.
        self.join_session();
        if !options.manual {
            if let Ok(limits) = options.limits() {
                let mut m = self.lock();
                if m.bound().is_none() {
                    m.set_bound(limits.max());
                }
            }
        }
        let inner = self.inner.clone();
        options.observer = Some(Observer(Arc::new(move |event: EdgeEvent| {
            let mut m = inner.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                EdgeEvent::Asked(n) => m.ask(n),
                EdgeEvent::Sent(n) => m.deliver(n),
                EdgeEvent::Refused {
                    len,
                    granted,
                    delivered,
                } => m.refused(len, granted, delivered),
                EdgeEvent::Taken(n) => m.take(n),
                EdgeEvent::Closed(failed) => m.end(failed),
                EdgeEvent::Cancelled { .. } => m.cancel(),
            }
        })));
        options
    }

    /// Runs `f` on the monitor (to feed it by hand, or read it).
    pub fn with<R>(&self, f: impl FnOnce(&mut Monitor) -> R) -> R {
        f(&mut self.lock())
    }

    /// The first violation, if any.
    pub fn violation(&self) -> Option<Violation> {
        self.lock().violation().cloned()
    }

    /// `Err` with the first violation.
    pub fn check(&self) -> Result<(), Box<Violation>> {
        self.lock().check()
    }

    /// Panics with the first violation, if any.
    #[track_caller]
    pub fn assert_ok(&self) {
        if let Err(v) = self.check() {
            panic!("{v}");
        }
    }

    /// Demand granted so far.
    pub fn granted(&self) -> u64 {
        self.lock().granted()
    }

    /// Events delivered so far.
    pub fn delivered(&self) -> u64 {
        self.lock().delivered()
    }

    /// Events taken by the subscriber so far.
    pub fn taken(&self) -> u64 {
        self.lock().taken()
    }

    /// The recent operations, oldest first.
    pub fn history(&self) -> Vec<Op> {
        self.lock().history()
    }

    /// Every ask seen so far, in order (the first 4096).
    pub fn asks(&self) -> Vec<usize> {
        self.lock().asks().to_vec()
    }

    /// Tells the monitor the system has stopped (see [`Monitor::quiescent`]).
    pub fn quiescent(&self) {
        self.lock().quiescent();
    }
}

/// How a checked stage reads an event's sequence key.
type KeyFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// An identity stage that reports each event to a checker (D3).
struct Check<T> {
    checker: Checker,
    key: Option<KeyFn<T>>,
}

impl<T> Clone for Check<T> {
    fn clone(&self) -> Self {
        Check {
            checker: self.checker.clone(),
            key: self.key.clone(),
        }
    }
}

impl<T: Clone + fmt::Debug + Send + Sync + 'static> Processor<T, T> for Check<T> {
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        if let Some(key) = &self.key {
            let mut m = self.checker.lock();
            for e in events {
                m.event(key(e), || format!("{e:?}"));
            }
        }
        out.extend(events.iter().cloned());
        Ok(())
    }
}

/// Inserts a checked identity stage named `"{upstream}/checked"` after
/// `upstream`, subscribed with `options`: subscribe to the returned stage
/// instead of `upstream`. The checker watches the subscription
/// `upstream → checked` (D1, D2, D4).
///
/// # Example
///
/// ```
/// use demandflow::testkit;
/// use demandflow::{source, Subscribe};
///
/// let mut checker = None;
/// let out = testkit::run(|p| {
///     let n = p.producer("n", source::iter(0..10u32));
///     let (c, k) = testkit::checked(p, &n, Subscribe::max_demand(3));
///     checker = Some(k);
///     c
/// });
/// assert_eq!(out, (0..10).collect::<Vec<_>>());
/// assert_eq!(checker.unwrap().asks()[0], 3);
/// ```
pub fn checked<T>(
    p: &mut Pipeline,
    upstream: &StageRef<T>,
    options: Subscribe,
) -> (StageRef<T>, Checker)
where
    T: Clone + fmt::Debug + Send + Sync + 'static,
{
    install(p, upstream, options, Sequence::Any, None)
}

/// As [`checked`], and each event's `key` must follow the previous one as
/// `sequence` says (D3: no gap, duplicate or reorder).
///
/// # Example
///
/// ```
/// use demandflow::testkit::{self, Sequence};
/// use demandflow::{source, Subscribe};
///
/// let out = testkit::run(|p| {
///     let n = p.producer("n", source::iter(0..1000u64));
///     let (c, _checker) =
///         testkit::checked_sequence(p, &n, Subscribe::max_demand(7), Sequence::Consecutive, |x| *x);
///     c
/// });
/// assert_eq!(out.len(), 1000);
/// ```
pub fn checked_sequence<T>(
    p: &mut Pipeline,
    upstream: &StageRef<T>,
    options: Subscribe,
    sequence: Sequence,
    key: impl Fn(&T) -> u64 + Send + Sync + 'static,
) -> (StageRef<T>, Checker)
where
    T: Clone + fmt::Debug + Send + Sync + 'static,
{
    install(p, upstream, options, sequence, Some(Arc::new(key)))
}

fn install<T>(
    p: &mut Pipeline,
    upstream: &StageRef<T>,
    options: Subscribe,
    sequence: Sequence,
    key: Option<KeyFn<T>>,
) -> (StageRef<T>, Checker)
where
    T: Clone + fmt::Debug + Send + Sync + 'static,
{
    let name = format!("{}/checked", upstream.name());
    let checker = Checker::from_monitor(
        Monitor::new(&format!("{} → {name}", upstream.name())).with_sequence(sequence),
    );
    let stage = Check {
        checker: checker.clone(),
        key,
    };
    let out = p
        .processor(&name, stage)
        .subscribe(upstream, checker.on(options));
    (out, checker)
}
