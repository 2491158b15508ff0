//! Prometheus metrics for the daemon, fed by the event loop.
//!
//! The event loop owns the [`Proxy`](lifeline_proxy::Proxy); it hands every
//! [`Event`](lifeline_proxy::Event) it drains to
//! [`Metrics::on_event`], calls [`Metrics::set_gauges`] and
//! [`Metrics::set_trunk_calls`] and [`Metrics::set_routes`] on a regular
//! tick (once a second is plenty),
//! tells [`Metrics::set_max_calls`] the configured limits (at start and after
//! a reload), and bumps the counters only it can see
//! ([`Metrics::add_socket_drops`], [`Metrics::add_queue_drops`],
//! [`Metrics::add_journal_dropped`], [`Metrics::add_tcp_idle_closed`], [`Metrics::add_transmitted`],
//! [`Metrics::add_send_errors`]); [`Metrics::set_tcp`] reads the IO side's
//! TCP gauge and counters on the same tick, [`Metrics::set_capture`] its
//! capture counters. The admin server calls [`Metrics::encode`] for
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
//! | `lifeline_failovers_total` | `trunk`, `reason` | attempts given up: `no-response`, `no-progress`, `transport-error`, `transaction-timeout`, `trunk-down` (the trunk went Down while the attempt waited), `superseded` (a hedge that lost: the call was answered through another trunk), or `response-<status>` (`response-503`); every reason but `response-<status>` is there from the start, at zero, for each trunk |
//! | `lifeline_rescued_total` | `trunk`, `ringing` | calls moved off a trunk at once because it went Down while they waited (a call moved by one ICMP or TCP error that answered its own request counts as a failover, `reason="transport-error"`); `ringing="true"` if the caller already heard ringing from it |
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
//! | `lifeline_route_usable_trunks` | `route` | trunks of the route that take new calls now (up or suspect, not drained): 0 means ordinary calls on the route fail and emergency calls try down trunks (`/status`'s `usable: false`) |
//! | `lifeline_setup_seconds` | `emergency` | INVITE arrival to 2xx forwarded, connected calls only (`"true"`/`"false"`) |
//! | `lifeline_transactions` | `kind` | live `server` and `client` transactions |
//! | `lifeline_transactions_lingering` | | of those, transactions past their final response kept only to absorb retransmissions (about 200 B each, 32 s at most; docs/PERFORMANCE.md) |
//! | `lifeline_udp_syscalls_total` | `direction` | UDP receive (`in`: `recvmmsg`) and send (`out`: `sendmmsg`, `sendto`) system calls |
//! | `lifeline_udp_datagrams_total` | `direction` | datagrams those calls moved: datagrams per call is how much batching the load allows |
//! | `lifeline_calls_active` | | calls being set up or forwarded |
//! | `lifeline_dialogs` | | dialogs whose in-dialog requests the gateway routes |
//! | `lifeline_messages_rejected_total` | `status`, `reason` | messages refused: the status sent, or `dropped`; the proxy's short reason (among them `status="dropped",reason="response from wrong peer"`: a response, or a probe's answer, from another address than its request went to; `status="481",reason="unknown dialog"`: an in-dialog request whose token names no dialog, or that has none; `status="403",reason="not a peer of the dialog"`) |
//! | `lifeline_rejected_total` | `reason` | the same messages by reason alone, answered or dropped: `access` (a request from outside `access.callers`), `malformed`, `malformed response`, `control character`, `control character in response`, `unknown dialog`, `no route` ... |
//! | `lifeline_messages_total` | `direction`, `kind` | SIP messages: `in` from the proxy's counters, `out` from the IO side's (every message sent, by [`Metrics::add_transmitted`]); `request` or `response` |
//! | `lifeline_retransmissions_absorbed_total` | | request retransmissions answered by server transactions |
//! | `lifeline_journal_dropped_total` | | journal records lost: the writer's queue was full, the writer had stopped, or the disk failed for longer than the backlog could hold |
//! | `lifeline_journal_write_errors_total` | | failed journal writes or fsyncs (each retried after `retry_interval`) |
//! | `lifeline_journal_failing` | | 1 while the last journal write or fsync failed: records wait in the backlog, not yet lost |
//! | `lifeline_journal_backlog` | | records waiting to be made durable (queued, being written, or held while the disk fails): the writer's lag; records are lost once it reaches `queue_capacity` |
//! | `lifeline_socket_drops_total` | | datagrams the kernel dropped at our sockets |
//! | `lifeline_input_queue_drops_total` | | inputs dropped because the core's queue was full |
//! | `lifeline_tcp_idle_closed_total` | | TCP connections closed after `tcp_idle_timeout` without traffic |
//! | `lifeline_tcp_connections` | | TCP connections open, accepted and to trunks (what `max_connections` bounds) |
//! | `lifeline_tcp_closed_total` | `reason` | TCP connections reset for breaking a bound: `per_ip_cap` (accepted from a source that already had `max_connections_per_ip`), `message_timeout` (a message not complete within `message_timeout` of its first byte), `write_queue` (the peer did not read: its queue reached `write_queue_bytes`), `framing` (bytes that are not SIP messages) |
//! | `lifeline_tcp_accept_paused_total` | | times the gateway stopped accepting TCP connections because `max_connections` were open |
//! | `lifeline_admission_refused_total` | `reason`, `action` | new requests refused before they cost anything: `source_rate` (over `limits.per_source`), `emergency_source_rate` (over `limits.per_source_emergency`), `overload` (the gateway was behind: new non-emergency requests shed), `max_calls`, `max_transactions` (the state caps); `action` `reject` (503 with Retry-After) or `drop` |
//! | `lifeline_shedding` | | 1 while the gateway counts itself behind and sheds new non-emergency requests (the housekeeping check; the IO threads also shed on their own look at the queue) |
//! | `lifeline_input_queue_bytes` | | bytes of the messages waiting for the core |
//! | `lifeline_send_errors_total` | | sends that failed other than as evidence against a trunk (no socket for the address family, a caller's TCP connection gone, a full socket buffer) |
//! | `lifeline_capture_messages_total` | | SIP messages exported to the HEP collector (`capture:`): packets handed to the kernel |
//! | `lifeline_capture_dropped_total` | `reason` | captured messages not exported: `queue_full` (the capture thread's queue was full: the call path never waits), `too_large` (over one HEP packet), `send_error` (the send to the collector failed, or its host refused an earlier packet), `hold_full` (`hold_bytes` reached), `hold_expired` (no outcome within `hold`) |
//! | `lifeline_capture_held_bytes` | | bytes held for calls waiting for their outcome (`calls: emergency` or `failed`) |
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
//!
//! # Modules
//!
//! - `families`: every series registered, and the per-trunk and per-route
//!   series created at zero;
//! - `events`: [`Metrics::on_event`], and the call map above;
//! - `gauges`: what is refreshed on a tick, from the proxy's and the health
//!   checker's view;
//! - `labels`: trunk and route names and the label sets;
//! - `testing` (tests only): a real proxy on virtual time, for these tests
//!   and the admin API's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use lifeline_proxy::CallRef;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

