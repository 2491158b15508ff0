//! Prometheus metrics for the daemon, fed by the event loop.
//!
//! The event loop owns the [`Proxy`]; it hands every [`Event`] it drains to
//! [`Metrics::on_event`], calls [`Metrics::set_gauges`] and
//! [`Metrics::set_trunk_calls`] on a regular tick (once a second is plenty),
//! tells [`Metrics::set_max_calls`] the configured limits (at start and after
//! a reload), and bumps the counters only it can see
//! ([`Metrics::add_socket_drops`], [`Metrics::add_queue_drops`],
//! [`Metrics::add_journal_dropped`], [`Metrics::add_tcp_idle_closed`], [`Metrics::on_transmit`]). The admin server calls [`Metrics::encode`] for
//! `GET /metrics`. Everything on the event loop's path is an atomic increment
//! behind a label lookup; nothing here reads a clock or blocks on the scraper
//! for longer than a label-map read lock.
//!
//! # Series
//!
//! | name | labels | what |
//! |---|---|---|
//! | `lifeline_calls_total` | `route`, `outcome` | calls finished: `connected`, `failed` (every trunk failed), `cancelled` (by the caller), `rejected` (the callee's own final answer, 486/603/404 ...), `no_route` (404, `route="none"`) |
//! | `lifeline_emergency_calls_total` | `rule` | emergency calls started: `sos-urn`, `number`, `resource-priority` |
//! | `lifeline_emergency_calls_failed_total` | | emergency calls that ended `failed` or `no_route`: each one is on the callback list |
//! | `lifeline_attempts_total` | `trunk` | INVITEs sent to a trunk (first tries and failovers) |
//! | `lifeline_failovers_total` | `trunk`, `reason` | attempts given up: `no-response`, `no-progress`, `transport-error`, `transaction-timeout`, `trunk-down` (the trunk went Down while the attempt waited), `superseded` (a hedge that lost: the call was answered through another trunk), or `response-<status>` (`response-503`) |
//! | `lifeline_rescued_total` | `trunk`, `ringing` | calls moved off a trunk at once because it went Down (or gave hard evidence) while they waited; `ringing="true"` if the caller already heard ringing from it |
//! | `lifeline_hedged_total` | `trunk` | emergency calls given a parallel attempt on this trunk because they had not rung within `hedge_after` |
//! | `lifeline_trunk_skipped_total` | `trunk`, `reason` | calls that passed this trunk over because it was full: `max_calls` or `max_cps` |
//! | `lifeline_duplicate_answers_total` | `trunk` | 2xx from this trunk on a call already answered through another (a hedge): ACKed and ended with a BYE |
//! | `lifeline_late_responses_total` | `trunk` | responses on attempts already given up |
//! | `lifeline_trunk_state` | `trunk`, `state` | 1 for the current measured state (`up`, `suspect`, `down`, `recovering`), 0 for the others |
//! | `lifeline_trunk_drained` | `trunk` | 1 while an operator has the trunk drained |
//! | `lifeline_trunk_state_changes_total` | `trunk`, `to` | measured state changes, by the state entered |
//! | `lifeline_probe_rtt_seconds` | `trunk` | OPTIONS round trip, EWMA (1/8); absent until a probe is answered |
//! | `lifeline_probe_rtt_max_seconds` | `trunk` | largest OPTIONS round trip seen |
//! | `lifeline_trunk_progress_seconds` | `trunk`, `from` | what the trunk's calls usually take to ring (decaying 95th percentile): `from="invite"` from the INVITE, `from="trying"` from 100 Trying; absent until enough calls were seen |
//! | `lifeline_trunk_canary` | `trunk` | 1 while the trunk is in its canary (back up on probes after failing calls, taking a share of calls) |
//! | `lifeline_trunk_calls` | `trunk` | calls on the trunk now (being set up, or answered and not ended): what `max_calls` limits |
//! | `lifeline_trunk_max_calls` | `trunk` | the trunk's configured `max_calls`; absent when unlimited |
//! | `lifeline_setup_seconds` | `emergency` | INVITE arrival to 2xx forwarded, connected calls only (`"true"`/`"false"`) |
//! | `lifeline_transactions` | `kind` | live `server` and `client` transactions |
//! | `lifeline_calls_active` | | calls being set up or forwarded |
//! | `lifeline_dialogs` | | dialogs whose in-dialog requests the gateway routes |
//! | `lifeline_messages_rejected_total` | `status`, `reason` | messages refused: the status sent, or `dropped`; the proxy's short reason |
//! | `lifeline_messages_total` | `direction`, `kind` | SIP messages: `in` from the proxy's counters, `out` from [`Metrics::on_transmit`]; `request` or `response` |
//! | `lifeline_retransmissions_absorbed_total` | | request retransmissions answered by server transactions |
//! | `lifeline_journal_dropped_total` | | journal records dropped (the writer fell behind) |
//! | `lifeline_socket_drops_total` | | datagrams the kernel dropped at our sockets |
//! | `lifeline_input_queue_drops_total` | | inputs dropped because the core's queue was full |
//! | `lifeline_tcp_idle_closed_total` | | TCP connections closed after `tcp_idle_timeout` without traffic |
//! | `lifeline_core_busy_seconds_total` | | time the core (routing, one thread at a time) was busy: its rate is the core's utilisation, the gateway's headroom |
//! | `lifeline_metrics_untracked_calls_total` | | calls whose outcome could not be labelled (see below) |
//! | `lifeline_build_info` | `version` | 1 |
//!
//! # Labelling later events with a route
//!
//! Only `CallStarted` names the route and emergency rule; later events carry
//! a [`CallRef`]. [`Metrics`] keeps a map `CallRef -> (route, emergency)` from
//! `CallStarted` to the call's first final event (`CallConnected`,
//! `CallFailed`, `CallCancelled`), when the entry goes and the outcome is
//! counted once (a 2xx that races the caller's CANCEL produces a second final
//! event, which is not counted again). The map is capped at
//! [`MAX_TRACKED_CALLS`]: when full, entries older than [`STALE_AFTER`] (far
//! beyond Timer C, so calls whose final event was lost, e.g. across a
//! reload) are swept; if it is still full, the new call is not labelled and
//! `lifeline_metrics_untracked_calls_total` counts it. The journal, not
//! metrics, is the record of every call.

// The event loop (engine.rs) is written alongside this module and calls into
// it; until it calls every entry point, unused ones are expected.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lifeline_health::{Health, State};
use lifeline_proxy::{
    AttemptFailure, CallFailure, CallRef, Event, Proxy, SkipReason, Stats, TrunkId,
};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s output (Prometheus text 0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Calls labelled at once, at most (about 64 bytes each).
pub(crate) const MAX_TRACKED_CALLS: usize = 65_536;

/// A labelled call this old is assumed to have lost its final event.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(600);

/// Buckets of `lifeline_setup_seconds`: 10 ms to 10 s.
const SETUP_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0];

