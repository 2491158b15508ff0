//! The RFC 3261 §17 transaction layer: four state machines, pure.
//!
//! Each transaction is a value with `on_*` methods that take `now` and return
//! what to do; the proxy core matches messages to transactions, sends what
//! they return and wakes them at [`ClientTxn::deadline`] /
//! [`ServerTxn::deadline`]. INVITE transactions follow RFC 6026 (the
//! "Accepted" states, so a 2xx and its retransmissions pass through a proxy).
//!
//! Timers (Table 4): A/E retransmit requests (T1, doubling; E capped at T2),
//! B/F give up on a request (64·T1), D (32 s) / K (T4) absorb response
//! retransmissions, G retransmits a final response (T1 doubling to T2), H
//! gives up waiting for the ACK (64·T1), I (T4) absorbs ACK retransmissions,
//! J (64·T1) absorbs request retransmissions, L/M (64·T1) keep an accepted
//! INVITE transaction to pass 2xx retransmissions. On a reliable transport
//! A, E and G are not used and D, I, J, K are zero.
//!
//! Once only the last of those timers is left (`lingering()`), the proxy
//! keeps no `ClientTxn` / `ServerTxn` at all but a compact record of what
//! absorbing retransmissions needs (`proxy/linger.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_sip::{HeaderName, Message, MessageWriter};

use crate::config::{Peer, Timers};

/// INVITE or not: the two kinds of transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invite,
    NonInvite,
}

/// Client transaction states.
///
/// INVITE client transaction (RFC 3261 Figure 5, with RFC 6026's Accepted):
///
/// ```text
///                                |INVITE from TU
///              Timer A fires     |INVITE sent
///              Reset A,          V                      Timer B fires
///              INVITE sent +-----------+                or Transport Err.
///                +---------|           |---------------+inform TU
///                |         |  Calling  |               |
///                +-------->|           |-------------->|
///                          +-----------+ 2xx           |
///                             |  |       2xx to TU     |
///                             |  |1xx                  |
///     300-699 +---------------+  |1xx to TU            |
///    ACK sent |                  |                     |
/// resp. to TU |  1xx             V                     |
///             |  1xx to TU  -----------+               |
///             |  +---------|           |               |
///             |  |         |Proceeding |-------------->|
///             |  +-------->|           | 2xx           |
///             |            +-----------+ 2xx to TU     |
///             |       300-699    |                     |
///             |       ACK sent,  |                     |
///             |       resp. to TU|                     |
///             |                  |                     |
///             |                  V                     |
///             |            +-----------+               |
///             |            |           |               |
///             +----------->| Completed |               |
///                          |           |               |
///                          +-----------+               |
///              300-699      ^  |     +-----------+     |
///              ACK sent     |  |     | Accepted  |<-- 2xx from Calling/Proceeding
///              +------------+  |     +-----------+     | 2xx: to TU
///                              |Timer D  |Timer M      |
///                              V         V             V
///                          +---------------------------+
///                          |        Terminated         |
///                          +---------------------------+
/// ```
///
/// non-INVITE client transaction (RFC 3261 Figure 6):
///
/// ```text
///                                |Request from TU
///                                |send request
///            Timer E             V
///            send request  +-----------+
///                +---------|           |-------------------+
///                |         |  Trying   |  Timer F          |
///                +-------->|           |  or Transport Err.|
///                          +-----------+  inform TU        |
///             200-699         |  |                         |
///             resp. to TU     |  |1xx                      |
///             +---------------+  |resp. to TU              |
///             |                  |                         |
///             |   Timer E        V       Timer F           |
///             |   send req +-----------+ or Transport Err. |
///             |  +---------|           | inform TU         |
///             |  |         |Proceeding |------------------>|
///             |  +-------->|           |-----+             |
///             |            +-----------+     |1xx          |
///             |              |      ^        |resp to TU   |
///             | 200-699      |      +--------+             |
///             | resp. to TU  |                             |
///             |              |                             |
///             |              V                             |
///             |            +-----------+                   |
///             |            |           |                   |
///             +----------->| Completed |                   |
///                          |           |                   |
///                          +-----------+                   |
///                            ^   |                         |
///                            |   | Timer K                 |
///                            +---+ resp. to TU -- no,      |
///                                | absorbed                |
///                                V                         |
///                          +-----------+                   |
///                          | Terminated|<------------------+
///                          +-----------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// INVITE sent, nothing heard (Calling; "Trying" for non-INVITE).
    Calling,
    /// A provisional response was received.
    Proceeding,
    /// A final non-2xx (or, non-INVITE, any final) was received.
    Completed,
    /// A 2xx to an INVITE was received (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

