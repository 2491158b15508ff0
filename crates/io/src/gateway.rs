//! A running gateway: bind every socket, start the IO runtime and the timer
//! thread, put the core in place; stop it gracefully, or learn that it
//! failed.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeline_proxy::{Proxy, ProxyConfig, Transport};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Runtime;

use crate::capture::{Capture, CaptureConfig};
use crate::clock::Clock;
use crate::engine::{core_entry, Core, Input, InputTx, Shared, Tick};
use crate::limits::{TcpGate, TcpLimits};
use crate::net::{accept_tcp, recv_udp, Outbound, TcpShared, TrunkSocket};
use crate::observe::{EventSink, Observers, SinkTick};
use crate::stats::IoStats;
use crate::transport::DatagramNet;

/// A TCP connection with no traffic either way for this long is closed
/// (Kamailio's and OpenSIPS's `tcp_connection_lifetime` default); the
/// daemon's `tcp_idle_timeout` key defaults to it.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the gateway listens on, once bound.
#[derive(Clone, Debug)]
pub struct Bound {
    /// UDP listening addresses (actual ports).
    pub udp: Vec<SocketAddr>,
    /// TCP listening addresses (actual ports).
    pub tcp: Vec<SocketAddr>,
}

/// How to start a gateway.
pub struct Options {
    /// (transport, address) to listen on; port 0 picks a free port.
    pub listen: Vec<(Transport, SocketAddr)>,
    /// Address put in Via/Record-Route; `None`: the first listener's.
    pub advertise: Option<SocketAddr>,
    /// Builds the proxy configuration once the advertised address is known.
    pub proxy_config: Box<dyn FnOnce(SocketAddr) -> ProxyConfig + Send>,
    /// IO threads (tokio workers), each receiving, parsing and handling.
    pub io_threads: usize,
    /// Event observers: they see every event, in order, outside the core's
    /// lock.
    pub sinks: Vec<EventSink>,
    /// Periodic work beside the sinks, after the events produced before
    /// the tick (every `tick_every`, with `ticks`).
    pub sink_ticks: Vec<SinkTick>,
    /// Periodic work on the core, under its lock.
    pub ticks: Vec<Tick>,
    /// How often `ticks` and `sink_ticks` run (and the overload check).
    pub tick_every: Duration,
    /// Where UDP sockets come from: the operating system's
    /// ([`crate::transport::real`]), or in tests a virtual network.
    pub net: Arc<dyn DatagramNet>,
    /// Where the engine reads the time: [`crate::clock::system`] in
    /// production, a [`crate::clock::ManualClock`] in tests that move time
    /// themselves.
    pub clock: Arc<dyn Clock>,
    /// Bounds on TCP connections: how many, how many from one source, how
    /// long a message may take to arrive, how much may wait to be written
    /// to one. Changed on a running gateway through
    /// [`Gateway::tcp_limits`].
    pub tcp: TcpLimits,
    /// Capture every SIP message to a HEP collector ([`crate::capture`]);
    /// `None`: no capture, at the cost of one branch per message. Changed
    /// on a running gateway through [`Gateway::capture`] (turning it on
    /// takes a start with it).
    pub capture: Option<CaptureConfig>,
}

