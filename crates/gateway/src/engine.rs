//! The event loop: the pure proxy core on real sockets.
//!
//! ```text
//!  IO runtime (tokio, one thread per core)
//!  ---------------------------------------
//!  UDP listener   --recv--> parse+validate --+
//!  UDP per trunk  --recv--> parse+validate --+     core (one, behind a lock; whichever
//!     (connected: ICMP errors -> trunk)       |     thread has an input runs it)
//!  TCP connections --frame--> parse+validate -+--> queue --> Proxy::handle_checked
//!  admin HTTP --------- commands -------------+              poll_transmit -> send queue
//!                                                            poll_event -> metrics,
//!  timer thread: sleeps until the core's next deadline  -->  Proxy::handle_timeout
//!  send queue: sent in order, outside the core's lock, by whichever thread finds it free
//! ```
//!
//! Receiving, parsing and validating run on the IO threads in parallel, and
//! sending beside the core; routing (about two thirds of the work at
//! 4,000 calls/s, docs/PERFORMANCE.md) is serial. The core (every transaction and the trunks' health)
//! is one object used by one thread at a time: the IO thread that received
//! a message handles it to completion when the core is free, and otherwise
//! leaves it queued for the thread holding the core, which takes it before
//! it lets go (see [`core_entry`]). Failover decisions are made in one
//! place, in order, with one view of each trunk. (Sharding transactions
//! across cores would need the trunks' health shared between shards, and a
//! trunk that one shard sees failing must stop taking new calls from every
//! shard at once.)
//!
//! Each UDP trunk gets its own socket, bound to the listening address (so
//! Via and Record-Route stay the same) and `connect`ed to the trunk: the
//! kernel then reports ICMP port/host unreachable for that trunk as an error
//! on that socket, which becomes live evidence at once — the failover a
//! killed trunk costs is the time to the next send, not a timer.
//!
//! UDP goes through [`DatagramNet`] (`crate::transport`): real sockets in
//! production, an in-process virtual network in tests. TCP is real sockets only.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, SendError, Sender, TrySendError};
use lifeline_proxy::{
    Event, Peer, Proxy, ProxyConfig, Transmit, Transport, TransportError, TrunkId,
};
use lifeline_sip::{check_datagram, Message, StreamFramer, Verdict};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

use crate::transport::{DatagramNet, DatagramSocket};

/// Socket buffer size asked of the kernel (the kernel may cap it at
/// `net.core.rmem_max` / `wmem_max`): large, so bursts wait in the kernel
/// rather than being dropped at our socket.
pub(crate) const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
/// Inputs queued for the core (while another thread holds it) before new
/// ones are dropped.
pub(crate) const INPUT_QUEUE: usize = 64 * 1024;
/// Largest stream message accepted.
pub(crate) const MAX_STREAM_MESSAGE: usize = 64 * 1024;
/// A TCP connection with no traffic either way for this long is closed
/// (Kamailio's and OpenSIPS's `tcp_connection_lifetime` default).
pub(crate) const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The idle timeout every TCP connection watches (zero: never closed for
/// idleness); [`Gateway::tcp_idle`] changes it, open connections included.
type TcpIdle = tokio::sync::watch::Receiver<Duration>;

/// The way into the core: the proxy and everything its output goes to,
/// behind one lock, driven by whichever thread has an input for it.
///
/// An IO thread that has received and parsed a message queues it and, if
/// the core is free, takes the lock and handles everything queued itself
/// (run to completion: no hand-off to another thread, no second wake-up);
/// if another thread holds the core, that thread takes the input before it
/// lets go. A timer thread sleeps until the core's next deadline and runs
/// its timers; it is woken only when an input makes a deadline earlier.
///
/// This replaced a dedicated core thread fed by a channel: waking that
/// thread for every message (futex, context switch) was a fifth of the
/// gateway's CPU at 500 calls/s (docs/PERFORMANCE.md). The core is still
/// one thing, used by one thread at a time, in the order inputs arrive.
pub(crate) fn core_entry(stats: Arc<IoStats>) -> (InputTx, Arc<Shared>) {
    let (tx, rx) = crossbeam_channel::bounded(INPUT_QUEUE);
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            core: None,
            stopped: false,
            timer_at: None,
        }),
        tx,
        rx,
        timer: OnceLock::new(),
        stats,
        sends: Mutex::new(SendQueue::default()),
        sending: Mutex::new(()),
    });
    (
        InputTx {
            shared: shared.clone(),
        },
        shared,
    )
}

