//! The stage supervisor's decisions, with OTP semantics.
//!
//! Pure: the runtime reports a stage's exit with the current time, and
//! [`Supervisor::on_exit`] answers what to do. No clock is read here and the
//! backoff's randomness is injected, so every case is a plain unit test.
//!
//! * Restart type per stage ([`Restart`]): `Permanent` is always restarted,
//!   `Transient` only after a failure, `Temporary` never.
//! * Strategy ([`Strategy`]): `OneForOne` restarts the failed stage,
//!   `RestForOne` the failed stage and every stage downstream of it,
//!   `OneForAll` every stage. Temporary stages caught in a group restart are
//!   stopped, not restarted (OTP's "temporary bystander").
//! * Intensity ([`Intensity`]): more than `max_restarts` restarts within
//!   `period` (a sliding window) and the supervisor gives up: the pipeline
//!   ends with an error naming the stage. Default 3 in 5 s, as in Elixir and
//!   Broadway (Erlang's own default is 1 in 5 s).
//! * Backoff ([`Backoff`]): `min(max, base * 2^(n-1)) * (1 + jitter * r)`
//!   where `n` counts the restarts in the window and `r` in `[0, 1)` comes from
//!   the injected source (Akka's `RestartSettings` formula).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

mod backoff;

pub use backoff::{Backoff, Rng};

/// When a stage is restarted (OTP child restart type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always restarted, even after it finished normally.
    Permanent,
    /// Restarted only after a failure (error or panic). The default: a
    /// stage whose stream finished is done, one that crashed comes back.
    #[default]
    Transient,
    /// Never restarted.
    Temporary,
}

/// Which stages restart together (OTP supervisor strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only the failed stage.
    #[default]
    OneForOne,
    /// The failed stage and every stage downstream of it.
    RestForOne,
    /// Every stage.
    OneForAll,
}

/// Restart intensity: at most `max_restarts` within any `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 3,
            period: Duration::from_secs(5),
        }
    }
}

/// How a stage instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It finished its work.
    Normal,
    /// It was shut down by the pipeline.
    Shutdown,
    /// Its handler returned an error or panicked.
    Failed,
}

/// What the supervisor decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to restart; the stage stays stopped.
    Stop,
    /// Restart these stages (in start order) after `delay`; stop `stop`
    /// (temporary bystanders).
    Restart {
        /// Stages to restart, the failed one included.
        restart: Vec<usize>,
        /// Temporary stages brought down by the strategy, not restarted.
        stop: Vec<usize>,
        /// Backoff before the restart.
        delay: Duration,
    },
    /// Intensity exceeded: give up, the pipeline fails naming this stage.
    Escalate,
}

/// One supervised stage as the supervisor sees it.
#[derive(Debug, Clone)]
pub struct Child {
    /// Its restart type.
    pub restart: Restart,
    /// Indexes of the stages downstream of it (for `RestForOne`).
    pub downstream: Vec<usize>,
}

/// The supervisor state machine.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use demandflow::supervisor::*;
/// use tokio::time::Instant;
///
/// let children = vec![
///     Child { restart: Restart::Permanent, downstream: vec![1] },
///     Child { restart: Restart::Permanent, downstream: vec![] },
/// ];
/// let mut sup = Supervisor::new(children, Strategy::RestForOne, Intensity::default(), Backoff::none());
/// let now = Instant::now();
/// match sup.on_exit(0, ExitReason::Failed, now) {
///     Decision::Restart { restart, .. } => assert_eq!(restart, vec![0, 1]),
///     d => panic!("unexpected {d:?}"),
/// }
/// ```
pub struct Supervisor {
    children: Vec<Child>,
    strategy: Strategy,
    intensity: Intensity,
    backoff: Backoff,
    restarts: VecDeque<Instant>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("children", &self.children)
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .field("recent_restarts", &self.restarts.len())
            .finish()
    }
}

impl Supervisor {
    /// A supervisor over `children`, in start order.
    pub fn new(
        children: Vec<Child>,
        strategy: Strategy,
        intensity: Intensity,
        backoff: Backoff,
    ) -> Self {
        Supervisor {
            children,
            strategy,
            intensity,
            backoff,
            restarts: VecDeque::new(),
        }
    }

    /// Restarts counted in the window ending at `now`.
    pub fn recent_restarts(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.restarts.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&t) = self.restarts.front() {
            if now.saturating_duration_since(t) >= self.intensity.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
    }

    /// Decides what follows the exit of `child` at `now`.
    pub fn on_exit(&mut self, child: usize, reason: ExitReason, now: Instant) -> Decision {
        let Some(c) = self.children.get(child) else {
            return Decision::Stop;
        };
        let downstream = c.downstream.clone();
        let restart = match (c.restart, reason) {
            (_, ExitReason::Shutdown) => false,
            (Restart::Permanent, _) => true,
            (Restart::Transient, ExitReason::Failed) => true,
            (Restart::Transient, ExitReason::Normal) => false,
            (Restart::Temporary, _) => false,
        };
        if !restart {
            return Decision::Stop;
        }
        self.expire(now);
        self.restarts.push_back(now);
        if self.restarts.len() > self.intensity.max_restarts as usize {
            return Decision::Escalate;
        }
        let group: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![child],
            Strategy::RestForOne => {
                let mut g = vec![child];
                g.extend(downstream.into_iter().filter(|&d| d != child));
                g.sort_unstable();
                g.dedup();
                g
            }
            Strategy::OneForAll => (0..self.children.len()).collect(),
        };
        let (restart, stop): (Vec<usize>, Vec<usize>) = group
            .into_iter()
            .partition(|&i| i == child || self.children[i].restart != Restart::Temporary);
        let delay = self.backoff.delay(self.restarts.len() as u32);
        Decision::Restart {
            restart,
            stop,
            delay,
        }
    }
}

#[cfg(test)]
mod tests;
