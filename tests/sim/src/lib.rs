//! A virtual-time simulator for the lifeline proxy core.
//!
//! - a virtual clock that jumps to the next thing that happens (a packet
//!   arriving, a proxy timer, a scripted trunk action);
//! - a virtual network with per-node latency, deterministic loss, and cut
//!   links (black-holed, or refused with ICMP port unreachable);
//! - scripted trunks acting as UAS ([`TrunkScript`]): they answer OPTIONS,
//!   answer INVITEs with a timed list of responses, honour CANCEL, answer BYE;
//! - a caller acting as UAC ([`Caller`]): INVITE, ACK (hop by hop for
//!   non-2xx, end to end along the Record-Route for 2xx), CANCEL, BYE;
//! - an attacker: forged ICMP errors about a trunk ([`Sim::forge_icmp`],
//!   [`Sim::forge_icmp_per_send`]), forged answers to what the gateway sends
//!   a trunk, from another address ([`Sim::spoof_answers`]), and any bytes
//!   from any address ([`Sim::inject_spoofed`]).
//!
//! [`scenario`] holds what the scenario tests share: two trunks, their
//! routes, a settled simulation, readers of the events.
//!
//! Everything is recorded in a [`Trace`] so tests can assert exact instants
//! ("the INVITE reached the backup exactly 200 ms after it left for the
//! primary") and exact bytes.
//!
//! It does no IO and reads no clock except once, for the origin of virtual
//! time (`Instant` has no constructor).

#[doc(hidden)]
pub mod fuzzing;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::{Event, Peer, Proxy, ProxyConfig, TransportError, TrunkId};
use lifeline_sip::{HeaderName, Message, MessageWriter};

/// Milliseconds.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The gateway's address in the simulation.
pub const GATEWAY: &str = "127.0.10.1:5060";

/// An address no trunk or caller has: where forged messages come from.
pub const ATTACKER: &str = "127.0.66.6:5060";

/// How a simulated node's link behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Delivered after the node's latency.
    Up,
    /// Packets vanish (a hung host, a partition).
    BlackHole,
    /// Packets to the node are refused with ICMP port unreachable (a killed
    /// process on a live host).
    Refused,
}

/// One packet seen on the virtual network.
#[derive(Clone, Debug)]
pub struct Packet {
    /// When it was sent.
    pub sent: Duration,
    /// From.
    pub from: SocketAddr,
    /// To.
    pub to: SocketAddr,
    /// The bytes.
    pub bytes: Bytes,
    /// Whether it was delivered (false: lost, black-holed or refused).
    pub delivered: bool,
}

impl Packet {
    /// The parsed message.
    pub fn message(&self) -> Option<Message> {
        Message::parse(self.bytes.clone()).ok()
    }

    /// `INVITE`, `ACK`, ... for requests; `"200"`, `"503"`, ... for responses.
    pub fn summary(&self) -> String {
        match self.message() {
            Some(m) => match m.status() {
                Some(c) => c.to_string(),
                None => String::from_utf8_lossy(m.method_bytes().unwrap_or_default()).into_owned(),
            },
            None => "?".into(),
        }
    }

    /// The CSeq method (to tell OPTIONS probes from calls, and to see what a
    /// response answers).
    pub fn cseq_method(&self) -> String {
        self.message()
            .and_then(|m| {
                m.cseq()
                    .ok()
                    .map(|c| String::from_utf8_lossy(c.method).into_owned())
            })
            .unwrap_or_default()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> String {
        self.message()
            .and_then(|m| m.call_id().map(|c| String::from_utf8_lossy(c).into_owned()))
            .unwrap_or_default()
    }
}

/// Everything that crossed the network, and every proxy event.
#[derive(Debug, Default)]
pub struct Trace {
    /// Packets in the order sent.
    pub packets: Vec<Packet>,
    /// Proxy events with their virtual time.
    pub events: Vec<(Duration, Event)>,
}

impl Trace {
    /// Packets from `from` to `to` whose summary is `what` (e.g. "INVITE",
    /// "503"), excluding OPTIONS probes and their answers.
    pub fn find<'a>(
        &'a self,
        from: SocketAddr,
        to: SocketAddr,
        what: &'a str,
    ) -> impl Iterator<Item = &'a Packet> + 'a {
        self.packets.iter().filter(move |p| {
            p.from == from && p.to == to && p.summary() == what && p.cseq_method() != "OPTIONS"
        })
    }

