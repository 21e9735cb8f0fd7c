//! The mock's rate-limit mode: token buckets for requests and tokens, the
//! providers' rate-limit headers, and their 429 answers.
//!
//! Everything here is pure: time comes in as an [`Instant`] (and, for
//! Anthropic's RFC 3339 reset stamps, a [`SystemTime`]), so the buckets are
//! unit- and property-tested without a clock. The server (`mod.rs`) holds a
//! [`Buckets`] behind a mutex and calls it once per request.
//!
//! # The model
//!
//! * **Buckets** ([`TokenBucket`]): refilled continuously at the per-minute
//!   rate, holding at most the rate over [`RateLimits::burst`] (default 1 s,
//!   as OpenAI documents quantised enforcement: "60,000 requests/minute may
//!   be enforced as 1,000 requests/second"; 60 s is the plain minute bucket
//!   Anthropic describes). A request is admitted only if *every* bucket it
//!   draws from has room; a rejected request takes nothing.
//! * **Keys**: one set of buckets per API key (the `Authorization: Bearer`,
//!   `x-api-key` or `x-goog-api-key` value; requests without one share the
//!   empty key) and per provider: the two OpenAI APIs share theirs, as the
//!   real limits are per organisation, not per endpoint.
//! * **Cost**: one request, and `input + output` tokens, where `input` is
//!   the request's text content in characters / 4, rounded up (OpenAI's
//!   documented estimate), and `output` is the request's `max_tokens` /
//!   `max_output_tokens` / `max_completion_tokens` /
//!   `generationConfig.maxOutputTokens`, or [`RateLimits::default_max_tokens`]
//!   when it has none. Both providers document charging `max_tokens` up
//!   front.
//! * **Anthropic** also has input- and output-token buckets
//!   ([`RateLimits::input_tokens_per_minute`], `…output…`; by default as
//!   large as the combined one, so the combined limit binds), and — as its
//!   documentation says OTPM is "adjusted at the end of the request to
//!   reflect the actual number of output tokens used" — unused output tokens
//!   are given back to the output and combined buckets when the answer ends.
//!   OpenAI documents no such correction, so its charge stands.
//! * **A request larger than a bucket's capacity** (possible with a short
//!   burst) is admitted only when that bucket is full, and leaves it in debt:
//!   it can always get through eventually, and never more than one such
//!   request's excess is outstanding.
//! * **Rejected requests are not charged.** (OpenAI says failed requests
//!   count towards the limit; the mock does not model that, so a client's
//!   retry mistakes cost it 429s, not a shrinking budget.)

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::behaviour::ErrorSpec;
use crate::provider::Api;

/// Nanoseconds in a minute: a bucket refilled at `n` per minute gains `n`
/// of its internal units per nanosecond when one token is this many units,
/// which keeps the arithmetic exact.
const UNITS_PER_TOKEN: i128 = 60_000_000_000;

/// Output tokens charged for a request that names no maximum.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// The rate-limit settings of a [`MockServer`](super::MockServer)
/// ([`MockConfig::rate_limits`](super::MockConfig::rate_limits)).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use demandflow_stages::mock::RateLimits;
///
/// let limits = RateLimits::per_minute(6_000, 600_000).burst(Duration::from_secs(1));
/// assert_eq!(limits, "rpm=6000,tpm=600000,burst-ms=1000".parse().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens (input + output) per minute.
    pub tokens_per_minute: u64,
    /// Anthropic's input tokens per minute (`None`: as `tokens_per_minute`).
    pub input_tokens_per_minute: Option<u64>,
    /// Anthropic's output tokens per minute (`None`: as `tokens_per_minute`).
    pub output_tokens_per_minute: Option<u64>,
    /// How much of the rate a bucket holds: its capacity is the rate over
    /// this long (at least one request or token).
    pub burst: Duration,
    /// Output tokens charged when a request names no maximum.
    pub default_max_tokens: u64,
    /// Answer every `n`th request with the API's overload error (Anthropic
    /// 529 `overloaded_error`, OpenAI 503, Gemini 503 `UNAVAILABLE`),
    /// uncharged. `None`: never.
    pub overload_every: Option<u64>,
    /// Also send `retry-after-ms` (milliseconds, rounded up) on a 429.
    pub retry_after_ms: bool,
}

