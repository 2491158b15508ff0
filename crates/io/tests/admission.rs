//! Admission over real loopback sockets: per-source limits answered on the
//! IO threads (the trunk never sees what was refused), and new calls shed
//! while the core is behind, with emergency calls still queued and carried.
//! Nothing is timed, only counted.
#![cfg(not(loom))]

use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_io::{Gateway, Options};
use lifeline_kit::{one_route, Caller, Mode, Uas};
use lifeline_proxy::{LimitsConfig, Peer, Rate, Refusal, Transport, TrunkConfig};
use lifeline_sip::{HeaderName, Message};

fn gateway(trunk: std::net::SocketAddr, limits: LimitsConfig) -> Gateway {
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let gw = Gateway::start(Options::new(listen, move |adv| {
        let mut cfg = one_route(adv, vec![TrunkConfig::new("t", Peer::udp(trunk))]);
        cfg.limits = limits;
        cfg
    }))
    .unwrap();
    // Probed until Up: non-emergency calls use only a trunk known to work.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let up = gw.with_proxy(|p, _| {
            let id = p.health().find("t").unwrap();
            p.health().trunk(id).unwrap().ready()
        });
        if up == Some(true) {
            return gw;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the trunk never came Up");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const NUMBER: &str = "sip:+442079460000@gw";

#[test]
fn a_source_over_its_rate_gets_503_from_the_io_thread_and_others_do_not() {
    let trunk = Uas::start(Mode::Answer);
    let gw = gateway(
        trunk.addr(),
        LimitsConfig {
            per_source: Some(Rate { rate: 1, burst: 2 }),
            ..LimitsConfig::default()
        },
    );
    let mut caller = Caller::from_ip(ip("127.0.0.1"), gw.bound.udp[0], "rate");
    assert_eq!(caller.call("sip:999@gw"), Some(200));
    let first = caller.call(NUMBER);
    assert_eq!(first, Some(200));
    let second = caller.call(NUMBER);
    assert_eq!(second, Some(200));
    // The burst is spent (a token a second comes back; three calls take
    // far less than the half second this could allow, but the check is on
    // the count, not the clock: at most one more could pass).
    let third = caller.call(NUMBER);
    let fourth = caller.call(NUMBER);
    assert!([third, fourth].contains(&Some(503)), "{third:?} {fourth:?}");
    let refused = gw.stats.refused_count(Refusal::SourceRate, true);
    assert!(refused >= 1);
    assert_eq!(
        trunk.invites(),
        5 - refused,
        "refused calls never reach the trunk"
    );
    // The same source's emergency calls have no limit here; another source
    // has its own bucket.
    assert_eq!(caller.call("sip:999@gw"), Some(200));
    let mut other = Caller::from_ip(ip("127.0.0.2"), gw.bound.udp[0], "other");
    assert_eq!(other.call(NUMBER), Some(200));
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn while_the_core_is_behind_new_requests_are_shed_and_emergency_calls_wait_their_turn() {
    let trunk = Uas::start(Mode::Answer);
    let gw = gateway(trunk.addr(), LimitsConfig::default());
    let mut caller = Caller::from_ip(ip("127.0.0.3"), gw.bound.udp[0], "sos");
    assert_eq!(caller.call("sip:999@gw"), Some(200));
    // Hold the core: everything that arrives now queues.
    let (hold, release) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    // From a thread of its own: the thread that queues an input runs it
    // when the core is free. When the core is not free, the thread that
    // holds it runs it (flat combining) — a socket's receive thread, which
    // must not be the one held: then the call is sent again.
    let input = gw.input.clone();
    let holder = std::thread::spawn(move || {
        let me = std::thread::current().id();
        let release = Arc::new(Mutex::new(release));
        loop {
            let (ran_tx, ran) = std::sync::mpsc::channel::<bool>();
            let (release, held_tx) = (release.clone(), held_tx.clone());
            input.send(lifeline_io::Input::Call(Box::new(move |_, _| {
                let mine = std::thread::current().id() == me;
                let _ = ran_tx.send(mine);
                if mine {
                    let _ = held_tx.send(());
                    if let Ok(r) = release.lock() {
                        let _ = r.recv_timeout(Duration::from_secs(30));
                    }
                }
            })));
            if ran.recv_timeout(Duration::from_secs(10)) == Ok(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    held.recv_timeout(Duration::from_secs(10)).unwrap();
    // More new requests than the queue's shedding share, from one socket:
    // OPTIONS to the gateway itself (answered by the core; a flood of
    // INVITEs would test the trunk's socket buffer as much as the gateway).
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = flood.local_addr().unwrap();
    let n = lifeline_io::admission::SHED_ENTRIES + 200;
    for i in 0..n {
        let gw_addr = gw.bound.udp[0];
        let options = format!(
            "OPTIONS sip:{gw_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-f{i}\r\nMax-Forwards: 70\r\nFrom: <sip:flood@{me}>;tag=f{i}\r\nTo: <sip:{gw_addr}>\r\nCall-ID: flood-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        flood.send_to(options.as_bytes(), gw_addr).unwrap();
        if i % 256 == 255 {
            // Let the IO thread keep up (the socket buffer is not the
            // subject here).
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Then an emergency call, from another source.
    let sos = caller.invite("urn:service:sos");
    // The 503s came from the IO thread while the core was held.
    let mut shed = 0;
    let mut buf = vec![0u8; 65536];
    while let Ok(len) = flood.recv(&mut buf) {
        let m = Message::parse(bytes::Bytes::copy_from_slice(&buf[..len])).unwrap();
        if m.status() == Some(503) {
            assert_eq!(
                m.header(HeaderName::RetryAfter).map(|h| h.value.to_vec()),
                Some(b"5".to_vec())
            );
            shed += 1;
        }
    }
    assert!(shed >= 1, "some new calls were shed");
    // (Every refusal is counted; this socket's buffer may not have held
    // every answer.)
    let refused = gw.stats.refused_count(Refusal::Overload, true);
    assert!(refused >= shed, "{refused} counted, {shed} received");
    assert!(gw.stats.queued_bytes.load(Ordering::Relaxed) > 0);
    hold.send(()).unwrap();
    holder.join().unwrap();
    // Released: the queued requests are answered, and the emergency call
    // goes through.
    assert_eq!(caller.pump(Duration::from_secs(20), Some(&sos)), Some(200));
    assert_eq!(trunk.invites(), 2, "the first call and the emergency call");
    let answered = gw
        .with_proxy(|p, _| p.stats().requests)
        .expect("the core answers");
    // Every request not shed reached the core: the first call's INVITE,
    // ACK and BYE, the flood less what was shed, the emergency INVITE (and
    // its ACK and BYE, if they came already).
    let sos_invite = 1;
    assert!(
        answered >= 3 + (n as u64 - refused) + sos_invite,
        "{answered}"
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
