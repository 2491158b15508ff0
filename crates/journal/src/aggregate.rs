//! From proxy events to journal records. Pure: no IO, no clock (the daemon
//! passes a [`TimeAnchor`] to turn `Instant`s into wall-clock times).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use lifeline_health::{Health, TrunkId};
use lifeline_proxy::{CallInfo, CallRef, Event, Proxy};
use serde::Serialize;

use crate::record::{
    AttemptRecord, AttemptResult, CallNote, CallOutcome, CallRecord, Caller, EmergencyRule,
    FailReason, JournalRecord, LateRecord, LocationRecord, Micros, NoteRecord, SkipReason,
    TrunkChange, TrunkRecord, WallTime,
};

/// Turns the proxy's monotonic `Instant`s into wall-clock times: one
/// `(Instant, SystemTime)` pair read together by the daemon at start.
/// Wall-clock steps after that (NTP) do not move journal times, so the
/// intervals between records stay exact.
#[derive(Clone, Copy, Debug)]
pub struct TimeAnchor {
    instant: Instant,
    system: WallTime,
}

impl TimeAnchor {
    /// `instant` and `system` read at (nearly) the same moment.
    pub fn new(instant: Instant, system: SystemTime) -> Self {
        Self {
            instant,
            system: WallTime::from_system(system),
        }
    }

    /// The wall-clock time of `at`.
    pub fn wall(&self, at: Instant) -> WallTime {
        if at >= self.instant {
            self.system
                .plus(Micros::from_duration(at.duration_since(self.instant)))
        } else {
            let back = Micros::from_duration(self.instant.duration_since(at));
            WallTime(
                self.system
                    .0
                    .saturating_sub(i64::try_from(back.0).unwrap_or(i64::MAX)),
            )
        }
    }
}

/// Trunk and route names, for records that outlive the process's `TrunkId`s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    trunks: Vec<String>,
    routes: Vec<(String, Vec<String>)>,
}

impl Names {
    /// Trunk names in `TrunkId` order (the order they were added).
    pub fn new<I, S>(trunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            trunks: trunks.into_iter().map(Into::into).collect(),
            routes: Vec::new(),
        }
    }

    /// Add a route with its trunks in priority order.
    pub fn with_route(mut self, name: &str, trunks: &[&str]) -> Self {
        self.routes.push((
            name.to_string(),
            trunks.iter().map(|t| t.to_string()).collect(),
        ));
        self
    }

    /// The trunks of a health checker.
    pub fn from_health(health: &Health) -> Self {
        Self::new(health.trunks().map(|t| t.name))
    }

    /// The trunks and routes of a proxy (call again after a reload).
    pub fn from_proxy(proxy: &Proxy) -> Self {
        let mut names = Self::from_health(proxy.health());
        for (route, trunks) in proxy.routes() {
            let trunks = trunks.iter().map(|t| names.trunk(*t)).collect();
            names.routes.push((route.to_string(), trunks));
        }
        names
    }

    /// A trunk's name (`trunk-<index>` if unknown).
    pub fn trunk(&self, id: TrunkId) -> String {
        self.trunks
            .get(id.index())
            .cloned()
            .unwrap_or_else(|| format!("trunk-{}", id.index()))
    }

    /// A route's trunks, in priority order.
    pub fn route_trunks(&self, route: &str) -> Option<&[String]> {
        self.routes
            .iter()
            .find(|(r, _)| r == route)
            .map(|(_, t)| t.as_slice())
    }
}

/// Bounds on what the aggregator keeps in memory.
#[derive(Clone, Copy, Debug)]
pub struct AggregatorLimits {
    /// Calls in progress tracked at once (default 200,000). Past it the
    /// oldest is journaled as [`CallOutcome::Unfinished`] and counted.
    pub max_calls_in_progress: usize,
    /// Failed emergency calls kept for `GET /calls/failed` (default 10,000).
    pub failed_calls: usize,
    /// Finished calls remembered to match late answers (default 10,000).
    pub recently_finished: usize,
}

