//! UDP behind a small trait, so the same engine runs over real sockets and,
//! in tests, over an in-process virtual network (`vnet`: delay, jitter, loss,
//! a trunk cut off) where `tc netem` is not available.
//!
//! The engine needs three things of a datagram socket: its address, a
//! receive, and a send that never blocks (from the core). A
//! [`DatagramNet`] binds them: unconnected for the listeners, connected to
//! one peer for each UDP trunk, sharing the listener's address (Via and
//! Record-Route stay the same) — with real sockets that is SO_REUSEPORT
//! plus `connect`, and the kernel then reports ICMP errors about that peer
//! on that socket.
//!
//! A receive is one of two kinds. A socket that says it is
//! [`blocking`](DatagramSocket::blocking) (real sockets on Linux) is
//! received on by a thread of its own, blocked in the kernel
//! ([`DatagramSocket::recv_batch_blocking`]): one syscall per wake-up, where
//! a task on the IO runtime costs an `epoll_wait`, the receive, a second
//! receive that finds nothing, and the runtime's park and unpark. Any
//! other socket (the virtual network) is awaited on the IO runtime
//! ([`DatagramSocket::recv_batch`]); the real socket also offers that,
//! for tests.
//!
//! Datagrams move in batches where the platform allows: on Linux one
//! wake-up takes up to [`RECV_BATCH`] datagrams with one `recvmmsg`, and a
//! run of datagrams leaving on one socket goes out with one `sendmmsg`
//! ([`DatagramSocket::try_send_batch`]). Neither waits to fill a batch: a
//! receive returns what the kernel holds (at low rates, one datagram), a
//! send what it was given. The trait's default methods take one datagram
//! at a time, so other implementations (the virtual network) need not
//! batch. No GRO or GSO: GSO needs equal-size segments to one
//! destination, which SIP's datagrams to many callers are not, and GRO
//! coalesces only equal-size datagrams from one sender.
//!
//! TCP is not behind this trait: it stays on real sockets only.
//!
//! With the `vnet` feature, `vnet::VnetNet` is the same trait over
//! webrtc-util's virtual network.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Handle;

/// Socket buffer size asked of the kernel (the kernel may cap it at
/// `net.core.rmem_max` / `wmem_max`): large, so bursts wait in the kernel
/// rather than being dropped at our socket.
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

#[cfg(feature = "vnet")]
pub mod vnet;

#[cfg(target_os = "linux")]
pub(crate) mod mmsg;

/// The largest UDP payload, and so the size of one receive slot.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// How long a blocked receive waits before it looks again whether it
/// should stop ([`DatagramSocket::recv_batch_blocking`]): a bound in case
/// [`DatagramSocket::stop_receiving`] did not wake it.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(250);

/// Datagrams one receive call takes at most ([`DatagramSocket::recv_batch`]).
pub const RECV_BATCH: usize = 32;

/// Datagrams one send call takes at most ([`DatagramSocket::try_send_batch`];
/// `sendmmsg` itself takes up to 1024).
pub const SEND_BATCH: usize = 64;

/// What [`DatagramSocket::recv_from`] returns.
pub type RecvFuture<'a> =
    Pin<Box<dyn Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a>>;

/// What [`DatagramSocket::recv_batch`] returns: how many datagrams.
pub type RecvBatchFuture<'a> = Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'a>>;

