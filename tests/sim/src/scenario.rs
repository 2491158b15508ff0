//! What the scenario tests (`tests/*.rs`) share: a primary and a backup
//! trunk over UDP, an emergency route and a default route through both in
//! that order, a simulation run to 1000 ms so the first probes settle, and
//! readers of the events those tests assert on.
//!
//! Probes go out every 250 ms from t = 0 and time out after 250 ms (the
//! defaults).

use std::net::SocketAddr;
use std::time::Duration;

use lifeline_proxy::{
    AttemptFailure, Event, Peer, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig,
};

use crate::{ms, Sim, TrunkScript, GATEWAY};

/// The primary trunk's address.
pub const PRIMARY: &str = "127.0.30.1:5060";

/// The backup trunk's address.
pub const BACKUP: &str = "127.0.30.2:5060";

/// An emergency number at the gateway.
pub const EMERGENCY: &str = "sip:999@127.0.10.1";

/// An ordinary number at the gateway.
pub const ORDINARY: &str = "sip:+441632960000@127.0.10.1";

/// `primary` and `backup`, probed with the defaults; the routes
/// `emergency` (emergency calls) and `default` (any), both through
/// `primary` then `backup`.
pub fn config() -> ProxyConfig {
    let trunk = |name: &str, a: &str| TrunkConfig::new(name, Peer::udp(a.parse().unwrap()));
    ProxyConfig::new(
        GATEWAY.parse().unwrap(),
        vec![trunk("primary", PRIMARY), trunk("backup", BACKUP)],
        vec![
            RouteConfig::new("emergency", RouteMatch::Emergency, &["primary", "backup"]),
            RouteConfig::new("default", RouteMatch::Any, &["primary", "backup"]),
        ],
    )
}

/// [`config`] with the trunks' scripts, run to 1000 ms.
pub fn sim(primary: TrunkScript, backup: TrunkScript) -> Sim {
    sim_with(config(), primary, backup)
}

/// `cfg` (trunks `primary` and `backup`) with the trunks' scripts, run to
/// 1000 ms.
pub fn sim_with(cfg: ProxyConfig, primary: TrunkScript, backup: TrunkScript) -> Sim {
    let mut s = Sim::new(cfg, &[("primary", primary), ("backup", backup)]);
    s.run_until(ms(1000)); // let the first probes settle
    s
}

/// The gateway's address.
pub fn gw() -> SocketAddr {
    GATEWAY.parse().unwrap()
}

/// The primary's address.
pub fn p() -> SocketAddr {
    PRIMARY.parse().unwrap()
}

/// The backup's address.
pub fn b() -> SocketAddr {
    BACKUP.parse().unwrap()
}

/// 100 at once, 180 after 10 ms, 200 after `answer`.
pub fn ringing(answer: Duration) -> TrunkScript {
    TrunkScript {
        invite: vec![(ms(0), 100), (ms(10), 180), (answer, 200)],
        answer_options: true,
    }
}

/// Every attempt failure, with its time.
pub fn failures(s: &Sim) -> Vec<(Duration, AttemptFailure)> {
    s.events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::AttemptFailed { reason, .. } => Some((*t, *reason)),
            _ => None,
        })
        .collect()
}

/// Every attempt moved off a trunk that went Down ([`Event::Rescued`]),
/// with its time and whether the caller had heard ringing.
pub fn rescued(s: &Sim) -> Vec<(Duration, bool)> {
    s.events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Rescued { ringing, .. } => Some((*t, *ringing)),
            _ => None,
        })
        .collect()
}
