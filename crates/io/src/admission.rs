//! Admission on the IO threads: a new request is classified and judged
//! (per-source limits, shedding) on the thread that parsed it, before it is
//! queued for the core, so a flood is answered or dropped without touching
//! the core (see [`lifeline_proxy::admission`] for the decisions).
//!
//! ```text
//!  parsed request --> class (emergency? new? in-dialog?) --> Admission::check
//!        |                                                   |       |       |
//!        |                                                 Admit  Reject   Drop
//!        |                                                   |       |       |
//!        |                 queue <---------------------------+   503 sent   counted
//!        |                   (bounded in entries and bytes)      here, with Retry-After
//!        v                                                       (and RFC 7339 oc)
//! ```
//!
//! The core is *behind*, and new non-emergency requests are shed, when its
//! queue holds more than [`SHED_ENTRIES`] inputs or [`SHED_BYTES`] bytes,
//! or the housekeeping check found it overloaded (queue, drops, a late
//! timer, the core busy more than 90 % of the time). Everything else —
//! emergency requests, responses, ACK, CANCEL, in-dialog requests — is
//! queued up to the hard bounds ([`crate::INPUT_QUEUE`] entries,
//! [`INPUT_QUEUE_BYTES`] bytes): new non-emergency work can never hold
//! more than the shedding share of the queue, so what is already in
//! progress and emergency calls always find room, and wait behind at most
//! that share.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lifeline_proxy::{Admission, Decision, Load, ProxyConfig, Refusal};
use lifeline_sip::{Edit, HeaderName, Message, MessageWriter};

use crate::stats::IoStats;

/// Queued inputs past which new non-emergency requests are shed.
pub const SHED_ENTRIES: usize = 4096;
/// Queued bytes past which new non-emergency requests are shed.
pub const SHED_BYTES: usize = 8 << 20;
/// Queued bytes past which any input is dropped (and counted).
pub const INPUT_QUEUE_BYTES: usize = 64 << 20;

/// RFC 7339: the share of its traffic (percent) a client that supports
/// overload control is asked to shed while the gateway sheds, and for how
/// long the request holds (ms) unless renewed.
const OC_LOSS_PERCENT: u32 = 50;
const OC_VALIDITY_MS: u32 = 1000;

/// What the IO thread does with a request.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Queue it for the core.
    Admit,
    /// Send this answer back to where it came from; queue nothing.
    Answer(Bytes),
    /// Drop it.
    Drop,
}

/// The admission state the IO threads share.
#[derive(Debug)]
pub(crate) struct Admit {
    decide: Mutex<Option<Admission>>,
    /// A per-source limit is configured: without one, and while not
    /// shedding, nothing can refuse a request, and it is admitted without
    /// being classified (the common case costs one atomic load).
    limited: AtomicBool,
    /// Makes the To tags of the answers sent here unique.
    tags: AtomicU64,
    tag_key: u64,
}

impl Admit {
    pub(crate) fn new() -> Self {
        // The process's own randomness (std's hasher keys) for the tags:
        // unique, not predictable from one answer to the next process.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6c6966656c696e65);
        Self {
            decide: Mutex::new(None),
            limited: AtomicBool::new(false),
            tags: AtomicU64::new(0),
            tag_key: h.finish(),
        }
    }

    /// Put `cfg`'s limits in force (at start-up and on every reload).
    pub(crate) fn configure(&self, cfg: &ProxyConfig) {
        let mut d = self.decide.lock().unwrap_or_else(|p| p.into_inner());
        let limited = match d.as_mut() {
            Some(a) => {
                a.reconfigure(cfg);
                a.per_source()
            }
            None => d.insert(Admission::new(cfg)).per_source(),
        };
        self.limited.store(limited, Ordering::Relaxed);
    }

    /// Judge request `m` from `from` at `now`, the core's queue holding
    /// `queued` inputs of `queued_bytes` bytes.
    pub(crate) fn check(
        &self,
        now: Instant,
        from: IpAddr,
        m: &Message,
        queued: usize,
        queued_bytes: usize,
        stats: &IoStats,
    ) -> Gate {
        let shedding = stats.shedding.load(Ordering::Relaxed)
            || queued >= SHED_ENTRIES
            || queued_bytes >= SHED_BYTES;
        if !shedding && !self.limited.load(Ordering::Relaxed) {
            return Gate::Admit;
        }
        let decision = {
            let mut d = self.decide.lock().unwrap_or_else(|p| p.into_inner());
            let Some(a) = d.as_mut() else {
                return Gate::Admit; // not configured yet: the core decides
            };
            let class = a.class(m, from);
            a.check(now, from, class, Load { shedding })
        };
        match decision {
            Decision::Admit => Gate::Admit,
            Decision::Drop(why) => {
                stats.refused(why, false);
                Gate::Drop
            }
            Decision::Reject { why, retry_after } => {
                stats.refused(why, true);
                match self.answer(m, why, retry_after) {
                    Some(b) => Gate::Answer(b),
                    None => Gate::Drop,
                }
            }
        }
    }

