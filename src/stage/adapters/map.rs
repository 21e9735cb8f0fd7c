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

/// Applies `f` to every event (the event is cloned out of the batch, which
/// the engine keeps for redelivery; for `Copy` events that is free).
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
    F: FnMut(In) -> Out + Clone + Send + 'static,
{
    Map { f }
}

impl<In, Out, F> Processor<In, Out> for Map<F>
where
    In: Clone + Send + Sync + 'static,
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

/// Applies `f` to a reference to every event: no clone of the input.
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
    I: IntoIterator,
    F: FnMut(In) -> I + Clone + Send + 'static,
{
    FlatMap { f }
}

impl<In, I, F> Processor<In, I::Item> for FlatMap<F>
where
    In: Clone + Send + Sync + 'static,
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
