//! Sockets: receiving (UDP on a thread per socket, TCP on the IO threads)
//! into the core, and sending what the core produced ([`Outbound`], the
//! core's [`Wire`]).
//!
//! Each real UDP socket has one receive thread ([`recv_udp`]), blocked in
//! the kernel until datagrams arrive: one `recvmmsg` per wake-up, where
//! the IO runtime cost three syscalls and its own park and unpark. One
//! receiver per socket keeps the order in which each peer's datagrams
//! arrived. The thread ends with the task that owns it (when the gateway
//! stops, or a trunk's socket is replaced), and the socket then closes.
//!
//! Each UDP trunk gets its own socket, bound to the listening address (so
//! Via and Record-Route stay the same) and `connect`ed to the trunk: the
//! kernel then reports ICMP port/host unreachable for that trunk as an error
//! on that socket, which becomes evidence at once — the failover a killed
//! trunk costs is the time to the next send, not a timer. The kernel does
//! not say which datagram an error answers, and anyone can forge one: the
//! core takes it to answer the last message it sent the trunk and needs it
//! corroborated before the trunk goes Down
//! (`lifeline_proxy::Proxy::handle_transport_error`); a send that an error
//! about an earlier datagram made the kernel discard is made again.
//!
//! UDP goes through [`DatagramNet`] (real sockets in production, a virtual
//! network in tests). TCP is real sockets only: one task per connection
//! reads and frames, a second writes what is queued for it; a connection
//! idle for the `tcp_idle_timeout` is closed (ours, so not evidence).
//!
//! TCP is bounded ([`TcpLimits`](crate::TcpLimits), counted by
//! `crate::limits::TcpGate`) so that no peer can hold the gateway's memory
//! or descriptors:
//! - at `max_connections` open (accepted and to trunks), the accept loops
//!   stop calling `accept()` until one closes; the kernel's backlog holds
//!   the next connections, then refuses them. Connections to trunks are
//!   counted but never refused;
//! - a connection from a source (address, IPv6 /64) that already has
//!   `max_connections_per_ip` is reset as soon as it is accepted;
//! - once a message's first byte has arrived, the rest must arrive within
//!   `message_timeout` (keep-alive CRLFs are not a message; the idle timeout
//!   resets on every byte, so without this a peer trickling a byte at a time
//!   would keep its connection forever); otherwise the connection is reset.
//!   Not evidence against a trunk: a trunk whose answers do not arrive fails
//!   its transactions' timers, which are;
//! - what waits for a connection's writer is bounded in bytes
//!   (`write_queue_bytes`): a message that would go over resets the
//!   connection instead of growing its queue without end. For a connection
//!   to a trunk this is evidence (`TransportError::Other`, returned for the
//!   message that did not fit, so that call's attempt moves on at once): a
//!   trunk that stopped reading takes no calls. Like every transport error
//!   it needs corroboration before the trunk goes Down; the next message to
//!   the trunk opens a new connection.
//!
//! Connections closed by a bound are reset (`SO_LINGER` 0), not shut down:
//! what is still queued for a peer that does not read is dropped at once
//! rather than kept by the kernel, and no TIME_WAIT is left behind.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use lifeline_proxy::{Peer, Transmit, Transport, TransportError, TrunkId};
use lifeline_sip::{check_datagram, StreamFramer, Verdict};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use crate::admission::Gate;
use crate::engine::{Input, InputTx, Received, Wire};
use crate::limits::{TcpGate, TcpSlot};
use crate::stats::IoStats;
use crate::transport::{BatchSent, DatagramNet, DatagramSocket, RecvBatch, RECV_BATCH, SEND_BATCH};

/// Largest stream message accepted.
pub const MAX_STREAM_MESSAGE: usize = 64 * 1024;

/// The idle timeout every TCP connection watches (zero: never closed for
/// idleness); `Gateway::tcp_idle` changes it, open connections included.
pub(crate) type TcpIdle = tokio::sync::watch::Receiver<Duration>;

/// Open TCP connections by peer address: the way to each one's writer.
pub(crate) type TcpConns = Arc<Mutex<HashMap<SocketAddr, TcpConn>>>;

/// Numbers TCP connections, so that a connection that ends takes its own
/// entry out of [`TcpConns`], never a newer connection's to the same
/// address.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The way to one connection's writer, as senders see it: a queue bounded
/// in bytes (`TcpLimits::write_queue_bytes`), not in messages, since what
/// it holds runs from a 2-byte pong to a 64 KiB message.
#[derive(Debug)]
pub(crate) struct TcpConn {
    id: u64,
    tx: UnboundedSender<Bytes>,
    /// Bytes queued and not yet written: added here, taken off by the
    /// writer once a message is written.
    queued: Arc<AtomicUsize>,
    /// Wakes the connection's task to reset the connection: its queue
    /// would have overflowed.
    reset: Arc<Notify>,
}

