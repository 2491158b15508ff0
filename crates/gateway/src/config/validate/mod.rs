//! Stage two: every `Raw*` leaf given its type and checked, and the keys
//! checked against each other (routes name trunks that exist, no name
//! twice, timers in order), collecting every error in the file, each with
//! its place. This module holds the [`Validator`], its checks of single
//! values, and the sections other than trunks and routes; those are in
//! `trunks` and `routes`, and what is allowed but probably wrong in
//! `warnings`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use lifeline_proxy::{AllFailed, EmergencyConfig, Timers, Transport};
use serde_saphyr::{Location, Spanned};

// The TCP transport's default, defined by the IO edge (lifeline-io): the
// one thing the configuration takes from it.
use lifeline_io::TCP_IDLE_TIMEOUT;

use super::raw::{
    Opt, RawAllFailed, RawConfig, RawEmergency, RawListen, RawLog, RawTimers, Scalar, S,
};
use super::units::{parse_duration, show_duration};
use super::{Config, ConfigError, ConfigErrors, LogConfig, LogFormat, LogLevel};

mod access;
mod admin;
mod capture;
mod limits;
mod routes;
mod trunks;
mod warnings;

/// Admin HTTP address when `admin:` is not set.
const DEFAULT_ADMIN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9060));

/// Turns a host name and port into addresses (tests: without DNS).
pub(super) type Resolver<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// Stage two: `raw` (parsed from `text`, the file `origin`) into a
/// [`Config`] with its warnings, or every error in it, in file order.
pub(super) fn validate(
    raw: RawConfig,
    text: &str,
    origin: &str,
    resolve: Resolver<'_>,
) -> Result<Config, ConfigErrors> {
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

/// The longest `node_name:` (a host name's limit).
const MAX_NODE_NAME: usize = 253;

/// The host's name, the default `node_name` (`localhost` if it has none
/// that fits).
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= MAX_NODE_NAME
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        })
        .unwrap_or_else(|| "localhost".to_string())
}

pub(super) fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
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

/// The names given so far to the entries of a list (`trunks`, `routes`),
/// in which a name may appear once.
struct EntryNames {
    /// The list's key.
    list: &'static str,
    /// What a name is, for the error when it has no value.
    what: &'static str,
    /// The error for an entry without a name.
    missing: &'static str,
    /// Each name, and the index of the entry that has it.
    seen: HashMap<String, usize>,
}

