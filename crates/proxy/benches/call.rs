//! One complete call through the pure proxy core: INVITE (a 2.4 KB emergency
//! INVITE with SDP and PIDF-LO), 100, 180, 200, ACK, BYE, 200 — every message
//! parsed, validated, matched to its transaction, edited and queued for
//! sending, as the gateway's event loop would drive it.
//!
//! The proxy is deterministic for a given seed and `now`, so the trunk's
//! responses and the caller's in-dialog requests are recorded once and
//! replayed; each iteration starts from a fresh proxy (built outside the
//! timed part).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod common;
use common::{complete_call, proxy, record};

fn call(c: &mut Criterion) {
    let t0 = Instant::now();
    let script = record(t0);
    let mut g = c.benchmark_group("proxy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("complete_call", |b| {
        b.iter_batched(
            || proxy(t0),
            |mut p| {
                black_box(complete_call(&mut p, t0, &script));
                p
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, call);
criterion_main!(benches);
