//! The adaptive controller of one endpoint's sending rate.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use super::headers::RateLimitSnapshot;

/// Request and token budgets per minute. `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<f64>,
    /// Tokens per minute (input estimate plus `max_tokens`, corrected by
    /// the usage reported).
    pub tokens_per_minute: Option<f64>,
}

impl Limits {
    /// No limit on either.
    pub fn none() -> Limits {
        Limits::default()
    }

    /// Sets the requests per minute.
    pub fn rpm(mut self, n: f64) -> Limits {
        self.requests_per_minute = Some(n);
        self
    }

    /// Sets the tokens per minute.
    pub fn tpm(mut self, n: f64) -> Limits {
        self.tokens_per_minute = Some(n);
        self
    }
}

/// How the controller adapts. The defaults suit the providers' per-minute
/// limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// The fraction of the limit used before any response came back.
    pub start_fraction: f64,
    /// The most of the limit ever used: a margin for clock skew between
    /// this bucket and the server's.
    pub max_fraction: f64,
    /// The least of the limit used, however many 429s came back.
    pub min_fraction: f64,
    /// Added to the fraction per clean (2xx) response.
    pub growth: f64,
    /// The fraction is multiplied by this on a 429 or 529.
    pub decrease: f64,
    /// The bucket holds this much time's worth of the rate: the largest
    /// burst sent at once.
    pub burst: Duration,
    /// The wait after a 429 or 529 that names none (no `retry-after`, no
    /// exhausted reset), doubled per consecutive one up to
    /// [`max_unhinted_wait`](Self::max_unhinted_wait).
    pub unhinted_wait: Duration,
    /// The cap on the doubled wait above.
    pub max_unhinted_wait: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> AdaptiveConfig {
        AdaptiveConfig {
            start_fraction: 0.5,
            max_fraction: 0.98,
            min_fraction: 0.05,
            growth: 0.02,
            decrease: 0.7,
            burst: Duration::from_secs(1),
            unhinted_wait: Duration::from_secs(1),
            max_unhinted_wait: Duration::from_secs(60),
        }
    }
}

/// What an endpoint's answer was, for the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the rate may grow.
    Clean,
    /// A 429 or 529 (or any status the caller treats as "slow down").
    RateLimited,
    /// Any other failure: no change to the rate.
    Other,
}

impl Outcome {
    /// The outcome of an HTTP status: 2xx clean, 429 and 529 rate limited.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Clean,
            429 | 529 => Outcome::RateLimited,
            _ => Outcome::Other,
        }
    }
}

/// The sending rate of one endpoint: a request bucket and a token bucket
/// whose rates follow a fraction of the limit, adapted to what the
/// endpoint answers.
///
/// * The limit is the configured one, lowered to what the rate-limit
///   headers report when they report less: a user who configured twice the
///   real limit is corrected by the first response.
/// * The fraction starts at [`AdaptiveConfig::start_fraction`], grows by
///   [`AdaptiveConfig::growth`] per clean response up to
///   [`AdaptiveConfig::max_fraction`], and shrinks on a 429/529.
/// * A 429/529 blocks this endpoint (only this one) for exactly as long as
///   the server says: `retry-after(-ms)`, else the reset of the exhausted
///   limit; only when it says nothing, a doubling wait. The buckets are
///   emptied so sending resumes paced, not in a burst.
/// * The `remaining` a response reports caps the buckets: the client never
///   believes it has more than the server says.
///
/// Pure: every method takes the time.
#[derive(Debug, Clone)]
pub struct EndpointLimiter {
    config: AdaptiveConfig,
    configured: Limits,
    learned: Limits,
    fraction: f64,
    /// The fraction at the last rate-limit answer: growth slows near it
    /// (TCP's slow-start threshold), so an endpoint whose limit only
    /// 429s reveal is not overrun again at once.
    threshold: Option<f64>,
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
    blocked_until: Option<Instant>,
    consecutive_limited: u32,
    rate_limited: u64,
}

