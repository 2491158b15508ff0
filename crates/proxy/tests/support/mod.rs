//! What the single-trunk tests of the pure core share: the addresses, the
//! emergency INVITE, and a proxy with one unprobed trunk.
//!
//! Each test binary that says `mod support;` uses a part of this, so the
//! rest would warn as dead code in it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::{
    CallInfo, Event, Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, Transmit,
    TrunkConfig,
};
use lifeline_sip::{HeaderName, Message, MessageWriter};

/// A proxy configuration at [`GW`] with one unprobed trunk, `primary` at
/// [`TRUNK`], and two routes through it, `emergency` and `default`, each
/// with a failover timer long enough (60 s) never to fire while a test
/// waits.
pub(crate) fn emergency_and_default() -> ProxyConfig {
    let probe = ProbeConfig {
        enabled: false,
        ..ProbeConfig::default()
    };
    let route = |name: &str, m: RouteMatch| RouteConfig {
        failover_after: Duration::from_secs(60),
        ..RouteConfig::new(name, m, &["primary"])
    };
    ProxyConfig::new(
        addr(GW),
        vec![TrunkConfig {
            probe,
            ..TrunkConfig::new("primary", Peer::udp(addr(TRUNK)))
        }],
        vec![
            route("emergency", RouteMatch::Emergency),
            route("default", RouteMatch::Any),
        ],
    )
}

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

/// The proxy on virtual time, and what it sent and reported.
pub(crate) struct Bench {
    pub(crate) proxy: Proxy,
    pub(crate) now: Instant,
    pub(crate) sent: Vec<Transmit>,
    pub(crate) events: Vec<Event>,
}

impl Bench {
    pub(crate) fn new(cfg: ProxyConfig) -> Self {
        let now = Instant::now();
        let mut b = Bench {
            proxy: Proxy::new(now, cfg).unwrap(),
            now,
            sent: Vec::new(),
            events: Vec::new(),
        };
        b.drain();
        b
    }

    pub(crate) fn drain(&mut self) {
        while let Some(t) = self.proxy.poll_transmit() {
            self.sent.push(t);
        }
        while let Some(e) = self.proxy.poll_event() {
            self.events.push(e);
        }
    }

    /// `text` arrives from `from`, 1 ms after the last input.
    pub(crate) fn send(&mut self, from: &str, text: &str) {
        self.now += Duration::from_millis(1);
        self.proxy.handle_message(
            self.now,
            Peer::udp(addr(from)),
            Bytes::from(text.to_string()),
        );
        self.drain();
    }

    /// Let `d` pass, firing timers.
    pub(crate) fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.proxy.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// Requests that went to the trunk (not the probes: they are off).
    pub(crate) fn at_trunk(&self) -> Vec<Message> {
        self.sent
            .iter()
            .filter(|t| t.peer.addr == addr(TRUNK))
            .map(|t| Message::parse(t.payload.clone()).unwrap())
            .collect()
    }

    pub(crate) fn to(&self, who: &str) -> Vec<Message> {
        self.sent
            .iter()
            .filter(|t| t.peer.addr == addr(who))
            .map(|t| Message::parse(t.payload.clone()).unwrap())
            .collect()
    }

    pub(crate) fn rejections(&self) -> Vec<(SocketAddr, Option<u16>, &'static str)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Rejected {
                    from,
                    status,
                    reason,
                    ..
                } => Some((from.addr, *status, *reason)),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn started(&self) -> Vec<CallInfo> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::CallStarted { info, .. } => Some((**info).clone()),
                _ => None,
            })
            .collect()
    }
}

/// The caller's `method` in the dialog the 2xx `ok` (as relayed to it)
/// established: to its Contact, along its Record-Route; `n` tells the
/// branches of several calls apart.
pub(crate) fn in_dialog(ok: &Message, method: &str, seq: u32, n: usize) -> Bytes {
    let mut w = MessageWriter::request(method, b"sip:t@trunk").unwrap();
    let via = format!("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{method}{n}");
    w.header(HeaderName::Via, via.as_bytes()).unwrap();
    w.header(HeaderName::MaxForwards, b"70").unwrap();
    for h in ok.headers() {
        match h.name {
            HeaderName::RecordRoute => {
                w.header(HeaderName::Route, h.value).unwrap();
            }
            HeaderName::From | HeaderName::To | HeaderName::CallId => {
                w.raw_header(h.raw_name, h.value).unwrap();
            }
            _ => {}
        }
    }
    w.header(HeaderName::CSeq, format!("{seq} {method}").as_bytes())
        .unwrap();
    w.finish()
}
