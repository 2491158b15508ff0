//! Counting the proxy's events, and the call map that labels a call's
//! outcome with the route it took (see the module docs above).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;
use std::time::Instant;

use lifeline_proxy::{CallFailure, CallRef, Event, TrunkId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::labels::{
    CallLabels, EmergencyLabels, FailoverLabels, Name, Names, Reason, RejectReasonLabels,
    RejectedLabels, RescueLabels, RuleLabels, SkipLabels, StateChangeLabels, Status, TrunkLabels,
};
use super::{Metrics, MAX_TRACKED_CALLS, STALE_AFTER};

/// What is known about a call between `CallStarted` and its final event.
#[derive(Clone, Debug)]
pub(super) struct CallMeta {
    route: Name,
    emergency: bool,
    started: Instant,
}

impl Metrics {
    /// Count one event from [`Proxy::poll_event`](lifeline_proxy::Proxy::poll_event).
    pub(crate) fn on_event(&self, ev: &Event, names: &Names) {
        match ev {
            Event::CallStarted { call, at, info } => {
                let emergency = info.emergency.is_some();
                self.totals.started.fetch_add(1, Ordering::Relaxed);
                if let Some(rule) = info.emergency {
                    self.totals.emergency.fetch_add(1, Ordering::Relaxed);
                    self.emergency_calls
                        .get_or_create(&RuleLabels {
                            rule: rule.as_str(),
                        })
                        .inc();
                }
                let meta = CallMeta {
                    route: names.route(&info.route),
                    emergency,
                    started: *at,
                };
                self.track(*call, meta);
            }
            Event::AttemptStarted { trunk, .. } => {
                count_trunk(&self.attempts, names, *trunk);
            }
            Event::AttemptFailed { trunk, reason, .. } => {
                self.failovers
                    .get_or_create(&FailoverLabels {
                        trunk: names.trunk(*trunk),
                        reason: Reason(*reason),
                    })
                    .inc();
            }
            Event::CallConnected { call, setup, .. } => {
                if let Some(meta) = self.finish(*call, "connected", &self.totals.connected) {
                    let emergency = if meta.emergency { "true" } else { "false" };
                    self.setup
                        .get_or_create(&EmergencyLabels { emergency })
                        .observe(setup.as_secs_f64());
                }
            }
            Event::CallFailed { call, reason, .. } => {
                let (outcome, total) = match reason {
                    CallFailure::AllTrunksFailed => ("failed", &self.totals.failed),
                    CallFailure::NoRoute => ("no_route", &self.totals.no_route),
                    CallFailure::Rejected => ("rejected", &self.totals.rejected),
                };
                let meta = self.finish(*call, outcome, total);
                // The callee's own refusal (486, 603) is an answer, not a
                // failure of the gateway: only the other two need a callback.
                if meta.is_some_and(|m| m.emergency) && *reason != CallFailure::Rejected {
                    self.emergency_failed.inc();
                    self.totals.emergency_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::CallCancelled { call, .. } => {
                self.finish(*call, "cancelled", &self.totals.cancelled);
            }
            Event::LateResponse { trunk, .. } => {
                count_trunk(&self.late_responses, names, *trunk);
            }
            Event::Trunk(t) => {
                let trunk = names.trunk(t.trunk);
                match t.kind {
                    lifeline_health::EventKind::State { to, .. } => {
                        self.state_changes
                            .get_or_create(&StateChangeLabels {
                                trunk: trunk.clone(),
                                to: to.as_str(),
                            })
                            .inc();
                        self.set_state(&trunk, to);
                    }
                    lifeline_health::EventKind::Drained => {
                        self.trunk_drained
                            .get_or_create(&TrunkLabels { trunk })
                            .set(1);
                    }
                    lifeline_health::EventKind::Undrained => {
                        self.trunk_drained
                            .get_or_create(&TrunkLabels { trunk })
                            .set(0);
                    }
                    lifeline_health::EventKind::CanaryStarted { .. } => {
                        self.canary.get_or_create(&TrunkLabels { trunk }).set(1);
                    }
                    lifeline_health::EventKind::CanaryEnded { .. } => {
                        self.canary.get_or_create(&TrunkLabels { trunk }).set(0);
                    }
                }
            }
            Event::Rescued { trunk, ringing, .. } => {
                self.rescued
                    .get_or_create(&RescueLabels {
                        trunk: names.trunk(*trunk),
                        ringing: if *ringing { "true" } else { "false" },
                    })
                    .inc();
            }
            Event::Hedged { trunk, .. } => {
                count_trunk(&self.hedged, names, *trunk);
            }
            Event::TrunkSkipped { trunk, reason, .. } => {
                self.trunk_skipped
                    .get_or_create(&SkipLabels {
                        trunk: names.trunk(*trunk),
                        reason: reason.as_str(),
                    })
                    .inc();
            }
            Event::DuplicateAnswer { trunk, .. } => {
                count_trunk(&self.duplicate_answers, names, *trunk);
            }
            Event::Rejected { status, reason, .. } => {
                self.rejected
                    .get_or_create(&RejectedLabels {
                        status: Status(*status),
                        reason,
                    })
                    .inc();
                self.rejected_by_reason
                    .get_or_create(&RejectReasonLabels { reason })
                    .inc();
                // The core's state caps are admission refusals too.
                if let Some(why) = lifeline_proxy::Refusal::ALL
                    .into_iter()
                    .find(|r| r.as_str() == *reason)
                {
                    self.admission_refused
                        .get_or_create(&super::labels::AdmissionLabels {
                            reason: why.as_str(),
                            action: if status.is_some() { "reject" } else { "drop" },
                        })
                        .inc();
                }
            }
        }
    }

    fn track(&self, call: CallRef, meta: CallMeta) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.len() >= MAX_TRACKED_CALLS && !live.contains_key(&call) {
            let now = meta.started;
            live.retain(|_, m| now.saturating_duration_since(m.started) < STALE_AFTER);
            if live.len() >= MAX_TRACKED_CALLS {
                self.untracked.inc();
                return;
            }
        }
        live.insert(call, meta);
    }

    /// The call's first final event: count its outcome and forget it.
    fn finish(&self, call: CallRef, outcome: &'static str, total: &AtomicU64) -> Option<CallMeta> {
        let meta = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&call)?;
        total.fetch_add(1, Ordering::Relaxed);
        self.calls
            .get_or_create(&CallLabels {
                route: meta.route.clone(),
                outcome,
            })
            .inc();
        Some(meta)
    }
}

/// One more on `family`'s series for `trunk`.
fn count_trunk(family: &Family<TrunkLabels, Counter>, names: &Names, trunk: TrunkId) {
    family
        .get_or_create(&TrunkLabels {
            trunk: names.trunk(trunk),
        })
        .inc();
}
