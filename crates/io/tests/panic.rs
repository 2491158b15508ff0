//! A panic in the engine does not leave it half-alive: a panic in the core
//! while it handles a datagram received on an IO thread, or in an IO task
//! itself, fails the engine — it stops taking input, its housekeeping tick
//! (which feeds readiness and the systemd watchdog) stops, and `join`
//! reports the failure, so the daemon exits instead of staying deaf on a
//! socket while it still looks healthy. (Release builds abort before any
//! of this; tests unwind, as debug builds do.) Waits are bounded.
#![cfg(not(loom))]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use lifeline_io::transport::{self, DatagramNet, DatagramSocket, RecvBatch, RecvFuture};
use lifeline_io::{EventSink, Gateway, Options, Tick};
use lifeline_kit::{one_route, unprobed};
use lifeline_proxy::{Event, Peer, Transport};
use tokio::runtime::Handle;

/// A gateway with one unprobed trunk (nothing listens there), ticking
/// every 10 ms into `ticks`.
fn gateway(sinks: Vec<EventSink>, net: Arc<dyn DatagramNet>, ticks: Arc<AtomicU64>) -> Gateway {
    let tick: Tick = Box::new(move |_, _, _| {
        ticks.fetch_add(1, Ordering::Relaxed);
    });
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let trunk = unprobed("t", Peer::udp("127.0.0.1:9".parse().unwrap()));
    Gateway::start(Options {
        sinks,
        ticks: vec![tick],
        tick_every: Duration::from_millis(10),
        net,
        ..Options::new(listen, |adv| one_route(adv, vec![trunk]))
    })
    .unwrap()
}

fn invite(me: SocketAddr, call_id: &str) -> String {
    format!(
        "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:999@gw>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Wait (at most 5 s) for the gateway to report a failure.
fn failure(gw: &Gateway) -> Option<String> {
    for _ in 0..500 {
        if let Some(f) = gw.failure() {
            return Some(f.to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// After a failure: the tick has stopped, the core answers nothing, and
/// `join` says why.
fn assert_failed_for_good(mut gw: Gateway, ticks: &AtomicU64, why: &str) {
    let f = failure(&gw).expect("the engine failed");
    assert!(f.contains(why), "{f}");
    // The timer thread has ended (or ends now): the tick no longer runs.
    std::thread::sleep(Duration::from_millis(50));
    let after = ticks.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ticks.load(Ordering::Relaxed), after, "the tick stopped");
    assert_eq!(gw.with_proxy(|_, _| ()), None, "the core takes no input");
    let e = gw.join().expect_err("join reports the failure");
    assert!(e.to_string().contains(why), "{e}");
}

#[test]
fn a_panic_in_the_core_on_an_io_thread_fails_the_engine() {
    let ticks = Arc::new(AtomicU64::new(0));
    // The test-only hook: a sink that panics on one call's first event, so
    // the panic happens inside the core, on the IO thread that received
    // the INVITE.
    let bomb: EventSink = Box::new(|ev, _, _| {
        if let Event::CallStarted { info, .. } = ev {
            if &info.call_id[..] == b"boom" {
                panic!("injected core panic");
            }
        }
    });
    let gw = gateway(vec![bomb], transport::real(), ticks.clone());
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap();
    // Healthy first: a call is routed, the tick runs.
    caller
        .send_to(invite(me, "fine").as_bytes(), gw.bound.udp[0])
        .unwrap();
    assert_eq!(gw.with_proxy(|_, _| ()), Some(()));
    for _ in 0..500 {
        if ticks.load(Ordering::Relaxed) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ticks.load(Ordering::Relaxed) >= 2, "ticking");
    assert_eq!(gw.failure(), None);

    caller
        .send_to(invite(me, "boom").as_bytes(), gw.bound.udp[0])
        .unwrap();
    assert_failed_for_good(gw, &ticks, "injected core panic");
}

/// Real UDP sockets, except that receiving panics on a datagram that
/// starts with `PANIC`: a bug outside the core, in an IO task (`threads`
/// false: received on the IO runtime, as the virtual network is) or on a
/// socket's own receive thread (`threads` true, as real sockets are on
/// Linux).
#[derive(Debug)]
struct PanickyNet {
    threads: bool,
}

#[derive(Debug)]
struct PanickySocket {
    inner: Arc<dyn DatagramSocket>,
    threads: bool,
}

impl DatagramNet for PanickyNet {
    fn bind(
        &self,
        rt: &Handle,
        addr: SocketAddr,
        connect: Option<SocketAddr>,
    ) -> io::Result<Arc<dyn DatagramSocket>> {
        let inner = transport::real().bind(rt, addr, connect)?;
        Ok(Arc::new(PanickySocket {
            inner,
            threads: self.threads,
        }))
    }
}

impl DatagramSocket for PanickySocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn recv_from<'a>(&'a self, buf: &'a mut BytesMut) -> RecvFuture<'a> {
        Box::pin(async move {
            let r = self.inner.recv_from(buf).await;
            if buf.starts_with(b"PANIC") {
                panic!("injected receive-task panic");
            }
            r
        })
    }

    fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<()> {
        self.inner.try_send_to(payload, to)
    }

    fn blocking(&self) -> bool {
        self.threads && self.inner.blocking()
    }

    fn recv_batch_blocking(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let r = self.inner.recv_batch_blocking(batch);
        if batch.get(0).is_some_and(|(d, _)| d.starts_with(b"PANIC")) {
            panic!("injected receive-thread panic");
        }
        r
    }

    fn stop_receiving(&self) {
        self.inner.stop_receiving();
    }
}

/// Send `PANIC` to a gateway on `net`: the engine fails with `expected`.
fn panic_in_receiving(net: PanickyNet, expected: &str) {
    let ticks = Arc::new(AtomicU64::new(0));
    let gw = gateway(vec![], Arc::new(net), ticks.clone());
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(gw.with_proxy(|_, _| ()), Some(()));
    assert_eq!(gw.failure(), None);
    caller.send_to(b"PANIC", gw.bound.udp[0]).unwrap();
    assert_failed_for_good(gw, &ticks, expected);
}

#[test]
fn a_panic_in_a_receive_task_fails_the_engine() {
    panic_in_receiving(PanickyNet { threads: false }, "injected receive-task panic");
}

#[cfg(target_os = "linux")]
#[test]
fn a_panic_on_a_udp_receive_thread_fails_the_engine() {
    panic_in_receiving(
        PanickyNet { threads: true },
        "injected receive-thread panic",
    );
}
