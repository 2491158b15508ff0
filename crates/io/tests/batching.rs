//! Batched UDP on real loopback sockets: one receive call takes what the
//! kernel holds (`recvmmsg` on Linux), one send call a run of datagrams
//! (`sendmmsg`); order and completeness are kept, errors are handled per
//! datagram, and nothing waits to fill a batch. Nothing is timed: counts,
//! order, and "did not hang" bounds only.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_io::transport::{self, DatagramSocket, RecvBatch, RECV_BATCH};
use lifeline_io::{Gateway, Options};
use lifeline_kit::{one_route, Mode, Uas};
use lifeline_proxy::{Peer, Transport, TrunkConfig};
use lifeline_sip::Message;

/// A "did not hang" bound, never a pass criterion on speed.
const PATIENCE: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn bind(rt: &tokio::runtime::Runtime, connect: Option<SocketAddr>) -> Arc<dyn DatagramSocket> {
    transport::real()
        .bind(rt.handle(), "127.0.0.1:0".parse().unwrap(), connect)
        .unwrap()
}

/// Datagram `i`: its number, then filler to a size that varies with `i`.
fn datagram(i: usize) -> Vec<u8> {
    let mut d = format!("{i:05}:").into_bytes();
    d.resize(7 + (i * 37) % 900, b'x');
    d
}

fn number(d: &[u8]) -> usize {
    std::str::from_utf8(&d[..5]).unwrap().parse().unwrap()
}

#[test]
fn a_burst_is_received_complete_in_order_and_in_fewer_calls() {
    let rt = runtime();
    let rx = bind(&rt, None);
    let to = rx.local_addr().unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    // All of it waits in the kernel before the first receive.
    for i in 0..200 {
        tx.send_to(&datagram(i), to).unwrap();
    }
    let (got, calls) = rt.block_on(async {
        let mut batch = RecvBatch::new(RECV_BATCH);
        let (mut got, mut calls) = (Vec::new(), 0);
        while got.len() < 200 {
            let n = tokio::time::timeout(PATIENCE, rx.recv_batch(&mut batch))
                .await
                .expect("did not hang")
                .unwrap();
            calls += 1;
            assert_eq!(n, batch.len());
            assert!(n <= RECV_BATCH);
            for i in 0..n {
                let (data, from) = batch.datagram(i).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                got.push(data);
            }
        }
        (got, calls)
    });
    let numbers: Vec<usize> = got.iter().map(|d| number(d)).collect();
    assert_eq!(numbers, (0..200).collect::<Vec<_>>(), "complete, in order");
    for (i, d) in got.into_iter().enumerate() {
        assert_eq!(d, datagram(i));
        let len = d.len();
        // Copied out at its size: no 64 KiB receive slot kept alive.
        let owned = d.try_into_mut().expect("the only reference");
        assert_eq!(owned.capacity(), len, "datagram {i}");
    }
    if cfg!(target_os = "linux") {
        assert!(calls < 200, "{calls} receive calls for 200 datagrams");
    }
}

/// Each datagram of one receive call comes with its own sender, IPv4 or
/// IPv6, whether the call waited (the receive thread) or not; the largest
/// UDP payload arrives whole.
#[test]
fn every_datagram_of_a_batch_has_its_own_sender_v4_and_v6() {
    let rt = runtime();
    for local in ["127.0.0.1:0", "[::1]:0"] {
        let rx = transport::real()
            .bind(rt.handle(), local.parse().unwrap(), None)
            .unwrap();
        let to = rx.local_addr().unwrap();
        let senders: Vec<UdpSocket> = (0..5)
            .map(|_| UdpSocket::bind(SocketAddr::new(to.ip(), 0)).unwrap())
            .collect();
        // IPv4's largest payload (65,535 less the IP and UDP headers).
        let largest = vec![b'z'; 65_507];
        let mut sent = Vec::new();
        for (i, s) in senders.iter().enumerate().chain(senders.iter().enumerate()) {
            let d = if sent.len() == 7 {
                largest.clone()
            } else {
                datagram(sent.len())
            };
            s.send_to(&d, to).unwrap();
            sent.push((d, senders[i].local_addr().unwrap()));
        }
        let mut got = Vec::new();
        let mut batch = RecvBatch::new(RECV_BATCH);
        // Blocking (the receive thread's call) first, then awaited.
        let start = Instant::now();
        while got.len() < sent.len() / 2 && start.elapsed() < PATIENCE {
            if rx.blocking() {
                if let Ok(n) = rx.recv_batch_blocking(&mut batch) {
                    got.extend((0..n).map(|i| batch.datagram(i).unwrap()));
                }
            } else {
                break;
            }
        }
        rt.block_on(async {
            while got.len() < sent.len() {
                let n = tokio::time::timeout(PATIENCE, rx.recv_batch(&mut batch))
                    .await
                    .expect("did not hang")
                    .unwrap();
                got.extend((0..n).map(|i| batch.datagram(i).unwrap()));
            }
        });
        assert_eq!(got.len(), sent.len(), "{local}");
        for ((data, from), (want, want_from)) in got.iter().zip(&sent) {
            assert_eq!(from, want_from, "{local}");
            assert_eq!(data.len(), want.len(), "{local}");
            assert_eq!(&data[..], &want[..], "{local}");
        }
    }
}

