//! Requests: transaction matching (RFC 3261 §17.2.3), ACK, in-dialog
//! routing, the checks of §16.3 and routing of new calls, CANCEL.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lifeline_health::TrunkId;
use lifeline_sip::{Edit, Error, HeaderName, Host, Message, Method, Uri};

use super::linger::Found;
use super::text::Text;
use super::{
    method_key, AttemptState, CallState, Proxy, SentBy, ServerEntry, ServerKey, Target, ACK_PREFIX,
    LOOP_PREFIX,
};
use crate::access::strip_untrusted;
use crate::admission::{class_of, Class, LimitsConfig, Refusal};
use crate::classify::{classify, select_route, EmergencyRule};
use crate::config::{Peer, RouteConfig, Transport, UnknownSource, RFC3261_UDP_MAX_REQUEST};
use crate::events::{CallFailure, CallInfo, CallRef, Event, Location};
use crate::transaction::{Kind, ServerState, ServerTxn};

impl Proxy {
    pub(super) fn handle_request(&mut self, now: Instant, from: Peer, m: Message) {
        let method = m.method().unwrap_or(Method::Other);
        if method == Method::Ack {
            self.handle_ack(now, from, m);
            return;
        }
        let Some(key) = server_key(&m, None) else {
            return;
        };
        if let Some(&k) = self.server_index.get(&key) {
            // A retransmission: resend the last response.
            self.stats.retransmissions_absorbed += 1;
            if let Some(bytes) = self.servers[k].txn.on_retransmission() {
                let peer = self.servers[k].txn.peer;
                self.send(peer, bytes, None);
            }
            return;
        }
        if let Some(found) = self.find_lingering_server(&key) {
            // A retransmission to a transaction past its final response:
            // a non-INVITE one resends it (Timer J); an INVITE one, in
            // Accepted or Confirmed, absorbs it.
            let resend = match found {
                Found::ServerCompleted(r) => Some((r.peer, r.response.clone())),
                _ => None,
            };
            self.stats.retransmissions_absorbed += 1;
            if let Some((peer, bytes)) = resend {
                self.send(peer, bytes, None);
            }
            return;
        }
        // Access: a source outside `access.callers` gets nothing, or a 403
        // from a server transaction of its own (which absorbs its
        // retransmissions and the ACK), and never reaches a trunk.
        let admitted = self.admitted(from, &m, method);
        if !admitted && self.cfg.access.unknown == UnknownSource::Drop {
            self.reject(now, from, None, "access");
            return;
        }
        // What an untrusted source may not assert goes before anything
        // reads or keeps the request.
        let m = if admitted {
            match self.strip_untrusted(from, &m) {
                Ok(Some(stripped)) => stripped,
                Ok(None) => m,
                Err(_) => {
                    self.reply_stateless(now, from, &m, 500, "Server Internal Error", &[], "strip");
                    return;
                }
            }
        } else {
            m
        };
        // State caps: past `max_calls` or `max_transactions` a new
        // non-emergency request gets a stateless 503 (no transaction is
        // kept for it, so a flood cannot grow the tables).
        if admitted {
            if let Some(why) = self.over_cap(from, &m, method) {
                self.refuse_capped(now, from, &m, why);
                return;
            }
        }
        let kind = if method == Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let sk = self.servers.insert(ServerEntry {
            txn: ServerTxn::new(kind, m.clone(), from, self.cfg.timers),
            key: key.clone(),
            call: None,
            armed: None,
        });
        self.server_index.insert(key, sk);
        if !admitted {
            self.respond_refused(now, sk, 403, "Forbidden", "access");
            return;
        }
        if kind == Kind::Invite {
            // §16.2 / §17.2.1: a 100 Trying at once stops the caller's retransmissions.
            self.respond(now, sk, 100, "Trying", None, &[]);
        }
        if method == Method::Cancel {
            self.handle_cancel(now, sk, &m);
            return;
        }
        self.route_request(now, sk, from, m);
    }

