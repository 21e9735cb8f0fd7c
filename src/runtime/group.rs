//! Runs the stages of a straight chain inside one tokio task.
//!
//! Stages connected one to one hand each other a batch per wake-up. As
//! separate tokio tasks, every hand-off is a task wake-up, and on a
//! multi-threaded runtime the woken task often moves to another worker,
//! which must first be unparked: a system call and, in a VM, an interrupt,
//! each costing far more than handling a batch. A [`Group`] polls the
//! stages of such a chain itself, the way a task polls its sub-futures: a
//! wake-up from one member to another while the group runs is one atomic
//! store, and the chain stays on one worker (as Flink chains operators and
//! Elixir's Flow fuses them into one process).
//!
//! # Invariants
//!
//! * A member is polled only after a wake-up of its own waker (or once at
//!   the start), like a task.
//! * A wake-up is never lost. One state word holds `RUNNING` (the group is
//!   inside `poll`) and `NOTIFIED` (a member was woken since the group last
//!   looked). A member's waker sets the member's `ready` flag, then sets
//!   `NOTIFIED` with one read-modify-write; if `RUNNING` was clear it wakes
//!   the group's task. The group leaves `poll` with `Pending` only through
//!   a compare-exchange from exactly `RUNNING` to idle, which fails if any
//!   wake-up came in since its last sweep began; it then sweeps again. So
//!   either the waker sees the group idle and wakes its task, or the group
//!   sees the wake-up.
//! * While the group runs, a wake-up between members costs no task
//!   wake-up: the group's own task is not woken by its members, so tokio
//!   neither re-queues it nor unparks another worker for it.
//! * The group gives its worker back after [`POLLS_PER_TURN`] member polls
//!   or once tokio's cooperative budget is spent, waking itself first, so a
//!   busy chain cannot starve the runtime's other tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

#[cfg(not(all(test, loom)))]
use futures::task::AtomicWaker;
#[cfg(all(test, loom))]
use loom::future::AtomicWaker;
#[cfg(all(test, loom))]
use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering};
#[cfg(not(all(test, loom)))]
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const NOTIFIED: u8 = 2;

/// Most member polls in one turn before the group yields its worker.
const POLLS_PER_TURN: usize = 256;

struct Shared {
    ready: Box<[AtomicBool]>,
    state: AtomicU8,
    task: AtomicWaker,
}

/// The waker a member sees.
struct MemberWaker {
    shared: Arc<Shared>,
    index: usize,
}

impl Wake for MemberWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A read-modify-write, not a store: it is ordered after the group's
        // last swap of the flag, so the group's next swap sees it.
        self.shared.ready[self.index].swap(true, Ordering::AcqRel);
        if self.shared.state.fetch_or(NOTIFIED, Ordering::AcqRel) & RUNNING == 0 {
            self.shared.task.wake();
        }
    }
}

/// Several futures polled as one task; completes with every member's
/// output, in the order they completed.
///
/// Generic over the member future, so a member that is already boxed is
/// not boxed again: each member poll is one call through a box.
pub(crate) struct Group<F: Future> {
    shared: Arc<Shared>,
    members: Vec<Option<F>>,
    wakers: Vec<Waker>,
    done: Vec<F::Output>,
    /// Where the next turn starts, so no member is always polled last.
    next: usize,
}

