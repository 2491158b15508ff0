//! Trunk capacity (`max_calls`, `max_cps`) and the order a call tries a
//! route's trunks in when the route shares load by priority and weight.

use std::time::Instant;

use crate::config::TrunkConfig;
use crate::events::SkipReason;

/// A trunk's capacity limits and what it carries now.
#[derive(Clone, Copy, Debug)]
pub(super) struct TrunkLoad {
    max_calls: Option<u32>,
    pub(super) max_cps: Option<u32>,
    /// Attempts waiting for a final response plus answered calls not ended.
    pub(super) calls: u32,
    /// Token bucket for `max_cps`: tokens left (at most `max_cps`), as of
    /// `refilled`.
    pub(super) tokens: f64,
    refilled: Option<Instant>,
    /// What the trunk last asked for with RFC 7339 overload control.
    oc: Option<Oc>,
}

/// A trunk's overload-control request (RFC 7339, the loss algorithm): shed
/// `loss` percent of the non-emergency calls offered to it until `until`.
/// The share is paced, not drawn: each call offered adds `loss` to `acc`,
/// and a call that takes it to 100 or more is the one shed (100 taken
/// off), so exactly `loss` in every 100 calls go elsewhere, evenly spread.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Oc {
    loss: u32,
    until: Instant,
    /// `oc-seq` of the request in force: an older one is ignored (§5.2).
    seq: f64,
    acc: u32,
}

/// RFC 7339 §5.2: how long an `oc` request holds without `oc-validity`.
const OC_DEFAULT_VALIDITY: std::time::Duration = std::time::Duration::from_millis(500);

impl TrunkLoad {
    pub(super) fn new(t: &TrunkConfig) -> Self {
        Self {
            max_calls: t.max_calls,
            max_cps: t.max_cps,
            calls: 0,
            tokens: t.max_cps.map_or(0.0, f64::from),
            refilled: None,
            oc: None,
        }
    }

    /// Take the `oc` parameters of a response's top Via (our own, returned
    /// by the trunk) at `now`: `oc=N` asks for N % less traffic for
    /// `oc-validity` ms (default 500); `oc=0` or `oc-validity=0` ends the
    /// request. Only the loss algorithm is understood (the one offered).
    pub(super) fn overload_control(&mut self, now: Instant, via: &lifeline_sip::Via<'_>) {
        let number = |name: &str| {
            via.param(name)
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(|v| v.trim_matches('"').to_string())
        };
        let Some(loss) = number("oc").and_then(|v| v.parse::<u32>().ok()) else {
            return;
        };
        if number("oc-algo").is_some_and(|a| !a.eq_ignore_ascii_case("loss")) {
            return;
        }
        let seq = number("oc-seq")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if self.oc.is_some_and(|o| seq < o.seq) {
            return; // an older request, overtaken (reordered responses)
        }
        let validity = number("oc-validity")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(OC_DEFAULT_VALIDITY, std::time::Duration::from_millis);
        if loss == 0 || validity.is_zero() {
            self.oc = None;
            return;
        }
        let acc = self.oc.map_or(0, |o| o.acc);
        self.oc = Some(Oc {
            loss: loss.min(100),
            until: now + validity,
            seq,
            acc,
        });
    }

    /// Whether the next non-emergency call offered at `now` is one the
    /// trunk's overload control sheds.
    pub(super) fn sheds_next(&self, now: Instant) -> bool {
        self.oc
            .is_some_and(|o| now < o.until && o.acc + o.loss >= 100)
    }

    /// A non-emergency call was offered to the trunk at `now` (taken, or
    /// shed as [`sheds_next`](Self::sheds_next) said).
    pub(super) fn offered(&mut self, now: Instant) {
        if let Some(o) = self.oc.as_mut().filter(|o| now < o.until) {
            o.acc += o.loss;
            if o.acc >= 100 {
                o.acc -= 100;
            }
        }
    }

    pub(super) fn reconfigure(&mut self, t: &TrunkConfig) {
        if self.max_cps != t.max_cps {
            self.tokens = t.max_cps.map_or(0.0, f64::from);
            self.refilled = None;
        }
        self.max_calls = t.max_calls;
        self.max_cps = t.max_cps;
    }

