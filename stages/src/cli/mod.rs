//! The `demandflow` command line (DESIGN.md §9): `demo`, `bench`, `stream`,
//! `chaos`, `replay` and `mock`.
//!
//! Every subcommand returns its exit status: 0 success, 1 a run that did
//! not end as it should, 2 a usage error (reported as one line on stderr).

mod args;
mod bench;
mod chaos;
mod demo;
mod live;
mod mock;
mod stream;

use std::io::Write;

/// Exit status of a usage error.
pub(crate) const USAGE_ERROR: i32 = 2;

const USAGE: &str = "\
demandflow: demand-driven streaming pipelines

usage: demandflow <command> [options]

commands:
  demo     stream a generated answer from the embedded mock provider through
           provider -> processor -> slow consumer, with live demand stats
  bench    throughput of the standard shapes beside hand-written tokio baselines
  stream   one real streaming request to an LLM provider (or a local server)
  chaos    a supervised pipeline whose processors crash at random; checks
           that nothing is lost
  replay   decode a recorded SSE transcript and print its normalised events
  mock     run the embedded mock provider as a server (prints its URL)

`demandflow <command> --help` describes each command's options.";

/// Runs the command line `args` (without the program name).
pub(crate) fn main(args: &[String]) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        eprintln!(
            "demandflow: missing command (demo, bench, stream, chaos, replay, mock); try --help"
        );
        return USAGE_ERROR;
    };
    match command.as_str() {
        "demo" => demo::run(rest),
        "bench" => bench::run(rest),
        "stream" => stream::run(rest),
        "chaos" => chaos::run(rest),
        "mock" => mock::run(rest),
        "replay" => {
            let code = demandflow_stages::replay::run(
                rest,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            // `replay` reports `--help` as a usage "error"; print it as help.
            if code == USAGE_ERROR && rest.iter().any(|a| a == "-h" || a == "--help") {
                return 0;
            }
            code
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            0
        }
        "-V" | "--version" => {
            println!("demandflow {}", env!("CARGO_PKG_VERSION"));
            0
        }
        other => {
            eprintln!("demandflow: unknown command `{other}` (demo, bench, stream, chaos, replay, mock); try --help");
            USAGE_ERROR
        }
    }
}

/// Reports a usage error of `command` as one line and returns exit status 2.
pub(crate) fn usage_error(command: &str, message: &str) -> i32 {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "demandflow {command}: {message} (try --help)");
    USAGE_ERROR
}

/// The shared front of an async subcommand: `--help`, usage errors, the
/// 2-worker runtime, and the body's outcome as an exit code.
pub(crate) fn run_async<O, F>(
    command: &str,
    help: &str,
    options: Result<Option<O>, String>,
    body: impl FnOnce(O) -> F,
) -> i32
where
    F: std::future::Future<Output = Result<i32, String>>,
{
    let options = match options {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{help}");
            return 0;
        }
        Err(e) => return usage_error(command, &e),
    };
    let rt = match runtime(2) {
        Ok(rt) => rt,
        Err(e) => return failure(command, &format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(body(options)) {
        Ok(code) => code,
        Err(e) => failure(command, &e),
    }
}

/// Reports a runtime failure of `command` (one line) and returns 1.
pub(crate) fn failure(command: &str, message: &str) -> i32 {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "demandflow {command}: {message}");
    1
}

/// Completes at the first Ctrl-C (SIGINT); never, if it cannot be watched.
pub(crate) async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A multi-thread tokio runtime with `workers` workers.
pub(crate) fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}
