//! Calls: attempts, serial failover, rescue off dead trunks, hedging and
//! capacity limits, the call's end.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lifeline_health::{Outcome, Reason, State, TrunkId};
use lifeline_sip::{HeaderName, Message, Uri};
use smallvec::SmallVec;

use super::load::share_order;
use super::requests::{call_info, forward_edit};
use super::text::Text;
use super::{
    method_key, Attempt, AttemptState, Call, CallState, ClientEntry, Dialog, Proxy, Target,
    LOOP_PREFIX, REASON_TRANSPORT_ERROR, REASON_TRUNK_DOWN,
};
use crate::classify::EmergencyRule;
use crate::config::{Peer, Transport};
use crate::events::{AttemptFailure, CallFailure, Event, SkipReason};
use crate::transaction::{build_cancel, ClientState, ClientTxn, Kind};

impl Proxy {
    /// Rescue the calls of every trunk that went Down since the last look
    /// (probes, or evidence from other calls): called after every input.
    pub(super) fn check_trunks(&mut self, now: Instant) {
        let mut down = Vec::new();
        for t in self.health.trunks() {
            if let Some(seen) = self.seen.get_mut(t.id.index()) {
                let was = std::mem::replace(seen, t.state);
                if t.state == State::Down && was != State::Down {
                    down.push(t.id);
                }
            }
        }
        for id in down {
            self.rescue(now, id);
        }
    }

    /// Move the calls waiting on `trunk`, which has just gone Down, to the
    /// next trunk, at once:
    ///
    /// 1. Attempts with no provisional or only 100 Trying, of every call:
    ///    the caller has heard nothing from that trunk, so this is plain
    ///    failover, only sooner than the attempt's own timers.
    /// 2. Ringing attempts (18x heard) of the calls the route rescues
    ///    (`rescue_ringing`: emergency calls by default): RFC 3261 serial
    ///    forking would leave them ringing until Timer C on a trunk that
    ///    will never answer. They are CANCELled (best effort, with a
    ///    Reason), and the call goes on on the next trunk; should the old
    ///    trunk still answer, its 2xx goes to the caller only if no other
    ///    has (see [`answered`](Self::answered)).
    ///
    /// A call with nowhere else to go (see [`can_move`](Self::can_move))
    /// keeps its attempt and that attempt's own timers: a verdict of Down
    /// alone never fails a call. When transport errors took the trunk Down
    /// (evidence anyone can forge), a call moves only to a usable trunk,
    /// never from this one to another that is Down as well. In-dialog
    /// requests have nowhere else to go.
    pub(super) fn rescue(&mut self, now: Instant, trunk: TrunkId) {
        let forgeable = self
            .health
            .trunk(trunk)
            .is_some_and(|t| matches!(t.reason, Reason::Live(Outcome::TransportError(_))));
        let mut hit = Vec::new();
        for (ck, call) in &self.calls {
            let Target::Route(r) = &call.target else {
                continue;
            };
            if call.state != CallState::Routing {
                continue; // answered, cancelled or finished: nothing to move
            }
            let covers = r.cfg.rescue_ringing.covers(call.emergency.is_some());
            for (ai, a) in call.attempts.iter().enumerate() {
                if a.trunk != Some(trunk) {
                    continue;
                }
                match a.state {
                    AttemptState::Pending | AttemptState::Trying => hit.push((ck, ai)),
                    AttemptState::Ringing if covers => hit.push((ck, ai)),
                    _ => {}
                }
            }
        }
        for (ck, ai) in hit {
            let Some(a) = self.calls.get(ck).and_then(|c| c.attempts.get(ai)) else {
                continue;
            };
            let ringing = a.state == AttemptState::Ringing;
            let live = matches!(
                a.state,
                AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
            );
            if live && self.can_move(now, ck, ai, !forgeable) {
                self.rescue_attempt(now, ck, ai, AttemptFailure::TrunkDown, ringing);
            }
        }
    }