    /// 503 Service Unavailable with Retry-After (RFC 3261 §21.5.4), sent
    /// statelessly; when shedding for overload and the client said it
    /// supports overload control (`oc` in its Via), the Via returned asks it
    /// to shed its share too (RFC 7339 §5.2, the loss algorithm).
    fn answer(&self, m: &Message, why: Refusal, retry_after: u32) -> Option<Bytes> {
        let n = self.tags.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:016x}{n:08x}", self.tag_key);
        let mut w =
            MessageWriter::response_to(m, 503, "Service Unavailable", Some(tag.as_bytes())).ok()?;
        w.header(HeaderName::RetryAfter, retry_after.to_string().as_bytes())
            .ok()?;
        let out = w.finish();
        let oc_client = m.top_via().ok().is_some_and(|v| v.param("oc").is_some());
        if why != Refusal::Overload || !oc_client {
            return Some(out);
        }
        let resp = Message::parse(out.clone()).ok()?;
        let seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let params = format!(
            ";oc={OC_LOSS_PERCENT};oc-algo=\"loss\";oc-validity={OC_VALIDITY_MS};oc-seq={}.{:03}",
            seq / 1000,
            seq % 1000
        );
        let mut e = Edit::new(&resp);
        e.add_top_via_params(params.as_bytes()).ok()?;
        Some(e.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_proxy::{
        LimitsConfig, OverLimit, Peer, Rate, RouteConfig, RouteMatch, TrunkConfig,
    };

    fn admit(limits: LimitsConfig) -> Admit {
        let trunk = TrunkConfig::new("t", Peer::udp("127.0.0.1:5070".parse().unwrap()));
        let route = RouteConfig::new("r", RouteMatch::Any, &["t"]);
        let mut cfg = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), vec![trunk], vec![route]);
        cfg.limits = limits;
        let a = Admit::new();
        a.configure(&cfg);
        a
    }

    fn invite(uri: &str, via_params: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1{via_params}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <{uri}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn text(g: &Gate) -> String {
        match g {
            Gate::Answer(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_full_queue_sheds_new_calls_with_503_and_keeps_emergency_calls() {
        let a = admit(LimitsConfig::default());
        let stats = IoStats::default();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let normal = invite("sip:+442079460000@gw", "");
        assert!(matches!(
            a.check(now, ip, &normal, SHED_ENTRIES - 1, 0, &stats),
            Gate::Admit
        ));
        let shed = a.check(now, ip, &normal, SHED_ENTRIES, 0, &stats);
        let t = text(&shed);
        assert!(t.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{t}");
        assert!(t.contains("\r\nRetry-After: 5\r\n"), "{t}");
        assert!(
            !t.contains(";oc="),
            "the client did not offer overload control"
        );
        assert!(matches!(
            a.check(now, ip, &normal, 0, SHED_BYTES, &stats),
            Gate::Answer(_)
        ));
        let sos = invite("urn:service:sos", "");
        assert!(matches!(
            a.check(now, ip, &sos, SHED_ENTRIES * 8, SHED_BYTES * 4, &stats),
            Gate::Admit
        ));
        stats.shedding.store(true, Ordering::Relaxed);
        assert!(matches!(
            a.check(now, ip, &normal, 0, 0, &stats),
            Gate::Answer(_)
        ));
        assert_eq!(stats.refused_count(Refusal::Overload, true), 3);
    }

    #[test]
    fn an_overload_control_client_is_asked_to_shed_by_loss() {
        let a = admit(LimitsConfig::default());
        let stats = IoStats::default();
        stats.shedding.store(true, Ordering::Relaxed);
        let m = invite("sip:+442079460000@gw", ";oc");
        let t = text(&a.check(
            Instant::now(),
            "192.0.2.1".parse().unwrap(),
            &m,
            0,
            0,
            &stats,
        ));
        let via = t.lines().find(|l| l.starts_with("Via:")).unwrap();
        assert!(
            via.starts_with("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;oc;oc=50;oc-algo=\"loss\";oc-validity=1000;oc-seq="),
            "{via}"
        );
        // The answer still parses, and matches the client's transaction.
        let parsed = Message::parse(Bytes::from(t.clone())).unwrap();
        assert_eq!(parsed.top_via().unwrap().branch(), Some(&b"z9hG4bK-1"[..]));
    }

    #[test]
    fn over_a_source_limit_the_answer_or_silence_follows_over_limit() {
        let rate = Some(Rate { rate: 1, burst: 1 });
        let stats = IoStats::default();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let m = invite("sip:+442079460000@gw", ";oc");
        let a = admit(LimitsConfig {
            per_source: rate,
            ..LimitsConfig::default()
        });
        assert!(matches!(a.check(now, ip, &m, 0, 0, &stats), Gate::Admit));
        let t = text(&a.check(now, ip, &m, 0, 0, &stats));
        assert!(t.contains("\r\nRetry-After: 1\r\n"), "{t}");
        assert!(!t.contains(";oc="), "a source limit is not overload: {t}");
        let a = admit(LimitsConfig {
            per_source: rate,
            over_limit: OverLimit::Drop,
            ..LimitsConfig::default()
        });
        assert!(matches!(a.check(now, ip, &m, 0, 0, &stats), Gate::Admit));
        assert!(matches!(a.check(now, ip, &m, 0, 0, &stats), Gate::Drop));
        assert_eq!(stats.refused_count(Refusal::SourceRate, true), 1);
        assert_eq!(stats.refused_count(Refusal::SourceRate, false), 1);
    }
}
