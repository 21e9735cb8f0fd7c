use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::{Decisions, DispatchError, Dispatcher, SubscriberSpec, SubscriptionId};

/// A shareable key function, for callers that need to name the type of a
/// [`PartitionDispatcher`]: an event's partition is `key(event) % partitions`.
pub type PartitionKey<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// Routes each event to one partition by a key function (GenStage's
/// `PartitionDispatcher`); each partition has one subscriber.
///
/// The stage emits only once every subscribed partition has asked (so output
/// leaves in even batches instead of trickling out for the first asker), and
/// only as many events as fit even if they all land in one partition —
/// `min over p of (demand_p + free_p)`. Each partition's bounded buffer
/// absorbs uneven keys; it never overflows and nothing is ever dropped. A
/// partition that falls behind holds the producer back instead, as the
/// slowest subscriber does under broadcast.
pub struct PartitionDispatcher<T, K> {
    key: K,
    capacity: usize,
    parts: Vec<Partition<T>>,
    /// `partitions - 1` when the count is a power of two: the index is then
    /// a mask, not a division, on the per-event path.
    mask: Option<usize>,
}

struct Partition<T> {
    sub: Option<SubscriptionId>,
    pending: usize,
    buffer: VecDeque<T>,
    /// Scratch for `dispatch`: this partition's outgoing batch, and how
    /// many events it may take now. Kept here so the per-event path is one
    /// index, one comparison and one push.
    batch: Vec<T>,
    room: usize,
}

