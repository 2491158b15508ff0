//! Building a [`Report`] from records: trunk changes into outages, failed
//! attempts and failovers into runs, calls into the callback list and
//! totals, refusals into per-source counts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use super::{
    Counts, Outage, RefusedRow, RefusedSummary, Report, TimelineEntry, Totals, TrunkTotals, Window,
    FAILOVER_RUN_GAP_US, REFUSED_ROWS,
};
use crate::aggregate::CallbackEntry;
use crate::format::Issue;
use crate::record::{
    AttemptResult, CallNote, CallOutcome, CallRecord, JournalRecord, Refusal, RefusedRecord,
    TrunkChange, TrunkState, WallTime,
};

#[derive(Debug)]
struct OutageAcc {
    trunk: String,
    first: i64,
    down: i64,
    down_reason: String,
    up: Option<(i64, String)>,
}

#[derive(Debug)]
struct FailedAttempt {
    trunk: String,
    at: i64,
    call: usize,
}

#[derive(Debug)]
struct FailoverEv {
    at: i64,
    from: String,
    to: String,
    reason: String,
    emergency: bool,
}

/// A call note, for the timeline.
#[derive(Debug)]
struct NoteEv {
    at: i64,
    trunk: String,
    event: String,
    emergency: bool,
}

#[derive(Debug, Default)]
struct TrunkAcc {
    attempts: u64,
    connected: u64,
    failed_attempts: u64,
    rescued_off: u64,
    skipped_full: u64,
    setups: Vec<u64>,
}

/// Between a gateway's name and a trunk's in the builder's trunk keys: a
/// trunk is one gateway's (two gateways' `primary` are two trunks).
const SEP: char = '\u{1f}';

/// The outcome shown for an emergency call whose end the journal does not
/// hold.
pub const NO_END: &str =
    "no end recorded: in progress when the journal was read, or the gateway stopped";

/// `(gateway, trunk)` from a trunk key.
fn split(key: &str) -> (String, String) {
    match key.split_once(SEP) {
        Some((g, t)) => (g.to_string(), t.to_string()),
        None => (String::new(), key.to_string()),
    }
}

/// Builds a [`Report`] from records fed one at a time (in any order), from
/// one gateway or several ([`set_gateway`](Self::set_gateway)).
#[derive(Debug, Default)]
pub struct ReportBuilder {
    window: Window,
    /// The gateway the records being pushed come from.
    gateway: String,
    gateways: BTreeSet<String>,
    records: u64,
    last_time: i64,
    /// Per call seen in the window: (emergency, connected).
    calls: Vec<(bool, bool)>,
    failed_attempts: Vec<FailedAttempt>,
    failovers: Vec<FailoverEv>,
    notes: Vec<NoteEv>,
    trunk_events: Vec<(i64, String, TrunkChange)>,
    callbacks: Vec<CallbackEntry>,
    late: HashMap<(String, String, i64), String>,
    /// Emergency calls started (in the window) whose end is not (yet) read:
    /// by gateway, Call-ID and start.
    open: HashMap<(String, String, i64), Box<CallRecord>>,
    totals: Totals,
    setups: Vec<u64>,
    trunks: BTreeMap<String, TrunkAcc>,
    /// Refusals per source and kind: (count, first, last).
    refused: HashMap<(Option<IpAddr>, Refusal), (u64, i64, i64)>,
}

