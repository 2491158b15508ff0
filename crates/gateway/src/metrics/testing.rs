use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::{
    Event, Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig,
};
use lifeline_sip::{Message, MessageWriter};

pub(crate) const CALLER: &str = "127.0.0.9:5070";
pub(crate) const PRIMARY: &str = "127.0.0.2:5060";
pub(crate) const BACKUP: &str = "127.0.0.3:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The proxy, its clock, and what it sent and reported.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) proxy: Proxy,
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) events: Vec<Event>,
    sent: Vec<(SocketAddr, Bytes)>,
}

impl Bench {
    /// Trunks `primary` and `backup` (probes off: only live evidence
    /// moves them); route `emergency` over both and, with
    /// `default_route`, route `default` (anything) over `primary` only.
    pub(crate) fn new(default_route: bool) -> Self {
        let probe = ProbeConfig {
            enabled: false,
            ..ProbeConfig::default()
        };
        let trunk = |name: &str, a: &str| TrunkConfig {
            probe: probe.clone(),
            ..TrunkConfig::new(name, Peer::udp(addr(a)))
        };
        let mut routes = vec![RouteConfig::new(
            "emergency",
            RouteMatch::Emergency,
            &["primary", "backup"],
        )];
        if default_route {
            routes.push(RouteConfig::new("default", RouteMatch::Any, &["primary"]));
        }
        let cfg = ProxyConfig::new(
            addr("127.0.0.1:5060"),
            vec![trunk("primary", PRIMARY), trunk("backup", BACKUP)],
            routes,
        );
        let t0 = Instant::now();
        let mut b = Self {
            proxy: Proxy::new(t0, cfg).unwrap(),
            t0,
            now: t0,
            events: Vec::new(),
            sent: Vec::new(),
        };
        b.drain();
        b
    }

    fn drain(&mut self) {
        while let Some(t) = self.proxy.poll_transmit() {
            self.sent.push((t.peer.addr, t.payload));
        }
        while let Some(e) = self.proxy.poll_event() {
            self.events.push(e);
        }
    }

    /// Let `ms` pass, firing the proxy's timers on the way.
    pub(crate) fn advance(&mut self, ms: u64) {
        let until = self.now + Duration::from_millis(ms);
        while let Some(t) = self.proxy.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.proxy.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// The events so far, taken.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn receive(&mut self, from: &str, msg: String) {
        self.proxy
            .handle_message(self.now, Peer::udp(addr(from)), Bytes::from(msg));
        self.drain();
    }

    /// The caller sends an INVITE to `uri` with Call-ID `id`.
    pub(crate) fn invite(&mut self, id: &str, uri: &str) {
        self.caller_sends("INVITE", id, uri);
    }

    /// The caller CANCELs its INVITE.
    pub(crate) fn cancel(&mut self, id: &str, uri: &str) {
        self.caller_sends("CANCEL", id, uri);
    }

    /// The caller's `method` (INVITE or CANCEL, which share the INVITE's
    /// branch) of call `id` to `uri`; an INVITE says where the caller is.
    fn caller_sends(&mut self, method: &str, id: &str, uri: &str) {
        let contact = if method == "INVITE" {
            format!("Contact: <sip:alice@{CALLER}>\r\n")
        } else {
            String::new()
        };
        let msg = format!(
            "{method} {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:alice@example.net>;tag=a-{id}\r\n\
                 To: <{uri}>\r\n\
                 Call-ID: {id}\r\n\
                 CSeq: 1 {method}\r\n\
                 {contact}\
                 Content-Length: 0\r\n\r\n"
        );
        self.receive(CALLER, msg);
    }

    /// A request the proxy refuses with 483.
    pub(crate) fn too_many_hops(&mut self) {
        let msg = format!(
            "OPTIONS sip:bob@example.org SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-hops\r\n\
                 Max-Forwards: 0\r\n\
                 From: <sip:alice@example.net>;tag=hops\r\n\
                 To: <sip:bob@example.org>\r\n\
                 Call-ID: hops\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
        );
        self.receive(CALLER, msg);
    }

    /// The trunk at `trunk` answers the INVITE of call `id` it got last.
    pub(crate) fn answer(&mut self, trunk: &str, id: &str, code: u16, reason: &str) {
        self.answer_from(trunk, trunk, id, code, reason);
    }

    /// As [`answer`](Self::answer), but the response comes from `from`
    /// (another address: a forged source).
    pub(crate) fn answer_from(
        &mut self,
        trunk: &str,
        from: &str,
        id: &str,
        code: u16,
        reason: &str,
    ) {
        let to = addr(trunk);
        let invite = self
            .sent
            .iter()
            .rev()
            .filter(|(a, p)| *a == to && p.starts_with(b"INVITE "))
            .map(|(_, p)| Message::parse(p.clone()).unwrap())
            .find(|m| m.call_id() == Some(id.as_bytes()))
            .unwrap_or_else(|| panic!("no INVITE for {id} at {trunk}"));
        let contact = format!("<sip:callee@{trunk}>");
        let w =
            MessageWriter::dialog_response_to(&invite, code, reason, b"t-1", contact.as_bytes());
        let bytes = w.unwrap().finish();
        self.receive(from, String::from_utf8(bytes.to_vec()).unwrap());
    }
}
