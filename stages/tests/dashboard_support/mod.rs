//! Shared by the dashboard tests: a running pipeline with a stage made slow
//! on purpose, and its dashboard on 127.0.0.1 port 0.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use demandflow::source;
use demandflow::{
    BoxError, Consumer, Context, Emitter, Pipeline, PipelineHandle, Processor, Subscribe,
};
use demandflow_stages::dashboard::Dashboard;

/// The stages of [`slow_pipeline`], as `stats()` names them.
pub const STAGES: [&str; 4] = ["numbers", "double[0]", "double[1]", "slow_sink"];
/// The slow stage, and the stages directly upstream of it.
pub const SLOW: &str = "slow_sink";
pub const UPSTREAM_OF_SLOW: [&str; 2] = ["double[0]", "double[1]"];

/// Doubles every number: fast.
#[derive(Clone)]
struct Double;

impl Processor<u64, u64> for Double {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().map(|n| n * 2));
        Ok(())
    }
}

/// Sleeps 2 ms per event: the stage that holds the pipeline back.
#[derive(Clone)]
struct SlowSink;

impl Consumer<u64> for SlowSink {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(2) * events.len() as u32).await;
        Ok(())
    }
}

/// numbers → double (2 instances) → slow_sink, endless until cancelled.
pub fn slow_pipeline() -> PipelineHandle {
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    let doubled = p
        .processor("double", Double)
        .concurrency(2)
        .subscribe(&numbers, Subscribe::max_demand(8));
    p.consumer("slow_sink", SlowSink)
        .subscribe(&doubled, Subscribe::max_demand(4));
    p.spawn().expect("the pipeline builds")
}

/// The pipeline above and its dashboard on a free loopback port.
pub async fn serve_slow_pipeline() -> (PipelineHandle, Dashboard) {
    let run = slow_pipeline();
    let dashboard = Dashboard::builder(run.watch())
        .title("dashboard test")
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("binds a loopback port");
    (run, dashboard)
}
