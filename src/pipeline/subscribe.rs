use std::time::Duration;

use crate::demand::{DemandLimits, DemandLimitsError, DEFAULT_MAX_DEMAND};

/// What happens to a subscriber when its upstream ends (GenStage's
/// `:cancel` subscription option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelMode {
    /// The subscriber ends when this upstream ends, normally or not, after
    /// handling what the upstream delivered. The default, as in GenStage.
    #[default]
    Permanent,
    /// The subscriber ends only if the upstream failed; after a normal end
    /// it carries on with its other inputs.
    Transient,
    /// The subscriber never ends because of this upstream; it carries on
    /// with its other inputs (and ends normally when none are left).
    Temporary,
}

/// Options of one subscription: demand limits, cancel mode, manual demand,
/// partition.
///
/// # Example
///
/// ```
/// use demandflow::{CancelMode, Subscribe};
///
/// let s = Subscribe::max_demand(100).min_demand(80).cancel(CancelMode::Transient);
/// assert_eq!(s.limits().unwrap().batch_size(), 20);
/// assert_eq!(Subscribe::default().limits().unwrap().max(), 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    max: Option<usize>,
    min: Option<usize>,
    pub(crate) cancel: CancelMode,
    pub(crate) manual: bool,
    pub(crate) partition: Option<usize>,
    pub(crate) idle_timeout: Option<Duration>,
    /// The testkit's checker, told about this subscription's traffic.
    pub(crate) observer: Option<Observer>,
}

/// An edge observer inside [`Subscribe`]: compared by identity, so options
/// stay `Eq`.
#[derive(Clone)]
pub(crate) struct Observer(pub(crate) crate::runtime::edge::EdgeObserver);

impl PartialEq for Observer {
    fn eq(&self, other: &Observer) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Observer {}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Subscribe {
    /// Default options: `max_demand` 1000, `min_demand` 500, permanent,
    /// automatic demand.
    pub fn new() -> Subscribe {
        Subscribe::default()
    }

    /// Sets `max_demand` (min defaults to half of it).
    pub fn max_demand(max: usize) -> Subscribe {
        Subscribe {
            max: Some(max),
            ..Subscribe::default()
        }
    }

    /// Sets `min_demand`: the subscriber asks again once its outstanding
    /// demand falls to this level. Must be below `max_demand`.
    pub fn min_demand(mut self, min: usize) -> Subscribe {
        self.min = Some(min);
        self
    }

    /// Sets the cancel mode.
    pub fn cancel(mut self, mode: CancelMode) -> Subscribe {
        self.cancel = mode;
        self
    }

    /// Manual demand: the stage asks itself through
    /// [`Context::ask`](crate::Context::ask) (rate limiters, worker pools).
    /// No demand is sent until it does.
    pub fn manual(mut self) -> Subscribe {
        self.manual = true;
        self
    }

    /// The partition taken from a partition dispatcher.
    pub fn partition(mut self, partition: usize) -> Subscribe {
        self.partition = Some(partition);
        self
    }

    /// The longest allowed gap between events on this subscription while it
    /// has demand outstanding; past it the subscriber's stage fails with an
    /// idle-timeout error (and is restarted per its policy).
    pub fn idle_timeout(mut self, timeout: Duration) -> Subscribe {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The validated demand limits.
    pub fn limits(&self) -> Result<DemandLimits, DemandLimitsError> {
        let max = self.max.unwrap_or(DEFAULT_MAX_DEMAND);
        DemandLimits::new(max, self.min.unwrap_or(max / 2))
    }
}
