//! Admission: which new requests the gateway takes on when it is flooded,
//! decided before a request costs anything.
//!
//! ```text
//!  request --> class_of --> Other (response side, ACK, CANCEL, in-dialog)  --> admit
//!                 |
//!                 +-------> Emergency --> per_source_emergency bucket --+--> admit
//!                 |                        (never shed, never capped)   +--> over_limit
//!                 |
//!                 +-------> New ------> shedding? (core behind) ------------> 503
//!                                       per_source bucket ---------+--> admit
//!                                                                  +--> over_limit
//! ```
//!
//! The gateway's IO threads run [`Admission::check`] on every parsed
//! request before it is queued for the core, so a flood of new calls is
//! answered (503 with Retry-After, RFC 3261 §21.5.4) or dropped there and
//! never reaches the core, let alone a trunk. The core then applies the
//! state caps (`max_calls`, `max_transactions`: see
//! [`LimitsConfig`]) to what was admitted. Emergency requests are counted
//! only against their own, higher per-source allowance: no global limit,
//! no shedding and no cap refuses them.
//!
//! Like every decision in this crate it reads no clock: time is the `now`
//! argument, and the buckets are tested in virtual time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use lifeline_sip::{Message, Method};

use crate::classify::classify;
use crate::config::{EmergencyConfig, ProxyConfig};
use ipnet::IpNet;

/// A token bucket's shape: `rate` tokens a second, at most `burst` saved
/// up (a source idle for a while may send `burst` at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub rate: u32,
    /// Most tokens held.
    pub burst: u32,
}

/// What a request over its source's limit gets (`limits.over_limit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OverLimit {
    /// 503 Service Unavailable with Retry-After.
    #[default]
    Reject,
    /// Nothing (counted): the sender's own timers run out.
    Drop,
}

impl OverLimit {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Drop => "drop",
        }
    }
}

/// Per-source rate limits and state caps (`limits:`). Every limit absent
/// means no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// New non-emergency requests a second from one source (an IPv4
    /// address, or an IPv6 /64).
    pub per_source: Option<Rate>,
    /// New emergency requests a second from one source: the only limit an
    /// emergency call is ever counted against.
    pub per_source_emergency: Option<Rate>,
    /// What a request over a per-source limit gets.
    pub over_limit: OverLimit,
    /// Calls in progress (being set up or forwarded) past which new
    /// non-emergency calls are refused with 503; the last tenth is kept for
    /// emergency calls, which are never refused by it.
    pub max_calls: Option<u32>,
    /// Transactions (server and client) past which new non-emergency
    /// requests are refused with 503, with the same reserve.
    pub max_transactions: Option<u32>,
}

impl LimitsConfig {
    /// Where a cap of `max` starts refusing non-emergency work: a tenth
    /// (at least one) is kept for emergency calls.
    pub fn non_emergency_ceiling(max: u32) -> u32 {
        max - (max / 10).max(1).min(max)
    }
}

/// What kind of request a message is, for admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// A response, an ACK or CANCEL, or a request inside a dialog (a To
    /// tag): part of work already taken on, always admitted.
    Other,
    /// A new request outside a dialog that is not an emergency call.
    New,
    /// A new emergency request (an emergency number, `urn:service:sos`,
    /// or `Resource-Priority: esnet.*` from a trusted source).
    Emergency,
}

/// The class of `m` from a source that is (or is not) `trusted`.
pub fn class_of(m: &Message, trusted: bool, emergency: &EmergencyConfig) -> Class {
    if !m.is_request() {
        return Class::Other;
    }
    if let Some(Method::Ack | Method::Cancel) = m.method() {
        return Class::Other;
    }
    if m.to().ok().and_then(|t| t.tag()).is_some() {
        return Class::Other;
    }
    if classify(m, trusted, emergency).is_some() {
        Class::Emergency
    } else {
        Class::New
    }
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Its source sent new requests faster than `per_source` allows.
    SourceRate,
    /// Its source sent emergency requests faster than
    /// `per_source_emergency` allows.
    EmergencySourceRate,
    /// The gateway is behind (its queue, core or loop): new non-emergency
    /// requests are shed first.
    Overload,
    /// `max_calls` calls are in progress.
    MaxCalls,
    /// `max_transactions` transactions are live.
    MaxTransactions,
}

