//! Reading a run's outcome: lookups that sum concurrent instances, and the
//! `Display` (and `Debug`) texts a person reads (issue 13, item 3).

use std::time::Duration;

use demandflow::pipeline::StageReport;
use demandflow::{
    sink, source, stage, BuildError, CancelCause, Pipeline, Report, Status, Subscribe,
};

fn stage_report(name: &str, processed: u64, end: &str) -> StageReport {
    StageReport {
        name: name.to_owned(),
        received: processed,
        processed,
        emitted: 0,
        dead_lettered: 0,
        dropped: 0,
        abandoned: 0,
        restarts: 0,
        end: end.to_owned(),
    }
}

#[tokio::test]
async fn report_stage_sums_the_instances_of_a_concurrent_stage() {
    let mut p = Pipeline::new();
    let n = p.producer("numbers", source::iter(0..1000u32));
    let up = p
        .processor("upload", stage::map(|x: u32| x))
        .concurrency(4)
        .subscribe(&n, Subscribe::max_demand(10));
    p.consumer("sink", sink::drain())
        .subscribe(&up, Subscribe::default());
    let report = p.spawn().unwrap().join().await.unwrap();
    let total = report.stage("upload").expect("summed over upload[0..4]");
    assert_eq!(total.name, "upload");
    assert_eq!(total.processed, 1000);
    assert_eq!(total.received, 1000);
    assert_eq!(total.emitted, 1000);
    assert_eq!(total.end, "completed");
    let names: Vec<&str> = report
        .instances("upload")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["upload[0]", "upload[1]", "upload[2]", "upload[3]"]);
    // One instance by its own name.
    let one = report.stage("upload[2]").unwrap();
    assert_eq!(one.name, "upload[2]");
    assert!(one.processed < 1000);
    // A prefix of a name is another stage.
    assert!(report.stage("up").is_none());
    assert!(report.stage("upload[").is_none());
}

#[test]
fn report_stage_keeps_the_end_of_an_instance_that_did_not_complete() {
    let report = Report {
        status: Status::Cancelled(CancelCause::User),
        stages: vec![
            stage_report("w[0]", 3, "completed"),
            stage_report("w[1]", 4, "cancelled"),
            stage_report("w[10]", 5, "completed"),
            stage_report("w[x]", 100, "completed"),
        ],
    };
    let w = report.stage("w").unwrap();
    assert_eq!((w.processed, w.end.as_str()), (12, "cancelled"));
}

