use std::time::Duration;

use tokio::time::Instant;

use crate::error::BoxError;
use crate::stage::{Context, Emitter, Processor};

/// See [`rate_limit`].
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_interval: usize,
    interval: Duration,
    next_tick: Option<Instant>,
    outstanding: usize,
}

/// Lets at most `events` events through per `interval`, expressed as
/// demand: the stage's subscriptions are manual, and at each tick it asks
/// upstream for what brings its outstanding demand back to `events`
/// (GenStage's rate limiter). Upstream never produces faster than that.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use demandflow::{sink, source, stage, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("n", source::iter(0..30u32));
/// let slow = p
///     .processor("limit", stage::rate_limit(10, Duration::from_secs(1)))
///     .subscribe(&n, Subscribe::default());
/// p.consumer("c", sink::drain()).subscribe(&slow, Subscribe::default());
/// let started = tokio::time::Instant::now();
/// p.spawn().unwrap().join().await.unwrap();
/// assert!(started.elapsed() >= Duration::from_secs(2));
/// # }
/// ```
pub fn rate_limit(events: usize, interval: Duration) -> RateLimit {
    RateLimit {
        per_interval: events.max(1),
        interval,
        next_tick: None,
        outstanding: 0,
    }
}

impl<T: Clone + Send + Sync + 'static> Processor<T, T> for RateLimit {
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        self.outstanding = self.outstanding.saturating_sub(events.len());
        out.extend(events.iter().cloned());
        Ok(())
    }

    fn manual_demand(&self) -> bool {
        true
    }

    fn timer(&self) -> Option<Instant> {
        Some(self.next_tick.unwrap_or_else(Instant::now))
    }

    async fn on_timer(&mut self, _out: &mut Emitter<T>, cx: &Context) -> Result<(), BoxError> {
        let ask = self.per_interval - self.outstanding.min(self.per_interval);
        if ask > 0 {
            cx.ask(ask)?;
            self.outstanding += ask;
        }
        self.next_tick = Some(Instant::now() + self.interval);
        Ok(())
    }
}