impl RateLimits {
    /// `requests` and `tokens` per minute, a 1 s burst, and the defaults.
    pub fn per_minute(requests: u64, tokens: u64) -> RateLimits {
        RateLimits {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            burst: Duration::from_secs(1),
            default_max_tokens: DEFAULT_MAX_TOKENS,
            overload_every: None,
            retry_after_ms: false,
        }
    }

    /// Sets Anthropic's separate input- and output-token limits.
    pub fn input_output_per_minute(mut self, input: u64, output: u64) -> RateLimits {
        self.input_tokens_per_minute = Some(input);
        self.output_tokens_per_minute = Some(output);
        self
    }

    /// Sets the burst window (see [`RateLimits::burst`](#structfield.burst)).
    pub fn burst(mut self, burst: Duration) -> RateLimits {
        self.burst = burst;
        self
    }

    /// Sets the output tokens charged when a request names no maximum.
    pub fn default_max_tokens(mut self, n: u64) -> RateLimits {
        self.default_max_tokens = n;
        self
    }

    /// Answers every `n`th request with the API's overload error (`0`: never).
    pub fn overload_every(mut self, n: u64) -> RateLimits {
        self.overload_every = Some(n).filter(|n| *n > 0);
        self
    }

    /// Also sends `retry-after-ms` on a 429.
    pub fn retry_after_ms(mut self, on: bool) -> RateLimits {
        self.retry_after_ms = on;
        self
    }
}

/// Why a [`RateLimits`] spec did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRateLimitsError(String);

impl fmt::Display for ParseRateLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseRateLimitsError {}

/// Parses `key=value` pairs separated by commas: `rpm`, `tpm` (both
/// required), `itpm`, `otpm`, `burst-ms`, `default-max-tokens`,
/// `overload-every`, and the bare flag `retry-after-ms`. Example:
/// `rpm=6000,tpm=600000,burst-ms=1000`.
impl FromStr for RateLimits {
    type Err = ParseRateLimitsError;

    fn from_str(s: &str) -> Result<RateLimits, ParseRateLimitsError> {
        let err = |m: String| ParseRateLimitsError(m);
        let mut limits = RateLimits::per_minute(0, 0);
        let (mut rpm, mut tpm) = (false, false);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "retry-after-ms" {
                limits.retry_after_ms = true;
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(format!("`{part}` is not key=value")))?;
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| err(format!("`{key}` wants a whole number, not `{value}`")))?;
            match key.trim() {
                "rpm" => (limits.requests_per_minute, rpm) = (n, true),
                "tpm" => (limits.tokens_per_minute, tpm) = (n, true),
                "itpm" => limits.input_tokens_per_minute = Some(n),
                "otpm" => limits.output_tokens_per_minute = Some(n),
                "burst-ms" => limits.burst = Duration::from_millis(n),
                "default-max-tokens" => limits.default_max_tokens = n,
                "overload-every" => limits = limits.overload_every(n),
                other => {
                    return Err(err(format!(
                        "unknown rate-limit setting `{other}` (rpm, tpm, itpm, otpm, burst-ms, \
                         default-max-tokens, overload-every, retry-after-ms)"
                    )))
                }
            }
        }
        if !(rpm && tpm) {
            return Err(err("rate limits need both rpm=N and tpm=N".to_owned()));
        }
        if limits.requests_per_minute == 0 || limits.tokens_per_minute == 0 {
            return Err(err("rpm and tpm must be at least 1".to_owned()));
        }
        Ok(limits)
    }
}

