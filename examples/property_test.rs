//! A property test of a stage of your own, with the testkit.
//!
//! ```text
//! cargo run --example property_test --features testkit
//! ```
//!
//! The stage, `DedupRuns`, drops an event equal to the one before it (like
//! `uniq`): a sensor that repeats its reading only reports changes. Its
//! state, the last event, must carry over from one batch to the next, and
//! where batches begin and end depends on demand. So the test runs it under
//! random demand limits and a downstream of random speed, and checks that
//! the output is always what `Vec::dedup` gives; a checker on the stage's
//! output also fails the test if backpressure breaks (more delivered than
//! asked, a buffer over its bound, a demand forgotten).
//!
//! In your own crate, put the `proptest!` block in a file under `tests/`
//! with `#[test]` on the function (see the README), and add to Cargo.toml:
//!
//! ```toml
//! [dev-dependencies]
//! demandflow = { version = "0.1", features = ["testkit"] }
//! proptest = "1"
//! ```

use demandflow::testkit::{self, strategies};
use demandflow::{source, BoxError, Context, Emitter, Processor, Subscribe};
use proptest::prelude::*;

/// Drops every event equal to the one just before it.
#[derive(Debug, Clone, Default)]
struct DedupRuns<T> {
    /// The last event seen, across batches.
    last: Option<T>,
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Processor<T, T> for DedupRuns<T> {
    async fn process(
        &mut self,
        events: &[T],
        out: &mut Emitter<T>,
        _cx: &Context,
    ) -> Result<(), BoxError> {
        for e in events {
            if self.last.as_ref() != Some(e) {
                out.emit(e.clone());
                self.last = Some(e.clone());
            }
        }
        Ok(())
    }
}

proptest! {
    // In tests/, keep the default persistence: failing inputs are saved
    // in proptest-regressions/ and tried first next time.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // In a file under tests/: `#[test]` on the next line.
    fn dedup_runs_matches_vec_dedup(
        // Few distinct values, so that repeats are common.
        input in prop::collection::vec(0..3u8, 0..200),
        // Demand limits for the stage's input and output subscriptions.
        into_stage in strategies::subscribe_options(16),
        out_of_stage in strategies::subscribe_options(16),
        // How long the stage after it takes per batch (virtual time).
        speeds in strategies::consumer_speeds(5, 4),
    ) {
        let got = testkit::run(|p| {
            let readings = p.producer("readings", source::iter(input.clone()));
            let changes = p
                .processor("changes", DedupRuns::default())
                .subscribe(&readings, into_stage);
            // The checker watches the stage's output subscription.
            let (checked, _checker) = testkit::checked(p, &changes, out_of_stage);
            p.processor("slow", strategies::slow(speeds))
                .subscribe(&checked, Subscribe::default())
        });
        let mut expected = input;
        expected.dedup();
        prop_assert_eq!(got, expected);
    }
}

fn main() {
    // Panics with the smallest failing input if the property does not hold
    // (the runner shrinks it first).
    dedup_runs_matches_vec_dedup();
    println!("dedup_runs_matches_vec_dedup: 64 random cases passed");
}
