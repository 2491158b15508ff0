//! From proxy events to journal records. Pure: no IO, no clock (the daemon
//! passes a [`TimeAnchor`] to turn `Instant`s into wall-clock times, and
//! calls [`CallAggregator::handle_timeout`] from its housekeeping tick).
//!
//! # Refused without reaching a trunk: counted, not recorded
//!
//! Every unroutable INVITE used to become a call record, so a flood of junk
//! calls could push real failed emergency calls out of the journal's
//! retention. What never reached a trunk is counted instead, per source
//! address and kind of refusal ([`Refusal`]), in intervals of
//! [`AggregatorLimits::refused_interval`] (60 s): one [`RefusedRecord`] per
//! source and kind per interval, written when the interval ends (at the
//! first refusal or [`handle_timeout`](CallAggregator::handle_timeout) at or
//! after its end) and by [`finish_all`](CallAggregator::finish_all). It
//! counts:
//!
//! 1. non-emergency calls that failed before any attempt on a trunk (no
//!    route; every trunk of the route down, drained or full): no
//!    [`CallRecord`] is written for them;
//! 2. every [`Event::Rejected`]: requests answered with an error or dropped
//!    outside any call (access, malformed, loops ...) and responses dropped.
//!    A rejection followed at once by the `CallStarted` of a call from the
//!    same peer at the same instant (the proxy's 404 to an unroutable
//!    INVITE) is that call's own, and is counted with the call (1), or not
//!    at all for an emergency call, which has its record.
//!
//! An emergency call is never counted: it always gets its own record, route
//! or not. At most [`AggregatorLimits::refused_sources`] (1,024) distinct
//! addresses are tracked per interval; refusals from further ones are
//! counted together, under no address (`source: None`), so spoofed sources
//! cannot grow memory or the journal without bound.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use lifeline_health::{Health, TrunkId};
use lifeline_proxy::{CallInfo, CallRef, Event, Peer, Proxy};
use serde::Serialize;

use crate::record::{
    AttemptRecord, AttemptResult, CallNote, CallOutcome, CallRecord, Caller, EmergencyRule,
    FailReason, JournalRecord, LateRecord, LocationRecord, Micros, NoteRecord, Refusal,
    RefusedRecord, SkipReason, TrunkChange, TrunkRecord, WallTime,
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
    /// How long refusals are counted into one [`RefusedRecord`] per source
    /// and kind (default 60 s, from the first refusal of the interval).
    pub refused_interval: Duration,
    /// Distinct source addresses counted apart per interval (default
    /// 1,024); refusals from more are counted together, under no address.
    pub refused_sources: usize,
}

impl Default for AggregatorLimits {
    fn default() -> Self {
        Self {
            max_calls_in_progress: 200_000,
            failed_calls: 10_000,
            recently_finished: 10_000,
            refused_interval: Duration::from_secs(60),
            refused_sources: 1_024,
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
    /// Refusals counted into [`RefusedRecord`]s (calls and messages).
    pub refused: u64,
    /// Of those, counted under no address because the interval already
    /// tracked [`AggregatorLimits::refused_sources`] addresses.
    pub refused_other_sources: u64,
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
    info: Arc<CallInfo>,
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

/// What a refusal is counted under: a [`Refusal`] without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefusalKey {
    Call {
        status: u16,
        reason: FailReason,
    },
    Message {
        status: Option<u16>,
        reason: &'static str,
    },
}

impl RefusalKey {
    fn refusal(self) -> Refusal {
        match self {
            Self::Call { status, reason } => Refusal::Call { status, reason },
            Self::Message { status, reason } => Refusal::Message {
                status,
                reason: reason.to_string(),
            },
        }
    }
}

/// Refusals of one kind from one source in the open interval.
#[derive(Clone, Copy, Debug)]
struct Tally {
    key: RefusalKey,
    first: Instant,
    last: Instant,
    count: u64,
}

/// Add one refusal to the tally of its kind in `tallies`.
fn tally(tallies: &mut Vec<Tally>, key: RefusalKey, at: Instant) {
    match tallies.iter_mut().find(|t| t.key == key) {
        Some(t) => {
            t.last = t.last.max(at);
            t.count += 1;
        }
        None => tallies.push(Tally {
            key,
            first: at,
            last: at,
            count: 1,
        }),
    }
}

/// A rejection held back for one event: the proxy's answer to an INVITE
/// that then starts a call is counted with that call.
#[derive(Clone, Copy, Debug)]
struct HeldRejection {
    at: Instant,
    from: Peer,
    status: Option<u16>,
    reason: &'static str,
}

/// Refusals counted in the open interval.
#[derive(Debug, Default)]
struct RefusedBook {
    /// When the open interval ends (`None`: none is open).
    until: Option<Instant>,
    /// Per source address, one tally per kind (a handful at most: the
    /// proxy's reasons are a fixed set).
    sources: BTreeMap<IpAddr, Vec<Tally>>,
    /// Sources beyond the limit, together.
    others: Vec<Tally>,
    held: Option<HeldRejection>,
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
    refused: RefusedBook,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Where a call came from, as a record gives it (`udp:192.0.2.1:5060`),
/// written into one allocation of its final size or more.
fn source_text(peer: Peer) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(56);
    for c in peer.transport.via_token().chars() {
        s.push(c.to_ascii_lowercase());
    }
    let _ = write!(s, ":{}", peer.addr);
    s
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
            refused: RefusedBook::default(),
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

    /// When [`handle_timeout`](Self::handle_timeout) has work: the end of
    /// the open interval of refusals.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refused.until
    }

    /// Housekeeping (call it periodically, e.g. from the daemon's tick): if
    /// the open interval of refusals has ended by `now`, its
    /// [`RefusedRecord`]s are ready in [`poll_record`](Self::poll_record).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release_held();
        if self.refused.until.is_some_and(|u| now >= u) {
            self.close_refused();
        }
    }