/// A token bucket refilled continuously at `per_minute`, holding at most
/// `capacity`. Pure: every call takes the time.
///
/// Invariant: over any interval `[a, b]`, what [`try_take`](Self::try_take)
/// admits at times in `[a, b]` is at most `capacity + per_minute × (b − a)`
/// plus one oversized request's excess over `capacity` (an oversized
/// request is admitted only into a full bucket, which it leaves in debt).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_minute: i128,
    capacity: i128,
    /// In `1 / UNITS_PER_TOKEN` tokens; negative while in debt.
    level: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: `per_minute` (at least 1) with `burst` worth of
    /// capacity (at least one token).
    pub(crate) fn new(per_minute: u64, burst: Duration, now: Instant) -> TokenBucket {
        let per_minute = i128::from(per_minute.max(1));
        let capacity = (per_minute * burst.as_nanos() as i128).max(UNITS_PER_TOKEN);
        TokenBucket {
            per_minute,
            capacity,
            level: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // Time that runs backwards (callers racing for the lock) refills
        // nothing; `last` stays at the latest time seen.
        if let Some(elapsed) = now.checked_duration_since(self.last) {
            let gained = elapsed.as_nanos() as i128 * self.per_minute;
            self.level = (self.level + gained).min(self.capacity);
            self.last = now;
        }
    }

    /// How long until `cost` could be taken (zero: now).
    pub(crate) fn wait(&mut self, cost: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = i128::from(cost) * UNITS_PER_TOKEN;
        // An oversized cost waits for a full bucket.
        let target = need.min(self.capacity);
        if self.level >= target {
            Duration::ZERO
        } else {
            nanos_up(target - self.level, self.per_minute)
        }
    }

    /// Takes `cost` if it fits now; else says how long to wait.
    #[cfg(test)]
    pub(crate) fn try_take(&mut self, cost: u64, now: Instant) -> Result<(), Duration> {
        match self.wait(cost, now) {
            Duration::ZERO => {
                self.take(cost);
                Ok(())
            }
            wait => Err(wait),
        }
    }

    /// Takes `cost` unconditionally (after [`wait`](Self::wait) said zero).
    fn take(&mut self, cost: u64) {
        self.level -= i128::from(cost) * UNITS_PER_TOKEN;
    }

    /// Gives `amount` back (never beyond capacity).
    pub(crate) fn give(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.level = (self.level + i128::from(amount) * UNITS_PER_TOKEN).min(self.capacity);
    }

    /// Whole tokens available now.
    pub(crate) fn remaining(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.level.max(0) / UNITS_PER_TOKEN).unwrap_or(u64::MAX)
    }

    /// How long until the bucket is full again.
    pub(crate) fn until_full(&mut self, now: Instant) -> Duration {
        self.refill(now);
        nanos_up(self.capacity - self.level, self.per_minute)
    }

    /// The per-minute rate (what the `limit` headers report).
    pub(crate) fn limit(&self) -> u64 {
        u64::try_from(self.per_minute).unwrap_or(u64::MAX)
    }
}

/// `units / per_ns` nanoseconds, rounded up.
fn nanos_up(units: i128, per_ns: i128) -> Duration {
    let ns = (units.max(0) + per_ns - 1) / per_ns;
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Which provider's limits, headers and error shapes apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Family {
    pub(crate) fn of(api: Api) -> Family {
        match api {
            Api::AnthropicMessages => Family::Anthropic,
            Api::Gemini => Family::Gemini,
            _ => Family::OpenAi,
        }
    }
}

/// One limited quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
}

/// What one request is charged before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) input: u64,
    pub(crate) output: u64,
}

impl Cost {
    fn of(self, dim: Dim) -> u64 {
        match dim {
            Dim::Requests => 1,
            Dim::Tokens => self.input.saturating_add(self.output),
            Dim::InputTokens => self.input,
            Dim::OutputTokens => self.output,
        }
    }
}

/// The text-length estimate of input tokens: characters / 4, rounded up.
pub(crate) fn estimate_input_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// One bucket's state as the headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) dim: Dim,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) until_full: Duration,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The bucket with the longest wait.
    pub(crate) dim: Dim,
    /// What the request asked of that bucket.
    pub(crate) requested: u64,
    /// How long until every bucket has room.
    pub(crate) wait: Duration,
    /// The buckets, unchanged by the refusal.
    pub(crate) readings: Vec<Reading>,
}

