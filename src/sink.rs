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

/// Where a [`fold`]'s result lands when its stage finishes.
#[derive(Debug)]
pub struct FoldResult<A> {
    slot: Arc<Mutex<Option<A>>>,
}

impl<A> Clone for FoldResult<A> {
    fn clone(&self) -> Self {
        FoldResult {
            slot: self.slot.clone(),
        }
    }
}

impl<A: Clone> FoldResult<A> {
    /// The final accumulator, once the stage has finished normally.
    pub fn get(&self) -> Option<A> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<A> FoldResult<A> {
    /// Takes the final accumulator out.
    pub fn take(&self) -> Option<A> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A consumer folding events into an accumulator; see [`fold`].
#[derive(Clone)]
pub struct Fold<A, F> {
    init: A,
    acc: Option<A>,
    f: F,
    out: Arc<Mutex<Option<A>>>,
}

impl<A, F> fmt::Debug for Fold<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fold").finish_non_exhaustive()
    }
}

/// Folds every event into `init` with `f`; the result is in the returned
/// [`FoldResult`] once the stage finishes. A restarted instance starts again
/// from `init`.
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
/// assert_eq!(total.get(), Some(10));
/// # }
/// ```
pub fn fold<T, A, F>(init: A, f: F) -> (Fold<A, F>, FoldResult<A>)
where
    A: Clone + Send + Sync + 'static,
    F: FnMut(A, T) -> A + Clone + Send + 'static,
{
    let out = Arc::new(Mutex::new(None));
    (
        Fold {
            init,
            acc: None,
            f,
            out: out.clone(),
        },
        FoldResult { slot: out },
    )
}

impl<T, A, F> Consumer<T> for Fold<A, F>
where
    T: Clone + Send + Sync + 'static,
    A: Clone + Send + Sync + 'static,
    F: FnMut(A, T) -> A + Clone + Send + 'static,
{
    async fn consume(&mut self, events: &[T], _cx: &Context) -> Result<(), BoxError> {
        let mut acc = self.acc.take().unwrap_or_else(|| self.init.clone());
        for e in events {
            acc = (self.f)(acc, e.clone());
        }
        self.acc = Some(acc);
        Ok(())
    }

    async fn finish(&mut self, _cx: &Context) -> Result<(), BoxError> {
        let acc = self.acc.take().unwrap_or_else(|| self.init.clone());
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(acc);
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
