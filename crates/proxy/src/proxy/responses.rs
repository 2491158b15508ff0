//! Responses: matching to client transactions, provisional and final
//! answers, the answered call, duplicate answers, relaying to the caller.

use std::time::Instant;

use bytes::Bytes;
use lifeline_health::TrunkId;
use lifeline_sip::{Edit, HeaderName, Message, MessageWriter, Uri};

use super::linger::Found;
use super::{
    method_key, AttemptState, CallState, DialogRef, Origin, Proxy, Target, DUPLICATE_PREFIX,
    REASON_ELSEWHERE,
};
use crate::config::{Peer, RouteConfig};
use crate::events::{AttemptFailure, CallFailure, Event};
use crate::transaction::{ClientEvent, Kind};

impl Proxy {
    pub(super) fn handle_response(&mut self, now: Instant, from: Peer, m: Message) {
        // The top Via is parsed once, here, for both matches below.
        let branch = m.top_via().ok().and_then(|v| v.branch());
        // A probe's answer counts only from the trunk probed (health then
        // matches its 128-bit nonce).
        let probe = branch
            .filter(|_| m.status().is_some())
            .and_then(|b| self.health.probe_trunk_of_branch(b));
        if let Some(t) = probe {
            match self.trunk_peers.get(t.index()) {
                Some(&to) if same_peer(to, from) => {
                    self.health.handle_response(now, &m);
                }
                _ => self.wrong_peer(now, from),
            }
            return;
        }
        let key = match (branch, m.cseq().ok()) {
            (Some(b), Some(c)) => (m.as_bytes().slice_ref(b), method_key(c.method)),
            _ => {
                self.stats.responses_dropped += 1;
                return;
            }
        };
        let Some(&k) = self.client_index.get(&key) else {
            if self.lingering_response(now, from, &key, &m) {
                return;
            }
            // A stray: no transaction (RFC 3261 §18.1.2). Dropped.
            self.stats.responses_dropped += 1;
            self.reject(now, from, None, "stray response");
            return;
        };
        if !same_peer(self.clients[k].txn.peer, from) {
            self.wrong_peer(now, from);
            return;
        }
        let code = m.status().unwrap_or(0);
        let (ev, ack) = self.clients[k].txn.on_response(now, &m);
        self.overload_control(now, k, &m);
        let (peer, call, attempt, is_cancel) = {
            let e = &self.clients[k];
            (e.txn.peer, e.call, e.attempt, e.is_cancel)
        };
        let trunk = self
            .calls
            .get(call)
            .and_then(|c| c.attempts.get(attempt))
            .and_then(|a| a.trunk);
        if let Some(ack) = ack {
            self.send_client(k, peer, ack, trunk);
        }
        self.arm_client(k);
        if is_cancel || ev == ClientEvent::Absorb || !self.calls.contains(call) {
            return;
        }
        self.on_attempt_response(now, call, attempt, code, &m);
    }

    /// A response to a lingering client transaction (see [`super::linger`]),
    /// from the peer its request went to: a 2xx to an accepted INVITE goes
    /// on to the caller (RFC 6026 §8.4), a non-2xx final to a completed
    /// one gets its ACK again (§17.1.1.2), anything else is absorbed.
    /// Returns false if no lingering transaction matches.
    fn lingering_response(
        &mut self,
        now: Instant,
        from: Peer,
        key: &(Bytes, Bytes),
        m: &Message,
    ) -> bool {
        if self.lingering.is_empty() {
            return false;
        }
        let code = m.status().unwrap_or(0);
        let lk = self.client_linger_key(key, from);
        match self.lingering.get(lk) {
            Some(Found::ClientAccepted(f)) => {
                if (200..300).contains(&code) {
                    let (caller, dialog) = (f.caller, f.dialog);
                    if let Some(peer) = caller {
                        let mut e = Edit::new(m);
                        e.pop_via();
                        if peer.transport.reliable() {
                            e.ensure_content_length();
                        }
                        let bytes = e.to_bytes();
                        self.send(peer, bytes, None);
                    }
                    if let Some(d) = dialog {
                        self.answer_keeps_dialog(now, d.dialog_ref(), d.emergency);
                    }
                }
                true
            }
            Some(Found::ClientInviteCompleted(a)) => {
                if code >= 300 {
                    if let Some(ack) = a.ack.clone() {
                        let (trunk, origin) = (a.trunk, Origin::Other(a.serial));
                        self.send_as(from, ack, trunk, origin);
                    }
                }
                true
            }
            Some(Found::ClientCompleted) => true,
            _ => false,
        }
    }