impl Options {
    /// Listen on `listen` with the configuration `proxy_config` builds; the
    /// rest as in production: the first listener advertised, one IO thread,
    /// no sinks or ticks, a tick every 100 ms, the operating system's
    /// sockets and clock, the default [`TcpLimits`], no capture. Change any of it with
    /// struct update syntax.
    pub fn new(
        listen: Vec<(Transport, SocketAddr)>,
        proxy_config: impl FnOnce(SocketAddr) -> ProxyConfig + Send + 'static,
    ) -> Options {
        Options {
            listen,
            advertise: None,
            proxy_config: Box::new(proxy_config),
            io_threads: 1,
            sinks: Vec::new(),
            sink_ticks: Vec::new(),
            ticks: Vec::new(),
            tick_every: Duration::from_millis(100),
            net: crate::transport::real(),
            clock: crate::clock::system(),
            tcp: TcpLimits::default(),
            capture: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("io_threads", &self.io_threads)
            .field("net", &self.net)
            .field("clock", &self.clock)
            .field("tcp", &self.tcp)
            .field("capture", &self.capture)
            .finish_non_exhaustive()
    }
}

/// UDP and TCP listeners, bound as `opts.listen` says: UDP first, then TCP,
/// a TCP listener on port 0 on the port of the UDP listener on its address.
#[allow(clippy::type_complexity)]
fn bind_listeners(
    opts: &Options,
    rt: &tokio::runtime::Handle,
) -> io::Result<(
    Vec<SocketAddr>,
    Vec<(SocketAddr, Arc<dyn crate::transport::DatagramSocket>)>,
    Vec<SocketAddr>,
    Vec<std::net::TcpListener>,
)> {
    let mut udp = Vec::new();
    let mut listeners = Vec::new();
    for (t, addr) in &opts.listen {
        if *t == Transport::Udp {
            let s = opts.net.bind(rt, *addr, None)?;
            let local = s.local_addr()?;
            udp.push(local);
            listeners.push((local, s));
        }
    }
    let mut tcp = Vec::new();
    let mut tcp_listeners = Vec::new();
    for (t, addr) in &opts.listen {
        if *t == Transport::Tcp {
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
    Ok((udp, listeners, tcp, tcp_listeners))
}

/// The engine stopped by itself: a panic in the core or on an IO task (see
/// the crate's documentation, "Panics").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineFailed(pub String);

impl fmt::Display for EngineFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the engine failed: {}", self.0)
    }
}

impl std::error::Error for EngineFailed {}

/// A running gateway's handle: send inputs, learn addresses, stop it, wait
/// for it.
#[derive(Debug)]
pub struct Gateway {
    /// What it listens on.
    pub bound: Bound,
    /// The way into the core.
    pub input: InputTx,
    /// The IO side's counters.
    pub stats: Arc<IoStats>,
    /// How long a TCP connection may stay idle (zero: never closed for
    /// that); `send_replace` applies a new value to open connections too.
    pub tcp_idle: tokio::sync::watch::Sender<Duration>,
    /// The bounds on TCP ([`TcpLimits`], from [`Options::tcp`]);
    /// `send_replace` applies new ones to what happens next: connections
    /// accepted, messages started and messages queued after it (nothing
    /// open is closed because a bound was lowered).
    pub tcp_limits: tokio::sync::watch::Sender<TcpLimits>,
    shared: Arc<Shared>,
    capture: Option<Arc<Capture>>,
    core: Option<std::thread::JoinHandle<()>>,
    rt: Option<Runtime>,
    accepting: Arc<AtomicBool>,
}

impl Gateway {
    /// Bind every socket and start the IO runtime and the timer thread
    /// (and the capture thread, with [`Options::capture`]).
    pub fn start(mut opts: Options) -> io::Result<Gateway> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.io_threads.max(1))
            .thread_name("lifeline-io")
            .enable_all()
            .build()?;
        let stats = Arc::new(IoStats::default());
        let (tx, shared) = core_entry(stats.clone(), opts.clock.clone());
        let accepting = Arc::new(AtomicBool::new(true));
        let (tcp_idle, idle_rx) = tokio::sync::watch::channel(TCP_IDLE_TIMEOUT);
        let (tcp_limits, limits_rx) = tokio::sync::watch::channel(opts.tcp);
        let tcp_shared = TcpShared {
            input: tx.clone(),
            stats: stats.clone(),
            conns: Arc::new(Mutex::new(HashMap::new())),
            idle: idle_rx,
            gate: TcpGate::new(limits_rx, stats.clone()),
        };

