//! RFC 3261 §18.1.1 through the pure core: a request over 1300 bytes goes
//! over TCP to a trunk that takes both transports, with a TCP Via; smaller
//! ones, and every request to a UDP-only trunk, go over UDP.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::{
    Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, Transmit, Transport,
    TrunkConfig, RFC3261_UDP_MAX_REQUEST,
};
use lifeline_sip::{HeaderName, Message, MessageWriter};
use support::{addr, one_trunk, CALLER, EMERGENCY_INVITE as LARGE, GW, TRUNK};

fn small_invite() -> Bytes {
    Bytes::from(format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKsmall\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:999@gw>\r\nCall-ID: small-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// Feed `invite` from the caller; the transmits to the trunk.
fn forward(p: &mut Proxy, now: Instant, invite: Bytes) -> Vec<Transmit> {
    p.handle_message(now, Peer::udp(addr(CALLER)), invite);
    drain(p)
}

fn drain(p: &mut Proxy) -> Vec<Transmit> {
    std::iter::from_fn(|| p.poll_transmit())
        .filter(|t| t.peer.addr == addr(TRUNK))
        .collect()
}

fn top_via(t: &Transmit) -> String {
    let m = Message::parse(t.payload.clone()).unwrap();
    let v = m.headers().find(|h| h.name == HeaderName::Via).unwrap();
    String::from_utf8(v.value.to_vec()).unwrap()
}

#[test]
fn a_large_invite_goes_over_tcp_to_a_trunk_that_takes_both() {
    assert!(
        LARGE.len() > 2000,
        "the emergency INVITE is {} bytes",
        LARGE.len()
    );
    let t0 = Instant::now();
    let mut p = one_trunk(true);
    let out = forward(&mut p, t0, Bytes::from_static(LARGE.as_bytes()));
    assert_eq!(out.len(), 1);
    let inv = &out[0];
    assert!(inv.payload.len() > RFC3261_UDP_MAX_REQUEST);
    assert_eq!(inv.peer.transport, Transport::Tcp);
    assert_eq!(inv.peer.addr, addr(TRUNK));
    assert!(
        inv.trunk.is_some(),
        "a send to the trunk: errors are evidence"
    );
    assert!(top_via(inv).starts_with(&format!("SIP/2.0/TCP {GW};branch=")));
    // Byte-identical body, and a Content-Length as a stream needs.
    let m = Message::parse(inv.payload.clone()).unwrap();
    let orig = Message::parse(Bytes::from_static(LARGE.as_bytes())).unwrap();
    assert_eq!(m.body(), orig.body());

    // Reliable transport: no Timer A retransmission, however long we wait
    // short of Timer B.
    for ms in [500, 1000, 2000, 4000, 8000, 16000] {
        p.handle_timeout(t0 + Duration::from_millis(ms));
        assert!(
            drain(&mut p).iter().all(|t| t.payload != inv.payload),
            "retransmitted over TCP at {ms} ms"
        );
    }

    // The trunk answers on the connection; the response matches by branch.
    let reply = |code| {
        let m = Message::parse(inv.payload.clone()).unwrap();
        MessageWriter::response_to(&m, code, "X", Some(b"t"))
            .unwrap()
            .finish()
    };
    let tcp = Peer {
        addr: addr(TRUNK),
        transport: Transport::Tcp,
    };
    let at = t0 + Duration::from_millis(16_100);
    p.handle_message(at, tcp, reply(486));
    // The ACK for the non-2xx goes back the same way (hop by hop).
    let acks = drain(&mut p);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].peer.transport, Transport::Tcp);
    assert!(Message::parse(acks[0].payload.clone())
        .unwrap()
        .method_bytes()
        .is_some_and(|m| m == b"ACK"));
    p.handle_timeout(at);
    assert_eq!(p.stats().client_transactions, 0, "Timer D is zero over TCP");
}

#[test]
fn a_small_invite_stays_on_udp() {
    let t0 = Instant::now();
    let mut p = one_trunk(true);
    let out = forward(&mut p, t0, small_invite());
    assert_eq!(out.len(), 1);
    assert!(out[0].payload.len() <= RFC3261_UDP_MAX_REQUEST);
    assert_eq!(out[0].peer.transport, Transport::Udp);
    assert!(top_via(&out[0]).starts_with("SIP/2.0/UDP "));
    // UDP: Timer A retransmits.
    p.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(drain(&mut p).len(), 1, "Timer A");
}

#[test]
fn a_udp_only_trunk_gets_the_large_invite_over_udp() {
    let mut p = one_trunk(false);
    let out = forward(&mut p, Instant::now(), Bytes::from_static(LARGE.as_bytes()));
    assert_eq!(out.len(), 1);
    assert!(out[0].payload.len() > RFC3261_UDP_MAX_REQUEST);
    assert_eq!(out[0].peer.transport, Transport::Udp);
    assert!(top_via(&out[0]).starts_with("SIP/2.0/UDP "));
}

#[test]
fn probes_stay_on_udp() {
    let probe = ProbeConfig::default();
    let cfg = ProxyConfig::new(
        addr(GW),
        vec![TrunkConfig {
            large_over_tcp: true,
            probe,
            ..TrunkConfig::new("primary", Peer::udp(addr(TRUNK)))
        }],
        vec![RouteConfig::new("all", RouteMatch::Any, &["primary"])],
    );
    let t0 = Instant::now();
    let mut p = Proxy::new(t0, cfg).unwrap();
    p.handle_timeout(t0 + Duration::from_secs(1));
    let out = drain(&mut p);
    assert!(!out.is_empty(), "a probe went out");
    for t in out {
        assert_eq!(t.peer.transport, Transport::Udp);
        assert!(top_via(&t).starts_with("SIP/2.0/UDP "));
    }
}