/// What a client transaction tells its owner about a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientEvent {
    /// Pass the response up (first of its kind, or a 2xx retransmission).
    PassUp,
    /// Absorbed (a retransmission).
    Absorb,
}

/// What a client transaction's timer produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientTimer {
    /// Nothing due.
    Idle,
    /// Retransmit the request (Timer A / E).
    Retransmit(Bytes),
    /// Timer B / F: the request went unanswered; inform the owner (408).
    Timeout,
    /// Timer D / K / M: the transaction is over.
    Terminated,
}

/// A client transaction: one request sent to one peer.
#[derive(Debug)]
pub(crate) struct ClientTxn {
    pub(crate) kind: Kind,
    pub(crate) state: ClientState,
    /// The request as sent (parsed, for building ACK and CANCEL); let go
    /// once a final response has come, so a call's lingering transactions
    /// (32 s under RFC 6026) do not hold its INVITE.
    request: Option<Message>,
    pub(crate) peer: Peer,
    pub(crate) branch: Bytes,
    /// Timer A / E: (due, current interval).
    retransmit: Option<(Instant, Duration)>,
    /// Timer B / F.
    timeout_at: Option<Instant>,
    /// Timer D / K / M.
    linger_until: Option<Instant>,
    /// After a CANCEL: give the INVITE up if no final arrives by then (§9.1).
    cancel_deadline: Option<Instant>,
    /// The ACK sent for a non-2xx final (resent if the final is retransmitted).
    ack: Option<Bytes>,
    /// Set when the owner stops caring (an abandoned failover attempt): no
    /// more retransmissions, but responses are still matched.
    pub(crate) muted: bool,
    timers: Timers,
}

impl ClientTxn {
    /// Start a transaction; the caller sends `request` now.
    pub(crate) fn new(
        now: Instant,
        kind: Kind,
        request: Message,
        peer: Peer,
        branch: Bytes,
        timers: Timers,
    ) -> Self {
        let reliable = peer.transport.reliable();
        Self {
            kind,
            state: ClientState::Calling,
            request: Some(request),
            peer,
            branch,
            retransmit: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timeout_at: Some(now + timers.t1x64()),
            linger_until: None,
            cancel_deadline: None,
            ack: None,
            muted: false,
            timers,
        }
    }

    /// Stop retransmitting (the request will not be resent); responses are
    /// still matched until the transaction ends.
    pub(crate) fn mute(&mut self) {
        self.muted = true;
        self.retransmit = None;
    }

    /// The earliest instant a timer is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [
            self.retransmit.map(|r| r.0),
            self.timeout_at,
            self.linger_until,
            self.cancel_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The request as sent, until a final response came.
    pub(crate) fn request(&self) -> Option<&Message> {
        self.request.as_ref()
    }

    /// Whether all that is left is absorbing retransmissions until Timer
    /// D, K or M (Completed, Accepted): no other timer runs.
    pub(crate) fn lingering(&self) -> bool {
        matches!(self.state, ClientState::Completed | ClientState::Accepted)
    }

    /// When Timer D, K or M ends the transaction.
    pub(crate) fn linger_until(&self) -> Option<Instant> {
        self.linger_until
    }

    /// The ACK sent for a non-2xx final (INVITE, Completed).
    pub(crate) fn ack(&self) -> Option<&Bytes> {
        self.ack.as_ref()
    }

    fn linger(&mut self, now: Instant, d: Duration) {
        self.request = None;
        self.retransmit = None;
        self.timeout_at = None;
        self.cancel_deadline = None;
        self.linger_until = Some(now + d);
    }

