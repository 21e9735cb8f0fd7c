//! Broadcast selectors in a running pipeline (issue 10, item 3).
//!
//! A subscriber's selector discards events that subscriber never receives,
//! so it cannot ask again for them; the dispatcher asks on its behalf
//! (GenStage's `BroadcastDispatcher`). Before that, a selector subscriber
//! ran out of demand and the whole broadcast stage stalled (D4: demand
//! forgotten). Each run is bounded by a timeout, so a stall fails the test
//! instead of hanging it.

use std::time::Duration;

use demandflow::{sink, source, Dispatch, Pipeline, Subscribe};

/// Far longer than the run needs, even on a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

/// The reported case: 100 events broadcast to a plain subscriber and to one
/// keeping even events, both `max_demand(10).min_demand(5)`. It stopped
/// after 15 events, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_subscriber_does_not_stall_its_broadcast_producer() {
    let mut p = Pipeline::new();
    let src = p
        .add_producer("numbers", source::iter(0..100u64))
        .dispatch(Dispatch::broadcast())
        .build();
    let (all, all_seen) = sink::collect();
    let (even, even_seen) = sink::collect();
    p.consumer("all", all)
        .subscribe(&src, Subscribe::max_demand(10).min_demand(5));
    p.consumer("even", even)
        .selector(|x: &u64| x % 2 == 0)
        .subscribe(&src, Subscribe::max_demand(10).min_demand(5));
    let report = tokio::time::timeout(BOUND, p.spawn().unwrap().join())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "stalled: `all` got {} events, `even` got {}",
                all_seen.len(),
                even_seen.len()
            )
        })
        .unwrap();
    assert_eq!(all_seen.take(), (0..100).collect::<Vec<_>>());
    assert_eq!(
        even_seen.take(),
        (0..100).filter(|x| x % 2 == 0).collect::<Vec<_>>()
    );
    assert_eq!(report.stage("numbers").unwrap().emitted, 100);
    assert_eq!(report.stage("even").unwrap().processed, 50);
}

/// Every subscriber selective, one of them keeping nothing at all: the
/// producer still runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_that_keep_little_or_nothing_still_let_the_run_finish() {
    let mut p = Pipeline::new();
    let src = p
        .add_producer("numbers", source::iter(0..10_000u64))
        .dispatch(Dispatch::broadcast())
        .build();
    let (rare, rare_seen) = sink::collect();
    let (none, none_seen) = sink::collect();
    p.consumer("rare", rare)
        .selector(|x: &u64| x % 1000 == 7)
        .subscribe(&src, Subscribe::max_demand(4).min_demand(1));
    p.consumer("none", none)
        .selector(|_: &u64| false)
        .subscribe(&src, Subscribe::max_demand(3).min_demand(0));
    tokio::time::timeout(BOUND, p.spawn().unwrap().join())
        .await
        .unwrap_or_else(|_| panic!("stalled: `rare` got {} events", rare_seen.len()))
        .unwrap();
    assert_eq!(
        rare_seen.take(),
        (0..10_000).filter(|x| x % 1000 == 7).collect::<Vec<_>>()
    );
    assert!(none_seen.is_empty());
}
