use std::fmt;

use crate::error::BoxError;
use crate::stage::{Consumer, Context, Emitter, Flow, Processor, Producer};

/// A stage built by a function; see [`factory`].
pub struct Factory<F, S> {
    make: F,
    instance: Option<S>,
    manual: bool,
}

impl<F: Clone, S> Clone for Factory<F, S> {
    /// A clone has no instance yet: it builds its own on first use.
    fn clone(&self) -> Self {
        Factory {
            make: self.make.clone(),
            instance: None,
            manual: self.manual,
        }
    }
}

impl<F, S> fmt::Debug for Factory<F, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Factory")
            .field("built", &self.instance.is_some())
            .finish()
    }
}

/// Wraps a function that builds a stage, for stages that are not `Clone`
/// (they hold a connection, a channel receiver, ...). Each (re)start of the
/// pipeline stage calls `make` again.
///
/// # Example
///
/// ```
/// use demandflow::{stage, BoxError, Consumer, Context};
///
/// struct Conn(Vec<u8>); // not Clone
///
/// impl Consumer<u8> for Conn {
///     async fn consume(&mut self, events: &[u8], _cx: &Context) -> Result<(), BoxError> {
///         self.0.extend_from_slice(events);
///         Ok(())
///     }
/// }
///
/// let conn = stage::factory(|| Conn(Vec::new()));
/// # let _ = conn;
/// ```
pub fn factory<F, S>(make: F) -> Factory<F, S>
where
    F: Fn() -> S + Clone + Send + 'static,
{
    Factory {
        make,
        instance: None,
        manual: false,
    }
}

impl<F, S> Factory<F, S> {
    /// Declares that the stages built by this factory ask for their own
    /// demand (their `manual_demand()` would say `true`). The factory cannot
    /// ask an instance it has not built yet, so it must be told.
    pub fn with_manual_demand(mut self) -> Self {
        self.manual = true;
        self
    }
}

impl<F, S> Factory<F, S>
where
    F: Fn() -> S,
{
    fn get(&mut self) -> &mut S {
        self.instance.get_or_insert_with(&self.make)
    }
}

impl<T, F, S> Producer<T> for Factory<F, S>
where
    F: Fn() -> S + Clone + Send + 'static,
    S: Producer<T>,
    T: Send,
{
    async fn produce(
        &mut self,
        demand: usize,
        out: &mut Emitter<T>,
        cx: &Context,
    ) -> Result<Flow, BoxError> {
        self.get().produce(demand, out, cx).await
    }
}

impl<In, Out, F, S> Processor<In, Out> for Factory<F, S>
where
    F: Fn() -> S + Clone + Send + Sync + 'static,
    S: Processor<In, Out> + Sync,
    In: Sync,
    Out: Send,
{
    async fn process(
        &mut self,
        events: &[In],
        out: &mut Emitter<Out>,
        cx: &Context,
    ) -> Result<(), BoxError> {
        self.get().process(events, out, cx).await
    }

    async fn start(&mut self, cx: &Context) -> Result<(), BoxError> {
        self.get().start(cx).await
    }

    async fn finish(&mut self, out: &mut Emitter<Out>, cx: &Context) -> Result<(), BoxError> {
        self.get().finish(out, cx).await
    }

    fn timer(&self) -> Option<tokio::time::Instant> {
        self.instance.as_ref().and_then(|s| s.timer())
    }

    async fn on_timer(&mut self, out: &mut Emitter<Out>, cx: &Context) -> Result<(), BoxError> {
        self.get().on_timer(out, cx).await
    }

    fn manual_demand(&self) -> bool {
        self.manual
    }
}

impl<T, F, S> Consumer<T> for Factory<F, S>
where
    F: Fn() -> S + Clone + Send + Sync + 'static,
    S: Consumer<T> + Sync,
    T: Sync,
{
    async fn consume(&mut self, events: &[T], cx: &Context) -> Result<(), BoxError> {
        self.get().consume(events, cx).await
    }

    async fn start(&mut self, cx: &Context) -> Result<(), BoxError> {
        self.get().start(cx).await
    }

    async fn finish(&mut self, cx: &Context) -> Result<(), BoxError> {
        self.get().finish(cx).await
    }

    fn manual_demand(&self) -> bool {
        self.manual
    }
}
