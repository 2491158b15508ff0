//! The proxy core (RFC 3261 §16) with serial failover per call.
//!
//! One `Proxy` type over several files: this one holds its tables and its
//! public face (construction, reload, accessors, the `handle_*` and `poll_*`
//! entry points); `timers` arms and fires deadlines, `requests` matches and
//! routes requests, `calls` runs attempts, failover, rescue and hedging,
//! `responses` handles what trunks answer, and `load` keeps trunk capacity
//! and the load-sharing order.

mod calls;
mod linger;
mod load;
mod requests;
mod responses;
mod text;
mod timers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lifeline_health::{Health, Hit, Local, State, TokenRng, TransportError, TrunkId};
use lifeline_sip::{
    check_datagram, ErrorKind, HeaderName, Message, MessageWriter, Method, Verdict,
};
use slab::Slab;
use smallvec::SmallVec;

use crate::classify::EmergencyRule;
use crate::config::{ConfigError, Peer, ProxyConfig, RouteConfig, UnknownSource};
use crate::events::{CallRef, Event, Transmit};
use crate::transaction::{ClientState, ClientTxn, Kind, ServerTxn};
use linger::{LingerKey, LingerTable};
use load::TrunkLoad;

const LOOP_PREFIX: &str = "z9hG4bK-lp";
const ACK_PREFIX: &str = "z9hG4bK-la";
/// Branches of the ACK and BYE that end a second answer (see `end_duplicate`).
const DUPLICATE_PREFIX: &str = "z9hG4bK-ld";
/// RFC 3326 Reason on the CANCEL of an attempt moved off a dead trunk.
const REASON_TRUNK_DOWN: &[u8] = b"SIP;cause=503;text=\"trunk down\"";
/// RFC 3326 Reason on the CANCEL (or BYE) of an attempt another one beat.
const REASON_ELSEWHERE: &[u8] = b"SIP;cause=200;text=\"Call completed elsewhere\"";
/// RFC 3326 Reason on the CANCEL of an attempt a transport error moved.
const REASON_TRANSPORT_ERROR: &[u8] =
    b"SIP;cause=503;text=\"transport error, trying another trunk\"";

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received (including retransmissions).
    pub requests: u64,
    /// Responses received.
    pub responses: u64,
    /// Request retransmissions absorbed by server transactions.
    pub retransmissions_absorbed: u64,
    /// Responses dropped: malformed, stray, matching no transaction, or
    /// from the wrong peer.
    pub responses_dropped: u64,
    /// Of those, responses that matched a transaction (or a probe) but came
    /// from another peer than the one the request was sent to.
    pub responses_wrong_peer: u64,
    /// Requests refused with an error status.
    pub requests_refused: u64,
    /// Live server transactions (lingering ones included).
    pub server_transactions: usize,
    /// Live client transactions (lingering ones included).
    pub client_transactions: usize,
    /// Of those, transactions past their final response that only absorb
    /// retransmissions until their timer (D, I, J, K, L or M) ends them,
    /// kept in a compact form without their call.
    pub lingering: usize,
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

