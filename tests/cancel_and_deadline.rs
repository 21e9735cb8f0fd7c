//! Cancellation, owner semantics, deadlines, graceful shutdown, cancel modes,
//! idle timeouts and the stall detector (invariants D5, D6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use demandflow::{
    sink, source, stage, BoxError, CancelCause, CancelMode, Consumer, Context, Emitter, Flow,
    Pipeline, Producer, Status, Subscribe,
};
use futures::StreamExt;
use tokio::time::Instant;

fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Counts forever.
#[derive(Clone, Default)]
struct Endless(u64);

impl Producer<u64> for Endless {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        for _ in 0..demand {
            out.emit(self.0);
            self.0 += 1;
        }
        Ok(Flow::Continue)
    }
}

/// Sleeps per batch.
#[derive(Clone)]
struct Slow(Duration);

impl Consumer<u64> for Slow {
    async fn consume(&mut self, _events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// Never returns from its handler (a stuck await).
#[derive(Clone)]
struct Stuck;

impl Consumer<u64> for Stuck {
    async fn consume(&mut self, _events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[test]
fn user_cancel_is_reported_as_such() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p.producer("n", Endless::default());
        p.consumer("slow", Slow(Duration::from_millis(1)))
            .subscribe(&n, Subscribe::default());
        let h = p.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.cancel();
        let err = h.join().await.unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(err.report().status, Status::Cancelled(CancelCause::User));
        // The ledger balances: every event delivered to the consumer ended
        // processed or abandoned, and the producer's output is all accounted for.
        let (n, slow) = (
            err.report().stage("n").unwrap(),
            err.report().stage("slow").unwrap(),
        );
        assert_eq!(
            slow.received,
            slow.processed + slow.dead_lettered + slow.abandoned
        );
        assert_eq!(n.emitted, slow.received + n.abandoned);
    });
}

#[test]
fn dropping_the_handle_stops_every_stage_task() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p.producer("n", Endless::default());
        let m = p
            .processor("m", stage::map(|x: u64| x))
            .subscribe(&n, Subscribe::default());
        p.consumer("stuck", Stuck)
            .subscribe(&m, Subscribe::default());
        let h = p.spawn().unwrap();
        let watch = h.watch();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(watch.live_stages(), 3);
        drop(h);
        tokio::time::timeout(Duration::from_secs(1), watch.stopped())
            .await
            .expect("every stage task ends after the owner drops the handle");
        assert_eq!(watch.live_stages(), 0);
        assert_eq!(watch.stats().cancel_cause, Some(CancelCause::OwnerDropped));
    });
}

#[test]
fn a_detached_pipeline_keeps_running() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p.producer("n", source::iter(0..1000u64));
        let (sum, total) = sink::fold(0u64, |a, x: u64| a + x);
        p.consumer("sum", sum).subscribe(&n, Subscribe::default());
        let h = p.spawn().unwrap();
        let watch = h.watch();
        h.detach();
        watch.stopped().await;
        assert_eq!(total.get(), 499_500);
    });
}

#[test]
fn a_deadline_in_the_past_ends_at_once_with_deadline_exceeded() {
    paused().block_on(async {
        let mut p = Pipeline::new().deadline(Instant::now() - Duration::from_secs(1));
        let n = p.producer("n", Endless::default());
        p.consumer("stuck", Stuck)
            .subscribe(&n, Subscribe::default());
        let started = Instant::now();
        let err = p.spawn().unwrap().join().await.unwrap_err();
        assert!(err.is_deadline_exceeded());
        assert_eq!(err.report().status, Status::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_millis(1));
    });
}

#[test]
fn a_stuck_handler_does_not_delay_the_deadline() {
    // Real time here on purpose: the bound must hold on a real clock too.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut p = Pipeline::new().timeout(Duration::from_millis(100));
        let n = p.producer("n", Endless::default());
        p.consumer("stuck", Stuck)
            .subscribe(&n, Subscribe::default());
        let started = std::time::Instant::now();
        let err = p.spawn().unwrap().join().await.unwrap_err();
        assert!(err.is_deadline_exceeded());
        // Generous slack for a loaded 2-core machine; the point is "not stuck".
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    });
}

/// A run still going when its deadline passed ends `DeadlineExceeded`,
/// whatever its stages did after and whichever runtime flavour ran it. A
/// processor that blocks its thread past the deadline keeps a current-thread
/// runtime's watcher from running until the pipeline has finished; the run
/// used to be reported `Completed` there (and `DeadlineExceeded` on a
/// multi-thread runtime).
fn run_blocked_past_the_deadline(rt: tokio::runtime::Runtime) -> Status {
    rt.block_on(async {
        let mut p = Pipeline::new().timeout(Duration::from_millis(100));
        let n = p.producer("n", source::iter(0..10u64));
        let blocked = p
            .processor(
                "blocks",
                stage::map(|x: u64| {
                    if x == 0 {
                        // Blocks the thread on purpose, without awaiting.
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    x
                }),
            )
            .subscribe(&n, Subscribe::default());
        p.consumer("sink", sink::drain())
            .subscribe(&blocked, Subscribe::default());
        let handle = p.spawn().unwrap();
        handle
            .join()
            .await
            .map_or_else(|e| e.report().status.clone(), |r| r.status)
    })
}

#[test]
fn a_run_past_its_deadline_says_so_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(run_blocked_past_the_deadline(rt), Status::DeadlineExceeded);
}