/// Sending side of the core: queue an input and see it handled.
#[derive(Clone, Debug)]
pub(crate) struct InputTx {
    shared: Arc<Shared>,
}

/// The core, its input queue and its timer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    slot: Mutex<Slot>,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    timer: OnceLock<Thread>,
    stats: Arc<IoStats>,
    /// What the core produced, in order, waiting to be sent.
    sends: Mutex<SendQueue>,
    /// Held by the one thread sending at a time.
    sending: Mutex<()>,
}

/// Messages to send, and where to.
#[derive(Debug, Default)]
struct SendQueue {
    queue: VecDeque<Transmit>,
    /// `None` before the start and after the stop.
    out: Option<Arc<Outbound>>,
}

/// What the core lock guards.
#[derive(Debug)]
struct Slot {
    /// `None` before the start (inputs wait) and after the stop.
    core: Option<Core>,
    /// Stopped: inputs are dropped.
    stopped: bool,
    /// When the timer thread means to wake up.
    timer_at: Option<Instant>,
}

impl InputTx {
    /// Queue an input unless the queue is full, and handle it now if the
    /// core is free.
    pub(crate) fn try_send(&self, input: Input) -> Result<(), TrySendError<Input>> {
        self.shared.tx.try_send(input)?;
        self.shared.combine();
        Ok(())
    }

    /// Queue an input, waiting for room, and handle it now if the core is
    /// free.
    pub(crate) fn send(&self, input: Input) -> Result<(), SendError<Input>> {
        self.shared.tx.send(input)?;
        self.shared.combine();
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handle what is queued if nobody else is: whoever holds the core looks
    /// at the queue again after letting go, so an input never waits for
    /// the next message.
    fn combine(&self) {
        loop {
            // Pairs with the fence below: either this thread sees the core
            // free, or the holder sees this input after letting go.
            fence(Ordering::SeqCst);
            let mut slot = match self.slot.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            let now = Instant::now();
            self.run_queued(&mut slot, now);
            drop(slot);
            self.busy(now);
            self.send_queued();
            fence(Ordering::SeqCst);
            if self.rx.is_empty() {
                return;
            }
        }
    }

    /// Send what the core produced, in the order it produced it, if no
    /// other thread is sending: the one that is takes these too before it
    /// stops. Sends (a syscall each, on loopback the receiver's work too)
    /// are outside the core's lock, so one thread sends while another
    /// routes.
    fn send_queued(&self) {
        let mut refused = false;
        loop {
            fence(Ordering::SeqCst);
            let sending = match self.sending.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => break,
            };
            let out = self.sends_lock().out.clone();
            loop {
                let Some(t) = self.sends_lock().queue.pop_front() else {
                    break;
                };
                let Some(out) = &out else {
                    continue; // stopped: nothing to send on
                };
                if let Some((trunk, kind)) = out.send(t.peer, t.payload, t.trunk) {
                    // Evidence against the trunk, through the core.
                    if self
                        .tx
                        .try_send(Input::TransportError { trunk, kind })
                        .is_err()
                    {
                        self.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                    }
                    refused = true;
                }
            }
            drop(sending);
            fence(Ordering::SeqCst);
            if self.sends_lock().queue.is_empty() {
                break;
            }
        }
        if refused {
            self.combine();
        }
    }

    fn sends_lock(&self) -> std::sync::MutexGuard<'_, SendQueue> {
        self.sends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Under the core's lock: hand what the core produced to the send queue.
    fn hand_over(&self, core: &mut Core) {
        if !core.pending.is_empty() {
            self.sends_lock().queue.extend(core.pending.drain(..));
        }
    }

