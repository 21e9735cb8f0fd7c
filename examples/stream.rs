//! A pipeline's output as a `futures::Stream`, pulled with `StreamExt`.
//!
//! ```text
//! cargo run --example stream
//! ```
//!
//! The producer is endless; the caller takes what it wants from the stream
//! and drops it. Demand follows what the caller pulls, so the pipeline
//! produced only a bounded number of events (the report shows how many),
//! and once the stream is dropped the producer, left without subscribers,
//! ends and `join` returns.

use demandflow::{source, stage, Pipeline, Subscribe};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(1u64..));
    let squares = p
        .processor("square", stage::map(|x: u64| x * x))
        .subscribe(&numbers, Subscribe::default());
    // The stream subscribes like a consumer: here it asks for at most 16
    // events at a time, and asks again only as the caller takes them.
    let out = p.stream(&squares, Subscribe::max_demand(16));
    let run = p.spawn()?;

    // Any `StreamExt` adapter works on it: keep the odd squares, take the
    // first 12, in groups of 4.
    let mut groups = out
        .filter(|x| futures::future::ready(x % 2 == 1))
        .take(12)
        .chunks(4);
    while let Some(group) = groups.next().await {
        println!("{group:?}");
    }
    // Dropping the stream cancels its subscription; the pipeline ends.
    drop(groups);

    let report = run.join().await?;
    let made = report.stage("numbers").map_or(0, |s| s.emitted);
    println!("numbers produced: {made} (of an endless supply)");
    println!("{report}");
    Ok(())
}
