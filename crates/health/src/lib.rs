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
//! - Live evidence from the proxy ([`Outcome`]): attempt timeouts, transport
//!   errors (ICMP unreachable, refused, reset) and 408/5xx count as failures;
//!   answered calls as successes. While the gateway itself is overloaded
//!   ([`Health::set_overloaded`]), timeouts prove nothing and are not counted.
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
//! - [`SplitMix64`], the seeded generator behind probe nonces, which
//!   `lifeline-proxy` shares for its branches and tags.
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
#[doc(hidden)]
pub mod fuzzing;
mod progress;
mod rng;
mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_sip::{Error, HeaderName, Message, MessageWriter};

pub use config::{AliveCodes, CanaryConfig, FlapDamping, ProbeConfig};
pub use rng::SplitMix64;
use state::Counters;
pub use state::State;

/// Index of a trunk in a [`Health`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(u32);

impl TrunkId {
    /// The position in the order trunks were added.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

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
    fn is_success(self) -> bool {
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
    /// bounded share of calls until `until` (see [`CanaryConfig`]).
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

/// An OPTIONS probe to send to a trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The trunk to send it to (the gateway knows its address and transport).
    pub trunk: TrunkId,
    /// The whole SIP request.
    pub payload: Bytes,
}

/// Probe round-trip times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rtt {
    /// The latest answered probe.
    pub last: Option<Duration>,
    /// Smoothed (EWMA, weight 1/8 as TCP's SRTT).
    pub ewma: Option<Duration>,
    /// The largest seen.
    pub max: Option<Duration>,
}

impl Rtt {
    fn record(&mut self, rtt: Duration) {
        self.last = Some(rtt);
        self.max = Some(self.max.map_or(rtt, |m| m.max(rtt)));
        self.ewma = Some(match self.ewma {
            None => rtt,
            Some(e) => (e * 7 + rtt) / 8,
        });
    }
}

/// What a trunk's calls usually take to ring, learned from its calls: a
/// decaying 95th percentile (recent calls weigh more; about the last 64
/// calls count), `None` until 8 calls were seen (for `trying_to_ringing`, 8
/// calls that had a 100 Trying).
///
/// Estimates are upper bounds of log-spaced buckets, 250 µs × 1.3^k rounded
/// to whole microseconds (250 µs, 325 µs ... 4.490 ms, 5.837 ms ...
/// 656.354 ms ... 56.777348 s): steady 5 ms calls give 5.837 ms. Anything
/// longer than 56.777348 s counts as that. A slower trunk shows within a few
/// calls (once they carry 5 % of the weight); a faster one only after about
/// 190 calls. Forgotten when the trunk's target changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// INVITE sent -> first 18x (or 2xx).
    pub invite_to_ringing: Option<Duration>,
    /// 100 Trying -> first 18x (or 2xx).
    pub trying_to_ringing: Option<Duration>,
    /// Calls seen.
    pub samples: u64,
}

/// Counters for one trunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Probes sent.
    pub probes_sent: u64,
    /// Probes answered (any code) in time.
    pub probes_answered: u64,
    /// Probes that timed out.
    pub probe_timeouts: u64,
    /// Live outcomes reported.
    pub live_reports: u64,
    /// Timeouts not counted because the gateway was overloaded.
    pub ignored_while_overloaded: u64,
}

/// Where probes come from: the gateway's own identity on the trunk side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The Via value without branch, e.g. `SIP/2.0/UDP 192.0.2.1:5060`.
    pub via: String,
    /// The From URI, e.g. `sip:lifeline@192.0.2.1`.
    pub from_uri: String,
}

#[derive(Clone, Copy, Debug)]
struct Probe {
    seq: u32,
    nonce: u32,
    sent: Instant,
}

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
    stats: Stats,
}

