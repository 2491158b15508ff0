//! The proxy core (RFC 3261 §16) with serial failover per call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lifeline_health::{Health, Local, Outcome, State, TransportError, TrunkId};
use lifeline_sip::{
    check_datagram, Edit, HeaderName, Host, Message, MessageWriter, Method, Uri, Verdict,
};
use slab::Slab;

use crate::classify::{classify, select_route, EmergencyRule};
use crate::config::{
    ConfigError, Peer, ProxyConfig, RouteConfig, Transport, TrunkConfig, RFC3261_UDP_MAX_REQUEST,
};
use crate::events::{
    AttemptFailure, CallFailure, CallInfo, CallRef, Event, Location, SkipReason, Transmit,
};
use crate::transaction::{
    build_cancel, ClientEvent, ClientState, ClientTimer, ClientTxn, Kind, ServerState, ServerTimer,
    ServerTxn,
};

const LOOP_PREFIX: &str = "z9hG4bK-lp";
const ACK_PREFIX: &str = "z9hG4bK-la";
/// Branches of the ACK and BYE that end a second answer (see `end_duplicate`).
const DUPLICATE_PREFIX: &str = "z9hG4bK-ld";
/// RFC 3326 Reason on the CANCEL of an attempt moved off a dead trunk.
const REASON_TRUNK_DOWN: &[u8] = b"SIP;cause=503;text=\"trunk down\"";
/// RFC 3326 Reason on the CANCEL (or BYE) of an attempt another one beat.
const REASON_ELSEWHERE: &[u8] = b"SIP;cause=200;text=\"Call completed elsewhere\"";

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (including retransmissions).
    pub requests: u64,
    /// Responses received.
    pub responses: u64,
    /// Request retransmissions absorbed by server transactions.
    pub retransmissions_absorbed: u64,
    /// Responses dropped: malformed, stray, or matching no transaction.
    pub responses_dropped: u64,
    /// Requests refused with an error status.
    pub requests_refused: u64,
    /// Live server transactions.
    pub server_transactions: usize,
    /// Live client transactions.
    pub client_transactions: usize,
    /// Calls being set up or forwarded.
    pub calls: usize,
    /// Dialogs whose in-dialog requests the proxy routes.
    pub dialogs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    Server(usize),
    Client(usize),
    Call(usize),
    Dialog(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ServerKey {
    /// RFC 3261 §17.2.3: branch, sent-by, method (ACK matches INVITE).
    Branch {
        branch: Bytes,
        sent_by: Bytes,
        method: Bytes,
    },
    /// RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq, top Via, method.
    Legacy {
        uri: Bytes,
        from_tag: Bytes,
        call_id: Bytes,
        cseq: u32,
        via: Bytes,
        method: Bytes,
    },
}

fn server_key(m: &Message, method_override: Option<&'static [u8]>) -> Option<ServerKey> {
    let bytes = m.as_bytes();
    let via = m.top_via().ok()?;
    let method = Bytes::copy_from_slice(method_override.unwrap_or(m.method_bytes()?));
    if via.is_rfc3261_branch() {
        // The sent-by as a key: host bytes (or the IPv4 octets) and port.
        let mut sent_by = Vec::with_capacity(24);
        match via.host {
            Host::Domain(d) => sent_by.extend(d.iter().map(u8::to_ascii_lowercase)),
            Host::Ipv4(ip) => sent_by.extend_from_slice(&ip.octets()),
            Host::Ipv6(t) => sent_by.extend_from_slice(t),
        }
        sent_by.extend_from_slice(&via.port.unwrap_or(0).to_be_bytes());
        return Some(ServerKey::Branch {
            branch: bytes.slice_ref(via.branch()?),
            sent_by: Bytes::from(sent_by),
            method,
        });
    }
    let top = m.header(HeaderName::Via)?;
    Some(ServerKey::Legacy {
        uri: bytes.slice_ref(m.request_uri_bytes()?),
        from_tag: m
            .from()
            .ok()?
            .tag()
            .map(|t| bytes.slice_ref(t))
            .unwrap_or_default(),
        call_id: bytes.slice_ref(m.call_id()?),
        cseq: m.cseq().ok()?.seq,
        via: bytes.slice_ref(top.value),
        method,
    })
}

#[derive(Debug)]
struct ServerEntry {
    txn: ServerTxn,
    key: ServerKey,
    call: Option<usize>,
    armed: Option<Instant>,
}

#[derive(Debug)]
struct ClientEntry {
    txn: ClientTxn,
    key: (Bytes, Bytes),
    call: usize,
    attempt: usize,
    /// A CANCEL transaction (its responses are absorbed).
    is_cancel: bool,
    armed: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttemptState {
    /// Sent, nothing heard.
    Pending,
    /// 100 Trying heard.
    Trying,
    /// 18x heard.
    Ringing,
    /// 2xx heard.
    Answered,
    /// Final non-2xx, transport error or timeout.
    Done,
    /// Given up by failover (still matched, CANCELled if it wakes up).
    Abandoned,
}

#[derive(Debug)]
struct Attempt {
    trunk: Option<TrunkId>,
    peer: Peer,
    client: Option<usize>,
    started: Instant,
    state: AttemptState,
    failover_at: Option<Instant>,
    progress_at: Option<Instant>,
    timer_c: Option<Instant>,
    /// Hedging: start a parallel attempt if this one has not rung by then.
    hedge_at: Option<Instant>,
    /// When its 100 Trying came (for the learned progress time).
    trying_at: Option<Instant>,
    /// Its time to ringing was given to the trunk's health already.
    progress_recorded: bool,
    /// Counted in its trunk's `max_calls` load.
    counted: bool,
    /// A second answer this proxy ACKed and ended with a BYE.
    ended: bool,
    /// A CANCEL to send once a provisional arrives (RFC 3261 §9.1).
    cancel_wanted: Option<Bytes>,
    cancel_sent: bool,
    dialog: Option<DialogRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    Routing,
    Connected,
    Cancelled,
    Finished,
}

#[derive(Clone, Debug)]
enum Target {
    /// The route, as configured when the call started (a reload does not
    /// change calls in progress).
    Route(Arc<ResolvedRoute>),
    Fixed {
        peer: Peer,
        trunk: Option<TrunkId>,
        dialog: DialogRef,
    },
}

#[derive(Debug)]
struct Call {
    id: CallRef,
    /// The server transaction, until it ends (slab keys are reused: never
    /// keep a key past the entry's removal).
    server: Option<usize>,
    kind: Kind,
    tracked: bool,
    emergency: Option<EmergencyRule>,
    target: Target,
    tried: Vec<TrunkId>,
    /// The route's trunks in this call's order, when the route shares load
    /// by weight (drawn once per call); `None`: the route's own order.
    order: Option<Box<[TrunkId]>>,
    /// The call's place among non-emergency calls (canary share).
    ticket: u64,
    attempts: Vec<Attempt>,
    /// The attempt whose 2xx went to the caller.
    winner: Option<usize>,
    state: CallState,
    started: Instant,
    to_tag: Bytes,
    /// The BYE or other in-dialog request that ends this dialog.
    ends_dialog: bool,
    /// Client transactions (attempts and CANCELs) still alive.
    clients_live: u32,
    /// The request's loop-detection hash (§16.6 step 8), for our branches.
    loop_hash: u64,
    armed: Option<Instant>,
}

/// A dialog's slab key and nonce: a key alone may have been reused.
type DialogRef = (usize, u32);

#[derive(Debug)]
struct Dialog {
    caller: Peer,
    trunk: Peer,
    trunk_id: Option<TrunkId>,
    nonce: u32,
    confirmed: bool,
    /// Counted in its trunk's `max_calls` load (an answered call).
    counted: bool,
    expires: Instant,
    armed: Option<Instant>,
}

/// splitmix64 for branches, tags and tokens.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct ResolvedRoute {
    cfg: RouteConfig,
    trunks: Vec<TrunkId>,
}

impl std::fmt::Debug for ResolvedRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.cfg.name)
            .field("trunks", &self.trunks)
            .finish()
    }
}

/// The proxy: feed it datagrams (or stream frames), transport errors and
/// timer wake-ups; drain what it wants sent and what happened.
///
/// It owns the trunks' [`Health`] (probes go out through
/// [`poll_transmit`](Self::poll_transmit) like everything else, and answers to
/// probes are recognised in [`handle_message`](Self::handle_message)).
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    routes: Vec<Arc<ResolvedRoute>>,
    trunk_peers: Vec<Peer>,
    /// Per trunk: large requests go over TCP ([`TrunkConfig::large_over_tcp`]).
    ///
    /// [`TrunkConfig::large_over_tcp`]: crate::TrunkConfig::large_over_tcp
    large_over_tcp: Vec<bool>,
    health: Health,
    servers: Slab<ServerEntry>,
    server_index: HashMap<ServerKey, usize>,
    clients: Slab<ClientEntry>,
    client_index: HashMap<(Bytes, Bytes), usize>,
    calls: Slab<Call>,
    dialogs: Slab<Dialog>,
    timers: BinaryHeap<Reverse<(Instant, Obj)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: Rng,
    next_call: u64,
    stats: Stats,
    /// `host:port` as written in Via and Record-Route.
    advertise: String,
    /// New calls are taken (false while shutting down).
    accepting: bool,
    /// Trunks configured before a reload and absent from the new
    /// configuration: drained, never selected.
    retired: Vec<TrunkId>,
    /// Per trunk: calls on it and its limits.
    load: Vec<TrunkLoad>,
    /// Per trunk: its state when last looked at, to see it go Down.
    seen: Vec<State>,
    /// Non-emergency calls so far (the canary's tickets).
    tickets: u64,
}

/// A trunk's capacity limits and what it carries now.
#[derive(Clone, Copy, Debug)]
struct TrunkLoad {
    max_calls: Option<u32>,
    max_cps: Option<u32>,
    /// Attempts waiting for a final response plus answered calls not ended.
    calls: u32,
    /// Token bucket for `max_cps`: tokens left (at most `max_cps`), as of
    /// `refilled`.
    tokens: f64,
    refilled: Option<Instant>,
}

impl TrunkLoad {
    fn new(t: &TrunkConfig) -> Self {
        Self {
            max_calls: t.max_calls,
            max_cps: t.max_cps,
            calls: 0,
            tokens: t.max_cps.map_or(0.0, f64::from),
            refilled: None,
        }
    }

    fn reconfigure(&mut self, t: &TrunkConfig) {
        if self.max_cps != t.max_cps {
            self.tokens = t.max_cps.map_or(0.0, f64::from);
            self.refilled = None;
        }
        self.max_calls = t.max_calls;
        self.max_cps = t.max_cps;
    }

    /// The bucket refilled to `now`.
    fn refill(&mut self, now: Instant) {
        let Some(cps) = self.max_cps else {
            return;
        };
        let cap = f64::from(cps);
        if let Some(last) = self.refilled {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * cap).min(cap);
        }
        self.refilled = Some(now);
    }

    /// Which limit, if any, stops one more call now.
    fn full(&self, now: Instant) -> Option<SkipReason> {
        if self.max_calls.is_some_and(|m| self.calls >= m) {
            return Some(SkipReason::MaxCalls);
        }
        let cps = self.max_cps?;
        let cap = f64::from(cps);
        let elapsed = self
            .refilled
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        let tokens = (self.tokens + elapsed * cap).min(cap);
        (tokens < 1.0).then_some(SkipReason::MaxCps)
    }
}