#[test]
fn a_batch_to_several_destinations_arrives_complete_and_in_order() {
    let rt = runtime();
    let tx = bind(&rt, None);
    let peers: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s
        })
        .collect();
    let payloads: Vec<Vec<u8>> = (0..150).map(datagram).collect();
    let batch: Vec<(&[u8], SocketAddr)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (&p[..], peers[i % 3].local_addr().unwrap()))
        .collect();
    let sent = tx.try_send_batch(&batch);
    assert_eq!(sent.sent, 150, "{:?}", sent.error);
    assert!(sent.error.is_none());
    let mut buf = [0u8; 65536];
    for (k, peer) in peers.iter().enumerate() {
        let mut numbers = Vec::new();
        for _ in 0..50 {
            let (n, from) = peer.recv_from(&mut buf).expect("did not hang");
            assert_eq!(from, tx.local_addr().unwrap());
            assert_eq!(&buf[..n], &datagram(number(&buf[..n]))[..]);
            numbers.push(number(&buf[..n]));
        }
        let want: Vec<usize> = (0..150).filter(|i| i % 3 == k).collect();
        assert_eq!(numbers, want, "destination {k}: complete, in order");
    }
}

/// A closed port answers ICMP port unreachable (on loopback at once): the
/// error comes back on the connected socket, for the batch's first
/// datagram, and that datagram was not sent.
#[test]
fn a_batch_to_a_closed_peer_reports_the_error_for_its_first_datagram() {
    let rt = runtime();
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tx = bind(&rt, Some(closed));
    tx.try_send_to(b"one", closed).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sent = tx.try_send_batch(&[(b"two", closed), (b"three", closed)]);
        if sent.sent == 0 {
            let e = sent.error.expect("the error");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
            break;
        }
        assert!(Instant::now() < deadline, "no ICMP error came back");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn at_low_rates_each_datagram_is_delivered_at_once() {
    let rt = runtime();
    let rx = bind(&rt, None);
    let to = rx.local_addr().unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rt.block_on(async {
        let mut batch = RecvBatch::new(RECV_BATCH);
        for i in 0..3 {
            tx.send_to(&datagram(i), to).unwrap();
            // Nothing more is sent until this one is in: a receive that
            // waited to fill its batch would hang here.
            let n = tokio::time::timeout(PATIENCE, rx.recv_batch(&mut batch))
                .await
                .expect("delivered without further traffic")
                .unwrap();
            assert_eq!(n, 1);
            assert_eq!(batch.get(0).unwrap().0, &datagram(i)[..]);
        }
    });
}

// Through the gateway: the counters show the batching.

fn gateway(trunks: Vec<TrunkConfig>) -> Gateway {
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    Gateway::start(Options::new(listen, |adv| one_route(adv, trunks))).unwrap()
}

fn invite(me: SocketAddr, call: &str) -> String {
    format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag={call}\r\nTo: <sip:999@gw>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// What `s` receives until `done` says it has all it needs.
fn collect(s: &UdpSocket, mut done: impl FnMut(&[Message]) -> bool) -> Vec<Message> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !done(&got) {
        assert!(Instant::now() < deadline, "did not hang: got {}", got.len());
        if let Ok(n) = s.recv(&mut buf) {
            got.push(Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).unwrap());
        }
    }
    got
}

fn call_id(m: &Message) -> String {
    String::from_utf8_lossy(m.call_id().unwrap()).into_owned()
}