/// A read-only view of one trunk's health.
#[derive(Clone, Copy, Debug)]
pub struct TrunkStatus<'a> {
    /// The id.
    pub id: TrunkId,
    /// Its configured name.
    pub name: &'a str,
    /// Measured state.
    pub state: State,
    /// Administratively drained.
    pub drained: bool,
    /// Since when it has been in `state`.
    pub since: Instant,
    /// What put it there.
    pub reason: Reason,
    /// Probe round-trip times.
    pub rtt: Rtt,
    /// Consecutive failures so far.
    pub consecutive_failures: u32,
    /// Live failures (calls) not yet cleared by an answered call.
    pub live_failures: u32,
    /// Consecutive successes so far.
    pub consecutive_successes: u32,
    /// Probes sent and not yet answered or timed out.
    pub probes_outstanding: usize,
    /// Not before this instant may it come Up (flap hold-down).
    pub held_until: Option<Instant>,
    /// In a canary until this instant (see [`CanaryConfig`]), if it is.
    pub canary_until: Option<Instant>,
    /// What its calls usually take to ring.
    pub progress: Progress,
    /// Counters.
    pub stats: Stats,
}

impl TrunkStatus<'_> {
    /// Takes new calls: usable state and not drained.
    pub fn ready(&self) -> bool {
        self.state.usable() && !self.drained
    }
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

const BRANCH_PREFIX: &[u8] = b"z9hG4bK-lh";

/// Health of every trunk.
#[derive(Debug)]
pub struct Health {
    local: Local,
    trunks: Vec<Trunk>,
    timers: BinaryHeap<Reverse<Timer>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: SplitMix64,
    overloaded: bool,
    scratch: String,
}

impl Health {
    /// A health checker whose probes come from `local`. `seed` feeds the
    /// probe nonces (the gateway passes OS randomness; tests a constant).
    pub fn new(local: Local, seed: u64) -> Self {
        Self {
            local,
            trunks: Vec::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: SplitMix64::new(seed),
            overloaded: false,
            scratch: String::new(),
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

    /// Live evidence from the proxy (or a transport error on any send).
    pub fn report(&mut self, now: Instant, id: TrunkId, outcome: Outcome) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        t.stats.live_reports += 1;
        if outcome.is_timeout() && self.overloaded {
            t.stats.ignored_while_overloaded += 1;
            return;
        }
        self.apply(
            now,
            id,
            state::Result {
                success: outcome.is_success(),
                live: true,
            },
            Reason::Live(outcome),
        );
    }

    /// Offer a response to the checker. Returns `true` if it answers one of
    /// its probes (the caller should not pass it on), `false` otherwise.
    pub fn handle_response(&mut self, now: Instant, msg: &Message) -> bool {
        let Some(code) = msg.status() else {
            return false;
        };
        let Some((trunk, seq, nonce)) = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .and_then(parse_branch)
        else {
            return false;
        };
        let Some(t) = self.trunks.get_mut(trunk as usize) else {
            return false;
        };
        if code < 200 {
            return true; // provisional: keep waiting for the final response
        }
        let Some(pos) = t
            .outstanding
            .iter()
            .position(|p| p.seq == seq && p.nonce == nonce)
        else {
            return true; // late (already timed out) or forged: ours, but no evidence
        };
        let Some(probe) = t.outstanding.remove(pos) else {
            return true;
        };
        t.rtt.record(now.saturating_duration_since(probe.sent));
        t.stats.probes_answered += 1;
        let alive = t.cfg.alive.is_alive(code);
        let reason = if alive {
            Reason::ProbeAnswered(code)
        } else {
            Reason::ProbeRejected(code)
        };
        self.apply(
            now,
            TrunkId(trunk),
            state::Result {
                success: alive,
                live: false,
            },
            reason,
        );
        true
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

    /// Like [`select`](Self::select), for the `ticket`-th non-emergency call
    /// (the caller counts them): a trunk in its canary (see
    /// [`CanaryConfig`]) keeps its place for a non-emergency call whose
    /// `ticket` is a multiple of `one_in` (every one if `one_in` is 0 or 1),
    /// and otherwise comes after the route's other usable trunks but before
    /// an emergency call's fallback to Down and Recovering ones. Emergency
    /// calls always defer it.
    pub fn select_for<'a>(
        &'a self,
        route: &'a [TrunkId],
        tried: &'a [TrunkId],
        emergency: bool,
        ticket: u64,
    ) -> Selection<'a> {
        Selection {
            health: self,
            route,
            tried,
            emergency,
            ticket,
            pos: 0,
            pass: Pass::Ready,
            deferred: false,
        }
    }