impl Default for AggregatorLimits {
    fn default() -> Self {
        Self {
            max_calls_in_progress: 200_000,
            failed_calls: 10_000,
            recently_finished: 10_000,
        }
    }
}

/// Aggregator counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Calls seen starting.
    pub calls_started: u64,
    /// Records produced.
    pub records: u64,
    /// Calls journaled unfinished because too many were in progress.
    pub evicted: u64,
    /// Events about calls not tracked (evicted, or started before the
    /// aggregator): ignored.
    pub unknown_call_events: u64,
}

#[derive(Debug)]
struct Attempt {
    trunk: TrunkId,
    attempt: u32,
    started: Instant,
    result: Option<AttemptResult>,
    elapsed: Option<Micros>,
    late_status: Option<u16>,
}

impl Attempt {
    /// It ended at `at`, with `result`.
    fn end(&mut self, result: AttemptResult, at: Instant) {
        self.result = Some(result);
        self.elapsed = Some(Micros::from_duration(
            at.saturating_duration_since(self.started),
        ));
    }
}

#[derive(Debug)]
struct InProgress {
    started: Instant,
    info: Box<CallInfo>,
    attempts: Vec<Attempt>,
    notes: Vec<CallNote>,
}

impl InProgress {
    /// The latest attempt on `trunk` that is still open (`open`), or that
    /// has ended (`!open`).
    fn latest_on(&mut self, trunk: TrunkId, open: bool) -> Option<&mut Attempt> {
        self.attempts
            .iter_mut()
            .rev()
            .find(|a| a.trunk == trunk && a.result.is_none() == open)
    }
}

#[derive(Debug)]
struct Finished {
    call_id: String,
    started: WallTime,
    started_at: Instant,
    emergency: bool,
    connected: bool,
}