/// Bursts of INVITEs from four callers: the gateway receives them in
/// batches, the core takes each batch in one go, and what it sends (100
/// Trying to the callers on the listener, INVITEs to the trunk on its
/// connected socket) leaves in batches, in order to each destination.
#[test]
fn bursts_through_the_gateway_move_in_batches_in_order() {
    let trunk = Uas::start(Mode::Answer);
    let gw = gateway(vec![TrunkConfig::new("trunk", Peer::udp(trunk.addr()))]);
    let to = gw.bound.udp[0];
    let callers: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    // Each caller's INVITEs, in the order sent.
    let mut sent: HashMap<usize, Vec<String>> = HashMap::new();
    for n in 0..50 {
        for (k, c) in callers.iter().enumerate() {
            let call = format!("burst-{k}-{n}");
            c.send_to(invite(c.local_addr().unwrap(), &call).as_bytes(), to)
                .unwrap();
            sent.entry(k).or_default().push(call);
        }
        // The trunk is a test UAS on a socket of the default size, read
        // by one debug-built thread: bursts of 40 INVITEs, so that its
        // socket buffer is not what is tested (a lost INVITE fails its
        // call over, and there is no other trunk).
        if n % 10 == 9 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (k, c) in callers.iter().enumerate() {
        let want = &sent[&k];
        let got = collect(c, |got| {
            got.iter().filter(|m| m.status() == Some(200)).count() >= want.len()
        });
        let trying: Vec<String> = got
            .iter()
            .filter(|m| m.status() == Some(100))
            .map(call_id)
            .collect();
        assert_eq!(&trying, want, "caller {k}: every 100 Trying, in order");
    }
    assert_eq!(trunk.invites(), 200);
    let stats = &gw.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let (rb, rd) = (load(&stats.recv_batches), load(&stats.recv_datagrams));
    let (sb, sd) = (load(&stats.send_batches), load(&stats.send_datagrams));
    eprintln!("received {rd} datagrams in {rb} calls, sent {sd} in {sb}");
    assert!(
        rd >= 200 + 3 * 200,
        "INVITEs in, 100/180/200 from the trunk"
    );
    assert!(sd >= 200 * 4, "100s, INVITEs, 180s, 200s out");
    if cfg!(target_os = "linux") {
        assert!(rb < rd, "received {rd} datagrams in {rb} calls");
        assert!(sb < sd, "sent {sd} datagrams in {sb} calls");
    }
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

/// The trunk is killed (its port answers ICMP port unreachable) while
/// bursts of calls go through: the error on the trunk's connected socket
/// is evidence against it (the calls fail over to the backup), and the
/// datagrams to the callers that share the send batches still go out.
#[test]
fn an_icmp_error_in_a_batch_is_evidence_and_the_rest_goes_out() {
    let mut primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let gw = gateway(vec![
        TrunkConfig::new("primary", Peer::udp(primary.addr())),
        TrunkConfig::new("backup", Peer::udp(backup.addr())),
    ]);
    let to = gw.bound.udp[0];
    let callers: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    // Open the primary's connected socket with one call first.
    let c0 = &callers[0];
    c0.send_to(invite(c0.local_addr().unwrap(), "warm").as_bytes(), to)
        .unwrap();
    collect(c0, |got| got.iter().any(|m| m.status() == Some(200)));
    primary.kill();
    let mut sent: HashMap<usize, Vec<String>> = HashMap::new();
    for n in 0..20 {
        for (k, c) in callers.iter().enumerate() {
            let call = format!("icmp-{k}-{n}");
            c.send_to(invite(c.local_addr().unwrap(), &call).as_bytes(), to)
                .unwrap();
            sent.entry(k).or_default().push(call);
        }
    }
    for (k, c) in callers.iter().enumerate() {
        let want = &sent[&k];
        let got = collect(c, |got| {
            let mut ok: Vec<String> = got
                .iter()
                .filter(|m| m.status() == Some(200))
                .map(call_id)
                .collect();
            ok.sort();
            ok.dedup();
            ok.len() >= want.len()
        });
        let trying: Vec<String> = got
            .iter()
            .filter(|m| m.status() == Some(100))
            .map(call_id)
            .collect();
        assert_eq!(&trying, want, "caller {k}: every 100 Trying, in order");
    }
    let state = gw.with_proxy(|p, _| {
        let id = p.health().find("primary").unwrap();
        p.health().trunk(id).unwrap().state
    });
    assert_eq!(
        state,
        Some(lifeline_health::State::Down),
        "ICMP made it Down"
    );
    assert!(backup.invites() >= 80);
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
