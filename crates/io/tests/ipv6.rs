//! IPv6 end to end over real loopback sockets (`[::1]`): calls through the
//! gateway over UDP and over TCP, with bracketed addresses in the Via and
//! Record-Route the gateway writes, and a dual-stack listener (`[::]`)
//! taking calls from IPv4 and IPv6 callers alike. Nothing is timed; every
//! wait is bounded. Skipped (with a note) where the host has no IPv6
//! loopback.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use lifeline_io::{Gateway, Options};
use lifeline_kit::{one_route, unprobed, Call, Caller, Uas, UasConfig};
use lifeline_proxy::{Peer, Transport};
use lifeline_sip::{Frame, HeaderName, Message, StreamFramer};

fn v6_loopback() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// A UAS on `[::1]` (UDP, and TCP on the same port when `tcp`).
fn trunk(tcp: bool) -> Uas {
    let config = UasConfig {
        tcp,
        ..UasConfig::default()
    };
    Uas::with(config, "[::1]:0".parse().unwrap()).unwrap()
}

/// A gateway listening on `listen` (UDP and TCP), one route through `peer`.
fn gateway(listen: SocketAddr, advertise: Option<SocketAddr>, peer: Peer) -> Gateway {
    let listen = vec![(Transport::Udp, listen), (Transport::Tcp, listen)];
    Gateway::start(Options {
        advertise,
        ..Options::new(listen, move |adv| {
            one_route(adv, vec![unprobed("v6", peer)])
        })
    })
    .unwrap()
}

fn value(m: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(m.header(name).unwrap().value).into_owned()
}

/// The first request `method` the trunk received, parsed.
fn received(trunk: &Uas, method: &str) -> Message {
    let prefix = format!("{method} ");
    let raw = trunk
        .requests()
        .into_iter()
        .find(|r| r.starts_with(prefix.as_bytes()))
        .unwrap_or_else(|| panic!("the trunk got no {method}: {:?}", trunk.seen()));
    Message::parse(raw).unwrap()
}

#[test]
fn a_call_over_udp_on_ipv6_loopback() {
    if !v6_loopback() {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    }
    let uas = trunk(false);
    let gw = gateway("[::1]:0".parse().unwrap(), None, Peer::udp(uas.addr()));
    let at = gw.bound.udp[0];
    assert!(at.is_ipv6());
    let mut caller = Caller::from_ip(IpAddr::V6(Ipv6Addr::LOCALHOST), at, "v6u");
    assert_eq!(caller.call("sip:999@gw.example"), Some(200));
    // The BYE along the Record-Route, answered.
    caller.pump(Duration::from_millis(300), None);
    assert!(
        uas.seen()
            .iter()
            .any(|(t, m)| *t == Transport::Udp && m == "BYE"),
        "the BYE reached the trunk: {:?}",
        uas.seen()
    );

    let invite = received(&uas, "INVITE");
    let via = value(&invite, HeaderName::Via);
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {at};branch=")),
        "our Via, bracketed: {via}"
    );
    let rr = value(&invite, HeaderName::RecordRoute);
    assert!(
        rr.starts_with(&format!("<sip:{at};lr;")),
        "our Record-Route: {rr}"
    );
    // The caller's Via kept, and its own address bracketed in it.
    let me = caller.addr();
    assert!(
        invite
            .headers()
            .filter(|h| h.name == HeaderName::Via)
            .any(|h| h.value.starts_with(format!("SIP/2.0/UDP {me}").as_bytes())),
        "the caller's Via is forwarded"
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

/// Read one framed SIP message from `conn` (bounded: `None` after about
/// 5 s without one).
fn read_frame(conn: &mut TcpStream, framer: &mut StreamFramer) -> Option<Message> {
    let mut buf = [0u8; 8192];
    for _ in 0..100 {
        if let Ok(Some(Frame::Message(m))) = framer.next_frame() {
            return Message::parse(m).ok();
        }
        match conn.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => framer.extend(&buf[..n]),
            Err(_) => {}
        }
    }
    None
}

