//! The request stage's scheduler against a simulated rate-limited provider,
//! in virtual time (no clock, no sockets): the issue's targets as
//! properties of the algorithm. Real throughput is measured by the
//! benchmark, not here.
//!
//! The simulated server keeps its own token buckets (requests and tokens),
//! stricter than the real providers': they hold one second's worth, not a
//! minute's, so any burst above the limit is caught. It answers each
//! request with the OpenAI rate-limit headers, and a 429 with `retry-after`
//! when a bucket is empty.

use std::time::{Duration, Instant};

use demandflow_stages::ratelimit::{
    Dispatch, Job, Limits, RateLimitSnapshot, Scheduler, SchedulerConfig, TokenBucket,
};

struct Server {
    requests: TokenBucket,
    tokens: TokenBucket,
    rpm: u64,
    tpm: u64,
    send_headers: bool,
}

impl Server {
    fn new(rpm: u64, tpm: u64, now: Instant) -> Server {
        Server {
            requests: TokenBucket::new(rpm as f64 / 60.0, rpm as f64 / 60.0, now),
            tokens: TokenBucket::new(tpm as f64 / 60.0, tpm as f64 / 60.0, now),
            rpm,
            tpm,
            send_headers: true,
        }
    }

    /// Status and headers for a request costing `tokens` arriving at `now`.
    fn answer(&mut self, tokens: u64, now: Instant) -> (u16, Vec<(String, String)>) {
        let ok = self.requests.can_take(1.0, now) && self.tokens.can_take(tokens as f64, now);
        if ok {
            self.requests.try_take(1.0, now);
            self.tokens.try_take(tokens as f64, now);
        }
        let mut h = Vec::new();
        if self.send_headers {
            let left_r = self.requests.level(now).max(0.0) as u64;
            let left_t = self.tokens.level(now).max(0.0) as u64;
            h.push(("x-ratelimit-limit-requests".into(), self.rpm.to_string()));
            h.push(("x-ratelimit-limit-tokens".into(), self.tpm.to_string()));
            h.push(("x-ratelimit-remaining-requests".into(), left_r.to_string()));
            h.push(("x-ratelimit-remaining-tokens".into(), left_t.to_string()));
        }
        if ok {
            return (200, h);
        }
        let wait = self
            .requests
            .ready_at(1.0, now)
            .max(self.tokens.ready_at(tokens as f64, now))
            .duration_since(now);
        h.push(("retry-after-ms".into(), wait.as_millis().max(1).to_string()));
        (429, h)
    }
}

#[derive(Debug)]
struct Outcome {
    /// Requests per second achieved, as a fraction of the server's limit.
    fraction_of_limit: f64,
    rate_limited: u64,
    peak_in_flight: usize,
    peak_queued: usize,
}

enum Ev {
    Head(u16, Box<RateLimitSnapshot>),
    Done(usize, bool),
}

