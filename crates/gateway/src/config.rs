//! The daemon's configuration: a YAML file in, validated settings out.
//!
//! YAML crate: serde-saphyr. serde_yaml is deprecated by its author and gets
//! no more releases; serde_yml is unsound (RUSTSEC-2025-0068) and archived.
//! serde-saphyr is maintained, pure Rust without unsafe code, reports its own
//! errors with line and column, and offers `Spanned<T>`, which keeps each
//! value's line and column so that errors found after parsing (a route naming
//! an unknown trunk, a duplicate name, a name that does not resolve) point at
//! the place in the file too. The cost: its 2.x releases declare Rust 1.89.
//!
//! Loading has two stages. Parsing reads the file into `Raw*` structs whose
//! leaves are [`Scalar`]s with their location; it checks only the shape (YAML
//! syntax, unknown keys, a list where a value belongs) and stops at the first
//! such error. Validation then turns every leaf into its type and checks it,
//! collecting every error in the file rather than the first. Every error
//! names the file, the line and column where known, the key path
//! (`trunks[1].address`) and what is wrong.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lifeline_health::{AliveCodes, FlapDamping, ProbeConfig};
use lifeline_proxy::{
    AllFailed, EmergencyConfig, Peer, Proxy, ProxyConfig, RescueRinging, RouteConfig, RouteMatch,
    Timers, Transport, TrunkConfig, TrunkShare,
};

use crate::engine::TCP_IDLE_TIMEOUT;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// Admin HTTP address when `admin:` is not set.
const DEFAULT_ADMIN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9060));
/// Longest probe interval or timeout.
const MAX_PROBE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The validated configuration.

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    listen: Vec<(Transport, SocketAddr)>,
    advertise: SocketAddr,
    admin: SocketAddr,
    journal: Option<PathBuf>,
    emergency: EmergencyConfig,
    timers: Timers,
    trunks: Vec<TrunkConfig>,
    routes: Vec<RouteConfig>,
    all_failed: AllFailed,
    dialog_max_age: Duration,
    tcp_idle_timeout: Duration,
    log: LogConfig,
    /// Things that are allowed but probably wrong (an under-sized backup).
    warnings: Vec<ConfigError>,
}

/// `log:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogConfig {
    /// `format:` (default human).
    pub(crate) format: LogFormat,
    /// `level:` (default info).
    pub(crate) level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: LogLevel::Info,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// The most detailed level logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level as written in the file (and as `tracing` filters spell it).
    #[allow(dead_code, reason = "read by the daemon's logging setup")]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

#[allow(dead_code, reason = "accessors read by the daemon (lifeline run)")]
impl Config {
    /// Read and validate the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = if e.kind() == io::ErrorKind::InvalidData {
                "is not UTF-8 text".to_string()
            } else {
                format!("cannot read: {e}")
            };
            ConfigErrors(vec![ConfigError::whole_file(&origin, message)])
        })?;
        Self::from_str(&text, &origin)
    }

    /// Parse and validate `text`; `origin` names it in errors (the file name).
    /// Trunk host names are resolved here, once.
    pub(crate) fn from_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Self::from_str_with(text, origin, &system_resolve)
    }

    /// [`Config::from_str`] with a given name resolver (tests: no DNS).
    fn from_str_with(
        text: &str,
        origin: &str,
        resolve: Resolver<'_>,
    ) -> Result<Config, ConfigErrors> {
        let raw = parse(text, origin)?;
        let mut v = Validator {
            origin,
            text,
            resolve,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        match v.config(raw) {
            Some(mut cfg) if v.errors.is_empty() => {
                v.warnings.sort_by_key(|e| (e.line == 0, e.line, e.column));
                cfg.warnings = v.warnings;
                Ok(cfg)
            }
            _ => {
                // Sorted by position; errors without one (a missing
                // top-level key) last. The sort is stable.
                v.errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
                Err(ConfigErrors(v.errors))
            }
        }
    }

    /// The proxy core's settings; `seed` for branches, tags and tokens (the
    /// daemon passes OS randomness).
    pub(crate) fn proxy_config(&self, seed: u64) -> ProxyConfig {
        let mut cfg = ProxyConfig::new(self.advertise, self.trunks.clone(), self.routes.clone());
        cfg.timers = self.timers;
        cfg.emergency = self.emergency.clone();
        cfg.all_failed = self.all_failed.clone();
        cfg.dialog_max_age = self.dialog_max_age;
        cfg.seed = seed;
        cfg
    }

    /// Sockets to listen on, in file order.
    pub(crate) fn listen(&self) -> Vec<(Transport, SocketAddr)> {
        self.listen.clone()
    }

    /// The address put in Via and Record-Route.
    pub(crate) fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// The admin HTTP server's address (health, metrics).
    pub(crate) fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The journal directory, if journalling is on.
    pub(crate) fn journal(&self) -> Option<&Path> {
        self.journal.as_deref()
    }

    /// How long a TCP connection may stay idle before it is closed (zero:
    /// never).
    pub(crate) fn tcp_idle_timeout(&self) -> Duration {
        self.tcp_idle_timeout
    }

    /// Log format and level.
    pub(crate) fn log(&self) -> LogConfig {
        self.log
    }

    /// The trunks, with their addresses resolved.
    pub(crate) fn trunks(&self) -> &[TrunkConfig] {
        &self.trunks
    }

    /// The routes, in the order they are tried.
    pub(crate) fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    /// What is allowed but probably wrong, in file order: the daemon logs
    /// each at WARN (at start and on reload), `check-config` prints them.
    pub(crate) fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }
}

/// `lifeline check-config FILE`: exit 0 and `FILE: ok (N trunks, M routes)`,
/// or every error on stderr and exit 1.
pub(crate) fn check_config(file: &Path) -> ExitCode {
    let cfg = match Config::load(file) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    // The proxy core checks its settings again when built; a disagreement
    // between the two is a bug here, but the operator should hear of it now
    // rather than when the daemon starts.
    if let Err(e) = Proxy::new(Instant::now(), cfg.proxy_config(0)) {
        eprintln!(
            "{}: the proxy core refuses this configuration: {e}",
            file.display()
        );
        return ExitCode::from(1);
    }
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    for w in cfg.warnings() {
        eprintln!("{}", Warning(w));
    }
    let warnings = match cfg.warnings().len() {
        0 => String::new(),
        n => format!("; {}", plural(n, "warning")),
    };
    println!(
        "{}: ok ({}, {}{warnings})",
        file.display(),
        plural(cfg.trunks.len(), "trunk"),
        plural(cfg.routes.len(), "route")
    );
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Errors.

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file (as given).
    pub(crate) origin: String,
    /// 1-based line, 0 when unknown.
    pub(crate) line: u64,
    /// 1-based column (characters), 0 when unknown.
    pub(crate) column: u64,
    /// Key path such as `trunks[1].address`; empty for the whole file.
    pub(crate) key: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl ConfigError {
    fn whole_file(origin: &str, message: String) -> Self {
        Self {
            origin: origin.to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    /// `file:line:column: key: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A [`ConfigError`] that is only a warning: `file:line:column: warning:
/// key: message`.
pub(crate) struct Warning<'a>(pub(crate) &'a ConfigError);

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.0;
        f.write_str(&w.origin)?;
        if w.line > 0 {
            write!(f, ":{}:{}", w.line, w.column)?;
        }
        f.write_str(": warning")?;
        if !w.key.is_empty() {
            write!(f, ": {}", w.key)?;
        }
        write!(f, ": {}", w.message)
    }
}

/// Every error found in a configuration file (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigErrors(Vec<ConfigError>);

#[allow(dead_code, reason = "for callers that want the errors one by one")]
impl ConfigErrors {
    /// The errors, in file order.
    pub(crate) fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------
// Parsing: the shape of the file.

/// A leaf value as written, before it is given a type.
#[derive(Clone, Debug, PartialEq)]
enum Scalar {
    /// A string (plain or quoted).
    Text(String),
    /// Something YAML reads as a number or boolean; validation takes its
    /// text from the source, so `0112` stays `0112`.
    Other(String),
    /// `~`, `null` or nothing at all.
    Null,
}

type S = Spanned<Scalar>;

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a single value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
        }
        d.deserialize_any(V)
    }
}

/// An optional scalar key. Unlike `Option<S>`, a key written with no value
/// (`admin:`) is kept, as [`Scalar::Null`] with its location, so that it can
/// be refused rather than silently taken as "use the default".
#[derive(Debug, Default)]
struct Opt(Option<S>);

impl<'de> Deserialize<'de> for Opt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        S::deserialize(d).map(|s| Opt(Some(s)))
    }
}

type List<T> = Option<Spanned<Vec<T>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    listen: List<Spanned<RawListen>>,
    advertise: Opt,
    admin: Opt,
    journal: Opt,
    emergency: Option<RawEmergency>,
    timers: Option<RawTimers>,
    trunks: List<Spanned<RawTrunk>>,
    routes: List<Spanned<RawRoute>>,
    all_failed: Option<RawAllFailed>,
    dialog_max_age: Opt,
    tcp_idle_timeout: Opt,
    log: Option<RawLog>,
}

