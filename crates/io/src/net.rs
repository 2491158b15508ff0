//! Sockets: receiving (UDP and TCP, on the IO threads) into the core, and
//! sending what the core produced ([`Outbound`], the core's [`Wire`]).
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

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use lifeline_proxy::{Peer, Transmit, Transport, TransportError, TrunkId};
use lifeline_sip::{check_datagram, StreamFramer, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admission::Gate;
use crate::engine::{Input, InputTx, Received, Wire};
use crate::stats::IoStats;
use crate::transport::{DatagramNet, DatagramSocket};

/// Largest stream message accepted.
pub const MAX_STREAM_MESSAGE: usize = 64 * 1024;

/// The idle timeout every TCP connection watches (zero: never closed for
/// idleness); `Gateway::tcp_idle` changes it, open connections included.
pub(crate) type TcpIdle = tokio::sync::watch::Receiver<Duration>;

/// Open TCP connections by peer address: a channel to each one's writer.
pub(crate) type TcpConns =
    Arc<Mutex<HashMap<SocketAddr, tokio::sync::mpsc::UnboundedSender<Bytes>>>>;

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
    /// TCP connections by peer address: a channel to the connection's writer.
    pub(crate) tcp: TcpConns,
    /// The idle timeout, for connections opened to trunks.
    pub(crate) tcp_idle: TcpIdle,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) input: InputTx,
    pub(crate) stats: Arc<IoStats>,
}

impl Wire for Outbound {
    fn send(&self, t: Transmit) -> Option<(TrunkId, TransportError)> {
        self.send_to(t.peer, t.payload, t.trunk)
    }
}

impl Outbound {
    /// Send one message. A failure to reach a trunk is returned as evidence.
    fn send_to(
        &self,
        peer: Peer,
        payload: Bytes,
        trunk: Option<TrunkId>,
    ) -> Option<(TrunkId, TransportError)> {
        self.stats.on_send(&payload);
        match peer.transport {
            Transport::Udp => {
                let connected = trunk.and_then(|t| self.trunk_socket(t, peer.addr));
                let socket = match &connected {
                    Some(s) => Some(s),
                    None => self.listener_for(peer.addr),
                };
                let r = match socket {
                    Some(s) => send_datagram(&**s, &payload, peer.addr),
                    None => Err(io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        "no UDP listener",
                    )),
                };
                match r {
                    Ok(None) => None,
                    // Sent, after an error about an earlier datagram.
                    Ok(Some(kind)) => trunk.map(|t| (t, kind)),
                    Err(e) => {
                        let ev = trunk.zip(transport_error(&e));
                        if ev.is_none() {
                            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer.addr, error = %e, "send failed");
                        }
                        ev
                    }
                }
            }
            Transport::Tcp => {
                self.send_tcp(peer.addr, payload, trunk);
                None
            }
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
                tracing::warn!(%peer, error = %e, "cannot open a socket for the trunk; sending from the listener");
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

    fn listener_for(&self, to: SocketAddr) -> Option<&Arc<dyn DatagramSocket>> {
        self.listeners
            .iter()
            .find(|(l, _)| l.is_ipv4() == to.is_ipv4())
            .or_else(|| self.listeners.first())
            .map(|(_, s)| s)
    }

    fn send_tcp(&self, addr: SocketAddr, payload: Bytes, trunk: Option<TrunkId>) {
        let Ok(mut conns) = self.tcp.lock() else {
            return;
        };
        if let Some(tx) = conns.get(&addr) {
            if tx.send(payload.clone()).is_ok() {
                return;
            }
            conns.remove(&addr);
        }
        let Some(trunk) = trunk else {
            // A caller's connection is gone: nothing to send on.
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Connect to the trunk; queue this message for the new connection.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(payload);
        conns.insert(addr, tx);
        let (input, stats, tcp) = (self.input.clone(), self.stats.clone(), self.tcp.clone());
        let idle = self.tcp_idle.clone();
        self.rt.spawn(self.input.supervise(async move {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    run_tcp(stream, addr, rx, input, stats, tcp, Some(trunk), idle).await;
                }
                Err(e) => {
                    if let Ok(mut c) = tcp.lock() {
                        c.remove(&addr);
                    }
                    let kind = transport_error(&e).unwrap_or(TransportError::ConnectionRefused);
                    let _ = input.try_send(Input::TransportError { trunk, kind });
                }
            }
        }));
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
) -> io::Result<Option<TransportError>> {
    match socket.try_send_to(payload, to) {
        Ok(()) => Ok(None),
        Err(e) => match transport_error(&e) {
            Some(kind) => socket.try_send_to(payload, to).map(|()| Some(kind)),
            None => Err(e),
        },
    }
}

