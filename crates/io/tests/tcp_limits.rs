//! The bounds on TCP ([`TcpLimits`]) over real loopback sockets: the
//! per-source and global connection caps, the deadline on a message that
//! arrives a byte at a time, and the write queue of a peer that does not
//! read. TCP timers run on tokio's clock, so nothing here is timed: each
//! test asserts what happened and what was counted, and every wait is
//! bounded.
#![cfg(not(loom))]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeline_io::{EventSink, Gateway, IoStats, Options, TcpLimits};
use lifeline_kit::{closed_by_peer, one_route, unprobed, Uas, UasConfig};
use lifeline_proxy::{
    AttemptFailure, Event, Peer, ProxyConfig, RouteConfig, RouteMatch, Transport,
};
use lifeline_sip::{Frame, Message, StreamFramer};
use socket2::{Domain, Protocol, Socket, Type};

/// A gateway listening on UDP and TCP on 127.0.0.1 with `tcp` limits, and
/// one UDP trunk it does not probe (the tests are about callers'
/// connections; OPTIONS to the gateway itself are answered 200 by it).
fn gateway(tcp: TcpLimits) -> (Gateway, Uas) {
    let trunk = Uas::with(UasConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let trunks = vec![unprobed("t", Peer::udp(trunk.addr()))];
    let listen = vec![
        (Transport::Udp, "127.0.0.1:0".parse().unwrap()),
        (Transport::Tcp, "127.0.0.1:0".parse().unwrap()),
    ];
    let gw = Gateway::start(Options {
        tcp,
        ..Options::new(listen, |adv| one_route(adv, trunks))
    })
    .unwrap();
    (gw, trunk)
}

/// A connection to `to` from the address `from` (any loopback address:
/// the whole of 127/8 is local).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// An OPTIONS addressed to the gateway at `gw` itself (answered 200 by
/// it, not forwarded), from `me`.
fn options_to_gateway(gw: SocketAddr, me: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:{gw} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKlim{n}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=l{n}\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: lim-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The status of the next message on `conn` (bounded: 10 s of silence,
/// or a close, is `None`).
fn next_status(conn: &mut TcpStream, framer: &mut StreamFramer) -> Option<u16> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(Frame::Message(b))) = framer.next_frame() {
            return Message::parse(b).ok()?.status();
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => framer.extend(&buf[..n]),
        }
    }
}

/// Send an OPTIONS to the gateway on `conn` and return its answer's status
/// (`None`: no answer within 10 s, or the connection closed).
fn ask(conn: &mut TcpStream, n: u32) -> Option<u16> {
    let (gw, me) = (conn.peer_addr().unwrap(), conn.local_addr().unwrap());
    conn.write_all(options_to_gateway(gw, me, n).as_bytes())
        .ok()?;
    next_status(conn, &mut StreamFramer::default())
}

/// Wait (at most 10 s) for `counter` to read `want`; what it last read.
fn wait_for(counter: &AtomicU64, want: u64) -> u64 {
    wait_until(counter, |n| n == want)
}

