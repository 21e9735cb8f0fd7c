//! Ready-made producers.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::Stream;

use crate::error::BoxError;
use crate::stage::{Context, Emitter, Flow, Producer};

/// A producer over an iterator; see [`iter`].
#[derive(Clone)]
pub struct Iter<I: IntoIterator> {
    template: I,
    iter: Option<I::IntoIter>,
}

impl<I: IntoIterator> fmt::Debug for Iter<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("started", &self.iter.is_some())
            .finish()
    }
}

/// Emits the items of `items`, as fast as demand allows, then ends.
///
/// A restarted instance starts over from the first item (the template is
/// cloned): use it for data that can be replayed.
///
/// # Example
///
/// ```
/// use demandflow::{source, Context, Emitter, Flow, Producer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = source::iter(1..=3);
/// let mut out = Emitter::new();
/// let cx = Context::detached("doc");
/// assert_eq!(p.produce(2, &mut out, &cx).await.unwrap(), Flow::Continue);
/// assert_eq!(p.produce(2, &mut out, &cx).await.unwrap(), Flow::Done);
/// assert_eq!(out.as_slice(), &[1, 2, 3]);
/// # }
/// ```
pub fn iter<I>(items: I) -> Iter<I>
where
    I: IntoIterator + Clone + Send + 'static,
    I::IntoIter: Send + Clone,
{
    Iter {
        template: items,
        iter: None,
    }
}

impl<I> Producer<I::Item> for Iter<I>
where
    I: IntoIterator + Clone + Send + 'static,
    I::IntoIter: Send + Clone,
    I::Item: Send,
{
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<I::Item>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        let it = self
            .iter
            .get_or_insert_with(|| self.template.clone().into_iter());
        let before = out.len();
        out.extend(it.by_ref().take(demand));
        Ok(if out.len() - before < demand {
            Flow::Done
        } else {
            Flow::Continue
        })
    }
}

/// A producer over a [`futures::Stream`]; see [`from_stream`].
pub struct FromStream<S> {
    stream: Arc<Mutex<Option<Pin<Box<S>>>>>,
}

impl<S> Clone for FromStream<S> {
    fn clone(&self) -> Self {
        FromStream {
            stream: self.stream.clone(),
        }
    }
}

impl<S> fmt::Debug for FromStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromStream").finish_non_exhaustive()
    }
}

/// Emits the items of `stream`, polling it only while demand is pending.
///
/// Items the stream has ready are coalesced into one batch; as soon as it
/// would wait, what it gave so far is delivered. Instances share the stream:
/// a restarted instance carries on where the failed one stopped.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let words = p.producer("words", source::from_stream(futures::stream::iter(["a", "b"])));
/// let (c, out) = sink::collect();
/// p.consumer("collect", c).subscribe(&words, Subscribe::default());
/// p.spawn().unwrap().join().await.unwrap();
/// assert_eq!(out.take(), vec!["a", "b"]);
/// # }
/// ```
pub fn from_stream<S>(stream: S) -> FromStream<S>
where
    S: Stream + Send + 'static,
{
    FromStream {
        stream: Arc::new(Mutex::new(Some(Box::pin(stream)))),
    }
}

impl<S> Producer<S::Item> for FromStream<S>
where
    S: Stream + Send + 'static,
    S::Item: Send,
{
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<S::Item>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        let shared = self.stream.clone();
        let mut emitted = 0;
        std::future::poll_fn(|cx| {
            let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
            let Some(stream) = guard.as_mut() else {
                return Poll::Ready(Ok(Flow::Done));
            };
            while emitted < demand {
                match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(item)) => {
                        out.emit(item);
                        emitted += 1;
                    }
                    Poll::Ready(None) => {
                        *guard = None;
                        return Poll::Ready(Ok(Flow::Done));
                    }
                    Poll::Pending if emitted > 0 => return Poll::Ready(Ok(Flow::Continue)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(Flow::Continue))
        })
        .await
    }
}

/// A producer calling a function per event; see [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    next: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

/// Emits `next()` until it returns `None`: one call per event, coalesced by
/// the engine into batches.
///
/// # Example
///
/// ```
/// use demandflow::source;
///
/// let mut n = 0u64;
/// let counter = source::from_fn(move || {
///     n += 1;
///     (n <= 3).then_some(n)
/// });
/// # let _ = counter;
/// ```
pub fn from_fn<T, F>(next: F) -> FromFn<F>
where
    F: FnMut() -> Option<T> + Clone + Send + 'static,
{
    FromFn { next }
}

impl<T, F> Producer<T> for FromFn<F>
where
    T: Send + 'static,
    F: FnMut() -> Option<T> + Clone + Send + 'static,
{
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        for _ in 0..demand {
            match (self.next)() {
                Some(x) => out.emit(x),
                None => return Ok(Flow::Done),
            }
        }
        Ok(Flow::Continue)
    }
}

