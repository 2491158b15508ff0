//! `lifeline-proxy`: the transaction-stateful SIP proxy that takes each call to
//! the first usable trunk and, when that trunk fails in any way, to the next
//! one — fast enough that the caller never sees the failure.
//!
//! # What it does
//!
//! - The RFC 3261 §17 transaction layer: INVITE and non-INVITE, client and
//!   server, timers A-M with T1/T2/T4 configurable, retransmissions absorbed,
//!   ACK for non-2xx generated hop by hop, RFC 6026 Accepted states so 2xx
//!   retransmissions pass through; matching per §17.1.3/§17.2.3 with the
//!   RFC 2543 fallback for branches without the magic cookie.
//! - The proxy core of §16: validation (400/413/501/505 from `lifeline-sip`),
//!   Max-Forwards (483), loop detection (482), 416 for schemes it does not
//!   route, 420 for Proxy-Require (except on emergency calls), Via push/pop,
//!   Record-Route with a dialog token so ACK, BYE and re-INVITE come back
//!   through the gateway, Route processing, 2xx ACK forwarded end to end,
//!   CANCEL matched and propagated to every live attempt.
//! - Routing ([`RouteConfig`]) and emergency classification
//!   ([`classify()`]): `urn:service:sos` and its sub-services, configured
//!   emergency numbers in sip:/tel: user parts, `Resource-Priority: esnet.*`
//!   from trusted peers.
//! - Access at the edge ([`AccessConfig`]): new requests only from the
//!   configured callers' prefixes (others dropped or refused 403, and
//!   counted); P-Asserted-Identity, P-Preferred-Identity and
//!   Resource-Priority kept only from trusted sources (RFC 3325 §9.1), and
//!   on request the location too, every other byte forwarded as received.
//! - Serial failover per call: a failover timer per attempt, failover-class
//!   responses, transport errors and a progress timeout all move the call to
//!   the next trunk at once (a transport error, which anyone can forge,
//!   moves only the attempt it answers, and never a call's last trunk);
//!   late provisionals on abandoned attempts are
//!   CANCELled with a Reason header (RFC 3326); late 2xx are forwarded; the
//!   callee's own answers are relayed; every outcome is live evidence for
//!   `lifeline-health`, which the proxy owns.
//! - Trust at the edge: a response counts only from the peer its request
//!   went to (others are dropped and counted); branches, tags and
//!   Record-Route tokens carry 128 bits from a ChaCha20 generator keyed
//!   with a [`Seed`] the gateway takes from the operating system; an
//!   in-dialog request with an unknown token gets 481, one from outside its
//!   dialog 403, and neither is routed as a new call.
//! - [`Event`]s for the journal and metrics.
//!
//! # What it does not do
//!
//! No sockets, no clock, no DNS: peers are socket addresses, time is a `now`
//! argument, the gateway sends what [`Proxy::poll_transmit`] returns and wakes
//! at [`Proxy::poll_timeout`]. No registrar, no authentication, no media, no
//! parallel forking, no strict-routing (RFC 2543) Route rewriting, and stray
//! responses (matching no transaction) are dropped rather than forwarded
//! statelessly.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod access;
pub mod admission;
mod classify;
mod config;
mod events;
mod proxy;
mod transaction;

pub use admission::{Admission, Class, Decision, LimitsConfig, Load, OverLimit, Rate, Refusal};
pub use classify::{classify, select_route, EmergencyRule};
pub use config::{
    AccessConfig, AllFailed, ConfigError, EmergencyConfig, Peer, ProxyConfig, RescueRinging,
    RouteConfig, RouteMatch, Timers, Transport, TrunkConfig, TrunkShare, UnknownSource,
    RFC3261_UDP_MAX_REQUEST,
};
pub use events::{
    AttemptFailure, CallFailure, CallInfo, CallRef, Event, Location, SkipReason, Transmit,
};
/// An IP prefix (`192.0.2.0/24`, `2001:db8::/32`), as [`AccessConfig`] takes them.
pub use ipnet::IpNet;
pub use lifeline_health::{CanaryConfig, ProbeConfig, Seed, TransportError, TrunkId};
pub use proxy::{Proxy, Stats};