impl Proxy {
    /// Build a proxy. Fails if a route names an unknown trunk, a trunk is
    /// defined twice, or the identity cannot form valid requests.
    pub fn new(now: Instant, cfg: ProxyConfig) -> Result<Self, ConfigError> {
        let advertise = match cfg.advertise {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let local = Local {
            via: format!("SIP/2.0/UDP {advertise}"),
            from_uri: format!("sip:lifeline@{advertise}"),
        };
        let mut health = Health::new(local, cfg.seed ^ 0x4ea1);
        let mut trunk_peers = Vec::new();
        let mut large_over_tcp = Vec::new();
        let mut load = Vec::new();
        for (i, t) in cfg.trunks.iter().enumerate() {
            if cfg.trunks.iter().take(i).any(|o| o.name == t.name) {
                return Err(ConfigError::DuplicateTrunk(t.name.clone()));
            }
            let target = trunk_target(t.peer.addr);
            health
                .add_trunk(now, &t.name, &target, t.probe.clone())
                .map_err(|e| ConfigError::BadIdentity(e.to_string()))?;
            trunk_peers.push(t.peer);
            large_over_tcp.push(t.large_over_tcp);
            load.push(TrunkLoad::new(t));
        }
        let mut routes = Vec::new();
        for r in &cfg.routes {
            if r.trunks.is_empty() {
                return Err(ConfigError::EmptyRoute(r.name.clone()));
            }
            check_shares(r)?;
            let trunks = r
                .trunks
                .iter()
                .map(|name| {
                    health.find(name).ok_or_else(|| ConfigError::UnknownTrunk {
                        route: r.name.clone(),
                        trunk: name.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            routes.push(Arc::new(ResolvedRoute {
                cfg: r.clone(),
                trunks,
            }));
        }
        if !(300..=699).contains(&cfg.all_failed.status) {
            return Err(ConfigError::BadStatus(cfg.all_failed.status));
        }
        let seed = cfg.seed;
        let seen = vec![State::Up; trunk_peers.len()];
        Ok(Self {
            cfg,
            routes,
            trunk_peers,
            large_over_tcp,
            health,
            servers: Slab::new(),
            server_index: HashMap::new(),
            clients: Slab::new(),
            client_index: HashMap::new(),
            calls: Slab::new(),
            dialogs: Slab::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: Rng(seed),
            next_call: 1,
            stats: Stats::default(),
            advertise,
            accepting: true,
            retired: Vec::new(),
            load,
            seen,
            tickets: 0,
        })
    }

    /// Stop (or resume) taking new calls: while not accepting, requests that
    /// would start a call are answered 503 with Retry-After, so the upstream
    /// network moves them to another gateway; in-dialog requests, CANCEL, ACK
    /// and calls in progress carry on. For a graceful shutdown.
    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    /// Whether nothing is in progress: no call, no transaction (dialogs of
    /// answered calls may remain; they need no timers).
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.servers.is_empty() && self.clients.is_empty()
    }

    /// One line per live transaction (kind, state, method, Call-ID), for
    /// debugging and for the fuzz harness's reports.
    #[doc(hidden)]
    pub fn describe_transactions(&self) -> Vec<String> {
        // Transactions past their final response no longer hold the request.
        let line = |side: &str, kind: Kind, state: String, m: Option<&Message>| {
            format!(
                "{side} {kind:?} {state} {} {}",
                String::from_utf8_lossy(m.and_then(|m| m.method_bytes()).unwrap_or(b"-")),
                String::from_utf8_lossy(m.and_then(|m| m.call_id()).unwrap_or(b"-"))
            )
        };
        let servers = self.servers.iter().map(|(_, s)| {
            line(
                "server",
                s.txn.kind,
                format!("{:?} call={:?}", s.txn.state, s.call),
                s.txn.request(),
            )
        });
        let clients = self.clients.iter().map(|(_, c)| {
            let attempt = self
                .calls
                .get(c.call)
                .and_then(|call| call.attempts.get(c.attempt))
                .map(|a| (a.state, a.cancel_sent, a.cancel_wanted.is_some()));
            let state = format!(
                "{:?} call={} attempt={} {:?} peer={} deadline={:?} armed={:?}",
                c.txn.state,
                c.call,
                c.attempt,
                attempt,
                c.txn.peer.addr,
                c.txn.deadline(),
                c.armed
            );
            line("client", c.txn.kind, state, c.txn.request())
        });
        servers.chain(clients).collect()
    }

    /// Whether no request is waiting for an answer: every server transaction
    /// has sent its final response and every client transaction has received
    /// one. What is left only absorbs retransmissions (Timers D, I, J, K, L,
    /// M), so a shutdown need not wait for it.
    pub fn is_settled(&self) -> bool {
        self.servers.iter().all(|(_, s)| s.txn.has_final())
            && self.clients.iter().all(|(_, c)| {
                !matches!(c.txn.state, ClientState::Calling | ClientState::Proceeding)
            })
    }

    /// Apply a new configuration without dropping calls. Calls in progress
    /// keep the route they started with; trunks keep their measured health
    /// (matched by name); trunks no longer configured are retired (drained).
    /// The advertised address cannot change (the sockets are bound to it).
    pub fn reload(&mut self, now: Instant, cfg: ProxyConfig) -> Result<(), ConfigError> {
        if cfg.advertise != self.cfg.advertise {
            return Err(ConfigError::BadIdentity(
                "the advertised address cannot change on reload".into(),
            ));
        }
        for (i, t) in cfg.trunks.iter().enumerate() {
            if cfg.trunks.iter().take(i).any(|o| o.name == t.name) {
                return Err(ConfigError::DuplicateTrunk(t.name.clone()));
            }
        }
        if !(300..=699).contains(&cfg.all_failed.status) {
            return Err(ConfigError::BadStatus(cfg.all_failed.status));
        }
        for r in &cfg.routes {
            if r.trunks.is_empty() {
                return Err(ConfigError::EmptyRoute(r.name.clone()));
            }
            check_shares(r)?;
            if let Some(missing) = r
                .trunks
                .iter()
                .find(|n| !cfg.trunks.iter().any(|t| &t.name == *n))
            {
                return Err(ConfigError::UnknownTrunk {
                    route: r.name.clone(),
                    trunk: missing.clone(),
                });
            }
        }
        // Trunks: update in place, add new ones, retire the missing.
        for t in &cfg.trunks {
            let target = trunk_target(t.peer.addr);
            match self.health.find(&t.name) {
                Some(id) => {
                    self.health
                        .reconfigure(now, id, &target, t.probe.clone())
                        .map_err(|e| ConfigError::BadIdentity(e.to_string()))?;
                    if let Some(p) = self.trunk_peers.get_mut(id.index()) {
                        *p = t.peer;
                    }
                    if let Some(l) = self.large_over_tcp.get_mut(id.index()) {
                        *l = t.large_over_tcp;
                    }
                    if let Some(l) = self.load.get_mut(id.index()) {
                        l.reconfigure(t);
                    }
                    if let Some(pos) = self.retired.iter().position(|r| *r == id) {
                        self.retired.remove(pos);
                        self.health.undrain(now, id);
                    }
                }
                None => {
                    self.health
                        .add_trunk(now, &t.name, &target, t.probe.clone())
                        .map_err(|e| ConfigError::BadIdentity(e.to_string()))?;
                    self.trunk_peers.push(t.peer);
                    self.large_over_tcp.push(t.large_over_tcp);
                    self.load.push(TrunkLoad::new(t));
                    self.seen.push(State::Up);
                }
            }
        }
        let ids: Vec<TrunkId> = self.health.trunks().map(|t| t.id).collect();
        for id in ids {
            let name = self
                .health
                .trunk(id)
                .map(|t| t.name.to_string())
                .unwrap_or_default();
            if !cfg.trunks.iter().any(|t| t.name == name) && !self.retired.contains(&id) {
                self.retired.push(id);
                self.health.drain(now, id);
            }
        }
        let mut routes = Vec::new();
        for r in &cfg.routes {
            let trunks = r
                .trunks
                .iter()
                .filter_map(|n| self.health.find(n))
                .collect();
            routes.push(Arc::new(ResolvedRoute {
                cfg: r.clone(),
                trunks,
            }));
        }
        self.routes = routes;
        self.cfg = cfg;
        Ok(())
    }

    /// The address the proxy puts in Via and Record-Route.
    pub fn advertise(&self) -> SocketAddr {
        self.cfg.advertise
    }

    /// The trunks' health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The trunks' health, to drain or undrain a trunk or report overload.
    pub fn health_mut(&mut self) -> &mut Health {
        &mut self.health
    }

    /// The peer a trunk is reached at.
    pub fn trunk_peer(&self, trunk: TrunkId) -> Option<Peer> {
        self.trunk_peers.get(trunk.index()).copied()
    }

    /// Calls on a trunk now: attempts waiting for a final response and
    /// answered calls not yet ended (what `max_calls` limits).
    pub fn trunk_calls(&self, trunk: TrunkId) -> u32 {
        self.load.get(trunk.index()).map_or(0, |l| l.calls)
    }

    /// Route names, in configuration order, with their trunks.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &[TrunkId])> + '_ {
        self.routes
            .iter()
            .map(|r| (r.cfg.name.as_str(), r.trunks.as_slice()))
    }

    /// Counters and live sizes.
    pub fn stats(&self) -> Stats {
        Stats {
            server_transactions: self.servers.len(),
            client_transactions: self.clients.len(),
            calls: self.calls.len(),
            dialogs: self.dialogs.len(),
            ..self.stats
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        let probe = self.health.poll_transmit()?;
        let peer = *self.trunk_peers.get(probe.trunk.index())?;
        Some(Transmit {
            peer,
            payload: probe.payload,
            trunk: Some(probe.trunk),
        })
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        self.health.poll_event().map(Event::Trunk)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.peek().map(|Reverse((t, _))| *t);
        [own, self.health.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.health.handle_timeout(now);
        while let Some(Reverse((at, obj))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match obj {
                Obj::Server(k) => {
                    if self.servers.get(k).is_some_and(|e| e.armed == Some(at)) {
                        self.servers[k].armed = None;
                        self.server_timer(now, k);
                    }
                }
                Obj::Client(k) => {
                    if self.clients.get(k).is_some_and(|e| e.armed == Some(at)) {
                        self.clients[k].armed = None;
                        self.client_timer(now, k);
                    }
                }
                Obj::Call(k) => {
                    if self.calls.get(k).is_some_and(|c| c.armed == Some(at)) {
                        self.calls[k].armed = None;
                        self.call_timer(now, k);
                    }
                }
                Obj::Dialog(k) => {
                    if self.dialogs.get(k).is_some_and(|d| d.armed == Some(at)) {
                        self.dialogs[k].armed = None;
                        if self.dialogs[k].expires <= now {
                            self.remove_dialog(k);
                        } else {
                            self.arm_dialog(k);
                        }
                    }
                }
            }
        }
        self.check_trunks(now);
    }

    /// A send to `trunk` failed (ICMP port or host unreachable, TCP refused or
    /// reset): hard evidence. Every attempt waiting on that trunk fails over
    /// at once — ringing ones too, for the calls its route rescues (see
    /// [`RescueRinging`](crate::RescueRinging)) — and the trunk's health
    /// hears of it.
    pub fn handle_transport_error(&mut self, now: Instant, trunk: TrunkId, kind: TransportError) {
        self.health
            .report(now, trunk, Outcome::TransportError(kind));
        self.rescue(now, trunk, AttemptFailure::TransportError);
        self.check_trunks(now);
    }

    /// Rescue the calls of every trunk that went Down since the last look
    /// (probes, or evidence from other calls): called after every input.
    fn check_trunks(&mut self, now: Instant) {
        let mut down = Vec::new();
        for t in self.health.trunks() {
            if let Some(seen) = self.seen.get_mut(t.id.index()) {
                let was = std::mem::replace(seen, t.state);
                if t.state == State::Down && was != State::Down {
                    down.push(t.id);
                }
            }
        }
        for id in down {
            self.rescue(now, id, AttemptFailure::TrunkDown);
        }
    }

    /// Move the calls waiting on `trunk` to the next trunk, at once:
    ///
    /// 1. Attempts with no provisional or only 100 Trying, of every call:
    ///    the caller has heard nothing from that trunk, so this is plain
    ///    failover, only sooner than the attempt's own timers.
    /// 2. Ringing attempts (18x heard) of the calls the route rescues
    ///    (`rescue_ringing`: emergency calls by default): RFC 3261 serial
    ///    forking would leave them ringing until Timer C on a trunk that
    ///    will never answer. They are CANCELled (best effort, with a
    ///    Reason), and the call goes on on the next trunk; should the old
    ///    trunk still answer, its 2xx goes to the caller only if no other
    ///    has (see [`answered`](Self::answered)).
    ///
    /// `why` is [`AttemptFailure::TransportError`] (hard evidence on one
    /// send) or [`AttemptFailure::TrunkDown`] (health's verdict).
    fn rescue(&mut self, now: Instant, trunk: TrunkId, why: AttemptFailure) {
        let hard = why == AttemptFailure::TransportError;
        let mut hit = Vec::new();
        for (ck, call) in &self.calls {
            let covers = match &call.target {
                // A call cancelled, answered or finished has nowhere to move:
                // its attempts end on their own (hard evidence ends them at
                // once, below).
                Target::Route(_) if call.state != CallState::Routing && !hard => continue,
                Target::Route(r) => {
                    call.state == CallState::Routing
                        && r.cfg.rescue_ringing.covers(call.emergency.is_some())
                }
                // In-dialog requests have nowhere else to go: a transport
                // error ends them, a verdict of health does not.
                Target::Fixed { .. } if !hard => continue,
                Target::Fixed { .. } => false,
            };
            for (ai, a) in call.attempts.iter().enumerate() {
                if a.trunk != Some(trunk) {
                    continue;
                }
                match a.state {
                    AttemptState::Pending | AttemptState::Trying => hit.push((ck, ai)),
                    AttemptState::Ringing if covers => hit.push((ck, ai)),
                    _ => {}
                }
            }
        }
        for (ck, ai) in hit {
            let Some(a) = self.calls.get(ck).and_then(|c| c.attempts.get(ai)) else {
                continue;
            };
            let ringing = a.state == AttemptState::Ringing;
            if hard && !ringing {
                // The transaction is over (RFC 3261 §17.1.1.2): nothing to CANCEL.
                if let Some(client) = a.client {
                    if let Some(e) = self.clients.get_mut(client) {
                        e.txn.on_transport_error();
                    }
                    self.remove_client(client);
                }
                self.fail_attempt(now, ck, ai, why, None);
            } else if matches!(
                a.state,
                AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
            ) {
                self.rescue_attempt(now, ck, ai, why, ringing);
            }
        }
    }

    /// Give up one attempt on a dead trunk (see [`rescue`](Self::rescue)).
    fn rescue_attempt(
        &mut self,
        now: Instant,
        ck: usize,
        ai: usize,
        why: AttemptFailure,
        ringing: bool,
    ) {
        let call = &mut self.calls[ck];
        let (id, tracked) = (call.id, call.tracked);
        let a = &mut call.attempts[ai];
        a.state = AttemptState::Abandoned;
        a.failover_at = None;
        a.progress_at = None;
        a.timer_c = None;
        a.hedge_at = None;
        let trunk = a.trunk;
        if let Some(c) = a.client {
            if let Some(e) = self.clients.get_mut(c) {
                e.txn.mute();
            }
        }
        if let (true, Some(trunk)) = (tracked, trunk) {
            self.events.push_back(Event::Rescued {
                call: id,
                at: now,
                trunk,
                ringing,
            });
        }
        self.cancel_attempt(now, ck, ai, Bytes::from_static(REASON_TRUNK_DOWN));
        self.release(ck, ai);
        self.report_failure(now, ck, ai, why);
        self.next_attempt(now, ck);
    }

    /// A message arrived from `from`: one UDP datagram, or one frame cut from
    /// a stream by [`lifeline_sip::StreamFramer`].
    pub fn handle_message(&mut self, now: Instant, from: Peer, data: Bytes) {
        let (msg, verdict) = check_datagram(data);
        self.handle_checked(now, from, msg, verdict);
    }

    /// Like [`handle_message`](Self::handle_message), for a message already
    /// parsed and validated with [`lifeline_sip::check_datagram`] — the
    /// gateway does that on its IO threads, before it takes the core.
    pub fn handle_checked(
        &mut self,
        now: Instant,
        from: Peer,
        msg: Option<Message>,
        verdict: Verdict,
    ) {
        self.handle_input(now, from, msg, verdict);
        self.check_trunks(now);
    }

    fn handle_input(&mut self, now: Instant, from: Peer, msg: Option<Message>, verdict: Verdict) {
        match (msg, verdict) {
            (Some(m), Verdict::Accept) => {
                if m.is_request() {
                    self.stats.requests += 1;
                    self.handle_request(now, from, m);
                } else {
                    self.stats.responses += 1;
                    self.handle_response(now, from, m);
                }
            }
            (msg, Verdict::Reply(e)) => {
                self.stats.requests += 1;
                let is_ack = msg.as_ref().and_then(|m| m.method()) == Some(Method::Ack);
                match msg {
                    Some(m) if !is_ack && m.header(HeaderName::Via).is_some() => {
                        self.reply_stateless(
                            now,
                            from,
                            &m,
                            e.status(),
                            e.kind().reason_phrase(),
                            "malformed",
                        );
                    }
                    _ => self.reject(now, from, None, "malformed"),
                }
            }
            (_, Verdict::Drop(_)) | (None, Verdict::Accept) => {
                self.stats.responses_dropped += 1;
                self.reject(now, from, None, "malformed response");
            }
        }
    }

    fn reject(&mut self, at: Instant, from: Peer, status: Option<u16>, reason: &'static str) {
        if status.is_some() {
            self.stats.requests_refused += 1;
        }
        self.events.push_back(Event::Rejected {
            at,
            from,
            status,
            reason,
        });
    }

    /// Answer a request outside any transaction (it failed validation).
    fn reply_stateless(
        &mut self,
        now: Instant,
        from: Peer,
        m: &Message,
        status: u16,
        phrase: &str,
        why: &'static str,
    ) {
        let tag = self.new_tag();
        if let Ok(w) = MessageWriter::response_to(m, status, phrase, Some(&tag)) {
            self.send(from, w.finish(), None);
        }
        self.reject(now, from, Some(status), why);
    }

    fn send(&mut self, peer: Peer, payload: Bytes, trunk: Option<TrunkId>) {
        self.transmits.push_back(Transmit {
            peer,
            payload,
            trunk,
        });
    }

    fn new_tag(&mut self) -> Bytes {
        Bytes::from(format!("{:016x}", self.rng.next_u64()))
    }

    // ---------------------------------------------------------------- timers

    fn arm(&mut self, obj: Obj, deadline: Option<Instant>) {
        let Some(at) = deadline else {
            return;
        };
        let armed = match obj {
            Obj::Server(k) => self.servers.get_mut(k).map(|e| &mut e.armed),
            Obj::Client(k) => self.clients.get_mut(k).map(|e| &mut e.armed),
            Obj::Call(k) => self.calls.get_mut(k).map(|c| &mut c.armed),
            Obj::Dialog(k) => self.dialogs.get_mut(k).map(|d| &mut d.armed),
        };
        let Some(armed) = armed else {
            return;
        };
        if armed.is_some_and(|a| a <= at) {
            return; // an earlier wake-up is queued; it re-arms
        }
        *armed = Some(at);
        self.timers.push(Reverse((at, obj)));
    }

    fn arm_server(&mut self, k: usize) {
        let d = self.servers.get(k).and_then(|e| e.txn.deadline());
        self.arm(Obj::Server(k), d);
    }

    fn arm_client(&mut self, k: usize) {
        let d = self.clients.get(k).and_then(|e| e.txn.deadline());
        self.arm(Obj::Client(k), d);
    }

    fn arm_call(&mut self, k: usize) {
        let d = self.calls.get(k).and_then(|c| {
            c.attempts
                .iter()
                .flat_map(|a| [a.failover_at, a.progress_at, a.timer_c, a.hedge_at])
                .flatten()
                .min()
        });
        self.arm(Obj::Call(k), d);
    }

    fn arm_dialog(&mut self, k: usize) {
        let d = self.dialogs.get(k).map(|d| d.expires);
        self.arm(Obj::Dialog(k), d);
    }

    fn server_timer(&mut self, now: Instant, k: usize) {
        let r = self.servers[k].txn.on_timer(now);
        match r {
            ServerTimer::Retransmit(bytes) => {
                let peer = self.servers[k].txn.peer;
                self.send(peer, bytes, None);
            }
            ServerTimer::AckTimeout | ServerTimer::Terminated => {
                self.remove_server(k);
                return;
            }
            ServerTimer::Idle => {}
        }
        self.arm_server(k);
    }

    fn remove_server(&mut self, k: usize) {
        if !self.servers.contains(k) {
            return;
        }
        let e = self.servers.remove(k);
        if self.server_index.get(&e.key) == Some(&k) {
            self.server_index.remove(&e.key);
        }
        if let Some(ck) = e.call {
            if let Some(c) = self.calls.get_mut(ck) {
                if c.server == Some(k) {
                    c.server = None;
                }
            }
            self.maybe_finish_call(ck);
        }
    }

    fn remove_client(&mut self, k: usize) {
        if !self.clients.contains(k) {
            return;
        }
        let e = self.clients.remove(k);
        if self.client_index.get(&e.key) == Some(&k) {
            self.client_index.remove(&e.key);
        }
        if let Some(call) = self.calls.get_mut(e.call) {
            call.clients_live = call.clients_live.saturating_sub(1);
            if !e.is_cancel {
                if let Some(a) = call.attempts.get_mut(e.attempt) {
                    if a.client == Some(k) {
                        a.client = None;
                    }
                }
            }
        }
        self.maybe_finish_call(e.call);
    }

    fn client_timer(&mut self, now: Instant, k: usize) {
        let r = self.clients[k].txn.on_timer(now);
        match r {
            ClientTimer::Retransmit(bytes) => {
                let e = &self.clients[k];
                let (peer, trunk) = (
                    e.txn.peer,
                    self.calls
                        .get(e.call)
                        .and_then(|c| c.attempts.get(e.attempt))
                        .and_then(|a| a.trunk),
                );
                self.send(peer, bytes, trunk);
            }
            ClientTimer::Timeout => {
                let (call, attempt, is_cancel) = (
                    self.clients[k].call,
                    self.clients[k].attempt,
                    self.clients[k].is_cancel,
                );
                self.remove_client(k);
                if !is_cancel && self.calls.contains(call) {
                    let fixed = matches!(self.calls[call].target, Target::Fixed { .. });
                    let reason = if fixed {
                        AttemptFailure::TransactionTimeout
                    } else {
                        AttemptFailure::NoResponse
                    };
                    self.fail_attempt(now, call, attempt, reason, None);
                }
                return;
            }
            ClientTimer::Terminated => {
                self.remove_client(k);
                return;
            }
            ClientTimer::Idle => {}
        }
        self.arm_client(k);
    }

    fn call_timer(&mut self, now: Instant, ck: usize) {
        let n = self.calls[ck].attempts.len();
        for ai in 0..n {
            let a = &mut self.calls[ck].attempts[ai];
            if a.failover_at.is_some_and(|t| t <= now) {
                a.failover_at = None;
                self.abandon_attempt(now, ck, ai, AttemptFailure::NoResponse);
            }
            let a = &mut self.calls[ck].attempts[ai];
            if a.progress_at.is_some_and(|t| t <= now) {
                a.progress_at = None;
                self.abandon_attempt(now, ck, ai, AttemptFailure::NoProgress);
            }
            let a = &mut self.calls[ck].attempts[ai];
            if a.hedge_at.is_some_and(|t| t <= now) {
                a.hedge_at = None;
                self.hedge(now, ck, ai);
            }
            let a = &mut self.calls[ck].attempts[ai];
            if a.timer_c.is_some_and(|t| t <= now) {
                // §16.6 step 11, Timer C: a call left ringing too long is cancelled.
                a.timer_c = None;
                self.cancel_attempt(
                    now,
                    ck,
                    ai,
                    Bytes::from_static(b"SIP;cause=408;text=\"Timer C\""),
                );
            }
        }
        if self.calls.contains(ck) {
            self.arm_call(ck);
        }
    }

    // -------------------------------------------------------------- requests

    fn handle_request(&mut self, now: Instant, from: Peer, m: Message) {
        let method = m.method().unwrap_or(Method::Other);
        if method == Method::Ack {
            self.handle_ack(now, from, m);
            return;
        }
        let Some(key) = server_key(&m, None) else {
            return;
        };
        if let Some(&k) = self.server_index.get(&key) {
            // A retransmission: resend the last response.
            self.stats.retransmissions_absorbed += 1;
            if let Some(bytes) = self.servers[k].txn.on_retransmission() {
                let peer = self.servers[k].txn.peer;
                self.send(peer, bytes, None);
            }
            return;
        }
        let kind = if method == Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let sk = self.servers.insert(ServerEntry {
            txn: ServerTxn::new(kind, m.clone(), from, self.cfg.timers),
            key: key.clone(),
            call: None,
            armed: None,
        });
        self.server_index.insert(key, sk);
        if kind == Kind::Invite {
            // §16.2 / §17.2.1: a 100 Trying at once stops the caller's retransmissions.
            self.respond(now, sk, 100, "Trying", None, &[]);
        }
        if method == Method::Cancel {
            self.handle_cancel(now, sk, &m);
            return;
        }
        self.route_request(now, sk, from, m);
    }

    fn handle_ack(&mut self, now: Instant, from: Peer, m: Message) {
        // An ACK for a non-2xx final belongs to the INVITE server transaction.
        if let Some(key) = server_key(&m, Some(b"INVITE")) {
            if let Some(&k) = self.server_index.get(&key) {
                if self.servers[k].txn.state == ServerState::Completed {
                    self.servers[k].txn.on_ack(now);
                    self.arm_server(k);
                    return;
                }
                if self.servers[k].txn.state == ServerState::Confirmed {
                    return; // retransmitted ACK
                }
            }
        }
        // An ACK for a 2xx travels end to end, statelessly, along the dialog.
        let Some((dk, _)) = self.our_route(&m) else {
            return;
        };
        let Some(target) = self.dialog_target(dk, from) else {
            return;
        };
        if matches!(m.max_forwards(), Ok(Some(0))) {
            return;
        }
        let branch = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.cfg.seed.hash(&mut h);
            m.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
            m.call_id().hash(&mut h);
            format!("{ACK_PREFIX}{:016x}", h.finish())
        };
        let via = |t: Transport| {
            format!(
                "SIP/2.0/{} {};branch={branch}",
                t.via_token(),
                self.advertise
            )
        };
        let (mut peer, trunk) = target;
        let Some(mut e) = forward_edit(
            &m,
            true,
            &via(peer.transport),
            None,
            peer.transport.reliable(),
        ) else {
            return;
        };
        let wire = self.wire_peer(peer, trunk, e.len());
        if wire != peer {
            peer = wire;
            let Some(tcp) = forward_edit(&m, true, &via(peer.transport), None, true) else {
                return;
            };
            e = tcp;
        }
        let out = e.to_bytes();
        self.send(peer, out, trunk);
    }

    /// The transport a request of `len` bytes (as forwarded) takes to
    /// `peer`: RFC 3261 §18.1.1, a request over 1300 bytes goes over TCP to
    /// a trunk that takes both; everything else as configured.
    fn wire_peer(&self, peer: Peer, trunk: Option<TrunkId>, len: usize) -> Peer {
        let tcp_too = trunk
            .and_then(|t| self.large_over_tcp.get(t.index()))
            .copied()
            .unwrap_or(false);
        if peer.transport == Transport::Udp && tcp_too && len > RFC3261_UDP_MAX_REQUEST {
            Peer {
                addr: peer.addr,
                transport: Transport::Tcp,
            }
        } else {
            peer
        }
    }

    /// If the top Route is this proxy's Record-Route with a dialog token,
    /// the dialog key and nonce.
    fn our_route(&self, m: &Message) -> Option<(usize, u32)> {
        let route = m.routes().next()?.ok()?;
        let Uri::Sip(u) = route.uri() else {
            return None;
        };
        if !self.is_us(&u.host, u.port) {
            return None;
        }
        let token = u.param("ll")??;
        let text = std::str::from_utf8(token).ok()?;
        let (k, n) = text.split_once('.')?;
        let k: usize = k.parse().ok()?;
        let n = u32::from_str_radix(n, 16).ok()?;
        let d = self.dialogs.get(k)?;
        (d.nonce == n).then_some((k, n))
    }

    /// Where an in-dialog request from `from` goes: the other side of the dialog.
    fn dialog_target(&self, dk: usize, from: Peer) -> Option<(Peer, Option<TrunkId>)> {
        let d = self.dialogs.get(dk)?;
        if from.addr == d.caller.addr {
            Some((d.trunk, d.trunk_id))
        } else if from.addr == d.trunk.addr {
            Some((d.caller, None))
        } else {
            None
        }
    }

    fn is_us(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        let port_ok = port.unwrap_or(5060) == self.cfg.advertise.port();
        let host_ok = match host {
            Host::Ipv4(ip) => std::net::IpAddr::V4(*ip) == self.cfg.advertise.ip(),
            Host::Ipv6(text) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                .is_some_and(|ip| std::net::IpAddr::V6(ip) == self.cfg.advertise.ip()),
            Host::Domain(d) => self
                .cfg
                .aliases
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(d)),
        };
        host_ok && port_ok
    }

    fn route_request(&mut self, now: Instant, sk: usize, from: Peer, m: Message) {
        let method = m.method().unwrap_or(Method::Other);
        // In-dialog: our Record-Route token on top.
        if let Some((dk, dn)) = self.our_route(&m) {
            if matches!(m.max_forwards(), Ok(Some(0))) {
                self.respond(now, sk, 483, "Too Many Hops", None, &[]);
                return;
            }
            let Some((peer, trunk)) = self.dialog_target(dk, from) else {
                self.respond(now, sk, 403, "Forbidden", None, &[]);
                return;
            };
            let ends = method == Method::Bye;
            self.start_call(
                now,
                sk,
                &m,
                None,
                Target::Fixed {
                    peer,
                    trunk,
                    dialog: (dk, dn),
                },
                ends,
            );
            return;
        }
        let uri = match m.request_uri() {
            Some(Ok(u)) => u,
            _ => return,
        };
        let to_us = match &uri {
            Uri::Sip(u) => u.user.is_none() && self.is_us(&u.host, u.port),
            _ => false,
        };
        let has_foreign_route = m.routes().next().is_some_and(|r| {
            r.ok()
                .is_none_or(|r| !matches!(r.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port)))
        });
        if method == Method::Options && to_us && !has_foreign_route {
            // Keep-alive from an originating network: answer as a UAS (§11).
            self.respond(
                now,
                sk,
                200,
                "OK",
                None,
                &[(HeaderName::Allow, b"INVITE, ACK, CANCEL, BYE, OPTIONS")],
            );
            return;
        }
        if !self.accepting {
            let retry = self.cfg.all_failed.retry_after.unwrap_or(5).to_string();
            self.respond(
                now,
                sk,
                503,
                "Shutting Down",
                None,
                &[(HeaderName::RetryAfter, retry.as_bytes())],
            );
            return;
        }
        if matches!(m.max_forwards(), Ok(Some(0))) {
            self.respond(now, sk, 483, "Too Many Hops", None, &[]);
            return;
        }
        let scheme_ok = match &uri {
            Uri::Sip(_) | Uri::Tel(_) => true,
            Uri::Other { scheme, .. } => scheme.eq_ignore_ascii_case(b"urn"),
        };
        if !scheme_ok {
            self.respond(now, sk, 416, "Unsupported URI Scheme", None, &[]);
            return;
        }
        if self.is_loop(&m) {
            self.respond(now, sk, 482, "Loop Detected", None, &[]);
            return;
        }
        let emergency = classify(&m, from.addr.ip(), &self.cfg.emergency);
        if emergency.is_none() {
            // §16.3 step 5. An emergency call is never refused over an
            // option tag: it is forwarded, and the trunk decides.
            if let Some(h) = m.header(HeaderName::ProxyRequire) {
                let value = h.value.to_vec();
                self.respond(
                    now,
                    sk,
                    420,
                    "Bad Extension",
                    None,
                    &[(HeaderName::Unsupported, &value)],
                );
                return;
            }
        }
        let Some((ri, _)) = select_route(self.routes_cfg(), &m, emergency) else {
            self.respond(now, sk, 404, "No Route", None, &[]);
            if method == Method::Invite {
                let call = self.new_call_ref();
                self.events.push_back(Event::CallStarted {
                    call,
                    at: now,
                    info: Box::new(call_info(&m, emergency, "", from)),
                });
                self.events.push_back(Event::CallFailed {
                    call,
                    at: now,
                    status: 404,
                    reason: CallFailure::NoRoute,
                });
            }
            return;
        };
        let route = Target::Route(self.routes[ri].clone());
        self.start_call(now, sk, &m, emergency, route, false);
    }

    fn routes_cfg(&self) -> &[RouteConfig] {
        // `routes` mirrors `cfg.routes` index for index.
        &self.cfg.routes
    }

    fn new_call_ref(&mut self) -> CallRef {
        let c = CallRef(self.next_call);
        self.next_call += 1;
        c
    }

    /// The loop-detection hash of RFC 3261 §16.6 step 8 over the fields a
    /// spiral changes.
    fn loop_hash(&self, m: &Message) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cfg.seed.hash(&mut h);
        m.request_uri_bytes().hash(&mut h);
        m.call_id().hash(&mut h);
        m.cseq().ok().map(|c| c.seq).hash(&mut h);
        m.from().ok().and_then(|f| f.tag()).hash(&mut h);
        m.to().ok().and_then(|t| t.tag()).hash(&mut h);
        for (_, v) in m.values(HeaderName::ProxyRequire) {
            v.hash(&mut h);
        }
        // Route values other than our own.
        for r in m.routes().flatten() {
            let ours = matches!(r.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port));
            if !ours {
                r.uri_text.hash(&mut h);
            }
        }
        h.finish()
    }

