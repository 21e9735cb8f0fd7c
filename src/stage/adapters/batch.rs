use std::time::Duration;

use tokio::time::Instant;

use crate::error::BoxError;
use crate::stage::{Context, Emitter, Processor};

/// See [`batch`].
#[derive(Debug, Clone)]
pub struct Batch<T> {
    size: usize,
    timeout: Duration,
    pending: Vec<T>,
    since: Option<Instant>,
}

/// Groups events into `Vec`s of `size` (Broadway's batchers): a batch is
/// emitted when full, when `timeout` has passed since its first event, or
/// when the input ends.
///
/// A `size` of 0 is taken as 1.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use demandflow::{sink, source, stage, Pipeline, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut p = Pipeline::new();
/// let n = p.producer("n", source::iter(0..5u32));
/// let b = p.processor("batch", stage::batch(2, Duration::from_secs(1))).subscribe(&n, Subscribe::default());
/// let (c, out) = sink::collect();
/// p.consumer("c", c).subscribe(&b, Subscribe::default());
/// p.spawn().unwrap().join().await.unwrap();
/// assert_eq!(out.take(), vec![vec![0, 1], vec![2, 3], vec![4]]);
/// # }
/// ```
pub fn batch<T>(size: usize, timeout: Duration) -> Batch<T> {
    Batch {
        size: size.max(1),
        timeout,
        pending: Vec::new(),
        since: None,
    }
}

impl<T: Clone + Send + Sync + 'static> Processor<T, Vec<T>> for Batch<T> {
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<Vec<T>>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            if self.pending.is_empty() {
                self.since = Some(Instant::now());
            }
            self.pending.push(e.clone());
            if self.pending.len() >= self.size {
                out.emit(std::mem::take(&mut self.pending));
                self.since = None;
            }
        }
        Ok(())
    }

    async fn finish(&mut self, out: &mut Emitter<Vec<T>>, _cx: &Context) -> Result<(), BoxError> {
        if !self.pending.is_empty() {
            out.emit(std::mem::take(&mut self.pending));
        }
        Ok(())
    }

    fn timer(&self) -> Option<Instant> {
        self.since.map(|s| s + self.timeout)
    }

    async fn on_timer(&mut self, out: &mut Emitter<Vec<T>>, _cx: &Context) -> Result<(), BoxError> {
        self.since = None;
        if !self.pending.is_empty() {
            out.emit(std::mem::take(&mut self.pending));
        }
        Ok(())
    }
}
