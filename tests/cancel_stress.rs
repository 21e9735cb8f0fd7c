//! A cancelled or dropped pipeline always stops (D5), and its deadline holds
//! for as long as any stage lives (D6): thousands of spawn → cancel → join and
//! spawn → drop cycles on a multi-thread runtime, each with its own guard.
//!
//! Before the cancellation tree marked children before their parent, about 1
//! run in 40,000–100,000 of this shape never stopped: the watcher saw the root
//! cancelled, woke each stage once and exited, and a stage that looked at its
//! own scope before it was marked parked for good. The interleaving itself is
//! model-checked in `src/cancel/tests/loom_cancel.rs`; this test is the
//! end-to-end guard over the real runtime.

use std::time::Duration;

use demandflow::{
    pipeline::PipelineWatch, sink, source, stage, CancelCause, Pipeline, Status, Subscribe,
};
use futures::StreamExt;

/// Cycles in all; half cancel and join, half drop the handle.
const CYCLES: usize = 60_000;
/// Pipelines in flight at once, so cancels race other pipelines' work too.
const IN_FLIGHT: usize = 8;
/// Each stop gets this long; a stuck pipeline fails the test instead of
/// hanging it. Generous: the machine may be loaded.
const GUARD: Duration = Duration::from_secs(20);

/// The shape from the report: three events, then a stream that never ends,
/// through a map into a sink, `max_demand(4)`; with and without own tasks.
fn pipeline(own_tasks: bool, deadline: Option<Duration>) -> Pipeline {
    let mut p = Pipeline::new();
    let events = futures::stream::iter(0..3u64).chain(futures::stream::pending());
    let mut src = p.add_producer("src", source::from_stream(events));
    if own_tasks {
        src = src.own_task();
    }
    let src = src.build();
    let mut map = p.processor("map", stage::map(|x: u64| x + 1));
    if own_tasks {
        map = map.own_task();
    }
    let map = map.subscribe(&src, Subscribe::max_demand(4));
    let mut sink = p.consumer("sink", sink::drain());
    if own_tasks {
        sink = sink.own_task();
    }
    sink.subscribe(&map, Subscribe::max_demand(4));
    if let Some(d) = deadline {
        p = p.timeout(d);
    }
    p
}

/// Most cycles stop a pipeline whose stages have handled the three events
/// and parked (the report's case); one in four races the stop with the
/// start instead.
async fn settle(i: usize, watch: &PipelineWatch) {
    if i % 4 == 3 {
        return;
    }
    for _ in 0..1_000 {
        if watch
            .stats()
            .stage("sink")
            .is_some_and(|s| s.processed == 3)
        {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// One cycle; `Err` says which cycle did not stop and how.
async fn cycle(i: usize) -> Result<(), String> {
    let own_tasks = i % 8 >= 4;
    match i % 2 {
        0 => {
            let handle = pipeline(own_tasks, None)
                .spawn()
                .map_err(|e| e.to_string())?;
            settle(i, &handle.watch()).await;
            handle.cancel();
            let err = tokio::time::timeout(GUARD, handle.join())
                .await
                .map_err(|_| format!("cycle {i}: join did not return after cancel"))?
                .expect_err("a cancelled endless pipeline cannot complete");
            match &err.report().status {
                Status::Cancelled(CancelCause::User) => Ok(()),
                other => Err(format!("cycle {i}: status {other:?} after cancel")),
            }
        }
        _ => {
            let handle = pipeline(own_tasks, None)
                .spawn()
                .map_err(|e| e.to_string())?;
            let watch = handle.watch();
            settle(i, &watch).await;
            drop(handle);
            tokio::time::timeout(GUARD, watch.stopped())
                .await
                .map_err(|_| {
                    format!(
                        "cycle {i}: {} stage(s) still running after the handle was dropped",
                        watch.live_stages()
                    )
                })?;
            match watch.stats().cancel_cause {
                Some(CancelCause::OwnerDropped) => Ok(()),
                other => Err(format!("cycle {i}: cause {other:?} after drop")),
            }
        }
    }
}

/// Runs `count` cycles, `IN_FLIGHT` at a time, on a two-worker runtime;
/// returns what went wrong in the cycles that failed.
fn run_all<F, Fut>(count: usize, cycle: F) -> Vec<String>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        futures::stream::iter(0..count)
            .map(|i| tokio::spawn(cycle(i)))
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|r| async move {
                match r {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(format!("cycle task panicked: {e}")),
                }
            })
            .collect()
            .await
    })
}

#[test]
fn every_cancelled_or_dropped_pipeline_stops() {
    let failures = run_all(CYCLES, cycle);
    assert!(
        failures.is_empty(),
        "{} of {CYCLES} pipelines did not stop as they should: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}

/// The deadline of a pipeline whose stages never end by themselves ends it,
/// with the deadline as its cause, many times over and racing other runs.
#[test]
fn every_endless_pipeline_ends_at_its_deadline() {
    let failures = run_all(500, |i| async move {
        let handle = pipeline(i % 2 == 1, Some(Duration::from_millis(1)))
            .spawn()
            .map_err(|e| e.to_string())?;
        let err = tokio::time::timeout(GUARD, handle.join())
            .await
            .map_err(|_| format!("run {i}: did not end at its deadline"))?
            .expect_err("an endless pipeline cannot complete");
        match &err.report().status {
            Status::DeadlineExceeded => Ok(()),
            other => Err(format!("run {i}: status {other:?}")),
        }
    });
    assert!(failures.is_empty(), "{failures:?}");
}