/// Builds journal records from proxy events. Call [`handle`](Self::handle)
/// for every event, then drain [`poll_record`](Self::poll_record).
#[derive(Debug)]
pub struct CallAggregator {
    names: Names,
    anchor: TimeAnchor,
    limits: AggregatorLimits,
    calls: BTreeMap<CallRef, InProgress>,
    finished: BTreeMap<CallRef, Finished>,
    out: VecDeque<JournalRecord>,
    failed: FailedCalls,
    stats: AggregatorStats,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl CallAggregator {
    /// An aggregator naming trunks with `names` and dating events with `anchor`.
    pub fn new(names: Names, anchor: TimeAnchor, limits: AggregatorLimits) -> Self {
        Self {
            names,
            anchor,
            failed: FailedCalls::new(limits.failed_calls),
            limits,
            calls: BTreeMap::new(),
            finished: BTreeMap::new(),
            out: VecDeque::new(),
            stats: AggregatorStats::default(),
        }
    }

    /// Replace the names (after a configuration reload).
    pub fn set_names(&mut self, names: Names) {
        self.names = names;
    }

    /// The ring of recent failed emergency calls (a shared handle: clone it
    /// into the admin API).
    pub fn failed_calls(&self) -> FailedCalls {
        self.failed.clone()
    }

    /// Counters.
    pub fn stats(&self) -> AggregatorStats {
        self.stats
    }

    /// Calls in progress.
    pub fn in_progress(&self) -> usize {
        self.calls.len()
    }

    /// The next finished record, oldest first.
    pub fn poll_record(&mut self) -> Option<JournalRecord> {
        self.out.pop_front()
    }

    /// Feed one proxy event.
    pub fn handle(&mut self, ev: &Event) {
        match ev {
            Event::CallStarted { call, at, info } => {
                self.stats.calls_started += 1;
                while self.calls.len() >= self.limits.max_calls_in_progress.max(1) {
                    let Some((&oldest, _)) = self.calls.first_key_value() else {
                        break;
                    };
                    self.stats.evicted += 1;
                    self.finish(oldest, *at, CallOutcome::Unfinished, None);
                }
                self.calls.insert(
                    *call,
                    InProgress {
                        started: *at,
                        info: info.clone(),
                        attempts: Vec::new(),
                        notes: Vec::new(),
                    },
                );
            }
            Event::AttemptStarted {
                call,
                at,
                trunk,
                attempt,
            } => {
                if let Some(c) = self.calls.get_mut(call) {
                    c.attempts.push(Attempt {
                        trunk: *trunk,
                        attempt: *attempt,
                        started: *at,
                        result: None,
                        elapsed: None,
                        late_status: None,
                    });
                } else {
                    self.stats.unknown_call_events += 1;
                }
            }
            Event::AttemptFailed {
                call,
                trunk,
                reason,
                elapsed,
                ..
            } => {
                if let Some(c) = self.calls.get_mut(call) {
                    if let Some(a) = c.latest_on(*trunk, true) {
                        a.result = Some(AttemptResult::from_failure(*reason));
                        a.elapsed = Some(Micros::from_duration(*elapsed));
                    }
                } else if !self.finished.contains_key(call) {
                    // A hedge that lost may be given up after the call was
                    // answered (and journaled, its attempt as superseded).
                    self.stats.unknown_call_events += 1;
                }
            }
            Event::LateResponse {
                call,
                trunk,
                status,
                ..
            } => {
                if let Some(c) = self.calls.get_mut(call) {
                    if let Some(a) = c.latest_on(*trunk, false) {
                        a.late_status = Some(*status);
                    }
                }
                // On a finished call only a 2xx matters, and CallConnected follows it.
            }
            Event::CallConnected {
                call,
                at,
                trunk,
                setup,
            } => {
                if let Some(c) = self.calls.get_mut(call) {
                    if let Some(a) = c.latest_on(*trunk, true) {
                        a.end(AttemptResult::Connected, *at);
                    }
                    // Any other attempt still open lost to this answer (a
                    // hedge, or the attempt a late 2xx overtook): cancelled.
                    for a in c.attempts.iter_mut().filter(|a| a.result.is_none()) {
                        a.end(AttemptResult::Superseded, *at);
                    }
                    let outcome = CallOutcome::Connected {
                        trunk: self.names.trunk(*trunk),
                    };
                    self.finish(*call, *at, outcome, Some(Micros::from_duration(*setup)));
                } else if let Some(f) = self.finished.get_mut(call) {
                    if !f.connected {
                        f.connected = true;
                        let late = LateRecord {
                            at: self.anchor.wall(*at),
                            call_id: f.call_id.clone(),
                            started: f.started,
                            trunk: self.names.trunk(*trunk),
                            status: 200,
                            connected: true,
                        };
                        if f.emergency {
                            self.failed.mark_late(&late);
                        }
                        self.emit(JournalRecord::Late(late));
                    }
                } else {
                    self.stats.unknown_call_events += 1;
                }
            }
            Event::CallFailed {
                call,
                at,
                status,
                reason,
            } => {
                if let Some(c) = self.calls.get_mut(call) {
                    let open = if *reason == lifeline_proxy::CallFailure::Rejected {
                        AttemptResult::Rejected(*status)
                    } else {
                        AttemptResult::Unknown
                    };
                    if let Some(a) = c.attempts.iter_mut().rev().find(|a| a.result.is_none()) {
                        a.end(open, *at);
                    }
                    let outcome = CallOutcome::Failed {
                        status: *status,
                        reason: FailReason::from(*reason),
                    };
                    self.finish(*call, *at, outcome, None);
                } else {
                    self.stats.unknown_call_events += 1;
                }
            }
            Event::CallCancelled { call, at } => {
                if let Some(c) = self.calls.get_mut(call) {
                    for a in c.attempts.iter_mut().filter(|a| a.result.is_none()) {
                        a.end(AttemptResult::Cancelled, *at);
                    }
                    self.finish(*call, *at, CallOutcome::Cancelled, None);
                } else {
                    self.stats.unknown_call_events += 1;
                }
            }
            Event::Rescued {
                call,
                at,
                trunk,
                ringing,
            } => {
                let trunk = self.names.trunk(*trunk);
                let ringing = *ringing;
                self.note(*call, *at, |offset| CallNote::Rescued {
                    trunk,
                    offset,
                    ringing,
                });
            }
            Event::Hedged { call, at, trunk } => {
                let trunk = self.names.trunk(*trunk);
                self.note(*call, *at, |offset| CallNote::Hedged { trunk, offset });
            }
            Event::TrunkSkipped {
                call,
                at,
                trunk,
                reason,
            } => {
                let trunk = self.names.trunk(*trunk);
                let reason = SkipReason::from(*reason);
                // Once per trunk and reason: a full trunk may be passed over
                // at every failover of the call.
                let seen = self.calls.get(call).is_some_and(|c| {
                    c.notes.iter().any(|n| match n {
                        CallNote::Skipped {
                            trunk: t,
                            reason: r,
                            ..
                        } => *t == trunk && *r == reason,
                        _ => false,
                    })
                });
                if !seen {
                    self.note(*call, *at, |offset| CallNote::Skipped {
                        trunk,
                        offset,
                        reason,
                    });
                }
            }
            Event::DuplicateAnswer { call, at, trunk } => {
                let trunk = self.names.trunk(*trunk);
                if let Some(f) = self.finished.get(call) {
                    // The usual case: the call was journaled when the first
                    // answer connected it.
                    let offset = Micros::from_duration(at.saturating_duration_since(f.started_at));
                    let rec = NoteRecord {
                        call_id: f.call_id.clone(),
                        started: f.started,
                        emergency: f.emergency,
                        note: CallNote::DuplicateAnswer { trunk, offset },
                    };
                    self.emit(JournalRecord::Note(rec));
                } else {
                    self.note(*call, *at, |offset| CallNote::DuplicateAnswer {
                        trunk,
                        offset,
                    });
                }
            }
            Event::Trunk(t) => {
                let change = match t.kind {
                    lifeline_health::EventKind::State { from, to, reason } => TrunkChange::State {
                        from: from.into(),
                        to: to.into(),
                        reason: reason.to_string(),
                    },
                    lifeline_health::EventKind::Drained => TrunkChange::Drained,
                    lifeline_health::EventKind::Undrained => TrunkChange::Undrained,
                    lifeline_health::EventKind::CanaryStarted { until } => {
                        TrunkChange::CanaryStarted {
                            until: self.anchor.wall(until),
                        }
                    }
                    lifeline_health::EventKind::CanaryEnded { passed } => {
                        TrunkChange::CanaryEnded { passed }
                    }
                };
                let rec = TrunkRecord {
                    at: self.anchor.wall(t.at),
                    trunk: self.names.trunk(t.trunk),
                    change,
                };
                self.emit(JournalRecord::Trunk(rec));
            }
            Event::Rejected { .. } => {}
        }
    }

    /// Journal every call still in progress as unfinished (at shutdown).
    pub fn finish_all(&mut self, at: Instant) {
        while let Some((&call, _)) = self.calls.first_key_value() {
            self.finish(call, at, CallOutcome::Unfinished, None);
        }
    }

    /// Add a note to a call in progress, dated from its start.
    fn note(&mut self, call: CallRef, at: Instant, make: impl FnOnce(Micros) -> CallNote) {
        if let Some(c) = self.calls.get_mut(&call) {
            let offset = Micros::from_duration(at.saturating_duration_since(c.started));
            c.notes.push(make(offset));
        } else {
            self.stats.unknown_call_events += 1;
        }
    }

    fn emit(&mut self, r: JournalRecord) {
        self.stats.records += 1;
        self.out.push_back(r);
    }

    fn finish(&mut self, call: CallRef, at: Instant, outcome: CallOutcome, setup: Option<Micros>) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        let started = self.anchor.wall(c.started);
        let info = &c.info;
        let attempts = c
            .attempts
            .iter()
            .map(|a| AttemptRecord {
                trunk: self.names.trunk(a.trunk),
                attempt: a.attempt,
                offset: Micros::from_duration(a.started.saturating_duration_since(c.started)),
                result: a.result.unwrap_or(AttemptResult::Unknown),
                elapsed: a.elapsed,
                late_status: a.late_status,
            })
            .collect();
        let rec = CallRecord {
            started,
            ended: self.anchor.wall(at),
            call_id: text(&info.call_id),
            caller: Caller {
                from_uri: text(&info.from_uri),
                from_display: info.from_display.as_deref().map(text),
                asserted_identities: info.asserted_identities.iter().map(|b| text(b)).collect(),
            },
            dialled: text(&info.dialled),
            emergency: info.emergency.map(EmergencyRule::from),
            location: LocationRecord {
                geolocation: info.location.geolocation.iter().map(|b| text(b)).collect(),
                pidf_lo: info.location.pidf_lo,
            },
            route: info.route.clone(),
            source: format!(
                "{}:{}",
                info.source.transport.via_token().to_ascii_lowercase(),
                info.source.addr
            ),
            attempts,
            outcome,
            setup,
            notes: c.notes,
        };
        let connected = rec.outcome.connected();
        if rec.is_emergency() && !connected {
            self.failed.push(&rec);
        }
        self.finished.insert(
            call,
            Finished {
                call_id: rec.call_id.clone(),
                started,
                started_at: c.started,
                emergency: rec.is_emergency(),
                connected,
            },
        );
        while self.finished.len() > self.limits.recently_finished {
            self.finished.pop_first();
        }
        self.emit(JournalRecord::Call(Box::new(rec)));
    }
}

