//! The retry policy as pure functions: status rules, `x-should-retry`,
//! server hints, the deadline, and property tests of the backoff math.

use std::time::{Duration, SystemTime};

use demandflow_stages::provider::{
    backoff_delay, server_hint, should_retry_status, Decision, ExponentialBackoff, Failure, GiveUp,
    Jitter, RetryInput, RetryPolicy,
};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn policy() -> ExponentialBackoff {
    ExponentialBackoff::default().jitter(Jitter::fixed(0.0))
}

fn decide_status(status: u16, h: &HeaderMap, retries: u32) -> Decision {
    policy().decide(&RetryInput::new(
        Failure::Status { status, headers: h },
        retries,
    ))
}

#[test]
fn retried_and_fail_fast_statuses() {
    let none = HeaderMap::new();
    for s in [408, 409, 429, 500, 502, 503, 504, 529] {
        assert!(
            matches!(decide_status(s, &none, 0), Decision::Retry(_)),
            "{s} is retried"
        );
    }
    for s in [400, 401, 403, 404, 413, 422] {
        assert_eq!(
            decide_status(s, &none, 0),
            Decision::GiveUp(GiveUp::NotRetryable),
            "{s} fails fast"
        );
    }
}

#[test]
fn x_should_retry_wins_over_the_status() {
    assert!(!should_retry_status(
        503,
        &headers(&[("x-should-retry", "false")])
    ));
    assert!(should_retry_status(
        400,
        &headers(&[("x-should-retry", "true")])
    ));
    assert!(should_retry_status(
        500,
        &headers(&[("x-should-retry", "maybe")])
    ));
}

#[test]
fn connect_errors_and_timeouts_are_retried_twice_by_default() {
    let p = policy();
    for f in [Failure::Connect, Failure::Timeout] {
        assert_eq!(
            p.decide(&RetryInput::new(f, 0)),
            Decision::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            p.decide(&RetryInput::new(f, 1)),
            Decision::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(&RetryInput::new(f, 2)),
            Decision::GiveUp(GiveUp::Exhausted { retries: 2 })
        );
    }
}

