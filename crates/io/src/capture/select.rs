//! Which captured messages are exported with `calls: emergency` or `calls:
//! failed`: the capture thread's view of calls, by Call-ID, in its own time
//! and memory, so that the core's lock is not held a moment longer.
//!
//! A message is captured at the IO edge before the core has seen it, so
//! whether its call is an emergency call, or will fail, is not known yet.
//! The core says so later, through the event stage ([`Notice`]s: a call
//! started, with its Call-ID and whether it is an emergency call; a call
//! connected, failed or was cancelled). Until then a call's messages are
//! held here:
//!
//! ```text
//!  INVITE received (no To tag),          Started (emergency mode: is it one?)
//!  Call-ID not known                     Ended (failed mode: failed?)
//!  ------------------------> Pending --------------------------------> Export: held messages sent,
//!                               |  \                                          later ones too
//!                               |   \------------------------------> Discard: held messages dropped,
//!                               |                                            later ones too
//!                               +-- not named a call within DECIDE: dropped (a refused request,
//!                               |   never a call); a call with no outcome within `hold`, or held
//!                               +-- past `hold_bytes`: dropped and counted
//! ```
//!
//! Everything is bounded: the bytes held (`hold_bytes`), the time a call's
//! messages wait (`hold`; [`DECIDE`] before the core names it a call), and
//! the Call-IDs remembered ([`MAX_CALLS`], the soonest to expire forgotten
//! first). A message of a Call-ID not known here that does not start a
//! call (a probe, a stray response, an in-dialog request of a call already
//! forgotten) is not exported. Notices and messages may arrive in either
//! order: a decision made before a call's first message is kept for it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::CallRef;

use super::{CaptureCalls, CaptureDrop, Captured};

/// How long an INVITE waits for the core to name it a call (normally a
/// matter of microseconds: the core's queue is bounded, see
/// `crate::admission`); after that it was refused or dropped before it
/// became one, and it is not exported.
pub(crate) const DECIDE: Duration = Duration::from_secs(2);

/// How long a call that is not exported is remembered after its decision:
/// the retransmissions and ACKs of its transactions (64 × T1) are dropped
/// at once rather than held again.
pub(crate) const DISCARD_KEEP: Duration = Duration::from_secs(32);

/// How long an exported call is remembered after its last message, so
/// that its in-dialog requests (the BYE of an emergency call that lasted
/// a while) are exported too.
pub(crate) const EXPORT_KEEP: Duration = Duration::from_secs(3600);

/// Call-IDs remembered at most; past it the one soonest to expire is
/// forgotten first (its held messages dropped and counted, `hold_full`).
pub(crate) const MAX_CALLS: usize = 65_536;

/// What the core says about calls, through the event stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A call started (`Event::CallStarted`).
    Started {
        call: CallRef,
        call_id: Bytes,
        emergency: bool,
    },
    /// A call's outcome (its first final event).
    Ended { call: CallRef, outcome: Outcome },
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Connected,
    Failed,
    Cancelled,
}

/// What is known of one Call-ID.
#[derive(Debug)]
enum State {
    /// Waiting for the core: the messages so far, held.
    Pending {
        /// The core named it a call.
        started: bool,
        held: Vec<Captured>,
    },
    /// Exported: what comes is sent.
    Export,
    /// Not exported: what comes is dropped.
    Discard,
}

#[derive(Debug)]
struct Entry {
    /// Its key in the deadline index, with `deadline`.
    id: u64,
    /// When its first message was captured (or its decision came).
    first: Instant,
    deadline: Instant,
    call: Option<CallRef>,
    emergency: bool,
    state: State,
}

/// The calls of `calls: emergency` or `calls: failed`.
#[derive(Debug)]
pub(crate) struct Selector {
    calls: CaptureCalls,
    hold: Duration,
    hold_bytes: usize,
    entries: HashMap<Bytes, Entry>,
    /// Every entry by deadline, soonest first.
    deadlines: BTreeMap<(Instant, u64), Bytes>,
    /// Calls waiting for their outcome (`failed`), by the core's reference.
    refs: HashMap<CallRef, Bytes>,
    next_id: u64,
    held_bytes: usize,
}