    /// Count the time the core was held since `from`.
    fn busy(&self, from: Instant) {
        self.stats
            .core_busy_ns
            .fetch_add(from.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Under the lock: every queued input in order, then the timers if any
    /// is due; wake the timer thread if its sleep now ends too late.
    fn run_queued(&self, slot: &mut Slot, now: Instant) {
        let Some(core) = slot.core.as_mut() else {
            if slot.stopped {
                while self.rx.try_recv().is_ok() {}
            }
            return;
        };
        let mut n = 0;
        while let Ok(i) = self.rx.try_recv() {
            core.input(now, i);
            n += 1;
            if n % 256 == 0 && core.deadline() <= now {
                core.timers(now, self.rx.len());
            }
        }
        let mut next = core.deadline();
        if next <= now {
            core.timers(now, self.rx.len());
            next = core.deadline();
        }
        self.hand_over(core);
        if core.draining.is_some() {
            next = now; // the timer thread decides when the drain is over
        }
        if slot.timer_at.is_none_or(|t| next < t) {
            slot.timer_at = Some(next);
            if let Some(t) = self.timer.get() {
                t.unpark();
            }
        }
    }

    /// The timer thread: run the core's timers when due, until it stops.
    fn timer_loop(&self) {
        let _ = self.timer.set(std::thread::current());
        loop {
            let mut slot = self.lock();
            let now = Instant::now();
            let woke_for = slot.timer_at;
            self.run_queued(&mut slot, now);
            let Some(core) = slot.core.as_mut() else {
                return;
            };
            if let Some(at) = woke_for {
                // Woke for a timer: how late?
                core.overload.lag = core.overload.lag.max(now.saturating_duration_since(at));
            }
            if core.timers(now, self.rx.len()) {
                self.hand_over(core);
                slot.stopped = true;
                let core = slot.core.take();
                drop(slot);
                // The last answers go out; then the sockets are let go.
                self.send_queued();
                let out = self.sends_lock().out.take();
                drop(core);
                drop(out);
                return;
            }
            self.hand_over(core);
            let next = core.deadline();
            slot.timer_at = Some(next);
            drop(slot);
            self.busy(now);
            self.send_queued();
            fence(Ordering::SeqCst);
            if !self.rx.is_empty() {
                continue;
            }
            let now = Instant::now();
            if next > now {
                std::thread::park_timeout(next - now);
            }
        }
    }
}

/// A message off the wire, parsed and validated.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) from: Peer,
    pub(crate) msg: Option<Message>,
    pub(crate) verdict: Verdict,
}

/// Work for the core: runs against the proxy with the current time.
pub(crate) type CoreFn = Box<dyn FnOnce(&mut Proxy, Instant) + Send>;

/// What reaches the core.
pub(crate) enum Input {
    /// A message, already parsed and validated on an IO thread.
    Message(Box<Received>),
    /// A send to (or receive from) a trunk failed.
    TransportError {
        trunk: TrunkId,
        kind: TransportError,
    },
    /// Run a closure against the proxy (admin commands, status, tests).
    Call(CoreFn),
    /// Stop taking new calls, finish the rest, then stop.
    Shutdown { grace: Duration },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Message(r) => write!(f, "Message({:?}, {:?})", r.from, r.verdict),
            Input::TransportError { trunk, kind } => {
                write!(f, "TransportError({trunk:?}, {kind:?})")
            }
            Input::Call(_) => f.write_str("Call"),
            Input::Shutdown { grace } => write!(f, "Shutdown({grace:?})"),
        }
    }
}

/// Counters kept by the IO side.
#[derive(Debug, Default)]
pub(crate) struct IoStats {
    /// Inputs dropped because the core's queue was full.
    pub(crate) queue_drops: AtomicU64,
    /// Sends that failed (other than to trunks, which count as evidence).
    pub(crate) send_errors: AtomicU64,
    /// Datagrams received.
    pub(crate) received: AtomicU64,
    /// Messages sent.
    pub(crate) sent: AtomicU64,
    /// The kernel's UDP receive-buffer drop count, as last read.
    pub(crate) socket_drops: AtomicU64,
    /// TCP connections closed after `tcp_idle_timeout` without traffic.
    pub(crate) tcp_idle_closed: AtomicU64,
    /// Time the core was held (routing, by one thread at a time), ns.
    pub(crate) core_busy_ns: AtomicU64,
}

/// Observers of the proxy's events (metrics, journal, logs, the demo).
pub(crate) type EventSink = Box<dyn FnMut(&Event, Instant, &Proxy) + Send>;

/// Called by the core every `housekeeping` tick.
pub(crate) type Tick = Box<dyn FnMut(&mut Proxy, Instant, &IoStats) + Send>;

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
struct TrunkSocket {
    peer: SocketAddr,
    socket: Arc<dyn DatagramSocket>,
    stop: Arc<tokio::sync::Notify>,
}

impl TrunkSocket {
    /// Bind next to the listener `local`, connect to `peer`, start receiving.
    fn open(
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
        let (input, stats, stop2) = (input.clone(), stats.clone(), stop.clone());
        rt.spawn(async move {
            tokio::select! {
                _ = recv_udp(rx, input, stats, Some(trunk)) => {}
                _ = stop2.notified() => {}
            }
        });
        Ok(TrunkSocket { peer, socket, stop })
    }
}

