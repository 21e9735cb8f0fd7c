//! The protocol checker: a pure state machine fed what one subscription did.

use std::collections::VecDeque;
use std::fmt;

/// How many recent operations a violation message shows.
const HISTORY: usize = 24;

/// Which rule a subscription broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// D1 (RS 1.1): more events delivered than demand granted.
    D1MoreThanAsked,
    /// D2: more events buffered on the subscription than its bound.
    D2OverBound,
    /// D3: a sequence gap, duplicate or reorder.
    D3Order,
    /// D4: an open subscription with no demand outstanding and nothing to
    /// handle: it can never make progress (demand forgotten).
    D4DemandForgotten,
    /// RS 3.9: an ask of zero.
    AskZero,
    /// RS 1.7 / G-T1: a signal after the subscription ended.
    AfterEnd,
}

impl Rule {
    fn describe(self) -> &'static str {
        match self {
            Rule::D1MoreThanAsked => "D1 broken: more delivered than asked",
            Rule::D2OverBound => "D2 broken: buffer over its bound",
            Rule::D3Order => "D3 broken: sequence gap or reorder",
            Rule::D4DemandForgotten => "D4 broken: demand forgotten",
            Rule::AskZero => "RS 3.9 broken: ask(0)",
            Rule::AfterEnd => "G-T1 broken: signal after the end",
        }
    }
}

/// One thing a subscription did, as the checker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// The subscriber asked for this many.
    Ask(usize),
    /// The upstream delivered a batch of this many.
    Deliver(usize),
    /// The upstream tried to deliver this many beyond granted demand, and
    /// the engine refused.
    Refused(usize),
    /// The subscriber took a batch of this many.
    Take(usize),
    /// The upstream ended (`Some` = failed).
    End(Option<String>),
    /// The subscriber cancelled.
    Cancel,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Ask(n) => write!(f, "ask {n}"),
            Op::Deliver(n) => write!(f, "deliver {n}"),
            Op::Refused(n) => write!(f, "refused {n}"),
            Op::Take(n) => write!(f, "take {n}"),
            Op::End(None) => write!(f, "end"),
            Op::End(Some(e)) => write!(f, "end (failed: {e})"),
            Op::Cancel => write!(f, "cancel"),
        }
    }
}

/// How event keys must follow each other on a subscription (D3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sequence {
    /// No order is checked.
    #[default]
    Any,
    /// Each key is the previous one plus 1 (no gap, no duplicate, no reorder).
    Consecutive,
    /// Each key is larger than the previous one (gaps allowed: filtered or
    /// partitioned streams).
    Increasing,
}

/// A broken rule, with everything needed to see why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// The subscription, as `upstream → subscriber` or the checker's name.
    pub subscription: String,
    /// What exactly happened.
    pub detail: String,
    /// The offending event (`Debug`), when an event is at fault.
    pub event: Option<String>,
    /// The most recent operations, oldest first, ending with the offending one.
    pub history: Vec<Op>,
    /// Demand granted, events delivered and taken when it broke.
    pub counts: (u64, u64, u64),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (granted, delivered, taken) = self.counts;
        writeln!(
            f,
            "{} on subscription `{}`: {}",
            self.rule.describe(),
            self.subscription,
            self.detail
        )?;
        if let Some(e) = &self.event {
            writeln!(f, "  offending event: {e}")?;
        }
        writeln!(
            f,
            "  totals: granted {granted}, delivered {delivered}, taken {taken}"
        )?;
        let ops: Vec<String> = self.history.iter().map(Op::to_string).collect();
        write!(f, "  demand history (oldest first): {}", ops.join(", "))
    }
}

impl std::error::Error for Violation {}

/// Checks D1–D4 on one subscription from what it did.
///
/// Feed it by hand (scripted sequences, fuzzing) or let a
/// [`Checker`](super::Checker) feed it from a running pipeline. The first
/// violation is kept; later operations are still counted.
///
/// # Example
///
/// ```
/// use demandflow::testkit::{Monitor, Rule};
///
/// let mut m = Monitor::new("source → sink");
/// m.ask(2);
/// m.deliver(2);
/// assert!(m.violation().is_none());
/// m.deliver(1); // nobody asked for it
/// let v = m.violation().unwrap();
/// assert_eq!(v.rule, Rule::D1MoreThanAsked);
/// assert!(v.to_string().contains("ask 2, deliver 2, deliver 1"));
/// ```
#[derive(Debug, Clone)]
pub struct Monitor {
    name: String,
    bound: Option<u64>,
    sequence: Sequence,
    granted: u64,
    delivered: u64,
    taken: u64,
    last_key: Option<u64>,
    ended: bool,
    cancelled: bool,
    history: VecDeque<Op>,
    asks: Vec<usize>,
    violation: Option<Violation>,
}

/// Most asks kept in [`Monitor::asks`].
const ASK_LOG: usize = 4096;

impl Monitor {
    /// A monitor for the subscription called `name`, with no buffer bound
    /// and no order check.
    pub fn new(name: &str) -> Monitor {
        Monitor {
            name: name.to_owned(),
            bound: None,
            sequence: Sequence::Any,
            granted: 0,
            delivered: 0,
            taken: 0,
            last_key: None,
            ended: false,
            cancelled: false,
            history: VecDeque::new(),
            asks: Vec::new(),
            violation: None,
        }
    }

    /// D2: at most `bound` events delivered and not yet taken.
    pub fn with_bound(mut self, bound: usize) -> Monitor {
        self.bound = Some(bound as u64);
        self
    }

    /// D3: how event keys must follow each other.
    pub fn with_sequence(mut self, sequence: Sequence) -> Monitor {
        self.sequence = sequence;
        self
    }