    /// Which state cap, if any, refuses new request `m` from `from`: only
    /// new non-emergency requests are refused, once the calls (INVITEs) or
    /// transactions in progress reach the cap less its emergency reserve.
    fn over_cap(&self, from: Peer, m: &Message, method: Method) -> Option<Refusal> {
        let limits = &self.cfg.limits;
        if limits.max_calls.is_none() && limits.max_transactions.is_none() {
            return None;
        }
        let trusted = self.cfg.access.is_trusted(from.addr.ip());
        if class_of(m, trusted, &self.cfg.emergency) != Class::New {
            return None;
        }
        let full = |count: usize, max: Option<u32>| {
            max.is_some_and(|max| count >= LimitsConfig::non_emergency_ceiling(max) as usize)
        };
        // Calls being set up (and lingering a little after), and calls up
        // until their BYE (their dialogs): whichever is more.
        let calls = self.calls.len().max(self.dialogs.len());
        if method == Method::Invite && full(calls, limits.max_calls) {
            return Some(Refusal::MaxCalls);
        }
        if full(
            self.servers.len() + self.clients.len() + self.lingering.len(),
            limits.max_transactions,
        ) {
            return Some(Refusal::MaxTransactions);
        }
        None
    }

    /// Answer a request a state cap refused: 503 with Retry-After, sent
    /// statelessly.
    fn refuse_capped(&mut self, now: Instant, from: Peer, m: &Message, why: Refusal) {
        let retry = self
            .cfg
            .all_failed
            .retry_after
            .unwrap_or(5)
            .max(1)
            .to_string();
        let extra = [(HeaderName::RetryAfter, retry.as_bytes())];
        self.reply_stateless(
            now,
            from,
            m,
            503,
            "Service Unavailable",
            &extra,
            why.as_str(),
        );
    }

