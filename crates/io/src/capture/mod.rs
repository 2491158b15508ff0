//! Capture to Homer: every SIP message the gateway receives and sends, with
//! its real addresses and the time it crossed the IO edge, exported as HEP
//! version 3 ([`hep`]) over UDP to a collector (Homer, sipcapture).
//!
//! ```text
//!  IO edge (receive and send paths)      capture thread (`lifeline-hep`)
//!  --------------------------------      ------------------------------------
//!  on? -- no --> nothing more                 |
//!   | yes                                     v
//!   +-- Captured (time, addresses, Bytes) --> bounded queue --> parse Call-ID
//!       full: dropped, counted                                  select (calls: emergency|failed:
//!  event stage: call started / ended -------> bounded queue -->   held per call, see `select`)
//!       (emergency | failed only)                               encode HEP3, send (non-blocking UDP,
//!                                                               one sendmmsg per 64 packets)
//! ```
//!
//! The call path pays for capture only when it is on: one branch when
//! capture is not configured, and when it is, a clock read, a reference
//! count (the message's `Bytes`, never a copy) and a `try_send` on a
//! bounded queue. It never waits: a full queue drops the message and counts
//! it ([`CaptureDrop::QueueFull`]). The capture thread never wakes the
//! call path either: it polls the queue (every 1 ms while there is work,
//! backing off to [`MAX_POLL`] when idle), so a send on the call path
//! is never a system call to wake it. Everything after the queue (parsing
//! the Call-ID, holding calls, encoding, sending) is the capture thread's
//! work, off the core's lock and off the IO threads.
//!
//! Counted in [`IoStats`]: packets handed to the kernel for the collector
//! (`capture_exported`) and messages dropped, by [`CaptureDrop`]
//! (`capture_dropped`); the bytes held for calls waiting for their outcome
//! (`capture_held_bytes`).
//!
//! The gateway's side of a message is the address of the socket it went
//! through; a socket bound to a wildcard (`0.0.0.0`) is given the
//! advertised address instead (the kernel is not asked, per datagram, which
//! of the host's addresses a datagram arrived on).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use lifeline_proxy::{Event, Transport};
use lifeline_sip::{Message, Method};

use crate::observe::EventSink;
use crate::stats::IoStats;

pub mod hep;
mod select;

use hep::IpProto;
use select::{Notice, Outcome, Selector};

/// Messages waiting for the capture thread, by default.
pub const CAPTURE_QUEUE: usize = 8192;

/// How long a call's messages wait for its outcome (`calls: failed`), by
/// default: longer than a call rings (Timer C, 181 s) and fails over.
pub const CAPTURE_HOLD: Duration = Duration::from_secs(300);

/// Bytes of messages held for calls waiting for their outcome, by default.
pub const CAPTURE_HOLD_BYTES: usize = 32 * 1024 * 1024;

/// The capture agent id sent when none is configured (Kamailio's and
/// OpenSIPS's default).
pub const CAPTURE_NODE_ID: u32 = 1;

/// The longest the capture thread sleeps when it finds nothing to do: the
/// most a message waits in the queue before it is looked at.
pub const MAX_POLL: Duration = Duration::from_millis(16);

/// Packets per `sendmmsg`.
const SEND_BATCH: usize = 64;

/// Messages taken off the queue between two looks at the call notices and
/// the settings.
const ROUND: usize = 1024;

/// Call notices waiting for the capture thread (they are few: a few per
/// call).
const NOTICE_QUEUE: usize = 65_536;

/// Which messages are exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureCalls {
    /// Every SIP message received and sent.
    All,
    /// The messages of emergency calls.
    Emergency,
    /// The messages of calls that failed (the caller got an error from
    /// the gateway or the far end), and of emergency calls that did not
    /// connect for any reason (cancelled by the caller too).
    Failed,
}

impl CaptureCalls {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureCalls::All => "all",
            CaptureCalls::Emergency => "emergency",
            CaptureCalls::Failed => "failed",
        }
    }
}

/// Why a captured message was not exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureDrop {
    /// The queue to the capture thread was full (or a call's notice could
    /// not be queued).
    QueueFull,
    /// Larger than one HEP packet over UDP can carry.
    TooLarge,
    /// The send to the collector failed: the socket buffer was full, or
    /// the collector's host refused an earlier packet (ICMP), which the
    /// kernel reports on the next send and discards that one.
    SendError,
    /// Held for a call, past `hold_bytes` (or past the Call-IDs remembered).
    HoldFull,
    /// Held for a call whose outcome did not come within `hold` (or when
    /// capture stopped or changed its mode).
    HoldExpired,
}

