//! What a UAS answers, with no IO: the drivers ([`crate::Uas`], the vnet
//! task) feed it what arrives and send what it returns.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::Transport;
use lifeline_sip::{Message, MessageWriter};

/// Retransmission base interval of a 2xx awaiting its ACK (RFC 3261 T1).
pub const T1: Duration = Duration::from_millis(500);
/// Cap of the doubling retransmission interval (T2).
pub const T2: Duration = Duration::from_secs(4);
/// How long a 2xx is retransmitted without an ACK (64 × T1), and how long
/// the answers to an INVITE are kept for its retransmissions.
const LINGER: Duration = Duration::from_secs(32);

/// How a UAS behaves; [`crate::Uas::set_mode`] changes it at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// INVITE: 100, 180 and 200 at once. Every other request but ACK: 200.
    Answer,
    /// INVITE: 100 and 180 at once, the 200 after this long; a CANCEL in
    /// the meantime gets 200 and the INVITE 487.
    Ring(Duration),
    /// Nothing is answered, OPTIONS neither, as a hung process: what was
    /// arriving is lost; answers already owed go out when it wakes.
    Hang,
    /// INVITE: this final status (a 503, a 486) and nothing before it.
    Reject(u16),
    /// INVITE: 100 Trying, then nothing; OPTIONS still get 200 (the
    /// process is alive, its call handling is stuck).
    Stall,
}

/// What a UAS saw; counters are of new requests (retransmissions apart).
#[derive(Debug, Default)]
pub struct UasStats {
    pub invites: AtomicU64,
    pub acks: AtomicU64,
    pub byes: AtomicU64,
    pub cancels: AtomicU64,
    pub options: AtomicU64,
    /// 2xx sent again for want of an ACK.
    pub resent: AtomicU64,
    /// TCP connections accepted, and closed by the other end.
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    /// Every request, in arrival order: (transport, method).
    seen: Mutex<Vec<(Transport, String)>>,
    /// The last [`KEPT_REQUESTS`] requests as they arrived.
    requests: Mutex<VecDeque<Bytes>>,
}

/// How many requests a UAS keeps whole ([`UasStats::requests`]).
pub const KEPT_REQUESTS: usize = 64;

