//! Retry decisions for provider requests, as pure functions of what failed,
//! the response headers, the attempt number, the clock and the deadline.
//!
//! The rules follow the official SDKs (CONFORMANCE.md §5.5): `x-should-retry`
//! wins; otherwise connection errors, timeouts, 408, 409, 429 and every 5xx
//! (Anthropic's 529 included) are retried, twice by default, with a delay of
//! `min(base * 2^n, max) * (1 - 0.25 * random)`. Where the engine is stricter
//! than the SDKs:
//!
//! * a server hint (`retry-after-ms`, `retry-after` in seconds or as an
//!   HTTP-date) is a *lower bound* on the delay, never replaced by a shorter
//!   backoff; a hint longer than [`ExponentialBackoff::max_retry_after`]
//!   (120 s, openai-python's limit) gives up at once (a quota, not a blip);
//! * a retry that would start at or after the deadline is not slept on: the
//!   decision is [`GiveUp::Deadline`], and the request fails with a deadline
//!   error straight away.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Failure<'a> {
    /// The server answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The response headers.
        headers: &'a HeaderMap,
    },
    /// The connection could not be made or broke before any event.
    Connect,
    /// A timeout fired before any event.
    Timeout,
}

/// Everything a [`RetryPolicy`] decides on. Time is passed in, so the
/// decision is a pure function.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RetryInput<'a> {
    /// What failed.
    pub failure: Failure<'a>,
    /// Retries already made (0 after the first attempt failed).
    pub retries: u32,
    /// The monotonic now.
    pub now: Instant,
    /// The wall clock now, for HTTP-date `retry-after` values.
    pub wall_clock: SystemTime,
    /// The deadline of the whole request, if any.
    pub deadline: Option<Instant>,
}

impl<'a> RetryInput<'a> {
    /// An input with no deadline, at the current time.
    pub fn new(failure: Failure<'a>, retries: u32) -> RetryInput<'a> {
        RetryInput {
            failure,
            retries,
            now: Instant::now(),
            wall_clock: SystemTime::now(),
            deadline: None,
        }
    }

    /// Sets the deadline.
    pub fn deadline(mut self, deadline: Option<Instant>) -> RetryInput<'a> {
        self.deadline = deadline;
        self
    }

    /// Sets both clocks.
    pub fn at(mut self, now: Instant, wall_clock: SystemTime) -> RetryInput<'a> {
        self.now = now;
        self.wall_clock = wall_clock;
        self
    }
}

/// A retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    Retry(Duration),
    /// Do not try again.
    GiveUp(GiveUp),
}

/// Why a [`RetryPolicy`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// The failure is not retryable (status, or `x-should-retry: false`).
    NotRetryable,
    /// All allowed retries were used.
    Exhausted {
        /// How many retries were made.
        retries: u32,
    },
    /// The server asked for a wait longer than the policy accepts.
    RetryAfterTooLong(Duration),
    /// The retry would start at or after the deadline.
    Deadline {
        /// The delay the retry needed.
        delay: Duration,
        /// Time left before the deadline.
        remaining: Duration,
    },
}

/// Decides whether and when a failed attempt is retried.
///
/// Implementations must be pure: the same input gives the same decision
/// (randomness, if any, comes from an injected source).
pub trait RetryPolicy: fmt::Debug + Send + Sync + 'static {
    /// The decision for one failed attempt.
    fn decide(&self, input: &RetryInput<'_>) -> Decision;
}

/// A source of jitter: numbers in `[0, 1)`.
#[derive(Clone)]
pub struct Jitter(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Jitter {
    /// Jitter from `f`, which must return values in `[0, 1)` (others are
    /// clamped).
    pub fn new(f: impl Fn() -> f64 + Send + Sync + 'static) -> Jitter {
        Jitter(Arc::new(f))
    }

    /// Always `r`: deterministic delays for tests.
    pub fn fixed(r: f64) -> Jitter {
        Jitter::new(move || r)
    }

    /// A fast non-cryptographic generator seeded from the process's hash
    /// randomness (no extra dependency, different per process).
    pub fn random() -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        let state = AtomicU64::new(h.finish() | 1);
        Jitter::new(move || {
            // xorshift64*; a lost update between threads only repeats a value.
            let mut x = state.load(Ordering::Relaxed);
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            state.store(x, Ordering::Relaxed);
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        })
    }

    fn sample(&self) -> f64 {
        let r = (self.0)();
        if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

impl fmt::Debug for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Jitter")
    }
}