    /// A 2xx of dialog `(dk, n)` passed to the caller: kept
    /// `dialog_max_age` once the caller's ACK has passed; until then only
    /// as long as the callee retransmits its 2xx (64 x T1, RFC 3261
    /// §13.3.1.4: then it gives the session up with a BYE), so that
    /// answered calls never ACKed (a flood) cost state for seconds, not
    /// hours. An emergency call's dialog is kept the whole time whatever
    /// the ACK does: its in-dialog requests (a call-back re-INVITE, the
    /// BYE) must find it.
    fn answer_keeps_dialog(&mut self, now: Instant, (dk, n): DialogRef, emergency: bool) {
        let (t1x64, max_age) = (self.cfg.timers.t1x64(), self.cfg.dialog_max_age);
        if let Some(d) = self.dialogs.get_mut(dk).filter(|d| d.nonce == n) {
            d.confirmed = true;
            d.expires = now + if d.acked || emergency { max_age } else { t1x64 };
            self.arm_dialog(dk);
        }
    }

    /// RFC 7339: a trunk's response to client transaction `k` may carry,
    /// in our Via, a request to shed traffic; the trunk's load keeps it.
    fn overload_control(&mut self, now: Instant, k: usize, m: &Message) {
        let (call, attempt) = (self.clients[k].call, self.clients[k].attempt);
        let trunk = self
            .calls
            .get(call)
            .and_then(|c| c.attempts.get(attempt))
            .and_then(|a| a.trunk);
        let (Some(t), Ok(via)) = (trunk, m.top_via()) else {
            return;
        };
        if via.param("oc").is_some() {
            if let Some(l) = self.load.get_mut(t.index()) {
                l.overload_control(now, &via);
            }
        }
    }

    /// A response that matched a transaction (or a probe) arrived from
    /// another peer than the request went to: dropped and counted.
    fn wrong_peer(&mut self, now: Instant, from: Peer) {
        self.stats.responses_dropped += 1;
        self.stats.responses_wrong_peer += 1;
        self.reject(now, from, None, "response from wrong peer");
    }

