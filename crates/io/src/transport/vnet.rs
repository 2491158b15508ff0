//! [`DatagramNet`] over webrtc-util's virtual network (`vnet`), for tests:
//! hosts with virtual addresses behind a virtual router that can delay,
//! jitter, drop or cut off their datagrams, all in this process.
//!
//! A vnet `Conn` is async and owns its address alone, so each bound address
//! is one `Conn` (a `Port`) with two tasks on the virtual network's
//! runtime: a sender draining an unbounded channel (so `try_send_to` never
//! blocks the core thread) and a receiver handing each datagram to the
//! socket connected to its sender, else to the unconnected one — what the
//! kernel does for the engine's connected trunk sockets. A virtual network
//! has no ICMP: a trunk cut off is a black hole, never `ConnectionRefused`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::{Bytes, BytesMut};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use webrtc_util::vnet::net::Net;
use webrtc_util::Conn;

use super::{DatagramNet, DatagramSocket, RecvFuture};

type Datagram = (Bytes, SocketAddr);

fn other(e: impl fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The sockets of one host of a virtual network.
pub struct VnetNet {
    net: Arc<Net>,
    /// The runtime the virtual network (router, `Conn`s) runs on.
    rt: Handle,
    /// Bound addresses, shared by the sockets bound to them.
    ports: Mutex<HashMap<SocketAddr, Weak<Port>>>,
}

impl fmt::Debug for VnetNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VnetNet").finish_non_exhaustive()
    }
}

impl VnetNet {
    /// Sockets on `net`, a host whose virtual network runs on `rt`.
    pub fn new(net: Arc<Net>, rt: Handle) -> Arc<VnetNet> {
        Arc::new(VnetNet {
            net,
            rt,
            ports: Mutex::default(),
        })
    }

    /// Run `f` on the virtual network's runtime and wait for it (from a
    /// thread that is not one of that runtime's).
    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| other("the virtual network has stopped"))
    }
}

impl DatagramNet for VnetNet {
    fn bind(
        &self,
        _rt: &Handle,
        addr: SocketAddr,
        connect: Option<SocketAddr>,
    ) -> io::Result<Arc<dyn DatagramSocket>> {
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = match addr.port() {
            0 => None,
            _ => ports.get(&addr).and_then(Weak::upgrade),
        };
        let port = match shared {
            Some(p) => p,
            None => {
                let net = self.net.clone();
                let conn = self
                    .run(async move { net.bind(addr).await })?
                    .map_err(other)?;
                let port = Port::start(conn, &self.rt)?;
                ports.retain(|_, p| p.strong_count() > 0);
                ports.insert(port.local, Arc::downgrade(&port));
                port
            }
        };
        drop(ports);
        let (route, rx) = unbounded_channel();
        port.routes().insert(connect, route.clone());
        Ok(Arc::new(VnetSocket {
            port,
            peer: connect,
            route,
            rx: tokio::sync::Mutex::new(rx),
        }))
    }
}

/// One bound virtual address.
#[derive(Debug)]
struct Port {
    local: SocketAddr,
    /// Where received datagrams go, by the peer a socket is connected to
    /// (`None`: the unconnected socket).
    routes: Mutex<HashMap<Option<SocketAddr>, UnboundedSender<Datagram>>>,
    /// To the sender task.
    out: UnboundedSender<Datagram>,
}

impl Port {
    fn start(conn: Arc<dyn Conn + Send + Sync>, rt: &Handle) -> io::Result<Arc<Port>> {
        let local = conn.local_addr().map_err(other)?;
        let (out, mut queued) = unbounded_channel::<Datagram>();
        let port = Arc::new(Port {
            local,
            routes: Mutex::default(),
            out,
        });
        let sender = conn.clone();
        rt.spawn(async move {
            while let Some((payload, to)) = queued.recv().await {
                // Like UDP, a datagram the network cannot take is lost.
                let _ = sender.send_to(&payload, to).await;
            }
            // The last socket on this address is gone: release it (this
            // also ends the receiver below).
            let _ = sender.close().await;
        });
        let weak = Arc::downgrade(&port);
        rt.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok((n, from)) = conn.recv_from(&mut buf).await {
                let Some(port) = weak.upgrade() else { break };
                let routes = port.routes();
                if let Some(to) = routes.get(&Some(from)).or_else(|| routes.get(&None)) {
                    let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    let _ = to.send((data, from));
                }
            }
        });
        Ok(port)
    }

    fn routes(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Option<SocketAddr>, UnboundedSender<Datagram>>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A socket on a [`Port`], connected to `peer` or not.
#[derive(Debug)]
struct VnetSocket {
    port: Arc<Port>,
    peer: Option<SocketAddr>,
    /// Our entry in the port's routes (to remove it, and only it, on drop).
    route: UnboundedSender<Datagram>,
    rx: tokio::sync::Mutex<UnboundedReceiver<Datagram>>,
}

impl DatagramSocket for VnetSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.port.local)
    }

    fn recv_from<'a>(&'a self, buf: &'a mut BytesMut) -> RecvFuture<'a> {
        Box::pin(async move {
            match self.rx.lock().await.recv().await {
                Some((data, from)) => {
                    buf.extend_from_slice(&data);
                    Ok((data.len(), from))
                }
                None => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "virtual socket closed",
                )),
            }
        })
    }

    fn try_send_to(&self, payload: &[u8], to: SocketAddr) -> io::Result<()> {
        let to = self.peer.unwrap_or(to);
        self.port
            .out
            .send((Bytes::copy_from_slice(payload), to))
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "virtual socket closed"))
    }
}

impl Drop for VnetSocket {
    fn drop(&mut self) {
        let mut routes = self.port.routes();
        if routes
            .get(&self.peer)
            .is_some_and(|r| r.same_channel(&self.route))
        {
            routes.remove(&self.peer);
        }
    }
}
