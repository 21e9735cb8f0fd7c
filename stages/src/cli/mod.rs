//! The `demandflow` command line (DESIGN.md §9): `demo`, `bench`, `stream`,
//! `chaos`, `replay`, `mock`, `batch` and `completions`, parsed by clap.
//!
//! Every subcommand returns its exit status: 0 success, 1 a run that did
//! not end as it should, 2 a usage error (clap's message: what was wrong,
//! what was typed, the usage line and, for a near miss, a suggestion).
//!
//! Output never panics: a closed stdout (`demandflow demo | head -1`) or
//! stderr ends the printing quietly (see [`output`]).

// Defined before the submodules so that they can use them.
/// Prints a line on stdout; a closed stdout is recorded, never a panic.
macro_rules! outln {
    () => {
        $crate::cli::output::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::out_line(format_args!($($arg)*))
    };
}

/// Prints a line on stderr; a failed write is ignored, never a panic.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::err_line(format_args!($($arg)*))
    };
}

mod args;
mod batch;
mod batch_run;
mod bench;
mod chaos;
mod dashboard;
mod demo;
mod live;
mod mock;
pub(crate) mod output;
mod replay;
mod stream;

use clap::{CommandFactory, Parser, Subcommand};

/// Exit status of a usage error.
pub(crate) const USAGE_ERROR: i32 = 2;

/// demandflow: demand-driven streaming pipelines.
///
/// `demandflow help COMMAND` (or `demandflow COMMAND --help`) describes each
/// command's options.
#[derive(Debug, Parser)]
#[command(
    name = "demandflow",
    version,
    propagate_version = true,
    // `-h` a summary, `--help` the full text.
    after_help = "Exit status: 0 success, 1 a run that did not end as it should, 2 a usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. A new one is one variant here and one arm in [`main`].
#[derive(Debug, Subcommand)]
enum Command {
    /// Stream a generated answer from the embedded mock provider through
    /// provider -> processor -> slow consumer, with live demand stats
    Demo(demo::DemoArgs),
    /// Throughput of the standard shapes beside hand-written tokio baselines
    Bench(bench::BenchArgs),
    /// One real streaming request to an LLM provider (or a local server)
    Stream(stream::StreamArgs),
    /// A supervised pipeline whose processors crash at random; checks that
    /// nothing is lost
    Chaos(chaos::ChaosArgs),
    /// Decode a recorded SSE transcript and print its normalised events
    Replay(replay::ReplayArgs),
    /// Run the embedded mock provider as a server (prints its URL)
    Mock(mock::MockArgs),
    /// Send a JSONL file of requests (OpenAI Batch or Anthropic Message
    /// Batches lines) through the rate-limited request stage; one result
    /// line each, resumable
    Batch(batch::BatchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    ///
    /// For example: `demandflow completions bash > ~/.local/share/bash-completion/completions/demandflow`,
    /// or `demandflow completions zsh > "${fpath[1]}/_demandflow"`.
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

/// Runs the command line `args` (with the program name first).
pub(crate) fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // Help and --version are "errors" with exit status 0 printed on
        // stdout; usage errors go to stderr with status 2.
        Err(mut e) => {
            if e.exit_code() != 0 {
                with_usage(&mut e, args.get(1).and_then(|a| a.to_str()));
            }
            let _ = e.print();
            return e.exit_code();
        }
    };
    let code = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Stream(a) => stream::run(a),
        Command::Chaos(a) => chaos::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Mock(a) => mock::run(a),
        Command::Batch(a) => batch_run::run(a),
        Command::Completions { shell } => completions(shell),
    };
    output::flush();
    code
}

/// Adds the usage line to an error that clap reports without one (a bad
/// value): the usage of `command` when it names a subcommand.
fn with_usage(e: &mut clap::Error, command: Option<&str>) {
    use clap::error::{ContextKind, ContextValue};
    if e.get(ContextKind::Usage).is_some() {
        return;
    }
    let mut cli = Cli::command();
    cli.build();
    let usage = match command.and_then(|c| cli.find_subcommand_mut(c)) {
        Some(sub) => sub.render_usage(),
        None => cli.render_usage(),
    };
    e.insert(ContextKind::Usage, ContextValue::StyledStr(usage));
}

/// Writes the completion script for `shell` on stdout.
fn completions(shell: clap_complete::Shell) -> i32 {
    // clap_complete panics on a failed write: generate into memory first.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "demandflow", &mut script);
    output::out_bytes(&script);
    0
}

/// Reports a usage error found after parsing (a value that depends on
/// another, a URL) the way clap reports its own: the message, the
/// subcommand's usage line, a pointer to `--help`; returns exit status 2.
pub(crate) fn usage_error(command: &str, message: &str) -> i32 {
    let mut cli = Cli::command();
    cli.build();
    let mut e = match cli.find_subcommand_mut(command) {
        Some(sub) => sub.error(clap::error::ErrorKind::ValueValidation, message),
        None => cli.error(clap::error::ErrorKind::ValueValidation, message),
    };
    with_usage(&mut e, Some(command));
    let _ = e.print();
    USAGE_ERROR
}

/// The shared front of an async subcommand: the checked options (or a
/// usage error), the 2-worker runtime, and the body's outcome as an exit
/// code.
pub(crate) fn run_async<O, F>(
    command: &str,
    options: Result<O, String>,
    body: impl FnOnce(O) -> F,
) -> i32
where
    F: std::future::Future<Output = Result<i32, String>>,
{
    let options = match options {
        Ok(o) => o,
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
    errln!("demandflow {command}: {message}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: no duplicate flags, valid defaults, ...
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_usage_for_post_parse_errors() {
        let mut cli = Cli::command();
        cli.build();
        for name in [
            "demo", "bench", "stream", "chaos", "replay", "mock", "batch",
        ] {
            let sub = cli.find_subcommand_mut(name).unwrap();
            let usage = sub.render_usage().to_string();
            assert!(usage.contains(&format!("demandflow {name}")), "{usage}");
        }
    }
}
