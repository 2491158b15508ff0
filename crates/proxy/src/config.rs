//! Proxy settings: timers, identity, trunks, routes, emergency classification.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::admission::LimitsConfig;
use lifeline_health::{ProbeConfig, Seed};

/// RFC 3261 §18.1.1: a request larger than this many bytes, when the path
/// MTU is unknown, must be sent over a congestion-controlled transport (TCP).
/// Applies to trunks that take both (see [`TrunkConfig::large_over_tcp`]).
pub const RFC3261_UDP_MAX_REQUEST: usize = 1300;

/// The transport of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, so transactions retransmit (timers A, E, G).
    Udp,
    /// TCP (or TLS): reliable, no retransmissions, zero linger timers.
    Tcp,
}

impl Transport {
    /// Whether the transport is reliable (RFC 3261 §17: no retransmission).
    pub fn reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Where a message comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Socket address.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
}

impl Peer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            addr,
            transport: Transport::Udp,
        }
    }
}

/// RFC 3261 timer values (§17.1.1.1, Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// Timer C: how long a proxied INVITE may stay in Proceeding (default 180 s, > 3 min per §16.6).
    pub timer_c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J, L, M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// A trunk: a next-hop SIP server calls are sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkConfig {
    /// Name used in routes, logs and metrics.
    pub name: String,
    /// Where to send.
    pub peer: Peer,
    /// Health probing settings.
    pub probe: ProbeConfig,
    /// The trunk also takes TCP on the same address and port (`transport:
    /// udp+tcp` in the file): with a UDP `peer`, a request larger than
    /// [`RFC3261_UDP_MAX_REQUEST`] bytes once forwarded goes over TCP, with a
    /// TCP Via (RFC 3261 §18.1.1); probes and smaller requests stay on UDP.
    /// Ignored when `peer` is TCP.
    pub large_over_tcp: bool,
    /// Most calls at once on this trunk (being set up, or answered and not
    /// yet ended): a trunk at its limit is skipped like an unready one and
    /// the call overflows to the next. `None`: no limit. Emergency calls
    /// still use a full trunk when every other trunk is full or unusable.
    pub max_calls: Option<u32>,
    /// Most new calls per second sent to this trunk (a token bucket holding
    /// one second's worth); beyond it the trunk is skipped like `max_calls`.
    pub max_cps: Option<u32>,
}

impl TrunkConfig {
    /// A trunk at `peer`, probed with the default settings, large requests
    /// on the peer's own transport.
    pub fn new(name: impl Into<String>, peer: Peer) -> Self {
        Self {
            name: name.into(),
            peer,
            probe: ProbeConfig::default(),
            large_over_tcp: false,
            max_calls: None,
            max_cps: None,
        }
    }
}

/// What requests a route takes.
#[derive(Clone, Debug)]
pub enum RouteMatch {
    /// Emergency calls (see [`EmergencyConfig`]).
    Emergency,
    /// Requests whose Request-URI (as written) matches the expression.
    Uri(regex::Regex),
    /// Everything.
    Any,
}

/// Which calls are moved to the next trunk when their trunk dies while they
/// ring (`rescue_ringing` in the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RescueRinging {
    /// Emergency calls only (default).
    #[default]
    Emergency,
    /// Every call.
    All,
    /// None: a ringing call waits for its trunk (Timer C), as RFC 3261
    /// serial forking would.
    Off,
}

impl RescueRinging {
    /// Whether a call of this class is rescued.
    pub fn covers(self, emergency: bool) -> bool {
        match self {
            Self::Emergency => emergency,
            Self::All => true,
            Self::Off => false,
        }
    }

    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Emergency => "emergency",
            Self::All => "all",
            Self::Off => "off",
        }
    }
}

/// A trunk's place in a route that shares load: `priority` groups are
/// tried in ascending order, and within a group trunks are chosen in
/// proportion to their `weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrunkShare {
    /// Lower first.
    pub priority: u32,
    /// Relative share within the priority group (0: only when every other
    /// trunk of the group has been tried).
    pub weight: u32,
}