    /// A transport error answered a message of attempt `ai` (see
    /// [`Proxy::handle_transport_error`]): the attempt moves to the next
    /// trunk if it has heard no provisional beyond 100 Trying and the call
    /// has a usable trunk (or another live attempt) to go to; otherwise it
    /// keeps its own timers, which move it on if the trunk really is gone.
    /// An in-dialog request, or a call already answered or cancelled, is
    /// left to its timers too.
    pub(super) fn move_hit_attempt(&mut self, now: Instant, ck: usize, ai: usize) {
        let Some(call) = self.calls.get(ck) else {
            return;
        };
        let routed = matches!(call.target, Target::Route(_));
        let waiting = call
            .attempts
            .get(ai)
            .is_some_and(|a| matches!(a.state, AttemptState::Pending | AttemptState::Trying));
        if routed
            && waiting
            && call.state == CallState::Routing
            && self.can_move(now, ck, ai, false)
        {
            self.abandon_attempt(now, ck, ai, AttemptFailure::TransportError);
        }
    }

    /// Whether giving up attempt `ai` leaves call `ck` somewhere to go:
    /// another live attempt (a hedge), or a trunk still to try (see
    /// [`next_trunk`](Self::next_trunk)) — usable (Up or Suspect, full or
    /// not), or, with `to_down`, for an emergency call, a Down one too.
    pub(super) fn can_move(&self, now: Instant, ck: usize, ai: usize, to_down: bool) -> bool {
        let Some(call) = self.calls.get(ck) else {
            return false;
        };
        let other_live = call.attempts.iter().enumerate().any(|(i, a)| {
            i != ai
                && matches!(
                    a.state,
                    AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
                )
        });
        other_live
            || self
                .next_trunk(now, ck)
                .0
                .is_some_and(|t| to_down || self.health.trunk(t).is_some_and(|s| s.ready()))
    }

    /// Give up one attempt on a dead trunk (see [`rescue`](Self::rescue)).
    fn rescue_attempt(
        &mut self,
        now: Instant,
        ck: usize,
        ai: usize,
        why: AttemptFailure,
        ringing: bool,
    ) {
        let call = &mut self.calls[ck];
        let (id, tracked) = (call.id, call.tracked);
        let a = &mut call.attempts[ai];
        a.state = AttemptState::Abandoned;
        a.stop_timers();
        let trunk = a.trunk;
        if let Some(c) = a.client {
            if let Some(e) = self.clients.get_mut(c) {
                e.txn.mute();
            }
        }
        if let (true, Some(trunk)) = (tracked, trunk) {
            self.events.push_back(Event::Rescued {
                call: id,
                at: now,
                trunk,
                ringing,
            });
        }
        self.cancel_attempt(now, ck, ai, Bytes::from_static(REASON_TRUNK_DOWN));
        self.release(ck, ai);
        self.report_failure(now, ck, ai, why);
        self.next_attempt(now, ck);
    }

    pub(super) fn start_call(
        &mut self,
        now: Instant,
        sk: usize,
        m: &Message,
        emergency: Option<EmergencyRule>,
        target: Target,
        ends_dialog: bool,
    ) {
        let kind = self.servers[sk].txn.kind;
        let tracked = kind == Kind::Invite && matches!(target, Target::Route(_));
        let id = self.new_call_ref();
        let to_tag = self.new_tag();
        let ticket = if emergency.is_none() && tracked {
            self.tickets += 1;
            self.tickets - 1
        } else {
            0
        };
        let order = match &target {
            Target::Route(r) if !r.cfg.shares.is_empty() => {
                let rng = &mut self.rng;
                Some(share_order(&r.trunks, &r.cfg.shares, |total| {
                    rng.next_u64() % total
                }))
            }
            _ => None,
        };
        let ck = self.calls.insert(Call {
            id,
            server: Some(sk),
            kind,
            tracked,
            emergency,
            target,
            tried: SmallVec::new(),
            order,
            ticket,
            attempts: SmallVec::new(),
            winner: None,
            state: CallState::Routing,
            started: now,
            to_tag,
            answered_to: None,
            ends_dialog,
            clients_live: 0,
            loop_hash: self.loop_hash(m),
            armed: None,
        });
        self.servers[sk].call = Some(ck);
        if tracked {
            let route = match &self.calls[ck].target {
                Target::Route(r) => r.cfg.name.clone(),
                Target::Fixed { .. } => String::new(),
            };
            let info = call_info(m, emergency, &route, self.servers[sk].txn.peer);
            self.events.push_back(Event::CallStarted {
                call: id,
                at: now,
                info: Arc::new(info),
            });
        }
        self.next_attempt(now, ck);
    }

