//! The subscriber's demand arithmetic (`SubscriberDemand`) driven by an
//! arbitrary producer, checked by the testkit's `Monitor` and a naive
//! model: never more delivered than asked, outstanding demand between
//! `min_demand` and `max_demand` after each handled chunk, chunks no larger
//! than `max - min`, nothing buffered beyond `max_demand`, order kept, and
//! demand never forgotten (a subscriber that handled everything always
//! has demand outstanding).
#![no_main]

use std::collections::VecDeque;

use demandflow::testkit::{Monitor, Sequence};
use demandflow::{DemandLimits, SubscriberDemand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, ops @ ..] = data else { return };
    let max = usize::from(*a % 64) + 1;
    let min = usize::from(*b) % max;
    let limits = DemandLimits::new(max, min).expect("valid by construction");
    let mut d = SubscriberDemand::new(limits);
    let mut m = Monitor::new("fuzz")
        .with_bound(max)
        .with_sequence(Sequence::Consecutive);
    let mut granted = 0u64;
    let mut sent = 0u64;
    let mut queue: VecDeque<u64> = VecDeque::new();

    let first = d.initial_ask();
    assert_eq!(first, max);
    m.ask(first);
    granted += first as u64;

    for &op in ops {
        let n = usize::from(op >> 1);
        if op & 1 == 0 {
            // The producer sends up to n of what is outstanding.
            let k = (n as u64).min(granted - sent);
            if k > 0 {
                m.deliver(k as usize);
                queue.extend(sent..sent + k);
                sent += k;
            }
        } else if !queue.is_empty() {
            // The subscriber handles one chunk.
            let c = d.chunk(queue.len());
            assert!(c >= 1 && c <= limits.batch_size());
            m.take(c);
            for _ in 0..c {
                let e = queue.pop_front().expect("chunk within queue");
                m.event(e, || e.to_string());
            }
            let ask = d.handled(c);
            if ask > 0 {
                m.ask(ask);
                granted += ask as u64;
            }
            assert!(d.outstanding() <= max);
            assert!(d.outstanding() > min, "demand not topped up");
            // Model: outstanding = granted - handled.
            let handled = sent - queue.len() as u64;
            assert_eq!(d.outstanding() as u64, granted - handled);
        }
        if let Some(v) = m.violation() {
            panic!("{v}");
        }
    }
    if queue.is_empty() {
        // Everything handled: demand must be outstanding (D4).
        m.quiescent();
        if granted > sent {
            assert!(m.violation().is_none());
        }
    }
});
