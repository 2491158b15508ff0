//! The engine over a virtual network (webrtc-util's vnet): the same gateway
//! code as in production, with its UDP sockets on virtual hosts behind one
//! virtual router that delays, jitters, drops or cuts off datagrams. No
//! packet leaves the process; the addresses are RFC 5737 documentation
//! addresses inside the virtual network only.
//!
//! ```text
//!   caller 192.0.2.10 --+                  +-- primary 192.0.2.21 (UAS)
//!                       +-- router --------+
//!   gateway 192.0.2.1 --+   delay, jitter, +-- backup  192.0.2.22 (UAS)
//!                           loss, cut-off
//! ```
//!
//! Nothing is timed: the tests count calls, statuses and attempts and check
//! their order; every wait is bounded.
#![cfg(not(loom))]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lifeline_proxy::{AttemptFailure, Event, Peer, Transport, TrunkConfig, TrunkId};
use lifeline_sip::Message;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use webrtc_util::vnet::chunk::Chunk;
use webrtc_util::vnet::net::{Net, NetConfig};
use webrtc_util::vnet::router::{Router, RouterConfig};
use webrtc_util::Conn;

use lifeline_io::transport::vnet::VnetNet;
use lifeline_io::{EventSink, Gateway, Options, ProxyNames};
use lifeline_kit::uas::Mode;
use lifeline_kit::vnet::{serve, VnetUas};
use lifeline_kit::{one_route, Call};

const GW: &str = "192.0.2.1";
const CALLER: &str = "192.0.2.10";
const PRIMARY: &str = "192.0.2.21";
const BACKUP: &str = "192.0.2.22";

/// Retransmission base interval of the test caller (RFC 3261 T1, shortened).
const T1: Duration = Duration::from_millis(250);
/// Cap of the doubling retransmission interval (T2).
const T2: Duration = Duration::from_secs(2);
/// Bound on one call, INVITE to BYE's final response.
const CALL_BOUND: Duration = Duration::from_secs(30);

fn ip(host: &str) -> IpAddr {
    host.parse().unwrap()
}

/// Port 5060 of a virtual host (virtual: no real port is taken).
fn sip(host: &str) -> SocketAddr {
    SocketAddr::new(ip(host), 5060)
}

/// What the router does to datagrams, changed while the test runs.
#[derive(Debug, Default)]
struct Impair {
    /// Hosts cut off: every datagram to or from them is dropped.
    cut: Mutex<HashSet<IpAddr>>,
    /// Lossy hosts: one in `n` datagrams to or from them is dropped.
    lossy: Mutex<HashMap<IpAddr, u64>>,
    /// Datagrams seen on lossy links.
    lossy_seen: AtomicU64,
    /// Datagrams dropped on lossy links.
    lost: AtomicU64,
    /// Datagrams dropped because a host was cut off.
    cut_dropped: AtomicU64,
}