impl ReportBuilder {
    /// A builder reporting on `window`.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            last_time: i64::MIN,
            ..Self::default()
        }
    }

    /// The records pushed from now on come from the gateway `name`: its
    /// trunks are its own, and its rows are tagged with it.
    pub fn set_gateway(&mut self, name: &str) {
        if name != self.gateway {
            self.gateway = name.to_string();
        }
        if !self.gateways.contains(name) {
            self.gateways.insert(name.to_string());
        }
    }

    /// The key of this gateway's trunk `name`.
    fn key(&self, trunk: &str) -> String {
        let mut k = String::with_capacity(self.gateway.len() + 1 + trunk.len());
        k.push_str(&self.gateway);
        k.push(SEP);
        k.push_str(trunk);
        k
    }

    /// Feed one record.
    pub fn push(&mut self, r: &JournalRecord) {
        self.records += 1;
        match r {
            JournalRecord::Call(c) => {
                self.last_time = self.last_time.max(c.ended.0);
                if c.is_emergency() && !self.open.is_empty() {
                    self.open
                        .remove(&(self.gateway.clone(), c.call_id.clone(), c.started.0));
                }
                if self.window.contains(c.started) {
                    self.call(c);
                }
            }
            JournalRecord::Started(c) => {
                self.last_time = self.last_time.max(c.started.0);
                if c.is_emergency() && self.window.contains(c.started) {
                    let key = (self.gateway.clone(), c.call_id.clone(), c.started.0);
                    self.open.insert(key, c.clone());
                }
            }
            JournalRecord::Trunk(t) => {
                self.last_time = self.last_time.max(t.at.0);
                self.trunk_events
                    .push((t.at.0, self.key(&t.trunk), t.change.clone()));
            }
            JournalRecord::Late(l) => {
                self.last_time = self.last_time.max(l.at.0);
                if l.connected {
                    self.late.insert(
                        (self.gateway.clone(), l.call_id.clone(), l.started.0),
                        l.trunk.clone(),
                    );
                }
            }
            JournalRecord::Note(n) => {
                self.last_time = self.last_time.max(n.at().0);
                if self.window.contains(n.started) {
                    self.note(n.started, &n.note, n.emergency);
                }
            }
            JournalRecord::Refused(r) => {
                self.last_time = self.last_time.max(r.last.0);
                if self.window.contains(r.first) {
                    self.refused_record(r);
                }
            }
        }
    }

    fn refused_record(&mut self, r: &RefusedRecord) {
        if let Refusal::Call { .. } = r.refusal {
            // Calls that failed, like any other: in the totals too.
            self.totals.calls.other += r.count;
            self.totals.failed.other += r.count;
        }
        let e = self
            .refused
            .entry((r.source, r.refusal.clone()))
            .or_insert((0, r.first.0, r.last.0));
        e.0 += r.count;
        e.1 = e.1.min(r.first.0);
        e.2 = e.2.max(r.last.0);
    }

    fn note(&mut self, started: WallTime, n: &CallNote, emergency: bool) {
        let trunk = self.key(n.trunk());
        let acc = self.trunks.entry(trunk.clone()).or_default();
        match n {
            CallNote::Rescued { .. } => acc.rescued_off += 1,
            CallNote::Skipped { .. } => acc.skipped_full += 1,
            CallNote::Hedged { .. } | CallNote::DuplicateAnswer { .. } => {}
        }
        self.notes.push(NoteEv {
            at: started.plus(n.offset()).0,
            trunk,
            event: n.describe(),
            emergency,
        });
    }

    fn call(&mut self, c: &CallRecord) {
        let e = c.is_emergency();
        let idx = self.calls.len();
        self.calls.push((e, c.outcome.connected()));
        let connected_via = match &c.outcome {
            CallOutcome::Connected { trunk } => Some(self.key(trunk)),
            _ => None,
        };
        let t = &mut self.totals;
        t.calls.add(e);
        match &c.outcome {
            CallOutcome::Connected { .. } => {
                t.connected.add(e);
                let acc = self
                    .trunks
                    .entry(connected_via.unwrap_or_default())
                    .or_default();
                acc.connected += 1;
                if let Some(s) = c.setup {
                    acc.setups.push(s.0);
                    self.setups.push(s.0);
                }
            }
            CallOutcome::Failed { .. } => t.failed.add(e),
            CallOutcome::Cancelled => t.cancelled.add(e),
            CallOutcome::Unfinished => t.unfinished.add(e),
        }
        if c.attempts.len() > 1 {
            t.failed_over.add(e);
        }
        let has = |f: fn(&CallNote) -> bool| c.notes.iter().any(f);
        if has(|n| matches!(n, CallNote::Rescued { .. })) {
            t.rescued.add(e);
        }
        if has(|n| matches!(n, CallNote::Hedged { .. })) {
            t.hedged.add(e);
        }
        if has(|n| matches!(n, CallNote::Skipped { .. })) {
            t.skipped_full.add(e);
        }
        for n in &c.notes {
            self.note(c.started, n, e);
        }
        for (i, a) in c.attempts.iter().enumerate() {
            let trunk = self.key(&a.trunk);
            let acc = self.trunks.entry(trunk.clone()).or_default();
            acc.attempts += 1;
            if a.result.is_failover_class() {
                acc.failed_attempts += 1;
                // When it was given up: the moment the trunk showed the fault.
                let at = c
                    .started
                    .plus(a.offset)
                    .plus(a.elapsed.unwrap_or_default())
                    .0;
                self.failed_attempts.push(FailedAttempt {
                    trunk: trunk.clone(),
                    at,
                    call: idx,
                });
                if let Some(next) = c.attempts.get(i + 1) {
                    self.failovers.push(FailoverEv {
                        at,
                        from: trunk,
                        to: self.key(&next.trunk),
                        reason: match a.result {
                            AttemptResult::Response(s) => s.to_string(),
                            r => r.describe(),
                        },
                        emergency: e,
                    });
                }
            }
        }
        if e && !c.outcome.connected() {
            let mut cb = CallbackEntry::from_record(c);
            cb.gateway.clone_from(&self.gateway);
            self.callbacks.push(cb);
        }
    }

    /// The report, with the problems found reading the journal.
    pub fn finish(mut self, issues: &[Issue], segments: u64) -> Report {
        // Outages, from every trunk event (also before the window, so that a
        // trunk already down when the window opens is known to be).
        self.trunk_events.sort_by_key(|(at, _, _)| *at);
        let mut outages: Vec<OutageAcc> = Vec::new();
        let mut sign: HashMap<String, i64> = HashMap::new();
        let mut open: HashMap<String, usize> = HashMap::new();
        let mut timeline = Vec::new();
        for (at, trunk, change) in &self.trunk_events {
            let (label, reason) = match change {
                TrunkChange::State { from, to, reason } => {
                    match to {
                        TrunkState::Suspect if *from == TrunkState::Up => {
                            sign.insert(trunk.clone(), *at);
                        }
                        TrunkState::Down if !open.contains_key(trunk) => {
                            let first = sign.remove(trunk).unwrap_or(*at);
                            open.insert(trunk.clone(), outages.len());
                            outages.push(OutageAcc {
                                trunk: trunk.clone(),
                                first,
                                down: *at,
                                down_reason: reason.clone(),
                                up: None,
                            });
                        }
                        TrunkState::Up => {
                            sign.remove(trunk);
                            if let Some(i) = open.remove(trunk) {
                                if let Some(o) = outages.get_mut(i) {
                                    o.up = Some((*at, reason.clone()));
                                }
                            }
                        }
                        _ => {}
                    }
                    (
                        format!("{} -> {}", from.as_str(), to.as_str()),
                        reason.clone(),
                    )
                }
                TrunkChange::Drained => ("drained".to_string(), String::new()),
                TrunkChange::Undrained => ("undrained".to_string(), String::new()),
                TrunkChange::CanaryStarted { until } => (
                    "canary started".to_string(),
                    format!(
                        "back up on probes after failing calls: a share of calls until {} at most",
                        until.rfc3339()
                    ),
                ),
                TrunkChange::CanaryEnded { passed: true } => (
                    "canary passed".to_string(),
                    "full traffic again".to_string(),
                ),
                TrunkChange::CanaryEnded { passed: false } => (
                    "canary failed".to_string(),
                    "its calls failed again".to_string(),
                ),
            };
            if self.window.contains(WallTime(*at)) {
                let (gateway, trunk) = split(trunk);
                timeline.push(TimelineEntry::Trunk {
                    time: WallTime(*at).rfc3339(),
                    at_us: *at,
                    gateway,
                    trunk,
                    change: label,
                    reason,
                });
            }
        }

        // Failover runs.
        self.failovers.sort_by_key(|f| f.at);
        struct Run {
            first: i64,
            last: i64,
            from: String,
            to: String,
            calls: u64,
            emergency: u64,
            reasons: BTreeMap<String, u64>,
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut current: HashMap<(String, String), usize> = HashMap::new();
        for f in &self.failovers {
            let key = (f.from.clone(), f.to.clone());
            let idx = match current.get(&key) {
                Some(&i)
                    if runs
                        .get(i)
                        .is_some_and(|r| f.at - r.last <= FAILOVER_RUN_GAP_US) =>
                {
                    i
                }
                _ => {
                    runs.push(Run {
                        first: f.at,
                        last: f.at,
                        from: f.from.clone(),
                        to: f.to.clone(),
                        calls: 0,
                        emergency: 0,
                        reasons: BTreeMap::new(),
                    });
                    current.insert(key, runs.len() - 1);
                    runs.len() - 1
                }
            };
            if let Some(r) = runs.get_mut(idx) {
                r.last = f.at;
                r.calls += 1;
                r.emergency += u64::from(f.emergency);
                *r.reasons.entry(f.reason.clone()).or_default() += 1;
            }
        }
        for r in runs {
            let (gateway, from) = split(&r.from);
            timeline.push(TimelineEntry::Failover {
                time: WallTime(r.first).rfc3339(),
                at_us: r.first,
                until: WallTime(r.last).rfc3339(),
                gateway,
                from,
                to: split(&r.to).1,
                calls: r.calls,
                emergency: r.emergency,
                reasons: r.reasons.iter().map(|(k, v)| format!("{k} x{v}")).collect(),
            });
        }

        // Runs of call notes, per trunk and kind, grouped like failovers.
        self.notes.sort_by_key(|n| n.at);
        let mut note_runs: Vec<(i64, i64, &NoteEv, u64, u64)> = Vec::new();
        // Per gateway's trunk and event: two gateways rescuing calls off
        // their own `primary` are two runs.
        let mut open_runs: HashMap<(&str, &str), usize> = HashMap::new();
        for n in &self.notes {
            let run = open_runs
                .get(&(n.trunk.as_str(), n.event.as_str()))
                .copied()
                .filter(|&i| {
                    note_runs
                        .get(i)
                        .is_some_and(|r| n.at - r.1 <= FAILOVER_RUN_GAP_US)
                });
            let i = match run {
                Some(i) => i,
                None => {
                    note_runs.push((n.at, n.at, n, 0, 0));
                    open_runs.insert((&n.trunk, &n.event), note_runs.len() - 1);
                    note_runs.len() - 1
                }
            };
            if let Some(r) = note_runs.get_mut(i) {
                r.1 = n.at;
                r.3 += 1;
                r.4 += u64::from(n.emergency);
            }
        }
        for (first, last, n, calls, emergency) in note_runs {
            let (gateway, trunk) = split(&n.trunk);
            timeline.push(TimelineEntry::Calls {
                time: WallTime(first).rfc3339(),
                at_us: first,
                until: WallTime(last).rfc3339(),
                gateway,
                trunk,
                event: n.event.clone(),
                calls,
                emergency,
            });
        }
        timeline.sort_by_key(TimelineEntry::at);

        // Calls each outage touched.
        let end_of_journal = self.last_time;
        let mut report_outages = Vec::new();
        for OutageAcc {
            trunk,
            first,
            down,
            down_reason,
            up,
        } in outages
        {
            let end = up.as_ref().map(|(t, _)| *t);
            if !self.window.overlaps(WallTime(first), end.map(WallTime)) {
                continue;
            }
            let mut touched_calls: Vec<usize> = self
                .failed_attempts
                .iter()
                .filter(|a| a.trunk == trunk && a.at >= first && end.is_none_or(|e| a.at <= e))
                .map(|a| a.call)
                .collect();
            touched_calls.sort_unstable();
            touched_calls.dedup();
            let mut touched = Counts::default();
            let mut not_connected = Counts::default();
            for c in &touched_calls {
                if let Some(&(e, connected)) = self.calls.get(*c) {
                    touched.add(e);
                    if !connected {
                        not_connected.add(e);
                    }
                }
            }
            let failovers = self
                .failovers
                .iter()
                .filter(|f| f.from == trunk && f.at >= first && end.is_none_or(|e| f.at <= e))
                .count() as u64;
            let stop = end.unwrap_or(end_of_journal.max(down));
            let (gateway, trunk) = split(&trunk);
            report_outages.push(Outage {
                gateway,
                trunk,
                first_sign: WallTime(first).rfc3339(),
                down: WallTime(down).rfc3339(),
                down_reason,
                up: end.map(|t| WallTime(t).rfc3339()),
                up_reason: up.map(|(_, r)| r),
                duration_s: (stop.saturating_sub(first)) as f64 / 1e6,
                calls_touched: touched,
                not_connected,
                failovers,
            });
        }

        // Emergency calls with no end recorded: in progress when the journal
        // was read, or on a gateway that stopped (crashed, killed, host
        // lost) before they ended. Call them back too.
        for ((gateway, _, _), c) in std::mem::take(&mut self.open) {
            self.totals.calls.add(true);
            self.totals.unfinished.add(true);
            let mut cb = CallbackEntry::from_record(&c);
            cb.outcome = NO_END.to_string();
            cb.gateway = gateway;
            self.callbacks.push(cb);
        }

        // Callback list, newest first.
        for cb in &mut self.callbacks {
            let key = (cb.gateway.clone(), cb.call_id.clone(), cb.started_us);
            if let Some(t) = self.late.get(&key) {
                cb.late_answer_via = Some(t.clone());
            }
        }
        self.callbacks.sort_by(|a, b| {
            b.started_us
                .cmp(&a.started_us)
                .then(b.call_id.cmp(&a.call_id))
        });

        let refused = refused_summary(self.refused);

        // Totals.
        let (m, x) = median_max(&mut self.setups);
        self.totals.setup_median_ms = m;
        self.totals.setup_max_ms = x;
        self.totals.trunks = self
            .trunks
            .into_iter()
            .map(|(key, mut acc)| {
                let (m, x) = median_max(&mut acc.setups);
                let (gateway, trunk) = split(&key);
                TrunkTotals {
                    gateway,
                    trunk,
                    attempts: acc.attempts,
                    connected: acc.connected,
                    failed_attempts: acc.failed_attempts,
                    rescued_off: acc.rescued_off,
                    skipped_full: acc.skipped_full,
                    setup_median_ms: m,
                    setup_max_ms: x,
                }
            })
            .collect();

        Report {
            since: self.window.since.map(WallTime::rfc3339),
            until: self.window.until.map(WallTime::rfc3339),
            records: self.records,
            segments,
            gateways: self.gateways.into_iter().collect(),
            issues: issues.iter().map(ToString::to_string).collect(),
            timeline,
            outages: report_outages,
            callbacks: self.callbacks,
            refused,
            totals: self.totals,
        }
    }
}

