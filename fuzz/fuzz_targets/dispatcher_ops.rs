//! Operation sequences against each dispatcher, checked against a naive
//! model: never more delivered than asked, each subscriber's events in
//! emission order, nothing dropped (every event delivered, buffered or
//! reported abandoned on cancel), demand conserved across cancel, and
//! protocol errors typed (ask 0, unknown subscriber, duplicates).
#![no_main]

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use demandflow::dispatcher::{
    BroadcastDispatcher, DemandDispatcher, DispatchError, Dispatcher, PartitionDispatcher,
    SubscriberSpec, SubscriptionId,
};
use libfuzzer_sys::fuzz_target;

const PARTITIONS: usize = 3;
const CAPACITY: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Demand,
    Broadcast,
    Partition,
}

#[derive(Default)]
struct Sub {
    pending: usize,
    last: Option<u64>,
    partition: Option<usize>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, ops)) = data.split_first() else {
        return;
    };
    let kind = match first % 3 {
        0 => Kind::Demand,
        1 => Kind::Broadcast,
        _ => Kind::Partition,
    };
    let mut d: Box<dyn Dispatcher<u64>> = match kind {
        Kind::Demand => Box::new(DemandDispatcher::new()),
        Kind::Broadcast => Box::new(BroadcastDispatcher::new()),
        Kind::Partition => Box::new(PartitionDispatcher::new(PARTITIONS, CAPACITY, |x: &u64| {
            *x as usize
        })),
    };
    let mut subs: BTreeMap<u64, Sub> = BTreeMap::new();
    let mut taken = [false; PARTITIONS];
    let mut next_event = 0u64;
    let mut abandoned = 0usize;
    let mut delivered: BTreeSet<u64> = BTreeSet::new();
    let mut out = Vec::new();

    for pair in ops.chunks(2) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        let sub = SubscriptionId(u64::from(arg % 6));
        match op % 6 {
            0 => {
                let partition = (kind == Kind::Partition).then_some(arg as usize % 4);
                let r = d.subscribe(
                    sub,
                    SubscriberSpec {
                        partition,
                        selector: None,
                    },
                );
                match subs.entry(sub.0) {
                    Entry::Occupied(_) => {
                        assert_eq!(r, Err(DispatchError::AlreadySubscribed(sub)));
                    }
                    Entry::Vacant(vacant) => match partition {
                        Some(p) => match r {
                            Ok(()) => {
                                assert!(p < PARTITIONS && !taken[p]);
                                taken[p] = true;
                                vacant.insert(Sub {
                                    partition: Some(p),
                                    ..Sub::default()
                                });
                            }
                            Err(_) => assert!(p >= PARTITIONS || taken[p]),
                        },
                        None => {
                            assert_eq!(r, Ok(()));
                            vacant.insert(Sub::default());
                        }
                    },
                }
            }
            1 => {
                let r = d.cancel(sub);
                match subs.remove(&sub.0) {
                    Some(s) => {
                        if let Some(p) = s.partition {
                            taken[p] = false;
                        }
                        abandoned += r.expect("known subscriber");
                    }
                    None => assert_eq!(r, Err(DispatchError::UnknownSubscription(sub))),
                }
            }
            2 | 3 => {
                let n = (pair[0] as usize / 6) % 9; // sometimes 0
                let r = d.ask(sub, n);
                match subs.get_mut(&sub.0) {
                    _ if n == 0 => assert_eq!(r, Err(DispatchError::AskZero(sub))),
                    Some(s) => {
                        assert_eq!(r, Ok(()));
                        s.pending += n;
                    }
                    None => assert_eq!(r, Err(DispatchError::UnknownSubscription(sub))),
                }
            }
            4 => {
                // Emit within demand (as the engine does) or beyond it (a
                // producer that over-emits).
                let k = arg as usize % 12;
                let within = op & 0x80 == 0;
                let k = if within { k.min(d.demand()) } else { k };
                let before = d.buffered();
                let events: Vec<u64> = (next_event..next_event + k as u64).collect();
                next_event += k as u64;
                d.dispatch(events, &mut out);
                if within && before == 0 && kind != Kind::Partition {
                    assert_eq!(d.buffered(), 0, "emitting within demand buffered events");
                }
            }
            _ => d.flush(&mut out),
        }
        for (id, batch) in out.drain(..) {
            let s = subs
                .get_mut(&id.0)
                .expect("decision for an unknown subscriber");
            assert!(batch.len() <= s.pending, "more delivered than asked");
            s.pending -= batch.len();
            for e in batch {
                assert!(s.last.is_none_or(|l| e > l), "order not kept");
                s.last = Some(e);
                if let Some(p) = s.partition {
                    assert_eq!(e as usize % PARTITIONS, p, "wrong partition");
                }
                let fresh = delivered.insert(e);
                assert!(fresh || kind == Kind::Broadcast, "event delivered twice");
            }
        }
        assert_eq!(d.subscribers(), subs.len());
        assert_eq!(
            delivered.len() + d.buffered() + abandoned,
            next_event as usize,
            "an event was dropped or invented"
        );
    }
});
