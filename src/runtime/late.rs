//! Subscriptions made while the pipeline runs: the hand-over point between
//! the pipeline handle (which creates the edge) and the upstream stage's
//! driver (which owns the dispatcher and adopts the edge).
//!
//! A stage built with `late_subscribers` has one [`Attach`]. The handle
//! [`offer`](Attach::offer)s a new edge and notifies the stage's signal; the
//! driver, at its next `Outputs::collect`, [`take`](Attach::take)s the
//! pending edges and registers them with its dispatcher. The driver is the
//! only one that touches the dispatcher, so it stays a single-threaded state
//! machine.
//!
//! # Invariants
//!
//! * Every offered edge is either taken by the driver or closed by
//!   [`close`](Attach::close) with the stage's end, exactly once: `offer`,
//!   `take` and `close` each run under the one mutex, and `offer` is refused
//!   once `close` has run. So a subscriber that joins as its upstream ends
//!   sees the end; it never waits on an edge nobody will close.
//! * `pending` is `true` whenever the queue is non-empty (set under the lock
//!   by `offer`, cleared under the lock by `take`/`close`), so the driver's
//!   lock-free check in front of `take` misses nothing: a stale `false`
//!   only means the offer's own signal notification is still on its way,
//!   and the driver collects again when it arrives.
//! * A partition has at most one owner. The owner is recorded here, at
//!   `offer`, so a refused partition is a synchronous error for the caller;
//!   it is released by whoever ends the subscription first (the caller's
//!   `Subscription::cancel`, or the driver when it sees the cancel), and
//!   only by the owner's id, so a late release never frees a partition a
//!   newer subscriber holds.
//!
//! # Lock order
//!
//! The attach mutex is taken alone, or before an edge's mutex (`close`
//! closes the pending edges after releasing it). No waker runs under it.

use std::sync::Arc;

use super::edge::{Edge, EdgeEnd};
use crate::dispatcher::{DispatchError, SubscriberSpec, SubscriptionId};
use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::{lock, Mutex};

/// An edge waiting to be adopted by its upstream's driver.
pub(crate) struct Pending<T> {
    pub(crate) id: SubscriptionId,
    pub(crate) edge: Arc<Edge<T>>,
    pub(crate) spec: SubscriberSpec<T>,
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The stage has ended (or is ending): no new subscriber can join.
    Ended,
    /// The partition dispatcher refused the partition.
    Dispatch(DispatchError),
}

struct State<T> {
    queue: Vec<Pending<T>>,
    closed: bool,
    /// Partition owners; empty unless the stage uses a partition dispatcher.
    owners: Vec<Option<SubscriptionId>>,
}

/// The attachment point of one stage that accepts late subscribers.
pub(crate) struct Attach<T> {
    pending: AtomicBool,
    state: Mutex<State<T>>,
    /// Keep running with no subscriber (`LastCancel::Wait`).
    pub(crate) wait: bool,
}

impl<T> std::fmt::Debug for Attach<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach").field("wait", &self.wait).finish()
    }
}

impl<T> Attach<T> {
    pub(crate) fn new(wait: bool) -> Attach<T> {
        Attach {
            pending: AtomicBool::new(false),
            state: Mutex::new(State {
                queue: Vec::new(),
                closed: false,
                owners: Vec::new(),
            }),
            wait,
        }
    }

    /// Records the partitions and their subscribers at spawn.
    pub(crate) fn set_owners(&self, owners: Vec<Option<SubscriptionId>>) {
        lock(&self.state).owners = owners;
    }