impl Refusal {
    /// Name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceRate => "source_rate",
            Self::EmergencySourceRate => "emergency_source_rate",
            Self::Overload => "overload",
            Self::MaxCalls => "max_calls",
            Self::MaxTransactions => "max_transactions",
        }
    }

    /// Every refusal, for metrics that list them all from the start.
    pub const ALL: [Refusal; 5] = [
        Self::SourceRate,
        Self::EmergencySourceRate,
        Self::Overload,
        Self::MaxCalls,
        Self::MaxTransactions,
    ];
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Take it.
    Admit,
    /// Answer 503 with `Retry-After: retry_after` (seconds).
    Reject {
        /// Why.
        why: Refusal,
        /// Seconds the sender should wait.
        retry_after: u32,
    },
    /// Drop it (counted).
    Drop(Refusal),
}

/// One source's bucket: tokens as of `at`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The key a source is limited under: the IPv4 address, or the /64 of an
/// IPv6 one (a host on IPv6 usually holds a whole /64). IPv4-mapped IPv6
/// counts as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Sources tracked per bucket table before idle ones are swept, and past
/// which any further new source shares one bucket (a flood from spoofed
/// addresses costs a bounded table, not memory per address).
pub const MAX_SOURCES: usize = 65_536;

/// Token buckets by source, bounded in size.
#[derive(Debug)]
struct Buckets {
    rate: Rate,
    by_source: HashMap<IpAddr, Bucket>,
    /// The one bucket every source beyond [`MAX_SOURCES`] shares.
    overflow: Option<Bucket>,
    max_sources: usize,
}

impl Buckets {
    fn new(rate: Rate, max_sources: usize) -> Self {
        Self {
            rate,
            by_source: HashMap::new(),
            overflow: None,
            max_sources,
        }
    }

    /// Take a token for `source` at `now`: `Ok` if there was one, else the
    /// time until there will be.
    fn take(&mut self, now: Instant, source: IpAddr) -> Result<(), Duration> {
        let Rate { rate, burst } = self.rate;
        let full = Bucket {
            tokens: f64::from(burst),
            at: now,
        };
        if !self.by_source.contains_key(&source) && self.by_source.len() >= self.max_sources {
            self.sweep(now);
        }
        let bucket =
            if self.by_source.len() < self.max_sources || self.by_source.contains_key(&source) {
                self.by_source.entry(source).or_insert(full)
            } else {
                self.overflow.get_or_insert(full)
            };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate == 0 {
            Err(Duration::MAX)
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / f64::from(rate),
            ))
        }
    }

    /// Forget the sources whose buckets have refilled: they are as if
    /// never seen.
    fn sweep(&mut self, now: Instant) {
        let Rate { rate, burst } = self.rate;
        self.by_source.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * f64::from(rate) < f64::from(burst)
        });
    }

    fn len(&self) -> usize {
        self.by_source.len()
    }
}

/// What the IO side knows of the core's load when it asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// The core is behind: new non-emergency requests are shed.
    pub shedding: bool,
}

/// The admission decision for new requests: per-source token buckets and
/// shedding. One per gateway, shared by its IO threads (behind a lock;
/// each check is a hash lookup and a little arithmetic).
#[derive(Debug)]
pub struct Admission {
    limits: LimitsConfig,
    emergency: EmergencyConfig,
    trusted: Vec<IpNet>,
    retry_after: u32,
    normal: Option<Buckets>,
    urgent: Option<Buckets>,
}

impl Admission {
    /// Admission for `cfg`.
    pub fn new(cfg: &ProxyConfig) -> Self {
        let mut a = Self {
            limits: LimitsConfig::default(),
            emergency: EmergencyConfig::default(),
            trusted: Vec::new(),
            retry_after: 5,
            normal: None,
            urgent: None,
        };
        a.reconfigure(cfg);
        a
    }

    /// Take a new configuration (a reload). Buckets whose rate did not
    /// change keep their sources' state.
    pub fn reconfigure(&mut self, cfg: &ProxyConfig) {
        let keep = |old: Option<Buckets>, rate: Option<Rate>| match (old, rate) {
            (Some(b), Some(r)) if b.rate == r => Some(b),
            (_, Some(r)) => Some(Buckets::new(r, MAX_SOURCES)),
            (_, None) => None,
        };
        self.normal = keep(self.normal.take(), cfg.limits.per_source);
        self.urgent = keep(self.urgent.take(), cfg.limits.per_source_emergency);
        self.limits = cfg.limits.clone();
        self.emergency = cfg.emergency.clone();
        self.trusted = cfg.access.trusted.clone();
        self.retry_after = cfg.all_failed.retry_after.unwrap_or(5).max(1);
    }