/// Where the core sends.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// Where UDP sockets come from (trunk sockets are opened on demand).
    net: Arc<dyn DatagramNet>,
    /// UDP listening sockets.
    listeners: Vec<(SocketAddr, Arc<dyn DatagramSocket>)>,
    /// Connected UDP socket per trunk (by TrunkId index), when the trunk is UDP.
    trunk_sockets: Mutex<Vec<Option<TrunkSocket>>>,
    /// TCP connections by peer address: a channel to the connection's writer.
    tcp: Arc<Mutex<HashMap<SocketAddr, tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
    /// The idle timeout, for connections opened to trunks.
    tcp_idle: TcpIdle,
    rt: tokio::runtime::Handle,
    input: InputTx,
    stats: Arc<IoStats>,
}

impl Outbound {
    /// Send one message. A failure to reach a trunk is returned as evidence.
    fn send(
        &self,
        peer: Peer,
        payload: Bytes,
        trunk: Option<TrunkId>,
    ) -> Option<(TrunkId, TransportError)> {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        match peer.transport {
            Transport::Udp => {
                let connected = trunk.and_then(|t| self.trunk_socket(t, peer.addr));
                let r = match &connected {
                    Some(s) => s.try_send_to(&payload, peer.addr),
                    None => match self.listener_for(peer.addr) {
                        Some(s) => s.try_send_to(&payload, peer.addr),
                        None => Err(io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            "no UDP listener",
                        )),
                    },
                };
                match r {
                    Ok(()) => None,
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
        self.rt.spawn(async move {
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
        });
    }
}

/// Deliver one received datagram (or stream frame) to the core.
fn deliver(input: &InputTx, stats: &IoStats, from: Peer, data: Bytes) {
    stats.received.fetch_add(1, Ordering::Relaxed);
    let (msg, verdict) = check_datagram(data);
    if let Err(TrySendError::Full(_)) =
        input.try_send(Input::Message(Box::new(Received { from, msg, verdict })))
    {
        stats.queue_drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Receive on a UDP socket until the task is stopped; `trunk`: the socket is
/// connected to that trunk, and its errors are evidence against it.
async fn recv_udp(
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
                deliver(
                    &input,
                    &stats,
                    Peer {
                        addr: from,
                        transport: Transport::Udp,
                    },
                    data,
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
    tcp: Arc<Mutex<HashMap<SocketAddr, tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
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
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
            touch(&wrote);
        }
    });
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
                Ok(Some(lifeline_sip::Frame::Message(m))) => deliver(&input, &stats, peer, m),
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

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    input: InputTx,
    stats: Arc<IoStats>,
    tcp: Arc<Mutex<HashMap<SocketAddr, tokio::sync::mpsc::UnboundedSender<Bytes>>>>,
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
        let (input, stats, tcp) = (input.clone(), stats.clone(), tcp.clone());
        tokio::spawn(run_tcp(
            stream,
            addr,
            rx,
            input,
            stats,
            tcp,
            None,
            idle.clone(),
        ));
    }
}

/// What the gateway listens on, once bound.
#[derive(Clone, Debug)]
pub(crate) struct Bound {
    /// UDP listening addresses (actual ports).
    pub(crate) udp: Vec<SocketAddr>,
    /// TCP listening addresses (actual ports).
    pub(crate) tcp: Vec<SocketAddr>,
}

/// A running gateway's handle: send inputs, learn addresses, wait for it.
#[derive(Debug)]
pub(crate) struct Gateway {
    pub(crate) bound: Bound,
    pub(crate) input: InputTx,
    pub(crate) stats: Arc<IoStats>,
    core: Option<std::thread::JoinHandle<()>>,
    rt: Option<Runtime>,
    accepting: Arc<AtomicBool>,
    /// How long a TCP connection may stay idle (zero: never closed for
    /// that); `send_replace` applies a new value to open connections too.
    pub(crate) tcp_idle: tokio::sync::watch::Sender<Duration>,
}

/// How to start a gateway.
pub(crate) struct Options {
    /// (transport, address) to listen on; port 0 picks a free port.
    pub(crate) listen: Vec<(Transport, SocketAddr)>,
    /// Address put in Via/Record-Route; `None`: the first listener's.
    pub(crate) advertise: Option<SocketAddr>,
    /// Builds the proxy configuration once the advertised address is known.
    pub(crate) proxy_config: Box<dyn FnOnce(SocketAddr) -> ProxyConfig + Send>,
    /// IO threads (tokio workers), each receiving, parsing and handling.
    pub(crate) io_threads: usize,
    /// Event observers.
    pub(crate) sinks: Vec<EventSink>,
    /// Periodic work on the core.
    pub(crate) ticks: Vec<Tick>,
    /// How often `ticks` run.
    pub(crate) tick_every: Duration,
    /// Where UDP sockets come from: the operating system's
    /// (`crate::transport::real()`), or in tests a virtual network.
    pub(crate) net: Arc<dyn DatagramNet>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("io_threads", &self.io_threads)
            .field("net", &self.net)
            .finish()
    }
}

