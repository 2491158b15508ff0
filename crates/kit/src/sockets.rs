//! The [`Answerer`] on loopback sockets: one thread for UDP (and the
//! answers that fall due), with TCP on the same port a thread for the
//! listener and one per connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::Transport;
use lifeline_sip::{Frame, StreamFramer};

use crate::uas::{Answerer, Mode, Out, UasStats};

/// How often the threads look for a stop, and for answers that fell due.
const POLL: Duration = Duration::from_millis(5);

/// How a [`Uas`] starts.
#[derive(Clone, Debug)]
pub struct UasConfig {
    /// Its To tag, and its threads' name.
    pub name: String,
    pub mode: Mode,
    /// Listen on TCP on the UDP port too.
    pub tcp: bool,
    /// Send a 2xx again until its ACK (RFC 3261 §13.3.1.4), over UDP.
    pub retransmit_2xx: bool,
}

impl Default for UasConfig {
    fn default() -> Self {
        Self {
            name: "uas".into(),
            mode: Mode::Answer,
            tcp: false,
            retransmit_2xx: false,
        }
    }
}

/// State the threads share with the handle.
#[derive(Debug)]
struct Shared {
    answerer: Mutex<Answerer>,
    stats: UasStats,
    stop: AtomicBool,
    /// Open TCP connections by peer, for answers that fall due later.
    conns: Mutex<HashMap<SocketAddr, TcpStream>>,
}

impl Shared {
    fn answerer(&self) -> MutexGuard<'_, Answerer> {
        self.answerer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<SocketAddr, TcpStream>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A UAS on a loopback port (UDP, optionally TCP too), answering as its
/// [`Mode`] says until it is dropped or killed.
#[derive(Debug)]
pub struct Uas {
    addr: SocketAddr,
    config: UasConfig,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Uas {
    /// A UDP UAS on a port of 127.0.0.1 from the OS.
    pub fn start(mode: Mode) -> Uas {
        Self::with(
            UasConfig {
                mode,
                ..UasConfig::default()
            },
            "127.0.0.1:0".parse().expect("an address"),
        )
        .expect("a loopback UAS")
    }

    /// A UAS as `config` says on `bind` (port 0: one from the OS, free for
    /// TCP too when `config.tcp`).
    pub fn with(config: UasConfig, bind: SocketAddr) -> io::Result<Uas> {
        let (udp, tcp) = Self::bind(bind, config.tcp)?;
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            answerer: Mutex::new(Answerer::new(
                addr,
                &config.name,
                config.mode,
                config.retransmit_2xx,
            )),
            stats: UasStats::default(),
            stop: AtomicBool::new(false),
            conns: Mutex::default(),
        });
        let mut uas = Uas {
            addr,
            config,
            shared,
            threads: Vec::new(),
        };
        uas.spawn(udp, tcp)?;
        Ok(uas)
    }

    /// A UDP socket on `bind`, and with `tcp` a TCP listener on its port
    /// (another process may hold that port for TCP: with port 0, try
    /// another).
    fn bind(bind: SocketAddr, tcp: bool) -> io::Result<(UdpSocket, Option<TcpListener>)> {
        let mut last = None;
        for _ in 0..50 {
            let udp = UdpSocket::bind(bind)?;
            if !tcp {
                return Ok((udp, None));
            }
            match TcpListener::bind(udp.local_addr()?) {
                Ok(l) => return Ok((udp, Some(l))),
                Err(e) if bind.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no port free for UDP and TCP")))
    }

    fn spawn(&mut self, udp: UdpSocket, tcp: Option<TcpListener>) -> io::Result<()> {
        udp.set_read_timeout(Some(POLL))?;
        let shared = self.shared.clone();
        self.threads.push(
            std::thread::Builder::new()
                .name(format!("{}-udp", self.config.name))
                .spawn(move || udp_loop(&udp, &shared))?,
        );
        if let Some(listener) = tcp {
            listener.set_nonblocking(true)?;
            let shared = self.shared.clone();
            let name = self.config.name.clone();
            self.threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-tcp"))
                    .spawn(move || accept_loop(&listener, &shared))?,
            );
        }
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.answerer().set_mode(mode);
    }

    pub fn mode(&self) -> Mode {
        self.shared.answerer().mode()
    }

    pub fn stats(&self) -> &UasStats {
        &self.shared.stats
    }

    /// New INVITEs so far.
    pub fn invites(&self) -> u64 {
        self.shared.stats.invites.load(Ordering::Relaxed)
    }

    /// Every request so far, in arrival order: (transport, method).
    pub fn seen(&self) -> Vec<(Transport, String)> {
        self.shared.stats.seen()
    }

    /// The last requests, byte for byte ([`UasStats::requests`]).
    pub fn requests(&self) -> Vec<Bytes> {
        self.shared.stats.requests()
    }

    /// Die: close every socket. The UDP port then answers ICMP port
    /// unreachable, TCP connections are reset or refused.
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.conns().clear();
        self.shared.answerer().forget();
    }

    /// Come back on the same port, in the mode it had, counting on.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.kill();
        let (udp, tcp) = Self::bind(self.addr, self.config.tcp)?;
        self.shared.stop.store(false, Ordering::Relaxed);
        self.spawn(udp, tcp)
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Send `out`: over UDP on `udp`, over TCP on the connection to its peer.
fn send(udp: &UdpSocket, shared: &Shared, out: Vec<Out>) {
    for o in out {
        match o.transport {
            Transport::Udp => {
                let _ = udp.send_to(&o.bytes, o.to);
            }
            _ => {
                if let Some(conn) = shared.conns().get_mut(&o.to) {
                    let _ = conn.write_all(&o.bytes);
                }
            }
        }
    }
}

fn udp_loop(udp: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let due = shared.answerer().poll(Instant::now(), &shared.stats);
        send(udp, shared, due);
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        let out =
            shared
                .answerer()
                .on_message(Instant::now(), data, from, Transport::Udp, &shared.stats);
        send(udp, shared, out);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut conns = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => {
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                conns.push(std::thread::spawn(move || tcp_loop(conn, peer, &shared)));
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn tcp_loop(mut conn: TcpStream, peer: SocketAddr, shared: &Shared) {
    let Ok(()) = conn.set_read_timeout(Some(POLL)) else {
        return;
    };
    if let Ok(c) = conn.try_clone() {
        shared.conns().insert(peer, c);
    }
    let mut framer = StreamFramer::default();
    let mut buf = [0u8; 16384];
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match conn.read(&mut buf) {
            Ok(0) => {
                shared.stats.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                shared.stats.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        framer.extend(&buf[..n]);
        while let Ok(Some(Frame::Message(b))) = framer.next_frame() {
            let out = shared.answerer().on_message(
                Instant::now(),
                b,
                peer,
                Transport::Tcp,
                &shared.stats,
            );
            for o in out {
                let _ = conn.write_all(&o.bytes);
            }
        }
    }
    shared.conns().remove(&peer);
}

/// Read from `conn` until its peer closes it (bounded: 10 s of silence is
/// a failure); true if it did, by FIN or reset. What arrives before the
/// close is read and dropped.
pub fn closed_by_peer(conn: &mut TcpStream) -> bool {
    if conn
        .set_read_timeout(Some(Duration::from_secs(10)))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}