/// Receive buffers for up to [`RecvBatch::slots`] datagrams, reused from one
/// receive to the next, and what the last receive put in them.
///
/// One allocation of `slots` × [`MAX_DATAGRAM`] bytes, made zeroed (for a
/// buffer this large the allocator maps fresh zero pages: memory becomes
/// resident only where datagrams are written). A datagram leaves it
/// copied at its own size ([`RecvBatch::datagram`]), so no message keeps
/// a 64 KiB slot alive for as long as its transaction lives.
pub struct RecvBatch {
    slab: Vec<u8>,
    /// The datagrams, in order: slot, length, sender.
    got: Vec<(usize, usize, SocketAddr)>,
    /// The buffer of the one-at-a-time receive (the default
    /// [`DatagramSocket::recv_batch`]); allocated on first use.
    one: BytesMut,
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots())
            .field("got", &self.got)
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// Buffers for `slots` datagrams (at least one).
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        RecvBatch {
            slab: vec![0; slots * MAX_DATAGRAM],
            got: Vec::with_capacity(slots),
            one: BytesMut::new(),
        }
    }

    /// How many datagrams one receive can take.
    pub fn slots(&self) -> usize {
        self.slab.len() / MAX_DATAGRAM
    }

    /// How many datagrams the last receive took.
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// Whether the last receive took none.
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Forget what the last receive took.
    pub fn clear(&mut self) {
        self.got.clear();
    }

    /// Datagram `i` of the last receive, in place, and its sender.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let &(slot, len, from) = self.got.get(i)?;
        let start = slot * MAX_DATAGRAM;
        Some((self.slab.get(start..start + len)?, from))
    }

    /// Datagram `i` of the last receive, copied out at its own size, and
    /// its sender.
    pub fn datagram(&self, i: usize) -> Option<(Bytes, SocketAddr)> {
        self.get(i)
            .map(|(data, from)| (Bytes::copy_from_slice(data), from))
    }

    /// Add a datagram received some other way (one-at-a-time receives):
    /// false, and not added, when every slot is taken.
    pub fn push(&mut self, data: &[u8], from: SocketAddr) -> bool {
        let slot = self.got.last().map_or(0, |g| g.0 + 1);
        if slot >= self.slots() {
            return false;
        }
        let start = slot * MAX_DATAGRAM;
        let len = data.len().min(MAX_DATAGRAM);
        match self.slab.get_mut(start..start + len) {
            Some(buf) => {
                buf.copy_from_slice(data.get(..len).unwrap_or_default());
                self.got.push((slot, len, from));
                true
            }
            None => false,
        }
    }
}

/// How far [`DatagramSocket::try_send_batch`] got.
#[derive(Debug)]
pub struct BatchSent {
    /// Datagrams sent, from the first. When less than the batch, the
    /// datagram at this index was not sent.
    pub sent: usize,
    /// Why that datagram was not sent, when known. Linux's `sendmmsg`
    /// reports an error only when it is at the first datagram; after that
    /// it returns the count sent and drops the error (an ICMP error
    /// pending on a connected socket is then consumed unreported).
    pub error: Option<io::Error>,
}

/// One bound datagram socket.
pub trait DatagramSocket: Send + Sync + fmt::Debug + 'static {
    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Receive one datagram, appended to `buf`: its length and sender. On a
    /// connected socket the sender is the peer, and an ICMP error about the
    /// peer is returned here (`ConnectionRefused`, `HostUnreachable`, ...).
    fn recv_from<'a>(&'a self, buf: &'a mut BytesMut) -> RecvFuture<'a>;

    /// Send one datagram without blocking (called from the core). On a
    /// connected socket `to` is its peer; a failure the peer caused (ICMP) is
    /// an error of the same kinds as for `recv_from`.
    fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<()>;

    /// Receive what is waiting, at least one datagram and at most
    /// `batch.slots()`, into `batch` (cleared first); returns how many.
    /// Waits only for the first: it never waits to fill the batch. Errors
    /// as for [`recv_from`](Self::recv_from), for the first datagram.
    ///
    /// The default receives one datagram with `recv_from`.
    fn recv_batch<'a>(&'a self, batch: &'a mut RecvBatch) -> RecvBatchFuture<'a> {
        Box::pin(async move {
            batch.clear();
            let mut one = std::mem::take(&mut batch.one);
            one.clear();
            one.reserve(MAX_DATAGRAM);
            let r = self.recv_from(&mut one).await;
            let r = r.map(|(_, from)| usize::from(batch.push(&one, from)));
            batch.one = one;
            r
        })
    }

    /// Whether this socket is received on by a thread of its own, blocked
    /// in [`recv_batch_blocking`](Self::recv_batch_blocking), rather than
    /// by a task on the IO runtime awaiting
    /// [`recv_batch`](Self::recv_batch). The default: no.
    fn blocking(&self) -> bool {
        false
    }

    /// [`recv_batch`](Self::recv_batch), blocking the calling thread until
    /// the first datagram (or error) arrives; `WouldBlock` when none came
    /// within [`RECV_TIMEOUT`]. Once [`stop_receiving`](Self::stop_receiving)
    /// was called it returns at once, and what it returns means nothing
    /// (Linux returns empty datagrams): the caller looks at whether it is
    /// stopping before it looks at the result.
    ///
    /// The default: `Unsupported` (see [`blocking`](Self::blocking)).
    fn recv_batch_blocking(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.clear();
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Make a [`recv_batch_blocking`](Self::recv_batch_blocking) blocked on
    /// another thread return now, and every later one at once: the socket
    /// is being closed. Sends still work. The default does nothing.
    fn stop_receiving(&self) {}

    /// Send `batch` in order without blocking, stopping at the first
    /// datagram that cannot be sent ([`BatchSent`]). On a connected socket
    /// every `to` is its peer.
    ///
    /// The default sends one datagram at a time with `try_send_to`.
    fn try_send_batch(&self, batch: &[(&[u8], SocketAddr)]) -> BatchSent {
        for (i, (payload, to)) in batch.iter().enumerate() {
            if let Err(e) = self.try_send_to(payload, *to) {
                return BatchSent {
                    sent: i,
                    error: Some(e),
                };
            }
        }
        BatchSent {
            sent: batch.len(),
            error: None,
        }
    }
}