/// A producer of the lines of an [`AsyncBufRead`](tokio::io::AsyncBufRead);
/// see [`lines`].
pub struct Lines<R> {
    shared: Arc<Mutex<LinesState<R>>>,
}

struct LinesState<R> {
    /// `None` once the input has ended or failed.
    lines: Option<tokio::io::Lines<R>>,
    /// Lines read so far.
    read: u64,
    /// The error the input failed with: every later call fails with it too.
    failed: Option<LinesError>,
}

impl<R> Clone for Lines<R> {
    fn clone(&self) -> Self {
        Lines {
            shared: self.shared.clone(),
        }
    }
}

impl<R> fmt::Debug for Lines<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines").finish_non_exhaustive()
    }
}

/// Why a [`lines`] source failed: an I/O error or a line that is not
/// UTF-8, with the number of the line it was reading (from 1). Its
/// [`source`](std::error::Error::source) is the I/O error.
#[derive(Debug, Clone)]
pub struct LinesError {
    line: u64,
    error: Arc<std::io::Error>,
}

impl LinesError {
    /// The number of the line that could not be read, counting from 1.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The I/O error (`InvalidData` for a line that is not UTF-8).
    pub fn io_error(&self) -> &std::io::Error {
        &self.error
    }
}

impl fmt::Display for LinesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.error.kind() == std::io::ErrorKind::InvalidData {
            write!(f, "line {}: not valid UTF-8", self.line)
        } else {
            write!(f, "reading line {}: {}", self.line, self.error)
        }
    }
}

impl std::error::Error for LinesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

/// Emits the lines of `reader` as `String`s, without their `\n` or `\r\n`,
/// then ends at the end of the input.
///
/// It reads only while demand is pending: lines the reader has ready are
/// coalesced into one batch, and as soon as it would wait, what it read
/// so far is delivered (a slow input such as a socket or stdin is not held
/// back to fill a batch). Instances share the reader: a restarted instance
/// carries on where the failed one stopped.
///
/// An I/O error, or a line that is not UTF-8, fails the stage with a
/// [`LinesError`] naming the line; the input is not read past it (that
/// would skip a line silently), so every restarted instance fails the same
/// way and the run ends failed with that error.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Any `AsyncBufRead`: a `tokio::io::BufReader` over a file, stdin, a socket...
/// let input: &[u8] = b"first\nsecond\r\nthird";
/// let mut p = Pipeline::new();
/// let lines = p.producer("lines", source::lines(input));
/// let (c, got) = sink::collect();
/// p.consumer("collect", c).subscribe(&lines, Subscribe::default());
/// p.spawn()?.join().await?;
/// assert_eq!(got.take(), ["first", "second", "third"]);
/// # Ok(()) }
/// ```
///
/// From a file (tokio's `fs` feature):
///
/// ```no_run
/// # async fn doc() -> std::io::Result<()> {
/// let file = tokio::fs::File::open("input.txt").await?;
/// let lines = demandflow::source::lines(tokio::io::BufReader::new(file));
/// # let _ = lines; Ok(()) }
/// ```
pub fn lines<R>(reader: R) -> Lines<R>
where
    R: tokio::io::AsyncBufRead + Send + Unpin + 'static,
{
    use tokio::io::AsyncBufReadExt;
    Lines {
        shared: Arc::new(Mutex::new(LinesState {
            lines: Some(reader.lines()),
            read: 0,
            failed: None,
        })),
    }
}

impl<R> Producer<String> for Lines<R>
where
    R: tokio::io::AsyncBufRead + Send + Unpin + 'static,
{
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<String>,
        _cx: &Context,
    ) -> Result<Flow, BoxError> {
        let shared = self.shared.clone();
        let mut emitted = 0;
        std::future::poll_fn(|cx| {
            let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
            let state = &mut *guard;
            if let Some(e) = &state.failed {
                return Poll::Ready(Err(Box::new(e.clone()) as BoxError));
            }
            let Some(lines) = state.lines.as_mut() else {
                return Poll::Ready(Ok(Flow::Done));
            };
            while emitted < demand {
                match Pin::new(&mut *lines).poll_next_line(cx) {
                    Poll::Ready(Ok(Some(line))) => {
                        state.read += 1;
                        out.emit(line);
                        emitted += 1;
                    }
                    Poll::Ready(Ok(None)) => {
                        state.lines = None;
                        return Poll::Ready(Ok(Flow::Done));
                    }
                    Poll::Ready(Err(error)) => {
                        let e = LinesError {
                            line: state.read + 1,
                            error: Arc::new(error),
                        };
                        state.lines = None;
                        state.failed = Some(e.clone());
                        return Poll::Ready(Err(Box::new(e) as BoxError));
                    }
                    Poll::Pending if emitted > 0 => return Poll::Ready(Ok(Flow::Continue)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Ok(Flow::Continue))
        })
        .await
    }
}
