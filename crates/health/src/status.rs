//! What the checker tells about a trunk: its state and evidence, probe
//! round-trip times, what its calls take to ring, and counters.

use std::time::{Duration, Instant};

use crate::{Reason, State, TrunkId};

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
    /// In a canary until this instant (see
    /// [`CanaryConfig`](crate::CanaryConfig)), if it is.
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
    pub(crate) fn record(&mut self, rtt: Duration) {
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
