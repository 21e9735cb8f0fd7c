use std::collections::VecDeque;

use super::{Decisions, DispatchError, Dispatcher, SubscriberSpec, SubscriptionId};

/// Sends each batch to the subscriber with the most pending demand (load
/// balancing, GenStage's `DemandDispatcher`).
///
/// [`Dispatcher::demand`] is the sum of the subscribers' pending demand, as
/// GenStage forwards every ask to the producer: the producer may fill every
/// subscriber in one call, and a batch larger than the hungriest
/// subscriber's demand is split, in order, over the next hungriest. Offering
/// only the largest single demand would leave the other subscribers waiting
/// for further calls while they have asked and are idle.
#[derive(Debug)]
pub struct DemandDispatcher<T> {
    /// (subscriber, pending demand), in subscription order.
    subs: Vec<(SubscriptionId, usize)>,
    buffer: VecDeque<T>,
}

impl<T> DemandDispatcher<T> {
    /// A dispatcher with no subscribers.
    pub fn new() -> Self {
        DemandDispatcher {
            subs: Vec::new(),
            buffer: VecDeque::new(),
        }
    }

    fn hungriest(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, &(_, pending)) in self.subs.iter().enumerate() {
            if pending > 0 && best.is_none_or(|b| pending > self.subs[b].1) {
                best = Some(i);
            }
        }
        best
    }

    fn position(&self, sub: SubscriptionId) -> Result<usize, DispatchError> {
        self.subs
            .iter()
            .position(|(s, _)| *s == sub)
            .ok_or(DispatchError::UnknownSubscription(sub))
    }
}

