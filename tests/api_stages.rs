//! `stage::then` / `try_then` / `try_map`, `source::lines`, and a stage's
//! failure kept as the error it returned (issue 13, item 3).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use demandflow::source::LinesError;
use demandflow::{sink, source, stage, Pipeline, Restart, Status, Subscribe};

#[tokio::test]
async fn then_awaits_one_future_per_event_in_order() {
    let mut p = Pipeline::new();
    let n = p.producer("n", source::iter(0..50u32));
    let doubled = p
        .processor(
            "double",
            stage::then(|x: u32| async move {
                tokio::task::yield_now().await;
                x * 2
            }),
        )
        .subscribe(&n, Subscribe::max_demand(7));
    let (c, got) = sink::collect();
    p.consumer("collect", c)
        .subscribe(&doubled, Subscribe::default());
    p.spawn().unwrap().join().await.unwrap();
    assert_eq!(got.take(), (0..50).map(|x| x * 2).collect::<Vec<_>>());
}

#[tokio::test]
async fn then_with_concurrency_runs_futures_side_by_side() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (f, m) = (in_flight.clone(), most.clone());
    let mut p = Pipeline::new();
    let n = p.producer("n", source::iter(0..40u32));
    let out = p
        .processor(
            "slow",
            stage::then(move |x: u32| {
                let (f, m) = (f.clone(), m.clone());
                async move {
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    f.fetch_sub(1, Ordering::SeqCst);
                    x
                }
            }),
        )
        .concurrency(4)
        .subscribe(&n, Subscribe::max_demand(2));
    let (c, got) = sink::collect();
    p.consumer("collect", c)
        .subscribe(&out, Subscribe::default());
    let report = p.spawn().unwrap().join().await.unwrap();
    let mut got = got.take();
    got.sort();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert_eq!(report.stage("slow").unwrap().processed, 40);
    assert!(most.load(Ordering::SeqCst) > 1, "never ran two at once");
}

/// An error with a cause, to check the chain survives the trip.
#[derive(Debug)]
struct Upload {
    id: u32,
    cause: std::io::Error,
}

impl std::fmt::Display for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upload {} failed", self.id)
    }
}

