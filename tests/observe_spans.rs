//! Spans (issue 14, item 1): a user's own `tracing` events inside a handler
//! carry the pipeline (its name and id), the stage (name, instance) and the
//! attempt; what the engine logs about a stage (restarts, dead letters)
//! is inside the stage's span.
//!
//! Each test installs a capturing `fmt` subscriber for its own thread (the
//! default current-thread runtime runs every stage there) and reads the
//! formatted lines, where the span chain prints as
//! `pipeline{..}:stage{..}:attempt{..}: message`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use demandflow::{source, BoxError, Consumer, Context, Emitter, Pipeline, Processor, Subscribe};

/// The lines a subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The one line containing `message`.
    fn line(&self, message: &str) -> String {
        let lines = self.lines();
        let found: Vec<_> = lines.iter().filter(|l| l.contains(message)).collect();
        assert!(
            !found.is_empty(),
            "no line with {message:?} in:\n{}",
            lines.join("\n")
        );
        found[0].clone()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    (out, tracing::subscriber::set_default(subscriber))
}

/// Logs once per batch, from inside the handler.
#[derive(Clone)]
struct Logs;

impl Consumer<u64> for Logs {
    async fn consume(&mut self, events: &[u64], _cx: &Context) -> Result<(), BoxError> {
        tracing::info!(n = events.len(), "user event in consume");
        Ok(())
    }
}

/// Fails its first batch (once across restarts), logging each call.
#[derive(Clone)]
struct FailsOnce(Arc<AtomicBool>);

impl Processor<u64, u64> for FailsOnce {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut Emitter<u64>,
        cx: &Context,
    ) -> Result<(), BoxError> {
        let _ = cx;
        tracing::info!("user event in process");
        if !self.0.swap(true, Ordering::SeqCst) {
            return Err("first batch fails".into());
        }
        out.extend(events.iter().copied());
        Ok(())
    }
}

#[tokio::test]
async fn a_user_event_in_a_handler_carries_the_pipeline_and_the_stage() {
    let (out, _guard) = capture();
    let mut p = Pipeline::new().name("ingest");
    let numbers = p.producer("numbers", source::iter(0u64..10));
    p.consumer("sink", Logs)
        .subscribe(&numbers, Subscribe::max_demand(5));
    p.spawn().unwrap().join().await.unwrap();
    let line = out.line("user event in consume");
    assert!(line.contains("pipeline{pipeline=ingest id="), "{line}");
    assert!(line.contains(":stage{stage=sink instance=0}"), "{line}");
    assert!(line.contains(":attempt{attempt=0}"), "{line}");
}

#[tokio::test]
async fn a_restart_is_an_event_of_the_stage_and_the_next_attempt_has_its_span() {
    let (out, _guard) = capture();
    let mut p = Pipeline::new().name("retry");
    let numbers = p.producer("numbers", source::iter(0u64..10));
    let parsed = p
        .processor("parse", FailsOnce(Arc::default()))
        .subscribe(&numbers, Subscribe::max_demand(5));
    p.consumer("sink", Logs)
        .subscribe(&parsed, Subscribe::max_demand(5));
    p.spawn().unwrap().join().await.unwrap();
    let restart = out.line("stage failed, restarting");
    assert!(
        restart.contains("pipeline{pipeline=retry id=")
            && restart.contains(":stage{stage=parse instance=0}"),
        "{restart}"
    );
    let second = out
        .lines()
        .into_iter()
        .find(|l| l.contains("user event in process") && l.contains("attempt{attempt=1}"))
        .unwrap_or_else(|| panic!("no second attempt in:\n{}", out.lines().join("\n")));
    assert!(
        second.contains(":stage{stage=parse instance=0}:attempt{attempt=1}"),
        "{second}"
    );
}

#[tokio::test]
async fn each_instance_of_a_concurrent_stage_has_its_span() {
    let (out, _guard) = capture();
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..100));
    p.consumer("sink", Logs)
        .concurrency(2)
        .subscribe(&numbers, Subscribe::max_demand(5));
    p.spawn().unwrap().join().await.unwrap();
    let lines = out.lines();
    for stage in [
        "stage{stage=sink[0] instance=0}",
        "stage{stage=sink[1] instance=1}",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("user event in consume") && l.contains(stage)),
            "no {stage} in:\n{}",
            lines.join("\n")
        );
    }
    // An unnamed pipeline is named after its id.
    assert!(lines
        .iter()
        .any(|l| l.contains("pipeline{pipeline=pipeline-")));
}

#[tokio::test]
async fn a_dead_letter_is_an_event_of_its_stage() {
    #[derive(Clone)]
    struct AlwaysFails;
    impl Consumer<u64> for AlwaysFails {
        async fn consume(&mut self, _events: &[u64], _cx: &Context) -> Result<(), BoxError> {
            Err("no".into())
        }
    }
    let (out, _guard) = capture();
    let mut p = Pipeline::new()
        .name("dl")
        .max_attempts(1)
        .intensity(100, std::time::Duration::from_secs(5));
    let numbers = p.producer("numbers", source::iter(0u64..3));
    p.consumer("bad", AlwaysFails)
        .subscribe(&numbers, Subscribe::max_demand(5));
    let _ = p.spawn().unwrap().join().await;
    let line = out.line("batch dead-lettered");
    assert!(
        line.contains("pipeline{pipeline=dl id=") && line.contains(":stage{stage=bad instance=0}"),
        "{line}"
    );
}