/// A Via's sent-by as part of a key: host bytes (or the IPv4 octets) and
/// port, inline up to 24 bytes (an IPv4 address takes 6): no allocation,
/// and a clone of the key is a copy.
type SentBy = smallvec::SmallVec<[u8; 24]>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ServerKey {
    /// RFC 3261 §17.2.3: branch, sent-by, method (ACK matches INVITE).
    Branch {
        branch: Bytes,
        sent_by: SentBy,
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
    /// Unique for the proxy's lifetime (slab keys are reused): names the
    /// transaction a transport error hit.
    serial: u64,
    armed: Option<Instant>,
}

/// What a message sent to a trunk belonged to: a transport error on that
/// trunk is taken to answer the last one (see
/// [`Proxy::handle_transport_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A client transaction (slab key, serial): an attempt's request and its
    /// retransmissions, the ACK of its non-2xx final, a CANCEL, a BYE.
    Client(usize, u64),
    /// A health probe.
    Probe,
    /// Anything else (a 2xx ACK forwarded statelessly), by serial.
    Other(u64),
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

impl Attempt {
    /// No timer of the attempt's own is due any more (failover, progress,
    /// Timer C, hedge).
    fn stop_timers(&mut self) {
        self.failover_at = None;
        self.progress_at = None;
        self.timer_c = None;
        self.hedge_at = None;
    }
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
    /// Inline for up to 4 trunks (the size of a `Vec`): no allocation.
    tried: SmallVec<[TrunkId; 4]>,
    /// The route's trunks in this call's order, when the route shares load
    /// by weight (drawn once per call); `None`: the route's own order.
    order: Option<Box<[TrunkId]>>,
    /// The call's place among non-emergency calls (canary share).
    ticket: u64,
    /// Inline for the first attempt (most calls make one): no allocation.
    attempts: SmallVec<[Attempt; 1]>,
    /// The attempt whose 2xx went to the caller.
    winner: Option<usize>,
    state: CallState,
    started: Instant,
    to_tag: Bytes,
    /// Where a 2xx went to the caller (through the server transaction).
    answered_to: Option<Peer>,
    /// The BYE or other in-dialog request that ends this dialog.
    ends_dialog: bool,
    /// Client transactions (attempts and CANCELs) still alive.
    clients_live: u32,
    /// The request's loop-detection hash (§16.6 step 8), for our branches.
    loop_hash: u64,
    armed: Option<Instant>,
}

/// A dialog's slab key and nonce: a key alone may have been reused.
type DialogRef = (usize, u128);

#[derive(Debug)]
struct Dialog {
    caller: Peer,
    trunk: Peer,
    trunk_id: Option<TrunkId>,
    /// 128 random bits: the Record-Route token is `<key>.<nonce>`.
    nonce: u128,
    confirmed: bool,
    /// Counted in its trunk's `max_calls` load (an answered call).
    counted: bool,
    /// The caller's ACK of the 2xx has passed (RFC 3261 §13.2.2.4).
    acked: bool,
    expires: Instant,
    armed: Option<Instant>,
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
    /// Transactions past their final response, kept only to absorb
    /// retransmissions (see [`linger`]).
    lingering: LingerTable,
    /// Transactions that reached a lingering state during the current
    /// input, moved to `lingering` at its end (clients with their serial).
    settle_servers: Vec<usize>,
    settle_clients: Vec<(usize, u64)>,
    calls: Slab<Call>,
    dialogs: Slab<Dialog>,
    timers: BinaryHeap<Reverse<(Instant, Obj)>>,
    transmits: VecDeque<(Transmit, Origin)>,
    events: VecDeque<Event>,
    /// Branches, tags and Record-Route tokens (ChaCha20, seeded by the
    /// gateway from the operating system).
    rng: TokenRng,
    /// Keys the loop-detection and stateless-ACK hashes, so that branches
    /// built from them cannot be computed by anyone else.
    hash_key: u128,
    /// Next [`ClientEntry::serial`] or [`Origin::Other`] number.
    serials: u64,
    /// Per trunk: what the last message handed out for it belonged to.
    last_sent: Vec<Option<Origin>>,
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
        let mut rng = TokenRng::new(cfg.seed);
        let mut health = Health::with_seed(local, rng.fork());
        let hash_key = rng.token();
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
        let seen = vec![State::Up; trunk_peers.len()];
        let last_sent = vec![None; trunk_peers.len()];
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
            lingering: LingerTable::default(),
            settle_servers: Vec::new(),
            settle_clients: Vec::new(),
            calls: Slab::new(),
            dialogs: Slab::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            hash_key,
            serials: 0,
            last_sent,
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
        self.calls.is_empty()
            && self.servers.is_empty()
            && self.clients.is_empty()
            && self.lingering.is_empty()
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
        servers
            .chain(clients)
            .chain(self.lingering.describe())
            .collect()
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
                    self.last_sent.push(None);
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
            server_transactions: self.servers.len() + self.lingering.servers(),
            client_transactions: self.clients.len() + self.lingering.clients(),
            lingering: self.lingering.len(),
            calls: self.calls.len(),
            dialogs: self.dialogs.len(),
            ..self.stats
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (t, origin) = match self.transmits.pop_front() {
            Some(queued) => queued,
            None => {
                let probe = self.health.poll_transmit()?;
                let peer = *self.trunk_peers.get(probe.trunk.index())?;
                let t = Transmit {
                    peer,
                    payload: probe.payload,
                    trunk: Some(probe.trunk),
                };
                (t, Origin::Probe)
            }
        };
        if let Some(last) = t.trunk.and_then(|id| self.last_sent.get_mut(id.index())) {
            *last = Some(origin);
        }
        Some(t)
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
        [
            own,
            self.lingering.next_deadline(),
            self.health.poll_timeout(),
        ]
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
        self.lingering.expire(now);
        self.settle(now);
        self.shrink_timers();
        self.check_trunks(now);
    }

    /// A send to `trunk` failed, or its socket reported an error (ICMP port
    /// or host unreachable, TCP refused or reset).
    ///
    /// Such an error is cheap to forge (an ICMP message needs only the two
    /// addresses), so it is evidence of one message, not of the trunk:
    ///
    /// 1. It is taken to answer the last message handed out for that trunk
    ///    by [`poll_transmit`](Self::poll_transmit). The kernel reports an
    ///    ICMP error on a connected socket without saying which datagram
    ///    caused it; from a trunk that is really gone it comes back within
    ///    a round trip, before the next message of a call or a probe.
    /// 2. If that message was an attempt's request still waiting for a
    ///    provisional (no answer, or 100 Trying only), that one attempt moves
    ///    to the next trunk, as failover would — but only if the call has
    ///    somewhere else to go that works: another live attempt, or a usable
    ///    trunk (not a Down one, which an emergency call may still try on
    ///    its timers). Its transaction is muted, not ended as RFC 3261
    ///    §17.1.1.2 would have it, so that an answer from a trunk that was
    ///    never gone is still matched (CANCELled, or ended with a BYE).
    ///    Otherwise the attempt stays, with its own timers (which move it
    ///    on, Down trunks included for an emergency call, if the trunk
    ///    really is gone): an ICMP error alone never fails a call, and never
    ///    sends one from a trunk that answers to one that is Down. Other
    ///    attempts on the trunk stay where they are.
    /// 3. The trunk's health hears of it ([`Health::transport_error`]): one
    ///    error makes the trunk Suspect and probes it at once; it goes Down
    ///    only when corroborated — a second error answering another message
    ///    (another transaction, or that probe) within
    ///    [`lifeline_health::TRANSPORT_ERROR_WINDOW`], or the probe failing.
    ///    When it goes Down, every call on it is rescued (see
    ///    [`RescueRinging`](crate::RescueRinging)) — to usable trunks only,
    ///    since transport errors took it Down.
    pub fn handle_transport_error(&mut self, now: Instant, trunk: TrunkId, kind: TransportError) {
        let origin = self.last_sent.get(trunk.index()).copied().flatten();
        let client = match origin {
            Some(Origin::Client(k, serial)) => self
                .clients
                .get(k)
                .is_some_and(|e| e.serial == serial)
                .then_some(k),
            _ => None,
        };
        let hit = match origin {
            Some(Origin::Probe) => Hit::Probe,
            Some(Origin::Client(_, serial) | Origin::Other(serial)) => Hit::Message(serial),
            None => Hit::Unknown,
        };
        self.health.transport_error(now, trunk, kind, hit);
        if let Some(k) = client {
            let e = &self.clients[k];
            if !e.is_cancel {
                let (ck, ai) = (e.call, e.attempt);
                self.move_hit_attempt(now, ck, ai);
            }
        }
        self.settle(now);
        self.check_trunks(now);
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
        self.settle(now);
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
                if !self.known_source(from) && self.cfg.access.unknown == UnknownSource::Drop {
                    // Outside `access.callers`: silence, as for a
                    // well-formed request.
                    self.reject(now, from, None, "access");
                    return;
                }
                let is_ack = msg.as_ref().and_then(|m| m.method()) == Some(Method::Ack);
                let why = if matches!(e.kind(), ErrorKind::ControlCharacter(_)) {
                    "control character"
                } else {
                    "malformed"
                };
                match msg {
                    Some(m) if !is_ack && m.header(HeaderName::Via).is_some() => {
                        self.reply_stateless(
                            now,
                            from,
                            &m,
                            e.status(),
                            e.kind().reason_phrase(),
                            &[],
                            why,
                        );
                    }
                    _ => self.reject(now, from, None, why),
                }
            }
            (_, Verdict::Drop(e)) if matches!(e.kind(), ErrorKind::ControlCharacter(_)) => {
                self.stats.responses_dropped += 1;
                self.reject(now, from, None, "control character in response");
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

    /// Answer a request outside any transaction (it failed validation, or
    /// a state cap refused it), with `extra` headers.
    #[allow(clippy::too_many_arguments)]
    fn reply_stateless(
        &mut self,
        now: Instant,
        from: Peer,
        m: &Message,
        status: u16,
        phrase: &str,
        extra: &[(HeaderName, &[u8])],
        why: &'static str,
    ) {
        let tag = self.new_tag();
        if let Ok(mut w) = MessageWriter::response_to(m, status, phrase, Some(&tag)) {
            if extra.iter().all(|(n, v)| w.header(*n, v).is_ok()) {
                self.send(from, w.finish(), None);
            }
        }
        self.reject(now, from, Some(status), why);
    }

    /// Queue a message that belongs to no client transaction.
    fn send(&mut self, peer: Peer, payload: Bytes, trunk: Option<TrunkId>) {
        let origin = Origin::Other(self.next_serial());
        self.send_as(peer, payload, trunk, origin);
    }

    /// Queue a message of client transaction `k` (its request, a
    /// retransmission, the ACK of its non-2xx final).
    fn send_client(&mut self, k: usize, peer: Peer, payload: Bytes, trunk: Option<TrunkId>) {
        let origin = match self.clients.get(k) {
            Some(e) => Origin::Client(k, e.serial),
            None => Origin::Other(self.next_serial()),
        };
        self.send_as(peer, payload, trunk, origin);
    }

    fn send_as(&mut self, peer: Peer, payload: Bytes, trunk: Option<TrunkId>, origin: Origin) {
        let t = Transmit {
            peer,
            payload,
            trunk,
        };
        self.transmits.push_back((t, origin));
    }

    fn next_serial(&mut self) -> u64 {
        self.serials += 1;
        self.serials
    }

    /// The key a lingering transaction is found by: 128 bits of SipHash-1-3
    /// (two runs, told apart by a byte) over `hash_key` and what `f` feeds
    /// in. Keyed with the proxy's secret, so that no one can pick a request
    /// whose key matches another's lingering transaction.
    fn linger_key(&self, f: impl Fn(&mut std::collections::hash_map::DefaultHasher)) -> LingerKey {
        use std::hash::{Hash, Hasher};
        let half = |i: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.hash_key.hash(&mut h);
            i.hash(&mut h);
            f(&mut h);
            h.finish()
        };
        LingerKey(half(0), half(1))
    }

    /// A server transaction's lingering key.
    fn server_linger_key(&self, key: &ServerKey) -> LingerKey {
        use std::hash::Hash;
        self.linger_key(|h| {
            b's'.hash(h);
            key.hash(h);
        })
    }

    /// A client transaction's lingering key: its branch and method, and the
    /// peer it was sent to, as [`responses::same_peer`] compares peers
    /// (over a reliable transport, any port), so that only a response from
    /// that peer matches it.
    fn client_linger_key(&self, key: &(Bytes, Bytes), peer: Peer) -> LingerKey {
        use std::hash::Hash;
        self.linger_key(|h| {
            b'c'.hash(h);
            key.hash(h);
            peer.transport.hash(h);
            peer.addr.ip().to_canonical().hash(h);
            if !peer.transport.reliable() {
                peer.addr.port().hash(h);
            }
        })
    }

    /// A To tag: 128 random bits.
    fn new_tag(&mut self) -> Bytes {
        text::Text::new().hex128(self.rng.token()).to_bytes()
    }
}

/// A method as part of a transaction key: the static name of a known
/// method (no allocation), else a copy of the bytes as written (methods
/// are case-sensitive, so only an exact match is a known one).
fn method_key(method: &[u8]) -> Bytes {
    match Method::from_bytes(method).as_str() {
        Some(name) => Bytes::from_static(name.as_bytes()),
        None => Bytes::copy_from_slice(method),
    }
}

/// The SIP URI a trunk is probed at.
fn trunk_target(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("sip:{a}"),
        SocketAddr::V6(a) => format!("sip:[{}]:{}", a.ip(), a.port()),
    }
}

/// A route's `shares` are one per trunk, or none.
fn check_shares(r: &RouteConfig) -> Result<(), ConfigError> {
    if r.shares.is_empty() || r.shares.len() == r.trunks.len() {
        Ok(())
    } else {
        Err(ConfigError::BadShares(r.name.clone()))
    }
}
