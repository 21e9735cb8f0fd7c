//! proptest strategies for demand schedules, consumer speeds, crash
//! schedules and graph shapes, and the stages that play them.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use crate::error::BoxError;
use crate::stage::{Context, Emitter, Processor};
use crate::{Pipeline, StageRef, Subscribe};

/// Valid `(max_demand, min_demand)` pairs with `max_demand` in `1..=max`.
pub fn demand_limits(max: usize) -> impl Strategy<Value = (usize, usize)> {
    (1..=max.max(1)).prop_flat_map(|m| (Just(m), 0..m))
}

/// Subscription options with demand limits from [`demand_limits`].
pub fn subscribe_options(max: usize) -> impl Strategy<Value = Subscribe> {
    demand_limits(max).prop_map(|(m, n)| Subscribe::max_demand(m).min_demand(n))
}

/// A manual subscriber's asks: `1..=len` asks of `1..=max_ask` each.
pub fn demand_schedule(max_ask: usize, len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_ask.max(1), 1..=len.max(1))
}

/// How long a slow stage takes per batch: `1..=len` delays of up to
/// `max_ms` virtual milliseconds (zero = a fast stage), used in turn.
pub fn consumer_speeds(max_ms: u64, len: usize) -> impl Strategy<Value = Vec<Duration>> {
    prop::collection::vec((0..=max_ms).prop_map(Duration::from_millis), 1..=len.max(1))
}

/// Event indices (below `events`) at which a stage fails, at most `max`.
pub fn crash_schedule(events: u64, max: usize) -> impl Strategy<Value = CrashSchedule> {
    prop::collection::btree_set(0..events.max(1), 0..=max).prop_map(CrashSchedule::new)
}

/// A chain of processors with their options, from [`graph_shape`].
#[derive(Debug, Clone)]
pub struct Shape {
    /// Per hop after the source: subscription options and concurrency.
    pub hops: Vec<(Subscribe, usize)>,
}

/// Graph shapes: `0..=max_hops` identity processors in a chain after the
/// source, each with its own demand limits (`max_demand` up to
/// `max_demand`) and a concurrency of 1 to 3.
pub fn graph_shape(max_hops: usize, max_demand: usize) -> impl Strategy<Value = Shape> {
    prop::collection::vec((subscribe_options(max_demand), 1..=3usize), 0..=max_hops)
        .prop_map(|hops| Shape { hops })
}

impl Shape {
    /// Adds the chain after `source` (identity processors named `hop0`,
    /// `hop1`, ...); returns the last stage. Order is only kept end to end
    /// when every concurrency is 1.
    pub fn build<T>(&self, p: &mut Pipeline, source: &StageRef<T>) -> StageRef<T>
    where
        T: Clone + Send + Sync + 'static,
    {
        let mut last = source.clone();
        for (i, (opts, n)) in self.hops.iter().enumerate() {
            last = p
                .processor(&format!("hop{i}"), crate::stage::map(|x: T| x))
                .concurrency(*n)
                .subscribe(&last, opts.clone());
        }
        last
    }

    /// Whether the chain keeps the source's order (every concurrency 1).
    pub fn keeps_order(&self) -> bool {
        self.hops.iter().all(|(_, n)| *n == 1)
    }
}

/// Where a [`crashing`] stage fails: once at each listed event index.
#[derive(Clone, Default)]
pub struct CrashSchedule {
    at: Arc<Mutex<BTreeSet<u64>>>,
}

impl fmt::Debug for CrashSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CrashSchedule")
            .field(&*self.at.lock().unwrap_or_else(|e| e.into_inner()))
            .finish()
    }
}

impl CrashSchedule {
    /// Fails once at each of these event indices.
    pub fn new(at: BTreeSet<u64>) -> CrashSchedule {
        CrashSchedule {
            at: Arc::new(Mutex::new(at)),
        }
    }

    /// Crashes not yet played.
    pub fn remaining(&self) -> usize {
        self.at.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes the first crash within `from..from + len`, if any.
    fn take(&self, from: u64, len: usize) -> Option<u64> {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        let hit = at.range(from..from + len as u64).next().copied();
        if let Some(i) = hit {
            at.remove(&i);
        }
        hit
    }
}

/// An identity processor that fails (once) when a batch reaches an event
/// index in `schedule`, emitting nothing for that batch; the engine hands
/// the batch to the restarted instance (D7). Pair with a pipeline
/// `max_attempts` above the number of crashes to lose nothing.
pub fn crashing<T>(schedule: CrashSchedule) -> Crashing<T> {
    Crashing {
        schedule,
        seen: Arc::new(Mutex::new(0)),
        _t: std::marker::PhantomData,
    }
}

/// See [`crashing`].
pub struct Crashing<T> {
    schedule: CrashSchedule,
    /// Events handled successfully, across restarts.
    seen: Arc<Mutex<u64>>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for Crashing<T> {
    fn clone(&self) -> Self {
        Crashing {
            schedule: self.schedule.clone(),
            seen: self.seen.clone(),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T> fmt::Debug for Crashing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crashing")
            .field("schedule", &self.schedule)
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Processor<T, T> for Crashing<T> {
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        let from = *self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = self.schedule.take(from, events.len()) {
            return Err(format!("scheduled crash at event {i}").into());
        }
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) += events.len() as u64;
        out.extend(events.iter().cloned());
        Ok(())
    }
}

/// An identity processor that takes `speeds[k % len]` (virtual time) over
/// its k-th batch: a slow stage.
pub fn slow<T>(speeds: Vec<Duration>) -> Slow<T> {
    Slow {
        speeds: Arc::from(speeds),
        k: 0,
        _t: std::marker::PhantomData,
    }
}

/// See [`slow`].
pub struct Slow<T> {
    speeds: Arc<[Duration]>,
    k: usize,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T> Clone for Slow<T> {
    fn clone(&self) -> Self {
        Slow {
            speeds: self.speeds.clone(),
            k: self.k,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T> fmt::Debug for Slow<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slow")
            .field("speeds", &self.speeds)
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Processor<T, T> for Slow<T> {
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        if !self.speeds.is_empty() {
            let d = self.speeds[self.k % self.speeds.len()];
            self.k += 1;
            if !d.is_zero() {
                tokio::time::sleep(d).await;
            }
        }
        out.extend(events.iter().cloned());
        Ok(())
    }
}