#[test]
fn hints_parse_in_the_sdk_order() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let h = |p: &[(&'static str, &str)]| server_hint(&headers(p), now);
    assert_eq!(
        h(&[("retry-after-ms", "1250"), ("retry-after", "2")]),
        Some(Duration::from_millis(1250))
    );
    assert_eq!(h(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
    assert_eq!(
        h(&[("retry-after", "0.5")]),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        h(&[("retry-after", "Thu, 01 Jan 2026 00:00:05 GMT")]),
        Some(Duration::from_secs(5))
    );
    // Past dates, zero, negative and garbage are no hint.
    assert_eq!(h(&[("retry-after", "Wed, 31 Dec 2025 23:59:00 GMT")]), None);
    assert_eq!(h(&[("retry-after", "0")]), None);
    assert_eq!(h(&[("retry-after", "-3")]), None);
    assert_eq!(h(&[("retry-after", "soon")]), None);
    assert_eq!(h(&[("retry-after-ms", "NaN")]), None);
    // A bad retry-after-ms falls back to retry-after.
    assert_eq!(
        h(&[("retry-after-ms", "x"), ("retry-after", "3")]),
        Some(Duration::from_secs(3))
    );
    // Huge values saturate instead of panicking.
    assert_eq!(h(&[("retry-after", "1e300")]), Some(Duration::MAX));
}

#[test]
fn a_hint_is_a_lower_bound_and_too_long_a_hint_gives_up() {
    // Hint shorter than the backoff: the backoff wins (lower bound only).
    let h = headers(&[("retry-after-ms", "10")]);
    assert_eq!(
        decide_status(503, &h, 1),
        Decision::Retry(Duration::from_secs(1))
    );
    // Longer: the hint.
    let h = headers(&[("retry-after", "3")]);
    assert_eq!(
        decide_status(503, &h, 0),
        Decision::Retry(Duration::from_secs(3))
    );
    // Beyond 120 s: give up.
    let h = headers(&[("retry-after", "121")]);
    assert_eq!(
        decide_status(429, &h, 0),
        Decision::GiveUp(GiveUp::RetryAfterTooLong(Duration::from_secs(121)))
    );
    let p = policy().max_retry_after(Duration::from_secs(600));
    let input = RetryInput::new(
        Failure::Status {
            status: 429,
            headers: &h,
        },
        0,
    );
    assert_eq!(p.decide(&input), Decision::Retry(Duration::from_secs(121)));
}

#[test]
fn never_sleeps_past_the_deadline() {
    let now = Instant::now();
    let h = headers(&[("retry-after", "2")]);
    let at = |remaining_ms: u64| {
        RetryInput::new(
            Failure::Status {
                status: 503,
                headers: &h,
            },
            0,
        )
        .at(now, SystemTime::now())
        .deadline(Some(now + Duration::from_millis(remaining_ms)))
    };
    assert_eq!(
        policy().decide(&at(2001)),
        Decision::Retry(Duration::from_secs(2))
    );
    assert_eq!(
        policy().decide(&at(2000)),
        Decision::GiveUp(GiveUp::Deadline {
            delay: Duration::from_secs(2),
            remaining: Duration::from_secs(2)
        })
    );
    // A deadline already past.
    let past = RetryInput::new(Failure::Connect, 0)
        .at(now + Duration::from_secs(5), SystemTime::now())
        .deadline(Some(now));
    assert!(matches!(
        policy().decide(&past),
        Decision::GiveUp(GiveUp::Deadline { remaining, .. }) if remaining.is_zero()
    ));
}

#[test]
fn random_jitter_stays_in_range() {
    let j = ExponentialBackoff::default();
    for _ in 0..1000 {
        let Decision::Retry(d) = j.decide(&RetryInput::new(Failure::Connect, 0)) else {
            panic!()
        };
        assert!(
            d >= Duration::from_millis(375) && d <= Duration::from_millis(500),
            "{d:?}"
        );
    }
}

proptest! {
    #[test]
    fn backoff_is_bounded_and_capped(
        base_ms in 1u64..10_000,
        extra_ms in 0u64..100_000,
        retries in 0u32..200,
        r in 0.0f64..1.0,
    ) {
        let base = Duration::from_millis(base_ms);
        let max = base + Duration::from_millis(extra_ms);
        let d = backoff_delay(base, max, retries, r);
        let raw = base.saturating_mul(2u32.saturating_pow(retries.min(31))).min(max);
        prop_assert!(d <= raw);
        prop_assert!(d <= max);
        // Jitter removes at most a quarter.
        prop_assert!(d.as_secs_f64() >= raw.as_secs_f64() * 0.75 - 1e-9);
    }

    #[test]
    fn backoff_grows_with_retries_until_the_cap(
        base_ms in 1u64..5_000,
        retries in 0u32..64,
        r in 0.0f64..1.0,
    ) {
        let base = Duration::from_millis(base_ms);
        let max = Duration::from_secs(8).max(base);
        let a = backoff_delay(base, max, retries, r);
        let b = backoff_delay(base, max, retries + 1, r);
        prop_assert!(b >= a);
    }

    #[test]
    fn decisions_respect_the_deadline_and_the_hint(
        status in prop_oneof![Just(408u16), Just(429), Just(500), Just(529), 400u16..600],
        hint_ms in proptest::option::of(0u64..200_000),
        retries in 0u32..4,
        remaining_ms in proptest::option::of(0u64..300_000),
        r in 0.0f64..1.0,
    ) {
        let mut h = HeaderMap::new();
        if let Some(ms) = hint_ms {
            h.insert("retry-after-ms", HeaderValue::from_str(&ms.to_string()).unwrap());
        }
        let now = Instant::now();
        let deadline = remaining_ms.map(|ms| now + Duration::from_millis(ms));
        let p = ExponentialBackoff::default().jitter(Jitter::fixed(r));
        let input = RetryInput::new(Failure::Status { status, headers: &h }, retries)
            .at(now, SystemTime::now())
            .deadline(deadline);
        match p.decide(&input) {
            Decision::Retry(d) => {
                prop_assert!(should_retry_status(status, &h));
                prop_assert!(retries < 2);
                if let Some(ms) = hint_ms.filter(|ms| *ms > 0) {
                    prop_assert!(d >= Duration::from_millis(ms));
                }
                if let Some(dl) = deadline {
                    prop_assert!(now + d < dl);
                }
            }
            Decision::GiveUp(GiveUp::NotRetryable) => prop_assert!(!should_retry_status(status, &h)),
            Decision::GiveUp(GiveUp::Exhausted { .. }) => prop_assert!(retries >= 2),
            Decision::GiveUp(GiveUp::RetryAfterTooLong(d)) => prop_assert!(d > Duration::from_secs(120)),
            Decision::GiveUp(GiveUp::Deadline { delay, remaining }) => {
                prop_assert!(deadline.is_some());
                prop_assert!(delay >= remaining);
            }
            Decision::GiveUp(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
