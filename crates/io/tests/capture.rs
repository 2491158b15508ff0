//! Capture to a HEP collector over real loopback sockets: a collector in
//! the test that decodes HEP version 3 by itself (from the specification,
//! not with the gateway's encoder), a caller and a trunk that note every
//! datagram they send and receive, and the gateway between them. What the
//! collector gets is compared with what went over the wire, byte for byte.
//! Nothing is timed: waits are bounded, assertions are on what arrived and
//! on the counts.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lifeline_io::{CaptureCalls, CaptureConfig, CaptureDrop, Gateway, IoStats, Options};
use lifeline_kit::uas::Answerer;
use lifeline_kit::{one_route, unprobed, Call, Caller, Mode, Uas, UasStats};
use lifeline_proxy::{Peer, Transport, TrunkConfig};
use lifeline_sip::{Frame, Message, StreamFramer};

// ---------------------------------------------------------------------------
// A HEP3 decoder, written from the specification's chunk table.

/// One decoded HEP3 packet.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hep {
    family: u8,
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
    secs: u32,
    usecs: u32,
    proto_type: u8,
    node: u32,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    correlation: Option<Vec<u8>>,
}

impl Hep {
    fn call_id(&self) -> String {
        String::from_utf8_lossy(self.correlation.as_deref().unwrap_or_default()).into_owned()
    }

    fn first_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.payload);
        text.lines().next().unwrap_or_default().to_string()
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes(b.try_into().expect("2 bytes"))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().expect("4 bytes"))
}

/// Decode one packet; panics (failing the test) on anything the
/// specification does not allow.
fn decode(p: &[u8]) -> Hep {
    assert_eq!(&p[..4], b"HEP3", "magic");
    assert_eq!(be16(&p[4..6]) as usize, p.len(), "total length");
    let mut chunks: HashMap<u16, Vec<u8>> = HashMap::new();
    let mut at = 6;
    while at < p.len() {
        let vendor = be16(&p[at..at + 2]);
        let kind = be16(&p[at + 2..at + 4]);
        let len = be16(&p[at + 4..at + 6]) as usize;
        assert_eq!(vendor, 0, "generic chunks only");
        assert!(len >= 6 && at + len <= p.len(), "chunk {kind} length {len}");
        assert!(
            chunks.insert(kind, p[at + 6..at + len].to_vec()).is_none(),
            "chunk {kind} twice"
        );
        at += len;
    }
    let get = |k: u16| {
        chunks
            .get(&k)
            .cloned()
            .unwrap_or_else(|| panic!("no chunk {k}"))
    };
    let one = |k: u16| {
        let v = get(k);
        assert_eq!(v.len(), 1, "chunk {k} is one byte");
        v[0]
    };
    let family = one(1);
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match family {
        2 => {
            let (s, d) = (get(3), get(4));
            let s: [u8; 4] = s.try_into().expect("IPv4 source");
            let d: [u8; 4] = d.try_into().expect("IPv4 destination");
            (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())
        }
        10 => {
            let (s, d) = (get(5), get(6));
            let s: [u8; 16] = s.try_into().expect("IPv6 source");
            let d: [u8; 16] = d.try_into().expect("IPv6 destination");
            (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
        }
        f => panic!("family {f}"),
    };
    Hep {
        family,
        proto: one(2),
        src: SocketAddr::new(src_ip, be16(&get(7))),
        dst: SocketAddr::new(dst_ip, be16(&get(8))),
        secs: be32(&get(9)),
        usecs: be32(&get(10)),
        proto_type: one(11),
        node: be32(&get(12)),
        key: chunks.get(&14).cloned(),
        payload: get(15),
        correlation: chunks.get(&17).cloned(),
    }
}

/// A HEP collector on loopback, receiving on a thread of its own until
/// [`Collector::finish`].
struct Collector {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Vec<u8>>>,
}

impl Collector {
    fn start() -> Collector {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 65536];
            // After the stop, until a read finds nothing.
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(_) if stopping.load(Ordering::Acquire) => return got,
                    Err(_) => {}
                }
            }
        });
        Collector { addr, stop, thread }
    }

    /// Every packet it got, decoded (call once the gateway has stopped:
    /// its capture thread has sent everything by then).
    fn finish(self) -> Vec<Hep> {
        self.stop.store(true, Ordering::Release);
        let raw = self.thread.join().unwrap();
        raw.iter().map(|p| decode(p)).collect()
    }
}

