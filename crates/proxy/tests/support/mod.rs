//! What the single-trunk tests of the pure core share: the addresses, the
//! emergency INVITE, and a proxy with one unprobed trunk.
//!
//! Each test binary that says `mod support;` uses a part of this, so the
//! rest would warn as dead code in it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lifeline_proxy::{Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig};

/// The emergency INVITE with SDP and a PIDF-LO body, about 2.4 KB.
pub(crate) const EMERGENCY_INVITE: &str =
    include_str!("../../../sip/testdata/bench/emergency-invite.sip");

pub(crate) const GW: &str = "127.0.10.1:5060";
pub(crate) const TRUNK: &str = "127.0.30.1:5060";
pub(crate) const CALLER: &str = "127.0.20.1:5060";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A proxy at [`GW`] with one trunk, `primary` at [`TRUNK`] (UDP, never
/// probed; `large_over_tcp` as given), and one route `all` through it.
pub(crate) fn one_trunk(large_over_tcp: bool) -> Proxy {
    let probe = ProbeConfig {
        enabled: false,
        ..ProbeConfig::default()
    };
    let cfg = ProxyConfig::new(
        addr(GW),
        vec![TrunkConfig {
            large_over_tcp,
            probe,
            ..TrunkConfig::new("primary", Peer::udp(addr(TRUNK)))
        }],
        // No failover while the test waits: a muted attempt would hide
        // retransmissions.
        vec![RouteConfig {
            failover_after: Duration::from_secs(60),
            ..RouteConfig::new("all", RouteMatch::Any, &["primary"])
        }],
    );
    Proxy::new(Instant::now(), cfg).unwrap()
}
