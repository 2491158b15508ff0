//! Does the benchmark's per-message work N times, for instruction counting
//! under callgrind (see docs/PERFORMANCE.md):
//!
//! ```text
//! cargo build --release -p lifeline-sip --example count_parse
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.1 \
//!     target/release/examples/count_parse rsip emergency-invite 1
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.1001 \
//!     target/release/examples/count_parse rsip emergency-invite 1001
//! ```
//!
//! Instructions per message = (total(1001) - total(1)) / 1000, which cancels
//! process start-up and the first message's one-off costs.
//!
//! Usage: `count_parse <parser> <fixture> <iterations>` where `<parser>` is
//! `lifeline` (parse + header scan + transaction key), `lifeline-validate`
//! (the same plus `validate`), `rsip` (the same work through rsip), or one
//! step alone: `lifeline-parse`, `lifeline-key` (parse + key), `rsip-parse`;
//! and `<fixture>` is `emergency-invite` (the 999 form both parsers accept),
//! `emergency-invite-urn`, `ringing-180`, or a path to a message file.
//!
//! This binary has no counting allocator, so the instruction counts are not
//! inflated by one; `count_allocs` counts allocations for the same work.

use std::hint::black_box;
use std::process::ExitCode;

use bytes::Bytes;

#[path = "../benches/common/mod.rs"]
mod common;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [parser, fixture, iterations] = args.as_slice() else {
        eprintln!("usage: count_parse <parser> <fixture> <iterations>");
        return ExitCode::from(2);
    };
    let Some(bytes) = load(fixture) else {
        eprintln!("unknown fixture {fixture:?}");
        return ExitCode::from(2);
    };
    let Ok(n) = iterations.parse::<u64>() else {
        eprintln!("bad iteration count {iterations:?}");
        return ExitCode::from(2);
    };
    let buf = Bytes::from_static(bytes);
    let mut sum = 0usize;
    for _ in 0..n {
        sum = sum.wrapping_add(match parser.as_str() {
            "lifeline" => common::lifeline(black_box(&buf)),
            "lifeline-validate" => common::lifeline_validate(black_box(&buf)),
            "lifeline-parse" => common::lifeline_parse(black_box(&buf)),
            "lifeline-key" => common::lifeline_key(black_box(&buf)),
            "rsip" => common::rsip(black_box(bytes)),
            "rsip-parse" => common::rsip_parse(black_box(bytes)),
            other => {
                eprintln!("unknown parser {other:?}");
                return ExitCode::from(2);
            }
        });
    }
    println!("{parser} {fixture} x{n}: checksum {sum}");
    ExitCode::SUCCESS
}

/// A named fixture, or a file (leaked so it is `'static` like the fixtures).
fn load(fixture: &str) -> Option<&'static [u8]> {
    common::fixture(fixture).or_else(|| {
        let data = std::fs::read(fixture).ok()?;
        Some(Box::leak(data.into_boxed_slice()))
    })
}
