use std::fmt;
use std::future::Future;

use super::map::ByValue;
use crate::error::BoxError;
use crate::stage::{Context, Emitter, Processor};

/// See [`then`].
#[derive(Clone)]
pub struct Then<F> {
    f: F,
}

impl<F> fmt::Debug for Then<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then").finish_non_exhaustive()
    }
}

/// An async map: awaits `f(event)` for every event and emits its output.
///
/// An instance runs one future at a time, in order; for `n` in flight, run
/// `n` instances with
/// [`concurrency(n)`](crate::pipeline::ProcessorBuilder::concurrency)
/// (the output is then not in input order). The event is cloned out of the
/// batch, as for [`map`](crate::stage::map). A fallible step is
/// [`try_then`].
///
/// # Cancel safety
///
/// On cancel or deadline the future in flight is dropped. If it panics,
/// the restarted instance is handed the whole batch again: the calls for
/// the events before the failed one run again (their output was discarded,
/// so nothing is delivered twice, but their side effects happen twice).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use demandflow::{sink, source, stage, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Pipeline::new();
/// let ids = p.producer("ids", source::iter(0..8u32));
/// let fetched = p
///     .processor("fetch", stage::then(|id: u32| async move {
///         tokio::time::sleep(Duration::from_millis(1)).await; // a request
///         format!("item {id}")
///     }))
///     .concurrency(4)
///     .subscribe(&ids, Subscribe::max_demand(2));
/// let (c, items) = sink::collect();
/// p.consumer("collect", c).subscribe(&fetched, Subscribe::default());
/// let report = p.spawn()?.join().await?;
/// assert_eq!(report.stage("fetch").unwrap().processed, 8);
/// assert_eq!(items.len(), 8);
/// # Ok(()) }
/// ```
pub fn then<In, Out, Fut, F>(f: F) -> Then<F>
where
    In: ByValue,
    F: FnMut(In) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Out> + Send,
{
    Then { f }
}

impl<In, Out, Fut, F> Processor<In, Out> for Then<F>
where
    In: ByValue + Send + Sync + 'static,
    Out: Send + 'static,
    F: FnMut(In) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Out> + Send,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            let v = (self.f)(e.clone()).await;
            out.emit(v);
        }
        Ok(())
    }
}

/// See [`try_then`].
#[derive(Clone)]
pub struct TryThen<F> {
    f: F,
}

impl<F> fmt::Debug for TryThen<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryThen").finish_non_exhaustive()
    }
}

/// A fallible async map: awaits `f(event)` for every event; `Ok` is
/// emitted, `Err` fails the stage with that error (kept as returned, see
/// [`StageFailure`](crate::StageFailure)) and the supervisor restarts it
/// per its policy. As [`then`] otherwise, including what a retry runs
/// again.
///
/// ```
/// use demandflow::{stage, Context, Emitter, Processor};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut check = stage::try_then(|x: u32| async move {
///     if x < 10 { Ok(x) } else { Err(format!("{x} is too big")) }
/// });
/// let mut out = Emitter::new();
/// let cx = Context::detached("doc");
/// check.process(&[1, 2], &mut out, &cx).await.unwrap();
/// let err = check.process(&[12], &mut out, &cx).await.unwrap_err();
/// assert_eq!(err.to_string(), "12 is too big");
/// # }
/// ```
pub fn try_then<In, Out, E, Fut, F>(f: F) -> TryThen<F>
where
    In: ByValue,
    E: Into<BoxError>,
    F: FnMut(In) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Out, E>> + Send,
{
    TryThen { f }
}

impl<In, Out, E, Fut, F> Processor<In, Out> for TryThen<F>
where
    In: ByValue + Send + Sync + 'static,
    Out: Send + 'static,
    E: Into<BoxError>,
    F: FnMut(In) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Out, E>> + Send,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            let v = (self.f)(e.clone()).await.map_err(Into::into)?;
            out.emit(v);
        }
        Ok(())
    }
}
