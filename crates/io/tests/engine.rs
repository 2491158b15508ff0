//! The engine over real loopback sockets: trunks are plain UDP (or TCP)
//! sockets answering like a UAS, driven by threads; nothing is timed, only
//! counted and ordered.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lifeline_io::{clock, transport, Gateway, Options};
use lifeline_proxy::{
    Peer, ProbeConfig, ProxyConfig, RouteConfig, RouteMatch, Transport, TrunkConfig,
};
use lifeline_sip::{Frame, HeaderName, Message, MessageWriter, StreamFramer};
/// A UAS on a loopback socket answering OPTIONS 200 and INVITE 100/180/200
/// (or `code`), until the socket is dropped.
struct Uas {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    invites: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Uas {
    fn start(code: u16) -> Uas {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let invites = Arc::new(AtomicU64::new(0));
        let (s2, i2) = (stop.clone(), invites.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                    continue;
                };
                if m.status().is_some() {
                    continue;
                }
                let reply = |code: u16| {
                    let mut w = MessageWriter::response_to(&m, code, "X", Some(b"uas")).unwrap();
                    if (180..300).contains(&code) {
                        for h in m.headers().filter(|h| h.name == HeaderName::RecordRoute) {
                            w.raw_header(h.raw_name, h.value).unwrap();
                        }
                        w.header(HeaderName::Contact, format!("<sip:uas@{addr}>").as_bytes())
                            .unwrap();
                    }
                    w.finish()
                };
                match m.method_bytes().unwrap_or_default() {
                    b"INVITE" => {
                        i2.fetch_add(1, Ordering::Relaxed);
                        let codes: &[u16] = if code == 200 {
                            &[100, 180, 200]
                        } else {
                            &[code]
                        };
                        for c in codes {
                            sock.send_to(&reply(*c), from).unwrap();
                        }
                    }
                    b"ACK" => {}
                    _ => {
                        sock.send_to(&reply(200), from).unwrap();
                    }
                }
            }
        });
        Uas {
            addr,
            stop,
            invites,
            thread: Some(thread),
        }
    }

    /// Close the socket: later datagrams get ICMP port unreachable.
    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.kill();
    }
}

fn gateway(primary: SocketAddr, backup: SocketAddr) -> Gateway {
    Gateway::start(Options {
        listen: vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())],
        advertise: None,
        proxy_config: Box::new(move |adv| {
            let t = |n: &str, a| TrunkConfig::new(n, Peer::udp(a));
            ProxyConfig::new(
                adv,
                vec![t("primary", primary), t("backup", backup)],
                vec![RouteConfig::new(
                    "emergency",
                    RouteMatch::Any,
                    &["primary", "backup"],
                )],
            )
        }),
        io_threads: 1,
        sinks: vec![],
        ticks: vec![],
        tick_every: Duration::from_millis(100),
        net: transport::real(),
        clock: clock::system(),
    })
    .unwrap()
}