    /// A response matched this transaction. Returns whether to pass it up and,
    /// for INVITE, the ACK to send (non-2xx finals, §17.1.1.3).
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        resp: &Message,
    ) -> (ClientEvent, Option<Bytes>) {
        let Some(code) = resp.status() else {
            return (ClientEvent::Absorb, None);
        };
        let reliable = self.peer.transport.reliable();
        match (self.kind, self.state) {
            (_, ClientState::Terminated) => (ClientEvent::Absorb, None),
            (Kind::Invite, ClientState::Calling | ClientState::Proceeding) => match code {
                100..=199 => {
                    self.state = ClientState::Proceeding;
                    self.retransmit = None;
                    self.timeout_at = None; // Timer B applies to Calling only; the proxy runs Timer C
                    (ClientEvent::PassUp, None)
                }
                200..=299 => {
                    self.state = ClientState::Accepted;
                    self.linger(now, self.timers.t1x64()); // Timer M
                    (ClientEvent::PassUp, None)
                }
                _ => {
                    self.state = ClientState::Completed;
                    let d = if reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    };
                    self.ack = self.request.as_ref().and_then(|r| build_ack(r, resp));
                    self.linger(now, d); // Timer D
                    (ClientEvent::PassUp, self.ack.clone())
                }
            },
            (Kind::Invite, ClientState::Completed) => {
                // A retransmitted final: resend the ACK, absorb it.
                let ack = if code >= 300 { self.ack.clone() } else { None };
                (ClientEvent::Absorb, ack)
            }
            (Kind::Invite, ClientState::Accepted) => {
                // 2xx retransmissions go up so the caller can ACK them (RFC 6026).
                let ev = if (200..300).contains(&code) {
                    ClientEvent::PassUp
                } else {
                    ClientEvent::Absorb
                };
                (ev, None)
            }
            (Kind::NonInvite, ClientState::Calling | ClientState::Proceeding) => {
                if code < 200 {
                    self.state = ClientState::Proceeding;
                    if let Some((_, _)) = self.retransmit {
                        // Proceeding: retransmit at T2.
                        self.retransmit = Some((now + self.timers.t2, self.timers.t2));
                    }
                } else {
                    self.state = ClientState::Completed;
                    let k = if reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    };
                    self.linger(now, k); // Timer K
                }
                (ClientEvent::PassUp, None)
            }
            (Kind::NonInvite, ClientState::Completed | ClientState::Accepted) => {
                (ClientEvent::Absorb, None)
            }
        }
    }

    /// Run the timers due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) -> ClientTimer {
        if self.linger_until.is_some_and(|t| t <= now) {
            self.state = ClientState::Terminated;
            self.linger_until = None;
            return ClientTimer::Terminated;
        }
        if self.timeout_at.is_some_and(|t| t <= now)
            || self.cancel_deadline.is_some_and(|t| t <= now)
        {
            self.state = ClientState::Terminated;
            self.timeout_at = None;
            self.cancel_deadline = None;
            self.retransmit = None;
            return ClientTimer::Timeout;
        }
        if let Some((due, interval)) = self.retransmit {
            if due <= now && !self.muted {
                let next = match self.kind {
                    Kind::Invite => interval * 2,
                    Kind::NonInvite if self.state == ClientState::Proceeding => self.timers.t2,
                    Kind::NonInvite => (interval * 2).min(self.timers.t2),
                };
                self.retransmit = Some((now + next, next));
                if let Some(r) = &self.request {
                    return ClientTimer::Retransmit(r.as_bytes().clone());
                }
            }
        }
        ClientTimer::Idle
    }

    /// A CANCEL was sent for this INVITE (RFC 3261 §9.1): if no final response
    /// arrives within 64·T1, the transaction is given up.
    pub(crate) fn on_cancel_sent(&mut self, now: Instant) {
        if self.kind == Kind::Invite
            && matches!(self.state, ClientState::Calling | ClientState::Proceeding)
        {
            let guard = now + self.timers.t1x64();
            self.cancel_deadline = Some(self.cancel_deadline.map_or(guard, |t| t.min(guard)));
        }
    }
}

