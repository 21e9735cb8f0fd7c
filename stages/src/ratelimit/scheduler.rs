//! Which waiting request to send next: concurrency, per-endpoint budgets,
//! retry times and deadlines.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::controller::{AdaptiveConfig, EndpointLimiter, Limits, Outcome};
use super::headers::RateLimitSnapshot;

/// One request as the scheduler sees it: its payload and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Job<T> {
    /// The caller's payload.
    pub item: T,
    /// Which endpoint's budgets it spends (base URL and API, say).
    pub endpoint: String,
    /// Its estimated token cost.
    pub estimate: u64,
    /// Attempts made so far (a job handed out by
    /// [`Scheduler::next`] counts the attempt it is about to make).
    pub attempts: u32,
    /// Not sent before this (a retry's backoff).
    pub not_before: Option<Instant>,
    /// Given up on if not sent by this.
    pub deadline: Option<Instant>,
}

impl<T> Job<T> {
    /// A first attempt at `item`, costing `estimate` tokens of `endpoint`.
    pub fn new(item: T, endpoint: impl Into<String>, estimate: u64) -> Job<T> {
        Job {
            item,
            endpoint: endpoint.into(),
            estimate,
            attempts: 0,
            not_before: None,
            deadline: None,
        }
    }

    /// Sets the deadline.
    pub fn deadline(mut self, deadline: Option<Instant>) -> Job<T> {
        self.deadline = deadline;
        self
    }
}

/// What [`Scheduler::next`] hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch<T> {
    /// Send it now: its budget is taken and a concurrency slot is held
    /// until [`Scheduler::complete`].
    Send(Job<T>),
    /// Its deadline passed while it waited: it is the caller's to fail.
    Expired(Job<T>),
}

/// The scheduler's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerConfig {
    /// The most requests in flight at once, all endpoints together.
    pub concurrency: usize,
    /// How the endpoints' rates adapt.
    pub adaptive: AdaptiveConfig,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            concurrency: 64,
            adaptive: AdaptiveConfig::default(),
        }
    }
}

/// The pure core of the request stage: a queue of waiting jobs, a
/// concurrency limit, and one [`EndpointLimiter`] per endpoint.
///
/// Jobs are handed out in arrival order, except that a job whose endpoint
/// is out of budget (or blocked after a 429), or that waits for its retry
/// time, is passed over for later jobs that can go: a blocked endpoint never
/// holds back another. A job is in exactly one place at a time (the queue,
/// or the caller's hands between [`next`](Self::next) and
/// [`complete`](Self::complete) + [`retry`](Self::retry)), so none is lost
/// or sent twice at once.
///
/// ```
/// use std::time::Instant;
/// use demandflow_stages::ratelimit::{Dispatch, Job, Limits, Scheduler, SchedulerConfig};
///
/// let t0 = Instant::now();
/// let mut s = Scheduler::new(SchedulerConfig { concurrency: 2, ..Default::default() });
/// s.set_limits("a", Limits::none().rpm(60.0), t0);
/// for i in 0..3 {
///     s.submit(Job::new(i, "a", 10), t0);
/// }
/// // 60/min at half speed to start: a bucket of one request.
/// let Some(Dispatch::Send(first)) = s.next(t0) else { panic!() };
/// assert_eq!((first.item, first.attempts), (0, 1));
/// assert!(s.next(t0).is_none());
/// assert_eq!(s.in_flight(), 1);
/// assert!(s.wake_at(t0).is_some());
/// ```
#[derive(Debug)]
pub struct Scheduler<T> {
    config: SchedulerConfig,
    queue: VecDeque<Job<T>>,
    in_flight: usize,
    endpoints: HashMap<String, EndpointLimiter>,
    limits: HashMap<String, Limits>,
    default_limits: Limits,
    /// The endpoint of the last job submitted: the best guess for the
    /// next, to size the demand asked upstream.
    last_endpoint: Option<(String, u64)>,
}