    fn on_attempt_response(&mut self, now: Instant, ck: usize, ai: usize, code: u16, m: &Message) {
        let state = self.calls[ck].attempts[ai].state;
        let trunk = self.calls[ck].attempts[ai].trunk;
        let call_id = self.calls[ck].id;
        let tracked = self.calls[ck].tracked;
        let kind = self.calls[ck].kind;
        let progress_timeout = match &self.calls[ck].target {
            Target::Route(r) => Some(self.progress_timeout(&r.cfg, trunk)),
            Target::Fixed { .. } => None,
        };
        if (101..300).contains(&code) {
            self.learn_progress(now, ck, ai);
        }

        if state == AttemptState::Abandoned {
            if tracked {
                if let Some(t) = trunk {
                    self.events.push_back(Event::LateResponse {
                        call: call_id,
                        at: now,
                        trunk: t,
                        status: code,
                    });
                }
            }
            if code < 200 {
                if let Some(reason) = self.calls[ck].attempts[ai].cancel_wanted.take() {
                    self.calls[ck].attempts[ai].state = AttemptState::Abandoned;
                    self.cancel_attempt(now, ck, ai, reason);
                }
            } else if code < 300 {
                // §16.7 step 10: a 2xx is always forwarded, even a late one.
                self.calls[ck].attempts[ai].state = AttemptState::Answered;
                self.answered(now, ck, ai, m);
            } else {
                self.calls[ck].attempts[ai].state = AttemptState::Done;
                if let Some(d) = self.calls[ck].attempts[ai].dialog.take() {
                    self.drop_dialog(d);
                }
            }
            return;
        }
        if matches!(state, AttemptState::Done) {
            if (200..300).contains(&code) {
                self.answered(now, ck, ai, m);
            }
            return;
        }

        match code {
            100 => {
                let a = &mut self.calls[ck].attempts[ai];
                if a.state == AttemptState::Pending {
                    a.state = AttemptState::Trying;
                    a.trying_at = Some(now);
                    a.failover_at = None;
                    if kind == Kind::Invite {
                        a.progress_at = progress_timeout.map(|p| now + p);
                        a.timer_c = Some(now + self.cfg.timers.timer_c);
                    }
                }
                if let Some(reason) = a.cancel_wanted.take() {
                    self.cancel_attempt(now, ck, ai, reason);
                }
                self.arm_call(ck);
            }
            101..=199 => {
                let a = &mut self.calls[ck].attempts[ai];
                let first_progress =
                    matches!(a.state, AttemptState::Pending | AttemptState::Trying);
                a.state = AttemptState::Ringing;
                a.failover_at = None;
                a.progress_at = None;
                a.hedge_at = None;
                a.timer_c = Some(now + self.cfg.timers.timer_c);
                if let Some(reason) = a.cancel_wanted.take() {
                    self.cancel_attempt(now, ck, ai, reason);
                }
                if first_progress {
                    if let Some(t) = trunk {
                        self.report_answered(now, ck, t);
                    }
                }
                if self.calls[ck].state != CallState::Cancelled {
                    self.relay(now, ck, m);
                }
                self.arm_call(ck);
            }
            200..=299 => {
                let a = &mut self.calls[ck].attempts[ai];
                // One piece of evidence per call: a 2xx after ringing adds none.
                let first = matches!(a.state, AttemptState::Pending | AttemptState::Trying);
                a.state = AttemptState::Answered;
                a.stop_timers();
                if first {
                    if let Some(t) = trunk {
                        self.report_answered(now, ck, t);
                    }
                }
                self.answered(now, ck, ai, m);
            }
            _ => {
                let failover = match &self.calls[ck].target {
                    Target::Route(r) => r.cfg.failover_codes.contains(&code),
                    Target::Fixed { .. } => false,
                };
                if failover && self.calls[ck].state == CallState::Routing {
                    self.fail_attempt(now, ck, ai, AttemptFailure::Response(code), Some(m));
                    return;
                }
                // The callee's own answer (or any answer after a CANCEL): relay it.
                let a = &mut self.calls[ck].attempts[ai];
                let was_waiting = matches!(a.state, AttemptState::Pending | AttemptState::Trying);
                a.state = AttemptState::Done;
                a.stop_timers();
                if let Some(d) = a.dialog.take() {
                    self.drop_dialog(d);
                }
                self.release(ck, ai);
                if was_waiting && !failover {
                    if let Some(t) = trunk {
                        self.report_answered(now, ck, t);
                    }
                }
                match self.calls[ck].state {
                    CallState::Cancelled => {
                        if self.live_attempts(ck) == 0 {
                            if let Some(sk) = self.unanswered_server(ck) {
                                if code == 487 {
                                    self.relay(now, ck, m);
                                } else {
                                    self.respond(now, sk, 487, "Request Terminated", Some(ck), &[]);
                                }
                            }
                        }
                    }
                    CallState::Routing if self.live_attempts(ck) > 0 => {
                        // A hedge is still alive: its answer decides. (The
                        // callee's answer here is kept as the best so far
                        // only by RFC 3261 §16.7's letter; a live emergency
                        // attempt is a better bet than relaying a 486.)
                    }
                    CallState::Routing => {
                        self.calls[ck].state = CallState::Finished;
                        self.relay(now, ck, m);
                        if tracked {
                            self.events.push_back(Event::CallFailed {
                                call: call_id,
                                at: now,
                                status: code,
                                reason: CallFailure::Rejected,
                            });
                        }
                    }
                    CallState::Connected | CallState::Finished => {}
                }
                if self.calls[ck].ends_dialog {
                    self.end_dialog(ck);
                }
                self.maybe_finish_call(ck);
            }
        }
    }

    fn end_dialog(&mut self, ck: usize) {
        if let Target::Fixed { dialog, .. } = self.calls[ck].target {
            self.drop_dialog(dialog);
        }
    }

    /// Remove a dialog if the key still names it.
    pub(super) fn drop_dialog(&mut self, (dk, nonce): DialogRef) {
        if self.dialogs.get(dk).is_some_and(|d| d.nonce == nonce) {
            self.remove_dialog(dk);
        }
    }