    /// Trunks for a call, in the order to try them: the route's trunks in
    /// priority order that are usable (Up or Suspect), not drained and not
    /// yet tried; then those of them in a canary (see [`CanaryConfig`]);
    /// then, for an emergency call only, the remaining non-drained trunks
    /// (Down, Recovering) in order — an emergency call is never refused
    /// without trying every trunk it may use. No trunk comes twice, even if
    /// the route names it twice.
    ///
    /// The same as [`select_for`](Self::select_for) with ticket 1: a canary
    /// trunk keeps its place only if its `one_in` is 0 or 1.
    pub fn select<'a>(
        &'a self,
        route: &'a [TrunkId],
        tried: &'a [TrunkId],
        emergency: bool,
    ) -> Selection<'a> {
        self.select_for(route, tried, emergency, 1)
    }

    fn schedule_probe(&mut self, id: TrunkId, at: Instant) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        if !t.cfg.enabled || t.next_probe.is_some_and(|n| n <= at) {
            return;
        }
        t.next_probe = Some(at);
        self.timers.push(Reverse(Timer {
            at,
            trunk: id.0,
            kind: TimerKind::Send,
        }));
    }

    fn send_probe(&mut self, now: Instant, id: TrunkId, due: Instant) {
        let nonce = self.rng.next_u32();
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        if t.next_probe != Some(due) {
            return; // superseded by an earlier probe
        }
        t.seq = t.seq.wrapping_add(1);
        let seq = t.seq;
        let Ok(payload) = build_probe(&mut self.scratch, &self.local, &t.target, id, seq, nonce)
        else {
            return; // checked in add_trunk; cannot fail for the same inputs
        };
        t.outstanding.push_back(Probe {
            seq,
            nonce,
            sent: now,
        });
        t.stats.probes_sent += 1;
        // Keep the cadence, but never fire a burst to catch up after a stall.
        let mut next = due + t.cfg.interval;
        if next <= now {
            next = now + t.cfg.interval;
        }
        t.next_probe = Some(next);
        let deadline = now + t.cfg.timeout;
        self.timers.push(Reverse(Timer {
            at: deadline,
            trunk: id.0,
            kind: TimerKind::ProbeTimeout(seq),
        }));
        self.timers.push(Reverse(Timer {
            at: next,
            trunk: id.0,
            kind: TimerKind::Send,
        }));
        self.transmits.push_back(Transmit { trunk: id, payload });
    }

    fn probe_deadline(&mut self, now: Instant, id: TrunkId, seq: u32) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        let Some(pos) = t.outstanding.iter().position(|p| p.seq == seq) else {
            return; // answered in time
        };
        t.outstanding.remove(pos);
        t.stats.probe_timeouts += 1;
        if self.overloaded {
            t.stats.ignored_while_overloaded += 1;
            return;
        }
        self.apply(
            now,
            id,
            state::Result {
                success: false,
                live: false,
            },
            Reason::ProbeTimeout,
        );
    }

    // Canary after recovery, in order (see `CanaryConfig`):
    // 1. A Down from Up or Suspect remembers whether live evidence (a failed
    //    call or send) caused it (`down_on_live`); probe timeouts and
    //    rejections do not count.
    // 2. When such a trunk comes Up, its canary starts right after the State
    //    event, until `now + duration`, with a `CanaryEnd` timer for then
    //    (none if `duration` is zero).
    // 3. During the canary, live results count answered calls in a row; any
    //    live failure restarts the count and follows the state machine.
    // 4. `up_after` answered calls in a row, or the timer, pass it; a Down
    //    fails it, right after the State event.
    // 5. Selection defers a canary trunk (see `Selection`); nothing else
    //    changes.

    /// A trunk that went Down on live evidence has just come Up: unless the
    /// canary is turned off, it takes a bounded share of calls until `until`.
    fn start_canary(&mut self, now: Instant, id: TrunkId) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        let duration = t.cfg.canary.duration;
        if duration.is_zero() {
            return;
        }
        let until = now + duration;
        t.canary_until = Some(until);
        t.canary_answered = 0;
        self.events.push_back(Event {
            trunk: id,
            at: now,
            kind: EventKind::CanaryStarted { until },
        });
        self.timers.push(Reverse(Timer {
            at: until,
            trunk: id.0,
            kind: TimerKind::CanaryEnd,
        }));
    }

    /// The canary ends: `up_after` answered calls in a row or its time run
    /// out (`passed`), or the trunk went Down again (`!passed`).
    fn end_canary(&mut self, now: Instant, id: TrunkId, passed: bool) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        if t.canary_until.take().is_none() {
            return;
        }
        t.canary_answered = 0;
        self.events.push_back(Event {
            trunk: id,
            at: now,
            kind: EventKind::CanaryEnded { passed },
        });
    }

    /// The canary that was to last until `until` has run its time, unless it
    /// already ended (the timer is then stale).
    fn canary_deadline(&mut self, now: Instant, id: TrunkId, until: Instant) {
        let current = self.trunks.get(id.index()).and_then(|t| t.canary_until);
        if current == Some(until) {
            self.end_canary(now, id, true);
        }
    }

    fn apply(&mut self, now: Instant, id: TrunkId, result: state::Result, reason: Reason) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        let from = t.state;
        if !result.success && !result.live && !from.usable() {
            // Probes fail too: the outage is one probes can see, so probes
            // may also be trusted to see its end.
            t.live_hold_until = None;
        }
        let to = state::next(
            from,
            &mut t.counters,
            result,
            t.cfg.down_after,
            t.cfg.up_after,
            now,
            t.hold_until.max(t.live_hold_until),
        );
        let in_canary = t.canary_until.is_some();
        if in_canary && result.live {
            t.canary_answered = if result.success {
                t.canary_answered.saturating_add(1)
            } else {
                0
            };
        }
        let passed = in_canary && t.canary_answered >= t.cfg.up_after.max(1);
        if to == from {
            if passed {
                self.end_canary(now, id, true);
            }
            return;
        }
        let mut canary_due = false;
        match to {
            State::Down if from.usable() => {
                // A Down soon after the last Up is a flap: hold it down longer each time.
                let flapped = t
                    .last_up
                    .is_some_and(|up| now.saturating_duration_since(up) <= t.cfg.flap.window);
                t.flaps = if flapped {
                    t.flaps.saturating_add(1)
                } else {
                    0
                };
                let hold = t.cfg.flap.hold_for(t.flaps);
                t.hold_until = (!hold.is_zero()).then(|| now + hold);
                // Calls failed in a way probes cannot show (503s, stalls,
                // INVITEs unanswered while OPTIONS are): answered probes alone
                // do not bring it back before `live_hold`, unless probes start
                // failing too.
                let unseen = matches!(
                    reason,
                    Reason::Live(
                        Outcome::FailureResponse(_) | Outcome::ProgressTimeout | Outcome::Timeout
                    )
                );
                let live_hold = t.cfg.flap.live_hold;
                t.live_hold_until = (unseen && !live_hold.is_zero()).then(|| now + live_hold);
                // Failed calls (or sends) took it Down: answered probes will
                // not prove it takes calls again, a canary will.
                t.down_on_live = matches!(reason, Reason::Live(_));
            }
            State::Up => {
                t.last_up = Some(now);
                t.hold_until = None;
                t.live_hold_until = None;
                canary_due = !from.usable() && std::mem::take(&mut t.down_on_live);
            }
            _ => {}
        }
        t.state = to;
        t.since = now;
        t.reason = reason;
        self.events.push_back(Event {
            trunk: id,
            at: now,
            kind: EventKind::State { from, to, reason },
        });
        if in_canary && !to.usable() {
            self.end_canary(now, id, false);
        } else if passed {
            self.end_canary(now, id, true);
        }
        if canary_due {
            self.start_canary(now, id);
        }
        if to == State::Suspect {
            // Confirm or clear the suspicion now rather than at the next interval.
            self.schedule_probe(id, now);
        }
    }
}

