//! Logging with `tracing-subscriber`: your stages' log lines beside the
//! engine's, including a failed stage being restarted.
//!
//! ```text
//! cargo run --example tracing
//! RUST_LOG=debug cargo run --example tracing    # also each stage's start and end
//! ```
//!
//! The `send` stage fails once, on order 4. The engine logs the failure
//! (`stage failed, restarting`), starts a fresh instance and hands it the
//! same batch again, so order 4 is sent after all and the report shows one
//! restart.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use demandflow::{sink, source, stage, Pipeline, Subscribe};
use tracing_subscriber::EnvFilter;

/// Whether order 4 already failed: the failure happens only once.
static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

/// Sends an order (stands in for a request); fails the first time it is
/// given order 4.
async fn send(order: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    if order == 4 && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
        return Err(format!("order {order}: connection reset"));
    }
    tracing::info!(order, "sent");
    Ok(order)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Log lines go to stderr. RUST_LOG chooses what is shown (`debug`,
    // `demandflow=debug,tracing=info`...); without it, `info` and above.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal, not in a CI log or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let mut p = Pipeline::new();
    let orders = p.producer("orders", source::iter(1..=8u32));
    let sent = p
        .processor("send", stage::try_then(send))
        .subscribe(&orders, Subscribe::max_demand(2));
    let (count, total) = sink::count();
    p.consumer("count", count)
        .subscribe(&sent, Subscribe::default());

    let report = p.timeout(Duration::from_secs(30)).spawn()?.join().await?;
    tracing::info!(sent = total.get(), "done");
    println!("{report}");
    Ok(())
}
