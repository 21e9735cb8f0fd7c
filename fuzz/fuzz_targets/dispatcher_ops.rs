//! Operation sequences against each dispatcher, checked against a naive
//! model: never more delivered than asked, each subscriber's events in
//! emission order, nothing dropped (every event delivered, buffered or
//! reported abandoned on cancel), demand conserved across cancel, and
//! protocol errors typed (ask 0, unknown subscriber, duplicates). Batches
//! go through `route_whole` (the one-subscriber fast path) or `dispatch`,
//! under the same checks.
//!
//! Broadcast subscribers get random selectors. There the model is exact:
//! the dispatcher's buffer is always the newest `buffered()` events, so the
//! events that left it in one operation are known, and every subscriber
//! must receive exactly those its selector keeps. Only what a subscriber
//! receives uses its demand (a discarded event is asked again on its
//! behalf), so with nothing buffered the stage may emit the least pending
//! demand (broadcast) or the sum of them (demand dispatcher): no demand is
//! forgotten.
#![no_main]

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use demandflow::dispatcher::{
    BroadcastDispatcher, DemandDispatcher, DispatchError, Dispatcher, PartitionDispatcher,
    Selector, SubscriberSpec, SubscriptionId,
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
    /// The broadcast selector's rule, as the model applies it.
    keep: Option<Rule>,
}

/// A selector's rule on an event.
type Rule = fn(u64) -> bool;

/// Broadcast selectors, chosen by an op's argument.
const SELECTORS: [Option<Rule>; 4] = [
    None,
    Some(|x| x % 2 == 0),
    Some(|x| x % 3 != 1),
    Some(|_| false),
];

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
    // Broadcast: events below this have left the dispatcher (sent or
    // abandoned).
    let mut left = 0u64;
    let mut out = Vec::new();

    for pair in ops.chunks(2) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        let sub = SubscriptionId(u64::from(arg % 6));
        match op % 6 {
            0 => {
                let partition = (kind == Kind::Partition).then_some(arg as usize % 4);
                let keep = match kind {
                    Kind::Broadcast => SELECTORS[(arg as usize / 6) % SELECTORS.len()],
                    _ => None,
                };
                let r = d.subscribe(
                    sub,
                    SubscriberSpec {
                        partition,
                        selector: keep.map(|k| Arc::new(move |x: &u64| k(*x)) as Selector<u64>),
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
                            vacant.insert(Sub {
                                keep,
                                ..Sub::default()
                            });
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
                        let r = r.expect("known subscriber");
                        if kind == Kind::Broadcast && r > 0 {
                            // The last subscriber left: the whole buffer,
                            // the newest events, goes with it.
                            assert!(subs.is_empty(), "abandoned with subscribers left");
                            assert_eq!(left + r as u64, next_event, "abandoned not the buffer");
                            left = next_event;
                        }
                        abandoned += r;
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
                // Half the time through the one-subscriber fast path, as
                // the engine's `Outputs::emit` tries it first: the same
                // checks below hold whichever way a batch went.
                let routed = if op & 0x40 == 0 {
                    d.route_whole(events.len())
                } else {
                    None
                };
                match routed {
                    Some(id) => out.push((id, events)),
                    None => d.dispatch(events, &mut out),
                }
                if within && before == 0 && kind != Kind::Partition {
                    assert_eq!(d.buffered(), 0, "emitting within demand buffered events");
                }
            }
            _ => d.flush(&mut out),
        }
        let mut got: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (id, batch) in out.drain(..) {
            got.entry(id.0).or_default().extend(&batch);
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
        if kind == Kind::Broadcast {
            let now = next_event - d.buffered() as u64;
            assert!(now >= left, "an event went back into the buffer");
            for (id, s) in &subs {
                let expected: Vec<u64> = (left..now)
                    .filter(|&e| s.keep.is_none_or(|k| k(e)))
                    .collect();
                let got = got.remove(id).unwrap_or_default();
                assert_eq!(got, expected, "subscriber {id} did not get what it selects");
            }
            left = now;
        }
        let pending = subs.values().map(|s| s.pending);
        if d.buffered() == 0 {
            match kind {
                Kind::Broadcast => {
                    assert_eq!(d.demand(), pending.min().unwrap_or(0), "demand forgotten");
                }
                Kind::Demand => {
                    let sum = pending.fold(0usize, usize::saturating_add);
                    assert_eq!(d.demand(), sum, "not the sum of pending demand");
                }
                Kind::Partition => {}
            }
        }
        assert_eq!(d.subscribers(), subs.len());
        // Under broadcast an event a selector discards is sent and received
        // by nobody; the exact check above accounts for every event there.
        if kind != Kind::Broadcast {
            assert_eq!(
                delivered.len() + d.buffered() + abandoned,
                next_event as usize,
                "an event was dropped or invented"
            );
        }
    }
});
