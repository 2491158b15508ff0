//! Stage one: the shape of the file. YAML into `Raw*` structs whose leaves
//! are [`Scalar`]s with their place in the file; the first error of shape
//! (YAML syntax, an unknown key, a list where a value belongs) stops it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::{ConfigError, ConfigErrors};

/// A leaf value as written, before it is given a type.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Scalar {
    /// A string (plain or quoted).
    Text(String),
    /// Something YAML reads as a number or boolean; validation takes its
    /// text from the source, so `0112` stays `0112`.
    Other(String),
    /// `~`, `null` or nothing at all.
    Null,
}

pub(super) type S = Spanned<Scalar>;

/// A type read from a [`Scalar`] or, for some, from a map instead: read
/// with [`ScalarVisitor`], so that every kind of scalar is taken the same
/// way wherever one is allowed.
trait FromScalar<'de>: Sized {
    /// What may be written here, for the error on anything else.
    const EXPECTING: &'static str;

    fn scalar(s: Scalar) -> Self;

    /// A map where a scalar was expected: by default, an error.
    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        let _ = map;
        Err(de::Error::invalid_type(
            de::Unexpected::Map,
            &Self::EXPECTING,
        ))
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<'de, T: FromScalar<'de>> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::scalar(Scalar::Text(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<T, E> {
        Ok(T::scalar(Scalar::Text(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other(v.to_string())))
    }
    fn visit_i128<E>(self, v: i128) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other(v.to_string())))
    }
    fn visit_u128<E>(self, v: u128) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<T, E> {
        Ok(T::scalar(Scalar::Other(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::scalar(Scalar::Null))
    }
    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::scalar(Scalar::Null))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::map(map)
    }
}

impl FromScalar<'_> for Scalar {
    const EXPECTING: &'static str = "a single value";

    fn scalar(s: Scalar) -> Self {
        s
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// An optional scalar key. Unlike `Option<S>`, a key written with no value
/// (`admin:`) is kept, as [`Scalar::Null`] with its location, so that it can
/// be refused rather than silently taken as "use the default".
#[derive(Debug, Default)]
pub(super) struct Opt(pub(super) Option<S>);

impl<'de> Deserialize<'de> for Opt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        S::deserialize(d).map(|s| Opt(Some(s)))
    }
}

pub(super) type List<T> = Option<Spanned<Vec<T>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: List<Spanned<RawListen>>,
    pub(super) advertise: Opt,
    pub(super) admin: OptAdmin,
    pub(super) journal: Opt,
    pub(super) node_name: Opt,
    pub(super) emergency: Option<RawEmergency>,
    pub(super) access: Option<Spanned<RawAccess>>,
    pub(super) timers: Option<RawTimers>,
    pub(super) trunks: List<Spanned<RawTrunk>>,
    pub(super) routes: List<Spanned<RawRoute>>,
    pub(super) all_failed: Option<RawAllFailed>,
    pub(super) dialog_max_age: Opt,
    pub(super) tcp_idle_timeout: Opt,
    pub(super) limits: Option<Spanned<RawLimits>>,
    pub(super) log: Option<RawLog>,
    pub(super) capture: Option<Spanned<RawCapture>>,
}

/// `admin:`, kept when written with no value (as [`Opt`] does), so that
/// it is refused rather than taken as the default.
#[derive(Debug, Default)]
pub(super) struct OptAdmin(pub(super) Option<Spanned<RawAdmin>>);

impl<'de> Deserialize<'de> for OptAdmin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Spanned::<RawAdmin>::deserialize(d).map(|s| OptAdmin(Some(s)))
    }
}

