//! OPTIONS probes: who they come from, how they are built and scheduled,
//! and how answers are matched to them by branch (RFC 3261 §8.1.1.7,
//! §17.1.3) or time out.

use std::cmp::Reverse;
use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;
use lifeline_sip::{Error, HeaderName, Message, MessageWriter};

use crate::{state, Health, Reason, Timer, TimerKind, TrunkId};

/// Where probes come from: the gateway's own identity on the trunk side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The Via value without branch, e.g. `SIP/2.0/UDP 192.0.2.1:5060`.
    pub via: String,
    /// The From URI, e.g. `sip:lifeline@192.0.2.1`.
    pub from_uri: String,
}

/// An OPTIONS probe to send to a trunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The trunk to send it to (the gateway knows its address and transport).
    pub trunk: TrunkId,
    /// The whole SIP request.
    pub payload: Bytes,
}

/// A probe sent and not yet answered or timed out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    seq: u32,
    /// 128 random bits, in the branch, From tag and Call-ID: an answer
    /// counts only if it carries them, so it cannot be forged without
    /// seeing the probe.
    nonce: u128,
    sent: Instant,
}

const BRANCH_PREFIX: &[u8] = b"z9hG4bK-lh";

impl Health {
    /// Offer a response to the checker. Returns `true` if it answers one of
    /// its probes (the caller should not pass it on), `false` otherwise.
    pub fn handle_response(&mut self, now: Instant, msg: &Message) -> bool {
        let Some(code) = msg.status() else {
            return false;
        };
        let Some((trunk, seq, nonce)) = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .and_then(parse_branch)
        else {
            return false;
        };
        let Some(t) = self.trunks.get_mut(trunk as usize) else {
            return false;
        };
        if code < 200 {
            return true; // provisional: keep waiting for the final response
        }
        let Some(pos) = t
            .outstanding
            .iter()
            .position(|p| p.seq == seq && p.nonce == nonce)
        else {
            return true; // late (already timed out) or forged: ours, but no evidence
        };
        let Some(probe) = t.outstanding.remove(pos) else {
            return true;
        };
        t.rtt.record(now.saturating_duration_since(probe.sent));
        t.stats.probes_answered += 1;
        let alive = t.cfg.alive.is_alive(code);
        let reason = if alive {
            Reason::ProbeAnswered(code)
        } else {
            Reason::ProbeRejected(code)
        };
        self.evidence(
            now,
            TrunkId(trunk),
            state::Result {
                success: alive,
                live: false,
                weak: false,
            },
            reason,
        );
        true
    }

    /// The trunk a response answers, if its branch is one of this checker's
    /// probes' (whether or not the probe is still outstanding): the caller
    /// checks it came from that trunk before offering it to
    /// [`handle_response`](Self::handle_response).
    pub fn probe_trunk(&self, msg: &Message) -> Option<TrunkId> {
        msg.status()?;
        self.probe_trunk_of_branch(msg.top_via().ok()?.branch()?)
    }

    /// [`probe_trunk`](Self::probe_trunk) for a response whose top Via
    /// branch is `branch`, for a caller that has parsed that Via already.
    pub fn probe_trunk_of_branch(&self, branch: &[u8]) -> Option<TrunkId> {
        let (trunk, _, _) = parse_branch(branch)?;
        (self.trunks.len() > trunk as usize).then_some(TrunkId(trunk))
    }

    /// The trunk's latest outstanding probe failed at once (a transport
    /// error answered it): it is no longer outstanding. Its seq, if there
    /// was one.
    pub(crate) fn fail_latest_probe(&mut self, id: TrunkId) -> Option<u32> {
        let t = self.trunks.get_mut(id.index())?;
        t.outstanding.pop_back().map(|p| p.seq)
    }

