//! The clock seam: a gateway on real loopback sockets reading a
//! [`ManualClock`], so its timers fire when the test moves time, at exact
//! instants. Waits for datagrams are bounded in real time; the instants
//! asserted are the clock's.
#![cfg(not(loom))]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_io::clock::{Clock, ManualClock};
use lifeline_io::{EventSink, Gateway, Options};
use lifeline_kit::{one_route, unprobed, Caller};
use lifeline_proxy::{AttemptFailure, Event, Peer, Transport, TrunkId};
use lifeline_sip::{Message, MessageWriter};

/// A trunk socket: what it receives, and a way to answer.
struct Trunk {
    sock: UdpSocket,
}

impl Trunk {
    fn bind() -> Trunk {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Trunk { sock }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// The next request (bounded wait), and who sent it.
    fn request(&self) -> (Message, SocketAddr) {
        let mut buf = [0u8; 65536];
        loop {
            let (n, from) = self.sock.recv_from(&mut buf).expect("a request in 5 s");
            let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
            if m.status().is_none() {
                return (m, from);
            }
        }
    }

    /// Answer `req` with `code` (RFC 3261 §12.1.1).
    fn answer(&self, req: &Message, code: u16, to: SocketAddr) {
        let contact = format!("<sip:uas@{}>", self.addr());
        let w = MessageWriter::dialog_response_to(req, code, "X", b"uas", contact.as_bytes());
        let w = w.unwrap();
        self.sock.send_to(&w.finish(), to).unwrap();
    }
}

/// (event, instant the core handled it) for attempts, by trunk.
type Log = Arc<Mutex<Vec<(String, TrunkId, Instant)>>>;

#[test]
fn a_silent_primary_fails_over_exactly_failover_after_later() {
    let (primary, backup) = (Trunk::bind(), Trunk::bind());
    let (paddr, baddr) = (primary.addr(), backup.addr());
    let clock = Arc::new(ManualClock::new());
    let log: Log = Arc::default();
    let l2 = log.clone();
    let sink: EventSink = Box::new(move |ev, now, _| {
        let entry = match ev {
            Event::AttemptStarted { trunk, .. } => ("started", *trunk),
            Event::AttemptFailed {
                trunk,
                reason: AttemptFailure::NoResponse,
                ..
            } => ("no-response", *trunk),
            _ => return,
        };
        l2.lock().unwrap().push((entry.0.to_string(), entry.1, now));
    });
    let failover = Duration::from_millis(200);
    let trunks = vec![
        unprobed("primary", Peer::udp(paddr)),
        unprobed("backup", Peer::udp(baddr)),
    ];
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let gw = Gateway::start(Options {
        sinks: vec![sink],
        tick_every: Duration::from_millis(250),
        clock: clock.clone(),
        ..Options::new(listen, move |adv| {
            let mut config = one_route(adv, trunks);
            config.routes[0].failover_after = failover;
            config
        })
    })
    .unwrap();
    let start = clock.now();
    let mut caller = Caller::new(gw.bound.udp[0], "clock");
    let call = caller.invite("sip:999@gw");
    // The primary gets it and says nothing.
    let (to_primary, _) = primary.request();
    assert_eq!(to_primary.method_bytes(), Some(&b"INVITE"[..]));

    // 1 ms short of the failover timer: still waiting for the primary.
    clock.advance(failover - Duration::from_millis(1));
    gw.with_proxy(|_, _| ()).unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "started");
    assert_eq!(seen[0].2, start, "sent at the instant it arrived");

    // On the instant: given up, and the backup tried at once.
    clock.advance(Duration::from_millis(1));
    gw.with_proxy(|_, _| ()).unwrap();
    let seen = log.lock().unwrap().clone();
    let names: Vec<&str> = seen.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(names, ["started", "no-response", "started"], "{seen:?}");
    assert_ne!(seen[0].1, seen[2].1, "another trunk");
    assert_eq!(seen[1].2, start + failover, "given up exactly then");
    assert_eq!(seen[2].2, start + failover, "the backup tried at once");

    // The backup answers; the caller gets its 200.
    let (req, from) = backup.request();
    assert_eq!(req.method_bytes(), Some(&b"INVITE"[..]));
    backup.answer(&req, 200, from);
    let status = caller.pump(Duration::from_secs(5), Some(&call));
    assert_eq!(status, Some(200));
    gw.shutdown(Duration::ZERO).unwrap();
}