/// Build the ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the same
/// Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, the To
/// of the response, and the INVITE's Route headers.
pub(crate) fn build_ack(invite: &Message, resp: &Message) -> Option<Bytes> {
    same_transaction("ACK", invite, resp, None)
}

/// Build a CANCEL for an INVITE (RFC 3261 §9.1), with an optional RFC 3326
/// Reason header.
pub(crate) fn build_cancel(invite: &Message, reason: Option<&[u8]>) -> Option<Bytes> {
    same_transaction("CANCEL", invite, invite, reason)
}

/// A request that belongs with `invite`'s transaction (ACK for a non-2xx,
/// CANCEL): the INVITE's Request-URI, top Via, From, Call-ID, CSeq number and
/// Route set, `to_from`'s To, and an optional Reason.
fn same_transaction(
    method: &str,
    invite: &Message,
    to_from: &Message,
    reason: Option<&[u8]>,
) -> Option<Bytes> {
    let mut w = MessageWriter::request(method, invite.request_uri_bytes()?).ok()?;
    let via = invite.header(HeaderName::Via)?;
    let top = lifeline_sip::split_values(via.value, via.value_offset)
        .next()?
        .1;
    w.header(HeaderName::Via, top).ok()?;
    w.header(HeaderName::MaxForwards, b"70").ok()?;
    copy(&mut w, invite, HeaderName::From)?;
    copy(&mut w, to_from, HeaderName::To)?;
    copy(&mut w, invite, HeaderName::CallId)?;
    let cseq = invite.cseq().ok()?;
    w.header(
        HeaderName::CSeq,
        format!("{} {method}", cseq.seq).as_bytes(),
    )
    .ok()?;
    for h in invite.headers().filter(|h| h.name == HeaderName::Route) {
        w.raw_header(h.raw_name, h.value).ok()?;
    }
    if let Some(r) = reason {
        w.header(HeaderName::Reason, r).ok()?;
    }
    Some(w.finish())
}

fn copy(w: &mut MessageWriter, from: &Message, name: HeaderName) -> Option<()> {
    let h = from.header(name)?;
    w.raw_header(h.raw_name, h.value).ok().map(|_| ())
}

/// Server transaction states.
///
/// INVITE server transaction (RFC 3261 Figure 7, with RFC 6026's Accepted):
///
/// ```text
///                               |INVITE
///                               |pass INV to TU
///            INVITE             V send 100 (the proxy sends it at once)
///            send response+-----------+
///                +--------|           |--------+ 101-199 from TU
///                |        | Proceeding|        | send response
///                +------->|           |<-------+
///                         |           |          Transport Err.
///                         |           |          Inform TU
///                         |           |--------------->+
///                         +-----------+                |
///            300-699 from TU |     |2xx from TU        |
///            send response   |     |send response      |
///                            |     +------------------>+ Accepted
///                            |                         |  (Timer L; 2xx from
///            INVITE          V          Timer G fires  |   TU sent, ACK and
///            send response+-----------+ send response  |   INVITE absorbed)
///                +--------|           |--------+       |
///                |        | Completed |        |       |
///                +------->|           |<-------+       |
///                         +-----------+                |
///                            |     |                   |
///                        ACK |     |                   |
///                        -   |     +------------------>+
///                            |        Timer H fires    |
///                            V        or Transport Err.|
///                         +-----------+  Inform TU     |
///                         |           |                |
///                         | Confirmed |                |
///                         |           |                |
///                         +-----------+                |
///                               |                      |
///                               |Timer I fires         |
///                               V                      |
///                         +-----------+                |
///                         | Terminated|<---------------+
///                         +-----------+
/// ```
///
/// non-INVITE server transaction (RFC 3261 Figure 8):
///
/// ```text
///                                   |Request received
///                                   |pass to TU
///                                   V
///                             +-----------+
///                             |           |
///                             | Trying    |-------------+
///                             |           |             |
///                             +-----------+             |200-699 from TU
///                                   |                   |send response
///                                   |1xx from TU        |
///                                   |send response      |
///                                   |                   |
///                Request            V      1xx from TU  |
///                send response+-----------+send response|
///                    +--------|           |--------+    |
///                    |        | Proceeding|        |    |
///                    +------->|           |<-------+    |
///             +<--------------|           |             |
///             |Trnsprt Err    +-----------+             |
///             |Inform TU            |                   |
///             |                     |                   |
///             |                     |200-699 from TU    |
///             |                     |send response      |
///             |  Request            V                   |
///             |  send response+-----------+             |
///             |      +--------|           |             |
///             |      |        | Completed |<------------+
///             |      +------->|           |
///             +<--------------|           |
///             |Trnsprt Err    +-----------+
///             |Inform TU            |
///             |                     |Timer J fires
///             |                     |-
///             |                     |
///             |                     V
///             |               +-----------+
///             +-------------->| Terminated|
///                             +-----------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// Request received; for INVITE a 100 has been sent ("Trying" for non-INVITE).
    Proceeding,
    /// A final non-2xx (non-INVITE: any final) was sent.
    Completed,
    /// INVITE: the ACK for a non-2xx final arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026).
    Accepted,
    /// Done.
    Terminated,
}

