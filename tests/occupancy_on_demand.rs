//! Occupancy is sampled only while someone watches it (docs/observability.md):
//! a pipeline nobody reads costs no sampler wake-ups, the first read of
//! `stats()` starts the sampling (and shows no time yet), and later reads
//! show the time since. Its own test binary: a read of `stats()` anywhere
//! in the process starts the sampling for every pipeline in it.
//!
//! Without the `metrics` feature only: with it, every pipeline's metrics
//! publisher reads occupancy each second, so it is always sampled. CI runs
//! this file without features as a step of its own.
#![cfg(not(feature = "metrics"))]

use std::time::Duration;

use demandflow::{sink, source, Pipeline, Subscribe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_is_sampled_from_the_first_read_on() {
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    p.consumer("sink", sink::drain())
        .subscribe(&numbers, Subscribe::max_demand(8));
    let run = p.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Nobody watched: no time was credited to any state.
    let first = run.stats().stage("sink").unwrap().occupancy;
    assert_eq!(
        first.busy + first.backpressured + first.idle,
        0.0,
        "{first:?}"
    );

    // From the first read on, the stage's time is sampled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = run.stats().stage("sink").unwrap().occupancy;
    let sum = later.busy + later.backpressured + later.idle;
    assert!((sum - 1.0).abs() < 1e-6, "{later:?}");
    run.cancel();
    let _ = run.join().await;
}