impl Gateway {
    /// Bind every socket and start the IO runtime and the timer thread.
    pub(crate) fn start(opts: Options) -> io::Result<Gateway> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.io_threads.max(1))
            .thread_name("lifeline-io")
            .enable_all()
            .build()?;
        let stats = Arc::new(IoStats::default());
        let (tx, shared) = core_entry(stats.clone());
        let accepting = Arc::new(AtomicBool::new(true));
        let tcp_conns = Arc::new(Mutex::new(HashMap::new()));
        let (tcp_idle, idle_rx) = tokio::sync::watch::channel(TCP_IDLE_TIMEOUT);

        // Bind UDP first: trunk sockets share its port.
        let mut udp = Vec::new();
        let mut listeners = Vec::new();
        for (t, addr) in &opts.listen {
            if *t == Transport::Udp {
                let s = opts.net.bind(rt.handle(), *addr, None)?;
                let local = s.local_addr()?;
                udp.push(local);
                listeners.push((local, s));
            }
        }
        let mut tcp = Vec::new();
        let mut tcp_listeners = Vec::new();
        for (t, addr) in &opts.listen {
            if *t == Transport::Tcp {
                // A TCP listener on port 0 takes the UDP listener's port if there is one.
                let addr = if addr.port() == 0 {
                    udp.iter()
                        .find(|u| u.ip() == addr.ip())
                        .copied()
                        .unwrap_or(*addr)
                } else {
                    *addr
                };
                let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
                s.set_reuse_address(true)?;
                s.bind(&addr.into())?;
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                let l: std::net::TcpListener = s.into();
                tcp.push(l.local_addr()?);
                tcp_listeners.push(l);
            }
        }
        let advertise = opts
            .advertise
            .map(|a| {
                if a.port() == 0 {
                    SocketAddr::new(
                        a.ip(),
                        udp.first().or(tcp.first()).map_or(5060, |b| b.port()),
                    )
                } else {
                    a
                }
            })
            .or_else(|| udp.first().or(tcp.first()).copied())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "nothing to listen on"))?;
        let cfg = (opts.proxy_config)(advertise);
        let now = Instant::now();
        let proxy = Proxy::new(now, cfg.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;

        // A connected socket per UDP trunk, on the UDP listener's address
        // (opened now so the first probe's ICMP is caught; reopened if a
        // reload moves the trunk).
        let mut trunk_sockets = Vec::new();
        for t in &cfg.trunks {
            let local = listeners
                .iter()
                .find(|(l, _)| l.is_ipv4() == t.peer.addr.is_ipv4())
                .map(|(l, _)| *l);
            let id = proxy.health().find(&t.name);
            let sock = match (t.peer.transport, local, id) {
                (Transport::Udp, Some(local), Some(id)) => Some(TrunkSocket::open(
                    &*opts.net,
                    local,
                    t.peer.addr,
                    id,
                    rt.handle(),
                    &tx,
                    &stats,
                )?),
                _ => None,
            };
            trunk_sockets.push(sock);
        }

        {
            let _guard = rt.enter();
            for (_, s) in &listeners {
                rt.spawn(recv_udp(s.clone(), tx.clone(), stats.clone(), None));
            }
            for l in tcp_listeners {
                let l = tokio::net::TcpListener::from_std(l)?;
                rt.spawn(accept_tcp(
                    l,
                    tx.clone(),
                    stats.clone(),
                    tcp_conns.clone(),
                    accepting.clone(),
                    idle_rx.clone(),
                ));
            }
        }

        let out = Outbound {
            net: opts.net,
            listeners,
            trunk_sockets: Mutex::new(trunk_sockets),
            tcp: tcp_conns,
            tcp_idle: idle_rx,
            rt: rt.handle().clone(),
            input: tx.clone(),
            stats: stats.clone(),
        };
        shared.sends_lock().out = Some(Arc::new(out));
        shared.lock().core = Some(Core {
            proxy,
            pending: Vec::new(),
            sinks: opts.sinks,
            ticks: opts.ticks,
            tick_every: opts.tick_every,
            next_tick: now,
            draining: None,
            overload: Overload::default(),
            accepting: accepting.clone(),
            stats: stats.clone(),
        });
        shared.combine(); // anything received while starting
        let timer = shared.clone();
        let core = std::thread::Builder::new()
            .name("lifeline-timer".into())
            .spawn(move || timer.timer_loop())?;
        Ok(Gateway {
            bound: Bound { udp, tcp },
            input: tx,
            stats,
            core: Some(core),
            rt: Some(rt),
            accepting,
            tcp_idle,
        })
    }

    /// The IO runtime, for the admin server and signal handling.
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.rt.as_ref().map(|r| r.handle().clone())
    }

    /// Ask for a graceful stop and wait for it.
    pub(crate) fn shutdown(mut self, grace: Duration) {
        self.accepting.store(false, Ordering::Relaxed);
        let _ = self.input.send(Input::Shutdown { grace });
        self.join();
    }

    /// Wait for the core to finish (after a Shutdown input).
    pub(crate) fn join(&mut self) {
        if let Some(core) = self.core.take() {
            let _ = core.join();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// Run `f` on the core and wait for its answer.
    #[cfg(test)]
    pub(crate) fn with_proxy<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Proxy, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.input
            .send(Input::Call(Box::new(move |p, now| {
                let _ = tx.send(f(p, now));
            })))
            .ok()?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.core.is_some() {
            let _ = self.input.send(Input::Shutdown {
                grace: Duration::ZERO,
            });
            self.join();
        }
    }
}

