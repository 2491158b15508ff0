//! Which trunks a call tries, in which order: usable trunks by priority,
//! canary trunks deferred, and for emergency calls every remaining trunk.

use crate::{Health, Trunk, TrunkId};

impl Health {
    /// Like [`select`](Self::select), for the `ticket`-th non-emergency call
    /// (the caller counts them): a trunk in its canary (see
    /// [`CanaryConfig`](crate::CanaryConfig)) keeps its place for a
    /// non-emergency call whose `ticket` is a multiple of `one_in` (every
    /// one if `one_in` is 0 or 1), and otherwise comes after the route's
    /// other usable trunks but before an emergency call's fallback to Down
    /// and Recovering ones. Emergency calls always defer it.
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
    /// yet tried; then those of them in a canary (see
    /// [`CanaryConfig`](crate::CanaryConfig)); then, for an emergency call
    /// only, the remaining non-drained trunks (Down, Recovering) in order —
    /// an emergency call is never refused without trying every trunk it may
    /// use. No trunk comes twice, even if the route names it twice.
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
