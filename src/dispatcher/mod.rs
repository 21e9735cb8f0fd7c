//! Dispatchers: how a stage with several subscribers routes its events.
//!
//! A dispatcher is a pure state machine, as in GenStage: it is told about
//! subscribers and their demand, answers how many events the stage may emit
//! now ([`Dispatcher::demand`]), and turns emitted events into *decisions*
//! (`(subscription, batch)` pairs). It never sends anything itself; the
//! runtime carries the decisions out. Events emitted beyond the demand (a
//! producer that over-emits, a `flat_map` that expands) wait in the
//! dispatcher's buffer, are counted in [`Dispatcher::buffered`], and leave as
//! soon as demand allows: nothing is ever dropped silently.
//!
//! Three are provided: [`DemandDispatcher`] (load balancing, the default),
//! [`BroadcastDispatcher`] and [`PartitionDispatcher`].

use std::fmt;
use std::sync::Arc;

mod broadcast;
mod demand;
mod partition;

pub use broadcast::BroadcastDispatcher;
pub use demand::DemandDispatcher;
pub use partition::{PartitionDispatcher, PartitionKey};

/// Identifies one subscription (one edge of the pipeline graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A per-subscriber filter for broadcast dispatch (GenStage's `selector`).
pub type Selector<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// What a dispatcher needs to know about a new subscriber.
pub struct SubscriberSpec<T> {
    /// The partition this subscriber takes (partition dispatch only).
    pub partition: Option<usize>,
    /// Only events for which this returns `true` are sent (broadcast only).
    /// Only the events sent use the subscriber's demand: the dispatcher asks
    /// again on its behalf for those the selector discards (GenStage's
    /// behaviour), so a selective subscriber never runs out of demand.
    pub selector: Option<Selector<T>>,
}

impl<T> Default for SubscriberSpec<T> {
    fn default() -> Self {
        SubscriberSpec {
            partition: None,
            selector: None,
        }
    }
}

impl<T> Clone for SubscriberSpec<T> {
    fn clone(&self) -> Self {
        SubscriberSpec {
            partition: self.partition,
            selector: self.selector.clone(),
        }
    }
}

impl<T> fmt::Debug for SubscriberSpec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberSpec")
            .field("partition", &self.partition)
            .field("selector", &self.selector.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// A protocol error reported by a dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchError {
    /// The subscription is already registered (GenStage: "already registered").
    AlreadySubscribed(SubscriptionId),
    /// The subscription is not known (GenStage: `:unknown_subscription`).
    UnknownSubscription(SubscriptionId),
    /// A partition dispatcher subscriber named no partition, or one out of range.
    BadPartition {
        /// The partition asked for, if any.
        partition: Option<usize>,
        /// How many partitions the dispatcher has.
        partitions: usize,
    },
    /// Another subscriber already holds that partition.
    PartitionTaken(usize),
    /// `ask(0)`: asking for zero events is a protocol error (Reactive Streams 3.9).
    AskZero(SubscriptionId),
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::AlreadySubscribed(s) => write!(f, "subscription {s} already registered"),
            DispatchError::UnknownSubscription(s) => write!(f, "unknown subscription {s}"),
            DispatchError::BadPartition {
                partition: Some(p),
                partitions,
            } => write!(
                f,
                "unknown partition {p}: the dispatcher has {partitions} partitions"
            ),
            DispatchError::BadPartition {
                partition: None,
                partitions,
            } => write!(
                f,
                "a partition dispatcher subscriber must name its partition (0..{partitions})"
            ),
            DispatchError::PartitionTaken(p) => write!(f, "partition {p} already has a subscriber"),
            DispatchError::AskZero(s) => write!(
                f,
                "subscription {s} asked for zero events: a request must be positive (Reactive Streams rule 3.9)"
            ),
        }
    }
}

impl std::error::Error for DispatchError {}

/// Where a dispatcher writes its decisions: `(subscription, batch)` pairs, in
/// the order they must be sent.
pub type Decisions<T> = Vec<(SubscriptionId, Vec<T>)>;

/// The dispatcher contract. All methods are synchronous and pure.
///
/// # Example
///
/// ```
/// use demandflow::dispatcher::{DemandDispatcher, Dispatcher, SubscriptionId};
///
/// let (a, b) = (SubscriptionId(1), SubscriptionId(2));
/// let mut d = DemandDispatcher::new();
/// d.subscribe(a, Default::default()).unwrap();
/// d.subscribe(b, Default::default()).unwrap();
/// d.ask(a, 3).unwrap();
/// d.ask(b, 5).unwrap();
/// assert_eq!(d.demand(), 8); // what they asked for together
/// let mut out = vec![];
/// d.dispatch(vec![10, 11, 12, 13, 14, 15], &mut out);
/// assert_eq!(out, vec![(b, vec![10, 11, 12, 13, 14]), (a, vec![15])]);
/// assert_eq!(d.demand(), 2);
/// ```
pub trait Dispatcher<T>: Send + 'static {
    /// Registers a subscriber with no demand yet.
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        spec: SubscriberSpec<T>,
    ) -> Result<(), DispatchError>;

    /// Removes a subscriber. Returns how many buffered events can no longer
    /// be delivered because they were held for it alone (they are counted
    /// as abandoned by the caller).
    fn cancel(&mut self, sub: SubscriptionId) -> Result<usize, DispatchError>;

    /// Adds `n` to the subscriber's demand. Demand saturates, never wraps.
    fn ask(&mut self, sub: SubscriptionId, n: usize) -> Result<(), DispatchError>;

    /// How many events the stage may emit now without breaking any bound.
    fn demand(&self) -> usize;

    /// Routes `events`: decisions go to `out`; what cannot be sent yet stays
    /// buffered.
    fn dispatch(&mut self, events: Vec<T>, out: &mut Decisions<T>);

    /// Sends buffered events that demand now allows.
    fn flush(&mut self, out: &mut Decisions<T>);

    /// Events held in the dispatcher's buffer.
    fn buffered(&self) -> usize;

    /// Number of subscribers.
    fn subscribers(&self) -> usize;

    /// Routes a whole batch of `len` events to one subscriber, if that is
    /// what [`Dispatcher::dispatch`] would do with it: accounts for the
    /// batch exactly as `dispatch` would and returns the subscriber. `None`
    /// changes nothing, and the caller calls `dispatch`.
    ///
    /// A fast path for the commonest routing, one batch to one subscriber:
    /// the stage sends the batch without building a list of decisions. The
    /// default never takes it.
    fn route_whole(&mut self, len: usize) -> Option<SubscriptionId> {
        let _ = len;
        None
    }
}
