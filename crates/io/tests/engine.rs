//! The engine over real loopback sockets: trunks are plain UDP (or TCP)
//! sockets answering like a UAS, driven by threads; nothing is timed, only
//! counted and ordered.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lifeline_io::{Gateway, Options};
use lifeline_kit::{one_route, unprobed, Caller, Mode, Uas, UasConfig};
use lifeline_proxy::{Peer, Transport, TrunkConfig};
use lifeline_sip::{Frame, Message, StreamFramer};

fn gateway(primary: SocketAddr, backup: SocketAddr) -> Gateway {
    let trunks = vec![
        TrunkConfig::new("primary", Peer::udp(primary)),
        TrunkConfig::new("backup", Peer::udp(backup)),
    ];
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    Gateway::start(Options::new(listen, |adv| one_route(adv, trunks))).unwrap()
}

#[test]
fn calls_go_through_and_a_killed_primary_fails_over() {
    let mut primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let gw = gateway(primary.addr(), backup.addr());
    let mut caller = Caller::new(gw.bound.udp[0], "e2e");
    for _ in 0..5 {
        assert_eq!(caller.call("sip:999@gw"), Some(200));
    }
    assert_eq!(primary.invites(), 5);
    primary.kill();
    for n in 5..10 {
        assert_eq!(
            caller.call("sip:999@gw"),
            Some(200),
            "call {n} after the kill"
        );
    }
    assert_eq!(backup.invites(), 5);
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
    let primary = Uas::start(Mode::Reject(503));
    let backup = Uas::start(Mode::Answer);
    let gw = gateway(primary.addr(), backup.addr());
    let mut caller = Caller::new(gw.bound.udp[0], "e2e");
    assert_eq!(caller.call("sip:999@gw"), Some(200));
    assert_eq!(primary.invites(), 1);
    assert_eq!(backup.invites(), 1);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

// Stream transport end to end: a caller over TCP, a trunk over TCP.

#[test]
fn a_tcp_caller_and_a_tcp_trunk() {
    let uas = Uas::with(
        UasConfig {
            tcp: true,
            ..UasConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let trunk = uas.addr();
    let listen = vec![
        (Transport::Udp, "127.0.0.1:0".parse().unwrap()),
        (Transport::Tcp, "127.0.0.1:0".parse().unwrap()),
    ];
    let peer = Peer {
        addr: trunk,
        transport: Transport::Tcp,
    };
    let config = move |adv| one_route(adv, vec![unprobed("tcp", peer)]);
    let gw = Gateway::start(Options::new(listen, config)).unwrap();
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
    assert_eq!(uas.invites(), 1);
    assert_eq!(uas.seen()[0], (Transport::Tcp, "INVITE".into()));
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
