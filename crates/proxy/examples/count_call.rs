//! Runs the `call` benchmark's complete call N times, each on a fresh proxy,
//! for instruction counting under callgrind (see docs/PERFORMANCE.md,
//! "Proxy core"):
//!
//! ```text
//! cargo build --release -p lifeline-proxy --example count_call
//! for mode in call setup; do for n in 1 1001; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode.$n \
//!       target/release/examples/count_call $mode $n
//! done; done
//! ```
//!
//! `call`: build a proxy, run the call, drop the proxy; `setup`: build and
//! drop the proxy only. Instructions per call =
//! ((call(1001) - call(1)) - (setup(1001) - setup(1))) / 1000, which cancels
//! process start-up, the recording of the call and building the proxies.
//! Allocations per call the same way with `valgrind --tool=dhat`
//! ("Total: ... in N blocks").

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, calls] = args.as_slice() else {
        eprintln!("usage: count_call <call|setup> <calls>");
        return ExitCode::from(2);
    };
    let Ok(n) = calls.parse::<u64>() else {
        eprintln!("bad call count {calls:?}");
        return ExitCode::from(2);
    };
    let run_call = match mode.as_str() {
        "call" => true,
        "setup" => false,
        other => {
            eprintln!("unknown mode {other:?}");
            return ExitCode::from(2);
        }
    };
    let t0 = Instant::now();
    let script = common::record(t0);
    let mut sent = 0usize;
    for _ in 0..n {
        let mut p = black_box(common::proxy(t0));
        if run_call {
            sent += common::complete_call(&mut p, t0, &script);
        }
        drop(black_box(p));
    }
    println!("{mode} x{n}: {sent} messages sent");
    ExitCode::SUCCESS
}
