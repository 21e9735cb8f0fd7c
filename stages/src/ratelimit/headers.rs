//! The providers' rate-limit headers, read into one normalised snapshot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// One limit as a response reports it. Any part may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// The limit (per minute for requests and tokens at OpenAI and
    /// Anthropic).
    pub limit: Option<u64>,
    /// What is left of it now.
    pub remaining: Option<u64>,
    /// How long until it is fully replenished (OpenAI), or until the
    /// time the server named (Anthropic's RFC 3339 instant, made relative
    /// to the wall clock passed in; zero when already past).
    pub reset: Option<Duration>,
}

impl Window {
    /// Whether the response said nothing about this limit.
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }
}

/// What one response said about the rate limits, whichever provider sent
/// it.
///
/// Read from OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
/// (reset as a duration: `6m0s`, `1s`, `20ms`), Anthropic's
/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
/// (reset as an RFC 3339 time), `retry-after-ms`, and `retry-after` (seconds
/// or an HTTP-date). Parsing is lenient: a malformed or negative value is
/// ignored, never an error.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use demandflow_stages::ratelimit::RateLimitSnapshot;
///
/// let s = RateLimitSnapshot::from_pairs(
///     [
///         ("x-ratelimit-limit-requests", "6000"),
///         ("x-ratelimit-remaining-requests", "5999"),
///         ("x-ratelimit-reset-requests", "10ms"),
///         ("x-ratelimit-reset-tokens", "6m0s"),
///         ("retry-after", "garbage"),
///     ],
///     SystemTime::now(),
/// );
/// assert_eq!(s.requests.limit, Some(6000));
/// assert_eq!(s.requests.reset, Some(Duration::from_millis(10)));
/// assert_eq!(s.tokens.reset, Some(Duration::from_secs(360)));
/// assert_eq!(s.retry_after, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// The request limit.
    pub requests: Window,
    /// The token limit (Anthropic: the most restrictive token limit in
    /// effect).
    pub tokens: Window,
    /// Anthropic's input-token limit.
    pub input_tokens: Window,
    /// Anthropic's output-token limit.
    pub output_tokens: Window,
    /// How long the server asked the client to wait (`retry-after-ms`, else
    /// `retry-after`).
    pub retry_after: Option<Duration>,
}

impl RateLimitSnapshot {
    /// Reads the headers of one response; `wall_clock` is now, for the
    /// absolute times (Anthropic's resets, an HTTP-date `retry-after`).
    pub fn from_headers(headers: &HeaderMap, wall_clock: SystemTime) -> RateLimitSnapshot {
        RateLimitSnapshot::from_pairs(
            headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
            wall_clock,
        )
    }

    /// Reads `(name, value)` pairs (names in any case).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        wall_clock: SystemTime,
    ) -> RateLimitSnapshot {
        let mut s = RateLimitSnapshot::default();
        let mut retry_after_ms = None;
        let mut retry_after = None;
        for (name, value) in pairs {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "retry-after-ms" {
                retry_after_ms = value
                    .parse::<f64>()
                    .ok()
                    .and_then(|ms| positive_secs(ms / 1000.0));
                continue;
            }
            if name == "retry-after" {
                retry_after = parse_retry_after(value, wall_clock);
                continue;
            }
            let Some((window, field)) = s.slot(&name) else {
                continue;
            };
            match field {
                Field::Limit => window.limit = parse_count(value).or(window.limit),
                Field::Remaining => window.remaining = parse_count(value).or(window.remaining),
                Field::Reset => window.reset = parse_reset(value, wall_clock).or(window.reset),
            }
        }
        s.retry_after = retry_after_ms.or(retry_after);
        s
    }

    /// Whether the response carried no rate-limit header at all.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.input_tokens.is_empty()
            && self.output_tokens.is_empty()
            && self.retry_after.is_none()
    }

    /// How long the server wants this client to wait before sending again
    /// after a rate-limit answer: `retry-after(-ms)` if given, else the
    /// reset of a limit reported exhausted (`remaining: 0`), the longest if
    /// several are.
    pub fn wait_hint(&self) -> Option<Duration> {
        if self.retry_after.is_some() {
            return self.retry_after;
        }
        [
            self.requests,
            self.tokens,
            self.input_tokens,
            self.output_tokens,
        ]
        .iter()
        .filter(|w| w.remaining == Some(0))
        .filter_map(|w| w.reset)
        .max()
    }

    fn slot(&mut self, name: &str) -> Option<(&mut Window, Field)> {
        if let Some(rest) = name.strip_prefix("x-ratelimit-") {
            let (field, which) = rest.split_once('-')?;
            let field = Field::parse(field)?;
            let window = match which {
                "requests" => &mut self.requests,
                "tokens" => &mut self.tokens,
                _ => return None,
            };
            return Some((window, field));
        }
        let rest = name.strip_prefix("anthropic-ratelimit-")?;
        let (which, field) = rest.rsplit_once('-')?;
        let field = Field::parse(field)?;
        let window = match which {
            "requests" => &mut self.requests,
            "tokens" => &mut self.tokens,
            "input-tokens" => &mut self.input_tokens,
            "output-tokens" => &mut self.output_tokens,
            _ => return None,
        };
        Some((window, field))
    }
}