/// `- udp: ADDR`: the transport word is checked during validation.
#[derive(Debug)]
enum RawListen {
    Entry {
        transport: String,
        addr: S,
    },
    /// A bare value, without `udp:`/`tcp:`.
    Bare(String),
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`udp: ip:port` or `tcp: ip:port`")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawListen, E> {
                Ok(RawListen::Bare(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawListen, A::Error> {
                let Some(transport) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty entry: write `udp: ip:port` or `tcp: ip:port`",
                    ));
                };
                let addr = map.next_value::<S>()?;
                if let Some(k) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected `{k}`: one listen entry is one `udp:` or `tcp:` address; \
                         start a new entry with `- `"
                    )));
                }
                Ok(RawListen::Entry { transport, addr })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawEmergency {
    numbers: List<S>,
    trusted_resource_priority: List<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTimers {
    t1: Opt,
    t2: Opt,
    t4: Opt,
    timer_c: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTrunk {
    name: Opt,
    address: Opt,
    transport: Opt,
    probe: Option<RawProbe>,
    max_calls: Opt,
    max_cps: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProbe {
    interval: Opt,
    timeout: Opt,
    down_after: Opt,
    up_after: Opt,
    alive: Option<Spanned<RawAlive>>,
    enabled: Opt,
    flap_window: Opt,
    flap_hold: Opt,
    flap_max_hold: Opt,
    live_hold: Opt,
    canary: Opt,
    canary_one_in: Opt,
}

/// `alive: any | not-5xx | [200, 405]`.
#[derive(Debug)]
enum RawAlive {
    Word(String),
    Codes(Vec<S>),
}

impl<'de> Deserialize<'de> for RawAlive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAlive;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`any`, `not-5xx` or a list of status codes")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawAlive, E> {
                Ok(RawAlive::Word(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawAlive, E> {
                Ok(RawAlive::Word(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawAlive, E> {
                Ok(RawAlive::Word(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawAlive, E> {
                Ok(RawAlive::Word(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<RawAlive, E> {
                Ok(RawAlive::Word(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAlive, A::Error> {
                let mut codes = Vec::new();
                while let Some(c) = seq.next_element::<S>()? {
                    codes.push(c);
                }
                Ok(RawAlive::Codes(codes))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRoute {
    name: Opt,
    #[serde(rename = "match")]
    matches: Option<Spanned<RawMatch>>,
    trunks: List<Spanned<RawRouteTrunk>>,
    failover_after: Opt,
    progress_timeout: Opt,
    progress_timeout_min: Opt,
    progress_timeout_factor: Opt,
    failover_codes: List<S>,
    rescue_ringing: Opt,
    hedge_after: Opt,
}

/// One of a route's `trunks`: a name, or `{ name: b1, priority: 2, weight: 3 }`.
#[derive(Debug)]
enum RawRouteTrunk {
    Name(Scalar),
    Share(Box<RawShare>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawShare {
    name: Opt,
    priority: Opt,
    weight: Opt,
}

impl<'de> Deserialize<'de> for RawRouteTrunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRouteTrunk;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trunk's name or `{ name: NAME, priority: N, weight: N }`")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Text(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Text(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Other(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Other(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Other(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Other(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Null))
            }
            fn visit_none<E>(self) -> Result<RawRouteTrunk, E> {
                Ok(RawRouteTrunk::Name(Scalar::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRouteTrunk, A::Error> {
                RawShare::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|s| RawRouteTrunk::Share(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `match: emergency | any | { uri: REGEX }`.
#[derive(Debug)]
enum RawMatch {
    Word(String),
    Uri(S),
}

impl<'de> Deserialize<'de> for RawMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`emergency`, `any` or `{ uri: REGEX }`")
            }
            fn visit_str<E>(self, v: &str) -> Result<RawMatch, E> {
                Ok(RawMatch::Word(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<RawMatch, E> {
                Ok(RawMatch::Word(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMatch, A::Error> {
                let key = map.next_key::<String>()?;
                match key.as_deref() {
                    Some("uri") => {}
                    Some(k) => return Err(de::Error::unknown_field(k, &["uri"])),
                    None => {
                        return Err(de::Error::custom(
                            "empty: write emergency, any or { uri: REGEX }",
                        ))
                    }
                }
                let re = map.next_value::<S>()?;
                if let Some(k) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected `{k}`: a uri match has the one key `uri`"
                    )));
                }
                Ok(RawMatch::Uri(re))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAllFailed {
    status: Opt,
    reason: Opt,
    retry_after: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
    format: Opt,
    level: Opt,
}

/// Stage one: YAML to `RawConfig`, or the one shape error that stopped it.
fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigErrors> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigErrors(vec![ConfigError::whole_file(
            origin,
            "is empty: it needs at least listen, trunks and routes".into(),
        )]));
    }
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        RawConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    let err = match result {
        Ok(raw) => return Ok(raw),
        Err(err) => err,
    };
    let location = err.location().filter(|l| *l != Location::UNKNOWN);
    let (line, column) = location.map_or((0, 0), |l| (l.line(), l.column()));
    let rendered = err.render_with_options(serde_saphyr::render_options! {
        formatter: &serde_saphyr::UserMessageFormatter,
        snippets: serde_saphyr::SnippetMode::Off,
    });
    // The plain rendering ends in " at line L, column C"; the location goes
    // in front instead, as in every other error.
    let suffix = format!(" at line {line}, column {column}");
    let message = rendered.strip_suffix(&suffix).unwrap_or(&rendered);
    let key = key_path(&track.path(), message);
    // The parser's words for a value of the wrong shape, in an operator's.
    let message = match message {
        "expected mapping start" if key.is_empty() => {
            "the file must be keys and values (listen:, trunks:, routes: ...)".to_string()
        }
        "expected mapping start" => "expected keys and values here (`key: value`)".to_string(),
        "expected sequence start" => {
            "expected a list here (`- item` lines or `[a, b]`)".to_string()
        }
        other => other.to_string(),
    };
    Err(ConfigErrors(vec![ConfigError {
        origin: origin.to_string(),
        line,
        column,
        key,
        message,
    }]))
}

/// `trunks[0].probe.interval` from the tracked path, without the `value`
/// fields that [`Spanned`] adds (a last `value` stays when it is the unknown
/// key itself).
fn key_path(path: &serde_path_to_error::Path, message: &str) -> String {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let mut out = String::new();
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                let last = i + 1 == segments.len();
                if key == "value" && !(last && message.starts_with("unknown field `value`")) {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Validation: types, ranges and cross-references, collecting every error.

type Resolver<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

struct Validator<'a> {
    origin: &'a str,
    text: &'a str,
    resolve: Resolver<'a>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

/// A value that was checked, or `None` after an error was recorded.
type Checked<T> = Option<T>;

impl Validator<'_> {
    fn located(&self, at: Option<Location>, key: &str, message: String) -> ConfigError {
        let (line, column) = at
            .filter(|l| *l != Location::UNKNOWN)
            .map_or((0, 0), |l| (l.line(), l.column()));
        ConfigError {
            origin: self.origin.to_string(),
            line,
            column,
            key: key.to_string(),
            message,
        }
    }

    fn error(&mut self, at: Option<Location>, key: &str, message: String) {
        let e = self.located(at, key, message);
        self.errors.push(e);
    }

    fn warning(&mut self, at: Option<Location>, key: &str, message: String) {
        let w = self.located(at, key, message);
        self.warnings.push(w);
    }

    /// The text of a scalar: strings as parsed, numbers and booleans as
    /// written in the file.
    fn text(&self, v: &S) -> String {
        match &v.value {
            Scalar::Text(t) => t.clone(),
            Scalar::Null => String::new(),
            Scalar::Other(parsed) => {
                let span = v.defined.span();
                match (span.byte_offset(), span.byte_len()) {
                    (Some(off), Some(len)) => self
                        .text
                        .get(off as usize..(off + len) as usize)
                        .map_or_else(|| parsed.clone(), str::to_string),
                    _ => parsed.clone(),
                }
            }
        }
    }

    /// A non-null value's text; an error for `key:` with nothing after it.
    fn present(&mut self, v: &S, key: &str, what: &str) -> Checked<String> {
        if v.value == Scalar::Null {
            self.error(Some(v.referenced), key, format!("no value: write {what}"));
            return None;
        }
        Some(self.text(v))
    }

    fn duration(&mut self, v: &S, key: &str) -> Checked<Duration> {
        let t = self.present(v, key, "a duration such as 250ms or 2s")?;
        match parse_duration(&t) {
            Ok(d) => Some(d),
            Err(msg) => {
                self.error(Some(v.referenced), key, msg);
                None
            }
        }
    }

    /// A duration in `min..=max`.
    fn duration_in(
        &mut self,
        v: &S,
        key: &str,
        min: Duration,
        max: Option<Duration>,
    ) -> Checked<Duration> {
        let d = self.duration(v, key)?;
        let t = self.text(v);
        if d < min {
            let msg = if min == Duration::from_nanos(1) {
                format!("{t}: must be more than 0")
            } else {
                format!("{t}: must be at least {}", show_duration(min))
            };
            self.error(Some(v.referenced), key, msg);
            return None;
        }
        if let Some(max) = max.filter(|max| d > *max) {
            self.error(
                Some(v.referenced),
                key,
                format!("{t}: must be at most {}", show_duration(max)),
            );
            return None;
        }
        Some(d)
    }

    fn positive(&mut self, v: &S, key: &str) -> Checked<Duration> {
        self.duration_in(v, key, Duration::from_nanos(1), None)
    }

    /// An integer in `lo..=hi`; `what` says what the range is.
    fn int(&mut self, v: &S, key: &str, lo: i64, hi: i64, what: &str) -> Checked<i64> {
        let t = self.present(v, key, what)?;
        match t.parse::<i64>() {
            Ok(n) if (lo..=hi).contains(&n) && t.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            Ok(n) if t.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                self.error(Some(v.referenced), key, format!("{n} is not {what}"));
                None
            }
            _ => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!("{t:?} is not a whole number ({what})"),
                );
                None
            }
        }
    }

    fn bool(&mut self, v: &S, key: &str) -> Checked<bool> {
        let t = self.present(v, key, "true or false")?;
        match t.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!("{t:?} is not true or false"),
                );
                None
            }
        }
    }

    /// One of `choices`, by index.
    fn word(&mut self, v: &S, key: &str, choices: &[&str]) -> Checked<usize> {
        let what = one_of(choices);
        let t = self.present(v, key, &what)?;
        match choices.iter().position(|c| *c == t) {
            Some(i) => Some(i),
            None => {
                self.error(Some(v.referenced), key, format!("{t:?} is not {what}"));
                None
            }
        }
    }

    /// A non-empty string without control characters.
    fn name(&mut self, v: &S, key: &str, what: &str) -> Checked<String> {
        let t = self.present(v, key, what)?;
        if t.trim().is_empty() {
            self.error(Some(v.referenced), key, format!("is empty: write {what}"));
            return None;
        }
        if t.chars().any(char::is_control) {
            self.error(
                Some(v.referenced),
                key,
                format!("{t:?} contains control characters"),
            );
            return None;
        }
        Some(t)
    }

    /// An IP literal and port (`0.0.0.0:5060`, `[::1]:5060`).
    fn ip_port(&mut self, v: &S, key: &str) -> Checked<SocketAddr> {
        let t = self.present(v, key, "ip:port")?;
        match t.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!("{t:?}: port 0 is not a port"),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                let hint = if let Ok(IpAddr::V6(ip)) = t.parse::<IpAddr>() {
                    &*format!(
                        ": IPv6 addresses go in brackets before the port, e.g. \"[{ip}]:5060\""
                    )
                } else if t.parse::<IpAddr>().is_ok() {
                    ": add the port, e.g. :5060"
                } else if t.matches(':').count() > 1 && !t.starts_with('[') {
                    ": write IPv6 addresses in brackets, e.g. \"[2001:db8::1]:5060\""
                } else {
                    " (an IP address and a port, e.g. 192.0.2.1:5060)"
                };
                self.error(
                    Some(v.referenced),
                    key,
                    format!("{t:?} is not ip:port{hint}"),
                );
                None
            }
        }
    }

    /// A trunk's `ip:port` or `host:port`, resolved now. Of several
    /// addresses, the first of the advertised address's family.
    fn host_port(
        &mut self,
        v: &S,
        key: &str,
        trunk: &str,
        family_v4: Option<bool>,
    ) -> Checked<SocketAddr> {
        let t = self.present(v, key, "host:port")?;
        if let Ok(a) = t.parse::<SocketAddr>() {
            return self.trunk_addr(v, key, &t, a);
        }
        let Some((host, port)) = split_host_port(&t) else {
            let hint = if t.matches(':').count() > 1 && !t.starts_with('[') {
                ": write IPv6 addresses in brackets, e.g. \"[2001:db8::1]:5060\""
            } else if !t.contains(':') {
                ": add the port, e.g. :5060"
            } else {
                ""
            };
            self.error(
                Some(v.referenced),
                key,
                format!("{t:?} is not host:port{hint}"),
            );
            return None;
        };
        let addrs = match (self.resolve)(host, port) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!("{host:?} (trunk {trunk:?}) resolves to no address"),
                );
                return None;
            }
            Err(e) => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!("cannot resolve {host:?} (trunk {trunk:?}): {e}"),
                );
                return None;
            }
        };
        let pick = family_v4
            .and_then(|v4| addrs.iter().find(|a| a.is_ipv4() == v4))
            .unwrap_or(&addrs[0]);
        self.trunk_addr(v, key, &t, *pick)
    }

    fn trunk_addr(&mut self, v: &S, key: &str, t: &str, a: SocketAddr) -> Checked<SocketAddr> {
        if a.port() == 0 {
            self.error(
                Some(v.referenced),
                key,
                format!("{t:?}: port 0 is not a port"),
            );
            return None;
        }
        if a.ip().is_unspecified() {
            self.error(
                Some(v.referenced),
                key,
                format!("{t:?} is a wildcard address, not one calls can be sent to"),
            );
            return None;
        }
        Some(a)
    }

    // -- the sections ------------------------------------------------------

    fn config(&mut self, raw: RawConfig) -> Checked<Config> {
        let listen = self.listen(raw.listen.as_ref());
        let advertise = self.advertise(&raw.advertise, raw.listen.as_ref(), listen.as_deref());
        let admin = match &raw.admin.0 {
            Some(v) => self.ip_port(v, "admin"),
            None => Some(DEFAULT_ADMIN),
        };
        let journal = match &raw.journal.0 {
            Some(v) => self
                .name(v, "journal", "a directory")
                .map(|p| Some(PathBuf::from(p))),
            None => Some(None),
        };
        let emergency = self.emergency(raw.emergency.as_ref());
        let timers = self.timers(raw.timers.as_ref());
        let family_v4 = advertise.map(|a| a.is_ipv4());
        let trunks = self.trunks(raw.trunks.as_ref(), family_v4);
        let trunk_names: Vec<String> = trunks.iter().map(|t| t.name.clone()).collect();
        // Every trunk name in the file, including trunks with errors.
        let written: Vec<String> = raw
            .trunks
            .iter()
            .flat_map(|t| t.value.iter())
            .filter_map(|t| t.value.name.0.as_ref())
            .map(|v| self.text(v))
            .collect();
        let routes = self.routes(raw.routes.as_ref(), &trunk_names, &written);
        if let (Some(routes), Some(raw_routes)) = (&routes, &raw.routes) {
            self.backup_capacity(routes, &raw_routes.value, &trunks);
        }
        let all_failed = self.all_failed(raw.all_failed.as_ref());
        let dialog_max_age = match &raw.dialog_max_age.0 {
            Some(v) => self.positive(v, "dialog_max_age"),
            None => Some(Duration::from_secs(12 * 3600)),
        };
        // `0`: never (a bare 0 needs no unit).
        let tcp_idle_timeout = match &raw.tcp_idle_timeout.0 {
            Some(v) if self.text(v) == "0" => Some(Duration::ZERO),
            Some(v) => self.duration(v, "tcp_idle_timeout"),
            None => Some(TCP_IDLE_TIMEOUT),
        };
        let log = self.log(raw.log.as_ref());
        Some(Config {
            listen: listen?,
            advertise: advertise?,
            admin: admin?,
            journal: journal?,
            emergency: emergency?,
            timers: timers?,
            trunks,
            routes: routes?,
            all_failed: all_failed?,
            dialog_max_age: dialog_max_age?,
            tcp_idle_timeout: tcp_idle_timeout?,
            log: log?,
            warnings: Vec::new(),
        })
    }

    fn listen(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawListen>>>>,
    ) -> Checked<Vec<(Transport, SocketAddr)>> {
        let Some(raw) = raw.filter(|l| !l.value.is_empty()) else {
            self.error(
                raw.map(|l| l.referenced),
                "listen",
                "at least one listen address is needed, e.g. `- udp: 0.0.0.0:5060`".into(),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, entry) in raw.value.iter().enumerate() {
            let key = format!("listen[{i}]");
            match &entry.value {
                RawListen::Bare(t) => {
                    self.error(
                        Some(entry.referenced),
                        &key,
                        format!("{t:?} has no transport: write `udp: {t}` or `tcp: {t}`"),
                    );
                    ok = false;
                }
                RawListen::Entry { transport, addr } => {
                    let key = format!("{key}.{transport}");
                    let transport = match transport.as_str() {
                        "udp" => Some(Transport::Udp),
                        "tcp" => Some(Transport::Tcp),
                        other => {
                            self.error(
                                Some(entry.referenced),
                                &format!("listen[{i}]"),
                                format!("unknown transport {other:?}: udp or tcp"),
                            );
                            None
                        }
                    };
                    let a = self.ip_port(addr, &key);
                    match (transport, a) {
                        (Some(t), Some(a)) => {
                            if let Some(j) = out.iter().position(|x| *x == (t, a)) {
                                self.error(
                                    Some(addr.referenced),
                                    &key,
                                    format!("{a} is already listed as listen[{j}]"),
                                );
                                ok = false;
                            }
                            out.push((t, a));
                        }
                        _ => ok = false,
                    }
                }
            }
        }
        ok.then_some(out)
    }

    fn advertise(
        &mut self,
        raw: &Opt,
        raw_listen: Option<&Spanned<Vec<Spanned<RawListen>>>>,
        listen: Option<&[(Transport, SocketAddr)]>,
    ) -> Checked<SocketAddr> {
        if let Some(v) = &raw.0 {
            let a = self.ip_port(v, "advertise")?;
            if a.ip().is_unspecified() {
                self.error(
                    Some(v.referenced),
                    "advertise",
                    format!("{a} is a wildcard: advertise the address trunks and callers send to"),
                );
                return None;
            }
            return Some(a);
        }
        // Default: the first listen address, unless it is a wildcard. An
        // unusable listen list has been reported already.
        let (_, first) = *listen?.first()?;
        if first.ip().is_unspecified() {
            let at = raw_listen
                .and_then(|l| l.value.first())
                .map(|e| match &e.value {
                    RawListen::Entry { addr, .. } => addr.referenced,
                    RawListen::Bare(_) => e.referenced,
                });
            self.error(
                at,
                "advertise",
                format!(
                    "not set, and the first listen address {first} is a wildcard: set \
                     advertise to the address trunks and callers send to, e.g. \
                     `advertise: 192.0.2.1:{}`",
                    first.port()
                ),
            );
            return None;
        }
        Some(first)
    }

    fn emergency(&mut self, raw: Option<&RawEmergency>) -> Checked<EmergencyConfig> {
        let mut cfg = EmergencyConfig::default();
        let Some(raw) = raw else { return Some(cfg) };
        let mut ok = true;
        if let Some(numbers) = &raw.numbers {
            if numbers.value.is_empty() {
                self.error(
                    Some(numbers.referenced),
                    "emergency.numbers",
                    "empty: list the emergency numbers, e.g. [\"999\", \"112\", \"911\"]".into(),
                );
                ok = false;
            }
            cfg.numbers.clear();
            for (i, n) in numbers.value.iter().enumerate() {
                let key = format!("emergency.numbers[{i}]");
                let Some(t) = self.present(n, &key, "a number such as \"112\"") else {
                    ok = false;
                    continue;
                };
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b"*#+".contains(&b)) {
                    self.error(
                        Some(n.referenced),
                        &key,
                        format!("{t:?} is not a dialled number (digits, *, # and + only)"),
                    );
                    ok = false;
                } else {
                    cfg.numbers.push(t);
                }
            }
        }
        if let Some(ips) = &raw.trusted_resource_priority {
            for (i, ip) in ips.value.iter().enumerate() {
                let key = format!("emergency.trusted_resource_priority[{i}]");
                let Some(t) = self.present(ip, &key, "an IP address") else {
                    ok = false;
                    continue;
                };
                match t.parse::<IpAddr>() {
                    Ok(a) => cfg.trusted_resource_priority.push(a),
                    Err(_) => {
                        self.error(
                            Some(ip.referenced),
                            &key,
                            format!("{t:?} is not an IP address (no port, no name)"),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(cfg)
    }

    fn timers(&mut self, raw: Option<&RawTimers>) -> Checked<Timers> {
        let mut t = Timers::default();
        let Some(raw) = raw else { return Some(t) };
        let mut ok = true;
        for (v, key, slot) in [
            (&raw.t1, "timers.t1", &mut t.t1),
            (&raw.t2, "timers.t2", &mut t.t2),
            (&raw.t4, "timers.t4", &mut t.t4),
            (&raw.timer_c, "timers.timer_c", &mut t.timer_c),
        ] {
            if let Some(v) = &v.0 {
                match self.positive(v, key) {
                    Some(d) => *slot = d,
                    None => ok = false,
                }
            }
        }
        if ok && t.t2 < t.t1 {
            let at = raw
                .t2
                .0
                .as_ref()
                .or(raw.t1.0.as_ref())
                .map(|v| v.referenced);
            let key = if raw.t2.0.is_some() {
                "timers.t2"
            } else {
                "timers.t1"
            };
            self.error(
                at,
                key,
                format!(
                    "t2 ({}) is shorter than t1 ({}): t2 caps the retransmit interval, which \
                     starts at t1",
                    show_duration(t.t2),
                    show_duration(t.t1)
                ),
            );
            ok = false;
        }
        ok.then_some(t)
    }

    /// The trunks that passed; errors for the others.
    fn trunks(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawTrunk>>>>,
        family_v4: Option<bool>,
    ) -> Vec<TrunkConfig> {
        let Some(raw) = raw.filter(|t| !t.value.is_empty()) else {
            self.error(
                raw.map(|t| t.referenced),
                "trunks",
                "at least one trunk is needed".into(),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, entry) in raw.value.iter().enumerate() {
            let key = format!("trunks[{i}]");
            let t = &entry.value;
            let name = match &t.name.0 {
                Some(v) => {
                    let name = self.name(v, &format!("{key}.name"), "the trunk's name");
                    if let Some(n) = &name {
                        if let Some(j) = seen.get(n) {
                            self.error(
                                Some(v.referenced),
                                &format!("{key}.name"),
                                format!("{n:?} is already the name of trunks[{j}]"),
                            );
                        } else {
                            seen.insert(n.clone(), i);
                        }
                    }
                    name
                }
                None => {
                    self.error(
                        Some(entry.referenced),
                        &format!("{key}.name"),
                        "missing: every trunk needs a name (routes refer to it)".into(),
                    );
                    None
                }
            };
            let label = name.clone().unwrap_or_else(|| key.clone());
            let addr = match &t.address.0 {
                Some(v) => self.host_port(v, &format!("{key}.address"), &label, family_v4),
                None => {
                    self.error(
                        Some(entry.referenced),
                        &format!("{key}.address"),
                        "missing: every trunk needs an address (ip:port or host:port)".into(),
                    );
                    None
                }
            };
            // `udp+tcp`: UDP, and TCP for requests too large for UDP.
            let transport = match &t.transport.0 {
                Some(v) => self
                    .word(v, &format!("{key}.transport"), &["udp", "tcp", "udp+tcp"])
                    .map(|i| {
                        [
                            (Transport::Udp, false),
                            (Transport::Tcp, false),
                            (Transport::Udp, true),
                        ][i]
                    }),
                None => Some((Transport::Udp, false)),
            };
            let probe = self.probe(t.probe.as_ref(), &format!("{key}.probe"));
            let mut limit = |v: &Opt, f: &str, what: &str| match &v.0 {
                Some(v) => self
                    .int(v, &format!("{key}.{f}"), 1, i64::from(u32::MAX), what)
                    .map(|n| Some(n as u32)),
                None => Some(None),
            };
            let max_calls = limit(&t.max_calls, "max_calls", "a limit of 1 or more calls");
            let max_cps = limit(
                &t.max_cps,
                "max_cps",
                "a limit of 1 or more calls per second",
            );
            if let (
                Some(name),
                Some(addr),
                Some((transport, large_over_tcp)),
                Some(probe),
                Some(max_calls),
                Some(max_cps),
            ) = (name, addr, transport, probe, max_calls, max_cps)
            {
                out.push(TrunkConfig {
                    name,
                    peer: Peer { addr, transport },
                    probe,
                    large_over_tcp,
                    max_calls,
                    max_cps,
                });
            }
        }
        out
    }

    fn probe(&mut self, raw: Option<&RawProbe>, key: &str) -> Checked<ProbeConfig> {
        let mut p = ProbeConfig::default();
        let Some(raw) = raw else { return Some(p) };
        let mut ok = true;
        let k = |f: &str| format!("{key}.{f}");
        for (v, f, slot) in [
            (&raw.interval, "interval", &mut p.interval),
            (&raw.timeout, "timeout", &mut p.timeout),
        ] {
            if let Some(v) = &v.0 {
                match self.duration_in(v, &k(f), Duration::from_nanos(1), Some(MAX_PROBE)) {
                    Some(d) => *slot = d,
                    None => ok = false,
                }
            }
        }
        for (v, f, slot) in [
            (&raw.down_after, "down_after", &mut p.down_after),
            (&raw.up_after, "up_after", &mut p.up_after),
        ] {
            if let Some(v) = &v.0 {
                match self.int(v, &k(f), 1, 100, "a count from 1 to 100") {
                    Some(n) => *slot = n as u32,
                    None => ok = false,
                }
            }
        }
        if let Some(alive) = &raw.alive {
            match self.alive(alive, &k("alive")) {
                Some(a) => p.alive = a,
                None => ok = false,
            }
        }
        if let Some(v) = &raw.enabled.0 {
            match self.bool(v, &k("enabled")) {
                Some(b) => p.enabled = b,
                None => ok = false,
            }
        }
        let mut flap = FlapDamping::default();
        for (v, f, slot) in [
            (&raw.flap_window, "flap_window", &mut flap.window),
            (&raw.flap_hold, "flap_hold", &mut flap.hold),
            (&raw.flap_max_hold, "flap_max_hold", &mut flap.max_hold),
            (&raw.live_hold, "live_hold", &mut flap.live_hold),
        ] {
            if let Some(v) = &v.0 {
                match self.duration(v, &k(f)) {
                    Some(d) => *slot = d,
                    None => ok = false,
                }
            }
        }
        if ok && flap.hold > flap.max_hold {
            let (v, f) = match (&raw.flap_hold.0, &raw.flap_max_hold.0) {
                (Some(v), _) => (v, "flap_hold"),
                (None, Some(v)) => (v, "flap_max_hold"),
                (None, None) => unreachable!("the defaults are ordered"),
            };
            self.error(
                Some(v.referenced),
                &k(f),
                format!(
                    "flap_hold ({}) is longer than flap_max_hold ({})",
                    show_duration(flap.hold),
                    show_duration(flap.max_hold)
                ),
            );
            ok = false;
        }
        p.flap = flap;
        if let Some(v) = &raw.canary.0 {
            match self.duration(v, &k("canary")) {
                Some(d) => p.canary.duration = d,
                None => ok = false,
            }
        }
        if let Some(v) = &raw.canary_one_in.0 {
            match self.int(v, &k("canary_one_in"), 1, 1000, "a count from 1 to 1000") {
                Some(n) => p.canary.one_in = n as u32,
                None => ok = false,
            }
        }
        ok.then_some(p)
    }

    fn alive(&mut self, raw: &Spanned<RawAlive>, key: &str) -> Checked<AliveCodes> {
        match &raw.value {
            RawAlive::Word(w) if w == "any" => Some(AliveCodes::Any),
            RawAlive::Word(w) if w == "not-5xx" => Some(AliveCodes::NotServerError),
            RawAlive::Word(w) => {
                self.error(
                    Some(raw.referenced),
                    key,
                    format!(
                        "{w:?} is not any, not-5xx or a list of status codes such as [200, 405]"
                    ),
                );
                None
            }
            RawAlive::Codes(codes) if codes.is_empty() => {
                self.error(
                    Some(raw.referenced),
                    key,
                    "empty list: no answer would count as alive; list codes such as [200, 405], or write any".into(),
                );
                None
            }
            RawAlive::Codes(codes) => {
                let mut out = Vec::new();
                for (i, c) in codes.iter().enumerate() {
                    let n = self.int(
                        c,
                        &format!("{key}[{i}]"),
                        100,
                        699,
                        "a SIP status code (100-699)",
                    );
                    out.push(n.map(|n| n as u16));
                }
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(AliveCodes::Only)
            }
        }
    }

    fn routes(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawRoute>>>>,
        trunk_names: &[String],
        written: &[String],
    ) -> Checked<Vec<RouteConfig>> {
        let Some(raw) = raw.filter(|r| !r.value.is_empty()) else {
            self.error(
                raw.map(|r| r.referenced),
                "routes",
                "at least one route is needed, e.g. `- { name: emergency, match: emergency, \
                 trunks: [primary, backup] }`"
                    .into(),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, usize> = HashMap::new();
        // The first route taking everything, and the first taking every
        // emergency call: routes after them can never match.
        let mut any_at: Option<usize> = None;
        let mut emergency_at: Option<usize> = None;
        for (i, entry) in raw.value.iter().enumerate() {
            let key = format!("routes[{i}]");
            let r = &entry.value;
            let name = match &r.name.0 {
                Some(v) => {
                    let name = self.name(v, &format!("{key}.name"), "the route's name");
                    if let Some(n) = &name {
                        if let Some(j) = seen.get(n) {
                            self.error(
                                Some(v.referenced),
                                &format!("{key}.name"),
                                format!("{n:?} is already the name of routes[{j}]"),
                            );
                            ok = false;
                        } else {
                            seen.insert(n.clone(), i);
                        }
                    }
                    name
                }
                None => {
                    self.error(
                        Some(entry.referenced),
                        &format!("{key}.name"),
                        "missing: every route needs a name (for logs and metrics)".into(),
                    );
                    None
                }
            };
            let matches = match &r.matches {
                None => {
                    self.error(
                        Some(entry.referenced),
                        &format!("{key}.match"),
                        "missing: write emergency, any or { uri: REGEX }".into(),
                    );
                    None
                }
                Some(m) => self.route_match(m, &format!("{key}.match")),
            };
            if let Some(j) = any_at {
                self.error(
                    Some(entry.referenced),
                    &key,
                    format!("never used: routes[{j}] (match: any) takes every request first"),
                );
                ok = false;
            } else if let (Some(RouteMatch::Emergency), Some(j)) = (&matches, emergency_at) {
                self.error(
                    Some(entry.referenced),
                    &key,
                    format!("never used: routes[{j}] (match: emergency) takes every emergency call first"),
                );
                ok = false;
            }
            match &matches {
                Some(RouteMatch::Any) => any_at = any_at.or(Some(i)),
                Some(RouteMatch::Emergency) => emergency_at = emergency_at.or(Some(i)),
                _ => {}
            }
            let trunks = self.route_trunks(
                r.trunks.as_ref(),
                entry.referenced,
                &key,
                trunk_names,
                written,
            );
            let mut route = RouteConfig::new("", RouteMatch::Any, &[]);
            if let Some(v) = &r.failover_after.0 {
                match self.positive(v, &format!("{key}.failover_after")) {
                    Some(d) => route.failover_after = d,
                    None => ok = false,
                }
            }
            let mut progress_ok = true;
            if let Some(v) = &r.progress_timeout.0 {
                match self.positive(v, &format!("{key}.progress_timeout")) {
                    Some(d) => route.progress_timeout = d,
                    None => progress_ok = false,
                }
            }
            // The floor of the adaptive progress timeout; by default 100 ms,
            // or the progress timeout itself if that is shorter.
            route.progress_timeout_min = route.progress_timeout_min.min(route.progress_timeout);
            if let Some(v) = &r.progress_timeout_min.0 {
                let k = format!("{key}.progress_timeout_min");
                match self.positive(v, &k) {
                    Some(d) if progress_ok && d > route.progress_timeout => {
                        self.error(
                            Some(v.referenced),
                            &k,
                            format!(
                                "progress_timeout_min ({}) is longer than progress_timeout ({})",
                                show_duration(d),
                                show_duration(route.progress_timeout)
                            ),
                        );
                        ok = false;
                    }
                    Some(d) => route.progress_timeout_min = d,
                    None => ok = false,
                }
            }
            if let Some(v) = &r.progress_timeout_factor.0 {
                match self.int(
                    v,
                    &format!("{key}.progress_timeout_factor"),
                    1,
                    100,
                    "a factor from 1 to 100",
                ) {
                    Some(n) => route.progress_timeout_factor = n as u32,
                    None => ok = false,
                }
            }
            if let Some(v) = &r.rescue_ringing.0 {
                const RESCUE: [RescueRinging; 3] = [
                    RescueRinging::Emergency,
                    RescueRinging::All,
                    RescueRinging::Off,
                ];
                match self.word(
                    v,
                    &format!("{key}.rescue_ringing"),
                    &RESCUE.map(RescueRinging::as_str),
                ) {
                    Some(i) => route.rescue_ringing = RESCUE[i],
                    None => ok = false,
                }
            }
            if let Some(v) = &r.hedge_after.0 {
                let k = format!("{key}.hedge_after");
                match self.duration(v, &k) {
                    Some(d) if d.is_zero() => {
                        let t = self.text(v);
                        self.error(
                            Some(v.referenced),
                            &k,
                            format!(
                                "{t}: must be more than 0 (leave hedge_after out for no hedging)"
                            ),
                        );
                        ok = false;
                    }
                    Some(d) if progress_ok && d >= route.progress_timeout => {
                        self.error(
                            Some(v.referenced),
                            &k,
                            format!(
                                "hedge_after ({}) is not shorter than progress_timeout ({}): \
                                 the attempt would be given up before it is hedged",
                                show_duration(d),
                                show_duration(route.progress_timeout)
                            ),
                        );
                        ok = false;
                    }
                    Some(d) => route.hedge_after = Some(d),
                    None => ok = false,
                }
            }
            ok &= progress_ok;
            if let Some(codes) = &r.failover_codes {
                let mut list = Vec::new();
                for (j, c) in codes.value.iter().enumerate() {
                    match self.int(
                        c,
                        &format!("{key}.failover_codes[{j}]"),
                        400,
                        699,
                        "a failure status (400-699)",
                    ) {
                        Some(n) => list.push(n as u16),
                        None => ok = false,
                    }
                }
                route.failover_codes = list;
            }
            match (name, matches, trunks) {
                (Some(name), Some(matches), Some((trunks, shares))) => {
                    route.name = name;
                    route.matches = matches;
                    route.trunks = trunks;
                    route.shares = shares;
                    out.push(route);
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn route_match(&mut self, m: &Spanned<RawMatch>, key: &str) -> Checked<RouteMatch> {
        match &m.value {
            RawMatch::Word(w) if w == "emergency" => Some(RouteMatch::Emergency),
            RawMatch::Word(w) if w == "any" => Some(RouteMatch::Any),
            RawMatch::Word(w) => {
                self.error(
                    Some(m.referenced),
                    key,
                    format!("{w:?} is not emergency, any or {{ uri: REGEX }}"),
                );
                None
            }
            RawMatch::Uri(v) => {
                let key = format!("{key}.uri");
                let t = self.present(v, &key, "a regular expression")?;
                match regex::Regex::new(&t) {
                    Ok(re) => Some(RouteMatch::Uri(re)),
                    Err(e) => {
                        self.error(
                            Some(v.referenced),
                            &key,
                            format!(
                                "{t:?} is not a valid regular expression: {}",
                                regex_reason(&e)
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    /// A route's `trunks`: the names, and their shares when any entry gives
    /// a priority or weight (then every entry must give a priority).
    fn route_trunks(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawRouteTrunk>>>>,
        route_at: Location,
        key: &str,
        trunk_names: &[String],
        written: &[String],
    ) -> Checked<(Vec<String>, Vec<TrunkShare>)> {
        let key = format!("{key}.trunks");
        let Some(list) = raw else {
            self.error(
                Some(route_at),
                &key,
                "missing: list the trunks to try, in order, e.g. [primary, backup]".into(),
            );
            return None;
        };
        if list.value.is_empty() {
            self.error(
                Some(list.referenced),
                &key,
                "empty: list the trunks to try, in order, e.g. [primary, backup]".into(),
            );
            return None;
        }
        let sharing = list.value.iter().any(|e| {
            matches!(&e.value, RawRouteTrunk::Share(s) if s.priority.0.is_some() || s.weight.0.is_some())
        });
        let mut out: Vec<String> = Vec::new();
        // Where each name in `out` is listed (entries with errors are not in `out`).
        let mut listed_at: Vec<usize> = Vec::new();
        let mut shares: Vec<TrunkShare> = Vec::new();
        let mut ok = true;
        for (j, entry) in list.value.iter().enumerate() {
            let k = format!("{key}[{j}]");
            let (v, name_key, share) = match &entry.value {
                RawRouteTrunk::Name(scalar) => (
                    Some(Spanned::new(
                        scalar.clone(),
                        entry.referenced,
                        entry.defined,
                    )),
                    k.clone(),
                    None,
                ),
                RawRouteTrunk::Share(s) => (s.name.0.clone(), format!("{k}.name"), Some(s)),
            };
            let Some(v) = v else {
                self.error(
                    Some(entry.referenced),
                    &name_key,
                    "missing: write the trunk's name, e.g. { name: backup, priority: 2 }".into(),
                );
                ok = false;
                continue;
            };
            let Some(name) = self.name(&v, &name_key, "a trunk's name") else {
                ok = false;
                continue;
            };
            if sharing {
                match share {
                    None => {
                        self.error(
                            Some(entry.referenced),
                            &k,
                            format!(
                                "{name:?} has no priority: when a trunk of the route has a \
                                 priority or weight, every one needs a priority, e.g. \
                                 {{ name: {name}, priority: 1 }}"
                            ),
                        );
                        ok = false;
                    }
                    Some(s) => {
                        let priority = match &s.priority.0 {
                            Some(p) => self.int(
                                p,
                                &format!("{k}.priority"),
                                0,
                                1000,
                                "a priority from 0 to 1000 (lower first)",
                            ),
                            None => {
                                self.error(
                                    Some(entry.referenced),
                                    &format!("{k}.priority"),
                                    "missing: when a trunk of the route has a priority or \
                                     weight, every one needs a priority"
                                        .into(),
                                );
                                None
                            }
                        };
                        let weight = match &s.weight.0 {
                            Some(w) => self.int(
                                w,
                                &format!("{k}.weight"),
                                0,
                                1000,
                                "a weight from 0 to 1000",
                            ),
                            None => Some(1),
                        };
                        match (priority, weight) {
                            (Some(p), Some(w)) => shares.push(TrunkShare {
                                priority: p as u32,
                                weight: w as u32,
                            }),
                            _ => ok = false,
                        }
                    }
                }
            }
            if let Some(prev) = out.iter().position(|n| *n == name) {
                let prev = listed_at.get(prev).copied().unwrap_or(prev);
                self.error(
                    Some(v.referenced),
                    &name_key,
                    format!("trunk {name:?} is already listed as {key}[{prev}]"),
                );
                ok = false;
            } else if !trunk_names.contains(&name) {
                // A trunk that is in the file but has errors of its own is
                // reported where it is defined; no trunks at all, at
                // `trunks:`.
                let mut known: Vec<&str> = Vec::new();
                for n in written {
                    if !n.is_empty() && !known.contains(&n.as_str()) {
                        known.push(n);
                    }
                }
                if !known.contains(&name.as_str()) && !known.is_empty() {
                    self.error(
                        Some(v.referenced),
                        &name_key,
                        format!("unknown trunk {name:?} (trunks: {})", known.join(", ")),
                    );
                }
                ok = false;
            }
            out.push(name);
            listed_at.push(j);
        }
        if ok && !shares.is_empty() && shares.iter().all(|s| s.weight == 0) {
            self.error(
                Some(list.referenced),
                &key,
                "every weight is 0: give at least one trunk a weight above 0".into(),
            );
            ok = false;
        }
        ok.then_some((out, shares))
    }

    /// Warn about each route whose backups together may carry fewer calls
    /// at once than its primary (the trunk tried first): if the primary
    /// fails, its calls do not fit. A trunk without `max_calls` counts as
    /// unlimited. (The 2023 UK 999 outage report faulted an under-sized
    /// backup.)
    fn backup_capacity(
        &mut self,
        routes: &[RouteConfig],
        raw: &[Spanned<RawRoute>],
        trunks: &[TrunkConfig],
    ) {
        let max_calls = |name: &str| {
            trunks
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.max_calls)
        };
        for (i, (route, raw)) in routes.iter().zip(raw).enumerate() {
            // The trunk tried first: the first of the lowest priority.
            let first = match route
                .shares
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.priority)
            {
                Some((j, _)) => j,
                None => 0,
            };
            let Some(primary) = route.trunks.get(first) else {
                continue;
            };
            let backups: Vec<(&str, Option<u32>)> = route
                .trunks
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != first)
                .map(|(_, t)| (t.as_str(), max_calls(t)))
                .collect();
            if backups.is_empty() {
                continue;
            }
            // `None`: unlimited.
            let total: Option<u64> = backups
                .iter()
                .try_fold(0u64, |sum, (_, m)| m.map(|m| sum + u64::from(m)));
            let Some(total) = total else { continue };
            let primary_max = max_calls(primary);
            if primary_max.is_some_and(|p| u64::from(p) <= total) {
                continue;
            }
            let each: Vec<String> = backups
                .iter()
                .map(|(t, m)| format!("{t} {}", m.unwrap_or_default()))
                .collect();
            let primary_text = match primary_max {
                Some(p) => format!("primary {primary:?} takes up to {p} calls"),
                None => format!("primary {primary:?} has no max_calls"),
            };
            let at = raw
                .value
                .trunks
                .as_ref()
                .map_or(raw.referenced, |l| l.referenced);
            self.warning(
                Some(at),
                &format!("routes[{i}].trunks"),
                format!(
                    "backup capacity is below the primary's: {primary_text}, its backups \
                     {total} in all ({}); if {primary:?} fails, not all of its calls fit",
                    each.join(", ")
                ),
            );
        }
    }

    fn all_failed(&mut self, raw: Option<&RawAllFailed>) -> Checked<AllFailed> {
        let mut a = AllFailed::default();
        let Some(raw) = raw else { return Some(a) };
        let mut ok = true;
        if let Some(v) = &raw.status.0 {
            match self.int(
                v,
                "all_failed.status",
                300,
                699,
                "a final failure status (300-699)",
            ) {
                Some(n) => {
                    a.status = n as u16;
                    // The default reason belongs to 503; another status
                    // without a reason gets its standard phrase.
                    if raw.reason.0.is_none() {
                        a.reason = standard_reason(a.status).to_string();
                    }
                }
                None => ok = false,
            }
        }
        if let Some(v) = &raw.reason.0 {
            match self.name(
                v,
                "all_failed.reason",
                "a reason phrase such as \"Service Unavailable\"",
            ) {
                Some(r) => a.reason = r,
                None => ok = false,
            }
        }
        if let Some(v) = &raw.retry_after.0 {
            if matches!(&v.value, Scalar::Text(t) if t == "none") {
                a.retry_after = None;
            } else if let Some(d) = self.duration(v, "all_failed.retry_after") {
                let t = self.text(v);
                if d.subsec_nanos() != 0 {
                    self.error(
                        Some(v.referenced),
                        "all_failed.retry_after",
                        format!("{t}: Retry-After is whole seconds"),
                    );
                    ok = false;
                } else if let Ok(s) = u32::try_from(d.as_secs()) {
                    a.retry_after = Some(s);
                } else {
                    self.error(
                        Some(v.referenced),
                        "all_failed.retry_after",
                        format!("{t}: too long"),
                    );
                    ok = false;
                }
            } else {
                ok = false;
            }
        }
        ok.then_some(a)
    }

    fn log(&mut self, raw: Option<&RawLog>) -> Checked<LogConfig> {
        let mut l = LogConfig::default();
        let Some(raw) = raw else { return Some(l) };
        let mut ok = true;
        if let Some(v) = &raw.format.0 {
            match self.word(v, "log.format", &["human", "json"]) {
                Some(i) => l.format = [LogFormat::Human, LogFormat::Json][i],
                None => ok = false,
            }
        }
        if let Some(v) = &raw.level.0 {
            const LEVELS: [LogLevel; 5] = [
                LogLevel::Error,
                LogLevel::Warn,
                LogLevel::Info,
                LogLevel::Debug,
                LogLevel::Trace,
            ];
            match self.word(v, "log.level", &LEVELS.map(LogLevel::as_str)) {
                Some(i) => l.level = LEVELS[i],
                None => ok = false,
            }
        }
        ok.then_some(l)
    }
}

// ---------------------------------------------------------------------------
// Small parsers.

/// `250ms`, `2s`, `1m`, `12h`: a whole number and a unit.
fn parse_duration(t: &str) -> Result<Duration, String> {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    if digits > 0 && unit.is_empty() {
        return Err(format!("{t} has no unit: write {t}ms, {t}s, {t}m or {t}h"));
    }
    let bad = || {
        format!("{t:?} is not a duration: write a whole number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h")
    };
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| format!("{t}: too long"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{t}: too long"))
}

/// A duration the way it would be written in the file.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

/// `host:port` with a DNS name (or IPv4 literal) as host.
fn split_host_port(t: &str) -> Option<(&str, u16)> {
    let (host, port) = t.rsplit_once(':')?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !host.starts_with(['-', '.'])
        && !host.ends_with('-');
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if !host_ok || !port_ok {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// "`a`, `b` or `c`".
fn one_of(choices: &[&str]) -> String {
    match choices {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The line of a regex error that says what is wrong (its message spans
/// several lines, with a caret under the pattern).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}

/// RFC 3261 §21 reason phrases for the statuses an operator might choose.
fn standard_reason(status: u16) -> &'static str {
    match status {
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        380 => "Alternative Service",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => match status / 100 {
            3 => "Redirection",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeline_health::CanaryConfig;

    const ORIGIN: &str = "lifeline.yaml";

    /// Names the tests use, without DNS.
    fn fake_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let v4 = SocketAddr::from(([192, 0, 2, 30], port));
        let v6 = SocketAddr::new("2001:db8::30".parse().unwrap(), port);
        match host {
            "trunk.example" => Ok(vec![v4]),
            "dual.example" => Ok(vec![v6, v4]),
            "empty.example" => Ok(vec![]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
        }
    }

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_str_with(text, ORIGIN, &fake_resolve)
    }

    fn ok(text: &str) -> Config {
        match load(text) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    /// Every error, one string each.
    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => {
                let lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
                assert_eq!(lines.len(), e.errors().len(), "one error per line");
                lines
            }
        }
    }

    /// The one error for `text`.
    fn error(text: &str) -> String {
        let e = errors(text);
        assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
        e.into_iter().next().unwrap()
    }

    /// A minimal valid file; tests append or replace lines.
    const MIN: &str = "\
listen:
  - udp: 127.0.0.1:5060
trunks:
  - name: a
    address: 192.0.2.10:5060
routes:
  - name: r
    match: any
    trunks: [a]
";

    /// MIN plus `extra` lines at the end (line 10 onwards).
    fn min_with(extra: &str) -> String {
        format!("{MIN}{extra}")
    }

    /// The example in DESIGN.md, "Configuration (YAML)", verbatim.
    const DESIGN_EXAMPLE: &str = r#"listen:
  - udp: 0.0.0.0:5060
  - tcp: 0.0.0.0:5060
admin: 127.0.0.1:9060
journal: /var/lib/lifeline/journal
emergency:
  numbers: ["999", "112", "911"]      # urn:service:sos always counts
trunks:
  - name: primary
    address: 192.0.2.10:5060
    transport: udp
    probe: { interval: 250ms, timeout: 250ms, down_after: 2, up_after: 3 }
  - name: backup
    address: 198.51.100.20:5060
    transport: udp
routes:
  - name: emergency
    match: emergency
    trunks: [primary, backup]          # priority order
    failover_after: 200ms
  - name: default
    match: any
    trunks: [primary, backup]
"#;

    #[test]
    fn design_example_needs_only_advertise() {
        // It listens on 0.0.0.0, which cannot go in Via: that is the one
        // thing it lacks, and the error says so at the listen address.
        assert_eq!(
            errors(DESIGN_EXAMPLE),
            ["lifeline.yaml:2:10: advertise: not set, and the first listen address 0.0.0.0:5060 \
              is a wildcard: set advertise to the address trunks and callers send to, e.g. \
              `advertise: 192.0.2.1:5060`"]
        );
        let text = DESIGN_EXAMPLE.replace(
            "admin: 127.0.0.1:9060\n",
            "advertise: 192.0.2.1:5060\nadmin: 127.0.0.1:9060\n",
        );
        let c = ok(&text);
        assert_eq!(
            c.listen(),
            [
                (Transport::Udp, "0.0.0.0:5060".parse().unwrap()),
                (Transport::Tcp, "0.0.0.0:5060".parse().unwrap()),
            ]
        );
        assert_eq!(c.advertise(), "192.0.2.1:5060".parse().unwrap());
        assert_eq!(c.admin(), "127.0.0.1:9060".parse().unwrap());
        assert_eq!(c.journal(), Some(Path::new("/var/lib/lifeline/journal")));
        assert_eq!(c.emergency.numbers, ["999", "112", "911"]);
        let names: Vec<&str> = c.trunks().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["primary", "backup"]);
        assert_eq!(
            c.trunks()[0].peer,
            Peer::udp("192.0.2.10:5060".parse().unwrap())
        );
        assert_eq!(
            c.trunks()[1].peer,
            Peer::udp("198.51.100.20:5060".parse().unwrap())
        );
        assert_eq!(c.trunks()[0].probe, ProbeConfig::default());
        let routes = c.routes();
        assert_eq!(routes.len(), 2);
        assert!(matches!(routes[0].matches, RouteMatch::Emergency));
        assert!(matches!(routes[1].matches, RouteMatch::Any));
        assert_eq!(routes[0].trunks, ["primary", "backup"]);
        assert_eq!(routes[0].failover_after, Duration::from_millis(200));
    }

    #[test]
    fn every_default() {
        let c = ok(MIN);
        assert_eq!(
            c.listen(),
            [(Transport::Udp, "127.0.0.1:5060".parse().unwrap())]
        );
        // advertise: the first listen address, as it is not a wildcard.
        assert_eq!(c.advertise(), "127.0.0.1:5060".parse().unwrap());
        assert_eq!(c.admin(), "127.0.0.1:9060".parse().unwrap());
        assert_eq!(c.journal(), None);
        assert_eq!(c.emergency, EmergencyConfig::default());
        assert_eq!(c.emergency.numbers, ["999", "112", "911"]);
        assert!(c.emergency.trusted_resource_priority.is_empty());
        assert_eq!(c.timers, Timers::default());
        let t = &c.trunks()[0];
        assert_eq!(t.peer.transport, Transport::Udp);
        assert!(!t.large_over_tcp);
        assert_eq!(t.probe, ProbeConfig::default());
        assert_eq!(t.probe.interval, Duration::from_millis(250));
        assert_eq!(t.probe.timeout, Duration::from_millis(250));
        assert_eq!((t.probe.down_after, t.probe.up_after), (2, 3));
        assert_eq!(t.probe.alive, AliveCodes::Any);
        assert!(t.probe.enabled);
        assert_eq!(t.probe.flap, FlapDamping::default());
        assert_eq!((t.max_calls, t.max_cps), (None, None));
        assert_eq!(t.probe.canary, CanaryConfig::default());
        assert_eq!(
            (t.probe.canary.duration, t.probe.canary.one_in),
            (Duration::from_secs(10), 10)
        );
        let r = &c.routes()[0];
        assert_eq!(r.failover_after, Duration::from_millis(200));
        assert_eq!(r.progress_timeout, Duration::from_millis(800));
        assert_eq!(r.progress_timeout_min, Duration::from_millis(100));
        assert_eq!(r.progress_timeout_factor, 4);
        assert_eq!(r.failover_codes, [408, 500, 502, 503, 504]);
        assert_eq!(r.rescue_ringing, RescueRinging::Emergency);
        assert_eq!(r.hedge_after, None);
        assert!(r.shares.is_empty());
        assert!(c.warnings().is_empty());
        assert_eq!(c.all_failed, AllFailed::default());
        assert_eq!(
            (
                c.all_failed.status,
                c.all_failed.reason.as_str(),
                c.all_failed.retry_after
            ),
            (503, "Service Unavailable", Some(5))
        );
        assert_eq!(c.dialog_max_age, Duration::from_secs(12 * 3600));
        assert_eq!(c.tcp_idle_timeout(), Duration::from_secs(120));
        assert_eq!(
            c.log(),
            LogConfig {
                format: LogFormat::Human,
                level: LogLevel::Info
            }
        );
        // And the proxy gets the same, plus the seed.
        let p = c.proxy_config(42);
        let d = ProxyConfig::new(p.advertise, vec![], vec![]);
        assert_eq!(p.seed, 42);
        assert_eq!(p.advertise, c.advertise());
        assert_eq!(p.timers, d.timers);
        assert_eq!(p.emergency, d.emergency);
        assert_eq!(p.all_failed, d.all_failed);
        assert_eq!(p.dialog_max_age, d.dialog_max_age);
        assert_eq!(p.trunks, c.trunks);
        assert!(p.aliases.is_empty());
    }

    #[test]
    fn every_key_set() {
        let c = ok(r#"
listen:
  - tcp: "[::1]:5070"
  - udp: 127.0.0.1:5060
advertise: "[2001:db8::1]:5070"
admin: "[::1]:9999"
journal: /tmp/journal
emergency:
  numbers: [0112, "+44999", "*99#"]
  trusted_resource_priority: [192.0.2.5, "2001:db8::5"]
timers: { t1: 100ms, t2: 2s, t4: 3s, timer_c: 4m }
trunks:
  - name: primary
    address: "[2001:db8::10]:5061"
    transport: tcp
    probe: { interval: 1s, timeout: 500ms, down_after: 5, up_after: 100, alive: [200, 405], enabled: false, flap_window: 1m, flap_hold: 2s, flap_max_hold: 1h, live_hold: 0s, canary: 0s, canary_one_in: 3 }
    max_calls: 120
    max_cps: 10
  - name: backup
    address: trunk.example:5062
    transport: udp+tcp
    probe: { alive: not-5xx }
  - name: third
    address: 192.0.2.12:5060
    probe:
      alive: any
routes:
  - name: uk
    match: { uri: "^sip:\\+44" }
    trunks: [backup]
    failover_after: 1s
    progress_timeout: 10s
    failover_codes: [503, 480]
  - name: emergency
    match: emergency
    trunks: [primary, backup, third]
all_failed: { status: 480, retry_after: none }
dialog_max_age: 2h
tcp_idle_timeout: 10m
log: { format: json, level: trace }
"#);
        assert_eq!(
            c.listen(),
            [
                (Transport::Tcp, "[::1]:5070".parse().unwrap()),
                (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
            ]
        );
        assert_eq!(c.advertise(), "[2001:db8::1]:5070".parse().unwrap());
        assert_eq!(c.admin(), "[::1]:9999".parse().unwrap());
        assert_eq!(c.journal(), Some(Path::new("/tmp/journal")));
        // Numbers as written: the leading zero stays.
        assert_eq!(c.emergency.numbers, ["0112", "+44999", "*99#"]);
        assert_eq!(
            c.emergency.trusted_resource_priority,
            [
                "192.0.2.5".parse::<IpAddr>().unwrap(),
                "2001:db8::5".parse().unwrap()
            ]
        );
        assert_eq!(
            c.timers,
            Timers {
                t1: Duration::from_millis(100),
                t2: Duration::from_secs(2),
                t4: Duration::from_secs(3),
                timer_c: Duration::from_secs(240),
            }
        );
        let t = c.trunks();
        assert_eq!(
            t[0].peer,
            Peer {
                addr: "[2001:db8::10]:5061".parse().unwrap(),
                transport: Transport::Tcp
            }
        );
        assert_eq!(
            t[0].probe,
            ProbeConfig {
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                down_after: 5,
                up_after: 100,
                alive: AliveCodes::Only(vec![200, 405]),
                flap: FlapDamping {
                    window: Duration::from_secs(60),
                    hold: Duration::from_secs(2),
                    max_hold: Duration::from_secs(3600),
                    live_hold: Duration::ZERO,
                },
                enabled: false,
                canary: CanaryConfig {
                    duration: Duration::ZERO,
                    one_in: 3,
                },
            }
        );
        assert_eq!((t[0].max_calls, t[0].max_cps), (Some(120), Some(10)));
        // The name's only address, though it is not of the advertised family.
        assert_eq!(t[1].peer.addr, "192.0.2.30:5062".parse().unwrap());
        assert_eq!(t[1].peer.transport, Transport::Udp);
        assert!(t[1].large_over_tcp, "udp+tcp: large requests over TCP");
        assert!(!t[0].large_over_tcp && !t[2].large_over_tcp);
        assert_eq!(t[1].probe.alive, AliveCodes::NotServerError);
        assert_eq!(t[2].probe.alive, AliveCodes::Any);
        let r = c.routes();
        match &r[0].matches {
            RouteMatch::Uri(re) => {
                assert!(re.is_match("sip:+441234@example.com"));
                assert!(!re.is_match("sip:+331234@example.com"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r[0].failover_after, Duration::from_secs(1));
        assert_eq!(r[0].progress_timeout, Duration::from_secs(10));
        assert_eq!(r[0].failover_codes, [503, 480]);
        assert_eq!(r[1].trunks, ["primary", "backup", "third"]);
        // Another status without a reason gets its own standard phrase.
        assert_eq!(
            c.all_failed,
            AllFailed {
                status: 480,
                reason: "Temporarily Unavailable".into(),
                retry_after: None
            }
        );
        assert_eq!(c.dialog_max_age, Duration::from_secs(7200));
        assert_eq!(c.tcp_idle_timeout(), Duration::from_secs(600));
        assert_eq!(
            c.log(),
            LogConfig {
                format: LogFormat::Json,
                level: LogLevel::Trace
            }
        );
        assert_eq!(c.log().level.as_str(), "trace");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("2s"), Ok(ms(2_000)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("12h"), Ok(ms(12 * 3_600_000)));
        assert_eq!(parse_duration("0s"), Ok(ms(0)));
        assert_eq!(
            parse_duration("250"),
            Err("250 has no unit: write 250ms, 250s, 250m or 250h".into())
        );
        for bad in ["", "ms", "2 s", "1.5s", "-1s", "2sec", "1m30s", "2S", "s2"] {
            assert_eq!(
                parse_duration(bad),
                Err(format!(
                    "{bad:?} is not a duration: write a whole number and a unit (ms, s, m or \
                     h), e.g. 250ms, 2s, 1m, 12h"
                )),
                "{bad}"
            );
        }
        assert_eq!(
            parse_duration("99999999999999999999h"),
            Err("99999999999999999999h: too long".into())
        );
        assert_eq!(
            parse_duration("9999999999999999h"),
            Err("9999999999999999h: too long".into())
        );
        assert_eq!(show_duration(ms(250)), "250ms");
        assert_eq!(show_duration(ms(60_000)), "1m");
        assert_eq!(show_duration(ms(0)), "0s");
    }

    #[test]
    fn bare_number_durations_are_refused_everywhere() {
        let text = r#"
listen: [udp: 127.0.0.1:5060]
timers: { t1: 500, t2: 4, t4: 5, timer_c: 181 }
trunks:
  - name: a
    address: 192.0.2.10:5060
    probe: { interval: 250, timeout: 250, flap_window: 30, flap_hold: 1, flap_max_hold: 30, live_hold: 5 }
routes:
  - { name: r, match: any, trunks: [a], failover_after: 200, progress_timeout: 2 }
all_failed: { retry_after: 5 }
dialog_max_age: 12
"#;
        let e = errors(text);
        let expect = [
            "lifeline.yaml:3:15: timers.t1: 500 has no unit: write 500ms, 500s, 500m or 500h",
            "lifeline.yaml:3:24: timers.t2: 4 has no unit: write 4ms, 4s, 4m or 4h",
            "lifeline.yaml:3:31: timers.t4: 5 has no unit: write 5ms, 5s, 5m or 5h",
            "lifeline.yaml:3:43: timers.timer_c: 181 has no unit: write 181ms, 181s, 181m or 181h",
            "lifeline.yaml:7:24: trunks[0].probe.interval: 250 has no unit: write 250ms, 250s, 250m or 250h",
            "lifeline.yaml:7:38: trunks[0].probe.timeout: 250 has no unit: write 250ms, 250s, 250m or 250h",
            "lifeline.yaml:7:56: trunks[0].probe.flap_window: 30 has no unit: write 30ms, 30s, 30m or 30h",
            "lifeline.yaml:7:71: trunks[0].probe.flap_hold: 1 has no unit: write 1ms, 1s, 1m or 1h",
            "lifeline.yaml:7:89: trunks[0].probe.flap_max_hold: 30 has no unit: write 30ms, 30s, 30m or 30h",
            "lifeline.yaml:7:104: trunks[0].probe.live_hold: 5 has no unit: write 5ms, 5s, 5m or 5h",
            "lifeline.yaml:9:57: routes[0].failover_after: 200 has no unit: write 200ms, 200s, 200m or 200h",
            "lifeline.yaml:9:80: routes[0].progress_timeout: 2 has no unit: write 2ms, 2s, 2m or 2h",
            "lifeline.yaml:10:28: all_failed.retry_after: 5 has no unit: write 5ms, 5s, 5m or 5h",
            "lifeline.yaml:11:17: dialog_max_age: 12 has no unit: write 12ms, 12s, 12m or 12h",
        ];
        assert_eq!(e, expect);
        // Quoted, it is still a number without a unit.
        assert_eq!(
            error(&min_with("dialog_max_age: \"12\"\n")),
            "lifeline.yaml:10:17: dialog_max_age: 12 has no unit: write 12ms, 12s, 12m or 12h"
        );
    }

    #[test]
    fn tcp_idle_timeout_zero_means_never() {
        assert_eq!(
            ok(&min_with("tcp_idle_timeout: 0\n")).tcp_idle_timeout(),
            Duration::ZERO
        );
        assert_eq!(
            ok(&min_with("tcp_idle_timeout: 0s\n")).tcp_idle_timeout(),
            Duration::ZERO
        );
        assert_eq!(
            ok(&min_with("tcp_idle_timeout: 30s\n")).tcp_idle_timeout(),
            Duration::from_secs(30)
        );
        assert_eq!(
            error(&min_with("tcp_idle_timeout: 30\n")),
            "lifeline.yaml:10:19: tcp_idle_timeout: 30 has no unit: write 30ms, 30s, 30m or 30h"
        );
        assert_eq!(
            error(&min_with("tcp_idle_timeout: never\n")),
            "lifeline.yaml:10:19: tcp_idle_timeout: \"never\" is not a duration: write a whole \
             number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h"
        );
    }

    #[test]
    fn unknown_keys_are_refused_where_they_are() {
        let cases = [
            (
                min_with("admn: 127.0.0.1:9060\n"),
                "lifeline.yaml:10:1: admn: unknown field `admn`, expected one of listen, \
                 advertise, admin, journal, emergency, timers, trunks, routes, all_failed, \
                 dialog_max_age, tcp_idle_timeout, log",
            ),
            (
                MIN.replace("    address:", "    adress:"),
                "lifeline.yaml:5:5: trunks[0].adress: unknown field `adress`, expected one of \
                 name, address, transport, probe, max_calls, max_cps",
            ),
            (
                min_with("emergency: { number: [\"112\"] }\n"),
                "lifeline.yaml:10:14: emergency.number: unknown field `number`, expected one of \
                 numbers, trusted_resource_priority",
            ),
            (
                min_with("timers: { t3: 1s }\n"),
                "lifeline.yaml:10:11: timers.t3: unknown field `t3`, expected one of t1, t2, t4, \
                 timer_c",
            ),
            (
                MIN.replace(
                    "    address: 192.0.2.10:5060\n",
                    "    address: 192.0.2.10:5060\n    probe: { intreval: 1s }\n",
                ),
                "lifeline.yaml:6:14: trunks[0].probe.intreval: unknown field `intreval`, \
                 expected one of interval, timeout, down_after, up_after, alive, enabled, \
                 flap_window, flap_hold, flap_max_hold, live_hold, canary, canary_one_in",
            ),
            (
                MIN.replace("    trunks: [a]\n", "    trunks: [a]\n    failover: 1s\n"),
                "lifeline.yaml:10:5: routes[0].failover: unknown field `failover`, expected one \
                 of name, match, trunks, failover_after, progress_timeout, progress_timeout_min, \
                 progress_timeout_factor, failover_codes, rescue_ringing, hedge_after",
            ),
            (
                MIN.replace(
                    "    trunks: [a]\n",
                    "    trunks: [{ name: a, priority: 1, wieght: 2 }]\n",
                ),
                "lifeline.yaml:9:38: routes[0].trunks[0].wieght: unknown field `wieght`, expected \
                 one of name, priority, weight",
            ),
            (
                min_with("all_failed: { code: 503 }\n"),
                "lifeline.yaml:10:15: all_failed.code: unknown field `code`, expected one of \
                 status, reason, retry_after",
            ),
            (
                min_with("log: { levle: debug }\n"),
                "lifeline.yaml:10:8: log.levle: unknown field `levle`, expected one of format, \
                 level",
            ),
            (
                // A key named like the location wrapper's own field.
                min_with("log: { value: 1 }\n"),
                "lifeline.yaml:10:8: log.value: unknown field `value`, expected one of format, \
                 level",
            ),
            (
                MIN.replace("    match: any", "    match: { url: x }"),
                "lifeline.yaml:8:14: routes[0].match: unknown field `url`, expected one of uri",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(error(&text), want, "{text}");
        }
    }

    #[test]
    fn yaml_errors_have_their_place() {
        let cases = [
            ("", "lifeline.yaml: is empty: it needs at least listen, trunks and routes"),
            ("# nothing\n\n", "lifeline.yaml: is empty: it needs at least listen, trunks and routes"),
            (
                "just text\n",
                "lifeline.yaml:1:1: the file must be keys and values (listen:, trunks:, routes: ...)",
            ),
            (
                "listen: udp\n",
                "lifeline.yaml:1:9: listen: expected a list here (`- item` lines or `[a, b]`)",
            ),
            (
                "listen: [udp: 127.0.0.1:5060]\ntrunks: [{name: a\n",
                "lifeline.yaml:2:10: trunks: unclosed bracket '{'",
            ),
            (
                "admin: 127.0.0.1:1\nadmin: 127.0.0.1:2\n",
                "lifeline.yaml:2:1: duplicate mapping key `admin` is not allowed here",
            ),
            (
                "listen:\n  - udp: [127.0.0.1:5060]\n",
                "lifeline.yaml:2:5: listen[0].udp: invalid type: sequence, expected a single value",
            ),
            (
                "trunks:\n  - name: a\n    probe: 5\n",
                "lifeline.yaml:3:12: trunks[0].probe: expected keys and values here (`key: value`)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(error(text), want, "{text:?}");
        }
    }

    #[test]
    fn listen_and_addresses() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1\n",
                "lifeline.yaml:2:10: listen[0].udp: \"127.0.0.1\" is not ip:port: add the port, e.g. :5060",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: localhost:5060\n",
                "lifeline.yaml:2:10: listen[0].udp: \"localhost:5060\" is not ip:port (an IP \
                 address and a port, e.g. 192.0.2.1:5060)",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: \"::1:5060\"\n",
                "lifeline.yaml:2:10: listen[0].udp: \"::1:5060\" is not ip:port: IPv6 addresses \
                 go in brackets before the port, e.g. \"[::1:5060]:5060\"",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1:0\n",
                "lifeline.yaml:2:10: listen[0].udp: \"127.0.0.1:0\": port 0 is not a port",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - sctp: 127.0.0.1:5060\n",
                "lifeline.yaml:2:5: listen[0]: unknown transport \"sctp\": udp or tcp",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - 127.0.0.1:5060\n",
                "lifeline.yaml:2:5: listen[0]: \"127.0.0.1:5060\" has no transport: write `udp: \
                 127.0.0.1:5060` or `tcp: 127.0.0.1:5060`",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1:5060\n  - udp: 127.0.0.1:5060\n",
                "lifeline.yaml:3:10: listen[1].udp: 127.0.0.1:5060 is already listed as listen[0]",
            ),
            (
                "listen:\n  - udp: 127.0.0.1:5060\n",
                "listen: []\n",
                "lifeline.yaml:1:9: listen: at least one listen address is needed, e.g. `- udp: \
                 0.0.0.0:5060`",
            ),
            (
                "listen:\n  - udp: 127.0.0.1:5060\n",
                "",
                "lifeline.yaml: listen: at least one listen address is needed, e.g. `- udp: \
                 0.0.0.0:5060`",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1:5060\n  - udp:\n",
                "lifeline.yaml:3:8: listen[1].udp: no value: write ip:port",
            ),
        ];
        for (from, to, want) in cases {
            let text = MIN.replacen(from, to, 1);
            assert_eq!(error(&text), *want, "{text}");
        }
        let cases = [
            (
                "advertise: 0.0.0.0:5060\n",
                "lifeline.yaml:10:12: advertise: 0.0.0.0:5060 is a wildcard: advertise the \
                 address trunks and callers send to",
            ),
            (
                "advertise:\n",
                "lifeline.yaml:10:10: advertise: no value: write ip:port",
            ),
            (
                "admin: localhost:9060\n",
                "lifeline.yaml:10:8: admin: \"localhost:9060\" is not ip:port (an IP address and \
                 a port, e.g. 192.0.2.1:5060)",
            ),
            (
                "journal: \"\"\n",
                "lifeline.yaml:10:10: journal: is empty: write a directory",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(error(&min_with(extra)), want, "{extra}");
        }
        // advertise with a wildcard listen address: set, it is fine.
        let c = ok(&MIN
            .replace("127.0.0.1:5060", "0.0.0.0:5060")
            .replace("trunks:\n", "advertise: 192.0.2.1:5060\ntrunks:\n"));
        assert_eq!(c.advertise(), "192.0.2.1:5060".parse().unwrap());
        // Unset, with a specific first listen address: that address.
        let c = ok(&MIN.replace(
            "  - udp: 127.0.0.1:5060\n",
            "  - tcp: 127.0.0.2:5070\n  - udp: 0.0.0.0:5060\n",
        ));
        assert_eq!(c.advertise(), "127.0.0.2:5070".parse().unwrap());
    }

    #[test]
    fn trunk_errors() {
        let addr = "    address: 192.0.2.10:5060\n";
        let cases = [
            (
                addr,
                "    address: backup.example:50x60\n",
                "lifeline.yaml:5:14: trunks[0].address: \"backup.example:50x60\" is not host:port",
            ),
            (
                addr,
                "    address: trunk.example\n",
                "lifeline.yaml:5:14: trunks[0].address: \"trunk.example\" is not host:port: add \
                 the port, e.g. :5060",
            ),
            (
                addr,
                "    address: 2001:db8::10:5060\n",
                "lifeline.yaml:5:14: trunks[0].address: \"2001:db8::10:5060\" is not host:port: \
                 write IPv6 addresses in brackets, e.g. \"[2001:db8::1]:5060\"",
            ),
            (
                addr,
                "    address: 192.0.2.10:0\n",
                "lifeline.yaml:5:14: trunks[0].address: \"192.0.2.10:0\": port 0 is not a port",
            ),
            (
                addr,
                "    address: 0.0.0.0:5060\n",
                "lifeline.yaml:5:14: trunks[0].address: \"0.0.0.0:5060\" is a wildcard address, \
                 not one calls can be sent to",
            ),
            (
                addr,
                "    address: nosuch.example:5060\n",
                "lifeline.yaml:5:14: trunks[0].address: cannot resolve \"nosuch.example\" (trunk \
                 \"a\"): no such host",
            ),
            (
                addr,
                "    address: empty.example:5060\n",
                "lifeline.yaml:5:14: trunks[0].address: \"empty.example\" (trunk \"a\") resolves \
                 to no address",
            ),
            (
                addr,
                "",
                "lifeline.yaml:4:5: trunks[0].address: missing: every trunk needs an address \
                 (ip:port or host:port)",
            ),
            (
                addr,
                "    address: 192.0.2.10:5060\n    transport: tls\n",
                "lifeline.yaml:6:16: trunks[0].transport: \"tls\" is not udp, tcp or udp+tcp",
            ),
            (
                "  - name: a\n",
                "  - name: \"\"\n",
                "lifeline.yaml:4:11: trunks[0].name: is empty: write the trunk's name",
            ),
            (
                "trunks:\n  - name: a\n    address: 192.0.2.10:5060\n",
                "trunks: []\n",
                "lifeline.yaml:3:9: trunks: at least one trunk is needed",
            ),
        ];
        for (from, to, want) in cases {
            let text = MIN.replacen(from, to, 1);
            assert_eq!(error(&text), want, "{text}");
        }
        // A trunk without a name: its own error, and the route's trunk is
        // unknown (the file names no trunk "a").
        assert_eq!(
            errors(&MIN.replacen("  - name: a\n    address:", "  - address:", 1)),
            [
                "lifeline.yaml:4:5: trunks[0].name: missing: every trunk needs a name (routes \
                 refer to it)",
            ]
        );
        // Duplicates: reported at the second, once.
        assert_eq!(
            error(&MIN.replacen(
                "routes:",
                "  - name: a\n    address: 192.0.2.11:5060\nroutes:",
                1
            )),
            "lifeline.yaml:6:11: trunks[1].name: \"a\" is already the name of trunks[0]"
        );
    }

    #[test]
    fn probe_errors() {
        let probe = |p: &str| {
            MIN.replacen(
                "    address: 192.0.2.10:5060\n",
                &format!("    address: 192.0.2.10:5060\n    probe: {{ {p} }}\n"),
                1,
            )
        };
        // "    probe: { " is 13 characters: values start at column 14 + key.
        let cases = [
            ("interval: 0ms", "lifeline.yaml:6:24: trunks[0].probe.interval: 0ms: must be more than 0"),
            ("interval: 61s", "lifeline.yaml:6:24: trunks[0].probe.interval: 61s: must be at most 1m"),
            ("timeout: 0s", "lifeline.yaml:6:23: trunks[0].probe.timeout: 0s: must be more than 0"),
            ("timeout: 2m", "lifeline.yaml:6:23: trunks[0].probe.timeout: 2m: must be at most 1m"),
            ("down_after: 0", "lifeline.yaml:6:26: trunks[0].probe.down_after: 0 is not a count from 1 to 100"),
            ("down_after: 101", "lifeline.yaml:6:26: trunks[0].probe.down_after: 101 is not a count from 1 to 100"),
            ("up_after: -1", "lifeline.yaml:6:24: trunks[0].probe.up_after: -1 is not a count from 1 to 100"),
            (
                "up_after: two",
                "lifeline.yaml:6:24: trunks[0].probe.up_after: \"two\" is not a whole number (a count from 1 to 100)",
            ),
            (
                "up_after: 2.5",
                "lifeline.yaml:6:24: trunks[0].probe.up_after: \"2.5\" is not a whole number (a count from 1 to 100)",
            ),
            (
                "alive: sometimes",
                "lifeline.yaml:6:21: trunks[0].probe.alive: \"sometimes\" is not any, not-5xx or a list of status codes such as [200, 405]",
            ),
            (
                "alive: []",
                "lifeline.yaml:6:21: trunks[0].probe.alive: empty list: no answer would count as alive; list codes such as [200, 405], or write any",
            ),
            (
                "alive: [200, 99]",
                "lifeline.yaml:6:27: trunks[0].probe.alive[1]: 99 is not a SIP status code (100-699)",
            ),
            ("enabled: yes", "lifeline.yaml:6:23: trunks[0].probe.enabled: \"yes\" is not true or false"),
            (
                "flap_hold: 1m, flap_max_hold: 30s",
                "lifeline.yaml:6:25: trunks[0].probe.flap_hold: flap_hold (1m) is longer than flap_max_hold (30s)",
            ),
            (
                "flap_max_hold: 500ms",
                "lifeline.yaml:6:29: trunks[0].probe.flap_max_hold: flap_hold (1s) is longer than flap_max_hold (500ms)",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(error(&probe(p)), want, "{p}");
        }
        // Bounds are inclusive; no flap damping at all is allowed.
        let c = ok(&probe(
            "interval: 60s, timeout: 1ms, down_after: 1, up_after: 100, flap_window: 0s, flap_hold: 0s",
        ));
        assert_eq!(c.trunks()[0].probe.interval, Duration::from_secs(60));
        assert_eq!(c.trunks()[0].probe.flap.window, Duration::ZERO);
    }

    #[test]
    fn route_errors() {
        let cases = [
            (
                "    trunks: [a]\n",
                "    trunks: [a, b]\n",
                "lifeline.yaml:9:17: routes[0].trunks[1]: unknown trunk \"b\" (trunks: a)",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a, a]\n",
                "lifeline.yaml:9:17: routes[0].trunks[1]: trunk \"a\" is already listed as routes[0].trunks[0]",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: []\n",
                "lifeline.yaml:9:13: routes[0].trunks: empty: list the trunks to try, in order, e.g. [primary, backup]",
            ),
            (
                "    trunks: [a]\n",
                "",
                "lifeline.yaml:7:5: routes[0].trunks: missing: list the trunks to try, in order, e.g. [primary, backup]",
            ),
            (
                "    match: any\n",
                "",
                "lifeline.yaml:7:5: routes[0].match: missing: write emergency, any or { uri: REGEX }",
            ),
            (
                "    match: any\n",
                "    match: everything\n",
                "lifeline.yaml:8:12: routes[0].match: \"everything\" is not emergency, any or { uri: REGEX }",
            ),
            (
                "    match: any\n",
                "    match: { uri: \"^sip:(999\" }\n",
                "lifeline.yaml:8:19: routes[0].match.uri: \"^sip:(999\" is not a valid regular expression: unclosed group",
            ),
            (
                "  - name: r\n",
                "  - name: \"\"\n",
                "lifeline.yaml:7:11: routes[0].name: is empty: write the route's name",
            ),
            (
                "  - name: r\n",
                "  - name:\n",
                "lifeline.yaml:7:9: routes[0].name: no value: write the route's name",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    failover_after: 0ms\n",
                "lifeline.yaml:10:21: routes[0].failover_after: 0ms: must be more than 0",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    progress_timeout: 0s\n",
                "lifeline.yaml:10:23: routes[0].progress_timeout: 0s: must be more than 0",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    failover_codes: [408, 302]\n",
                "lifeline.yaml:10:27: routes[0].failover_codes[1]: 302 is not a failure status (400-699)",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    failover_codes: [700]\n",
                "lifeline.yaml:10:22: routes[0].failover_codes[0]: 700 is not a failure status (400-699)",
            ),
            (
                "routes:\n  - name: r\n    match: any\n    trunks: [a]\n",
                "routes: []\n",
                "lifeline.yaml:6:9: routes: at least one route is needed, e.g. `- { name: \
                 emergency, match: emergency, trunks: [primary, backup] }`",
            ),
            (
                "routes:\n  - name: r\n    match: any\n    trunks: [a]\n",
                "",
                "lifeline.yaml: routes: at least one route is needed, e.g. `- { name: emergency, \
                 match: emergency, trunks: [primary, backup] }`",
            ),
        ];
        for (from, to, want) in cases {
            let text = MIN.replacen(from, to, 1);
            assert_eq!(error(&text), want, "{text}");
        }
        // An empty failover list is allowed: only timeouts move the call.
        let c = ok(&MIN.replace(
            "    trunks: [a]\n",
            "    trunks: [a]\n    failover_codes: []\n",
        ));
        assert!(c.routes()[0].failover_codes.is_empty());
    }

    #[test]
    fn routes_that_can_never_match() {
        let text = "\
listen: [udp: 127.0.0.1:5060]
trunks: [{ name: a, address: 192.0.2.10:5060 }]
routes:
  - { name: first, match: emergency, trunks: [a] }
  - { name: all, match: any, trunks: [a] }
  - { name: late, match: emergency, trunks: [a] }
  - { name: later, match: { uri: x }, trunks: [a] }
";
        assert_eq!(
            errors(text),
            [
                "lifeline.yaml:6:5: routes[2]: never used: routes[1] (match: any) takes every request first",
                "lifeline.yaml:7:5: routes[3]: never used: routes[1] (match: any) takes every request first",
            ]
        );
        let text = "\
listen: [udp: 127.0.0.1:5060]
trunks: [{ name: a, address: 192.0.2.10:5060 }]
routes:
  - { name: one, match: emergency, trunks: [a] }
  - { name: two, match: emergency, trunks: [a] }
  - { name: one, match: any, trunks: [a] }
";
        assert_eq!(
            errors(text),
            [
                "lifeline.yaml:5:5: routes[1]: never used: routes[0] (match: emergency) takes every emergency call first",
                "lifeline.yaml:6:13: routes[2].name: \"one\" is already the name of routes[0]",
            ]
        );
    }

    #[test]
    fn emergency_timers_all_failed_log_errors() {
        let cases = [
            (
                "emergency: { numbers: [] }\n",
                "lifeline.yaml:10:23: emergency.numbers: empty: list the emergency numbers, e.g. [\"999\", \"112\", \"911\"]",
            ),
            (
                "emergency: { numbers: [\"112\", \"11 2\"] }\n",
                "lifeline.yaml:10:31: emergency.numbers[1]: \"11 2\" is not a dialled number (digits, *, # and + only)",
            ),
            (
                "emergency: { numbers: [\"\"] }\n",
                "lifeline.yaml:10:24: emergency.numbers[0]: \"\" is not a dialled number (digits, *, # and + only)",
            ),
            (
                "emergency: { trusted_resource_priority: [192.0.2.5:5060] }\n",
                "lifeline.yaml:10:42: emergency.trusted_resource_priority[0]: \"192.0.2.5:5060\" is not an IP address (no port, no name)",
            ),
            ("timers: { t1: 0ms }\n", "lifeline.yaml:10:15: timers.t1: 0ms: must be more than 0"),
            (
                "timers: { t1: 5s }\n",
                "lifeline.yaml:10:15: timers.t1: t2 (4s) is shorter than t1 (5s): t2 caps the retransmit interval, which starts at t1",
            ),
            (
                "timers: { t2: 100ms }\n",
                "lifeline.yaml:10:15: timers.t2: t2 (100ms) is shorter than t1 (500ms): t2 caps the retransmit interval, which starts at t1",
            ),
            (
                "all_failed: { status: 200 }\n",
                "lifeline.yaml:10:23: all_failed.status: 200 is not a final failure status (300-699)",
            ),
            (
                "all_failed: { status: 700 }\n",
                "lifeline.yaml:10:23: all_failed.status: 700 is not a final failure status (300-699)",
            ),
            (
                "all_failed: { reason: \"\" }\n",
                "lifeline.yaml:10:23: all_failed.reason: is empty: write a reason phrase such as \"Service Unavailable\"",
            ),
            (
                "all_failed: { reason: \"a\\r\\nb\" }\n",
                "lifeline.yaml:10:23: all_failed.reason: \"a\\r\\nb\" contains control characters",
            ),
            (
                "all_failed: { retry_after: 1500ms }\n",
                "lifeline.yaml:10:28: all_failed.retry_after: 1500ms: Retry-After is whole seconds",
            ),
            (
                "all_failed: { retry_after: never }\n",
                "lifeline.yaml:10:28: all_failed.retry_after: \"never\" is not a duration: write a whole number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h",
            ),
            ("dialog_max_age: 0h\n", "lifeline.yaml:10:17: dialog_max_age: 0h: must be more than 0"),
            ("log: { format: xml }\n", "lifeline.yaml:10:16: log.format: \"xml\" is not human or json"),
            (
                "log: { level: verbose }\n",
                "lifeline.yaml:10:15: log.level: \"verbose\" is not error, warn, info, debug or trace",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(error(&min_with(extra)), want, "{extra}");
        }
        let c = ok(&min_with(
            "all_failed: { status: 503, reason: Overloaded, retry_after: 0s }\n",
        ));
        assert_eq!(
            c.all_failed,
            AllFailed {
                status: 503,
                reason: "Overloaded".into(),
                retry_after: Some(0)
            }
        );
        let c = ok(&min_with("all_failed: { retry_after: 2m }\n"));
        assert_eq!(c.all_failed.retry_after, Some(120));
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let text = "\
listen:
  - udp: 0.0.0.0:5060
trunks:
  - name: primary
    address: 192.0.2.10:5060
  - name: backup
    address: backup.example:50x60
  - name: primary
    address: 192.0.2.12:5060
    probe: { interval: 250, down_after: 0 }
routes:
  - name: emergency
    match: emergency
    trunks: [primary, bakup]
    failover_after: 2OOms
";
        assert_eq!(
            errors(text),
            [
                "lifeline.yaml:2:10: advertise: not set, and the first listen address \
                 0.0.0.0:5060 is a wildcard: set advertise to the address trunks and callers \
                 send to, e.g. `advertise: 192.0.2.1:5060`",
                "lifeline.yaml:7:14: trunks[1].address: \"backup.example:50x60\" is not host:port",
                "lifeline.yaml:8:11: trunks[2].name: \"primary\" is already the name of trunks[0]",
                "lifeline.yaml:10:24: trunks[2].probe.interval: 250 has no unit: write 250ms, \
                 250s, 250m or 250h",
                "lifeline.yaml:10:41: trunks[2].probe.down_after: 0 is not a count from 1 to 100",
                "lifeline.yaml:14:23: routes[0].trunks[1]: unknown trunk \"bakup\" (trunks: \
                 primary, backup)",
                "lifeline.yaml:15:21: routes[0].failover_after: \"2OOms\" is not a duration: \
                 write a whole number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h",
            ]
        );
    }

    #[test]
    fn names_resolve_once_at_load() {
        // The system resolver, on a name every host knows without DNS.
        let text = MIN.replace("192.0.2.10:5060", "localhost:5080");
        let c = Config::from_str(&text, ORIGIN).unwrap();
        let a = c.trunks()[0].peer.addr;
        assert!(a.ip().is_loopback(), "{a}");
        assert_eq!(a.port(), 5080);
        // The advertised address is IPv4, so an IPv4 answer is preferred.
        assert!(a.is_ipv4(), "{a}");
        // With the fake resolver: the first of the advertised family.
        let c = ok(&MIN.replace("192.0.2.10:5060", "dual.example:5060"));
        assert_eq!(c.trunks()[0].peer.addr, "192.0.2.30:5060".parse().unwrap());
    }

    #[test]
    fn display_and_load() {
        let e = ConfigError {
            origin: "f.yaml".into(),
            line: 3,
            column: 7,
            key: "a.b".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "f.yaml:3:7: a.b: bad");
        let e2 = ConfigError {
            line: 0,
            key: String::new(),
            ..e.clone()
        };
        assert_eq!(e2.to_string(), "f.yaml: bad");
        assert_eq!(
            ConfigErrors(vec![e, e2]).to_string(),
            "f.yaml:3:7: a.b: bad\nf.yaml: bad"
        );

        let dir = std::env::temp_dir().join(format!("lifeline-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(&good, MIN).unwrap();
        assert_eq!(Config::load(&good).unwrap().trunks().len(), 1);
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, MIN.replace("any", "all")).unwrap();
        assert_eq!(
            Config::load(&bad).unwrap_err().to_string(),
            format!(
                "{}:8:12: routes[0].match: \"all\" is not emergency, any or {{ uri: REGEX }}",
                bad.display()
            )
        );
        let binary = dir.join("binary.yaml");
        std::fs::write(&binary, b"listen: \xff\n").unwrap();
        assert_eq!(
            Config::load(&binary).unwrap_err().to_string(),
            format!("{}: is not UTF-8 text", binary.display())
        );
        let missing = dir.join("missing.yaml");
        let msg = Config::load(&missing).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The route and trunk keys of rescue, hedging, the adaptive progress
    /// timeout, load sharing, capacity and the canary.
    const SHARING: &str = "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - name: primary
    address: 192.0.2.10:5060
    max_calls: 100
    max_cps: 20
    probe: { canary: 30s, canary_one_in: 4 }
  - name: b1
    address: 192.0.2.11:5060
    max_calls: 60
  - name: b2
    address: 192.0.2.12:5060
routes:
  - name: emergency
    match: emergency
    trunks:
      - { name: primary, priority: 1 }
      - { name: b1, priority: 2, weight: 3 }
      - { name: b2, priority: 2, weight: 0 }
    progress_timeout: 2s
    progress_timeout_min: 250ms
    progress_timeout_factor: 6
    rescue_ringing: all
    hedge_after: 300ms
  - name: default
    match: any
    trunks: [primary, { name: b1 }]
    rescue_ringing: off
    progress_timeout: 50ms
";

    #[test]
    fn rescue_hedging_sharing_capacity_and_canary_keys() {
        let c = ok(SHARING);
        let t = c.trunks();
        assert_eq!((t[0].max_calls, t[0].max_cps), (Some(100), Some(20)));
        assert_eq!((t[1].max_calls, t[1].max_cps), (Some(60), None));
        assert_eq!((t[2].max_calls, t[2].max_cps), (None, None));
        assert_eq!(
            t[0].probe.canary,
            CanaryConfig {
                duration: Duration::from_secs(30),
                one_in: 4
            }
        );
        assert_eq!(t[1].probe.canary, CanaryConfig::default());
        let r = &c.routes()[0];
        assert_eq!(r.trunks, ["primary", "b1", "b2"]);
        assert_eq!(
            r.shares,
            [
                TrunkShare {
                    priority: 1,
                    weight: 1
                },
                TrunkShare {
                    priority: 2,
                    weight: 3
                },
                TrunkShare {
                    priority: 2,
                    weight: 0
                },
            ]
        );
        assert_eq!(r.progress_timeout, Duration::from_secs(2));
        assert_eq!(r.progress_timeout_min, Duration::from_millis(250));
        assert_eq!(r.progress_timeout_factor, 6);
        assert_eq!(r.rescue_ringing, RescueRinging::All);
        assert_eq!(r.hedge_after, Some(Duration::from_millis(300)));
        // A map with only a name is a plain entry: no shares.
        let r = &c.routes()[1];
        assert_eq!(r.trunks, ["primary", "b1"]);
        assert!(r.shares.is_empty());
        // `off` is the word, not YAML 1.1's false.
        assert_eq!(r.rescue_ringing, RescueRinging::Off);
        // The floor defaults to 100 ms, or to a shorter progress timeout.
        assert_eq!(r.progress_timeout_min, Duration::from_millis(50));
        assert_eq!(r.hedge_after, None);
        // The proxy gets all of it (a SIGHUP reload builds it the same way).
        let p = c.proxy_config(1);
        assert_eq!(p.trunks, c.trunks);
        assert_eq!(p.routes[0].shares, c.routes()[0].shares);
        assert_eq!(p.routes[0].hedge_after, Some(Duration::from_millis(300)));
        assert_eq!(p.routes[1].rescue_ringing, RescueRinging::Off);
        // The backups of both routes can carry the primary's 100 calls?
        // b2 is unlimited, so the first can; the second's b1 (60) cannot.
        let w: Vec<String> = c
            .warnings()
            .iter()
            .map(|w| Warning(w).to_string())
            .collect();
        assert_eq!(
            w,
            [
                "lifeline.yaml:27:13: warning: routes[1].trunks: backup capacity is below the \
              primary's: primary \"primary\" takes up to 100 calls, its backups 60 in all \
              (b1 60); if \"primary\" fails, not all of its calls fit"
            ]
        );
    }

    #[test]
    fn under_sized_backups_are_warned_about() {
        let file = |primary: &str, b1: &str, b2: &str| {
            let limit = |m: &str| {
                if m.is_empty() {
                    String::new()
                } else {
                    format!(", max_calls: {m}")
                }
            };
            format!(
                "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - {{ name: p, address: 192.0.2.10:5060{} }}
  - {{ name: b1, address: 192.0.2.11:5060{} }}
  - {{ name: b2, address: 192.0.2.12:5060{} }}
routes:
  - {{ name: e, match: emergency, trunks: [p, b1, b2] }}
  - {{ name: solo, match: any, trunks: [p] }}
",
                limit(primary),
                limit(b1),
                limit(b2)
            )
        };
        let warnings = |text: &str| -> Vec<String> {
            ok(text)
                .warnings()
                .iter()
                .map(|w| Warning(w).to_string())
                .collect()
        };
        // Limited primary, backups short of it.
        assert_eq!(
            warnings(&file("100", "30", "10")),
            [
                "lifeline.yaml:7:42: warning: routes[0].trunks: backup capacity is below the \
              primary's: primary \"p\" takes up to 100 calls, its backups 40 in all (b1 30, \
              b2 10); if \"p\" fails, not all of its calls fit"
            ]
        );
        // Unlimited primary, limited backups.
        assert_eq!(
            warnings(&file("", "30", "10")),
            [
                "lifeline.yaml:7:42: warning: routes[0].trunks: backup capacity is below the \
              primary's: primary \"p\" has no max_calls, its backups 40 in all (b1 30, b2 10); \
              if \"p\" fails, not all of its calls fit"
            ]
        );
        // Enough, exactly enough, an unlimited backup, no limits at all, and
        // a route with no backup: nothing to say.
        for (p, b1, b2) in [
            ("100", "60", "50"),
            ("100", "60", "40"),
            ("100", "30", ""),
            ("", "", ""),
        ] {
            assert_eq!(
                warnings(&file(p, b1, b2)),
                Vec::<String>::new(),
                "{p} {b1} {b2}"
            );
        }
        // With priorities, the primary is the first of the lowest priority.
        let text = file("100", "300", "10")
            .replace("trunks: [p, b1, b2]", "trunks: [{ name: p, priority: 2 }, { name: b1, priority: 1 }, { name: b2, priority: 2 }]");
        assert_eq!(
            warnings(&text),
            [
                "lifeline.yaml:7:42: warning: routes[0].trunks: backup capacity is below the \
              primary's: primary \"b1\" takes up to 300 calls, its backups 110 in all (p 100, \
              b2 10); if \"b1\" fails, not all of its calls fit"
            ]
        );
        // Warnings never make a file invalid, and errors come first.
        let e = errors(&file("100", "30", "0"));
        assert_eq!(
            e,
            ["lifeline.yaml:5:54: trunks[2].max_calls: 0 is not a limit of 1 or more calls"]
        );
    }

    #[test]
    fn rescue_hedging_sharing_capacity_and_canary_errors() {
        let trunk = |extra: &str| {
            MIN.replacen(
                "    address: 192.0.2.10:5060\n",
                &format!("    address: 192.0.2.10:5060\n{extra}"),
                1,
            )
        };
        let route = |extra: &str| {
            MIN.replacen("    trunks: [a]\n", &format!("    trunks: [a]\n{extra}"), 1)
        };
        let cases = [
            (
                trunk("    max_calls: 0\n"),
                "lifeline.yaml:6:16: trunks[0].max_calls: 0 is not a limit of 1 or more calls",
            ),
            (
                trunk("    max_calls: 4294967296\n"),
                "lifeline.yaml:6:16: trunks[0].max_calls: 4294967296 is not a limit of 1 or more calls",
            ),
            (
                trunk("    max_cps: ten\n"),
                "lifeline.yaml:6:14: trunks[0].max_cps: \"ten\" is not a whole number (a limit of 1 or more calls per second)",
            ),
            (
                trunk("    max_cps: -5\n"),
                "lifeline.yaml:6:14: trunks[0].max_cps: -5 is not a limit of 1 or more calls per second",
            ),
            (
                trunk("    max_calls:\n"),
                "lifeline.yaml:6:14: trunks[0].max_calls: no value: write a limit of 1 or more calls",
            ),
            (
                trunk("    probe: { canary: 10 }\n"),
                "lifeline.yaml:6:22: trunks[0].probe.canary: 10 has no unit: write 10ms, 10s, 10m or 10h",
            ),
            (
                trunk("    probe: { canary_one_in: 0 }\n"),
                "lifeline.yaml:6:29: trunks[0].probe.canary_one_in: 0 is not a count from 1 to 1000",
            ),
            (
                route("    rescue_ringing: sometimes\n"),
                "lifeline.yaml:10:21: routes[0].rescue_ringing: \"sometimes\" is not emergency, all or off",
            ),
            (
                route("    hedge_after: 0ms\n"),
                "lifeline.yaml:10:18: routes[0].hedge_after: 0ms: must be more than 0 (leave hedge_after out for no hedging)",
            ),
            (
                route("    hedge_after: 300\n"),
                "lifeline.yaml:10:18: routes[0].hedge_after: 300 has no unit: write 300ms, 300s, 300m or 300h",
            ),
            (
                route("    hedge_after: 800ms\n"),
                "lifeline.yaml:10:18: routes[0].hedge_after: hedge_after (800ms) is not shorter than \
                 progress_timeout (800ms): the attempt would be given up before it is hedged",
            ),
            (
                route("    progress_timeout_min: 0s\n"),
                "lifeline.yaml:10:27: routes[0].progress_timeout_min: 0s: must be more than 0",
            ),
            (
                route("    progress_timeout: 1s\n    progress_timeout_min: 2s\n"),
                "lifeline.yaml:11:27: routes[0].progress_timeout_min: progress_timeout_min (2s) is \
                 longer than progress_timeout (1s)",
            ),
            (
                route("    progress_timeout_min: 900ms\n"),
                "lifeline.yaml:10:27: routes[0].progress_timeout_min: progress_timeout_min (900ms) \
                 is longer than progress_timeout (800ms)",
            ),
            (
                route("    progress_timeout_factor: 0\n"),
                "lifeline.yaml:10:30: routes[0].progress_timeout_factor: 0 is not a factor from 1 to 100",
            ),
            (
                route("    progress_timeout_factor: 1.5\n"),
                "lifeline.yaml:10:30: routes[0].progress_timeout_factor: \"1.5\" is not a whole number (a factor from 1 to 100)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(error(&text), want, "{text}");
        }
        // Bounds are inclusive; a canary of 0s is off.
        let c = ok(&trunk(
            "    max_calls: 4294967295\n    max_cps: 1\n    probe: { canary: 0s, canary_one_in: 1000 }\n",
        ));
        let t = &c.trunks()[0];
        assert_eq!((t.max_calls, t.max_cps), (Some(u32::MAX), Some(1)));
        assert_eq!(t.probe.canary.duration, Duration::ZERO);
        assert_eq!(t.probe.canary.one_in, 1000);
        let c = ok(&route(
            "    progress_timeout_min: 800ms\n    progress_timeout_factor: 100\n    hedge_after: 799ms\n",
        ));
        let r = &c.routes()[0];
        assert_eq!(r.progress_timeout_min, r.progress_timeout);
        assert_eq!(r.progress_timeout_factor, 100);
        assert_eq!(r.hedge_after, Some(Duration::from_millis(799)));
    }

    #[test]
    fn share_errors() {
        let shared = |trunks: &str| {
            format!(
                "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - {{ name: a, address: 192.0.2.10:5060 }}
  - {{ name: b, address: 192.0.2.11:5060 }}
routes:
  - name: r
    match: any
    trunks: {trunks}
"
            )
        };
        let cases = [
            (
                "[a, { name: b, priority: 2 }]",
                vec!["lifeline.yaml:8:14: routes[0].trunks[0]: \"a\" has no priority: when a trunk \
                      of the route has a priority or weight, every one needs a priority, e.g. \
                      { name: a, priority: 1 }"],
            ),
            (
                "[{ name: a }, { name: b, weight: 2 }]",
                vec![
                    "lifeline.yaml:8:14: routes[0].trunks[0].priority: missing: when a trunk of \
                     the route has a priority or weight, every one needs a priority",
                    "lifeline.yaml:8:27: routes[0].trunks[1].priority: missing: when a trunk of \
                     the route has a priority or weight, every one needs a priority",
                ],
            ),
            (
                "[{ name: a, priority: 1, weight: 0 }, { name: b, priority: 1, weight: 0 }]",
                vec!["lifeline.yaml:8:13: routes[0].trunks: every weight is 0: give at least one \
                      trunk a weight above 0"],
            ),
            (
                "[{ name: a, priority: 1001 }, { name: b, priority: -1, weight: 1001 }]",
                vec![
                    "lifeline.yaml:8:35: routes[0].trunks[0].priority: 1001 is not a priority from \
                     0 to 1000 (lower first)",
                    "lifeline.yaml:8:64: routes[0].trunks[1].priority: -1 is not a priority from \
                     0 to 1000 (lower first)",
                    "lifeline.yaml:8:76: routes[0].trunks[1].weight: 1001 is not a weight from 0 \
                     to 1000",
                ],
            ),
            (
                "[{ priority: 1 }, { name: c, priority: 2 }, { name: a, priority: 3 }, { name: a, priority: 4 }]",
                vec![
                    "lifeline.yaml:8:14: routes[0].trunks[0].name: missing: write the trunk's \
                     name, e.g. { name: backup, priority: 2 }",
                    "lifeline.yaml:8:39: routes[0].trunks[1].name: unknown trunk \"c\" (trunks: a, b)",
                    "lifeline.yaml:8:91: routes[0].trunks[3].name: trunk \"a\" is already listed as \
                     routes[0].trunks[2]",
                ],
            ),
        ];
        for (trunks, want) in cases {
            let text = shared(trunks);
            assert_eq!(errors(&text), want, "{text}");
        }
    }

    #[test]
    fn the_proxy_core_accepts_what_validation_accepts() {
        let text = DESIGN_EXAMPLE.replace("admin:", "advertise: 192.0.2.1:5060\nadmin:");
        let c = ok(&text);
        Proxy::new(Instant::now(), c.proxy_config(7)).expect("the proxy accepts it");
        let c = ok(SHARING);
        Proxy::new(Instant::now(), c.proxy_config(7)).expect("the proxy accepts shares");
    }
}