    pub(crate) fn schedule_probe(&mut self, id: TrunkId, at: Instant) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        if !t.cfg.enabled || t.next_probe.is_some_and(|n| n <= at) {
            return;
        }
        t.next_probe = Some(at);
        self.timers.push(Reverse(Timer {
            at,
            trunk: id.0,
            kind: TimerKind::Send,
        }));
    }

    pub(crate) fn send_probe(&mut self, now: Instant, id: TrunkId, due: Instant) {
        let nonce = self.rng.token();
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        if t.next_probe != Some(due) {
            return; // superseded by an earlier probe
        }
        t.seq = t.seq.wrapping_add(1);
        let seq = t.seq;
        let Ok(payload) = build_probe(&mut self.scratch, &self.local, &t.target, id, seq, nonce)
        else {
            return; // checked in add_trunk; cannot fail for the same inputs
        };
        t.outstanding.push_back(Probe {
            seq,
            nonce,
            sent: now,
        });
        t.stats.probes_sent += 1;
        // Keep the cadence, but never fire a burst to catch up after a stall.
        let mut next = due + t.cfg.interval;
        if next <= now {
            next = now + t.cfg.interval;
        }
        t.next_probe = Some(next);
        let deadline = now + t.cfg.timeout;
        self.timers.push(Reverse(Timer {
            at: deadline,
            trunk: id.0,
            kind: TimerKind::ProbeTimeout(seq),
        }));
        self.timers.push(Reverse(Timer {
            at: next,
            trunk: id.0,
            kind: TimerKind::Send,
        }));
        self.transmits.push_back(Transmit { trunk: id, payload });
    }

    pub(crate) fn probe_deadline(&mut self, now: Instant, id: TrunkId, seq: u32) {
        let Some(t) = self.trunks.get_mut(id.index()) else {
            return;
        };
        let Some(pos) = t.outstanding.iter().position(|p| p.seq == seq) else {
            return; // answered in time
        };
        t.outstanding.remove(pos);
        t.stats.probe_timeouts += 1;
        self.evidence(
            now,
            id,
            state::Result {
                success: false,
                live: false,
                weak: false,
            },
            Reason::ProbeTimeout,
        );
    }
}

pub(crate) fn build_probe(
    scratch: &mut String,
    local: &Local,
    target: &str,
    id: TrunkId,
    seq: u32,
    nonce: u128,
) -> Result<Bytes, Error> {
    let mut w = MessageWriter::request("OPTIONS", target.as_bytes())?;
    let mut value = |f: &mut dyn FnMut(&mut String)| {
        scratch.clear();
        f(scratch);
        scratch.as_bytes().to_vec()
    };
    let via = value(&mut |s| {
        let _ = write!(
            s,
            "{};branch=z9hG4bK-lh{}.{}.{:032x}",
            local.via, id.0, seq, nonce
        );
    });
    let from = value(&mut |s| {
        let _ = write!(s, "<{}>;tag=lh{:032x}", local.from_uri, nonce);
    });
    let to = value(&mut |s| {
        let _ = write!(s, "<{target}>");
    });
    let call_id = value(&mut |s| {
        let _ = write!(s, "lh{}.{}.{:032x}@lifeline", id.0, seq, nonce);
    });
    let cseq = value(&mut |s| {
        let _ = write!(s, "{} OPTIONS", seq.max(1));
    });
    w.header(HeaderName::Via, &via)?;
    w.header(HeaderName::MaxForwards, b"70")?;
    w.header(HeaderName::From, &from)?;
    w.header(HeaderName::To, &to)?;
    w.header(HeaderName::CallId, &call_id)?;
    w.header(HeaderName::CSeq, &cseq)?;
    Ok(w.finish())
}

/// `z9hG4bK-lh<trunk>.<seq>.<nonce: 32 hex digits>` -> (trunk, seq, nonce).
fn parse_branch(branch: &[u8]) -> Option<(u32, u32, u128)> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let text = std::str::from_utf8(rest).ok()?;
    let mut parts = text.split('.');
    let trunk = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nonce = parts.next()?;
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let nonce = u128::from_str_radix(nonce, 16).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((trunk, seq, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_round_trip() {
        assert_eq!(
            parse_branch(b"z9hG4bK-lh3.17.0000000000000000000000000000abcd"),
            Some((3, 17, 0xabcd))
        );
        assert_eq!(
            parse_branch(b"z9hG4bK-lh3.17.0000abcd"),
            None,
            "a nonce is 128 bits"
        );
        assert_eq!(parse_branch(b"z9hG4bK-lh3.17"), None);
        assert_eq!(parse_branch(b"z9hG4bK-lh3.17.1.2"), None);
        assert_eq!(parse_branch(b"z9hG4bKother"), None);
    }
}
