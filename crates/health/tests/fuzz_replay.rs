//! Replays the `health` fuzz target's committed seeds and regressions, so
//! anything the fuzzer found stays fixed under `cargo test`.

use std::path::Path;

#[test]
fn replay_health_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut n = 0;
    for dir in ["seeds/health", "regressions/health"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            lifeline_health::fuzzing::run(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no seeds for the health fuzz target");
}

#[test]
fn random_operation_sequences() {
    // A deterministic sweep in plain tests, besides the fuzzer.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..300 {
        let data: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        lifeline_health::fuzzing::run(&data);
    }
}