    /// Feed one proxy event.
    pub fn handle(&mut self, ev: &Event) {
        if let Some(h) = self.refused.held.take() {
            let own = matches!(ev, Event::CallStarted { at, info, .. }
                if *at == h.at && info.source == h.from && h.status.is_some());
            if !own {
                self.count_rejection(h);
            }
        }
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
                // An emergency call is journaled as it starts too, so that a
                // gateway that dies before the call ends leaves it on the
                // callback list ("no end recorded").
                if info.emergency.is_some() {
                    let started = self.call_record(*at, info, *at, CallOutcome::Unfinished);
                    self.emit(JournalRecord::Started(Box::new(started)));
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
                let never_tried = self
                    .calls
                    .get(call)
                    .is_some_and(|c| c.info.emergency.is_none() && c.attempts.is_empty());
                if never_tried {
                    // Refused without reaching a trunk: counted, not recorded.
                    if let Some(c) = self.calls.remove(call) {
                        let key = RefusalKey::Call {
                            status: *status,
                            reason: FailReason::from(*reason),
                        };
                        self.count_refused(c.info.source.addr.ip(), *at, key);
                    }
                } else if let Some(c) = self.calls.get_mut(call) {
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
            Event::Rejected {
                at,
                from,
                status,
                reason,
            } => {
                // Held for one event: see the module docs.
                self.refused.held = Some(HeldRejection {
                    at: *at,
                    from: *from,
                    status: *status,
                    reason,
                });
            }
        }
    }

    /// At shutdown: journal every call still in progress as unfinished
    /// (ended at `at`), and the refusals counted so far (the open interval
    /// ends early).
    pub fn finish_all(&mut self, at: Instant) {
        while let Some((&call, _)) = self.calls.first_key_value() {
            self.finish(call, at, CallOutcome::Unfinished, None);
        }
        self.release_held();
        self.close_refused();
    }

    /// Count the held rejection, if any: no call claimed it.
    fn release_held(&mut self) {
        if let Some(h) = self.refused.held.take() {
            self.count_rejection(h);
        }
    }

    fn count_rejection(&mut self, h: HeldRejection) {
        let key = RefusalKey::Message {
            status: h.status,
            reason: h.reason,
        };
        self.count_refused(h.from.addr.ip(), h.at, key);
    }

    /// Count one refusal from `source` at `at`, in the open interval (a
    /// refusal at or after its end closes it and opens the next).
    fn count_refused(&mut self, source: IpAddr, at: Instant, key: RefusalKey) {
        if self.refused.until.is_some_and(|u| at >= u) {
            self.close_refused();
        }
        let interval = self.limits.refused_interval;
        self.refused
            .until
            .get_or_insert_with(|| at.checked_add(interval).unwrap_or(at));
        self.stats.refused += 1;
        let book = &mut self.refused;
        let tallies = if book.sources.len() < self.limits.refused_sources
            || book.sources.contains_key(&source)
        {
            book.sources.entry(source).or_default()
        } else {
            self.stats.refused_other_sources += 1;
            &mut book.others
        };
        tally(tallies, key, at);
    }

    /// End the open interval: one record per source and kind, in the order
    /// of their first refusal (the sources beyond the limit last).
    fn close_refused(&mut self) {
        self.refused.until = None;
        let sources = std::mem::take(&mut self.refused.sources);
        let mut recs: Vec<(Instant, Option<IpAddr>, Tally)> = sources
            .into_iter()
            .flat_map(|(ip, ts)| ts.into_iter().map(move |t| (t.first, Some(ip), t)))
            .collect();
        recs.sort_by_key(|(first, ip, _)| (*first, *ip));
        let others = std::mem::take(&mut self.refused.others);
        recs.extend(others.into_iter().map(|t| (t.first, None, t)));
        for (_, source, t) in recs {
            let rec = RefusedRecord {
                first: self.anchor.wall(t.first),
                last: self.anchor.wall(t.last),
                source,
                refusal: t.key.refusal(),
                count: t.count,
            };
            self.emit(JournalRecord::Refused(rec));
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

    /// A call's record with no attempts, setup or notes yet.
    fn call_record(
        &self,
        started: Instant,
        info: &CallInfo,
        ended: Instant,
        outcome: CallOutcome,
    ) -> CallRecord {
        CallRecord {
            started: self.anchor.wall(started),
            ended: self.anchor.wall(ended),
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
            source: source_text(info.source),
            attempts: Vec::new(),
            outcome,
            setup: None,
            notes: Vec::new(),
        }
    }

    fn finish(&mut self, call: CallRef, at: Instant, outcome: CallOutcome, setup: Option<Micros>) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        let started = self.anchor.wall(c.started);
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
            attempts,
            setup,
            notes: c.notes,
            ..self.call_record(c.started, &c.info, at, outcome)
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
    /// The gateway that handled the call (its `node_name`; empty when not
    /// known).
    pub gateway: String,
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
            gateway: String::new(),
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
