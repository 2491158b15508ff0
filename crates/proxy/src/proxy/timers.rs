//! Timers: every server transaction, client transaction, call and dialog
//! has at most one entry armed in the proxy's heap; stale entries are
//! skipped when they fire.

use std::cmp::Reverse;
use std::time::Instant;

use bytes::Bytes;

use super::{Obj, Proxy, Target};
use crate::events::AttemptFailure;
use crate::transaction::{ClientTimer, ServerTimer};

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
    }

    pub(super) fn arm_server(&mut self, k: usize) {
        let d = self.servers.get(k).and_then(|e| e.txn.deadline());
        self.arm(Obj::Server(k), d);
    }

    pub(super) fn arm_client(&mut self, k: usize) {
        let d = self.clients.get(k).and_then(|e| e.txn.deadline());
        self.arm(Obj::Client(k), d);
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
        if !self.servers.contains(k) {
            return;
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