/// One trunk tried for a call, as shown in the callback list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TriedTrunk {
    /// The trunk.
    pub trunk: String,
    /// How the attempt ended (`no-response`, `503`, `transport-error` ...).
    pub result: String,
    /// How long it lasted, in milliseconds, when known.
    pub elapsed_ms: Option<f64>,
}

/// One emergency call that did not connect: what is needed to call back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallbackEntry {
    /// When the call arrived (RFC 3339, UTC).
    pub time: String,
    /// The same, in microseconds since the Unix epoch.
    pub started_us: i64,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The From URI.
    pub from_uri: String,
    /// The From display name.
    pub from_display: Option<String>,
    /// Every P-Asserted-Identity.
    pub asserted_identities: Vec<String>,
    /// The number or URI dialled.
    pub dialled: String,
    /// Which emergency rule matched.
    pub emergency_rule: String,
    /// Geolocation values and `pidf-lo` if a PIDF-LO body was present.
    pub location: String,
    /// Each trunk tried and why it failed.
    pub tried: Vec<TriedTrunk>,
    /// How the call ended.
    pub outcome: String,
    /// The status the caller got, if the call failed.
    pub status: Option<u16>,
    /// Set when a 2xx arrived after the call was journaled (trunk name).
    pub late_answer_via: Option<String>,
    /// Where the call came from.
    pub source: String,
    /// Rescues, hedges and trunks skipped for capacity, in order
    /// (`rescued off primary while ringing`, `hedged to backup` ...).
    pub notes: Vec<String>,
}