/// `admin: ip:port`, or `admin: { listen, token_file, open_paths }`.
#[derive(Debug)]
pub(super) enum RawAdmin {
    /// The address alone (or `admin:` with nothing, refused later).
    Listen(Scalar),
    Map(Box<RawAdminMap>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAdminMap {
    pub(super) listen: Opt,
    pub(super) token_file: Opt,
    pub(super) open_paths: List<S>,
}

impl<'de> FromScalar<'de> for RawAdmin {
    const EXPECTING: &'static str =
        "ip:port or `{ listen: ip:port, token_file: FILE, open_paths: [...] }`";

    fn scalar(s: Scalar) -> Self {
        Self::Listen(s)
    }

    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RawAdminMap::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(|m| Self::Map(Box::new(m)))
    }
}

impl<'de> Deserialize<'de> for RawAdmin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// `- udp: ADDR`: the transport word is checked during validation.
#[derive(Debug)]
pub(super) enum RawListen {
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
pub(super) struct RawEmergency {
    pub(super) numbers: List<S>,
    pub(super) trusted_resource_priority: List<S>,
}

/// `access: { callers, trusted, unknown, strip_untrusted_location }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAccess {
    pub(super) callers: List<S>,
    pub(super) trusted: List<S>,
    pub(super) unknown: Opt,
    pub(super) strip_untrusted_location: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTimers {
    pub(super) t1: Opt,
    pub(super) t2: Opt,
    pub(super) t4: Opt,
    pub(super) timer_c: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTrunk {
    pub(super) name: Opt,
    pub(super) address: Opt,
    pub(super) transport: Opt,
    pub(super) probe: Option<RawProbe>,
    pub(super) max_calls: Opt,
    pub(super) max_cps: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) interval: Opt,
    pub(super) timeout: Opt,
    pub(super) down_after: Opt,
    pub(super) up_after: Opt,
    pub(super) alive: Option<Spanned<RawAlive>>,
    pub(super) enabled: Opt,
    pub(super) flap_window: Opt,
    pub(super) flap_hold: Opt,
    pub(super) flap_max_hold: Opt,
    pub(super) live_hold: Opt,
    pub(super) canary: Opt,
    pub(super) canary_one_in: Opt,
}

/// `alive: any | not-5xx | [200, 405]`.
#[derive(Debug)]
pub(super) enum RawAlive {
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
pub(super) struct RawRoute {
    pub(super) name: Opt,
    #[serde(rename = "match")]
    pub(super) matches: Option<Spanned<RawMatch>>,
    pub(super) trunks: List<Spanned<RawRouteTrunk>>,
    pub(super) failover_after: Opt,
    pub(super) progress_timeout: Opt,
    pub(super) progress_timeout_min: Opt,
    pub(super) progress_timeout_factor: Opt,
    pub(super) failover_codes: List<S>,
    pub(super) rescue_ringing: Opt,
    pub(super) hedge_after: Opt,
}

/// One of a route's `trunks`: a name, or `{ name: b1, priority: 2, weight: 3 }`.
#[derive(Debug)]
pub(super) enum RawRouteTrunk {
    Name(Scalar),
    Share(Box<RawShare>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawShare {
    pub(super) name: Opt,
    pub(super) priority: Opt,
    pub(super) weight: Opt,
}

impl<'de> FromScalar<'de> for RawRouteTrunk {
    const EXPECTING: &'static str = "a trunk's name or `{ name: NAME, priority: N, weight: N }`";

    fn scalar(s: Scalar) -> Self {
        Self::Name(s)
    }

    fn map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RawShare::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(|s| Self::Share(Box::new(s)))
    }
}

impl<'de> Deserialize<'de> for RawRouteTrunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

/// `match: emergency | any | { uri: REGEX }`.
#[derive(Debug)]
pub(super) enum RawMatch {
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
pub(super) struct RawAllFailed {
    pub(super) status: Opt,
    pub(super) reason: Opt,
    pub(super) retry_after: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) per_source: Option<Spanned<RawRate>>,
    pub(super) per_source_emergency: Option<Spanned<RawRate>>,
    pub(super) over_limit: Opt,
    pub(super) max_calls: Opt,
    pub(super) max_transactions: Opt,
    pub(super) tcp: Option<RawTcpLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRate {
    pub(super) rate: Opt,
    pub(super) burst: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTcpLimits {
    pub(super) max_connections: Opt,
    pub(super) max_connections_per_ip: Opt,
    pub(super) message_timeout: Opt,
    pub(super) write_queue_bytes: Opt,
}

/// `capture: { hep, calls, node_id, password, queue, hold, hold_bytes }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCapture {
    pub(super) hep: Opt,
    pub(super) calls: Opt,
    pub(super) node_id: Opt,
    pub(super) password: Opt,
    pub(super) queue: Opt,
    pub(super) hold: Opt,
    pub(super) hold_bytes: Opt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Opt,
    pub(super) level: Opt,
}

/// Stage one: YAML to `RawConfig`, or the one shape error that stopped it.
pub(super) fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigErrors> {
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
