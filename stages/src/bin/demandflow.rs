//! The `demandflow` command line: `demo`, `bench`, `stream`, `chaos`,
//! `replay`, `mock` and `completions` (DESIGN.md §9). Run `demandflow --help`.

#[path = "../cli/mod.rs"]
mod cli;

fn main() {
    std::process::exit(cli::main(std::env::args_os()));
}