/// A route: which requests, and the trunks to try in order.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// What it matches.
    pub matches: RouteMatch,
    /// Trunk names, in priority order.
    pub trunks: Vec<String>,
    /// No response at all from a trunk within this long: try the next one
    /// (default 200 ms).
    pub failover_after: Duration,
    /// 100 Trying but no ringing or answer within this long: try the next
    /// trunk (default 800 ms, so a trunk that accepts calls and then stalls
    /// is left within a second).
    pub progress_timeout: Duration,
    /// The progress timeout never goes below this, however fast the trunk
    /// usually rings (default 100 ms).
    pub progress_timeout_min: Duration,
    /// The progress timeout of a new attempt is this many times the time
    /// the trunk usually takes from 100 Trying to ringing (a decaying 95th
    /// percentile learned from its calls), clamped between
    /// `progress_timeout_min` and `progress_timeout` (default 4). With no
    /// history, `progress_timeout` applies.
    pub progress_timeout_factor: u32,
    /// Responses that move the call to the next trunk instead of being
    /// relayed (default 408, 500, 502, 503, 504).
    pub failover_codes: Vec<u16>,
    /// Which ringing calls are moved at once to the next trunk when their
    /// trunk goes Down or gives hard evidence (ICMP, TCP reset or refusal)
    /// (default emergency calls).
    pub rescue_ringing: RescueRinging,
    /// Emergency calls whose attempt has not rung after this long get a
    /// second attempt on the next trunk in parallel; the first 2xx wins and
    /// the other attempt is cancelled (or, if it answers too, ACKed and
    /// ended with a BYE). `None` (default): serial only.
    pub hedge_after: Option<Duration>,
    /// Load sharing: one entry per trunk in `trunks`, or empty for strict
    /// priority in list order (default).
    pub shares: Vec<TrunkShare>,
}

impl RouteConfig {
    /// A route with the default timers and failover codes.
    pub fn new(name: &str, matches: RouteMatch, trunks: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            matches,
            trunks: trunks.iter().map(|t| t.to_string()).collect(),
            failover_after: Duration::from_millis(200),
            progress_timeout: Duration::from_millis(800),
            progress_timeout_min: Duration::from_millis(100),
            progress_timeout_factor: 4,
            failover_codes: vec![408, 500, 502, 503, 504],
            rescue_ringing: RescueRinging::Emergency,
            hedge_after: None,
            shares: Vec::new(),
        }
    }
}

/// How emergency calls are recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmergencyConfig {
    /// Dialled numbers that are emergency numbers (default 999, 112, 911).
    /// `urn:service:sos` and its sub-services always count, and so does
    /// `Resource-Priority: esnet.*` (RFC 7135) from a source in
    /// [`AccessConfig::trusted`].
    pub numbers: Vec<String>,
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        Self {
            numbers: vec!["999".into(), "112".into(), "911".into()],
        }
    }
}

/// What a request from outside [`AccessConfig::callers`] gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnknownSource {
    /// Nothing: it is dropped (and counted), so a scanner learns nothing.
    #[default]
    Drop,
    /// 403 Forbidden (an ACK is still only dropped).
    Reject,
}

impl UnknownSource {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Reject => "reject",
        }
    }
}

/// Who may send new requests, and whose identity and priority headers are
/// believed (the RFC 3325 trust domain).
///
/// Addresses are compared as IP addresses (any port); an IPv4-mapped IPv6
/// source (`::ffff:192.0.2.1`) matches the IPv4 prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// Sources that may send requests outside a dialog (new calls, OPTIONS,
    /// CANCEL). `None`: any source. A configured trunk's address may always
    /// send ACK, CANCEL and requests inside a dialog (and responses), and
    /// the caller of a dialog set up before a reload narrowed the list keeps
    /// its in-dialog requests until the call ends.
    pub callers: Option<Vec<IpNet>>,
    /// Sources whose P-Asserted-Identity, P-Preferred-Identity and
    /// Resource-Priority are forwarded and believed (RFC 3325 §9.1, RFC 4412,
    /// RFC 7135). From any other source they are removed before the request
    /// is classified, recorded or forwarded. Default: none.
    pub trusted: Vec<IpNet>,
    /// What a request from outside `callers` gets (default: dropped).
    pub unknown: UnknownSource,
    /// Also remove Geolocation, Geolocation-Routing and PIDF-LO bodies
    /// (`application/pidf+xml`, alone or as a part of `multipart/mixed`)
    /// from untrusted sources. Off by default: a location, even unverified,
    /// is what sends help to the right place.
    pub strip_untrusted_location: bool,
}

