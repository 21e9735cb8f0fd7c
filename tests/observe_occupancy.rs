//! Backpressure, measured (issue 14, item 3): `stats()` tells, per stage,
//! which share of the last seconds it was busy in a handler, backpressured
//! (blocked on downstream demand) or idle (waiting for input).
//!
//! The thresholds are generous (a loaded 2-core machine): each test builds
//! a pipeline where one state clearly dominates and checks it is above
//! one half.

use std::time::Duration;

use demandflow::{
    sink, source, stage, BoxError, Consumer, Context, Emitter, Flow, Occupancy, Pipeline,
    PipelineHandle, Producer, Stats, Subscribe,
};

/// How long each pipeline runs, watched, before its stats are read.
const RUN: Duration = Duration::from_millis(1500);

/// Reads `stats()` now, which starts the sampling of occupancy, as a
/// dashboard's first read does, and again after `run`.
async fn watched_for(run: Duration, handle: &PipelineHandle) -> Stats {
    let _ = handle.stats();
    tokio::time::sleep(run).await;
    handle.stats()
}

/// Sleeps for every event: far slower than any producer.
#[derive(Clone)]
struct Slow;

impl Consumer<u64> for Slow {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        for _ in events {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// Never emits anything and never ends: it has nothing now.
#[derive(Clone)]
struct Dry;

impl Producer<u64> for Dry {
    async fn produce(
        &mut self,
        _demand: usize,
        _out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        Ok(Flow::Continue)
    }
}

/// Takes what comes (which is nothing: it never asks, or nothing is sent).
#[derive(Clone)]
struct Quiet;

impl Consumer<u64> for Quiet {
    async fn consume(&mut self, _events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

fn occupancy(stats: &Stats, stage: &str) -> Occupancy {
    let o = stats.stage(stage).expect("stage in stats").occupancy;
    let sum = o.busy + o.backpressured + o.idle;
    assert!((sum - 1.0).abs() < 1e-6, "{stage}: {o:?} sums to {sum}");
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_busy_and_its_producer_backpressured() {
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    p.consumer("slow", Slow)
        .subscribe(&numbers, Subscribe::max_demand(4));
    let run = p.spawn().unwrap();
    let stats = watched_for(RUN, &run).await;
    let producer = occupancy(&stats, "numbers");
    let consumer = occupancy(&stats, "slow");
    assert!(producer.backpressured > 0.5, "numbers: {producer:?}");
    assert!(consumer.busy > 0.5, "slow: {consumer:?}");
    run.cancel();
    let _ = run.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_starved_of_demand_is_backpressured() {
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    // Manual demand, and the consumer never asks.
    p.consumer("never_asks", Quiet)
        .subscribe(&numbers, Subscribe::new().manual());
    let run = p.spawn().unwrap();
    let stats = watched_for(RUN, &run).await;
    let producer = occupancy(&stats, "numbers");
    let consumer = occupancy(&stats, "never_asks");
    assert!(producer.backpressured > 0.5, "numbers: {producer:?}");
    assert!(consumer.idle > 0.5, "never_asks: {consumer:?}");
    run.cancel();
    let _ = run.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_input_is_idle() {
    let mut p = Pipeline::new();
    let nothing = p.producer("dry", Dry);
    p.consumer("waiting", Quiet)
        .subscribe(&nothing, Subscribe::max_demand(8));
    let run = p.spawn().unwrap();
    let stats = watched_for(RUN, &run).await;
    let producer = occupancy(&stats, "dry");
    let consumer = occupancy(&stats, "waiting");
    assert!(consumer.idle > 0.5, "waiting: {consumer:?}");
    // A producer with nothing to give waits for its source, not for demand.
    assert!(producer.idle > 0.5, "dry: {producer:?}");
    run.cancel();
    let _ = run.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_of_a_concurrent_stage_is_measured() {
    // Each instance of a concurrent stage has its own occupancy, under its
    // own name.
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    p.consumer("slow", Slow)
        .concurrency(2)
        .subscribe(&numbers, Subscribe::max_demand(4));
    let run = p.spawn().unwrap();
    let stats = watched_for(RUN, &run).await;
    for name in ["slow[0]", "slow[1]"] {
        let o = occupancy(&stats, name);
        assert!(o.busy > 0.5, "{name}: {o:?}");
    }
    run.cancel();
    let _ = run.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_stage_in_front_of_a_slow_one_is_backpressured() {
    // `double` and `slow` form a straight chain, which runs in one task:
    // while `slow` runs on the worker `double` handed it (here blocking it,
    // as CPU-bound work does), `double` waits on downstream.
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    let doubled = p
        .processor("double", stage::map(|x: u64| x * 2))
        .subscribe(&numbers, Subscribe::max_demand(4));
    let blocking = sink::for_each(|_: u64| std::thread::sleep(Duration::from_millis(2)));
    p.consumer("slow", blocking)
        .subscribe(&doubled, Subscribe::max_demand(4));
    let run = p.spawn().unwrap();
    let stats = watched_for(RUN, &run).await;
    let double = occupancy(&stats, "double");
    assert!(double.backpressured > 0.5, "double: {double:?}");
    assert!(occupancy(&stats, "slow").busy > 0.5);
    run.cancel();
    let _ = run.join().await;
}