    /// A 2xx from attempt `ai`: forward it, connect the call, cancel the rest.
    ///
    /// A routed call forwards one answer: the first 2xx (RFC 3261 §16.7
    /// step 10 forwards every 2xx and leaves the caller to end the extra
    /// dialogs, §13.2.2.4; callers in the field do not, and a PSAP would be
    /// left holding a line nobody hears). A 2xx from another attempt after
    /// that, or after the caller already has a final response, is ACKed
    /// and ended with a BYE here ([`end_duplicate`](Self::end_duplicate)).
    fn answered(&mut self, now: Instant, ck: usize, ai: usize, m: &Message) {
        if matches!(self.calls[ck].target, Target::Route(_)) {
            let forward = match self.calls[ck].winner {
                Some(w) => w == ai,
                None => self.unanswered_server(ck).is_some(),
            };
            if !forward {
                self.end_duplicate(now, ck, ai, m);
                return;
            }
            self.calls[ck].winner = Some(ai);
        }
        let first = self.calls[ck].state != CallState::Connected;
        self.relay(now, ck, m);
        if let Some(d) = self.calls[ck].attempts[ai].dialog {
            let emergency = self.calls[ck].emergency.is_some();
            self.answer_keeps_dialog(now, d, emergency);
        }
        if self.calls[ck].ends_dialog {
            self.end_dialog(ck);
        }
        if !first
            || matches!(self.calls[ck].state, CallState::Finished)
                && self.calls[ck].kind != Kind::Invite
        {
            return;
        }
        self.calls[ck].state = CallState::Connected;
        let call = &self.calls[ck];
        if call.tracked {
            if let Some(t) = call.attempts[ai].trunk {
                self.events.push_back(Event::CallConnected {
                    call: call.id,
                    at: now,
                    trunk: t,
                    setup: now - call.started,
                });
            }
        }
        for other in 0..self.calls[ck].attempts.len() {
            if other != ai {
                let a = &mut self.calls[ck].attempts[other];
                a.failover_at = None;
                a.progress_at = None;
                a.hedge_at = None;
                let live = matches!(
                    a.state,
                    AttemptState::Pending | AttemptState::Trying | AttemptState::Ringing
                );
                if live {
                    // A hedge that lost: given up like a failover, so a
                    // 2xx of its own later is ended, not forwarded.
                    a.state = AttemptState::Abandoned;
                    if let Some(c) = a.client {
                        if let Some(e) = self.clients.get_mut(c) {
                            e.txn.mute();
                        }
                    }
                    self.release(ck, other);
                    self.report_failure(now, ck, other, AttemptFailure::Superseded);
                }
                self.cancel_attempt(now, ck, other, Bytes::from_static(REASON_ELSEWHERE));
            }
        }
        // The answered call keeps its place on the trunk until it ends: the
        // place moves from the attempt to the dialog (a late answer on an
        // attempt given up takes one again).
        let a = &mut self.calls[ck].attempts[ai];
        let was_counted = std::mem::take(&mut a.counted);
        let dialog = a
            .dialog
            .and_then(|(dk, n)| self.dialogs.get_mut(dk).filter(|d| d.nonce == n));
        let delta: i64 = match dialog {
            Some(d) if !d.counted => {
                d.counted = true;
                i64::from(!was_counted)
            }
            _ => -i64::from(was_counted),
        };
        if let Some(l) = a.trunk.and_then(|t| self.load.get_mut(t.index())) {
            l.calls = match delta {
                1 => l.calls.saturating_add(1),
                -1 => l.calls.saturating_sub(1),
                _ => l.calls,
            };
        }
        self.arm_call(ck);
    }

