//! Transport errors (ICMP port or host unreachable, TCP refused or reset):
//! fast evidence, but cheap to forge, so it needs corroboration before it
//! takes a trunk Down.
//!
//! In order (see [`Health::transport_error`]):
//! 1. An error is taken to answer one message ([`Hit`]): a probe, a message
//!    of a call (named by the caller: one number per transaction), or one
//!    not known. An error answering the trunk's latest outstanding probe
//!    fails that probe at once.
//! 2. A second error answering the same message within
//!    [`TRANSPORT_ERROR_WINDOW`] adds nothing (it is not counted).
//! 3. An error is corroborated when another error, answering another
//!    message, came within [`TRANSPORT_ERROR_WINDOW`] before it. A
//!    corroborated error is a failure like any other (`down_after` of them
//!    in a row take the trunk Down).
//! 4. An uncorroborated error is a weak failure: it can make the trunk
//!    Suspect, never Down (nor Recovering back to Down), and the trunk is
//!    probed at once. That probe failing (its own error, a rejection or a
//!    timeout) is the corroboration; its answer clears the suspicion.
//! 5. Transport errors are not live failures: an answered probe clears them
//!    (an ICMP port unreachable says the port is closed; an answer from it
//!    says it is open).
//!
//! So a trunk that is really gone is Down one round trip after the first
//! error (the immediate probe's own error), and one forged error moves one
//! attempt (the proxy's part) and leaves the trunk Suspect until the probe
//! comes back.

use std::time::{Duration, Instant};

use crate::{state, Health, Outcome, Reason, TransportError, TrunkId};

/// How close together two transport errors answering different messages
/// must be to corroborate each other.
pub const TRANSPORT_ERROR_WINDOW: Duration = Duration::from_secs(1);

/// The message a transport error answers, as far as the caller can tell
/// (see [`Health::transport_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hit {
    /// The trunk's latest probe.
    Probe,
    /// A message of a call: the same number for every message of one
    /// transaction (a request and its retransmissions), another number for
    /// another transaction.
    Message(u64),
    /// Not known: never the same message as any other error.
    Unknown,
}

/// What a trunk's last transport error answered, to tell a repeat from
/// corroboration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// A probe, by seq.
    Probe(u32),
    /// A call's message, by the caller's number.
    Message(u64),
    /// Unknown: unique numbers, never equal to another's.
    Unknown(u64),
}

/// A trunk's last counted transport error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LastError {
    pub(crate) at: Instant,
    pub(crate) answered: Answered,
}

impl Health {
    /// A transport error on a message to trunk `id`: ICMP port or host
    /// unreachable, TCP refused or reset. `hit` names the message it
    /// answers. Corroborated errors are failures; a lone one makes the trunk
    /// Suspect at most and probes it at once (see the module's rules).
    pub fn transport_error(&mut self, now: Instant, id: TrunkId, kind: TransportError, hit: Hit) {
        if id.index() >= self.trunks.len() {
            return;
        }
        let answered = match hit {
            Hit::Probe => match self.fail_latest_probe(id) {
                Some(seq) => Answered::Probe(seq),
                None => self.unknown_error(),
            },
            Hit::Message(n) => Answered::Message(n),
            Hit::Unknown => self.unknown_error(),
        };
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        t.stats.live_reports += 1;
        let recent = t
            .last_error
            .filter(|e| now.saturating_duration_since(e.at) <= TRANSPORT_ERROR_WINDOW);
        if recent.is_some_and(|e| e.answered == answered) {
            return; // the same message again: nothing new
        }
        let corroborated = recent.is_some();
        t.last_error = Some(LastError { at: now, answered });
        self.evidence(
            now,
            id,
            state::Result {
                success: false,
                live: false,
                weak: !corroborated,
            },
            Reason::Live(Outcome::TransportError(kind)),
        );
        if !corroborated {
            // Confirm or clear it now: a trunk that is gone refuses the probe too.
            self.schedule_probe(id, now);
        }
    }

    fn unknown_error(&mut self) -> Answered {
        self.unknown_errors = self.unknown_errors.wrapping_add(1);
        Answered::Unknown(self.unknown_errors)
    }
}
