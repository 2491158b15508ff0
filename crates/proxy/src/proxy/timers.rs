//! Timers: every server transaction, client transaction, call and dialog
//! has at most one entry armed in the proxy's heap; stale entries are
//! skipped when they fire, and dropped all at once when they outnumber the
//! live ones. A transaction left with only its linger timer is moved to
//! the lingering table (see [`super::linger`]) at the end of the input that
//! put it there, and has no entry in the heap.

use std::cmp::Reverse;
use std::time::Instant;

use bytes::Bytes;

use super::linger::{AckResend, Forward, Linger, LingerDialog, Resend};
use super::{Obj, Proxy, ServerEntry, Target};
use crate::events::AttemptFailure;
use crate::transaction::{ClientState, ClientTimer, Kind, ServerState, ServerTimer};

impl Proxy {
    fn arm(&mut self, obj: Obj, deadline: Option<Instant>) {
        let Some(at) = deadline else {
            return;
        };
        let armed = match obj {
            Obj::Server(k) => self.servers.get_mut(k).map(|e| &mut e.armed),
            Obj::Client(k) => self.clients.get_mut(k).map(|e| &mut e.armed),
            Obj::Call(k) => self.calls.get_mut(k).map(|c| &mut c.armed),
            Obj::Dialog(k) => self.dialogs.get_mut(k).map(|d| &mut d.armed),
        };
        let Some(armed) = armed else {
            return;
        };
        if armed.is_some_and(|a| a <= at) {
            return; // an earlier wake-up is queued; it re-arms
        }
        *armed = Some(at);
        self.timers.push(Reverse((at, obj)));
        let live = self.servers.len() + self.clients.len() + self.calls.len() + self.dialogs.len();
        if self.timers.len() > 2 * live + 64 {
            self.drop_stale_timers();
        }
    }

    /// Drop the heap's entries that no longer arm anything (their object
    /// ended, or was armed again earlier): each object has at most one
    /// live entry, so after this the heap holds at most one per object.
    fn drop_stale_timers(&mut self) {
        let (servers, clients, calls, dialogs) =
            (&self.servers, &self.clients, &self.calls, &self.dialogs);
        self.timers.retain(|Reverse((at, obj))| {
            let armed = match *obj {
                Obj::Server(k) => servers.get(k).map(|e| e.armed),
                Obj::Client(k) => clients.get(k).map(|e| e.armed),
                Obj::Call(k) => calls.get(k).map(|c| c.armed),
                Obj::Dialog(k) => dialogs.get(k).map(|d| d.armed),
            };
            armed == Some(Some(*at))
        });
        self.shrink_timers();
    }

    /// Give back the memory of a heap that was much larger.
    pub(super) fn shrink_timers(&mut self) {
        let (len, cap) = (self.timers.len(), self.timers.capacity());
        if cap > 256 && len < cap / 4 {
            self.timers.shrink_to(len * 2);
        }
    }

    pub(super) fn arm_server(&mut self, k: usize) {
        if self.servers.get(k).is_some_and(|e| e.txn.lingering()) {
            self.settle_servers.push(k);
            return;
        }
        let d = self.servers.get(k).and_then(|e| e.txn.deadline());
        self.arm(Obj::Server(k), d);
    }

    pub(super) fn arm_client(&mut self, k: usize) {
        if let Some(e) = self.clients.get(k).filter(|e| e.txn.lingering()) {
            self.settle_clients.push((k, e.serial));
            return;
        }
        self.arm_client_now(k);
    }

    fn arm_client_now(&mut self, k: usize) {
        let d = self.clients.get(k).and_then(|e| e.txn.deadline());
        self.arm(Obj::Client(k), d);
    }

    /// Move the transactions that reached a lingering state during this
    /// input to the lingering table. Done once the input is handled, so
    /// that everything handling it did (forwarding a 2xx, ending a second
    /// answer) found the call and its transactions as they were.
    pub(super) fn settle(&mut self, now: Instant) {
        while let Some(k) = self.settle_servers.pop() {
            self.linger_server(now, k);
        }
        while let Some((k, serial)) = self.settle_clients.pop() {
            if self.clients.get(k).is_some_and(|e| e.serial == serial)
                && !self.linger_client(now, k)
            {
                self.arm_client_now(k);
            }
        }
    }