#[test]
fn a_run_past_its_deadline_says_so_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(run_blocked_past_the_deadline(rt), Status::DeadlineExceeded);
}

/// A user's cancel that comes after the deadline has passed, before the
/// watcher had a turn to act on it, does not hide the deadline.
#[test]
fn a_cancel_after_the_deadline_reports_the_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut p = Pipeline::new().timeout(Duration::from_millis(20));
        let n = p.producer("n", Endless::default());
        p.consumer("stuck", Stuck)
            .subscribe(&n, Subscribe::default());
        let handle = p.spawn().unwrap();
        // The only thread is blocked through the deadline: the watcher
        // cannot run before the cancel below.
        std::thread::sleep(Duration::from_millis(60));
        handle.cancel();
        let err = handle.join().await.unwrap_err();
        assert_eq!(err.report().status, Status::DeadlineExceeded);
    });
}

#[test]
fn every_stage_sees_the_deadline_in_its_context() {
    paused().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = Arc::new(std::sync::Mutex::new(None));
        #[derive(Clone)]
        struct Peek(Arc<std::sync::Mutex<Option<Option<Instant>>>>);
        impl Consumer<u64> for Peek {
            async fn consume(&mut self, _e: &[u64], cx: &Context) -> Result<(), BoxError> {
                *self.0.lock().unwrap() = Some(cx.deadline());
                Ok(())
            }
        }
        let mut p = Pipeline::new().deadline(deadline);
        let n = p.producer("n", source::iter(0..3u64));
        p.consumer("peek", Peek(seen.clone()))
            .subscribe(&n, Subscribe::default());
        p.spawn().unwrap().join().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(Some(deadline)));
    });
}

#[test]
fn graceful_shutdown_drains_and_completes() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p.producer("n", Endless::default());
        // A consumer that sleeps lets the paused clock advance.
        p.consumer("sum", Slow(Duration::from_millis(1)))
            .subscribe(&n, Subscribe::max_demand(10));
        let h = p.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = h.shutdown(Duration::from_secs(1)).await.unwrap();
        let produced = report.stage("n").unwrap().emitted;
        let consumed = report.stage("sum").unwrap().processed;
        assert!(produced > 0);
        assert_eq!(produced, consumed, "what was produced drained through");
        assert_eq!(report.stage("sum").unwrap().abandoned, 0);
    });
}

#[test]
fn shutdown_past_its_grace_cancels_and_counts_the_abandoned() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p.producer("n", Endless::default());
        p.consumer("stuck", Stuck)
            .subscribe(&n, Subscribe::max_demand(10));
        let h = p.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let err = h.shutdown(Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(
            err.report().status,
            Status::Cancelled(CancelCause::Shutdown)
        );
        let stuck = err.report().stage("stuck").unwrap();
        assert!(stuck.abandoned > 0);
        assert_eq!(stuck.received, stuck.processed + stuck.abandoned);
    });
}

#[test]
fn a_dropped_output_stream_stops_an_endless_producer() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p.producer("n", Endless::default());
        let out = p.stream(&n, Subscribe::max_demand(8));
        let h = p.spawn().unwrap();
        let first: Vec<u64> = out.take(20).collect().await;
        assert_eq!(first, (0..20).collect::<Vec<_>>());
        // `take` dropped the stream: downstream cancel reaches the producer.
        let report = tokio::time::timeout(Duration::from_secs(5), h.join())
            .await
            .expect("the producer stops once nobody subscribes")
            .unwrap();
        assert_eq!(report.status, Status::Completed);
    });
}

/// Fails once it has emitted `after` events.
#[derive(Clone)]
struct FailsAfter {
    next: u64,
    after: u64,
}

impl Producer<u64> for FailsAfter {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if self.next >= self.after {
            return Err("source broke".into());
        }
        let end = (self.next + demand as u64).min(self.after);
        out.extend(self.next..end);
        self.next = end;
        Ok(Flow::Continue)
    }
}

fn two_upstreams(mode: CancelMode, first_fails: bool) -> (Status, u64) {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let a = if first_fails {
            p.add_producer("a", FailsAfter { next: 0, after: 10 })
                .restart(demandflow::Restart::Temporary)
                .build()
        } else {
            p.producer("a", source::iter(0..10u64))
        };
        let b = p.producer("b", source::iter(100..200u64));
        let count = Arc::new(AtomicU64::new(0));
        let c2 = count.clone();
        let counter = sink::for_each(move |_: u64| {
            c2.fetch_add(1, Ordering::Relaxed);
        });
        p.consumer("sink", counter)
            .also_subscribe(&a, Subscribe::max_demand(5).cancel(mode))
            .subscribe(&b, Subscribe::max_demand(5).cancel(CancelMode::Transient));
        let report = match p.spawn().unwrap().join().await {
            Ok(r) => r,
            Err(e) => e.into_report(),
        };
        let _ = report.stage("sink");
        (report.status, count.load(Ordering::Relaxed))
    })
}

