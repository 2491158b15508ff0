//! lifeline-io: the gateway's IO edge — the pure proxy core
//! ([`lifeline_proxy`]) on sockets, threads and a clock.
//!
//! ```text
//!  IO runtime (tokio, one thread per core)
//!  ---------------------------------------
//!  UDP listener   --recv--> parse+validate --+
//!  UDP per trunk  --recv--> parse+validate --+     core (one, behind a lock; whichever
//!     (connected: ICMP errors -> trunk)       |     thread has an input runs it)
//!  TCP connections --frame--> parse+validate -+--> queue --> Proxy::handle_checked
//!  Input::Call (admin, reload) ---------------+              poll_transmit -> send queue
//!                                                            poll_event -> event stage
//!  timer thread: sleeps until the core's next deadline  -->  Proxy::handle_timeout, Ticks
//!  send queue: sent in order, outside the core's lock, by whichever thread finds it free
//!  event stage: EventSinks (and SinkTicks) see the events in order, outside the core's
//!    lock, run by whichever thread finds it free
//! ```
//!
//! What it does:
//! - binds the UDP and TCP listeners and a connected UDP socket per trunk
//!   (address and port reuse, 8 MiB buffers; ICMP errors and TCP resets
//!   become evidence against the trunk);
//! - receives, frames (TCP: Content-Length, CRLF keep-alives, idle
//!   timeout), parses and validates on the IO threads, in parallel;
//! - bounds what TCP peers can hold ([`TcpLimits`]): connections open
//!   (at the bound it stops accepting, and the kernel's backlog takes the
//!   rest), connections per source address (IPv6: per /64), the time from
//!   a message's first byte to its last (against peers trickling a byte at
//!   a time), and the bytes waiting to be written to one connection
//!   (against peers that do not read); each close is counted in
//!   [`IoStats`];
//! - runs the one proxy core behind a flat-combining lock ([`combiner`]):
//!   the thread that received a message routes it when the core is free,
//!   otherwise the holder takes it before letting go;
//! - sends what the core produced in order, outside the core's lock, and
//!   hands its events, in order, to the sinks, outside the lock too
//!   ([`observe`]);
//! - runs the core's timers and a housekeeping tick ([`Tick`]) on one
//!   timer thread, and tells the health checker when the gateway itself is
//!   overloaded (its queue, its drops, the kernel's `/proc/net/snmp`
//!   receive-buffer drops, a late timer);
//! - starts ([`Gateway::start`]), runs work on the core ([`Input::Call`]:
//!   reloads, admin commands), drains and stops ([`Gateway::shutdown`]);
//! - reads the time through a [`clock::Clock`], so tests can move it (TCP
//!   idle and message timeouts excepted: they run on tokio's timer);
//! - optionally captures every SIP message received and sent, with its
//!   real addresses, to a Homer collector as HEP version 3 ([`capture`]):
//!   a bounded queue to a thread of its own, never a wait on the call
//!   path, drops counted.
//!
//! What it does not do: decide anything about a call (that is
//! lifeline-proxy and lifeline-health, which it drives); read
//! configuration files, export metrics, serve the admin API, write the
//! journal, install signal handlers or set up logging (the `lifeline`
//! binary does, through [`EventSink`]s, [`Tick`]s and [`Input::Call`]);
//! TLS, DNS, media. UDP can run over a virtual network
//! (`transport::vnet`, feature `vnet`); TCP is real sockets only.
//!
//! # Panics
//!
//! A panic anywhere in the engine means its state can no longer be
//! trusted. Release builds of the daemon abort (`panic = "abort"`): the
//! process dies at once and systemd restarts it; the journal is crash-safe.
//! Where a panic unwinds (tests, debug builds), the engine catches it at
//! the core's lock and around every IO task, drops the core, ignores
//! further input and ends its timer thread: the housekeeping tick stops (so
//! the daemon's readiness goes stale and the systemd watchdog starves), and
//! [`Gateway::join`] returns [`EngineFailed`], on which the daemon exits
//! with an error. It never goes on half-deaf.
//!
//! # Tests
//!
//! `tests/` drives the public API only: real loopback sockets
//! (`engine.rs`, `stream.rs`, `tcp_limits.rs`), the virtual network
//! (`vnet.rs`), a manual clock (`clock.rs`), injected panics (`panic.rs`),
//! the event stage's order and its independence from the core's lock
//! (`event_stage.rs`), capture to a HEP collector decoded by the test
//! (`capture.rs`), and a loom model of the combining lock (`loom.rs`:
//! `RUSTFLAGS="--cfg loom" cargo test -p lifeline-io --release --test loom`).
#![warn(missing_docs)]

#[cfg(not(loom))]
pub mod admission;
#[cfg(not(loom))]
pub mod capture;
pub mod clock;
pub mod combiner;
#[cfg(not(loom))]
mod engine;
#[cfg(not(loom))]
mod gateway;
#[cfg(not(loom))]
mod limits;
#[cfg(not(loom))]
mod net;
#[cfg(not(loom))]
pub mod observe;
#[cfg(not(loom))]
mod overload;
/// Rate limits for per-message log lines: the first N per interval, then a count.
pub mod quiet;
#[cfg(not(loom))]
mod stats;
#[cfg(not(loom))]
pub mod transport;

#[cfg(not(loom))]
pub use capture::{
    Capture, CaptureCalls, CaptureConfig, CaptureDrop, CAPTURE_HOLD, CAPTURE_HOLD_BYTES,
    CAPTURE_NODE_ID, CAPTURE_QUEUE,
};
#[cfg(not(loom))]
pub use engine::{CoreFn, Input, InputTx, Received, Tick, INPUT_QUEUE, TIMER_GRAIN};
#[cfg(not(loom))]
pub use gateway::{Bound, EngineFailed, Gateway, Options, TCP_IDLE_TIMEOUT};
#[cfg(not(loom))]
pub use limits::{
    TcpLimits, TCP_MAX_CONNECTIONS, TCP_MAX_CONNECTIONS_PER_IP, TCP_MESSAGE_TIMEOUT,
    TCP_WRITE_QUEUE_BYTES,
};
#[cfg(not(loom))]
pub use net::MAX_STREAM_MESSAGE;
#[cfg(not(loom))]
pub use observe::{EventSink, ProxyNames, SinkTick, STAGE_BACKLOG};
#[cfg(not(loom))]
pub use stats::IoStats;