/// The buckets of one key and provider.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    buckets: Vec<(Dim, TokenBucket)>,
    /// Whether unused output tokens are given back at the end.
    refunds_output: bool,
}

impl Limiter {
    pub(crate) fn new(family: Family, limits: &RateLimits, now: Instant) -> Limiter {
        let b = |n: u64| TokenBucket::new(n, limits.burst, now);
        let mut buckets = vec![
            (Dim::Requests, b(limits.requests_per_minute)),
            (Dim::Tokens, b(limits.tokens_per_minute)),
        ];
        if family == Family::Anthropic {
            let input = limits
                .input_tokens_per_minute
                .unwrap_or(limits.tokens_per_minute);
            let output = limits
                .output_tokens_per_minute
                .unwrap_or(limits.tokens_per_minute);
            buckets.push((Dim::InputTokens, b(input)));
            buckets.push((Dim::OutputTokens, b(output)));
        }
        Limiter {
            buckets,
            refunds_output: family == Family::Anthropic,
        }
    }

    /// Charges `cost` to every bucket if all have room; else charges
    /// nothing and says which bucket refused and for how long.
    pub(crate) fn admit(&mut self, cost: Cost, now: Instant) -> Result<Vec<Reading>, Refusal> {
        let mut worst: Option<(Dim, Duration)> = None;
        for (dim, bucket) in &mut self.buckets {
            let wait = bucket.wait(cost.of(*dim), now);
            if !wait.is_zero() && worst.is_none_or(|(_, w)| wait > w) {
                worst = Some((*dim, wait));
            }
        }
        match worst {
            None => {
                for (dim, bucket) in &mut self.buckets {
                    bucket.take(cost.of(*dim));
                }
                Ok(self.readings(now))
            }
            Some((dim, wait)) => Err(Refusal {
                dim,
                requested: cost.of(dim),
                wait,
                readings: self.readings(now),
            }),
        }
    }

    /// The answer used `used` output tokens of the `charged`: gives the
    /// difference back where the provider does (Anthropic).
    /// Returns the tokens given back.
    pub(crate) fn settle(&mut self, charged: u64, used: u64, now: Instant) -> u64 {
        let unused = charged.saturating_sub(used);
        if !self.refunds_output || unused == 0 {
            return 0;
        }
        for (dim, bucket) in &mut self.buckets {
            if matches!(dim, Dim::Tokens | Dim::OutputTokens) {
                bucket.give(unused, now);
            }
        }
        unused
    }

    pub(crate) fn readings(&mut self, now: Instant) -> Vec<Reading> {
        self.buckets
            .iter_mut()
            .map(|(dim, b)| Reading {
                dim: *dim,
                limit: b.limit(),
                remaining: b.remaining(now),
                until_full: b.until_full(now),
            })
            .collect()
    }
}

/// Every key's [`Limiter`], created on first use.
#[derive(Debug)]
pub(crate) struct Buckets {
    limits: RateLimits,
    by_key: HashMap<(Family, String), Limiter>,
}

impl Buckets {
    pub(crate) fn new(limits: RateLimits) -> Buckets {
        Buckets {
            limits,
            by_key: HashMap::new(),
        }
    }

    pub(crate) fn limiter(&mut self, family: Family, key: &str, now: Instant) -> &mut Limiter {
        let limits = &self.limits;
        self.by_key
            .entry((family, key.to_owned()))
            .or_insert_with(|| Limiter::new(family, limits, now))
    }
}

