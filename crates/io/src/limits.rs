//! Bounds on TCP ([`TcpLimits`]), and the gate that counts connections
//! against them (`TcpGate`).
//!
//! Without bounds, TCP lets one peer hold the gateway's memory and file
//! descriptors: connections are free to open, a connection can be kept
//! forever by trickling a byte now and then (any byte resets the idle
//! timer), and a peer that never reads makes the gateway queue everything
//! it sends that peer. Each of these is bounded here, and each close it
//! causes is counted in [`IoStats`]:
//!
//! | bound | on reaching it |
//! |---|---|
//! | [`max_connections`](TcpLimits::max_connections) open, accepted and to trunks | `accept()` is not called until one closes: the kernel's backlog (1024) holds the next ones, then refuses (`tcp_accept_paused`) |
//! | [`max_connections_per_ip`](TcpLimits::max_connections_per_ip) accepted from one address (IPv6: one /64) | the next one from it is reset at once (`tcp_refused_per_ip`) |
//! | [`message_timeout`](TcpLimits::message_timeout) from a message's first byte to its last | the connection is reset (`tcp_message_timeouts`) |
//! | [`write_queue_bytes`](TcpLimits::write_queue_bytes) waiting to be written to one connection | the connection is reset (`tcp_write_queue_overflows`) |
//!
//! The counts live in `TcpGate`, shared by the accept loops and the
//! connections to trunks; each connection holds a `TcpSlot` that gives its
//! place back when the connection's task ends, however it ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::stats::IoStats;

/// Default [`TcpLimits::max_connections`].
pub const TCP_MAX_CONNECTIONS: usize = 4096;
/// Default [`TcpLimits::max_connections_per_ip`].
pub const TCP_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Default [`TcpLimits::message_timeout`].
pub const TCP_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`TcpLimits::write_queue_bytes`].
pub const TCP_WRITE_QUEUE_BYTES: usize = 1024 * 1024;

/// How much TCP the gateway gives its peers (see the module documentation
/// for what happens at each bound). Zero in any field means no bound.
///
/// Set at start in [`Options::tcp`](crate::Options::tcp); change it on a
/// running gateway with [`Gateway::tcp_limits`](crate::Gateway::tcp_limits)
/// (`send_replace`). A change applies to what happens next: connections
/// accepted after it, messages that start after it, messages queued after
/// it. Nothing already open is closed because a bound was lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once, accepted and opened to trunks together
    /// (default 4096). At the bound the gateway stops accepting until one
    /// closes; the kernel's listen backlog holds the next connections, then
    /// refuses them. A connection to a trunk is never refused for this
    /// bound (there is at most one per trunk, and refusing it would let
    /// callers' connections keep emergency calls from their trunks), but it
    /// counts: with connections to trunks open, fewer are accepted.
    ///
    /// Each connection costs a file descriptor, two tasks and its buffers
    /// (up to a 64 KiB message being framed and `write_queue_bytes`): keep
    /// this under the process's `RLIMIT_NOFILE`.
    pub max_connections: usize,
    /// Connections accepted from one remote address at once (default 256);
    /// IPv6 addresses count per /64, the block a single host or subscriber
    /// is usually given (RFC 6177), so a host cannot step around the bound
    /// by using more of its own addresses. An IPv4-mapped IPv6 address
    /// (a dual-stack listener) counts as its IPv4 address. The connection
    /// over the bound is reset as soon as it is accepted, so one source
    /// cannot take all of [`max_connections`](Self::max_connections).
    /// Connections to trunks are not counted here.
    pub max_connections_per_ip: usize,
    /// Once a message's first byte has arrived, the whole message must
    /// arrive within this (default 10 s), or the connection is reset: a
    /// slow-loris peer sending a byte at a time would otherwise keep the
    /// connection, and its framing buffer, forever, since every byte resets
    /// the idle timeout. RFC 5626 CRLF keep-alives and the line ends
    /// between messages are not part of a message; a connection with no
    /// message in progress is governed by the idle timeout
    /// ([`Gateway::tcp_idle`](crate::Gateway::tcp_idle)) alone. Ten
    /// seconds is far beyond the time any real peer takes to send at most
    /// 64 KiB ([`MAX_STREAM_MESSAGE`](crate::MAX_STREAM_MESSAGE)).
    pub message_timeout: Duration,
    /// Bytes queued for one connection's writer, not yet written to its
    /// socket (default 1 MiB). A message that would take the queue over
    /// the bound closes the connection instead: its peer is not reading
    /// (or reads far slower than it asks), and the gateway's memory is not
    /// its buffer. A message is always queued on an empty queue, however
    /// large, so a bound set below the size of one message does not cut a
    /// connection that is keeping up.
    pub write_queue_bytes: usize,
}