    /// §16.3 step 4: a Via of ours whose branch carries this request's loop
    /// hash means the request came back unchanged.
    fn is_loop(&self, m: &Message) -> bool {
        let ours = |v: &lifeline_sip::Via<'_>| {
            self.is_us(&v.host, v.port)
                && v.branch()
                    .is_some_and(|b| b.starts_with(LOOP_PREFIX.as_bytes()))
        };
        // Only a request that already passed through here can loop: hash it
        // only then.
        if !m.vias().flatten().any(|v| ours(&v)) {
            return false;
        }
        let want = format!("{LOOP_PREFIX}{:016x}.", self.loop_hash(m));
        m.vias()
            .flatten()
            .any(|v| ours(&v) && v.branch().is_some_and(|b| b.starts_with(want.as_bytes())))
    }

    fn handle_cancel(&mut self, now: Instant, sk: usize, m: &Message) {
        let invite =
            server_key(m, Some(b"INVITE")).and_then(|k| self.server_index.get(&k).copied());
        let Some(ik) = invite else {
            self.respond(now, sk, 481, "Call/Transaction Does Not Exist", None, &[]);
            return;
        };
        self.respond(now, sk, 200, "OK", None, &[]);
        let Some(ck) = self.servers[ik].call else {
            return;
        };
        if !matches!(self.calls[ck].state, CallState::Routing) {
            return;
        }
        self.calls[ck].state = CallState::Cancelled;
        let call = self.calls[ck].id;
        if self.calls[ck].tracked {
            self.events
                .push_back(Event::CallCancelled { call, at: now });
        }
        let reason = m
            .header(HeaderName::Reason)
            .map(|h| m.as_bytes().slice_ref(h.value))
            .unwrap_or_else(|| Bytes::from_static(b"SIP;cause=487;text=\"Request Terminated\""));
        let mut any_provisional = false;
        for ai in 0..self.calls[ck].attempts.len() {
            let a = &self.calls[ck].attempts[ai];
            if matches!(a.state, AttemptState::Trying | AttemptState::Ringing) {
                any_provisional = true;
            }
            let a = &mut self.calls[ck].attempts[ai];
            a.failover_at = None;
            a.progress_at = None;
            self.cancel_attempt(now, ck, ai, reason.clone());
        }
        if !any_provisional {
            // Nothing downstream can answer the CANCEL yet: end it here.
            self.respond(now, ik, 487, "Request Terminated", None, &[]);
        }
        self.maybe_finish_call(ck);
    }

    // ----------------------------------------------------------------- calls

    fn start_call(
        &mut self,
        now: Instant,
        sk: usize,
        m: &Message,
        emergency: Option<EmergencyRule>,
        target: Target,
        ends_dialog: bool,
    ) {
        let kind = self.servers[sk].txn.kind;
        let tracked = kind == Kind::Invite && matches!(target, Target::Route(_));
        let id = self.new_call_ref();
        let to_tag = self.new_tag();
        let ticket = if emergency.is_none() && tracked {
            self.tickets += 1;
            self.tickets - 1
        } else {
            0
        };
        let order = match &target {
            Target::Route(r) if !r.cfg.shares.is_empty() => {
                let rng = &mut self.rng;
                Some(share_order(&r.trunks, &r.cfg.shares, |total| {
                    rng.next_u64() % total
                }))
            }
            _ => None,
        };
        let ck = self.calls.insert(Call {
            id,
            server: Some(sk),
            kind,
            tracked,
            emergency,
            target,
            tried: Vec::new(),
            order,
            ticket,
            attempts: Vec::new(),
            winner: None,
            state: CallState::Routing,
            started: now,
            to_tag,
            ends_dialog,
            clients_live: 0,
            loop_hash: self.loop_hash(m),
            armed: None,
        });
        self.servers[sk].call = Some(ck);
        if tracked {
            let route = match &self.calls[ck].target {
                Target::Route(r) => r.cfg.name.clone(),
                Target::Fixed { .. } => String::new(),
            };
            let info = call_info(m, emergency, &route, self.servers[sk].txn.peer);
            self.events.push_back(Event::CallStarted {
                call: id,
                at: now,
                info: Box::new(info),
            });
        }
        self.next_attempt(now, ck);
    }

    /// Try the next trunk, or finish the call if none is left — unless
    /// another attempt of the call (a hedge) is still alive: the call waits
    /// for it.
    fn next_attempt(&mut self, now: Instant, ck: usize) {
        if self.calls[ck].state != CallState::Routing || self.live_attempts(ck) > 0 {
            return;
        }
        let next = match &self.calls[ck].target {
            &Target::Fixed { peer, trunk, .. } => {
                if self.calls[ck].attempts.is_empty() {
                    Some((peer, trunk))
                } else {
                    None
                }
            }
            Target::Route(_) => self
                .choose_trunk(now, ck)
                .map(|t| (self.trunk_peers[t.index()], Some(t))),
        };
        match next {
            Some((peer, trunk)) => self.start_attempt(now, ck, peer, trunk),
            None => self.finish_failed(now, ck),
        }
    }

    /// The trunk a routed call tries next: health's order (usable trunks in
    /// priority order, a trunk in its canary later; for emergency calls the
    /// rest after them), passing over trunks at `max_calls` or `max_cps`.
    /// An emergency call still takes a full trunk that is usable before a
    /// Down one, and a Down one before no trunk at all.
    fn choose_trunk(&mut self, now: Instant, ck: usize) -> Option<TrunkId> {
        let call = &self.calls[ck];
        let Target::Route(r) = &call.target else {
            return None;
        };
        let order = call.order.as_deref().unwrap_or(&r.trunks);
        let emergency = call.emergency.is_some();
        let mut chosen = None;
        let mut full_usable = None;
        let mut skipped = Vec::new();
        for t in self
            .health
            .select_for(order, &call.tried, emergency, call.ticket)
        {
            let usable = self.health.trunk(t).is_some_and(|s| s.ready());
            let full = self.load.get(t.index()).and_then(|l| l.full(now));
            match full {
                None => {
                    chosen = Some(t);
                    break;
                }
                Some(reason) => {
                    skipped.push((t, reason));
                    if usable && full_usable.is_none() {
                        full_usable = Some(t);
                    }
                }
            }
        }
        // Never shed an emergency call over a capacity limit: a full trunk
        // that works beats a Down one.
        if emergency {
            let down_first = chosen.is_some_and(|c| {
                full_usable.is_some() && !self.health.trunk(c).is_some_and(|s| s.ready())
            });
            if chosen.is_none() || down_first {
                chosen = full_usable.or(chosen);
            }
        }
        let (id, tracked) = (call.id, call.tracked);
        for (t, reason) in skipped {
            if Some(t) != chosen && tracked {
                self.events.push_back(Event::TrunkSkipped {
                    call: id,
                    at: now,
                    trunk: t,
                    reason,
                });
            }
        }
        chosen
    }

    /// Hedging (`hedge_after`): attempt `ai` of an emergency call has not
    /// rung in time; start the next trunk beside it. The first 2xx wins.
    fn hedge(&mut self, now: Instant, ck: usize, ai: usize) {
        let call = &self.calls[ck];
        let waiting = call
            .attempts
            .get(ai)
            .is_some_and(|a| matches!(a.state, AttemptState::Pending | AttemptState::Trying));
        if call.state != CallState::Routing || !waiting || self.live_attempts(ck) >= 2 {
            return;
        }
        let Some(t) = self.choose_trunk(now, ck) else {
            return;
        };
        let call = &self.calls[ck];
        if call.tracked {
            self.events.push_back(Event::Hedged {
                call: call.id,
                at: now,
                trunk: t,
            });
        }
        let peer = self.trunk_peers[t.index()];
        self.start_attempt(now, ck, peer, Some(t));
    }

    /// The attempt no longer counts against its trunk's `max_calls`.
    fn release(&mut self, ck: usize, ai: usize) {
        let Some(a) = self.calls.get_mut(ck).and_then(|c| c.attempts.get_mut(ai)) else {
            return;
        };
        if std::mem::take(&mut a.counted) {
            if let Some(l) = a.trunk.and_then(|t| self.load.get_mut(t.index())) {
                l.calls = l.calls.saturating_sub(1);
            }
        }
    }

    /// Remove a dialog, releasing its place in its trunk's `max_calls`.
    fn remove_dialog(&mut self, dk: usize) {
        if !self.dialogs.contains(dk) {
            return;
        }
        let d = self.dialogs.remove(dk);
        if d.counted {
            if let Some(l) = d.trunk_id.and_then(|t| self.load.get_mut(t.index())) {
                l.calls = l.calls.saturating_sub(1);
            }
        }
    }

    fn start_attempt(&mut self, now: Instant, ck: usize, peer: Peer, trunk: Option<TrunkId>) {
        let Some(sk) = self.calls[ck].server else {
            return;
        };
        let Some(m) = self.servers[sk].txn.request().cloned() else {
            return; // answered already: no more attempts
        };
        let kind = self.calls[ck].kind;
        let target = self.calls[ck].target.clone();
        let nonce = self.rng.next_u64() as u32;
        let loop_hash = self.calls[ck].loop_hash;
        let branch = format!(
            "{LOOP_PREFIX}{loop_hash:016x}.{nonce:08x}{:x}",
            self.calls[ck].attempts.len()
        );
        let advertise = self.advertise.clone();
        let via = |t: Transport| format!("SIP/2.0/{} {advertise};branch={branch}", t.via_token());

        // A dialog-creating INVITE gets our Record-Route with a token that
        // names this attempt's dialog (caller flow, trunk).
        let mut dialog = None;
        let mut record_route = None;
        if let Target::Route(_) = target {
            if kind == Kind::Invite {
                let dnonce = self.rng.next_u64() as u32;
                let caller = self.servers[sk].txn.peer;
                let dk = self.dialogs.insert(Dialog {
                    caller,
                    trunk: peer,
                    trunk_id: trunk,
                    nonce: dnonce,
                    confirmed: false,
                    counted: false,
                    expires: now + self.cfg.timers.t1x64() + self.cfg.timers.timer_c,
                    armed: None,
                });
                self.arm_dialog(dk);
                dialog = Some((dk, dnonce));
                record_route = Some(format!("<sip:{};lr;ll={dk}.{dnonce:08x}>", self.advertise));
            }
        }

        let top_is_us = m
            .routes()
            .next()
            .and_then(|r| r.ok())
            .is_some_and(|r| matches!(r.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port)));
        let rr = record_route.as_deref();
        let mut e = forward_edit(
            &m,
            top_is_us,
            &via(peer.transport),
            rr,
            peer.transport.reliable(),
        );
        // RFC 3261 §18.1.1: too large for UDP, and the trunk takes TCP: the
        // request goes over TCP and its Via says so. The dialog keeps the
        // configured peer: each later request is sized on its own.
        let configured = peer;
        let peer = match &e {
            Some(ed) => self.wire_peer(peer, trunk, ed.len()),
            None => peer,
        };
        if peer != configured {
            e = forward_edit(&m, top_is_us, &via(peer.transport), rr, true);
        }
        let out = match e.map(|e| Message::parse(e.to_bytes())) {
            Some(Ok(out)) => out,
            _ => {
                if let Some(d) = dialog {
                    self.drop_dialog(d);
                }
                self.respond(now, sk, 500, "Server Internal Error", None, &[]);
                self.calls[ck].state = CallState::Finished;
                self.maybe_finish_call(ck);
                return;
            }
        };
        let payload = out.as_bytes().clone();
        let branch = Bytes::from(branch);
        let method_key = Bytes::copy_from_slice(m.method_bytes().unwrap_or_default());
        let ai = self.calls[ck].attempts.len();
        let txn = ClientTxn::new(now, kind, out, peer, branch.clone(), self.cfg.timers);
        let client = self.clients.insert(ClientEntry {
            txn,
            key: (branch.clone(), method_key.clone()),
            call: ck,
            attempt: ai,
            is_cancel: false,
            armed: None,
        });
        self.client_index.insert((branch, method_key), client);
        self.calls[ck].clients_live += 1;
        let emergency = self.calls[ck].emergency.is_some();
        let (failover_at, hedge_at) = match &target {
            Target::Route(r) => (
                Some(now + r.cfg.failover_after),
                r.cfg
                    .hedge_after
                    .filter(|_| emergency && kind == Kind::Invite)
                    .map(|h| now + h),
            ),
            Target::Fixed { .. } => (None, None),
        };
        // Routed calls count against the trunk's limits.
        let counted = matches!(target, Target::Route(_));
        if let (true, Some(l)) = (counted, trunk.and_then(|t| self.load.get_mut(t.index()))) {
            l.calls = l.calls.saturating_add(1);
            l.refill(now);
            if l.max_cps.is_some() {
                l.tokens -= 1.0;
            }
        }
        let call = &mut self.calls[ck];
        call.attempts.push(Attempt {
            trunk,
            peer,
            client: Some(client),
            started: now,
            state: AttemptState::Pending,
            failover_at,
            progress_at: None,
            timer_c: None,
            hedge_at,
            trying_at: None,
            progress_recorded: false,
            counted: counted && trunk.is_some(),
            ended: false,
            cancel_wanted: None,
            cancel_sent: false,
            dialog,
        });
        if let Some(t) = trunk {
            call.tried.push(t);
            if call.tracked {
                let attempt = call.attempts.len() as u32;
                self.events.push_back(Event::AttemptStarted {
                    call: call.id,
                    at: now,
                    trunk: t,
                    attempt,
                });
            }
        }
        self.send(peer, payload, trunk);
        self.arm_client(client);
        self.arm_call(ck);
    }

    /// Give up an attempt that stays alive in the background (failover).
    fn abandon_attempt(&mut self, now: Instant, ck: usize, ai: usize, why: AttemptFailure) {
        let a = &mut self.calls[ck].attempts[ai];
        if !matches!(a.state, AttemptState::Pending | AttemptState::Trying) {
            return;
        }
        a.state = AttemptState::Abandoned;
        a.failover_at = None;
        a.progress_at = None;
        a.hedge_at = None;
        if let Some(c) = a.client {
            if let Some(e) = self.clients.get_mut(c) {
                e.txn.mute();
            }
        }
        self.release(ck, ai);
        let reason = match why {
            AttemptFailure::NoProgress => {
                Bytes::from_static(b"SIP;cause=408;text=\"no progress, trying another trunk\"")
            }
            _ => Bytes::from_static(b"SIP;cause=408;text=\"no response, trying another trunk\""),
        };
        self.cancel_attempt(now, ck, ai, reason);
        self.report_failure(now, ck, ai, why);
        self.next_attempt(now, ck);
    }

    /// An attempt failed for good (final response, transport error, timeout).
    fn fail_attempt(
        &mut self,
        now: Instant,
        ck: usize,
        ai: usize,
        why: AttemptFailure,
        resp: Option<&Message>,
    ) {
        let Some(a) = self.calls.get_mut(ck).and_then(|c| c.attempts.get_mut(ai)) else {
            return;
        };
        let was_abandoned = a.state == AttemptState::Abandoned;
        if matches!(a.state, AttemptState::Done | AttemptState::Answered) {
            return;
        }
        a.state = AttemptState::Done;
        a.failover_at = None;
        a.progress_at = None;
        a.timer_c = None;
        a.hedge_at = None;
        if let Some(d) = a.dialog.take() {
            self.drop_dialog(d);
        }
        self.release(ck, ai);
        if !was_abandoned {
            // (An abandoned attempt was reported, and replaced, already.)
            self.report_failure(now, ck, ai, why);
        }
        match self.calls[ck].state {
            CallState::Routing if was_abandoned => self.next_attempt(now, ck),
            CallState::Routing => {
                if let (Target::Fixed { .. }, Some(r)) = (&self.calls[ck].target, resp) {
                    // No alternative for an in-dialog request: relay the answer.
                    self.relay(now, ck, r);
                    self.calls[ck].state = CallState::Finished;
                } else {
                    self.next_attempt(now, ck);
                }
            }
            CallState::Cancelled => {
                if let Some(sk) = self.unanswered_server(ck) {
                    if self.live_attempts(ck) == 0 {
                        self.respond(now, sk, 487, "Request Terminated", Some(ck), &[]);
                    }
                }
            }
            CallState::Connected | CallState::Finished => {}
        }
        self.maybe_finish_call(ck);
    }

    fn live_attempts(&self, ck: usize) -> usize {
        self.calls[ck]
            .attempts
            .iter()
            .filter(|a| {
                matches!(
                    a.state,
                    AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
                )
            })
            .count()
    }

    /// A trunk answered a call. Only calls routed to trunks are evidence: an
    /// in-dialog request (a BYE for a call set up before) says the trunk is
    /// alive, not that it takes new calls.
    fn report_answered(&mut self, now: Instant, ck: usize, trunk: TrunkId) {
        if matches!(self.calls[ck].target, Target::Route(_)) {
            self.health.report(now, trunk, Outcome::Answered);
        }
    }

    fn report_failure(&mut self, now: Instant, ck: usize, ai: usize, why: AttemptFailure) {
        let call = &self.calls[ck];
        let a = &call.attempts[ai];
        let Some(trunk) = a.trunk else {
            return;
        };
        // Transport errors were reported by handle_transport_error itself; a
        // trunk already Down needs no more evidence; a hedge that lost says
        // nothing about its trunk; in-dialog requests are not evidence (see
        // report_answered).
        let outcome = match why {
            AttemptFailure::NoResponse | AttemptFailure::TransactionTimeout => {
                Some(Outcome::Timeout)
            }
            AttemptFailure::NoProgress => Some(Outcome::ProgressTimeout),
            AttemptFailure::Response(c) => Some(Outcome::FailureResponse(c)),
            AttemptFailure::TransportError
            | AttemptFailure::TrunkDown
            | AttemptFailure::Superseded => None,
        };
        if let (Some(outcome), Target::Route(_)) = (outcome, &call.target) {
            self.health.report(now, trunk, outcome);
        }
        if call.tracked {
            let ev = Event::AttemptFailed {
                call: call.id,
                at: now,
                trunk,
                reason: why,
                elapsed: now - a.started,
            };
            self.events.push_back(ev);
        }
    }

    /// The call's server transaction, if it is still waiting for a final response.
    fn unanswered_server(&self, ck: usize) -> Option<usize> {
        let sk = self.calls.get(ck)?.server?;
        self.servers
            .get(sk)
            .is_some_and(|s| !s.txn.has_final())
            .then_some(sk)
    }

    fn finish_failed(&mut self, now: Instant, ck: usize) {
        self.calls[ck].state = CallState::Finished;
        if let Some(sk) = self.unanswered_server(ck) {
            let af = self.cfg.all_failed.clone();
            let retry = af.retry_after.map(|r| r.to_string());
            let extra: Vec<(HeaderName, &[u8])> = retry
                .iter()
                .map(|r| (HeaderName::RetryAfter, r.as_bytes()))
                .collect();
            let status = match self.calls[ck].target {
                Target::Route(_) => af.status,
                Target::Fixed { .. } => 408,
            };
            let phrase = if status == af.status {
                af.reason.as_str()
            } else {
                "Request Timeout"
            };
            self.respond(now, sk, status, phrase, Some(ck), &extra);
            let call = &self.calls[ck];
            if call.tracked {
                self.events.push_back(Event::CallFailed {
                    call: call.id,
                    at: now,
                    status,
                    reason: CallFailure::AllTrunksFailed,
                });
            }
        }
        self.maybe_finish_call(ck);
    }

    /// Send a CANCEL for an attempt now if it has had a provisional, else as
    /// soon as one arrives.
    fn cancel_attempt(&mut self, now: Instant, ck: usize, ai: usize, reason: Bytes) {
        if self.calls[ck].kind != Kind::Invite {
            return;
        }
        let a = &self.calls[ck].attempts[ai];
        if a.cancel_sent {
            return;
        }
        let Some(client) = a.client.filter(|c| self.clients.contains(*c)) else {
            return;
        };
        let txn_state = self.clients[client].txn.state;
        if !matches!(txn_state, ClientState::Calling | ClientState::Proceeding) {
            return; // already final: nothing to cancel
        }
        let a = &mut self.calls[ck].attempts[ai];
        if txn_state == ClientState::Calling {
            // RFC 3261 §9.1: no CANCEL before a provisional response.
            a.cancel_wanted = Some(reason);
            return;
        }
        a.cancel_sent = true;
        a.cancel_wanted = None;
        a.timer_c = None;
        let (peer, trunk) = (a.peer, a.trunk);
        let Some(invite) = self.clients[client].txn.request().cloned() else {
            return;
        };
        let Some(bytes) = build_cancel(&invite, Some(&reason)) else {
            return;
        };
        let Ok(cancel) = Message::parse(bytes.clone()) else {
            return;
        };
        // §9.1: if the INVITE gets no final response within 64*T1 of the
        // CANCEL, it is given up.
        self.clients[client].txn.on_cancel_sent(now);
        self.arm_client(client);
        let branch = self.clients[client].txn.branch.clone();
        let key = (branch.clone(), Bytes::from_static(b"CANCEL"));
        let txn = ClientTxn::new(now, Kind::NonInvite, cancel, peer, branch, self.cfg.timers);
        let k = self.clients.insert(ClientEntry {
            txn,
            key: key.clone(),
            call: ck,
            attempt: ai,
            is_cancel: true,
            armed: None,
        });
        self.client_index.insert(key, k);
        self.calls[ck].clients_live += 1;
        self.send(peer, bytes, trunk);
        self.arm_client(k);
    }

    fn maybe_finish_call(&mut self, ck: usize) {
        let Some(call) = self.calls.get(ck) else {
            return;
        };
        let server_gone = call.server.is_none();
        let clients_gone = call.clients_live == 0;
        if server_gone && clients_gone {
            for ai in 0..call.attempts.len() {
                self.release(ck, ai);
            }
            let call = self.calls.remove(ck);
            for a in call.attempts {
                if let Some((dk, n)) = a.dialog {
                    if self
                        .dialogs
                        .get(dk)
                        .is_some_and(|d| d.nonce == n && !d.confirmed)
                    {
                        self.remove_dialog(dk);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------- responses

    fn handle_response(&mut self, now: Instant, from: Peer, m: Message) {
        if self.health.handle_response(now, &m) {
            return;
        }
        let key = match (m.top_via().ok().and_then(|v| v.branch()), m.cseq().ok()) {
            (Some(b), Some(c)) => (m.as_bytes().slice_ref(b), Bytes::copy_from_slice(c.method)),
            _ => {
                self.stats.responses_dropped += 1;
                return;
            }
        };
        let Some(&k) = self.client_index.get(&key) else {
            // A stray: no transaction (RFC 3261 §18.1.2). Dropped.
            self.stats.responses_dropped += 1;
            self.reject(now, from, None, "stray response");
            return;
        };
        let code = m.status().unwrap_or(0);
        let (ev, ack) = self.clients[k].txn.on_response(now, &m);
        let (peer, call, attempt, is_cancel) = {
            let e = &self.clients[k];
            (e.txn.peer, e.call, e.attempt, e.is_cancel)
        };
        let trunk = self
            .calls
            .get(call)
            .and_then(|c| c.attempts.get(attempt))
            .and_then(|a| a.trunk);
        if let Some(ack) = ack {
            self.send(peer, ack, trunk);
        }
        self.arm_client(k);
        if is_cancel || ev == ClientEvent::Absorb || !self.calls.contains(call) {
            return;
        }
        self.on_attempt_response(now, call, attempt, code, &m);
    }

    fn on_attempt_response(&mut self, now: Instant, ck: usize, ai: usize, code: u16, m: &Message) {
        let state = self.calls[ck].attempts[ai].state;
        let trunk = self.calls[ck].attempts[ai].trunk;
        let call_id = self.calls[ck].id;
        let tracked = self.calls[ck].tracked;
        let kind = self.calls[ck].kind;
        let progress_timeout = match &self.calls[ck].target {
            Target::Route(r) => Some(self.progress_timeout(&r.cfg, trunk)),
            Target::Fixed { .. } => None,
        };
        if (101..300).contains(&code) {
            self.learn_progress(now, ck, ai);
        }

        if state == AttemptState::Abandoned {
            if tracked {
                if let Some(t) = trunk {
                    self.events.push_back(Event::LateResponse {
                        call: call_id,
                        at: now,
                        trunk: t,
                        status: code,
                    });
                }
            }
            if code < 200 {
                if let Some(reason) = self.calls[ck].attempts[ai].cancel_wanted.take() {
                    self.calls[ck].attempts[ai].state = AttemptState::Abandoned;
                    self.cancel_attempt(now, ck, ai, reason);
                }
            } else if code < 300 {
                // §16.7 step 10: a 2xx is always forwarded, even a late one.
                self.calls[ck].attempts[ai].state = AttemptState::Answered;
                self.answered(now, ck, ai, m);
            } else {
                self.calls[ck].attempts[ai].state = AttemptState::Done;
                if let Some(d) = self.calls[ck].attempts[ai].dialog.take() {
                    self.drop_dialog(d);
                }
            }
            return;
        }
        if matches!(state, AttemptState::Done) {
            if (200..300).contains(&code) {
                self.answered(now, ck, ai, m);
            }
            return;
        }

        match code {
            100 => {
                let a = &mut self.calls[ck].attempts[ai];
                if a.state == AttemptState::Pending {
                    a.state = AttemptState::Trying;
                    a.trying_at = Some(now);
                    a.failover_at = None;
                    if kind == Kind::Invite {
                        a.progress_at = progress_timeout.map(|p| now + p);
                        a.timer_c = Some(now + self.cfg.timers.timer_c);
                    }
                }
                if let Some(reason) = a.cancel_wanted.take() {
                    self.cancel_attempt(now, ck, ai, reason);
                }
                self.arm_call(ck);
            }
            101..=199 => {
                let a = &mut self.calls[ck].attempts[ai];
                let first_progress =
                    matches!(a.state, AttemptState::Pending | AttemptState::Trying);
                a.state = AttemptState::Ringing;
                a.failover_at = None;
                a.progress_at = None;
                a.hedge_at = None;
                a.timer_c = Some(now + self.cfg.timers.timer_c);
                if let Some(reason) = a.cancel_wanted.take() {
                    self.cancel_attempt(now, ck, ai, reason);
                }
                if first_progress {
                    if let Some(t) = trunk {
                        self.report_answered(now, ck, t);
                    }
                }
                if self.calls[ck].state != CallState::Cancelled {
                    self.relay(now, ck, m);
                }
                self.arm_call(ck);
            }
            200..=299 => {
                let a = &mut self.calls[ck].attempts[ai];
                // One piece of evidence per call: a 2xx after ringing adds none.
                let first = matches!(a.state, AttemptState::Pending | AttemptState::Trying);
                a.state = AttemptState::Answered;
                a.failover_at = None;
                a.progress_at = None;
                a.timer_c = None;
                a.hedge_at = None;
                if first {
                    if let Some(t) = trunk {
                        self.report_answered(now, ck, t);
                    }
                }
                self.answered(now, ck, ai, m);
            }
            _ => {
                let failover = match &self.calls[ck].target {
                    Target::Route(r) => r.cfg.failover_codes.contains(&code),
                    Target::Fixed { .. } => false,
                };
                if failover && self.calls[ck].state == CallState::Routing {
                    self.fail_attempt(now, ck, ai, AttemptFailure::Response(code), Some(m));
                    return;
                }
                // The callee's own answer (or any answer after a CANCEL): relay it.
                let a = &mut self.calls[ck].attempts[ai];
                let was_waiting = matches!(a.state, AttemptState::Pending | AttemptState::Trying);
                a.state = AttemptState::Done;
                a.failover_at = None;
                a.progress_at = None;
                a.timer_c = None;
                a.hedge_at = None;
                if let Some(d) = a.dialog.take() {
                    self.drop_dialog(d);
                }
                self.release(ck, ai);
                if was_waiting && !failover {
                    if let Some(t) = trunk {
                        self.report_answered(now, ck, t);
                    }
                }
                match self.calls[ck].state {
                    CallState::Cancelled => {
                        if self.live_attempts(ck) == 0 {
                            if let Some(sk) = self.unanswered_server(ck) {
                                if code == 487 {
                                    self.relay(now, ck, m);
                                } else {
                                    self.respond(now, sk, 487, "Request Terminated", Some(ck), &[]);
                                }
                            }
                        }
                    }
                    CallState::Routing if self.live_attempts(ck) > 0 => {
                        // A hedge is still alive: its answer decides. (The
                        // callee's answer here is kept as the best so far
                        // only by RFC 3261 §16.7's letter; a live emergency
                        // attempt is a better bet than relaying a 486.)
                    }
                    CallState::Routing => {
                        self.calls[ck].state = CallState::Finished;
                        self.relay(now, ck, m);
                        if tracked {
                            self.events.push_back(Event::CallFailed {
                                call: call_id,
                                at: now,
                                status: code,
                                reason: CallFailure::Rejected,
                            });
                        }
                    }
                    CallState::Connected | CallState::Finished => {}
                }
                if self.calls[ck].ends_dialog {
                    self.end_dialog(ck);
                }
                self.maybe_finish_call(ck);
            }
        }
    }

    fn end_dialog(&mut self, ck: usize) {
        if let Target::Fixed { dialog, .. } = self.calls[ck].target {
            self.drop_dialog(dialog);
        }
    }

    /// Remove a dialog if the key still names it.
    fn drop_dialog(&mut self, (dk, nonce): DialogRef) {
        if self.dialogs.get(dk).is_some_and(|d| d.nonce == nonce) {
            self.remove_dialog(dk);
        }
    }

    /// A 2xx from attempt `ai`: forward it, connect the call, cancel the rest.
    ///
    /// A routed call forwards one answer: the first 2xx (RFC 3261 §16.7
    /// step 10 forwards every 2xx and leaves the caller to end the extra
    /// dialogs, §13.2.2.4; callers in the field do not, and a PSAP would be
    /// left holding a line nobody hears). A 2xx from another attempt after
    /// that, or after the caller already has a final response, is ACKed
    /// and ended with a BYE here ([`end_duplicate`](Self::end_duplicate)).
    fn answered(&mut self, now: Instant, ck: usize, ai: usize, m: &Message) {
        if matches!(self.calls[ck].target, Target::Route(_)) {
            let forward = match self.calls[ck].winner {
                Some(w) => w == ai,
                None => self.unanswered_server(ck).is_some(),
            };
            if !forward {
                self.end_duplicate(now, ck, ai, m);
                return;
            }
            self.calls[ck].winner = Some(ai);
        }
        let first = self.calls[ck].state != CallState::Connected;
        self.relay(now, ck, m);
        if let Some((dk, n)) = self.calls[ck].attempts[ai].dialog {
            if let Some(d) = self.dialogs.get_mut(dk).filter(|d| d.nonce == n) {
                d.confirmed = true;
                d.expires = now + self.cfg.dialog_max_age;
                self.arm_dialog(dk);
            }
        }
        if self.calls[ck].ends_dialog {
            self.end_dialog(ck);
        }
        if !first
            || matches!(self.calls[ck].state, CallState::Finished)
                && self.calls[ck].kind != Kind::Invite
        {
            return;
        }
        self.calls[ck].state = CallState::Connected;
        let call = &self.calls[ck];
        if call.tracked {
            if let Some(t) = call.attempts[ai].trunk {
                self.events.push_back(Event::CallConnected {
                    call: call.id,
                    at: now,
                    trunk: t,
                    setup: now - call.started,
                });
            }
        }
        for other in 0..self.calls[ck].attempts.len() {
            if other != ai {
                let a = &mut self.calls[ck].attempts[other];
                a.failover_at = None;
                a.progress_at = None;
                a.hedge_at = None;
                let live = matches!(
                    a.state,
                    AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
                );
                if live {
                    // A hedge that lost: given up like a failover, so a
                    // 2xx of its own later is ended, not forwarded.
                    a.state = AttemptState::Abandoned;
                    if let Some(c) = a.client {
                        if let Some(e) = self.clients.get_mut(c) {
                            e.txn.mute();
                        }
                    }
                    self.release(ck, other);
                    self.report_failure(now, ck, other, AttemptFailure::Superseded);
                }
                self.cancel_attempt(now, ck, other, Bytes::from_static(REASON_ELSEWHERE));
            }
        }
        // The answered call keeps its place on the trunk until it ends: the
        // place moves from the attempt to the dialog (a late answer on an
        // attempt given up takes one again).
        let a = &mut self.calls[ck].attempts[ai];
        let was_counted = std::mem::take(&mut a.counted);
        let dialog = a
            .dialog
            .and_then(|(dk, n)| self.dialogs.get_mut(dk).filter(|d| d.nonce == n));
        let delta: i64 = match dialog {
            Some(d) if !d.counted => {
                d.counted = true;
                i64::from(!was_counted)
            }
            _ => -i64::from(was_counted),
        };
        if let Some(l) = a.trunk.and_then(|t| self.load.get_mut(t.index())) {
            l.calls = match delta {
                1 => l.calls.saturating_add(1),
                -1 => l.calls.saturating_sub(1),
                _ => l.calls,
            };
        }
        self.arm_call(ck);
    }

    /// A second answer: attempt `ai`'s 2xx came after another was forwarded
    /// (or after the caller's final response). Acting as the UAC of that
    /// dialog (RFC 3261 §13.2.2.4), ACK it and end it with a BYE along its
    /// route set, so no dialog is left up at a PSAP that nobody hears. A
    /// retransmission of the same 2xx is ACKed again.
    fn end_duplicate(&mut self, now: Instant, ck: usize, ai: usize, m: &Message) {
        let call = &mut self.calls[ck];
        let (id, tracked) = (call.id, call.tracked);
        let a = &mut call.attempts[ai];
        a.state = AttemptState::Answered;
        a.failover_at = None;
        a.progress_at = None;
        a.timer_c = None;
        a.hedge_at = None;
        let first = !std::mem::replace(&mut a.ended, true);
        let trunk = a.trunk;
        let peer = trunk
            .and_then(|t| self.trunk_peers.get(t.index()).copied())
            .unwrap_or(a.peer);
        if let Some(d) = a.dialog.take() {
            self.drop_dialog(d);
        }
        self.release(ck, ai);
        let nonce = self.rng.next_u64();
        let ack_branch = format!("{DUPLICATE_PREFIX}{nonce:016x}a");
        let bye_branch = format!("{DUPLICATE_PREFIX}{nonce:016x}b");
        let via = |branch: &str| {
            format!(
                "SIP/2.0/{} {};branch={branch}",
                peer.transport.via_token(),
                self.advertise
            )
        };
        let (ack_via, bye_via) = (via(&ack_branch), via(&bye_branch));
        let Some(ack) = self.in_dialog_request(m, "ACK", &ack_via, None) else {
            return;
        };
        let wire = self.wire_peer(peer, trunk, ack.len());
        self.send(wire, ack, trunk);
        if !first {
            return;
        }
        if tracked {
            if let Some(t) = trunk {
                self.events.push_back(Event::DuplicateAnswer {
                    call: id,
                    at: now,
                    trunk: t,
                });
            }
        }
        let Some(bye) = self.in_dialog_request(m, "BYE", &bye_via, Some(REASON_ELSEWHERE)) else {
            return;
        };
        let Ok(parsed) = Message::parse(bye.clone()) else {
            return;
        };
        let branch = Bytes::from(bye_branch);
        let key = (branch.clone(), Bytes::from_static(b"BYE"));
        let txn = ClientTxn::new(now, Kind::NonInvite, parsed, peer, branch, self.cfg.timers);
        let k = self.clients.insert(ClientEntry {
            txn,
            key: key.clone(),
            call: ck,
            attempt: ai,
            is_cancel: true,
            armed: None,
        });
        self.client_index.insert(key, k);
        self.calls[ck].clients_live += 1;
        self.send(peer, bye, trunk);
        self.arm_client(k);
    }

    /// An ACK or BYE in the dialog a 2xx established, sent by this proxy as
    /// that dialog's UAC: Request-URI the 2xx's Contact, Route the Record-
    /// Route entries the trunk side added (those above ours, reversed),
    /// From, To and Call-ID of the 2xx, the INVITE's CSeq number (ACK) or
    /// the next one (BYE).
    fn in_dialog_request(
        &self,
        resp: &Message,
        method: &str,
        via: &str,
        reason: Option<&[u8]>,
    ) -> Option<Bytes> {
        let (off, contact) = resp.values(HeaderName::Contact).next()?;
        let target = lifeline_sip::NameAddr::parse(contact, off, HeaderName::Contact).ok()?;
        let mut w = MessageWriter::request(method, target.uri_text).ok()?;
        w.header(HeaderName::Via, via.as_bytes()).ok()?;
        w.header(HeaderName::MaxForwards, b"70").ok()?;
        let mut downstream = Vec::new();
        for (off, v) in resp.values(HeaderName::RecordRoute) {
            let rr = lifeline_sip::NameAddr::parse(v, off, HeaderName::RecordRoute).ok()?;
            if matches!(rr.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port)) {
                break;
            }
            downstream.push(v);
        }
        for v in downstream.iter().rev() {
            w.header(HeaderName::Route, v).ok()?;
        }
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            let h = resp.header(name)?;
            w.raw_header(h.raw_name, h.value).ok()?;
        }
        let seq = resp.cseq().ok()?.seq;
        let seq = if method == "ACK" {
            seq
        } else {
            seq.wrapping_add(1)
        };
        w.header(HeaderName::CSeq, format!("{seq} {method}").as_bytes())
            .ok()?;
        if let Some(r) = reason {
            w.header(HeaderName::Reason, r).ok()?;
        }
        Some(w.finish())
    }

    /// The progress timeout of a new attempt on `trunk`: `factor` times
    /// what the trunk usually takes from 100 Trying to ringing, clamped
    /// between the route's `progress_timeout_min` and `progress_timeout`;
    /// `progress_timeout` while the trunk has no history.
    fn progress_timeout(&self, r: &RouteConfig, trunk: Option<TrunkId>) -> std::time::Duration {
        let learned = trunk
            .and_then(|t| self.health.trunk(t))
            .and_then(|s| s.progress.trying_to_ringing);
        match learned {
            None => r.progress_timeout,
            Some(l) => l
                .saturating_mul(r.progress_timeout_factor)
                .max(r.progress_timeout_min)
                .min(r.progress_timeout),
        }
    }

    /// Tell health how long attempt `ai` took to ring (or answer), once per
    /// attempt. Late answers on attempts already given up count too: a
    /// trunk that is slow more often than the percentile allows raises its
    /// own timeout.
    fn learn_progress(&mut self, now: Instant, ck: usize, ai: usize) {
        let call = &mut self.calls[ck];
        if call.kind != Kind::Invite || !matches!(call.target, Target::Route(_)) {
            return;
        }
        let a = &mut call.attempts[ai];
        if std::mem::replace(&mut a.progress_recorded, true) {
            return;
        }
        if let Some(t) = a.trunk {
            let invite = now.saturating_duration_since(a.started);
            let trying = a.trying_at.map(|t0| now.saturating_duration_since(t0));
            self.health.record_progress(t, invite, trying);
        }
    }

    /// Forward a response to the caller through the call's server transaction.
    fn relay(&mut self, now: Instant, ck: usize, m: &Message) {
        let Some(sk) = self.calls[ck].server else {
            return;
        };
        let Some(s) = self.servers.get(sk) else {
            return;
        };
        let peer = s.txn.peer;
        let mut e = Edit::new(m);
        e.pop_via();
        if peer.transport.reliable() {
            e.ensure_content_length();
        }
        let bytes = e.to_bytes();
        let code = m.status().unwrap_or(500);
        if let Some(out) = self.servers[sk].txn.send_response(now, code, bytes) {
            self.send(peer, out, None);
        }
        self.arm_server(sk);
    }

    /// Send a locally generated response on server transaction `sk`.
    fn respond(
        &mut self,
        now: Instant,
        sk: usize,
        code: u16,
        phrase: &str,
        ck: Option<usize>,
        extra: &[(HeaderName, &[u8])],
    ) {
        let Some(s) = self.servers.get(sk) else {
            return;
        };
        let tag = match ck.and_then(|c| self.calls.get(c)) {
            Some(c) => c.to_tag.clone(),
            None => Bytes::from(format!("{:016x}", self.rng.next_u64())),
        };
        let Some(request) = s.txn.request() else {
            return; // a final was sent already
        };
        let Ok(mut w) = MessageWriter::response_to(request, code, phrase, Some(&tag)) else {
            return;
        };
        for (name, value) in extra {
            if w.header(*name, value).is_err() {
                return;
            }
        }
        let peer = s.txn.peer;
        let bytes = w.finish();
        if let Some(out) = self.servers[sk].txn.send_response(now, code, bytes) {
            self.send(peer, out, None);
        }
        if code >= 300 && ck.is_none() && code != 487 {
            self.stats.requests_refused += 1;
            let from = self.servers[sk].txn.peer;
            let reason = match code {
                404 => "no route",
                416 => "unsupported URI scheme",
                420 => "bad extension",
                481 => "no such transaction",
                482 => "loop detected",
                483 => "too many hops",
                503 => "shutting down",
                _ => "refused",
            };
            self.events.push_back(Event::Rejected {
                at: now,
                from,
                status: Some(code),
                reason,
            });
        }
        self.arm_server(sk);
    }
}

/// The edits that forward request `m`: our Route removed (`pop_route`),
/// Max-Forwards decremented, our `via` on top, a Record-Route if given, and
/// Content-Length made explicit on a `reliable` (stream) transport. `None`
/// if a value cannot be inserted.
fn forward_edit<'m>(
    m: &'m Message,
    pop_route: bool,
    via: &str,
    record_route: Option<&str>,
    reliable: bool,
) -> Option<Edit<'m>> {
    let mut e = Edit::new(m);
    if pop_route {
        e.remove_first_route();
    }
    e.decrement_max_forwards();
    e.push_via(via.as_bytes()).ok()?;
    if let Some(rr) = record_route {
        e.add_record_route(rr.as_bytes()).ok()?;
    }
    if reliable {
        e.ensure_content_length();
    }
    Some(e)
}

