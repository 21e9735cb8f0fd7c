//! The `demandflow` command line: `demo`, `bench`, `stream`, `chaos` and
//! `replay` (DESIGN.md §9). Run `demandflow --help`.

#[path = "../cli/mod.rs"]
mod cli;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(cli::main(&args));
}
