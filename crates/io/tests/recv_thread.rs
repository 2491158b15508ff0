//! Real UDP sockets are received on by a thread each (`lifeline-udp`),
//! blocked in the kernel: a datagram at a low rate is delivered without
//! any further traffic to push it along, and a stopped gateway's receive
//! threads end and its port is free again. Nothing is timed: "did not
//! hang" bounds only.
#![cfg(all(not(loom), target_os = "linux"))]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeline_io::{Gateway, Options};
use lifeline_kit::{one_route, unprobed, Caller, Mode, Uas};
use lifeline_proxy::{Peer, Transport, TrunkConfig};
use lifeline_sip::Message;

/// A "did not hang" bound, never a pass criterion on speed.
const PATIENCE: Duration = Duration::from_secs(10);

/// The tests count this process's receive threads: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Threads of this process named `lifeline-udp`.
fn udp_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "lifeline-udp")
        })
        .count()
}

/// Wait (bounded) until `udp_threads()` is `n`.
fn wait_for_udp_threads(n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while udp_threads() != n {
        assert!(
            Instant::now() < deadline,
            "did not hang: {} receive threads, waiting for {n}",
            udp_threads()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A gateway on a UDP listener, with one UDP trunk (its own connected
/// socket): two receive threads.
fn gateway(trunk: SocketAddr) -> Gateway {
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let trunks = vec![TrunkConfig::new("trunk", Peer::udp(trunk))];
    Gateway::start(Options::new(listen, |adv| one_route(adv, trunks))).unwrap()
}

fn invite(me: SocketAddr, call: &str) -> String {
    format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag={call}\r\nTo: <sip:999@gw>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Receive on `s` until a message with `status` for `call` arrives.
fn wait_for(s: &UdpSocket, call: &str, status: u16) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 65536];
    loop {
        assert!(
            Instant::now() < deadline,
            "did not hang: no {status} for {call}"
        );
        let Ok(n) = s.recv(&mut buf) else {
            continue;
        };
        let m = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).unwrap();
        if m.status() == Some(status) && m.call_id() == Some(call.as_bytes()) {
            return;
        }
    }
}

/// One call at a time, each sent only once the last one is answered: the
/// INVITE reaches the core from the listener's thread, and the trunk's
/// answers from its socket's thread, each without a later datagram to
/// wake anything.
#[test]
fn at_low_rates_each_datagram_is_delivered_without_further_traffic() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = udp_threads();
    let trunk = Uas::start(Mode::Answer);
    let gw = gateway(trunk.addr());
    wait_for_udp_threads(before + 2);
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap();
    for i in 0..3 {
        let call = format!("slow-{i}");
        caller
            .send_to(invite(me, &call).as_bytes(), gw.bound.udp[0])
            .unwrap();
        wait_for(&caller, &call, 200);
    }
    assert_eq!(trunk.invites(), 3);
    gw.shutdown(Duration::from_secs(1)).unwrap();
    wait_for_udp_threads(before);
}

/// Stopped (shut down, or dropped), a gateway's receive threads end and
/// its sockets close: the port can be bound again, without
/// SO_REUSEPORT.
#[test]
fn a_stopped_gateway_ends_its_receive_threads_and_frees_its_port() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = udp_threads();
    let trunk = Uas::start(Mode::Answer);

    let gw = gateway(trunk.addr());
    wait_for_udp_threads(before + 2);
    let port = gw.bound.udp[0];
    gw.shutdown(Duration::from_secs(1)).unwrap();
    wait_for_udp_threads(before);
    UdpSocket::bind(port).expect("the port is free after a shutdown");

    let gw = gateway(trunk.addr());
    wait_for_udp_threads(before + 2);
    let port = gw.bound.udp[0];
    drop(gw);
    wait_for_udp_threads(before);
    UdpSocket::bind(port).expect("the port is free after a drop");
}

/// Real UDP sockets, except that a socket connected to `unroutable` cannot
/// be opened: `connect` fails as with no route to the trunk yet.
#[derive(Debug)]
struct NoRouteNet {
    unroutable: SocketAddr,
}

impl lifeline_io::transport::DatagramNet for NoRouteNet {
    fn bind(
        &self,
        rt: &tokio::runtime::Handle,
        addr: SocketAddr,
        connect: Option<SocketAddr>,
    ) -> std::io::Result<Arc<dyn lifeline_io::transport::DatagramSocket>> {
        if connect == Some(self.unroutable) {
            return Err(std::io::ErrorKind::NetworkUnreachable.into());
        }
        lifeline_io::transport::real().bind(rt, addr, connect)
    }
}

/// A trunk whose socket cannot be opened at start does not stop the
/// gateway: it starts, and reaches the trunk from its listener.
#[test]
fn a_trunk_without_a_socket_at_start_does_not_stop_the_gateway() {
    let trunk = Uas::start(Mode::Answer);
    let at = trunk.addr();
    let net = Arc::new(NoRouteNet { unroutable: at });
    let gw = Gateway::start(Options {
        net,
        ..Options::new(
            vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())],
            move |adv| one_route(adv, vec![unprobed("no-socket", Peer::udp(at))]),
        )
    })
    .expect("the gateway starts");
    let mut caller = Caller::new(gw.bound.udp[0], "noroute");
    assert_eq!(caller.call("sip:999@gw.example"), Some(200));
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
