//! The per-trunk state machine and the rule that moves it.
//!
//! ```text
//!            failure                 failure x (down_after - 1)
//!   +----+ ----------> +---------+ ---------------------------> +------+
//!   | Up |             | Suspect |                              | Down | <-+
//!   +----+ <---------- +---------+                              +------+   |
//!     ^      success                                 success |      ^      | failure
//!     |                                                      v      |      |
//!     |   success x (up_after - 1), hold-down over    +------------+ |      |
//!     +-------------------------------------------- | Recovering | +------+
//!                                                     +------------+
//! ```
//!
//! The algorithm, in order (see [`next`]):
//! 1. Results are probe results or live results (calls). A success resets the
//!    failure count; a *live* success also resets the live-failure count; a
//!    failure resets the success count.
//! 2. Up or Suspect: `down_after` consecutive failures — or `down_after` live
//!    failures not cleared by an answered call — make the trunk Down; fewer
//!    make it Suspect (still used, probed at once). A probe answer does not
//!    clear a live failure: a trunk whose front end answers OPTIONS while its
//!    calls go nowhere is exactly the failure probes cannot see.
//! 3. Down or Recovering: `up_after` consecutive successes make it Up, but not
//!    before its flap hold-down has passed; fewer make it Recovering (not used).
//! 4. Any failure while Recovering sends it back Down.
//! 5. A weak failure (an uncorroborated transport error: anyone can forge an
//!    ICMP message) counts like any other, but never makes the trunk Down by
//!    itself: Up or Suspect go no further than Suspect, Recovering stays
//!    Recovering.
//!
//! Administrative drain is a separate flag, never a state: a drained trunk
//! keeps being probed and keeps its measured state.

use std::time::Instant;

/// Measured health of a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Answering; takes traffic.
    Up,
    /// One or more recent failures, fewer than `down_after`; still takes traffic.
    Suspect,
    /// Failed; takes no traffic (but emergency calls still try it when no
    /// usable trunk is left).
    Down,
    /// Answering again after Down, not yet trusted; takes no traffic.
    Recovering,
}

impl State {
    /// Whether a trunk in this state takes new calls.
    pub fn usable(self) -> bool {
        matches!(self, State::Up | State::Suspect)
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Suspect => "suspect",
            State::Down => "down",
            State::Recovering => "recovering",
        }
    }
}

/// Consecutive-result counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) failures: u32,
    pub(crate) live_failures: u32,
    pub(crate) successes: u32,
}

/// One piece of evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Result {
    pub(crate) success: bool,
    /// From a live call (or a send), as opposed to a probe.
    pub(crate) live: bool,
    /// A failure that may not take the trunk Down on its own (see rule 5).
    pub(crate) weak: bool,
}

