//! TCP beside UDP, over real loopback sockets: requests too large for UDP go
//! to a `udp+tcp` trunk over TCP (RFC 3261 §18.1.1). Nothing is timed, only
//! counted and ordered; every wait is bounded.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lifeline_io::{EventSink, Gateway, Options};
use lifeline_kit::{closed_by_peer, one_route, unprobed, Mode, Uas, UasConfig};
use lifeline_proxy::{AttemptFailure, Event, Peer, ProbeConfig, Transport, TrunkConfig};
use lifeline_sip::{Frame, HeaderName, Message, StreamFramer};

/// The emergency INVITE with SDP and PIDF-LO, about 2.4 KB.
const LARGE_INVITE: &str = include_str!("../../sip/testdata/bench/emergency-invite.sip");

/// A UAS listening on UDP and TCP on the same port: OPTIONS, BYE and the
/// rest answered 200, INVITE 100/180/200 (with Record-Route echoed).
fn dual_trunk() -> Uas {
    let config = UasConfig {
        tcp: true,
        ..UasConfig::default()
    };
    Uas::with(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A gateway listening on UDP and TCP, one trunk, one route.
fn gateway(trunk: TrunkConfig) -> Gateway {
    gateway_with(vec![trunk], vec![])
}

/// A gateway listening on UDP and TCP; one route through `trunks` in order.
fn gateway_with(trunks: Vec<TrunkConfig>, sinks: Vec<EventSink>) -> Gateway {
    let listen = vec![
        (Transport::Udp, "127.0.0.1:0".parse().unwrap()),
        (Transport::Tcp, "127.0.0.1:0".parse().unwrap()),
    ];
    Gateway::start(Options {
        sinks,
        ..Options::new(listen, |adv| one_route(adv, trunks))
    })
    .unwrap()
}

/// Wait (bounded) on `sock` for a final response to `cseq_method`.
fn final_response(sock: &UdpSocket, cseq_method: &[u8]) -> Option<Message> {
    let mut buf = [0u8; 65536];
    for _ in 0..200 {
        let Ok(len) = sock.recv(&mut buf) else {
            continue;
        };
        let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else {
            continue;
        };
        let ours = m.cseq().ok().is_some_and(|c| c.method == cseq_method);
        if ours && m.status().is_some_and(|c| c >= 200) {
            return Some(m);
        }
    }
    None
}

fn value(m: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(m.header(name).unwrap().value).to_string()
}

#[test]
fn a_large_invite_goes_over_tcp_to_a_udp_tcp_trunk() {
    let trunk = dual_trunk();
    let gw = gateway(TrunkConfig {
        large_over_tcp: true,
        ..TrunkConfig::new("both", Peer::udp(trunk.addr()))
    });
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let invite = LARGE_INVITE.replacen("198.51.100.20:5060", &me.to_string(), 1);
    assert!(invite.len() > lifeline_proxy::RFC3261_UDP_MAX_REQUEST);
    caller.send_to(invite.as_bytes(), gw.bound.udp[0]).unwrap();
    let ok = final_response(&caller, b"INVITE").expect("a final response");
    assert_eq!(ok.status(), Some(200));

    // ACK and BYE along the Record-Route: small, so over UDP.
    let rr = value(&ok, HeaderName::RecordRoute);
    let to = value(&ok, HeaderName::To);
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} sip:uas@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}1\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: \"Alice Caller\" <sip:+15555550123@carrier.example.net;user=phone>;tag=9fxced76sl\r\nTo: {to}\r\nCall-ID: 3848276298220188511@192.0.2.10\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            trunk.addr()
        )
    };
    caller
        .send_to(in_dialog("ACK", 31862).as_bytes(), gw.bound.udp[0])
        .unwrap();
    caller
        .send_to(in_dialog("BYE", 31863).as_bytes(), gw.bound.udp[0])
        .unwrap();
    let bye_ok = final_response(&caller, b"BYE").expect("the BYE answered");
    assert_eq!(bye_ok.status(), Some(200));

    // Probes arrive on UDP (bounded wait for the first).
    for _ in 0..500 {
        if trunk
            .seen()
            .iter()
            .any(|(t, m)| *t == Transport::Udp && m == "OPTIONS")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = trunk.seen();
    let over = |t: Transport| -> Vec<&str> {
        seen.iter()
            .filter(|(tt, m)| *tt == t && m != "OPTIONS")
            .map(|(_, m)| m.as_str())
            .collect()
    };
    assert_eq!(over(Transport::Tcp), ["INVITE"], "seen: {seen:?}");
    assert_eq!(over(Transport::Udp), ["ACK", "BYE"], "seen: {seen:?}");
    assert!(
        seen.iter()
            .any(|(t, m)| *t == Transport::Udp && m == "OPTIONS"),
        "probes over UDP: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(t, m)| *t == Transport::Tcp && m == "OPTIONS"),
        "no probe over TCP: {seen:?}"
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_refused_tcp_connection_to_a_udp_tcp_trunk_is_evidence_and_fails_over() {
    let primary = Uas::start(Mode::Answer);
    let backup = dual_trunk();
    let failures: Arc<Mutex<Vec<AttemptFailure>>> = Arc::default();
    let f2 = failures.clone();
    let sink: EventSink = Box::new(move |ev, _, _| {
        if let Event::AttemptFailed { reason, .. } = ev {
            f2.lock().unwrap().push(*reason);
        }
    });
    let trunk = |name: &str, addr| TrunkConfig {
        large_over_tcp: true,
        ..TrunkConfig::new(name, Peer::udp(addr))
    };
    let gw = gateway_with(
        vec![
            trunk("primary", primary.addr()),
            trunk("backup", backup.addr()),
        ],
        vec![sink],
    );
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let invite = LARGE_INVITE.replacen("198.51.100.20:5060", &me.to_string(), 1);
    caller.send_to(invite.as_bytes(), gw.bound.udp[0]).unwrap();
    let ok = final_response(&caller, b"INVITE").expect("a final response");
    assert_eq!(ok.status(), Some(200));
    let invites = |t: &Uas| -> Vec<Transport> {
        t.seen()
            .into_iter()
            .filter(|(_, m)| m == "INVITE")
            .map(|(t, _)| t)
            .collect()
    };
    assert_eq!(invites(&primary), [], "the primary refused the connection");
    assert_eq!(invites(&backup), [Transport::Tcp]);
    // The failover came from the refused connection, not from a timer.
    let failures = failures.lock().unwrap().clone();
    assert_eq!(failures, [AttemptFailure::TransportError]);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

fn options_to_gateway(me: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKopt{n}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=o{n}\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: opt-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn an_idle_caller_connection_is_closed() {
    let trunk = dual_trunk();
    let gw = gateway(unprobed_udp_trunk(trunk.addr()));
    gw.tcp_idle.send_replace(Duration::from_millis(200));
    let mut conn = TcpStream::connect(gw.bound.tcp[0]).unwrap();
    let me = conn.local_addr().unwrap();
    // Used once: a keep-alive OPTIONS to the gateway, answered.
    conn.write_all(options_to_gateway(me, 1).as_bytes())
        .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut framer = StreamFramer::default();
    let mut buf = [0u8; 4096];
    let status = loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        framer.extend(&buf[..n]);
        if let Ok(Some(Frame::Message(b))) = framer.next_frame() {
            break Message::parse(b).unwrap().status();
        }
    };
    assert_eq!(status, Some(200));
    // Then left idle: the gateway closes it.
    assert!(
        closed_by_peer(&mut conn),
        "the idle connection was not closed"
    );
    assert_eq!(gw.stats.tcp_idle_closed.load(Ordering::Relaxed), 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn crlf_keep_alives_keep_a_connection_open() {
    let trunk = dual_trunk();
    let gw = gateway(unprobed_udp_trunk(trunk.addr()));
    let idle = Duration::from_secs(1);
    gw.tcp_idle.send_replace(idle);
    let mut conn = TcpStream::connect(gw.bound.tcp[0]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // RFC 5626 pings every 50 ms, each answered with a pong, for longer
    // than the idle timeout: the connection stays open throughout.
    let started = std::time::Instant::now();
    let mut pongs = 0;
    while started.elapsed() < idle * 2 {
        conn.write_all(b"\r\n\r\n").unwrap();
        let mut pong = [0u8; 2];
        conn.read_exact(&mut pong)
            .unwrap_or_else(|e| panic!("no pong {}: {e}", pongs + 1));
        assert_eq!(&pong, b"\r\n");
        pongs += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pongs >= 2, "{pongs} pongs");
    assert_eq!(gw.stats.tcp_idle_closed.load(Ordering::Relaxed), 0);
    // Pings stop: it is closed.
    assert!(
        closed_by_peer(&mut conn),
        "the idle connection was not closed"
    );
    assert_eq!(gw.stats.tcp_idle_closed.load(Ordering::Relaxed), 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_idle_trunk_connection_is_closed_without_evidence_and_reopened() {
    let trunk = dual_trunk();
    let failures: Arc<Mutex<Vec<AttemptFailure>>> = Arc::default();
    let f2 = failures.clone();
    let sink: EventSink = Box::new(move |ev, _, _| {
        if let Event::AttemptFailed { reason, .. } = ev {
            f2.lock().unwrap().push(*reason);
        }
    });
    let gw = gateway_with(
        vec![TrunkConfig {
            probe: ProbeConfig {
                enabled: false,
                ..ProbeConfig::default()
            },
            ..TrunkConfig::new(
                "tcp",
                Peer {
                    addr: trunk.addr(),
                    transport: Transport::Tcp,
                },
            )
        }],
        vec![sink],
    );
    gw.tcp_idle.send_replace(Duration::from_millis(200));
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let call = |n: u32| {
        let invite = format!(
            "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKidle{n}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=i{n}\r\nTo: <sip:999@gw>\r\nCall-ID: idle-{n}\r\nCSeq: {n} INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(invite.as_bytes(), gw.bound.udp[0]).unwrap();
        final_response(&caller, b"INVITE").and_then(|m| m.status())
    };
    assert_eq!(call(1), Some(200));
    assert_eq!(trunk.stats().accepted.load(Ordering::Relaxed), 1);
    // Left idle, the gateway closes its connection to the trunk.
    for _ in 0..500 {
        if trunk.stats().closed.load(Ordering::Relaxed) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        trunk.stats().closed.load(Ordering::Relaxed),
        1,
        "closed by the gateway"
    );
    // Not held against the trunk.
    let state = gw.with_proxy(|p, _| {
        let id = p.health().find("tcp").unwrap();
        p.health().trunk(id).unwrap().state
    });
    assert_eq!(state, Some(lifeline_health::State::Up));
    assert_eq!(failures.lock().unwrap().clone(), []);
    // The next call opens a new connection.
    assert_eq!(call(2), Some(200));
    assert_eq!(trunk.stats().accepted.load(Ordering::Relaxed), 2);
    assert_eq!(failures.lock().unwrap().clone(), []);
    assert!(gw.stats.tcp_idle_closed.load(Ordering::Relaxed) >= 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

/// A UDP trunk `t` that is not probed (the test is about the caller's
/// connection).
fn unprobed_udp_trunk(addr: SocketAddr) -> TrunkConfig {
    unprobed("t", Peer::udp(addr))
}