    /// Hands a new edge to the stage. The caller then notifies the stage.
    pub(crate) fn offer(&self, p: Pending<T>) -> Result<(), (Refused, Pending<T>)> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err((Refused::Ended, p));
        }
        if !s.owners.is_empty() {
            let partitions = s.owners.len();
            match p.spec.partition {
                Some(i) if i < partitions && s.owners[i].is_none() => s.owners[i] = Some(p.id),
                Some(i) if i < partitions => {
                    return Err((Refused::Dispatch(DispatchError::PartitionTaken(i)), p))
                }
                partition => {
                    let e = DispatchError::BadPartition {
                        partition,
                        partitions,
                    };
                    return Err((Refused::Dispatch(e), p));
                }
            }
        }
        s.queue.push(p);
        self.pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether edges wait to be taken (one atomic load).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The driver: takes the edges offered since the last call.
    pub(crate) fn take(&self) -> Vec<Pending<T>> {
        if !self.has_pending() {
            return Vec::new();
        }
        let mut s = lock(&self.state);
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut s.queue)
    }

    /// Frees `partition` if `id` still holds it.
    pub(crate) fn release(&self, partition: Option<usize>, id: SubscriptionId) {
        let Some(i) = partition else { return };
        let mut s = lock(&self.state);
        if s.owners.get(i).copied().flatten() == Some(id) {
            s.owners[i] = None;
        }
    }

    /// The stage ends: refuses further offers and ends the edges offered
    /// but not yet taken.
    pub(crate) fn close(&self, end: &EdgeEnd) {
        let queue = {
            let mut s = lock(&self.state);
            s.closed = true;
            self.pending.store(false, Ordering::Release);
            std::mem::take(&mut s.queue)
        };
        for p in queue {
            p.edge.close(end.clone());
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::runtime::edge::Recv;
    use crate::runtime::signal::Signal;

    fn pending(id: u64, partition: Option<usize>) -> Pending<u32> {
        Pending {
            id: SubscriptionId(id),
            edge: Arc::new(Edge::new(Arc::new(Signal::new()), Arc::new(Signal::new()))),
            spec: SubscriberSpec {
                partition,
                selector: None,
            },
        }
    }

    #[test]
    fn an_offer_after_close_is_refused_and_one_before_is_ended() {
        let a = Attach::new(false);
        let p = pending(1, None);
        let edge = p.edge.clone();
        assert!(a.offer(p).is_ok());
        a.close(&EdgeEnd::Done);
        assert!(matches!(edge.recv(), Recv::Ended(EdgeEnd::Done)));
        assert!(a.take().is_empty());
        assert!(matches!(
            a.offer(pending(2, None)),
            Err((Refused::Ended, _))
        ));
    }

    #[test]
    fn a_partition_has_one_owner_until_that_owner_releases_it() {
        let a = Attach::new(false);
        a.set_owners(vec![None, Some(SubscriptionId(7))]);
        assert!(a.offer(pending(1, Some(0))).is_ok());
        let taken = |r: Result<(), (Refused, Pending<u32>)>| match r {
            Err((Refused::Dispatch(e), _)) => Some(e),
            _ => None,
        };
        assert_eq!(
            taken(a.offer(pending(2, Some(0)))),
            Some(DispatchError::PartitionTaken(0))
        );
        assert_eq!(
            taken(a.offer(pending(2, Some(1)))),
            Some(DispatchError::PartitionTaken(1))
        );
        assert!(matches!(
            taken(a.offer(pending(2, None))),
            Some(DispatchError::BadPartition { .. })
        ));
        // A stale release (not the owner) frees nothing.
        a.release(Some(1), SubscriptionId(1));
        assert!(a.offer(pending(3, Some(1))).is_err());
        a.release(Some(1), SubscriptionId(7));
        assert!(a.offer(pending(3, Some(1))).is_ok());
        assert_eq!(a.take().len(), 2);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::runtime::edge::Recv;
    use crate::runtime::signal::Signal;

    /// An offer racing the stage's last collect and its close: the edge is
    /// either adopted or ended, never left open with nobody to close it.
    #[test]
    fn loom_attach_offer_races_take_and_close() {
        loom::model(|| {
            let a = Arc::new(Attach::<u32>::new(false));
            let edge = Arc::new(Edge::new(Arc::new(Signal::new()), Arc::new(Signal::new())));
            let (a2, e2) = (a.clone(), edge.clone());
            let t = loom::thread::spawn(move || {
                a2.offer(Pending {
                    id: SubscriptionId(1),
                    edge: e2,
                    spec: SubscriberSpec::default(),
                })
                .is_ok()
            });
            let taken = a.take().len();
            a.close(&EdgeEnd::Done);
            let offered = t.join().unwrap();
            let ended = matches!(edge.recv(), Recv::Ended(_));
            if offered {
                // Adopted by the take, or ended by the close: exactly one.
                assert!((taken == 1) ^ ended, "taken {taken}, ended {ended}");
            } else {
                assert_eq!(taken, 0);
                assert!(!ended);
            }
        });
    }
}

// ------------------------------------------------------------ registry

/// The late side of a running pipeline: where its stages accept
/// subscribers, and the stages and edges added since it started (for
/// stats, the report, and `join`).
pub(crate) struct LateRegistry {
    /// The pipeline's id, to refuse a `StageRef` of another pipeline.
    pub(crate) pipeline: u64,
    /// How many stages the pipeline was built with: late stages are
    /// numbered from here in `StageRef`s.
    pub(crate) statics: usize,
    /// Per stage built with the pipeline: its `Arc<Attach<T>>`, if it
    /// accepts late subscribers.
    pub(crate) points: Vec<Option<AttachPoint>>,
    /// Subscription ids for late edges (above every build-time id).
    pub(crate) next_sub: std::sync::atomic::AtomicU64,
    /// The restart intensity late stages' own supervisors use.
    pub(crate) intensity: crate::supervisor::Intensity,
    /// Where late stages' tasks are spawned.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) stages: std::sync::Mutex<Vec<LateStage>>,
    pub(crate) edges: std::sync::Mutex<Vec<super::shared::EdgeStat>>,
}

/// A type-erased `Arc<Attach<T>>`; the typed `StageRef<T>` downcasts it.
pub(crate) type AttachPoint = Arc<dyn std::any::Any + Send + Sync>;

/// A stage added while the pipeline runs.
pub(crate) struct LateStage {
    pub(crate) shared: Arc<super::shared::StageShared>,
    pub(crate) point: Option<AttachPoint>,
    pub(crate) task: Option<tokio::task::JoinHandle<super::driver::StageEnd>>,
}

impl LateRegistry {
    /// The stage `index` (as numbered in `StageRef`s): its shared state and
    /// attachment point.
    pub(crate) fn stage(
        &self,
        statics: &[Arc<super::shared::StageShared>],
        index: usize,
    ) -> Option<(Arc<super::shared::StageShared>, Option<AttachPoint>)> {
        if index < self.statics {
            let shared = statics.get(index)?.clone();
            return Some((shared, self.points.get(index).cloned().flatten()));
        }
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        let s = stages.get(index - self.statics)?;
        Some((s.shared.clone(), s.point.clone()))
    }
}