impl<T> Scheduler<T> {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Scheduler<T> {
        Scheduler {
            config: SchedulerConfig {
                concurrency: config.concurrency.max(1),
                ..config
            },
            queue: VecDeque::new(),
            in_flight: 0,
            endpoints: HashMap::new(),
            limits: HashMap::new(),
            default_limits: Limits::none(),
            last_endpoint: None,
        }
    }

    /// The limits of endpoints not named with [`set_limits`](Self::set_limits).
    pub fn set_default_limits(&mut self, limits: Limits) {
        self.default_limits = limits;
    }

    /// Sets the configured limits of `endpoint` (applied when it is first
    /// used, and at once if it already is).
    pub fn set_limits(&mut self, endpoint: &str, limits: Limits, now: Instant) {
        self.limits.insert(endpoint.to_owned(), limits);
        if self.endpoints.contains_key(endpoint) {
            let l = EndpointLimiter::new(limits, self.config.adaptive, now);
            self.endpoints.insert(endpoint.to_owned(), l);
        }
    }

    fn limiter(&mut self, endpoint: &str, now: Instant) -> &mut EndpointLimiter {
        if !self.endpoints.contains_key(endpoint) {
            let limits = self
                .limits
                .get(endpoint)
                .copied()
                .unwrap_or(self.default_limits);
            let l = EndpointLimiter::new(limits, self.config.adaptive, now);
            self.endpoints.insert(endpoint.to_owned(), l);
        }
        self.endpoints
            .get_mut(endpoint)
            .expect("inserted just above")
    }

    /// The limiter of `endpoint`, if it has been used.
    pub fn endpoint(&self, endpoint: &str) -> Option<&EndpointLimiter> {
        self.endpoints.get(endpoint)
    }

    /// Jobs waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Jobs handed out and not completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues a new job, after those already waiting.
    pub fn submit(&mut self, job: Job<T>, now: Instant) {
        self.limiter(&job.endpoint, now);
        self.last_endpoint = Some((job.endpoint.clone(), job.estimate));
        self.queue.push_back(job);
    }

    /// Puts a completed job back for another attempt at `at` (ahead of
    /// new jobs: it has waited longest).
    pub fn retry(&mut self, mut job: Job<T>, at: Instant) {
        job.not_before = Some(at);
        self.queue.push_front(job);
    }

