//! From proxy events to records to the report: an incident in miniature.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use lifeline_health::{Event as HealthEvent, EventKind, Health, Local, Outcome, Reason, State};
use lifeline_journal::report::{self, Window};
use lifeline_journal::{
    AggregatorLimits, AttemptResult, CallAggregator, CallOutcome, EmergencyRule, FailReason,
    JournalReader, JournalRecord, JournalWriter, Names, Refusal, RefusedRecord, TimeAnchor,
    WallTime,
};
use lifeline_proxy::{
    AttemptFailure, CallFailure, CallInfo, CallRef, EmergencyRule as Rule, Event, Location, Peer,
    ProbeConfig, TrunkId,
};

struct World {
    t0: Instant,
    primary: TrunkId,
    backup: TrunkId,
    agg: CallAggregator,
    records: Vec<JournalRecord>,
}

const EPOCH_US: i64 = 1_687_690_800_000_000; // 2023-06-25T11:00:00Z

impl World {
    fn new(limits: AggregatorLimits) -> Self {
        let t0 = Instant::now();
        let mut health = Health::new(
            Local {
                via: "SIP/2.0/UDP 192.0.2.1:5060".into(),
                from_uri: "sip:lifeline@192.0.2.1".into(),
            },
            1,
        );
        let primary = health
            .add_trunk(t0, "primary", "sip:192.0.2.10:5060", ProbeConfig::default())
            .unwrap();
        let backup = health
            .add_trunk(
                t0,
                "backup",
                "sip:198.51.100.20:5060",
                ProbeConfig::default(),
            )
            .unwrap();
        let names = Names::from_health(&health).with_route("emergency", &["primary", "backup"]);
        assert_eq!(
            names.route_trunks("emergency").unwrap(),
            ["primary", "backup"]
        );
        let anchor = TimeAnchor::new(t0, UNIX_EPOCH + Duration::from_micros(EPOCH_US as u64));
        Self {
            t0,
            primary,
            backup,
            agg: CallAggregator::new(names, anchor, limits),
            records: Vec::new(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn feed(&mut self, ev: Event) {
        self.agg.handle(&ev);
        self.collect();
    }

    /// Feed the event `make` builds for `ms` after the start.
    fn feed_at(&mut self, ms: u64, make: impl FnOnce(Instant) -> Event) {
        let at = self.at(ms);
        self.feed(make(at));
    }

    /// Take the records the aggregator has ready.
    fn collect(&mut self) {
        while let Some(r) = self.agg.poll_record() {
            self.records.push(r);
        }
    }

    fn start(&mut self, call: u64, ms: u64, emergency: bool) {
        let info = CallInfo {
            call_id: Bytes::from(format!("call-{call}@origin")),
            from_uri: Bytes::from(format!("sip:+4470000000{call:02}@origin.example")),
            from_display: Some(Bytes::from_static(b"\"A Caller\"")),
            asserted_identities: vec![
                Bytes::from(format!(
                    "<sip:+4470000000{call:02}@origin.example;user=phone>"
                )),
                Bytes::from(format!("<tel:+4470000000{call:02}>")),
            ],
            dialled: Bytes::from_static(if emergency {
                b"sip:999@gw.example"
            } else {
                b"sip:2000@gw.example"
            }),
            emergency: emergency.then_some(Rule::Number),
            location: Location {
                geolocation: if emergency {
                    vec![Bytes::from_static(b"<cid:loc@origin.example>")]
                } else {
                    vec![]
                },
                pidf_lo: emergency,
            },
            route: if emergency {
                "emergency".into()
            } else {
                "default".into()
            },
            source: Peer::udp("192.0.2.7:5060".parse().unwrap()),
        };
        self.feed_at(ms, |at| Event::CallStarted {
            call: CallRef(call),
            at,
            info: std::sync::Arc::new(info),
        });
    }

    fn attempt(&mut self, call: u64, ms: u64, trunk: TrunkId, n: u32) {
        self.feed_at(ms, |at| Event::AttemptStarted {
            call: CallRef(call),
            at,
            trunk,
            attempt: n,
        });
    }

    fn fail(&mut self, call: u64, ms: u64, trunk: TrunkId, reason: AttemptFailure, elapsed: u64) {
        self.feed_at(ms, |at| Event::AttemptFailed {
            call: CallRef(call),
            at,
            trunk,
            reason,
            elapsed: Duration::from_millis(elapsed),
        });
    }

    fn connect(&mut self, call: u64, ms: u64, trunk: TrunkId, setup: u64) {
        self.feed_at(ms, |at| Event::CallConnected {
            call: CallRef(call),
            at,
            trunk,
            setup: Duration::from_millis(setup),
        });
    }

    fn trunk(&mut self, ms: u64, trunk: TrunkId, from: State, to: State, reason: Reason) {
        self.health(ms, trunk, EventKind::State { from, to, reason });
    }

    /// A health event (state change, drain, canary) about `trunk`.
    fn health(&mut self, ms: u64, trunk: TrunkId, kind: EventKind) {
        self.feed_at(ms, |at| Event::Trunk(HealthEvent { trunk, at, kind }));
    }

    /// The call ends with `status` to the caller.
    fn call_failed(&mut self, call: u64, ms: u64, status: u16, reason: CallFailure) {
        self.feed_at(ms, |at| Event::CallFailed {
            call: CallRef(call),
            at,
            status,
            reason,
        });
    }

    /// The call's attempt on `trunk` is moved off it (the trunk went Down).
    fn rescued(&mut self, call: u64, ms: u64, trunk: TrunkId, ringing: bool) {
        self.feed_at(ms, |at| Event::Rescued {
            call: CallRef(call),
            at,
            trunk,
            ringing,
        });
    }

    /// The incident: the primary stops answering at 1 s and is back at 10 s.
    fn incident(&mut self) {
        let (p, b) = (self.primary, self.backup);
        // Call 1: before the fault, connected on the primary in 40 ms.
        self.start(1, 0, true);
        self.attempt(1, 0, p, 1);
        self.connect(1, 40, p, 40);
        // Calls 2 (emergency) and 3 (other): no response from the primary,
        // failover to the backup, connected.
        self.start(2, 1000, true);
        self.attempt(2, 1000, p, 1);
        self.start(3, 1010, false);
        self.attempt(3, 1010, p, 1);
        self.fail(2, 1200, p, AttemptFailure::NoResponse, 200);
        self.attempt(2, 1200, b, 2);
        self.trunk(
            1200,
            p,
            State::Up,
            State::Suspect,
            Reason::Live(Outcome::Timeout),
        );
        self.fail(3, 1210, p, AttemptFailure::NoResponse, 200);
        self.attempt(3, 1210, b, 2);
        self.trunk(
            1210,
            p,
            State::Suspect,
            State::Down,
            Reason::Live(Outcome::Timeout),
        );
        self.connect(2, 1250, b, 250);
        self.connect(3, 1270, b, 260);
        // Call 4 (emergency): all trunks fail: the backup answers 503 too.
        self.start(4, 2000, true);
        self.attempt(4, 2000, b, 1);
        self.fail(4, 2010, b, AttemptFailure::Response(503), 10);
        self.attempt(4, 2010, p, 2);
        self.fail(4, 2210, p, AttemptFailure::NoResponse, 200);
        self.call_failed(4, 2210, 503, CallFailure::AllTrunksFailed);
        // Call 5 (emergency): the caller gives up while it rings.
        self.start(5, 3000, true);
        self.attempt(5, 3000, b, 1);
        self.feed_at(3500, |at| Event::CallCancelled {
            call: CallRef(5),
            at,
        });
        // Call 6 (emergency): the callee side says 486 (not failed over).
        self.start(6, 4000, true);
        self.attempt(6, 4000, b, 1);
        self.call_failed(6, 4100, 486, CallFailure::Rejected);
        // Call 7 (emergency): no route.
        self.start(7, 5000, true);
        self.call_failed(7, 5000, 404, CallFailure::NoRoute);
        // The primary recovers.
        self.trunk(
            9000,
            p,
            State::Down,
            State::Recovering,
            Reason::ProbeAnswered(200),
        );
        self.trunk(
            10_000,
            p,
            State::Recovering,
            State::Up,
            Reason::ProbeAnswered(200),
        );
        // Call 4's primary attempt answers 200 late: the 2xx is forwarded.
        self.feed_at(10_500, |at| Event::LateResponse {
            call: CallRef(4),
            at,
            trunk: p,
            status: 200,
        });
        self.connect(4, 10_500, p, 10_500);
    }
}

fn calls(records: &[JournalRecord]) -> Vec<&lifeline_journal::CallRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            JournalRecord::Call(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

/// Write `records` to a new journal and read them back: the journal's
/// folder (removed on drop) and what it held.
fn through_journal(records: &[JournalRecord]) -> (tempfile::TempDir, Vec<JournalRecord>) {
    let tmp = tempfile::tempdir().unwrap();
    let writer = JournalWriter::open(tmp.path(), Default::default()).unwrap();
    let h = writer.handle();
    for r in records {
        assert!(h.record(r.clone()));
    }
    writer.shutdown();
    let (entries, issues) = JournalReader::open(&[tmp.path()]).unwrap().read_all();
    assert!(issues.is_empty(), "{issues:?}");
    let back = entries.into_iter().map(|e| e.record).collect();
    (tmp, back)
}

#[test]
fn records_hold_everything_needed_to_call_back() {
    let mut w = World::new(AggregatorLimits::default());
    w.incident();
    let cs = calls(&w.records);
    let ids: Vec<&str> = cs.iter().map(|c| c.call_id.as_str()).collect();
    // Journaled when each call ends, in that order.
    assert_eq!(
        ids,
        [
            "call-1@origin",
            "call-2@origin",
            "call-3@origin",
            "call-4@origin",
            "call-5@origin",
            "call-6@origin",
            "call-7@origin"
        ]
    );
    let c2 = cs[1];
    assert_eq!(c2.started, WallTime(EPOCH_US + 1_000_000));
    assert_eq!(c2.caller.from_uri, "sip:+447000000002@origin.example");
    assert_eq!(c2.caller.from_display.as_deref(), Some("\"A Caller\""));
    assert_eq!(c2.caller.asserted_identities.len(), 2);
    assert_eq!(c2.dialled, "sip:999@gw.example");
    assert_eq!(c2.emergency, Some(EmergencyRule::Number));
    assert_eq!(c2.location.geolocation, ["<cid:loc@origin.example>"]);
    assert!(c2.location.pidf_lo);
    assert_eq!(c2.route, "emergency");
    assert_eq!(c2.source, "udp:192.0.2.7:5060");
    assert_eq!(c2.attempts.len(), 2);
    assert_eq!(c2.attempts[0].trunk, "primary");
    assert_eq!(c2.attempts[0].result, AttemptResult::NoResponse);
    assert_eq!(c2.attempts[0].elapsed.unwrap().0, 200_000);
    assert_eq!(c2.attempts[1].trunk, "backup");
    assert_eq!(c2.attempts[1].offset.0, 200_000);
    assert_eq!(c2.attempts[1].result, AttemptResult::Connected);
    assert_eq!(
        c2.outcome,
        CallOutcome::Connected {
            trunk: "backup".into()
        }
    );
    assert_eq!(c2.setup.unwrap().0, 250_000);

    let c4 = cs[3];
    assert_eq!(
        c4.outcome,
        CallOutcome::Failed {
            status: 503,
            reason: FailReason::AllTrunksFailed
        }
    );
    assert_eq!(c4.attempts[0].result, AttemptResult::Response(503));
    assert_eq!(cs[4].outcome, CallOutcome::Cancelled);
    assert_eq!(cs[4].attempts[0].result, AttemptResult::Cancelled);
    assert_eq!(cs[5].attempts[0].result, AttemptResult::Rejected(486));
    assert_eq!(
        cs[6].outcome,
        CallOutcome::Failed {
            status: 404,
            reason: FailReason::NoRoute
        }
    );
    assert!(cs[6].attempts.is_empty());

    // Trunk records, with reasons as text.
    let trunk_changes: Vec<String> = w
        .records
        .iter()
        .filter_map(|r| match r {
            JournalRecord::Trunk(t) => Some(format!("{} {:?}", t.trunk, t.change)),
            _ => None,
        })
        .collect();
    assert_eq!(trunk_changes.len(), 4);
    assert!(trunk_changes[1].contains("Down") && trunk_changes[1].contains("live: no response"));

    // The late 2xx on call 4.
    let late: Vec<_> = w
        .records
        .iter()
        .filter_map(|r| match r {
            JournalRecord::Late(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].call_id, "call-4@origin");
    assert_eq!(late[0].trunk, "primary");
    assert!(late[0].connected);

    // GET /calls/failed: the emergency calls that did not connect, newest first.
    let failed = w.agg.failed_calls();
    let recent: Vec<String> = failed.recent(10).into_iter().map(|c| c.call_id).collect();
    assert_eq!(
        recent,
        [
            "call-7@origin",
            "call-6@origin",
            "call-5@origin",
            "call-4@origin"
        ]
    );
    assert_eq!(failed.recent(1).len(), 1);
    assert_eq!(
        failed.recent(10)[3].late_answer_via.as_deref(),
        Some("primary")
    );
    let json: serde_json::Value = serde_json::from_str(&failed.to_json(2)).unwrap();
    assert_eq!(json["total"], 4);
    assert_eq!(json["calls"].as_array().unwrap().len(), 2);
    assert_eq!(json["calls"][0]["dialled"], "sip:999@gw.example");
}

#[test]
fn calls_in_progress_are_bounded_and_evicted_calls_are_journaled() {
    let mut w = World::new(AggregatorLimits {
        max_calls_in_progress: 2,
        failed_calls: 2,
        recently_finished: 2,
        ..AggregatorLimits::default()
    });
    let p = w.primary;
    for call in 1..=4 {
        w.start(call, call * 10, true);
        w.attempt(call, call * 10, p, 1);
    }
    assert_eq!(w.agg.in_progress(), 2);
    assert_eq!(w.agg.stats().evicted, 2);
    let cs = calls(&w.records);
    assert_eq!(cs.len(), 2);
    assert!(cs.iter().all(|c| c.outcome == CallOutcome::Unfinished));
    assert_eq!(cs[0].call_id, "call-1@origin", "oldest first");
    // An event for an evicted call is counted, not a panic.
    w.connect(1, 100, p, 90);
    // Evicted calls did not finish: on the callback list (bounded ring).
    assert_eq!(w.agg.failed_calls().len(), 2);
    // The late connect of call 1 is recorded (it is still remembered).
    assert!(w
        .records
        .iter()
        .any(|r| matches!(r, JournalRecord::Late(l) if l.call_id == "call-1@origin")));
    // Shutdown journals the rest.
    let at = w.at(200);
    w.agg.finish_all(at);
    w.collect();
    assert_eq!(calls(&w.records).len(), 4);
    assert_eq!(w.agg.in_progress(), 0);
}

#[test]
fn report_timeline_outages_callbacks_and_totals() {
    let mut w = World::new(AggregatorLimits::default());
    w.incident();
    let rep = report::build(&w.records, Window::default());

    // Timeline: the primary's changes, and the failover runs.
    let lines: Vec<String> = rep
        .timeline
        .iter()
        .map(|e| match e {
            report::TimelineEntry::Trunk { trunk, change, .. } => format!("{trunk} {change}"),
            report::TimelineEntry::Failover {
                from,
                to,
                calls,
                emergency,
                ..
            } => format!("failover {from}->{to} {calls}/{emergency}"),
            report::TimelineEntry::Calls { event, .. } => event.clone(),
        })
        .collect();
    assert_eq!(
        lines,
        [
            "primary up -> suspect",
            "failover primary->backup 2/1",
            "primary suspect -> down",
            "failover backup->primary 1/1",
            "primary down -> recovering",
            "primary recovering -> up",
        ]
    );

    // One outage of the primary, first sign to Up, and the calls it touched.
    assert_eq!(rep.outages.len(), 1);
    let o = &rep.outages[0];
    assert_eq!(o.trunk, "primary");
    assert_eq!(o.first_sign, "2023-06-25T11:00:01.200Z");
    assert_eq!(o.down, "2023-06-25T11:00:01.210Z");
    assert_eq!(o.up.as_deref(), Some("2023-06-25T11:00:10.000Z"));
    assert_eq!(o.down_reason, "live: no response");
    assert_eq!(o.calls_touched.emergency, 2, "calls 2 and 4");
    assert_eq!(o.calls_touched.other, 1, "call 3");
    assert_eq!(o.not_connected.emergency, 1, "call 4");
    assert_eq!(o.not_connected.other, 0);
    assert_eq!(o.failovers, 2);
    assert!((o.duration_s - 8.8).abs() < 1e-9);

    // The callback list: emergency calls that did not connect, newest first.
    let ids: Vec<&str> = rep.callbacks.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "call-7@origin",
            "call-6@origin",
            "call-5@origin",
            "call-4@origin"
        ]
    );
    let c4 = &rep.callbacks[3];
    assert_eq!(c4.tried_summary(), "backup:503 primary:no-response");
    assert_eq!(c4.status, Some(503));
    assert_eq!(c4.late_answer_via.as_deref(), Some("primary"));
    assert_eq!(c4.location, "<cid:loc@origin.example> pidf-lo");
    assert_eq!(c4.asserted_identities[1], "<tel:+447000000004>");

    // Totals.
    let t = &rep.totals;
    assert_eq!((t.calls.emergency, t.calls.other), (6, 1));
    assert_eq!((t.connected.emergency, t.connected.other), (2, 1));
    assert_eq!(t.failed.emergency, 3);
    assert_eq!(t.cancelled.emergency, 1);
    assert_eq!((t.failed_over.emergency, t.failed_over.other), (2, 1));
    assert_eq!(t.setup_median_ms, Some(250.0));
    assert_eq!(t.setup_max_ms, Some(260.0));
    let backup = t.trunks.iter().find(|x| x.trunk == "backup").unwrap();
    assert_eq!(
        (backup.attempts, backup.connected, backup.failed_attempts),
        (5, 2, 1)
    );
    assert_eq!(
        (backup.setup_median_ms, backup.setup_max_ms),
        (Some(250.0), Some(260.0))
    );
    let primary = t.trunks.iter().find(|x| x.trunk == "primary").unwrap();
    assert_eq!(
        (primary.attempts, primary.connected, primary.failed_attempts),
        (4, 1, 3)
    );

    // Renderings.
    let table = report::render_table(&rep);
    assert!(
        table.contains("CALLBACK LIST: 4 emergency call(s)"),
        "{table}"
    );
    assert!(table.contains("late answer via primary"), "{table}");
    // An emergency call with no route is on the callback list, not counted.
    assert_eq!(rep.refused, report::RefusedSummary::default());
    assert!(
        table.contains("\nREFUSED WITHOUT REACHING A TRUNK\n(none)\n"),
        "{table}"
    );
    let csv = report::render_csv(&rep);
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(rows[0].starts_with("time,call_back,"));
    assert!(rows[1]
        .starts_with("2023-06-25T11:00:05.000Z,<sip:+447000000007@origin.example;user=phone>,"));
    let json: serde_json::Value = serde_json::from_str(&report::render_json(&rep)).unwrap();
    assert_eq!(json["callbacks"].as_array().unwrap().len(), 4);
    assert_eq!(json["outages"][0]["calls_touched"]["emergency"], 2);
}

#[test]
fn report_window_selects_calls_and_events() {
    let mut w = World::new(AggregatorLimits::default());
    w.incident();
    let rep = report::build(
        &w.records,
        Window {
            since: Some(WallTime(EPOCH_US + 1_500_000)),
            until: Some(WallTime(EPOCH_US + 4_500_000)),
        },
    );
    let ids: Vec<&str> = rep.callbacks.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids, ["call-6@origin", "call-5@origin", "call-4@origin"]);
    assert_eq!(rep.totals.calls.emergency, 3);
    assert_eq!(rep.timeline.len(), 1, "{:?}", rep.timeline);
    // The outage overlaps the window: reported, counting calls in the window.
    assert_eq!(rep.outages.len(), 1);
    assert_eq!(rep.outages[0].calls_touched.emergency, 1);
}

#[test]
fn records_survive_the_journal_unchanged() {
    let mut w = World::new(AggregatorLimits::default());
    w.incident();
    let (tmp, back) = through_journal(&w.records);
    assert_eq!(back, w.records);
    assert_eq!(
        report::build(&back, Window::default()),
        report::build(&w.records, Window::default())
    );

    // After a restart the admin API's ring is refilled from the journal.
    let ring = lifeline_journal::FailedCalls::new(100);
    JournalReader::open(&[tmp.path()])
        .unwrap()
        .for_each(|e| ring.preload(&e.record));
    assert_eq!(ring.recent(100), w.agg.failed_calls().recent(100));
}

/// Rescues, hedges, full trunks, a second answer and a canary (issue 11):
/// each on its call's record (or a note record after it), through the
/// journal unchanged, and in the report.
#[test]
fn rescues_hedges_full_trunks_and_canaries_are_journaled_and_reported() {
    use lifeline_journal::{CallNote, Micros, NoteRecord, SkipReason, TrunkChange};
    use lifeline_proxy::SkipReason as Skip;

    let mut w = World::new(AggregatorLimits::default());
    let (p, b) = (w.primary, w.backup);
    // Call 10: the primary is full; the call overflows to the backup. The
    // primary is passed over twice, noted once.
    w.start(10, 20_000, true);
    for _ in 0..2 {
        w.feed_at(20_000, |at| Event::TrunkSkipped {
            call: CallRef(10),
            at,
            trunk: p,
            reason: Skip::MaxCalls,
        });
    }
    w.attempt(10, 20_000, b, 1);
    w.connect(10, 20_050, b, 50);
    // Call 11: ringing on the primary when it goes Down: rescued.
    w.start(11, 21_000, true);
    w.attempt(11, 21_000, p, 1);
    w.rescued(11, 21_300, p, true);
    w.fail(11, 21_300, p, AttemptFailure::TrunkDown, 300);
    w.attempt(11, 21_300, b, 2);
    w.connect(11, 21_400, b, 400);
    // Call 12: no ringing within hedge_after: hedged to the backup, which
    // answers; the primary's attempt is cancelled, then answers too.
    w.start(12, 22_000, true);
    w.attempt(12, 22_000, p, 1);
    w.feed_at(22_300, |at| Event::Hedged {
        call: CallRef(12),
        at,
        trunk: b,
    });
    w.attempt(12, 22_300, b, 2);
    w.connect(12, 22_350, b, 350);
    w.fail(12, 22_360, p, AttemptFailure::Superseded, 360);
    w.feed_at(22_400, |at| Event::DuplicateAnswer {
        call: CallRef(12),
        at,
        trunk: p,
    });
    // Call 13: rescued before ringing, and the backup fails too.
    w.start(13, 23_000, true);
    w.attempt(13, 23_000, p, 1);
    w.rescued(13, 23_100, p, false);
    w.fail(13, 23_100, p, AttemptFailure::TrunkDown, 100);
    w.attempt(13, 23_100, b, 2);
    w.fail(13, 23_110, b, AttemptFailure::Response(503), 10);
    w.call_failed(13, 23_110, 503, CallFailure::AllTrunksFailed);
    // The primary comes back on probes: a canary, which it passes.
    let until = w.at(35_000);
    w.health(25_000, p, EventKind::CanaryStarted { until });
    w.health(27_000, p, EventKind::CanaryEnded { passed: true });
    assert_eq!(w.agg.stats().unknown_call_events, 0);

    // The records.
    let cs = calls(&w.records);
    let notes = |id: &str| {
        cs.iter()
            .find(|c| c.call_id == id)
            .map(|c| (c.attempts_summary(), c.notes.clone()))
            .unwrap()
    };
    assert_eq!(
        notes("call-10@origin"),
        (
            "backup:connected".to_string(),
            vec![CallNote::Skipped {
                trunk: "primary".into(),
                offset: Micros(0),
                reason: SkipReason::MaxCalls
            }]
        )
    );
    assert_eq!(
        notes("call-11@origin"),
        (
            "primary:trunk-down backup:connected".to_string(),
            vec![CallNote::Rescued {
                trunk: "primary".into(),
                offset: Micros(300_000),
                ringing: true
            }]
        )
    );
    assert_eq!(
        notes("call-12@origin"),
        (
            "primary:superseded backup:connected".to_string(),
            vec![CallNote::Hedged {
                trunk: "backup".into(),
                offset: Micros(300_000)
            }]
        )
    );
    assert_eq!(notes("call-13@origin").0, "primary:trunk-down backup:503");
    let extra: Vec<&JournalRecord> = w
        .records
        .iter()
        .filter(|r| matches!(r, JournalRecord::Note(_) | JournalRecord::Trunk(_)))
        .collect();
    assert_eq!(
        extra,
        [
            &JournalRecord::Note(NoteRecord {
                call_id: "call-12@origin".into(),
                started: WallTime(EPOCH_US + 22_000_000),
                emergency: true,
                note: CallNote::DuplicateAnswer {
                    trunk: "primary".into(),
                    offset: Micros(400_000)
                },
            }),
            &JournalRecord::Trunk(lifeline_journal::TrunkRecord {
                at: WallTime(EPOCH_US + 25_000_000),
                trunk: "primary".into(),
                change: TrunkChange::CanaryStarted {
                    until: WallTime(EPOCH_US + 35_000_000)
                },
            }),
            &JournalRecord::Trunk(lifeline_journal::TrunkRecord {
                at: WallTime(EPOCH_US + 27_000_000),
                trunk: "primary".into(),
                change: TrunkChange::CanaryEnded { passed: true },
            }),
        ]
    );

    // Through the journal unchanged.
    let (_tmp, back) = through_journal(&w.records);
    assert_eq!(back, w.records);

    // The report: one timeline line per kind and trunk.
    let rep = report::build(&back, Window::default());
    let lines: Vec<String> = rep
        .timeline
        .iter()
        .map(|e| match e {
            report::TimelineEntry::Trunk {
                trunk,
                change,
                reason,
                ..
            } => format!("{trunk} {change}: {reason}"),
            report::TimelineEntry::Failover {
                from,
                to,
                calls,
                reasons,
                ..
            } => format!("failover {from}->{to} {calls}: {}", reasons.join(", ")),
            report::TimelineEntry::Calls {
                trunk,
                event,
                calls,
                emergency,
                ..
            } => format!("{trunk}: {event} {calls}/{emergency}"),
        })
        .collect();
    assert_eq!(
        lines,
        [
            "primary: primary skipped: max_calls 1/1",
            "failover primary->backup 2: trunk-down x2",
            "primary: rescued off primary while ringing 1/1",
            "backup: hedged to backup 1/1",
            "primary: second answer from primary ended with BYE 1/1",
            "primary: rescued off primary before ringing 1/1",
            "primary canary started: back up on probes after failing calls: a share of calls \
             until 2023-06-25T11:00:35.000Z at most",
            "primary canary passed: full traffic again",
        ]
    );
    let t = &rep.totals;
    assert_eq!((t.rescued.emergency, t.rescued.other), (2, 0));
    assert_eq!(t.hedged.emergency, 1);
    assert_eq!(t.skipped_full.emergency, 1);
    assert_eq!(t.failed_over.emergency, 3, "calls 11, 12 and 13");
    let primary = t.trunks.iter().find(|x| x.trunk == "primary").unwrap();
    assert_eq!(
        (
            primary.attempts,
            primary.failed_attempts,
            primary.rescued_off,
            primary.skipped_full
        ),
        (3, 2, 2, 1),
        "a superseded hedge is not a failed attempt"
    );
    // The callback list says the failed call was rescued.
    assert_eq!(rep.callbacks.len(), 1);
    assert_eq!(
        rep.callbacks[0].notes,
        ["rescued off primary before ringing"]
    );
    let table = report::render_table(&rep);
    for want in [
        "rescued off primary while ringing",
        "hedged to backup",
        "primary skipped: max_calls",
        "second answer from primary ended with BYE",
        "canary passed",
        "failed 503 (all-trunks-failed); rescued off primary before ringing",
        "RESCUED",
    ] {
        assert!(table.contains(want), "{want} in:\n{table}");
    }
    let csv = report::render_csv(&rep);
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(rows[0].ends_with(",source,notes,gateway"), "{csv}");
    assert!(
        rows[1].ends_with(",udp:192.0.2.7:5060,rescued off primary before ringing,"),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&report::render_json(&rep)).unwrap();
    assert_eq!(json["totals"]["rescued"]["emergency"], 2);
    assert_eq!(json["timeline"][0]["kind"], "calls");
    assert_eq!(json["timeline"][0]["event"], "primary skipped: max_calls");
}

/// Junk from `source`: the proxy's answer to an INVITE no route matches, as
/// it reports it: the 404 (`Rejected`), then the call it starts and fails.
fn no_route(w: &mut World, call: u64, at: Instant, emergency: bool, source: Peer) {
    w.feed(Event::Rejected {
        at,
        from: source,
        status: Some(404),
        reason: "no route",
    });
    let info = CallInfo {
        call_id: Bytes::from(format!("junk-{call}@{}", source.addr.ip())),
        from_uri: Bytes::from_static(b"sip:scanner@203.0.113.66"),
        from_display: None,
        asserted_identities: vec![],
        dialled: Bytes::from_static(if emergency {
            b"urn:service:sos"
        } else {
            b"sip:0044123456789@gw.example"
        }),
        emergency: emergency.then_some(Rule::SosUrn),
        location: Location::default(),
        route: String::new(),
        source,
    };
    w.feed(Event::CallStarted {
        call: CallRef(call),
        at,
        info: std::sync::Arc::new(info),
    });
    w.feed(Event::CallFailed {
        call: CallRef(call),
        at,
        status: 404,
        reason: CallFailure::NoRoute,
    });
}

fn refused(records: &[JournalRecord]) -> Vec<&RefusedRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            JournalRecord::Refused(x) => Some(x),
            _ => None,
        })
        .collect()
}

