//! Replays the committed fuzz inputs through the same checks the cargo-fuzz
//! targets run (`lifeline_sip::fuzzing`), so a seed or crash reproducer that
//! panics is a failing `cargo test` on stable, without libFuzzer.
//!
//! - `fuzz/seeds/<target>/`: the committed seed corpus; must not be empty.
//! - `fuzz/regressions/<target>/`: minimised crash reproducers; optional.
//!
//! The grown corpus (`fuzz/corpus/`, gitignored) is not replayed here.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every regular file in `dir`, sorted; empty if `dir` does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Run `check` on every seed and regression of `target`; fails if `target`
/// has no seeds, so an emptied or moved directory cannot pass silently.
fn replay(target: &str, check: fn(&[u8])) {
    let seeds_dir = fuzz_dir().join("seeds").join(target);
    let seeds = inputs(&seeds_dir);
    assert!(
        !seeds.is_empty(),
        "no seed files for fuzz target {target} in {}",
        seeds_dir.display()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    for path in seeds.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("readable fuzz input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target} panicked on {}",
            path.display()
        );
    }
    eprintln!(
        "{target}: replayed {} seeds, {} regressions",
        seeds.len(),
        regressions.len()
    );
}

#[test]
fn parse_message() {
    replay("parse_message", lifeline_sip::fuzzing::parse_message);
}

#[test]
fn stream_framing() {
    replay("stream_framing", lifeline_sip::fuzzing::stream_framing);
}

#[test]
fn uri() {
    replay("uri", lifeline_sip::fuzzing::uri);
}

#[test]
fn roundtrip() {
    replay("roundtrip", lifeline_sip::fuzzing::roundtrip);
}