/// What holding a message costs.
fn size(m: &Captured) -> usize {
    m.payload.len() + std::mem::size_of::<Captured>()
}

impl Selector {
    pub(crate) fn new(calls: CaptureCalls, hold: Duration, hold_bytes: usize) -> Self {
        Self {
            calls,
            hold,
            hold_bytes,
            entries: HashMap::new(),
            deadlines: BTreeMap::new(),
            refs: HashMap::new(),
            next_id: 0,
            held_bytes: 0,
        }
    }

    /// New bounds (a reload): they apply to what is held from now on.
    pub(crate) fn set_bounds(&mut self, hold: Duration, hold_bytes: usize) {
        self.hold = hold;
        self.hold_bytes = hold_bytes;
    }

    /// Bytes of messages held now.
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Call-IDs remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A message whose Call-ID is `call_id` (`None`: it has none);
    /// `starts` says it is an INVITE received from outside a dialog.
    /// What may go now is pushed on `out`; drops go to `dropped`.
    pub(crate) fn message(
        &mut self,
        now: Instant,
        m: Captured,
        call_id: Option<&[u8]>,
        starts: bool,
        out: &mut Vec<Captured>,
        dropped: &mut dyn FnMut(CaptureDrop, u64),
    ) {
        let Some(call_id) = call_id else { return };
        if let Some((key, e)) = self.entries.get_key_value(call_id) {
            let key = key.clone();
            match e.state {
                State::Export => {
                    out.push(m);
                    self.reschedule(&key, now + EXPORT_KEEP);
                }
                State::Discard => {}
                State::Pending { .. } => {
                    let n = size(&m);
                    if self.held_bytes + n > self.hold_bytes {
                        dropped(CaptureDrop::HoldFull, 1);
                    } else if let Some(Entry {
                        state: State::Pending { held, .. },
                        ..
                    }) = self.entries.get_mut(&key)
                    {
                        self.held_bytes += n;
                        held.push(m);
                    }
                }
            }
            return;
        }
        if !starts {
            return;
        }
        // A new call, perhaps: held until the core says.
        let n = size(&m);
        if self.held_bytes + n > self.hold_bytes {
            dropped(CaptureDrop::HoldFull, 1);
            return;
        }
        let key = Bytes::copy_from_slice(call_id);
        let first = m.at;
        self.held_bytes += n;
        let state = State::Pending {
            started: false,
            held: vec![m],
        };
        self.insert(key, first, first + DECIDE, state, dropped);
    }

    /// What the core said about a call.
    pub(crate) fn notice(
        &mut self,
        now: Instant,
        n: Notice,
        out: &mut Vec<Captured>,
        dropped: &mut dyn FnMut(CaptureDrop, u64),
    ) {
        match n {
            Notice::Started {
                call,
                call_id,
                emergency,
            } => {
                let key = Bytes::copy_from_slice(&call_id);
                if self.calls == CaptureCalls::Emergency {
                    let (state, keep) = if emergency {
                        (State::Export, EXPORT_KEEP)
                    } else {
                        (State::Discard, DISCARD_KEEP)
                    };
                    self.decide(key, now, state, keep, out, dropped);
                    return;
                }
                // Failed: held until its outcome, `hold` from its first
                // message at most.
                self.refs.insert(call, key.clone());
                let pending = match self.entries.get_mut(&key) {
                    Some(e) => {
                        e.call = Some(call);
                        e.emergency = emergency;
                        match &mut e.state {
                            State::Pending { started, .. } => {
                                *started = true;
                                Some(e.first)
                            }
                            _ => None,
                        }
                    }
                    None => {
                        let state = State::Pending {
                            started: true,
                            held: Vec::new(),
                        };
                        self.insert(key.clone(), now, now + self.hold, state, dropped);
                        if let Some(e) = self.entries.get_mut(&key) {
                            e.call = Some(call);
                            e.emergency = emergency;
                        }
                        None
                    }
                };
                if let Some(first) = pending {
                    self.reschedule(&key, first + self.hold);
                }
            }
            Notice::Ended { call, outcome } => {
                let Some(key) = self.refs.remove(&call) else {
                    return; // not waited for (emergency mode), or ended twice
                };
                let emergency = self.entries.get(&key).is_some_and(|e| e.emergency);
                let export = match outcome {
                    Outcome::Failed => true,
                    Outcome::Cancelled => emergency,
                    Outcome::Connected => false,
                };
                let (state, keep) = if export {
                    (State::Export, EXPORT_KEEP)
                } else {
                    (State::Discard, DISCARD_KEEP)
                };
                self.decide(key, now, state, keep, out, dropped);
            }
        }
    }

