//! Ready-made consumers.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::BoxError;
use crate::stage::{Consumer, Context};

/// A consumer calling a function per event; see [`for_each`].
#[derive(Clone)]
pub struct ForEach<F> {
    f: F,
}

impl<F> fmt::Debug for ForEach<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForEach").finish_non_exhaustive()
    }
}

/// Calls `f` with every event.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("n", source::iter(0..3u8));
/// p.consumer("print", sink::for_each(|x: u8| println!("{x}"))).subscribe(&n, Subscribe::default());
/// p.spawn().unwrap().join().await.unwrap();
/// # }
/// ```
pub fn for_each<T, F>(f: F) -> ForEach<F>
where
    T: Clone + Send + Sync + 'static,
    F: FnMut(T) + Clone + Send + 'static,
{
    ForEach { f }
}

impl<T, F> Consumer<T> for ForEach<F>
where
    T: Clone + Send + Sync + 'static,
    F: FnMut(T) + Clone + Send + 'static,
{
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        events.iter().cloned().for_each(&mut self.f);
        Ok(())
    }
}

/// A [`fold`]'s (or [`count`]'s) accumulator, shared with its stage.
///
/// The accumulator lives here, not in the stage instance: it holds every
/// batch the stage finished, whatever ended the run. After a cancel, a
/// deadline or a failure, [`get`](Self::get) is the partial result; a
/// restarted instance carries on from it, so a restart loses nothing and
/// counts nothing twice (a batch whose handler failed is handed again to
/// the new instance, and only a batch that was handled is in the value).
/// [`is_complete`](Self::is_complete) says whether the fold saw the end of
/// its input.
#[derive(Debug)]
pub struct FoldResult<A> {
    slot: Arc<Mutex<FoldSlot<A>>>,
}

#[derive(Debug)]
struct FoldSlot<A> {
    acc: A,
    complete: bool,
}

impl<A> Clone for FoldResult<A> {
    fn clone(&self) -> Self {
        FoldResult {
            slot: self.slot.clone(),
        }
    }
}

impl<A> FoldResult<A> {
    fn new(init: A) -> FoldResult<A> {
        FoldResult {
            slot: Arc::new(Mutex::new(FoldSlot {
                acc: init,
                complete: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FoldSlot<A>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the stage saw the end of its input: `get` is then the fold
    /// of every event. `false` after a cancel, a deadline or a failure
    /// (and while it runs).
    pub fn is_complete(&self) -> bool {
        self.lock().complete
    }

    /// Takes the accumulator out, leaving `A::default()`.
    pub fn take(&self) -> A
    where
        A: Default,
    {
        std::mem::take(&mut self.lock().acc)
    }
}

impl<A: Clone> FoldResult<A> {
    /// The accumulator now: the final value once the stage finished, the
    /// value so far while it runs or after a cancel, deadline or failure,
    /// and `init` before the first batch.
    pub fn get(&self) -> A {
        self.lock().acc.clone()
    }
}

/// A consumer folding events into an accumulator; see [`fold`].
pub struct Fold<A, F> {
    f: F,
    out: FoldResult<A>,
}

impl<A, F: Clone> Clone for Fold<A, F> {
    fn clone(&self) -> Self {
        Fold {
            f: self.f.clone(),
            out: self.out.clone(),
        }
    }
}

impl<A, F> fmt::Debug for Fold<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fold").finish_non_exhaustive()
    }
}

/// Folds every event into `init` with `f`; the accumulator is in the
/// returned [`FoldResult`], as it stands after every batch.
///
/// The value survives a cancel, a deadline and a restart: the
/// accumulator is shared, not per instance, so a restarted instance
/// carries on from the last handled batch. The accumulator is cloned once
/// per batch, so that a panic in `f` halfway through a batch leaves the
/// value before it (the batch is handed again to the restarted instance).
/// With [`concurrency`](crate::pipeline::ConsumerBuilder::concurrency),
/// the instances fold into the one accumulator in no set order.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("n", source::iter(1..=4u32));
/// let (sum, total) = sink::fold(0u32, |a, x: u32| a + x);
/// p.consumer("sum", sum).subscribe(&n, Subscribe::default());
/// p.spawn().unwrap().join().await.unwrap();
/// assert_eq!(total.get(), 10);
/// assert!(total.is_complete());
/// # }
/// ```
pub fn fold<T, A, F>(init: A, f: F) -> (Fold<A, F>, FoldResult<A>)
where
    A: Clone + Send + 'static,
    F: FnMut(A, T) -> A + Clone + Send + 'static,
{
    let out = FoldResult::new(init);
    (
        Fold {
            f,
            out: out.clone(),
        },
        out,
    )
}

impl<T, A, F> Consumer<T> for Fold<A, F>
where
    T: Clone + Send + Sync + 'static,
    A: Clone + Send + 'static,
    F: FnMut(A, T) -> A + Clone + Send + 'static,
{
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        let mut slot = self.out.lock();
        let mut acc = slot.acc.clone();
        for e in events {
            acc = (self.f)(acc, e.clone());
        }
        slot.acc = acc;
        Ok(())
    }

    async fn finish(&mut self, _cx: &Context) -> Result<(), BoxError> {
        self.out.lock().complete = true;
        Ok(())
    }
}

/// A consumer counting events; see [`count`].
#[derive(Clone)]
pub struct Count {
    out: FoldResult<u64>,
}

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Count").finish_non_exhaustive()
    }
}