impl AccessConfig {
    /// Whether `ip` may send requests outside a dialog.
    pub fn is_caller(&self, ip: IpAddr) -> bool {
        self.callers.as_ref().is_none_or(|list| contains(list, ip))
    }

    /// Whether `ip`'s identity and priority headers are believed.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        contains(&self.trusted, ip)
    }
}

/// Whether one of `prefixes` holds `ip` (IPv4-mapped IPv6 as IPv4).
fn contains(prefixes: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    prefixes.iter().any(|p| p.contains(&ip))
}

/// What the caller gets when every trunk failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllFailed {
    /// Status (default 503).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Retry-After seconds, if any (default 5).
    pub retry_after: Option<u32>,
}

impl Default for AllFailed {
    fn default() -> Self {
        Self {
            status: 503,
            reason: "Service Unavailable".into(),
            retry_after: Some(5),
        }
    }
}

/// The whole proxy configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The host (IP or name) and port the gateway puts in Via and
    /// Record-Route, and recognises in Route and Request-URIs as itself.
    pub advertise: SocketAddr,
    /// Other names the gateway answers to (host part only).
    pub aliases: Vec<String>,
    /// Transaction timers.
    pub timers: Timers,
    /// Trunks.
    pub trunks: Vec<TrunkConfig>,
    /// Routes, tried in order; the first that matches wins.
    pub routes: Vec<RouteConfig>,
    /// Emergency classification.
    pub emergency: EmergencyConfig,
    /// Who may call, and whose identity and priority headers are kept.
    pub access: AccessConfig,
    /// Response when every trunk failed.
    pub all_failed: AllFailed,
    /// How long a dialog's routing state is kept without a BYE (default 12 h).
    pub dialog_max_age: Duration,
    /// Keys the ChaCha20 generator behind branches, tags, Record-Route
    /// tokens and probe nonces (128 random bits each). The gateway fills it
    /// from the operating system at start-up; tests and simulations pass a
    /// constant (`Seed::from(7)`), which makes every token predictable.
    pub seed: Seed,
    /// Per-source rate limits and state caps (`limits:`; see
    /// [`crate::admission`]).
    pub limits: LimitsConfig,
}

impl ProxyConfig {
    /// A configuration with default timers and emergency numbers.
    pub fn new(advertise: SocketAddr, trunks: Vec<TrunkConfig>, routes: Vec<RouteConfig>) -> Self {
        Self {
            advertise,
            aliases: vec![],
            timers: Timers::default(),
            trunks,
            routes,
            emergency: EmergencyConfig::default(),
            access: AccessConfig::default(),
            all_failed: AllFailed::default(),
            dialog_max_age: Duration::from_secs(12 * 3600),
            seed: Seed::from(0x5eed),
            limits: LimitsConfig::default(),
        }
    }
}

/// A configuration the proxy cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A route names a trunk that is not configured.
    UnknownTrunk {
        /// The route.
        route: String,
        /// The missing trunk.
        trunk: String,
    },
    /// Two trunks share a name.
    DuplicateTrunk(String),
    /// A route lists no trunks.
    EmptyRoute(String),
    /// A status code outside 300-699 where a final failure is needed.
    BadStatus(u16),
    /// The local identity cannot form valid probes.
    BadIdentity(String),
    /// A route's `shares` do not match its trunks one for one, or give no
    /// trunk a weight.
    BadShares(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownTrunk { route, trunk } => {
                write!(f, "route {route:?} names unknown trunk {trunk:?}")
            }
            Self::DuplicateTrunk(t) => write!(f, "trunk {t:?} is defined twice"),
            Self::EmptyRoute(r) => write!(f, "route {r:?} lists no trunks"),
            Self::BadStatus(s) => write!(f, "status {s} is not a final failure (300-699)"),
            Self::BadIdentity(e) => write!(f, "local identity cannot form valid requests: {e}"),
            Self::BadShares(r) => write!(
                f,
                "route {r:?}: give a priority and weight to every trunk or to none"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