    /// The class of `m` from `from`, as this admission sees it.
    pub fn class(&self, m: &Message, from: IpAddr) -> Class {
        let ip = from.to_canonical();
        let trusted = self.trusted.iter().any(|p| p.contains(&ip));
        class_of(m, trusted, &self.emergency)
    }

    /// Whether to take a request of `class` from `from` at `now`, with the
    /// core under `load`.
    pub fn check(&mut self, now: Instant, from: IpAddr, class: Class, load: Load) -> Decision {
        let (buckets, why) = match class {
            Class::Other => return Decision::Admit,
            Class::Emergency => (self.urgent.as_mut(), Refusal::EmergencySourceRate),
            Class::New => {
                if load.shedding {
                    return Decision::Reject {
                        why: Refusal::Overload,
                        retry_after: self.retry_after,
                    };
                }
                (self.normal.as_mut(), Refusal::SourceRate)
            }
        };
        let Some(buckets) = buckets else {
            return Decision::Admit;
        };
        match buckets.take(now, source_key(from)) {
            Ok(()) => Decision::Admit,
            Err(wait) => match self.limits.over_limit {
                OverLimit::Drop => Decision::Drop(why),
                OverLimit::Reject => Decision::Reject {
                    why,
                    // Whole seconds until a token (rounded up), at least one.
                    retry_after: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
                        .clamp(1, 3600) as u32,
                },
            },
        }
    }

    /// Whether a per-source limit is set (without one, only shedding can
    /// refuse a request).
    pub fn per_source(&self) -> bool {
        self.normal.is_some() || self.urgent.is_some()
    }