fn per_sec(per_minute: f64) -> f64 {
    per_minute / 60.0
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl EndpointLimiter {
    /// A limiter for `limits`, starting at `now`.
    pub fn new(limits: Limits, config: AdaptiveConfig, now: Instant) -> EndpointLimiter {
        let clamp = |x: f64| {
            if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                1.0
            }
        };
        let config = AdaptiveConfig {
            start_fraction: clamp(config.start_fraction),
            max_fraction: clamp(config.max_fraction),
            min_fraction: clamp(config.min_fraction),
            ..config
        };
        let mut l = EndpointLimiter {
            fraction: config.start_fraction,
            threshold: None,
            config,
            configured: limits,
            learned: Limits::none(),
            requests: None,
            tokens: None,
            blocked_until: None,
            consecutive_limited: 0,
            rate_limited: 0,
        };
        l.rebuild(now);
        l
    }

    /// The limits in force: the configured ones, lowered to the learned.
    pub fn effective_limits(&self) -> Limits {
        Limits {
            requests_per_minute: min_opt(
                self.configured.requests_per_minute,
                self.learned.requests_per_minute,
            ),
            tokens_per_minute: min_opt(
                self.configured.tokens_per_minute,
                self.learned.tokens_per_minute,
            ),
        }
    }

    /// The fraction of the limits currently used.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// How many rate-limit answers (429/529) this endpoint gave.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    /// Until when this endpoint is blocked after a rate-limit answer.
    pub fn blocked_until(&self) -> Option<Instant> {
        self.blocked_until
    }

    /// Sets every bucket's rate from the limits and fraction.
    fn rebuild(&mut self, now: Instant) {
        let limits = self.effective_limits();
        let fraction = self.fraction.max(self.config.min_fraction);
        let burst = self.config.burst.as_secs_f64();
        let update = |bucket: &mut Option<TokenBucket>, per_minute: Option<f64>, floor: f64| {
            match per_minute {
                None => *bucket = None,
                Some(pm) => {
                    let rate = per_sec(pm) * fraction;
                    let capacity = (rate * burst).max(floor);
                    match bucket {
                        Some(b) => b.set_rate(rate, capacity, now),
                        None => *bucket = Some(TokenBucket::new(rate, capacity, now)),
                    }
                }
            }
        };
        update(&mut self.requests, limits.requests_per_minute, 1.0);
        update(&mut self.tokens, limits.tokens_per_minute, 0.0);
    }

    /// Whether a request costing `tokens` may be sent at `now`.
    pub fn can_send(&mut self, tokens: u64, now: Instant) -> bool {
        if self.blocked_until.is_some_and(|b| now < b) {
            return false;
        }
        self.requests.as_mut().is_none_or(|b| b.can_take(1.0, now))
            && self
                .tokens
                .as_mut()
                .is_none_or(|b| b.can_take(tokens as f64, now))
    }

    /// Takes one request and `tokens` from the budgets if both allow;
    /// whether it did (nothing is taken otherwise).
    pub fn try_send(&mut self, tokens: u64, now: Instant) -> bool {
        if !self.can_send(tokens, now) {
            return false;
        }
        if let Some(b) = &mut self.requests {
            b.try_take(1.0, now);
        }
        if let Some(b) = &mut self.tokens {
            b.try_take(tokens as f64, now);
        }
        true
    }

    /// The earliest instant at or after `now` when a request costing
    /// `tokens` may be sent, if nothing else is sent meanwhile.
    pub fn ready_at(&mut self, tokens: u64, now: Instant) -> Instant {
        let mut at = now;
        if let Some(b) = self.blocked_until {
            at = at.max(b);
        }
        if let Some(b) = &mut self.requests {
            at = at.max(b.ready_at(1.0, now));
        }
        if let Some(b) = &mut self.tokens {
            at = at.max(b.ready_at(tokens as f64, now));
        }
        at
    }

    /// How many more requests of `tokens` each the budgets would admit at
    /// `now` (`usize::MAX` when unlimited; 0 while blocked).
    pub fn headroom(&mut self, tokens: u64, now: Instant) -> usize {
        if self.blocked_until.is_some_and(|b| now < b) {
            return 0;
        }
        let mut room = usize::MAX;
        if let Some(b) = &mut self.requests {
            room = room.min(b.level(now).max(0.0).floor() as usize);
        }
        if let Some(b) = &mut self.tokens {
            let level = b.level(now).max(0.0);
            let n = if tokens == 0 {
                usize::MAX
            } else if level >= b.capacity() && tokens as f64 > b.capacity() {
                1
            } else {
                (level / tokens as f64).floor() as usize
            };
            room = room.min(n);
        }
        room
    }

    /// Corrects the token budget once a request's real usage is known:
    /// what was estimated above it is given back, what went beyond is
    /// taken.
    pub fn settle(&mut self, estimated: u64, actual: u64, now: Instant) {
        if let Some(b) = &mut self.tokens {
            if actual < estimated {
                b.credit((estimated - actual) as f64, now);
            } else {
                b.debit((actual - estimated) as f64, now);
            }
        }
    }

    /// Takes in one response: what its headers say about the limits, and
    /// whether it was clean or rate limited.
    pub fn observe(&mut self, outcome: Outcome, snapshot: &RateLimitSnapshot, now: Instant) {
        let learned = Limits {
            requests_per_minute: snapshot.requests.limit.map(|n| n as f64),
            tokens_per_minute: snapshot.tokens.limit.map(|n| n as f64),
        };
        if learned.requests_per_minute.is_some() {
            self.learned.requests_per_minute = learned.requests_per_minute;
        }
        if learned.tokens_per_minute.is_some() {
            self.learned.tokens_per_minute = learned.tokens_per_minute;
        }
        match outcome {
            Outcome::Clean => {
                self.consecutive_limited = 0;
                let near = self.threshold.is_some_and(|t| self.fraction >= t * 0.9);
                let step = if near {
                    self.config.growth / 20.0
                } else {
                    self.config.growth
                };
                self.fraction = (self.fraction + step).min(self.config.max_fraction);
            }
            Outcome::RateLimited => {
                self.rate_limited += 1;
                self.consecutive_limited = self.consecutive_limited.saturating_add(1);
                if self.consecutive_limited == 1 {
                    self.threshold = Some(self.fraction);
                }
                self.fraction = (self.fraction * self.config.decrease)
                    .max(self.config.min_fraction)
                    .min(self.config.max_fraction);
                let wait = snapshot.wait_hint().unwrap_or_else(|| {
                    let doublings = (self.consecutive_limited - 1).min(20);
                    self.config
                        .unhinted_wait
                        .saturating_mul(1 << doublings)
                        .min(self.config.max_unhinted_wait)
                });
                let until = now
                    .checked_add(wait)
                    .unwrap_or(now + Duration::from_secs(86_400));
                self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
            }
            Outcome::Other => {}
        }
        self.rebuild(now);
        if outcome == Outcome::RateLimited {
            for b in [&mut self.requests, &mut self.tokens].into_iter().flatten() {
                b.drain(now);
            }
        }
        if let (Some(b), Some(left)) = (&mut self.requests, snapshot.requests.remaining) {
            b.clamp(left as f64, now);
        }
        if let (Some(b), Some(left)) = (&mut self.tokens, snapshot.tokens.remaining) {
            b.clamp(left as f64, now);
        }
        if self.blocked_until.is_some_and(|b| b <= now) {
            self.blocked_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::headers::Window;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn snapshot_limit(rpm: u64) -> RateLimitSnapshot {
        RateLimitSnapshot {
            requests: Window {
                limit: Some(rpm),
                ..Window::default()
            },
            ..RateLimitSnapshot::default()
        }
    }

    /// Sends as fast as the limiter allows for `run`, each answer clean;
    /// the number sent.
    fn drive(l: &mut EndpointLimiter, t0: Instant, run: Duration, snap: &RateLimitSnapshot) -> u64 {
        let mut t = t0;
        let mut sent = 0;
        while t < t0 + run {
            if l.try_send(1, t) {
                sent += 1;
                l.observe(Outcome::Clean, snap, t);
            } else {
                t = l.ready_at(1, t);
            }
        }
        sent
    }

    #[test]
    fn starts_below_and_grows_to_the_limit() {
        let t0 = Instant::now();
        let mut l = EndpointLimiter::new(Limits::none().rpm(6000.0), AdaptiveConfig::default(), t0);
        assert_eq!(l.fraction(), 0.5);
        let sent = drive(&mut l, t0, secs(60.0), &RateLimitSnapshot::default());
        assert!((l.fraction() - 0.98).abs() < 1e-9);
        // Over a minute: at least 95% of 6000 (the start is slower), never
        // above the limit plus the first burst.
        assert!((5700..=6000 + 50).contains(&sent), "{sent}");
    }

    #[test]
    fn learns_a_lower_limit_from_headers() {
        let t0 = Instant::now();
        let mut l =
            EndpointLimiter::new(Limits::none().rpm(12000.0), AdaptiveConfig::default(), t0);
        let sent = drive(&mut l, t0, secs(60.0), &snapshot_limit(6000));
        assert_eq!(l.effective_limits().requests_per_minute, Some(6000.0));
        assert!((5400..=6000 + 100).contains(&sent), "{sent}");
    }

    #[test]
    fn a_429_blocks_for_exactly_the_retry_after() {
        let t0 = Instant::now();
        let mut l = EndpointLimiter::new(Limits::none().rpm(600.0), AdaptiveConfig::default(), t0);
        let snap = RateLimitSnapshot {
            retry_after: Some(secs(2.5)),
            ..RateLimitSnapshot::default()
        };
        l.observe(Outcome::RateLimited, &snap, t0);
        assert_eq!(l.blocked_until(), Some(t0 + secs(2.5)));
        assert!(!l.can_send(1, t0 + secs(2.4)));
        assert_eq!(l.headroom(1, t0 + secs(2.4)), 0);
        assert!((l.fraction() - 0.35).abs() < 1e-9);
        // Drained: the first request after the block waits for a refill of
        // one request at the reduced rate (600/min * 0.35 = 3.5/s).
        assert!(l.ready_at(1, t0) >= t0 + secs(2.5));
        assert!(l.ready_at(1, t0) <= t0 + secs(2.5));
    }

    #[test]
    fn unhinted_waits_double_and_reset_hint_is_used() {
        let t0 = Instant::now();
        let mut l = EndpointLimiter::new(Limits::none(), AdaptiveConfig::default(), t0);
        l.observe(Outcome::RateLimited, &RateLimitSnapshot::default(), t0);
        assert_eq!(l.blocked_until(), Some(t0 + secs(1.0)));
        l.observe(
            Outcome::RateLimited,
            &RateLimitSnapshot::default(),
            t0 + secs(1.0),
        );
        assert_eq!(l.blocked_until(), Some(t0 + secs(3.0)));
        let mut snap = snapshot_limit(100);
        snap.requests.remaining = Some(0);
        snap.requests.reset = Some(secs(7.0));
        let t = t0 + secs(3.0);
        l.observe(Outcome::RateLimited, &snap, t);
        assert_eq!(l.blocked_until(), Some(t + secs(7.0)));
        // A clean answer resets the doubling; a later block ends on time.
        l.observe(Outcome::Clean, &RateLimitSnapshot::default(), t + secs(8.0));
        assert_eq!(l.blocked_until(), None);
    }

    #[test]
    fn remaining_caps_the_bucket_and_tokens_settle() {
        let t0 = Instant::now();
        let limits = Limits::none().rpm(6000.0).tpm(60_000.0);
        let mut l = EndpointLimiter::new(limits, AdaptiveConfig::default(), t0);
        // 60000/min * 0.5 = 500 tokens/s: a full bucket of 500.
        assert_eq!(l.headroom(100, t0), 5);
        assert!(l.try_send(400, t0));
        assert_eq!(l.headroom(100, t0), 1);
        l.settle(400, 100, t0);
        assert_eq!(l.headroom(100, t0), 4);
        let mut snap = RateLimitSnapshot::default();
        snap.tokens.remaining = Some(150);
        l.observe(Outcome::Other, &snap, t0);
        assert_eq!(l.headroom(100, t0), 1);
    }
}
