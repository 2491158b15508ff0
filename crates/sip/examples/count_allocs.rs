//! Counts heap allocations per message for the benchmark's work (see
//! docs/PERFORMANCE.md). A counting global allocator wraps the system
//! allocator; it lives in this binary, not in `count_parse`, so that the
//! instruction counts taken from `count_parse` carry no counting overhead.
//!
//! Usage: `count_allocs <parser> <fixture> [iterations]`
//! (parser and fixture names as for `count_parse`). One warm-up message is not counted;
//! the output is allocations (and bytes) per message over the next
//! `iterations` (default 1000).

// `GlobalAlloc` is an unsafe trait; this is the only unsafe code, and it only
// forwards to `System` after bumping counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

#[path = "../benches/common/mod.rs"]
mod common;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc may move the block: count it as an allocation.
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (parser, fixture, n) = match args.as_slice() {
        [p, f] => (p, f, 1000),
        [p, f, n] => match n.parse::<u64>() {
            Ok(n) if n > 0 => (p, f, n),
            _ => {
                eprintln!("bad iteration count {n:?}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: count_allocs <parser> <fixture> [iterations]");
            return ExitCode::from(2);
        }
    };
    let Some(bytes) = common::fixture(fixture) else {
        eprintln!("unknown fixture {fixture:?}");
        return ExitCode::from(2);
    };
    let buf = Bytes::from_static(bytes);
    let work = |buf: &Bytes| -> Option<usize> {
        Some(match parser.as_str() {
            "lifeline" => common::lifeline(black_box(buf)),
            "lifeline-validate" => common::lifeline_validate(black_box(buf)),
            "lifeline-parse" => common::lifeline_parse(black_box(buf)),
            "lifeline-key" => common::lifeline_key(black_box(buf)),
            "rsip" => common::rsip(black_box(bytes)),
            "rsip-parse" => common::rsip_parse(black_box(bytes)),
            _ => return None,
        })
    };
    if work(&buf).is_none() {
        eprintln!("unknown parser {parser:?}");
        return ExitCode::from(2);
    }
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let mut sum = 0usize;
    for _ in 0..n {
        sum = sum.wrapping_add(work(&buf).unwrap_or_default());
    }
    let (allocs, bytes) = (ALLOCS.load(Relaxed) - a0, BYTES.load(Relaxed) - b0);
    println!(
        "{parser} {fixture}: {:.2} allocations/message, {:.0} bytes/message (x{n}, checksum {sum})",
        allocs as f64 / n as f64,
        bytes as f64 / n as f64
    );
    ExitCode::SUCCESS
}
