//! The one place the engine reads the time.
//!
//! The pure crates take `now` as an argument; the engine is where `now`
//! comes from. It asks its [`Clock`] — [`SystemClock`] in production — so a
//! test can give it a [`ManualClock`] and move time itself: a failover
//! timer of 200 ms then fires when the test has advanced the clock 200 ms,
//! not after 200 ms of wall time, and the instants the proxy reports are
//! exact.
//!
//! What does not go through the clock: the timer thread's sleep (real
//! time; with a manual clock it wakes and finds nothing due, and timers
//! run when an input arrives — see [`ManualClock`]), the core's busy time
//! (measured with the same clock, so zero under a manual one), and TCP
//! idle timeouts (tokio's timer).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where the engine gets `now`.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant. Never goes backwards.
    fn now(&self) -> Instant;
}

/// The monotonic clock of the operating system: [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// [`SystemClock`], shared: what a gateway in production reads.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to.
///
/// The engine's timer thread still sleeps in real time; with this clock it
/// wakes, finds nothing due, and sleeps again. Timers that a jump made due
/// run before the next input the core handles, so after
/// [`ManualClock::advance`] a test hands the gateway one (for example
/// [`crate::Gateway::with_proxy`]) and, when that returns, everything due
/// at the new instant has run.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the current real instant.
    pub fn new() -> Self {
        Self {
            now: Mutex::new(Instant::now()),
        }
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
