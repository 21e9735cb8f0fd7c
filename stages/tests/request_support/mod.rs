//! Shared by the `request_stage*` tests: requests through a request stage
//! in a pipeline of their own.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use demandflow::{sink, Pipeline, Processor, Subscribe};
use demandflow_stages::llm::LlmRequest;

/// Runs `requests` through `stage` (its results, or its events in
/// pass-through mode) and returns everything it emitted, in order.
pub async fn run<S, Out>(stage: S, requests: Vec<LlmRequest>) -> Vec<Out>
where
    S: Processor<LlmRequest, Out> + Clone,
    Out: Clone + Send + Sync + 'static,
{
    let mut p = Pipeline::new();
    let input = p.producer("input", demandflow::source::iter(requests));
    let llm = p
        .processor("llm", stage)
        .subscribe(&input, Subscribe::default());
    let (collect, out) = sink::collect();
    p.consumer("out", collect)
        .subscribe(&llm, Subscribe::default());
    tokio::time::timeout(Duration::from_secs(120), p.spawn().unwrap().join())
        .await
        .expect("the run ends")
        .expect("the run succeeds");
    out.take()
}
