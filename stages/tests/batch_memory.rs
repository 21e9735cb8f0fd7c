//! The batch machinery's memory, counted in requests: `demandflow bench
//! --shape llm-batch` runs the reader -> request stage -> writer pipeline
//! of `demandflow batch` against its embedded mock (fast settings, not
//! timed) at two sizes, and the peak of requests held (read and not yet
//! written) must stay under a bound set by the configuration alone, the
//! same at 500 and at 5,000 requests.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_demandflow");

/// Generous: a loaded 2-core machine runs 5,000 requests in seconds.
const PATIENCE: Duration = Duration::from_secs(300);

const CONCURRENCY: u64 = 8;

/// The writer's max_demand in `demandflow batch` (the engine's default).
const WRITE_MAX_DEMAND: u64 = demandflow::DEFAULT_MAX_DEMAND as u64;

/// The bench's run at `requests`, as its `--json` line's only run.
fn bench(requests: u64) -> Value {
    let mut child = Command::new(BIN)
        .args(["bench", "--shape", "llm-batch", "--requests"])
        .arg(requests.to_string())
        .args([
            "--mock-rpm",
            "6000000",
            "--mock-tpm",
            "600000000",
            "--tokens",
            "2",
            "--first-event-delay-ms",
            "0",
            "--pacing",
            "0",
            "--client",
            "real",
            "--json",
            "--concurrency",
        ])
        .arg(CONCURRENCY.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("bench --requests {requests} did not end within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}: {err}");
    let json: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        json["peak_buffered_counts"]
            .as_str()
            .is_some_and(|s| s.contains("not yet written")),
        "{json}"
    );
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{json}");
    runs[0].clone()
}

#[test]
fn peak_buffered_is_bounded_by_the_configuration_not_the_input() {
    // Whatever the input: the request stage holds (asked for, queued, in
    // flight) at most the concurrency, one call of it emits at most as
    // many results, and the writer takes at most its max_demand.
    let bound = 2 * CONCURRENCY + WRITE_MAX_DEMAND;
    for requests in [500, 5_000] {
        let run = bench(requests);
        let get = |key: &str| {
            run[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{key} in {run}"))
        };
        assert_eq!(get("completed"), requests, "{run}");
        assert_eq!(get("buffer_bound"), bound, "{run}");
        let peak = get("peak_buffered");
        // Every request in flight is held, so the count cannot miss them.
        assert!(peak >= get("peak_in_flight"), "{run}");
        assert!(
            (1..=bound).contains(&peak),
            "{requests} requests: peak buffered {peak}, bound {bound}: {run}"
        );
    }
}
