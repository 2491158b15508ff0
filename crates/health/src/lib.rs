//! `lifeline-health`: deciding, within a fraction of a second, that a trunk is
//! dead or hung — and, without flapping, that it is healthy again.
//!
//! # What it does
//!
//! - One state machine per trunk ([`State`]: Up, Suspect, Down, Recovering)
//!   with hysteresis (`down_after` failures, `up_after` successes) and a
//!   bounded hold-down for trunks that flap. An operator's drain is a flag
//!   beside the state, never a state.
//! - Active evidence: an OPTIONS probe per trunk every `interval`, each with its
//!   own `timeout`, a fresh branch per probe, responses matched by branch,
//!   round-trip time tracked (last, EWMA, max). A trunk that turns Suspect is
//!   probed at once.
//! - Live evidence from the proxy ([`Outcome`]): attempt timeouts and
//!   408/5xx count as failures; answered calls as successes. While the
//!   gateway itself is overloaded ([`Health::set_overloaded`]), timeouts
//!   prove nothing and are not counted.
//! - Transport errors (ICMP unreachable, refused, reset;
//!   [`Health::transport_error`]) are fast but forgeable: one alone makes a
//!   trunk Suspect and probes it at once; it takes a second error answering
//!   another message within [`TRANSPORT_ERROR_WINDOW`], or that probe
//!   failing, to take it Down.
//! - Selection ([`Health::select`], [`Health::select_for`]): a route's trunks
//!   in priority order, skipping Down, Recovering, drained and already-tried
//!   ones; an emergency call that has run out of usable trunks still gets
//!   every remaining (non-drained) trunk in order, never a refusal without
//!   trying. No trunk is offered twice.
//! - Canary after recovery ([`CanaryConfig`]): a trunk that went Down on live
//!   evidence (failed calls, transport errors) and comes back Up on answered
//!   probes has not shown it can take calls. For `duration` (default 10 s) it
//!   is offered after the route's other usable trunks, except to one
//!   non-emergency call in `one_in` (default 10, by the caller's ticket), so
//!   emergency calls stay on a trunk known to work while one is left; a
//!   canary trunk that is the only usable one still takes every call.
//!   `up_after` answered calls in a row or the end of `duration` pass it
//!   ([`EventKind::CanaryEnded`]); going Down again fails it. A Down that
//!   probes alone caused needs no canary: probes saw the outage and its end.
//! - Progress learning ([`Health::record_progress`], [`Progress`]): per trunk,
//!   a decaying 95th percentile of INVITE -> ringing and 100 Trying ->
//!   ringing (log-spaced buckets from 250 µs to 56.8 s, ratio 1.3; about the
//!   last 64 calls count; none before 8 calls), so the proxy can size each
//!   trunk's progress timeout to what its calls really take.
//! - Every state change is an [`Event`] with its [`Reason`]; so are canaries.
//!   A [`Reason`] reads as text (`probe answered 200`, `live: no response`)
//!   for logs, the journal and the admin API.
//! - [`TokenRng`] (ChaCha20 keyed with a 256-bit [`Seed`]), the generator
//!   behind the 128-bit probe nonces, which `lifeline-proxy` shares for its
//!   branches, tags and Record-Route tokens. Probe answers are matched by
//!   that nonce; the caller checks they came from the trunk probed
//!   ([`Health::probe_trunk`]).
//!
//! # What it does not do
//!
//! No sockets, no timers, no clock: the caller passes `now`, sends what
//! [`Health::poll_transmit`] returns, feeds back responses and transport
//! errors, and wakes at [`Health::poll_timeout`] (which includes the end of
//! every canary). It does not route calls (`lifeline-proxy` does, asking
//! [`Health::select_for`]), count them (the caller hands in each call's
//! ticket), time them (the proxy measures ringing and reports durations),
//! apply timeouts derived from [`Progress`], log, or keep history beyond the
//! decaying progress histogram.
//!
//! The contract is quinn-proto's: `handle_*` / `report` in, `poll_*` out.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod event;
#[doc(hidden)]
pub mod fuzzing;
mod probe;
mod progress;
mod rng;
mod select;
mod state;
mod status;
mod transition;
mod transport_error;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use lifeline_sip::{Error, Message};

pub use config::{AliveCodes, CanaryConfig, FlapDamping, ProbeConfig};
pub use event::{Event, EventKind, Outcome, Reason, TransportError};
use probe::{build_probe, Probe};
pub use probe::{Local, Transmit};
pub use rng::{Seed, TokenRng};
pub use select::Selection;
use state::Counters;
pub use state::State;
pub use status::{Progress, Rtt, Stats, TrunkStatus};
pub use transport_error::{Hit, TRANSPORT_ERROR_WINDOW};

/// Index of a trunk in a [`Health`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(u32);