    /// The D2 bound, if any.
    pub fn bound(&self) -> Option<u64> {
        self.bound
    }

    /// Sets the D2 bound.
    pub fn set_bound(&mut self, bound: usize) {
        self.bound = Some(bound as u64);
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn record(&mut self, op: Op) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(op);
    }

    fn fail(&mut self, rule: Rule, detail: String, event: Option<String>) {
        if self.violation.is_some() {
            return;
        }
        self.violation = Some(Violation {
            rule,
            subscription: self.name.clone(),
            detail,
            event,
            history: self.history.iter().cloned().collect(),
            counts: (self.granted, self.delivered, self.taken),
        });
    }

    /// The subscriber asks for `n` more. After a cancel or the end this is a
    /// no-op (RS 3.6).
    pub fn ask(&mut self, n: usize) {
        self.record(Op::Ask(n));
        if self.asks.len() < ASK_LOG {
            self.asks.push(n);
        }
        if n == 0 {
            self.fail(Rule::AskZero, "asked for zero events".into(), None);
            return;
        }
        if !self.cancelled && !self.ended {
            self.granted = self.granted.saturating_add(n as u64);
        }
    }

    /// The upstream delivers a batch of `n` events.
    pub fn deliver(&mut self, n: usize) {
        self.record(Op::Deliver(n));
        if self.ended {
            self.fail(
                Rule::AfterEnd,
                format!("{n} events delivered after the upstream ended"),
                None,
            );
        }
        let before = self.delivered;
        self.delivered = self.delivered.saturating_add(n as u64);
        if self.delivered > self.granted {
            self.fail(
                Rule::D1MoreThanAsked,
                format!(
                    "a batch of {n} delivered with {} granted and {before} delivered before",
                    self.granted
                ),
                None,
            );
        }
        self.check_bound();
    }

    /// The engine refused a batch of `len` that exceeds granted demand: the
    /// upstream (its dispatcher) tried to over-deliver.
    pub fn refused(&mut self, len: usize, granted: u64, delivered: u64) {
        self.record(Op::Refused(len));
        self.fail(
            Rule::D1MoreThanAsked,
            format!(
                "the upstream tried to deliver {len} with {granted} granted and \
                 {delivered} delivered (refused by the edge)"
            ),
            None,
        );
    }

    /// The subscriber takes a batch of `n` events.
    pub fn take(&mut self, n: usize) {
        self.record(Op::Take(n));
        self.taken = self.taken.saturating_add(n as u64);
        if self.taken > self.delivered {
            self.fail(
                Rule::D1MoreThanAsked,
                format!(
                    "a batch of {n} taken with {} delivered and {} taken before",
                    self.delivered,
                    self.taken - n as u64
                ),
                None,
            );
        }
    }

    /// One event reaches the subscriber, with its sequence key (D3). `show`
    /// formats it, only if it is at fault.
    pub fn event(&mut self, key: u64, show: impl FnOnce() -> String) {
        let ok = match (self.sequence, self.last_key) {
            (Sequence::Any, _) | (_, None) => true,
            (Sequence::Consecutive, Some(prev)) => prev.checked_add(1) == Some(key),
            (Sequence::Increasing, Some(prev)) => key > prev,
        };
        if !ok {
            let prev = self.last_key.unwrap_or_default();
            let what = if key <= prev {
                "reordered or duplicated"
            } else {
                "a gap before it"
            };
            self.fail(
                Rule::D3Order,
                format!("key {key} after key {prev}: {what}"),
                Some(show()),
            );
        }
        self.last_key = Some(key);
    }

    /// The upstream ends the subscription (`Some` = failed).
    pub fn end(&mut self, failed: Option<String>) {
        self.record(Op::End(failed));
        self.ended = true;
    }

    /// The subscriber cancels.
    pub fn cancel(&mut self) {
        self.record(Op::Cancel);
        self.cancelled = true;
    }

    /// Call when the system has stopped making progress (a run that did not
    /// finish): an open subscription with no demand outstanding and nothing
    /// delivered but not taken has forgotten its demand (D4).
    pub fn quiescent(&mut self) {
        if self.ended || self.cancelled || self.violation.is_some() {
            return;
        }
        if self.granted == self.delivered && self.delivered == self.taken {
            self.fail(
                Rule::D4DemandForgotten,
                format!(
                    "the run stopped with the subscription open, no demand outstanding \
                     and nothing buffered: all {} events asked for were delivered and \
                     taken, and nobody asked again",
                    self.granted
                ),
                None,
            );
        }
    }

    /// The first violation, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// `Err` with the first violation.
    pub fn check(&self) -> Result<(), Box<Violation>> {
        match &self.violation {
            Some(v) => Err(Box::new(v.clone())),
            None => Ok(()),
        }
    }

    /// Demand granted so far (saturating).
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// Events delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Events taken by the subscriber so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Demand granted and not yet met.
    pub fn outstanding(&self) -> u64 {
        self.granted.saturating_sub(self.delivered)
    }

    /// Whether the upstream ended the subscription.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether the subscriber cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Every ask so far, in order (the first 4096).
    pub fn asks(&self) -> &[usize] {
        &self.asks
    }

    /// The recent operations, oldest first.
    pub fn history(&self) -> Vec<Op> {
        self.history.iter().cloned().collect()
    }

    fn check_bound(&mut self) {
        let Some(bound) = self.bound else { return };
        let buffered = self.delivered.saturating_sub(self.taken);
        if buffered > bound {
            self.fail(
                Rule::D2OverBound,
                format!("{buffered} events buffered, bound {bound}"),
                None,
            );
        }
    }
}
