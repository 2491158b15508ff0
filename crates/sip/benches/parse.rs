//! Parse-and-key benchmark: lifeline-sip against rsip 0.4 on the same bytes.
//!
//! Per message: parse, scan every header (name and value), extract the
//! transaction key (top Via branch, CSeq, Call-ID, From tag, To tag); see
//! `common/mod.rs`. `lifeline/validate` also runs `lifeline_sip::validate`.
//! The input is a `Bytes::from_static` / `&'static [u8]`, so no input copying
//! is measured.
//!
//! Run (short runs; the machine is shared):
//! `cargo bench -p lifeline-sip --bench parse -- --warm-up-time 1 --measurement-time 5`
//! Results and instruction counts: docs/PERFORMANCE.md.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

mod common;

fn bench_fixture(c: &mut Criterion, group: &str, bytes: &'static [u8]) {
    let buf = Bytes::from_static(bytes);
    let mut g = c.benchmark_group(group);
    g.bench_function("lifeline", |b| b.iter(|| common::lifeline(black_box(&buf))));
    g.bench_function("lifeline/validate", |b| {
        b.iter(|| common::lifeline_validate(black_box(&buf)))
    });
    g.bench_function("rsip", |b| b.iter(|| common::rsip(black_box(bytes))));
    // Parse alone, to show where the time goes.
    g.bench_function("lifeline/parse", |b| {
        b.iter(|| common::lifeline_parse(black_box(&buf)))
    });
    g.bench_function("rsip/parse", |b| {
        b.iter(|| common::rsip_parse(black_box(bytes)))
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    bench_fixture(c, "emergency-invite", common::EMERGENCY_INVITE);
    bench_fixture(c, "ringing-180", common::RINGING_180);
    // The urn:service:sos form, which rsip rejects: lifeline only.
    let urn = Bytes::from_static(common::EMERGENCY_INVITE_URN);
    let mut g = c.benchmark_group("emergency-invite-urn");
    g.bench_function("lifeline", |b| b.iter(|| common::lifeline(black_box(&urn))));
    g.bench_function("lifeline/validate", |b| {
        b.iter(|| common::lifeline_validate(black_box(&urn)))
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