// ---------------------------------------------------------------------------
// Endpoints that note what went over the wire.

/// One message as an endpoint saw it on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

type Wire = Arc<Mutex<Vec<Seen>>>;

fn note(wire: &Wire, proto: u8, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    wire.lock().unwrap().push(Seen {
        proto,
        src,
        dst,
        payload: payload.to_vec(),
    });
}

/// A trunk answering INVITEs 100/180/200 (and BYE 200) from a UDP socket
/// of its own, noting every datagram both ways.
struct Trunk {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trunk {
    fn start(wire: Wire) -> Trunk {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut uas = Answerer::new(addr, "trunk", Mode::Answer, false);
            let stats = UasStats::default();
            let mut buf = vec![0u8; 65536];
            while !stopping.load(Ordering::Acquire) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                note(&wire, 17, from, addr, &buf[..n]);
                let data = Bytes::copy_from_slice(&buf[..n]);
                for out in uas.on_message(Instant::now(), data, from, Transport::Udp, &stats) {
                    sock.send_to(&out.bytes, out.to).unwrap();
                    note(&wire, 17, addr, out.to, &out.bytes);
                }
            }
        });
        Trunk {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How the caller reaches the gateway.
trait Leg {
    fn local(&self) -> SocketAddr;
    fn send(&mut self, text: &str);
    /// The next message from the gateway (bounded wait).
    fn recv(&mut self) -> Message;
}

struct UdpLeg {
    sock: UdpSocket,
    gw: SocketAddr,
    wire: Wire,
}

impl Leg for UdpLeg {
    fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn send(&mut self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.gw).unwrap();
        note(&self.wire, 17, self.local(), self.gw, text.as_bytes());
    }

    fn recv(&mut self) -> Message {
        let mut buf = vec![0u8; 65536];
        let (n, from) = self.sock.recv_from(&mut buf).expect("an answer within 5 s");
        note(&self.wire, 17, from, self.local(), &buf[..n]);
        Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap()
    }
}

struct TcpLeg {
    conn: TcpStream,
    framer: StreamFramer,
    wire: Wire,
}

impl Leg for TcpLeg {
    fn local(&self) -> SocketAddr {
        self.conn.local_addr().unwrap()
    }

    fn send(&mut self, text: &str) {
        let text = text.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
        self.conn.write_all(text.as_bytes()).unwrap();
        let (me, gw) = (self.local(), self.conn.peer_addr().unwrap());
        note(&self.wire, 6, me, gw, text.as_bytes());
    }

    fn recv(&mut self) -> Message {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok(Some(Frame::Message(b))) = self.framer.next_frame() {
                let (me, gw) = (self.local(), self.conn.peer_addr().unwrap());
                note(&self.wire, 6, gw, me, &b);
                return Message::parse(b).unwrap();
            }
            let n = self.conn.read(&mut buf).expect("an answer within 5 s");
            assert!(n > 0, "the gateway closed the connection");
            self.framer.extend(&buf[..n]);
        }
    }
}

/// One call through the gateway: INVITE, 100/180/200, ACK, BYE, 200.
fn call(leg: &mut dyn Leg, call_id: &str, uri: &str) {
    let call = Call::new(leg.local(), call_id, uri, 1);
    leg.send(&call.invite());
    let ok = loop {
        let m = leg.recv();
        if m.status().is_some_and(|s| s >= 200) {
            break m;
        }
    };
    assert_eq!(ok.status(), Some(200));
    leg.send(&call.ack(&ok));
    leg.send(&call.bye(&ok));
    let bye_ok = leg.recv();
    assert_eq!(bye_ok.status(), Some(200));
    assert!(bye_ok.cseq().unwrap().method == b"BYE");
}

/// A gateway on UDP and TCP through `trunks`, capturing as `capture` says.
fn gateway(trunks: Vec<TrunkConfig>, capture: CaptureConfig) -> Gateway {
    let listen = vec![
        (Transport::Udp, "127.0.0.1:0".parse().unwrap()),
        (Transport::Tcp, "127.0.0.1:0".parse().unwrap()),
    ];
    Gateway::start(Options {
        capture: Some(capture),
        ..Options::new(listen, |adv| one_route(adv, trunks))
    })
    .unwrap()
}

