//! The incident report: timeline, outages and the calls they touched, the
//! callback list, and totals; rendered as a table, CSV (the callback list) or
//! JSON (everything). Pure functions over records.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::aggregate::CallbackEntry;
use crate::format::Issue;
use crate::record::{
    AttemptResult, CallNote, CallOutcome, CallRecord, JournalRecord, TrunkChange, TrunkState,
    WallTime,
};

/// Failovers from one trunk to the next (and calls rescued, hedged, passed
/// over or answered twice on one trunk) less than this far apart are shown
/// as one line of the timeline.
pub const FAILOVER_RUN_GAP_US: i64 = 10_000_000;

/// Which records to report on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Only calls and events at or after this.
    pub since: Option<WallTime>,
    /// Only calls and events before this.
    pub until: Option<WallTime>,
}

impl Window {
    /// Whether `t` is inside.
    pub fn contains(&self, t: WallTime) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }

    /// Whether the interval `[from, to)` (open-ended if `to` is `None`) overlaps.
    pub fn overlaps(&self, from: WallTime, to: Option<WallTime>) -> bool {
        self.until.is_none_or(|u| from < u) && self.since.is_none_or(|s| to.is_none_or(|t| t > s))
    }
}

/// Parse a `--since` / `--until` argument: an RFC 3339 time
/// (`2023-06-25T10:00:00Z`, `2023-06-25T11:00:00+01:00`, `2023-06-25 10:00Z`)
/// or a time span back from `now` (`90m`, `2h`, `1d`, `1h30m`).
pub fn parse_time(arg: &str, now: WallTime) -> Result<WallTime, String> {
    if let Ok(ts) = arg.parse::<jiff::Timestamp>() {
        return Ok(WallTime(ts.as_microsecond()));
    }
    if let Ok(span) = arg.parse::<jiff::SignedDuration>() {
        let us = i64::try_from(span.as_micros()).map_err(|_| format!("{arg}: too long"))?;
        return Ok(WallTime(now.0.saturating_sub(us)));
    }
    Err(format!(
        "{arg}: not an RFC 3339 time with an offset (2023-06-25T10:00:00Z) nor a span back from now (2h, 90m, 1d)"
    ))
}

/// One line of the incident timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TimelineEntry {
    /// A trunk changed state, or was drained or undrained.
    Trunk {
        /// When.
        time: String,
        /// Microseconds since the epoch.
        at_us: i64,
        /// The trunk.
        trunk: String,
        /// `up -> suspect`, `drained` ...
        change: String,
        /// The evidence (empty for drains).
        reason: String,
    },
    /// Calls moved from one trunk to the next.
    Failover {
        /// The first failover.
        time: String,
        /// Microseconds since the epoch.
        at_us: i64,
        /// The last failover of the run.
        until: String,
        /// From this trunk.
        from: String,
        /// To this trunk.
        to: String,
        /// Calls moved.
        calls: u64,
        /// Of which emergency calls.
        emergency: u64,
        /// Why, with counts: `no-response x12`.
        reasons: Vec<String>,
    },
    /// Calls the proxy did something for on one trunk: rescued off it,
    /// hedged to it, passed it over because it was full, or ended its
    /// second answer.
    Calls {
        /// The first.
        time: String,
        /// Microseconds since the epoch.
        at_us: i64,
        /// The last of the run.
        until: String,
        /// The trunk.
        trunk: String,
        /// What happened (`rescued off primary while ringing`, `hedged to
        /// backup`, `primary skipped: max_calls`, `second answer from backup
        /// ended with BYE`).
        event: String,
        /// Calls.
        calls: u64,
        /// Of which emergency calls.
        emergency: u64,
    },
}

impl TimelineEntry {
    fn at(&self) -> i64 {
        match self {
            Self::Trunk { at_us, .. }
            | Self::Failover { at_us, .. }
            | Self::Calls { at_us, .. } => *at_us,
        }
    }
}

/// Calls counted by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Emergency calls.
    pub emergency: u64,
    /// Other calls.
    pub other: u64,
}

impl Counts {
    fn add(&mut self, emergency: bool) {
        if emergency {
            self.emergency += 1;
        } else {
            self.other += 1;
        }
    }
}

