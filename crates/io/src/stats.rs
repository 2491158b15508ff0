//! Counters the IO side keeps, read by whoever exports them (the daemon's
//! metrics tick reads them and adds what changed).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept by the IO side. Each only grows.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Inputs dropped because the core's queue was full.
    pub queue_drops: AtomicU64,
    /// Sends that failed (other than to trunks, which count as evidence).
    pub send_errors: AtomicU64,
    /// Datagrams (and stream messages) received.
    pub received: AtomicU64,
    /// Requests sent (every message handed to a socket or a connection that
    /// does not start with a status line).
    pub sent_requests: AtomicU64,
    /// Responses sent.
    pub sent_responses: AtomicU64,
    /// The kernel's UDP receive-buffer drop count, as last read.
    pub socket_drops: AtomicU64,
    /// TCP connections closed after `tcp_idle_timeout` without traffic.
    pub tcp_idle_closed: AtomicU64,
    /// Time the core was held (routing, by one thread at a time), ns.
    pub core_busy_ns: AtomicU64,
}

impl IoStats {
    /// Messages sent, requests and responses.
    pub fn sent(&self) -> u64 {
        self.sent_requests.load(Ordering::Relaxed) + self.sent_responses.load(Ordering::Relaxed)
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