fn invite(caller: SocketAddr, n: u32) -> String {
    format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bKc{n}\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@orig>;tag=c{n}\r\nTo: <sip:999@gw>\r\nCall-ID: e2e-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Place a call and wait for its final status.
fn call(sock: &UdpSocket, gw: SocketAddr, n: u32) -> Option<u16> {
    let me = sock.local_addr().unwrap();
    sock.send_to(invite(me, n).as_bytes(), gw).unwrap();
    let mut buf = [0u8; 65536];
    for _ in 0..200 {
        let Ok(len) = sock.recv(&mut buf) else {
            continue;
        };
        let m = Message::parse(Bytes::copy_from_slice(&buf[..len])).ok()?;
        if m.call_id() != Some(format!("e2e-{n}").as_bytes()) {
            continue;
        }
        if let Some(code) = m.status().filter(|c| *c >= 200) {
            return Some(code);
        }
    }
    None
}

#[test]
fn calls_go_through_and_a_killed_primary_fails_over() {
    let mut primary = Uas::start(200);
    let backup = Uas::start(200);
    let gw = gateway(primary.addr, backup.addr);
    let gw_addr = gw.bound.udp[0];
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    for n in 0..5 {
        assert_eq!(call(&caller, gw_addr, n), Some(200));
    }
    assert_eq!(primary.invites.load(Ordering::Relaxed), 5);
    primary.kill();
    for n in 5..10 {
        assert_eq!(
            call(&caller, gw_addr, n),
            Some(200),
            "call {n} after the kill"
        );
    }
    assert_eq!(backup.invites.load(Ordering::Relaxed), 5);
    let state = gw.with_proxy(|p, _| {
        let id = p.health().find("primary").unwrap();
        p.health().trunk(id).unwrap().state
    });
    assert_eq!(
        state,
        Some(lifeline_health::State::Down),
        "ICMP made it Down"
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_503_trunk_fails_over() {
    let primary = Uas::start(503);
    let backup = Uas::start(200);
    let gw = gateway(primary.addr, backup.addr);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert_eq!(call(&caller, gw.bound.udp[0], 1), Some(200));
    assert_eq!(primary.invites.load(Ordering::Relaxed), 1);
    assert_eq!(backup.invites.load(Ordering::Relaxed), 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

// Stream transport end to end: a caller over TCP, a trunk over TCP.

/// A TCP UAS: accepts connections, frames messages, answers INVITE
/// 100/180/200 and anything else 200.
fn tcp_trunk() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let invites = Arc::new(AtomicU64::new(0));
    let inv = invites.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let inv = inv.clone();
            std::thread::spawn(move || {
                let mut framer = StreamFramer::default();
                let mut buf = [0u8; 16384];
                loop {
                    let Ok(n) = conn.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    framer.extend(&buf[..n]);
                    while let Ok(Some(Frame::Message(b))) = framer.next_frame() {
                        let Ok(m) = Message::parse(b) else { continue };
                        if m.status().is_some() || m.method_bytes() == Some(b"ACK") {
                            continue;
                        }
                        let codes: &[u16] = if m.method_bytes() == Some(b"INVITE") {
                            inv.fetch_add(1, Ordering::Relaxed);
                            &[100, 180, 200]
                        } else {
                            &[200]
                        };
                        for &c in codes {
                            let mut w =
                                MessageWriter::response_to(&m, c, "X", Some(b"tcp")).unwrap();
                            if c > 100 {
                                for h in m.headers().filter(|h| h.name == HeaderName::RecordRoute) {
                                    w.raw_header(h.raw_name, h.value).unwrap();
                                }
                            }
                            let _ = conn.write_all(&w.finish());
                        }
                    }
                }
            });
        }
    });
    (addr, invites)
}

#[test]
fn a_tcp_caller_and_a_tcp_trunk() {
    let (trunk, invites) = tcp_trunk();
    let gw = Gateway::start(Options {
        listen: vec![
            (Transport::Udp, "127.0.0.1:0".parse().unwrap()),
            (Transport::Tcp, "127.0.0.1:0".parse().unwrap()),
        ],
        advertise: None,
        proxy_config: Box::new(move |adv| {
            let peer = Peer {
                addr: trunk,
                transport: Transport::Tcp,
            };
            let probe = ProbeConfig {
                enabled: false,
                ..ProbeConfig::default()
            };
            ProxyConfig::new(
                adv,
                vec![TrunkConfig {
                    probe,
                    ..TrunkConfig::new("tcp", peer)
                }],
                vec![RouteConfig::new("all", RouteMatch::Any, &["tcp"])],
            )
        }),
        io_threads: 1,
        sinks: vec![],
        ticks: vec![],
        tick_every: Duration::from_millis(100),
        net: transport::real(),
        clock: clock::system(),
    })
    .unwrap();
    let mut caller = TcpStream::connect(gw.bound.tcp[0]).unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    // A keep-alive ping first, then the INVITE (UDP-sized body framing by Content-Length).
    caller.write_all(b"\r\n\r\n").unwrap();
    let invite = format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKtcp1\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:999@gw>\r\nCall-ID: tcp-1\r\nCSeq: 1 INVITE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    );
    caller.write_all(invite.as_bytes()).unwrap();
    let mut framer = StreamFramer::default();
    let mut buf = [0u8; 16384];
    let (mut statuses, mut pongs) = (Vec::new(), 0);
    while !statuses.contains(&200) {
        let n = caller.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed; got {statuses:?}");
        // A CRLF pong is not a frame: count it before framing.
        if buf[..n].starts_with(b"\r\n") && pongs == 0 {
            pongs += 1;
        }
        framer.extend(&buf[..n]);
        while let Ok(Some(Frame::Message(b))) = framer.next_frame() {
            statuses.push(Message::parse(b).unwrap().status().unwrap());
        }
    }
    assert_eq!(statuses, vec![100, 180, 200]);
    assert_eq!(pongs, 1, "RFC 5626 pong");
    assert_eq!(invites.load(Ordering::Relaxed), 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
