use std::collections::VecDeque;
use std::fmt;

use super::{Decisions, DispatchError, Dispatcher, Selector, SubscriberSpec, SubscriptionId};

/// Sends every event to every subscriber (GenStage's `BroadcastDispatcher`).
///
/// The stage may emit only as many events as the *least* hungry subscriber
/// asked for, so the slowest subscriber gates the producer; a subscriber that
/// never asks holds everyone back until it cancels. A subscriber's selector
/// filters what it receives; filtered events still count toward its demand,
/// so all subscribers stay in step.
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
        let n = events.len();
        let last = self.subs.len() - 1;
        let mut events = Some(events);
        for (i, sub) in self.subs.iter_mut().enumerate() {
            sub.pending -= n;
            let batch = match &sub.selector {
                Some(keep) => events
                    .as_ref()
                    .map(|e| e.iter().filter(|x| keep(x)).cloned().collect())
                    .unwrap_or_default(),
                // The last plain subscriber takes the original: one clone
                // fewer per batch.
                None if i == last => events.take().unwrap_or_default(),
                None => events.clone().unwrap_or_default(),
            };
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

    #[test]
    fn genstage_selector_filters_but_counts_toward_demand() {
        let mut d = BroadcastDispatcher::new();
        d.subscribe(A, SubscriberSpec::default()).unwrap();
        let even: crate::dispatcher::Selector<u32> = Arc::new(|x| x % 2 == 0);
        d.subscribe(
            B,
            SubscriberSpec {
                partition: None,
                selector: Some(even),
            },
        )
        .unwrap();
        d.ask(A, 4).unwrap();
        d.ask(B, 4).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3, 4], &mut out);
        assert_eq!(out, vec![(A, vec![1, 2, 3, 4]), (B, vec![2, 4])]);
        assert_eq!(d.demand(), 0);
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