    fn handle_ack(&mut self, now: Instant, from: Peer, m: Message) {
        // An ACK for a non-2xx final belongs to the INVITE server transaction.
        if let Some(key) = server_key(&m, Some(b"INVITE")) {
            if let Some(&k) = self.server_index.get(&key) {
                if self.servers[k].txn.state == ServerState::Completed {
                    self.servers[k].txn.on_ack(now);
                    self.arm_server(k);
                    return;
                }
                if self.servers[k].txn.state == ServerState::Confirmed {
                    return; // retransmitted ACK
                }
            } else if matches!(
                self.find_lingering_server(&key),
                Some(Found::ServerConfirmed)
            ) {
                return; // retransmitted ACK (Timer I)
            }
        }
        // Never answered: one from outside `access.callers` is dropped
        // (and counted) whatever `access.unknown` says.
        if !self.admitted(from, &m, Method::Ack) {
            self.reject(now, from, None, "access");
            return;
        }
        // An ACK for a 2xx travels end to end, statelessly, along the dialog.
        // One with no token, or a token naming no dialog or another peer's,
        // gets no answer (an ACK never does) and goes nowhere.
        let Some(Ok((dk, _))) = self.our_route(&m) else {
            return;
        };
        let m = match self.strip_untrusted(from, &m) {
            Ok(Some(stripped)) => stripped,
            Ok(None) => m,
            Err(_) => return,
        };
        let Some(target) = self.dialog_target(dk, from) else {
            return;
        };
        if let Some(d) = self.dialogs.get_mut(dk).filter(|d| d.confirmed && !d.acked) {
            // The 2xx is acknowledged: the dialog is kept its full age.
            d.acked = true;
            d.expires = now + self.cfg.dialog_max_age;
            self.arm_dialog(dk);
        }
        if matches!(m.max_forwards(), Ok(Some(0))) {
            return;
        }
        let branch = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.hash_key.hash(&mut h);
            m.top_via().ok().and_then(|v| v.branch()).hash(&mut h);
            m.call_id().hash(&mut h);
            let mut branch = Text::new();
            branch.push(ACK_PREFIX).hex64(h.finish());
            branch
        };
        let via = |t: Transport| {
            let mut via = Text::new();
            via.push("SIP/2.0/")
                .push(t.via_token())
                .push(" ")
                .push(&self.advertise)
                .push(";branch=")
                .push(branch.as_bytes());
            via
        };
        let (mut peer, trunk) = target;
        let Some(mut e) = forward_edit(
            &m,
            true,
            via(peer.transport).as_bytes(),
            None,
            peer.transport.reliable(),
        ) else {
            return;
        };
        let wire = self.wire_peer(peer, trunk, e.len());
        if wire != peer {
            peer = wire;
            let Some(tcp) = forward_edit(&m, true, via(peer.transport).as_bytes(), None, true)
            else {
                return;
            };
            e = tcp;
        }
        let out = e.to_bytes();
        self.send(peer, out, trunk);
    }

    /// Whether a request from `from` passes `access.callers`:
    ///
    /// - any request from a source in `callers` (or any source at all when
    ///   `callers` is not set);
    /// - from a configured trunk's address (any port), ACK, CANCEL and
    ///   anything inside a dialog (our Record-Route token on top of Route,
    ///   or a To tag): the dialog checks then judge it (481, 403);
    /// - from anyone else, a request carrying the token of a live dialog
    ///   `from` is a party of: the caller of a call admitted before a reload
    ///   narrowed `callers` keeps its ACK, BYE and re-INVITEs.
    fn admitted(&self, from: Peer, m: &Message, method: Method) -> bool {
        let ip = from.addr.ip();
        if self.cfg.access.is_caller(ip) {
            return true;
        }
        let token = self.our_route(m);
        if self.is_trunk_ip(ip) {
            return matches!(method, Method::Ack | Method::Cancel)
                || token.is_some()
                || m.to().ok().and_then(|t| t.tag()).is_some();
        }
        matches!(token, Some(Ok((dk, _))) if self.dialog_target(dk, from).is_some())
    }

    /// Whether `from` is in `access.callers` or is a configured trunk's
    /// address: a source a malformed request is answered to (others get
    /// the silence of `unknown: drop`).
    pub(super) fn known_source(&self, from: Peer) -> bool {
        let ip = from.addr.ip();
        self.cfg.access.is_caller(ip) || self.is_trunk_ip(ip)
    }

    fn is_trunk_ip(&self, ip: std::net::IpAddr) -> bool {
        self.trunk_peers
            .iter()
            .any(|t| t.addr.ip().to_canonical() == ip.to_canonical())
    }

    /// `m` as an untrusted source may send it on: without P-Asserted-Identity,
    /// P-Preferred-Identity and Resource-Priority, and with
    /// `access.strip_untrusted_location` without its location (see
    /// [`crate::access`]). `None`: forwarded as it is (a trusted source, or
    /// nothing to remove).
    fn strip_untrusted(&self, from: Peer, m: &Message) -> Result<Option<Message>, Error> {
        let access = &self.cfg.access;
        if access.is_trusted(from.addr.ip()) {
            return Ok(None);
        }
        strip_untrusted(m, access.strip_untrusted_location)
    }

    /// The transport a request of `len` bytes (as forwarded) takes to
    /// `peer`: RFC 3261 §18.1.1, a request over 1300 bytes goes over TCP to
    /// a trunk that takes both; everything else as configured.
    pub(super) fn wire_peer(&self, peer: Peer, trunk: Option<TrunkId>, len: usize) -> Peer {
        let tcp_too = trunk
            .and_then(|t| self.large_over_tcp.get(t.index()))
            .copied()
            .unwrap_or(false);
        if peer.transport == Transport::Udp && tcp_too && len > RFC3261_UDP_MAX_REQUEST {
            Peer {
                addr: peer.addr,
                transport: Transport::Tcp,
            }
        } else {
            peer
        }
    }

    /// The dialog token of this proxy's Record-Route on top of Route:
    /// `None` if the top Route is not ours with a token (`ll=`), `Some(Err)`
    /// if it is but names no live dialog (ended, expired, mistyped or
    /// forged: the 128-bit nonce must match), else the dialog key and nonce.
    fn our_route(&self, m: &Message) -> Option<Result<(usize, u128), ()>> {
        let route = m.routes().next()?.ok()?;
        let Uri::Sip(u) = route.uri() else {
            return None;
        };
        if !self.is_us(&u.host, u.port) {
            return None;
        }
        let token = u.param("ll")?.unwrap_or_default();
        let dialog = || {
            let text = std::str::from_utf8(token).ok()?;
            let (k, n) = text.split_once('.')?;
            let k: usize = k.parse().ok()?;
            if n.len() != 32 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let n = u128::from_str_radix(n, 16).ok()?;
            let d = self.dialogs.get(k)?;
            (d.nonce == n).then_some((k, n))
        };
        Some(dialog().ok_or(()))
    }

    /// Where an in-dialog request from `from` goes: the other side of the dialog.
    fn dialog_target(&self, dk: usize, from: Peer) -> Option<(Peer, Option<TrunkId>)> {
        let d = self.dialogs.get(dk)?;
        if from.addr == d.caller.addr {
            Some((d.trunk, d.trunk_id))
        } else if from.addr == d.trunk.addr {
            Some((d.caller, None))
        } else {
            None
        }
    }

    pub(super) fn is_us(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        let port_ok = port.unwrap_or(5060) == self.cfg.advertise.port();
        let host_ok = match host {
            Host::Ipv4(ip) => std::net::IpAddr::V4(*ip) == self.cfg.advertise.ip(),
            Host::Ipv6(text) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                .is_some_and(|ip| std::net::IpAddr::V6(ip) == self.cfg.advertise.ip()),
            Host::Domain(d) => self
                .cfg
                .aliases
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(d)),
        };
        host_ok && port_ok
    }

    fn route_request(&mut self, now: Instant, sk: usize, from: Peer, m: Message) {
        let method = m.method().unwrap_or(Method::Other);
        // In-dialog: our Record-Route token on top. A token that names no
        // dialog gets 481 (RFC 3261 §12.2.2: no matching dialog), one used
        // by neither side of its dialog 403; neither is ever routed as a
        // new call.
        let token = self.our_route(&m);
        if let Some(Err(())) = token {
            self.unknown_dialog(now, sk);
            return;
        }
        if let Some(Ok((dk, dn))) = token {
            if matches!(m.max_forwards(), Ok(Some(0))) {
                self.respond(now, sk, 483, "Too Many Hops", None, &[]);
                return;
            }
            let Some((peer, trunk)) = self.dialog_target(dk, from) else {
                self.respond_refused(now, sk, 403, "Forbidden", "not a peer of the dialog");
                return;
            };
            let ends = method == Method::Bye;
            self.start_call(
                now,
                sk,
                &m,
                None,
                Target::Fixed {
                    peer,
                    trunk,
                    dialog: (dk, dn),
                },
                ends,
            );
            return;
        }
        let uri = match m.request_uri() {
            Some(Ok(u)) => u,
            _ => return,
        };
        let to_us = match &uri {
            Uri::Sip(u) => u.user.is_none() && self.is_us(&u.host, u.port),
            _ => false,
        };
        let has_foreign_route = m.routes().next().is_some_and(|r| {
            r.ok()
                .is_none_or(|r| !matches!(r.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port)))
        });
        if method == Method::Options && to_us && !has_foreign_route {
            // Keep-alive from an originating network: answer as a UAS (§11).
            self.respond(
                now,
                sk,
                200,
                "OK",
                None,
                &[(HeaderName::Allow, b"INVITE, ACK, CANCEL, BYE, OPTIONS")],
            );
            return;
        }
        if m.to().ok().and_then(|t| t.tag()).is_some() {
            // A request inside a dialog (To tag, §12.2) that does not carry
            // our token: every dialog through this proxy was record-routed
            // with one, so this one is none of ours.
            self.unknown_dialog(now, sk);
            return;
        }
        if !self.accepting {
            let retry = self.cfg.all_failed.retry_after.unwrap_or(5).to_string();
            self.respond(
                now,
                sk,
                503,
                "Shutting Down",
                None,
                &[(HeaderName::RetryAfter, retry.as_bytes())],
            );
            return;
        }
        if matches!(m.max_forwards(), Ok(Some(0))) {
            self.respond(now, sk, 483, "Too Many Hops", None, &[]);
            return;
        }
        let scheme_ok = match &uri {
            Uri::Sip(_) | Uri::Tel(_) => true,
            Uri::Other { scheme, .. } => scheme.eq_ignore_ascii_case(b"urn"),
        };
        if !scheme_ok {
            self.respond(now, sk, 416, "Unsupported URI Scheme", None, &[]);
            return;
        }
        if self.is_loop(&m) {
            self.respond(now, sk, 482, "Loop Detected", None, &[]);
            return;
        }
        let trusted = self.cfg.access.is_trusted(from.addr.ip());
        let emergency = classify(&m, trusted, &self.cfg.emergency);
        if emergency.is_none() {
            // §16.3 step 5. An emergency call is never refused over an
            // option tag: it is forwarded, and the trunk decides.
            if let Some(h) = m.header(HeaderName::ProxyRequire) {
                let value = h.value.to_vec();
                self.respond(
                    now,
                    sk,
                    420,
                    "Bad Extension",
                    None,
                    &[(HeaderName::Unsupported, &value)],
                );
                return;
            }
        }
        let Some((ri, _)) = select_route(self.routes_cfg(), &m, emergency) else {
            self.respond(now, sk, 404, "No Route", None, &[]);
            if method == Method::Invite {
                let call = self.new_call_ref();
                self.events.push_back(Event::CallStarted {
                    call,
                    at: now,
                    info: Arc::new(call_info(&m, emergency, "", from)),
                });
                self.events.push_back(Event::CallFailed {
                    call,
                    at: now,
                    status: 404,
                    reason: CallFailure::NoRoute,
                });
            }
            return;
        };
        let route = Target::Route(self.routes[ri].clone());
        self.start_call(now, sk, &m, emergency, route, false);
    }

    /// 481: an in-dialog request that names no dialog of ours (RFC 3261
    /// §12.2.2).
    fn unknown_dialog(&mut self, now: Instant, sk: usize) {
        self.respond_refused(
            now,
            sk,
            481,
            "Call/Transaction Does Not Exist",
            "unknown dialog",
        );
    }

    fn routes_cfg(&self) -> &[RouteConfig] {
        // `routes` mirrors `cfg.routes` index for index.
        &self.cfg.routes
    }

    pub(super) fn new_call_ref(&mut self) -> CallRef {
        let c = CallRef(self.next_call);
        self.next_call += 1;
        c
    }

    /// The loop-detection hash of RFC 3261 §16.6 step 8 over the fields a
    /// spiral changes.
    pub(super) fn loop_hash(&self, m: &Message) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash_key.hash(&mut h);
        m.request_uri_bytes().hash(&mut h);
        m.call_id().hash(&mut h);
        m.cseq().ok().map(|c| c.seq).hash(&mut h);
        m.from().ok().and_then(|f| f.tag()).hash(&mut h);
        m.to().ok().and_then(|t| t.tag()).hash(&mut h);
        for (_, v) in m.values(HeaderName::ProxyRequire) {
            v.hash(&mut h);
        }
        // Route values other than our own.
        for r in m.routes().flatten() {
            let ours = matches!(r.uri(), Uri::Sip(u) if self.is_us(&u.host, u.port));
            if !ours {
                r.uri_text.hash(&mut h);
            }
        }
        h.finish()
    }

    /// §16.3 step 4: a Via of ours whose branch carries this request's loop
    /// hash means the request came back unchanged.
    fn is_loop(&self, m: &Message) -> bool {
        let ours = |v: &lifeline_sip::Via<'_>| {
            self.is_us(&v.host, v.port)
                && v.branch()
                    .is_some_and(|b| b.starts_with(LOOP_PREFIX.as_bytes()))
        };
        // Only a request that already passed through here can loop: hash it
        // only then.
        if !m.vias().flatten().any(|v| ours(&v)) {
            return false;
        }
        let mut want = Text::new();
        want.push(LOOP_PREFIX).hex64(self.loop_hash(m)).push(".");
        m.vias()
            .flatten()
            .any(|v| ours(&v) && v.branch().is_some_and(|b| b.starts_with(want.as_bytes())))
    }

    /// The lingering server transaction with `key`, if any.
    pub(super) fn find_lingering_server(&self, key: &ServerKey) -> Option<Found<'_>> {
        if self.lingering.is_empty() {
            return None;
        }
        match self.lingering.get(self.server_linger_key(key))? {
            f @ (Found::ServerAccepted | Found::ServerConfirmed | Found::ServerCompleted(_)) => {
                Some(f)
            }
            _ => None,
        }
    }

    fn handle_cancel(&mut self, now: Instant, sk: usize, m: &Message) {
        let key = server_key(m, Some(b"INVITE"));
        let invite = key.as_ref().and_then(|k| self.server_index.get(k).copied());
        let Some(ik) = invite else {
            let lingering = key.as_ref().and_then(|k| self.find_lingering_server(k));
            if matches!(
                lingering,
                Some(Found::ServerAccepted | Found::ServerConfirmed)
            ) {
                // The INVITE has its final response already: nothing to
                // cancel, but the CANCEL matched (RFC 3261 §9.2).
                self.respond(now, sk, 200, "OK", None, &[]);
                return;
            }
            self.respond(now, sk, 481, "Call/Transaction Does Not Exist", None, &[]);
            return;
        };
        self.respond(now, sk, 200, "OK", None, &[]);
        let Some(ck) = self.servers[ik].call else {
            return;
        };
        if !matches!(self.calls[ck].state, CallState::Routing) {
            return;
        }
        self.calls[ck].state = CallState::Cancelled;
        let call = self.calls[ck].id;
        if self.calls[ck].tracked {
            self.events
                .push_back(Event::CallCancelled { call, at: now });
        }
        let reason = m
            .header(HeaderName::Reason)
            .map(|h| m.as_bytes().slice_ref(h.value))
            .unwrap_or_else(|| Bytes::from_static(b"SIP;cause=487;text=\"Request Terminated\""));
        let mut any_provisional = false;
        for ai in 0..self.calls[ck].attempts.len() {
            let a = &self.calls[ck].attempts[ai];
            if matches!(a.state, AttemptState::Trying | AttemptState::Ringing) {
                any_provisional = true;
            }
            let a = &mut self.calls[ck].attempts[ai];
            a.failover_at = None;
            a.progress_at = None;
            self.cancel_attempt(now, ck, ai, reason.clone());
        }
        if !any_provisional {
            // Nothing downstream can answer the CANCEL yet: end it here.
            self.respond(now, ik, 487, "Request Terminated", None, &[]);
        }
        self.maybe_finish_call(ck);
    }
}