impl TrunkId {
    /// The position in the order trunks were added.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One trunk: its configuration, measured state, probes in flight, canary
/// and counters.
#[derive(Debug)]
struct Trunk {
    name: String,
    target: String,
    cfg: ProbeConfig,
    state: State,
    counters: Counters,
    drained: bool,
    since: Instant,
    reason: Reason,
    next_probe: Option<Instant>,
    outstanding: VecDeque<Probe>,
    seq: u32,
    rtt: Rtt,
    flaps: u32,
    last_up: Option<Instant>,
    /// Flap hold-down: not Up before this.
    hold_until: Option<Instant>,
    /// Hold-down for an outage probes did not see (see `FlapDamping::live_hold`).
    live_hold_until: Option<Instant>,
    /// The last time it went Down (from Up or Suspect), live evidence did it:
    /// coming Up on probes then starts a canary.
    down_on_live: bool,
    /// In a canary until then (see `CanaryConfig`).
    canary_until: Option<Instant>,
    /// Answered calls in a row during the canary.
    canary_answered: u32,
    /// What its calls take to ring.
    progress: progress::Learner,
    /// The last transport error counted (see `transport_error`).
    last_error: Option<transport_error::LastError>,
    stats: Stats,
}

/// Timer entries; stale ones are skipped when they fire. Entries due at the
/// same instant for the same trunk fire in the order of [`TimerKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    trunk: u32,
    kind: TimerKind,
}

/// What a [`Timer`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// The probe with this seq has gone unanswered for `timeout`: a failure.
    ProbeTimeout(u32),
    /// The canary that was to last until `at` has run its time: passed.
    /// Stale if the canary ended earlier.
    CanaryEnd,
    /// Send the next probe. Stale if an earlier probe superseded it.
    Send,
}

/// Health of every trunk.
#[derive(Debug)]
pub struct Health {
    local: Local,
    trunks: Vec<Trunk>,
    timers: BinaryHeap<Reverse<Timer>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: TokenRng,
    overloaded: bool,
    scratch: String,
    /// Transport errors whose message was not known, so far.
    unknown_errors: u64,
}

impl Health {
    /// A health checker whose probes come from `local`, with probe nonces
    /// from a seed expanded from 64 bits: for tests and tools, whose runs
    /// should repeat. The gateway uses [`with_seed`](Self::with_seed).
    pub fn new(local: Local, seed: u64) -> Self {
        Self::with_seed(local, Seed::from(seed))
    }

    /// A health checker whose probes come from `local`, with probe nonces
    /// from ChaCha20 keyed with `seed` (the gateway's comes from the
    /// operating system).
    pub fn with_seed(local: Local, seed: Seed) -> Self {
        Self {
            local,
            trunks: Vec::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: TokenRng::new(seed),
            overloaded: false,
            scratch: String::new(),
            unknown_errors: 0,
        }
    }

    /// Add a trunk probed at `target` (a SIP URI such as `sip:192.0.2.10:5060`).
    /// It starts Up, and its first probe is due at `now`. Fails if `target` or
    /// the local identity cannot form a valid OPTIONS request.
    pub fn add_trunk(
        &mut self,
        now: Instant,
        name: &str,
        target: &str,
        cfg: ProbeConfig,
    ) -> Result<TrunkId, Error> {
        let id = TrunkId(self.trunks.len() as u32);
        let trunk = Trunk {
            name: name.to_string(),
            target: target.to_string(),
            cfg,
            state: State::Up,
            counters: Counters::default(),
            drained: false,
            since: now,
            reason: Reason::Added,
            next_probe: None,
            outstanding: VecDeque::new(),
            seq: 0,
            rtt: Rtt::default(),
            flaps: 0,
            last_up: None,
            hold_until: None,
            live_hold_until: None,
            down_on_live: false,
            canary_until: None,
            canary_answered: 0,
            progress: progress::Learner::default(),
            last_error: None,
            stats: Stats::default(),
        };
        // Prove the probe is well-formed before accepting the trunk.
        let probe = build_probe(&mut self.scratch, &self.local, &trunk.target, id, 0, 0)?;
        Message::parse(probe).and_then(|m| lifeline_sip::validate(&m))?;
        self.trunks.push(trunk);
        self.schedule_probe(id, now);
        Ok(id)
    }

