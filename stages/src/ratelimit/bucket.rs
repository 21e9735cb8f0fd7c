//! A token bucket refilled continuously.

use std::time::{Duration, Instant};

/// A budget that refills at a steady rate up to a capacity, as the
/// providers' own limits do (a per-minute limit refills continuously, not
/// once a minute).
///
/// Time is passed in: the bucket never reads a clock. An instant earlier
/// than one already seen counts as no time passing.
///
/// Admission ([`try_take`](Self::try_take)) needs the whole cost in the
/// bucket, except for a cost larger than the capacity, which is admitted
/// when the bucket is full (it could never fit otherwise). So what is taken
/// over any interval `t` is at most `capacity + rate * t` plus one such
/// oversized cost.
///
/// ```
/// use std::time::{Duration, Instant};
/// use demandflow_stages::ratelimit::TokenBucket;
///
/// let t0 = Instant::now();
/// let mut b = TokenBucket::new(10.0, 5.0, t0); // 10/s, bursts of 5
/// assert!(b.try_take(5.0, t0));
/// assert!(!b.try_take(1.0, t0));
/// let at = b.ready_at(1.0, t0); // one unit refills in 100 ms
/// assert!(at - t0 >= Duration::from_millis(100) && at - t0 < Duration::from_millis(101));
/// assert!(b.try_take(1.0, at));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

/// A finite, non-negative number (NaN and negatives become 0, infinity the
/// largest finite value): the bucket's arithmetic must never see NaN.
fn sane(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        0.0
    } else {
        x.min(f64::MAX)
    }
}

impl TokenBucket {
    /// A full bucket refilling `rate` units per second up to `capacity`.
    pub fn new(rate: f64, capacity: f64, now: Instant) -> TokenBucket {
        let capacity = sane(capacity);
        TokenBucket {
            rate: sane(rate),
            capacity,
            level: capacity,
            at: now,
        }
    }

    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The most the bucket holds.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// What the bucket holds at `now` (negative after a debit it could not
    /// cover).
    pub fn level(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let dt = now.duration_since(self.at).as_secs_f64();
            self.level = (self.level + self.rate * dt).min(self.capacity);
            self.at = now;
        }
    }

    /// Whether `cost` would be admitted at `now`, without taking it.
    pub fn can_take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        let cost = sane(cost);
        self.level >= cost || (cost > self.capacity && self.level >= self.capacity)
    }

    /// Takes `cost` if the bucket holds it (or is full, for a cost above
    /// the capacity); whether it did.
    pub fn try_take(&mut self, cost: f64, now: Instant) -> bool {
        if !self.can_take(cost, now) {
            return false;
        }
        self.level -= sane(cost);
        true
    }

    /// The earliest instant at or after `now` when `cost` will be admitted,
    /// if nothing else is taken meanwhile. `now` itself when it already is;
    /// far in the future (a day) when the rate is zero.
    pub fn ready_at(&mut self, cost: f64, now: Instant) -> Instant {
        self.refill(now);
        let need = sane(cost).min(self.capacity) - self.level;
        if need <= 0.0 {
            return now;
        }
        // The level is as of the latest instant seen, which may be after
        // `now`.
        let from = now.max(self.at);
        let far = Duration::from_secs(86_400);
        let wait = if self.rate > 0.0 {
            Duration::try_from_secs_f64(need / self.rate)
                .unwrap_or(far)
                .min(far)
        } else {
            far
        };
        // Round up by a microsecond: a wake-up computed to the exact
        // instant could land a hair short of the level and spin.
        from + wait + Duration::from_micros(1)
    }

    /// Gives back `amount` (an estimate that turned out too high), up to the
    /// capacity.
    pub fn credit(&mut self, amount: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + sane(amount)).min(self.capacity);
    }

    /// Takes `amount` more (an estimate that turned out too low), even into
    /// debt: later admissions wait until it is paid back.
    pub fn debit(&mut self, amount: f64, now: Instant) {
        self.refill(now);
        // Bounded below, so a huge report cannot stall the bucket for ever.
        self.level = (self.level - sane(amount)).max(-self.capacity);
    }

    /// Empties the bucket (keeping any debt): after a 429 nothing more is
    /// sent until it has refilled.
    pub fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.level = self.level.min(0.0);
    }

    /// Lowers the level to `at_most` if it is above: the server said this
    /// much is left.
    pub fn clamp(&mut self, at_most: f64, now: Instant) {
        self.refill(now);
        self.level = self.level.min(sane(at_most));
    }

    /// Changes rate and capacity from `now` on; the level is kept, capped
    /// at the new capacity.
    pub fn set_rate(&mut self, rate: f64, capacity: f64, now: Instant) {
        self.refill(now);
        self.rate = sane(rate);
        self.capacity = sane(capacity);
        self.level = self.level.min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn refills_continuously_up_to_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 10.0, t0);
        assert!(b.try_take(10.0, t0));
        assert!(!b.can_take(1.0, t0));
        assert!((b.level(t0 + ms(50)) - 5.0).abs() < 1e-9);
        assert!((b.level(t0 + ms(5000)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn oversized_cost_is_admitted_when_full() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 10.0, t0);
        assert!(b.try_take(25.0, t0));
        assert!((b.level(t0) + 15.0).abs() < 1e-9);
        assert!(!b.can_take(25.0, t0 + Duration::from_secs(24)));
        assert_eq!(
            b.ready_at(25.0, t0),
            t0 + Duration::from_secs(25) + Duration::from_micros(1)
        );
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 10.0, t0);
        assert!(b.try_take(10.0, t0));
        assert!(!b.can_take(1.0, t0 - Duration::from_secs(5)));
        assert!(!b.can_take(1.0, t0));
    }

    #[test]
    fn debit_credit_drain_clamp() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 10.0, t0);
        b.debit(4.0, t0);
        assert!((b.level(t0) - 6.0).abs() < 1e-9);
        b.credit(100.0, t0);
        assert!((b.level(t0) - 10.0).abs() < 1e-9);
        b.clamp(3.0, t0);
        assert!((b.level(t0) - 3.0).abs() < 1e-9);
        b.drain(t0);
        assert_eq!(b.level(t0), 0.0);
        b.debit(1e300, t0);
        assert_eq!(b.level(t0), -10.0);
        // A zero rate never refills: the wait is capped, not infinite.
        assert_eq!(
            b.ready_at(1.0, t0),
            t0 + Duration::from_secs(86_400) + Duration::from_micros(1)
        );
    }

    #[test]
    fn nan_and_negative_inputs_are_harmless() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(f64::NAN, -3.0, t0);
        assert_eq!(b.capacity(), 0.0);
        assert!(b.try_take(f64::NAN, t0));
        b.set_rate(f64::INFINITY, 5.0, t0);
        assert!(b.level(t0 + ms(1)) <= 5.0);
    }
}