/// Iterator returned by [`Health::select`] and [`Health::select_for`].
#[derive(Clone, Debug)]
pub struct Selection<'a> {
    health: &'a Health,
    route: &'a [TrunkId],
    tried: &'a [TrunkId],
    emergency: bool,
    ticket: u64,
    pos: usize,
    pass: Pass,
    /// The first pass skipped a canary trunk: the second has work to do.
    deferred: bool,
}

/// The passes of a [`Selection`] over its route, in order. Every trunk
/// belongs to exactly one of them, so none comes twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Usable trunks in their priority order.
    Ready,
    /// Usable trunks in a canary whose turn it is not.
    Deferred,
    /// Emergency calls only: the trunks that are not usable.
    Fallback,
}

impl Selection<'_> {
    fn pass_of(&self, t: &Trunk) -> Pass {
        if !t.state.usable() {
            Pass::Fallback
        } else if t.canary_until.is_some() && !self.canary_turn(t.cfg.canary.one_in) {
            Pass::Deferred
        } else {
            Pass::Ready
        }
    }

    /// Whether this call goes to a canary trunk in its normal place.
    fn canary_turn(&self, one_in: u32) -> bool {
        !self.emergency && (one_in <= 1 || self.ticket.is_multiple_of(u64::from(one_in)))
    }
}