/// Deliver one received datagram (or stream frame) to the core, unless
/// admission answers (`reply`) or drops a new request first
/// ([`crate::admission`]).
fn deliver(input: &InputTx, stats: &IoStats, from: Peer, data: Bytes, reply: &dyn Fn(Bytes)) {
    stats.received.fetch_add(1, Ordering::Relaxed);
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
        .try_send(Input::Message(Box::new(Received { from, msg, verdict })))
        .is_err()
    {
        stats.queue_drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Receive on a UDP socket until the task is stopped; `trunk`: the socket is
/// connected to that trunk, and its errors are evidence against it.
pub(crate) async fn recv_udp(
    socket: Arc<dyn DatagramSocket>,
    input: InputTx,
    stats: Arc<IoStats>,
    trunk: Option<TrunkId>,
) {
    // One receive buffer, reused; each datagram is copied out at its own
    // size. (Splitting it off the buffer instead kept a fresh 64 KiB
    // allocation alive per datagram for as long as its transaction lived:
    // page faults on every receive and resident memory that grew with
    // the call rate.)
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match socket.recv_from(&mut buf).await {
            Ok((_, from)) => {
                let data = Bytes::copy_from_slice(&buf);
                let reply = |b: Bytes| {
                    if socket.try_send_to(&b, from).is_err() {
                        stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                };
                deliver(
                    &input,
                    &stats,
                    Peer {
                        addr: from,
                        transport: Transport::Udp,
                    },
                    data,
                    &reply,
                );
            }
            Err(e) => match (trunk, transport_error(&e)) {
                (Some(t), Some(kind)) => {
                    if input
                        .try_send(Input::TransportError { trunk: t, kind })
                        .is_err()
                    {
                        stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    tracing::debug!(error = %e, "UDP receive error");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            },
        }
    }
}

/// Serve one TCP connection until it closes, fails or stays idle for the
/// `idle` timeout. Only a failure of a trunk's connection is evidence
/// against the trunk: an idle close is ours.
#[allow(clippy::too_many_arguments)]
async fn run_tcp(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    input: InputTx,
    stats: Arc<IoStats>,
    tcp: TcpConns,
    trunk: Option<TrunkId>,
    mut idle: TcpIdle,
) {
    let (mut rd, mut wr) = stream.into_split();
    // Last traffic either way, in ms since `born`: written by both halves.
    let born = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let touch = move |last: &AtomicU64| {
        last.store(born.elapsed().as_millis() as u64, Ordering::Relaxed);
    };
    let wrote = last.clone();
    let writer = tokio::spawn(input.supervise(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
            touch(&wrote);
        }
    }));
    let mut limit = *idle.borrow_and_update();
    let mut watching = true;
    let quiet_until =
        |limit: Duration| born + Duration::from_millis(last.load(Ordering::Relaxed)) + limit;
    let timer = tokio::time::sleep_until(quiet_until(limit));
    tokio::pin!(timer);
    let mut reaped = false;
    let mut framer = StreamFramer::new(MAX_STREAM_MESSAGE);
    let mut buf = vec![0u8; 16 * 1024];
    let peer = Peer {
        addr,
        transport: Transport::Tcp,
    };
    let error = loop {
        let read = tokio::select! {
            r = rd.read(&mut buf) => r,
            () = &mut timer, if !limit.is_zero() => {
                let at = quiet_until(limit);
                if tokio::time::Instant::now() >= at {
                    reaped = true;
                    break None;
                }
                timer.as_mut().reset(at);
                continue;
            }
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
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) => break transport_error(&e),
        };
        touch(&last);
        framer.extend(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_frame() {
                Ok(Some(lifeline_sip::Frame::Message(m))) => {
                    let reply = |b: Bytes| {
                        if let Ok(c) = tcp.lock() {
                            if let Some(tx) = c.get(&addr) {
                                let _ = tx.send(b);
                            }
                        }
                    };
                    deliver(&input, &stats, peer, m, &reply);
                }
                Ok(Some(lifeline_sip::Frame::KeepAlive)) => {
                    // RFC 5626: answer a CRLFCRLF ping with a CRLF pong.
                    if let Ok(c) = tcp.lock() {
                        if let Some(tx) = c.get(&addr) {
                            let _ = tx.send(Bytes::from_static(b"\r\n"));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(peer = %addr, error = %e, "closing stream: framing error");
                    writer.abort();
                    if let Ok(mut c) = tcp.lock() {
                        c.remove(&addr);
                    }
                    return;
                }
            }
        }
    };
    if reaped {
        close_idle(addr, &stats, &tcp, writer).await;
        return;
    }
    writer.abort();
    if let Ok(mut c) = tcp.lock() {
        c.remove(&addr);
    }
    if let (Some(t), Some(kind)) = (trunk, error) {
        let _ = input.try_send(Input::TransportError { trunk: t, kind });
    }
}

/// Close a connection left idle: nothing new is queued on it (the next
/// message to a trunk opens a new one), what is queued is written, then it
/// is closed. Not evidence against a trunk: the close is ours.
async fn close_idle(
    addr: SocketAddr,
    stats: &IoStats,
    tcp: &Mutex<HashMap<SocketAddr, tokio::sync::mpsc::UnboundedSender<Bytes>>>,
    mut writer: tokio::task::JoinHandle<()>,
) {
    stats.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(peer = %addr, "closing an idle TCP connection");
    if let Ok(mut c) = tcp.lock() {
        c.remove(&addr);
    }
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
/// task.
pub(crate) async fn accept_tcp(
    listener: tokio::net::TcpListener,
    input: InputTx,
    stats: Arc<IoStats>,
    tcp: TcpConns,
    accepting: Arc<AtomicBool>,
    idle: TcpIdle,
) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !accepting.load(Ordering::Relaxed) {
            continue; // shutting down: no new connections
        }
        let _ = stream.set_nodelay(true);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Ok(mut c) = tcp.lock() {
            c.insert(addr, tx);
        }
        let (input2, stats, tcp) = (input.clone(), stats.clone(), tcp.clone());
        tokio::spawn(input.supervise(run_tcp(
            stream,
            addr,
            rx,
            input2,
            stats,
            tcp,
            None,
            idle.clone(),
        )));
    }
}
