//! An operation-sequence check of the whole proxy core, shared by the `proxy`
//! cargo-fuzz target and the test that replays its corpus.
//!
//! Bytes decode into operations on a [`Sim`]: place calls (emergency or
//! not), cancel, retransmit, hang up, change a trunk's behaviour or link,
//! lose packets, inject garbage or forged responses, and let time pass
//! (`op % 12`); op bytes from `0xF0` forge an ICMP error about a trunk
//! (once, or after every send to it from then on) or send a copy of a real
//! response from an address that is no one's peer.
//! Invariants, checked throughout:
//! - nothing panics;
//! - a response from an address that is no one's peer changes nothing: it
//!   is dropped, and nothing is sent because of it;
//! - every INVITE server transaction sends at most one final non-2xx response
//!   to the caller, and never a non-2xx final after a 2xx;
//! - once inputs stop and time runs on, every transaction and every
//!   unanswered call is gone (memory is bounded by the live calls).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use lifeline_proxy::{
    Peer, ProbeConfig, ProxyConfig, RescueRinging, RouteConfig, RouteMatch, TrunkConfig, TrunkShare,
};

use crate::{ms, Link, Sim, TrunkScript, ATTACKER, GATEWAY};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

fn script(b: u8) -> TrunkScript {
    match b % 8 {
        0 => TrunkScript::answering(),
        1 => TrunkScript::rejecting(503),
        2 => TrunkScript::rejecting(486),
        3 => TrunkScript::stalling(),
        4 => TrunkScript::silent_to_calls(),
        5 => TrunkScript {
            invite: vec![(ms(300), 180), (ms(400), 200)],
            answer_options: true,
        },
        6 => TrunkScript {
            invite: vec![(ms(0), 183), (ms(5), 200), (ms(6), 200)],
            answer_options: false,
        },
        _ => TrunkScript {
            invite: vec![(ms(1), 100), (ms(2), 408)],
            answer_options: true,
        },
    }
}

fn config() -> ProxyConfig {
    let trunk = |name: &str, a: &str| TrunkConfig {
        // Slower probes than the default keep long quiescent runs cheap.
        probe: ProbeConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            ..ProbeConfig::default()
        },
        ..TrunkConfig::new(name, Peer::udp(a.parse().expect("address")))
    };
    let mut primary = trunk("primary", "127.0.30.1:5060");
    // Small limits, so overflow and the emergency override are exercised.
    primary.max_calls = Some(3);
    primary.max_cps = Some(4);
    let mut emergency = RouteConfig::new(
        "emergency",
        RouteMatch::Emergency,
        &["primary", "backup", "third"],
    );
    emergency.hedge_after = Some(Duration::from_millis(150));
    let mut default = RouteConfig::new("default", RouteMatch::Any, &["backup", "primary"]);
    default.rescue_ringing = RescueRinging::All;
    default.shares = vec![
        TrunkShare {
            priority: 1,
            weight: 2,
        },
        TrunkShare {
            priority: 1,
            weight: 1,
        },
    ];
    ProxyConfig::new(
        GATEWAY.parse().expect("address"),
        vec![
            primary,
            trunk("backup", "127.0.30.2:5060"),
            trunk("third", "127.0.30.3:5060"),
        ],
        vec![emergency, default],
    )
}

const URIS: [&str; 5] = [
    "urn:service:sos",
    "sip:999@127.0.10.1",
    "tel:112",
    "sip:+441632960000@127.0.10.1",
    "http://x",
];
const TRUNKS: [&str; 3] = ["primary", "backup", "third"];

/// Run the operations encoded in `data`.
pub fn run(data: &[u8]) {
    let s = play(data);
    let st = s.proxy.stats();
    assert_eq!(
        st.server_transactions,
        0,
        "server transactions terminate: {:#?}",
        s.proxy.describe_transactions()
    );
    assert_eq!(st.client_transactions, 0, "client transactions terminate");
    assert_eq!(st.calls, 0, "calls terminate");
    // With no call in progress, what counts against trunk limits is exactly
    // the answered calls' dialogs.
    let load: u32 = s
        .proxy
        .health()
        .trunks()
        .map(|t| s.proxy.trunk_calls(t.id))
        .sum();
    assert_eq!(load as usize, st.dialogs, "trunk load = dialogs");
}