#[derive(Clone, Copy)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

impl Field {
    fn parse(s: &str) -> Option<Field> {
        match s {
            "limit" => Some(Field::Limit),
            "remaining" => Some(Field::Remaining),
            "reset" => Some(Field::Reset),
            _ => None,
        }
    }
}

fn positive_secs(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// A count: an integer, or a non-negative number rounded down (some
/// gateways send `5999.0`).
fn parse_count(value: &str) -> Option<u64> {
    if let Ok(n) = value.parse::<u64>() {
        return Some(n);
    }
    let f = value.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// A reset: a Go-style duration (`6m0s`), plain seconds, or an RFC 3339
/// instant relative to `wall_clock`.
fn parse_reset(value: &str, wall_clock: SystemTime) -> Option<Duration> {
    if let Some(d) = parse_go_duration(value) {
        return Some(d);
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten();
    }
    let at = parse_rfc3339(value)?;
    Some(at.duration_since(wall_clock).unwrap_or(Duration::ZERO))
}

fn parse_retry_after(value: &str, wall_clock: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        return positive_secs(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(wall_clock).ok().filter(|d| !d.is_zero())
}

/// A Go `time.Duration` string as OpenAI sends it: `6m0s`, `1h2m3.5s`,
/// `20ms`, `0s`, `250us`. `None` for anything else.
///
/// ```
/// use std::time::Duration;
/// use demandflow_stages::ratelimit::parse_go_duration;
///
/// assert_eq!(parse_go_duration("1m30.5s"), Some(Duration::from_millis(90_500)));
/// assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
/// assert_eq!(parse_go_duration("6m"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_go_duration("-1s"), None);
/// assert_eq!(parse_go_duration("1x"), None);
/// ```
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// An RFC 3339 date-time (`2025-01-01T12:00:30Z`, fractional seconds and
/// `±hh:mm` offsets allowed). `None` for anything else.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use demandflow_stages::ratelimit::parse_rfc3339;
///
/// let t = parse_rfc3339("1970-01-02T00:00:01.5+01:00").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::from_millis(86_401_500 - 3_600_000));
/// assert!(parse_rfc3339("2025-13-01T00:00:00Z").is_none());
/// ```
pub fn parse_rfc3339(value: &str) -> Option<SystemTime> {
    let s = value.trim().as_bytes();
    if s.len() < 20 || !s.is_ascii() {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<u64> {
        let part = std::str::from_utf8(s.get(from..from + len)?).ok()?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // 60: a leap second, read as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        for (k, d) in digits.iter().take(9).enumerate() {
            nanos += u64::from(d - b'0') * 10u64.pow(8 - k as u32);
        }
    }
    let offset: i64 = match s.get(i)? {
        b'Z' | b'z' if i + 1 == s.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == s.len() && s[i + 3] == b':' => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i64;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn anthropic_headers() {
        let now = parse_rfc3339("2025-06-01T12:00:00Z").unwrap();
        let s = RateLimitSnapshot::from_pairs(
            [
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2025-06-01T12:00:07Z"),
                ("anthropic-ratelimit-tokens-limit", "80000"),
                ("anthropic-ratelimit-tokens-remaining", "79000"),
                ("anthropic-ratelimit-tokens-reset", "2025-06-01T11:59:00Z"),
                ("anthropic-ratelimit-input-tokens-limit", "40000"),
                ("anthropic-ratelimit-output-tokens-remaining", "8000"),
                ("Anthropic-RateLimit-Output-Tokens-Reset", "not a date"),
            ],
            now,
        );
        assert_eq!(s.requests.limit, Some(50));
        assert_eq!(s.requests.remaining, Some(0));
        assert_eq!(s.requests.reset, Some(Duration::from_secs(7)));
        // A reset in the past is "now", not an error.
        assert_eq!(s.tokens.reset, Some(Duration::ZERO));
        assert_eq!(s.input_tokens.limit, Some(40000));
        assert_eq!(s.output_tokens.remaining, Some(8000));
        assert_eq!(s.output_tokens.reset, None);
        // No retry-after: the exhausted limit's reset is the hint.
        assert_eq!(s.wait_hint(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let get = |pairs: &[(&str, &str)]| {
            RateLimitSnapshot::from_pairs(pairs.iter().copied(), now).retry_after
        };
        assert_eq!(get(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(
            get(&[("retry-after", "1.5"), ("retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            get(&[("retry-after-ms", "nope"), ("retry-after", "3")]),
            Some(Duration::from_secs(3))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            get(&[("retry-after", &date)]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(get(&[("retry-after", "-1")]), None);
        assert_eq!(get(&[("retry-after", "NaN")]), None);
        assert_eq!(get(&[("retry-after", "1e400")]), None);
    }

    #[test]
    fn malformed_values_are_ignored() {
        let s = RateLimitSnapshot::from_pairs(
            [
                ("x-ratelimit-limit-requests", "-5"),
                ("x-ratelimit-remaining-requests", "lots"),
                ("x-ratelimit-reset-requests", "1q"),
                ("x-ratelimit-limit-tokens", "1000.0"),
                ("x-ratelimit-limit", "7"),
                ("x-ratelimit-limit-widgets", "7"),
                ("anthropic-ratelimit-", "7"),
            ],
            SystemTime::now(),
        );
        assert!(s.requests.is_empty());
        assert_eq!(s.tokens.limit, Some(1000));
    }

    #[test]
    fn rfc3339_edge_cases() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400))
        );
        for bad in [
            "2001-02-29T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0100",
            "1969-12-31T23:59:59Z",
            "２０２５-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_header_values_parse_without_panic(
            pairs in proptest::collection::vec(("[a-zA-Z-]{0,40}", "\\PC{0,40}"), 0..12),
            secs in 0u64..4_000_000_000,
        ) {
            let names = [
                "x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset",
                "retry-after", "retry-after-ms", "x-ratelimit-limit-requests",
            ];
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let mut all: Vec<(String, String)> = pairs.clone();
            for (i, (_, v)) in pairs.iter().enumerate() {
                all.push((names[i % names.len()].to_owned(), v.clone()));
            }
            let _ = RateLimitSnapshot::from_pairs(all.iter().map(|(k, v)| (k.as_str(), v.as_str())), now);
        }

        #[test]
        fn go_durations_round_trip(h in 0u64..100, m in 0u64..60, ms in 0u64..60_000) {
            let text = format!("{h}h{m}m{}.{:03}s", ms / 1000, ms % 1000);
            let expect = Duration::from_millis(h * 3_600_000 + m * 60_000 + ms);
            let got = parse_go_duration(&text).unwrap();
            prop_assert!(got.abs_diff(expect) < Duration::from_micros(1), "{text}: {got:?}");
        }

        #[test]
        fn rfc3339_matches_httpdate(secs in 0u64..8_000_000_000) {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let text = httpdate::fmt_http_date(t);
            // Rebuild the same instant as RFC 3339 through httpdate's
            // parse, then ours.
            let back = httpdate::parse_http_date(&text).unwrap();
            prop_assert_eq!(back, t);
            let days = secs / 86_400;
            let rem = secs % 86_400;
            let (y, mo, d) = civil_from_days(days as i64);
            let rfc = format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60);
            prop_assert_eq!(parse_rfc3339(&rfc), Some(t));
        }
    }

    /// The inverse of `days_from_civil`, for the round trip above.
    fn civil_from_days(z: i64) -> (i64, u64, u64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }
}