/// What became of a message handed to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queued {
    /// Queued for the writer.
    Yes,
    /// No such connection (any more).
    Gone,
    /// Over the connection's write-queue bound: not queued, and the
    /// connection is being reset.
    Overflow,
}

impl TcpConn {
    /// Queue `payload` unless that takes the queue over `limit` bytes
    /// (zero: no bound). An empty queue takes any message.
    fn push(&self, payload: Bytes, limit: usize) -> Queued {
        let len = payload.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if limit != 0 && before != 0 && before.saturating_add(len) > limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Queued::Overflow;
        }
        if self.tx.send(payload).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Queued::Gone;
        }
        Queued::Yes
    }
}

/// A connection's own end of its [`TcpConn`], and its place among the
/// open connections (given back when the connection's task ends).
#[derive(Debug)]
struct ConnEnd {
    id: u64,
    rx: UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    reset: Arc<Notify>,
    _slot: TcpSlot,
}

/// A new connection's two ends: the one for [`TcpConns`], and its own.
fn new_conn(slot: TcpSlot) -> (TcpConn, ConnEnd) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let queued = Arc::new(AtomicUsize::new(0));
    let reset = Arc::new(Notify::new());
    let conn = TcpConn {
        id,
        tx,
        queued: queued.clone(),
        reset: reset.clone(),
    };
    let end = ConnEnd {
        id,
        rx,
        queued,
        reset,
        _slot: slot,
    };
    (conn, end)
}

/// What every TCP task shares: the way into the core, the counters, the
/// open connections, the idle timeout, and the gate that counts
/// connections against the [`TcpLimits`](crate::TcpLimits).
#[derive(Clone, Debug)]
pub(crate) struct TcpShared {
    pub(crate) input: InputTx,
    pub(crate) stats: Arc<IoStats>,
    pub(crate) conns: TcpConns,
    pub(crate) idle: TcpIdle,
    pub(crate) gate: Arc<TcpGate>,
}

impl TcpShared {
    /// Queue `payload` on the connection open to `addr` (only if it is the
    /// connection numbered `id`, when given), within the write-queue bound.
    /// A connection found gone is forgotten; one that would overflow is
    /// forgotten, counted and told to reset.
    fn enqueue(
        &self,
        conns: &mut HashMap<SocketAddr, TcpConn>,
        addr: SocketAddr,
        id: Option<u64>,
        payload: Bytes,
    ) -> Queued {
        let Some(conn) = conns.get(&addr).filter(|c| id.is_none_or(|id| c.id == id)) else {
            return Queued::Gone;
        };
        let queued = conn.push(payload, self.gate.limits().write_queue_bytes);
        match queued {
            Queued::Yes => {}
            Queued::Gone => {
                conns.remove(&addr);
            }
            Queued::Overflow => {
                self.stats
                    .tcp_write_queue_overflows
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(conn) = conns.remove(&addr) {
                    conn.reset.notify_one();
                }
            }
        }
        queued
    }

    /// Take connection `id` to `addr` out of the map, if it is still there.
    fn forget(&self, addr: SocketAddr, id: u64) {
        if let Ok(mut c) = self.conns.lock() {
            if c.get(&addr).is_some_and(|c| c.id == id) {
                c.remove(&addr);
            }
        }
    }
}

/// What an IO error says about the peer, if anything.
fn transport_error(e: &io::Error) -> Option<TransportError> {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Some(TransportError::PortUnreachable),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            Some(TransportError::HostUnreachable)
        }
        io::ErrorKind::ConnectionReset => Some(TransportError::ConnectionReset),
        _ => None,
    }
}

/// A UDP socket connected to one trunk, and the switch that stops its
/// receive task when the trunk moves (a reload changed its address).
#[derive(Debug, Clone)]
pub(crate) struct TrunkSocket {
    peer: SocketAddr,
    socket: Arc<dyn DatagramSocket>,
    stop: Arc<tokio::sync::Notify>,
}

impl TrunkSocket {
    /// Bind next to the listener `local`, connect to `peer`, start receiving.
    pub(crate) fn open(
        net: &dyn DatagramNet,
        local: SocketAddr,
        peer: SocketAddr,
        trunk: TrunkId,
        rt: &tokio::runtime::Handle,
        input: &InputTx,
        stats: &Arc<IoStats>,
    ) -> io::Result<TrunkSocket> {
        let socket = net.bind(rt, local, Some(peer))?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let rx = socket.clone();
        let (input2, stats, stop2) = (input.clone(), stats.clone(), stop.clone());
        rt.spawn(input.supervise(async move {
            tokio::select! {
                _ = recv_udp(rx, input2, stats, Some(trunk)) => {}
                _ = stop2.notified() => {}
            }
        }));
        Ok(TrunkSocket { peer, socket, stop })
    }
}