/// `n` requests costing `estimate` tokens (using `used` in the end) through
/// a scheduler told `client_rpm` / `client_tpm`, against a server allowing
/// `rpm` / `tpm`, with `ttft` to the first token and `stream` after it.
#[allow(clippy::too_many_arguments)]
fn simulate(
    n: usize,
    client: Limits,
    mut server: Server,
    estimate: u64,
    used: u64,
    ttft: Duration,
    stream: Duration,
    t0: Instant,
) -> Outcome {
    let rtt = Duration::from_millis(1);
    let mut s = Scheduler::new(SchedulerConfig {
        concurrency: 256,
        ..Default::default()
    });
    s.set_default_limits(client);
    // Jobs are taken in as the stage takes them: `room` at a time.
    let mut submitted = 0;
    let mut peak_queued = 0;
    let mut events: Vec<(Instant, Ev)> = Vec::new();
    let mut running: Vec<Option<Job<usize>>> = (0..n).map(|_| None).collect();
    let mut done = 0;
    let mut limited = 0;
    let mut peak = 0;
    let mut now = t0;
    let mut last = t0;
    while done < n {
        let room = s.room(now).min(n - submitted);
        for i in submitted..submitted + room {
            s.submit(Job::new(i, "e", estimate), now);
        }
        submitted += room;
        peak_queued = peak_queued.max(s.queued());
        while let Some(Dispatch::Send(job)) = s.next(now) {
            let (status, headers) = server.answer(estimate, now);
            let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let snap = RateLimitSnapshot::from_pairs(pairs, std::time::SystemTime::now());
            let i = job.item;
            events.push((now + rtt, Ev::Head(status, Box::new(snap))));
            let end = if status == 200 {
                now + rtt + ttft + stream
            } else {
                now + rtt
            };
            events.push((end, Ev::Done(i, status == 200)));
            running[i] = Some(job);
        }
        peak = peak.max(s.in_flight());
        let next_ev = events.iter().map(|e| e.0).min();
        let wake = s.wake_at(now);
        let wake = if wake.is_none() && events.is_empty() {
            // Nothing queued, nothing in flight, no room: only time makes
            // room (the stage's timer does the same).
            Some(now + Duration::from_millis(1))
        } else {
            wake
        };
        now = match (next_ev, wake) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("progress"),
        }
        .max(now);
        let (due, rest): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.0 <= now);
        events = rest;
        let mut due = due;
        due.sort_by_key(|e| (e.0, matches!(e.1, Ev::Done(..))));
        for (_, ev) in due {
            match ev {
                Ev::Head(status, snap) => {
                    if status == 429 {
                        limited += 1;
                    }
                    s.observe("e", status, &snap, now);
                }
                Ev::Done(i, ok) => {
                    let job = running[i].take().expect("one attempt at a time");
                    if ok {
                        s.complete(&job, Some(used), now);
                        done += 1;
                        last = now;
                    } else {
                        s.complete(&job, None, now);
                        let hint = s
                            .endpoint("e")
                            .and_then(|l| l.blocked_until())
                            .unwrap_or(now);
                        s.retry(job, hint);
                    }
                }
            }
        }
    }
    let secs = last.duration_since(t0).as_secs_f64();
    Outcome {
        fraction_of_limit: n as f64 / secs / (server.rpm as f64 / 60.0),
        rate_limited: limited,
        peak_in_flight: peak,
        peak_queued,
    }
}

/// The issue's benchmark shape: 6,000 requests/min, 600,000 tokens/min,
/// 200 ms to the first token, 20 tokens at 2 ms, 3,000 requests.
fn issue_shape(client: Limits, send_headers: bool) -> Outcome {
    let t0 = Instant::now();
    let mut server = Server::new(6000, 600_000, t0);
    server.send_headers = send_headers;
    simulate(
        3000,
        client,
        server,
        60,
        40,
        Duration::from_millis(200),
        Duration::from_millis(40),
        t0,
    )
}

#[test]
fn correctly_configured_reaches_95_percent_with_at_most_1_percent_429s() {
    let o = issue_shape(Limits::none().rpm(6000.0).tpm(600_000.0), true);
    eprintln!("{o:?}");
    assert!(o.fraction_of_limit >= 0.95, "{}", o.fraction_of_limit);
    assert!(o.fraction_of_limit <= 1.0, "{}", o.fraction_of_limit);
    assert!(o.rate_limited <= 30, "{} 429s", o.rate_limited);
    assert!(o.peak_in_flight <= 256);
    // Requests taken in and not yet sent stay few: intake follows capacity.
    assert!(o.peak_queued <= 256, "{o:?}");
}

#[test]
fn told_twice_the_limit_it_learns_the_real_one_from_the_headers() {
    let o = issue_shape(Limits::none().rpm(12_000.0).tpm(1_200_000.0), true);
    eprintln!("{o:?}");
    assert!(o.fraction_of_limit >= 0.90, "{}", o.fraction_of_limit);
    assert!(o.rate_limited <= 30, "{} 429s", o.rate_limited);
}

#[test]
fn without_headers_429s_alone_bring_it_down_without_a_storm() {
    // No limit headers, only 429 + retry-after: the controller has only
    // its backoff to go on. It must still finish, with 429s a small share.
    let o = issue_shape(Limits::none().rpm(12_000.0).tpm(1_200_000.0), false);
    eprintln!("{o:?}");
    assert!(o.fraction_of_limit >= 0.5, "{}", o.fraction_of_limit);
    assert!(o.rate_limited <= 90, "{} 429s", o.rate_limited);
}
