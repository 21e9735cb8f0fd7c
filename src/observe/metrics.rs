//! Metrics through the `metrics` facade (feature `metrics`): a task per
//! pipeline publishes the live counters every [`PUBLISH_EVERY`] and once
//! more when the last stage has ended. Nothing is recorded per event: the
//! counters the engine keeps anyway are copied (`Counter::absolute`,
//! `Gauge::set`); only the handler-time histogram is recorded per handler
//! call (a batch), in `runtime::driver`.
//!
//! The names and labels are listed in `docs/observability.md`, and
//! `tests/observe_metrics.rs` checks that list against what is published.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Histogram, Label};

use crate::runtime::shared::{EdgeStat, PipelineShared, StageShared};

/// How often the counters are published.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);

const STATES: [&str; 3] = ["busy", "backpressured", "idle"];

fn stage_labels(pipeline: &str, stage: &str) -> Vec<Label> {
    vec![
        Label::new("pipeline", pipeline.to_owned()),
        Label::new("stage", stage.to_owned()),
    ]
}

/// The handler-time histogram of a stage.
pub(crate) fn handler_seconds(pipeline: &str, stage: &str) -> Histogram {
    histogram!(
        "demandflow_stage_handler_seconds",
        stage_labels(pipeline, stage)
    )
}

fn publish_stage(pipeline: &str, s: &StageShared) {
    let labels = stage_labels(pipeline, &s.name);
    let c = &s.counters;
    let counters = [
        ("demandflow_stage_events_received_total", &c.received),
        ("demandflow_stage_events_emitted_total", &c.emitted),
        ("demandflow_stage_events_processed_total", &c.processed),
        (
            "demandflow_stage_events_dead_lettered_total",
            &c.dead_lettered,
        ),
        ("demandflow_stage_events_dropped_total", &c.dropped),
        ("demandflow_stage_events_abandoned_total", &c.abandoned),
        ("demandflow_stage_restarts_total", &c.restarts),
    ];
    for (name, value) in counters {
        counter!(name, labels.clone()).absolute(value.load(Ordering::Relaxed));
    }
    let totals = s.meter.totals();
    let occupancy = s.meter.occupancy();
    let ratios = [occupancy.busy, occupancy.backpressured, occupancy.idle];
    for (i, state) in STATES.into_iter().enumerate() {
        let mut l = labels.clone();
        l.push(Label::new("state", state));
        // A gauge: the facade's counters are integers, and these are
        // seconds. It only grows, so `rate()` applies as to a counter.
        gauge!("demandflow_stage_state_seconds_total", l.clone()).set(totals[i] as f64 / 1e9);
        gauge!("demandflow_stage_occupancy_ratio", l).set(ratios[i]);
    }
}

fn publish_edge(pipeline: &str, e: &EdgeStat) {
    let snap = (e.snapshot)();
    let labels = vec![
        Label::new("pipeline", pipeline.to_owned()),
        Label::new("from", e.from.to_string()),
        Label::new("to", e.to.to_string()),
    ];
    gauge!("demandflow_edge_demand_pending", labels.clone())
        .set(snap.granted.saturating_sub(snap.delivered) as f64);
    gauge!("demandflow_edge_events_buffered", labels.clone()).set(snap.buffered as f64);
    counter!("demandflow_edge_events_delivered_total", labels.clone()).absolute(snap.delivered);
    counter!("demandflow_edge_batches_sent_total", labels).absolute(snap.batches);
}

/// Publishes every stage's and edge's counters once.
pub(crate) fn publish(shared: &PipelineShared) {
    let name = &*shared.name;
    for s in &shared.stages {
        publish_stage(name, s);
    }
    for e in &shared.edges {
        publish_edge(name, e);
    }
    let late = &shared.late;
    for s in late.stages.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        publish_stage(name, &s.shared);
    }
    for e in late.edges.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        publish_edge(name, e);
    }
}

/// The publishing task: runs until every stage task has ended, then
/// publishes the final counters.
pub(crate) async fn run(shared: Arc<PipelineShared>) {
    loop {
        let done = shared.all_done.notified();
        if shared.live.load(Ordering::Acquire) == 0 {
            break;
        }
        // The occupancy gauges read occupancy: keep the stages sampled
        // while they run (runtime::sampler).
        crate::runtime::sampler::watch();
        publish(&shared);
        tokio::select! {
            _ = done => {}
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
        }
    }
    publish(&shared);
}
