//! SIP user agents on real sockets, for lifeline's tests and `lifeline
//! demo`: one implementation where each test file used to write its own.
//!
//! - [`uas::Answerer`]: what a trunk (a PSAP, a carrier's SBC) answers, as a
//!   state machine with no IO — 100/180/200, ringing for a while, 503, a
//!   stall after 100 Trying, a hang — in the [`uas::Mode`] a test sets and
//!   changes at any time. It answers a retransmitted INVITE with what it
//!   sent before, a CANCEL of a ringing call with 200 and 487, and can
//!   retransmit its 2xx until the ACK comes (RFC 3261 §13.3.1.4).
//! - [`Uas`]: an [`uas::Answerer`] on a loopback UDP socket, optionally TCP
//!   on the same port, with threads; [`Uas::kill`] closes its sockets (the
//!   port then answers ICMP port unreachable, TCP connections are refused)
//!   and [`Uas::reopen`] binds the same port again.
//! - [`caller::Call`]: the requests of one call at a UAC — the INVITE, and
//!   the ACK and BYE of the dialog its 2xx set up (RFC 3261 §12.1.2, §13.2.2.4)
//!   — and [`caller::Caller`], a blocking UDP caller placing them;
//!   [`end_to_end_headers`]: what a proxy must pass on as the caller sent
//!   it.
//! - [`one_route`] and [`unprobed`]: the proxy configurations tests use
//!   most, one route through trunks in order.
//! - `vnet` (feature `vnet`): the [`uas::Answerer`] on a webrtc-util virtual
//!   network socket.
//!
//! Nothing here reads the clock inside the state machines: the drivers
//! hand them `now`, as the gateway's engine does to the proxy.

pub mod caller;
mod config;
mod sockets;
pub mod uas;
#[cfg(feature = "vnet")]
pub mod vnet;

pub use caller::{end_to_end_headers, Call, Caller};
pub use config::{one_route, unprobed};
pub use sockets::{closed_by_peer, Uas, UasConfig};
pub use uas::{Mode, UasStats};