/// A server transaction: one request received from one peer.
#[derive(Debug)]
pub(crate) struct ServerTxn {
    pub(crate) kind: Kind,
    pub(crate) state: ServerState,
    /// Where responses go (the request's source).
    pub(crate) peer: Peer,
    /// The request as received, until the final response is sent.
    request: Option<Message>,
    /// The last response sent (resent on request retransmissions).
    pub(crate) last_response: Option<Bytes>,
    /// Timer G: (due, interval).
    retransmit: Option<(Instant, Duration)>,
    /// Timer H.
    ack_deadline: Option<Instant>,
    /// Timers I, J, L.
    linger_until: Option<Instant>,
    timers: Timers,
}

/// What a server transaction's timer produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServerTimer {
    Idle,
    /// Timer G: resend the final response.
    Retransmit(Bytes),
    /// Timer H: no ACK came.
    AckTimeout,
    /// Timer I / J / L: over.
    Terminated,
}

impl ServerTxn {
    pub(crate) fn new(kind: Kind, request: Message, peer: Peer, timers: Timers) -> Self {
        Self {
            kind,
            state: ServerState::Proceeding,
            peer,
            request: Some(request),
            last_response: None,
            retransmit: None,
            ack_deadline: None,
            linger_until: None,
            timers,
        }
    }