/// The SIP URI a trunk is probed at.
fn trunk_target(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("sip:{a}"),
        SocketAddr::V6(a) => format!("sip:[{}]:{}", a.ip(), a.port()),
    }
}

fn call_info(m: &Message, emergency: Option<EmergencyRule>, route: &str, source: Peer) -> CallInfo {
    let b = m.as_bytes();
    let from = m.from().ok();
    let pidf_lo = m.content_type().and_then(|c| c.ok()).is_some_and(|ct| {
        ct.is("application", "pidf+xml")
            || (ct.media_type.eq_ignore_ascii_case(b"multipart")
                && contains_ignore_case(&m.body(), b"application/pidf+xml"))
    });
    CallInfo {
        call_id: m.call_id().map(|c| b.slice_ref(c)).unwrap_or_default(),
        from_uri: from.map(|f| b.slice_ref(f.uri_text)).unwrap_or_default(),
        from_display: from.and_then(|f| f.display_name).map(|d| b.slice_ref(d)),
        asserted_identities: m
            .values(HeaderName::PAssertedIdentity)
            .map(|(_, v)| b.slice_ref(v))
            .collect(),
        dialled: m
            .request_uri_bytes()
            .map(|u| b.slice_ref(u))
            .unwrap_or_default(),
        emergency,
        location: Location {
            geolocation: m
                .values(HeaderName::Geolocation)
                .map(|(_, v)| b.slice_ref(v))
                .collect(),
            pidf_lo,
        },
        route: route.to_string(),
        source,
    }
}

