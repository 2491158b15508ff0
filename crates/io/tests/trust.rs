//! Forged ICMP errors on real sockets: a raw socket sends ICMP port
//! unreachable messages that name the gateway's socket for each trunk, as an
//! attacker off the path can, at a high rate, while emergency calls run.
//! None of them may fail.
//!
//! Needs a raw socket (root or CAP_NET_RAW); without one the test says so
//! and passes without running.
#![cfg(not(loom))]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_health::{EventKind, State};
use lifeline_io::{EventSink, Gateway, Options};
use lifeline_kit::{Caller, Mode, Uas};
use lifeline_proxy::{
    Event, Peer, ProxyConfig, RouteConfig, RouteMatch, Seed, Transport, TrunkConfig,
};
use socket2::{Domain, Protocol, Socket, Type};

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP port unreachable (type 3, code 3) quoting a UDP datagram from
/// `from` to `to`: what the kernel of `to` would send if nothing listened
/// there, and what anyone can send.
fn port_unreachable(from: SocketAddrV4, to: SocketAddrV4) -> Vec<u8> {
    let payload = b"INVITE sip:999@gw SIP/2.0\r\n";
    let udp_len = 8 + payload.len() as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&from.ip().octets());
    ip.extend_from_slice(&to.ip().octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut quoted = ip;
    quoted.extend_from_slice(&from.port().to_be_bytes());
    quoted.extend_from_slice(&to.port().to_be_bytes());
    quoted.extend_from_slice(&udp_len.to_be_bytes());
    quoted.extend_from_slice(&[0, 0]);
    quoted.extend_from_slice(payload);
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    icmp
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("loopback IPv4 expected"),
    }
}

#[test]
fn forged_icmp_at_a_high_rate_for_every_trunk_fails_no_emergency_call() {
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("no raw socket ({e}): needs root or CAP_NET_RAW; not run");
            return;
        }
    };
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let (p, b) = (primary.addr(), backup.addr());
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let config = move |adv| {
        let mut cfg = ProxyConfig::new(
            adv,
            vec![
                TrunkConfig::new("primary", Peer::udp(p)),
                TrunkConfig::new("backup", Peer::udp(b)),
            ],
            vec![RouteConfig::new(
                "emergency",
                RouteMatch::Emergency,
                &["primary", "backup"],
            )],
        );
        cfg.seed = Seed::from(7);
        cfg
    };
    // Which trunks went Down, and why.
    let downs: Arc<Mutex<Vec<String>>> = Arc::default();
    let d2 = downs.clone();
    let sink: EventSink = Box::new(move |ev, _, px| {
        if let Event::Trunk(t) = ev {
            if let EventKind::State {
                to: State::Down,
                reason,
                ..
            } = t.kind
            {
                let name = px.trunk(t.trunk).map(str::to_string);
                d2.lock()
                    .unwrap()
                    .push(format!("{} ({reason})", name.unwrap_or_default()));
            }
        }
    });
    let mut opts = Options::new(listen, config);
    opts.sinks.push(sink);
    let gw = Gateway::start(opts).unwrap();
    let me = v4(gw.bound.udp[0]);
    let mut caller = Caller::new(gw.bound.udp[0], "forged");
    // The trunks' sockets are opened on the first send: one call first.
    assert_eq!(caller.call("sip:999@gw"), Some(200));

    // One forged error for each trunk every 500 µs, for as long as calls run.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let forger = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let packets = [port_unreachable(me, v4(p)), port_unreachable(me, v4(b))];
        let to = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).into();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for packet in &packets {
                    if raw.send_to(packet, &to).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut failed = Vec::new();
    let uris = ["sip:999@gw", "urn:service:sos", "sip:112@gw"];
    for n in 0..200 {
        let uri = uris[n % uris.len()];
        let status = caller.call(uri);
        if status != Some(200) {
            failed.push((n, uri, status));
        }
    }
    stop.store(true, Ordering::Relaxed);
    forger.join().unwrap();
    assert_eq!(failed, [], "emergency calls failed under forged ICMP");
    assert!(sent.load(Ordering::Relaxed) > 100);
    // The forged errors did reach the gateway: each trunk went Down on them
    // (its calls' messages and its probes refused, as far as it could tell).
    let downs = downs.lock().unwrap().clone();
    for trunk in ["primary", "backup"] {
        assert!(
            downs
                .iter()
                .any(|d| d == &format!("{trunk} (live: transport error (port unreachable))")),
            "{downs:?}"
        );
    }
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
