//! UDP behind a small trait, so the same engine runs over real sockets and,
//! in tests, over an in-process virtual network (`vnet`: delay, jitter, loss,
//! a trunk cut off) where `tc netem` is not available.
//!
//! The engine needs three things of a datagram socket: its address, an
//! awaitable receive (on an IO thread), and a send that never blocks (from
//! the core). A [`DatagramNet`] binds them: unconnected for the
//! listeners, connected to one peer for each UDP trunk, sharing the
//! listener's address (Via and Record-Route stay the same) — with real
//! sockets that is SO_REUSEPORT plus `connect`, and the kernel then reports
//! ICMP errors about that peer on that socket.
//!
//! Datagrams move in batches where the platform allows: on Linux one
//! readiness wake-up takes up to [`RECV_BATCH`] datagrams with one
//! `recvmmsg` ([`DatagramSocket::recv_batch`]), and a run of datagrams
//! leaving on one socket goes out with one `sendmmsg`
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
use std::sync::Arc;

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
mod mmsg;

/// The largest UDP payload, and so the size of one receive slot.
pub const MAX_DATAGRAM: usize = 64 * 1024;

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
        let tx = udp_socket(addr, connect)?;
        let _guard = rt.enter();
        let rx = tokio::net::UdpSocket::from_std(tx.try_clone()?)?;
        Ok(Arc::new(RealSocket {
            tx,
            rx,
            peer: connect,
        }))
    }
}

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
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// One kernel socket, twice: a plain non-blocking handle the core
/// sends on, and a duplicate registered with the IO runtime for receiving.
#[derive(Debug)]
struct RealSocket {
    tx: UdpSocket,
    rx: tokio::net::UdpSocket,
    peer: Option<SocketAddr>,
}

impl DatagramSocket for RealSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tx.local_addr()
    }

    fn recv_from<'a>(&'a self, buf: &'a mut BytesMut) -> RecvFuture<'a> {
        Box::pin(async move {
            match self.peer {
                Some(peer) => self.rx.recv_buf(buf).await.map(|n| (n, peer)),
                None => self.rx.recv_buf_from(buf).await,
            }
        })
    }

    fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<()> {
        match self.peer {
            Some(_) => self.tx.send(payload),
            None => self.tx.send_to(payload, to),
        }
        .map(|_| ())
    }

    /// One `recvmmsg` per readiness wake-up (tokio waits for readiness
    /// and, on `EWOULDBLOCK`, clears it and waits again).
    #[cfg(target_os = "linux")]
    fn recv_batch<'a>(&'a self, batch: &'a mut RecvBatch) -> RecvBatchFuture<'a> {
        Box::pin(async move {
            batch.clear();
            self.rx
                .async_io(tokio::io::Interest::READABLE, || {
                    mmsg::recv(&self.rx, batch, self.peer)
                })
                .await
        })
    }

    /// One `sendmmsg` per [`SEND_BATCH`] datagrams.
    #[cfg(target_os = "linux")]
    fn try_send_batch(&self, batch: &[(&[u8], SocketAddr)]) -> BatchSent {
        let mut sent = 0;
        for chunk in batch.chunks(SEND_BATCH) {
            match mmsg::send(&self.tx, chunk, self.peer.is_some()) {
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