/// The SDKs' policy: exponential backoff with jitter, server hints as a lower
/// bound, and the deadline respected.
///
/// ```
/// use std::time::Duration;
/// use demandflow_stages::provider::{Decision, ExponentialBackoff, Failure, Jitter, RetryInput, RetryPolicy};
///
/// let policy = ExponentialBackoff::default().jitter(Jitter::fixed(0.0));
/// // A dropped connection: 0.5 s, then 1 s, then give up (2 retries).
/// assert_eq!(policy.decide(&RetryInput::new(Failure::Connect, 0)), Decision::Retry(Duration::from_millis(500)));
/// assert_eq!(policy.decide(&RetryInput::new(Failure::Connect, 1)), Decision::Retry(Duration::from_secs(1)));
/// assert!(matches!(policy.decide(&RetryInput::new(Failure::Connect, 2)), Decision::GiveUp(_)));
/// ```
#[derive(Debug, Clone)]
pub struct ExponentialBackoff {
    max_retries: u32,
    base: Duration,
    max: Duration,
    max_retry_after: Duration,
    jitter: Jitter,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff {
            max_retries: 2,
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
            jitter: Jitter::random(),
        }
    }
}

impl ExponentialBackoff {
    /// Sets how many retries follow the first attempt (default 2).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets the first delay (default 0.5 s) and the cap (default 8 s).
    pub fn delays(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max = max.max(base);
        self
    }

    /// Sets the longest server-requested wait the policy accepts (default
    /// 120 s); a longer hint gives up.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Sets the jitter source.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The configured retry count.
    pub fn retries(&self) -> u32 {
        self.max_retries
    }
}

impl RetryPolicy for ExponentialBackoff {
    fn decide(&self, input: &RetryInput<'_>) -> Decision {
        let (retryable, hint) = match input.failure {
            Failure::Status { status, headers } => (
                should_retry_status(status, headers),
                server_hint(headers, input.wall_clock),
            ),
            Failure::Connect | Failure::Timeout => (true, None),
        };
        if !retryable {
            return Decision::GiveUp(GiveUp::NotRetryable);
        }
        if input.retries >= self.max_retries {
            return Decision::GiveUp(GiveUp::Exhausted {
                retries: input.retries,
            });
        }
        if let Some(h) = hint.filter(|h| *h > self.max_retry_after) {
            return Decision::GiveUp(GiveUp::RetryAfterTooLong(h));
        }
        let backoff = backoff_delay(self.base, self.max, input.retries, self.jitter.sample());
        let delay = hint.map_or(backoff, |h| h.max(backoff));
        if let Some(deadline) = input.deadline {
            let remaining = deadline.saturating_duration_since(input.now);
            if delay >= remaining {
                return Decision::GiveUp(GiveUp::Deadline { delay, remaining });
            }
        }
        Decision::Retry(delay)
    }
}

/// Whether a status is retried: `x-should-retry: true|false` wins, then
/// 408, 409, 429 and every 5xx.
pub fn should_retry_status(status: u16, headers: &HeaderMap) -> bool {
    match headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some(v) if v.eq_ignore_ascii_case("true") => return true,
        Some(v) if v.eq_ignore_ascii_case("false") => return false,
        _ => {}
    }
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// The server's requested wait: `retry-after-ms` (float milliseconds), else
/// `retry-after` as float seconds, else as an HTTP-date relative to
/// `wall_clock`. Zero, negative, past or unparsable values give `None`.
pub fn server_hint(headers: &HeaderMap, wall_clock: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if let Some(d) = positive_secs(ms / 1000.0) {
            return Some(d);
        }
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return positive_secs(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(wall_clock).ok().filter(|d| !d.is_zero())
}

fn positive_secs(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    // Absurdly large hints saturate; the policy then refuses them as too long.
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// `min(base * 2^retries, max) * (1 - 0.25 * r)` for `r` in `[0, 1]`: the
/// SDKs' backoff. Never overflows: large `retries` give `max` (times the
/// jitter factor).
pub fn backoff_delay(base: Duration, max: Duration, retries: u32, r: f64) -> Duration {
    let factor = 2u32.checked_pow(retries.min(31)).unwrap_or(u32::MAX);
    let raw = base.checked_mul(factor).unwrap_or(max).min(max);
    let r = if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    };
    raw.mul_f64(1.0 - 0.25 * r)
}
