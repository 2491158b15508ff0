//! What the journal holds: one record per finished call, one per trunk state
//! change, drain or canary, one per late answer on a call already journaled,
//! one per note on a call already journaled (a hedge's second answer), and
//! one per source and kind of refusal per interval for what was refused
//! without reaching a trunk (counted, not recorded one by one, so that a
//! flood of junk cannot push real calls out of retention).
//!
//! Records are plain data with serde derives. On disk they are encoded with
//! postcard (see [`crate::format`]); in `lifeline report --format json` with
//! serde_json. Field order is part of the on-disk format: changing a struct
//! means a new [`FORMAT_VERSION`](crate::format::FORMAT_VERSION), and the
//! reader keeps decoding the old one (see [`crate::format`]'s version
//! history); adding a variant at the end of an enum does not.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A wall-clock time: microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WallTime(pub i64);

impl WallTime {
    /// From a `SystemTime` (saturating far outside ±292,000 years).
    pub fn from_system(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// As a `SystemTime`.
    pub fn to_system(self) -> SystemTime {
        let d = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    }

    /// This time plus a (journal) duration.
    pub fn plus(self, d: Micros) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.0).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2023-06-25T10:00:00.123Z`.
    pub fn rfc3339(self) -> String {
        match jiff::Timestamp::from_microsecond(self.0) {
            Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            Err(_) => format!("@{}us", self.0),
        }
    }
}

/// A duration in microseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub u64);

impl Micros {
    /// From a `Duration` (saturating).
    pub fn from_duration(d: Duration) -> Self {
        Self(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// As a `Duration`.
    pub fn to_duration(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// Whole milliseconds (rounded down) as a float with 0.1 ms precision.
    pub fn millis(self) -> f64 {
        (self.0 / 100) as f64 / 10.0
    }
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalRecord {
    /// A call ended (or was evicted while still in progress).
    Call(Box<CallRecord>),
    /// A trunk changed state or was drained / undrained.
    Trunk(TrunkRecord),
    /// A response arrived on a call already journaled: a 2xx after the
    /// caller was told the call failed, or after the caller cancelled.
    Late(LateRecord),
    /// Something happened on a call already journaled: a second answer,
    /// from a hedged attempt, on a call answered through another trunk
    /// (format version 2).
    Note(NoteRecord),
    /// Requests refused without reaching a trunk, from one source in one
    /// interval, counted: non-emergency calls that ended before any attempt
    /// (no route ...) and messages refused or dropped outside any call
    /// (added at the end in format version 2: older readers skip it).
    Refused(RefusedRecord),
    /// An emergency call started: who called, what was dialled, where from
    /// (its outcome `Unfinished`, no attempts). Its [`Call`](Self::Call)
    /// record follows when it ends; one that never does was in progress
    /// when the gateway stopped (format version 3).
    Started(Box<CallRecord>),
}

impl JournalRecord {
    /// The time the record is filed under: a call's start, a trunk event's
    /// or a late response's time, the first refusal counted.
    pub fn time(&self) -> WallTime {
        match self {
            JournalRecord::Call(c) => c.started,
            JournalRecord::Trunk(t) => t.at,
            JournalRecord::Late(l) => l.at,
            JournalRecord::Note(n) => n.at(),
            JournalRecord::Refused(r) => r.first,
            JournalRecord::Started(c) => c.started,
        }
    }
}

/// Why a call counted as an emergency call (mirrors
/// `lifeline_proxy::EmergencyRule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmergencyRule {
    /// `urn:service:sos` or a sub-service.
    SosUrn,
    /// A configured emergency number.
    Number,
    /// `Resource-Priority: esnet.*` from a trusted peer.
    ResourcePriority,
}

impl EmergencyRule {
    /// Name as in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SosUrn => "sos-urn",
            Self::Number => "number",
            Self::ResourcePriority => "resource-priority",
        }
    }
}

impl From<lifeline_proxy::EmergencyRule> for EmergencyRule {
    fn from(r: lifeline_proxy::EmergencyRule) -> Self {
        match r {
            lifeline_proxy::EmergencyRule::SosUrn => Self::SosUrn,
            lifeline_proxy::EmergencyRule::Number => Self::Number,
            lifeline_proxy::EmergencyRule::ResourcePriority => Self::ResourcePriority,
        }
    }
}