    /// The first such packet's send time.
    pub fn first(&self, from: SocketAddr, to: SocketAddr, what: &str) -> Option<Duration> {
        self.find(from, to, what).next().map(|p| p.sent)
    }

    /// The first such packet, parsed.
    pub fn first_message(&self, from: SocketAddr, to: SocketAddr, what: &str) -> Option<Message> {
        self.find(from, to, what).next().and_then(|p| p.message())
    }
}

/// What a trunk does with an INVITE: responses with their delay after the
/// INVITE arrives. `[]` is silence; `[(0, 100)]` accepts and stalls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkScript {
    /// (delay after the INVITE, status).
    pub invite: Vec<(Duration, u16)>,
    /// Whether OPTIONS probes are answered (200).
    pub answer_options: bool,
}

impl TrunkScript {
    /// Rings after 10 ms and answers after 50 ms.
    pub fn answering() -> Self {
        Self {
            invite: vec![(ms(0), 100), (ms(10), 180), (ms(50), 200)],
            answer_options: true,
        }
    }

    /// Answers every INVITE with `code` at once.
    pub fn rejecting(code: u16) -> Self {
        Self {
            invite: vec![(ms(0), code)],
            answer_options: true,
        }
    }

    /// 100 Trying, then nothing.
    pub fn stalling() -> Self {
        Self {
            invite: vec![(ms(0), 100)],
            answer_options: true,
        }
    }

    /// Never answers an INVITE, but answers probes.
    pub fn silent_to_calls() -> Self {
        Self {
            invite: vec![],
            answer_options: true,
        }
    }
}

#[derive(Debug)]
struct Node {
    addr: SocketAddr,
    latency: Duration,
    link: Link,
    /// Drop the next `n` packets to this node.
    drop_next: u32,
    /// Every message the gateway sends to this node is followed at once by
    /// a forged ICMP port unreachable about it (the message still arrives).
    forge_icmp: bool,
}

/// A forged answer: every request `method` the gateway sends to a trunk is
/// answered at once with `code`, from `from` (an attacker who sees the
/// request, and so its branch).
#[derive(Clone, Debug)]
struct Spoof {
    trunk: SocketAddr,
    method: String,
    from: SocketAddr,
    code: u16,
}

/// A scripted trunk (UAS).
#[derive(Debug)]
pub struct Trunk {
    node: Node,
    /// The script.
    pub script: TrunkScript,
    /// INVITEs received (first copies only), as bytes.
    pub invites: Vec<Bytes>,
    /// Branches whose scripted responses were cancelled.
    cancelled: std::collections::HashSet<Bytes>,
    /// INVITE per branch.
    by_branch: HashMap<Bytes, (Message, bool, String)>,
    tag_counter: u32,
}

/// The caller (UAC).
#[derive(Debug)]
pub struct Caller {
    node: Node,
    pub(crate) calls: HashMap<String, CallerCall>,
    counter: u32,
}

/// A caller's view of one call.
#[derive(Debug, Default, Clone)]
pub struct CallerCall {
    /// The INVITE as sent.
    pub invite: Option<Bytes>,
    /// Every response to the INVITE received (status, virtual time).
    pub responses: Vec<(u16, Duration)>,
    /// Responses to other requests of the call (CANCEL, BYE).
    pub other_responses: Vec<(u16, Duration)>,
    /// The 2xx, if any.
    pub answer: Option<Message>,
    /// The route set learnt from the 2xx's Record-Route (reversed for a UAC: same order).
    pub route_set: Vec<Bytes>,
    /// In-dialog requests received from the trunk side (BYE ...).
    pub requests: Vec<String>,
}

impl CallerCall {
    /// The final status, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.responses.iter().map(|r| r.0).find(|c| *c >= 200)
    }

    /// Statuses in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.0).collect()
    }
}

/// A packet in flight: (arrival, sequence, from, to, bytes).
type InFlight = (Instant, u64, SocketAddr, SocketAddr, Bytes);
/// A scripted trunk response: (due, sequence, trunk, INVITE branch, status).
type TrunkAction = (Instant, u64, String, Bytes, u16);

