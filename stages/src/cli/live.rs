//! Streamed text on stdout and a live status line on stderr that never
//! lands inside the text.
//!
//! * stderr a terminal, stdout elsewhere: the status line is redrawn in
//!   place with `\r`, cut to the terminal's width so it never wraps (a
//!   wrapped line cannot be redrawn).
//! * both on the same terminal: the status line sits on the row below the
//!   text; before each piece of text it is cleared and the cursor moves up
//!   to the text row. Text rows are broken before the terminal's width, so
//!   "one row up" always lands on the text, and the status is cut to the
//!   width, so it is always one row.
//! * stderr not a terminal: nothing while the text streams (a log that
//!   also holds stdout would get status lines in the middle of the text),
//!   one plain line at the end.

use std::io::{IsTerminal, Write};

use super::output;

/// Columns after which a partial text line is broken on screen when the
/// terminal is wider: the reflowed text is narrower anyway.
const MAX_PARTIAL: usize = 78;

/// Assumed when the terminal does not say.
const DEFAULT_COLUMNS: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Text and status on the same terminal: status below the text.
    Shared,
    /// Status on a terminal, text elsewhere.
    StatusOnly,
    /// stderr not a terminal: the last status line only.
    Plain,
}

/// Text on stdout and a status line on stderr, drawn without clobbering
/// each other.
#[derive(Debug)]
pub(crate) struct Screen {
    mode: Mode,
    /// Text since the last newline, as shown on screen (tracked on a
    /// shared terminal only).
    partial: String,
    /// The text so far does not end with a newline.
    open_line: bool,
    status: String,
    /// Whether the status line is on screen.
    drawn: bool,
    /// Usable columns: one less than the terminal's, so that the cursor
    /// never wraps at the last column.
    columns: usize,
}

impl Screen {
    /// Chooses the mode from what stdout and stderr are.
    pub(crate) fn detect() -> Screen {
        let mode = match (
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
        ) {
            (true, true) => Mode::Shared,
            (false, true) => Mode::StatusOnly,
            _ => Mode::Plain,
        };
        let columns = terminal_size::terminal_size_of(std::io::stderr())
            .map_or(DEFAULT_COLUMNS, |(w, _)| usize::from(w.0));
        Screen::new(mode, columns)
    }

    fn new(mode: Mode, columns: usize) -> Screen {
        Screen {
            mode,
            partial: String::new(),
            open_line: false,
            status: String::new(),
            drawn: false,
            columns: columns.saturating_sub(1).max(10),
        }
    }

    /// Prints a piece of text on stdout, as it arrives; returns `false`
    /// once stdout is closed.
    pub(crate) fn text(&mut self, piece: &str) -> bool {
        if !piece.is_empty() {
            self.open_line = !piece.ends_with('\n');
        }
        if self.mode != Mode::Shared {
            return output::out_bytes(piece.as_bytes());
        }
        if !self.drawn {
            let shown = self.layout(piece);
            return output::out_bytes(shown.as_bytes());
        }
        // Clear the status row, go up to the text row, rewrite it with the
        // new piece, then draw the status row again below it.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"\r\x1b[K\x1b[1A\r");
        let _ = err.flush();
        let mut shown = self.partial.clone();
        shown.push_str(&self.layout(piece));
        let ok = output::out_bytes(shown.as_bytes());
        let _ = write!(err, "\x1b[K\n{}\x1b[K", self.status);
        let _ = err.flush();
        ok
    }

    /// `piece` with a newline wherever the text row would reach the usable
    /// width (so no row ever wraps on screen); updates the partial row.
    fn layout(&mut self, piece: &str) -> String {
        let limit = self.columns.min(MAX_PARTIAL);
        let mut shown = String::with_capacity(piece.len() + 2);
        let mut len = self.partial.chars().count();
        for c in piece.chars() {
            if c == '\n' {
                self.partial.clear();
                len = 0;
            } else if len >= limit {
                shown.push('\n');
                self.partial.clear();
                len = 0;
            }
            shown.push(c);
            if c != '\n' {
                self.partial.push(c);
                len += 1;
            }
        }
        shown
    }

    /// Replaces the status line (not shown when stderr is not a terminal).
    pub(crate) fn status(&mut self, line: &str) {
        self.status = fit(line, self.columns);
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
            Mode::Plain => {}
        }
        let _ = err.flush();
    }

    /// Removes the status line and ends the text with a newline; when
    /// stderr is not a terminal, prints `last` (whole) after the text.
    pub(crate) fn finish(&mut self, last: &str) {
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Shared if self.drawn => {
                let _ = err.write_all(b"\r\x1b[K\x1b[1A\r");
                let _ = err.flush();
                output::out_bytes(self.partial.as_bytes());
            }
            Mode::StatusOnly if self.drawn => {
                let _ = err.write_all(b"\r\x1b[K");
                let _ = err.flush();
            }
            _ => {}
        }
        self.drawn = false;
        if self.open_line {
            output::out_bytes(b"\n");
        }
        self.partial.clear();
        self.open_line = false;
        if self.mode == Mode::Plain {
            errln!("{last}");
        }
    }
}

/// `line` cut to `columns` characters, with `…` where it was cut.
fn fit(line: &str, columns: usize) -> String {
    if line.chars().count() <= columns {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(columns.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_never_exceeds_the_width() {
        let line = "[  1.2s] pending demand   8 | buffered  16/24 | restarts 0 | printed 123 events | 456 words reflowed";
        for columns in [10, 40, 79, 200] {
            let f = fit(line, columns);
            assert!(f.chars().count() <= columns, "{columns}: {f}");
            assert!(line.starts_with(f.trim_end_matches('…')));
        }
        assert_eq!(fit("short", 79), "short");
    }

    #[test]
    fn shared_text_rows_break_before_the_terminal_width() {
        let mut s = Screen::new(Mode::Shared, 11);
        let mut shown = String::new();
        for piece in [
            "lorem ",
            "ipsum dolor",
            " sit\namet ",
            "consectetur adipiscing",
        ] {
            shown.push_str(&s.layout(piece));
        }
        // Only newlines were added, and no row is wider than 10 columns.
        assert_eq!(
            shown.replace('\n', ""),
            "lorem ipsum dolor sitamet consectetur adipiscing"
        );
        assert!(shown.lines().all(|l| l.chars().count() <= 10), "{shown:?}");
        assert_eq!(s.partial, shown.lines().last().unwrap());
        let wide = Screen::new(Mode::Shared, 300);
        assert_eq!(wide.columns.min(MAX_PARTIAL), MAX_PARTIAL);
    }
}