#[test]
fn a_call_over_tcp_on_ipv6_loopback() {
    if !v6_loopback() {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    }
    let uas = trunk(true);
    let gw = gateway(
        "[::1]:0".parse().unwrap(),
        None,
        Peer {
            addr: uas.addr(),
            transport: Transport::Tcp,
        },
    );
    let at = gw.bound.tcp[0];
    let mut conn = TcpStream::connect(at).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let me = conn.local_addr().unwrap();
    let call = Call::new(me, "v6-tcp-1@[::1]", "sip:112@gw.example", 1);
    let tcp = |text: String| text.replacen("SIP/2.0/UDP", "SIP/2.0/TCP", 1);
    conn.write_all(tcp(call.invite()).as_bytes()).unwrap();
    let mut framer = StreamFramer::default();
    let ok = loop {
        let m = read_frame(&mut conn, &mut framer).expect("a response over TCP");
        if m.status().is_some_and(|s| s >= 200) {
            break m;
        }
    };
    assert_eq!(ok.status(), Some(200));
    conn.write_all(tcp(call.ack(&ok)).as_bytes()).unwrap();
    conn.write_all(tcp(call.bye(&ok)).as_bytes()).unwrap();
    let bye_ok = loop {
        let m = read_frame(&mut conn, &mut framer).expect("the BYE's answer");
        if m.cseq().is_ok_and(|c| c.method == b"BYE") && m.status().is_some() {
            break m;
        }
    };
    assert_eq!(bye_ok.status(), Some(200));

    let over_tcp: Vec<String> = uas
        .seen()
        .into_iter()
        .filter(|(t, m)| *t == Transport::Tcp && m != "OPTIONS")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(over_tcp, ["INVITE", "ACK", "BYE"], "{:?}", uas.seen());
    let invite = received(&uas, "INVITE");
    let via = value(&invite, HeaderName::Via);
    assert!(
        via.starts_with(&format!("SIP/2.0/TCP {at};branch=")),
        "our Via, bracketed, over TCP: {via}"
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_dual_stack_listener_takes_ipv4_and_ipv6_callers() {
    if !v6_loopback() {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    }
    let uas = trunk(false);
    let advertise: SocketAddr = "[::1]:5060".parse().unwrap();
    let gw = gateway(
        "[::]:0".parse().unwrap(),
        Some(advertise),
        Peer::udp(uas.addr()),
    );
    let port = gw.bound.udp[0].port();
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let mut six = Caller::from_ip(IpAddr::V6(Ipv6Addr::LOCALHOST), v6, "ds6");
    let mut four = Caller::from_ip(IpAddr::V4(Ipv4Addr::LOCALHOST), v4, "ds4");
    assert_eq!(six.call("sip:999@gw.example"), Some(200), "from [::1]");
    assert_eq!(four.call("sip:999@gw.example"), Some(200), "from 127.0.0.1");
    four.pump(Duration::from_millis(300), None);
    six.pump(Duration::from_millis(300), None);
    let byes = uas.seen().iter().filter(|(_, m)| m == "BYE").count();
    assert_eq!(
        byes,
        2,
        "both calls hung up through the gateway: {:?}",
        uas.seen()
    );
    // The IPv4 caller's Via is forwarded as it sent it, with its address
    // as the gateway saw it added (RFC 3261 §18.2.1): 127.0.0.1, not the
    // IPv4-mapped IPv6 form.
    let invites: Vec<Message> = uas
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(b"INVITE "))
        .map(|r| Message::parse(Bytes::copy_from_slice(&r)).unwrap())
        .collect();
    let from_four = invites
        .iter()
        .find(|m| m.call_id().is_some_and(|c| c.starts_with(b"ds4")))
        .expect("the IPv4 caller's INVITE");
    let vias: Vec<String> = from_four
        .headers()
        .filter(|h| h.name == HeaderName::Via)
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .collect();
    assert!(
        vias.iter().all(|v| !v.contains("::ffff:")),
        "no IPv4-mapped address: {vias:?}"
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
