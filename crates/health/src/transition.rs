//! What one piece of evidence does to a trunk: a step of its state machine
//! (see `state`), flap and live hold-downs, and the canary after recovery.

use std::cmp::Reverse;
use std::time::Instant;

use crate::{state, Event, EventKind, Health, Outcome, Reason, State, Timer, TimerKind, TrunkId};

impl Health {
    /// One piece of evidence about a trunk. A timeout while the gateway
    /// itself is overloaded proves nothing: it is counted, not applied.
    pub(crate) fn evidence(
        &mut self,
        now: Instant,
        id: TrunkId,
        result: state::Result,
        reason: Reason,
    ) {
        if reason.is_timeout() && self.overloaded {
            if let Some(t) = self.trunks.get_mut(id.index()) {
                t.stats.ignored_while_overloaded += 1;
            }
            return;
        }
        self.apply(now, id, result, reason);
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
    pub(crate) fn canary_deadline(&mut self, now: Instant, id: TrunkId, until: Instant) {
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
        if !result.success && !result.live && !result.weak && !from.usable() {
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