impl Default for TcpLimits {
    /// 4096 connections, 256 per address, 10 s per message, 1 MiB queued
    /// per connection.
    fn default() -> Self {
        TcpLimits {
            max_connections: TCP_MAX_CONNECTIONS,
            max_connections_per_ip: TCP_MAX_CONNECTIONS_PER_IP,
            message_timeout: TCP_MESSAGE_TIMEOUT,
            write_queue_bytes: TCP_WRITE_QUEUE_BYTES,
        }
    }
}

/// The current limits, as every TCP task reads them.
pub(crate) type TcpLimitsRx = watch::Receiver<TcpLimits>;

/// What connections from one source are counted under: an IPv4 address,
/// or the first 64 bits of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum IpKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl IpKey {
    pub(crate) fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(a) => IpKey::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4),
                None => IpKey::V6Prefix((a.to_bits() >> 64) as u64),
            },
        }
    }
}

/// How often, at most, a paused accept is logged at `warn`: under a
/// connection flood it pauses each time a connection closes.
const PAUSE_WARN_EVERY: Duration = Duration::from_secs(60);

/// Open TCP connections, counted against the limits: what the accept loops
/// wait on and what the per-address bound is checked against.
#[derive(Debug)]
pub(crate) struct TcpGate {
    /// Connections open plus places reserved by accept loops.
    taken: AtomicUsize,
    /// Accepted connections open, by source.
    per_ip: Mutex<HashMap<IpKey, usize>>,
    /// Told whenever a place is given back.
    freed: Notify,
    limits: TcpLimitsRx,
    stats: Arc<IoStats>,
    /// When a pause was last logged at `warn`, in ms since `born` (plus
    /// one: zero is never).
    warned: AtomicU64,
    born: tokio::time::Instant,
}

impl TcpGate {
    pub(crate) fn new(limits: TcpLimitsRx, stats: Arc<IoStats>) -> Arc<TcpGate> {
        Arc::new(TcpGate {
            taken: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            limits,
            stats,
            warned: AtomicU64::new(0),
            born: tokio::time::Instant::now(),
        })
    }

    /// The current limits.
    pub(crate) fn limits(&self) -> TcpLimits {
        *self.limits.borrow()
    }

    /// Take a place if fewer than `max` are taken (zero: no bound).
    fn try_take(&self, max: usize) -> bool {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
        // Every accept loop (one per TCP listener) looks again.
        self.freed.notify_waiters();
    }

    /// A place for the next accepted connection, once there is one: while
    /// `max_connections` are open this waits (no `accept()` is made, so
    /// the kernel's backlog fills and then refuses) until one closes or
    /// the bound is raised. Each wait is counted once.
    pub(crate) async fn reserve(self: &Arc<Self>) -> TcpSlot {
        let mut limits = self.limits.clone();
        let mut paused = false;
        loop {
            // Registered before looking, so a place given back between the
            // look and the wait is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let max = limits.borrow_and_update().max_connections;
            if self.try_take(max) {
                return TcpSlot {
                    gate: self.clone(),
                    ip: None,
                    open: false,
                };
            }
            if !paused {
                paused = true;
                self.on_pause(max);
            }
            tokio::select! {
                () = &mut freed => {}
                changed = limits.changed() => {
                    if changed.is_err() {
                        // The gateway is going away: only a close can help.
                        freed.await;
                    }
                }
            }
        }
    }

    fn on_pause(&self, max: usize) {
        self.stats.tcp_accept_paused.fetch_add(1, Ordering::Relaxed);
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let last = self.warned.load(Ordering::Relaxed);
        let quiet = PAUSE_WARN_EVERY.as_millis() as u64;
        if (last == 0 || now.saturating_sub(last) >= quiet)
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections = max,
                "TCP connections at max_connections: not accepting until one closes"
            );
        } else {
            tracing::debug!(
                max_connections = max,
                "TCP connections at max_connections: accept paused"
            );
        }
    }

    /// A place for a connection to a trunk: always given (see
    /// [`TcpLimits::max_connections`]), and counted.
    pub(crate) fn outgoing(self: &Arc<Self>) -> TcpSlot {
        self.taken.fetch_add(1, Ordering::AcqRel);
        self.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
        TcpSlot {
            gate: self.clone(),
            ip: None,
            open: true,
        }
    }
}

