//! Printing that never panics.
//!
//! `println!` panics when stdout is a closed pipe (`demandflow demo | head
//! -1` would exit 101). Here a failed write to stdout is recorded instead:
//! commands whose job is to print a stream (`demo`, `stream`, `replay`)
//! check [`stdout_closed`] and stop early, quietly, with exit status 0 (the
//! reader has what it wanted; no SIGPIPE death either). A failed write to
//! stderr is ignored: there is nowhere left to report it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first failed write to stdout.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout has failed (the reader is gone).
pub(crate) fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Records the outcome of a write to stdout; returns whether it succeeded.
pub(crate) fn track(result: std::io::Result<()>) -> bool {
    if result.is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// Writes `bytes` on stdout and flushes (the text of a stream is shown as
/// it arrives); returns whether it succeeded.
pub(crate) fn out_bytes(bytes: &[u8]) -> bool {
    if stdout_closed() {
        return false;
    }
    let mut out = std::io::stdout().lock();
    track(out.write_all(bytes).and_then(|()| out.flush()))
}

/// `outln!`: one formatted line on stdout (see [`stdout_closed`]).
pub(crate) fn out_line(args: std::fmt::Arguments<'_>) {
    if stdout_closed() {
        return;
    }
    let mut out = std::io::stdout().lock();
    track(out.write_fmt(args).and_then(|()| out.write_all(b"\n")));
}

/// `errln!`: one formatted line on stderr, errors ignored.
pub(crate) fn err_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// Flushes stdout before `process::exit`, which runs no destructors.
pub(crate) fn flush() {
    if !stdout_closed() {
        track(std::io::stdout().lock().flush());
    }
}