/// A trunk outage: from the first sign (it left Up) through Down to Up again.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outage {
    /// The trunk.
    pub trunk: String,
    /// When it first left Up on the way to Down.
    pub first_sign: String,
    /// When it was marked Down.
    pub down: String,
    /// Why it went Down.
    pub down_reason: String,
    /// When it was Up again (`None`: still down at the end of the journal).
    pub up: Option<String>,
    /// Why it came Up.
    pub up_reason: Option<String>,
    /// Seconds from first sign to Up (or to the last record).
    pub duration_s: f64,
    /// Calls with an attempt on this trunk that failed during the outage.
    pub calls_touched: Counts,
    /// Of those, the calls that never connected (on any trunk).
    pub not_connected: Counts,
    /// Calls moved from this trunk to another during the outage.
    pub failovers: u64,
}

/// Per-trunk totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrunkTotals {
    /// The trunk.
    pub trunk: String,
    /// Attempts on it.
    pub attempts: u64,
    /// Calls connected through it.
    pub connected: u64,
    /// Attempts given up (no response, 5xx, transport error ...).
    pub failed_attempts: u64,
    /// Calls rescued off it (moved at once when it went Down).
    pub rescued_off: u64,
    /// Calls that passed it over because it was at `max_calls` or `max_cps`.
    pub skipped_full: u64,
    /// Median setup time of calls connected through it, ms.
    pub setup_median_ms: Option<f64>,
    /// Worst setup time, ms.
    pub setup_max_ms: Option<f64>,
}

/// Totals over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// All calls.
    pub calls: Counts,
    /// Connected.
    pub connected: Counts,
    /// Failed (the caller got an error).
    pub failed: Counts,
    /// Cancelled by the caller.
    pub cancelled: Counts,
    /// Outcome unknown (tracking stopped early).
    pub unfinished: Counts,
    /// Calls that needed more than one attempt.
    pub failed_over: Counts,
    /// Calls rescued off a trunk that went Down while they waited.
    pub rescued: Counts,
    /// Calls hedged (a parallel attempt on the next trunk).
    pub hedged: Counts,
    /// Calls that passed over a full trunk (`max_calls`, `max_cps`).
    pub skipped_full: Counts,
    /// Median setup time over all connected calls, ms.
    pub setup_median_ms: Option<f64>,
    /// Worst setup time, ms.
    pub setup_max_ms: Option<f64>,
    /// Per trunk, in name order.
    pub trunks: Vec<TrunkTotals>,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// `--since`, RFC 3339.
    pub since: Option<String>,
    /// `--until`, RFC 3339.
    pub until: Option<String>,
    /// Records read (all of them, also outside the window).
    pub records: u64,
    /// Segment files read.
    pub segments: u64,
    /// Problems found reading the journal.
    pub issues: Vec<String>,
    /// Trunk changes and failover runs, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Outages, oldest first.
    pub outages: Vec<Outage>,
    /// Every emergency call that did not connect, newest first.
    pub callbacks: Vec<CallbackEntry>,
    /// Totals.
    pub totals: Totals,
}

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

/// Builds a [`Report`] from records fed one at a time (in any order).
#[derive(Debug, Default)]
pub struct ReportBuilder {
    window: Window,
    records: u64,
    last_time: i64,
    /// Per call seen in the window: (emergency, connected).
    calls: Vec<(bool, bool)>,
    failed_attempts: Vec<FailedAttempt>,
    failovers: Vec<FailoverEv>,
    notes: Vec<NoteEv>,
    trunk_events: Vec<(i64, String, TrunkChange)>,
    callbacks: Vec<CallbackEntry>,
    late: HashMap<(String, i64), String>,
    totals: Totals,
    setups: Vec<u64>,
    trunks: BTreeMap<String, TrunkAcc>,
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