/// The rate-limit headers of `family` for `readings` (Gemini sends none).
/// `wall` is the wall-clock time matching the readings' instant, for
/// Anthropic's absolute reset stamps.
pub(crate) fn headers(
    family: Family,
    readings: &[Reading],
    wall: SystemTime,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in readings {
        match family {
            Family::OpenAi => {
                let name = match r.dim {
                    Dim::Requests => "requests",
                    Dim::Tokens => "tokens",
                    // OpenAI has no separate input/output limits.
                    Dim::InputTokens | Dim::OutputTokens => continue,
                };
                out.push((format!("x-ratelimit-limit-{name}"), r.limit.to_string()));
                out.push((
                    format!("x-ratelimit-remaining-{name}"),
                    r.remaining.to_string(),
                ));
                out.push((
                    format!("x-ratelimit-reset-{name}"),
                    go_duration(r.until_full),
                ));
            }
            Family::Anthropic => {
                let name = match r.dim {
                    Dim::Requests => "requests",
                    Dim::Tokens => "tokens",
                    Dim::InputTokens => "input-tokens",
                    Dim::OutputTokens => "output-tokens",
                };
                let p = format!("anthropic-ratelimit-{name}");
                out.push((format!("{p}-limit"), r.limit.to_string()));
                out.push((format!("{p}-remaining"), r.remaining.to_string()));
                out.push((format!("{p}-reset"), rfc3339_up(wall + r.until_full)));
            }
            Family::Gemini => {}
        }
    }
    out
}

/// The 429 of `api` for `refusal`: the provider's error body, its
/// rate-limit headers, and `retry-after` in whole seconds, rounded up
/// (plus `retry-after-ms` when asked).
pub(crate) fn refusal_answer(
    api: Api,
    model: &str,
    refusal: &Refusal,
    limits: &RateLimits,
    wall: SystemTime,
) -> ErrorSpec {
    let family = Family::of(api);
    let limit = refusal
        .readings
        .iter()
        .find(|r| r.dim == refusal.dim)
        .map_or(0, |r| r.limit);
    let remaining = refusal
        .readings
        .iter()
        .find(|r| r.dim == refusal.dim)
        .map_or(0, |r| r.remaining);
    let mut spec = match family {
        Family::OpenAi => {
            let (kind, what) = match refusal.dim {
                Dim::Requests => ("requests", "requests per min (RPM)"),
                _ => ("tokens", "tokens per min (TPM)"),
            };
            let message = format!(
                "Rate limit reached for {model} in organization org-mock on {what}: Limit \
                 {limit}, Used {used}, Requested {requested}. Please try again in {wait}. \
                 Visit https://platform.openai.com/account/rate-limits to learn more.",
                used = limit.saturating_sub(remaining),
                requested = refusal.requested,
                wait = go_duration(refusal.wait),
            );
            ErrorSpec::openai(429, kind, Some("rate_limit_exceeded"), &message)
        }
        Family::Anthropic => {
            let what = match refusal.dim {
                Dim::Requests => "requests",
                Dim::Tokens => "tokens",
                Dim::InputTokens => "input tokens",
                Dim::OutputTokens => "output tokens",
            };
            let message = format!(
                "This request would exceed the rate limit for your organization (mock) of \
                 {limit} {what} per minute. For details, refer to: \
                 https://docs.claude.com/en/api/rate-limits. You can see the response headers \
                 for current usage. Please reduce the prompt length or the maximum tokens \
                 requested, or try again later."
            );
            ErrorSpec::anthropic(429, "rate_limit_error", &message)
        }
        Family::Gemini => {
            // Google puts the wait in the body's RetryInfo.
            let body = json!({"error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": format!("{}s", secs_up(refusal.wait))
                }]
            }});
            ErrorSpec::status(429).body(body.to_string())
        }
    };
    for (k, v) in headers(family, &refusal.readings, wall) {
        spec = spec.header(&k, &v);
    }
    spec = spec.header("retry-after", &secs_up(refusal.wait).to_string());
    if limits.retry_after_ms {
        let ms = refusal.wait.as_nanos().div_ceil(1_000_000);
        spec = spec.header("retry-after-ms", &ms.to_string());
    }
    spec
}

/// The API's "overloaded" answer (not a rate limit: the server's own
/// capacity).
pub(crate) fn overloaded_answer(api: Api) -> ErrorSpec {
    match Family::of(api) {
        Family::Anthropic => ErrorSpec::anthropic(529, "overloaded_error", "Overloaded"),
        Family::Gemini => {
            ErrorSpec::gemini(503, "The model is overloaded. Please try again later.")
        }
        Family::OpenAi => ErrorSpec::openai(
            503,
            "server_error",
            None,
            "The server is overloaded or not ready yet.",
        ),
    }
}