/// Who called: everything needed to call the person back. Header values are
/// kept as received (invalid UTF-8, which valid SIP never carries, is
/// replaced by U+FFFD).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The From URI.
    pub from_uri: String,
    /// The From display name, as written, if any.
    pub from_display: Option<String>,
    /// Every P-Asserted-Identity value, in order.
    pub asserted_identities: Vec<String>,
}

/// Where the caller said they are (RFC 6442).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRecord {
    /// Geolocation header values, as received.
    pub geolocation: Vec<String>,
    /// Whether the body carried a PIDF-LO part.
    pub pidf_lo: bool,
}

impl LocationRecord {
    /// Whether any location was provided.
    pub fn present(&self) -> bool {
        !self.geolocation.is_empty() || self.pidf_lo
    }

    /// A short reference for tables: the Geolocation values, then `pidf-lo`.
    pub fn reference(&self) -> String {
        let mut parts: Vec<&str> = self.geolocation.iter().map(String::as_str).collect();
        if self.pidf_lo {
            parts.push("pidf-lo");
        }
        parts.join(" ")
    }
}

/// How one attempt on a trunk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptResult {
    /// The call was answered through this attempt.
    Connected,
    /// No response at all within the failover timer.
    NoResponse,
    /// 100 Trying, then nothing within the progress timeout.
    NoProgress,
    /// A failover-class response (408, 5xx ...).
    Response(u16),
    /// ICMP unreachable, refused or reset.
    TransportError,
    /// The transaction timed out (Timer B/F).
    TransactionTimeout,
    /// The callee's side answered with a final non-2xx, relayed to the caller.
    Rejected(u16),
    /// Still in progress when the caller cancelled.
    Cancelled,
    /// Still in progress when the call was journaled (no result seen).
    Unknown,
    /// The trunk went Down (or gave hard evidence) while the attempt waited,
    /// ringing or not: the call was moved on at once (see
    /// [`CallNote::Rescued`]).
    TrunkDown,
    /// A hedged attempt that lost: another attempt of the call was answered
    /// first, and this one was cancelled.
    Superseded,
}

impl AttemptResult {
    /// Short text for tables and CSV: `connected`, `503`, `no-response` ...
    pub fn describe(self) -> String {
        match self {
            Self::Connected => "connected".into(),
            Self::NoResponse => "no-response".into(),
            Self::NoProgress => "no-progress".into(),
            Self::Response(s) => s.to_string(),
            Self::TransportError => "transport-error".into(),
            Self::TransactionTimeout => "transaction-timeout".into(),
            Self::Rejected(s) => format!("rejected-{s}"),
            Self::Cancelled => "cancelled".into(),
            Self::Unknown => "unknown".into(),
            Self::TrunkDown => "trunk-down".into(),
            Self::Superseded => "superseded".into(),
        }
    }

    /// Whether this attempt was given up on and the call moved on (or failed).
    /// A superseded hedge was not: another attempt of the call won.
    pub fn is_failover_class(self) -> bool {
        matches!(
            self,
            Self::NoResponse
                | Self::NoProgress
                | Self::Response(_)
                | Self::TransportError
                | Self::TransactionTimeout
                | Self::TrunkDown
        )
    }

    pub(crate) fn from_failure(f: lifeline_proxy::AttemptFailure) -> Self {
        use lifeline_proxy::AttemptFailure as F;
        match f {
            F::NoResponse => Self::NoResponse,
            F::NoProgress => Self::NoProgress,
            F::Response(s) => Self::Response(s),
            F::TransportError => Self::TransportError,
            F::TransactionTimeout => Self::TransactionTimeout,
            F::TrunkDown => Self::TrunkDown,
            F::Superseded => Self::Superseded,
        }
    }
}

/// One attempt of a call on a trunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The trunk's name.
    pub trunk: String,
    /// 1 for the first attempt, 2 for the first failover ...
    pub attempt: u32,
    /// When it started, from the call's start.
    pub offset: Micros,
    /// How it ended.
    pub result: AttemptResult,
    /// How long it lasted, when known (failed attempts, the connected one).
    pub elapsed: Option<Micros>,
    /// A response that arrived after the attempt was given up, if any.
    pub late_status: Option<u16>,
}

/// Why a trunk was passed over for a call (mirrors `lifeline_proxy::SkipReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The trunk had `max_calls` calls already.
    MaxCalls,
    /// The trunk had taken `max_cps` new calls in the last second.
    MaxCps,
    /// The trunk asked for less traffic (RFC 7339 overload control).
    Overload,
}

impl SkipReason {
    /// What caused it: the config key (`max_calls`, `max_cps`), or
    /// `overload` (the trunk's own request).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxCalls => "max_calls",
            Self::MaxCps => "max_cps",
            Self::Overload => "overload",
        }
    }
}