    /// The request as received, until the final response was sent.
    pub(crate) fn request(&self) -> Option<&Message> {
        self.request.as_ref()
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        [
            self.retransmit.map(|r| r.0),
            self.ack_deadline,
            self.linger_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether all that is left is absorbing retransmissions until Timer
    /// I, J or L (INVITE Confirmed or Accepted, non-INVITE Completed): no
    /// other timer runs.
    pub(crate) fn lingering(&self) -> bool {
        matches!(
            (self.kind, self.state),
            (Kind::Invite, ServerState::Accepted | ServerState::Confirmed)
                | (Kind::NonInvite, ServerState::Completed)
        )
    }

    /// When Timer I, J or L ends the transaction.
    pub(crate) fn linger_until(&self) -> Option<Instant> {
        self.linger_until
    }

    /// Whether a final response has been sent.
    pub(crate) fn has_final(&self) -> bool {
        !matches!(self.state, ServerState::Proceeding)
    }

    /// The TU sends a response. Returns the bytes to send, or `None` if the
    /// transaction state forbids it (a second final non-2xx).
    pub(crate) fn send_response(&mut self, now: Instant, code: u16, bytes: Bytes) -> Option<Bytes> {
        let reliable = self.peer.transport.reliable();
        match (self.kind, self.state) {
            (_, ServerState::Proceeding) if code < 200 => {}
            (Kind::Invite, ServerState::Proceeding | ServerState::Accepted)
                if (200..300).contains(&code) =>
            {
                self.state = ServerState::Accepted;
                self.linger_until = Some(now + self.timers.t1x64()); // Timer L
            }
            (Kind::Invite, ServerState::Proceeding) => {
                self.state = ServerState::Completed;
                if !reliable {
                    self.retransmit = Some((now + self.timers.t1, self.timers.t1));
                    // Timer G
                }
                self.ack_deadline = Some(now + self.timers.t1x64()); // Timer H
            }
            (Kind::NonInvite, ServerState::Proceeding) => {
                self.state = ServerState::Completed;
                let j = if reliable {
                    Duration::ZERO
                } else {
                    self.timers.t1x64()
                };
                self.linger_until = Some(now + j); // Timer J
            }
            _ => return None,
        }
        if code >= 200 {
            // Only the response is resent from here on.
            self.request = None;
        }
        self.last_response = Some(bytes.clone());
        Some(bytes)
    }

    /// The request was retransmitted: what to resend, if anything.
    pub(crate) fn on_retransmission(&self) -> Option<Bytes> {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last_response.clone(),
            _ => None,
        }
    }

    /// An ACK matched this INVITE transaction (a non-2xx final's ACK).
    pub(crate) fn on_ack(&mut self, now: Instant) {
        if self.kind == Kind::Invite && self.state == ServerState::Completed {
            self.state = ServerState::Confirmed;
            self.retransmit = None;
            self.ack_deadline = None;
            let i = if self.peer.transport.reliable() {
                Duration::ZERO
            } else {
                self.timers.t4
            };
            self.linger_until = Some(now + i); // Timer I
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant) -> ServerTimer {
        if self.linger_until.is_some_and(|t| t <= now) {
            self.state = ServerState::Terminated;
            self.linger_until = None;
            return ServerTimer::Terminated;
        }
        if self.ack_deadline.is_some_and(|t| t <= now) {
            self.state = ServerState::Terminated;
            self.ack_deadline = None;
            self.retransmit = None;
            return ServerTimer::AckTimeout;
        }
        if let Some((due, interval)) = self.retransmit {
            if due <= now {
                let next = (interval * 2).min(self.timers.t2);
                self.retransmit = Some((now + next, next));
                if let Some(r) = &self.last_response {
                    return ServerTimer::Retransmit(r.clone());
                }
            }
        }
        ServerTimer::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn invite() -> Message {
        Message::parse(Bytes::from_static(
            b"INVITE sip:999@trunk SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKgw1\r\nVia: SIP/2.0/UDP caller;branch=z9hG4bKc\r\nRoute: <sip:next;lr>\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:999@trunk>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap()
    }

    fn resp(code: u16) -> Message {
        let text = format!("SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bKgw1\r\nVia: SIP/2.0/UDP caller;branch=z9hG4bKc\r\nFrom: <sip:a@b>;tag=f\r\nTo: <sip:999@trunk>;tag=t\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(text)).unwrap()
    }

    fn peer() -> Peer {
        Peer {
            addr: "192.0.2.10:5060".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    #[test]
    fn invite_client_retransmits_then_times_out() {
        let t0 = Instant::now();
        let timers = Timers::default();
        let mut tx = ClientTxn::new(
            t0,
            Kind::Invite,
            invite(),
            peer(),
            Bytes::from_static(b"z9hG4bKgw1"),
            timers,
        );
        let mut sends = vec![];
        let now = loop {
            let now = tx.deadline().unwrap();
            match tx.on_timer(now) {
                ClientTimer::Retransmit(_) => sends.push(now - t0),
                ClientTimer::Timeout => break now,
                other => panic!("{other:?}"),
            }
        };
        // Timer A: 500 ms doubling; Timer B at 64*T1 = 32 s.
        assert_eq!(
            sends,
            vec![ms(500), ms(1500), ms(3500), ms(7500), ms(15500), ms(31500)]
        );
        assert_eq!(now - t0, Duration::from_secs(32));
    }

    #[test]
    fn invite_client_acks_non_2xx_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut tx = ClientTxn::new(
            t0,
            Kind::Invite,
            invite(),
            peer(),
            Bytes::new(),
            Timers::default(),
        );
        assert_eq!(tx.on_response(t0, &resp(100)).0, ClientEvent::PassUp);
        assert_eq!(tx.state, ClientState::Proceeding);
        assert_eq!(tx.deadline(), None, "no Timer A/B in Proceeding");
        let (ev, ack) = tx.on_response(t0, &resp(503));
        assert_eq!(ev, ClientEvent::PassUp);
        let ack = Message::parse(ack.unwrap()).unwrap();
        assert_eq!(ack.method_bytes(), Some(&b"ACK"[..]));
        assert_eq!(ack.request_uri_bytes(), Some(&b"sip:999@trunk"[..]));
        assert_eq!(ack.to().unwrap().tag(), Some(&b"t"[..]));
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.top_via().unwrap().branch(), Some(&b"z9hG4bKgw1"[..]));
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.routes().count(), 1);
        lifeline_sip::validate(&ack).unwrap();
        let (ev, again) = tx.on_response(t0 + ms(10), &resp(503));
        assert_eq!(ev, ClientEvent::Absorb);
        assert!(again.is_some(), "ACK resent");
        assert_eq!(
            tx.on_timer(t0 + Duration::from_secs(32)),
            ClientTimer::Terminated,
            "Timer D"
        );
    }

    #[test]
    fn invite_client_passes_2xx_retransmissions() {
        let t0 = Instant::now();
        let mut tx = ClientTxn::new(
            t0,
            Kind::Invite,
            invite(),
            peer(),
            Bytes::new(),
            Timers::default(),
        );
        assert_eq!(tx.on_response(t0, &resp(200)), (ClientEvent::PassUp, None));
        assert_eq!(tx.on_response(t0, &resp(200)), (ClientEvent::PassUp, None));
        assert_eq!(tx.on_response(t0, &resp(180)), (ClientEvent::Absorb, None));
        assert_eq!(tx.deadline(), Some(t0 + Duration::from_secs(32)), "Timer M");
    }

    #[test]
    fn non_invite_client_caps_at_t2() {
        let t0 = Instant::now();
        let mut tx = ClientTxn::new(
            t0,
            Kind::NonInvite,
            invite(),
            peer(),
            Bytes::new(),
            Timers::default(),
        );
        let mut sends = vec![];
        while let Some(d) = tx.deadline() {
            match tx.on_timer(d) {
                ClientTimer::Retransmit(_) => sends.push(d - t0),
                ClientTimer::Timeout => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            &sends[..6],
            &[ms(500), ms(1500), ms(3500), ms(7500), ms(11500), ms(15500)]
        );
    }

    #[test]
    fn invite_server_retransmits_final_until_ack() {
        let t0 = Instant::now();
        let mut st = ServerTxn::new(Kind::Invite, invite(), peer(), Timers::default());
        assert!(st
            .send_response(t0, 100, Bytes::from_static(b"100"))
            .is_some());
        assert_eq!(st.on_retransmission(), Some(Bytes::from_static(b"100")));
        assert!(st
            .send_response(t0, 503, Bytes::from_static(b"503"))
            .is_some());
        assert!(
            st.send_response(t0, 500, Bytes::from_static(b"500"))
                .is_none(),
            "one final only"
        );
        assert_eq!(
            st.on_timer(t0 + ms(500)),
            ServerTimer::Retransmit(Bytes::from_static(b"503"))
        );
        assert_eq!(
            st.on_timer(t0 + ms(1500)),
            ServerTimer::Retransmit(Bytes::from_static(b"503"))
        );
        st.on_ack(t0 + ms(1600));
        assert_eq!(st.state, ServerState::Confirmed);
        assert_eq!(
            st.on_timer(t0 + ms(1600) + Duration::from_secs(5)),
            ServerTimer::Terminated,
            "Timer I = T4"
        );
    }

    #[test]
    fn invite_server_gives_up_without_ack() {
        let t0 = Instant::now();
        let mut st = ServerTxn::new(
            Kind::Invite,
            invite(),
            Peer {
                transport: Transport::Tcp,
                ..peer()
            },
            Timers::default(),
        );
        st.send_response(t0, 486, Bytes::from_static(b"486"));
        assert_eq!(
            st.deadline(),
            Some(t0 + Duration::from_secs(32)),
            "reliable: no Timer G, Timer H only"
        );
        assert_eq!(
            st.on_timer(t0 + Duration::from_secs(32)),
            ServerTimer::AckTimeout
        );
    }
}