/// Apply one result. Returns the new state. `hold_until`: the trunk may not
/// come Up before this instant.
pub(crate) fn next(
    state: State,
    c: &mut Counters,
    r: Result,
    down_after: u32,
    up_after: u32,
    now: Instant,
    hold_until: Option<Instant>,
) -> State {
    let (down_after, up_after) = (down_after.max(1), up_after.max(1));
    if r.success {
        c.failures = 0;
        if r.live {
            c.live_failures = 0;
        }
        c.successes = c.successes.saturating_add(1);
        match state {
            State::Up | State::Suspect if c.live_failures == 0 => State::Up,
            State::Up | State::Suspect => State::Suspect,
            State::Down | State::Recovering => {
                let held = hold_until.is_some_and(|h| now < h);
                if c.successes >= up_after && !held {
                    c.live_failures = 0;
                    State::Up
                } else {
                    State::Recovering
                }
            }
        }
    } else {
        c.successes = 0;
        c.failures = c.failures.saturating_add(1);
        if r.live {
            c.live_failures = c.live_failures.saturating_add(1);
        }
        match state {
            State::Up | State::Suspect
                if r.weak || (c.failures < down_after && c.live_failures < down_after) =>
            {
                State::Suspect
            }
            State::Recovering if r.weak => State::Recovering,
            State::Down | State::Up | State::Suspect | State::Recovering => State::Down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_OK: Result = Result {
        success: true,
        live: false,
        weak: false,
    };
    const PROBE_FAIL: Result = Result {
        success: false,
        live: false,
        weak: false,
    };
    const CALL_OK: Result = Result {
        success: true,
        live: true,
        weak: false,
    };
    const CALL_FAIL: Result = Result {
        success: false,
        live: true,
        weak: false,
    };
    const WEAK_FAIL: Result = Result {
        success: false,
        live: false,
        weak: true,
    };

    #[test]
    fn hysteresis() {
        let now = Instant::now();
        let mut c = Counters::default();
        let mut s = State::Up;
        s = next(s, &mut c, PROBE_FAIL, 2, 3, now, None);
        assert_eq!(s, State::Suspect);
        s = next(s, &mut c, PROBE_OK, 2, 3, now, None);
        assert_eq!(s, State::Up, "a success clears suspicion");
        s = next(s, &mut c, PROBE_FAIL, 2, 3, now, None);
        s = next(s, &mut c, PROBE_FAIL, 2, 3, now, None);
        assert_eq!(s, State::Down);
        s = next(s, &mut c, PROBE_OK, 2, 3, now, None);
        s = next(s, &mut c, PROBE_OK, 2, 3, now, None);
        assert_eq!(s, State::Recovering);
        s = next(s, &mut c, PROBE_FAIL, 2, 3, now, None);
        assert_eq!(s, State::Down, "one failure while recovering is enough");
        let hold = Some(now + std::time::Duration::from_secs(1));
        for _ in 0..3 {
            s = next(s, &mut c, PROBE_OK, 2, 3, now, hold);
        }
        assert_eq!(s, State::Recovering, "held down");
        s = next(
            s,
            &mut c,
            PROBE_OK,
            2,
            3,
            now + std::time::Duration::from_secs(1),
            hold,
        );
        assert_eq!(s, State::Up);
    }

    #[test]
    fn probe_answers_do_not_clear_failed_calls() {
        let now = Instant::now();
        let mut c = Counters::default();
        let mut s = next(State::Up, &mut c, CALL_FAIL, 2, 3, now, None);
        assert_eq!(s, State::Suspect);
        s = next(s, &mut c, PROBE_OK, 2, 3, now, None);
        assert_eq!(s, State::Suspect, "OPTIONS answered, calls still failing");
        s = next(s, &mut c, CALL_FAIL, 2, 3, now, None);
        assert_eq!(s, State::Down);
        // An answered call does clear them.
        let mut c = Counters::default();
        let s = next(State::Up, &mut c, CALL_FAIL, 2, 3, now, None);
        let s = next(s, &mut c, CALL_OK, 2, 3, now, None);
        assert_eq!(s, State::Up);
        assert_eq!(next(s, &mut c, CALL_FAIL, 2, 3, now, None), State::Suspect);
    }

    #[test]
    fn a_weak_failure_never_takes_a_trunk_down_by_itself() {
        let now = Instant::now();
        let mut c = Counters::default();
        let s = next(State::Up, &mut c, WEAK_FAIL, 1, 3, now, None);
        assert_eq!(s, State::Suspect, "even with down_after 1");
        let s = next(s, &mut c, WEAK_FAIL, 1, 3, now, None);
        assert_eq!(s, State::Suspect);
        assert_eq!(
            next(s, &mut c, PROBE_FAIL, 1, 3, now, None),
            State::Down,
            "a failure that is not weak does"
        );
        let mut c = Counters::default();
        let s = next(State::Recovering, &mut c, WEAK_FAIL, 2, 3, now, None);
        assert_eq!(s, State::Recovering);
        assert_eq!(c.successes, 0, "it still counts as a failure");
        let mut c = Counters::default();
        let s = next(State::Up, &mut c, WEAK_FAIL, 2, 3, now, None);
        assert_eq!(next(s, &mut c, PROBE_OK, 2, 3, now, None), State::Up);
    }

    #[test]
    fn single_thresholds() {
        let now = Instant::now();
        let mut c = Counters::default();
        assert_eq!(
            next(State::Up, &mut c, PROBE_FAIL, 1, 1, now, None),
            State::Down
        );
        assert_eq!(
            next(State::Down, &mut c, PROBE_OK, 1, 1, now, None),
            State::Up
        );
        assert_eq!(
            next(State::Up, &mut c, PROBE_FAIL, 0, 0, now, None),
            State::Down,
            "0 means 1"
        );
    }
}