impl From<lifeline_proxy::SkipReason> for SkipReason {
    fn from(r: lifeline_proxy::SkipReason) -> Self {
        match r {
            lifeline_proxy::SkipReason::MaxCalls => Self::MaxCalls,
            lifeline_proxy::SkipReason::MaxCps => Self::MaxCps,
            lifeline_proxy::SkipReason::Overload => Self::Overload,
        }
    }
}

/// Something the proxy did for a call besides its attempts: moving it off a
/// dying trunk, hedging it, passing a full trunk over, ending a second
/// answer. `offset` is from the call's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallNote {
    /// Moved off `trunk` at once because the trunk went Down or gave hard
    /// evidence (ICMP, TCP reset) while the attempt waited.
    Rescued {
        /// The trunk the call was moved off.
        trunk: String,
        /// When, from the call's start.
        offset: Micros,
        /// Whether the caller had already heard ringing from it.
        ringing: bool,
    },
    /// The attempt had not rung within `hedge_after`: a second attempt
    /// started in parallel on `trunk`.
    Hedged {
        /// The trunk of the parallel attempt.
        trunk: String,
        /// When, from the call's start.
        offset: Micros,
    },
    /// `trunk` was passed over because it was at a capacity limit.
    Skipped {
        /// The full trunk.
        trunk: String,
        /// When, from the call's start.
        offset: Micros,
        /// Which limit.
        reason: SkipReason,
    },
    /// A 2xx from `trunk` after the call was answered through another: ACKed
    /// and ended with a BYE.
    DuplicateAnswer {
        /// The trunk whose answer was ended.
        trunk: String,
        /// When, from the call's start.
        offset: Micros,
    },
}

impl CallNote {
    /// The trunk it is about.
    pub fn trunk(&self) -> &str {
        match self {
            Self::Rescued { trunk, .. }
            | Self::Hedged { trunk, .. }
            | Self::Skipped { trunk, .. }
            | Self::DuplicateAnswer { trunk, .. } => trunk,
        }
    }

    /// When, from the call's start.
    pub fn offset(&self) -> Micros {
        match self {
            Self::Rescued { offset, .. }
            | Self::Hedged { offset, .. }
            | Self::Skipped { offset, .. }
            | Self::DuplicateAnswer { offset, .. } => *offset,
        }
    }

    /// What happened, for an operator: `rescued off primary while ringing`,
    /// `hedged to backup`, `primary skipped: max_calls`, `second answer from
    /// backup ended with BYE`.
    pub fn describe(&self) -> String {
        match self {
            Self::Rescued {
                trunk,
                ringing: true,
                ..
            } => format!("rescued off {trunk} while ringing"),
            Self::Rescued { trunk, .. } => format!("rescued off {trunk} before ringing"),
            Self::Hedged { trunk, .. } => format!("hedged to {trunk}"),
            Self::Skipped { trunk, reason, .. } => {
                format!("{trunk} skipped: {}", reason.as_str())
            }
            Self::DuplicateAnswer { trunk, .. } => {
                format!("second answer from {trunk} ended with BYE")
            }
        }
    }
}

/// Why a call did not connect (mirrors `lifeline_proxy::CallFailure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailReason {
    /// Every trunk the call could use failed.
    AllTrunksFailed,
    /// No route matched.
    NoRoute,
    /// The callee's side answered with a final non-2xx.
    Rejected,
}

impl FailReason {
    /// Name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllTrunksFailed => "all-trunks-failed",
            Self::NoRoute => "no-route",
            Self::Rejected => "rejected",
        }
    }
}

impl From<lifeline_proxy::CallFailure> for FailReason {
    fn from(f: lifeline_proxy::CallFailure) -> Self {
        match f {
            lifeline_proxy::CallFailure::AllTrunksFailed => Self::AllTrunksFailed,
            lifeline_proxy::CallFailure::NoRoute => Self::NoRoute,
            lifeline_proxy::CallFailure::Rejected => Self::Rejected,
        }
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    /// Answered through a trunk.
    Connected {
        /// The trunk's name.
        trunk: String,
    },
    /// Did not connect; the caller got `status`.
    Failed {
        /// The final status sent to the caller.
        status: u16,
        /// Why.
        reason: FailReason,
    },
    /// The caller cancelled before an answer.
    Cancelled,
    /// The gateway stopped tracking the call before it ended (too many calls
    /// in progress, or shutdown): outcome unknown.
    Unfinished,
}

impl CallOutcome {
    /// Short text for tables and CSV.
    pub fn describe(&self) -> String {
        match self {
            Self::Connected { trunk } => format!("connected via {trunk}"),
            Self::Failed { status, reason } => format!("failed {status} ({})", reason.as_str()),
            Self::Cancelled => "cancelled by caller".into(),
            Self::Unfinished => "outcome unknown (not tracked to the end)".into(),
        }
    }