#[tokio::test]
async fn stats_stage_sums_the_instances_too() {
    let mut p = Pipeline::new();
    let n = p.producer("numbers", source::iter(0..u64::MAX));
    let up = p
        .processor("work", stage::map(|x: u64| x))
        .concurrency(3)
        .subscribe(&n, Subscribe::max_demand(10));
    p.consumer("sink", sink::drain())
        .subscribe(&up, Subscribe::default());
    let run = p.spawn().unwrap();
    let mut stats = run.stats();
    for _ in 0..10_000 {
        stats = run.stats();
        if stats.instances("work").all(|s| s.processed > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let total = stats.stage("work").expect("summed");
    let sum: u64 = stats.instances("work").map(|s| s.processed).sum();
    assert_eq!(stats.instances("work").count(), 3);
    assert_eq!(total.processed, sum);
    assert!(total.processed > 0);
    assert_eq!(total.name, "work");
    // The live view prints as a table with a state column.
    let text = stats.to_string();
    assert!(text.starts_with("stage "), "{text}");
    assert!(text.contains("state"), "{text}");
    assert!(text.contains("numbers -> work[0]"), "{text}");
    run.cancel();
    let _ = run.join().await;
}

#[test]
fn status_reads_as_words() {
    let cases = [
        (Status::Completed, "completed"),
        (
            Status::Cancelled(CancelCause::User),
            "cancelled by the user",
        ),
        (
            Status::Cancelled(CancelCause::OwnerDropped),
            "cancelled: its handle was dropped",
        ),
        (
            Status::Cancelled(CancelCause::Shutdown),
            "cancelled: the shutdown's grace period ran out",
        ),
        (
            Status::Cancelled(CancelCause::StageFailed("parse".into())),
            "cancelled: stage `parse` failed",
        ),
        (Status::DeadlineExceeded, "deadline exceeded"),
    ];
    for (status, text) in cases {
        assert_eq!(status.to_string(), text);
    }
}

#[test]
fn a_report_prints_as_a_table() {
    let report = Report {
        status: Status::Completed,
        stages: vec![
            StageReport {
                emitted: 1000,
                received: 0,
                ..stage_report("numbers", 0, "completed")
            },
            stage_report("sum", 1000, "completed"),
        ],
    };
    let want = "\
completed
stage    received  processed  emitted  abandoned  restarts  end
numbers         0          0     1000          0         0  completed
sum          1000       1000        0          0         0  completed";
    assert_eq!(report.to_string(), want);
    // Columns that are zero in most runs show only when they are not.
    let mut dead = report.clone();
    dead.stages[1].dead_lettered = 7;
    let text = dead.to_string();
    assert!(
        text.lines().nth(1).unwrap().contains("dead-lettered"),
        "{text}"
    );
    assert!(!text.contains("dropped"), "{text}");
    assert_eq!(
        report.stages[1].to_string(),
        "sum: received 1000, processed 1000, emitted 0, abandoned 0, restarts 0, completed"
    );
}

#[test]
fn build_errors_print_their_message_from_main() {
    let mut p = Pipeline::new();
    let a = p.producer("square", source::iter(0..3u32));
    p.consumer("square", sink::drain())
        .subscribe(&a, Subscribe::default());
    let err = p.validate().unwrap_err();
    assert!(matches!(err, BuildError::DuplicateName(_)));
    // `fn main() -> Result<(), BuildError>` prints `Error: {err:?}`.
    assert_eq!(format!("{err:?}"), "two stages are named `square`");
    let boxed: Box<dyn std::error::Error> = err.into();
    assert_eq!(format!("{boxed:?}"), "two stages are named `square`");
}

#[tokio::test]
async fn a_cancelled_run_reads_as_words() {
    let mut p = Pipeline::new();
    let n = p.producer("numbers", source::iter(0..u64::MAX));
    p.consumer("sink", sink::drain())
        .subscribe(&n, Subscribe::default());
    let run = p.spawn().unwrap();
    run.cancel();
    let err = run.join().await.unwrap_err();
    assert_eq!(err.to_string(), "pipeline cancelled by the user");
    assert_eq!(format!("{err:?}"), "pipeline cancelled by the user");
    let text = err.report().to_string();
    assert!(text.starts_with("cancelled by the user\nstage "), "{text}");
}

#[test]
fn stats_stage_sums_instances_counts_and_averages_their_occupancy() {
    use demandflow::pipeline::{StageState, StageStats};
    use demandflow::{Occupancy, Stats};
    let instance = |i: usize, processed: u64, backpressured: f64| StageStats {
        name: format!("upload[{i}]"),
        received: processed,
        processed,
        emitted: 0,
        dead_lettered: 0,
        dropped: 0,
        abandoned: 0,
        restarts: 0,
        state: StageState::Running,
        occupancy: Occupancy {
            busy: 1.0 - backpressured,
            backpressured,
            idle: 0.0,
        },
    };
    let stats = Stats {
        stages: vec![instance(0, 10, 1.0), instance(1, 30, 0.5)],
        edges: Vec::new(),
        cancel_cause: None,
        stalls: Vec::new(),
    };
    let upload = stats.stage("upload").unwrap();
    assert_eq!(upload.processed, 40);
    assert_eq!(upload.occupancy.backpressured, 0.75);
    assert_eq!(upload.occupancy.busy, 0.25);
    // One instance by its exact name is that instance alone.
    assert_eq!(
        stats.stage("upload[1]").unwrap().occupancy.backpressured,
        0.5
    );
}