    /// A second answer: attempt `ai`'s 2xx came after another was forwarded
    /// (or after the caller's final response). Acting as the UAC of that
    /// dialog (RFC 3261 §13.2.2.4), ACK it and end it with a BYE along its
    /// route set, so no dialog is left up at a PSAP that nobody hears. A
    /// retransmission of the same 2xx is ACKed again.
    fn end_duplicate(&mut self, now: Instant, ck: usize, ai: usize, m: &Message) {
        let call = &mut self.calls[ck];
        let (id, tracked) = (call.id, call.tracked);
        let a = &mut call.attempts[ai];
        a.state = AttemptState::Answered;
        a.stop_timers();
        let first = !std::mem::replace(&mut a.ended, true);
        let trunk = a.trunk;
        let peer = trunk
            .and_then(|t| self.trunk_peers.get(t.index()).copied())
            .unwrap_or(a.peer);
        if let Some(d) = a.dialog.take() {
            self.drop_dialog(d);
        }
        self.release(ck, ai);
        let nonce = self.rng.token();
        let ack_branch = format!("{DUPLICATE_PREFIX}{nonce:032x}a");
        let bye_branch = format!("{DUPLICATE_PREFIX}{nonce:032x}b");
        let via = |branch: &str| {
            format!(
                "SIP/2.0/{} {};branch={branch}",
                peer.transport.via_token(),
                self.advertise
            )
        };
        let (ack_via, bye_via) = (via(&ack_branch), via(&bye_branch));
        let Some(ack) = self.in_dialog_request(m, "ACK", &ack_via, None) else {
            return;
        };
        let wire = self.wire_peer(peer, trunk, ack.len());
        self.send(wire, ack, trunk);
        if !first {
            return;
        }
        if tracked {
            if let Some(t) = trunk {
                self.events.push_back(Event::DuplicateAnswer {
                    call: id,
                    at: now,
                    trunk: t,
                });
            }
        }
        let Some(bye) = self.in_dialog_request(m, "BYE", &bye_via, Some(REASON_ELSEWHERE)) else {
            return;
        };
        let Ok(parsed) = Message::parse(bye) else {
            return;
        };
        let branch = Bytes::from(bye_branch);
        self.send_absorbed(now, (ck, ai), b"BYE", branch, parsed, (peer, trunk));
    }