    /// Server transaction `k`, if lingering, leaves the tables (and its
    /// call) for the lingering table: its key, its timer and, in a
    /// non-INVITE Completed, the response it resends.
    fn linger_server(&mut self, now: Instant, k: usize) {
        if !self.servers.get(k).is_some_and(|e| e.txn.lingering()) {
            return;
        }
        let Some(e) = self.detach_server(k) else {
            return;
        };
        let Some(until) = e.txn.linger_until().filter(|t| *t > now) else {
            return; // a zero timer (reliable transport): over at once
        };
        let what = match (e.txn.kind, e.txn.state) {
            (Kind::Invite, ServerState::Accepted) => Linger::ServerAccepted,
            (Kind::Invite, _) => Linger::ServerConfirmed,
            (Kind::NonInvite, _) => match e.txn.last_response {
                Some(response) => Linger::ServerCompleted(Resend {
                    peer: e.txn.peer,
                    response,
                }),
                None => return,
            },
        };
        let key = self.server_linger_key(&e.key);
        self.lingering.insert(key, until, what);
    }

    /// Client transaction `k`, if lingering, leaves the tables (and its
    /// call) for the lingering table. Returns false if it is kept as it
    /// is: an answer this proxy ended itself (a second 2xx, see
    /// `end_duplicate`), whose retransmissions are ACKed again through the
    /// call.
    fn linger_client(&mut self, now: Instant, k: usize) -> bool {
        let Some(e) = self.clients.get(k).filter(|e| e.txn.lingering()) else {
            return false;
        };
        let call = self.calls.get(e.call);
        let attempt = call
            .filter(|_| !e.is_cancel)
            .and_then(|c| c.attempts.get(e.attempt));
        let what = match (e.txn.kind, e.txn.state) {
            (Kind::Invite, ClientState::Accepted) => {
                if attempt.is_some_and(|a| a.ended) {
                    return false;
                }
                // The 2xx went to the caller if this attempt won (or the
                // call, in a dialog, has no other).
                let caller = call
                    .filter(|c| c.winner.is_none_or(|w| w == e.attempt))
                    .and_then(|c| c.answered_to);
                let emergency = call.is_some_and(|c| c.emergency.is_some());
                let dialog = attempt
                    .and_then(|a| a.dialog)
                    .and_then(|d| LingerDialog::new(d, emergency));
                Linger::ClientAccepted(Forward { caller, dialog })
            }
            (Kind::Invite, _) => Linger::ClientInviteCompleted(AckResend {
                ack: e.txn.ack().cloned(),
                trunk: attempt.and_then(|a| a.trunk),
                serial: e.serial,
            }),
            (Kind::NonInvite, _) => Linger::ClientCompleted,
        };
        let until = e.txn.linger_until().filter(|t| *t > now);
        let key = self.client_linger_key(&e.key, e.txn.peer);
        self.remove_client(k);
        if let Some(until) = until {
            self.lingering.insert(key, until, what);
        }
        true
    }

    pub(super) fn arm_call(&mut self, k: usize) {
        let d = self.calls.get(k).and_then(|c| {
            c.attempts
                .iter()
                .flat_map(|a| [a.failover_at, a.progress_at, a.timer_c, a.hedge_at])
                .flatten()
                .min()
        });
        self.arm(Obj::Call(k), d);
    }

    pub(super) fn arm_dialog(&mut self, k: usize) {
        let d = self.dialogs.get(k).map(|d| d.expires);
        self.arm(Obj::Dialog(k), d);
    }

    pub(super) fn server_timer(&mut self, now: Instant, k: usize) {
        let r = self.servers[k].txn.on_timer(now);
        match r {
            ServerTimer::Retransmit(bytes) => {
                let peer = self.servers[k].txn.peer;
                self.send(peer, bytes, None);
            }
            ServerTimer::AckTimeout | ServerTimer::Terminated => {
                self.remove_server(k);
                return;
            }
            ServerTimer::Idle => {}
        }
        self.arm_server(k);
    }

