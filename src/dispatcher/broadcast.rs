use std::collections::VecDeque;
use std::fmt;

use super::{Decisions, DispatchError, Dispatcher, Selector, SubscriberSpec, SubscriptionId};

/// Sends every event to every subscriber (GenStage's `BroadcastDispatcher`).
///
/// The stage may emit only as many events as the *least* hungry subscriber
/// asked for, so the slowest subscriber gates the producer; a subscriber that
/// never asks holds everyone back until it cancels.
///
/// A subscriber's selector filters what it receives, and only what it
/// receives uses its demand. An event its selector discards never reaches
/// it, so it could never ask again for it: were the discarded events
/// counted, a subscriber with a selector would run out of demand with
/// nothing left to handle and stall the whole stage. GenStage asks again on
/// the subscriber's behalf for what it discarded (an `:ask` the dispatcher
/// sends its own stage); here the two steps are one, so a subscriber's
/// pending demand is always its edge's granted minus delivered.
///
/// ```
/// use std::sync::Arc;
/// use demandflow::dispatcher::{BroadcastDispatcher, Dispatcher, SubscriberSpec, SubscriptionId};
///
/// let (all, even) = (SubscriptionId(1), SubscriptionId(2));
/// let mut d = BroadcastDispatcher::new();
/// d.subscribe(all, SubscriberSpec::default()).unwrap();
/// let spec = SubscriberSpec { partition: None, selector: Some(Arc::new(|x: &u32| x % 2 == 0)) };
/// d.subscribe(even, spec).unwrap();
/// d.ask(all, 4).unwrap();
/// d.ask(even, 4).unwrap();
/// let mut out = vec![];
/// d.dispatch(vec![1, 2, 3, 4], &mut out);
/// assert_eq!(out, vec![(all, vec![1, 2, 3, 4]), (even, vec![2, 4])]);
/// // `even` received 2 of its 4, so 2 are still pending: once `all` asks
/// // again, the stage may emit 2 more.
/// d.ask(all, 10).unwrap();
/// assert_eq!(d.demand(), 2);
/// ```
pub struct BroadcastDispatcher<T> {
    subs: Vec<Sub<T>>,
    buffer: VecDeque<T>,
}

struct Sub<T> {
    id: SubscriptionId,
    pending: usize,
    selector: Option<Selector<T>>,
}

impl<T> fmt::Debug for BroadcastDispatcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastDispatcher")
            .field(
                "subscribers",
                &self
                    .subs
                    .iter()
                    .map(|s| (s.id, s.pending))
                    .collect::<Vec<_>>(),
            )
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl<T> BroadcastDispatcher<T> {
    /// A dispatcher with no subscribers.
    pub fn new() -> Self {
        BroadcastDispatcher {
            subs: Vec::new(),
            buffer: VecDeque::new(),
        }
    }

    fn min_pending(&self) -> usize {
        self.subs.iter().map(|s| s.pending).min().unwrap_or(0)
    }
}

impl<T> Default for BroadcastDispatcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + 'static> BroadcastDispatcher<T> {
    fn send_all(&mut self, events: Vec<T>, out: &mut Decisions<T>) {
        let last = self.subs.len() - 1;
        let mut events = Some(events);
        for (i, sub) in self.subs.iter_mut().enumerate() {
            let batch: Vec<T> = match &sub.selector {
                Some(keep) => events
                    .as_ref()
                    .map(|e| e.iter().filter(|x| keep(x)).cloned().collect())
                    .unwrap_or_default(),
                // The last plain subscriber takes the original: one clone
                // fewer per batch.
                None if i == last => events.take().unwrap_or_default(),
                None => events.clone().unwrap_or_default(),
            };
            // Only what is sent uses demand (see the type's doc): what the
            // selector discarded is asked again at once. Cannot underflow:
            // the batch is at most the events sent, and callers send no more
            // than the least pending demand.
            sub.pending -= batch.len();
            if !batch.is_empty() {
                out.push((sub.id, batch));
            }
        }
    }
}