/// Case-insensitive substring search; `needle` must start with a letter.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), hay).any(|i| {
        hay.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// A route's `shares` are one per trunk, or none.
fn check_shares(r: &RouteConfig) -> Result<(), ConfigError> {
    if r.shares.is_empty() || r.shares.len() == r.trunks.len() {
        Ok(())
    } else {
        Err(ConfigError::BadShares(r.name.clone()))
    }
}

/// A route's trunks in the order one call tries them when the route shares
/// load: priority groups in ascending order; within a group, a weighted
/// draw without replacement (`draw(total)` gives a number below `total`),
/// so each trunk leads its group in proportion to its weight. Trunks of
/// weight 0 come last in their group, in list order.
fn share_order<T: Copy>(
    trunks: &[T],
    shares: &[crate::config::TrunkShare],
    mut draw: impl FnMut(u64) -> u64,
) -> Box<[T]> {
    let mut entries: Vec<(u32, u32, T)> = trunks
        .iter()
        .zip(shares)
        .map(|(t, s)| (s.priority, s.weight, *t))
        .collect();
    // Stable: list order within a priority.
    entries.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(entries.len());
    let mut i = 0;
    while i < entries.len() {
        let prio = entries[i].0;
        let end = entries[i..]
            .iter()
            .position(|e| e.0 != prio)
            .map_or(entries.len(), |p| i + p);
        let mut group: Vec<(u32, T)> = entries[i..end].iter().map(|e| (e.1, e.2)).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|g| u64::from(g.0)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut r = draw(total);
                group
                    .iter()
                    .position(|g| {
                        let w = u64::from(g.0);
                        if r < w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(pick).1);
        }
        i = end;
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrunkShare;

    fn share(priority: u32, weight: u32) -> TrunkShare {
        TrunkShare { priority, weight }
    }

    #[test]
    fn share_order_groups_by_priority_and_draws_by_weight() {
        let trunks = ["a", "b", "c", "d"];
        let shares = [share(2, 1), share(1, 3), share(1, 1), share(2, 0)];
        // Group 1 is b (3) and c (1): draws 0-2 pick b, 3 picks c.
        let mut draws = vec![0, 0, 0].into_iter();
        let order = share_order(&trunks, &shares, |_| draws.next().unwrap());
        assert_eq!(&*order, ["b", "c", "a", "d"]);
        let mut draws = vec![3, 0, 0].into_iter();
        let order = share_order(&trunks, &shares, |_| draws.next().unwrap());
        assert_eq!(
            &*order,
            ["c", "b", "a", "d"],
            "weight 0 comes last in its group"
        );
        // Every draw is asked for below the group's remaining weight.
        let mut asked = Vec::new();
        share_order(&trunks, &shares, |total| {
            asked.push(total);
            0
        });
        assert_eq!(asked, [4, 1, 1]);
    }

    #[test]
    fn token_bucket_refills_at_max_cps() {
        let mut t = TrunkConfig::new("t", Peer::udp("127.0.0.1:5060".parse().unwrap()));
        t.max_cps = Some(2);
        let mut l = TrunkLoad::new(&t);
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(l.full(now), None);
            l.refill(now);
            l.tokens -= 1.0;
        }
        assert_eq!(l.full(now), Some(SkipReason::MaxCps));
        let half = now + std::time::Duration::from_millis(499);
        assert_eq!(l.full(half), Some(SkipReason::MaxCps));
        let later = now + std::time::Duration::from_millis(500);
        assert_eq!(l.full(later), None, "one token after 1/max_cps");
        t.max_calls = Some(1);
        l.reconfigure(&t);
        l.calls = 1;
        assert_eq!(l.full(later), Some(SkipReason::MaxCalls));
    }
}
