//! Ports of OTP `supervisor_SUITE` cases to the pure state machine
//! (CONFORMANCE.md §3.2). Timing is passed in, so no clock is involved.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn chain(types: &[Restart], strategy: Strategy, intensity: Intensity) -> Supervisor {
    let n = types.len();
    let children = types
        .iter()
        .enumerate()
        .map(|(i, &restart)| Child {
            restart,
            downstream: (i + 1..n).collect(),
        })
        .collect();
    Supervisor::new(children, strategy, intensity, Backoff::none())
}

fn restarted(d: Decision) -> Vec<usize> {
    match d {
        Decision::Restart { restart, .. } => restart,
        other => panic!("expected a restart, got {other:?}"),
    }
}

const P: Restart = Restart::Permanent;
const T: Restart = Restart::Transient;
const TMP: Restart = Restart::Temporary;

#[test]
fn normal_termination_by_restart_type() {
    let now = Instant::now();
    let mut s = chain(&[P, T, TMP], Strategy::OneForOne, Intensity::default());
    assert_eq!(restarted(s.on_exit(0, ExitReason::Normal, now)), vec![0]);
    assert_eq!(s.on_exit(1, ExitReason::Normal, now), Decision::Stop);
    assert_eq!(s.on_exit(2, ExitReason::Normal, now), Decision::Stop);
}

#[test]
fn shutdown_termination_never_restarts() {
    let now = Instant::now();
    let mut s = chain(&[P, T, TMP], Strategy::OneForOne, Intensity::default());
    for i in 0..3 {
        assert_eq!(s.on_exit(i, ExitReason::Shutdown, now), Decision::Stop);
    }
}

#[test]
fn abnormal_termination_by_restart_type() {
    let now = Instant::now();
    let mut s = chain(&[P, T, TMP], Strategy::OneForOne, Intensity::default());
    assert_eq!(restarted(s.on_exit(0, ExitReason::Failed, now)), vec![0]);
    assert_eq!(restarted(s.on_exit(1, ExitReason::Failed, now)), vec![1]);
    assert_eq!(s.on_exit(2, ExitReason::Failed, now), Decision::Stop);
}

#[test]
fn restart_one_for_one() {
    let mut s = chain(&[P, P, P], Strategy::OneForOne, Intensity::default());
    assert_eq!(
        restarted(s.on_exit(1, ExitReason::Failed, Instant::now())),
        vec![1]
    );
}

#[test]
fn restart_rest_for_one() {
    let mut s = chain(&[P, P, P], Strategy::RestForOne, Intensity::default());
    assert_eq!(
        restarted(s.on_exit(1, ExitReason::Failed, Instant::now())),
        vec![1, 2]
    );
}

#[test]
fn restart_one_for_all() {
    let mut s = chain(&[P, P, P], Strategy::OneForAll, Intensity::default());
    assert_eq!(
        restarted(s.on_exit(2, ExitReason::Failed, Instant::now())),
        vec![0, 1, 2]
    );
}

#[test]
fn temporary_bystander_is_stopped_not_restarted() {
    let mut s = chain(&[P, TMP, P], Strategy::OneForAll, Intensity::default());
    match s.on_exit(0, ExitReason::Failed, Instant::now()) {
        Decision::Restart { restart, stop, .. } => {
            assert_eq!(restart, vec![0, 2]);
            assert_eq!(stop, vec![1]);
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn one_for_one_escalation() {
    // OTP: {one_for_one, 4, 3600} with a child that keeps failing.
    let intensity = Intensity {
        max_restarts: 4,
        period: Duration::from_secs(3600),
    };
    let mut s = chain(&[P, P], Strategy::OneForOne, intensity);
    let t0 = Instant::now();
    for i in 0..4 {
        restarted(s.on_exit(0, ExitReason::Failed, t0 + Duration::from_secs(i)));
    }
    assert_eq!(
        s.on_exit(0, ExitReason::Failed, t0 + Duration::from_secs(5)),
        Decision::Escalate
    );
}

#[test]
fn rest_for_one_escalation() {
    let mut s = chain(&[P, P], Strategy::RestForOne, Intensity::default());
    let t0 = Instant::now();
    for _ in 0..3 {
        restarted(s.on_exit(0, ExitReason::Failed, t0));
    }
    assert_eq!(s.on_exit(1, ExitReason::Failed, t0), Decision::Escalate);
}

#[test]
fn one_for_all_escalation() {
    let mut s = chain(&[P, P], Strategy::OneForAll, Intensity::default());
    let t0 = Instant::now();
    for _ in 0..3 {
        restarted(s.on_exit(1, ExitReason::Failed, t0));
    }
    assert_eq!(s.on_exit(0, ExitReason::Failed, t0), Decision::Escalate);
}

#[test]
fn multiple_restarts_sliding_window() {
    // OTP multiple_restarts: intensity 1 per 1 s, killed four times 2.1 s apart.
    let intensity = Intensity {
        max_restarts: 1,
        period: Duration::from_secs(1),
    };
    let mut s = chain(&[P], Strategy::OneForOne, intensity);
    let t0 = Instant::now();
    for i in 0..4u64 {
        let at = t0 + Duration::from_millis(2100 * i);
        assert_eq!(restarted(s.on_exit(0, ExitReason::Failed, at)), vec![0]);
    }
    // Two within the window is one too many.
    let at = t0 + Duration::from_millis(2100 * 3 + 500);
    assert_eq!(s.on_exit(0, ExitReason::Failed, at), Decision::Escalate);
}

#[test]
fn stops_do_not_count_toward_intensity() {
    let intensity = Intensity {
        max_restarts: 1,
        period: Duration::from_secs(60),
    };
    let mut s = chain(&[TMP, P], Strategy::OneForOne, intensity);
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(s.on_exit(0, ExitReason::Failed, t0), Decision::Stop);
    }
    assert_eq!(restarted(s.on_exit(1, ExitReason::Failed, t0)), vec![1]);
}

#[test]
fn backoff_delay_follows_restarts_in_window() {
    let children = vec![Child {
        restart: P,
        downstream: vec![],
    }];
    let backoff =
        Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)).with_jitter(0.0);
    let intensity = Intensity {
        max_restarts: 10,
        period: Duration::from_secs(5),
    };
    let mut s = Supervisor::new(children, Strategy::OneForOne, intensity, backoff);
    let t0 = Instant::now();
    let delays: Vec<Duration> = (0..3)
        .map(|_| match s.on_exit(0, ExitReason::Failed, t0) {
            Decision::Restart { delay, .. } => delay,
            d => panic!("{d:?}"),
        })
        .collect();
    assert_eq!(
        delays,
        vec![
            Duration::from_millis(10),
            Duration::from_millis(20),
            Duration::from_millis(40)
        ]
    );
    // After a quiet period the window empties and the backoff resets.
    match s.on_exit(0, ExitReason::Failed, t0 + Duration::from_secs(6)) {
        Decision::Restart { delay, .. } => assert_eq!(delay, Duration::from_millis(10)),
        d => panic!("{d:?}"),
    }
}
