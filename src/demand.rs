//! Demand arithmetic for one subscription, as GenStage defines it.
//!
//! Pure: no I/O, no clock. The driver calls [`SubscriberDemand::handled`]
//! after each chunk it hands a stage and sends whatever it returns upstream.
//!
//! The rule (GenStage's `split_batches`): a subscriber asks `max_demand` at
//! first. Incoming events are handled in chunks of at most
//! `max_demand - min_demand`; after each chunk, once the demand still
//! outstanding has fallen to `min_demand` or below, it asks for enough to bring
//! it back to `max_demand`. With the defaults (1000 / 500) that is a chunk of
//! 500 and an ask of 500.

use std::fmt;

/// The default `max_demand` of a subscription, as in GenStage.
pub const DEFAULT_MAX_DEMAND: usize = 1000;

/// Validated `max_demand` / `min_demand` of one subscription.
///
/// # Example
///
/// ```
/// use demandflow::DemandLimits;
///
/// let d = DemandLimits::new(100, 80).unwrap();
/// assert_eq!(d.batch_size(), 20);
/// assert!(DemandLimits::new(0, 0).is_err());
/// assert!(DemandLimits::new(10, 10).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandLimits {
    max: usize,
    min: usize,
}

/// Why a pair of demand limits was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DemandLimitsError {
    /// `max_demand` was zero.
    MaxDemandZero,
    /// `min_demand` was not below `max_demand`.
    MinNotBelowMax {
        /// The `min_demand` given.
        min: usize,
        /// The `max_demand` given.
        max: usize,
    },
}

impl fmt::Display for DemandLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemandLimitsError::MaxDemandZero => {
                write!(f, "max_demand must be at least 1")
            }
            DemandLimitsError::MinNotBelowMax { min, max } => write!(
                f,
                "min_demand ({min}) must be below max_demand ({max}), at most {}",
                max - 1
            ),
        }
    }
}

impl std::error::Error for DemandLimitsError {}

impl DemandLimits {
    /// Validates `max` ≥ 1 and `min` < `max`.
    pub fn new(max: usize, min: usize) -> Result<DemandLimits, DemandLimitsError> {
        if max == 0 {
            return Err(DemandLimitsError::MaxDemandZero);
        }
        if min >= max {
            return Err(DemandLimitsError::MinNotBelowMax { min, max });
        }
        Ok(DemandLimits { max, min })
    }

    /// `max` with GenStage's default `min` (half of `max`).
    pub fn with_max(max: usize) -> Result<DemandLimits, DemandLimitsError> {
        DemandLimits::new(max, max / 2)
    }

    /// The most events outstanding at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The level at which the subscriber asks again.
    pub fn min(&self) -> usize {
        self.min
    }

    /// The largest chunk handed to the stage at once: `max - min`.
    #[inline]
    pub fn batch_size(&self) -> usize {
        self.max - self.min
    }
}

impl Default for DemandLimits {
    fn default() -> Self {
        DemandLimits {
            max: DEFAULT_MAX_DEMAND,
            min: DEFAULT_MAX_DEMAND / 2,
        }
    }
}

/// The subscriber side of one subscription's demand.
///
/// # Example: `max_demand` 100, `min_demand` 20
///
/// ```
/// use demandflow::{DemandLimits, SubscriberDemand};
///
/// let mut d = SubscriberDemand::new(DemandLimits::new(100, 20).unwrap());
/// assert_eq!(d.initial_ask(), 100);
/// // 100 events arrive; they are handled as 80, then 20.
/// assert_eq!(d.chunk(100), 80);
/// assert_eq!(d.handled(80), 80); // outstanding fell to 20 = min: ask 80
/// assert_eq!(d.chunk(20), 20);
/// assert_eq!(d.handled(20), 0); // outstanding 80 > min: no ask yet
/// ```
#[derive(Debug, Clone)]
pub struct SubscriberDemand {
    limits: DemandLimits,
    /// Events asked for and not yet handled (GenStage's `new_demand`).
    outstanding: usize,
}

impl SubscriberDemand {
    /// A subscription that has not asked yet.
    pub fn new(limits: DemandLimits) -> SubscriberDemand {
        SubscriberDemand {
            limits,
            outstanding: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> DemandLimits {
        self.limits
    }

    /// The first ask: `max_demand`.
    pub fn initial_ask(&mut self) -> usize {
        self.outstanding = self.limits.max;
        self.limits.max
    }

    /// How many of `available` events to hand the stage in the next chunk.
    #[inline]
    pub fn chunk(&self, available: usize) -> usize {
        available.min(self.limits.batch_size())
    }

    /// Records that `n` events were handled; returns how many to ask for
    /// now (0 for none).
    #[inline]
    pub fn handled(&mut self, n: usize) -> usize {
        let left = self.outstanding.saturating_sub(n);
        if left <= self.limits.min {
            self.outstanding = self.limits.max;
            self.limits.max - left
        } else {
            self.outstanding = left;
            0
        }
    }

    /// Events asked for and not yet handled.
    #[inline]
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays GenStage's consumer on a producer that always fills demand,
    /// returning the chunk sizes the stage sees.
    fn chunks(max: usize, min: usize, total: usize) -> Vec<usize> {
        let mut d = SubscriberDemand::new(DemandLimits::new(max, min).unwrap());
        let mut granted = d.initial_ask();
        let mut sent = 0;
        let mut seen = vec![];
        while sent < total {
            // The producer sends everything it was asked for in one message.
            let mut arriving = granted.min(total - sent);
            sent += arriving;
            granted -= arriving;
            while arriving > 0 {
                let c = d.chunk(arriving);
                seen.push(c);
                arriving -= c;
                granted += d.handled(c);
            }
        }
        seen
    }

    #[test]
    fn genstage_defaults_give_batches_of_500() {
        assert_eq!(chunks(1000, 500, 2000), vec![500, 500, 500, 500]);
    }

    #[test]
    fn genstage_min_demand_80_gives_batches_of_20() {
        assert!(chunks(100, 80, 200).iter().all(|&c| c == 20));
    }

    #[test]
    fn genstage_min_demand_20_gives_80_then_20_then_80() {
        assert_eq!(&chunks(100, 20, 300)[..3], &[80, 20, 80]);
    }

    #[test]
    fn genstage_max_demand_1_gives_single_events() {
        assert!(chunks(1, 0, 50).iter().all(|&c| c == 1));
    }

    #[test]
    fn outstanding_never_exceeds_max() {
        let mut d = SubscriberDemand::new(DemandLimits::new(10, 3).unwrap());
        d.initial_ask();
        for n in [1, 2, 7, 0, 10] {
            let n = n.min(d.outstanding());
            d.handled(n);
            assert!(d.outstanding() <= 10);
        }
    }

    #[test]
    fn bad_limits_are_typed_errors() {
        assert_eq!(
            DemandLimits::new(0, 0),
            Err(DemandLimitsError::MaxDemandZero)
        );
        let e = DemandLimits::new(1000, 1000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "min_demand (1000) must be below max_demand (1000), at most 999"
        );
    }
}
