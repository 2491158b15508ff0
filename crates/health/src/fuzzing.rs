//! An operation-sequence check shared by the `health` cargo-fuzz target and
//! the test that replays its corpus. Bytes are decoded into operations
//! (advance time, answer or lose a probe, report live outcomes, drain,
//! overload) applied to a [`Health`]; after each one the invariants are
//! checked. It panics only when an invariant breaks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lifeline_sip::{Message, MessageWriter};

use crate::{
    AliveCodes, EventKind, Health, Local, Outcome, ProbeConfig, State, TransportError, TrunkId,
};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

/// Run the operations encoded in `data`.
pub fn run(data: &[u8]) {
    let mut input = Bytes(data);
    let Some(setup) = input.byte() else {
        return;
    };
    let n = usize::from(setup % 4) + 1;
    let t0 = Instant::now();
    let mut now = t0;
    let mut h = Health::new(
        Local {
            via: "SIP/2.0/UDP 192.0.2.1:5060".into(),
            from_uri: "sip:lifeline@192.0.2.1".into(),
        },
        u64::from(setup),
    );
    let mut ids = Vec::new();
    for i in 0..n {
        let b = input.byte().unwrap_or(0);
        let cfg = ProbeConfig {
            interval: Duration::from_millis(50 * (u64::from(b % 5) + 1)),
            timeout: Duration::from_millis(50 * (u64::from(b / 5 % 7) + 1)),
            down_after: u32::from(b / 35 % 3) + 1,
            up_after: u32::from(b / 105 % 3) + 1,
            alive: if b & 1 == 0 {
                AliveCodes::Any
            } else {
                AliveCodes::NotServerError
            },
            enabled: b != 255,
            ..ProbeConfig::default()
        };
        let id = h
            .add_trunk(now, &format!("t{i}"), &format!("sip:t{i}.example.net"), cfg)
            .expect("valid trunk");
        ids.push(id);
    }
    let mut known: Vec<State> = vec![State::Up; n];
    let mut pending: VecDeque<Message> = VecDeque::new();

    while let Some(op) = input.byte() {
        let arg = input.byte().unwrap_or(0);
        let trunk = ids[usize::from(arg) % n];
        match op % 10 {
            0 => {
                now += Duration::from_millis(u64::from(arg) * 3);
                h.handle_timeout(now);
            }
            1 | 2 => {
                if let Some(probe) = pending.pop_front() {
                    let code = [200, 404, 503, 408, 100, 486][usize::from(arg) % 6];
                    let resp = MessageWriter::response_to(&probe, code, "x", Some(b"t"))
                        .expect("response")
                        .finish();
                    let resp = Message::parse(resp).expect("parses");
                    assert!(
                        h.handle_response(now, &resp),
                        "own probe response recognised"
                    );
                }
            }
            3 => {
                pending.pop_front();
            }
            4 => h.report(
                now,
                trunk,
                Outcome::TransportError(TransportError::PortUnreachable),
            ),
            5 => {
                let outcome = match arg % 4 {
                    0 => Outcome::Answered,
                    1 => Outcome::Timeout,
                    2 => Outcome::ProgressTimeout,
                    _ => Outcome::FailureResponse(503),
                };
                h.report(now, trunk, outcome);
            }
            6 => h.drain(now, trunk),
            7 => h.undrain(now, trunk),
            8 => h.set_overloaded(arg & 1 == 1),
            _ => {
                // A response that is not a probe's, or a forged probe branch.
                let text = format!(
                    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-lh{}.{}.{:08x}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                    arg % 5,
                    arg,
                    u32::from(arg) * 7919
                );
                let before: Vec<_> = h
                    .trunks()
                    .map(|t| (t.state, t.consecutive_successes))
                    .collect();
                if let Ok(m) = Message::parse(bytes::Bytes::from(text)) {
                    h.handle_response(now, &m);
                }
                let after: Vec<_> = h
                    .trunks()
                    .map(|t| (t.state, t.consecutive_successes))
                    .collect();
                assert_eq!(before, after, "a forged probe response is not evidence");
            }
        }
        while let Some(tx) = h.poll_transmit() {
            let m = Message::parse(tx.payload).expect("probes parse");
            lifeline_sip::validate(&m).expect("probes validate");
            pending.push_back(m);
            if pending.len() > 64 {
                pending.pop_front();
            }
        }
        check(&mut h, &ids, &mut known, now);
    }
}

fn check(h: &mut Health, ids: &[TrunkId], known: &mut [State], now: Instant) {
    // Events describe exactly the state changes.
    while let Some(ev) = h.poll_event() {
        assert!(ev.at <= now);
        if let EventKind::State { from, to, .. } = ev.kind {
            let k = &mut known[ev.trunk.index()];
            assert_eq!(*k, from, "event starts from the known state");
            assert_ne!(from, to);
            *k = to;
        }
    }
    for t in h.trunks() {
        assert_eq!(known[t.id.index()], t.state, "every change was reported");
    }
    // Selection: never a drained trunk; never a Down one while an Up one exists.
    let any_ready = h.trunks().any(|t| t.ready());
    let first = h.select(ids, &[], false).next();
    match first {
        Some(id) => {
            let t = h.trunk(id).expect("selected trunk exists");
            assert!(t.ready(), "ordinary calls only get ready trunks");
        }
        None => assert!(!any_ready, "a ready trunk exists but none was selected"),
    }
    let emergency: Vec<_> = h.select(ids, &[], true).collect();
    let not_drained = h.trunks().filter(|t| !t.drained).count();
    assert_eq!(
        emergency.len(),
        not_drained,
        "emergency calls may try every non-drained trunk once"
    );
    if let Some(&e) = emergency.first() {
        if any_ready {
            assert!(h.trunk(e).is_some_and(|t| t.ready()));
        }
    }
    for t in h.trunks() {
        assert!(t.probes_outstanding <= 16, "outstanding probes bounded");
    }
    if let Some(next) = h.poll_timeout() {
        let _ = next;
    }
}
