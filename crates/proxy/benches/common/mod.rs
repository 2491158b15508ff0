//! One complete call through the pure proxy core, shared by the `call`
//! benchmark and the `count_call` example (so both measure the same code):
//! a proxy with two trunks, the trunk's and caller's side of one call
//! recorded once, and the call replayed on a fresh proxy.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use lifeline_proxy::{Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig};
use lifeline_sip::{HeaderName, Message, MessageWriter};

pub(crate) const INVITE: &[u8] = include_bytes!("../../../sip/testdata/bench/emergency-invite.sip");

pub(crate) fn caller() -> Peer {
    Peer::udp("127.0.20.1:5060".parse().unwrap())
}

pub(crate) fn trunk() -> Peer {
    Peer::udp("127.0.30.1:5060".parse().unwrap())
}

pub(crate) fn proxy(t0: Instant) -> Proxy {
    let gw: SocketAddr = "127.0.10.1:5060".parse().unwrap();
    let probe = ProbeConfig {
        enabled: false,
        ..ProbeConfig::default()
    };
    let trunks = vec![
        TrunkConfig {
            probe: probe.clone(),
            ..TrunkConfig::new("primary", trunk())
        },
        TrunkConfig {
            probe,
            ..TrunkConfig::new("backup", Peer::udp("127.0.30.2:5060".parse().unwrap()))
        },
    ];
    let routes = vec![RouteConfig::new(
        "emergency",
        RouteMatch::Emergency,
        &["primary", "backup"],
    )];
    Proxy::new(t0, ProxyConfig::new(gw, trunks, routes)).unwrap()
}

pub(crate) fn drain(p: &mut Proxy) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Some(t) = p.poll_transmit() {
        out.push(t.payload);
    }
    while p.poll_event().is_some() {}
    out
}

/// Record the peers' side of one call: the trunk's 100/180/200, the
/// caller's ACK and BYE, the trunk's 200 for the BYE.
pub(crate) fn record(t0: Instant) -> Vec<(Peer, Bytes)> {
    let mut p = proxy(t0);
    let mut script = Vec::new();
    p.handle_message(t0, caller(), Bytes::from_static(INVITE));
    let out = drain(&mut p);
    let fwd = Message::parse(out.into_iter().find(|b| b.starts_with(b"INVITE")).unwrap()).unwrap();
    for (code, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
        let contact = b"<sip:psap@127.0.30.1:5060>";
        let w = MessageWriter::dialog_response_to(&fwd, code, reason, b"trunk1", contact);
        let bytes = w.unwrap().finish();
        p.handle_message(t0, trunk(), bytes.clone());
        script.push((trunk(), bytes));
    }
    let out = drain(&mut p);
    let ok = Message::parse(
        out.into_iter()
            .rfind(|b| b.starts_with(b"SIP/2.0 200"))
            .unwrap(),
    )
    .unwrap();
    let rr = ok.header(HeaderName::RecordRoute).unwrap().value.to_vec();
    let rr = String::from_utf8(rr).unwrap();
    let to = String::from_utf8(ok.header(HeaderName::To).unwrap().value.to_vec()).unwrap();
    let from = String::from_utf8(ok.header(HeaderName::From).unwrap().value.to_vec()).unwrap();
    let call_id = String::from_utf8(ok.call_id().unwrap().to_vec()).unwrap();
    for (method, cseq, branch) in [
        ("ACK", "31862 ACK", "z9hG4bKack1"),
        ("BYE", "31863 BYE", "z9hG4bKbye1"),
    ] {
        let text = format!(
            "{method} sip:psap@127.0.30.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.20.1:5060;branch={branch}\r\nMax-Forwards: 70\r\nRoute: {rr}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        );
        let bytes = Bytes::from(text);
        p.handle_message(t0, caller(), bytes.clone());
        script.push((caller(), bytes));
    }
    let out = drain(&mut p);
    let bye = Message::parse(
        out.into_iter()
            .find(|b| b.starts_with(b"BYE"))
            .expect("BYE forwarded"),
    )
    .unwrap();
    let bytes = MessageWriter::response_to(&bye, 200, "OK", None)
        .unwrap()
        .finish();
    p.handle_message(t0, trunk(), bytes.clone());
    script.push((trunk(), bytes));
    let out = drain(&mut p);
    assert!(
        out.iter().any(|b| b.starts_with(b"SIP/2.0 200")),
        "BYE answered"
    );
    assert_eq!(p.stats().dialogs, 0, "the recording is a complete call");
    script
}

/// One complete call on `p` (a fresh proxy): the INVITE, then `script`
/// (from [`record`]). Returns how many messages the proxy sent.
pub(crate) fn complete_call(p: &mut Proxy, t0: Instant, script: &[(Peer, Bytes)]) -> usize {
    p.handle_message(t0, caller(), Bytes::from_static(INVITE));
    let mut sent = drain(p).len();
    for (from, bytes) in script {
        p.handle_message(t0, *from, bytes.clone());
        sent += drain(p).len();
    }
    sent
}