fn server_key(m: &Message, method_override: Option<&'static [u8]>) -> Option<ServerKey> {
    let bytes = m.as_bytes();
    let via = m.top_via().ok()?;
    let method = method_key(method_override.unwrap_or(m.method_bytes()?));
    if via.is_rfc3261_branch() {
        // The sent-by as a key: host bytes (or the IPv4 octets) and port.
        let mut sent_by = SentBy::new();
        match via.host {
            Host::Domain(d) => sent_by.extend(d.iter().map(u8::to_ascii_lowercase)),
            Host::Ipv4(ip) => sent_by.extend_from_slice(&ip.octets()),
            Host::Ipv6(t) => sent_by.extend_from_slice(t),
        }
        sent_by.extend_from_slice(&via.port.unwrap_or(0).to_be_bytes());
        return Some(ServerKey::Branch {
            branch: bytes.slice_ref(via.branch()?),
            sent_by,
            method,
        });
    }
    let top = m.header(HeaderName::Via)?;
    Some(ServerKey::Legacy {
        uri: bytes.slice_ref(m.request_uri_bytes()?),
        from_tag: m
            .from()
            .ok()?
            .tag()
            .map(|t| bytes.slice_ref(t))
            .unwrap_or_default(),
        call_id: bytes.slice_ref(m.call_id()?),
        cseq: m.cseq().ok()?.seq,
        via: bytes.slice_ref(top.value),
        method,
    })
}