impl Iterator for Selection<'_> {
    type Item = TrunkId;

    fn next(&mut self) -> Option<TrunkId> {
        loop {
            let Some(&id) = self.route.get(self.pos) else {
                self.pass = match self.pass {
                    Pass::Ready if self.deferred => Pass::Deferred,
                    Pass::Ready | Pass::Deferred if self.emergency => Pass::Fallback,
                    _ => return None,
                };
                self.pos = 0;
                continue;
            };
            let seen = self
                .route
                .get(..self.pos)
                .is_some_and(|before| before.contains(&id));
            self.pos += 1;
            let Some(t) = self.health.trunks.get(id.index()) else {
                continue;
            };
            if seen || t.drained || self.tried.contains(&id) {
                continue;
            }
            let pass = self.pass_of(t);
            if pass == self.pass {
                return Some(id);
            }
            if pass == Pass::Deferred {
                self.deferred = true;
            }
        }
    }
}

fn build_probe(
    scratch: &mut String,
    local: &Local,
    target: &str,
    id: TrunkId,
    seq: u32,
    nonce: u32,
) -> Result<Bytes, Error> {
    let mut w = MessageWriter::request("OPTIONS", target.as_bytes())?;
    let mut value = |f: &mut dyn FnMut(&mut String)| {
        scratch.clear();
        f(scratch);
        scratch.as_bytes().to_vec()
    };
    let via = value(&mut |s| {
        let _ = write!(
            s,
            "{};branch=z9hG4bK-lh{}.{}.{:08x}",
            local.via, id.0, seq, nonce
        );
    });
    let from = value(&mut |s| {
        let _ = write!(s, "<{}>;tag=lh{:08x}", local.from_uri, nonce);
    });
    let to = value(&mut |s| {
        let _ = write!(s, "<{target}>");
    });
    let call_id = value(&mut |s| {
        let _ = write!(s, "lh{}.{}.{:08x}@lifeline", id.0, seq, nonce);
    });
    let cseq = value(&mut |s| {
        let _ = write!(s, "{} OPTIONS", seq.max(1));
    });
    w.header(HeaderName::Via, &via)?;
    w.header(HeaderName::MaxForwards, b"70")?;
    w.header(HeaderName::From, &from)?;
    w.header(HeaderName::To, &to)?;
    w.header(HeaderName::CallId, &call_id)?;
    w.header(HeaderName::CSeq, &cseq)?;
    Ok(w.finish())
}

/// `z9hG4bK-lh<trunk>.<seq>.<nonce hex>` -> (trunk, seq, nonce).
fn parse_branch(branch: &[u8]) -> Option<(u32, u32, u32)> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let text = std::str::from_utf8(rest).ok()?;
    let mut parts = text.split('.');
    let trunk = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nonce = u32::from_str_radix(parts.next()?, 16).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((trunk, seq, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_round_trip() {
        assert_eq!(
            parse_branch(b"z9hG4bK-lh3.17.0000abcd"),
            Some((3, 17, 0xabcd))
        );
        assert_eq!(parse_branch(b"z9hG4bK-lh3.17"), None);
        assert_eq!(parse_branch(b"z9hG4bK-lh3.17.1.2"), None);
        assert_eq!(parse_branch(b"z9hG4bKother"), None);
    }

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

    #[test]
    fn flap_hold_is_bounded() {
        let f = FlapDamping::default();
        assert_eq!(f.hold_for(0), Duration::ZERO);
        assert_eq!(f.hold_for(1), Duration::from_secs(1));
        assert_eq!(f.hold_for(3), Duration::from_secs(4));
        assert_eq!(f.hold_for(40), Duration::from_secs(30));
    }
}
