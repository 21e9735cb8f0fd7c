use std::sync::Arc;

use tokio::time::Instant;

use crate::cancel::{CancelCause, CancelScope};
use crate::error::AskError;

/// What a stage can see of the pipeline around it: its name, the deadline and
/// the cancellation of its scope.
///
/// Handed to every stage call. Cloning is cheap.
///
/// # Example
///
/// ```
/// use demandflow::{BoxError, Consumer, Context};
///
/// struct Slow;
///
/// impl Consumer<u64> for Slow {
///     async fn consume(&mut self, events: &[u64], cx: &Context) -> Result<(), BoxError> {
///         for _ in events {
///             tokio::select! {
///                 _ = cx.cancelled() => return Ok(()),
///                 _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) name: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) deadline: Option<Instant>,
    pub(crate) scope: CancelScope,
    /// Asks on the stage's manual-demand subscriptions, if it has any.
    pub(crate) manual: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// The stage's live counters, when running in a pipeline.
    pub(crate) counters: Option<Arc<crate::runtime::shared::StageShared>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("restarts", &self.attempt)
            .field("deadline", &self.deadline)
            .field("cancelled", &self.is_cancelled())
            .field("manual_demand", &self.manual.is_some())
            .finish()
    }
}

impl Context {
    /// A context for driving a stage by hand, outside a pipeline (tests,
    /// adapters). It is never cancelled unless `scope` is.
    pub fn detached(name: &str) -> Context {
        Context {
            name: Arc::from(name),
            attempt: 0,
            deadline: None,
            scope: CancelScope::new(),
            manual: None,
            counters: None,
        }
    }

    /// A detached context whose deadline is `deadline` and whose
    /// cancellation follows `scope`.
    pub fn with_scope(name: &str, scope: CancelScope, deadline: Option<Instant>) -> Context {
        Context {
            name: Arc::from(name),
            attempt: 0,
            deadline,
            scope,
            manual: None,
            counters: None,
        }
    }

    /// Asks for `n` more events on each of this stage's manual-demand
    /// subscriptions (see [`Subscribe::manual`](crate::Subscribe::manual)).
    ///
    /// Asking zero is a protocol error (Reactive Streams 3.9). Demand adds up
    /// and saturates; it never wraps.
    pub fn ask(&self, n: usize) -> Result<(), AskError> {
        if n == 0 {
            return Err(AskError::Zero);
        }
        match &self.manual {
            Some(ask) => {
                ask(n);
                Ok(())
            }
            None => Err(AskError::NotManual),
        }
    }

    /// Records `n` events dropped by an overflow strategy the user chose
    /// (a push buffer's `DropOldest`, say), so the pipeline's stats and
    /// report count them. Outside a pipeline it does nothing.
    pub fn record_dropped(&self, n: u64) {
        if let (Some(stage), true) = (&self.counters, n > 0) {
            stage
                .counters
                .dropped
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The stage's name, as given to the pipeline builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times this stage has been restarted (0 for the first instance).
    pub fn restarts(&self) -> u32 {
        self.attempt
    }

    /// The pipeline's deadline, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether this stage's scope has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.scope.is_cancelled()
    }

    /// Why this stage's scope was cancelled, once it has been.
    pub fn cancel_cause(&self) -> Option<CancelCause> {
        self.scope.cause()
    }

    /// Completes when this stage's scope is cancelled (by the user, the
    /// deadline, the owner dropping its handle, or shutdown).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it loses nothing.
    pub async fn cancelled(&self) {
        self.scope.cancelled().await
    }

    /// The stage's cancellation scope, to hand to work the stage spawns.
    pub fn scope(&self) -> &CancelScope {
        &self.scope
    }
}