    /// Feed one record.
    pub fn push(&mut self, r: &JournalRecord) {
        self.records += 1;
        match r {
            JournalRecord::Call(c) => {
                self.last_time = self.last_time.max(c.ended.0);
                if self.window.contains(c.started) {
                    self.call(c);
                }
            }
            JournalRecord::Trunk(t) => {
                self.last_time = self.last_time.max(t.at.0);
                self.trunk_events
                    .push((t.at.0, t.trunk.clone(), t.change.clone()));
            }
            JournalRecord::Late(l) => {
                self.last_time = self.last_time.max(l.at.0);
                if l.connected {
                    self.late
                        .insert((l.call_id.clone(), l.started.0), l.trunk.clone());
                }
            }
            JournalRecord::Note(n) => {
                self.last_time = self.last_time.max(n.at().0);
                if self.window.contains(n.started) {
                    self.note(n.started, &n.note, n.emergency);
                }
            }
        }
    }

    fn note(&mut self, started: WallTime, n: &CallNote, emergency: bool) {
        let acc = self.trunks.entry(n.trunk().to_string()).or_default();
        match n {
            CallNote::Rescued { .. } => acc.rescued_off += 1,
            CallNote::Skipped { .. } => acc.skipped_full += 1,
            CallNote::Hedged { .. } | CallNote::DuplicateAnswer { .. } => {}
        }
        self.notes.push(NoteEv {
            at: started.plus(n.offset()).0,
            trunk: n.trunk().to_string(),
            event: n.describe(),
            emergency,
        });
    }