/// The whole simulation.
#[derive(Debug)]
pub struct Sim {
    /// Origin of virtual time.
    pub t0: Instant,
    /// Now.
    pub now: Instant,
    /// The gateway's proxy core.
    pub proxy: Proxy,
    /// Gateway address.
    pub gateway: SocketAddr,
    /// Trunks by name.
    pub trunks: BTreeMap<String, Trunk>,
    /// The caller.
    pub caller: Caller,
    /// In flight: (arrival, seq, from, to, bytes).
    in_flight: BinaryHeap<Reverse<InFlight>>,
    /// Scripted trunk responses: (due, seq, trunk, branch, status).
    trunk_actions: BinaryHeap<Reverse<TrunkAction>>,
    spoofs: Vec<Spoof>,
    seq: u64,
    /// What happened.
    pub trace: Trace,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

impl Sim {
    /// A simulation of `cfg` (whose `advertise` should be [`GATEWAY`]) with
    /// trunks named as in the config, scripted by `scripts`, and a caller at
    /// `127.0.20.1:5060`.
    pub fn new(cfg: ProxyConfig, scripts: &[(&str, TrunkScript)]) -> Self {
        let t0 = Instant::now();
        let mut trunks = BTreeMap::new();
        for t in &cfg.trunks {
            let script = scripts
                .iter()
                .find(|(n, _)| *n == t.name)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(TrunkScript::answering);
            trunks.insert(
                t.name.clone(),
                Trunk {
                    node: Node {
                        addr: t.peer.addr,
                        latency: Duration::ZERO,
                        link: Link::Up,
                        drop_next: 0,
                        forge_icmp: false,
                    },
                    script,
                    invites: vec![],
                    cancelled: Default::default(),
                    by_branch: HashMap::new(),
                    tag_counter: 0,
                },
            );
        }
        let gateway = cfg.advertise;
        let proxy = Proxy::new(t0, cfg).expect("valid config");
        Sim {
            t0,
            now: t0,
            proxy,
            gateway,
            trunks,
            caller: Caller {
                node: Node {
                    addr: addr("127.0.20.1:5060"),
                    latency: Duration::ZERO,
                    link: Link::Up,
                    drop_next: 0,
                    forge_icmp: false,
                },
                calls: HashMap::new(),
                counter: 0,
            },
            in_flight: BinaryHeap::new(),
            trunk_actions: BinaryHeap::new(),
            spoofs: Vec::new(),
            seq: 0,
            trace: Trace::default(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// A trunk's address.
    pub fn trunk_addr(&self, name: &str) -> SocketAddr {
        self.trunks[name].node.addr
    }

    /// The caller's address.
    pub fn caller_addr(&self) -> SocketAddr {
        self.caller.node.addr
    }

    /// Change how a trunk's link behaves from now on.
    pub fn set_link(&mut self, trunk: &str, link: Link) {
        if let Some(t) = self.trunks.get_mut(trunk) {
            t.node.link = link;
        }
    }

    /// Change a trunk's script from now on.
    pub fn set_script(&mut self, trunk: &str, script: TrunkScript) {
        if let Some(t) = self.trunks.get_mut(trunk) {
            t.script = script;
        }
    }

    /// One-way latency between the gateway and a node (trunk name or "caller").
    pub fn set_latency(&mut self, node: &str, latency: Duration) {
        match self.node_mut(node) {
            Some(n) => n.latency = latency,
            None => panic!("no node {node}"),
        }
    }

    /// Lose the next `n` packets sent to a node.
    pub fn drop_next(&mut self, node: &str, n: u32) {
        if let Some(nd) = self.node_mut(node) {
            nd.drop_next = n;
        }
    }

    /// A forged ICMP port unreachable about `trunk`, now: the gateway takes
    /// it to answer the last message it sent there.
    pub fn forge_icmp(&mut self, trunk: &str) {
        let a = self.trunk_addr(trunk);
        if let Some(t) = self.trunk_id_at(a) {
            let now = self.now;
            self.proxy
                .handle_transport_error(now, t, TransportError::PortUnreachable);
        }
        self.flush();
    }

    /// From now on (or no longer), every message the gateway sends to
    /// `trunk` is followed at once by a forged ICMP error about it; the
    /// message itself still arrives.
    pub fn forge_icmp_per_send(&mut self, trunk: &str, on: bool) {
        if let Some(t) = self.trunks.get_mut(trunk) {
            t.node.forge_icmp = on;
        }
    }

    /// From now on, every `method` request the gateway sends to `trunk` is
    /// answered at once with `code` from `from`, whatever the trunk's link
    /// (an attacker who sees the request). The trunk gets the request too.
    pub fn spoof_answers(&mut self, trunk: &str, method: &str, from: SocketAddr, code: u16) {
        let trunk = self.trunk_addr(trunk);
        self.spoofs.push(Spoof {
            trunk,
            method: method.to_string(),
            from,
            code,
        });
    }

    /// Deliver `bytes` to the gateway as if from `from`, any address at all
    /// (a forged source).
    pub fn inject_spoofed(&mut self, from: SocketAddr, bytes: Bytes) {
        let sent = self.elapsed();
        let to = self.gateway;
        self.trace.packets.push(Packet {
            sent,
            from,
            to,
            bytes: bytes.clone(),
            delivered: true,
        });
        self.proxy.handle_message(self.now, Peer::udp(from), bytes);
        self.flush();
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        if name == "caller" {
            Some(&mut self.caller.node)
        } else {
            self.trunks.get_mut(name).map(|t| &mut t.node)
        }
    }

    fn node_of(&mut self, a: SocketAddr) -> Option<&mut Node> {
        if self.caller.node.addr == a {
            return Some(&mut self.caller.node);
        }
        self.trunks
            .values_mut()
            .map(|t| &mut t.node)
            .find(|n| n.addr == a)
    }

    /// Put a packet on the wire.
    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        let sent = self.elapsed();
        let now = self.now;
        let gateway = self.gateway;
        // The far end of the link (the non-gateway node) decides its fate.
        let far = if to == gateway { from } else { to };
        let (latency, link, dropped, forge_icmp) = match self.node_of(far) {
            Some(n) => {
                let dropped = if n.drop_next > 0 && to == far {
                    n.drop_next -= 1;
                    true
                } else {
                    false
                };
                (n.latency, n.link, dropped, n.forge_icmp && from == gateway)
            }
            None => (Duration::ZERO, Link::BlackHole, true, false),
        };
        if from == gateway {
            self.spoof_answer(to, &bytes);
        }
        let delivered = !dropped && link == Link::Up;
        self.trace.packets.push(Packet {
            sent,
            from,
            to,
            bytes: bytes.clone(),
            delivered,
        });
        if delivered {
            self.seq += 1;
            self.in_flight
                .push(Reverse((now + latency, self.seq, from, to, bytes)));
        } else if link == Link::Refused && from == gateway {
            // ICMP port unreachable comes straight back.
            let trunk = self.trunk_id_at(to);
            if let Some(t) = trunk {
                self.proxy
                    .handle_transport_error(now, t, TransportError::PortUnreachable);
            }
        }
        if forge_icmp {
            if let Some(t) = self.trunk_id_at(to) {
                self.proxy
                    .handle_transport_error(now, t, TransportError::PortUnreachable);
            }
        }
    }

    /// Forged answers to a request the gateway sent to `to` (see
    /// [`Sim::spoof_answers`]): in flight at once, from the spoofer.
    fn spoof_answer(&mut self, to: SocketAddr, bytes: &Bytes) {
        let Ok(m) = Message::parse(bytes.clone()) else {
            return;
        };
        let Some(method) = m.method_bytes() else {
            return;
        };
        let answers: Vec<(SocketAddr, u16)> = self
            .spoofs
            .iter()
            .filter(|s| s.trunk == to && s.method.as_bytes() == method)
            .map(|s| (s.from, s.code))
            .collect();
        for (from, code) in answers {
            let Ok(w) = MessageWriter::response_to(&m, code, "Spoofed", Some(b"spoof")) else {
                continue;
            };
            let r = w.finish();
            self.trace.packets.push(Packet {
                sent: self.now - self.t0,
                from,
                to: self.gateway,
                bytes: r.clone(),
                delivered: true,
            });
            self.seq += 1;
            self.in_flight
                .push(Reverse((self.now, self.seq, from, self.gateway, r)));
        }
    }

    fn trunk_id_at(&self, a: SocketAddr) -> Option<TrunkId> {
        self.proxy
            .health()
            .trunks()
            .map(|t| t.id)
            .find(|id| self.proxy.trunk_peer(*id).is_some_and(|p| p.addr == a))
    }

    /// Run until `until` (virtual time since start), processing everything in order.
    pub fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            self.flush();
            let next_packet = self.in_flight.peek().map(|Reverse(p)| p.0);
            let next_trunk = self.trunk_actions.peek().map(|Reverse(a)| a.0);
            let next_timer = self.proxy.poll_timeout();
            let next = [next_packet, next_trunk, next_timer]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                break;
            };
            self.now = self.now.max(next);
            if next_packet.is_some_and(|p| p <= self.now) {
                if let Some(Reverse((_, _, from, to, bytes))) = self.in_flight.pop() {
                    self.deliver(from, to, bytes);
                }
                continue;
            }
            if next_trunk.is_some_and(|t| t <= self.now) {
                if let Some(Reverse((_, _, name, branch, code))) = self.trunk_actions.pop() {
                    self.fire_trunk(&name, branch, code);
                }
                continue;
            }
            self.proxy.handle_timeout(self.now);
        }
        self.now = self.now.max(end);
        self.flush();
    }