const JUNK: &str = "203.0.113.66";

fn junk_peer(port: u16) -> Peer {
    Peer::udp(SocketAddr::new(JUNK.parse().unwrap(), port))
}

/// A flood of 10,000 unroutable INVITEs from one address in one minute
/// leaves one record with the count; an emergency call with no route in
/// the middle of it, from the same address, keeps its own full record.
#[test]
fn junk_without_a_route_is_counted_per_source_and_emergency_calls_keep_their_records() {
    let mut w = World::new(AggregatorLimits::default());
    // One every millisecond from 1 s on, from ports all over the place.
    for i in 0..10_000u64 {
        let at = w.at(1_000 + i);
        no_route(
            &mut w,
            100 + i,
            at,
            false,
            junk_peer(5060 + (i % 100) as u16),
        );
        if i == 5_000 {
            no_route(&mut w, 99, at, true, junk_peer(5060));
        }
    }
    // The emergency call at once; the junk not yet: its interval is open.
    let cs = calls(&w.records);
    assert_eq!(
        w.records.len(),
        2,
        "only the emergency call so far: its start and its end"
    );
    assert!(
        matches!(&w.records[0], JournalRecord::Started(c) if c.call_id == format!("junk-99@{JUNK}")
            && c.outcome == CallOutcome::Unfinished && c.attempts.is_empty()),
        "{:?}",
        w.records[0]
    );
    assert_eq!(cs[0].call_id, format!("junk-99@{JUNK}"));
    assert_eq!(cs[0].emergency, Some(EmergencyRule::SosUrn));
    assert_eq!(
        cs[0].outcome,
        CallOutcome::Failed {
            status: 404,
            reason: FailReason::NoRoute
        }
    );
    assert_eq!(cs[0].started, WallTime(EPOCH_US + 6_000_000));
    assert_eq!(
        w.agg.failed_calls().recent(10).len(),
        1,
        "to be called back"
    );
    assert_eq!(w.agg.in_progress(), 0);
    assert_eq!(w.agg.stats().calls_started, 10_001);
    assert_eq!(w.agg.stats().refused, 10_000, "each INVITE counted once");

    // The interval: 60 s from the first refusal.
    let end = w.at(61_000);
    assert_eq!(w.agg.poll_timeout(), Some(end));
    w.agg.handle_timeout(end - Duration::from_micros(1));
    w.collect();
    assert_eq!(w.records.len(), 2, "not before the interval ends");
    w.agg.handle_timeout(end);
    w.collect();
    assert_eq!(w.agg.poll_timeout(), None);
    let one = RefusedRecord {
        first: WallTime(EPOCH_US + 1_000_000),
        last: WallTime(EPOCH_US + 10_999_000),
        source: Some(JUNK.parse().unwrap()),
        refusal: Refusal::Call {
            status: 404,
            reason: FailReason::NoRoute,
        },
        count: 10_000,
    };
    assert_eq!(refused(&w.records), [&one]);
    assert_eq!(w.records.len(), 3);

    // The next refusal opens a new interval; shutdown writes it early.
    let at = w.at(70_000);
    no_route(&mut w, 20_000, at, false, junk_peer(5060));
    assert_eq!(w.agg.poll_timeout(), Some(w.at(130_000)));
    w.agg.finish_all(w.at(80_000));
    w.collect();
    let rs = refused(&w.records);
    assert_eq!(rs.len(), 2);
    assert_eq!(
        (rs[1].count, rs[1].first, rs[1].last),
        (
            1,
            WallTime(EPOCH_US + 70_000_000),
            WallTime(EPOCH_US + 70_000_000)
        )
    );
    assert_eq!(w.agg.poll_timeout(), None);

    // Through the journal unchanged.
    let (_tmp, back) = through_journal(&w.records);
    assert_eq!(back, w.records);
}

