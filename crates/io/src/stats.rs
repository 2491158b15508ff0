//! Counters the IO side keeps, read by whoever exports them (the daemon's
//! metrics tick reads them and adds what changed).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use lifeline_proxy::Refusal;

use crate::capture::CaptureDrop;

/// Counters kept by the IO side. Each only grows, but for the gauge
/// `tcp_open`.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Inputs dropped because the core's queue was full.
    pub queue_drops: AtomicU64,
    /// Sends that failed (other than to trunks, which count as evidence).
    pub send_errors: AtomicU64,
    /// Datagrams (and stream messages) received.
    pub received: AtomicU64,
    /// UDP receive calls that returned datagrams (on Linux, one
    /// `recvmmsg` each): `recv_datagrams / recv_batches` is how many one
    /// wake-up moved on average.
    pub recv_batches: AtomicU64,
    /// UDP datagrams those calls returned.
    pub recv_datagrams: AtomicU64,
    /// UDP send calls (on Linux, one `sendmmsg` or, for a datagram sent
    /// again after an error and for admission's answers, one `sendto`
    /// each), whether they sent anything or not.
    pub send_batches: AtomicU64,
    /// UDP datagrams those calls sent.
    pub send_datagrams: AtomicU64,
    /// Requests sent (every message handed to a socket or a connection that
    /// does not start with a status line).
    pub sent_requests: AtomicU64,
    /// Responses sent.
    pub sent_responses: AtomicU64,
    /// The kernel's UDP receive-buffer drop count, as last read.
    pub socket_drops: AtomicU64,
    /// TCP connections closed after `tcp_idle_timeout` without traffic.
    pub tcp_idle_closed: AtomicU64,
    /// TCP connections open now, accepted and to trunks (a gauge: what
    /// [`TcpLimits::max_connections`](crate::TcpLimits::max_connections)
    /// bounds).
    pub tcp_open: AtomicU64,
    /// Times the TCP listeners stopped accepting because
    /// `max_connections` were open (once per pause, however long).
    pub tcp_accept_paused: AtomicU64,
    /// TCP connections reset as soon as accepted because their source
    /// already had `max_connections_per_ip` open.
    pub tcp_refused_per_ip: AtomicU64,
    /// TCP connections reset because a message was not complete within
    /// `message_timeout` of its first byte.
    pub tcp_message_timeouts: AtomicU64,
    /// TCP connections reset because a message would have taken their
    /// write queue over `write_queue_bytes` (the peer was not reading).
    pub tcp_write_queue_overflows: AtomicU64,
    /// Time the core was held (routing, by one thread at a time), ns.
    pub core_busy_ns: AtomicU64,
    /// Times a thread letting go of the core waited for the event stage,
    /// which was more than [`STAGE_BACKLOG`](crate::observe::STAGE_BACKLOG)
    /// items behind (a sink stuck or too slow).
    pub stage_waits: AtomicU64,
    /// TCP connections closed because their bytes did not frame as SIP.
    pub tcp_framing_errors: AtomicU64,
    /// Whether the core is behind and new non-emergency requests are shed
    /// (set by the housekeeping check; the IO threads also shed on their
    /// own look at the queue).
    pub shedding: AtomicBool,
    /// Bytes of the messages queued for the core now (a gauge).
    pub queued_bytes: AtomicUsize,
    /// New requests the IO threads refused, by [`Refusal`] (in the order of
    /// [`Refusal::ALL`]): answered 503 (`[i][1]`) or dropped (`[i][0]`).
    pub admission_refused: [[AtomicU64; 2]; Refusal::ALL.len()],
    /// HEP packets handed to the kernel for the capture collector.
    pub capture_exported: AtomicU64,
    /// Captured messages not exported, by [`CaptureDrop`] (in the order of
    /// [`CaptureDrop::ALL`]).
    pub capture_dropped: [AtomicU64; CaptureDrop::ALL.len()],
    /// Bytes of messages the capture holds for calls waiting for their
    /// outcome (a gauge).
    pub capture_held_bytes: AtomicUsize,
}

impl IoStats {
    /// Messages sent, requests and responses.
    pub fn sent(&self) -> u64 {
        self.sent_requests.load(Ordering::Relaxed) + self.sent_responses.load(Ordering::Relaxed)
    }

    /// Requests refused for `why`, answered (`rejected`) or dropped.
    pub fn refused_count(&self, why: Refusal, rejected: bool) -> u64 {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.admission_refused[i][usize::from(rejected)].load(Ordering::Relaxed)
    }

    /// Count one request refused for `why`.
    pub(crate) fn refused(&self, why: Refusal, rejected: bool) {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.admission_refused[i][usize::from(rejected)].fetch_add(1, Ordering::Relaxed);
    }

    /// Captured messages not exported for `why`.
    pub fn capture_dropped_count(&self, why: CaptureDrop) -> u64 {
        let i = CaptureDrop::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.capture_dropped[i].load(Ordering::Relaxed)
    }

    /// Count `n` captured messages not exported for `why`.
    pub(crate) fn capture_drop(&self, why: CaptureDrop, n: u64) {
        let i = CaptureDrop::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.capture_dropped[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` HEP packets sent to the collector.
    pub(crate) fn add_capture_exported(&self, n: u64) {
        self.capture_exported.fetch_add(n, Ordering::Relaxed);
    }

    /// The bytes the capture holds now.
    pub(crate) fn set_capture_held(&self, bytes: usize) {
        self.capture_held_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Count one message sent.
    pub(crate) fn on_send(&self, payload: &[u8]) {
        if payload.starts_with(b"SIP/2.0 ") {
            self.sent_responses.fetch_add(1, Ordering::Relaxed);
        } else {
            self.sent_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}