const OUTCOMES: [&str; 5] = ["connected", "failed", "cancelled", "rejected", "no_route"];

const STATES: [State; 4] = [State::Up, State::Suspect, State::Down, State::Recovering];

/// A trunk or route name as a label value: cloning it is a reference-count
/// increment, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Name(Arc<str>);

impl Name {
    fn new(s: &str) -> Self {
        Self(Arc::from(s))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// Trunk and route names, built once from the [`Proxy`] (and again after a
/// configuration reload) so events, which carry a [`TrunkId`], can be
/// labelled without allocating.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    trunks: Vec<Name>,
    routes: Vec<Name>,
}

impl Names {
    /// The names the proxy knows now.
    pub(crate) fn new(proxy: &Proxy) -> Self {
        let mut trunks = Vec::new();
        for t in proxy.health().trunks() {
            let i = t.id.index();
            if trunks.len() <= i {
                trunks.resize_with(i + 1, || Name::new(""));
            }
            trunks[i] = Name::new(t.name);
        }
        let routes = proxy.routes().map(|(name, _)| Name::new(name)).collect();
        Self { trunks, routes }
    }

    fn trunk(&self, id: TrunkId) -> Name {
        match self.trunks.get(id.index()) {
            Some(n) if !n.0.is_empty() => n.clone(),
            // A trunk added after the names were built: still counted.
            _ => Name::new(&format!("trunk-{}", id.index())),
        }
    }

