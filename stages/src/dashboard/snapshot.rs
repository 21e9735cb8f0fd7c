//! What the page is sent: one JSON object per update, built from a
//! pipeline's `Stats` (and the previous `Stats` of the same client, for
//! rates). Pure: the time is passed in.

use std::collections::HashSet;

use demandflow::pipeline::{StageState, Stats};
use serde::Serialize;

use super::layout::layout;

/// How many of the most recent stalls a snapshot lists (the per-edge
/// counts cover all of them).
const RECENT_STALLS: usize = 5;

/// One update, as sent on `/events` and `/snapshot.json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// The dashboard's title.
    pub(crate) title: String,
    /// Milliseconds since the dashboard started serving.
    pub(crate) t_ms: u64,
    /// `running`, `cancelling` (cancelled, stages still winding down) or
    /// `stopped` (every stage task has ended).
    pub(crate) status: &'static str,
    /// Why the run was cancelled, once it was.
    pub(crate) cancel_cause: Option<String>,
    /// Stage tasks still running.
    pub(crate) live_stages: usize,
    /// Stalls detected so far, on all edges.
    pub(crate) stalls: usize,
    /// The most recent stalls, oldest first.
    pub(crate) recent_stalls: Vec<StallView>,
    /// Per stage, in the order `stats()` lists them.
    pub(crate) stages: Vec<StageView>,
    /// Per subscription.
    pub(crate) edges: Vec<EdgeView>,
}

/// A stage, where to draw it, and its counters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageView {
    pub(crate) name: String,
    /// The name without an instance suffix: `work` for `work[2]`.
    pub(crate) group: String,
    /// The column (longest path from a stage with no inputs).
    pub(crate) depth: usize,
    /// The row within the column.
    pub(crate) row: usize,
    /// `running`, `restarting` or `ended`.
    pub(crate) state: &'static str,
    pub(crate) received: u64,
    pub(crate) processed: u64,
    pub(crate) emitted: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) dropped: u64,
    pub(crate) abandoned: u64,
    pub(crate) restarts: u64,
    /// Occupancy fractions over the engine's window (about 5 s).
    pub(crate) busy: f64,
    pub(crate) backpressured: f64,
    pub(crate) idle: f64,
    /// Events per second since this client's previous snapshot: emitted
    /// ones for a stage with no inputs (a producer), processed ones
    /// otherwise. `None` on a client's first snapshot.
    pub(crate) throughput: Option<f64>,
}

/// A subscription and what is in flight on it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EdgeView {
    pub(crate) from: String,
    pub(crate) to: String,
    /// Demand granted and not yet met.
    pub(crate) pending_demand: u64,
    /// Events delivered and not yet taken by the subscriber.
    pub(crate) buffered: usize,
    pub(crate) delivered: u64,
    pub(crate) granted: u64,
    /// Stalls detected on this edge so far.
    pub(crate) stalls: usize,
}

/// A stall the engine's detector flagged.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StallView {
    pub(crate) from: String,
    pub(crate) to: String,
    /// `true`: demand but no events; `false`: events but no demand.
    pub(crate) starved: bool,
    pub(crate) for_ms: u64,
}

/// What a client saw last: when, and the stats then.
#[derive(Debug, Clone)]
pub(crate) struct Previous {
    pub(crate) t_ms: u64,
    pub(crate) stats: Stats,
}