impl CaptureDrop {
    /// Every reason, in the order of [`IoStats::capture_dropped`].
    pub const ALL: [CaptureDrop; 5] = [
        CaptureDrop::QueueFull,
        CaptureDrop::TooLarge,
        CaptureDrop::SendError,
        CaptureDrop::HoldFull,
        CaptureDrop::HoldExpired,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureDrop::QueueFull => "queue_full",
            CaptureDrop::TooLarge => "too_large",
            CaptureDrop::SendError => "send_error",
            CaptureDrop::HoldFull => "hold_full",
            CaptureDrop::HoldExpired => "hold_expired",
        }
    }
}

/// What to capture, and where to.
#[derive(Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The HEP collector (UDP).
    pub collector: SocketAddr,
    /// Which messages are exported.
    pub calls: CaptureCalls,
    /// The capture agent id (HEP chunk 0x000c).
    pub node_id: u32,
    /// The authentication key (HEP chunk 0x000e), if the collector wants one.
    pub password: Option<String>,
    /// Messages waiting for the capture thread at most; past it they are
    /// dropped. Fixed when the gateway starts.
    pub queue: usize,
    /// How long a call's messages wait for its outcome (`failed`).
    pub hold: Duration,
    /// Bytes of messages held for calls at most.
    pub hold_bytes: usize,
}

impl fmt::Debug for CaptureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureConfig")
            .field("collector", &self.collector)
            .field("calls", &self.calls)
            .field("node_id", &self.node_id)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("queue", &self.queue)
            .field("hold", &self.hold)
            .field("hold_bytes", &self.hold_bytes)
            .finish()
    }
}

impl CaptureConfig {
    /// Every message to `collector`, with the defaults.
    pub fn new(collector: SocketAddr) -> Self {
        Self {
            collector,
            calls: CaptureCalls::All,
            node_id: CAPTURE_NODE_ID,
            password: None,
            queue: CAPTURE_QUEUE,
            hold: CAPTURE_HOLD,
            hold_bytes: CAPTURE_HOLD_BYTES,
        }
    }
}

/// One message as it crossed the IO edge.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    /// When (the gateway's monotonic clock; made wall-clock time on the
    /// capture thread).
    pub(crate) at: Instant,
    pub(crate) proto: IpProto,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    /// The message, as it went over the wire.
    pub(crate) payload: Bytes,
    /// Received by the gateway (else sent): `dst` is the gateway's side.
    pub(crate) received: bool,
    /// Its Call-ID, a slice of `payload` (found on the capture thread).
    pub(crate) call_id: Option<Bytes>,
}

/// What the capture thread is told besides messages.
enum Control {
    /// New settings (a reload), or `None`: off.
    Set(Option<CaptureConfig>),
    /// Send what is queued and end.
    Stop,
}

