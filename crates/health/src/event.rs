//! What the checker learns and what it reports: the outcome of a call
//! attempt, why a trunk changed state, and the events that say so.

use std::time::Instant;

use crate::{State, TrunkId};

/// What a call attempt (or a send) taught us about a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The trunk processed the call: it rang, answered, or gave the callee's
    /// own final answer (486, 603, 404 ...).
    Answered,
    /// No response at all within the attempt's failover timer.
    Timeout,
    /// 100 Trying, then no ringing or answer within the progress timeout.
    ProgressTimeout,
    /// A failover-class response (408, 500, 502, 503, 504 ...).
    FailureResponse(u16),
    /// The network refused: ICMP unreachable, TCP refused or reset.
    TransportError(TransportError),
}

impl Outcome {
    pub(crate) fn is_success(self) -> bool {
        matches!(self, Outcome::Answered)
    }

    /// Timeouts say as much about a busy gateway as about the trunk.
    fn is_timeout(self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::ProgressTimeout)
    }
}

/// `call answered`, `no response`, `no progress after 100 Trying`,
/// `503 response`, `transport error (port unreachable)`.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Answered => f.write_str("call answered"),
            Outcome::Timeout => f.write_str("no response"),
            Outcome::ProgressTimeout => f.write_str("no progress after 100 Trying"),
            Outcome::FailureResponse(code) => write!(f, "{code} response"),
            Outcome::TransportError(e) => write!(f, "transport error ({e})"),
        }
    }
}

/// Kinds of transport failure reported by the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportError {
    /// ICMP port unreachable (UDP `ECONNREFUSED`).
    PortUnreachable,
    /// ICMP host or network unreachable.
    HostUnreachable,
    /// TCP connection refused.
    ConnectionRefused,
    /// TCP connection reset.
    ConnectionReset,
    /// Any other send or connect failure.
    Other,
}

/// `port unreachable`, `host unreachable`, `connection refused`,
/// `connection reset`, `other send or connect failure`.
impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportError::PortUnreachable => "port unreachable",
            TransportError::HostUnreachable => "host unreachable",
            TransportError::ConnectionRefused => "connection refused",
            TransportError::ConnectionReset => "connection reset",
            TransportError::Other => "other send or connect failure",
        })
    }
}

/// Why a trunk changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The trunk was just added (starts Up).
    Added,
    /// A probe was answered with a code that counts as alive.
    ProbeAnswered(u16),
    /// A probe was answered with a code that does not count as alive.
    ProbeRejected(u16),
    /// A probe went unanswered for `probe.timeout`.
    ProbeTimeout,
    /// Evidence from a live call (or a failed send).
    Live(Outcome),
}

impl Reason {
    /// A probe or a call that went unanswered: while the gateway itself is
    /// overloaded this proves nothing about the trunk.
    pub(crate) fn is_timeout(self) -> bool {
        match self {
            Reason::ProbeTimeout => true,
            Reason::Live(outcome) => outcome.is_timeout(),
            Reason::Added | Reason::ProbeAnswered(_) | Reason::ProbeRejected(_) => false,
        }
    }
}

/// For people and the journal: `configured`, `probe answered 200`,
/// `probe answered 503 (not counted alive)`, `probe timeout`, or `live: `
/// and the [`Outcome`] (`live: no response`).
impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Added => f.write_str("configured"),
            Reason::ProbeAnswered(code) => write!(f, "probe answered {code}"),
            Reason::ProbeRejected(code) => write!(f, "probe answered {code} (not counted alive)"),
            Reason::ProbeTimeout => f.write_str("probe timeout"),
            Reason::Live(outcome) => write!(f, "live: {outcome}"),
        }
    }
}

/// A state change or an administrative change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Which trunk.
    pub trunk: TrunkId,
    /// When.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Measured state changed.
    State {
        /// Before.
        from: State,
        /// After.
        to: State,
        /// The evidence that tipped it.
        reason: Reason,
    },
    /// An operator drained the trunk (no new calls; still probed).
    Drained,
    /// An operator undrained the trunk.
    Undrained,
    /// The trunk came Up on probes after a Down on live evidence: it gets a
    /// bounded share of calls until `until` (see
    /// [`CanaryConfig`](crate::CanaryConfig)).
    CanaryStarted {
        /// The canary ends by then at the latest.
        until: Instant,
    },
    /// The canary ended: the trunk takes full traffic again (`passed`), or
    /// it failed again and left Up (`!passed`).
    CanaryEnded {
        /// Whether its calls were answered (or the canary ran its time
        /// without a failure).
        passed: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_text() {
        let text = |r: Reason| r.to_string();
        assert_eq!(text(Reason::Added), "configured");
        assert_eq!(text(Reason::ProbeAnswered(200)), "probe answered 200");
        assert_eq!(
            text(Reason::ProbeRejected(503)),
            "probe answered 503 (not counted alive)"
        );
        assert_eq!(text(Reason::ProbeTimeout), "probe timeout");
        assert_eq!(text(Reason::Live(Outcome::Timeout)), "live: no response");
        assert_eq!(
            text(Reason::Live(Outcome::ProgressTimeout)),
            "live: no progress after 100 Trying"
        );
        assert_eq!(
            text(Reason::Live(Outcome::FailureResponse(503))),
            "live: 503 response"
        );
        assert_eq!(
            text(Reason::Live(Outcome::TransportError(
                TransportError::PortUnreachable
            ))),
            "live: transport error (port unreachable)"
        );
    }
}