/// Refusals per source and kind: the most first (then the earliest, then
/// by source), at most [`REFUSED_ROWS`] listed.
fn refused_summary(acc: HashMap<(Option<IpAddr>, Refusal), (u64, i64, i64)>) -> RefusedSummary {
    let mut out = RefusedSummary::default();
    let mut sources = HashSet::new();
    let mut rows: Vec<_> = acc.into_iter().collect();
    for ((source, refusal), (count, _, _)) in &rows {
        sources.insert(*source);
        match refusal {
            Refusal::Call { .. } => out.calls += count,
            Refusal::Message { .. } => out.messages += count,
        }
    }
    out.sources = sources.len() as u64;
    rows.sort_by(|(ka, a), (kb, b)| {
        b.0.cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(ka.0.is_none().cmp(&kb.0.is_none()))
            .then(ka.0.cmp(&kb.0))
            .then(ka.1.reason().cmp(kb.1.reason()))
            .then(ka.1.status().cmp(&kb.1.status()))
            .then(ka.1.what().cmp(kb.1.what()))
    });
    for (i, ((source, refusal), (count, first, last))) in rows.into_iter().enumerate() {
        if i >= REFUSED_ROWS {
            out.rows_left_out += 1;
            out.count_left_out += count;
            continue;
        }
        out.rows.push(RefusedRow {
            source: source.map_or_else(|| "other sources".to_string(), |a| a.to_string()),
            what: refusal.what().to_string(),
            reason: refusal.reason().to_string(),
            status: refusal.status(),
            count,
            first: WallTime(first).rfc3339(),
            last: WallTime(last).rfc3339(),
        });
    }
    out
}