    /// The bucket refilled to `now`.
    pub(super) fn refill(&mut self, now: Instant) {
        let Some(cps) = self.max_cps else {
            return;
        };
        let cap = f64::from(cps);
        if let Some(last) = self.refilled {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * cap).min(cap);
        }
        self.refilled = Some(now);
    }

    /// Which limit, if any, stops one more call now.
    pub(super) fn full(&self, now: Instant) -> Option<SkipReason> {
        if self.max_calls.is_some_and(|m| self.calls >= m) {
            return Some(SkipReason::MaxCalls);
        }
        let cps = self.max_cps?;
        let cap = f64::from(cps);
        let elapsed = self
            .refilled
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        let tokens = (self.tokens + elapsed * cap).min(cap);
        (tokens < 1.0).then_some(SkipReason::MaxCps)
    }
}

/// A route's trunks in the order one call tries them when the route shares
/// load: priority groups in ascending order; within a group, a weighted
/// draw without replacement (`draw(total)` gives a number below `total`),
/// so each trunk leads its group in proportion to its weight. Trunks of
/// weight 0 come last in their group, in list order.
pub(super) fn share_order<T: Copy>(
    trunks: &[T],
    shares: &[crate::config::TrunkShare],
    mut draw: impl FnMut(u64) -> u64,
) -> Box<[T]> {
    let mut entries: Vec<(u32, u32, T)> = trunks
        .iter()
        .zip(shares)
        .map(|(t, s)| (s.priority, s.weight, *t))
        .collect();
    // Stable: list order within a priority.
    entries.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(entries.len());
    let mut i = 0;
    while i < entries.len() {
        let prio = entries[i].0;
        let end = entries[i..]
            .iter()
            .position(|e| e.0 != prio)
            .map_or(entries.len(), |p| i + p);
        let mut group: Vec<(u32, T)> = entries[i..end].iter().map(|e| (e.1, e.2)).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|g| u64::from(g.0)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut r = draw(total);
                group
                    .iter()
                    .position(|g| {
                        let w = u64::from(g.0);
                        if r < w {
                            true
                        } else {
                            r -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(pick).1);
        }
        i = end;
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Peer, TrunkShare};

    fn share(priority: u32, weight: u32) -> TrunkShare {
        TrunkShare { priority, weight }
    }

    #[test]
    fn share_order_groups_by_priority_and_draws_by_weight() {
        let trunks = ["a", "b", "c", "d"];
        let shares = [share(2, 1), share(1, 3), share(1, 1), share(2, 0)];
        // Group 1 is b (3) and c (1): draws 0-2 pick b, 3 picks c.
        let mut draws = vec![0, 0, 0].into_iter();
        let order = share_order(&trunks, &shares, |_| draws.next().unwrap());
        assert_eq!(&*order, ["b", "c", "a", "d"]);
        let mut draws = vec![3, 0, 0].into_iter();
        let order = share_order(&trunks, &shares, |_| draws.next().unwrap());
        assert_eq!(
            &*order,
            ["c", "b", "a", "d"],
            "weight 0 comes last in its group"
        );
        // Every draw is asked for below the group's remaining weight.
        let mut asked = Vec::new();
        share_order(&trunks, &shares, |total| {
            asked.push(total);
            0
        });
        assert_eq!(asked, [4, 1, 1]);
    }

    #[test]
    fn token_bucket_refills_at_max_cps() {
        let mut t = TrunkConfig::new("t", Peer::udp("127.0.0.1:5060".parse().unwrap()));
        t.max_cps = Some(2);
        let mut l = TrunkLoad::new(&t);
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(l.full(now), None);
            l.refill(now);
            l.tokens -= 1.0;
        }
        assert_eq!(l.full(now), Some(SkipReason::MaxCps));
        let half = now + std::time::Duration::from_millis(499);
        assert_eq!(l.full(half), Some(SkipReason::MaxCps));
        let later = now + std::time::Duration::from_millis(500);
        assert_eq!(l.full(later), None, "one token after 1/max_cps");
        t.max_calls = Some(1);
        l.reconfigure(&t);
        l.calls = 1;
        assert_eq!(l.full(later), Some(SkipReason::MaxCalls));
    }
}
