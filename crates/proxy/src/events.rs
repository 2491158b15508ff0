//! What the proxy reports: call events for the journal and metrics, and the
//! messages it sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_health::TrunkId;

use crate::classify::EmergencyRule;
use crate::config::Peer;

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub peer: Peer,
    /// The whole SIP message.
    pub payload: Bytes,
    /// The trunk it goes to, if any: a transport error on this send is
    /// reported back with [`Proxy::handle_transport_error`](crate::Proxy::handle_transport_error).
    pub trunk: Option<TrunkId>,
}

/// Identifies one call (one INVITE that started a dialog) across events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// Where the caller's location is (RFC 6442), as far as the proxy can see
/// without parsing bodies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The Geolocation header values, as received.
    pub geolocation: Vec<Bytes>,
    /// Whether the body carries a PIDF-LO (`application/pidf+xml`) part.
    pub pidf_lo: bool,
}

impl Location {
    /// Whether any location was provided.
    pub fn present(&self) -> bool {
        !self.geolocation.is_empty() || self.pidf_lo
    }
}

/// Who called what: everything needed to call a person back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    /// The SIP Call-ID.
    pub call_id: Bytes,
    /// The From URI.
    pub from_uri: Bytes,
    /// The From display name, as written (quoted or tokens), if any.
    pub from_display: Option<Bytes>,
    /// Every P-Asserted-Identity value, as received.
    pub asserted_identities: Vec<Bytes>,
    /// The Request-URI as dialled.
    pub dialled: Bytes,
    /// Why the call is an emergency call, if it is.
    pub emergency: Option<EmergencyRule>,
    /// Location references.
    pub location: Location,
    /// The route that took it.
    pub route: String,
    /// Where the call came from.
    pub source: Peer,
}

/// Why an attempt on a trunk was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptFailure {
    /// No response at all within the route's `failover_after`.
    NoResponse,
    /// 100 Trying, then nothing within the route's `progress_timeout`.
    NoProgress,
    /// The trunk answered with a failover-class status (408, 5xx ...).
    Response(u16),
    /// ICMP unreachable, refused or reset, answering this attempt's request
    /// (moved only when the call had another trunk or attempt to go to).
    TransportError,
    /// The transaction timed out (Timer B/F) on a target without failover.
    TransactionTimeout,
    /// The trunk went Down (probes or other calls' evidence) while this
    /// attempt waited: moved to the next trunk at once, ringing or not.
    TrunkDown,
    /// A hedged attempt lost: another attempt of the call was answered.
    Superseded,
}

impl AttemptFailure {
    /// Name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoResponse => "no-response",
            Self::NoProgress => "no-progress",
            Self::Response(_) => "response",
            Self::TransportError => "transport-error",
            Self::TransactionTimeout => "transaction-timeout",
            Self::TrunkDown => "trunk-down",
            Self::Superseded => "superseded",
        }
    }
}

/// Why a trunk was passed over for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The trunk had `max_calls` calls already.
    MaxCalls,
    /// The trunk had taken `max_cps` new calls in the last second.
    MaxCps,
    /// The trunk asked for less traffic (RFC 7339 `oc`, the loss
    /// algorithm) and this non-emergency call was part of the share shed.
    Overload,
}

impl SkipReason {
    /// Name for logs and metrics (the config key that caused it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxCalls => "max_calls",
            Self::MaxCps => "max_cps",
            Self::Overload => "overload",
        }
    }
}

/// Why a call did not connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallFailure {
    /// Every trunk the call could use failed.
    AllTrunksFailed,
    /// No route matched.
    NoRoute,
    /// The callee's side answered with a final non-2xx (486, 603, 404 ...).
    Rejected,
}

/// Something the journal or the metrics want to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new call (INVITE outside a dialog) was accepted for routing.
    CallStarted {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// Who called what, and from where (shared: every sink that keeps
        /// it, such as the journal's aggregation, keeps it without a copy).
        info: Arc<CallInfo>,
    },
    /// The INVITE was sent to a trunk.
    AttemptStarted {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// Which trunk.
        trunk: TrunkId,
        /// 1 for the first attempt, 2 for the first failover ...
        attempt: u32,
    },
    /// An attempt was given up and the call moved on (or failed).
    AttemptFailed {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// Which trunk.
        trunk: TrunkId,
        /// Why.
        reason: AttemptFailure,
        /// Since the attempt started.
        elapsed: Duration,
    },
    /// The call was answered (2xx forwarded to the caller).
    CallConnected {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// Through which trunk.
        trunk: TrunkId,
        /// From the INVITE's arrival to the 2xx.
        setup: Duration,
    },
    /// The call did not connect.
    CallFailed {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// The final status sent to the caller.
        status: u16,
        /// Why.
        reason: CallFailure,
    },
    /// The caller cancelled the call before it was answered.
    CallCancelled {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
    },
    /// A response arrived on an attempt already given up: a provisional (the
    /// attempt is CANCELled) or a 2xx (forwarded to the caller, §16.7).
    LateResponse {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// Which trunk.
        trunk: TrunkId,
        /// The status.
        status: u16,
    },
    /// An attempt with no final response was moved off its trunk because the
    /// trunk went Down: the call continues on the next trunk. Followed by
    /// the `AttemptFailed` of the old attempt and the `AttemptStarted` of
    /// the new one. (A transport error that answers one attempt moves only
    /// that one, as failover: `AttemptFailed { TransportError }`.)
    Rescued {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// The trunk the call was moved off.
        trunk: TrunkId,
        /// Whether the caller had already heard ringing (18x) from it.
        ringing: bool,
    },
    /// An emergency call's attempt had not rung within the route's
    /// `hedge_after`: a second attempt starts in parallel on `trunk`.
    Hedged {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// The trunk of the parallel attempt.
        trunk: TrunkId,
    },
    /// A trunk was passed over for a call because it was at a capacity
    /// limit; the call overflowed to the next trunk.
    TrunkSkipped {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// The full trunk.
        trunk: TrunkId,
        /// Which limit.
        reason: SkipReason,
    },
    /// A 2xx arrived from a second trunk after the call was answered by
    /// another: the proxy ACKed it and ended that dialog with a BYE, so no
    /// second dialog stays up.
    DuplicateAnswer {
        /// The call.
        call: CallRef,
        /// When.
        at: Instant,
        /// The trunk whose 2xx was ended.
        trunk: TrunkId,
    },
    /// A trunk's health changed.
    Trunk(lifeline_health::Event),
    /// A message was refused: a request answered with an error, or a response
    /// (or garbage) dropped.
    Rejected {
        /// When.
        at: Instant,
        /// From where.
        from: Peer,
        /// The status sent, `None` if the message was dropped.
        status: Option<u16>,
        /// A short reason.
        reason: &'static str,
    },
}