/// Where datagram sockets come from.
pub trait DatagramNet: Send + Sync + fmt::Debug + 'static {
    /// Bind `addr` (port 0: any free port). With `connect`, the socket sends
    /// to and receives from that peer only, and may share `addr` with an
    /// unconnected socket bound there before: datagrams from the peer reach
    /// this socket, all others the unconnected one. `rt` is the IO runtime
    /// that will await `recv_from`.
    fn bind(
        &self,
        rt: &Handle,
        addr: SocketAddr,
        connect: Option<SocketAddr>,
    ) -> io::Result<Arc<dyn DatagramSocket>>;
}

/// The operating system's UDP sockets.
pub fn real() -> Arc<dyn DatagramNet> {
    Arc::new(RealNet)
}

/// The operating system's UDP sockets (socket2: address and port reuse, large
/// buffers, non-blocking).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealNet;

impl DatagramNet for RealNet {
    fn bind(
        &self,
        rt: &Handle,
        addr: SocketAddr,
        connect: Option<SocketAddr>,
    ) -> io::Result<Arc<dyn DatagramSocket>> {
        Ok(Arc::new(RealSocket {
            socket: udp_socket(addr, connect)?,
            rt: rt.clone(),
            rx: OnceLock::new(),
            peer: connect,
        }))
    }
}

/// Flags of every send: never wait. On Linux the socket itself blocks (for
/// its receive thread), and `O_NONBLOCK` could not be set for sends alone:
/// it belongs to the open file, which a duplicate descriptor shares.
#[cfg(target_os = "linux")]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: std::ffi::c_int = 0;

fn udp_socket(bind: SocketAddr, connect: Option<SocketAddr>) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    // Best effort: the kernel caps these silently.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&bind.into())?;
    if let Some(peer) = connect {
        s.connect(&peer.into())?;
    }
    // Linux: blocking, for the receive thread; a timeout so that it looks
    // at its stop flag now and then whatever happens. Elsewhere the
    // runtime receives, on a non-blocking socket.
    #[cfg(target_os = "linux")]
    s.set_read_timeout(Some(RECV_TIMEOUT))?;
    #[cfg(not(target_os = "linux"))]
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// One kernel socket. On Linux it blocks, and is received on by a thread of
/// its own ([`DatagramSocket::blocking`]) with one `recvmmsg` per wake-up:
/// `MSG_WAITFORONE` waits for the first datagram and takes, up to the
/// batch, what is queued behind it. Every other call passes
/// `MSG_DONTWAIT`: the core's sends and the awaitable receive. (Keeping the
/// socket non-blocking and making the thread `poll` first would cost two
/// syscalls per wake-up, not one.)
///
/// The awaitable receive ([`DatagramSocket::recv_batch`], for tests and
/// other platforms) registers a duplicate with the IO runtime on first
/// use, not before: a registered socket wakes the runtime on every
/// datagram, whoever receives it.
#[derive(Debug)]
struct RealSocket {
    socket: UdpSocket,
    rt: Handle,
    rx: OnceLock<Registered>,
    peer: Option<SocketAddr>,
}

/// The socket as the IO runtime knows it: on Linux a descriptor it only
/// watches (tokio's `UdpSocket` refuses a blocking one, and would receive
/// without `MSG_DONTWAIT`).
#[cfg(target_os = "linux")]
type Registered = tokio::io::unix::AsyncFd<UdpSocket>;
#[cfg(not(target_os = "linux"))]
type Registered = tokio::net::UdpSocket;