impl<T, K> fmt::Debug for PartitionDispatcher<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionDispatcher")
            .field("capacity", &self.capacity)
            .field(
                "partitions",
                &self
                    .parts
                    .iter()
                    .map(|p| (p.sub, p.pending, p.buffer.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<T, K: Fn(&T) -> usize> PartitionDispatcher<T, K> {
    /// `partitions` partitions (at least 1), each with a buffer of
    /// `capacity` events (at least 1).
    pub fn new(partitions: usize, capacity: usize, key: K) -> Self {
        let partitions = partitions.max(1);
        PartitionDispatcher {
            key,
            capacity: capacity.max(1),
            parts: (0..partitions)
                .map(|_| Partition {
                    sub: None,
                    pending: 0,
                    buffer: VecDeque::new(),
                    batch: Vec::new(),
                    room: 0,
                })
                .collect(),
            mask: partitions.is_power_of_two().then_some(partitions - 1),
        }
    }

    #[inline]
    fn index(&self, event: &T) -> usize {
        let k = (self.key)(event);
        match self.mask {
            Some(m) => k & m,
            None => k % self.parts.len(),
        }
    }

    fn find(&mut self, sub: SubscriptionId) -> Result<&mut Partition<T>, DispatchError> {
        self.parts
            .iter_mut()
            .find(|p| p.sub == Some(sub))
            .ok_or(DispatchError::UnknownSubscription(sub))
    }

    fn flush_partition(p: &mut Partition<T>, out: &mut Decisions<T>)
    where
        T: Send,
    {
        if let Some(sub) = p.sub {
            let n = p.pending.min(p.buffer.len());
            if n > 0 {
                p.pending -= n;
                out.push((sub, p.buffer.drain(..n).collect()));
            }
        }
    }
}

/// One event into its partition: the outgoing batch while it has room,
/// else the partition's buffer.
#[inline(always)]
fn route<T>(event: T, batch: &mut Vec<T>, room: usize, buffer: &mut VecDeque<T>) {
    if batch.len() < room {
        batch.push(event);
    } else {
        buffer.push_back(event);
    }
}

impl<T: Send + 'static, K: Fn(&T) -> usize + Send + 'static> Dispatcher<T>
    for PartitionDispatcher<T, K>
{
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        spec: SubscriberSpec<T>,
    ) -> Result<(), DispatchError> {
        let partitions = self.parts.len();
        if self.parts.iter().any(|p| p.sub == Some(sub)) {
            return Err(DispatchError::AlreadySubscribed(sub));
        }
        let i = spec
            .partition
            .filter(|&i| i < partitions)
            .ok_or(DispatchError::BadPartition {
                partition: spec.partition,
                partitions,
            })?;
        if self.parts[i].sub.is_some() {
            return Err(DispatchError::PartitionTaken(i));
        }
        self.parts[i].sub = Some(sub);
        Ok(())
    }

    fn cancel(&mut self, sub: SubscriptionId) -> Result<usize, DispatchError> {
        let p = self.find(sub)?;
        p.sub = None;
        p.pending = 0;
        Ok(std::mem::take(&mut p.buffer).len())
    }

    fn ask(&mut self, sub: SubscriptionId, n: usize) -> Result<(), DispatchError> {
        if n == 0 {
            return Err(DispatchError::AskZero(sub));
        }
        let p = self.find(sub)?;
        p.pending = p.pending.saturating_add(n);
        Ok(())
    }

    fn demand(&self) -> usize {
        let total = self
            .parts
            .iter()
            .fold(0usize, |acc, p| acc.saturating_add(p.pending));
        let safe = self
            .parts
            .iter()
            .map(|p| {
                p.pending
                    .saturating_add(self.capacity.saturating_sub(p.buffer.len()))
            })
            .min()
            .unwrap_or(0);
        // Wait until every subscribed partition has asked: producing for the
        // first ask alone splits output into small batches and parks half of
        // it in the other partitions' buffers. The bound above still holds.
        let all_asked = self.parts.iter().all(|p| p.sub.is_none() || p.pending > 0);
        if all_asked {
            total.min(safe)
        } else {
            0
        }
    }

    fn dispatch(&mut self, events: Vec<T>, out: &mut Decisions<T>) {
        let n = self.parts.len();
        // Batches are built per partition, then emitted in partition order:
        // the order *within* each partition is the producer's order.
        let guess = events.len() / n + events.len() / 8 + 1;
        // How many events each partition can take now is computed once;
        // the rest wait in its buffer.
        for p in &mut self.parts {
            p.room = if p.buffer.is_empty() && p.sub.is_some() {
                p.pending
            } else {
                0
            };
            if p.room > 0 {
                p.batch = Vec::with_capacity(guess.min(p.room));
            }
        }
        if let [a, b] = &mut self.parts[..] {
            // Two partitions (the common case): the batches live in locals,
            // so their lengths stay in registers instead of making every
            // event a load and a store through the partition table.
            let (mut batch_a, mut batch_b) =
                (std::mem::take(&mut a.batch), std::mem::take(&mut b.batch));
            let (room_a, room_b) = (a.room, b.room);
            let key = &self.key;
            for e in events {
                // `index` for two partitions: the key's lowest bit.
                if key(&e) & 1 == 0 {
                    route(e, &mut batch_a, room_a, &mut a.buffer);
                } else {
                    route(e, &mut batch_b, room_b, &mut b.buffer);
                }
            }
            a.batch = batch_a;
            b.batch = batch_b;
        } else {
            for e in events {
                let i = self.index(&e);
                let p = &mut self.parts[i];
                route(e, &mut p.batch, p.room, &mut p.buffer);
            }
        }
        for p in &mut self.parts {
            let batch = std::mem::take(&mut p.batch);
            if let (Some(sub), false) = (p.sub, batch.is_empty()) {
                p.pending -= batch.len();
                out.push((sub, batch));
            }
        }
    }

    fn flush(&mut self, out: &mut Decisions<T>) {
        for p in &mut self.parts {
            Self::flush_partition(p, out);
        }
    }

    fn buffered(&self) -> usize {
        self.parts.iter().map(|p| p.buffer.len()).sum()
    }

    fn subscribers(&self) -> usize {
        self.parts.iter().filter(|p| p.sub.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SubscriptionId = SubscriptionId(1);
    const B: SubscriptionId = SubscriptionId(2);

    fn two(capacity: usize) -> PartitionDispatcher<u32, impl Fn(&u32) -> usize> {
        let mut d = PartitionDispatcher::new(2, capacity, |x: &u32| *x as usize);
        d.subscribe(
            A,
            SubscriberSpec {
                partition: Some(0),
                selector: None,
            },
        )
        .unwrap();
        d.subscribe(
            B,
            SubscriberSpec {
                partition: Some(1),
                selector: None,
            },
        )
        .unwrap();
        d
    }

    #[test]
    fn routes_by_key_keeping_order_per_partition() {
        let mut d = two(10);
        d.ask(A, 10).unwrap();
        d.ask(B, 10).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 2, 3, 4, 5], &mut out);
        assert_eq!(out, vec![(A, vec![2, 4]), (B, vec![1, 3, 5])]);
    }

    /// Every partition count (the two-partition path and the general one):
    /// what fits the partition's demand goes out in order, the rest waits
    /// in its buffer, in order.
    #[test]
    fn each_partition_gets_its_events_in_order_up_to_its_demand() {
        for n in 1..=5usize {
            let mut d = PartitionDispatcher::new(n, 100, |x: &u32| *x as usize);
            for i in 0..n {
                let spec = SubscriberSpec {
                    partition: Some(i),
                    selector: None,
                };
                d.subscribe(SubscriptionId(i as u64), spec).unwrap();
                // Partition i may take 3 + i events now.
                d.ask(SubscriptionId(i as u64), 3 + i).unwrap();
            }
            let mut out = vec![];
            d.dispatch((0..40).collect(), &mut out);
            for i in 0..n {
                let mine: Vec<u32> = (0..40).filter(|x| *x as usize % n == i).collect();
                let sent = out
                    .iter()
                    .find(|(s, _)| *s == SubscriptionId(i as u64))
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                let take = (3 + i).min(mine.len());
                assert_eq!(sent, mine[..take], "partitions {n}, partition {i}");
                let waiting: Vec<u32> = d.parts[i].buffer.iter().copied().collect();
                assert_eq!(waiting, mine[take..], "partitions {n}, partition {i}");
            }
        }
    }

    #[test]
    fn the_producer_waits_until_every_partition_has_asked() {
        let mut d = two(3);
        d.ask(A, 5).unwrap();
        assert_eq!(d.demand(), 0);
        d.ask(B, 1).unwrap();
        assert_eq!(d.demand(), 4); // partition 1: 1 asked + 3 free
    }

    #[test]
    fn demand_is_bounded_so_no_partition_buffer_overflows() {
        let mut d = two(3);
        d.ask(A, 5).unwrap();
        d.ask(B, 1).unwrap();
        let mut out = vec![];
        // Uneven keys: every event lands in partition 1.
        d.dispatch(vec![1, 3, 5, 7], &mut out);
        assert_eq!(out, vec![(B, vec![1])]);
        assert_eq!(d.buffered(), 3);
        assert_eq!(d.demand(), 0);
        out.clear();
        d.ask(B, 2).unwrap();
        d.flush(&mut out);
        assert_eq!(out, vec![(B, vec![3, 5])]);
        assert_eq!(d.buffered(), 1);
        assert_eq!(d.demand(), 0); // partition 1 has asked nothing new
        d.ask(B, 5).unwrap();
        d.flush(&mut out);
        assert_eq!(d.buffered(), 0);
        // total 5 + 4 = 9, but all in partition 1 fits only 4 + 3.
        assert_eq!(d.demand(), 7);
    }

    #[test]
    fn genstage_partition_options_are_checked() {
        let mut d = PartitionDispatcher::new(2, 4, |x: &u32| *x as usize);
        assert_eq!(
            d.subscribe(A, SubscriberSpec::default()),
            Err(DispatchError::BadPartition {
                partition: None,
                partitions: 2
            })
        );
        assert_eq!(
            d.subscribe(
                A,
                SubscriberSpec {
                    partition: Some(2),
                    selector: None
                }
            ),
            Err(DispatchError::BadPartition {
                partition: Some(2),
                partitions: 2
            })
        );
        d.subscribe(
            A,
            SubscriberSpec {
                partition: Some(0),
                selector: None,
            },
        )
        .unwrap();
        assert_eq!(
            d.subscribe(
                B,
                SubscriberSpec {
                    partition: Some(0),
                    selector: None
                }
            ),
            Err(DispatchError::PartitionTaken(0))
        );
    }

    #[test]
    fn cancel_reports_buffered_events_of_that_partition() {
        let mut d = two(4);
        d.ask(A, 4).unwrap();
        let mut out = vec![];
        d.dispatch(vec![1, 3], &mut out);
        assert_eq!(d.cancel(B), Ok(2));
        assert_eq!(d.buffered(), 0);
    }
}