impl CallbackEntry {
    /// The callback entry for a call record.
    pub fn from_record(r: &CallRecord) -> Self {
        Self {
            time: r.started.rfc3339(),
            started_us: r.started.0,
            call_id: r.call_id.clone(),
            from_uri: r.caller.from_uri.clone(),
            from_display: r.caller.from_display.clone(),
            asserted_identities: r.caller.asserted_identities.clone(),
            dialled: r.dialled.clone(),
            emergency_rule: r.emergency.map_or("", |e| e.as_str()).to_string(),
            location: r.location.reference(),
            tried: r
                .attempts
                .iter()
                .map(|a| TriedTrunk {
                    trunk: a.trunk.clone(),
                    result: match a.late_status {
                        Some(l) => format!("{} (late {l})", a.result.describe()),
                        None => a.result.describe(),
                    },
                    elapsed_ms: a.elapsed.map(Micros::millis),
                })
                .collect(),
            outcome: r.outcome.describe(),
            status: match r.outcome {
                CallOutcome::Failed { status, .. } => Some(status),
                _ => None,
            },
            late_answer_via: None,
            source: r.source.clone(),
            notes: r.notes.iter().map(CallNote::describe).collect(),
        }
    }

    /// `primary:no-response backup:503`
    pub fn tried_summary(&self) -> String {
        let parts: Vec<String> = self
            .tried
            .iter()
            .map(|t| format!("{}:{}", t.trunk, t.result))
            .collect();
        parts.join(" ")
    }
}