    /// Run for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.elapsed() + d;
        self.run_until(until);
    }

    /// Drain the proxy: packets onto the wire, events into the trace.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(tx) = self.proxy.poll_transmit() {
                progressed = true;
                let gw = self.gateway;
                self.send(gw, tx.peer.addr, tx.payload);
            }
            while let Some(ev) = self.proxy.poll_event() {
                progressed = true;
                self.trace.events.push((self.now - self.t0, ev));
            }
            if !progressed {
                break;
            }
        }
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        if to == self.gateway {
            self.proxy.handle_message(self.now, Peer::udp(from), bytes);
            return;
        }
        if to == self.caller.node.addr {
            self.caller_receive(bytes);
            return;
        }
        let name = self
            .trunks
            .iter()
            .find(|(_, t)| t.node.addr == to)
            .map(|(n, _)| n.clone());
        if let Some(name) = name {
            self.trunk_receive(&name, bytes);
        }
    }

    // ------------------------------------------------------------ trunks

    fn trunk_receive(&mut self, name: &str, bytes: Bytes) {
        let Ok(m) = Message::parse(bytes.clone()) else {
            return;
        };
        let now = self.now;
        let gw = self.gateway;
        let me = self.trunks[name].node.addr;
        if m.status().is_some() {
            return;
        }
        let branch = m
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let method = m.method_bytes().unwrap_or_default().to_vec();
        let contact = format!("<sip:uas@{me}>");
        let reply = |m: &Message, code: u16, tag: &str| -> Bytes {
            MessageWriter::dialog_response_to(m, code, "Sim", tag.as_bytes(), contact.as_bytes())
                .expect("response")
                .finish()
        };
        match method.as_slice() {
            b"OPTIONS" => {
                if self.trunks[name].script.answer_options {
                    let r = reply(&m, 200, "probe");
                    self.send(me, gw, r);
                }
            }
            b"INVITE" => {
                let t = self.trunks.get_mut(name).expect("trunk");
                if t.by_branch.contains_key(&branch) {
                    return; // retransmission
                }
                t.invites.push(bytes.clone());
                t.tag_counter += 1;
                let tag = format!("{name}-{}", t.tag_counter);
                t.by_branch.insert(branch.clone(), (m.clone(), false, tag));
                for (delay, code) in t.script.invite.clone() {
                    self.seq += 1;
                    self.trunk_actions.push(Reverse((
                        now + delay,
                        self.seq,
                        name.to_string(),
                        branch.clone(),
                        code,
                    )));
                }
            }
            b"CANCEL" => {
                let r = reply(&m, 200, "c");
                self.send(me, gw, r);
                let t = self.trunks.get_mut(name).expect("trunk");
                t.cancelled.insert(branch.clone());
                if let Some((inv, finalised, tag)) = t.by_branch.get_mut(&branch) {
                    if !*finalised {
                        *finalised = true;
                        let inv = inv.clone();
                        let tag = tag.clone();
                        let r = reply(&inv, 487, &tag);
                        self.send(me, gw, r);
                    }
                }
            }
            b"ACK" => {}
            _ => {
                let r = reply(&m, 200, "x");
                self.send(me, gw, r);
            }
        }
    }

    fn fire_trunk(&mut self, name: &str, branch: Bytes, code: u16) {
        let gw = self.gateway;
        let Some(t) = self.trunks.get_mut(name) else {
            return;
        };
        if t.cancelled.contains(&branch) {
            return;
        }
        let me = t.node.addr;
        let Some((inv, finalised, tag)) = t.by_branch.get_mut(&branch) else {
            return;
        };
        if *finalised {
            return;
        }
        if code >= 200 {
            *finalised = true;
        }
        let (inv, tag) = (inv.clone(), tag.clone());
        let contact = format!("<sip:uas@{me}>");
        let r = MessageWriter::dialog_response_to(
            &inv,
            code,
            "Sim",
            tag.as_bytes(),
            contact.as_bytes(),
        )
        .expect("response")
        .finish();
        self.send(me, gw, r);
    }

    // ------------------------------------------------------------ caller

    /// Place a call: an INVITE to `uri` with extra header lines (each ending
    /// in CRLF) and an optional (content type, body). Returns its Call-ID.
    pub fn call(&mut self, uri: &str, extra: &str, body: Option<(&str, &[u8])>) -> String {
        self.caller.counter += 1;
        let n = self.caller.counter;
        let me = self.caller.node.addr;
        let call_id = format!("call-{n}@{}", me.ip());
        let (ct, body) = match body {
            Some((ct, b)) => (format!("Content-Type: {ct}\r\n"), b.to_vec()),
            None => (String::new(), vec![]),
        };
        let head = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcaller{n}\r\nMax-Forwards: 70\r\nFrom: \"Caller {n}\" <sip:+44163296{n:04}@{ip}>;tag=c{n}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n",
            body.len(),
            ip = me.ip(),
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        let bytes = Bytes::from(bytes);
        self.caller.calls.insert(
            call_id.clone(),
            CallerCall {
                invite: Some(bytes.clone()),
                ..Default::default()
            },
        );
        let gw = self.gateway;
        self.send(me, gw, bytes);
        self.flush();
        call_id
    }

    /// Deliver arbitrary bytes to the gateway as if sent by `from`.
    pub fn inject(&mut self, from: SocketAddr, bytes: Bytes) {
        let gw = self.gateway;
        self.send(from, gw, bytes);
        self.flush();
    }

    /// Send the INVITE of `call_id` again (a caller retransmission).
    pub fn retransmit_invite(&mut self, call_id: &str) {
        let bytes = self.caller.calls[call_id].invite.clone().expect("invite");
        let (me, gw) = (self.caller.node.addr, self.gateway);
        self.send(me, gw, bytes);
        self.flush();
    }

    /// CANCEL a call.
    pub fn cancel(&mut self, call_id: &str) {
        let inv = Message::parse(self.caller.calls[call_id].invite.clone().expect("invite"))
            .expect("parses");
        let text = format!(
            "CANCEL {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(inv.request_uri_bytes().unwrap_or_default()),
            String::from_utf8_lossy(inv.header(HeaderName::Via).map(|h| h.value).unwrap_or_default()),
            String::from_utf8_lossy(inv.header(HeaderName::From).map(|h| h.value).unwrap_or_default()),
            String::from_utf8_lossy(inv.header(HeaderName::To).map(|h| h.value).unwrap_or_default()),
        );
        let (me, gw) = (self.caller.node.addr, self.gateway);
        self.send(me, gw, Bytes::from(text));
        self.flush();
    }

    /// Send BYE on an answered call (along the route set).
    pub fn bye(&mut self, call_id: &str) {
        let c = self.caller.calls[call_id].clone();
        let answer = c.answer.expect("answered");
        let inv = Message::parse(c.invite.expect("invite")).expect("parses");
        let me = self.caller.node.addr;
        let target = answer
            .header(HeaderName::Contact)
            .map(|h| {
                String::from_utf8_lossy(h.value)
                    .trim_matches(|ch| ch == '<' || ch == '>')
                    .to_string()
            })
            .unwrap_or_default();
        let routes: String = c
            .route_set
            .iter()
            .map(|r| format!("Route: {}\r\n", String::from_utf8_lossy(r)))
            .collect();
        let text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye-{}\r\nMax-Forwards: 70\r\n{routes}From: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            call_id.split('@').next().unwrap_or_default(),
            String::from_utf8_lossy(inv.header(HeaderName::From).map(|h| h.value).unwrap_or_default()),
            String::from_utf8_lossy(answer.header(HeaderName::To).map(|h| h.value).unwrap_or_default()),
        );
        let gw = self.gateway;
        self.send(me, gw, Bytes::from(text));
        self.flush();
    }

    /// The caller's view of a call.
    pub fn caller_call(&self, call_id: &str) -> &CallerCall {
        &self.caller.calls[call_id]
    }

    fn caller_receive(&mut self, bytes: Bytes) {
        let Ok(m) = Message::parse(bytes) else {
            return;
        };
        let call_id = m
            .call_id()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        let elapsed = self.elapsed();
        let me = self.caller.node.addr;
        let gw = self.gateway;
        if m.status().is_none() {
            // An in-dialog request from the far end: answer 200.
            if let Some(c) = self.caller.calls.get_mut(&call_id) {
                c.requests.push(
                    String::from_utf8_lossy(m.method_bytes().unwrap_or_default()).into_owned(),
                );
            }
            if m.method_bytes() != Some(b"ACK") {
                let r = MessageWriter::response_to(&m, 200, "OK", None)
                    .expect("response")
                    .finish();
                self.send(me, gw, r);
            }
            return;
        }
        let code = m.status().unwrap_or(0);
        let is_invite = m.cseq().is_ok_and(|c| c.method == b"INVITE");
        let Some(c) = self.caller.calls.get_mut(&call_id) else {
            return;
        };
        if !is_invite {
            c.other_responses.push((code, elapsed));
            return;
        }
        c.responses.push((code, elapsed));
        if code < 200 {
            return;
        }
        let inv = Message::parse(c.invite.clone().expect("invite")).expect("parses");
        let from = String::from_utf8_lossy(
            inv.header(HeaderName::From)
                .map(|h| h.value)
                .unwrap_or_default(),
        )
        .into_owned();
        let to = String::from_utf8_lossy(
            m.header(HeaderName::To)
                .map(|h| h.value)
                .unwrap_or_default(),
        )
        .into_owned();
        let uri = String::from_utf8_lossy(inv.request_uri_bytes().unwrap_or_default()).into_owned();
        if code >= 300 {
            // Hop-by-hop ACK: same branch as the INVITE.
            let via = String::from_utf8_lossy(
                inv.header(HeaderName::Via)
                    .map(|h| h.value)
                    .unwrap_or_default(),
            )
            .into_owned();
            let ack = format!("ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
            self.send(me, gw, Bytes::from(ack));
            return;
        }
        // 2xx: learn the route set, ACK end to end.
        let route_set: Vec<Bytes> = m
            .values(HeaderName::RecordRoute)
            .map(|(_, v)| Bytes::copy_from_slice(v))
            .collect();
        let target = m
            .header(HeaderName::Contact)
            .map(|h| {
                String::from_utf8_lossy(h.value)
                    .trim_matches(|ch| ch == '<' || ch == '>')
                    .to_string()
            })
            .unwrap_or(uri);
        let routes: String = route_set
            .iter()
            .map(|r| format!("Route: {}\r\n", String::from_utf8_lossy(r)))
            .collect();
        c.route_set = route_set;
        c.answer.get_or_insert(m);
        let ack = format!("ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKack{}\r\nMax-Forwards: 70\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", elapsed.as_nanos());
        self.send(me, gw, Bytes::from(ack));
    }

    /// Events of a given shape, with their times.
    pub fn events(&self) -> &[(Duration, Event)] {
        &self.trace.events
    }
}
