//! The proxy configurations tests use most.

use std::net::SocketAddr;

use lifeline_proxy::{Peer, ProbeConfig, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig};

/// Every request through `trunks`, in order, on one route named `all`,
/// advertising `adv`.
pub fn one_route(adv: SocketAddr, trunks: Vec<TrunkConfig>) -> ProxyConfig {
    let names: Vec<String> = trunks.iter().map(|t| t.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let route = RouteConfig::new("all", RouteMatch::Any, &names);
    ProxyConfig::new(adv, trunks, vec![route])
}

/// A trunk at `peer` that is never probed: its state moves on calls alone.
pub fn unprobed(name: &str, peer: Peer) -> TrunkConfig {
    TrunkConfig {
        probe: ProbeConfig {
            enabled: false,
            ..ProbeConfig::default()
        },
        ..TrunkConfig::new(name, peer)
    }
}