mod events;
mod families;
mod gauges;
mod labels;

/// A real [`Proxy`](lifeline_proxy::Proxy) on virtual time with scripted
/// peers, for the metrics and admin tests.
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use events::CallMeta;
use families::SetupFamily;
use gauges::Seen;
pub(crate) use labels::Names;
use labels::{
    AdmissionLabels, CallLabels, CaptureDropLabels, DirectionLabels, FailoverLabels, KindLabels,
    MessageLabels, Name, ProgressLabels, RejectReasonLabels, RejectedLabels, RescueLabels,
    RouteLabels, RuleLabels, SkipLabels, StateChangeLabels, StateLabels, TcpClosedLabels,
    TrunkLabels,
};

/// The `Content-Type` of [`Metrics::encode`]'s output (Prometheus text 0.0.4).
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Calls labelled at once, at most (about 64 bytes each).
pub(crate) const MAX_TRACKED_CALLS: usize = 65_536;

/// A labelled call this old is assumed to have lost its final event.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(600);

/// The `reason`s of `lifeline_tcp_closed_total`, each a bound in
/// [`lifeline_io::TcpLimits`]; every one is present from the start, at zero.
pub(super) const TCP_CLOSE_REASONS: [&str; 4] =
    ["per_ip_cap", "message_timeout", "write_queue", "framing"];

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
    route_usable: Family<RouteLabels, Gauge>,
    /// The routes `route_usable` has a series for, to remove those a reload
    /// took away.
    route_names: Mutex<Vec<Name>>,
    setup: SetupFamily,
    transactions: Family<KindLabels, Gauge>,
    calls_active: Gauge,
    dialogs: Gauge,
    rejected: Family<RejectedLabels, Counter>,
    rejected_by_reason: Family<RejectReasonLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    retransmissions: Counter,
    journal_dropped: Counter,
    journal_write_errors: Counter,
    journal_failing: Gauge,
    journal_backlog: Gauge,
    socket_drops: Counter,
    queue_drops: Counter,
    tcp_idle_closed: Counter,
    tcp_connections: Gauge,
    tcp_closed: Family<TcpClosedLabels, Counter>,
    tcp_accept_paused: Counter,
    admission_refused: Family<AdmissionLabels, Counter>,
    shedding: Gauge,
    queued_bytes: Gauge,
    lingering: Gauge,
    udp_calls: Family<DirectionLabels, Counter>,
    udp_datagrams: Family<DirectionLabels, Counter>,
    send_errors: Counter,
    core_busy: Counter<f64, AtomicU64>,
    capture_messages: Counter,
    capture_dropped: Family<CaptureDropLabels, Counter>,
    capture_held: Gauge,
    untracked: Counter,
    /// `lifeline_messages_total{direction="out"}` handles, resolved once.
    out_requests: Counter,
    out_responses: Counter,
    live: Mutex<HashMap<CallRef, CallMeta>>,
    seen: Mutex<Seen>,
    totals: Totals,
}

impl Metrics {
    /// Requests and responses the event loop sent since the last call (the
    /// change in its `IoStats::sent_requests` and `sent_responses`).
    pub(crate) fn add_transmitted(&self, requests: u64, responses: u64) {
        self.out_requests.inc_by(requests);
        self.out_responses.inc_by(responses);
    }

    /// Sends that failed since the last call (not those that are evidence
    /// against a trunk: those are failovers).
    pub(crate) fn add_send_errors(&self, n: u64) {
        self.send_errors.inc_by(n);
    }

    /// Journal records dropped since the last call.
    pub(crate) fn add_journal_dropped(&self, n: u64) {
        self.journal_dropped.inc_by(n);
    }

    /// Journal writes or fsyncs that failed since the last call, whether
    /// the last one failed (the writer is retrying), and the records
    /// waiting to be made durable ([`lifeline_journal::JournalStats::backlog`]).
    pub(crate) fn set_journal(&self, new_errors: u64, failing: bool, backlog: u64) {
        self.journal_write_errors.inc_by(new_errors);
        self.journal_failing.set(i64::from(failing));
        self.journal_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
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
    #[cfg(test)]
    pub(crate) fn tracked_calls(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
}