/// Median (lower middle for an even count) and maximum, in ms.
fn median_max(v: &mut [u64]) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    v.sort_unstable();
    let ms = |us: u64| (us / 100) as f64 / 10.0;
    let mid = v.get((v.len() - 1) / 2).copied();
    let max = v.last().copied();
    (mid.map(ms), max.map(ms))
}

/// Build a report from records in memory.
pub fn build<'a>(records: impl IntoIterator<Item = &'a JournalRecord>, window: Window) -> Report {
    let mut b = ReportBuilder::new(window);
    for r in records {
        b.push(r);
    }
    b.finish(&[], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{connected_call, failed_call};

    /// An emergency call's start record, as the aggregator writes it.
    fn started(c: &CallRecord) -> JournalRecord {
        JournalRecord::Started(Box::new(CallRecord {
            ended: c.started,
            attempts: Vec::new(),
            outcome: CallOutcome::Unfinished,
            setup: None,
            notes: Vec::new(),
            ..c.clone()
        }))
    }

    #[test]
    fn started_calls_with_no_end_are_called_back_once() {
        let t = |s: i64| WallTime(1_700_000_000_000_000 + s * 1_000_000);
        let answered = connected_call(t(1), "answered".into());
        let failed = failed_call(t(2), "failed".into(), 503);
        let open = failed_call(t(3), "open".into(), 503);
        let before = failed_call(t(0), "before-window".into(), 503);
        let records = [
            started(&before),
            started(&answered),
            started(&failed),
            started(&open),
            JournalRecord::Call(Box::new(answered)),
            JournalRecord::Call(Box::new(failed)),
        ];
        let window = Window {
            since: Some(t(1)),
            until: None,
        };
        let rep = build(records.iter(), window);
        let listed: Vec<(&str, &str)> = rep
            .callbacks
            .iter()
            .map(|c| (c.call_id.as_str(), c.outcome.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("open", NO_END),
                ("failed", "failed 503 (all-trunks-failed)")
            ]
        );
        assert_eq!(rep.totals.calls.emergency, 3);
        assert_eq!(rep.totals.unfinished.emergency, 1);
    }

    #[test]
    fn median_is_lower_middle() {
        assert_eq!(median_max(&mut []), (None, None));
        assert_eq!(median_max(&mut [3000, 1000, 2000]), (Some(2.0), Some(3.0)));
        assert_eq!(
            median_max(&mut [4000, 1000, 2000, 3000]),
            (Some(2.0), Some(4.0))
        );
    }
}