    /// Forget what is due at `now`: calls not named within [`DECIDE`]
    /// (dropped, not counted: never a call), calls with no outcome within
    /// `hold` (their messages counted `hold_expired`), decisions past
    /// their keep.
    pub(crate) fn expire(&mut self, now: Instant, dropped: &mut dyn FnMut(CaptureDrop, u64)) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.remove(&key, CaptureDrop::HoldExpired, dropped);
        }
    }

    /// Everything held is dropped (the capture stops, or its mode changed):
    /// counted `hold_expired`.
    pub(crate) fn clear(&mut self, dropped: &mut dyn FnMut(CaptureDrop, u64)) {
        let held: u64 = self
            .entries
            .values()
            .map(|e| match &e.state {
                State::Pending {
                    started: true,
                    held,
                } => held.len() as u64,
                _ => 0,
            })
            .sum();
        if held > 0 {
            dropped(CaptureDrop::HoldExpired, held);
        }
        self.entries.clear();
        self.deadlines.clear();
        self.refs.clear();
        self.held_bytes = 0;
    }

    /// Settle `key` as `state` (Export or Discard), kept `keep` from now:
    /// its held messages sent or dropped.
    fn decide(
        &mut self,
        key: Bytes,
        now: Instant,
        state: State,
        keep: Duration,
        out: &mut Vec<Captured>,
        dropped: &mut dyn FnMut(CaptureDrop, u64),
    ) {
        let export = matches!(state, State::Export);
        match self.entries.get_mut(&key) {
            Some(e) => {
                if let Some(call) = e.call.take() {
                    self.refs.remove(&call);
                }
                let old = std::mem::replace(&mut e.state, state);
                if let State::Pending { held, .. } = old {
                    self.held_bytes -= held.iter().map(size).sum::<usize>();
                    if export {
                        out.extend(held);
                    }
                }
                self.reschedule(&key, now + keep);
            }
            None => self.insert(key, now, now + keep, state, dropped),
        }
    }

    /// A new entry; at [`MAX_CALLS`], the one soonest to expire goes first.
    fn insert(
        &mut self,
        key: Bytes,
        first: Instant,
        deadline: Instant,
        state: State,
        dropped: &mut dyn FnMut(CaptureDrop, u64),
    ) {
        if self.entries.len() >= MAX_CALLS {
            if let Some((_, first)) = self.deadlines.pop_first() {
                self.remove(&first, CaptureDrop::HoldFull, dropped);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.deadlines.insert((deadline, id), key.clone());
        self.entries.insert(
            key,
            Entry {
                id,
                first,
                deadline,
                call: None,
                emergency: false,
                state,
            },
        );
    }

    /// Move `key`'s deadline.
    fn reschedule(&mut self, key: &Bytes, deadline: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        self.deadlines.remove(&(e.deadline, e.id));
        e.deadline = deadline;
        self.deadlines.insert((deadline, e.id), key.clone());
    }

    /// Take `key` out (its deadline entry already gone); a call's held
    /// messages are counted as `why`, those of a request never named a
    /// call are not.
    fn remove(&mut self, key: &Bytes, why: CaptureDrop, dropped: &mut dyn FnMut(CaptureDrop, u64)) {
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        self.deadlines.remove(&(e.deadline, e.id));
        if let Some(call) = e.call {
            self.refs.remove(&call);
        }
        if let State::Pending { started, held } = e.state {
            self.held_bytes -= held.iter().map(size).sum::<usize>();
            if started && !held.is_empty() {
                dropped(why, held.len() as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::hep::IpProto;

    fn msg(at: Instant, text: &'static str) -> Captured {
        Captured {
            at,
            proto: IpProto::Udp,
            src: "192.0.2.1:5060".parse().unwrap(),
            dst: "192.0.2.2:5060".parse().unwrap(),
            payload: Bytes::from_static(text.as_bytes()),
            received: true,
            call_id: None,
        }
    }

    #[derive(Default)]
    struct Seen {
        out: Vec<Captured>,
        dropped: Vec<(CaptureDrop, u64)>,
    }

    impl Seen {
        fn texts(&mut self) -> Vec<String> {
            self.out
                .drain(..)
                .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                .collect()
        }
    }

    fn message(s: &mut Selector, seen: &mut Seen, now: Instant, text: &'static str, id: &str) {
        let starts = text.starts_with("INVITE");
        let mut d = |why, n| seen.dropped.push((why, n));
        s.message(
            now,
            msg(now, text),
            Some(id.as_bytes()),
            starts,
            &mut seen.out,
            &mut d,
        );
    }

    fn notice(s: &mut Selector, seen: &mut Seen, now: Instant, n: Notice) {
        let mut d = |why, n| seen.dropped.push((why, n));
        s.notice(now, n, &mut seen.out, &mut d);
    }

    fn started(call: u64, id: &str, emergency: bool) -> Notice {
        Notice::Started {
            call: CallRef(call),
            call_id: Bytes::copy_from_slice(id.as_bytes()),
            emergency,
        }
    }

    fn ended(call: u64, outcome: Outcome) -> Notice {
        Notice::Ended {
            call: CallRef(call),
            outcome,
        }
    }

    #[test]
    fn emergency_calls_are_exported_from_their_first_message_and_others_not() {
        let t0 = Instant::now();
        let mut s = Selector::new(CaptureCalls::Emergency, Duration::from_secs(60), 1 << 20);
        let mut seen = Seen::default();
        message(&mut s, &mut seen, t0, "INVITE sos", "a");
        message(&mut s, &mut seen, t0, "INVITE 1234", "b");
        message(&mut s, &mut seen, t0, "SIP/2.0 100 a", "a");
        assert!(seen.out.is_empty(), "held until the core says");
        notice(&mut s, &mut seen, t0, started(1, "a", true));
        notice(&mut s, &mut seen, t0, started(2, "b", false));
        assert_eq!(seen.texts(), ["INVITE sos", "SIP/2.0 100 a"]);
        message(&mut s, &mut seen, t0, "INVITE sos", "a"); // out to the trunk
        message(&mut s, &mut seen, t0, "INVITE 1234", "b");
        message(&mut s, &mut seen, t0, "BYE", "a");
        assert_eq!(seen.texts(), ["INVITE sos", "BYE"]);
        assert_eq!(s.held_bytes(), 0);
        // A decision may come before the first message.
        notice(&mut s, &mut seen, t0, started(3, "c", true));
        message(&mut s, &mut seen, t0, "INVITE sos", "c");
        assert_eq!(seen.texts(), ["INVITE sos"]);
        // What starts no call is not exported, and an INVITE never named
        // a call is forgotten, uncounted.
        message(&mut s, &mut seen, t0, "OPTIONS", "probe");
        message(&mut s, &mut seen, t0, "INVITE junk", "d");
        let mut d = |why, n| seen.dropped.push((why, n));
        s.expire(t0 + DECIDE, &mut d);
        notice(&mut s, &mut seen, t0 + DECIDE, started(9, "x", false));
        assert!(seen.out.is_empty());
        assert!(seen.dropped.is_empty(), "{:?}", seen.dropped);
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn failed_calls_are_exported_answered_ones_not_and_waits_are_bounded() {
        let t0 = Instant::now();
        let hold = Duration::from_secs(60);
        let mut s = Selector::new(CaptureCalls::Failed, hold, 1 << 20);
        let mut seen = Seen::default();
        for (call, id) in [(1, "ok"), (2, "bad"), (3, "gone"), (4, "sos"), (5, "slow")] {
            message(&mut s, &mut seen, t0, "INVITE", id);
            notice(&mut s, &mut seen, t0, started(call, id, id == "sos"));
            message(&mut s, &mut seen, t0, "SIP/2.0 100", id);
        }
        assert!(seen.out.is_empty());
        // Past DECIDE, a started call still waits for its outcome.
        let mut d = |why, n| seen.dropped.push((why, n));
        s.expire(t0 + DECIDE, &mut d);
        let t1 = t0 + Duration::from_secs(5);
        notice(&mut s, &mut seen, t1, ended(1, Outcome::Connected));
        notice(&mut s, &mut seen, t1, ended(2, Outcome::Failed));
        notice(&mut s, &mut seen, t1, ended(3, Outcome::Cancelled));
        notice(&mut s, &mut seen, t1, ended(4, Outcome::Cancelled));
        assert_eq!(
            seen.texts(),
            ["INVITE", "SIP/2.0 100", "INVITE", "SIP/2.0 100"]
        );
        // After the outcome: the failed call's ACK goes, the others' not.
        for id in ["ok", "bad", "gone", "sos"] {
            message(&mut s, &mut seen, t1, "ACK", id);
        }
        assert_eq!(seen.texts(), ["ACK", "ACK"]);
        // A second final event changes nothing.
        notice(&mut s, &mut seen, t1, ended(2, Outcome::Connected));
        message(&mut s, &mut seen, t1, "ACK", "bad");
        assert_eq!(seen.texts(), ["ACK"]);
        // The call with no outcome within `hold`: dropped and counted.
        let mut d = |why, n| seen.dropped.push((why, n));
        s.expire(t0 + hold, &mut d);
        assert_eq!(seen.dropped, [(CaptureDrop::HoldExpired, 2)]);
        notice(&mut s, &mut seen, t0 + hold, ended(5, Outcome::Failed));
        message(&mut s, &mut seen, t0 + hold, "ACK", "slow");
        assert!(seen.out.is_empty(), "its outcome came too late: forgotten");
        assert_eq!(s.held_bytes(), 0);
        // Decisions are forgotten once kept long enough.
        let mut d = |why, n| seen.dropped.push((why, n));
        s.expire(t1 + EXPORT_KEEP + Duration::from_secs(1), &mut d);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn held_bytes_are_bounded_and_drops_counted() {
        let t0 = Instant::now();
        let one = size(&msg(t0, "INVITE"));
        let mut s = Selector::new(CaptureCalls::Failed, Duration::from_secs(60), 3 * one);
        let mut seen = Seen::default();
        for id in ["a", "b", "c", "d"] {
            message(&mut s, &mut seen, t0, "INVITE", id);
        }
        assert_eq!(seen.dropped, [(CaptureDrop::HoldFull, 1)]);
        assert_eq!(s.held_bytes(), 3 * one);
        notice(&mut s, &mut seen, t0, started(1, "a", false));
        notice(&mut s, &mut seen, t0, ended(1, Outcome::Failed));
        assert_eq!(seen.texts(), ["INVITE"]);
        assert_eq!(s.held_bytes(), 2 * one, "given back");
        let mut d = |why, n| seen.dropped.push((why, n));
        s.clear(&mut d);
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn the_call_ids_remembered_are_bounded() {
        let t0 = Instant::now();
        let mut s = Selector::new(CaptureCalls::Emergency, Duration::from_secs(60), usize::MAX);
        let mut seen = Seen::default();
        for i in 0..MAX_CALLS + 10 {
            let id = format!("c{i}");
            let mut d = |why, n| seen.dropped.push((why, n));
            s.notice(
                t0 + Duration::from_millis(i as u64),
                Notice::Started {
                    call: CallRef(i as u64),
                    call_id: Bytes::from(id),
                    emergency: true,
                },
                &mut seen.out,
                &mut d,
            );
        }
        assert_eq!(s.len(), MAX_CALLS);
        // The oldest went first.
        message(&mut s, &mut seen, t0, "BYE", "c0");
        message(&mut s, &mut seen, t0, "BYE", "c10");
        assert_eq!(seen.texts(), ["BYE"]);
    }
}