/// Play the operations and let the simulation quiesce; returns it for
/// inspection (the finals invariant is checked throughout).
pub fn play(data: &[u8]) -> Sim {
    let mut input = Input(data);
    let mut s = Sim::new(config(), &[]);
    let mut calls: Vec<String> = Vec::new();
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 400 {
            break;
        }
        let arg = input.byte().unwrap_or(0);
        if op >= 0xF0 {
            forged(&mut s, op, arg);
            check_finals(&s);
            continue;
        }
        match op % 12 {
            0 | 1 => calls.push(s.call(URIS[usize::from(arg) % URIS.len()], "", None)),
            2 => {
                if let Some(c) = pick(&calls, arg) {
                    s.cancel(&c);
                }
            }
            3 => {
                // A UAC retransmits its INVITE until it hears a final response
                // (after that, the same bytes would be a new transaction).
                if let Some(c) = pick(&calls, arg) {
                    if s.caller_call(&c).final_status().is_none() {
                        s.retransmit_invite(&c);
                    }
                }
            }
            4 => {
                if let Some(c) = pick(&calls, arg) {
                    if s.caller_call(&c).answer.is_some() {
                        s.bye(&c);
                    }
                }
            }
            5 => s.set_script(TRUNKS[usize::from(arg) % 3], script(arg / 3)),
            6 => {
                let link = [Link::Up, Link::BlackHole, Link::Refused][usize::from(arg / 3) % 3];
                s.set_link(TRUNKS[usize::from(arg) % 3], link);
            }
            7 => s.drop_next(TRUNKS[usize::from(arg) % 3], u32::from(arg % 3)),
            8 => {
                // Garbage, or a mangled copy of a real message, from a trunk.
                let mut bytes = s
                    .trace
                    .packets
                    .last()
                    .map(|p| p.bytes.to_vec())
                    .unwrap_or_default();
                let at = usize::from(arg) * 7 % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= arg | 1;
                }
                let from = s.trunk_addr(TRUNKS[usize::from(arg) % 3]);
                s.inject(from, Bytes::from(bytes));
            }
            9 => {
                // Replay an old packet from wherever it came (duplicates, reordering).
                if let Some(p) = s
                    .trace
                    .packets
                    .get(usize::from(arg) * 13 % s.trace.packets.len().max(1))
                    .cloned()
                {
                    // An INVITE copy after its final response is a new
                    // transaction, not a duplicate: a UAC does not send one.
                    let answered_invite = p.from == s.caller_addr()
                        && p.summary() == "INVITE"
                        && s.caller
                            .calls
                            .get(&p.call_id())
                            .is_some_and(|c| c.final_status().is_some());
                    if p.to == s.gateway && !answered_invite {
                        s.inject(p.from, p.bytes);
                    }
                }
            }
            _ => s.run_for(Duration::from_millis(u64::from(arg) * 4)),
        }
        check_finals(&s);
    }
    // Quiesce: no more input, let every timer run out.
    for t in TRUNKS {
        s.set_link(t, Link::Up);
        s.set_script(t, TrunkScript::answering());
        s.forge_icmp_per_send(t, false);
    }
    // Every transaction ends within Timer C + 64*T1 (about 3.6 min): run
    // until nothing is left, or past that bound.
    for _ in 0..60 {
        s.run_for(Duration::from_secs(5));
        let st = s.proxy.stats();
        if st.server_transactions + st.client_transactions + st.calls == 0 {
            break;
        }
    }
    check_finals(&s);
    s
}

/// Operations `0xF0..=0xFF`: what an attacker off the path can send.
fn forged(s: &mut Sim, op: u8, arg: u8) {
    let trunk = TRUNKS[usize::from(arg) % 3];
    match op % 3 {
        0 => s.forge_icmp(trunk),
        1 => s.forge_icmp_per_send(trunk, arg & 0x80 != 0),
        _ => {
            // A copy of a response the gateway received, from an address
            // that is no one's peer: the attacker's, or a port of a real
            // peer's host that is not the peer's.
            let Some(p) = s
                .trace
                .packets
                .iter()
                .rev()
                .filter(|p| p.to == s.gateway && p.message().is_some_and(|m| m.status().is_some()))
                .nth(usize::from(arg % 4))
                .cloned()
            else {
                return;
            };
            let from = if arg & 0x40 == 0 {
                ATTACKER.parse().expect("address")
            } else {
                std::net::SocketAddr::new(p.from.ip(), p.from.port().wrapping_add(1))
            };
            let (packets, events) = (s.trace.packets.len(), s.trace.events.len());
            s.inject_spoofed(from, p.bytes);
            let sent: Vec<_> = s.trace.packets[packets..]
                .iter()
                .filter(|q| q.from == s.gateway)
                .map(|q| q.summary())
                .collect();
            assert!(
                sent.is_empty(),
                "a forged response made the gateway send {sent:?}"
            );
            for (_, e) in &s.trace.events[events..] {
                assert!(
                    matches!(e, lifeline_proxy::Event::Rejected { status: None, .. }),
                    "a forged response did something: {e:?}"
                );
            }
        }
    }
}

fn pick(calls: &[String], arg: u8) -> Option<String> {
    (!calls.is_empty()).then(|| calls[usize::from(arg) % calls.len()].clone())
}

/// At most one final non-2xx per INVITE transaction, and none after a 2xx.
fn check_finals(s: &Sim) {
    let caller = s.caller_addr();
    let mut seen: HashMap<String, (u32, bool, u16)> = HashMap::new();
    for p in s
        .trace
        .packets
        .iter()
        .filter(|p| p.from == s.gateway && p.to == caller)
    {
        let Some(m) = p.message() else { continue };
        let (Some(code), Ok(cseq)) = (m.status(), m.cseq()) else {
            continue;
        };
        if cseq.method != b"INVITE" || code < 200 {
            continue;
        }
        let e = seen.entry(p.call_id()).or_insert((0, false, 0));
        if code < 300 {
            e.1 = true;
        } else {
            // Timer G retransmits the same final: count distinct ones only.
            if e.0 == 0 || e.2 != code {
                e.0 += 1;
            }
            e.2 = code;
            assert!(!e.1, "a non-2xx final after a 2xx on {}", p.call_id());
            if e.0 > 1 {
                let history: Vec<String> = s
                    .trace
                    .packets
                    .iter()
                    .filter(|q| q.call_id() == p.call_id())
                    .map(|q| {
                        format!(
                            "{:?} {}->{} {} {}",
                            q.sent,
                            q.from,
                            q.to,
                            q.summary(),
                            q.cseq_method()
                        )
                    })
                    .collect();
                panic!(
                    "two different finals on {}:\n{}",
                    p.call_id(),
                    history.join("\n")
                );
            }
        }
    }
}
