//! Reading one line at a time from an [`AsyncBufRead`] with a length cap,
//! so an over-long line is skipped without ever being held in memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read by [`read_capped_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole line, now in the buffer without its `\n`. `terminated` is
    /// false for a last line that ended with the input instead.
    Whole {
        /// Whether a `\n` ended it.
        terminated: bool,
    },
    /// The line was longer than the cap: the buffer holds its first `cap`
    /// bytes, the rest was read and dropped. `len` is its whole length.
    TooLong {
        /// The line's length in bytes, without its `\n`.
        len: u64,
        /// Whether a `\n` ended it.
        terminated: bool,
    },
    /// The input ended before any byte of a new line.
    Eof,
}

/// Reads the next line into `buf` (cleared first), holding at most `cap`
/// bytes of it.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future mid-line loses the part read so
/// far (the bytes are consumed from `reader`).
pub(crate) async fn read_capped_line<R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Line>
where
    R: AsyncBufRead + Unpin + ?Sized,
{
    buf.clear();
    let mut len: u64 = 0;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if len == 0 {
                Line::Eof
            } else {
                finish(len, cap, false)
            });
        }
        let (take, found) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        // Only the bytes below the cap are kept: the rest of an over-long
        // line is consumed and counted, never stored.
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        len += take as u64;
        reader.consume(if found { take + 1 } else { take });
        if found {
            return Ok(finish(len, cap, true));
        }
    }
}

fn finish(len: u64, cap: usize, terminated: bool) -> Line {
    if len > cap as u64 {
        Line::TooLong { len, terminated }
    } else {
        Line::Whole { terminated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn all_lines(input: &[u8], chunk: usize, cap: usize) -> Vec<(Vec<u8>, Line)> {
        let mut r = tokio::io::BufReader::with_capacity(chunk, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_capped_line(&mut r, &mut buf, cap).await.unwrap();
            if line == Line::Eof {
                return out;
            }
            out.push((buf.clone(), line));
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn splits_lines_and_marks_the_unterminated_last() {
        let got = block_on(all_lines(b"a\n\nbc\nd", 2, 10));
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), Line::Whole { terminated: true }),
                (b"".to_vec(), Line::Whole { terminated: true }),
                (b"bc".to_vec(), Line::Whole { terminated: true }),
                (b"d".to_vec(), Line::Whole { terminated: false }),
            ]
        );
    }

    #[test]
    fn an_over_long_line_keeps_only_the_cap_and_the_next_line_is_whole() {
        let got = block_on(all_lines(b"0123456789\nok\n", 3, 4));
        assert_eq!(
            got,
            vec![
                (
                    b"0123".to_vec(),
                    Line::TooLong {
                        len: 10,
                        terminated: true
                    }
                ),
                (b"ok".to_vec(), Line::Whole { terminated: true }),
            ]
        );
    }

    proptest! {
        /// Whatever the read size and cap, the lines are those of
        /// `split('\n')`, an over-long one is reported with its length, and
        /// the buffer never holds more than the cap.
        #[test]
        fn lines_match_split_for_any_chunking(
            lines in proptest::collection::vec("[a-z{}\" ]{0,12}", 0..8),
            trailing_newline in any::<bool>(),
            chunk in 1usize..9,
            cap in 0usize..10,
        ) {
            let mut input = lines.join("\n");
            if trailing_newline && !lines.is_empty() {
                input.push('\n');
            }
            let got = block_on(all_lines(input.as_bytes(), chunk, cap));
            let mut want: Vec<&str> = input.split('\n').collect();
            if input.ends_with('\n') || input.is_empty() {
                want.pop();
            }
            prop_assert_eq!(got.len(), want.len());
            for (i, ((bytes, line), w)) in got.iter().zip(&want).enumerate() {
                prop_assert!(bytes.len() <= cap);
                let last = i + 1 == want.len();
                let terminated = !last || input.ends_with('\n');
                if w.len() > cap {
                    prop_assert_eq!(*line, Line::TooLong { len: w.len() as u64, terminated });
                    prop_assert_eq!(&bytes[..], &w.as_bytes()[..cap]);
                } else {
                    prop_assert_eq!(*line, Line::Whole { terminated });
                    prop_assert_eq!(&bytes[..], w.as_bytes());
                }
            }
        }
    }
}
