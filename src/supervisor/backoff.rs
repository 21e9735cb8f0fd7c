use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// A source of numbers in `[0, 1)` for jitter.
pub type Rng = Box<dyn FnMut() -> f64 + Send>;

/// Exponential backoff with jitter between restarts.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use demandflow::supervisor::Backoff;
///
/// let b = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
///     .with_jitter(0.0);
/// assert_eq!(b.delay(1), Duration::from_millis(10));
/// assert_eq!(b.delay(3), Duration::from_millis(40));
/// assert_eq!(b.delay(40), Duration::from_secs(1));
/// ```
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
    rng: Mutex<Rng>,
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("jitter", &self.jitter)
            .finish()
    }
}

impl Default for Backoff {
    /// 5 ms doubling up to 1 s, with up to 50 % jitter.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(5), Duration::from_secs(1))
    }
}

impl Backoff {
    /// `base * 2^(n-1)` capped at `max`, with 50 % jitter by default.
    pub fn exponential(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            jitter: 0.5,
            rng: Mutex::new(Box::new(xorshift(0x9E37_79B9_7F4A_7C15))),
        }
    }

    /// No delay at all between restarts.
    pub fn none() -> Backoff {
        Backoff::exponential(Duration::ZERO, Duration::ZERO).with_jitter(0.0)
    }

    /// Sets the jitter factor (clamped to `[0, 1]`): the delay is stretched
    /// by up to that fraction.
    pub fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Injects the randomness used for jitter (values in `[0, 1)`; others are
    /// clamped), so tests are repeatable.
    pub fn with_rng(self, rng: impl FnMut() -> f64 + Send + 'static) -> Backoff {
        Backoff {
            rng: Mutex::new(Box::new(rng)),
            ..self
        }
    }

    /// The delay before the `n`-th restart in the current window (n ≥ 1).
    pub fn delay(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        if self.jitter == 0.0 || raw.is_zero() {
            return raw;
        }
        let r = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let r = (rng)();
            if r.is_finite() {
                r.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        raw.mul_f64(1.0 + self.jitter * r)
    }
}

/// A small deterministic generator; jitter needs spread, not secrecy.
fn xorshift(mut state: u64) -> impl FnMut() -> f64 + Send {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delay_stays_within_bounds(base_ms in 0u64..1000, max_ms in 0u64..100_000, n in 0u32..100, jitter in 0.0f64..1.0, r in 0.0f64..1.0) {
            let b = Backoff::exponential(Duration::from_millis(base_ms), Duration::from_millis(max_ms))
                .with_jitter(jitter)
                .with_rng(move || r);
            let d = b.delay(n);
            let cap = Duration::from_millis(max_ms.max(base_ms));
            prop_assert!(d <= cap.mul_f64(1.0 + jitter) + Duration::from_nanos(1));
        }

        #[test]
        fn delay_grows_monotonically_without_jitter(base_ms in 1u64..100, n in 1u32..40) {
            let b = Backoff::exponential(Duration::from_millis(base_ms), Duration::from_secs(60)).with_jitter(0.0);
            prop_assert!(b.delay(n) <= b.delay(n + 1));
        }
    }
}
