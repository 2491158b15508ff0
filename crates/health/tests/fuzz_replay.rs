//! Replays the `health` fuzz target's committed seeds and regressions, so
//! anything the fuzzer found stays fixed under `cargo test`.

use std::path::Path;

use lifeline_health::fuzzing::{self, Coverage};

#[test]
fn replay_health_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let n = fuzzing::replay_corpus(&root, "health", fuzzing::run);
    assert!(n > 0, "no seeds for the health fuzz target");
}

#[test]
fn random_operation_sequences() {
    // A deterministic sweep in plain tests, besides the fuzzer.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut total = Coverage::default();
    for _ in 0..300 {
        let data = fuzzing::pseudo_random_bytes(&mut x, 400);
        let c = fuzzing::run_with_coverage(&data);
        total.canaries_started += c.canaries_started;
        total.canaries_passed += c.canaries_passed;
        total.canaries_failed += c.canaries_failed;
        total.selections_with_canary += c.selections_with_canary;
        total.estimates += c.estimates;
        total.saturated += c.saturated;
        total.decayed += c.decayed;
    }
    // The invariants on canaries and progress were checked, not skipped.
    println!("{total:?}");
    assert!(total.canaries_started >= 10, "{total:?}");
    assert!(total.canaries_passed >= 5, "{total:?}");
    assert!(total.canaries_failed >= 1, "{total:?}");
    assert!(total.selections_with_canary >= 100, "{total:?}");
    assert!(total.estimates >= 1_000, "{total:?}");
    assert!(total.saturated >= 10, "{total:?}");
    assert!(total.decayed >= 100, "{total:?}");
}
