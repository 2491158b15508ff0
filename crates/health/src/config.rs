//! Per-trunk health settings.

use std::time::Duration;

/// How a trunk is probed and how evidence turns into state (DESIGN: `probe:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between OPTIONS probes (default 250 ms).
    pub interval: Duration,
    /// How long a probe may go unanswered before it counts as a failure
    /// (default 250 ms), independent of SIP Timer F.
    pub timeout: Duration,
    /// Consecutive failures that take a trunk Down (default 2).
    pub down_after: u32,
    /// Consecutive successes that bring a Down trunk back Up (default 3).
    pub up_after: u32,
    /// Which probe responses count as alive.
    pub alive: AliveCodes,
    /// Flap damping: a trunk that goes Down again within `window` of coming
    /// Up is held Down for `hold`, doubling with each further flap up to `max_hold`.
    pub flap: FlapDamping,
    /// Whether to send OPTIONS probes at all (live evidence still counts).
    pub enabled: bool,
    /// After a trunk taken Down by live evidence comes back by probes: how
    /// much traffic it gets before it is trusted again.
    pub canary: CanaryConfig,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(250),
            down_after: 2,
            up_after: 3,
            alive: AliveCodes::Any,
            flap: FlapDamping::default(),
            enabled: true,
            canary: CanaryConfig::default(),
        }
    }
}

/// Which OPTIONS responses prove a trunk alive.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AliveCodes {
    /// Any response at all (default): a trunk that answers 404 or 405 to
    /// OPTIONS is up and routing.
    #[default]
    Any,
    /// Only these codes (e.g. 200 and 405); others count as failures.
    Only(Vec<u16>),
    /// Any response except 5xx (and 408).
    NotServerError,
}

impl AliveCodes {
    /// Whether a probe answered with `code` counts as alive.
    pub fn is_alive(&self, code: u16) -> bool {
        match self {
            Self::Any => true,
            Self::Only(codes) => codes.contains(&code),
            Self::NotServerError => code != 408 && code < 500,
        }
    }
}

/// Bounded back-off for trunks that flap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlapDamping {
    /// A Down within this long of the last Up counts as a flap (default 30 s).
    pub window: Duration,
    /// Hold-down after the first flap (default 1 s); doubles per flap.
    pub hold: Duration,
    /// Upper bound of the hold-down (default 30 s).
    pub max_hold: Duration,
    /// A trunk taken Down by failed calls that probes cannot see (503s,
    /// stalls, INVITEs unanswered while OPTIONS are answered) is not brought
    /// back by answered probes alone before this long (default 5 s) — unless
    /// probes start failing too, which shows the outage is one probes can
    /// measure. Zero turns it off.
    pub live_hold: Duration,
}

impl Default for FlapDamping {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            hold: Duration::from_secs(1),
            max_hold: Duration::from_secs(30),
            live_hold: Duration::from_secs(5),
        }
    }
}

impl FlapDamping {
    /// Hold-down for the `flaps`-th consecutive flap (0: not a flap, no hold).
    pub fn hold_for(&self, flaps: u32) -> Duration {
        if flaps == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl(flaps.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.hold.saturating_mul(factor).min(self.max_hold)
    }
}

/// Canary after recovery: a trunk that went Down on live evidence (failed
/// calls, transport errors) and came back Up on probes alone has not shown
/// it can take calls. For `duration` (or until `up_after` of its calls in a
/// row are answered, whichever is first) it gets one new non-emergency call
/// in `one_in`, and emergency calls go to it only when no other usable
/// trunk is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanaryConfig {
    /// How long the canary lasts at most (default 10 s; zero turns it off).
    pub duration: Duration,
    /// One non-emergency call in this many goes to the trunk first (default 10).
    pub one_in: u32,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            one_in: 10,
        }
    }
}
