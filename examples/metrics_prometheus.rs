//! Runs a small pipeline with a slow consumer and prints its metrics as
//! Prometheus text (`cargo run --example metrics_prometheus --features
//! metrics`). The names and labels are listed in docs/observability.md.
//!
//! Any `metrics` exporter works the same way: install its recorder before
//! spawning the pipeline. To serve the text, mount `render()` on any HTTP
//! server (or enable the exporter's `http-listener` feature and call
//! `PrometheusBuilder::install`).

use std::time::Duration;

use demandflow::{sink, source, stage, Pipeline, Subscribe};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Runs the demo pipeline to its end and returns the rendered metrics.
async fn run(handle: &PrometheusHandle) -> String {
    let mut p = Pipeline::new().name("example");
    let numbers = p.producer("numbers", source::iter(0u64..200));
    let doubled = p
        .processor("double", stage::map(|x: u64| x * 2))
        .subscribe(&numbers, Subscribe::max_demand(10));
    p.consumer(
        "slow",
        sink::for_each(|_: u64| std::thread::sleep(Duration::from_micros(500))),
    )
    .subscribe(&doubled, Subscribe::max_demand(10));
    let run = p.spawn().expect("a valid pipeline");
    let report = run.join().await.expect("the run completes");
    assert_eq!(report.stage("slow").map(|s| s.processed), Some(200));
    handle.render()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder installed");
    print!("{}", run(&handle).await);
}