fn wall_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Every message the caller and the trunk saw arrives at the collector
/// once, from and to the addresses they saw, over their transport, byte
/// for byte, with the Call-ID as correlation id, the node id and key, and
/// a time within the test's; and nothing else arrives.
fn every_message_arrives_as_it_went(tcp: bool) {
    let collector = Collector::start();
    let wire: Wire = Arc::default();
    let trunk = Trunk::start(wire.clone());
    let cfg = CaptureConfig {
        node_id: 2001,
        password: Some("s3cret".into()),
        ..CaptureConfig::new(collector.addr)
    };
    let gw = gateway(vec![unprobed("trunk", Peer::udp(trunk.addr))], cfg);
    let before = wall_now();
    let mut leg: Box<dyn Leg> = if tcp {
        let mut conn = TcpStream::connect(gw.bound.tcp[0]).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A keep-alive ping (answered with a pong): neither is a message.
        conn.write_all(b"\r\n\r\n").unwrap();
        Box::new(TcpLeg {
            conn,
            framer: StreamFramer::default(),
            wire: wire.clone(),
        })
    } else {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Box::new(UdpLeg {
            sock,
            gw: gw.bound.udp[0],
            wire: wire.clone(),
        })
    };
    let call_id = if tcp {
        "hep-tcp-1@caller"
    } else {
        "hep-udp-1@caller"
    };
    call(&mut *leg, call_id, "sip:999@gw");
    // The trunk has answered the BYE: its 200 was what the caller got.
    gw.shutdown(Duration::from_secs(1)).unwrap();
    let after = wall_now();
    drop(trunk);
    let mut got = collector.finish();
    let seen = wire.lock().unwrap().clone();
    // INVITE, ACK, BYE in; 100, 180, 200, 200 out; the same on the trunk's
    // side (more only if something was sent again: a machine too busy).
    assert!(seen.len() >= 14, "{seen:#?}");
    for s in &seen {
        let i = got
            .iter()
            .position(|h| {
                h.proto == s.proto && h.src == s.src && h.dst == s.dst && h.payload == s.payload
            })
            .unwrap_or_else(|| {
                panic!(
                    "not exported: {} {} -> {}\n{}",
                    s.proto,
                    s.src,
                    s.dst,
                    String::from_utf8_lossy(&s.payload)
                )
            });
        let h = got.swap_remove(i);
        assert_eq!(h.family, 2);
        assert_eq!(h.proto_type, 1, "SIP");
        assert_eq!(h.node, 2001);
        assert_eq!(h.key.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(h.call_id(), call_id);
        let at = Duration::new(u64::from(h.secs), h.usecs * 1000);
        let floor = Duration::from_secs(before.as_secs()); // whole seconds of the clock's step
        assert!(
            at >= floor && at <= after + Duration::from_secs(1),
            "{at:?} outside {before:?}..{after:?}"
        );
        assert!(h.usecs < 1_000_000);
    }
    assert!(
        got.is_empty(),
        "exported but not seen on the wire: {:#?}",
        got.iter().map(Hep::first_line).collect::<Vec<_>>()
    );
}

#[test]
fn every_message_of_a_udp_call_arrives_as_it_went() {
    every_message_arrives_as_it_went(false);
}

#[test]
fn every_message_of_a_tcp_caller_arrives_as_it_went() {
    every_message_arrives_as_it_went(true);
}

/// What the collector got, by Call-ID: the first lines, in order.
fn by_call(got: &[Hep]) -> HashMap<String, Vec<String>> {
    let mut calls: HashMap<String, Vec<String>> = HashMap::new();
    for h in got {
        calls.entry(h.call_id()).or_default().push(h.first_line());
    }
    calls
}

fn count(lines: &[String], start: &str) -> usize {
    lines.iter().filter(|l| l.starts_with(start)).count()
}

#[test]
fn emergency_mode_exports_the_emergency_call_and_not_the_other() {
    let collector = Collector::start();
    let uas = Uas::start(Mode::Answer);
    let cfg = CaptureConfig {
        calls: CaptureCalls::Emergency,
        ..CaptureConfig::new(collector.addr)
    };
    // Probed: its OPTIONS are not an emergency call's either.
    let gw = gateway(vec![TrunkConfig::new("trunk", Peer::udp(uas.addr()))], cfg);
    let mut caller = Caller::new(gw.bound.udp[0], "cap");
    let normal = caller.invite("sip:1234@gw");
    assert_eq!(
        caller.pump(Duration::from_secs(5), Some(&normal)),
        Some(200)
    );
    let sos = caller.invite("urn:service:sos");
    assert_eq!(caller.pump(Duration::from_secs(5), Some(&sos)), Some(200));
    caller.pump(Duration::from_millis(200), None); // the BYE's 200
    assert!(uas.stats().options.load(Ordering::Relaxed) >= 1, "probed");
    let stats = gw.stats.clone();
    gw.shutdown(Duration::from_secs(1)).unwrap();
    let got = collector.finish();
    let calls = by_call(&got);
    assert_eq!(calls.keys().collect::<Vec<_>>(), [&sos], "{calls:#?}");
    let lines = &calls[&sos];
    // In and out: INVITE, ACK, BYE twice each; 100 (ours, and the trunk's),
    // 180 and 200 twice; the BYE's 200 twice (more only if something was
    // sent again).
    assert!(count(lines, "INVITE ") >= 2, "{lines:#?}");
    assert!(count(lines, "ACK ") >= 2, "{lines:#?}");
    assert!(count(lines, "BYE ") >= 2, "{lines:#?}");
    assert!(count(lines, "SIP/2.0 100") >= 2, "{lines:#?}");
    assert!(count(lines, "SIP/2.0 180") >= 2, "{lines:#?}");
    assert!(count(lines, "SIP/2.0 200") >= 4, "{lines:#?}");
    assert_eq!(
        stats.capture_exported.load(Ordering::Relaxed),
        got.len() as u64
    );
    assert_eq!(dropped(&stats), 0);
}

#[test]
fn failed_mode_exports_the_failed_call_and_not_the_answered_one() {
    let collector = Collector::start();
    let uas = Uas::start(Mode::Answer);
    let cfg = CaptureConfig {
        calls: CaptureCalls::Failed,
        ..CaptureConfig::new(collector.addr)
    };
    let gw = gateway(vec![unprobed("trunk", Peer::udp(uas.addr()))], cfg);
    let mut caller = Caller::new(gw.bound.udp[0], "cap");
    let answered = caller.invite("sip:999@gw");
    assert_eq!(
        caller.pump(Duration::from_secs(5), Some(&answered)),
        Some(200)
    );
    uas.set_mode(Mode::Reject(486));
    let failed = caller.invite("sip:999@gw");
    assert_eq!(
        caller.pump(Duration::from_secs(5), Some(&failed)),
        Some(486)
    );
    caller.pump(Duration::from_millis(200), None); // the caller's ACK lands
    let stats = gw.stats.clone();
    gw.shutdown(Duration::from_secs(1)).unwrap();
    let got = collector.finish();
    let calls = by_call(&got);
    assert_eq!(calls.keys().collect::<Vec<_>>(), [&failed], "{calls:#?}");
    let lines = &calls[&failed];
    // The INVITE in and out, our 100, the trunk's 486 and ours, the ACK
    // the gateway sent the trunk and the caller's: held until the call
    // failed, then sent.
    assert!(count(lines, "INVITE ") >= 2, "{lines:#?}");
    assert!(count(lines, "SIP/2.0 100") >= 1, "{lines:#?}");
    assert!(count(lines, "SIP/2.0 486") >= 2, "{lines:#?}");
    assert!(count(lines, "ACK ") >= 2, "{lines:#?}");
    assert_eq!(
        lines[0], "INVITE sip:999@gw SIP/2.0",
        "the first to cross the edge"
    );
    assert_eq!(dropped(&stats), 0);
}

fn dropped(stats: &IoStats) -> u64 {
    CaptureDrop::ALL
        .iter()
        .map(|r| stats.capture_dropped_count(*r))
        .sum()
}

#[test]
fn a_collector_that_is_not_listening_costs_calls_nothing_and_is_counted() {
    // A port nobody listens on: every packet sent there is refused (ICMP).
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let uas = Uas::start(Mode::Answer);
    let gw = gateway(
        vec![unprobed("trunk", Peer::udp(uas.addr()))],
        CaptureConfig::new(addr),
    );
    let mut caller = Caller::new(gw.bound.udp[0], "cap");
    for n in 0..5 {
        assert_eq!(caller.call("sip:999@gw"), Some(200), "call {n}");
    }
    caller.pump(Duration::from_millis(200), None);
    let stats = gw.stats.clone();
    gw.shutdown(Duration::from_secs(1)).unwrap();
    assert!(
        stats.capture_dropped_count(CaptureDrop::SendError) > 0,
        "refusals counted"
    );
    assert_eq!(stats.capture_dropped_count(CaptureDrop::QueueFull), 0);
}

#[test]
fn a_full_queue_drops_and_counts_and_every_request_is_answered() {
    let collector = Collector::start();
    let uas = Uas::start(Mode::Answer);
    let cfg = CaptureConfig {
        queue: 1,
        ..CaptureConfig::new(collector.addr)
    };
    let gw = gateway(vec![unprobed("trunk", Peer::udp(uas.addr()))], cfg);
    let gw_addr = gw.bound.udp[0];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    // A burst of keep-alive OPTIONS to the gateway itself, all at once.
    const BURST: usize = 300;
    for i in 0..BURST {
        let options = format!(
            "OPTIONS sip:{gw_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKka{i}\r\nMax-Forwards: 70\r\nFrom: <sip:ka@{me}>;tag=k{i}\r\nTo: <sip:{gw_addr}>\r\nCall-ID: ka-{i}@{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(options.as_bytes(), gw_addr).unwrap();
    }
    let mut buf = vec![0u8; 65536];
    let mut answered = 0;
    while answered < BURST {
        let n = sock.recv(&mut buf).expect("every OPTIONS answered");
        assert!(buf[..n].starts_with(b"SIP/2.0 200"));
        answered += 1;
    }
    // A call goes through as well.
    let mut caller = Caller::new(gw_addr, "cap");
    assert_eq!(caller.call("sip:999@gw"), Some(200));
    caller.pump(Duration::from_millis(200), None);
    let stats = gw.stats.clone();
    gw.shutdown(Duration::from_secs(1)).unwrap();
    let (received, sent) = (stats.received.load(Ordering::Relaxed), stats.sent());
    let got = collector.finish();
    let exported = stats.capture_exported.load(Ordering::Relaxed);
    assert!(
        stats.capture_dropped_count(CaptureDrop::QueueFull) > 0,
        "the burst overflowed"
    );
    // Every message received or sent was exported or counted as dropped.
    assert_eq!(exported + dropped(&stats), received + sent);
    assert_eq!(got.len() as u64, exported);
}

/// The capture thread yields to the threads that route calls when CPU is
/// short: it runs `nice` 10 (Linux).
#[cfg(target_os = "linux")]
#[test]
fn the_capture_thread_runs_below_the_call_path() {
    let collector = Collector::start();
    let uas = Uas::start(Mode::Answer);
    let gw = gateway(
        vec![unprobed("trunk", Peer::udp(uas.addr()))],
        CaptureConfig::new(collector.addr),
    );
    // /proc/self/task/TID/stat: "TID (comm) state ..."; nice is field 19.
    let nice_of = |name: &str| -> Vec<i64> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            if &stat[open + 1..close] != name {
                continue;
            }
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            found.push(fields[16].parse().unwrap()); // field 19, from field 3 on
        }
        found
    };
    // Other tests' gateways may be running too: each has its own.
    let lowered = |n: &Vec<i64>| !n.is_empty() && n.iter().all(|n| *n == 10);
    let end = Instant::now() + Duration::from_secs(5);
    let mut capture = nice_of("lifeline-hep");
    while !lowered(&capture) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        capture = nice_of("lifeline-hep");
    }
    assert!(lowered(&capture), "capture threads at nice 10: {capture:?}");
    assert_eq!(lifeline_io::capture::CAPTURE_NICE, 10);
    let io = nice_of("lifeline-udp");
    assert!(!io.is_empty() && io.iter().all(|n| *n == 0), "{io:?}");
    gw.shutdown(Duration::from_secs(1)).unwrap();
    collector.finish();
}