impl RealSocket {
    /// The socket registered with the IO runtime, registered now if need be.
    fn registered(&self) -> io::Result<&Registered> {
        if let Some(rx) = self.rx.get() {
            return Ok(rx);
        }
        let rx = {
            let _guard = self.rt.enter();
            // SAFETY: the duplicate is owned by the registration, which
            // neither closes nor replaces it while registered.
            #[cfg(target_os = "linux")]
            #[allow(unsafe_code)]
            let rx = unsafe {
                Registered::register_with_interest(
                    self.socket.try_clone()?,
                    tokio::io::Interest::READABLE,
                )?
            };
            #[cfg(not(target_os = "linux"))]
            let rx = Registered::from_std(self.socket.try_clone()?)?;
            rx
        };
        // Two first uses at once: one registration is kept, the other
        // dropped (deregistered).
        let _ = self.rx.set(rx);
        self.rx
            .get()
            .ok_or_else(|| io::Error::other("UDP socket not registered"))
    }
}

impl DatagramSocket for RealSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// On Linux, a batch of one ([`recv_batch`](Self::recv_batch)) copied
    /// out: the socket blocks, so tokio's own receive (no flags) could
    /// block an IO thread. Not a production path.
    fn recv_from<'a>(&'a self, buf: &'a mut BytesMut) -> RecvFuture<'a> {
        Box::pin(async move {
            #[cfg(target_os = "linux")]
            {
                let mut one = RecvBatch::new(1);
                self.recv_batch(&mut one).await?;
                let (data, from) = one
                    .get(0)
                    .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
                buf.extend_from_slice(data);
                Ok((data.len(), from))
            }
            #[cfg(not(target_os = "linux"))]
            {
                let rx = self.registered()?;
                match self.peer {
                    Some(peer) => rx.recv_buf(buf).await.map(|n| (n, peer)),
                    None => rx.recv_buf_from(buf).await,
                }
            }
        })
    }

    fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<()> {
        let s = socket2::SockRef::from(&self.socket);
        match self.peer {
            Some(_) => s.send_with_flags(payload, SEND_FLAGS),
            None => s.send_to_with_flags(payload, &to.into(), SEND_FLAGS),
        }
        .map(|_| ())
    }

    /// One `recvmmsg` (`MSG_DONTWAIT`) per readiness wake-up (tokio waits
    /// for readiness and, on `EWOULDBLOCK`, clears it and waits again).
    #[cfg(target_os = "linux")]
    fn recv_batch<'a>(&'a self, batch: &'a mut RecvBatch) -> RecvBatchFuture<'a> {
        Box::pin(async move {
            batch.clear();
            let rx = self.registered()?;
            rx.async_io(tokio::io::Interest::READABLE, |socket| {
                mmsg::recv(socket, batch, self.peer, false)
            })
            .await
        })
    }

    #[cfg(target_os = "linux")]
    fn blocking(&self) -> bool {
        true
    }

    /// One `recvmmsg` with `MSG_WAITFORONE`.
    #[cfg(target_os = "linux")]
    fn recv_batch_blocking(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        mmsg::recv(&self.socket, batch, self.peer, true)
    }

    /// `shutdown(SHUT_RD)`: Linux wakes a receive blocked on the socket,
    /// and every later one returns at once. (On an unconnected socket the
    /// call reports `ENOTCONN`, but does it all the same.)
    fn stop_receiving(&self) {
        let _ = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Read);
    }

    /// One `sendmmsg` per [`SEND_BATCH`] datagrams.
    #[cfg(target_os = "linux")]
    fn try_send_batch(&self, batch: &[(&[u8], SocketAddr)]) -> BatchSent {
        let mut sent = 0;
        for chunk in batch.chunks(SEND_BATCH) {
            match mmsg::send(&self.socket, chunk, self.peer.is_some()) {
                Ok(n) if n >= chunk.len() => sent += chunk.len(),
                Ok(n) => {
                    return BatchSent {
                        sent: sent + n,
                        error: None,
                    }
                }
                Err(e) => {
                    return BatchSent {
                        sent,
                        error: Some(e),
                    }
                }
            }
        }
        BatchSent { sent, error: None }
    }
}