impl<T> Default for DemandDispatcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> Dispatcher<T> for DemandDispatcher<T> {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        _spec: SubscriberSpec<T>,
    ) -> Result<(), DispatchError> {
        if self.subs.iter().any(|(s, _)| *s == sub) {
            return Err(DispatchError::AlreadySubscribed(sub));
        }
        self.subs.push((sub, 0));
        Ok(())
    }

    fn cancel(&mut self, sub: SubscriptionId) -> Result<usize, DispatchError> {
        let i = self.position(sub)?;
        self.subs.remove(i);
        // Buffered events belong to no one in particular: they wait for the
        // others. With no subscriber left nobody can take them.
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
        let i = self.position(sub)?;
        self.subs[i].1 = self.subs[i].1.saturating_add(n);
        Ok(())
    }

    fn demand(&self) -> usize {
        if !self.buffer.is_empty() {
            return 0;
        }
        self.subs
            .iter()
            .fold(0usize, |acc, &(_, p)| acc.saturating_add(p))
    }

    fn dispatch(&mut self, mut events: Vec<T>, out: &mut Decisions<T>) {
        if !self.buffer.is_empty() {
            self.buffer.extend(events);
            return self.flush(out);
        }
        while !events.is_empty() {
            let Some(i) = self.hungriest() else {
                self.buffer.extend(events);
                return;
            };
            let (sub, pending) = &mut self.subs[i];
            if events.len() <= *pending {
                *pending -= events.len();
                out.push((*sub, events));
                return;
            }
            let rest = events.split_off(*pending);
            *pending = 0;
            out.push((*sub, std::mem::replace(&mut events, rest)));
        }
    }

    fn flush(&mut self, out: &mut Decisions<T>) {
        while !self.buffer.is_empty() {
            let Some(i) = self.hungriest() else { return };
            let (sub, pending) = &mut self.subs[i];
            let n = (*pending).min(self.buffer.len());
            *pending -= n;
            out.push((*sub, self.buffer.drain(..n).collect()));
        }
    }

    #[inline]
    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    fn route_whole(&mut self, len: usize) -> Option<SubscriptionId> {
        // `dispatch`'s first step when a sole subscriber takes the whole
        // batch. With several, `dispatch` picks and often splits: trying
        // here first would only scan them twice.
        let [(sub, pending)] = self.subs.as_mut_slice() else {
            return None;
        };
        if len == 0 || len > *pending || !self.buffer.is_empty() {
            return None;
        }
        *pending -= len;
        Some(*sub)
    }

    fn subscribers(&self) -> usize {
        self.subs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SubscriptionId = SubscriptionId(1);
    const B: SubscriptionId = SubscriptionId(2);

    fn two() -> DemandDispatcher<u32> {
        let mut d = DemandDispatcher::new();
        d.subscribe(A, SubscriberSpec::default()).unwrap();
        d.subscribe(B, SubscriberSpec::default()).unwrap();
        d
    }

    #[test]
    fn sends_to_the_subscriber_with_most_pending_demand() {
        let mut d = two();
        d.ask(A, 2).unwrap();
        d.ask(B, 4).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3], &mut out);
        assert_eq!(out, vec![(B, vec![1, 2, 3])]);
        out.clear();
        d.dispatch(vec![4, 5], &mut out);
        assert_eq!(out, vec![(A, vec![4, 5])]);
        assert_eq!(d.demand(), 1, "B's one left");
    }

    #[test]
    fn events_beyond_demand_are_buffered_then_flushed_in_order() {
        let mut d = two();
        d.ask(A, 1).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3], &mut out);
        assert_eq!(out, vec![(A, vec![1])]);
        assert_eq!(d.buffered(), 2);
        assert_eq!(d.demand(), 0);
        out.clear();
        d.ask(B, 5).unwrap();
        d.flush(&mut out);
        assert_eq!(out, vec![(B, vec![2, 3])]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.demand(), 3);
    }

    proptest::proptest! {
        /// `route_whole` does what `dispatch` would when it takes a batch
        /// (a sole subscriber with room for all of it), and changes
        /// nothing when it declines: after any mix of asks and batches,
        /// both dispatchers agree on where everything went and on what is
        /// left.
        #[test]
        fn route_whole_agrees_with_dispatch(
            both in proptest::bool::ANY,
            steps in proptest::collection::vec((0u8..3, 0usize..6), 1..40),
        ) {
            // One subscriber (where the fast path is taken) or two (where
            // it must decline).
            let one = || {
                let mut d = DemandDispatcher::new();
                d.subscribe(A, SubscriberSpec::default()).unwrap();
                d
            };
            let (mut fast, mut plain) = if both { (two(), two()) } else { (one(), one()) };
            let mut next = 0u32;
            let mut routed = 0;
            for (what, n) in steps {
                match what {
                    0 | 1 if n > 0 => {
                        let sub = if what == 1 && both { B } else { A };
                        fast.ask(sub, n).unwrap();
                        plain.ask(sub, n).unwrap();
                    }
                    _ => {
                        let batch: Vec<u32> = (next..next + n as u32).collect();
                        next += n as u32;
                        let mut expected = vec![];
                        plain.dispatch(batch.clone(), &mut expected);
                        let mut got = vec![];
                        match fast.route_whole(batch.len()) {
                            Some(sub) => {
                                routed += 1;
                                got.push((sub, batch));
                            }
                            None => fast.dispatch(batch, &mut got),
                        }
                        proptest::prop_assert_eq!(got, expected);
                    }
                }
                proptest::prop_assert_eq!(fast.demand(), plain.demand());
                proptest::prop_assert_eq!(fast.buffered(), plain.buffered());
            }
            if both {
                proptest::prop_assert_eq!(routed, 0, "two subscribers: dispatch decides");
            }
        }

        /// The fast path is taken at all: a sole subscriber with room gets
        /// the whole batch from `route_whole`.
        #[test]
        fn route_whole_takes_a_batch_that_fits(room in 1usize..50, len in 1usize..50) {
            let mut d = DemandDispatcher::<u32>::new();
            d.subscribe(A, SubscriberSpec::default()).unwrap();
            d.ask(A, room).unwrap();
            let routed = d.route_whole(len);
            proptest::prop_assert_eq!(routed, (len <= room).then_some(A));
            proptest::prop_assert_eq!(d.demand(), if len <= room { room - len } else { room });
        }
    }

    #[test]
    fn ask_zero_unknown_and_duplicate_are_errors() {
        let mut d = two();
        assert_eq!(d.ask(A, 0), Err(DispatchError::AskZero(A)));
        assert_eq!(
            d.ask(SubscriptionId(9), 1),
            Err(DispatchError::UnknownSubscription(SubscriptionId(9)))
        );
        assert_eq!(
            d.subscribe(A, SubscriberSpec::default()),
            Err(DispatchError::AlreadySubscribed(A))
        );
    }

    #[test]
    fn demand_saturates() {
        let mut d = two();
        d.ask(A, usize::MAX).unwrap();
        d.ask(A, 5).unwrap();
        assert_eq!(d.demand(), usize::MAX);
        d.ask(B, 5).unwrap();
        assert_eq!(d.demand(), usize::MAX, "the sum saturates too");
    }

    #[test]
    fn genstage_producer_is_offered_the_sum_of_pending_demand() {
        let mut d = two();
        d.ask(A, 3).unwrap();
        d.ask(B, 5).unwrap();
        assert_eq!(d.demand(), 8);
        // One call's worth fills both, hungriest first, in order, and
        // nothing is left over.
        let mut out = vec![];
        d.dispatch((1..=8).collect(), &mut out);
        assert_eq!(out, vec![(B, vec![1, 2, 3, 4, 5]), (A, vec![6, 7, 8])]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.demand(), 0);
        // A cancelled subscriber's demand leaves the sum.
        d.ask(A, 2).unwrap();
        d.ask(B, 4).unwrap();
        assert_eq!(d.cancel(B), Ok(0));
        assert_eq!(d.demand(), 2);
    }

    #[test]
    fn cancel_removes_demand_and_keeps_buffer_for_others() {
        let mut d = two();
        d.ask(A, 5).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3, 4, 5, 6], &mut out);
        assert_eq!(d.buffered(), 1);
        assert_eq!(d.cancel(A), Ok(0));
        assert_eq!(d.cancel(B), Ok(1));
        assert_eq!(d.buffered(), 0);
    }
}