/// The proxy core and what its output goes to; used by one thread at a
/// time (see [`core_entry`]).
struct Core {
    proxy: Proxy,
    /// Transmits produced while the core was held, for the send queue.
    pending: Vec<Transmit>,
    sinks: Vec<EventSink>,
    ticks: Vec<Tick>,
    tick_every: Duration,
    next_tick: Instant,
    draining: Option<Instant>,
    overload: Overload,
    accepting: Arc<AtomicBool>,
    stats: Arc<IoStats>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Handle one input and send what it produced.
    fn input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Message(r) => {
                let Received { from, msg, verdict } = *r;
                self.proxy.handle_checked(now, from, msg, verdict);
            }
            Input::TransportError { trunk, kind } => {
                tracing::debug!(?trunk, ?kind, "transport error");
                self.proxy.handle_transport_error(now, trunk, kind);
            }
            Input::Call(f) => f(&mut self.proxy, now),
            Input::Shutdown { grace } => {
                self.accepting.store(false, Ordering::Relaxed);
                self.proxy.set_accepting(false);
                self.draining = Some(now + grace);
            }
        }
        flush(&mut self.proxy, &mut self.pending, &mut self.sinks, now);
    }

    /// The next instant the timers need running.
    fn deadline(&self) -> Instant {
        self.proxy
            .poll_timeout()
            .map_or(self.next_tick, |t| t.min(self.next_tick))
    }

    /// Run the timers due at `now` and, when due, the housekeeping tick.
    /// Returns whether the core has finished (drained after a shutdown).
    fn timers(&mut self, now: Instant, queued: usize) -> bool {
        self.proxy.handle_timeout(now);
        flush(&mut self.proxy, &mut self.pending, &mut self.sinks, now);
        if now >= self.next_tick {
            let overloaded = self.overload.check(queued, &self.stats);
            if overloaded != self.overload.reported {
                self.overload.reported = overloaded;
                if overloaded {
                    tracing::warn!(
                        queue = queued,
                        "gateway overloaded: timeouts are not held against trunks until it clears"
                    );
                } else {
                    tracing::info!("gateway no longer overloaded");
                }
            }
            self.proxy.health_mut().set_overloaded(overloaded);
            for t in &mut self.ticks {
                t(&mut self.proxy, now, &self.stats);
            }
            flush(&mut self.proxy, &mut self.pending, &mut self.sinks, now);
            self.next_tick = now + self.tick_every;
        }
        self.draining
            .is_some_and(|until| self.proxy.is_settled() || now >= until)
    }
}

/// Whether the gateway itself is overloaded: its input queue filling, inputs
/// or kernel socket buffers dropping, or the loop waking late. Evidence seen
/// while overloaded (timeouts above all) says more about the gateway than
/// about the trunks, so the health checker is told.
#[derive(Debug, Default)]
struct Overload {
    lag: Duration,
    queue_drops: u64,
    socket_drops: u64,
    reported: bool,
}

impl Overload {
    fn check(&mut self, queued: usize, stats: &IoStats) -> bool {
        let drops = stats.queue_drops.load(Ordering::Relaxed);
        let socket = udp_receive_errors().unwrap_or(self.socket_drops);
        stats.socket_drops.store(socket, Ordering::Relaxed);
        let overloaded = queued > INPUT_QUEUE / 4
            || drops > self.queue_drops
            || socket > self.socket_drops
            || self.lag > Duration::from_millis(100);
        self.queue_drops = drops;
        self.socket_drops = socket;
        self.lag = Duration::ZERO;
        overloaded
    }
}