    /// Try the next trunk, or finish the call if none is left — unless
    /// another attempt of the call (a hedge) is still alive: the call waits
    /// for it.
    fn next_attempt(&mut self, now: Instant, ck: usize) {
        if self.calls[ck].state != CallState::Routing || self.live_attempts(ck) > 0 {
            return;
        }
        let next = match &self.calls[ck].target {
            &Target::Fixed { peer, trunk, .. } => {
                if self.calls[ck].attempts.is_empty() {
                    Some((peer, trunk))
                } else {
                    None
                }
            }
            Target::Route(_) => self
                .choose_trunk(now, ck)
                .map(|t| (self.trunk_peers[t.index()], Some(t))),
        };
        match next {
            Some((peer, trunk)) => self.start_attempt(now, ck, peer, trunk),
            None => self.finish_failed(now, ck),
        }
    }

    /// The trunk a routed call tries next (see [`next_trunk`](Self::next_trunk)),
    /// with a `TrunkSkipped` event for each full trunk passed over.
    fn choose_trunk(&mut self, now: Instant, ck: usize) -> Option<TrunkId> {
        let (chosen, skipped) = self.next_trunk(now, ck);
        let call = &self.calls[ck];
        let (id, tracked) = (call.id, call.tracked);
        if call.emergency.is_none() {
            // Overload control paces by the calls offered: each trunk shed
            // for it, and the one chosen.
            let offered = skipped
                .iter()
                .filter(|(_, r)| *r == SkipReason::Overload)
                .map(|(t, _)| *t)
                .chain(chosen);
            for t in offered.collect::<Vec<_>>() {
                if let Some(l) = self.load.get_mut(t.index()) {
                    l.offered(now);
                }
            }
        }
        for (t, reason) in skipped {
            if Some(t) != chosen && tracked {
                self.events.push_back(Event::TrunkSkipped {
                    call: id,
                    at: now,
                    trunk: t,
                    reason,
                });
            }
        }
        chosen
    }

    /// The trunk a routed call would try next: health's order (usable
    /// trunks in priority order, a trunk in its canary later; for emergency
    /// calls the rest after them), passing over trunks at `max_calls` or
    /// `max_cps` (returned with the limit). An emergency call still takes a
    /// full trunk that is usable before a Down one, and a Down one before no
    /// trunk at all.
    fn next_trunk(&self, now: Instant, ck: usize) -> (Option<TrunkId>, Vec<(TrunkId, SkipReason)>) {
        let mut skipped = Vec::new();
        let Some(call) = self.calls.get(ck) else {
            return (None, skipped);
        };
        let Target::Route(r) = &call.target else {
            return (None, skipped);
        };
        let order = call.order.as_deref().unwrap_or(&r.trunks);
        let emergency = call.emergency.is_some();
        let mut chosen = None;
        let mut full_usable = None;
        for t in self
            .health
            .select_for(order, &call.tried, emergency, call.ticket)
        {
            let usable = self.health.trunk(t).is_some_and(|s| s.ready());
            let load = self.load.get(t.index());
            let full = load.and_then(|l| l.full(now)).or_else(|| {
                // RFC 7339: the trunk's own request for less traffic sheds
                // non-emergency calls only.
                (!emergency && load.is_some_and(|l| l.sheds_next(now)))
                    .then_some(SkipReason::Overload)
            });
            match full {
                None => {
                    chosen = Some(t);
                    break;
                }
                Some(reason) => {
                    skipped.push((t, reason));
                    if usable && full_usable.is_none() {
                        full_usable = Some(t);
                    }
                }
            }
        }
        // Never shed an emergency call over a capacity limit: a full trunk
        // that works beats a Down one.
        if emergency {
            let down_first = chosen.is_some_and(|c| {
                full_usable.is_some() && !self.health.trunk(c).is_some_and(|s| s.ready())
            });
            if chosen.is_none() || down_first {
                chosen = full_usable.or(chosen);
            }
        }
        (chosen, skipped)
    }