/// The pipeline as of `stats`, read `t_ms` after the dashboard started,
/// with rates since `prev` when there is one.
pub(crate) fn snapshot(
    title: &str,
    t_ms: u64,
    live_stages: usize,
    stats: &Stats,
    prev: Option<&Previous>,
) -> Snapshot {
    let names: Vec<&str> = stats.stages.iter().map(|s| s.name.as_str()).collect();
    let cells = layout(
        &names,
        stats.edges.iter().map(|e| (e.from.as_str(), e.to.as_str())),
    );
    let has_inputs: HashSet<&str> = stats.edges.iter().map(|e| e.to.as_str()).collect();
    let handled = |s: &demandflow::pipeline::StageStats| {
        if has_inputs.contains(s.name.as_str()) {
            s.processed
        } else {
            s.emitted
        }
    };
    let stages = stats
        .stages
        .iter()
        .zip(cells)
        .map(|(s, cell)| {
            let throughput = prev.and_then(|p| {
                let before = p.stats.stage(&s.name)?;
                let dt = t_ms.checked_sub(p.t_ms).filter(|&d| d > 0)?;
                let n = handled(s).saturating_sub(handled(&before));
                Some(round(n as f64 * 1000.0 / dt as f64, 10.0))
            });
            StageView {
                name: s.name.clone(),
                group: group_of(&s.name).to_owned(),
                depth: cell.depth,
                row: cell.row,
                state: match s.state {
                    StageState::Running => "running",
                    StageState::Restarting => "restarting",
                    _ => "ended",
                },
                received: s.received,
                processed: s.processed,
                emitted: s.emitted,
                dead_lettered: s.dead_lettered,
                dropped: s.dropped,
                abandoned: s.abandoned,
                restarts: s.restarts,
                busy: round(s.occupancy.busy, 1000.0),
                backpressured: round(s.occupancy.backpressured, 1000.0),
                idle: round(s.occupancy.idle, 1000.0),
                throughput,
            }
        })
        .collect();
    let edges = stats
        .edges
        .iter()
        .map(|e| EdgeView {
            from: e.from.clone(),
            to: e.to.clone(),
            pending_demand: e.pending_demand,
            buffered: e.buffered,
            delivered: e.delivered,
            granted: e.granted,
            stalls: stats
                .stalls
                .iter()
                .filter(|s| s.from == e.from && s.to == e.to)
                .count(),
        })
        .collect();
    let recent_stalls = stats
        .stalls
        .iter()
        .skip(stats.stalls.len().saturating_sub(RECENT_STALLS))
        .map(|s| StallView {
            from: s.from.clone(),
            to: s.to.clone(),
            starved: s.starved,
            for_ms: u64::try_from(s.for_how_long.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    let status = if live_stages == 0 {
        "stopped"
    } else if stats.cancel_cause.is_some() {
        "cancelling"
    } else {
        "running"
    };
    Snapshot {
        title: title.to_owned(),
        t_ms,
        status,
        cancel_cause: stats.cancel_cause.as_ref().map(ToString::to_string),
        live_stages,
        stalls: stats.stalls.len(),
        recent_stalls,
        stages,
        edges,
    }
}

/// `work` for `work[2]`: the name a `.concurrency(n)` stage was given.
fn group_of(name: &str) -> &str {
    match name.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
        Some((base, index)) if index.bytes().all(|b| b.is_ascii_digit()) && !index.is_empty() => {
            base
        }
        _ => name,
    }
}

/// `x` rounded to `1 / per` (keeps the JSON and the page's attributes short).
fn round(x: f64, per: f64) -> f64 {
    if x.is_finite() {
        (x * per).round() / per
    } else {
        0.0
    }
}

/// The snapshot as JSON that is safe inside an HTML `<script>` element: no
/// `<` (so no `</script>` or `<!--`), as JSON allows `\u003c` instead.
pub(crate) fn to_script_json(s: &Snapshot) -> String {
    to_json(s).replace('<', "\\u003c")
}

/// The snapshot as JSON.
pub(crate) fn to_json(s: &Snapshot) -> String {
    // A struct of strings and numbers (finite: see `round`) always
    // serialises; the fallback is never sent in practice.
    serde_json::to_string(s).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use demandflow::pipeline::{EdgeStats, StageStats, Stall};
    use demandflow::Occupancy;
    use std::time::Duration;

    fn stage(name: &str, processed: u64, emitted: u64, backpressured: f64) -> StageStats {
        StageStats {
            name: name.to_owned(),
            received: processed,
            processed,
            emitted,
            dead_lettered: 0,
            dropped: 0,
            abandoned: 0,
            restarts: 0,
            state: StageState::Running,
            occupancy: Occupancy {
                busy: 0.0,
                backpressured,
                idle: 1.0 - backpressured,
            },
        }
    }

    fn edge(from: &str, to: &str) -> EdgeStats {
        EdgeStats {
            from: from.to_owned(),
            to: to.to_owned(),
            pending_demand: 3,
            buffered: 2,
            delivered: 10,
            granted: 13,
            batches: 2,
        }
    }

    fn stats(src_emitted: u64, out_processed: u64) -> Stats {
        Stats {
            stages: vec![
                stage("src", 0, src_emitted, 0.8),
                stage("out", out_processed, 0, 0.0),
            ],
            edges: vec![edge("src", "out")],
            cancel_cause: None,
            stalls: vec![Stall {
                from: "src".to_owned(),
                to: "out".to_owned(),
                starved: false,
                for_how_long: Duration::from_millis(1500),
            }],
        }
    }

    #[test]
    fn rates_count_emitted_for_producers_and_processed_for_the_rest() {
        let before = Previous {
            t_ms: 1000,
            stats: stats(100, 50),
        };
        let s = snapshot("t", 1500, 2, &stats(600, 300), Some(&before));
        assert_eq!(s.stages[0].throughput, Some(1000.0));
        assert_eq!(s.stages[1].throughput, Some(500.0));
        assert_eq!((s.stages[0].depth, s.stages[1].depth), (0, 1));
        assert_eq!(s.edges[0].stalls, 1);
        assert_eq!(s.status, "running");
        // A first snapshot has no rates.
        let first = snapshot("t", 1500, 2, &stats(600, 300), None);
        assert_eq!(first.stages[0].throughput, None);
        assert_eq!(snapshot("t", 1, 0, &stats(1, 1), None).status, "stopped");
    }

    #[test]
    fn instance_names_group_under_their_stage() {
        assert_eq!(group_of("work[12]"), "work");
        assert_eq!(group_of("work"), "work");
        assert_eq!(group_of("odd[name]"), "odd[name]");
        assert_eq!(group_of("[]"), "[]");
    }

    #[test]
    fn script_json_cannot_close_the_script_element() {
        let mut st = stats(1, 1);
        st.stages[0].name = "</script><b>".to_owned();
        let json = to_script_json(&snapshot("<!--", 0, 1, &st, None));
        assert!(!json.contains('<'));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["stages"][0]["name"], "</script><b>");
        assert_eq!(back["title"], "<!--");
    }
}
