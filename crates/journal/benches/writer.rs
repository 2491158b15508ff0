//! The journal writer's cost: records/s and bytes/s through the writer
//! thread with group commit (write + fsync) to a temporary directory, and the
//! CPU cost of encoding and framing one call record.
//!
//! `cargo bench -p lifeline-journal --bench writer`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lifeline_journal::format::encode_frame;
use lifeline_journal::{testing, JournalOptions, JournalRecord, JournalWriter, WallTime};

/// A typical emergency call that failed over once and connected.
fn call(n: u64) -> JournalRecord {
    JournalRecord::Call(Box::new(testing::connected_call(
        WallTime(1_687_690_800_000_000 + n as i64),
        format!("a84b4c76e66710-{n}@pc33.origin.example"),
    )))
}

fn record_size() -> u64 {
    let mut buf = Vec::new();
    let _ = encode_frame(1, &call(1), &mut buf);
    buf.len() as u64
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_encode");
    g.throughput(Throughput::Elements(1));
    let rec = call(7);
    let mut buf = Vec::with_capacity(4096);
    g.bench_function("encode_frame_call_record", |b| {
        b.iter(|| {
            buf.clear();
            let _ = encode_frame(black_box(42), black_box(&rec), &mut buf);
            black_box(buf.len())
        })
    });
    g.finish();
}

fn bench_writer(c: &mut Criterion) {
    const BATCH: u64 = 10_000;
    let size = record_size();
    let tmp = std::env::temp_dir().join(format!("lifeline-journal-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let writer = JournalWriter::open(
        &tmp,
        JournalOptions {
            retention_bytes: Some(256 << 20),
            ..JournalOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", tmp.display()));
    let h = writer.handle();
    let records: Vec<JournalRecord> = (0..BATCH).map(call).collect();

    for (name, tp) in [
        ("records", Throughput::Elements(BATCH)),
        ("bytes", Throughput::Bytes(BATCH * size)),
    ] {
        let mut g = c.benchmark_group(format!("journal_writer_{name}"));
        g.throughput(tp);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(5));
        // Queue 10,000 call records (the records are cloned outside the
        // timing) and wait until all are fsynced: group commit of 512 records
        // or 20 ms, whichever first.
        g.bench_function("group_commit_10k_calls", |b| {
            b.iter_batched(
                || records.clone(),
                |batch| {
                    for r in batch {
                        while !h.record(r.clone()) {
                            std::thread::yield_now();
                        }
                    }
                    h.flush()
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
    let stats = writer.shutdown();
    eprintln!(
        "journal bench: {} records durable, {} bytes, {} segments, {} dropped, {} bytes per call record",
        stats.durable,
        stats.bytes,
        stats.segments_created,
        stats.dropped(),
        size
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

criterion_group!(benches, bench_encode, bench_writer);
criterion_main!(benches);