/// One connection's place among the open ones (or an accept loop's
/// reservation of one); given back when dropped.
#[derive(Debug)]
pub(crate) struct TcpSlot {
    gate: Arc<TcpGate>,
    /// The source it is counted under, for an accepted connection.
    ip: Option<IpKey>,
    /// A connection holds it (not only a reservation): counted in
    /// `tcp_open`.
    open: bool,
}

impl TcpSlot {
    /// Make a reserved place the place of a connection accepted from `ip`,
    /// unless that source already has `max_connections_per_ip` open: then
    /// `false`, the connection is to be refused, and the reservation is
    /// kept for the next one.
    pub(crate) fn admit(&mut self, ip: IpAddr) -> bool {
        debug_assert!(!self.open, "a reservation, not a connection's place");
        let max = self.gate.limits().max_connections_per_ip;
        let key = IpKey::of(ip);
        {
            let mut per_ip = self
                .gate
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = per_ip.entry(key).or_insert(0);
            if max != 0 && *n >= max {
                drop(per_ip);
                self.gate
                    .stats
                    .tcp_refused_per_ip
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *n += 1;
        }
        self.ip = Some(key);
        self.open = true;
        self.gate.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        if let Some(key) = self.ip {
            let mut per_ip = self
                .gate
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = per_ip.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&key);
                }
            }
        }
        if self.open {
            self.gate.stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
        }
        self.gate.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(limits: TcpLimits) -> (Arc<TcpGate>, watch::Sender<TcpLimits>, Arc<IoStats>) {
        let (tx, rx) = watch::channel(limits);
        let stats = Arc::new(IoStats::default());
        (TcpGate::new(rx, stats.clone()), tx, stats)
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::of(a), IpKey::of(b));
        assert_ne!(IpKey::of(a), IpKey::of(c));
        assert_eq!(IpKey::of(a), IpKey::V6Prefix(0x2001_0db8_0001_0002));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(IpKey::of(mapped), IpKey::V4(Ipv4Addr::new(192, 0, 2, 7)));
    }

    #[tokio::test]
    async fn per_ip_bound_refuses_and_keeps_the_reservation() {
        let (gate, _tx, stats) = gate(TcpLimits {
            max_connections_per_ip: 2,
            ..TcpLimits::default()
        });
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let mut a = gate.reserve().await;
        assert!(a.admit(one));
        let mut b = gate.reserve().await;
        assert!(b.admit(one));
        let mut c = gate.reserve().await;
        assert!(!c.admit(one));
        assert_eq!(stats.tcp_refused_per_ip.load(Ordering::Relaxed), 1);
        assert_eq!(stats.tcp_open.load(Ordering::Relaxed), 2);
        assert!(c.admit(two), "another source is admitted");
        assert_eq!(stats.tcp_open.load(Ordering::Relaxed), 3);
        drop(a);
        let mut d = gate.reserve().await;
        assert!(d.admit(one), "a place given back is free again");
        drop((b, c, d));
        assert_eq!(stats.tcp_open.load(Ordering::Relaxed), 0);
        assert_eq!(gate.taken.load(Ordering::Relaxed), 0);
        assert!(gate.per_ip.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn reserve_waits_at_the_bound_until_a_place_is_given_back() {
        let (gate, _tx, stats) = gate(TcpLimits {
            max_connections: 2,
            ..TcpLimits::default()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = gate.reserve().await;
        assert!(a.admit(ip));
        // A connection to a trunk counts, and is never refused.
        let trunk = gate.outgoing();
        let third = tokio::spawn({
            let gate = gate.clone();
            async move { gate.reserve().await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished());
        assert_eq!(stats.tcp_accept_paused.load(Ordering::Relaxed), 1);
        let over = gate.outgoing();
        assert_eq!(stats.tcp_open.load(Ordering::Relaxed), 3);
        drop(trunk);
        drop(over);
        let c = third.await.unwrap();
        assert_eq!(stats.tcp_accept_paused.load(Ordering::Relaxed), 1);
        drop((a, c));
        assert_eq!(gate.taken.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn raising_the_bound_lets_a_waiting_accept_go_on() {
        let (gate, tx, _stats) = gate(TcpLimits {
            max_connections: 1,
            ..TcpLimits::default()
        });
        let _a = gate.reserve().await;
        let second = tokio::spawn({
            let gate = gate.clone();
            async move { gate.reserve().await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished());
        tx.send_replace(TcpLimits {
            max_connections: 2,
            ..TcpLimits::default()
        });
        let _b = second.await.unwrap();
        assert_eq!(gate.taken.load(Ordering::Relaxed), 2);
    }
}