/// Messages refused outside any call are counted per source, reason and
/// status; the 404 of an unroutable INVITE only once, with its call.
#[test]
fn refused_messages_are_counted_per_source_reason_and_status() {
    let mut w = World::new(AggregatorLimits::default());
    let scanner = junk_peer(5070);
    let trunk = Peer::udp("192.0.2.10:5060".parse().unwrap());
    let rejected = |status, reason| {
        move |at| Event::Rejected {
            at,
            from: scanner,
            status,
            reason,
        }
    };
    for ms in [0, 10, 20] {
        w.feed_at(ms, rejected(None, "access"));
    }
    w.feed_at(30, rejected(Some(400), "malformed"));
    // A 404 to an OPTIONS no route matches: no call follows it.
    w.feed_at(40, rejected(Some(404), "no route"));
    // An unroutable INVITE: the same 404, and a call.
    let at = w.at(50);
    no_route(&mut w, 1, at, false, scanner);
    w.feed_at(60, rejected(Some(400), "malformed"));
    w.feed_at(70, |at| Event::Rejected {
        at,
        from: trunk,
        status: None,
        reason: "stray response",
    });
    // Still held when the tick comes: counted then.
    w.feed_at(80, rejected(Some(404), "no route"));
    assert!(refused(&w.records).is_empty());
    w.agg.handle_timeout(w.at(60_000));
    w.collect();
    // source, what, reason, status, count, first and last ms.
    let got: Vec<String> = refused(&w.records)
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {:?} x{} {}..{}",
                r.source_text(),
                r.refusal.what(),
                r.refusal.reason(),
                r.refusal.status(),
                r.count,
                (r.first.0 - EPOCH_US) / 1000,
                (r.last.0 - EPOCH_US) / 1000,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "203.0.113.66 message \"access\" None x3 0..20",
            "203.0.113.66 message \"malformed\" Some(400) x2 30..60",
            "203.0.113.66 message \"no route\" Some(404) x2 40..80",
            "203.0.113.66 call \"no-route\" Some(404) x1 50..50",
            "192.0.2.10 message \"stray response\" None x1 70..70",
        ]
    );
    assert_eq!(w.agg.stats().refused, 9);
    assert!(calls(&w.records).is_empty());
}

