use std::fmt;

use crate::dispatcher::{BroadcastDispatcher, DemandDispatcher, Dispatcher, PartitionDispatcher};

/// Builds a stage's dispatcher when the pipeline starts.
type MakeDispatcher<T> = Box<dyn FnOnce() -> Box<dyn Dispatcher<T>> + Send>;

/// How a stage with several subscribers routes its events.
///
/// # Example
///
/// ```
/// use demandflow::{sink, source, Dispatch, Pipeline, Subscribe};
///
/// let mut p = Pipeline::new();
/// let n = p
///     .add_producer("numbers", source::iter(0..100u64))
///     .dispatch(Dispatch::partition(2, |x: &u64| *x as usize))
///     .build();
/// p.consumer("even", sink::for_each(|_: u64| {})).subscribe(&n, Subscribe::new().partition(0));
/// p.consumer("odd", sink::for_each(|_: u64| {})).subscribe(&n, Subscribe::new().partition(1));
/// assert!(p.validate().is_ok());
/// ```
pub struct Dispatch<T> {
    pub(crate) make: MakeDispatcher<T>,
    pub(crate) partitions: Option<usize>,
    label: &'static str,
}

impl<T> fmt::Debug for Dispatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("kind", &self.label)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl<T: Send + 'static> Dispatch<T> {
    /// Each batch to the subscriber with the most pending demand (the default).
    pub fn demand() -> Dispatch<T> {
        Dispatch {
            make: Box::new(|| Box::new(DemandDispatcher::new())),
            partitions: None,
            label: "demand",
        }
    }

    /// Every event to every subscriber; the slowest gates the stage. Use
    /// [`ConsumerBuilder::selector`](crate::pipeline::ConsumerBuilder::selector)
    /// to filter per subscriber.
    pub fn broadcast() -> Dispatch<T>
    where
        T: Clone,
    {
        Dispatch {
            make: Box::new(|| Box::new(BroadcastDispatcher::new())),
            partitions: None,
            label: "broadcast",
        }
    }

    /// Each event to partition `key(event) % partitions`, each partition
    /// with a bounded buffer of 1000 events.
    pub fn partition(
        partitions: usize,
        key: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Dispatch<T> {
        Self::partition_with_buffer(partitions, 1000, key)
    }

    /// As [`Dispatch::partition`], with a per-partition buffer of `buffer`
    /// events.
    pub fn partition_with_buffer(
        partitions: usize,
        buffer: usize,
        key: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Dispatch<T> {
        Dispatch {
            make: Box::new(move || Box::new(PartitionDispatcher::new(partitions, buffer, key))),
            partitions: Some(partitions.max(1)),
            label: "partition",
        }
    }
}

impl<T: Send + 'static> Default for Dispatch<T> {
    fn default() -> Self {
        Dispatch::demand()
    }
}
