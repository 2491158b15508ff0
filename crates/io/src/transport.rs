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

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Handle;

/// Socket buffer size asked of the kernel (the kernel may cap it at
/// `net.core.rmem_max` / `wmem_max`): large, so bursts wait in the kernel
/// rather than being dropped at our socket.
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

#[cfg(feature = "vnet")]
pub mod vnet;

/// What [`DatagramSocket::recv_from`] returns.
pub type RecvFuture<'a> =
    Pin<Box<dyn Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a>>;

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
}
