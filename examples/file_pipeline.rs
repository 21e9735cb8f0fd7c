//! A file, line by line, through batching, a rate limit and an async step
//! run four at a time, into a count; with a deadline and Ctrl-C.
//!
//! ```text
//! cargo run --example file_pipeline [-- PATH]
//! ```
//!
//! Without `PATH` it writes a sample file of 500 lines to the temporary
//! directory first. The run ends at the end of the file, at the 30 s
//! deadline, or on Ctrl-C; each way it prints how many lines were uploaded
//! and the report (one row per stage: events in, out, restarts, how it
//! ended).

use std::path::PathBuf;
use std::time::Duration;

use demandflow::{sink, source, stage, Pipeline, Subscribe};
use tokio::io::BufReader;

/// The async step: stands in for an upload of a batch of lines (an HTTP
/// request, a database insert). Returns how many lines it uploaded.
async fn upload(batch: Vec<String>) -> usize {
    tokio::time::sleep(Duration::from_millis(20)).await;
    batch.len()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (path, sample) = match std::env::args_os().nth(1) {
        Some(path) => (PathBuf::from(path), false),
        None => (sample_file().await?, true),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => {
            eprintln!("cannot open {}: {e}", path.display());
            std::process::exit(1);
        }
    };
    println!("reading {}", path.display());

    let mut p = Pipeline::new();
    // A producer of the file's lines. It reads only when asked (here up to
    // 1000 lines ahead, the default `max_demand` of the next subscription):
    // if the stages below are slow, the file is read slowly.
    let lines = p.producer("lines", source::lines(BufReader::new(file)));
    // Groups of 10 lines (or fewer, if 100 ms pass before a group fills).
    let batches = p
        .processor("batch", stage::batch(10, Duration::from_millis(100)))
        .subscribe(&lines, Subscribe::default());
    // At most 20 batches a second. This is demand, not a sleep: the limiter
    // asks upstream for 20 per second, so nothing piles up in between.
    let paced = p
        .processor("rate_limit", stage::rate_limit(20, Duration::from_secs(1)))
        .subscribe(&batches, Subscribe::default());
    // Four instances of the async step (`upload[0]`..`upload[3]`), each
    // awaiting one upload at a time; `max_demand(2)` keeps at most two
    // batches waiting per instance.
    let uploaded = p
        .processor("upload", stage::then(upload))
        .concurrency(4)
        .subscribe(&paced, Subscribe::max_demand(2));
    // Sums the uploaded lines. `total` can be read at any time, also after
    // a cancel or a deadline: it holds what was done so far.
    let (sum, total) = sink::fold(0usize, |acc, n: usize| acc + n);
    p.consumer("count", sum)
        .subscribe(&uploaded, Subscribe::default());

    // The whole run must finish within 30 s; `spawn` starts it.
    let run = p.timeout(Duration::from_secs(30)).spawn()?;

    // `join` takes the handle, so take a canceller first to stop the run
    // on Ctrl-C, then keep awaiting the same `join` for the report.
    let canceller = run.canceller();
    let join = run.join();
    tokio::pin!(join);
    let result = tokio::select! {
        result = &mut join => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Ctrl-C: stopping");
            canceller.cancel();
            join.await
        }
    };

    // Completed, cancelled and timed-out runs all come with a report.
    let report = match result {
        Ok(report) => report,
        Err(e) if e.is_cancelled() || e.is_deadline_exceeded() => e.into_report(),
        Err(e) => return Err(e.into()),
    };
    println!("uploaded {} lines", total.get());
    println!("{report}");
    if sample {
        tokio::fs::remove_file(&path).await?;
    }
    Ok(())
}

/// Writes 500 lines to a file in the temporary directory.
async fn sample_file() -> std::io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("demandflow-sample-{}.txt", std::process::id()));
    let text: String = (1..=500).map(|i| format!("line {i}\n")).collect();
    tokio::fs::write(&path, text).await?;
    Ok(path)
}
