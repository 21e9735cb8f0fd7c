//! Waiting futures that are dropped or completed leave no parked slot
//! behind, however often they were polled (the wrapper's lists stay bounded
//! by the number of futures alive at once).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use crate::push::shared::{Park, Parked, Shared};
use crate::push::state::Pop;
use crate::push::Overflow;

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(NoopWake));
    fut.poll(&mut TaskContext::from_waker(&waker))
}

#[test]
fn dropped_waits_release_their_slots() {
    let shared = Shared::<u32>::new(1, Overflow::Block);
    shared.push(0).unwrap();
    {
        let mut send = pin!(shared.send(1));
        let mut outcome = pin!(shared.outcome());
        for _ in 0..10 {
            assert!(poll_once(send.as_mut()).is_pending());
            assert!(poll_once(outcome.as_mut()).is_pending());
        }
        assert_eq!(shared.parked_slots(), [0, 1, 1]);
    }
    assert_eq!(shared.parked_slots(), [0, 0, 0]);
    assert_eq!(shared.check(), Ok(()));
}

#[test]
fn a_completed_pop_releases_its_slot() {
    let shared = Shared::<u32>::new(4, Overflow::DropOldest);
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = TaskContext::from_waker(&waker);
    let mut parked = Parked::new(&shared, Park::Producer);
    let mut out = Vec::new();
    for _ in 0..5 {
        assert_eq!(
            shared.poll_pop(&mut cx, 2, &mut out, &mut parked.slot),
            Poll::Pending
        );
    }
    assert_eq!(shared.parked_slots(), [1, 0, 0]);
    shared.push(3).unwrap();
    assert_eq!(
        shared.poll_pop(&mut cx, 2, &mut out, &mut parked.slot),
        Poll::Ready(Pop::Emitted {
            count: 1,
            last: false
        })
    );
    assert_eq!(out, [3]);
    assert_eq!(shared.parked_slots(), [0, 0, 0]);
}