impl<T: Clone + Send + 'static> Dispatcher<T> for BroadcastDispatcher<T> {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        spec: SubscriberSpec<T>,
    ) -> Result<(), DispatchError> {
        if self.subs.iter().any(|s| s.id == sub) {
            return Err(DispatchError::AlreadySubscribed(sub));
        }
        self.subs.push(Sub {
            id: sub,
            pending: 0,
            selector: spec.selector,
        });
        Ok(())
    }

    fn cancel(&mut self, sub: SubscriptionId) -> Result<usize, DispatchError> {
        let i = self
            .subs
            .iter()
            .position(|s| s.id == sub)
            .ok_or(DispatchError::UnknownSubscription(sub))?;
        self.subs.remove(i);
        Ok(if self.subs.is_empty() {
            std::mem::take(&mut self.buffer).len()
        } else {
            0
        })
    }

    fn ask(&mut self, sub: SubscriptionId, n: usize) -> Result<(), DispatchError> {
        if n == 0 {
            return Err(DispatchError::AskZero(sub));
        }
        let s = self
            .subs
            .iter_mut()
            .find(|s| s.id == sub)
            .ok_or(DispatchError::UnknownSubscription(sub))?;
        s.pending = s.pending.saturating_add(n);
        Ok(())
    }

    fn demand(&self) -> usize {
        if !self.buffer.is_empty() {
            return 0;
        }
        self.min_pending()
    }

    fn dispatch(&mut self, mut events: Vec<T>, out: &mut Decisions<T>) {
        if !self.buffer.is_empty() || self.subs.is_empty() {
            self.buffer.extend(events);
            return self.flush(out);
        }
        let now = self.min_pending();
        if events.len() > now {
            self.buffer.extend(events.drain(now..));
        }
        if !events.is_empty() {
            self.send_all(events, out);
        }
    }

    fn flush(&mut self, out: &mut Decisions<T>) {
        if self.subs.is_empty() {
            return;
        }
        let n = self.min_pending().min(self.buffer.len());
        if n > 0 {
            let batch = self.buffer.drain(..n).collect();
            self.send_all(batch, out);
        }
    }

    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn subscribers(&self) -> usize {
        self.subs.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const A: SubscriptionId = SubscriptionId(1);
    const B: SubscriptionId = SubscriptionId(2);

    fn two() -> BroadcastDispatcher<u32> {
        let mut d = BroadcastDispatcher::new();
        d.subscribe(A, SubscriberSpec::default()).unwrap();
        d.subscribe(B, SubscriberSpec::default()).unwrap();
        d
    }

    #[test]
    fn genstage_broadcast_demand_is_the_minimum() {
        let mut d = two();
        d.ask(A, 10).unwrap();
        d.ask(B, 20).unwrap();
        assert_eq!(d.demand(), 10);
        let mut out = vec![];
        d.dispatch((0..10).collect(), &mut out);
        assert_eq!(out, vec![(A, (0..10).collect()), (B, (0..10).collect())]);
        assert_eq!(d.demand(), 0);
    }

    #[test]
    fn genstage_subscriber_that_never_asks_blocks_until_it_cancels() {
        let mut d = two();
        d.ask(A, 10).unwrap();
        assert_eq!(d.demand(), 0);
        assert_eq!(d.cancel(B), Ok(0));
        assert_eq!(d.demand(), 10);
    }

    fn with_selector(keep: fn(&u32) -> bool) -> SubscriberSpec<u32> {
        SubscriberSpec {
            partition: None,
            selector: Some(Arc::new(keep)),
        }
    }

    /// `A` takes everything, `B` only even events.
    fn plain_and_even() -> BroadcastDispatcher<u32> {
        let mut d = BroadcastDispatcher::new();
        d.subscribe(A, SubscriberSpec::default()).unwrap();
        d.subscribe(B, with_selector(|x| x % 2 == 0)).unwrap();
        d
    }

    #[test]
    fn genstage_selector_asks_again_for_what_it_discarded() {
        let mut d = plain_and_even();
        d.ask(A, 4).unwrap();
        d.ask(B, 4).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3, 4], &mut out);
        assert_eq!(out, vec![(A, vec![1, 2, 3, 4]), (B, vec![2, 4])]);
        // B received 2 of the 4 it asked for: 2 are still pending.
        assert_eq!(d.demand(), 0, "A has none left");
        d.ask(A, 10).unwrap();
        assert_eq!(d.demand(), 2);
        out.clear();
        d.dispatch(vec![5, 6], &mut out);
        assert_eq!(out, vec![(A, vec![5, 6]), (B, vec![6])]);
        assert_eq!(d.demand(), 1);
    }

    #[test]
    fn selector_accounting_holds_for_buffered_events_too() {
        let mut d = plain_and_even();
        d.ask(A, 2).unwrap();
        d.ask(B, 2).unwrap();
        let mut out = vec![];
        // An over-emission: 2 go now, 4 wait.
        d.dispatch(vec![1, 3, 5, 6, 7, 8], &mut out);
        assert_eq!(out, vec![(A, vec![1, 3])]);
        assert_eq!(d.buffered(), 4);
        out.clear();
        d.ask(A, 4).unwrap();
        d.flush(&mut out);
        // B discarded 1 and 3, so its 2 are still pending: 2 more leave.
        assert_eq!(out, vec![(A, vec![5, 6]), (B, vec![6])]);
        out.clear();
        d.ask(B, 1).unwrap();
        d.flush(&mut out);
        assert_eq!(out, vec![(A, vec![7, 8]), (B, vec![8])]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_selector_that_keeps_nothing_never_holds_the_stage_back() {
        let mut d = BroadcastDispatcher::new();
        d.subscribe(A, SubscriberSpec::default()).unwrap();
        d.subscribe(B, with_selector(|_| false)).unwrap();
        d.ask(A, 5).unwrap();
        d.ask(B, 5).unwrap();
        let mut out = vec![];
        for round in 0..10u32 {
            assert_eq!(d.demand(), 5);
            out.clear();
            d.dispatch((round * 5..round * 5 + 5).collect(), &mut out);
            assert_eq!(out, vec![(A, (round * 5..round * 5 + 5).collect())]);
            d.ask(A, 5).unwrap();
        }
    }

    /// The reported stall, at the dispatcher: both subscribers keep
    /// `max_demand` 10 / `min_demand` 5 with the engine's own arithmetic
    /// and handle whatever arrives at once. All 100 events must leave, and
    /// each subscriber must get exactly what it selects.
    #[test]
    fn selector_subscriber_keeps_asking_until_the_end() {
        use crate::demand::{DemandLimits, SubscriberDemand};

        let mut d = plain_and_even();
        let limits = DemandLimits::new(10, 5).unwrap();
        let mut demand = [SubscriberDemand::new(limits), SubscriberDemand::new(limits)];
        let mut got: [Vec<u32>; 2] = [vec![], vec![]];
        for (id, dm) in [A, B].into_iter().zip(&mut demand) {
            d.ask(id, dm.initial_ask()).unwrap();
        }
        let (mut next, mut out) = (0u32, vec![]);
        while next < 100 {
            let n = d.demand().min(100 - next as usize) as u32;
            assert!(n > 0, "stalled after {next} events");
            d.dispatch((next..next + n).collect(), &mut out);
            next += n;
            for (sub, batch) in out.drain(..) {
                let i = usize::from(sub == B);
                let mut left = batch.len();
                got[i].extend(batch);
                while left > 0 {
                    let chunk = demand[i].chunk(left);
                    left -= chunk;
                    let ask = demand[i].handled(chunk);
                    if ask > 0 {
                        d.ask(sub, ask).unwrap();
                    }
                }
            }
        }
        assert_eq!(got[0], (0..100).collect::<Vec<_>>());
        assert_eq!(got[1], (0..100).filter(|x| x % 2 == 0).collect::<Vec<_>>());
    }

    #[test]
    fn over_emission_is_buffered_not_dropped() {
        let mut d = two();
        d.ask(A, 2).unwrap();
        d.ask(B, 2).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3], &mut out);
        assert_eq!(out, vec![(A, vec![1, 2]), (B, vec![1, 2])]);
        assert_eq!(d.buffered(), 1);
        out.clear();
        d.ask(A, 1).unwrap();
        d.flush(&mut out);
        assert!(out.is_empty());
        d.ask(B, 1).unwrap();
        d.flush(&mut out);
        assert_eq!(out, vec![(A, vec![3]), (B, vec![3])]);
    }
}