    fn route(&self, name: &str) -> Name {
        if name.is_empty() {
            return Name::new("none");
        }
        match self.routes.iter().find(|r| r.as_str() == name) {
            Some(r) => r.clone(),
            None => Name::new(name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    route: Name,
    outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    rule: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TrunkLabels {
    trunk: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailoverLabels {
    trunk: Name,
    reason: Reason,
}

/// `lifeline_failovers_total`'s `reason`: a fixed name, or `response-<status>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Reason(AttemptFailure);

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        match self.0 {
            AttemptFailure::Response(code) => write!(encoder, "response-{code}"),
            other => encoder.write_str(other.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RescueLabels {
    trunk: Name,
    ringing: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SkipLabels {
    trunk: Name,
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProgressLabels {
    trunk: Name,
    from: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    trunk: Name,
    state: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateChangeLabels {
    trunk: Name,
    to: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EmergencyLabels {
    emergency: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectedLabels {
    status: Status,
    reason: &'static str,
}

/// A status code, or `dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Status(Option<u16>);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("dropped"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    direction: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type SetupFamily = Family<EmergencyLabels, Histogram, fn() -> Histogram>;

fn setup_histogram() -> Histogram {
    Histogram::new(SETUP_BUCKETS)
}

/// What is known about a call between `CallStarted` and its final event.
#[derive(Clone, Debug)]
struct CallMeta {
    route: Name,
    emergency: bool,
    started: Instant,
}

/// Totals for `/status` (the same counts as the labelled series, summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CallTotals {
    /// Calls started (CallStarted), including those that found no route.
    pub(crate) started: u64,
    /// Outcomes, counted once per call.
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    pub(crate) rejected: u64,
    pub(crate) no_route: u64,
    /// Emergency calls started, and those that failed or found no route.
    pub(crate) emergency: u64,
    pub(crate) emergency_failed: u64,
}

#[derive(Debug, Default)]
struct Totals {
    started: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
    no_route: AtomicU64,
    emergency: AtomicU64,
    emergency_failed: AtomicU64,
}

/// The proxy's cumulative counters as last seen by [`Metrics::set_gauges`],
/// to turn them into counter increments.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    requests: u64,
    responses: u64,
    retransmissions: u64,
}

/// Every series the daemon exports, and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    emergency_calls: Family<RuleLabels, Counter>,
    emergency_failed: Counter,
    attempts: Family<TrunkLabels, Counter>,
    failovers: Family<FailoverLabels, Counter>,
    late_responses: Family<TrunkLabels, Counter>,
    rescued: Family<RescueLabels, Counter>,
    hedged: Family<TrunkLabels, Counter>,
    trunk_skipped: Family<SkipLabels, Counter>,
    duplicate_answers: Family<TrunkLabels, Counter>,
    trunk_state: Family<StateLabels, Gauge>,
    trunk_drained: Family<TrunkLabels, Gauge>,
    state_changes: Family<StateChangeLabels, Counter>,
    rtt: Family<TrunkLabels, Gauge<f64, AtomicU64>>,
    rtt_max: Family<TrunkLabels, Gauge<f64, AtomicU64>>,
    progress: Family<ProgressLabels, Gauge<f64, AtomicU64>>,
    canary: Family<TrunkLabels, Gauge>,
    trunk_calls: Family<TrunkLabels, Gauge>,
    trunk_max_calls: Family<TrunkLabels, Gauge>,
    setup: SetupFamily,
    transactions: Family<KindLabels, Gauge>,
    calls_active: Gauge,
    dialogs: Gauge,
    rejected: Family<RejectedLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    retransmissions: Counter,
    journal_dropped: Counter,
    socket_drops: Counter,
    queue_drops: Counter,
    tcp_idle_closed: Counter,
    core_busy: Counter<f64, AtomicU64>,
    untracked: Counter,
    /// `lifeline_messages_total{direction="out"}` handles, resolved once.
    out_requests: Counter,
    out_responses: Counter,
    live: Mutex<HashMap<CallRef, CallMeta>>,
    seen: Mutex<Seen>,
    totals: Totals,
}

impl Metrics {
    /// Every series registered, at zero.
    pub(crate) fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("lifeline");
        let calls = Family::<CallLabels, Counter>::default();
        r.register(
            "calls",
            "Calls finished, by route and outcome (connected, failed, cancelled, rejected, no_route)",
            calls.clone(),
        );
        let emergency_calls = Family::<RuleLabels, Counter>::default();
        r.register(
            "emergency_calls",
            "Emergency calls started, by the rule that classified them",
            emergency_calls.clone(),
        );
        let emergency_failed = Counter::default();
        r.register(
            "emergency_calls_failed",
            "Emergency calls that did not connect (every trunk failed, or no route): callback list",
            emergency_failed.clone(),
        );
        let attempts = Family::<TrunkLabels, Counter>::default();
        r.register(
            "attempts",
            "INVITE attempts sent to a trunk",
            attempts.clone(),
        );
        let failovers = Family::<FailoverLabels, Counter>::default();
        r.register(
            "failovers",
            "Attempts given up, by trunk and reason (no-response, no-progress, transport-error, transaction-timeout, trunk-down, superseded, response-<status>)",
            failovers.clone(),
        );
        let late_responses = Family::<TrunkLabels, Counter>::default();
        r.register(
            "late_responses",
            "Responses arriving on attempts already given up",
            late_responses.clone(),
        );
        let rescued = Family::<RescueLabels, Counter>::default();
        r.register(
            "rescued",
            "Calls moved off a trunk at once because it went down while they waited (ringing: whether the caller heard ringing from it)",
            rescued.clone(),
        );
        let hedged = Family::<TrunkLabels, Counter>::default();
        r.register(
            "hedged",
            "Emergency calls given a parallel attempt on this trunk after hedge_after without ringing",
            hedged.clone(),
        );
        let trunk_skipped = Family::<SkipLabels, Counter>::default();
        r.register(
            "trunk_skipped",
            "Calls that passed a full trunk over, by the limit reached (max_calls, max_cps)",
            trunk_skipped.clone(),
        );
        let duplicate_answers = Family::<TrunkLabels, Counter>::default();
        r.register(
            "duplicate_answers",
            "Answers from a trunk on a call already answered through another, ended with a BYE",
            duplicate_answers.clone(),
        );
        let trunk_state = Family::<StateLabels, Gauge>::default();
        r.register(
            "trunk_state",
            "1 for the trunk's current measured state (up, suspect, down, recovering), 0 otherwise",
            trunk_state.clone(),
        );
        let trunk_drained = Family::<TrunkLabels, Gauge>::default();
        r.register(
            "trunk_drained",
            "1 while the trunk is administratively drained",
            trunk_drained.clone(),
        );
        let state_changes = Family::<StateChangeLabels, Counter>::default();
        r.register(
            "trunk_state_changes",
            "Measured trunk state changes, by the state entered",
            state_changes.clone(),
        );
        let rtt = Family::<TrunkLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "probe_rtt_seconds",
            "OPTIONS probe round-trip time, smoothed (EWMA 1/8)",
            rtt.clone(),
        );
        let rtt_max = Family::<TrunkLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "probe_rtt_max_seconds",
            "Largest OPTIONS probe round-trip time seen",
            rtt_max.clone(),
        );
        let progress = Family::<ProgressLabels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "trunk_progress_seconds",
            "What the trunk's calls usually take to ring (decaying 95th percentile), from the INVITE or from 100 Trying",
            progress.clone(),
        );
        let canary = Family::<TrunkLabels, Gauge>::default();
        r.register(
            "trunk_canary",
            "1 while the trunk is in its canary after recovering, taking a share of calls",
            canary.clone(),
        );
        let trunk_calls = Family::<TrunkLabels, Gauge>::default();
        r.register(
            "trunk_calls",
            "Calls on the trunk now (being set up, or answered and not ended)",
            trunk_calls.clone(),
        );
        let trunk_max_calls = Family::<TrunkLabels, Gauge>::default();
        r.register(
            "trunk_max_calls",
            "The trunk's configured max_calls (absent when unlimited)",
            trunk_max_calls.clone(),
        );
        let setup: SetupFamily = Family::new_with_constructor(setup_histogram);
        r.register(
            "setup_seconds",
            "Call setup time, INVITE arrival to 2xx forwarded, connected calls",
            setup.clone(),
        );
        let transactions = Family::<KindLabels, Gauge>::default();
        r.register(
            "transactions",
            "Live SIP transactions (server, client)",
            transactions.clone(),
        );
        let calls_active = Gauge::default();
        r.register(
            "calls_active",
            "Calls being set up or forwarded",
            calls_active.clone(),
        );
        let dialogs = Gauge::default();
        r.register(
            "dialogs",
            "Dialogs whose in-dialog requests the gateway routes",
            dialogs.clone(),
        );
        let rejected = Family::<RejectedLabels, Counter>::default();
        r.register(
            "messages_rejected",
            "Messages refused: the status sent (or dropped) and why",
            rejected.clone(),
        );
        let messages = Family::<MessageLabels, Counter>::default();
        r.register(
            "messages",
            "SIP messages received (in) and sent (out), requests and responses",
            messages.clone(),
        );
        let retransmissions = Counter::default();
        r.register(
            "retransmissions_absorbed",
            "Request retransmissions absorbed by server transactions",
            retransmissions.clone(),
        );
        let journal_dropped = Counter::default();
        r.register(
            "journal_dropped",
            "Journal records dropped because the writer fell behind",
            journal_dropped.clone(),
        );
        let socket_drops = Counter::default();
        r.register(
            "socket_drops",
            "Datagrams dropped by the kernel at the gateway's sockets",
            socket_drops.clone(),
        );
        let queue_drops = Counter::default();
        r.register(
            "input_queue_drops",
            "Inputs dropped because the core's queue was full",
            queue_drops.clone(),
        );
        let tcp_idle_closed = Counter::default();
        r.register(
            "tcp_idle_closed",
            "TCP connections closed after tcp_idle_timeout without traffic",
            tcp_idle_closed.clone(),
        );
        let core_busy = Counter::<f64, AtomicU64>::default();
        r.register(
            "core_busy_seconds",
            "Time the core (routing, one thread at a time) was busy; its rate is the core's utilisation",
            core_busy.clone(),
        );
        let untracked = Counter::default();
        r.register(
            "metrics_untracked_calls",
            "Calls whose outcome could not be labelled (the label map was full)",
            untracked.clone(),
        );
        r.register(
            "build",
            "Build information",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let out_requests = messages.get_or_create_owned(&MessageLabels {
            direction: "out",
            kind: "request",
        });
        let out_responses = messages.get_or_create_owned(&MessageLabels {
            direction: "out",
            kind: "response",
        });
        // Series that exist from the start, at zero.
        for kind in ["request", "response"] {
            drop(messages.get_or_create(&MessageLabels {
                direction: "in",
                kind,
            }));
        }
        for rule in ["sos-urn", "number", "resource-priority"] {
            drop(emergency_calls.get_or_create(&RuleLabels { rule }));
        }
        for kind in ["server", "client"] {
            drop(transactions.get_or_create(&KindLabels { kind }));
        }
        for emergency in ["true", "false"] {
            drop(setup.get_or_create(&EmergencyLabels { emergency }));
        }
        Arc::new(Self {
            registry: r,
            calls,
            emergency_calls,
            emergency_failed,
            attempts,
            failovers,
            late_responses,
            rescued,
            hedged,
            trunk_skipped,
            duplicate_answers,
            trunk_state,
            trunk_drained,
            state_changes,
            rtt,
            rtt_max,
            progress,
            canary,
            trunk_calls,
            trunk_max_calls,
            setup,
            transactions,
            calls_active,
            dialogs,
            rejected,
            messages,
            retransmissions,
            journal_dropped,
            socket_drops,
            queue_drops,
            tcp_idle_closed,
            core_busy,
            untracked,
            out_requests,
            out_responses,
            live: Mutex::new(HashMap::new()),
            seen: Mutex::new(Seen::default()),
            totals: Totals::default(),
        })
    }

    /// The names the proxy knows now, with the series the event loop will
    /// count for them created at zero (so `increase()` sees their first
    /// event). Call it at start and after every configuration reload.
    pub(crate) fn names(&self, proxy: &Proxy) -> Names {
        let names = Names::new(proxy);
        for trunk in &names.trunks {
            let labels = TrunkLabels {
                trunk: trunk.clone(),
            };
            drop(self.attempts.get_or_create(&labels));
            drop(self.late_responses.get_or_create(&labels));
            drop(self.hedged.get_or_create(&labels));
            drop(self.duplicate_answers.get_or_create(&labels));
            for ringing in ["true", "false"] {
                drop(self.rescued.get_or_create(&RescueLabels {
                    trunk: trunk.clone(),
                    ringing,
                }));
            }
            for reason in [SkipReason::MaxCalls, SkipReason::MaxCps] {
                drop(self.trunk_skipped.get_or_create(&SkipLabels {
                    trunk: trunk.clone(),
                    reason: reason.as_str(),
                }));
            }
        }
        for route in &names.routes {
            for outcome in OUTCOMES {
                drop(self.calls.get_or_create(&CallLabels {
                    route: route.clone(),
                    outcome,
                }));
            }
        }
        names
    }

    /// Count one event from [`Proxy::poll_event`].
    pub(crate) fn on_event(&self, ev: &Event, names: &Names) {
        match ev {
            Event::CallStarted { call, at, info } => {
                let emergency = info.emergency.is_some();
                self.totals.started.fetch_add(1, Ordering::Relaxed);
                if let Some(rule) = info.emergency {
                    self.totals.emergency.fetch_add(1, Ordering::Relaxed);
                    self.emergency_calls
                        .get_or_create(&RuleLabels {
                            rule: rule.as_str(),
                        })
                        .inc();
                }
                let meta = CallMeta {
                    route: names.route(&info.route),
                    emergency,
                    started: *at,
                };
                self.track(*call, meta);
            }
            Event::AttemptStarted { trunk, .. } => {
                self.attempts
                    .get_or_create(&TrunkLabels {
                        trunk: names.trunk(*trunk),
                    })
                    .inc();
            }
            Event::AttemptFailed { trunk, reason, .. } => {
                self.failovers
                    .get_or_create(&FailoverLabels {
                        trunk: names.trunk(*trunk),
                        reason: Reason(*reason),
                    })
                    .inc();
            }
            Event::CallConnected { call, setup, .. } => {
                if let Some(meta) = self.finish(*call, "connected", &self.totals.connected) {
                    let emergency = if meta.emergency { "true" } else { "false" };
                    self.setup
                        .get_or_create(&EmergencyLabels { emergency })
                        .observe(setup.as_secs_f64());
                }
            }
            Event::CallFailed { call, reason, .. } => {
                let (outcome, total) = match reason {
                    CallFailure::AllTrunksFailed => ("failed", &self.totals.failed),
                    CallFailure::NoRoute => ("no_route", &self.totals.no_route),
                    CallFailure::Rejected => ("rejected", &self.totals.rejected),
                };
                let meta = self.finish(*call, outcome, total);
                // The callee's own refusal (486, 603) is an answer, not a
                // failure of the gateway: only the other two need a callback.
                if meta.is_some_and(|m| m.emergency) && *reason != CallFailure::Rejected {
                    self.emergency_failed.inc();
                    self.totals.emergency_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::CallCancelled { call, .. } => {
                self.finish(*call, "cancelled", &self.totals.cancelled);
            }
            Event::LateResponse { trunk, .. } => {
                self.late_responses
                    .get_or_create(&TrunkLabels {
                        trunk: names.trunk(*trunk),
                    })
                    .inc();
            }
            Event::Trunk(t) => {
                let trunk = names.trunk(t.trunk);
                match t.kind {
                    lifeline_health::EventKind::State { to, .. } => {
                        self.state_changes
                            .get_or_create(&StateChangeLabels {
                                trunk: trunk.clone(),
                                to: to.as_str(),
                            })
                            .inc();
                        self.set_state(&trunk, to);
                    }
                    lifeline_health::EventKind::Drained => {
                        self.trunk_drained
                            .get_or_create(&TrunkLabels { trunk })
                            .set(1);
                    }
                    lifeline_health::EventKind::Undrained => {
                        self.trunk_drained
                            .get_or_create(&TrunkLabels { trunk })
                            .set(0);
                    }
                    lifeline_health::EventKind::CanaryStarted { .. } => {
                        self.canary.get_or_create(&TrunkLabels { trunk }).set(1);
                    }
                    lifeline_health::EventKind::CanaryEnded { .. } => {
                        self.canary.get_or_create(&TrunkLabels { trunk }).set(0);
                    }
                }
            }
            Event::Rescued { trunk, ringing, .. } => {
                self.rescued
                    .get_or_create(&RescueLabels {
                        trunk: names.trunk(*trunk),
                        ringing: if *ringing { "true" } else { "false" },
                    })
                    .inc();
            }
            Event::Hedged { trunk, .. } => {
                self.hedged
                    .get_or_create(&TrunkLabels {
                        trunk: names.trunk(*trunk),
                    })
                    .inc();
            }
            Event::TrunkSkipped { trunk, reason, .. } => {
                self.trunk_skipped
                    .get_or_create(&SkipLabels {
                        trunk: names.trunk(*trunk),
                        reason: reason.as_str(),
                    })
                    .inc();
            }
            Event::DuplicateAnswer { trunk, .. } => {
                self.duplicate_answers
                    .get_or_create(&TrunkLabels {
                        trunk: names.trunk(*trunk),
                    })
                    .inc();
            }
            Event::Rejected { status, reason, .. } => {
                self.rejected
                    .get_or_create(&RejectedLabels {
                        status: Status(*status),
                        reason,
                    })
                    .inc();
            }
        }
    }

    /// Refresh the gauges (and the counters the proxy keeps cumulatively)
    /// from the proxy's and the health checker's current view. Call it on a
    /// regular tick, about once a second.
    pub(crate) fn set_gauges(&self, stats: &Stats, health: &Health) {
        for kind in ["server", "client"] {
            let n = if kind == "server" {
                stats.server_transactions
            } else {
                stats.client_transactions
            };
            self.transactions
                .get_or_create(&KindLabels { kind })
                .set(to_i64(n));
        }
        self.calls_active.set(to_i64(stats.calls));
        self.dialogs.set(to_i64(stats.dialogs));
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let inc = |old: &mut u64, now: u64, c: &Counter| {
                // A smaller value means a new proxy (reload or restart of the
                // core): count everything it has seen.
                c.inc_by(now.checked_sub(*old).unwrap_or(now));
                *old = now;
            };
            let received = |kind| MessageLabels {
                direction: "in",
                kind,
            };
            inc(
                &mut seen.requests,
                stats.requests,
                &self.messages.get_or_create_owned(&received("request")),
            );
            inc(
                &mut seen.responses,
                stats.responses,
                &self.messages.get_or_create_owned(&received("response")),
            );
            inc(
                &mut seen.retransmissions,
                stats.retransmissions_absorbed,
                &self.retransmissions,
            );
        }
        for t in health.trunks() {
            let trunk = Name::new(t.name);
            self.set_state(&trunk, t.state);
            self.trunk_drained
                .get_or_create(&TrunkLabels {
                    trunk: trunk.clone(),
                })
                .set(i64::from(t.drained));
            for (from, value) in [
                ("invite", t.progress.invite_to_ringing),
                ("trying", t.progress.trying_to_ringing),
            ] {
                let labels = ProgressLabels {
                    trunk: trunk.clone(),
                    from,
                };
                if let Some(d) = value {
                    self.progress.get_or_create(&labels).set(d.as_secs_f64());
                } else {
                    // Not learned (yet, or again after a reload): no series
                    // rather than a made-up value.
                    self.progress.remove(&labels);
                }
            }
            let labels = TrunkLabels { trunk };
            self.canary
                .get_or_create(&labels)
                .set(i64::from(t.canary_until.is_some()));
            if let Some(ewma) = t.rtt.ewma {
                self.rtt.get_or_create(&labels).set(ewma.as_secs_f64());
            }
            if let Some(max) = t.rtt.max {
                self.rtt_max.get_or_create(&labels).set(max.as_secs_f64());
            }
        }
    }

    /// Refresh `lifeline_trunk_calls` from the proxy's count of calls on
    /// each trunk. Call it on the same tick as [`Metrics::set_gauges`].
    pub(crate) fn set_trunk_calls(&self, proxy: &Proxy) {
        for t in proxy.health().trunks() {
            self.trunk_calls
                .get_or_create(&TrunkLabels {
                    trunk: Name::new(t.name),
                })
                .set(i64::from(proxy.trunk_calls(t.id)));
        }
    }

    /// The configured `max_calls` of each trunk (by name; `None`: unlimited,
    /// no series). Call it at start and after every reload.
    pub(crate) fn set_max_calls<'a>(
        &self,
        limits: impl IntoIterator<Item = (&'a str, Option<u32>)>,
    ) {
        self.trunk_max_calls.clear();
        for (trunk, max) in limits {
            if let Some(max) = max {
                self.trunk_max_calls
                    .get_or_create(&TrunkLabels {
                        trunk: Name::new(trunk),
                    })
                    .set(i64::from(max));
            }
        }
    }

    /// Count a message the event loop sent (requests and responses are told
    /// apart by the status line).
    pub(crate) fn on_transmit(&self, payload: &[u8]) {
        if payload.starts_with(b"SIP/2.0 ") {
            self.out_responses.inc();
        } else {
            self.out_requests.inc();
        }
    }

    /// Journal records dropped since the last call.
    pub(crate) fn add_journal_dropped(&self, n: u64) {
        self.journal_dropped.inc_by(n);
    }

    /// Datagrams the kernel dropped since the last call (e.g. the change in
    /// `SO_RXQ_OVFL` or `/proc/net/udp` drops).
    pub(crate) fn add_socket_drops(&self, n: u64) {
        self.socket_drops.inc_by(n);
    }

    /// Inputs the IO side dropped since the last call because the core
    /// thread's queue was full.
    pub(crate) fn add_queue_drops(&self, n: u64) {
        self.queue_drops.inc_by(n);
    }

    /// TCP connections closed for idleness since the last call.
    pub(crate) fn add_tcp_idle_closed(&self, n: u64) {
        self.tcp_idle_closed.inc_by(n);
    }

    /// The core was busy this many more seconds.
    pub(crate) fn add_core_busy(&self, seconds: f64) {
        self.core_busy.inc_by(seconds);
    }

    /// Call totals for `/status`.
    pub(crate) fn call_totals(&self) -> CallTotals {
        let t = &self.totals;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CallTotals {
            started: get(&t.started),
            connected: get(&t.connected),
            failed: get(&t.failed),
            cancelled: get(&t.cancelled),
            rejected: get(&t.rejected),
            no_route: get(&t.no_route),
            emergency: get(&t.emergency),
            emergency_failed: get(&t.emergency_failed),
        }
    }

    /// Calls labelled now (waiting for their final event).
    pub(crate) fn tracked_calls(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The Prometheus text exposition (version 0.0.4) of every series.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail; an encoder error would leave a
        // truncated page, which the scraper reports.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    fn set_state(&self, trunk: &Name, state: State) {
        for s in STATES {
            self.trunk_state
                .get_or_create(&StateLabels {
                    trunk: trunk.clone(),
                    state: s.as_str(),
                })
                .set(i64::from(s == state));
        }
    }

    fn track(&self, call: CallRef, meta: CallMeta) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.len() >= MAX_TRACKED_CALLS && !live.contains_key(&call) {
            let now = meta.started;
            live.retain(|_, m| now.saturating_duration_since(m.started) < STALE_AFTER);
            if live.len() >= MAX_TRACKED_CALLS {
                self.untracked.inc();
                return;
            }
        }
        live.insert(call, meta);
    }

    /// The call's first final event: count its outcome and forget it.
    fn finish(&self, call: CallRef, outcome: &'static str, total: &AtomicU64) -> Option<CallMeta> {
        let meta = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&call)?;
        total.fetch_add(1, Ordering::Relaxed);
        self.calls
            .get_or_create(&CallLabels {
                route: meta.route.clone(),
                outcome,
            })
            .inc();
        Some(meta)
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A real [`Proxy`] on virtual time with scripted peers, for the metrics and
/// admin tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use lifeline_proxy::{
        Event, Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig,
    };
    use lifeline_sip::{HeaderName, Message, MessageWriter};

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
            let msg = format!(
                "INVITE {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:alice@example.net>;tag=a-{id}\r\n\
                 To: <{uri}>\r\n\
                 Call-ID: {id}\r\n\
                 CSeq: 1 INVITE\r\n\
                 Contact: <sip:alice@{CALLER}>\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            self.receive(CALLER, msg);
        }

        /// The caller CANCELs its INVITE.
        pub(crate) fn cancel(&mut self, id: &str, uri: &str) {
            let msg = format!(
                "CANCEL {uri} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:alice@example.net>;tag=a-{id}\r\n\
                 To: <{uri}>\r\n\
                 Call-ID: {id}\r\n\
                 CSeq: 1 CANCEL\r\n\
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
            let to = addr(trunk);
            let invite = self
                .sent
                .iter()
                .rev()
                .filter(|(a, p)| *a == to && p.starts_with(b"INVITE "))
                .map(|(_, p)| Message::parse(p.clone()).unwrap())
                .find(|m| m.call_id() == Some(id.as_bytes()))
                .unwrap_or_else(|| panic!("no INVITE for {id} at {trunk}"));
            let mut w = MessageWriter::response_to(&invite, code, reason, Some(b"t-1")).unwrap();
            for h in invite
                .headers()
                .filter(|h| h.name == HeaderName::RecordRoute)
            {
                w.raw_header(h.raw_name, h.value).unwrap();
            }
            if (200..300).contains(&code) {
                w.header(
                    HeaderName::Contact,
                    format!("<sip:callee@{trunk}>").as_bytes(),
                )
                .unwrap();
            }
            let bytes = w.finish();
            self.receive(trunk, String::from_utf8(bytes.to_vec()).unwrap());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use lifeline_proxy::{
        AttemptFailure, CallFailure, CallInfo, CallRef, EmergencyRule, Event, Location, Peer,
        SkipReason, Stats,
    };

    use super::testing::{Bench, BACKUP, PRIMARY};
    use super::{Metrics, Names, MAX_TRACKED_CALLS, STALE_AFTER};

    /// The value of the series written exactly as `series` (name and labels).
    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    fn assert_series(page: &str, series: &str, want: f64) {
        assert_eq!(value(page, series), Some(want), "{series} in:\n{page}");
    }

    /// Every outcome, failover reason and trunk event, from a real proxy.
    fn scripted_calls(b: &mut Bench) {
        // 1: ordinary call refused by the callee.
        b.invite("c1", "sip:bob@example.org");
        b.answer(PRIMARY, "c1", 486, "Busy Here");
        // 2: ordinary call, ringing, cancelled by the caller.
        b.invite("c2", "sip:carol@example.org");
        b.answer(PRIMARY, "c2", 180, "Ringing");
        b.cancel("c2", "sip:carol@example.org");
        // 3: emergency; the primary answers 503 (it turns suspect), the
        // backup 200 after 80 ms.
        b.invite("c3", "urn:service:sos");
        b.advance(30);
        b.answer(PRIMARY, "c3", 503, "Service Unavailable");
        b.advance(50);
        b.answer(BACKUP, "c3", 200, "OK");
        // 4: emergency; the primary says nothing (failover after 200 ms; its
        // second failure: down), rings late, and the backup answers 503:
        // every trunk failed.
        b.invite("c4", "sip:999@gw.example.net");
        b.advance(200);
        b.answer(PRIMARY, "c4", 180, "Ringing");
        b.answer(BACKUP, "c4", 503, "Service Unavailable");
        // A request refused outright.
        b.too_many_hops();
    }

    #[test]
    fn scripted_calls_through_a_real_proxy() {
        let mut b = Bench::new(true);
        let m = Metrics::new();
        let names = m.names(&b.proxy);
        scripted_calls(&mut b);
        let backup = b.proxy.health().find("backup").unwrap();
        b.proxy.health_mut().drain(b.now, backup);
        b.advance(1);
        for ev in b.take_events() {
            m.on_event(&ev, &names);
        }
        m.set_gauges(&b.proxy.stats(), b.proxy.health());
        let page = m.encode();

        let calls = |route: &str, outcome: &str| {
            format!("lifeline_calls_total{{route=\"{route}\",outcome=\"{outcome}\"}}")
        };
        assert_series(&page, &calls("emergency", "connected"), 1.0);
        assert_series(&page, &calls("emergency", "failed"), 1.0);
        assert_series(&page, &calls("default", "rejected"), 1.0);
        assert_series(&page, &calls("default", "cancelled"), 1.0);
        assert_series(&page, &calls("default", "connected"), 0.0);
        assert_series(&page, &calls("emergency", "no_route"), 0.0);
        assert_series(
            &page,
            "lifeline_emergency_calls_total{rule=\"sos-urn\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_emergency_calls_total{rule=\"number\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_emergency_calls_total{rule=\"resource-priority\"}",
            0.0,
        );
        assert_series(&page, "lifeline_emergency_calls_failed_total", 1.0);
        assert_series(&page, "lifeline_attempts_total{trunk=\"primary\"}", 4.0);
        assert_series(&page, "lifeline_attempts_total{trunk=\"backup\"}", 2.0);
        assert_series(
            &page,
            "lifeline_failovers_total{trunk=\"primary\",reason=\"response-503\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_failovers_total{trunk=\"primary\",reason=\"no-response\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_failovers_total{trunk=\"backup\",reason=\"response-503\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_late_responses_total{trunk=\"primary\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_late_responses_total{trunk=\"backup\"}",
            0.0,
        );
        // Setup of call 1: 80 ms, in the 0.1 s bucket and not the 0.05 one.
        assert_series(
            &page,
            "lifeline_setup_seconds_bucket{emergency=\"true\",le=\"0.05\"}",
            0.0,
        );
        assert_series(
            &page,
            "lifeline_setup_seconds_bucket{emergency=\"true\",le=\"0.1\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_setup_seconds_count{emergency=\"true\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_setup_seconds_count{emergency=\"false\"}",
            0.0,
        );
        let sum = value(&page, "lifeline_setup_seconds_sum{emergency=\"true\"}").unwrap();
        assert!((sum - 0.08).abs() < 1e-9, "{sum}");
        assert_series(
            &page,
            "lifeline_messages_rejected_total{status=\"483\",reason=\"too many hops\"}",
            1.0,
        );
        for (state, want) in [
            ("up", 0.0),
            ("suspect", 0.0),
            ("down", 1.0),
            ("recovering", 0.0),
        ] {
            assert_series(
                &page,
                &format!("lifeline_trunk_state{{trunk=\"primary\",state=\"{state}\"}}"),
                want,
            );
        }
        assert_series(
            &page,
            "lifeline_trunk_state{trunk=\"backup\",state=\"suspect\"}",
            1.0,
        );
        for (trunk, to) in [
            ("primary", "suspect"),
            ("primary", "down"),
            ("backup", "suspect"),
        ] {
            assert_series(
                &page,
                &format!("lifeline_trunk_state_changes_total{{trunk=\"{trunk}\",to=\"{to}\"}}"),
                1.0,
            );
        }
        assert_series(&page, "lifeline_trunk_drained{trunk=\"backup\"}", 1.0);
        assert_series(&page, "lifeline_trunk_drained{trunk=\"primary\"}", 0.0);
        let st = b.proxy.stats();
        assert_series(
            &page,
            "lifeline_messages_total{direction=\"in\",kind=\"request\"}",
            st.requests as f64,
        );
        assert_series(
            &page,
            "lifeline_messages_total{direction=\"in\",kind=\"response\"}",
            st.responses as f64,
        );
        assert_series(
            &page,
            "lifeline_transactions{kind=\"server\"}",
            st.server_transactions as f64,
        );
        assert_series(&page, "lifeline_calls_active", st.calls as f64);
        assert_series(&page, "lifeline_dialogs", st.dialogs as f64);
        assert_series(
            &page,
            &format!(
                "lifeline_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        );

        let t = m.call_totals();
        assert_eq!(
            (t.started, t.connected, t.failed, t.rejected, t.cancelled),
            (4, 1, 1, 1, 1)
        );
        assert_eq!((t.emergency, t.emergency_failed), (2, 1));
        assert_eq!(m.tracked_calls(), 0, "every finished call is forgotten");
    }

    #[test]
    fn a_call_without_a_route_counts_as_no_route() {
        // Only the emergency route: an ordinary call finds none.
        let mut b = Bench::new(false);
        let m = Metrics::new();
        let names = m.names(&b.proxy);
        b.invite("n1", "sip:bob@example.org");
        for ev in b.take_events() {
            m.on_event(&ev, &names);
        }
        let page = m.encode();
        assert_series(
            &page,
            "lifeline_calls_total{route=\"none\",outcome=\"no_route\"}",
            1.0,
        );
        assert_series(&page, "lifeline_emergency_calls_failed_total", 0.0);
        assert_series(
            &page,
            "lifeline_messages_rejected_total{status=\"404\",reason=\"no route\"}",
            1.0,
        );
    }

    fn started(call: u64, at: Instant, emergency: Option<EmergencyRule>, route: &str) -> Event {
        let source = Peer::udp(SocketAddr::from(([127, 0, 0, 9], 5070)));
        Event::CallStarted {
            call: CallRef(call),
            at,
            info: Box::new(CallInfo {
                call_id: Bytes::from_static(b"x"),
                from_uri: Bytes::from_static(b"sip:a@b"),
                from_display: None,
                asserted_identities: vec![],
                dialled: Bytes::from_static(b"urn:service:sos"),
                emergency,
                location: Location::default(),
                route: route.into(),
                source,
            }),
        }
    }

    #[test]
    fn a_second_final_event_is_not_counted_again() {
        // A 2xx racing the caller's CANCEL: cancelled, then connected.
        let m = Metrics::new();
        let names = Names::default();
        let t0 = Instant::now();
        m.on_event(
            &started(1, t0, Some(EmergencyRule::SosUrn), "emergency"),
            &names,
        );
        m.on_event(
            &Event::CallCancelled {
                call: CallRef(1),
                at: t0,
            },
            &names,
        );
        m.on_event(
            &Event::CallFailed {
                call: CallRef(1),
                at: t0,
                status: 503,
                reason: CallFailure::AllTrunksFailed,
            },
            &names,
        );
        let page = m.encode();
        assert_series(
            &page,
            "lifeline_calls_total{route=\"emergency\",outcome=\"cancelled\"}",
            1.0,
        );
        assert_eq!(
            value(
                &page,
                "lifeline_calls_total{route=\"emergency\",outcome=\"failed\"}"
            ),
            None
        );
        assert_series(&page, "lifeline_emergency_calls_failed_total", 0.0);
    }

    #[test]
    fn the_call_map_is_bounded_and_sweeps_stale_calls() {
        let m = Metrics::new();
        let names = Names::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_CALLS as u64 {
            m.on_event(&started(i, t0, None, "default"), &names);
        }
        assert_eq!(m.tracked_calls(), MAX_TRACKED_CALLS);
        // Full of live calls: the next one is not labelled.
        m.on_event(
            &started(u64::MAX, t0 + Duration::from_secs(1), None, "default"),
            &names,
        );
        assert_eq!(m.tracked_calls(), MAX_TRACKED_CALLS);
        assert_series(&m.encode(), "lifeline_metrics_untracked_calls_total", 1.0);
        // Much later, the old ones are swept to make room.
        let later = t0 + STALE_AFTER + Duration::from_secs(1);
        m.on_event(&started(u64::MAX - 1, later, None, "default"), &names);
        assert_eq!(m.tracked_calls(), 1);
        m.on_event(
            &Event::CallFailed {
                call: CallRef(u64::MAX - 1),
                at: later,
                status: 486,
                reason: CallFailure::Rejected,
            },
            &names,
        );
        assert_series(
            &m.encode(),
            "lifeline_calls_total{route=\"default\",outcome=\"rejected\"}",
            1.0,
        );
    }

    #[test]
    fn failover_reasons_and_rejections_as_labels() {
        let b = Bench::new(true);
        let m = Metrics::new();
        let names = m.names(&b.proxy);
        let primary = b.proxy.health().find("primary").unwrap();
        let now = b.now;
        for reason in [
            AttemptFailure::NoProgress,
            AttemptFailure::TransportError,
            AttemptFailure::TransactionTimeout,
            AttemptFailure::Response(408),
        ] {
            m.on_event(
                &Event::AttemptFailed {
                    call: CallRef(1),
                    at: now,
                    trunk: primary,
                    reason,
                    elapsed: Duration::ZERO,
                },
                &names,
            );
        }
        m.on_event(
            &Event::Rejected {
                at: now,
                from: Peer::udp(SocketAddr::from(([127, 0, 0, 9], 5070))),
                status: None,
                reason: "malformed response",
            },
            &names,
        );
        let page = m.encode();
        for reason in [
            "no-progress",
            "transport-error",
            "transaction-timeout",
            "response-408",
        ] {
            assert_series(
                &page,
                &format!("lifeline_failovers_total{{trunk=\"primary\",reason=\"{reason}\"}}"),
                1.0,
            );
        }
        assert_series(
            &page,
            "lifeline_messages_rejected_total{status=\"dropped\",reason=\"malformed response\"}",
            1.0,
        );
    }

    #[test]
    fn rescues_hedges_full_trunks_and_second_answers() {
        let mut b = Bench::new(true);
        let m = Metrics::new();
        let names = m.names(&b.proxy);
        let primary = b.proxy.health().find("primary").unwrap();
        let backup = b.proxy.health().find("backup").unwrap();
        let (call, at) = (CallRef(1), b.now);
        // Created at zero for every trunk, so increase() sees the first one.
        let page = m.encode();
        for series in [
            "lifeline_rescued_total{trunk=\"backup\",ringing=\"true\"}",
            "lifeline_rescued_total{trunk=\"backup\",ringing=\"false\"}",
            "lifeline_hedged_total{trunk=\"primary\"}",
            "lifeline_trunk_skipped_total{trunk=\"backup\",reason=\"max_calls\"}",
            "lifeline_trunk_skipped_total{trunk=\"backup\",reason=\"max_cps\"}",
            "lifeline_duplicate_answers_total{trunk=\"primary\"}",
        ] {
            assert_series(&page, series, 0.0);
        }
        let events = [
            Event::Rescued {
                call,
                at,
                trunk: primary,
                ringing: true,
            },
            Event::Rescued {
                call,
                at,
                trunk: primary,
                ringing: true,
            },
            Event::Rescued {
                call,
                at,
                trunk: backup,
                ringing: false,
            },
            Event::Hedged {
                call,
                at,
                trunk: backup,
            },
            Event::TrunkSkipped {
                call,
                at,
                trunk: primary,
                reason: SkipReason::MaxCalls,
            },
            Event::TrunkSkipped {
                call,
                at,
                trunk: primary,
                reason: SkipReason::MaxCps,
            },
            Event::DuplicateAnswer {
                call,
                at,
                trunk: primary,
            },
            Event::AttemptFailed {
                call,
                at,
                trunk: primary,
                reason: AttemptFailure::TrunkDown,
                elapsed: Duration::ZERO,
            },
            Event::AttemptFailed {
                call,
                at,
                trunk: backup,
                reason: AttemptFailure::Superseded,
                elapsed: Duration::ZERO,
            },
            Event::Trunk(lifeline_health::Event {
                trunk: backup,
                at,
                kind: lifeline_health::EventKind::CanaryStarted {
                    until: at + Duration::from_secs(10),
                },
            }),
        ];
        for ev in &events {
            m.on_event(ev, &names);
        }
        let page = m.encode();
        for (series, want) in [
            (
                "lifeline_rescued_total{trunk=\"primary\",ringing=\"true\"}",
                2.0,
            ),
            (
                "lifeline_rescued_total{trunk=\"primary\",ringing=\"false\"}",
                0.0,
            ),
            (
                "lifeline_rescued_total{trunk=\"backup\",ringing=\"false\"}",
                1.0,
            ),
            ("lifeline_hedged_total{trunk=\"backup\"}", 1.0),
            ("lifeline_hedged_total{trunk=\"primary\"}", 0.0),
            (
                "lifeline_trunk_skipped_total{trunk=\"primary\",reason=\"max_calls\"}",
                1.0,
            ),
            (
                "lifeline_trunk_skipped_total{trunk=\"primary\",reason=\"max_cps\"}",
                1.0,
            ),
            ("lifeline_duplicate_answers_total{trunk=\"primary\"}", 1.0),
            (
                "lifeline_failovers_total{trunk=\"primary\",reason=\"trunk-down\"}",
                1.0,
            ),
            (
                "lifeline_failovers_total{trunk=\"backup\",reason=\"superseded\"}",
                1.0,
            ),
            ("lifeline_trunk_canary{trunk=\"backup\"}", 1.0),
        ] {
            assert_series(&page, series, want);
        }
        m.on_event(
            &Event::Trunk(lifeline_health::Event {
                trunk: backup,
                at,
                kind: lifeline_health::EventKind::CanaryEnded { passed: true },
            }),
            &names,
        );
        assert_series(&m.encode(), "lifeline_trunk_canary{trunk=\"backup\"}", 0.0);

        // Per-trunk gauges from the proxy: calls now, the configured limit,
        // the canary and what the trunk's calls take to ring, as health
        // reports them (progress only once it is known).
        b.proxy
            .health_mut()
            .record_progress(primary, Duration::from_millis(120), None);
        b.advance(1);
        m.set_gauges(&b.proxy.stats(), b.proxy.health());
        m.set_trunk_calls(&b.proxy);
        m.set_max_calls([("primary", Some(100)), ("backup", None)]);
        let page = m.encode();
        for id in [primary, backup] {
            let t = b.proxy.health().trunk(id).unwrap();
            let name = t.name;
            assert_series(
                &page,
                &format!("lifeline_trunk_calls{{trunk=\"{name}\"}}"),
                f64::from(b.proxy.trunk_calls(id)),
            );
            assert_series(
                &page,
                &format!("lifeline_trunk_canary{{trunk=\"{name}\"}}"),
                if t.canary_until.is_some() { 1.0 } else { 0.0 },
            );
            for (from, d) in [
                ("invite", t.progress.invite_to_ringing),
                ("trying", t.progress.trying_to_ringing),
            ] {
                let series =
                    format!("lifeline_trunk_progress_seconds{{trunk=\"{name}\",from=\"{from}\"}}");
                assert_eq!(
                    value(&page, &series),
                    d.map(|d| d.as_secs_f64()),
                    "{series}"
                );
            }
        }
        assert_series(&page, "lifeline_trunk_max_calls{trunk=\"primary\"}", 100.0);
        assert_eq!(
            value(&page, "lifeline_trunk_max_calls{trunk=\"backup\"}"),
            None
        );
        // A reload that lifts the limit removes the series.
        m.set_max_calls([("primary", None), ("backup", Some(5))]);
        let page = m.encode();
        assert_eq!(
            value(&page, "lifeline_trunk_max_calls{trunk=\"primary\"}"),
            None
        );
        assert_series(&page, "lifeline_trunk_max_calls{trunk=\"backup\"}", 5.0);
    }

    #[test]
    fn gauges_counters_from_stats_and_the_loops_own_counters() {
        let b = Bench::new(true);
        let m = Metrics::new();
        let stats = Stats {
            requests: 10,
            responses: 4,
            retransmissions_absorbed: 2,
            server_transactions: 3,
            client_transactions: 5,
            calls: 7,
            dialogs: 1,
            ..Stats::default()
        };
        m.set_gauges(&stats, b.proxy.health());
        m.set_gauges(
            &Stats {
                requests: 15,
                ..stats
            },
            b.proxy.health(),
        );
        // A new proxy (reload) starts its counters from zero again.
        m.set_gauges(
            &Stats {
                requests: 3,
                ..stats
            },
            b.proxy.health(),
        );
        m.on_transmit(b"INVITE sip:x SIP/2.0\r\n");
        m.on_transmit(b"SIP/2.0 100 Trying\r\n");
        m.on_transmit(b"SIP/2.0 180 Ringing\r\n");
        m.add_socket_drops(7);
        m.add_journal_dropped(2);
        m.add_queue_drops(3);
        m.add_tcp_idle_closed(4);
        m.add_core_busy(0.25);
        let page = m.encode();
        assert_series(
            &page,
            "lifeline_messages_total{direction=\"in\",kind=\"request\"}",
            18.0,
        );
        assert_series(
            &page,
            "lifeline_messages_total{direction=\"out\",kind=\"request\"}",
            1.0,
        );
        assert_series(
            &page,
            "lifeline_messages_total{direction=\"out\",kind=\"response\"}",
            2.0,
        );
        assert_series(&page, "lifeline_retransmissions_absorbed_total", 2.0);
        assert_series(&page, "lifeline_transactions{kind=\"client\"}", 5.0);
        assert_series(&page, "lifeline_calls_active", 7.0);
        assert_series(&page, "lifeline_socket_drops_total", 7.0);
        assert_series(&page, "lifeline_journal_dropped_total", 2.0);
        assert_series(&page, "lifeline_input_queue_drops_total", 3.0);
        assert_series(&page, "lifeline_tcp_idle_closed_total", 4.0);
        assert_series(&page, "lifeline_core_busy_seconds_total", 0.25);
        for state in ["up", "suspect", "down", "recovering"] {
            let want = if state == "up" { 1.0 } else { 0.0 };
            assert_series(
                &page,
                &format!("lifeline_trunk_state{{trunk=\"backup\",state=\"{state}\"}}"),
                want,
            );
        }
        // No probe answered yet: no RTT series.
        assert!(!page.contains("lifeline_probe_rtt_seconds{"), "{page}");
        assert!(page.contains("# TYPE lifeline_setup_seconds histogram"));
    }
}
