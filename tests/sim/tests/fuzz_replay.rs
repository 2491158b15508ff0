//! Replays the `proxy` fuzz target's committed seeds and regressions, and a
//! deterministic sweep of random operation sequences.

use std::path::Path;

use lifeline_health::fuzzing::{pseudo_random_bytes, replay_corpus};

#[test]
fn replay_proxy_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let n = replay_corpus(&root, "proxy", lifeline_sim::fuzzing::run);
    assert!(n > 0, "no seeds for the proxy fuzz target");
}

#[test]
fn random_operation_sequences() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20 {
        let data = pseudo_random_bytes(&mut x, 120);
        lifeline_sim::fuzzing::run(&data);
    }
}

/// A longer sweep for local runs: `SWEEP=5000 cargo test --release -p lifeline-sim --test fuzz_replay -- --ignored`.
#[test]
#[ignore = "long; run by hand"]
fn long_sweep() {
    let n: u64 = std::env::var("SWEEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for seed in 0..n {
        let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
        let len = 40 + (seed % 200) as usize;
        let data = pseudo_random_bytes(&mut x, len);
        if std::panic::catch_unwind(|| lifeline_sim::fuzzing::run(&data)).is_err() {
            let path = std::env::temp_dir().join(format!("proxy-sweep-{seed}"));
            std::fs::write(&path, &data).unwrap();
            panic!("seed {seed} failed; input written to {}", path.display());
        }
    }
}