    /// Whether the call connected.
    pub fn connected(&self) -> bool {
        matches!(self, Self::Connected { .. })
    }
}

/// One call, from INVITE to outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// When the INVITE arrived.
    pub started: WallTime,
    /// When the outcome was known.
    pub ended: WallTime,
    /// The SIP Call-ID.
    pub call_id: String,
    /// Who called.
    pub caller: Caller,
    /// The Request-URI as dialled.
    pub dialled: String,
    /// Why it is an emergency call, if it is.
    pub emergency: Option<EmergencyRule>,
    /// Location references.
    pub location: LocationRecord,
    /// The route that took it (empty if none matched).
    pub route: String,
    /// Where it came from, e.g. `udp:192.0.2.7:5060`.
    pub source: String,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// How it ended.
    pub outcome: CallOutcome,
    /// From the INVITE's arrival to the 2xx, if connected.
    pub setup: Option<Micros>,
    /// Rescues, hedges, trunks skipped for capacity, in order (format
    /// version 2; empty for calls read from version 1 journals).
    pub notes: Vec<CallNote>,
}

impl CallRecord {
    /// Whether the call was an emergency call.
    pub fn is_emergency(&self) -> bool {
        self.emergency.is_some()
    }

    /// Trunks tried, with why each failed: `primary:no-response backup:503`.
    pub fn attempts_summary(&self) -> String {
        let parts: Vec<String> = self
            .attempts
            .iter()
            .map(|a| {
                let mut s = format!("{}:{}", a.trunk, a.result.describe());
                if let Some(l) = a.late_status {
                    s.push_str(&format!("(late {l})"));
                }
                s
            })
            .collect();
        parts.join(" ")
    }
}

/// Measured trunk state (mirrors `lifeline_health::State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkState {
    /// Takes traffic.
    Up,
    /// Recent failures; still takes traffic.
    Suspect,
    /// Failed; takes no traffic.
    Down,
    /// Answering again, not yet trusted.
    Recovering,
}

impl TrunkState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Recovering => "recovering",
        }
    }
}

impl From<lifeline_health::State> for TrunkState {
    fn from(s: lifeline_health::State) -> Self {
        match s {
            lifeline_health::State::Up => Self::Up,
            lifeline_health::State::Suspect => Self::Suspect,
            lifeline_health::State::Down => Self::Down,
            lifeline_health::State::Recovering => Self::Recovering,
        }
    }
}

/// What happened to a trunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkChange {
    /// Measured state changed.
    State {
        /// Before.
        from: TrunkState,
        /// After.
        to: TrunkState,
        /// The evidence that tipped it, as text (`live: no response`,
        /// `probe timeout`, `probe answered 200` ...).
        reason: String,
    },
    /// An operator drained it.
    Drained,
    /// An operator undrained it.
    Undrained,
    /// It came Up on probes after a Down on live evidence and gets a bounded
    /// share of calls until `until` at the latest.
    CanaryStarted {
        /// The canary ends by then.
        until: WallTime,
    },
    /// The canary ended: full traffic again (`passed`), or it failed again.
    CanaryEnded {
        /// Whether its calls were answered.
        passed: bool,
    },
}

/// A trunk state change or drain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkRecord {
    /// When.
    pub at: WallTime,
    /// The trunk's name.
    pub trunk: String,
    /// What happened.
    pub change: TrunkChange,
}

/// A response on a call that had already been journaled (its record written
/// as failed, cancelled or unfinished).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRecord {
    /// When it arrived.
    pub at: WallTime,
    /// The call's Call-ID.
    pub call_id: String,
    /// The call's start (to find its record).
    pub started: WallTime,
    /// Through which trunk.
    pub trunk: String,
    /// The status (200 ... 299 when the call connected after all).
    pub status: u16,
    /// Whether the call was connected by it (the 2xx was forwarded).
    pub connected: bool,
}

