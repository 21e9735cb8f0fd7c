//! A pipeline with a stage made slow on purpose, on the live dashboard.
//!
//! ```text
//! cargo run -p demandflow-stages --features dashboard --example dashboard \
//!     [-- [--addr 127.0.0.1:8080] [--seconds N]]
//! ```
//!
//! Open the printed URL. `numbers` feeds two consumers by demand: `audit`
//! (fast) and `parse` (two instances), which feeds `store`, the slow one
//! (5 ms per event). `store` shows busy; the `parse` instances upstream of it
//! show backpressured (red); `numbers` sends most of its events to `audit`
//! and is barely held back. Runs until Ctrl-C or for `--seconds N`, then
//! shuts the pipeline down; the page then shows the final state and
//! "stopped".

use std::net::SocketAddr;
use std::time::Duration;

use demandflow::{
    sink, source, BoxError, Consumer, Context, Emitter, Pipeline, Processor, Subscribe,
};
use demandflow_stages::dashboard::Dashboard;

/// Turns numbers into lines of text: fast.
#[derive(Clone)]
struct Parse;

impl Processor<u64, String> for Parse {
    async fn process(
        &mut self,
        events: &[u64],
        out: &mut Emitter<String>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().map(|n| format!("event {n}")));
        Ok(())
    }
}

/// Pretends to write each line to a slow database: 5 ms per event.
#[derive(Clone)]
struct Store;

impl Consumer<String> for Store {
    async fn consume(&mut self, events: &[String], _cx: &Context) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(5) * events.len() as u32).await;
        Ok(())
    }
}

fn usage() -> ! {
    eprintln!("usage: dashboard [--addr ADDR] [--seconds N]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut addr: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut seconds = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                addr = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--seconds" => {
                seconds = Some(
                    args.next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            _ => usage(),
        }
    }

    let mut p = Pipeline::new();
    let numbers = p.producer("numbers", source::iter(0u64..));
    p.consumer("audit", sink::drain())
        .subscribe(&numbers, Subscribe::max_demand(64));
    let lines = p
        .processor("parse", Parse)
        .concurrency(2)
        .subscribe(&numbers, Subscribe::max_demand(16));
    p.consumer("store", Store)
        .subscribe(&lines, Subscribe::max_demand(8));
    let run = p.spawn()?;

    let dashboard = Dashboard::builder(run.watch())
        .title("demandflow example: a slow store")
        .serve(addr)
        .await?;
    println!("dashboard on {}", dashboard.url());

    let stop = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    stop.await;
    println!("stopping the pipeline");
    let report = run.shutdown(Duration::from_secs(2)).await;
    match &report {
        Ok(r) => println!("{:?}", r.status),
        Err(e) => println!("{e}"),
    }
    // The open pages got the final snapshot; the server has closed or
    // closes now.
    dashboard.shutdown().await?;
    Ok(())
}