        // Bind UDP first: trunk sockets share its port. A TCP listener on
        // port 0 takes the UDP listener's port (one port for both, as SIP
        // expects); if another program holds that port for TCP, both are
        // bound again on a new port (a few times).
        let mut attempt = 0;
        let (udp, listeners, tcp, tcp_listeners) = loop {
            attempt += 1;
            match bind_listeners(&opts, rt.handle()) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 8 => {
                    let borrowed = opts.listen.iter().any(|(t, a)| {
                        *t == Transport::Tcp
                            && a.port() == 0
                            && opts.listen.iter().any(|(u, b)| {
                                *u == Transport::Udp && b.ip() == a.ip() && b.port() == 0
                            })
                    });
                    if !borrowed {
                        return Err(e);
                    }
                }
                other => break other?,
            }
        };
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
        let now = opts.clock.now();
        tx.set_limits(&cfg);
        let proxy = Proxy::new(now, cfg.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;

        // Capture, before any socket receives: its thread, and the sink
        // that tells it which calls started and how they ended.
        let capture = match opts.capture.take() {
            Some(c) => {
                let c = Capture::start(c, advertise, stats.clone())?;
                let _ = shared.capture.set(c.clone());
                opts.sinks.push(c.sink());
                Some(c)
            }
            None => None,
        };

        // A connected socket per UDP trunk, on the UDP listener's address
        // (opened now so the first probe's ICMP is caught; reopened if a
        // reload moves the trunk). One that cannot be opened (no route to
        // the trunk yet: `connect` fails) does not stop the gateway: the
        // trunk is tried again at each send, which goes from the listener
        // meanwhile, and its send errors are evidence against it.
        let mut trunk_sockets = Vec::new();
        for t in &cfg.trunks {
            let local = listeners
                .iter()
                .find(|(l, _)| l.is_ipv4() == t.peer.addr.is_ipv4())
                .map(|(l, _)| *l);
            let id = proxy.health().find(&t.name);
            let sock = match (t.peer.transport, local, id) {
                (Transport::Udp, Some(local), Some(id)) => {
                    let opened = TrunkSocket::open(
                        &*opts.net,
                        local,
                        t.peer.addr,
                        id,
                        rt.handle(),
                        &tx,
                        &stats,
                    );
                    match opened {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(trunk = %t.name, peer = %t.peer.addr, error = %e,
                                "cannot open a socket for the trunk; sending from the listener until it can be");
                            None
                        }
                    }
                }
                _ => None,
            };
            trunk_sockets.push(sock);
        }

        {
            let _guard = rt.enter();
            for (_, s) in &listeners {
                rt.spawn(tx.supervise(recv_udp(s.clone(), tx.clone(), stats.clone(), None)));
            }
            for l in tcp_listeners {
                let l = tokio::net::TcpListener::from_std(l)?;
                rt.spawn(tx.supervise(accept_tcp(l, tcp_shared.clone(), accepting.clone())));
            }
        }

        let out = Outbound {
            net: opts.net,
            listeners,
            trunk_sockets: Mutex::new(trunk_sockets),
            tcp: tcp_shared,
            rt: rt.handle().clone(),
            input: tx.clone(),
            stats: stats.clone(),
        };
        shared
            .stage()
            .install(Observers::new(opts.sinks, opts.sink_ticks));
        let core = Core::new(
            proxy,
            now,
            shared.stage().clone(),
            opts.ticks,
            opts.tick_every,
            accepting.clone(),
            stats.clone(),
        );
        shared.install(core, Arc::new(out));
        let timer = shared.clone();
        let core = std::thread::Builder::new()
            .name("lifeline-timer".into())
            .spawn(move || timer.timer_loop())?;
        Ok(Gateway {
            bound: Bound { udp, tcp },
            input: tx,
            stats,
            tcp_idle,
            tcp_limits,
            shared,
            capture,
            core: Some(core),
            rt: Some(rt),
            accepting,
        })
    }

    /// The capture to a HEP collector, if the gateway started with one
    /// ([`Options::capture`]): [`Capture::reconfigure`] changes or stops it.
    pub fn capture(&self) -> Option<&Arc<Capture>> {
        self.capture.as_ref()
    }

    /// The IO runtime, for the admin server and signal handling.
    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.rt.as_ref().map(|r| r.handle().clone())
    }

    /// Ask for a graceful stop and wait for it (see [`Gateway::join`]).
    pub fn shutdown(mut self, grace: Duration) -> Result<(), EngineFailed> {
        self.accepting.store(false, Ordering::Relaxed);
        self.input.send(Input::Shutdown { grace });
        self.join()
    }

    /// Wait for the core to finish (after a [`Input::Shutdown`], or a
    /// failure), then stop the IO runtime. `Err` if the engine failed
    /// rather than stopped: the caller should exit with an error.
    pub fn join(&mut self) -> Result<(), EngineFailed> {
        if let Some(core) = self.core.take() {
            let _ = core.join();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
        // Nothing is captured any more: what is queued goes out.
        if let Some(c) = &self.capture {
            c.stop();
        }
        match self.failure() {
            Some(why) => Err(EngineFailed(why.to_string())),
            None => Ok(()),
        }
    }

    /// Why the engine stopped by itself, if it did (it then takes no more
    /// input and its timer thread has ended).
    pub fn failure(&self) -> Option<&str> {
        self.shared.failure()
    }

    /// Run `f` on the core and wait (at most 5 s in all) for its answer
    /// and for the sinks to have seen every event produced before it;
    /// `None` if the core did not answer (stopped, failed, or stuck) or
    /// the sinks did not catch up.
    pub fn with_proxy<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Proxy, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let until = Instant::now() + Duration::from_secs(5);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stage = self.shared.stage().clone();
        self.input.send(Input::Call(Box::new(move |p, now| {
            // Under the core's lock: every event of the inputs before.
            let mark = stage.produced_count();
            let _ = tx.send((f(p, now), mark));
        })));
        let (r, mark) = rx.recv_deadline(until).ok()?;
        while !self.shared.stage().reached(mark) {
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Some(r)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.core.is_some() {
            self.input.send(Input::Shutdown {
                grace: Duration::ZERO,
            });
            let _ = self.join();
        }
    }
}