/// The edits that forward request `m`: our Route removed (`pop_route`),
/// Max-Forwards decremented, our `via` on top, a Record-Route if given, and
/// Content-Length made explicit on a `reliable` (stream) transport. `None`
/// if a value cannot be inserted.
pub(super) fn forward_edit<'m>(
    m: &'m Message,
    pop_route: bool,
    via: &[u8],
    record_route: Option<&[u8]>,
    reliable: bool,
) -> Option<Edit<'m>> {
    let mut e = Edit::new(m);
    if pop_route {
        e.remove_first_route();
    }
    e.decrement_max_forwards();
    e.push_via(via).ok()?;
    if let Some(rr) = record_route {
        e.add_record_route(rr).ok()?;
    }
    if reliable {
        e.ensure_content_length();
    }
    Some(e)
}

pub(super) fn call_info(
    m: &Message,
    emergency: Option<EmergencyRule>,
    route: &str,
    source: Peer,
) -> CallInfo {
    let b = m.as_bytes();
    let from = m.from().ok();
    let pidf_lo = m.content_type().and_then(|c| c.ok()).is_some_and(|ct| {
        ct.is("application", "pidf+xml")
            || (ct.media_type.eq_ignore_ascii_case(b"multipart")
                && contains_ignore_case(&m.body(), b"application/pidf+xml"))
    });
    CallInfo {
        call_id: m.call_id().map(|c| b.slice_ref(c)).unwrap_or_default(),
        from_uri: from.map(|f| b.slice_ref(f.uri_text)).unwrap_or_default(),
        from_display: from.and_then(|f| f.display_name).map(|d| b.slice_ref(d)),
        asserted_identities: m
            .values(HeaderName::PAssertedIdentity)
            .map(|(_, v)| b.slice_ref(v))
            .collect(),
        dialled: m
            .request_uri_bytes()
            .map(|u| b.slice_ref(u))
            .unwrap_or_default(),
        emergency,
        location: Location {
            geolocation: m
                .values(HeaderName::Geolocation)
                .map(|(_, v)| b.slice_ref(v))
                .collect(),
            pidf_lo,
        },
        route: route.to_string(),
        source,
    }
}

/// Case-insensitive substring search; `needle` must start with a letter.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), hay).any(|i| {
        hay.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}