    fn remove_server(&mut self, k: usize) {
        self.detach_server(k);
    }

    /// Take server transaction `k` out of the tables and off its call
    /// (which ends if nothing else keeps it).
    fn detach_server(&mut self, k: usize) -> Option<ServerEntry> {
        if !self.servers.contains(k) {
            return None;
        }
        let e = self.servers.remove(k);
        if self.server_index.get(&e.key) == Some(&k) {
            self.server_index.remove(&e.key);
        }
        if let Some(ck) = e.call {
            if let Some(c) = self.calls.get_mut(ck) {
                if c.server == Some(k) {
                    c.server = None;
                }
            }
            self.maybe_finish_call(ck);
        }
        Some(e)
    }

    pub(super) fn remove_client(&mut self, k: usize) {
        if !self.clients.contains(k) {
            return;
        }
        let e = self.clients.remove(k);
        if self.client_index.get(&e.key) == Some(&k) {
            self.client_index.remove(&e.key);
        }
        if let Some(call) = self.calls.get_mut(e.call) {
            call.clients_live = call.clients_live.saturating_sub(1);
            if !e.is_cancel {
                if let Some(a) = call.attempts.get_mut(e.attempt) {
                    if a.client == Some(k) {
                        a.client = None;
                    }
                }
            }
        }
        self.maybe_finish_call(e.call);
    }

    pub(super) fn client_timer(&mut self, now: Instant, k: usize) {
        let r = self.clients[k].txn.on_timer(now);
        match r {
            ClientTimer::Retransmit(bytes) => {
                let e = &self.clients[k];
                let (peer, trunk) = (
                    e.txn.peer,
                    self.calls
                        .get(e.call)
                        .and_then(|c| c.attempts.get(e.attempt))
                        .and_then(|a| a.trunk),
                );
                self.send_client(k, peer, bytes, trunk);
            }
            ClientTimer::Timeout => {
                let (call, attempt, is_cancel) = (
                    self.clients[k].call,
                    self.clients[k].attempt,
                    self.clients[k].is_cancel,
                );
                self.remove_client(k);
                if !is_cancel && self.calls.contains(call) {
                    let fixed = matches!(self.calls[call].target, Target::Fixed { .. });
                    let reason = if fixed {
                        AttemptFailure::TransactionTimeout
                    } else {
                        AttemptFailure::NoResponse
                    };
                    self.fail_attempt(now, call, attempt, reason, None);
                }
                return;
            }
            ClientTimer::Terminated => {
                self.remove_client(k);
                return;
            }
            ClientTimer::Idle => {}
        }
        self.arm_client(k);
    }

    pub(super) fn call_timer(&mut self, now: Instant, ck: usize) {
        let n = self.calls[ck].attempts.len();
        for ai in 0..n {
            let a = &mut self.calls[ck].attempts[ai];
            if a.failover_at.is_some_and(|t| t <= now) {
                a.failover_at = None;
                self.abandon_attempt(now, ck, ai, AttemptFailure::NoResponse);
            }
            let a = &mut self.calls[ck].attempts[ai];
            if a.progress_at.is_some_and(|t| t <= now) {
                a.progress_at = None;
                self.abandon_attempt(now, ck, ai, AttemptFailure::NoProgress);
            }
            let a = &mut self.calls[ck].attempts[ai];
            if a.hedge_at.is_some_and(|t| t <= now) {
                a.hedge_at = None;
                self.hedge(now, ck, ai);
            }
            let a = &mut self.calls[ck].attempts[ai];
            if a.timer_c.is_some_and(|t| t <= now) {
                // §16.6 step 11, Timer C: a call left ringing too long is cancelled.
                a.timer_c = None;
                self.cancel_attempt(
                    now,
                    ck,
                    ai,
                    Bytes::from_static(b"SIP;cause=408;text=\"Timer C\""),
                );
            }
        }
        if self.calls.contains(ck) {
            self.arm_call(ck);
        }
    }
}
