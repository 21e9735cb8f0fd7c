use std::fmt;

use crate::error::BoxError;
use crate::stage::{Context, Emitter, Processor};

/// See [`map`].
#[derive(Clone)]
pub struct Map<F> {
    f: F,
}

impl<F> fmt::Debug for Map<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map").finish_non_exhaustive()
    }
}

/// Applies `f` to every event.
///
/// `f` takes the event by value, so the event is cloned out of the batch
/// (for `Copy` events that is free): the engine keeps each batch until its
/// handler has succeeded, to hand it again to a restarted instance if the
/// handler panics (invariant D7), so it can only lend the events. For an
/// event that is not `Clone`, or costly to clone, use [`map_ref`], which
/// borrows it. A fallible map is [`try_map`]; an async one is
/// [`then`](crate::stage::then).
///
/// # Example
///
/// ```
/// use demandflow::{stage, Context, Emitter, Processor};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut double = stage::map(|x: u32| x * 2);
/// let mut out = Emitter::new();
/// double.process(&[1, 2], &mut out, &Context::detached("doc")).await.unwrap();
/// assert_eq!(out.as_slice(), &[2, 4]);
/// # }
/// ```
pub fn map<In, Out, F>(f: F) -> Map<F>
where
    In: ByValue,
    F: FnMut(In) -> Out + Clone + Send + 'static,
{
    Map { f }
}

impl<In, Out, F> Processor<In, Out> for Map<F>
where
    In: ByValue + Send + Sync + 'static,
    Out: Send + 'static,
    F: FnMut(In) -> Out + Clone + Send + 'static,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().cloned().map(&mut self.f));
        Ok(())
    }
}

/// See [`map_ref`].
#[derive(Clone)]
pub struct MapRef<F> {
    f: F,
}

impl<F> fmt::Debug for MapRef<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapRef").finish_non_exhaustive()
    }
}

/// Applies `f` to a reference to every event: no clone of the input, and
/// no `Clone` bound on it.
///
/// ```
/// use demandflow::{sink, source, stage, Pipeline, Subscribe};
///
/// struct Upload { bytes: Vec<u8> } // not `Clone`
///
/// let mut p = Pipeline::new();
/// let files = p.producer("files", source::from_fn(|| Some(Upload { bytes: vec![0; 4] })));
/// let sizes = p
///     .processor("size", stage::map_ref(|u: &Upload| u.bytes.len()))
///     .subscribe(&files, Subscribe::default());
/// p.consumer("sink", sink::drain()).subscribe(&sizes, Subscribe::default());
/// ```
pub fn map_ref<In, Out, F>(f: F) -> MapRef<F>
where
    F: FnMut(&In) -> Out + Clone + Send + 'static,
{
    MapRef { f }
}

impl<In, Out, F> Processor<In, Out> for MapRef<F>
where
    In: Send + Sync + 'static,
    Out: Send + 'static,
    F: FnMut(&In) -> Out + Clone + Send + 'static,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        out.extend(events.iter().map(&mut self.f));
        Ok(())
    }
}

/// See [`filter`].
#[derive(Clone)]
pub struct Filter<F> {
    keep: F,
}

impl<F> fmt::Debug for Filter<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter").finish_non_exhaustive()
    }
}

/// Keeps the events for which `keep` returns `true`. A filter that drops
/// everything still asks upstream for more (demand is never lost).
pub fn filter<T, F>(keep: F) -> Filter<F>
where
    F: FnMut(&T) -> bool + Clone + Send + 'static,
{
    Filter { keep }
}

impl<T, F> Processor<T, T> for Filter<F>
where
    T: Clone + Send + Sync + 'static,
    F: FnMut(&T) -> bool + Clone + Send + 'static,
{
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            if (self.keep)(e) {
                out.emit(e.clone());
            }
        }
        Ok(())
    }
}

/// See [`flat_map`].
#[derive(Clone)]
pub struct FlatMap<F> {
    f: F,
}

impl<F> fmt::Debug for FlatMap<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlatMap").finish_non_exhaustive()
    }
}

/// Emits every item of `f(event)`. Output beyond the downstream's demand
/// waits in the stage's buffer (counted in stats); no new input is taken
/// until it has drained.
pub fn flat_map<In, I, F>(f: F) -> FlatMap<F>
where
    In: ByValue,
    I: IntoIterator,
    F: FnMut(In) -> I + Clone + Send + 'static,
{
    FlatMap { f }
}

impl<In, I, F> Processor<In, I::Item> for FlatMap<F>
where
    In: ByValue + Send + Sync + 'static,
    I: IntoIterator,
    I::Item: Send + 'static,
    F: FnMut(In) -> I + Clone + Send + 'static,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<I::Item>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            out.extend((self.f)(e.clone()));
        }
        Ok(())
    }
}

/// See [`try_map`].
#[derive(Clone)]
pub struct TryMap<F> {
    f: F,
}

impl<F> fmt::Debug for TryMap<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryMap").finish_non_exhaustive()
    }
}

/// Applies a fallible `f` to every event. An `Err` fails the stage with
/// that error (kept as returned: the report's
/// [`StageFailure`](crate::StageFailure) downcasts to it); the supervisor
/// restarts it per its policy, and the restarted instance is handed the
/// failed batch again, from its first event (what the failed call had
/// emitted is discarded, never delivered twice).
///
/// ```
/// use demandflow::{stage, Context, Emitter, Processor};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut parse = stage::try_map(|s: &'static str| s.parse::<u32>());
/// let mut out = Emitter::new();
/// let cx = Context::detached("doc");
/// parse.process(&["1", "2"], &mut out, &cx).await.unwrap();
/// assert_eq!(out.as_slice(), &[1, 2]);
/// let err = parse.process(&["x"], &mut out, &cx).await.unwrap_err();
/// assert!(err.is::<std::num::ParseIntError>());
/// # }
/// ```
pub fn try_map<In, Out, E, F>(f: F) -> TryMap<F>
where
    In: ByValue,
    E: Into<BoxError>,
    F: FnMut(In) -> Result<Out, E> + Clone + Send + 'static,
{
    TryMap { f }
}

impl<In, Out, E, F> Processor<In, Out> for TryMap<F>
where
    In: ByValue + Send + Sync + 'static,
    Out: Send + 'static,
    E: Into<BoxError>,
    F: FnMut(In) -> Result<Out, E> + Clone + Send + 'static,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            out.emit((self.f)(e.clone()).map_err(Into::into)?);
        }
        Ok(())
    }
}

/// Events that a stage function taking them by value can be given: `Clone`
/// ones (see [`map`] for why). Implemented for every `Clone` type; it only
/// exists so that the compiler's message says why and what to use instead.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be `Clone` to be taken by value by `stage::map`, `then` or `flat_map`",
    label = "`{Self}` is not `Clone`",
    note = "the engine keeps each batch until its handler succeeds, to hand it again to a restarted instance (invariant D7): a function that takes an event by value is given a clone",
    note = "derive `Clone` for `{Self}`, or use `stage::map_ref`, whose function borrows the event"
)]
pub trait ByValue: Clone {}

impl<T: Clone> ByValue for T {}