    /// Change where a trunk is probed and how (a configuration reload). Its
    /// measured state (and a canary under way) is kept; the new cadence
    /// starts with a probe at `now`. What its calls take to ring
    /// ([`Progress`]) is forgotten if `target` changed: that is another
    /// trunk.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        id: TrunkId,
        target: &str,
        cfg: ProbeConfig,
    ) -> Result<(), Error> {
        let probe = build_probe(&mut self.scratch, &self.local, target, id, 0, 0)?;
        Message::parse(probe).and_then(|m| lifeline_sip::validate(&m))?;
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return Ok(());
        };
        let changed = t.cfg != cfg || t.target != target;
        if t.target != target {
            t.progress = progress::Learner::default();
        }
        t.target = target.to_string();
        t.cfg = cfg;
        if changed {
            t.next_probe = None;
            self.schedule_probe(id, now);
        }
        Ok(())
    }

    /// Look a trunk up by name.
    pub fn find(&self, name: &str) -> Option<TrunkId> {
        self.trunks
            .iter()
            .position(|t| t.name == name)
            .map(|i| TrunkId(i as u32))
    }

    /// How many trunks.
    pub fn len(&self) -> usize {
        self.trunks.len()
    }

    /// No trunks at all.
    pub fn is_empty(&self) -> bool {
        self.trunks.is_empty()
    }

    /// The health of one trunk.
    pub fn trunk(&self, id: TrunkId) -> Option<TrunkStatus<'_>> {
        let t = self.trunks.get(id.index())?;
        Some(TrunkStatus {
            id,
            name: &t.name,
            state: t.state,
            drained: t.drained,
            since: t.since,
            reason: t.reason,
            rtt: t.rtt,
            consecutive_failures: t.counters.failures,
            live_failures: t.counters.live_failures,
            consecutive_successes: t.counters.successes,
            probes_outstanding: t.outstanding.len(),
            held_until: t.hold_until.max(t.live_hold_until),
            canary_until: t.canary_until,
            progress: t.progress.progress(),
            stats: t.stats,
        })
    }

    /// Every trunk, in the order added.
    pub fn trunks(&self) -> impl Iterator<Item = TrunkStatus<'_>> + '_ {
        (0..self.trunks.len()).filter_map(|i| self.trunk(TrunkId(i as u32)))
    }

    /// Tell the checker whether the gateway itself is overloaded (socket drops
    /// rising, event-loop lag). While it is, timeouts are not counted against
    /// trunks: a busy gateway must not talk itself into "every trunk is down".
    /// Transport errors and failure responses still count.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = overloaded;
    }

    /// Stop routing new calls to a trunk (maintenance). It keeps being probed.
    pub fn drain(&mut self, now: Instant, id: TrunkId) {
        self.set_drained(now, id, true);
    }

    /// Route calls to a drained trunk again (if its measured state allows).
    pub fn undrain(&mut self, now: Instant, id: TrunkId) {
        self.set_drained(now, id, false);
    }

    fn set_drained(&mut self, now: Instant, id: TrunkId, drained: bool) {
        if let Some(t) = self.trunks.get_mut(id.index()) {
            if t.drained != drained {
                t.drained = drained;
                let kind = if drained {
                    EventKind::Drained
                } else {
                    EventKind::Undrained
                };
                self.events.push_back(Event {
                    trunk: id,
                    at: now,
                    kind,
                });
            }
        }
    }

    /// Live evidence from the proxy. A transport error reported here
    /// answers a message not known: the same as
    /// [`transport_error`](Self::transport_error) with [`Hit::Unknown`].
    pub fn report(&mut self, now: Instant, id: TrunkId, outcome: Outcome) {
        if let Outcome::TransportError(kind) = outcome {
            self.transport_error(now, id, kind, Hit::Unknown);
            return;
        }
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        t.stats.live_reports += 1;
        self.evidence(
            now,
            id,
            state::Result {
                success: outcome.is_success(),
                live: true,
                weak: false,
            },
            Reason::Live(outcome),
        );
    }

    /// Fire every timer due at or before `now`: send due probes, count
    /// unanswered ones as failures, end canaries that ran their time.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.at > now {
                break;
            }
            self.timers.pop();
            let id = TrunkId(timer.trunk);
            match timer.kind {
                TimerKind::Send => self.send_probe(now, id, timer.at),
                TimerKind::ProbeTimeout(seq) => self.probe_deadline(now, id, seq),
                TimerKind::CanaryEnd => self.canary_deadline(now, id, timer.at),
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| t.at)
    }

    /// The next probe to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next state, canary or administrative change.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What a trunk's call took to ring: `invite_to_ringing` from the INVITE
    /// to its first 18x (or 2xx), `trying_to_ringing` from its 100 Trying,
    /// if one came. Feeds [`Progress`]; O(1) amortised.
    pub fn record_progress(
        &mut self,
        id: TrunkId,
        invite_to_ringing: Duration,
        trying_to_ringing: Option<Duration>,
    ) {
        if let Some(t) = self.trunks.get_mut(id.index()) {
            t.progress.record(invite_to_ringing, trying_to_ringing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flap_hold_is_bounded() {
        let f = FlapDamping::default();
        assert_eq!(f.hold_for(0), Duration::ZERO);
        assert_eq!(f.hold_for(1), Duration::from_secs(1));
        assert_eq!(f.hold_for(3), Duration::from_secs(4));
        assert_eq!(f.hold_for(40), Duration::from_secs(30));
    }
}