/// Where the core sends.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// Where UDP sockets come from (trunk sockets are opened on demand).
    pub(crate) net: Arc<dyn DatagramNet>,
    /// UDP listening sockets.
    pub(crate) listeners: Vec<(SocketAddr, Arc<dyn DatagramSocket>)>,
    /// Connected UDP socket per trunk (by TrunkId index), when the trunk is UDP.
    pub(crate) trunk_sockets: Mutex<Vec<Option<TrunkSocket>>>,
    /// TCP: open connections by peer address, and what connections opened
    /// to trunks share with accepted ones.
    pub(crate) tcp: TcpShared,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) input: InputTx,
    pub(crate) stats: Arc<IoStats>,
}

impl Wire for Outbound {
    /// UDP datagrams wait in one run per socket, in order, and a run goes
    /// out with one [`DatagramSocket::try_send_batch`] (one `sendmmsg`)
    /// when it has [`SEND_BATCH`], when a datagram for one of its
    /// destinations is about to join another socket's run (so that the
    /// order to each destination is kept: a trunk is reached both on its
    /// own socket and, for answers, on the listener), and at the end. A
    /// run of one is one `sendto`, as before batching. TCP messages go to
    /// their connection's writer at once, as before.
    fn send_all(
        &self,
        ts: &mut dyn Iterator<Item = Transmit>,
        refused: &mut dyn FnMut(TrunkId, TransportError),
    ) {
        // Inline: one send of a few datagrams allocates nothing here.
        let mut runs: SmallVec<[Run; 2]> = SmallVec::new();
        for t in ts {
            self.stats.on_send(&t.payload);
            if t.peer.transport == Transport::Tcp {
                if let Some((trunk, kind)) = self.send_tcp(t.peer.addr, t.payload, t.trunk) {
                    refused(trunk, kind);
                }
                continue;
            }
            let Some((socket, local, connected)) = self.udp_socket(t.peer.addr, t.trunk) else {
                let e = io::Error::new(io::ErrorKind::AddrNotAvailable, "no UDP listener");
                self.udp_outcome(&t, Err(e), refused);
                continue;
            };
            let to = t.peer.addr;
            let mine = runs.iter().position(|r| Arc::ptr_eq(&r.socket, &socket));
            let elsewhere = runs
                .iter()
                .enumerate()
                .any(|(i, r)| Some(i) != mine && r.items.iter().any(|w| w.peer.addr == to));
            if elsewhere {
                for mut r in runs.drain(..) {
                    self.send_run(&mut r, refused);
                }
            }
            let i = match runs.iter().position(|r| Arc::ptr_eq(&r.socket, &socket)) {
                Some(i) => i,
                None => {
                    runs.push(Run {
                        socket,
                        local,
                        connected,
                        items: SmallVec::new(),
                    });
                    runs.len() - 1
                }
            };
            if let Some(r) = runs.get_mut(i) {
                r.items.push(t);
                if r.items.len() >= SEND_BATCH {
                    self.send_run(r, refused);
                }
            }
        }
        for mut r in runs {
            self.send_run(&mut r, refused);
        }
    }
}

/// UDP datagrams waiting to leave on one socket, in order.
struct Run {
    socket: Arc<dyn DatagramSocket>,
    /// The address it is bound to (a trunk's socket shares its listener's).
    local: SocketAddr,
    /// A trunk's connected socket: its errors are about the trunk.
    connected: bool,
    items: SmallVec<[Transmit; 4]>,
}

impl Outbound {
    /// The socket a datagram to `to` leaves on, and its address: the
    /// trunk's connected socket (`true`; bound to its listener's address),
    /// else the listener of its address family.
    fn udp_socket(
        &self,
        to: SocketAddr,
        trunk: Option<TrunkId>,
    ) -> Option<(Arc<dyn DatagramSocket>, SocketAddr, bool)> {
        let (local, listener) = self.listener_for(to)?;
        if let Some(s) = trunk.and_then(|t| self.trunk_socket(t, to)) {
            return Some((s, local, true));
        }
        Some((listener.clone(), local, false))
    }