impl Impair {
    /// The router's chunk filter: false drops the datagram. Loss is
    /// deterministic: every n-th datagram on a lossy link.
    fn pass(&self, c: &(dyn Chunk + Send + Sync)) -> bool {
        let (src, dst) = (c.get_source_ip(), c.get_destination_ip());
        let cut = self.cut.lock().unwrap();
        if cut.contains(&src) || cut.contains(&dst) {
            self.cut_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let lossy = self.lossy.lock().unwrap();
        if let Some(&n) = lossy.get(&src).or_else(|| lossy.get(&dst)) {
            let seen = self.lossy_seen.fetch_add(1, Ordering::Relaxed) + 1;
            if seen.is_multiple_of(n) {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        true
    }
}

/// The virtual network: a router, one `Net` per host, and the runtime they
/// (and the test UAs) run on.
struct Lab {
    rt: Runtime,
    router: Arc<tokio::sync::Mutex<Router>>,
    nets: HashMap<&'static str, Arc<Net>>,
    impair: Arc<Impair>,
}

impl Lab {
    /// Every datagram crossing the router waits `delay` plus up to `jitter`.
    fn new(delay: Duration, jitter: Duration) -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vnet")
            .enable_all()
            .build()
            .unwrap();
        let impair = Arc::new(Impair::default());
        let (router, nets) = rt.block_on(async {
            let router = Arc::new(tokio::sync::Mutex::new(
                Router::new(RouterConfig {
                    cidr: "192.0.2.0/24".into(),
                    min_delay: delay,
                    max_jitter: jitter,
                    ..Default::default()
                })
                .unwrap(),
            ));
            let mut nets = HashMap::new();
            for host in [GW, CALLER, PRIMARY, BACKUP] {
                let net = Arc::new(Net::new(Some(NetConfig {
                    static_ips: vec![host.into()],
                    ..Default::default()
                })));
                let nic = net.get_nic().unwrap();
                router.lock().await.add_net(nic.clone()).await.unwrap();
                nic.lock().await.set_router(router.clone()).await.unwrap();
                nets.insert(host, net);
            }
            let filter = impair.clone();
            router
                .lock()
                .await
                .add_chunk_filter(Box::new(move |c| filter.pass(c)))
                .await;
            router.lock().await.start().await.unwrap();
            (router, nets)
        });
        Lab {
            rt,
            router,
            nets,
            impair,
        }
    }

    /// A socket on a virtual host.
    async fn bind(&self, addr: SocketAddr) -> Arc<dyn Conn + Send + Sync> {
        let host = self
            .nets
            .iter()
            .find(|(h, _)| ip(h) == addr.ip())
            .map(|(_, n)| n.clone())
            .unwrap();
        host.bind(addr).await.unwrap()
    }

    /// Start a trunk (UAS) on `host`.
    /// OPTIONS and BYE get 200; INVITE gets 100, 180, 200, and the 200
    /// is retransmitted until its ACK arrives (RFC 3261 §13.3.1.4); a
    /// retransmitted INVITE gets the 200 again.
    fn uas(&self, host: &str) -> Arc<VnetUas> {
        let uas = VnetUas::new(sip(host), Mode::Answer);
        let conn = self.rt.block_on(self.bind(sip(host)));
        self.rt.spawn(serve(conn, uas.clone()));
        uas
    }

    /// A gateway on the virtual host 192.0.2.1, routing every call to the
    /// primary, then the backup; `seen` records what happened.
    fn gateway(&self, seen: &Seen) -> Gateway {
        let net = VnetNet::new(self.nets[GW].clone(), self.rt.handle().clone());
        let (primary, backup) = (sip(PRIMARY), sip(BACKUP));
        let trunks = vec![
            TrunkConfig::new("primary", Peer::udp(primary)),
            TrunkConfig::new("backup", Peer::udp(backup)),
        ];
        let listen = vec![(Transport::Udp, sip(GW))];
        Gateway::start(Options {
            sinks: vec![seen.sink()],
            net,
            ..Options::new(listen, |adv| one_route(adv, trunks))
        })
        .unwrap()
    }

    /// Place calls `ns` from the caller host, `concurrent`ly or one after
    /// the other; each is bounded by `CALL_BOUND`.
    fn calls(&self, ns: std::ops::Range<u32>, concurrent: bool) -> Vec<CallResult> {
        self.rt.block_on(async {
            let mut results = Vec::new();
            let mut tasks = Vec::new();
            for n in ns {
                let conn = self.bind(SocketAddr::new(ip(CALLER), 0)).await;
                let task = tokio::spawn(async move {
                    let r = tokio::time::timeout(CALL_BOUND, call(conn.clone(), sip(GW), n)).await;
                    let _ = conn.close().await;
                    r.unwrap_or_else(|_| CallResult {
                        n,
                        timed_out: true,
                        ..CallResult::default()
                    })
                });
                if concurrent {
                    tasks.push(task);
                } else {
                    results.push(task.await.unwrap());
                }
            }
            for t in tasks {
                results.push(t.await.unwrap());
            }
            results
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.rt.block_on(async {
            let _ = self.router.lock().await.stop().await;
        });
    }
}

/// What the gateway reported, in order, with trunks by name.
#[derive(Debug, Clone, PartialEq)]
enum Happened {
    Attempt(String),
    Failed(String, AttemptFailure),
    Connected(String),
    CallFailed(u16),
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Happened>>>);

impl Seen {
    fn sink(&self) -> EventSink {
        let seen = self.0.clone();
        Box::new(move |ev: &Event, _, names: &Arc<ProxyNames>| {
            let name = |id: TrunkId| names.trunk(id).unwrap_or_default().to_string();
            let h = match ev {
                Event::AttemptStarted { trunk, .. } => Happened::Attempt(name(*trunk)),
                Event::AttemptFailed { trunk, reason, .. } => {
                    Happened::Failed(name(*trunk), *reason)
                }
                Event::CallConnected { trunk, .. } => Happened::Connected(name(*trunk)),
                Event::CallFailed { status, .. } => Happened::CallFailed(*status),
                _ => return,
            };
            seen.lock().unwrap().push(h);
        })
    }

    fn all(&self) -> Vec<Happened> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, h: &Happened) -> usize {
        self.all().iter().filter(|x| *x == h).count()
    }
}

/// How one call went, at the caller.
#[derive(Debug, Default)]
struct CallResult {
    n: u32,
    /// Every response to the INVITE, in arrival order.
    statuses: Vec<u16>,
    /// The BYE's final status.
    bye: Option<u16>,
    /// Requests the caller sent again (INVITE, BYE, ACK for a resent 2xx).
    resent: u32,
    timed_out: bool,
}

impl CallResult {
    /// The INVITE's statuses, each once, in the order first seen.
    fn distinct(&self) -> Vec<u16> {
        let mut d: Vec<u16> = Vec::new();
        for s in &self.statuses {
            if !d.contains(s) {
                d.push(*s);
            }
        }
        d
    }

    fn completed(&self) -> bool {
        self.statuses.last() == Some(&200) && self.bye == Some(200)
    }
}

/// Send `req`, then keep sending it (T1, doubling up to T2) until `on`, which
/// sees every message of this call, says it is done; after `on` says quiet
/// (a provisional stops an INVITE's retransmissions) only wait. With `ack`,
/// a 2xx to the INVITE seen meanwhile (our ACK was lost) is ACKed again.
async fn exchange(
    conn: &(dyn Conn + Send + Sync),
    gw: SocketAddr,
    req: &[u8],
    call_id: &[u8],
    ack: Option<&[u8]>,
    res: &mut CallResult,
    mut on: impl FnMut(&Message, &mut CallResult) -> Exchange,
) -> Option<Message> {
    let mut buf = vec![0u8; 65536];
    conn.send_to(req, gw).await.ok()?;
    let mut interval = T1;
    let mut next = Instant::now() + interval;
    let mut quiet = false;
    loop {
        match tokio::time::timeout_at(next, conn.recv_from(&mut buf)).await {
            Err(_) => {
                if !quiet {
                    conn.send_to(req, gw).await.ok()?;
                    res.resent += 1;
                }
                interval = (interval * 2).min(T2);
                next = Instant::now() + interval;
            }
            Ok(Err(_)) => return None,
            Ok(Ok((n, _))) => {
                let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                    continue;
                };
                if m.call_id() != Some(call_id) {
                    continue;
                }
                let invite = m.cseq().is_ok_and(|c| c.method == b"INVITE");
                if let Some(ack) = ack.filter(|_| invite && m.status() == Some(200)) {
                    conn.send_to(ack, gw).await.ok()?;
                    res.resent += 1;
                    continue;
                }
                match on(&m, res) {
                    Exchange::Done => return Some(m),
                    Exchange::Quiet => quiet = true,
                    Exchange::Again => {}
                }
            }
        }
    }
}

enum Exchange {
    /// The awaited response.
    Done,
    /// Stop retransmitting, keep waiting.
    Quiet,
    /// Keep going.
    Again,
}

/// A caller (UAC): INVITE, ACK the 200, BYE, over the gateway, retransmitting
/// as RFC 3261 §17.1 says (INVITE until a provisional, BYE until its final,
/// ACK again for each 2xx again).
async fn call(conn: Arc<dyn Conn + Send + Sync>, gw: SocketAddr, n: u32) -> CallResult {
    let me = conn.local_addr().unwrap();
    let call = Call::new(me, format!("vnet-{n}"), "sip:999@gw", n);
    let call_id = call.call_id.clone();
    let mut res = CallResult {
        n,
        ..CallResult::default()
    };
    let invite = call.invite();
    let ok = exchange(
        &*conn,
        gw,
        invite.as_bytes(),
        call_id.as_bytes(),
        None,
        &mut res,
        |m, res| match m.status() {
            Some(s) => {
                res.statuses.push(s);
                if s >= 200 {
                    Exchange::Done
                } else {
                    Exchange::Quiet
                }
            }
            None => Exchange::Again,
        },
    )
    .await;
    let Some(ok) = ok.filter(|m| m.status() == Some(200)) else {
        return res;
    };
    // The dialog: the route set from Record-Route (one hop: the gateway),
    // the remote target from Contact, the To tag from the 200.
    let ack = call.ack(&ok);
    if conn.send_to(ack.as_bytes(), gw).await.is_err() {
        return res;
    }
    let bye = call.bye(&ok);
    let done = exchange(
        &*conn,
        gw,
        bye.as_bytes(),
        call_id.as_bytes(),
        Some(ack.as_bytes()),
        &mut res,
        |m, _| match m.status() {
            Some(s) if s >= 200 && m.cseq().is_ok_and(|c| c.method == b"BYE") => Exchange::Done,
            _ => Exchange::Again,
        },
    )
    .await;
    res.bye = done.and_then(|m| m.status());
    res
}

fn assert_all_completed(results: &[CallResult]) {
    for r in results {
        assert!(
            !r.timed_out && r.completed(),
            "call {} did not complete: {r:?}",
            r.n
        );
    }
}

fn trunk_state(gw: &Gateway, name: &'static str) -> Option<lifeline_health::State> {
    gw.with_proxy(move |p, _| {
        let id = p.health().find(name)?;
        Some(p.health().trunk(id)?.state)
    })
    .flatten()
}

#[test]
fn calls_complete_over_a_delayed_jittery_network() {
    let lab = Lab::new(Duration::from_millis(20), Duration::from_millis(10));
    let primary = lab.uas(PRIMARY);
    let backup = lab.uas(BACKUP);
    let seen = Seen::default();
    let gw = lab.gateway(&seen);

    let results = lab.calls(0..10, true);
    assert_all_completed(&results);
    for r in &results {
        assert_eq!(r.distinct(), [100, 180, 200], "call {}", r.n);
    }
    assert_eq!(primary.stats.invites.load(Ordering::Relaxed), 10);
    assert_eq!(primary.stats.acks.load(Ordering::Relaxed), 10);
    assert_eq!(primary.stats.byes.load(Ordering::Relaxed), 10);
    assert_eq!(backup.stats.invites.load(Ordering::Relaxed), 0);
    assert_eq!(seen.count(&Happened::Connected("primary".into())), 10);
    assert!(
        !seen
            .all()
            .iter()
            .any(|h| matches!(h, Happened::Failed(..) | Happened::CallFailed(_))),
        "delay and jitter within the failover timer fail nothing over: {:?}",
        seen.all()
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_primary_cut_off_fails_over_with_no_failed_call() {
    let lab = Lab::new(Duration::from_millis(10), Duration::from_millis(5));
    let primary = lab.uas(PRIMARY);
    let backup = lab.uas(BACKUP);
    let seen = Seen::default();
    let gw = lab.gateway(&seen);

    assert_all_completed(&lab.calls(0..3, false));
    assert_eq!(primary.stats.invites.load(Ordering::Relaxed), 3);

    lab.impair.cut.lock().unwrap().insert(ip(PRIMARY));
    let before = seen.all().len();
    let results = lab.calls(3..13, false);
    assert_all_completed(&results);
    assert_eq!(
        primary.stats.invites.load(Ordering::Relaxed),
        3,
        "nothing reaches a trunk that is cut off"
    );
    assert_eq!(backup.stats.invites.load(Ordering::Relaxed), 10);
    assert_eq!(backup.stats.byes.load(Ordering::Relaxed), 10);
    assert!(lab.impair.cut_dropped.load(Ordering::Relaxed) > 0);

    let after: Vec<Happened> = seen.all().split_off(before);
    assert!(!after.iter().any(|h| matches!(h, Happened::CallFailed(_))));
    assert_eq!(
        after
            .iter()
            .filter(|h| **h == Happened::Connected("backup".into()))
            .count(),
        10
    );
    // The first call after the cut went to the primary if it was still Up
    // (it usually is: probes need about 500 ms to notice), got no answer and
    // moved to the backup; if probes were quicker, it went straight to the
    // backup. Either way no attempt on the primary succeeded.
    if after.first() == Some(&Happened::Attempt("primary".into())) {
        assert_eq!(
            after.get(..4),
            Some(
                &[
                    Happened::Attempt("primary".into()),
                    Happened::Failed("primary".into(), AttemptFailure::NoResponse),
                    Happened::Attempt("backup".into()),
                    Happened::Connected("backup".into()),
                ][..]
            ),
            "{after:?}"
        );
    } else {
        assert_eq!(
            after.first(),
            Some(&Happened::Attempt("backup".into())),
            "{after:?}"
        );
    }
    assert!(!after.contains(&Happened::Connected("primary".into())));
    // Unanswered probes take it Down (bounded wait).
    let mut state = None;
    for _ in 0..100 {
        state = trunk_state(&gw, "primary");
        if state == Some(lifeline_health::State::Down) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state, Some(lifeline_health::State::Down));
    gw.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn loss_on_the_caller_link_is_recovered_by_retransmission() {
    let lab = Lab::new(Duration::from_millis(5), Duration::ZERO);
    // Every third datagram to or from the caller is lost.
    lab.impair.lossy.lock().unwrap().insert(ip(CALLER), 3);
    let primary = lab.uas(PRIMARY);
    let backup = lab.uas(BACKUP);
    let seen = Seen::default();
    let gw = lab.gateway(&seen);

    let results = lab.calls(0..6, false);
    assert_all_completed(&results);
    assert!(lab.impair.lost.load(Ordering::Relaxed) > 0);
    let resent: u64 = results.iter().map(|r| u64::from(r.resent)).sum::<u64>()
        + primary.stats.resent.load(Ordering::Relaxed);
    assert!(resent > 0, "losses were recovered by retransmissions");
    // Retransmitted INVITEs were absorbed by the gateway: each call reached
    // the trunk once, and none failed over (the trunk link is clean).
    assert_eq!(primary.stats.invites.load(Ordering::Relaxed), 6);
    assert_eq!(backup.stats.invites.load(Ordering::Relaxed), 0);
    assert_eq!(seen.count(&Happened::Connected("primary".into())), 6);
    assert!(
        !seen
            .all()
            .iter()
            .any(|h| matches!(h, Happened::Failed(..) | Happened::CallFailed(_))),
        "{:?}",
        seen.all()
    );
    gw.shutdown(Duration::from_secs(1)).unwrap();
}