/// A note on a call that had already been journaled: a hedged call's second
/// answer, which comes after the first one connected the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRecord {
    /// The call's Call-ID.
    pub call_id: String,
    /// The call's start (to find its record).
    pub started: WallTime,
    /// Whether the call is an emergency call.
    pub emergency: bool,
    /// What happened (its offset is from `started`).
    pub note: CallNote,
}

impl NoteRecord {
    /// When it happened.
    pub fn at(&self) -> WallTime {
        self.started.plus(self.note.offset())
    }
}

/// What was refused without reaching a trunk, in a [`RefusedRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// Non-emergency calls that ended before any attempt on a trunk: no
    /// route matched, or every trunk the route could use was down, drained
    /// or full. (An emergency call always keeps a [`CallRecord`] of its own.)
    Call {
        /// The final status the caller got.
        status: u16,
        /// Why.
        reason: FailReason,
    },
    /// Messages refused outside any call: requests answered with an error
    /// (access, malformed, no route, loop ...) or dropped, and responses
    /// dropped (stray, from the wrong peer, malformed).
    Message {
        /// The status sent, `None` if the message was dropped.
        status: Option<u16>,
        /// The proxy's short reason (`access`, `malformed`, `no route`,
        /// `response from wrong peer` ...).
        reason: String,
    },
}

impl Refusal {
    /// `call` or `message`.
    pub fn what(&self) -> &'static str {
        match self {
            Self::Call { .. } => "call",
            Self::Message { .. } => "message",
        }
    }

    /// The reason, as text: `no-route`, `access`, `malformed` ...
    pub fn reason(&self) -> &str {
        match self {
            Self::Call { reason, .. } => reason.as_str(),
            Self::Message { reason, .. } => reason,
        }
    }

    /// The status the sender got, `None` if the message was dropped.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Call { status, .. } => Some(*status),
            Self::Message { status, .. } => *status,
        }
    }
}

/// Refusals of one kind from one source in one interval (one minute by
/// default), counted: what a flood of junk leaves in the journal instead of
/// one record per request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecord {
    /// The first refusal counted.
    pub first: WallTime,
    /// The last one.
    pub last: WallTime,
    /// The sender's address (any port and transport); `None`: the sources
    /// beyond the gateway's limit of distinct sources per interval,
    /// together.
    pub source: Option<IpAddr>,
    /// What was refused, and why.
    pub refusal: Refusal,
    /// How many.
    pub count: u64,
}

impl RefusedRecord {
    /// The source as text: the address, or `other sources`.
    pub fn source_text(&self) -> String {
        self.source
            .map_or_else(|| "other sources".to_string(), |a| a.to_string())
    }
}

/// Version 1 of the on-disk records, which [`crate::format`] still reads:
/// `CallRecord` had no `notes`. Everything else is shared (enums only grew
/// variants at their end).
pub(crate) mod v1 {
    use serde::{Deserialize, Serialize};

    use super::{
        AttemptRecord, CallOutcome, Caller, EmergencyRule, LateRecord, LocationRecord, Micros,
        TrunkRecord, WallTime,
    };

    /// `JournalRecord` in version 1.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) enum JournalRecord {
        Call(Box<CallRecord>),
        Trunk(TrunkRecord),
        Late(LateRecord),
    }

    /// `CallRecord` in version 1.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct CallRecord {
        pub(crate) started: WallTime,
        pub(crate) ended: WallTime,
        pub(crate) call_id: String,
        pub(crate) caller: Caller,
        pub(crate) dialled: String,
        pub(crate) emergency: Option<EmergencyRule>,
        pub(crate) location: LocationRecord,
        pub(crate) route: String,
        pub(crate) source: String,
        pub(crate) attempts: Vec<AttemptRecord>,
        pub(crate) outcome: CallOutcome,
        pub(crate) setup: Option<Micros>,
    }

    impl From<JournalRecord> for super::JournalRecord {
        fn from(r: JournalRecord) -> Self {
            match r {
                JournalRecord::Call(c) => {
                    let c = *c;
                    Self::Call(Box::new(super::CallRecord {
                        started: c.started,
                        ended: c.ended,
                        call_id: c.call_id,
                        caller: c.caller,
                        dialled: c.dialled,
                        emergency: c.emergency,
                        location: c.location,
                        route: c.route,
                        source: c.source,
                        attempts: c.attempts,
                        outcome: c.outcome,
                        setup: c.setup,
                        notes: Vec::new(),
                    }))
                }
                JournalRecord::Trunk(t) => Self::Trunk(t),
                JournalRecord::Late(l) => Self::Late(l),
            }
        }
    }
}