impl UasStats {
    /// Every request so far, in arrival order: (transport, method).
    pub fn seen(&self) -> Vec<(Transport, String)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last [`KEPT_REQUESTS`] requests, oldest first, byte for byte as
    /// they arrived (retransmissions too).
    pub fn requests(&self) -> Vec<Bytes> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One message to send: to whom, over what.
#[derive(Clone, Debug)]
pub struct Out {
    pub to: SocketAddr,
    pub transport: Transport,
    pub bytes: Bytes,
}

/// A 200 waiting for the ringing to end.
#[derive(Debug)]
struct Ringing {
    due: Instant,
    call_id: Vec<u8>,
    invite: Message,
    ok: Out,
}

/// A 2xx waiting for its ACK.
#[derive(Debug)]
struct Unacked {
    ok: Out,
    next: Instant,
    interval: Duration,
    until: Instant,
}

/// A UAS as a state machine: [`Answerer::on_message`] for what arrives,
/// [`Answerer::poll`] when [`Answerer::next_due`] comes.
#[derive(Debug)]
pub struct Answerer {
    /// Where it says it is (its Contact).
    me: SocketAddr,
    tag: Vec<u8>,
    mode: Mode,
    retransmit_2xx: bool,
    /// What each INVITE branch was answered, for its retransmissions.
    answered: HashMap<Vec<u8>, (Instant, Vec<Out>)>,
    ringing: Vec<Ringing>,
    unacked: HashMap<Vec<u8>, Unacked>,
}

impl Answerer {
    /// A UAS at `me`, putting `tag` in its To tags, behaving as `mode`;
    /// with `retransmit_2xx`, a 2xx is sent again (T1 doubling to T2) until
    /// its ACK arrives, for 64 × T1 at most.
    pub fn new(me: SocketAddr, tag: &str, mode: Mode, retransmit_2xx: bool) -> Self {
        Self {
            me,
            tag: tag.as_bytes().to_vec(),
            mode,
            retransmit_2xx,
            answered: HashMap::new(),
            ringing: Vec::new(),
            unacked: HashMap::new(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Forget every call, as a process that died and was started again.
    pub fn forget(&mut self) {
        self.answered.clear();
        self.ringing.clear();
        self.unacked.clear();
    }

    /// When [`Answerer::poll`] has something to send, if ever.
    pub fn next_due(&self) -> Option<Instant> {
        let ring = self.ringing.iter().map(|r| r.due);
        let resend = self.unacked.values().map(|u| u.next);
        ring.chain(resend).min()
    }

    /// What a message arriving at `now` from `from` is answered with.
    pub fn on_message(
        &mut self,
        now: Instant,
        data: Bytes,
        from: SocketAddr,
        transport: Transport,
        stats: &UasStats,
    ) -> Vec<Out> {
        if self.mode == Mode::Hang {
            return vec![];
        }
        let Ok(m) = Message::parse(data) else {
            return vec![];
        };
        let Some(method) = m.method_bytes() else {
            return vec![]; // a response: a UAS sends none of its own requests
        };
        let method = String::from_utf8_lossy(method).into_owned();
        stats
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((transport, method.clone()));
        {
            let mut kept = stats
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if kept.len() == KEPT_REQUESTS {
                kept.pop_front();
            }
            kept.push_back(m.as_bytes().clone());
        }
        let out = |bytes: Bytes| Out {
            to: from,
            transport,
            bytes,
        };
        let call_id = m.call_id().unwrap_or_default().to_vec();
        match method.as_str() {
            "INVITE" => {
                let branch = m
                    .top_via()
                    .ok()
                    .and_then(|v| v.branch())
                    .unwrap_or_default()
                    .to_vec();
                if let Some((_, sent)) = self.answered.get(&branch) {
                    return sent.clone(); // a retransmission
                }
                bump(&stats.invites);
                let codes = match self.mode {
                    Mode::Answer => vec![100, 180, 200],
                    Mode::Ring(_) => vec![100, 180],
                    Mode::Stall => vec![100],
                    Mode::Reject(code) => vec![code],
                    Mode::Hang => vec![],
                };
                let sent: Vec<Out> = codes.iter().map(|&c| out(self.reply(&m, c))).collect();
                if let Mode::Ring(ring) = self.mode {
                    self.ringing.push(Ringing {
                        due: now + ring,
                        call_id: call_id.clone(),
                        ok: out(self.reply(&m, 200)),
                        invite: m,
                    });
                } else if let Some(ok) = sent.iter().find(|o| o.bytes.starts_with(b"SIP/2.0 2")) {
                    self.await_ack(now, call_id, ok.clone());
                }
                self.answered.insert(branch, (now, sent.clone()));
                sent
            }
            "ACK" => {
                if self.unacked.remove(&call_id).is_some() {
                    bump(&stats.acks);
                }
                vec![]
            }
            "CANCEL" => {
                bump(&stats.cancels);
                let mut sent = vec![out(self.reply(&m, 200))];
                if let Some(i) = self.ringing.iter().position(|r| r.call_id == call_id) {
                    let r = self.ringing.swap_remove(i);
                    sent.push(out(self.reply(&r.invite, 487)));
                }
                sent
            }
            other => {
                match other {
                    "BYE" => bump(&stats.byes),
                    "OPTIONS" => bump(&stats.options),
                    _ => {}
                }
                vec![out(self.reply(&m, 200))]
            }
        }
    }

    /// What is due at `now`: answers whose ringing is over, 2xx to send
    /// again. A hung UAS sends nothing (and owes it still).
    pub fn poll(&mut self, now: Instant, stats: &UasStats) -> Vec<Out> {
        if self.mode == Mode::Hang {
            return vec![];
        }
        let mut sent = Vec::new();
        let mut i = 0;
        while i < self.ringing.len() {
            if self.ringing[i].due <= now {
                let r = self.ringing.swap_remove(i);
                sent.push(r.ok.clone());
                self.await_ack(now, r.call_id, r.ok);
            } else {
                i += 1;
            }
        }
        self.unacked.retain(|_, u| {
            if u.next <= now {
                sent.push(u.ok.clone());
                bump(&stats.resent);
                u.interval = (u.interval * 2).min(T2);
                u.next = now + u.interval;
            }
            u.until > now
        });
        self.answered
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < LINGER);
        sent
    }

    fn await_ack(&mut self, now: Instant, call_id: Vec<u8>, ok: Out) {
        if self.retransmit_2xx && ok.transport == Transport::Udp {
            self.unacked.insert(
                call_id,
                Unacked {
                    ok,
                    next: now + T1,
                    interval: T1,
                    until: now + LINGER,
                },
            );
        }
    }

    /// The response `code` to `req`: for 101 to 299, with the Record-Route
    /// echoed and a Contact (RFC 3261 §12.1.1).
    fn reply(&self, req: &Message, code: u16) -> Bytes {
        let contact = format!("<sip:uas@{}>", self.me);
        MessageWriter::dialog_response_to(req, code, reason(code), &self.tag, contact.as_bytes())
            .map(MessageWriter::finish)
            .unwrap_or_default()
    }
}

/// The reason phrase the kit's UAS gives a status.
fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "127.0.0.1:5060";

    fn invite(branch: &str, call_id: &str) -> Bytes {
        Bytes::from(format!(
            "INVITE sip:999@uas SIP/2.0\r\nVia: SIP/2.0/UDP {GW};branch=z9hG4bK{branch}\r\nRecord-Route: <sip:{GW};lr>\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:999@uas>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn statuses(out: &[Out]) -> Vec<u16> {
        out.iter()
            .map(|o| Message::parse(o.bytes.clone()).unwrap().status().unwrap())
            .collect()
    }

    fn uas(mode: Mode, resend: bool) -> Answerer {
        Answerer::new("127.0.0.2:5060".parse().unwrap(), "uas", mode, resend)
    }

    #[test]
    fn rings_then_answers_and_a_cancel_ends_the_ringing_with_487() {
        let (t0, s, gw) = (Instant::now(), UasStats::default(), GW.parse().unwrap());
        let mut a = uas(Mode::Ring(Duration::from_millis(300)), false);
        let first = a.on_message(t0, invite("1", "c1"), gw, Transport::Udp, &s);
        assert_eq!(statuses(&first), [100, 180]);
        let ok = Message::parse(first[1].bytes.clone()).unwrap();
        assert!(ok.header(lifeline_sip::HeaderName::RecordRoute).is_some());
        assert_eq!(a.next_due(), Some(t0 + Duration::from_millis(300)));
        assert!(a.poll(t0 + Duration::from_millis(299), &s).is_empty());
        assert_eq!(
            statuses(&a.poll(t0 + Duration::from_millis(300), &s)),
            [200]
        );

        a.on_message(t0, invite("2", "c2"), gw, Transport::Udp, &s);
        let cancel = String::from_utf8(invite("2", "c2").to_vec())
            .unwrap()
            .replace("INVITE", "CANCEL");
        let sent = a.on_message(t0, Bytes::from(cancel), gw, Transport::Udp, &s);
        assert_eq!(statuses(&sent), [200, 487]);
        assert!(sent[1].bytes.windows(12).any(|w| w == b"CSeq: 1 INVI"));
        assert_eq!(a.next_due(), None, "no 200 after the 487");
        assert_eq!(s.invites.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_retransmitted_invite_gets_the_same_answers_and_is_counted_once() {
        let (t0, s, gw) = (Instant::now(), UasStats::default(), GW.parse().unwrap());
        let mut a = uas(Mode::Answer, false);
        let first = a.on_message(t0, invite("1", "c1"), gw, Transport::Udp, &s);
        let again = a.on_message(t0, invite("1", "c1"), gw, Transport::Udp, &s);
        assert_eq!(statuses(&first), [100, 180, 200]);
        assert_eq!(
            first.iter().map(|o| &o.bytes).collect::<Vec<_>>(),
            again.iter().map(|o| &o.bytes).collect::<Vec<_>>()
        );
        assert_eq!(s.invites.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_2xx_is_sent_again_until_its_ack() {
        let (t0, s, gw) = (Instant::now(), UasStats::default(), GW.parse().unwrap());
        let mut a = uas(Mode::Answer, true);
        a.on_message(t0, invite("1", "c1"), gw, Transport::Udp, &s);
        assert_eq!(statuses(&a.poll(t0 + T1, &s)), [200]);
        assert_eq!(a.next_due(), Some(t0 + T1 + 2 * T1), "doubled");
        let ack = String::from_utf8(invite("1", "c1").to_vec())
            .unwrap()
            .replace("INVITE", "ACK");
        a.on_message(t0 + T1, Bytes::from(ack), gw, Transport::Udp, &s);
        assert_eq!(a.next_due(), None);
        assert_eq!(s.acks.load(Ordering::Relaxed), 1);
        assert_eq!(s.resent.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn stall_hang_and_reject() {
        let (t0, s, gw) = (Instant::now(), UasStats::default(), GW.parse().unwrap());
        let mut a = uas(Mode::Stall, false);
        assert_eq!(
            statuses(&a.on_message(t0, invite("1", "c1"), gw, Transport::Udp, &s)),
            [100]
        );
        a.set_mode(Mode::Reject(503));
        assert_eq!(
            statuses(&a.on_message(t0, invite("2", "c2"), gw, Transport::Udp, &s)),
            [503]
        );
        a.set_mode(Mode::Hang);
        assert!(a
            .on_message(t0, invite("3", "c3"), gw, Transport::Udp, &s)
            .is_empty());
        assert_eq!(
            s.invites.load(Ordering::Relaxed),
            2,
            "a hung UAS saw nothing"
        );
    }
}