    /// Send what waits in `run` (and empty it). A datagram the socket
    /// refuses is handled as a lone send would be (sent again once after an
    /// ICMP error, which is evidence against the trunk; otherwise counted),
    /// and the rest of the run goes on after it.
    fn send_run(&self, run: &mut Run, refused: &mut dyn FnMut(TrunkId, TransportError)) {
        let items = std::mem::take(&mut run.items);
        let socket = &*run.socket;
        let mut rest = items.as_slice();
        while let Some(first) = rest.first() {
            if rest.len() == 1 {
                let r = send_datagram(socket, &first.payload, first.peer.addr, &self.stats);
                if r.is_ok() {
                    self.capture_sent(run.local, rest);
                }
                self.udp_outcome(first, r, refused);
                return;
            }
            let batch: SmallVec<[(&[u8], SocketAddr); 8]> =
                rest.iter().map(|t| (&t.payload[..], t.peer.addr)).collect();
            let BatchSent { sent, error } = socket.try_send_batch(&batch);
            self.stats.send_batches.fetch_add(1, Ordering::Relaxed);
            self.stats
                .send_datagrams
                .fetch_add(sent as u64, Ordering::Relaxed);
            self.capture_sent(run.local, rest.get(..sent).unwrap_or_default());
            let Some(failed) = rest.get(sent) else {
                return;
            };
            let (payload, to) = (&failed.payload[..], failed.peer.addr);
            let r = match error {
                // As if a lone send had failed with `e`.
                Some(e) => send_again(socket, payload, to, e, &self.stats),
                // The kernel stopped at this datagram and did not say why
                // (`sendmmsg` drops an error after the first datagram):
                // this one alone, to learn it. If it goes out now, what
                // stopped the batch was gone at once: on a trunk's
                // connected socket that is an ICMP error about the trunk
                // that the batch consumed, evidence of an unknown kind.
                None => match send_datagram(socket, payload, to, &self.stats) {
                    Ok(None) if run.connected => Ok(Some(TransportError::Other)),
                    r => r,
                },
            };
            if r.is_ok() {
                self.capture_sent(run.local, std::slice::from_ref(failed));
            }
            self.udp_outcome(failed, r, refused);
            rest = rest.get(sent + 1..).unwrap_or_default();
        }
    }

    /// Capture datagrams that left from `local` (when capture is on).
    fn capture_sent(&self, local: SocketAddr, sent: &[Transmit]) {
        if let Some(c) = self.input.capture() {
            for t in sent {
                c.message(Transport::Udp, local, t.peer.addr, &t.payload, false);
            }
        }
    }

    /// What a datagram's send came to: evidence against its trunk, a
    /// counted send error, or nothing.
    fn udp_outcome(
        &self,
        t: &Transmit,
        r: io::Result<Option<TransportError>>,
        refused: &mut dyn FnMut(TrunkId, TransportError),
    ) {
        let ev = match r {
            Ok(None) => None,
            // Sent, after an error about an earlier datagram.
            Ok(Some(kind)) => t.trunk.map(|trunk| (trunk, kind)),
            Err(e) => {
                let ev = t.trunk.zip(transport_error(&e));
                if ev.is_none() {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %t.peer.addr, error = %e, "send failed");
                }
                ev
            }
        };
        if let Some((trunk, kind)) = ev {
            refused(trunk, kind);
        }
    }

    /// The connected socket for `trunk` at `peer`, opened (or reopened, if
    /// the trunk moved) on first use.
    fn trunk_socket(&self, trunk: TrunkId, peer: SocketAddr) -> Option<Arc<dyn DatagramSocket>> {
        let mut sockets = self.trunk_sockets.lock().ok()?;
        if let Some(Some(s)) = sockets.get(trunk.index()) {
            if s.peer == peer {
                return Some(s.socket.clone());
            }
            s.stop.notify_one();
        }
        let local = self
            .listeners
            .iter()
            .find(|(l, _)| l.is_ipv4() == peer.is_ipv4())?
            .0;
        let opened = TrunkSocket::open(
            &*self.net,
            local,
            peer,
            trunk,
            &self.rt,
            &self.input,
            &self.stats,
        );
        let s = match opened {
            Ok(s) => s,
            Err(e) => {
                // Tried at each send until it opens (at start it was logged
                // at WARN; what reaches the trunk meanwhile, or not, shows
                // in its state).
                tracing::debug!(%peer, error = %e, "cannot open a socket for the trunk; sending from the listener");
                return None;
            }
        };
        if sockets.len() <= trunk.index() {
            sockets.resize(trunk.index() + 1, None);
        }
        let socket = s.socket.clone();
        if let Some(slot) = sockets.get_mut(trunk.index()) {
            *slot = Some(s);
        }
        Some(socket)
    }

    fn listener_for(&self, to: SocketAddr) -> Option<(SocketAddr, &Arc<dyn DatagramSocket>)> {
        self.listeners
            .iter()
            .find(|(l, _)| l.is_ipv4() == to.is_ipv4())
            .or_else(|| self.listeners.first())
            .map(|(l, s)| (*l, s))
    }

    /// Queue a message on the connection open to `addr`, or (to a trunk)
    /// open one. A trunk's connection whose write queue would overflow is
    /// evidence against the trunk, for this message: it was not sent.
    fn send_tcp(
        &self,
        addr: SocketAddr,
        payload: Bytes,
        trunk: Option<TrunkId>,
    ) -> Option<(TrunkId, TransportError)> {
        let Ok(mut conns) = self.tcp.conns.lock() else {
            return None;
        };
        match self.tcp.enqueue(&mut conns, addr, None, payload.clone()) {
            Queued::Yes => return None,
            // The connection is being reset; the next message to a trunk
            // opens a new one.
            Queued::Overflow => return trunk.map(|t| (t, TransportError::Other)),
            Queued::Gone => {}
        }
        let Some(trunk) = trunk else {
            // A caller's connection is gone: nothing to send on.
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        // Connect to the trunk; queue this message for the new connection.
        // It takes a place among the open connections, and is never
        // refused one (see `TcpLimits::max_connections`).
        let (conn, end) = new_conn(self.tcp.gate.outgoing());
        let _ = conn.push(payload, 0);
        conns.insert(addr, conn);
        let tcp = self.tcp.clone();
        self.rt.spawn(self.input.supervise(async move {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    run_tcp(stream, addr, end, tcp, Some(trunk)).await;
                }
                Err(e) => {
                    tcp.forget(addr, end.id);
                    let kind = transport_error(&e).unwrap_or(TransportError::ConnectionRefused);
                    let _ = tcp.input.try_send(Input::TransportError { trunk, kind });
                }
            }
        }));
        None
    }
}