    /// Removes and returns the waiting jobs whose payload matches `f` (a
    /// request cancelled while it waits, say).
    pub fn take_where(&mut self, mut f: impl FnMut(&T) -> bool) -> Vec<Job<T>> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for job in self.queue.drain(..) {
            if f(&job.item) {
                taken.push(job);
            } else {
                kept.push_back(job);
            }
        }
        self.queue = kept;
        taken
    }

    /// The next job to send or to fail, if any can go at `now`.
    pub fn next(&mut self, now: Instant) -> Option<Dispatch<T>> {
        if let Some(i) = self
            .queue
            .iter()
            .position(|j| j.deadline.is_some_and(|d| d <= now))
        {
            return self.queue.remove(i).map(Dispatch::Expired);
        }
        if self.in_flight >= self.config.concurrency {
            return None;
        }
        // Within one endpoint jobs go in order: once one is refused, the
        // later ones of that endpoint are not tried (a small one must not
        // starve a large one).
        let mut refused: Vec<&str> = Vec::new();
        let mut found = None;
        for (i, job) in self.queue.iter().enumerate() {
            if job.not_before.is_some_and(|t| now < t) || refused.contains(&job.endpoint.as_str()) {
                continue;
            }
            // Every queued job's endpoint has a limiter (made on submit);
            // one without would have no limits.
            let admitted = self
                .endpoints
                .get_mut(&job.endpoint)
                .is_none_or(|l| l.try_send(job.estimate, now));
            if admitted {
                found = Some(i);
                break;
            }
            refused.push(&job.endpoint);
        }
        let mut job = self.queue.remove(found?)?;
        job.attempts += 1;
        job.not_before = None;
        self.in_flight += 1;
        Some(Dispatch::Send(job))
    }

    /// Records the answer of an attempt's response (its status and
    /// headers) on its endpoint; call it for every response, success or
    /// error.
    pub fn observe(
        &mut self,
        endpoint: &str,
        status: u16,
        snapshot: &RateLimitSnapshot,
        now: Instant,
    ) {
        self.limiter(endpoint, now)
            .observe(Outcome::of_status(status), snapshot, now);
    }

    /// Ends an attempt handed out by [`next`](Self::next): frees its slot
    /// and corrects the endpoint's token budget with `actual` usage (when
    /// reported). The job is then the caller's, to finish or
    /// [`retry`](Self::retry).
    pub fn complete(&mut self, job: &Job<T>, actual: Option<u64>, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(actual) = actual {
            let (endpoint, estimate) = (job.endpoint.clone(), job.estimate);
            self.limiter(&endpoint, now).settle(estimate, actual, now);
        }
    }

    /// How many more jobs it is worth taking in now: free concurrency
    /// slots not already claimed by waiting jobs, and no more than the
    /// budget of the last endpoint used would admit (jobs cost what the
    /// last one did). Upstream demand follows this number, so input is
    /// read only when there is capacity for it.
    pub fn room(&mut self, now: Instant) -> usize {
        let free = self
            .config
            .concurrency
            .saturating_sub(self.in_flight + self.queue.len());
        if free == 0 {
            return 0;
        }
        let budget = match self.last_endpoint.clone() {
            Some((endpoint, estimate)) => self.limiter(&endpoint, now).headroom(estimate, now),
            None => 1,
        };
        free.min(budget.saturating_sub(self.queue.len()))
    }

    /// When something next changes if nothing completes: a waiting job's
    /// retry time, budget refill or deadline, or (with nothing waiting and
    /// no room now) the refill that makes room. `None` when only a
    /// completion can change anything.
    pub fn wake_at(&mut self, now: Instant) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        let slot_free = self.in_flight < self.config.concurrency;
        // As `next` sees the queue: per endpoint, the first job not
        // waiting for its retry time is the one that goes next; a job
        // still waiting for it may go once it is due. (Counting any later
        // job of the endpoint could name an instant at which `next` sends
        // nothing, and wake-ups would spin.)
        let mut heads: Vec<&str> = Vec::new();
        for job in &self.queue {
            if let Some(d) = job.deadline {
                earliest(d);
            }
            if !slot_free {
                continue;
            }
            let waiting = job.not_before.filter(|t| now < *t);
            if waiting.is_none() {
                if heads.contains(&job.endpoint.as_str()) {
                    continue;
                }
                heads.push(&job.endpoint);
            }
            let ready = self
                .endpoints
                .get_mut(&job.endpoint)
                .map_or(now, |l| l.ready_at(job.estimate, now));
            earliest(waiting.map_or(ready, |n| n.max(ready)));
        }
        if self.queue.is_empty() && slot_free {
            if let Some((endpoint, estimate)) = self.last_endpoint.clone() {
                let l = self.limiter(&endpoint, now);
                if l.headroom(estimate, now) == 0 {
                    earliest(l.ready_at(estimate, now));
                }
            }
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_blocked_endpoint_does_not_hold_back_another() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(SchedulerConfig::default());
        s.submit(Job::new("a1", "a", 1), t0);
        s.submit(Job::new("b1", "b", 1), t0);
        let snap = RateLimitSnapshot {
            retry_after: Some(Duration::from_secs(5)),
            ..RateLimitSnapshot::default()
        };
        s.observe("a", 429, &snap, t0);
        let Some(Dispatch::Send(j)) = s.next(t0) else {
            panic!("b should go")
        };
        assert_eq!(j.item, "b1");
        assert!(s.next(t0).is_none());
        assert_eq!(s.wake_at(t0), Some(t0 + Duration::from_secs(5)));
        assert!(
            matches!(s.next(t0 + Duration::from_secs(5)), Some(Dispatch::Send(j)) if j.item == "a1")
        );
    }

    #[test]
    fn order_within_an_endpoint_and_no_wake_up_that_sends_nothing() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(SchedulerConfig::default());
        // 500 tokens/s at half speed: a bucket of 500.
        s.set_default_limits(Limits::none().tpm(60_000.0));
        s.submit(Job::new("fill", "a", 450), t0);
        assert!(matches!(s.next(t0), Some(Dispatch::Send(_))));
        s.submit(Job::new("big", "a", 400), t0);
        s.submit(Job::new("small", "a", 10), t0);
        // 50 left: "small" would fit, but "big" is first.
        assert!(s.next(t0).is_none());
        let wake = s.wake_at(t0).unwrap();
        assert!(wake > t0, "a wake-up now would send nothing and spin");
        assert!(matches!(s.next(wake), Some(Dispatch::Send(j)) if j.item == "big"));
    }

    #[test]
    fn expired_and_retried_jobs() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(SchedulerConfig {
            concurrency: 1,
            ..Default::default()
        });
        s.submit(Job::new(1, "a", 1).deadline(Some(t0 + ms(10))), t0);
        s.submit(Job::new(2, "a", 1), t0);
        let Some(Dispatch::Send(j)) = s.next(t0) else {
            panic!()
        };
        // Slot held: job 2 waits, job 1 is out.
        assert!(s.next(t0).is_none());
        s.complete(&j, None, t0);
        s.retry(j, t0 + ms(50));
        // The retry waits; job 2 goes first.
        assert!(matches!(s.next(t0), Some(Dispatch::Send(j)) if j.item == 2));
        // Job 1's deadline passes while it waits for its retry time.
        assert_eq!(s.wake_at(t0), Some(t0 + ms(10)));
        assert!(
            matches!(s.next(t0 + ms(10)), Some(Dispatch::Expired(j)) if j.item == 1 && j.attempts == 1)
        );
    }

    #[test]
    fn room_follows_budget_and_slots() {
        let t0 = Instant::now();
        let mut s: Scheduler<u32> = Scheduler::new(SchedulerConfig {
            concurrency: 8,
            ..Default::default()
        });
        assert_eq!(s.room(t0), 1, "one to learn the endpoint from");
        s.set_limits("a", Limits::none().tpm(60_000.0), t0);
        s.submit(Job::new(0, "a", 100), t0);
        // 500 tokens/s at half speed, a bucket of 500: five of 100 fit,
        // one of which waits in the queue.
        assert_eq!(s.room(t0), 4);
        let _ = s.next(t0);
        assert_eq!(s.room(t0), 4);
        for i in 1..=4 {
            s.submit(Job::new(i, "a", 100), t0);
            let _ = s.next(t0);
        }
        assert_eq!(s.room(t0), 0);
        assert_eq!(s.wake_at(t0), Some(t0 + ms(200) + Duration::from_micros(1)));
    }

    #[derive(Debug, Clone)]
    struct Plan {
        latency_ms: u64,
        /// 0: success; 1: 429 with retry-after; 2: other retryable error.
        fate: u8,
        retry_after_ms: u64,
        actual_fraction: f64,
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (
            1u64..3000,
            prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
            1u64..5000,
            0.0f64..=1.0,
        )
            .prop_map(|(latency_ms, fate, retry_after_ms, actual_fraction)| Plan {
                latency_ms,
                fate,
                retry_after_ms,
                actual_fraction,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random limits, latencies and failures through a simulated
        /// clock: every job ends exactly once (done, failed after its last
        /// attempt, or expired), never two attempts of one job at once,
        /// concurrency is never exceeded, and what is spent never exceeds
        /// the budget (burst + rate * time) by more than one job's estimate.
        #[test]
        fn nothing_lost_or_duplicated_and_budgets_hold(
            rpm in 30.0f64..20_000.0,
            tpm in 1_000.0f64..2_000_000.0,
            concurrency in 1usize..40,
            estimates in proptest::collection::vec(1u64..5_000, 1..120),
            plans in proptest::collection::vec(plan(), 1..60),
            max_attempts in 1u32..5,
            endpoints in 1usize..3,
        ) {
            let t0 = Instant::now();
            let config = SchedulerConfig { concurrency, ..Default::default() };
            let mut s = Scheduler::new(config);
            s.set_default_limits(Limits::none().rpm(rpm).tpm(tpm));
            let n = estimates.len();
            for (i, e) in estimates.iter().enumerate() {
                s.submit(Job::new(i, format!("e{}", i % endpoints), *e), t0);
            }
            let max_est = *estimates.iter().max().unwrap() as f64;
            let burst = config.adaptive.burst.as_secs_f64();
            let mut finished = vec![0u32; n];
            let mut running = vec![false; n];
            // (completion time, job, plan index)
            let mut flight: Vec<(Instant, Job<usize>, usize)> = Vec::new();
            // Per endpoint: requests sent, tokens spent (estimates of jobs
            // in flight plus the actual usage of completed ones).
            let mut sent = vec![0f64; endpoints];
            let mut spent = vec![0f64; endpoints];
            let mut now = t0;
            let mut k = 0usize;
            let mut steps = 0;
            while finished.contains(&0) {
                steps += 1;
                prop_assert!(steps < 1_000_000, "no progress");
                while let Some(d) = s.next(now) {
                    match d {
                        Dispatch::Expired(_) => prop_assert!(false, "no deadlines here"),
                        Dispatch::Send(job) => {
                            prop_assert!(!running[job.item], "job {} sent twice at once", job.item);
                            running[job.item] = true;
                            let e = job.item % endpoints;
                            sent[e] += 1.0;
                            spent[e] += job.estimate as f64;
                            let elapsed = now.duration_since(t0).as_secs_f64();
                            let req_budget = (rpm / 60.0 * burst).max(1.0) + rpm / 60.0 * elapsed;
                            let tok_budget = tpm / 60.0 * burst + tpm / 60.0 * elapsed;
                            prop_assert!(sent[e] <= req_budget + 1.0 + 1e-6, "requests {} > {req_budget}", sent[e]);
                            prop_assert!(spent[e] <= tok_budget + max_est + 1e-6, "tokens {} > {tok_budget}", spent[e]);
                            let p = k % plans.len();
                            k += 1;
                            flight.push((now + ms(plans[p].latency_ms), job, p));
                        }
                    }
                }
                prop_assert!(s.in_flight() <= concurrency);
                prop_assert_eq!(s.in_flight(), flight.len());
                // Advance to the next completion or wake-up.
                let next_done = flight.iter().map(|f| f.0).min();
                let wake = s.wake_at(now);
                let t = match (next_done, wake) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).expect("something must be pending"),
                };
                now = now.max(t);
                let (done, rest): (Vec<_>, Vec<_>) = flight.into_iter().partition(|f| f.0 <= now);
                flight = rest;
                for (_, job, p) in done {
                    let plan = &plans[p];
                    let e = job.item % endpoints;
                    running[job.item] = false;
                    let endpoint = job.endpoint.clone();
                    match plan.fate {
                        0 => {
                            let actual = (job.estimate as f64 * plan.actual_fraction) as u64;
                            s.observe(&endpoint, 200, &RateLimitSnapshot::default(), now);
                            s.complete(&job, Some(actual), now);
                            spent[e] -= (job.estimate - actual) as f64;
                            finished[job.item] += 1;
                        }
                        fate => {
                            let snap = RateLimitSnapshot {
                                retry_after: (fate == 1).then(|| ms(plan.retry_after_ms)),
                                ..RateLimitSnapshot::default()
                            };
                            s.observe(&endpoint, if fate == 1 { 429 } else { 503 }, &snap, now);
                            s.complete(&job, None, now);
                            if job.attempts >= max_attempts {
                                finished[job.item] += 1;
                            } else {
                                s.retry(job, now + ms(plan.retry_after_ms / 2));
                            }
                        }
                    }
                }
            }
            prop_assert!(finished.iter().all(|&f| f == 1), "{finished:?}");
            prop_assert_eq!(s.queued(), 0);
            prop_assert_eq!(s.in_flight(), 0);
        }
    }
}
