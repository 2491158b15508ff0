//! Every series, registered once at zero ([`Metrics::new`]), and the
//! per-trunk and per-route series created at zero for the names the proxy
//! knows ([`Metrics::names`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use lifeline_proxy::{AttemptFailure, SkipReason};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

use super::labels::{
    AdmissionLabels, CallLabels, CaptureDropLabels, DirectionLabels, EmergencyLabels,
    FailoverLabels, KindLabels, MessageLabels, ProgressLabels, Reason, RejectReasonLabels,
    RejectedLabels, RescueLabels, RouteLabels, RuleLabels, SkipLabels, StateChangeLabels,
    StateLabels, TcpClosedLabels, TrunkLabels, VersionLabels,
};
use super::TCP_CLOSE_REASONS;
use super::{Metrics, Names, Seen, Totals};

/// Buckets of `lifeline_setup_seconds`: 10 ms to 10 s.
const SETUP_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0];

const OUTCOMES: [&str; 5] = ["connected", "failed", "cancelled", "rejected", "no_route"];

pub(super) type SetupFamily = Family<EmergencyLabels, Histogram, fn() -> Histogram>;

fn setup_histogram() -> Histogram {
    Histogram::new(SETUP_BUCKETS)
}

/// A new `M` at zero, registered as `lifeline_<name>` with `help`; the
/// registry keeps a clone, which shares its value.
fn registered<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    r.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Every series registered, at zero.
    pub(crate) fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("lifeline");
        let calls: Family<CallLabels, Counter> = registered(&mut r, "calls", "Calls finished, by route and outcome (connected, failed, cancelled, rejected, no_route)");
        let emergency_calls: Family<RuleLabels, Counter> = registered(
            &mut r,
            "emergency_calls",
            "Emergency calls started, by the rule that classified them",
        );
        let emergency_failed: Counter = registered(
            &mut r,
            "emergency_calls_failed",
            "Emergency calls that did not connect (every trunk failed, or no route): callback list",
        );
        let attempts: Family<TrunkLabels, Counter> =
            registered(&mut r, "attempts", "INVITE attempts sent to a trunk");
        let failovers: Family<FailoverLabels, Counter> = registered(&mut r, "failovers", "Attempts given up, by trunk and reason (no-response, no-progress, transport-error, transaction-timeout, trunk-down, superseded, response-<status>)");
        let late_responses: Family<TrunkLabels, Counter> = registered(
            &mut r,
            "late_responses",
            "Responses arriving on attempts already given up",
        );
        let rescued: Family<RescueLabels, Counter> = registered(&mut r, "rescued", "Calls moved off a trunk at once because it went down while they waited (ringing: whether the caller heard ringing from it)");
        let hedged: Family<TrunkLabels, Counter> = registered(&mut r, "hedged", "Emergency calls given a parallel attempt on this trunk after hedge_after without ringing");
        let trunk_skipped: Family<SkipLabels, Counter> = registered(
            &mut r,
            "trunk_skipped",
            "Calls that passed a full trunk over, by the limit reached (max_calls, max_cps)",
        );
        let duplicate_answers: Family<TrunkLabels, Counter> = registered(
            &mut r,
            "duplicate_answers",
            "Answers from a trunk on a call already answered through another, ended with a BYE",
        );
        let trunk_state: Family<StateLabels, Gauge> = registered(
            &mut r,
            "trunk_state",
            "1 for the trunk's current measured state (up, suspect, down, recovering), 0 otherwise",
        );
        let trunk_drained: Family<TrunkLabels, Gauge> = registered(
            &mut r,
            "trunk_drained",
            "1 while the trunk is administratively drained",
        );
        let state_changes: Family<StateChangeLabels, Counter> = registered(
            &mut r,
            "trunk_state_changes",
            "Measured trunk state changes, by the state entered",
        );
        let rtt: Family<TrunkLabels, Gauge<f64, AtomicU64>> = registered(
            &mut r,
            "probe_rtt_seconds",
            "OPTIONS probe round-trip time, smoothed (EWMA 1/8)",
        );
        let rtt_max: Family<TrunkLabels, Gauge<f64, AtomicU64>> = registered(
            &mut r,
            "probe_rtt_max_seconds",
            "Largest OPTIONS probe round-trip time seen",
        );
        let progress: Family<ProgressLabels, Gauge<f64, AtomicU64>> = registered(&mut r, "trunk_progress_seconds", "What the trunk's calls usually take to ring (decaying 95th percentile), from the INVITE or from 100 Trying");
        let canary: Family<TrunkLabels, Gauge> = registered(
            &mut r,
            "trunk_canary",
            "1 while the trunk is in its canary after recovering, taking a share of calls",
        );
        let trunk_calls: Family<TrunkLabels, Gauge> = registered(
            &mut r,
            "trunk_calls",
            "Calls on the trunk now (being set up, or answered and not ended)",
        );
        let trunk_max_calls: Family<TrunkLabels, Gauge> = registered(
            &mut r,
            "trunk_max_calls",
            "The trunk's configured max_calls (absent when unlimited)",
        );
        let route_usable: Family<RouteLabels, Gauge> = registered(
            &mut r,
            "route_usable_trunks",
            "Trunks of the route that take new calls now (up or suspect, not drained); 0: none",
        );
        let setup: SetupFamily = Family::new_with_constructor(setup_histogram);
        r.register(
            "setup_seconds",
            "Call setup time, INVITE arrival to 2xx forwarded, connected calls",
            setup.clone(),
        );
        let transactions: Family<KindLabels, Gauge> = registered(
            &mut r,
            "transactions",
            "Live SIP transactions (server, client)",
        );
        let calls_active: Gauge =
            registered(&mut r, "calls_active", "Calls being set up or forwarded");
        let dialogs: Gauge = registered(
            &mut r,
            "dialogs",
            "Dialogs whose in-dialog requests the gateway routes",
        );
        let rejected: Family<RejectedLabels, Counter> = registered(
            &mut r,
            "messages_rejected",
            "Messages refused: the status sent (or dropped) and why",
        );
        let rejected_by_reason: Family<RejectReasonLabels, Counter> = registered(
            &mut r,
            "rejected",
            "Messages refused, answered or dropped, by why (access: from outside access.callers)",
        );
        let messages: Family<MessageLabels, Counter> = registered(
            &mut r,
            "messages",
            "SIP messages received (in) and sent (out), requests and responses",
        );
        let retransmissions: Counter = registered(
            &mut r,
            "retransmissions_absorbed",
            "Request retransmissions absorbed by server transactions",
        );
        let journal_dropped: Counter = registered(
            &mut r,
            "journal_dropped",
            "Journal records lost (writer queue full, writer stopped, or the disk failed past the backlog)",
        );
        let journal_write_errors: Counter = registered(
            &mut r,
            "journal_write_errors",
            "Journal writes or fsyncs that failed (retried)",
        );
        let journal_failing: Gauge = registered(
            &mut r,
            "journal_failing",
            "1 while the last journal write or fsync failed: records wait in the backlog",
        );
        let journal_backlog: Gauge = registered(
            &mut r,
            "journal_backlog",
            "Journal records waiting to be made durable (queued, being written, or held while the disk fails)",
        );
        let socket_drops: Counter = registered(
            &mut r,
            "socket_drops",
            "Datagrams dropped by the kernel at the gateway's sockets",
        );
        let queue_drops: Counter = registered(
            &mut r,
            "input_queue_drops",
            "Inputs dropped because the core's queue was full",
        );
        let tcp_idle_closed: Counter = registered(
            &mut r,
            "tcp_idle_closed",
            "TCP connections closed after tcp_idle_timeout without traffic",
        );
        let tcp_connections: Gauge = registered(
            &mut r,
            "tcp_connections",
            "TCP connections open, accepted and to trunks",
        );
        let tcp_closed: Family<TcpClosedLabels, Counter> = registered(&mut r, "tcp_closed", "TCP connections reset for breaking a bound: per_ip_cap, message_timeout, write_queue, or framing (idle closes are tcp_idle_closed)");
        let tcp_accept_paused: Counter = registered(
            &mut r,
            "tcp_accept_paused",
            "Times accepting TCP connections stopped because max_connections were open",
        );
        let admission_refused: Family<AdmissionLabels, Counter> = registered(&mut r, "admission_refused", "New requests refused before they cost anything, by reason (source_rate, emergency_source_rate, overload, max_calls, max_transactions) and action (reject: 503, or drop)");
        let shedding: Gauge = registered(
            &mut r,
            "shedding",
            "1 while the gateway is behind and sheds new non-emergency requests",
        );
        let queued_bytes: Gauge = registered(
            &mut r,
            "input_queue_bytes",
            "Bytes of the messages waiting for the core",
        );
        let lingering: Gauge = registered(
            &mut r,
            "transactions_lingering",
            "Transactions past their final response, kept only to absorb retransmissions (RFC 3261 Timers D, J, K; RFC 6026 Timers L, M); part of lifeline_transactions",
        );
        let udp_calls: Family<DirectionLabels, Counter> = registered(
            &mut r,
            "udp_syscalls",
            "UDP receive and send system calls (recvmmsg, sendmmsg, sendto), by direction (in, out)",
        );
        let udp_datagrams: Family<DirectionLabels, Counter> = registered(
            &mut r,
            "udp_datagrams",
            "UDP datagrams those calls moved, by direction (in, out): datagrams per call is the batching",
        );
        let send_errors: Counter = registered(
            &mut r,
            "send_errors",
            "Sends that failed other than as evidence against a trunk",
        );
        let capture_messages: Counter = registered(
            &mut r,
            "capture_messages",
            "SIP messages exported to the HEP collector (capture): packets handed to the kernel",
        );
        let capture_dropped: Family<CaptureDropLabels, Counter> = registered(&mut r, "capture_dropped", "Captured SIP messages not exported, by reason: queue_full (the capture thread's queue), too_large, send_error, hold_full, hold_expired (calls: failed)");
        let capture_held: Gauge = registered(
            &mut r,
            "capture_held_bytes",
            "Bytes of captured messages held for calls waiting for their outcome (capture calls: emergency or failed)",
        );
        let core_busy: Counter<f64, AtomicU64> = registered(&mut r, "core_busy_seconds", "Time the core (routing, one thread at a time) was busy; its rate is the core's utilisation");
        let untracked: Counter = registered(
            &mut r,
            "metrics_untracked_calls",
            "Calls whose outcome could not be labelled (the label map was full)",
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
        for direction in ["in", "out"] {
            drop(udp_calls.get_or_create(&DirectionLabels { direction }));
            drop(udp_datagrams.get_or_create(&DirectionLabels { direction }));
        }
        drop(rejected_by_reason.get_or_create(&RejectReasonLabels { reason: "access" }));
        for reason in TCP_CLOSE_REASONS {
            drop(tcp_closed.get_or_create(&TcpClosedLabels { reason }));
        }
        for why in lifeline_proxy::Refusal::ALL {
            for action in ["reject", "drop"] {
                let reason = why.as_str();
                drop(admission_refused.get_or_create(&AdmissionLabels { reason, action }));
            }
        }
        for emergency in ["true", "false"] {
            drop(setup.get_or_create(&EmergencyLabels { emergency }));
        }
        for why in lifeline_io::CaptureDrop::ALL {
            drop(capture_dropped.get_or_create(&CaptureDropLabels {
                reason: why.as_str(),
            }));
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
            route_usable,
            route_names: Mutex::new(Vec::new()),
            setup,
            transactions,
            calls_active,
            dialogs,
            rejected,
            rejected_by_reason,
            messages,
            retransmissions,
            journal_dropped,
            journal_write_errors,
            journal_failing,
            journal_backlog,
            socket_drops,
            queue_drops,
            tcp_idle_closed,
            tcp_connections,
            tcp_closed,
            tcp_accept_paused,
            admission_refused,
            shedding,
            queued_bytes,
            lingering,
            udp_calls,
            udp_datagrams,
            send_errors,
            core_busy,
            capture_messages,
            capture_dropped,
            capture_held,
            untracked,
            out_requests,
            out_responses,
            live: Mutex::new(HashMap::new()),
            seen: Mutex::new(Seen::default()),
            totals: Totals::default(),
        })
    }

    /// The names the proxy knows now, as [`Metrics::names_of`] makes them.
    #[cfg(test)]
    pub(crate) fn names(&self, proxy: &lifeline_proxy::Proxy) -> Names {
        self.names_of(&lifeline_io::ProxyNames::of(proxy))
    }

    /// The proxy's names as labels, with the series the event loop will
    /// count for them created at zero (so `increase()` sees their first
    /// event). Call it at start and after every configuration reload.
    pub(crate) fn names_of(&self, proxy: &lifeline_io::ProxyNames) -> Names {
        let names = Names::new(proxy);
        for trunk in &names.trunks {
            let labels = TrunkLabels {
                trunk: trunk.clone(),
            };
            drop(self.attempts.get_or_create(&labels));
            drop(self.late_responses.get_or_create(&labels));
            drop(self.hedged.get_or_create(&labels));
            drop(self.duplicate_answers.get_or_create(&labels));
            // Every reason but `response-<status>` (one per status seen).
            for reason in [
                AttemptFailure::NoResponse,
                AttemptFailure::NoProgress,
                AttemptFailure::TransportError,
                AttemptFailure::TransactionTimeout,
                AttemptFailure::TrunkDown,
                AttemptFailure::Superseded,
            ] {
                drop(self.failovers.get_or_create(&FailoverLabels {
                    trunk: trunk.clone(),
                    reason: Reason(reason),
                }));
            }
            for ringing in ["true", "false"] {
                drop(self.rescued.get_or_create(&RescueLabels {
                    trunk: trunk.clone(),
                    ringing,
                }));
            }
            for reason in [
                SkipReason::MaxCalls,
                SkipReason::MaxCps,
                SkipReason::Overload,
            ] {
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
}
