//! The incident report: timeline, outages and the calls they touched, the
//! callback list, what was refused without reaching a trunk (per source),
//! and totals; rendered as a table, CSV (the callback list) or JSON
//! (everything). Pure functions over records.
//!
//! [`ReportBuilder`] (or [`build`], for records in memory) gathers the
//! records into a [`Report`]; [`render_table`], [`render_csv`] and
//! [`render_json`] turn it into text.

mod builder;
mod render;

use serde::Serialize;

pub use builder::{build, ReportBuilder, NO_END};
pub use render::{render_csv, render_json, render_table};

use crate::aggregate::CallbackEntry;
use crate::record::WallTime;

/// Failovers from one trunk to the next (and calls rescued, hedged, passed
/// over or answered twice on one trunk) less than this far apart are shown
/// as one line of the timeline.
pub const FAILOVER_RUN_GAP_US: i64 = 10_000_000;

/// The report lists at most this many rows of refusals (the sources and
/// kinds with the most); the rest are summed up in one line.
pub const REFUSED_ROWS: usize = 100;

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
        /// The gateway (its `node_name`; empty when not known).
        gateway: String,
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
        /// The gateway (its `node_name`; empty when not known).
        gateway: String,
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
        /// The gateway (its `node_name`; empty when not known).
        gateway: String,
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
    /// The gateway whose trunk it is (its `node_name`; empty when not known).
    pub gateway: String,
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
    /// The gateway whose trunk it is (its `node_name`; empty when not known).
    pub gateway: String,
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

/// Refusals of one kind from one source over the window (from its
/// [`RefusedRecord`](crate::RefusedRecord)s, summed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefusedRow {
    /// The address, or `other sources` (those beyond the gateway's limit of
    /// distinct sources per interval, together).
    pub source: String,
    /// `call` (non-emergency calls that ended before any attempt on a
    /// trunk) or `message` (refused or dropped outside any call).
    pub what: String,
    /// `no-route`, `all-trunks-failed`, `access`, `malformed`, `loop
    /// detected` ...
    pub reason: String,
    /// The status the sender got; `None` if dropped.
    pub status: Option<u16>,
    /// How many.
    pub count: u64,
    /// The first (RFC 3339, UTC).
    pub first: String,
    /// The last.
    pub last: String,
}

/// What was refused without reaching a trunk: counted per source, not
/// recorded one by one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RefusedSummary {
    /// Non-emergency calls that ended before any attempt on a trunk (no
    /// route; every trunk of the route down, drained or full). Also counted
    /// in the totals as failed calls.
    pub calls: u64,
    /// Messages refused or dropped outside any call.
    pub messages: u64,
    /// Distinct sources (`other sources` counts as one).
    pub sources: u64,
    /// Per source and kind, most first, at most [`REFUSED_ROWS`].
    pub rows: Vec<RefusedRow>,
    /// Rows beyond [`REFUSED_ROWS`], not listed.
    pub rows_left_out: u64,
    /// What those rows counted.
    pub count_left_out: u64,
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
    /// The gateways whose journals were read, by name. Rows name their
    /// gateway; a trunk is one gateway's.
    pub gateways: Vec<String>,
    /// Problems found reading the journal.
    pub issues: Vec<String>,
    /// Trunk changes and failover runs, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Outages, oldest first.
    pub outages: Vec<Outage>,
    /// Every emergency call that did not connect, newest first.
    pub callbacks: Vec<CallbackEntry>,
    /// What was refused without reaching a trunk, per source.
    pub refused: RefusedSummary,
    /// Totals.
    pub totals: Totals,
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