/// Whole seconds, rounded up (as servers round `retry-after`).
fn secs_up(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

/// `d` rounded up to the millisecond, formatted as Go's
/// `time.Duration.String()` (what OpenAI's `x-ratelimit-reset-*` carry):
/// `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3.004s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// `t` rounded up to the second, as RFC 3339 UTC (`2026-01-01T00:00:00Z`),
/// the format of Anthropic's reset headers.
pub(crate) fn rfc3339_up(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn go_durations_match_gos_format() {
        let ms = Duration::from_millis;
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (ms(12), "12ms"),
            (ms(999), "999ms"),
            (ms(1000), "1s"),
            (ms(1500), "1.5s"),
            (ms(8640), "8.64s"),
            (ms(34_000), "34s"),
            (ms(360_000), "6m0s"),
            (ms(90_250), "1m30.25s"),
            (ms(3_723_004), "1h2m3.004s"),
            (ms(3_600_000), "1h0m0s"),
        ] {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn rfc3339_rounds_up_to_the_second() {
        let new_year = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(rfc3339_up(new_year), "2026-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_up(new_year + Duration::from_millis(1)),
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(
            rfc3339_up(UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399)),
            "2000-02-29T23:59:59Z"
        );
        assert_eq!(rfc3339_up(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn settings_parse_and_refuse_nonsense() {
        let l: RateLimits =
            "rpm=60, tpm=1000,itpm=800,otpm=200,burst-ms=500,default-max-tokens=16,overload-every=7,retry-after-ms"
                .parse()
                .unwrap();
        assert_eq!(
            l,
            RateLimits::per_minute(60, 1000)
                .input_output_per_minute(800, 200)
                .burst(Duration::from_millis(500))
                .default_max_tokens(16)
                .overload_every(7)
                .retry_after_ms(true)
        );
        for bad in [
            "",
            "rpm=1",
            "tpm=1",
            "rpm=x,tpm=1",
            "rpm=0,tpm=1",
            "rpm=1,tpm=1,foo=2",
            "rpm",
        ] {
            assert!(bad.parse::<RateLimits>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_refills_continuously_up_to_its_capacity() {
        let t0 = Instant::now();
        // 600 per minute = 10 per second; 1 s burst = capacity 10.
        let mut b = TokenBucket::new(600, Duration::from_secs(1), t0);
        assert_eq!(b.remaining(t0), 10);
        assert_eq!(b.try_take(10, t0), Ok(()));
        assert_eq!(b.try_take(1, t0), Err(Duration::from_millis(100)));
        assert_eq!(b.until_full(t0), Duration::from_secs(1));
        assert_eq!(b.remaining(at(t0, 250)), 2);
        assert_eq!(b.try_take(1, at(t0, 250)), Ok(()));
        assert_eq!(b.remaining(at(t0, 60_000)), 10, "never beyond capacity");
        // Time running backwards refills nothing and breaks nothing.
        assert_eq!(b.remaining(t0), 10);
    }

    #[test]
    fn an_oversized_cost_waits_for_a_full_bucket_and_leaves_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(600, Duration::from_secs(1), t0);
        assert_eq!(b.try_take(1, t0), Ok(()));
        assert_eq!(b.try_take(25, t0), Err(Duration::from_millis(100)));
        assert_eq!(b.try_take(25, at(t0, 100)), Ok(()));
        assert_eq!(b.remaining(at(t0, 100)), 0);
        // 15 in debt: 1.5 s to get back to zero, 2.5 s to full.
        assert_eq!(b.until_full(at(t0, 100)), Duration::from_millis(2500));
        assert_eq!(b.try_take(1, at(t0, 100)), Err(Duration::from_millis(1600)));
    }

    #[test]
    fn a_refused_request_takes_nothing_from_any_bucket() {
        let t0 = Instant::now();
        let limits = RateLimits::per_minute(600, 6000);
        let mut l = Limiter::new(Family::Anthropic, &limits, t0);
        let before = l.readings(t0);
        // 10 requests fit, 150 tokens do not (capacity 100).
        let refusal = l
            .admit(
                Cost {
                    input: 60,
                    output: 60,
                },
                t0,
            )
            .map(|_| ())
            .map_err(|r| r.dim);
        assert_eq!(refusal, Ok(()), "oversized, but the buckets are full");
        let after = l.readings(t0);
        assert_eq!(after[0].remaining, before[0].remaining - 1);
        let refused = l
            .admit(
                Cost {
                    input: 1,
                    output: 1,
                },
                t0,
            )
            .expect_err("tokens in debt");
        assert_eq!(refused.dim, Dim::Tokens);
        assert_eq!(refused.readings, after, "nothing taken");
        // Anthropic gives unused output back.
        l.settle(60, 10, t0);
        let settled = l.readings(t0);
        assert_eq!(settled[1].remaining, 30);
        assert_eq!(settled[3].remaining, 90);
        assert_eq!(settled[2].remaining, 40, "input is not corrected");
        // OpenAI does not.
        let mut o = Limiter::new(Family::OpenAi, &limits, t0);
        o.admit(
            Cost {
                input: 10,
                output: 60,
            },
            t0,
        )
        .unwrap();
        o.settle(60, 10, t0);
        assert_eq!(o.readings(t0)[1].remaining, 30);
    }

    #[test]
    fn headers_follow_each_providers_names_and_formats() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let limits = RateLimits::per_minute(60, 6000);
        let mut l = Limiter::new(Family::Anthropic, &limits, t0);
        let r = l
            .admit(
                Cost {
                    input: 10,
                    output: 20,
                },
                t0,
            )
            .unwrap();
        let h: HashMap<_, _> = headers(Family::Anthropic, &r, wall).into_iter().collect();
        assert_eq!(h.len(), 12);
        assert_eq!(h["anthropic-ratelimit-requests-limit"], "60");
        assert_eq!(h["anthropic-ratelimit-requests-remaining"], "0");
        assert_eq!(
            h["anthropic-ratelimit-requests-reset"],
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(h["anthropic-ratelimit-tokens-remaining"], "70");
        assert_eq!(h["anthropic-ratelimit-input-tokens-remaining"], "90");
        assert_eq!(h["anthropic-ratelimit-output-tokens-remaining"], "80");
        let mut o = Limiter::new(Family::OpenAi, &limits, t0);
        let r = o
            .admit(
                Cost {
                    input: 10,
                    output: 20,
                },
                t0,
            )
            .unwrap();
        let h: HashMap<_, _> = headers(Family::OpenAi, &r, wall).into_iter().collect();
        assert_eq!(h.len(), 6);
        assert_eq!(h["x-ratelimit-reset-requests"], "1s");
        assert_eq!(h["x-ratelimit-reset-tokens"], "300ms");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "70");
        assert!(headers(Family::Gemini, &r, wall).is_empty());
        let refused = o
            .admit(
                Cost {
                    input: 1,
                    output: 1,
                },
                t0,
            )
            .unwrap_err();
        let spec = refusal_answer(Api::OpenAiChat, "m", &refused, &limits, wall);
        assert!(spec
            .headers
            .contains(&("retry-after".to_owned(), "1".to_owned())));
        let body: serde_json::Value = serde_json::from_str(spec.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["type"], "requests");
    }

    /// Arrivals: (gap in ms, cost) pairs.
    fn arrivals() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..400, 1u64..30), 1..200)
    }

    proptest! {
        /// No window lets through more than the capacity plus the refill
        /// over the window (costs within capacity).
        #[test]
        fn no_window_admits_more_than_capacity_plus_refill(
            per_minute in 1u64..20_000,
            burst_ms in 0u64..5_000,
            arrivals in arrivals(),
        ) {
            let t0 = Instant::now();
            let burst = Duration::from_millis(burst_ms);
            let mut b = TokenBucket::new(per_minute, burst, t0);
            let capacity = b.capacity;
            let mut now = t0;
            let mut admitted: Vec<(Instant, u64)> = Vec::new();
            for (gap, cost) in arrivals {
                now += Duration::from_millis(gap);
                // Keep costs within capacity for the clean bound.
                let cost = cost.min(u64::try_from(capacity / UNITS_PER_TOKEN).unwrap());
                if b.try_take(cost, now).is_ok() {
                    admitted.push((now, cost));
                }
            }
            for i in 0..admitted.len() {
                let mut sum: i128 = 0;
                for j in i..admitted.len() {
                    sum += i128::from(admitted[j].1) * UNITS_PER_TOKEN;
                    let span = (admitted[j].0 - admitted[i].0).as_nanos() as i128;
                    prop_assert!(sum <= capacity + span * i128::from(per_minute),
                        "window {i}..={j}: {sum} > {capacity} + refill");
                }
            }
        }

        /// A refused cost is admitted after waiting exactly the wait given,
        /// and the wait is the shortest (one nanosecond less is too soon
        /// whenever the wait is not zero).
        #[test]
        fn the_wait_given_is_exact(
            per_minute in 1u64..20_000,
            burst_ms in 0u64..5_000,
            arrivals in arrivals(),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(per_minute, Duration::from_millis(burst_ms), t0);
            let mut now = t0;
            for (gap, cost) in arrivals {
                now += Duration::from_millis(gap);
                if let Err(wait) = b.try_take(cost, now) {
                    prop_assert!(!wait.is_zero());
                    let mut early = b.clone();
                    prop_assert!(early.try_take(cost, now + wait - Duration::from_nanos(1)).is_err());
                    let mut later = b.clone();
                    prop_assert!(later.try_take(cost, now + wait).is_ok());
                }
            }
        }

        /// The limiter charges all its buckets or none: requests and tokens
        /// each stay within their own window bound.
        #[test]
        fn the_limiter_keeps_every_bucket_within_bounds(
            rpm in 1u64..5_000,
            tpm in 1u64..100_000,
            anthropic in any::<bool>(),
            arrivals in prop::collection::vec((0u64..300, 0u64..40, 0u64..40, 0u64..40), 1..150),
        ) {
            let t0 = Instant::now();
            let limits = RateLimits::per_minute(rpm, tpm).burst(Duration::from_secs(2));
            let family = if anthropic { Family::Anthropic } else { Family::OpenAi };
            let mut l = Limiter::new(family, &limits, t0);
            let cap = |per_minute: u64| (i128::from(per_minute) * 2_000_000_000).max(UNITS_PER_TOKEN);
            let (req_cap, tok_cap) = (cap(rpm), cap(tpm));
            let mut now = t0;
            // (time, net tokens) of each admitted request.
            let mut admitted: Vec<(Instant, u64)> = Vec::new();
            for (gap, input, output, used) in arrivals {
                now += Duration::from_millis(gap);
                // Costs within capacity, so the bound has no debt term.
                let fits = i128::from(input + output) * UNITS_PER_TOKEN <= tok_cap;
                let cost = if fits { Cost { input, output } } else { Cost { input: 0, output: 0 } };
                let before = l.readings(now);
                match l.admit(cost, now) {
                    Ok(_) => {
                        // Settled at once: what the bound limits is the net charge.
                        let used = cost.output.min(used);
                        l.settle(cost.output, used, now);
                        let refunded = if anthropic { cost.output - used } else { 0 };
                        admitted.push((now, cost.input + cost.output - refunded));
                    }
                    Err(_) => prop_assert_eq!(l.readings(now), before),
                }
            }
            for i in 0..admitted.len() {
                let (mut n, mut toks) = (0i128, 0i128);
                for later in &admitted[i..] {
                    n += UNITS_PER_TOKEN;
                    toks += i128::from(later.1) * UNITS_PER_TOKEN;
                    let span = (later.0 - admitted[i].0).as_nanos() as i128;
                    prop_assert!(n <= req_cap + span * i128::from(rpm));
                    prop_assert!(toks <= tok_cap + span * i128::from(tpm));
                }
            }
        }
    }
}