/// Counts the events it handles: a [`fold`] of `n + 1` that needs nothing
/// of the events (no `Clone`). Like `fold`'s, the count survives a cancel,
/// a deadline and a restart.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("n", source::iter(0..1000u32));
/// let (count, seen) = sink::count();
/// p.consumer("count", count).subscribe(&n, Subscribe::default());
/// p.spawn().unwrap().join().await.unwrap();
/// assert_eq!(seen.get(), 1000);
/// # }
/// ```
pub fn count() -> (Count, FoldResult<u64>) {
    let out = FoldResult::new(0);
    (Count { out: out.clone() }, out)
}

impl<T: Send + Sync + 'static> Consumer<T> for Count {
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        self.out.lock().acc += events.len() as u64;
        Ok(())
    }

    async fn finish(&mut self, _cx: &Context) -> Result<(), BoxError> {
        self.out.lock().complete = true;
        Ok(())
    }
}

/// What a [`collect`] consumer has gathered.
#[derive(Debug)]
pub struct Collected<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Collected<T> {
    fn clone(&self) -> Self {
        Collected {
            items: self.items.clone(),
        }
    }
}

impl<T> Collected<T> {
    /// Takes everything gathered so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many items were gathered so far.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing was gathered yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A consumer gathering every event; see [`collect`].
pub struct Collect<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Collect<T> {
    fn clone(&self) -> Self {
        Collect {
            items: self.items.clone(),
        }
    }
}

impl<T> fmt::Debug for Collect<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collect").finish_non_exhaustive()
    }
}

/// Gathers every event into a shared `Vec` (kept across restarts).
pub fn collect<T: Clone + Send + 'static>() -> (Collect<T>, Collected<T>) {
    let items = Arc::new(Mutex::new(Vec::new()));
    (
        Collect {
            items: items.clone(),
        },
        Collected { items },
    )
}

impl<T: Clone + Send + Sync + 'static> Consumer<T> for Collect<T> {
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
        Ok(())
    }
}

/// A consumer that takes every event and does nothing with it; see [`drain`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Drain;

/// Takes and discards every event (benchmarks, tests of upstream stages).
pub fn drain() -> Drain {
    Drain
}

impl<T: Send + Sync + 'static> Consumer<T> for Drain {
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        std::hint::black_box(events);
        Ok(())
    }
}
