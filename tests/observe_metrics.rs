//! Metrics (issue 14, item 2): every metric listed in
//! docs/observability.md is published, with its labels, and the counters
//! carry the run's ledger. Rendered through `metrics-exporter-prometheus`
//! with a recorder local to the test's thread (the current-thread runtime
//! runs every stage there).
#![cfg(feature = "metrics")]

use demandflow::{sink, source, stage, Pipeline, Subscribe};
use metrics_exporter_prometheus::PrometheusBuilder;

/// `(name, labels)` of each row of the metrics table in the docs.
fn documented() -> Vec<(String, Vec<String>)> {
    let doc = include_str!("../docs/observability.md");
    let rows: Vec<_> = doc
        .lines()
        .filter(|l| l.starts_with("| `demandflow_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let labels = cells[3]
                .split(',')
                .map(|s| s.trim().trim_matches('`').to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            (name, labels)
        })
        .collect();
    assert!(rows.len() >= 14, "the docs list {} metrics", rows.len());
    rows
}

#[test]
fn every_documented_metric_is_published_with_its_labels() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let text = metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut p = Pipeline::new().name("scraped");
            let numbers = p.producer("numbers", source::iter(0u64..100));
            let doubled = p
                .processor("double", stage::map(|x: u64| x * 2))
                .subscribe(&numbers, Subscribe::max_demand(10));
            p.consumer("sink", sink::drain())
                .subscribe(&doubled, Subscribe::max_demand(10));
            p.spawn().unwrap().join().await.unwrap();
        });
        handle.render()
    });
    for (name, labels) in documented() {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name}_")))
            .collect();
        assert!(!lines.is_empty(), "{name} not published in:\n{text}");
        for label in labels {
            assert!(
                lines.iter().all(|l| l.contains(&format!("{label}=\""))),
                "{name} lacks label {label}: {lines:?}"
            );
        }
        assert!(
            lines.iter().all(|l| l.contains("pipeline=\"scraped\"")),
            "{lines:?}"
        );
    }
    // The counters are the ledger, not just present.
    assert!(text.contains(
        "demandflow_stage_events_processed_total{pipeline=\"scraped\",stage=\"sink\"} 100"
    ));
    assert!(text.contains(
        "demandflow_edge_events_delivered_total{pipeline=\"scraped\",from=\"double\",to=\"sink\"} 100"
    ));
}