    /// Sources tracked now (both tables).
    pub fn sources(&self) -> usize {
        self.normal.as_ref().map_or(0, Buckets::len) + self.urgent.as_ref().map_or(0, Buckets::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Peer, RouteConfig, TrunkConfig};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn cfg(limits: LimitsConfig) -> ProxyConfig {
        let trunk = TrunkConfig::new("t", Peer::udp("127.0.0.1:5070".parse().unwrap()));
        let route = RouteConfig::new("r", crate::RouteMatch::Any, &["t"]);
        let mut c = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), vec![trunk], vec![route]);
        c.limits = limits;
        c
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    const NO_LOAD: Load = Load { shedding: false };

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_period() {
        let mut a = Admission::new(&cfg(LimitsConfig {
            per_source: Some(Rate { rate: 10, burst: 3 }),
            ..LimitsConfig::default()
        }));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.check(t0, ip(1), Class::New, NO_LOAD), Decision::Admit);
        }
        assert_eq!(
            a.check(t0, ip(1), Class::New, NO_LOAD),
            Decision::Reject {
                why: Refusal::SourceRate,
                retry_after: 1
            }
        );
        // Another source has its own bucket.
        assert_eq!(a.check(t0, ip(2), Class::New, NO_LOAD), Decision::Admit);
        // One token every 100 ms: not at 99 ms, at 100 ms, and only one.
        let t = t0 + Duration::from_millis(99);
        assert_ne!(a.check(t, ip(1), Class::New, NO_LOAD), Decision::Admit);
        let t = t0 + Duration::from_millis(100);
        assert_eq!(a.check(t, ip(1), Class::New, NO_LOAD), Decision::Admit);
        assert_ne!(a.check(t, ip(1), Class::New, NO_LOAD), Decision::Admit);
        // Idle long enough, the bucket is full again (and no fuller).
        let t = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(a.check(t, ip(1), Class::New, NO_LOAD), Decision::Admit);
        }
        assert_ne!(a.check(t, ip(1), Class::New, NO_LOAD), Decision::Admit);
    }

    #[test]
    fn emergency_requests_count_only_against_their_own_allowance() {
        let mut a = Admission::new(&cfg(LimitsConfig {
            per_source: Some(Rate { rate: 1, burst: 1 }),
            per_source_emergency: Some(Rate { rate: 1, burst: 2 }),
            over_limit: OverLimit::Drop,
            ..LimitsConfig::default()
        }));
        let t0 = Instant::now();
        assert_eq!(a.check(t0, ip(1), Class::New, NO_LOAD), Decision::Admit);
        assert_eq!(
            a.check(t0, ip(1), Class::New, NO_LOAD),
            Decision::Drop(Refusal::SourceRate)
        );
        // The same source's emergency calls are untouched by that, and by
        // shedding; over their own allowance they get `over_limit`.
        let shedding = Load { shedding: true };
        assert_eq!(
            a.check(t0, ip(1), Class::Emergency, shedding),
            Decision::Admit
        );
        assert_eq!(
            a.check(t0, ip(1), Class::Emergency, shedding),
            Decision::Admit
        );
        assert_eq!(
            a.check(t0, ip(1), Class::Emergency, NO_LOAD),
            Decision::Drop(Refusal::EmergencySourceRate)
        );
        // Responses, ACK, CANCEL and in-dialog requests are never limited.
        for _ in 0..100 {
            assert_eq!(a.check(t0, ip(1), Class::Other, shedding), Decision::Admit);
        }
    }

    #[test]
    fn shedding_refuses_new_requests_first_whatever_the_buckets_say() {
        let mut a = Admission::new(&cfg(LimitsConfig::default()));
        let t0 = Instant::now();
        let shedding = Load { shedding: true };
        assert_eq!(
            a.check(t0, ip(1), Class::New, shedding),
            Decision::Reject {
                why: Refusal::Overload,
                retry_after: 5
            }
        );
        assert_eq!(
            a.check(t0, ip(1), Class::Emergency, shedding),
            Decision::Admit
        );
        assert_eq!(a.check(t0, ip(1), Class::New, NO_LOAD), Decision::Admit);
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
        let mut a = Admission::new(&cfg(LimitsConfig {
            per_source: Some(Rate { rate: 1, burst: 1 }),
            ..LimitsConfig::default()
        }));
        let t0 = Instant::now();
        let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            a.check(t0, v6("2001:db8:1:2::1"), Class::New, NO_LOAD),
            Decision::Admit
        );
        assert_ne!(
            a.check(t0, v6("2001:db8:1:2:ffff::9"), Class::New, NO_LOAD),
            Decision::Admit,
            "the same /64"
        );
        assert_eq!(
            a.check(t0, v6("2001:db8:1:3::1"), Class::New, NO_LOAD),
            Decision::Admit,
            "the next /64"
        );
        assert_eq!(a.check(t0, ip(9), Class::New, NO_LOAD), Decision::Admit);
        assert_ne!(
            a.check(t0, v6("::ffff:192.0.2.9"), Class::New, NO_LOAD),
            Decision::Admit,
            "IPv4-mapped is the IPv4 source"
        );
    }

    #[test]
    fn the_source_table_is_bounded_idle_sources_are_swept_and_the_rest_share_one_bucket() {
        let mut b = Buckets::new(Rate { rate: 1, burst: 2 }, 4);
        let t0 = Instant::now();
        for i in 0..4 {
            assert_eq!(b.take(t0, ip(i)), Ok(()));
        }
        assert_eq!(b.len(), 4);
        // Full table, nobody idle: new sources share the overflow bucket.
        assert_eq!(b.take(t0, ip(10)), Ok(()));
        assert_eq!(b.take(t0, ip(11)), Ok(()));
        assert!(b.take(t0, ip(12)).is_err(), "the shared bucket is empty");
        assert_eq!(b.len(), 4);
        // A second later each tracked source is back to two tokens, full:
        // swept, so a new source gets a bucket of its own.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(t1, ip(20)), Ok(()));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_reload_keeps_buckets_whose_rate_is_unchanged() {
        let limits = LimitsConfig {
            per_source: Some(Rate { rate: 1, burst: 1 }),
            ..LimitsConfig::default()
        };
        let mut a = Admission::new(&cfg(limits.clone()));
        let t0 = Instant::now();
        assert_eq!(a.check(t0, ip(1), Class::New, NO_LOAD), Decision::Admit);
        a.reconfigure(&cfg(limits));
        assert_ne!(a.check(t0, ip(1), Class::New, NO_LOAD), Decision::Admit);
        a.reconfigure(&cfg(LimitsConfig {
            per_source: Some(Rate { rate: 2, burst: 1 }),
            ..LimitsConfig::default()
        }));
        assert_eq!(a.check(t0, ip(1), Class::New, NO_LOAD), Decision::Admit);
        a.reconfigure(&cfg(LimitsConfig::default()));
        assert_eq!(a.sources(), 0);
    }

    #[test]
    fn the_emergency_reserve_is_a_tenth_and_at_least_one() {
        assert_eq!(LimitsConfig::non_emergency_ceiling(20_000), 18_000);
        assert_eq!(LimitsConfig::non_emergency_ceiling(5), 4);
        assert_eq!(LimitsConfig::non_emergency_ceiling(1), 0);
        assert_eq!(LimitsConfig::non_emergency_ceiling(0), 0);
    }
}