/// Send one datagram on `socket`. An ICMP error about the peer is kept by
/// the kernel and returned by the next call on the socket, which then
/// discards the datagram it was given: the error answers an earlier
/// datagram (or was forged: anyone can send one), not this one. So this one
/// is sent again, at once, and the error is returned beside the outcome as
/// evidence (`Ok(Some(kind))`: sent, after an error).
fn send_datagram(
    socket: &dyn DatagramSocket,
    payload: &[u8],
    to: SocketAddr,
    stats: &IoStats,
) -> io::Result<Option<TransportError>> {
    match send_one(socket, payload, to, stats) {
        Ok(()) => Ok(None),
        Err(e) => send_again(socket, payload, to, e, stats),
    }
}

/// A send of one datagram failed with `e`: if that is an error about the
/// peer (ICMP), send it again once and return the error's kind beside the
/// outcome (see [`send_datagram`]).
fn send_again(
    socket: &dyn DatagramSocket,
    payload: &[u8],
    to: SocketAddr,
    e: io::Error,
    stats: &IoStats,
) -> io::Result<Option<TransportError>> {
    match transport_error(&e) {
        Some(kind) => send_one(socket, payload, to, stats).map(|()| Some(kind)),
        None => Err(e),
    }
}

/// One `try_send_to`, counted in [`IoStats::send_batches`].
fn send_one(
    socket: &dyn DatagramSocket,
    payload: &[u8],
    to: SocketAddr,
    stats: &IoStats,
) -> io::Result<()> {
    stats.send_batches.fetch_add(1, Ordering::Relaxed);
    let r = socket.try_send_to(payload, to);
    if r.is_ok() {
        stats.send_datagrams.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// The log line of a stream closed for a framing error: the first 20 in
/// 10 s, then one line with the count of the rest (a flood of junk
/// connections must not become a flood of log lines; every one is counted
/// in `IoStats::tcp_framing_errors`).
fn framing_error_log(peer: SocketAddr, e: &lifeline_sip::Error) {
    static LIMIT: Mutex<crate::quiet::Limit> = Mutex::new(crate::quiet::Limit::new(
        "closing stream: framing error",
        20,
        Duration::from_secs(10),
    ));
    let check = LIMIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .check(std::time::Instant::now());
    if let Some(s) = check.summary {
        tracing::info!(kind = s.name, suppressed = s.lines, "{s}");
    }
    if check.log {
        tracing::info!(%peer, error = %e, "closing stream: framing error");
    }
}

/// Queue one received datagram (or stream frame), which arrived on
/// `local`, for the core, unless admission answers (`reply`) or drops a
/// new request first ([`crate::admission`]). Captured first, when capture
/// is on ([`crate::capture`]). The caller calls `InputTx::handle_queued` once
/// it has queued what one read brought, before it waits again.
fn deliver(
    input: &InputTx,
    stats: &IoStats,
    from: Peer,
    local: SocketAddr,
    data: Bytes,
    reply: &dyn Fn(Bytes),
) {
    stats.received.fetch_add(1, Ordering::Relaxed);
    if let Some(c) = input.capture() {
        c.message(from.transport, from.addr, local, &data, true);
    }
    let (msg, verdict) = check_datagram(data);
    if let (Some(m), Verdict::Accept) = (&msg, &verdict) {
        if m.is_request() {
            match input.gate(from, m) {
                Gate::Admit => {}
                Gate::Answer(b) => {
                    stats.on_send(&b);
                    reply(b);
                    return;
                }
                Gate::Drop => return,
            }
        }
    }
    if input
        .try_queue(Input::Message(Box::new(Received { from, msg, verdict })))
        .is_err()
    {
        stats.queue_drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Receive on a UDP socket until the task is stopped; `trunk`: the socket is
/// connected to that trunk, and its errors are evidence against it.
///
/// A [`blocking`](DatagramSocket::blocking) socket (real sockets on Linux)
/// is received on by a thread of its own ([`RecvThread`]), which this task
/// then only owns: when the task is dropped — the IO runtime stops with
/// the gateway, or a trunk's socket is replaced ([`TrunkSocket`]) — the
/// thread is stopped and waited for, and its hold on the socket goes with
/// it. Any other socket (the virtual network) is received on here, awaiting
/// each batch. Either way each batch is handled alike
/// ([`deliver_batch`], [`receive_error`]): only the waiting differs.
pub(crate) async fn recv_udp(
    socket: Arc<dyn DatagramSocket>,
    input: InputTx,
    stats: Arc<IoStats>,
    trunk: Option<TrunkId>,
) {
    if socket.blocking() {
        match RecvThread::start(socket.clone(), input.clone(), stats.clone(), trunk) {
            Ok(thread) => {
                let _owned = thread;
                std::future::pending::<()>().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a UDP receive thread: receiving on the IO threads");
            }
        }
    }
    // Receive buffers for a batch, reused: one wake-up takes what the
    // kernel holds, up to RECV_BATCH datagrams (one `recvmmsg`), and they
    // are delivered in order. Each is copied out at its own size.
    // (Splitting it off the buffer instead kept a fresh 64 KiB
    // allocation alive per datagram for as long as its transaction lived:
    // page faults on every receive and resident memory that grew with
    // the call rate.)
    let mut batch = RecvBatch::new(RECV_BATCH);
    let local = local_addr(&*socket);
    loop {
        match socket.recv_batch(&mut batch).await {
            Ok(n) => deliver_batch(&*socket, local, &batch, n, &input, &stats),
            Err(e) => {
                if receive_error(&e, trunk, &input, &stats) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

/// Deliver the `n` datagrams one receive put in `batch` (on `socket`,
/// bound to `local`), in order, then have the core take them in one go
/// (what it answers leaves in one batch too). Admission's answers leave on
/// `socket`.
fn deliver_batch(
    socket: &dyn DatagramSocket,
    local: SocketAddr,
    batch: &RecvBatch,
    n: usize,
    input: &InputTx,
    stats: &IoStats,
) {
    stats.recv_batches.fetch_add(1, Ordering::Relaxed);
    stats.recv_datagrams.fetch_add(n as u64, Ordering::Relaxed);
    for i in 0..batch.len() {
        let Some((data, from)) = batch.datagram(i) else {
            continue;
        };
        let reply = |b: Bytes| {
            if send_one(socket, &b, from, stats).is_err() {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
            } else if let Some(c) = input.capture() {
                c.message(Transport::Udp, local, from, &b, false);
            }
        };
        deliver(
            input,
            stats,
            Peer {
                addr: from,
                transport: Transport::Udp,
            },
            local,
            data,
            &reply,
        );
    }
    input.handle_queued();
}

/// The address `socket` is bound to (asked once per receive loop; the
/// unspecified address if the kernel will not say).
fn local_addr(socket: &dyn DatagramSocket) -> SocketAddr {
    socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// A UDP receive failed with `e`. On a trunk's connected socket an ICMP
/// error is evidence against the trunk, queued for the core; anything else
/// is logged, and `true` says to pause (1 ms) before receiving again, so
/// that an error that repeats does not spin.
fn receive_error(e: &io::Error, trunk: Option<TrunkId>, input: &InputTx, stats: &IoStats) -> bool {
    match (trunk, transport_error(e)) {
        (Some(t), Some(kind)) => {
            if input
                .try_send(Input::TransportError { trunk: t, kind })
                .is_err()
            {
                stats.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
            false
        }
        _ => {
            tracing::debug!(error = %e, "UDP receive error");
            true
        }
    }
}

/// A thread (`lifeline-udp`) receiving on one UDP socket, blocked in
/// [`DatagramSocket::recv_batch_blocking`]: one syscall per wake-up, with
/// no runtime between the kernel and the core. It hands each batch to the
/// core itself, as an IO thread would ([`deliver_batch`]); being the only
/// receiver on its socket, it keeps the order of arrival.
///
/// Dropping it stops the thread: a flag, then
/// [`DatagramSocket::stop_receiving`] to wake it (the socket's receive
/// timeout, [`RECV_TIMEOUT`](crate::transport::RECV_TIMEOUT), bounds the
/// wait if that did not), and waits (at most a second) for it to end. A
/// panic on the thread fails the engine, as one on an IO task does.
#[derive(Debug)]
struct RecvThread {
    socket: Arc<dyn DatagramSocket>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread has ended.
    ended: crossbeam_channel::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RecvThread {
    fn start(
        socket: Arc<dyn DatagramSocket>,
        input: InputTx,
        stats: Arc<IoStats>,
        trunk: Option<TrunkId>,
    ) -> io::Result<RecvThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ending, ended) = crossbeam_channel::bounded::<()>(0);
        let (rx, stopping) = (socket.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("lifeline-udp".into())
            .spawn(move || {
                let _ending = ending;
                let run = std::panic::AssertUnwindSafe(|| {
                    recv_udp_blocking(&*rx, &input, &stats, trunk, &stopping);
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    input.shared.fail(format!(
                        "panic on a UDP receive thread: {}",
                        panic_text(&*panic)
                    ));
                }
            })?;
        Ok(RecvThread {
            socket,
            stop,
            ended,
            thread: Some(thread),
        })
    }
}

impl Drop for RecvThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.socket.stop_receiving();
        let ended = matches!(
            self.ended.recv_timeout(Duration::from_secs(1)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        match self.thread.take() {
            Some(t) if ended => {
                let _ = t.join();
            }
            _ => tracing::warn!("a UDP receive thread did not stop within 1 s; left to end alone"),
        }
    }
}

/// The receive thread's loop: until `stop`, wait for a batch and deliver
/// it (or what its error says). Whatever a receive returns once `stop` is
/// set is dropped: the socket is closing, and a receive woken by
/// `shutdown` returns empty datagrams.
fn recv_udp_blocking(
    socket: &dyn DatagramSocket,
    input: &InputTx,
    stats: &IoStats,
    trunk: Option<TrunkId>,
    stop: &AtomicBool,
) {
    let mut batch = RecvBatch::new(RECV_BATCH);
    let local = local_addr(socket);
    while !stop.load(Ordering::Acquire) {
        let r = socket.recv_batch_blocking(&mut batch);
        if stop.load(Ordering::Acquire) {
            break;
        }
        match r {
            Ok(n) => deliver_batch(socket, local, &batch, n, input, stats),
            // The receive timeout: look at `stop` again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                if receive_error(&e, trunk, input, stats) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// The text a panic was raised with.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Why a connection's read loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The peer closed it, or it failed (with what that says about the
    /// peer, if anything).
    Peer(Option<TransportError>),
    /// No traffic either way for the idle timeout.
    Idle,
    /// A message not complete within `message_timeout` of its first byte.
    MessageTimeout,
    /// A message would have taken the write queue over its bound.
    Overflow,
}

/// Serve one TCP connection until it closes, fails, stays idle for the
/// `idle` timeout, or breaks a bound ([`TcpLimits`](crate::TcpLimits)). Only
/// a failure of a trunk's connection is evidence against the trunk: the
/// other closes are ours (a write-queue overflow is reported by the send
/// that found it, see [`Outbound::send_tcp`]).
async fn run_tcp(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    end: ConnEnd,
    tcp: TcpShared,
    trunk: Option<TrunkId>,
) {
    let ConnEnd {
        id,
        mut rx,
        queued,
        reset,
        _slot,
    } = end;
    let mut idle = tcp.idle.clone();
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut rd, mut wr) = stream.into_split();
    // Last traffic either way, in ms since `born`: written by both halves.
    let born = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let touch = move |last: &AtomicU64| {
        last.store(born.elapsed().as_millis() as u64, Ordering::Relaxed);
    };
    let wrote = last.clone();
    let input = tcp.input.clone();
    let writer = tokio::spawn(tcp.input.supervise(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
            queued.fetch_sub(b.len(), Ordering::AcqRel);
            touch(&wrote);
            if let Some(c) = input.capture() {
                c.message(Transport::Tcp, local, addr, &b, false);
            }
        }
    }));
    let mut limit = *idle.borrow_and_update();
    let mut watching = true;
    let quiet_until =
        |limit: Duration| born + Duration::from_millis(last.load(Ordering::Relaxed)) + limit;
    let timer = tokio::time::sleep_until(quiet_until(limit));
    tokio::pin!(timer);
    // Armed while a message is partly in (`in_message`): its deadline.
    let mut in_message = false;
    let deadline = tokio::time::sleep_until(born);
    tokio::pin!(deadline);
    let mut framer = StreamFramer::new(MAX_STREAM_MESSAGE);
    let mut buf = vec![0u8; 16 * 1024];
    let peer = Peer {
        addr,
        transport: Transport::Tcp,
    };
    let ended = loop {
        let read = tokio::select! {
            r = rd.read(&mut buf) => r,
            () = &mut timer, if !limit.is_zero() => {
                let at = quiet_until(limit);
                if tokio::time::Instant::now() >= at {
                    break Ended::Idle;
                }
                timer.as_mut().reset(at);
                continue;
            }
            () = &mut deadline, if in_message => break Ended::MessageTimeout,
            () = reset.notified() => break Ended::Overflow,
            changed = idle.changed(), if watching => {
                match changed {
                    Ok(()) => {
                        limit = *idle.borrow_and_update();
                        timer.as_mut().reset(quiet_until(limit));
                    }
                    Err(_) => watching = false, // the gateway is going away
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) => break Ended::Peer(None),
            Ok(n) => n,
            Err(e) => break Ended::Peer(transport_error(&e)),
        };
        touch(&last);
        framer.extend(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_frame() {
                Ok(Some(lifeline_sip::Frame::Message(m))) => {
                    let reply = |b: Bytes| {
                        if let Ok(mut c) = tcp.conns.lock() {
                            let _ = tcp.enqueue(&mut c, addr, Some(id), b);
                        }
                    };
                    deliver(&tcp.input, &tcp.stats, peer, local, m, &reply);
                }
                Ok(Some(lifeline_sip::Frame::KeepAlive)) => {
                    // RFC 5626: answer a CRLFCRLF ping with a CRLF pong.
                    if let Ok(mut c) = tcp.conns.lock() {
                        let _ = tcp.enqueue(&mut c, addr, Some(id), Bytes::from_static(b"\r\n"));
                    }
                }
                Ok(None) => {
                    tcp.input.handle_queued();
                    break;
                }
                Err(e) => {
                    tcp.input.handle_queued();
                    tcp.stats.tcp_framing_errors.fetch_add(1, Ordering::Relaxed);
                    framing_error_log(addr, &e);
                    writer.abort();
                    tcp.forget(addr, id);
                    return;
                }
            }
        }
        // A message's deadline runs from the read that brought its first
        // byte to the one that completes it; a read that completes one and
        // starts the next starts the next one's.
        if !framer.in_message() {
            in_message = false;
        } else if !in_message {
            let timeout = tcp.gate.limits().message_timeout;
            if !timeout.is_zero() {
                in_message = true;
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + timeout);
            }
        }
    };
    match ended {
        Ended::Idle => {
            close_idle(addr, id, &tcp, writer).await;
            return;
        }
        Ended::MessageTimeout => {
            tcp.stats
                .tcp_message_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %addr, "resetting a TCP connection: a message took longer than message_timeout");
            let _ = rd.as_ref().set_zero_linger();
        }
        Ended::Overflow => {
            // Counted by the send that found the queue full.
            if trunk.is_some() {
                tracing::warn!(peer = %addr, "resetting the TCP connection to a trunk: it is not reading (write queue full)");
            } else {
                tracing::debug!(peer = %addr, "resetting a TCP connection: the peer is not reading (write queue full)");
            }
            let _ = rd.as_ref().set_zero_linger();
        }
        Ended::Peer(_) => {}
    }
    writer.abort();
    tcp.forget(addr, id);
    if let (Some(t), Ended::Peer(Some(kind))) = (trunk, ended) {
        let _ = tcp.input.try_send(Input::TransportError { trunk: t, kind });
    }
}

/// Close a connection left idle: nothing new is queued on it (the next
/// message to a trunk opens a new one), what is queued is written, then it
/// is closed. Not evidence against a trunk: the close is ours.
async fn close_idle(
    addr: SocketAddr,
    id: u64,
    tcp: &TcpShared,
    mut writer: tokio::task::JoinHandle<()>,
) {
    tcp.stats.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(peer = %addr, "closing an idle TCP connection");
    tcp.forget(addr, id);
    // The writer stops once its queue is empty and its sender (the map's)
    // is gone; dropping the write half sends FIN.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Accept TCP connections (while `accepting`) and serve each in its own
/// task, within the [`TcpLimits`](crate::TcpLimits): no `accept()` while
/// `max_connections` are open, and a connection from a source that has
/// `max_connections_per_ip` reset at once.
pub(crate) async fn accept_tcp(
    listener: tokio::net::TcpListener,
    tcp: TcpShared,
    accepting: Arc<AtomicBool>,
) {
    // A place among the open connections, taken before accepting; kept
    // for the next connection when this one is not served.
    let mut reserved = None;
    loop {
        let mut place = match reserved.take() {
            Some(p) => p,
            None => tcp.gate.reserve().await,
        };
        let Ok((stream, addr)) = listener.accept().await else {
            reserved = Some(place);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !accepting.load(Ordering::Relaxed) {
            reserved = Some(place);
            continue; // shutting down: no new connections
        }
        if !place.admit(addr.ip()) {
            tracing::debug!(peer = %addr, "resetting a TCP connection: its source has max_connections_per_ip open");
            let _ = stream.set_zero_linger();
            reserved = Some(place);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (conn, end) = new_conn(place);
        if let Ok(mut c) = tcp.conns.lock() {
            c.insert(addr, conn);
        }
        tokio::spawn(
            tcp.input
                .supervise(run_tcp(stream, addr, end, tcp.clone(), None)),
        );
    }
}