    /// An ACK or BYE in the dialog a 2xx established, sent by this proxy as
    /// that dialog's UAC: Request-URI the 2xx's Contact, Route the Record-
    /// Route entries the trunk side added (those above ours, reversed),
    /// From, To and Call-ID of the 2xx, the INVITE's CSeq number (ACK) or
    /// the next one (BYE).
    fn in_dialog_request(
        &self,
        resp: &Message,
        method: &str,
        via: &str,
        reason: Option<&[u8]>,
    ) -> Option<Bytes> {
        let (off, contact) = resp.values(HeaderName::Contact).next()?;
        let target = lifeline_sip::NameAddr::parse(contact, off, HeaderName::Contact).ok()?;
        let mut w = MessageWriter::request(method, target.uri_text).ok()?;
        w.header(HeaderName::Via, via.as_bytes()).ok()?;
        w.header(HeaderName::MaxForwards, b"70").ok()?;
        let mut downstream = Vec::new();
        for (off, v) in resp.values(HeaderName::RecordRoute) {
            let rr = lifeline_sip::NameAddr::parse(v, off, HeaderName::RecordRoute).ok()?;
            if matches!(rr.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port)) {
                break;
            }
            downstream.push(v);
        }
        for v in downstream.iter().rev() {
            w.header(HeaderName::Route, v).ok()?;
        }
        for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            let h = resp.header(name)?;
            w.raw_header(h.raw_name, h.value).ok()?;
        }
        let seq = resp.cseq().ok()?.seq;
        let seq = if method == "ACK" {
            seq
        } else {
            seq.wrapping_add(1)
        };
        w.header(HeaderName::CSeq, format!("{seq} {method}").as_bytes())
            .ok()?;
        if let Some(r) = reason {
            w.header(HeaderName::Reason, r).ok()?;
        }
        Some(w.finish())
    }

    /// The progress timeout of a new attempt on `trunk`: `factor` times
    /// what the trunk usually takes from 100 Trying to ringing, clamped
    /// between the route's `progress_timeout_min` and `progress_timeout`;
    /// `progress_timeout` while the trunk has no history.
    fn progress_timeout(&self, r: &RouteConfig, trunk: Option<TrunkId>) -> std::time::Duration {
        let learned = trunk
            .and_then(|t| self.health.trunk(t))
            .and_then(|s| s.progress.trying_to_ringing);
        match learned {
            None => r.progress_timeout,
            Some(l) => l
                .saturating_mul(r.progress_timeout_factor)
                .max(r.progress_timeout_min)
                .min(r.progress_timeout),
        }
    }

    /// Tell health how long attempt `ai` took to ring (or answer), once per
    /// attempt. Late answers on attempts already given up count too: a
    /// trunk that is slow more often than the percentile allows raises its
    /// own timeout.
    fn learn_progress(&mut self, now: Instant, ck: usize, ai: usize) {
        let call = &mut self.calls[ck];
        if call.kind != Kind::Invite || !matches!(call.target, Target::Route(_)) {
            return;
        }
        let a = &mut call.attempts[ai];
        if std::mem::replace(&mut a.progress_recorded, true) {
            return;
        }
        if let Some(t) = a.trunk {
            let invite = now.saturating_duration_since(a.started);
            let trying = a.trying_at.map(|t0| now.saturating_duration_since(t0));
            self.health.record_progress(t, invite, trying);
        }
    }

    /// Forward a response to the caller through the call's server transaction.
    pub(super) fn relay(&mut self, now: Instant, ck: usize, m: &Message) {
        let Some(sk) = self.calls[ck].server else {
            return;
        };
        let Some(s) = self.servers.get(sk) else {
            return;
        };
        let peer = s.txn.peer;
        let mut e = Edit::new(m);
        e.pop_via();
        if peer.transport.reliable() {
            e.ensure_content_length();
        }
        let bytes = e.to_bytes();
        let code = m.status().unwrap_or(500);
        if let Some(out) = self.servers[sk].txn.send_response(now, code, bytes) {
            if (200..300).contains(&code) {
                self.calls[ck].answered_to = Some(peer);
            }
            self.send(peer, out, None);
        }
        self.arm_server(sk);
    }

    /// Send a locally generated response on server transaction `sk`.
    pub(super) fn respond(
        &mut self,
        now: Instant,
        sk: usize,
        code: u16,
        phrase: &str,
        ck: Option<usize>,
        extra: &[(HeaderName, &[u8])],
    ) {
        self.respond_why(now, sk, code, phrase, ck, extra, None);
    }

    /// Refuse a request outside any call, saying why in the `Rejected` event.
    pub(super) fn respond_refused(
        &mut self,
        now: Instant,
        sk: usize,
        code: u16,
        phrase: &str,
        why: &'static str,
    ) {
        self.respond_why(now, sk, code, phrase, None, &[], Some(why));
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_why(
        &mut self,
        now: Instant,
        sk: usize,
        code: u16,
        phrase: &str,
        ck: Option<usize>,
        extra: &[(HeaderName, &[u8])],
        why: Option<&'static str>,
    ) {
        if !self.servers.contains(sk) {
            return;
        }
        let tag = match ck.and_then(|c| self.calls.get(c)) {
            Some(c) => c.to_tag.clone(),
            None => self.new_tag(),
        };
        let s = &self.servers[sk];
        let Some(request) = s.txn.request() else {
            return; // a final was sent already
        };
        let Ok(mut w) = MessageWriter::response_to(request, code, phrase, Some(&tag)) else {
            return;
        };
        for (name, value) in extra {
            if w.header(*name, value).is_err() {
                return;
            }
        }
        let peer = s.txn.peer;
        let bytes = w.finish();
        if let Some(out) = self.servers[sk].txn.send_response(now, code, bytes) {
            self.send(peer, out, None);
        }
        if code >= 300 && ck.is_none() && code != 487 {
            self.stats.requests_refused += 1;
            let from = self.servers[sk].txn.peer;
            let reason = why.unwrap_or(match code {
                404 => "no route",
                416 => "unsupported URI scheme",
                420 => "bad extension",
                481 => "no such transaction",
                482 => "loop detected",
                483 => "too many hops",
                503 => "shutting down",
                _ => "refused",
            });
            self.events.push_back(Event::Rejected {
                at: now,
                from,
                status: Some(code),
                reason,
            });
        }
        self.arm_server(sk);
    }
}

/// Whether a response from `from` may answer a request sent to `to`: the
/// same transport, and
///
/// - UDP: the same address and port. A trunk answers from where it was
///   sent to (RFC 3261 §18.2.2 sends responses to the Via's sent-by, and the
///   gateway's socket for a trunk is connected to that one address); a
///   trunk with several addresses is several peers, each request answered
///   by the one it went to.
/// - TCP: the same address, any port. A response comes back on the
///   connection the request went out on (the gateway's, to the trunk's
///   port) or, if that one closed, on one the trunk opens from a port of
///   its own (§18.2.2); a TCP source address cannot be forged off the path
///   (the handshake needs the SYN-ACK).
///
/// IPv4-mapped IPv6 addresses compare as the IPv4 address.
pub(super) fn same_peer(to: Peer, from: Peer) -> bool {
    let ip = |p: Peer| p.addr.ip().to_canonical();
    to.transport == from.transport
        && ip(to) == ip(from)
        && (to.transport.reliable() || to.addr.port() == from.addr.port())
}