    /// Hedging (`hedge_after`): attempt `ai` of an emergency call has not
    /// rung in time; start the next trunk beside it. The first 2xx wins.
    pub(super) fn hedge(&mut self, now: Instant, ck: usize, ai: usize) {
        let call = &self.calls[ck];
        let waiting = call
            .attempts
            .get(ai)
            .is_some_and(|a| matches!(a.state, AttemptState::Pending | AttemptState::Trying));
        if call.state != CallState::Routing || !waiting || self.live_attempts(ck) >= 2 {
            return;
        }
        let Some(t) = self.choose_trunk(now, ck) else {
            return;
        };
        let call = &self.calls[ck];
        if call.tracked {
            self.events.push_back(Event::Hedged {
                call: call.id,
                at: now,
                trunk: t,
            });
        }
        let peer = self.trunk_peers[t.index()];
        self.start_attempt(now, ck, peer, Some(t));
    }

    /// The attempt no longer counts against its trunk's `max_calls`.
    pub(super) fn release(&mut self, ck: usize, ai: usize) {
        let Some(a) = self.calls.get_mut(ck).and_then(|c| c.attempts.get_mut(ai)) else {
            return;
        };
        if std::mem::take(&mut a.counted) {
            if let Some(l) = a.trunk.and_then(|t| self.load.get_mut(t.index())) {
                l.calls = l.calls.saturating_sub(1);
            }
        }
    }

    /// Remove a dialog, releasing its place in its trunk's `max_calls`.
    pub(super) fn remove_dialog(&mut self, dk: usize) {
        if !self.dialogs.contains(dk) {
            return;
        }
        let d = self.dialogs.remove(dk);
        if d.counted {
            if let Some(l) = d.trunk_id.and_then(|t| self.load.get_mut(t.index())) {
                l.calls = l.calls.saturating_sub(1);
            }
        }
    }

