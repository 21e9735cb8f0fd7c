//! A live status line under streamed text.
//!
//! When stderr is a terminal, the status line is redrawn in place with `\r`;
//! when stdout is the same kind of terminal, the line sits below the text
//! and the text keeps flowing above it. When stderr is not a terminal,
//! status lines are printed plainly, at most once per `plain_every`, so logs
//! and tests get a readable trace instead of control sequences.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Columns after which a partial text line is broken on screen, so that
/// moving the cursor up one row always lands on it.
const MAX_PARTIAL: usize = 78;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Text and status on the same terminal: status below the text.
    Shared,
    /// Status on a terminal, text elsewhere.
    StatusOnly,
    /// Neither on a terminal: periodic plain status lines.
    Plain,
}

/// Text on stdout and a status line on stderr, drawn without clobbering
/// each other.
#[derive(Debug)]
pub(crate) struct Screen {
    mode: Mode,
    /// Text since the last newline, as shown on screen.
    partial: String,
    status: String,
    /// Whether the status line is on screen.
    drawn: bool,
    plain_every: Duration,
    last_plain: Option<Instant>,
}

impl Screen {
    /// Chooses the mode from what stdout and stderr are.
    pub(crate) fn detect(plain_every: Duration) -> Screen {
        let mode = match (
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
        ) {
            (true, true) => Mode::Shared,
            (false, true) => Mode::StatusOnly,
            _ => Mode::Plain,
        };
        Screen {
            mode,
            partial: String::new(),
            status: String::new(),
            drawn: false,
            plain_every,
            last_plain: None,
        }
    }

    /// Prints a piece of text on stdout, as it arrives.
    pub(crate) fn text(&mut self, piece: &str) {
        let mut out = std::io::stdout().lock();
        if self.mode != Mode::Shared || !self.drawn {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
            self.track(piece);
            if self.mode == Mode::Shared && self.partial.chars().count() > MAX_PARTIAL {
                let _ = out.write_all(b"\n");
                let _ = out.flush();
                self.partial.clear();
            }
            return;
        }
        // Clear the status row, go up to the text row, rewrite it with the
        // new piece, then draw the status row again below it.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"\r\x1b[K\x1b[1A\r");
        let _ = err.flush();
        let _ = out.write_all(self.partial.as_bytes());
        let _ = out.write_all(piece.as_bytes());
        self.track(piece);
        if self.partial.chars().count() > MAX_PARTIAL {
            let _ = out.write_all(b"\n");
            self.partial.clear();
        }
        let _ = out.flush();
        let _ = write!(err, "\x1b[K\n{}\x1b[K", self.status);
        let _ = err.flush();
    }

    fn track(&mut self, piece: &str) {
        match piece.rfind('\n') {
            Some(i) => {
                self.partial.clear();
                self.partial.push_str(&piece[i + 1..]);
            }
            None => self.partial.push_str(piece),
        }
    }

    /// Replaces the status line; `force` prints it even when a plain line
    /// is not due (the last one of a run).
    pub(crate) fn status(&mut self, line: String, force: bool) {
        self.status = line;
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Shared if self.drawn => {
                let _ = write!(err, "\r{}\x1b[K", self.status);
            }
            Mode::Shared => {
                let _ = write!(err, "\n{}\x1b[K", self.status);
                self.drawn = true;
            }
            Mode::StatusOnly => {
                let _ = write!(err, "\r{}\x1b[K", self.status);
                self.drawn = true;
            }
            Mode::Plain => {
                let due = force
                    || self
                        .last_plain
                        .is_none_or(|at| at.elapsed() >= self.plain_every);
                if due {
                    let _ = writeln!(err, "{}", self.status);
                    self.last_plain = Some(Instant::now());
                }
            }
        }
        let _ = err.flush();
    }

    /// Removes the status line and ends the text with a newline.
    pub(crate) fn finish(&mut self) {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Shared if self.drawn => {
                let _ = err.write_all(b"\r\x1b[K\x1b[1A\r");
                let _ = err.flush();
                let _ = out.write_all(self.partial.as_bytes());
            }
            Mode::StatusOnly if self.drawn => {
                let _ = err.write_all(b"\r\x1b[K");
                let _ = err.flush();
            }
            _ => {}
        }
        self.drawn = false;
        if !self.partial.is_empty() {
            let _ = out.write_all(b"\n");
        }
        self.partial.clear();
        let _ = out.flush();
    }
}