#[test]
fn genstage_cancel_transient_survives_a_normal_end() {
    let (status, count) = two_upstreams(CancelMode::Transient, false);
    assert_eq!(status, Status::Completed);
    assert_eq!(count, 110);
}

#[test]
fn genstage_cancel_transient_stops_on_failure() {
    let (status, count) = two_upstreams(CancelMode::Transient, true);
    assert!(
        matches!(status, Status::Failed { ref stage, .. } if stage == "a"),
        "{status:?}"
    );
    assert!(count < 110);
}

#[test]
fn genstage_cancel_temporary_survives_a_failure() {
    let (_status, count) = two_upstreams(CancelMode::Temporary, true);
    // The sink kept going with `b` after `a` failed.
    assert_eq!(count, 110);
}

#[test]
fn genstage_cancel_permanent_stops_on_a_normal_end() {
    let (status, count) = two_upstreams(CancelMode::Permanent, false);
    assert_eq!(status, Status::Completed);
    // It stopped when `a` ended: `b`'s later events were not all taken.
    assert!(count < 110, "{count}");
}

/// Emits `n` events, then stalls forever.
#[derive(Clone)]
struct StallsAfter(u64);

impl Producer<u64> for StallsAfter {
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if self.0 == 0 {
            std::future::pending::<()>().await;
        }
        let n = (demand as u64).min(self.0);
        out.extend(0..n);
        self.0 -= n;
        Ok(Flow::Continue)
    }
}

#[test]
fn idle_timeout_fails_a_subscriber_whose_upstream_stalls() {
    paused().block_on(async {
        let mut p = Pipeline::new().intensity(0, Duration::from_secs(1));
        let n = p.producer("n", StallsAfter(3));
        p.consumer("sink", sink::drain()).subscribe(
            &n,
            Subscribe::default().idle_timeout(Duration::from_millis(200)),
        );
        let started = Instant::now();
        let err = p.spawn().unwrap().join().await.unwrap_err();
        match &err.report().status {
            Status::Failed { stage, error } => {
                assert_eq!(stage, "sink");
                assert!(error.to_string().contains("idle timeout"), "{error}");
            }
            s => panic!("{s:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(200));
    });
}

#[test]
fn the_stall_detector_reports_an_edge_with_demand_but_no_events() {
    paused().block_on(async {
        let mut p = Pipeline::new().stall_timeout(Duration::from_millis(100));
        let n = p.producer("n", StallsAfter(0));
        p.consumer("sink", sink::drain())
            .subscribe(&n, Subscribe::default());
        let h = p.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stalls = h.stats().stalls;
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert!(stalls[0].starved);
        assert_eq!(
            (stalls[0].from.as_str(), stalls[0].to.as_str()),
            ("n", "sink")
        );
        h.cancel();
    });
}

#[test]
fn graceful_shutdown_does_not_restart_a_permanent_producer() {
    paused().block_on(async {
        let mut p = Pipeline::new();
        let n = p
            .add_producer("n", Endless::default())
            .restart(demandflow::Restart::Permanent)
            .build();
        p.consumer("slow", Slow(Duration::from_millis(1)))
            .subscribe(&n, Subscribe::max_demand(10));
        let h = p.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = h.shutdown(Duration::from_secs(1)).await.unwrap();
        assert_eq!(report.stage("n").unwrap().restarts, 0);
        assert_eq!(report.status, Status::Completed);
    });
}

/// Emits `first` events, pauses, then emits `then` more and ends.
#[derive(Clone)]
struct PausesOnce {
    first: u64,
    then: u64,
    pause: Duration,
    paused: bool,
}

impl Producer<u64> for PausesOnce {
    async fn produce(
        &mut self,
        _demand: usize,
        out: &mut Emitter<u64>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        if !self.paused {
            self.paused = true;
            out.extend(0..self.first);
            return Ok(Flow::Continue);
        }
        tokio::time::sleep(self.pause).await;
        out.extend(self.first..self.first + self.then);
        Ok(Flow::Done)
    }
}

#[test]
fn an_idle_timeout_restart_gets_a_fresh_idle_clock() {
    paused().block_on(async {
        let mut p = Pipeline::new().intensity(5, Duration::from_secs(5));
        let n = p.producer(
            "n",
            PausesOnce {
                first: 3,
                then: 3,
                pause: Duration::from_millis(300),
                paused: false,
            },
        );
        let (c, out) = sink::collect();
        p.consumer("sink", c).subscribe(
            &n,
            Subscribe::default().idle_timeout(Duration::from_millis(200)),
        );
        let report = p.spawn().unwrap().join().await.unwrap();
        // One timeout at 200 ms, then the restarted instance waited its own
        // 200 ms, long enough for the events at 300 ms.
        assert_eq!(report.stage("sink").unwrap().restarts, 1);
        assert_eq!(out.take(), (0..6).collect::<Vec<_>>());
    });
}
