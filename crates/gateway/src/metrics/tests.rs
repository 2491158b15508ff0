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
        info: std::sync::Arc::new(CallInfo {
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
    // Every fixed reason of every trunk is there from the start, at zero,
    // so that rate() and increase() see a trunk's first failover.
    let page = m.encode();
    for trunk in ["primary", "backup"] {
        for reason in [
            "no-response",
            "no-progress",
            "transport-error",
            "transaction-timeout",
            "trunk-down",
            "superseded",
        ] {
            assert_series(
                &page,
                &format!("lifeline_failovers_total{{trunk=\"{trunk}\",reason=\"{reason}\"}}"),
                0.0,
            );
        }
    }
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
    m.add_transmitted(1, 2);
    m.add_send_errors(5);
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
    assert_series(&page, "lifeline_send_errors_total", 5.0);
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

#[test]
fn rejections_by_reason_alone_with_access_from_the_start() {
    let b = Bench::new(true);
    let m = Metrics::new();
    let names = m.names(&b.proxy);
    // At zero before the first one, so that increase() sees it.
    assert_series(
        &m.encode(),
        "lifeline_rejected_total{reason=\"access\"}",
        0.0,
    );
    let stranger = Peer::udp(SocketAddr::from(([127, 0, 0, 77], 5060)));
    for status in [None, Some(403), None] {
        m.on_event(
            &Event::Rejected {
                at: b.now,
                from: stranger,
                status,
                reason: "access",
            },
            &names,
        );
    }
    m.on_event(
        &Event::Rejected {
            at: b.now,
            from: stranger,
            status: Some(481),
            reason: "unknown dialog",
        },
        &names,
    );
    let page = m.encode();
    assert_series(&page, "lifeline_rejected_total{reason=\"access\"}", 3.0);
    assert_series(
        &page,
        "lifeline_rejected_total{reason=\"unknown dialog\"}",
        1.0,
    );
    // The family by status still counts each.
    assert_series(
        &page,
        "lifeline_messages_rejected_total{status=\"dropped\",reason=\"access\"}",
        2.0,
    );
    assert_series(
        &page,
        "lifeline_messages_rejected_total{status=\"403\",reason=\"access\"}",
        1.0,
    );
}

#[test]
fn a_response_from_the_wrong_peer_is_counted_as_dropped() {
    let mut b = Bench::new(false);
    let m = Metrics::new();
    let names = m.names(&b.proxy);
    b.invite("w-1", "sip:999@127.0.0.1");
    // A 503 for the primary's INVITE, from another address: dropped.
    b.answer_from(PRIMARY, "127.0.0.66:5060", "w-1", 503, "Forged");
    for e in b.take_events() {
        m.on_event(&e, &names);
    }
    assert_eq!(b.proxy.stats().responses_wrong_peer, 1);
    let page = m.encode();
    assert_series(
        &page,
        "lifeline_messages_rejected_total{status=\"dropped\",reason=\"response from wrong peer\"}",
        1.0,
    );
    assert_eq!(
        value(
            &page,
            "lifeline_failovers_total{trunk=\"primary\",reason=\"response-503\"}"
        ),
        None,
        "the call did not move"
    );
}

#[test]
fn tcp_connections_and_closes_from_the_io_sides_counts() {
    let m = Metrics::new();
    // Every series at zero from the start, so that increase() sees the
    // first close.
    let page = m.encode();
    for reason in ["per_ip_cap", "message_timeout", "write_queue", "framing"] {
        assert_series(
            &page,
            &format!("lifeline_tcp_closed_total{{reason=\"{reason}\"}}"),
            0.0,
        );
    }
    assert_series(&page, "lifeline_tcp_connections", 0.0);
    assert_series(&page, "lifeline_tcp_accept_paused_total", 0.0);
    let io = lifeline_io::IoStats::default();
    let set =
        |a: &std::sync::atomic::AtomicU64, n| a.store(n, std::sync::atomic::Ordering::Relaxed);
    set(&io.tcp_open, 7);
    set(&io.tcp_refused_per_ip, 3);
    set(&io.tcp_message_timeouts, 2);
    set(&io.tcp_write_queue_overflows, 1);
    set(&io.tcp_accept_paused, 4);
    m.set_tcp(&io);
    // Totals, read again: only what they gained is added.
    set(&io.tcp_open, 5);
    set(&io.tcp_refused_per_ip, 5);
    m.set_tcp(&io);
    let page = m.encode();
    assert_series(&page, "lifeline_tcp_connections", 5.0);
    assert_series(
        &page,
        "lifeline_tcp_closed_total{reason=\"per_ip_cap\"}",
        5.0,
    );
    assert_series(
        &page,
        "lifeline_tcp_closed_total{reason=\"message_timeout\"}",
        2.0,
    );
    assert_series(
        &page,
        "lifeline_tcp_closed_total{reason=\"write_queue\"}",
        1.0,
    );
    assert_series(&page, "lifeline_tcp_accept_paused_total", 4.0);
}

#[test]
fn admission_refusals_from_the_io_side_and_the_core_caps() {
    use lifeline_proxy::Refusal;
    use std::sync::atomic::Ordering;
    let m = Metrics::new();
    let page = m.encode();
    for why in Refusal::ALL {
        for action in ["reject", "drop"] {
            let series = format!(
                "lifeline_admission_refused_total{{reason=\"{}\",action=\"{action}\"}}",
                why.as_str()
            );
            assert_series(&page, &series, 0.0);
        }
    }
    assert_series(&page, "lifeline_shedding", 0.0);
    let io = lifeline_io::IoStats::default();
    let i = |why| Refusal::ALL.iter().position(|r| *r == why).unwrap();
    io.admission_refused[i(Refusal::Overload)][1].store(40, Ordering::Relaxed);
    io.admission_refused[i(Refusal::SourceRate)][0].store(3, Ordering::Relaxed);
    io.shedding.store(true, Ordering::Relaxed);
    io.queued_bytes.store(4096, Ordering::Relaxed);
    m.set_admission(&io);
    io.admission_refused[i(Refusal::Overload)][1].store(45, Ordering::Relaxed);
    m.set_admission(&io);
    // A state cap's refusal comes from the core as a Rejected event.
    let names = Names::default();
    m.on_event(
        &Event::Rejected {
            at: std::time::Instant::now(),
            from: lifeline_proxy::Peer::udp("192.0.2.1:5060".parse().unwrap()),
            status: Some(503),
            reason: Refusal::MaxCalls.as_str(),
        },
        &names,
    );
    let page = m.encode();
    let series = |r: &str, a: &str| {
        format!("lifeline_admission_refused_total{{reason=\"{r}\",action=\"{a}\"}}")
    };
    assert_series(&page, &series("overload", "reject"), 45.0);
    assert_series(&page, &series("source_rate", "drop"), 3.0);
    assert_series(&page, &series("max_calls", "reject"), 1.0);
    assert_series(&page, "lifeline_shedding", 1.0);
    assert_series(&page, "lifeline_input_queue_bytes", 4096.0);
}

#[test]
fn usable_trunks_per_route_follow_state_drains_and_reloads() {
    let route = |r: &str| format!("lifeline_route_usable_trunks{{route=\"{r}\"}}");
    let mut b = Bench::new(true);
    let m = Metrics::new();
    // emergency: primary and backup; default: primary only. Both up.
    m.set_routes(&b.proxy);
    let page = m.encode();
    assert_series(&page, &route("emergency"), 2.0);
    assert_series(&page, &route("default"), 1.0);

    // The scripted calls take the primary down (a 503, then no answer).
    scripted_calls(&mut b);
    let primary = b.proxy.health().find("primary").unwrap();
    assert_eq!(
        b.proxy.health().trunk(primary).unwrap().state,
        lifeline_health::State::Down
    );
    m.set_routes(&b.proxy);
    let page = m.encode();
    assert_series(&page, &route("emergency"), 1.0);
    assert_series(&page, &route("default"), 0.0);

    // A drained trunk takes no new calls either, whatever its state.
    let backup = b.proxy.health().find("backup").unwrap();
    b.proxy.health_mut().drain(b.now, backup);
    m.set_routes(&b.proxy);
    assert_series(&m.encode(), &route("emergency"), 0.0);
    b.proxy.health_mut().undrain(b.now, backup);
    m.set_routes(&b.proxy);
    assert_series(&m.encode(), &route("emergency"), 1.0);

    // A reload without the default route: its series goes.
    let reloaded = Bench::new(false);
    m.set_routes(&reloaded.proxy);
    let page = m.encode();
    assert_series(&page, &route("emergency"), 2.0);
    assert_eq!(value(&page, &route("default")), None, "{page}");
}

#[test]
fn journal_write_errors_failing_and_backlog() {
    let m = Metrics::new();
    let page = m.encode();
    assert_series(&page, "lifeline_journal_write_errors_total", 0.0);
    assert_series(&page, "lifeline_journal_failing", 0.0);
    assert_series(&page, "lifeline_journal_backlog", 0.0);
    m.set_journal(2, true, 300);
    let page = m.encode();
    assert_series(&page, "lifeline_journal_write_errors_total", 2.0);
    assert_series(&page, "lifeline_journal_failing", 1.0);
    assert_series(&page, "lifeline_journal_backlog", 300.0);
    // The disk came back: no new error, not failing, the backlog written;
    // the error count stays.
    m.set_journal(0, false, 0);
    let page = m.encode();
    assert_series(&page, "lifeline_journal_write_errors_total", 2.0);
    assert_series(&page, "lifeline_journal_failing", 0.0);
    assert_series(&page, "lifeline_journal_backlog", 0.0);
}