impl std::error::Error for Upload {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_stage_keeps_its_error_and_its_sources() {
    let mut p = Pipeline::new();
    let n = p.producer("n", source::iter(0..10u32));
    let up = p
        .processor(
            "upload",
            stage::try_then(|id: u32| async move {
                if id == 4 {
                    Err(Upload {
                        id,
                        cause: std::io::Error::other("connection reset"),
                    })
                } else {
                    Ok(id)
                }
            }),
        )
        .restart(Restart::Temporary)
        .subscribe(&n, Subscribe::default());
    p.consumer("sink", sink::drain())
        .subscribe(&up, Subscribe::default());
    let err = p.spawn().unwrap().join().await.unwrap_err();
    assert!(err.is_stage_failed());
    let Status::Failed { stage, error } = &err.report().status else {
        panic!("{}", err.report().status)
    };
    assert_eq!(stage, "upload");
    let upload = error
        .downcast_ref::<Upload>()
        .expect("the stage's own error");
    assert_eq!(upload.id, 4);
    assert!(!error.is_panic());
    let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    assert_eq!(chain, ["upload 4 failed", "connection reset"]);
    assert_eq!(format!("{error:#}"), "upload 4 failed: connection reset");
    // The report is still Clone and comparable.
    let copy = err.report().clone();
    assert_eq!(&copy, err.report());
    // The pipeline error shows the stage's error, then its causes.
    assert_eq!(
        err.to_string(),
        "pipeline failed: stage `upload`: upload 4 failed"
    );
    assert_eq!(
        std::error::Error::source(&err).map(|e| e.to_string()),
        Some("connection reset".to_owned())
    );
    assert_eq!(
        format!("{err:?}"),
        "pipeline failed: stage `upload`: upload 4 failed\n  caused by: connection reset"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_an_error_with_the_panic_text() {
    let mut p = Pipeline::new();
    let n = p.producer("n", source::iter(0..10u32));
    let out = p
        .processor(
            "explode",
            stage::map(|x: u32| {
                if x == 3 {
                    panic!("cannot handle {x}");
                }
                x
            }),
        )
        .restart(Restart::Temporary)
        .subscribe(&n, Subscribe::default());
    p.consumer("sink", sink::drain())
        .subscribe(&out, Subscribe::default());
    let err = p.spawn().unwrap().join().await.unwrap_err();
    let failure = err.report().status.failure().expect("failed");
    assert!(failure.is_panic());
    assert!(failure.to_string().contains("cannot handle 3"), "{failure}");
}

#[tokio::test(start_paused = true)]
async fn try_map_fails_the_stage_with_the_returned_error() {
    let mut p = Pipeline::new();
    let n = p.producer("n", source::iter(["1", "2", "x"]));
    let parsed = p
        .processor("parse", stage::try_map(|s: &str| s.parse::<u32>()))
        .restart(Restart::Temporary)
        .subscribe(&n, Subscribe::default());
    let (c, got) = sink::collect();
    p.consumer("collect", c)
        .subscribe(&parsed, Subscribe::default());
    let err = p.spawn().unwrap().join().await.unwrap_err();
    let failure = err.report().status.failure().unwrap();
    assert!(failure.downcast_ref::<std::num::ParseIntError>().is_some());
    // The chunk with the bad event failed as a whole: nothing of it is
    // delivered (it would be handed again to a restarted instance).
    assert!(got.take().is_empty());
}

#[test]
fn map_ref_takes_events_that_are_not_clone() {
    struct Blob(Vec<u8>);
    let mut p = Pipeline::new();
    let n = p.producer("blobs", source::from_fn(|| Some(Blob(vec![1, 2]))));
    let lens = p
        .processor("len", stage::map_ref(|b: &Blob| b.0.len()))
        .subscribe(&n, Subscribe::default());
    p.consumer("sink", sink::drain())
        .subscribe(&lens, Subscribe::default());
    p.validate().unwrap();
}

#[tokio::test]
async fn lines_reads_every_line_without_its_terminator() {
    let input: &[u8] = b"alpha\nbeta\r\n\ngamma";
    let mut p = Pipeline::new();
    let lines = p.producer("lines", source::lines(input));
    let (c, got) = sink::collect();
    p.consumer("collect", c)
        .subscribe(&lines, Subscribe::max_demand(2));
    let report = p.spawn().unwrap().join().await.unwrap();
    assert_eq!(got.take(), ["alpha", "beta", "", "gamma"]);
    assert_eq!(report.stage("lines").unwrap().emitted, 4);
}

#[tokio::test(start_paused = true)]
async fn lines_fails_on_invalid_utf8_naming_the_line() {
    let input: &[u8] = b"ok\nfine\nbad \xff\xfe byte\nnever read\n";
    let mut p = Pipeline::new();
    let lines = p.producer("lines", source::lines(input));
    let (c, got) = sink::collect();
    p.consumer("collect", c)
        .subscribe(&lines, Subscribe::default());
    // Default restart policy: every restart fails the same way (the input
    // is not read past the bad line), until the supervisor gives up.
    let err = p.spawn().unwrap().join().await.unwrap_err();
    let failure = err.report().status.failure().expect("failed");
    let lines_error = failure.downcast_ref::<LinesError>().expect("a LinesError");
    assert_eq!(lines_error.line(), 3);
    assert_eq!(
        lines_error.io_error().kind(),
        std::io::ErrorKind::InvalidData
    );
    assert_eq!(failure.to_string(), "line 3: not valid UTF-8");
    assert_eq!(got.take(), ["ok", "fine"]);
}

/// An endless input that counts how often it is read: one line per read.
struct Endless {
    reads: Arc<AtomicUsize>,
}

impl tokio::io::AsyncRead for Endless {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        buf.put_slice(b"line\n");
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn lines_reads_only_when_asked() {
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = tokio::io::BufReader::with_capacity(
        5,
        Endless {
            reads: reads.clone(),
        },
    );
    let mut p = Pipeline::new();
    let lines = p.producer("lines", source::lines(reader));
    // A processor that takes its first event and never finishes with it.
    let gate = p
        .processor(
            "gate",
            stage::then(|l: String| async move {
                std::future::pending::<()>().await;
                l
            }),
        )
        .subscribe(&lines, Subscribe::max_demand(4));
    p.consumer("sink", sink::drain())
        .subscribe(&gate, Subscribe::default());
    let run = p.spawn().unwrap();
    // Give the producer every chance to read ahead.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let read = reads.load(Ordering::SeqCst);
    // 4 lines asked for: 4 reads, plus at most one the buffer holds.
    assert!((1..=5).contains(&read), "read {read} lines");
    run.cancel();
    let _ = run.join().await;
}