    fn call(&mut self, c: &CallRecord) {
        let e = c.is_emergency();
        let idx = self.calls.len();
        self.calls.push((e, c.outcome.connected()));
        let t = &mut self.totals;
        t.calls.add(e);
        match &c.outcome {
            CallOutcome::Connected { trunk } => {
                t.connected.add(e);
                let acc = self.trunks.entry(trunk.clone()).or_default();
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
            let acc = self.trunks.entry(a.trunk.clone()).or_default();
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
                    trunk: a.trunk.clone(),
                    at,
                    call: idx,
                });
                if let Some(next) = c.attempts.get(i + 1) {
                    self.failovers.push(FailoverEv {
                        at,
                        from: a.trunk.clone(),
                        to: next.trunk.clone(),
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
            self.callbacks.push(CallbackEntry::from_record(c));
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
                timeline.push(TimelineEntry::Trunk {
                    time: WallTime(*at).rfc3339(),
                    at_us: *at,
                    trunk: trunk.clone(),
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
            timeline.push(TimelineEntry::Failover {
                time: WallTime(r.first).rfc3339(),
                at_us: r.first,
                until: WallTime(r.last).rfc3339(),
                from: r.from,
                to: r.to,
                calls: r.calls,
                emergency: r.emergency,
                reasons: r.reasons.iter().map(|(k, v)| format!("{k} x{v}")).collect(),
            });
        }

        // Runs of call notes, per trunk and kind, grouped like failovers.
        self.notes.sort_by_key(|n| n.at);
        let mut note_runs: Vec<(i64, i64, &NoteEv, u64, u64)> = Vec::new();
        let mut open_runs: HashMap<&str, usize> = HashMap::new();
        for n in &self.notes {
            let run = open_runs.get(n.event.as_str()).copied().filter(|&i| {
                note_runs
                    .get(i)
                    .is_some_and(|r| n.at - r.1 <= FAILOVER_RUN_GAP_US)
            });
            let i = match run {
                Some(i) => i,
                None => {
                    note_runs.push((n.at, n.at, n, 0, 0));
                    open_runs.insert(&n.event, note_runs.len() - 1);
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
            timeline.push(TimelineEntry::Calls {
                time: WallTime(first).rfc3339(),
                at_us: first,
                until: WallTime(last).rfc3339(),
                trunk: n.trunk.clone(),
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
            report_outages.push(Outage {
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

        // Callback list, newest first.
        for cb in &mut self.callbacks {
            if let Some(t) = self.late.get(&(cb.call_id.clone(), cb.started_us)) {
                cb.late_answer_via = Some(t.clone());
            }
        }
        self.callbacks.sort_by(|a, b| {
            b.started_us
                .cmp(&a.started_us)
                .then(b.call_id.cmp(&a.call_id))
        });

        // Totals.
        let (m, x) = median_max(&mut self.setups);
        self.totals.setup_median_ms = m;
        self.totals.setup_max_ms = x;
        self.totals.trunks = self
            .trunks
            .into_iter()
            .map(|(trunk, mut acc)| {
                let (m, x) = median_max(&mut acc.setups);
                TrunkTotals {
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
            issues: issues.iter().map(ToString::to_string).collect(),
            timeline,
            outages: report_outages,
            callbacks: self.callbacks,
            totals: self.totals,
        }
    }
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

/// Left-aligned columns, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                s.push_str("  ");
            }
            let _ = write!(s, "{cell:<w$}");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.1}"))
}

/// The report as human-readable aligned tables.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lifeline incident report: {} records from {} segment(s), window {} .. {}",
        r.records,
        r.segments,
        r.since.as_deref().unwrap_or("start"),
        r.until.as_deref().unwrap_or("end")
    );
    for i in &r.issues {
        let _ = writeln!(out, "note: {i}");
    }

    out.push_str("\nTIMELINE\n");
    if r.timeline.is_empty() {
        out.push_str("(no trunk changes, failovers, rescues, hedges or full trunks)\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .timeline
            .iter()
            .map(|e| match e {
                TimelineEntry::Trunk {
                    time,
                    trunk,
                    change,
                    reason,
                    ..
                } => vec![time.clone(), trunk.clone(), change.clone(), reason.clone()],
                TimelineEntry::Failover {
                    time,
                    until,
                    from,
                    to,
                    calls,
                    emergency,
                    reasons,
                    ..
                } => vec![
                    time.clone(),
                    from.clone(),
                    format!("failover -> {to}"),
                    format!(
                        "{calls} call(s), {emergency} emergency, until {until}: {}",
                        reasons.join(", ")
                    ),
                ],
                TimelineEntry::Calls {
                    time,
                    until,
                    trunk,
                    event,
                    calls,
                    emergency,
                    ..
                } => vec![
                    time.clone(),
                    trunk.clone(),
                    event.clone(),
                    format!("{calls} call(s), {emergency} emergency, until {until}"),
                ],
            })
            .collect();
        table(&mut out, &["TIME", "TRUNK", "EVENT", "DETAIL"], &rows);
    }

    out.push_str("\nOUTAGES\n");
    if r.outages.is_empty() {
        out.push_str("(none)\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .outages
            .iter()
            .map(|o| {
                vec![
                    o.trunk.clone(),
                    o.first_sign.clone(),
                    o.down.clone(),
                    o.up.clone().unwrap_or_else(|| "still down".into()),
                    format!("{:.3}", o.duration_s),
                    format!("{}/{}", o.calls_touched.emergency, o.calls_touched.other),
                    format!("{}/{}", o.not_connected.emergency, o.not_connected.other),
                    o.failovers.to_string(),
                    o.down_reason.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "TRUNK",
                "FIRST SIGN",
                "DOWN",
                "UP",
                "SECONDS",
                "TOUCHED EMERG/OTHER",
                "NOT CONNECTED EMERG/OTHER",
                "FAILOVERS",
                "DOWN BECAUSE",
            ],
            &rows,
        );
    }

    let _ = writeln!(
        out,
        "\nCALLBACK LIST: {} emergency call(s) that did not connect, newest first",
        r.callbacks.len()
    );
    if !r.callbacks.is_empty() {
        let rows: Vec<Vec<String>> = r
            .callbacks
            .iter()
            .map(|c| {
                let mut outcome = c.outcome.clone();
                if let Some(t) = &c.late_answer_via {
                    outcome.push_str(&format!("; late answer via {t}"));
                }
                for n in &c.notes {
                    outcome.push_str(&format!("; {n}"));
                }
                vec![
                    c.time.clone(),
                    c.asserted_identities
                        .first()
                        .cloned()
                        .unwrap_or_else(|| c.from_uri.clone()),
                    caller_text(c),
                    c.dialled.clone(),
                    if c.location.is_empty() {
                        "-".into()
                    } else {
                        c.location.clone()
                    },
                    c.tried_summary(),
                    outcome,
                    c.call_id.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "TIME",
                "CALL BACK",
                "CALLER",
                "DIALLED",
                "LOCATION",
                "TRUNKS TRIED",
                "OUTCOME",
                "CALL-ID",
            ],
            &rows,
        );
    }

    let t = &r.totals;
    out.push_str("\nTOTALS (emergency/other)\n");
    let pair = |c: Counts| format!("{}/{}", c.emergency, c.other);
    table(
        &mut out,
        &[
            "CALLS",
            "CONNECTED",
            "FAILED",
            "CANCELLED",
            "UNKNOWN",
            "FAILED OVER",
            "RESCUED",
            "HEDGED",
            "SKIPPED FULL TRUNK",
            "SETUP MEDIAN MS",
            "SETUP WORST MS",
        ],
        &[vec![
            pair(t.calls),
            pair(t.connected),
            pair(t.failed),
            pair(t.cancelled),
            pair(t.unfinished),
            pair(t.failed_over),
            pair(t.rescued),
            pair(t.hedged),
            pair(t.skipped_full),
            ms(t.setup_median_ms),
            ms(t.setup_max_ms),
        ]],
    );
    if !t.trunks.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = t
            .trunks
            .iter()
            .map(|x| {
                vec![
                    x.trunk.clone(),
                    x.attempts.to_string(),
                    x.connected.to_string(),
                    x.failed_attempts.to_string(),
                    x.rescued_off.to_string(),
                    x.skipped_full.to_string(),
                    ms(x.setup_median_ms),
                    ms(x.setup_max_ms),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "TRUNK",
                "ATTEMPTS",
                "CONNECTED",
                "FAILED ATTEMPTS",
                "RESCUED OFF",
                "SKIPPED FULL",
                "SETUP MEDIAN MS",
                "SETUP WORST MS",
            ],
            &rows,
        );
    }
    out
}

fn caller_text(c: &CallbackEntry) -> String {
    let mut ids: Vec<String> = Vec::new();
    if let Some(d) = &c.from_display {
        ids.push(d.clone());
    }
    ids.push(c.from_uri.clone());
    ids.extend(c.asserted_identities.iter().cloned());
    ids.join(" | ")
}

/// The callback list as CSV (RFC 4180, with a header line). Cells an
/// untrusted caller controls that a spreadsheet would run as a formula
/// (`=`, `@`, or `+`/`-` not followed by a phone number) get a leading `'`.
pub fn render_csv(r: &Report) -> String {
    let mut out = String::new();
    let header = [
        "time",
        "call_back",
        "from_display",
        "from_uri",
        "asserted_identities",
        "dialled",
        "emergency_rule",
        "location",
        "trunks_tried",
        "outcome",
        "status",
        "late_answer_via",
        "call_id",
        "source",
        "notes",
    ];
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for c in &r.callbacks {
        let cells = [
            c.time.clone(),
            c.asserted_identities
                .first()
                .cloned()
                .unwrap_or_else(|| c.from_uri.clone()),
            c.from_display.clone().unwrap_or_default(),
            c.from_uri.clone(),
            c.asserted_identities.join(" | "),
            c.dialled.clone(),
            c.emergency_rule.clone(),
            c.location.clone(),
            c.tried_summary(),
            c.outcome.clone(),
            c.status.map(|s| s.to_string()).unwrap_or_default(),
            c.late_answer_via.clone().unwrap_or_default(),
            c.call_id.clone(),
            c.source.clone(),
            c.notes.join("; "),
        ];
        let line: Vec<String> = cells.iter().map(|s| csv_cell(s)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(s: &str) -> String {
    let phone_like = |rest: &str| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|ch| ch.is_ascii_digit() || " -.()+".contains(ch))
    };
    let mut v = String::with_capacity(s.len() + 2);
    match s.chars().next() {
        Some('=' | '@' | '\t' | '\r') => v.push('\''),
        Some('+' | '-') if !phone_like(s) => v.push('\''),
        _ => {}
    }
    v.push_str(s);
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The whole report as pretty JSON.
pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("+44 7700 900123"), "+44 7700 900123");
        assert_eq!(csv_cell("+cmd"), "'+cmd");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn times_parse_absolute_and_relative() {
        let now = WallTime(1_700_000_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now),
            Ok(WallTime(1_700_000_000_000_000))
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00", now),
            Ok(WallTime(1_700_000_000_000_000))
        );
        assert_eq!(parse_time("2h", now), Ok(WallTime(now.0 - 7_200_000_000)));
        assert!(parse_time("yesterday-ish", now).is_err());
        assert!(
            parse_time("2023-11-14T22:13:20", now).is_err(),
            "no offset: ambiguous"
        );
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
