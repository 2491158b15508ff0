//! What probing costs: 1,000 trunks probed every 100 ms.
//!
//! - `send_1000`: one round of probes (timers fire, 1,000 OPTIONS built and
//!   queued) — the work the health checker does per 100 ms.
//! - `answer_1000`: matching 1,000 parsed responses to their probes and
//!   updating state and RTT.
//! - `select`: choosing the trunk for a call on a 3-trunk route.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lifeline_health::{Health, Local, ProbeConfig, TrunkId};
use lifeline_sip::{Message, MessageWriter};

const TRUNKS: usize = 1000;

fn health(now: Instant) -> (Health, Vec<TrunkId>) {
    let local = Local {
        via: "SIP/2.0/UDP 192.0.2.1:5060".into(),
        from_uri: "sip:lifeline@192.0.2.1".into(),
    };
    let mut h = Health::new(local, 1);
    let cfg = ProbeConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        ..ProbeConfig::default()
    };
    let ids = (0..TRUNKS)
        .map(|i| {
            h.add_trunk(
                now,
                &format!("trunk{i}"),
                &format!("sip:10.0.{}.{}:5060", i / 250, i % 250),
                cfg.clone(),
            )
            .unwrap()
        })
        .collect();
    (h, ids)
}

fn probes(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("health");
    g.throughput(Throughput::Elements(TRUNKS as u64));
    g.bench_function("send_1000", |b| {
        b.iter_batched(
            || health(t0),
            |(mut h, _)| {
                h.handle_timeout(t0);
                let mut n = 0;
                while let Some(tx) = h.poll_transmit() {
                    n += black_box(tx.payload.len());
                }
                (h, n)
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("answer_1000", |b| {
        b.iter_batched(
            || {
                let (mut h, _) = health(t0);
                h.handle_timeout(t0);
                let mut responses = Vec::with_capacity(TRUNKS);
                while let Some(tx) = h.poll_transmit() {
                    let probe = Message::parse(tx.payload).unwrap();
                    let resp = MessageWriter::response_to(&probe, 200, "OK", Some(b"x"))
                        .unwrap()
                        .finish();
                    responses.push(Message::parse(resp).unwrap());
                }
                (h, responses)
            },
            |(mut h, responses)| {
                let now = t0 + Duration::from_millis(5);
                for r in &responses {
                    black_box(h.handle_response(now, r));
                }
                h
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let (h, ids) = health(t0);
    let route = [ids[0], ids[1], ids[2]];
    c.bench_function("health/select", |b| {
        b.iter(|| black_box(h.select(black_box(&route), &[], true).next()))
    });
}

criterion_group!(benches, probes);
criterion_main!(benches);