impl EntryNames {
    fn new(list: &'static str, what: &'static str, missing: &'static str) -> Self {
        Self {
            list,
            what,
            missing,
            seen: HashMap::new(),
        }
    }
}

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

    /// An integer in `range`, of the type it is kept as; `what` says what
    /// the range is.
    fn int<T>(&mut self, v: &S, key: &str, range: RangeInclusive<T>, what: &str) -> Checked<T>
    where
        T: Copy + Into<i64> + TryFrom<i64>,
    {
        let t = self.present(v, key, what)?;
        let (lo, hi) = ((*range.start()).into(), (*range.end()).into());
        match t.parse::<i64>() {
            // Between two values of `T`, so it converts.
            Ok(n) if (lo..=hi).contains(&n) && t.bytes().all(|b| b.is_ascii_digit()) => {
                T::try_from(n).ok()
            }
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

    /// One of `choices`, each a word and what it means.
    fn word<T: Copy>(&mut self, v: &S, key: &str, choices: &[(&str, T)]) -> Checked<T> {
        let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
        let what = one_of(&words);
        let t = self.present(v, key, &what)?;
        match choices.iter().find(|(w, _)| *w == t) {
            Some((_, x)) => Some(*x),
            None => {
                self.error(Some(v.referenced), key, format!("{t:?} is not {what}"));
                None
            }
        }
    }

    /// An optional key: when it is written, `check` it (which records any
    /// error) and keep it in `slot`. False after an error.
    fn set<T>(
        &mut self,
        raw: &Opt,
        slot: &mut T,
        check: impl FnOnce(&mut Self, &S) -> Checked<T>,
    ) -> bool {
        let Some(v) = &raw.0 else { return true };
        check(self, v).map(|x| *slot = x).is_some()
    }

    /// The `name` of entry `i` (at `at`) of a list: required, and not
    /// that of an earlier entry (an error, but the name is still returned).
    fn entry_name(
        &mut self,
        names: &mut EntryNames,
        i: usize,
        raw: &Opt,
        at: Location,
    ) -> Checked<String> {
        let key = format!("{}[{i}].name", names.list);
        let Some(v) = &raw.0 else {
            self.error(Some(at), &key, names.missing.into());
            return None;
        };
        let name = self.name(v, &key, names.what)?;
        if let Some(j) = names.seen.get(&name) {
            self.error(
                Some(v.referenced),
                &key,
                format!("{name:?} is already the name of {}[{j}]", names.list),
            );
        } else {
            names.seen.insert(name.clone(), i);
        }
        Some(name)
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

    /// `node_name:`: letters, digits, `.`, `-` and `_`, as host names are,
    /// at most [`MAX_NODE_NAME`] characters; default the host's name.
    fn node_name(&mut self, raw: &Opt) -> Checked<String> {
        let Some(v) = &raw.0 else {
            return Some(host_name());
        };
        let t = self.name(v, "node_name", "this gateway's name, e.g. gw-a")?;
        if t.len() > MAX_NODE_NAME {
            self.error(
                Some(v.referenced),
                "node_name",
                format!("is {} characters long; at most {MAX_NODE_NAME}", t.len()),
            );
            return None;
        }
        if let Some(c) = t
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            self.error(
                Some(v.referenced),
                "node_name",
                format!("{t:?} contains {c:?}: use letters, digits, '.', '-' and '_'"),
            );
            return None;
        }
        Some(t)
    }

    fn config(&mut self, raw: RawConfig) -> Checked<Config> {
        let node_name = self.node_name(&raw.node_name);
        let listen = self.listen(raw.listen.as_ref());
        let advertise = self.advertise(&raw.advertise, raw.listen.as_ref(), listen.as_deref());
        let admin = self.admin(raw.admin.0.as_ref());
        let journal = match &raw.journal.0 {
            Some(v) => self
                .name(v, "journal", "a directory")
                .map(|p| Some(PathBuf::from(p))),
            None => Some(None),
        };
        let emergency = self.emergency(raw.emergency.as_ref());
        let access = self.access(
            raw.access.as_ref(),
            raw.emergency
                .as_ref()
                .and_then(|e| e.trusted_resource_priority.as_ref()),
        );
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
        let limits = self.limits(raw.limits.as_ref());
        let log = self.log(raw.log.as_ref());
        let capture = self.capture(raw.capture.as_ref());
        let (limits, tcp_limits) = limits?;
        Some(Config {
            node_name: node_name?,
            listen: listen?,
            advertise: advertise?,
            admin: admin?,
            journal: journal?,
            emergency: emergency?,
            access: access?,
            timers: timers?,
            trunks,
            routes: routes?,
            all_failed: all_failed?,
            dialog_max_age: dialog_max_age?,
            tcp_idle_timeout: tcp_idle_timeout?,
            limits,
            tcp_limits,
            log: log?,
            capture: capture?,
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
        // `trusted_resource_priority`: read with `access` (`access.trusted`).
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
            ok &= self.set(v, slot, |s, v| s.positive(v, key));
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

    fn all_failed(&mut self, raw: Option<&RawAllFailed>) -> Checked<AllFailed> {
        let mut a = AllFailed::default();
        let Some(raw) = raw else { return Some(a) };
        let mut ok = true;
        let status_ok = self.set(&raw.status, &mut a.status, |s, v| {
            s.int(
                v,
                "all_failed.status",
                300..=699,
                "a final failure status (300-699)",
            )
        });
        // The default reason belongs to 503; another status without a
        // reason gets its standard phrase.
        if status_ok && raw.status.0.is_some() && raw.reason.0.is_none() {
            a.reason = standard_reason(a.status).to_string();
        }
        ok &= status_ok;
        ok &= self.set(&raw.reason, &mut a.reason, |s, v| {
            s.name(
                v,
                "all_failed.reason",
                "a reason phrase such as \"Service Unavailable\"",
            )
        });
        ok &= self.set(&raw.retry_after, &mut a.retry_after, Self::retry_after);
        ok.then_some(a)
    }

    /// `all_failed.retry_after`: whole seconds, or `none`.
    fn retry_after(&mut self, v: &S) -> Checked<Option<u32>> {
        const KEY: &str = "all_failed.retry_after";
        if matches!(&v.value, Scalar::Text(t) if t == "none") {
            return Some(None);
        }
        let d = self.duration(v, KEY)?;
        let t = self.text(v);
        if d.subsec_nanos() != 0 {
            self.error(
                Some(v.referenced),
                KEY,
                format!("{t}: Retry-After is whole seconds"),
            );
            return None;
        }
        match u32::try_from(d.as_secs()) {
            Ok(s) => Some(Some(s)),
            Err(_) => {
                self.error(Some(v.referenced), KEY, format!("{t}: too long"));
                None
            }
        }
    }

    fn log(&mut self, raw: Option<&RawLog>) -> Checked<LogConfig> {
        let mut l = LogConfig::default();
        let Some(raw) = raw else { return Some(l) };
        let mut ok = true;
        const FORMATS: [(&str, LogFormat); 2] =
            [("human", LogFormat::Human), ("json", LogFormat::Json)];
        const LEVELS: [LogLevel; 5] = [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ];
        ok &= self.set(&raw.format, &mut l.format, |s, v| {
            s.word(v, "log.format", &FORMATS)
        });
        ok &= self.set(&raw.level, &mut l.level, |s, v| {
            s.word(v, "log.level", &LEVELS.map(|l| (l.as_str(), l)))
        });
        ok.then_some(l)
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