    fn start_attempt(&mut self, now: Instant, ck: usize, peer: Peer, trunk: Option<TrunkId>) {
        let Some(sk) = self.calls[ck].server else {
            return;
        };
        let Some(m) = self.servers[sk].txn.request().cloned() else {
            return; // answered already: no more attempts
        };
        let kind = self.calls[ck].kind;
        let target = self.calls[ck].target.clone();
        // 128 random bits: a response is matched by branch, so the branch
        // must not be guessable from any other one seen.
        let nonce = self.rng.token();
        let loop_hash = self.calls[ck].loop_hash;
        let mut branch = Text::new();
        branch
            .push(LOOP_PREFIX)
            .hex64(loop_hash)
            .push(".")
            .hex128(nonce)
            .hex(self.calls[ck].attempts.len());
        // RFC 7339 §5.1: offer overload control (the loss algorithm) to
        // the trunk, which may then ask for less traffic in its responses.
        let via = |t: Transport, advertise: &str| {
            let mut via = Text::new();
            via.push("SIP/2.0/")
                .push(t.via_token())
                .push(" ")
                .push(advertise)
                .push(";branch=")
                .push(branch.as_bytes())
                .push(";oc;oc-algo=\"loss\"");
            via
        };

        // A dialog-creating INVITE gets our Record-Route with a token that
        // names this attempt's dialog (caller flow, trunk).
        let mut dialog = None;
        let mut record_route = None;
        if let Target::Route(_) = target {
            if kind == Kind::Invite {
                let dnonce = self.rng.token();
                let caller = self.servers[sk].txn.peer;
                let dk = self.dialogs.insert(Dialog {
                    caller,
                    trunk: peer,
                    trunk_id: trunk,
                    nonce: dnonce,
                    confirmed: false,
                    counted: false,
                    acked: false,
                    expires: now + self.cfg.timers.t1x64() + self.cfg.timers.timer_c,
                    armed: None,
                });
                self.arm_dialog(dk);
                dialog = Some((dk, dnonce));
                let mut rr = Text::new();
                rr.push("<sip:")
                    .push(&self.advertise)
                    .push(";lr;ll=")
                    .dec(dk)
                    .push(".")
                    .hex128(dnonce)
                    .push(">");
                record_route = Some(rr);
            }
        }

        let top_is_us = m
            .routes()
            .next()
            .and_then(|r| r.ok())
            .is_some_and(|r| matches!(r.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port)));
        let rr = record_route.as_ref().map(Text::as_bytes);
        let mut e = forward_edit(
            &m,
            top_is_us,
            via(peer.transport, &self.advertise).as_bytes(),
            rr,
            peer.transport.reliable(),
        );
        // RFC 3261 §18.1.1: too large for UDP, and the trunk takes TCP: the
        // request goes over TCP and its Via says so. The dialog keeps the
        // configured peer: each later request is sized on its own.
        let configured = peer;
        let peer = match &e {
            Some(ed) => self.wire_peer(peer, trunk, ed.len()),
            None => peer,
        };
        if peer != configured {
            e = forward_edit(
                &m,
                top_is_us,
                via(peer.transport, &self.advertise).as_bytes(),
                rr,
                true,
            );
        }
        let out = match e.map(|e| Message::parse(e.to_bytes())) {
            Some(Ok(out)) => out,
            _ => {
                if let Some(d) = dialog {
                    self.drop_dialog(d);
                }
                self.respond(now, sk, 500, "Server Internal Error", None, &[]);
                self.calls[ck].state = CallState::Finished;
                self.maybe_finish_call(ck);
                return;
            }
        };
        let payload = out.as_bytes().clone();
        let branch = branch.to_bytes();
        let method_key = method_key(m.method_bytes().unwrap_or_default());
        let ai = self.calls[ck].attempts.len();
        let txn = ClientTxn::new(now, kind, out, peer, branch.clone(), self.cfg.timers);
        let serial = self.next_serial();
        let client = self.clients.insert(ClientEntry {
            txn,
            key: (branch.clone(), method_key.clone()),
            call: ck,
            attempt: ai,
            is_cancel: false,
            serial,
            armed: None,
        });
        self.client_index.insert((branch, method_key), client);
        self.calls[ck].clients_live += 1;
        let emergency = self.calls[ck].emergency.is_some();
        let (failover_at, hedge_at) = match &target {
            Target::Route(r) => (
                Some(now + r.cfg.failover_after),
                r.cfg
                    .hedge_after
                    .filter(|_| emergency && kind == Kind::Invite)
                    .map(|h| now + h),
            ),
            Target::Fixed { .. } => (None, None),
        };
        // Routed calls count against the trunk's limits.
        let counted = matches!(target, Target::Route(_));
        if let (true, Some(l)) = (counted, trunk.and_then(|t| self.load.get_mut(t.index()))) {
            l.calls = l.calls.saturating_add(1);
            l.refill(now);
            if l.max_cps.is_some() {
                l.tokens -= 1.0;
            }
        }
        let call = &mut self.calls[ck];
        call.attempts.push(Attempt {
            trunk,
            peer,
            client: Some(client),
            started: now,
            state: AttemptState::Pending,
            failover_at,
            progress_at: None,
            timer_c: None,
            hedge_at,
            trying_at: None,
            progress_recorded: false,
            counted: counted && trunk.is_some(),
            ended: false,
            cancel_wanted: None,
            cancel_sent: false,
            dialog,
        });
        if let Some(t) = trunk {
            call.tried.push(t);
            if call.tracked {
                let attempt = call.attempts.len() as u32;
                self.events.push_back(Event::AttemptStarted {
                    call: call.id,
                    at: now,
                    trunk: t,
                    attempt,
                });
            }
        }
        self.send_client(client, peer, payload, trunk);
        self.arm_client(client);
        self.arm_call(ck);
    }

    /// Give up an attempt that stays alive in the background (failover).
    pub(super) fn abandon_attempt(
        &mut self,
        now: Instant,
        ck: usize,
        ai: usize,
        why: AttemptFailure,
    ) {
        let a = &mut self.calls[ck].attempts[ai];
        if !matches!(a.state, AttemptState::Pending | AttemptState::Trying) {
            return;
        }
        a.state = AttemptState::Abandoned;
        a.failover_at = None;
        a.progress_at = None;
        a.hedge_at = None;
        if let Some(c) = a.client {
            if let Some(e) = self.clients.get_mut(c) {
                e.txn.mute();
            }
        }
        self.release(ck, ai);
        let reason = match why {
            AttemptFailure::NoProgress => {
                Bytes::from_static(b"SIP;cause=408;text=\"no progress, trying another trunk\"")
            }
            AttemptFailure::TransportError => Bytes::from_static(REASON_TRANSPORT_ERROR),
            _ => Bytes::from_static(b"SIP;cause=408;text=\"no response, trying another trunk\""),
        };
        self.cancel_attempt(now, ck, ai, reason);
        self.report_failure(now, ck, ai, why);
        self.next_attempt(now, ck);
    }

    /// An attempt failed for good (final response, transport error, timeout).
    pub(super) fn fail_attempt(
        &mut self,
        now: Instant,
        ck: usize,
        ai: usize,
        why: AttemptFailure,
        resp: Option<&Message>,
    ) {
        let Some(a) = self.calls.get_mut(ck).and_then(|c| c.attempts.get_mut(ai)) else {
            return;
        };
        let was_abandoned = a.state == AttemptState::Abandoned;
        if matches!(a.state, AttemptState::Done | AttemptState::Answered) {
            return;
        }
        a.state = AttemptState::Done;
        a.stop_timers();
        if let Some(d) = a.dialog.take() {
            self.drop_dialog(d);
        }
        self.release(ck, ai);
        if !was_abandoned {
            // (An abandoned attempt was reported, and replaced, already.)
            self.report_failure(now, ck, ai, why);
        }
        match self.calls[ck].state {
            CallState::Routing if was_abandoned => self.next_attempt(now, ck),
            CallState::Routing => {
                if let (Target::Fixed { .. }, Some(r)) = (&self.calls[ck].target, resp) {
                    // No alternative for an in-dialog request: relay the answer.
                    self.relay(now, ck, r);
                    self.calls[ck].state = CallState::Finished;
                } else {
                    self.next_attempt(now, ck);
                }
            }
            CallState::Cancelled => {
                if let Some(sk) = self.unanswered_server(ck) {
                    if self.live_attempts(ck) == 0 {
                        self.respond(now, sk, 487, "Request Terminated", Some(ck), &[]);
                    }
                }
            }
            CallState::Connected | CallState::Finished => {}
        }
        self.maybe_finish_call(ck);
    }

    pub(super) fn live_attempts(&self, ck: usize) -> usize {
        self.calls[ck]
            .attempts
            .iter()
            .filter(|a| {
                matches!(
                    a.state,
                    AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
                )
            })
            .count()
    }

    /// A trunk answered a call. Only calls routed to trunks are evidence: an
    /// in-dialog request (a BYE for a call set up before) says the trunk is
    /// alive, not that it takes new calls.
    pub(super) fn report_answered(&mut self, now: Instant, ck: usize, trunk: TrunkId) {
        if matches!(self.calls[ck].target, Target::Route(_)) {
            self.health.report(now, trunk, Outcome::Answered);
        }
    }

    pub(super) fn report_failure(
        &mut self,
        now: Instant,
        ck: usize,
        ai: usize,
        why: AttemptFailure,
    ) {
        let call = &self.calls[ck];
        let a = &call.attempts[ai];
        let Some(trunk) = a.trunk else {
            return;
        };
        // Transport errors were reported by handle_transport_error itself; a
        // trunk already Down needs no more evidence; a hedge that lost says
        // nothing about its trunk; in-dialog requests are not evidence (see
        // report_answered).
        let outcome = match why {
            AttemptFailure::NoResponse | AttemptFailure::TransactionTimeout => {
                Some(Outcome::Timeout)
            }
            AttemptFailure::NoProgress => Some(Outcome::ProgressTimeout),
            AttemptFailure::Response(c) => Some(Outcome::FailureResponse(c)),
            AttemptFailure::TransportError
            | AttemptFailure::TrunkDown
            | AttemptFailure::Superseded => None,
        };
        if let (Some(outcome), Target::Route(_)) = (outcome, &call.target) {
            self.health.report(now, trunk, outcome);
        }
        if call.tracked {
            let ev = Event::AttemptFailed {
                call: call.id,
                at: now,
                trunk,
                reason: why,
                elapsed: now - a.started,
            };
            self.events.push_back(ev);
        }
    }

    /// The call's server transaction, if it is still waiting for a final response.
    pub(super) fn unanswered_server(&self, ck: usize) -> Option<usize> {
        let sk = self.calls.get(ck)?.server?;
        self.servers
            .get(sk)
            .is_some_and(|s| !s.txn.has_final())
            .then_some(sk)
    }

    fn finish_failed(&mut self, now: Instant, ck: usize) {
        self.calls[ck].state = CallState::Finished;
        if let Some(sk) = self.unanswered_server(ck) {
            let af = self.cfg.all_failed.clone();
            let retry = af.retry_after.map(|r| r.to_string());
            let extra: Vec<(HeaderName, &[u8])> = retry
                .iter()
                .map(|r| (HeaderName::RetryAfter, r.as_bytes()))
                .collect();
            let status = match self.calls[ck].target {
                Target::Route(_) => af.status,
                Target::Fixed { .. } => 408,
            };
            let phrase = if status == af.status {
                af.reason.as_str()
            } else {
                "Request Timeout"
            };
            self.respond(now, sk, status, phrase, Some(ck), &extra);
            let call = &self.calls[ck];
            if call.tracked {
                self.events.push_back(Event::CallFailed {
                    call: call.id,
                    at: now,
                    status,
                    reason: CallFailure::AllTrunksFailed,
                });
            }
        }
        self.maybe_finish_call(ck);
    }

    /// Send a CANCEL for an attempt now if it has had a provisional, else as
    /// soon as one arrives.
    pub(super) fn cancel_attempt(&mut self, now: Instant, ck: usize, ai: usize, reason: Bytes) {
        if self.calls[ck].kind != Kind::Invite {
            return;
        }
        let a = &self.calls[ck].attempts[ai];
        if a.cancel_sent {
            return;
        }
        let Some(client) = a.client.filter(|c| self.clients.contains(*c)) else {
            return;
        };
        let txn_state = self.clients[client].txn.state;
        if !matches!(txn_state, ClientState::Calling | ClientState::Proceeding) {
            return; // already final: nothing to cancel
        }
        let a = &mut self.calls[ck].attempts[ai];
        if txn_state == ClientState::Calling {
            // RFC 3261 §9.1: no CANCEL before a provisional response.
            a.cancel_wanted = Some(reason);
            return;
        }
        a.cancel_sent = true;
        a.cancel_wanted = None;
        a.timer_c = None;
        let (peer, trunk) = (a.peer, a.trunk);
        let Some(invite) = self.clients[client].txn.request().cloned() else {
            return;
        };
        let Some(bytes) = build_cancel(&invite, Some(&reason)) else {
            return;
        };
        let Ok(cancel) = Message::parse(bytes) else {
            return;
        };
        // §9.1: if the INVITE gets no final response within 64*T1 of the
        // CANCEL, it is given up.
        self.clients[client].txn.on_cancel_sent(now);
        self.arm_client(client);
        let branch = self.clients[client].txn.branch.clone();
        self.send_absorbed(now, (ck, ai), b"CANCEL", branch, cancel, (peer, trunk));
    }

    /// Send a non-INVITE request of the proxy's own for attempt `ai` of call
    /// `ck` (a CANCEL, or the BYE that ends a second answer) in a client
    /// transaction of its own: retransmitted over UDP, its responses
    /// absorbed, the call kept until it ends.
    pub(super) fn send_absorbed(
        &mut self,
        now: Instant,
        (ck, ai): (usize, usize),
        method: &'static [u8],
        branch: Bytes,
        request: Message,
        (peer, trunk): (Peer, Option<TrunkId>),
    ) {
        let bytes = request.as_bytes().clone();
        let key = (branch.clone(), Bytes::from_static(method));
        let txn = ClientTxn::new(now, Kind::NonInvite, request, peer, branch, self.cfg.timers);
        let serial = self.next_serial();
        let k = self.clients.insert(ClientEntry {
            txn,
            key: key.clone(),
            call: ck,
            attempt: ai,
            is_cancel: true,
            serial,
            armed: None,
        });
        self.client_index.insert(key, k);
        self.calls[ck].clients_live += 1;
        self.send_client(k, peer, bytes, trunk);
        self.arm_client(k);
    }

    pub(super) fn maybe_finish_call(&mut self, ck: usize) {
        let Some(call) = self.calls.get(ck) else {
            return;
        };
        let server_gone = call.server.is_none();
        let clients_gone = call.clients_live == 0;
        if server_gone && clients_gone {
            for ai in 0..call.attempts.len() {
                self.release(ck, ai);
            }
            let call = self.calls.remove(ck);
            for a in call.attempts {
                if let Some((dk, n)) = a.dialog {
                    if self
                        .dialogs
                        .get(dk)
                        .is_some_and(|d| d.nonce == n && !d.confirmed)
                    {
                        self.remove_dialog(dk);
                    }
                }
            }
        }
    }
}