/// The kernel's count of UDP datagrams dropped for want of receive buffer
/// (Linux `/proc/net/snmp`, `Udp: RcvbufErrors`), for every socket of the
/// host: a rise means someone's socket overflowed, most likely ours.
fn udp_receive_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn flush(proxy: &mut Proxy, pending: &mut Vec<Transmit>, sinks: &mut [EventSink], now: Instant) {
    loop {
        let mut any = false;
        while let Some(t) = proxy.poll_transmit() {
            any = true;
            pending.push(t);
        }
        while let Some(ev) = proxy.poll_event() {
            any = true;
            for s in sinks.iter_mut() {
                s(&ev, now, proxy);
            }
        }
        if !any {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The engine over real loopback sockets: trunks are plain UDP sockets
    //! answering like a UAS, driven by threads; nothing is timed, only counted
    //! and ordered.

    use std::net::UdpSocket;

    use super::*;
    use lifeline_proxy::{RouteConfig, RouteMatch, TrunkConfig};
    use lifeline_sip::{HeaderName, MessageWriter};

    /// A UAS on a loopback socket answering OPTIONS 200 and INVITE 100/180/200
    /// (or `code`), until the socket is dropped.
    struct Uas {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        invites: Arc<AtomicU64>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Uas {
        fn start(code: u16) -> Uas {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let invites = Arc::new(AtomicU64::new(0));
            let (s2, i2) = (stop.clone(), invites.clone());
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !s2.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                        continue;
                    };
                    if m.status().is_some() {
                        continue;
                    }
                    let reply = |code: u16| {
                        let mut w =
                            MessageWriter::response_to(&m, code, "X", Some(b"uas")).unwrap();
                        if (180..300).contains(&code) {
                            for h in m.headers().filter(|h| h.name == HeaderName::RecordRoute) {
                                w.raw_header(h.raw_name, h.value).unwrap();
                            }
                            w.header(HeaderName::Contact, format!("<sip:uas@{addr}>").as_bytes())
                                .unwrap();
                        }
                        w.finish()
                    };
                    match m.method_bytes().unwrap_or_default() {
                        b"INVITE" => {
                            i2.fetch_add(1, Ordering::Relaxed);
                            let codes: &[u16] = if code == 200 {
                                &[100, 180, 200]
                            } else {
                                &[code]
                            };
                            for c in codes {
                                sock.send_to(&reply(*c), from).unwrap();
                            }
                        }
                        b"ACK" => {}
                        _ => {
                            sock.send_to(&reply(200), from).unwrap();
                        }
                    }
                }
            });
            Uas {
                addr,
                stop,
                invites,
                thread: Some(thread),
            }
        }

        /// Close the socket: later datagrams get ICMP port unreachable.
        fn kill(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    impl Drop for Uas {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn gateway(primary: SocketAddr, backup: SocketAddr) -> Gateway {
        Gateway::start(Options {
            listen: vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())],
            advertise: None,
            proxy_config: Box::new(move |adv| {
                let t = |n: &str, a| TrunkConfig::new(n, Peer::udp(a));
                ProxyConfig::new(
                    adv,
                    vec![t("primary", primary), t("backup", backup)],
                    vec![RouteConfig::new(
                        "emergency",
                        RouteMatch::Any,
                        &["primary", "backup"],
                    )],
                )
            }),
            io_threads: 1,
            sinks: vec![],
            ticks: vec![],
            tick_every: Duration::from_millis(100),
            net: crate::transport::real(),
        })
        .unwrap()
    }

    fn invite(caller: SocketAddr, n: u32) -> String {
        format!(
            "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bKc{n}\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@orig>;tag=c{n}\r\nTo: <sip:999@gw>\r\nCall-ID: e2e-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// Place a call and wait for its final status.
    fn call(sock: &UdpSocket, gw: SocketAddr, n: u32) -> Option<u16> {
        let me = sock.local_addr().unwrap();
        sock.send_to(invite(me, n).as_bytes(), gw).unwrap();
        let mut buf = [0u8; 65536];
        for _ in 0..200 {
            let Ok(len) = sock.recv(&mut buf) else {
                continue;
            };
            let m = Message::parse(Bytes::copy_from_slice(&buf[..len])).ok()?;
            if m.call_id() != Some(format!("e2e-{n}").as_bytes()) {
                continue;
            }
            if let Some(code) = m.status().filter(|c| *c >= 200) {
                return Some(code);
            }
        }
        None
    }

    #[test]
    fn calls_go_through_and_a_killed_primary_fails_over() {
        let mut primary = Uas::start(200);
        let backup = Uas::start(200);
        let gw = gateway(primary.addr, backup.addr);
        let gw_addr = gw.bound.udp[0];
        let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
        caller
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        for n in 0..5 {
            assert_eq!(call(&caller, gw_addr, n), Some(200));
        }
        assert_eq!(primary.invites.load(Ordering::Relaxed), 5);
        primary.kill();
        for n in 5..10 {
            assert_eq!(
                call(&caller, gw_addr, n),
                Some(200),
                "call {n} after the kill"
            );
        }
        assert_eq!(backup.invites.load(Ordering::Relaxed), 5);
        let state = gw.with_proxy(|p, _| {
            let id = p.health().find("primary").unwrap();
            p.health().trunk(id).unwrap().state
        });
        assert_eq!(
            state,
            Some(lifeline_health::State::Down),
            "ICMP made it Down"
        );
        gw.shutdown(Duration::from_secs(1));
    }

    #[test]
    fn a_503_trunk_fails_over() {
        let primary = Uas::start(503);
        let backup = Uas::start(200);
        let gw = gateway(primary.addr, backup.addr);
        let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
        caller
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(call(&caller, gw.bound.udp[0], 1), Some(200));
        assert_eq!(primary.invites.load(Ordering::Relaxed), 1);
        assert_eq!(backup.invites.load(Ordering::Relaxed), 1);
        gw.shutdown(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tcp_tests {
    //! Stream transport end to end: a caller over TCP, a trunk over TCP.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use lifeline_proxy::{ProbeConfig, RouteConfig, RouteMatch, TrunkConfig};
    use lifeline_sip::{Frame, HeaderName, MessageWriter};

    /// A TCP UAS: accepts connections, frames messages, answers INVITE
    /// 100/180/200 and anything else 200.
    fn tcp_trunk() -> (SocketAddr, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let invites = Arc::new(AtomicU64::new(0));
        let inv = invites.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                let inv = inv.clone();
                std::thread::spawn(move || {
                    let mut framer = StreamFramer::default();
                    let mut buf = [0u8; 16384];
                    loop {
                        let Ok(n) = conn.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        framer.extend(&buf[..n]);
                        while let Ok(Some(Frame::Message(b))) = framer.next_frame() {
                            let Ok(m) = Message::parse(b) else { continue };
                            if m.status().is_some() || m.method_bytes() == Some(b"ACK") {
                                continue;
                            }
                            let codes: &[u16] = if m.method_bytes() == Some(b"INVITE") {
                                inv.fetch_add(1, Ordering::Relaxed);
                                &[100, 180, 200]
                            } else {
                                &[200]
                            };
                            for &c in codes {
                                let mut w =
                                    MessageWriter::response_to(&m, c, "X", Some(b"tcp")).unwrap();
                                if c > 100 {
                                    for h in
                                        m.headers().filter(|h| h.name == HeaderName::RecordRoute)
                                    {
                                        w.raw_header(h.raw_name, h.value).unwrap();
                                    }
                                }
                                let _ = conn.write_all(&w.finish());
                            }
                        }
                    }
                });
            }
        });
        (addr, invites)
    }

    #[test]
    fn a_tcp_caller_and_a_tcp_trunk() {
        let (trunk, invites) = tcp_trunk();
        let gw = Gateway::start(Options {
            listen: vec![
                (Transport::Udp, "127.0.0.1:0".parse().unwrap()),
                (Transport::Tcp, "127.0.0.1:0".parse().unwrap()),
            ],
            advertise: None,
            proxy_config: Box::new(move |adv| {
                let peer = Peer {
                    addr: trunk,
                    transport: Transport::Tcp,
                };
                let probe = ProbeConfig {
                    enabled: false,
                    ..ProbeConfig::default()
                };
                ProxyConfig::new(
                    adv,
                    vec![TrunkConfig {
                        probe,
                        ..TrunkConfig::new("tcp", peer)
                    }],
                    vec![RouteConfig::new("all", RouteMatch::Any, &["tcp"])],
                )
            }),
            io_threads: 1,
            sinks: vec![],
            ticks: vec![],
            tick_every: Duration::from_millis(100),
            net: crate::transport::real(),
        })
        .unwrap();
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
        assert_eq!(invites.load(Ordering::Relaxed), 1);
        gw.shutdown(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod stream_tests;