/// Spoofed sources cannot grow the aggregator's memory: past the limit of
/// distinct addresses per interval, refusals are counted together.
#[test]
fn refused_sources_are_bounded_per_interval() {
    let mut w = World::new(AggregatorLimits {
        refused_sources: 3,
        refused_interval: Duration::from_secs(10),
        ..AggregatorLimits::default()
    });
    let source = |n: u8| Peer::udp(SocketAddr::from(([198, 51, 100, n], 5060)));
    let mut call = 0;
    for round in 0..2 {
        for n in 1..=5u8 {
            call += 1;
            let at = w.at(round * 1_000 + u64::from(n) * 100);
            no_route(&mut w, call, at, false, source(n));
        }
    }
    assert_eq!(w.agg.stats().refused, 10);
    assert_eq!(w.agg.stats().refused_other_sources, 4, "sources 4 and 5");
    w.agg.handle_timeout(w.at(10_100));
    w.collect();
    let got: Vec<(String, u64)> = refused(&w.records)
        .iter()
        .map(|r| (r.source_text(), r.count))
        .collect();
    assert_eq!(
        got,
        [
            ("198.51.100.1".to_string(), 2),
            ("198.51.100.2".to_string(), 2),
            ("198.51.100.3".to_string(), 2),
            ("other sources".to_string(), 4),
        ]
    );
    assert_eq!(refused(&w.records)[3].source, None);
    // The next interval starts with no sources: the fifth is counted apart.
    let at = w.at(20_000);
    no_route(&mut w, 99, at, false, source(5));
    w.agg.finish_all(w.at(20_001));
    w.collect();
    assert_eq!(
        refused(&w.records)[4].source_text(),
        "198.51.100.5",
        "a fresh interval"
    );
}