/// The capture of a running gateway: the IO edge's way in, and the thread
/// that exports.
pub struct Capture {
    /// Whether the IO edge captures (a reload may turn it off).
    on: AtomicBool,
    /// Whether the event sink passes call notices on (`emergency`,
    /// `failed`).
    calls: AtomicBool,
    messages: Sender<Captured>,
    notices: Sender<Notice>,
    control: Sender<Control>,
    stats: Arc<IoStats>,
    /// The settings in force (`None`: off), and the queue's size, fixed.
    current: Mutex<Option<CaptureConfig>>,
    queue: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("on", &self.on)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Start the capture thread with `cfg`; `advertise` stands in for a
    /// wildcard socket address.
    pub(crate) fn start(
        cfg: CaptureConfig,
        advertise: SocketAddr,
        stats: Arc<IoStats>,
    ) -> io::Result<Arc<Capture>> {
        let queue = cfg.queue.max(1);
        let (messages, rx) = crossbeam_channel::bounded(queue);
        let (notices, notices_rx) = crossbeam_channel::bounded(NOTICE_QUEUE);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let mut worker = Worker {
            rx,
            notices: notices_rx,
            control: control_rx,
            settings: None,
            socket: None,
            selector: None,
            advertise,
            anchor: Anchor::now(),
            out: Vec::new(),
            buf: Vec::new(),
            stats: stats.clone(),
        };
        worker.apply(Some(cfg.clone()));
        let thread = std::thread::Builder::new()
            .name("lifeline-hep".into())
            .spawn(move || worker.run())?;
        Ok(Arc::new(Capture {
            on: AtomicBool::new(true),
            calls: AtomicBool::new(cfg.calls != CaptureCalls::All),
            messages,
            notices,
            control,
            stats,
            current: Mutex::new(Some(cfg)),
            queue,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Put new settings in force (a reload); `None` turns capture off (the
    /// IO edge stops capturing; the thread stays, idle). The queue keeps
    /// the size it started with ([`Capture::queue`]).
    pub fn reconfigure(&self, cfg: Option<CaptureConfig>) {
        let on = cfg.is_some();
        let calls = cfg.as_ref().is_some_and(|c| c.calls != CaptureCalls::All);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = cfg.clone();
        let _ = self.control.send(Control::Set(cfg));
        if let Some(t) = self.thread_handle() {
            t.unpark();
        }
        self.calls.store(calls, Ordering::Relaxed);
        self.on.store(on, Ordering::Relaxed);
    }

    /// The settings in force, `None` when turned off.
    pub fn config(&self) -> Option<CaptureConfig> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The queue's size, fixed when the gateway started.
    pub fn queue(&self) -> usize {
        self.queue
    }

    fn thread_handle(&self) -> Option<std::thread::Thread> {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|t| t.thread().clone())
    }

    /// On the call path: queue one message that crossed the IO edge, from
    /// `src` to `dst` over `transport`. Never waits: a full queue drops it,
    /// counted.
    #[inline]
    pub(crate) fn message(
        &self,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &Bytes,
        received: bool,
    ) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let c = Captured {
            at: Instant::now(),
            proto: match transport {
                Transport::Udp => IpProto::Udp,
                Transport::Tcp => IpProto::Tcp,
            },
            src,
            dst,
            payload: payload.clone(),
            received,
            call_id: None,
        };
        if self.messages.try_send(c).is_err() {
            self.stats.capture_drop(CaptureDrop::QueueFull, 1);
        }
    }

    /// The event sink that tells the capture thread which calls started,
    /// and how they ended (only while `calls` is `emergency` or `failed`).
    pub(crate) fn sink(self: &Arc<Self>) -> EventSink {
        let c = self.clone();
        Box::new(move |ev: &Event, _now, _names| {
            if !c.calls.load(Ordering::Relaxed) {
                return;
            }
            let n = match ev {
                Event::CallStarted { call, info, .. } => Notice::Started {
                    call: *call,
                    call_id: info.call_id.clone(),
                    emergency: info.emergency.is_some(),
                },
                Event::CallConnected { call, .. } => Notice::Ended {
                    call: *call,
                    outcome: Outcome::Connected,
                },
                Event::CallFailed { call, .. } => Notice::Ended {
                    call: *call,
                    outcome: Outcome::Failed,
                },
                Event::CallCancelled { call, .. } => Notice::Ended {
                    call: *call,
                    outcome: Outcome::Cancelled,
                },
                _ => return,
            };
            if c.notices.try_send(n).is_err() {
                c.stats.capture_drop(CaptureDrop::QueueFull, 1);
            }
        })
    }

    /// Export what is queued and end the thread (the gateway has stopped:
    /// nothing more is captured). Waits for it (a second at most).
    pub(crate) fn stop(&self) {
        self.on.store(false, Ordering::Relaxed);
        let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let _ = self.control.send(Control::Stop);
        t.thread().unpark();
        let end = Instant::now() + Duration::from_secs(1);
        while !t.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!("the capture thread did not stop within 1 s; left to end alone");
        }
    }
}

/// The wall-clock time of a monotonic instant: read together, now and
/// then (every second), so that a step of the wall clock is followed.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    at: Instant,
    wall: Duration,
}

impl Anchor {
    fn now() -> Self {
        Anchor {
            at: Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn wall(&self, t: Instant) -> Duration {
        match t.checked_duration_since(self.at) {
            Some(after) => self.wall + after,
            None => self
                .wall
                .saturating_sub(self.at.saturating_duration_since(t)),
        }
    }
}

/// The settings the thread works with.
struct Settings {
    collector: SocketAddr,
    calls: CaptureCalls,
    node_id: u32,
    password: Option<Vec<u8>>,
}

/// The capture thread.
struct Worker {
    rx: Receiver<Captured>,
    notices: Receiver<Notice>,
    control: Receiver<Control>,
    settings: Option<Settings>,
    socket: Option<UdpSocket>,
    /// For `emergency` and `failed`.
    selector: Option<Selector>,
    advertise: SocketAddr,
    anchor: Anchor,
    /// Selected, to be encoded and sent, with their Call-IDs.
    out: Vec<Captured>,
    buf: Vec<u8>,
    stats: Arc<IoStats>,
}

/// A UDP socket connected to the collector, non-blocking.
fn collector_socket(collector: SocketAddr) -> io::Result<UdpSocket> {
    let any: IpAddr = if collector.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let s = UdpSocket::bind((any, 0))?;
    s.connect(collector)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Worker {
    /// Put `cfg` in force: the collector's socket (again, if it moved),
    /// the selection (what was held under the old one is dropped).
    fn apply(&mut self, cfg: Option<CaptureConfig>) {
        let Some(cfg) = cfg else {
            self.clear_selector();
            self.settings = None;
            self.socket = None;
            return;
        };
        let moved = self.settings.as_ref().map(|s| s.collector) != Some(cfg.collector);
        if moved || self.socket.is_none() {
            self.socket = match collector_socket(cfg.collector) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(collector = %cfg.collector, error = %e, "capture: cannot open a socket to the HEP collector; captured messages are dropped");
                    None
                }
            };
        }
        let same_selection = self.settings.as_ref().is_some_and(|s| s.calls == cfg.calls);
        if !same_selection {
            self.clear_selector();
        }
        self.selector = match cfg.calls {
            CaptureCalls::All => None,
            calls => match self.selector.take() {
                Some(mut s) if same_selection => {
                    s.set_bounds(cfg.hold, cfg.hold_bytes);
                    Some(s)
                }
                _ => Some(Selector::new(calls, cfg.hold, cfg.hold_bytes)),
            },
        };
        self.settings = Some(Settings {
            collector: cfg.collector,
            calls: cfg.calls,
            node_id: cfg.node_id,
            password: cfg.password.map(String::into_bytes),
        });
    }

    fn clear_selector(&mut self) {
        if let Some(mut s) = self.selector.take() {
            let stats = self.stats.clone();
            s.clear(&mut |why, n| stats.capture_drop(why, n));
        }
        self.stats.set_capture_held(0);
    }

    fn run(mut self) {
        lower_priority();
        let mut sleep = Duration::from_millis(1);
        let mut last_expire = Instant::now();
        loop {
            let mut stop = false;
            loop {
                match self.control.try_recv() {
                    Ok(Control::Set(cfg)) => self.apply(cfg),
                    Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            let mut work = self.take_notices(now);
            // Take at most a round of messages, then look at the notices
            // again: a call's notice is never kept waiting long behind a
            // flood of messages.
            let limit = if stop { usize::MAX } else { ROUND };
            let mut n = 0;
            while n < limit {
                let Ok(m) = self.rx.try_recv() else { break };
                self.take(now, m);
                n += 1;
            }
            work |= n > 0;
            if stop {
                self.take_notices(now);
            }
            self.send();
            if now.saturating_duration_since(last_expire) >= Duration::from_millis(100) || stop {
                last_expire = now;
                self.anchor = Anchor::now();
                if let Some(s) = self.selector.as_mut() {
                    let stats = self.stats.clone();
                    s.expire(now, &mut |why, n| stats.capture_drop(why, n));
                }
            }
            if let Some(s) = &self.selector {
                self.stats.set_capture_held(s.held_bytes());
            }
            if stop {
                self.clear_selector();
                return;
            }
            if work {
                sleep = Duration::from_millis(1);
            } else {
                std::thread::park_timeout(sleep);
                sleep = (sleep * 2).min(MAX_POLL);
            }
        }
    }

    /// The call notices waiting; whether there were any.
    fn take_notices(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok(n) = self.notices.try_recv() {
            any = true;
            if let Some(s) = self.selector.as_mut() {
                let stats = self.stats.clone();
                s.notice(now, n, &mut self.out, &mut |why, k| {
                    stats.capture_drop(why, k)
                });
            }
        }
        any
    }

    /// One captured message: to the collector, held for its call, or not
    /// exported.
    fn take(&mut self, now: Instant, mut m: Captured) {
        if self.settings.is_none() {
            return; // turned off since it was captured
        }
        if m.payload.iter().all(|&b| b == b'\r' || b == b'\n') {
            return; // a CRLF keep-alive (RFC 5626) or its pong: not a message
        }
        let parsed = Message::parse(m.payload.clone()).ok();
        m.call_id = parsed
            .as_ref()
            .and_then(Message::call_id)
            .map(|id| m.payload.slice_ref(id));
        let Some(s) = self.selector.as_mut() else {
            self.out.push(m);
            return;
        };
        let starts = m.received
            && parsed.as_ref().is_some_and(|p| {
                p.method() == Some(Method::Invite) && p.to().ok().is_some_and(|t| t.tag().is_none())
            });
        let call_id = m.call_id.clone();
        let stats = self.stats.clone();
        s.message(
            now,
            m,
            call_id.as_deref(),
            starts,
            &mut self.out,
            &mut |why, k| stats.capture_drop(why, k),
        );
    }

    /// The gateway's side of `m`, with a wildcard replaced by the advertised
    /// address.
    fn ours(&self, a: SocketAddr) -> SocketAddr {
        if a.ip().is_unspecified() {
            SocketAddr::new(self.advertise.ip(), a.port())
        } else {
            a
        }
    }

    /// Encode what was selected and send it, a batch per system call.
    fn send(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let out = std::mem::take(&mut self.out);
        let Some(settings) = &self.settings else {
            return;
        };
        let Some(socket) = &self.socket else {
            self.stats
                .capture_drop(CaptureDrop::SendError, out.len() as u64);
            return;
        };
        let mut packets: Vec<(usize, usize)> = Vec::with_capacity(out.len());
        self.buf.clear();
        for m in &out {
            let (src, dst) = if m.received {
                (m.src, self.ours(m.dst))
            } else {
                (self.ours(m.src), m.dst)
            };
            let p = hep::Packet {
                proto: m.proto,
                src,
                dst,
                time: self.anchor.wall(m.at),
                node_id: settings.node_id,
                password: settings.password.as_deref(),
                payload: &m.payload,
                correlation: m.call_id.as_deref(),
            };
            let start = self.buf.len();
            match hep::encode(&p, &mut self.buf) {
                Ok(()) => packets.push((start, self.buf.len())),
                Err(_) => self.stats.capture_drop(CaptureDrop::TooLarge, 1),
            }
        }
        let slices: Vec<&[u8]> = packets
            .iter()
            .filter_map(|&(a, b)| self.buf.get(a..b))
            .collect();
        let mut rest = slices.as_slice();
        while !rest.is_empty() {
            let batch = rest.get(..SEND_BATCH).unwrap_or(rest);
            match send_batch(socket, settings.collector, batch) {
                Ok(n) if n > 0 => {
                    self.stats.add_capture_exported(n as u64);
                    rest = rest.get(n..).unwrap_or_default();
                }
                // The first packet was not taken (a full buffer, or an
                // ICMP error about an earlier one): it is lost, the rest
                // goes on.
                _ => {
                    self.stats.capture_drop(CaptureDrop::SendError, 1);
                    rest = rest.get(1..).unwrap_or_default();
                }
            }
        }
    }
}

/// How much lower than the call path the capture thread runs (Linux
/// `nice`): when the host is short of CPU, the threads that route calls
/// get it first, and capture falls behind (its queue fills and drops,
/// counted) rather than taking it from them.
pub const CAPTURE_NICE: i32 = 10;

/// Lower the calling thread's priority by [`CAPTURE_NICE`] (best effort:
/// nothing happens where it is refused).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: `gettid` takes nothing and returns this thread's id;
    // `setpriority` takes three integers and reads no memory. On Linux a
    // thread id with PRIO_PROCESS names this thread alone.
    let r = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS as _,
            libc::gettid() as libc::id_t,
            CAPTURE_NICE,
        )
    };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "capture: cannot lower the capture thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Send `batch` in order on the connected `socket`: how many went.
#[cfg(target_os = "linux")]
fn send_batch(socket: &UdpSocket, to: SocketAddr, batch: &[&[u8]]) -> io::Result<usize> {
    let items: Vec<(&[u8], SocketAddr)> = batch.iter().map(|p| (*p, to)).collect();
    crate::transport::mmsg::send(socket, &items, true)
}

#[cfg(not(target_os = "linux"))]
fn send_batch(socket: &UdpSocket, _to: SocketAddr, batch: &[&[u8]]) -> io::Result<usize> {
    let mut sent = 0;
    for p in batch {
        match socket.send(p) {
            Ok(_) => sent += 1,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sent)
}
