//! The cancel handle that outlives `join`'s move, and folds whose value
//! survives a cancel, a deadline and a restart (issue 13, item 3).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demandflow::{sink, source, CancelCause, Canceller, Pipeline, Restart, Status, Subscribe};

/// Waits (bounded) until `done` holds, yielding to the pipeline's tasks.
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn a_canceller_cancels_while_join_owns_the_handle() {
    fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
    let mut p = Pipeline::new();
    let n = p.producer("numbers", source::iter(0..u64::MAX));
    let (count, seen) = sink::count();
    p.consumer("count", count)
        .subscribe(&n, Subscribe::default());
    let run = p.spawn().unwrap();
    let canceller: Canceller = run.canceller();
    shareable(&canceller);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = seen.clone();
    tokio::spawn(async move {
        until(|| watcher.get() > 0).await;
        let _ = tx.send(());
    });
    let join = run.join();
    tokio::pin!(join);
    let result = tokio::select! {
        r = &mut join => r,
        _ = rx => {
            canceller.cancel();
            assert!(canceller.is_cancelled());
            join.await
        }
    };
    let err = result.unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.report().status, Status::Cancelled(CancelCause::User));
    // Cancelling after the run ended is harmless.
    canceller.cancel();
}

#[tokio::test]
async fn a_count_keeps_its_partial_value_after_a_cancel() {
    let mut p = Pipeline::new();
    let n = p.producer("numbers", source::iter(0..u64::MAX));
    let (count, seen) = sink::count();
    p.consumer("count", count)
        .subscribe(&n, Subscribe::max_demand(10));
    let run = p.spawn().unwrap();
    until(|| seen.get() >= 100).await;
    run.cancel();
    let err = run.join().await.unwrap_err();
    let processed = err.report().stage("count").unwrap().processed;
    assert!(seen.get() >= 100);
    assert_eq!(seen.get(), processed);
    assert!(!seen.is_complete());
}

#[tokio::test]
async fn a_fold_keeps_its_partial_value_after_the_deadline() {
    let mut p = Pipeline::new();
    // Endless, one event every millisecond: the deadline ends the run.
    let n = p.producer(
        "ticks",
        source::from_stream(futures::stream::unfold(0u64, |i| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Some((i, i + 1))
        })),
    );
    let (sum, total) = sink::fold(0u64, |a, x: u64| a + x);
    p.consumer("sum", sum).subscribe(&n, Subscribe::default());
    let err = p
        .timeout(Duration::from_millis(200))
        .spawn()
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded());
    let processed = err.report().stage("sum").unwrap().processed;
    assert!(processed > 1, "processed {processed}");
    // The events are 0, 1, 2, ... in order: their sum is known.
    assert_eq!(total.get(), processed * (processed - 1) / 2);
    assert!(!total.is_complete());
}

#[tokio::test(start_paused = true)]
async fn a_fold_restarted_after_a_panic_carries_on_from_its_last_value() {
    let failed = Arc::new(AtomicBool::new(false));
    let once = failed.clone();
    let mut p = Pipeline::new();
    let n = p.producer("numbers", source::iter(0..1000u64));
    let (count, seen) = sink::fold(0u64, move |n, x: u64| {
        if x == 500 && !once.swap(true, Ordering::SeqCst) {
            panic!("fails once, halfway through a batch");
        }
        n + 1
    });
    p.consumer("count", count)
        .restart(Restart::Transient)
        .subscribe(&n, Subscribe::max_demand(64));
    let report = p.spawn().unwrap().join().await.unwrap();
    let stage = report.stage("count").unwrap();
    assert!(failed.load(Ordering::SeqCst));
    assert_eq!(stage.restarts, 1);
    assert_eq!(stage.processed, 1000);
    assert_eq!(seen.get(), 1000);
    assert!(seen.is_complete());
}

#[tokio::test]
async fn count_needs_nothing_of_its_events() {
    struct Opaque; // neither Clone nor Debug
    let mut p = Pipeline::new();
    let mut left = 300;
    let n = p.producer(
        "opaque",
        source::from_fn(move || {
            left -= 1;
            (left >= 0).then_some(Opaque)
        }),
    );
    let (count, seen) = sink::count();
    p.consumer("count", count)
        .subscribe(&n, Subscribe::default());
    p.spawn().unwrap().join().await.unwrap();
    assert_eq!(seen.get(), 300);
    assert!(seen.is_complete());
}