impl<F: Future + Unpin> Group<F> {
    pub(crate) fn new(members: Vec<F>) -> Group<F> {
        let n = members.len();
        let shared = Arc::new(Shared {
            ready: (0..n).map(|_| AtomicBool::new(true)).collect(),
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        let wakers = (0..n)
            .map(|index| {
                Waker::from(Arc::new(MemberWaker {
                    shared: shared.clone(),
                    index,
                }))
            })
            .collect();
        Group {
            shared,
            members: members.into_iter().map(Some).collect(),
            wakers,
            done: Vec::with_capacity(n),
            next: 0,
        }
    }
}

impl<F: Future> Group<F> {
    /// The waker member `index` is polled with. A `Signal` that only this
    /// member waits on can wake it directly (`Signal::bind`).
    pub(crate) fn member_waker(&self, index: usize) -> Waker {
        self.wakers[index].clone()
    }
}

impl<F: Future + Unpin> Unpin for Group<F> {}

impl<F: Future + Unpin> Future for Group<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<F::Output>> {
        let this = self.get_mut();
        let n = this.members.len();
        #[cfg(not(all(test, loom)))]
        this.shared.task.register(cx.waker());
        #[cfg(all(test, loom))]
        this.shared.task.register(cx.waker().clone());
        let mut polls = 0;
        loop {
            // Clears NOTIFIED: what it stood for is in the flags swept next.
            this.shared.state.swap(RUNNING, Ordering::AcqRel);
            let mut polled = false;
            for k in 0..n {
                let i = (this.next + k) % n;
                if !this.shared.ready[i].swap(false, Ordering::AcqRel) {
                    continue;
                }
                let Some(member) = &mut this.members[i] else {
                    continue;
                };
                polled = true;
                polls += 1;
                let mut member_cx = Context::from_waker(&this.wakers[i]);
                if let Poll::Ready(out) = Pin::new(member).poll(&mut member_cx) {
                    this.members[i] = None;
                    this.done.push(out);
                }
            }
            if this.done.len() == n {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(std::mem::take(&mut this.done));
            }
            if !polled {
                let idle = this.shared.state.compare_exchange(
                    RUNNING,
                    IDLE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if idle.is_ok() {
                    return Poll::Pending;
                }
                // A wake-up came in since the sweep began: sweep again.
                continue;
            }
            if polls >= POLLS_PER_TURN || !budget_left() {
                this.next = (this.next + 1) % n;
                this.shared.state.store(IDLE, Ordering::Release);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

/// Whether the task may go on: tokio's cooperative budget, which the
/// members' own `consume_budget` calls spend, is per task, so the group
/// honours it for all of them.
fn budget_left() -> bool {
    #[cfg(not(all(test, loom)))]
    return tokio::task::coop::has_budget_remaining();
    #[cfg(all(test, loom))]
    return true;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::AtomicUsize;

    /// A member that needs `n` wake-ups from a sibling before it completes.
    async fn ping_pong() -> Vec<&'static str> {
        let (tx_a, mut rx_a) = tokio::sync::mpsc::channel::<u32>(1);
        let (tx_b, mut rx_b) = tokio::sync::mpsc::channel::<u32>(1);
        let a = async move {
            for i in 0..100 {
                tx_b.send(i).await.unwrap();
                assert_eq!(rx_a.recv().await, Some(i));
            }
            "a"
        }
        .boxed();
        let b = async move {
            while let Some(i) = rx_b.recv().await {
                if tx_a.send(i).await.is_err() {
                    break;
                }
            }
            "b"
        }
        .boxed();
        Group::new(vec![a, b]).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn members_wake_each_other_and_all_complete() {
        let mut out = ping_pong().await;
        out.sort_unstable();
        assert_eq!(out, vec!["a", "b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wake_from_another_task_reaches_a_member() {
        for _ in 0..200 {
            let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
            let member = async move { rx.await.unwrap() }.boxed();
            let group = tokio::spawn(Group::new(vec![member]));
            tokio::spawn(async move { tx.send(7).unwrap() });
            assert_eq!(group.await.unwrap(), vec![7]);
        }
    }

    /// A member that never waits would hold the worker forever; the group
    /// yields, so another task on a one-thread runtime still runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_group_yields_to_other_tasks() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let seen = ticks.clone();
        let busy = async move {
            // Spins (through wake-ups of its own) until the ticker has run.
            std::future::poll_fn(|cx| {
                if seen.load(std::sync::atomic::Ordering::Relaxed) >= 3 {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await
        }
        .boxed();
        Group::new(vec![busy]).await;
        ticker.abort();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use futures::future::BoxFuture;
    use futures::FutureExt;
    use loom::sync::atomic::AtomicUsize;

    /// A member that completes once `flag` is set, parking on `waker`.
    fn waiter(
        flag: Arc<loom::sync::atomic::AtomicBool>,
        waker: Arc<AtomicWaker>,
    ) -> BoxFuture<'static, usize> {
        async move {
            std::future::poll_fn(|cx| {
                waker.register(cx.waker().clone());
                if flag.load(Ordering::SeqCst) {
                    Poll::Ready(1)
                } else {
                    Poll::Pending
                }
            })
            .await
        }
        .boxed()
    }

    /// A member parked on a signal bound to its member waker (so it parks
    /// without registering), notified from another thread while the group
    /// decides to return `Pending`: the wake-up reaches it.
    #[test]
    fn loom_group_member_on_a_bound_signal() {
        use crate::runtime::signal::Signal;
        loom::model(|| {
            let signal = Arc::new(Signal::new());
            let flag = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let (s, f) = (signal.clone(), flag.clone());
            let member = async move {
                while !f.load(Ordering::SeqCst) {
                    s.notified().await;
                }
                1
            }
            .boxed();
            let group = Group::new(vec![member]);
            signal.bind(group.member_waker(0));
            let th = loom::thread::spawn(move || {
                flag.store(true, Ordering::SeqCst);
                signal.notify();
            });
            assert_eq!(loom::future::block_on(group), vec![1]);
            th.join().unwrap();
        });
    }

    /// A wake-up from another thread racing the group's decision to
    /// return `Pending` is never lost.
    #[test]
    fn loom_group_external_wake_is_never_lost() {
        loom::model(|| {
            let flag = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let waker = Arc::new(AtomicWaker::new());
            let group = Group::new(vec![waiter(flag.clone(), waker.clone())]);
            let th = loom::thread::spawn(move || {
                flag.store(true, Ordering::SeqCst);
                waker.wake();
            });
            assert_eq!(loom::future::block_on(group), vec![1]);
            th.join().unwrap();
        });
    }

    /// One member wakes another while the group runs, and a third party
    /// wakes a member at the same time: both members complete.
    #[test]
    fn loom_group_sibling_and_external_wakes() {
        loom::model(|| {
            let (f1, w1) = (
                Arc::new(loom::sync::atomic::AtomicBool::new(false)),
                Arc::new(AtomicWaker::new()),
            );
            let (f2, w2) = (
                Arc::new(loom::sync::atomic::AtomicBool::new(false)),
                Arc::new(AtomicWaker::new()),
            );
            let polls = Arc::new(AtomicUsize::new(0));
            let (f1b, w1b, p) = (f1.clone(), w1.clone(), polls.clone());
            // Member 0 sets member 1's flag and wakes it, then completes.
            let waking = async move {
                p.fetch_add(1, Ordering::SeqCst);
                f1b.store(true, Ordering::SeqCst);
                w1b.wake();
                2
            }
            .boxed();
            let group = Group::new(vec![waking, waiter(f1, w1), waiter(f2.clone(), w2.clone())]);
            let th = loom::thread::spawn(move || {
                f2.store(true, Ordering::SeqCst);
                w2.wake();
            });
            let mut out = loom::future::block_on(group);
            out.sort_unstable();
            assert_eq!(out, vec![1, 1, 2]);
            assert_eq!(polls.load(Ordering::SeqCst), 1);
            th.join().unwrap();
        });
    }
}