/// `lifeline report`: what was refused, per source, most first; refused
/// calls in the totals as failed calls.
#[test]
fn report_lists_refusals_per_source() {
    let mut w = World::new(AggregatorLimits::default());
    w.incident();
    for i in 0..500u64 {
        let at = w.at(20_000 + i);
        no_route(&mut w, 1_000 + i, at, false, junk_peer(5060));
    }
    let other = Peer::udp("198.51.100.9:5060".parse().unwrap());
    for i in 0..20u64 {
        let at = w.at(21_000 + i);
        no_route(&mut w, 2_000 + i, at, false, other);
    }
    for ms in [30_000, 30_001] {
        w.feed_at(ms, |at| Event::Rejected {
            at,
            from: other,
            status: None,
            reason: "access",
        });
    }
    // Another interval of the first source.
    let at = w.at(90_000);
    no_route(&mut w, 3_000, at, false, junk_peer(5060));
    w.agg.finish_all(w.at(95_000));
    w.collect();
    assert_eq!(refused(&w.records).len(), 4);
    let (_tmp, back) = through_journal(&w.records);
    let rep = report::build(&back, Window::default());

    let f = &rep.refused;
    assert_eq!((f.calls, f.messages, f.sources), (521, 2, 2));
    let rows: Vec<String> = f
        .rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} x{} {} {}",
                r.source, r.what, r.reason, r.status, r.count, r.first, r.last
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "203.0.113.66 call no-route Some(404) x501 2023-06-25T11:00:20.000Z \
             2023-06-25T11:01:30.000Z",
            "198.51.100.9 call no-route Some(404) x20 2023-06-25T11:00:21.000Z \
             2023-06-25T11:00:21.019Z",
            "198.51.100.9 message access None x2 2023-06-25T11:00:30.000Z \
             2023-06-25T11:00:30.001Z",
        ]
    );
    assert_eq!((f.rows_left_out, f.count_left_out), (0, 0));
    // The refused calls failed: in the totals, with the incident's calls.
    assert_eq!(
        (rep.totals.calls.emergency, rep.totals.calls.other),
        (6, 522)
    );
    assert_eq!(rep.totals.failed.other, 521);
    // Only the incident's emergency calls to call back.
    assert_eq!(rep.callbacks.len(), 4);

    let table = report::render_table(&rep);
    for want in [
        "REFUSED WITHOUT REACHING A TRUNK: 521 call(s), 2 other message(s), from 2 source(s)",
        "SOURCE        WHAT     REASON    STATUS   COUNT  FIRST                     LAST",
        "203.0.113.66  call     no-route  404      501    2023-06-25T11:00:20.000Z  \
         2023-06-25T11:01:30.000Z",
        "198.51.100.9  message  access    dropped  2      2023-06-25T11:00:30.000Z  \
         2023-06-25T11:00:30.001Z",
    ] {
        assert!(table.contains(want), "{want} in:\n{table}");
    }
    let json: serde_json::Value = serde_json::from_str(&report::render_json(&rep)).unwrap();
    assert_eq!(json["refused"]["calls"], 521);
    assert_eq!(json["refused"]["rows"][0]["source"], JUNK);
    assert_eq!(json["refused"]["rows"][0]["count"], 501);
    assert_eq!(
        json["refused"]["rows"][2]["status"],
        serde_json::Value::Null
    );

    // A window selects records by their first refusal.
    let rep = report::build(
        &back,
        Window {
            since: Some(WallTime(EPOCH_US + 60_000_000)),
            until: None,
        },
    );
    assert_eq!((rep.refused.calls, rep.refused.sources), (1, 1));
}