#[derive(Debug)]
struct Ring {
    cap: usize,
    calls: VecDeque<CallbackEntry>,
    total: u64,
}

/// The recent emergency calls that did not connect, newest last in memory,
/// bounded: what `GET /calls/failed` serves. A cheap-to-clone shared handle
/// (a mutex taken once per failed emergency call and per request).
#[derive(Clone, Debug)]
pub struct FailedCalls {
    inner: Arc<Mutex<Ring>>,
}

impl FailedCalls {
    /// A ring keeping the last `cap` calls.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Ring {
                cap: cap.max(1),
                calls: VecDeque::new(),
                total: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add a call (the aggregator does this; the daemon may preload the ring
    /// from the journal at start with [`Self::push`] too).
    pub fn push(&self, r: &CallRecord) {
        let entry = CallbackEntry::from_record(r);
        let mut ring = self.lock();
        ring.total += 1;
        if ring.calls.len() >= ring.cap {
            ring.calls.pop_front();
        }
        ring.calls.push_back(entry);
    }

    /// Fill the ring from journal records (oldest first), e.g. at start so
    /// that `GET /calls/failed` still lists the calls from before a restart:
    /// `JournalReader::open(&[dir])?.for_each(|e| ring.preload(&e.record))`.
    pub fn preload(&self, record: &JournalRecord) {
        match record {
            JournalRecord::Call(c) if c.is_emergency() && !c.outcome.connected() => self.push(c),
            JournalRecord::Late(l) if l.connected => self.mark_late(l),
            _ => {}
        }
    }

    /// Note a late answer on a call in the ring.
    pub fn mark_late(&self, late: &LateRecord) {
        let mut ring = self.lock();
        if let Some(e) = ring
            .calls
            .iter_mut()
            .rev()
            .find(|e| e.call_id == late.call_id && e.started_us == late.started.0)
        {
            e.late_answer_via = Some(late.trunk.clone());
        }
    }

    /// Up to `limit` calls, newest first.
    pub fn recent(&self, limit: usize) -> Vec<CallbackEntry> {
        self.lock()
            .calls
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Calls held now.
    pub fn len(&self) -> usize {
        self.lock().calls.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Failed emergency calls seen since start (including those the ring no
    /// longer holds).
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// The body of `GET /calls/failed`: `{"total": N, "calls": [...]}`,
    /// newest first, at most `limit` calls.
    pub fn to_json(&self, limit: usize) -> String {
        #[derive(Serialize)]
        struct Body {
            total: u64,
            held: usize,
            calls: Vec<CallbackEntry>,
        }
        let body = Body {
            total: self.total(),
            held: self.len(),
            calls: self.recent(limit),
        };
        serde_json::to_string(&body).unwrap_or_else(|_| "{}".into())
    }
}