/// Wait (at most 10 s) until `counter` satisfies `done`; what it last read.
fn wait_until(counter: &AtomicU64, done: impl Fn(u64) -> bool) -> u64 {
    let started = Instant::now();
    loop {
        let now = counter.load(Ordering::Relaxed);
        if done(now) || started.elapsed() > Duration::from_secs(10) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// No TCP bound other than the one under test was reached.
fn no_other_closes(s: &IoStats) {
    assert_eq!(get(&s.tcp_idle_closed), 0);
    assert_eq!(get(&s.tcp_message_timeouts), 0);
    assert_eq!(get(&s.tcp_write_queue_overflows), 0);
}

#[test]
fn a_source_over_its_cap_is_refused_while_another_is_served() {
    let (gw, _trunk) = gateway(TcpLimits {
        max_connections_per_ip: 2,
        ..TcpLimits::default()
    });
    let to = gw.bound.tcp[0];
    let mut a = connect_from("127.0.0.1", to);
    assert_eq!(ask(&mut a, 1), Some(200));
    let mut b = connect_from("127.0.0.1", to);
    assert_eq!(ask(&mut b, 2), Some(200));
    // A third from 127.0.0.1 is reset as soon as it is accepted.
    let mut c = connect_from("127.0.0.1", to);
    assert!(closed_by_peer(&mut c), "the third connection was served");
    assert_eq!(get(&gw.stats.tcp_refused_per_ip), 1);
    // Another source is served.
    let mut d = connect_from("127.0.0.2", to);
    assert_eq!(ask(&mut d, 3), Some(200));
    assert_eq!(get(&gw.stats.tcp_open), 3);
    // One from 127.0.0.1 closes: its place is free again.
    drop(a);
    assert_eq!(wait_for(&gw.stats.tcp_open, 2), 2);
    let mut e = connect_from("127.0.0.1", to);
    assert_eq!(ask(&mut e, 4), Some(200));
    assert_eq!(get(&gw.stats.tcp_refused_per_ip), 1);
    assert_eq!(get(&gw.stats.tcp_accept_paused), 0);
    no_other_closes(&gw.stats);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn at_max_connections_accept_waits_until_one_closes() {
    let (gw, _trunk) = gateway(TcpLimits {
        max_connections: 2,
        ..TcpLimits::default()
    });
    let to = gw.bound.tcp[0];
    let mut a = connect_from("127.0.0.1", to);
    assert_eq!(ask(&mut a, 1), Some(200));
    let mut b = connect_from("127.0.0.2", to);
    assert_eq!(ask(&mut b, 2), Some(200));
    // Both places taken: the listener stops accepting.
    assert_eq!(wait_for(&gw.stats.tcp_accept_paused, 1), 1);
    // The kernel completes the next handshake (the backlog), but the
    // gateway does not take the connection: its request is not answered.
    let mut c = connect_from("127.0.0.3", to);
    let me = c.local_addr().unwrap();
    c.write_all(options_to_gateway(to, me, 3).as_bytes())
        .unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = c.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)),
        "served over the cap: {early:?}"
    );
    assert_eq!(get(&gw.stats.tcp_open), 2);
    assert_eq!(get(&gw.stats.tcp_refused_per_ip), 0);
    // One closes: the waiting connection is taken and answered.
    drop(a);
    let mut framer = StreamFramer::default();
    assert_eq!(next_status(&mut c, &mut framer), Some(200));
    assert_eq!(ask(&mut b, 4), Some(200), "the others are still served");
    assert_eq!(get(&gw.stats.tcp_open), 2);
    no_other_closes(&gw.stats);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_message_trickled_past_message_timeout_is_reset() {
    let (gw, _trunk) = gateway(TcpLimits {
        message_timeout: Duration::from_millis(300),
        ..TcpLimits::default()
    });
    let mut conn = connect_from("127.0.0.1", gw.bound.tcp[0]);
    let me = conn.local_addr().unwrap();
    // One byte every 50 ms: the message would take over 12 s; each byte
    // keeps the connection from being idle.
    let mut writer = conn.try_clone().unwrap();
    let message = options_to_gateway(gw.bound.tcp[0], me, 1).into_bytes();
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let trickle = std::thread::spawn(move || {
        for b in message {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            sent2.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(closed_by_peer(&mut conn), "the slow message was let be");
    assert_eq!(get(&gw.stats.tcp_message_timeouts), 1);
    assert_eq!(get(&gw.stats.tcp_idle_closed), 0);
    assert_eq!(get(&gw.stats.received), 0, "no message was framed");
    assert!(get(&sent) > 0);
    trickle.join().unwrap();
    assert_eq!(wait_for(&gw.stats.tcp_open, 0), 0);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_message_within_message_timeout_is_served_and_the_deadline_is_per_message() {
    let timeout = Duration::from_secs(2);
    let (gw, _trunk) = gateway(TcpLimits {
        message_timeout: timeout,
        ..TcpLimits::default()
    });
    let mut conn = connect_from("127.0.0.1", gw.bound.tcp[0]);
    let me = conn.local_addr().unwrap();
    let mut framer = StreamFramer::default();
    let started = Instant::now();
    // Each message in four pieces, 100 ms apart: well within the deadline.
    let mut send_slowly = |conn: &mut TcpStream, n: u32| {
        let message = options_to_gateway(gw.bound.tcp[0], me, n).into_bytes();
        for piece in message.chunks(message.len().div_ceil(4)) {
            conn.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        next_status(conn, &mut framer)
    };
    assert_eq!(send_slowly(&mut conn, 1), Some(200));
    // Half a keep-alive, then longer than the deadline before the rest:
    // line ends between messages are not a message.
    conn.write_all(b"\r\n").unwrap();
    std::thread::sleep(timeout + Duration::from_millis(500));
    conn.write_all(b"\r\n").unwrap();
    let mut pong = [0u8; 2];
    conn.read_exact(&mut pong).expect("a pong");
    assert_eq!(&pong, b"\r\n");
    // The connection has lived longer than the deadline: the next message
    // has its own.
    assert!(started.elapsed() > timeout);
    assert_eq!(send_slowly(&mut conn, 2), Some(200));
    conn.write_all(b"\r\n\r\n").unwrap();
    conn.read_exact(&mut pong).expect("still open");
    assert_eq!(&pong, b"\r\n");
    no_other_closes(&gw.stats);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

/// A client socket with a small receive buffer, so that what the gateway
/// writes to a client that does not read backs up quickly.
fn small_window_connect(to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn a_caller_that_does_not_read_is_reset_when_its_write_queue_overflows() {
    let (gw, _trunk) = gateway(TcpLimits {
        write_queue_bytes: 64 * 1024,
        ..TcpLimits::default()
    });
    let to = gw.bound.tcp[0];
    let mut conn = small_window_connect(to);
    let me = conn.local_addr().unwrap();
    // OPTIONS after OPTIONS, their 200s never read: the socket buffers
    // fill, then the gateway's queue for the connection does.
    let mut writer = conn.try_clone().unwrap();
    let stats = gw.stats.clone();
    let flood = std::thread::spawn(move || {
        let started = Instant::now();
        for n in 1..200_000 {
            let overflowed = get(&stats.tcp_write_queue_overflows) > 0;
            if overflowed || started.elapsed() > Duration::from_secs(60) {
                return n;
            }
            let options = options_to_gateway(to, me, n);
            if writer.write_all(options.as_bytes()).is_err() {
                return n;
            }
            if n % 64 == 0 {
                // Let the core keep up: its queue is not under test.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        200_000
    });
    let sent = flood.join().unwrap();
    assert_eq!(
        get(&gw.stats.tcp_write_queue_overflows),
        1,
        "{sent} requests sent; {:?}",
        gw.stats
    );
    assert!(closed_by_peer(&mut conn), "the connection was kept");
    assert_eq!(wait_for(&gw.stats.tcp_open, 0), 0);
    assert_eq!(get(&gw.stats.tcp_idle_closed), 0);
    assert_eq!(get(&gw.stats.tcp_message_timeouts), 0);
    // The gateway still serves others.
    let mut other = connect_from("127.0.0.1", gw.bound.tcp[0]);
    assert_eq!(ask(&mut other, 1), Some(200));
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

/// A TCP "trunk" that accepts connections and never reads them (a small
/// receive buffer, so that the gateway's writes back up quickly). Counts
/// the connections it accepted; keeps them open until dropped.
struct DeafTrunk {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DeafTrunk {
    fn start() -> DeafTrunk {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        s.bind(&bind.into()).unwrap();
        s.listen(16).unwrap();
        let listener: TcpListener = s.into();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted2, stop2) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        accepted2.fetch_add(1, Ordering::Relaxed);
                        held.push(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DeafTrunk {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DeafTrunk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An INVITE from `me` about 4 KB long (its body padded), so that a few
/// dozen fill a connection's queue.
fn padded_invite(me: SocketAddr, n: u32) -> String {
    let body = format!("v=0\r\n{}", "a=x-pad:0123456789abcdef\r\n".repeat(150));
    format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdeaf{n}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=d{n}\r\nTo: <sip:999@gw>\r\nCall-ID: deaf-{n}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_trunk_that_does_not_read_is_reset_and_the_call_that_did_not_fit_fails_over() {
    let deaf = DeafTrunk::start();
    let backup = Uas::with(UasConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let failures: Arc<Mutex<Vec<(usize, AttemptFailure)>>> = Arc::default();
    let f2 = failures.clone();
    let sink: EventSink = Box::new(move |ev, _, _| {
        if let Event::AttemptFailed { trunk, reason, .. } = ev {
            f2.lock().unwrap().push((trunk.index(), *reason));
        }
    });
    let trunks = vec![
        unprobed(
            "deaf",
            Peer {
                addr: deaf.addr,
                transport: Transport::Tcp,
            },
        ),
        unprobed("backup", Peer::udp(backup.addr())),
    ];
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let gw = Gateway::start(Options {
        sinks: vec![sink],
        tcp: TcpLimits {
            write_queue_bytes: 64 * 1024,
            ..TcpLimits::default()
        },
        ..Options::new(listen, move |adv| {
            // No timer moves a call off the deaf trunk during the test:
            // only the overflow can.
            let route = RouteConfig {
                failover_after: Duration::from_secs(60),
                progress_timeout: Duration::from_secs(60),
                ..RouteConfig::new("all", RouteMatch::Any, &["deaf", "backup"])
            };
            ProxyConfig::new(adv, trunks, vec![route])
        })
    })
    .unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap();
    // The Call-IDs of the calls answered 200, from what `caller` has
    // received so far (read as it comes, so that 100 Tryings do not fill
    // its buffer).
    let mut answered = Vec::new();
    let mut buf = [0u8; 65536];
    let mut take_answers = |answered: &mut Vec<String>| {
        while let Ok(len) = caller.recv(&mut buf) {
            let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(&buf[..len])) else {
                continue;
            };
            if m.status() == Some(200) {
                answered.push(String::from_utf8_lossy(m.call_id().unwrap()).to_string());
            }
        }
    };
    caller.set_nonblocking(true).unwrap();
    // One call at a time (each INVITE forwarded before the next is sent),
    // until one does not fit.
    let mut calls = 0;
    while get(&gw.stats.tcp_write_queue_overflows) == 0 && calls < 2_000 {
        calls += 1;
        let before = get(&gw.stats.sent_requests);
        caller
            .send_to(padded_invite(me, calls).as_bytes(), gw.bound.udp[0])
            .unwrap();
        // (Two once the INVITE that did not fit is sent to the backup.)
        let now = wait_until(&gw.stats.sent_requests, |n| n > before);
        assert!(now > before, "call {calls} not forwarded");
        take_answers(&mut answered);
    }
    assert_eq!(get(&gw.stats.tcp_write_queue_overflows), 1, "{calls} calls");
    // That call alone moved on, at once, and was answered by the backup.
    caller.set_nonblocking(false).unwrap();
    caller
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let started = Instant::now();
    while answered.is_empty() && started.elapsed() < Duration::from_secs(10) {
        take_answers(&mut answered);
    }
    assert_eq!(
        failures.lock().unwrap().clone(),
        [(0, AttemptFailure::TransportError)],
        "{calls} calls"
    );
    assert_eq!(answered, [format!("deaf-{calls}")]);
    assert_eq!(backup.invites(), 1);
    assert_eq!(deaf.accepted.load(Ordering::Relaxed), 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