/// However many sources, the report lists the most refused ones and sums
/// up the rest.
#[test]
fn report_lists_at_most_a_hundred_refusal_rows() {
    let records: Vec<JournalRecord> = (0..105u64)
        .map(|i| {
            JournalRecord::Refused(RefusedRecord {
                first: WallTime(EPOCH_US + i as i64),
                last: WallTime(EPOCH_US + i as i64),
                source: Some(IpAddr::from([10, 0, 0, i as u8])),
                refusal: Refusal::Message {
                    status: Some(403),
                    reason: "access".into(),
                },
                count: 1_000 - i,
            })
        })
        .collect();
    let rep = report::build(&records, Window::default());
    let f = &rep.refused;
    assert_eq!(f.rows.len(), report::REFUSED_ROWS);
    assert_eq!(f.rows[0].source, "10.0.0.0", "the most first");
    assert_eq!(f.rows[99].source, "10.0.0.99");
    assert_eq!(
        (f.rows_left_out, f.count_left_out),
        (5, 900 + 899 + 898 + 897 + 896)
    );
    assert_eq!((f.messages, f.sources), ((896..=1_000).sum::<u64>(), 105));
    let table = report::render_table(&rep);
    assert!(
        table.contains("... and 5 more row(s), with 4490 refusal(s)"),
        "{table}"
    );
}
