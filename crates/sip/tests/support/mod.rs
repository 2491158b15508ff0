//! Generators of valid SIP messages for the property tests: what RFC 3261
//! (§7, §19, §20, §25) and the RFC 4475 torture tests allow, as a model that
//! knows every part it wrote (start line, each header's raw name, value and list
//! items, body) so a test can compare the parser's view with it.
//!
//! Everything a generator yields is accepted by `validate`: Via, From, To,
//! Call-ID and CSeq are always present (From, To, Call-ID, CSeq exactly once;
//! Via on one or two lines), the CSeq method equals the request method, every
//! Via/Contact/Route/Record-Route value follows its grammar, and the
//! Request-URI carries no `?headers`.

use core::fmt;

use lifeline_sip::HeaderName;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

type S<T> = BoxedStrategy<T>;
type B = Vec<u8>;

const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Letters, digits, hyphen.
const LDH: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
/// RFC 3261 `token`.
const TOKEN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~";
/// `word` (Call-ID): token characters plus `()<>:\"/[]?{}`.
const WORD: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~()<>:\\\"/[]?{}";
/// `unreserved` / `user-unreserved` (no escapes, no `:`), for a user part in
/// `<>` or a Request-URI.
const USER_RICH: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/";
/// User part of an addr-spec (no `;`, `?` or `,`, which would need `<>`).
const USER_PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$/";
/// `password` characters.
const PASSWORD_RICH: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,";
/// `password` characters of an addr-spec (no `,`).
const PASSWORD_PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$";
/// `paramchar` without escapes.
const URI_PARAM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789[]/:&+$-_.!~*'()";
/// URI parameter names (a subset of `paramchar` that reads like a name).
const URI_PNAME: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'";
/// `hname` / `hvalue` characters without escapes and without `=`/`&`.
const URI_HCHAR: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789[]/?:+$-_.!~*'()";
/// Reason-Phrase ASCII: reserved, unreserved, SP, HTAB.
const REASON: &[u8] =
    b";/?:@&=+$,abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'() \t";
const HEX: &[u8] = b"0123456789abcdefABCDEF";

fn bytes_of(chars: &'static [u8], min: usize, max: usize) -> S<B> {
    vec(select(chars), min..=max).boxed()
}

fn lit(s: &'static str) -> S<B> {
    Just(s.as_bytes().to_vec()).boxed()
}

fn one_of(options: &'static [&'static str]) -> S<B> {
    select(options).prop_map(|s| s.as_bytes().to_vec()).boxed()
}

/// Items interleaved with the separators between them.
fn interleave(items: &[B], seps: &[B]) -> B {
    let mut out = B::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(seps.get(i - 1).map_or(&b", "[..], |s| &s[..]));
        }
        out.extend_from_slice(item);
    }
    out
}

fn cat(parts: &[&[u8]]) -> B {
    parts.concat()
}

fn escaped(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

// ---------------------------------------------------------------- white space

/// `1*WSP`.
fn wsp1() -> S<B> {
    bytes_of(b" \t", 1, 3)
}

/// `LWS = [*WSP CRLF] 1*WSP`; with `fold` the CRLF (a folded line) is allowed.
fn lws(fold: bool) -> S<B> {
    if fold {
        prop_oneof![
            5 => wsp1(),
            1 => (bytes_of(b" \t", 0, 2), wsp1()).prop_map(|(a, b)| cat(&[&a[..], b"\r\n", &b[..]])),
        ]
        .boxed()
    } else {
        wsp1()
    }
}

/// `SWS = [LWS]`.
fn sws(fold: bool) -> S<B> {
    prop_oneof![3 => Just(B::new()), 1 => lws(fold)].boxed()
}

/// `COMMA = SWS "," SWS` between list items.
fn comma(fold: bool) -> S<B> {
    prop_oneof![
        3 => lit(", "),
        1 => lit(","),
        2 => (sws(fold), sws(fold)).prop_map(|(a, b)| cat(&[&a[..], b",", &b[..]])),
    ]
    .boxed()
}

// ---------------------------------------------------------------- lexical

fn token(min: usize, max: usize) -> S<B> {
    bytes_of(TOKEN, min, max)
}

/// A number with 0-2 leading zeros now and then (`1*DIGIT` allows them).
fn number(n: impl Strategy<Value = u32> + 'static) -> S<B> {
    (n, prop_oneof![6 => Just(0usize), 1 => 1usize..=2])
        .prop_map(|(n, z)| format!("{}{n}", "0".repeat(z)).into_bytes())
        .boxed()
}

/// One non-ASCII scalar, UTF-8 encoded (`UTF8-NONASCII`).
fn utf8_char() -> S<B> {
    let enc = |c: char| c.to_string().into_bytes();
    prop_oneof![
        select(
            &[
                'é', 'ü', 'ß', '€', '中', '文', 'お', 'я', '😀', '\u{a0}', '\u{85}', '\u{2028}',
                '\u{feff}'
            ][..]
        )
        .prop_map(enc),
        (0x80u32..=0x10ffff)
            .prop_filter_map("a scalar value", char::from_u32)
            .prop_map(enc),
    ]
    .boxed()
}

fn escape() -> S<B> {
    (select(HEX), select(HEX))
        .prop_map(|(a, b)| vec![b'%', a, b])
        .boxed()
}

/// A run of `chars`, with `%HH` escapes mixed in.
fn escaped_run(chars: &'static [u8], min: usize, max: usize) -> S<B> {
    vec(
        prop_oneof![6 => select(chars).prop_map(|b| vec![b]), 1 => escape()],
        min..=max,
    )
    .prop_map(|v| v.concat())
    .boxed()
}

/// A word of `TEXT-UTF8char`s: visible ASCII or non-ASCII UTF-8.
fn text_word() -> S<B> {
    let visible: Vec<u8> = (0x21u8..=0x7e).collect();
    vec(
        prop_oneof![4 => select(visible).prop_map(|b| vec![b]), 1 => utf8_char()],
        1..=8,
    )
    .prop_map(|v| v.concat())
    .boxed()
}

/// Free text (`TEXT-UTF8-TRIM`): words separated by LWS, possibly empty.
fn text(fold: bool, min_words: usize) -> S<B> {
    (vec(text_word(), min_words..=5), vec(lws(fold), 5))
        .prop_map(|(words, seps)| interleave(&words, &seps))
        .boxed()
}

/// `quoted-string`: qdtext (LWS, visible ASCII but `"` and `\`, UTF-8) and
/// quoted-pairs; commas, `<`, `>`, `;` included on purpose.
fn quoted(fold: bool) -> S<B> {
    let qdtext: Vec<u8> = (0x21u8..=0x7e)
        .filter(|&b| b != b'"' && b != b'\\')
        .collect();
    vec(
        prop_oneof![
            8 => select(qdtext).prop_map(|b| vec![b]),
            2 => one_of(&[",", ", ", "<", ">", ";", "@", "="]),
            1 => utf8_char(),
            1 => one_of(&["\\\"", "\\\\", "\\a", "\\,"]),
            1 => lws(fold),
        ],
        0..=10,
    )
    .prop_map(|v| cat(&[&b"\""[..], &v.concat(), b"\""]))
    .boxed()
}

// ---------------------------------------------------------------- hosts, URIs

/// `domainlabel`: alphanumerics, inner hyphens.
fn label(first: &'static [u8]) -> S<B> {
    (
        select(first),
        option::of((bytes_of(LDH, 0, 5), select(ALNUM))),
    )
        .prop_map(|(a, rest)| match rest {
            Some((mid, z)) => cat(&[&[a], &mid, &[z]]),
            None => vec![a],
        })
        .boxed()
}

/// `hostname`: labels, a top label starting with a letter, maybe a final dot.
fn domain() -> S<B> {
    (
        vec(label(ALNUM), 0..=3),
        label(ALPHA),
        prop_oneof![9 => lit(""), 1 => lit(".")],
    )
        .prop_map(|(labels, top, dot)| {
            let mut s = labels.join(&b'.');
            if !s.is_empty() {
                s.push(b'.');
            }
            cat(&[&s, &top, &dot])
        })
        .boxed()
}

fn ipv4() -> S<B> {
    any::<[u8; 4]>()
        .prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}").into_bytes())
        .boxed()
}

/// The text of an IPv6 reference (without brackets), in the forms RFC 5118
/// shows: full, compressed, with an embedded IPv4 address.
fn ipv6() -> S<B> {
    let group = || {
        (any::<u16>(), any::<bool>()).prop_map(|(g, upper)| {
            if upper {
                format!("{g:X}")
            } else {
                format!("{g:x}")
            }
        })
    };
    prop_oneof![
        vec(group(), 8).prop_map(|g| g.join(":")),
        (vec(group(), 0..=3), vec(group(), 0..=3)).prop_map(|(a, b)| format!(
            "{}::{}",
            a.join(":"),
            b.join(":")
        )),
        (vec(group(), 0..=4), ipv4()).prop_map(|(a, v4)| format!(
            "{}::{}",
            a.join(":"),
            String::from_utf8_lossy(&v4)
        )),
        one_of(&[
            "2001:db8::9:1",
            "::1",
            "::ffff:192.0.2.128",
            "2001:db8::10:5070"
        ])
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .prop_map(String::into_bytes)
    .boxed()
}

fn host() -> S<B> {
    prop_oneof![
        4 => domain(),
        2 => ipv4(),
        1 => ipv6().prop_map(|v6| cat(&[&b"["[..], &v6, b"]"])),
    ]
    .boxed()
}

fn port() -> S<B> {
    number(0u32..=65535)
}

/// `[":" port]`, or `SWS ":" SWS port` where LWS may sit around the colon (Via).
fn opt_port(lws_ok: bool, fold: bool) -> S<B> {
    let colon = if lws_ok {
        (sws(fold), sws(fold))
            .prop_map(|(a, b)| cat(&[&a[..], b":", &b[..]]))
            .boxed()
    } else {
        lit(":")
    };
    option::weighted(0.4, (colon, port()).prop_map(|(c, p)| [c, p].concat()))
        .prop_map(Option::unwrap_or_default)
        .boxed()
}

fn uri_param() -> S<B> {
    prop_oneof![
        one_of(&[
            ";transport=udp",
            ";transport=TCP",
            ";transport=tls",
            ";user=phone",
            ";lr",
            ";method=INVITE",
            ";ttl=15",
            ";maddr=239.255.255.1",
        ]),
        (
            bytes_of(URI_PNAME, 1, 8),
            option::of(escaped_run(URI_PARAM, 1, 8))
        )
            .prop_map(|(n, v)| match v {
                Some(v) => cat(&[&b";"[..], &n, b"=", &v]),
                None => cat(&[&b";"[..], &n]),
            }),
    ]
    .boxed()
}

/// Where a SIP URI is written decides which parts it may have.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// Request-URI: no `?headers`.
    RequestLine,
    /// Inside `<>`: anything.
    Bracketed,
    /// addr-spec without brackets: no `;`, `?` or `,` anywhere.
    Bare,
}

fn sip_uri(place: Place) -> S<B> {
    let scheme = prop_oneof![6 => lit("sip:"), 2 => lit("sips:"), 1 => lit("SIP:")];
    let (user_chars, password_chars) = match place {
        Place::Bare => (USER_PLAIN, PASSWORD_PLAIN),
        _ => (USER_RICH, PASSWORD_RICH),
    };
    let userinfo = option::weighted(
        0.7,
        (
            escaped_run(user_chars, 1, 12),
            option::weighted(0.15, bytes_of(password_chars, 0, 6)),
        )
            .prop_map(|(u, p)| match p {
                Some(p) => cat(&[&u[..], b":", &p, b"@"]),
                None => cat(&[&u[..], b"@"]),
            }),
    )
    .prop_map(Option::unwrap_or_default);
    let params = match place {
        Place::Bare => Just(B::new()).boxed(),
        _ => vec(uri_param(), 0..=3).prop_map(|v| v.concat()).boxed(),
    };
    let headers = match place {
        Place::Bracketed => option::weighted(
            0.15,
            vec(
                (bytes_of(URI_HCHAR, 1, 6), escaped_run(URI_HCHAR, 0, 8))
                    .prop_map(|(n, v)| cat(&[&n[..], b"=", &v])),
                1..=2,
            )
            .prop_map(|hs| cat(&[&b"?"[..], &hs.join(&b'&')])),
        )
        .prop_map(Option::unwrap_or_default)
        .boxed(),
        _ => Just(B::new()).boxed(),
    };
    (
        scheme,
        userinfo,
        host(),
        opt_port(false, false),
        params,
        headers,
    )
        .prop_map(|(s, u, h, p, pa, he)| [s, u, h, p, pa, he].concat())
        .boxed()
}

/// A tel URI (RFC 3966): a global number, or with `params` also a local
/// number with its mandatory phone-context, then other parameters.
fn tel_uri(params: bool) -> S<B> {
    let global = (
        bytes_of(b"123456789", 1, 1),
        bytes_of(b"0123456789-.()", 1, 12),
    )
        .prop_map(|(a, b)| cat(&[b"+", &a, &b]));
    if !params {
        return global.prop_map(|n| cat(&[b"tel:", &n])).boxed();
    }
    let local = (
        bytes_of(b"0123456789*#ABCD", 1, 1),
        bytes_of(b"0123456789*#ABCD-", 0, 8),
        one_of(&[";phone-context=example.com", ";phone-context=+1-201"]),
    )
        .prop_map(|(a, b, ctx)| cat(&[&a, &b, &ctx]));
    let others = vec(one_of(&[";ext=1234", ";isub=8a1", ";npdi"]), 0..=2).prop_map(|v| v.concat());
    (prop_oneof![2 => global, 1 => local], others)
        .prop_map(|(n, p)| cat(&[b"tel:", &n, &p]))
        .boxed()
}

/// Service URNs (RFC 5031) and other absolute URIs, kept opaque by the parser.
fn other_uri() -> S<B> {
    prop_oneof![
        4 => one_of(&["", ".fire", ".police", ".ambulance", ".gas", ".marine", ".mountain", ".physician", ".poison", ".animal-control"])
            .prop_map(|sub| cat(&[b"urn:service:sos", &sub])),
        1 => one_of(&["urn:service:counseling.children", "im:alice@example.com", "pres:bob@example.org", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"]),
    ]
    .boxed()
}

/// A Request-URI: sip/sips (IPv6 hosts included), tel, service URN, other.
pub(crate) fn request_uri() -> S<B> {
    prop_oneof![
        6 => sip_uri(Place::RequestLine),
        2 => tel_uri(true),
        2 => other_uri(),
    ]
    .boxed()
}

// ---------------------------------------------------------------- header values

/// `SEMI name [EQUAL value]`, LWS allowed around `;` and `=`.
fn param(fold: bool, nv: S<(B, Option<B>)>) -> S<B> {
    (sws(fold), sws(fold), nv, sws(fold), sws(fold))
        .prop_map(|(a, b, (n, v), c, d)| match v {
            Some(v) => cat(&[&a[..], b";", &b, &n, &c, b"=", &d, &v]),
            None => cat(&[&a[..], b";", &b, &n]),
        })
        .boxed()
}

fn nv(name: &'static str, value: S<B>) -> S<(B, Option<B>)> {
    value
        .prop_map(move |v| (name.as_bytes().to_vec(), Some(v)))
        .boxed()
}

fn flag(name: &'static str) -> S<(B, Option<B>)> {
    Just((name.as_bytes().to_vec(), None)).boxed()
}

/// A generic parameter: a token name with no value, a token value or a
/// quoted-string value.
fn generic_param(fold: bool) -> S<(B, Option<B>)> {
    (
        token(1, 8),
        prop_oneof![
            2 => Just(None),
            3 => token(1, 8).prop_map(Some),
            1 => quoted(fold).prop_map(Some),
        ],
    )
        .boxed()
}

/// One Via value: `SIP / 2.0 / UDP host [: port] *(;param)`, LWS where §25
/// allows it.
pub(crate) fn via_value(fold: bool) -> S<B> {
    let protocol = prop_oneof![8 => lit("SIP"), 1 => lit("sip")];
    let transport = prop_oneof![
        4 => one_of(&["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp"]),
        1 => token(1, 6),
    ];
    let branch = option::weighted(
        0.9,
        param(
            fold,
            nv(
                "branch",
                token(1, 16)
                    .prop_map(|t| cat(&[&b"z9hG4bK"[..], &t]))
                    .boxed(),
            ),
        ),
    )
    .prop_map(Option::unwrap_or_default);
    let other = param(
        fold,
        prop_oneof![
            flag("rport"),
            nv("rport", port()),
            nv(
                "received",
                prop_oneof![
                    ipv4(),
                    ipv6(),
                    ipv6().prop_map(|v| cat(&[&b"["[..], &v, b"]"]))
                ]
                .boxed()
            ),
            nv(
                "ttl",
                (0u32..=255)
                    .prop_map(|n| n.to_string().into_bytes())
                    .boxed()
            ),
            nv("maddr", host()),
            flag("alias"),
            generic_param(fold),
        ]
        .boxed(),
    );
    let slash = move || (sws(fold), sws(fold)).prop_map(|(a, b)| cat(&[&a[..], b"/", &b[..]]));
    (
        (protocol, slash(), lit("2.0"), slash(), transport),
        lws(fold),
        host(),
        opt_port(true, fold),
        branch,
        vec(other, 0..=2),
    )
        .prop_map(|((p, s1, v, s2, t), l, h, port, br, others)| {
            [p, s1, v, s2, t, l, h, port, br, others.concat()].concat()
        })
        .boxed()
}

/// Which header a name-addr is for: From, To, Contact and
/// P-Asserted-Identity take a name-addr or an addr-spec; Route and
/// Record-Route only a name-addr, with a loose-routing `;lr` URI.
#[derive(Clone, Copy, Debug)]
enum Kind {
    FromTo,
    Contact,
    Route,
}

/// A header parameter after a name-addr or addr-spec.
fn header_param(fold: bool) -> S<B> {
    param(
        fold,
        prop_oneof![
            2 => nv("tag", token(1, 12)),
            1 => nv("expires", number(0u32..=86400)),
            1 => nv("q", one_of(&["0", "0.5", "0.7", "1", "1.000"])),
            1 => nv("+sip.instance", lit("\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"")),
            1 => nv("received", prop_oneof![ipv4(), ipv6().prop_map(|v| cat(&[&b"["[..], &v, b"]"]))].boxed()),
            2 => generic_param(fold),
        ]
        .boxed(),
    )
}

/// A From/To/Contact/Route/Record-Route/P-Asserted-Identity value: a name-addr
/// with optional display name (tokens, or a quoted string that may hold commas
/// and `<>`), or for non-Route headers an addr-spec, then header parameters.
fn name_addr(kind: Kind, fold: bool) -> S<B> {
    let display = prop_oneof![
        2 => Just(B::new()),
        1 => (vec(token(1, 8), 1..=3), vec(lws(fold), 2), sws(fold))
            .prop_map(|(t, s, end)| [interleave(&t, &s), end].concat()),
        2 => (quoted(fold), sws(fold)).prop_map(|(q, s)| [q, s].concat()),
    ];
    let inner = match kind {
        Kind::Route => (
            sip_uri(Place::Bracketed),
            prop_oneof![
                lit(";lr"),
                lit(";lr;transport=tcp"),
                lit(";transport=tcp;lr"),
                lit(";lr=on")
            ],
        )
            .prop_map(|(u, lr)| {
                // ;lr goes among the URI parameters, before any ?headers
                // (a `?` in the user part, before the `@`, does not count).
                let host = u.iter().position(|&b| b == b'@').map_or(0, |at| at + 1);
                match u[host..].iter().position(|&b| b == b'?') {
                    Some(q) => cat(&[&u[..host + q], &lr, &u[host + q..]]),
                    None => [u, lr].concat(),
                }
            })
            .boxed(),
        _ => prop_oneof![
            6 => sip_uri(Place::Bracketed),
            1 => tel_uri(true),
            1 => other_uri(),
        ]
        .boxed(),
    };
    let bracketed = (display, inner).prop_map(|(d, u)| cat(&[&d[..], b"<", &u, b">"]));
    let bare = prop_oneof![
        4 => sip_uri(Place::Bare),
        1 => tel_uri(false),
        1 => other_uri(),
    ];
    // Each parameter brings its own `SWS ";" SWS`.
    let params = vec(header_param(fold), 0..=2).prop_map(|v| v.concat());
    let addr = match kind {
        Kind::Route => bracketed.boxed(),
        _ => prop_oneof![3 => bracketed, 1 => bare].boxed(),
    };
    (addr, params).prop_map(|(a, p)| [a, p].concat()).boxed()
}

/// A Route or Record-Route value for an edit (no folds).
pub(crate) fn route_value() -> S<B> {
    name_addr(Kind::Route, false)
}

// ---------------------------------------------------------------- headers

/// One header field as the generator wrote it.
#[derive(Clone)]
pub(crate) struct Hdr {
    /// The classification the parser must arrive at.
    pub(crate) name: HeaderName,
    pub(crate) raw_name: B,
    /// SP/HT between the name and the colon.
    before_colon: B,
    /// SWS after the colon (may be a fold).
    lead: B,
    /// The list items (one item for a single-valued header).
    items: Vec<B>,
    /// The separators between items (`SWS "," SWS`).
    seps: Vec<B>,
    /// SP/HT before the CRLF.
    trail: B,
}

impl Hdr {
    /// The value as the parser should report it: trimmed, folds kept.
    pub(crate) fn value(&self) -> B {
        interleave(&self.items, &self.seps)
    }

    /// The whole line, CRLF included.
    pub(crate) fn line(&self) -> B {
        cat(&[
            &self.raw_name[..],
            &self.before_colon,
            b":",
            &self.lead,
            &self.value(),
            &self.trail,
            b"\r\n",
        ])
    }

    /// The line with `value` in place of the value, all else as written.
    pub(crate) fn line_with_value(&self, value: &[u8]) -> B {
        Hdr {
            items: vec![value.to_vec()],
            seps: Vec::new(),
            ..self.clone()
        }
        .line()
    }

    /// The line with its first list item and the separator after it removed;
    /// `None` if it has a single item (removing it removes the line).
    pub(crate) fn line_without_first_item(&self) -> Option<B> {
        (self.items.len() > 1).then(|| {
            Hdr {
                items: self.items[1..].to_vec(),
                seps: self.seps[1..].to_vec(),
                ..self.clone()
            }
            .line()
        })
    }

    /// The comma-separated values (none for an empty value).
    pub(crate) fn items(&self) -> Vec<B> {
        if self.value().is_empty() {
            Vec::new()
        } else {
            self.items.clone()
        }
    }
}

impl fmt::Debug for Hdr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: \"{}\"", self.name, escaped(&self.line()))
    }
}

/// The name as written: canonical, random case, or the compact form.
fn raw_name(name: HeaderName) -> S<B> {
    let canon = name.as_str().as_bytes().to_vec();
    let c2 = canon.clone();
    let cased = vec(any::<bool>(), canon.len()).prop_map(move |up| {
        c2.iter()
            .zip(up)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect::<B>()
    });
    match name.compact() {
        Some(c) => prop_oneof![
            3 => Just(canon),
            1 => cased,
            2 => select(vec![c, c.to_ascii_uppercase()]).prop_map(|c| vec![c]),
        ]
        .boxed(),
        None => prop_oneof![3 => Just(canon), 1 => cased].boxed(),
    }
}

fn hdr_named(name: HeaderName, raw: S<B>, items: S<(Vec<B>, Vec<B>)>) -> S<Hdr> {
    (
        raw,
        prop_oneof![8 => Just(B::new()), 1 => wsp1()],
        prop_oneof![1 => Just(B::new()), 6 => lit(" "), 2 => lws(true)],
        items,
        prop_oneof![8 => Just(B::new()), 1 => wsp1()],
    )
        .prop_map(
            move |(raw_name, before_colon, lead, (items, seps), trail)| Hdr {
                name,
                raw_name,
                before_colon,
                lead,
                items,
                seps,
                trail,
            },
        )
        .boxed()
}

fn hdr(name: HeaderName, items: S<(Vec<B>, Vec<B>)>) -> S<Hdr> {
    hdr_named(name, raw_name(name), items)
}

fn single(value: S<B>) -> S<(Vec<B>, Vec<B>)> {
    value.prop_map(|v| (vec![v], Vec::new())).boxed()
}

fn list(item: S<B>, min: usize, max: usize) -> S<(Vec<B>, Vec<B>)> {
    (vec(item, min..=max), vec(comma(true), max))
        .prop_map(|(items, mut seps)| {
            seps.truncate(items.len().saturating_sub(1));
            (items, seps)
        })
        .boxed()
}

/// CSeq without its method, which [`message`] appends (it must be the
/// request's).
fn cseq() -> S<Hdr> {
    let value = (number(0u32..=0x7fff_ffff), lws(true))
        .prop_map(|(n, l)| cat(&[&n, &l]))
        .boxed();
    hdr(HeaderName::CSeq, single(value))
}

/// Content-Length without its number, which [`message`] appends: 0-2
/// leading zeros now and then.
fn content_length() -> S<Hdr> {
    hdr(
        HeaderName::ContentLength,
        single(prop_oneof![6 => lit(""), 1 => lit("0"), 1 => lit("00")].boxed()),
    )
}

fn call_id() -> S<Hdr> {
    let word = || bytes_of(WORD, 1, 16);
    let value = (word(), option::of(word()))
        .prop_map(|(a, b)| match b {
            Some(b) => cat(&[&a[..], b"@", &b]),
            None => a,
        })
        .boxed();
    hdr(HeaderName::CallId, single(value))
}

fn content_type() -> S<Hdr> {
    let value = (
        prop_oneof![
            lit("application/sdp"),
            lit("multipart/mixed"),
            lit("application/pidf+xml"),
            (token(1, 8), sws(true), sws(true), token(1, 8)).prop_map(|(a, s, t, b)| cat(&[
                &a[..],
                &s,
                b"/",
                &t,
                &b
            ]))
        ],
        vec(param(true, generic_param(true)), 0..=2),
    )
        .prop_map(|(t, p)| [t, p.concat()].concat())
        .boxed();
    hdr(HeaderName::ContentType, single(value))
}

/// A header whose name this crate does not know, with an odd token name.
fn unknown() -> S<Hdr> {
    let name = prop_oneof![
        token(1, 12),
        lit("!interesting-Header0123456789_*+`.%indeed'~"),
        (token(1, 8)).prop_map(|t| cat(&[&b"X-"[..], &t])),
    ]
    .prop_filter("not a known name", |n| {
        HeaderName::from_bytes(n) == HeaderName::Other
    })
    .boxed();
    hdr_named(HeaderName::Other, name, single(text(true, 0)))
}

/// Other headers a message may carry (not checked by validation).
fn optional_header() -> S<Hdr> {
    prop_oneof![
        3 => unknown(),
        1 => hdr(HeaderName::Subject, single(text(true, 0))),
        1 => hdr(HeaderName::Supported, list(token(1, 10), 0, 3)),
        1 => hdr(HeaderName::Allow, list(one_of(&["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE"]), 1, 4)),
        1 => hdr(HeaderName::UserAgent, single(text(true, 1))),
        1 => hdr(HeaderName::Expires, single(number(0u32..=86400))),
        1 => hdr(HeaderName::Date, single(lit("Sat, 13 Nov 2010 23:29:00 GMT"))),
        1 => hdr(HeaderName::Event, single((token(1, 10), vec(param(true, generic_param(true)), 0..=1)).prop_map(|(t, p)| [t, p.concat()].concat()).boxed())),
        1 => hdr(HeaderName::PAssertedIdentity, list(name_addr(Kind::FromTo, true), 1, 2)),
        1 => hdr(HeaderName::Geolocation, list(one_of(&["<cid:target123@example.com>", "<https://lis.example.com:8222/y/z>;inserted-by=\"a, b\""]), 1, 2)),
    ]
    .boxed()
}

// ---------------------------------------------------------------- messages

/// The start line as the generator wrote it.
#[derive(Clone, Debug)]
pub(crate) enum Start {
    Request {
        method: B,
        uri: B,
        version: B,
    },
    Response {
        version: B,
        code: u16,
        reason: B,
        cseq_method: B,
    },
}

impl Start {
    pub(crate) fn line(&self) -> B {
        match self {
            Start::Request {
                method,
                uri,
                version,
            } => cat(&[&method[..], b" ", uri, b" ", version]),
            Start::Response {
                version,
                code,
                reason,
                ..
            } => cat(&[version, format!(" {code} ").as_bytes(), reason]),
        }
    }

    fn cseq_method(&self) -> B {
        match self {
            Start::Request { method, .. } => method.clone(),
            Start::Response { cseq_method, .. } => cseq_method.clone(),
        }
    }
}

fn method() -> S<B> {
    prop_oneof![
        6 => one_of(&["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"]),
        1 => one_of(&["PRACK", "UPDATE", "INFO", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH", "NEWMETHOD", "!interesting-Method0123456789_*+`.%indeed'~"]),
        2 => token(1, 12),
    ]
    .boxed()
}

fn start_line() -> S<Start> {
    // "SIP" is case-insensitive (RFC 3261 §7.1); senders use upper case.
    let version = || prop_oneof![9 => lit("SIP/2.0"), 1 => lit("sip/2.0")];
    let request =
        (method(), request_uri(), version()).prop_map(|(method, uri, version)| Start::Request {
            method,
            uri,
            version,
        });
    let reason = prop_oneof![
        1 => Just(B::new()),
        2 => one_of(&["OK", "Trying", "Ringing", "Session Progress", "Not Found", "Très bien", "お待ちください"]),
        3 => vec(prop_oneof![8 => select(REASON).prop_map(|b| vec![b]), 1 => utf8_char(), 1 => escape()], 0..=20)
            .prop_map(|v| v.concat()),
    ];
    let response = (version(), 100u16..=699, reason, method()).prop_map(
        |(version, code, reason, cseq_method)| Start::Response {
            version,
            code,
            reason,
            cseq_method,
        },
    );
    prop_oneof![3 => request, 2 => response].boxed()
}

fn body() -> S<B> {
    prop_oneof![
        3 => Just(B::new()),
        2 => vec(any::<u8>(), 1..=200),
        2 => bytes_of(b"\0\r\n \t:;,ab\xff", 1, 64),
        1 => vec(one_of(&["v=0\r\n", "o=- 1 1 IN IP4 192.0.2.1\r\n", "\r\n\r\n", "INVITE sip:x SIP/2.0\r\n", "Content-Length: 99\r\n", "\n", "\r", "\0"]), 1..=8)
            .prop_map(|v| v.concat()),
    ]
    .boxed()
}

/// A generated message.
#[derive(Clone)]
pub(crate) struct Msg {
    pub(crate) start: Start,
    pub(crate) headers: Vec<Hdr>,
    pub(crate) body: B,
}

impl Msg {
    /// The message on the wire.
    pub(crate) fn bytes(&self) -> B {
        let mut out = self.start.line();
        out.extend_from_slice(b"\r\n");
        for h in &self.headers {
            out.extend_from_slice(&h.line());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Every list item of the headers named `name`, in order.
    pub(crate) fn items(&self, name: HeaderName) -> Vec<B> {
        self.headers
            .iter()
            .filter(|h| h.name == name)
            .flat_map(Hdr::items)
            .collect()
    }

    /// The value of the first header named `name`.
    pub(crate) fn value(&self, name: HeaderName) -> Option<B> {
        self.headers.iter().find(|h| h.name == name).map(Hdr::value)
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", escaped(&self.bytes()))
    }
}

/// A valid message. With `with_length` it always carries Content-Length
/// (stream transports need it); otherwise now and then it does not.
///
/// Built without `prop_flat_map` (the CSeq method and the Content-Length are
/// filled in afterwards, the header order is a permutation drawn up front),
/// so generating is cheap and failures shrink well.
pub(crate) fn message(with_length: bool) -> S<Msg> {
    let cl = if with_length {
        content_length().prop_map(Some).boxed()
    } else {
        option::weighted(0.8, content_length()).boxed()
    };
    let headers = (
        vec(hdr(HeaderName::Via, list(via_value(true), 1, 3)), 1..=2),
        hdr(HeaderName::From, single(name_addr(Kind::FromTo, true))),
        hdr(HeaderName::To, single(name_addr(Kind::FromTo, true))),
        call_id(),
        cseq(),
        option::of(hdr(HeaderName::MaxForwards, single(number(0u32..=255)))),
        cl,
        vec(
            hdr(HeaderName::Route, list(name_addr(Kind::Route, true), 1, 3)),
            0..=2,
        ),
        vec(
            hdr(
                HeaderName::RecordRoute,
                list(name_addr(Kind::Route, true), 1, 3),
            ),
            0..=2,
        ),
        vec(
            hdr(
                HeaderName::Contact,
                prop_oneof![6 => list(name_addr(Kind::Contact, true), 1, 3), 1 => single(lit("*"))]
                    .boxed(),
            ),
            0..=1,
        ),
        option::of(content_type()),
        vec(optional_header(), 0..=4),
    );
    // At most 2 + 4 + 1 + 1 + 2 + 2 + 1 + 1 + 4 = 18 headers.
    let order = Just((0..18).collect::<Vec<usize>>()).prop_shuffle();
    (start_line(), headers, order, body())
        .prop_map(
            |(
                start,
                (via, from, to, call_id, mut cseq, mf, cl, route, rr, contact, ct, other),
                order,
                body,
            )| {
                cseq.items[0].extend_from_slice(&start.cseq_method());
                let cl = cl.map(|mut h| {
                    h.items[0].extend_from_slice(body.len().to_string().as_bytes());
                    h
                });
                let mut all = via;
                all.extend([from, to, call_id, cseq]);
                all.extend(mf);
                all.extend(cl);
                all.extend(route);
                all.extend(rr);
                all.extend(contact);
                all.extend(ct);
                all.extend(other);
                let mut keyed: Vec<(usize, Hdr)> = order.into_iter().zip(all).collect();
                keyed.sort_by_key(|(k, _)| *k);
                Msg {
                    start,
                    headers: keyed.into_iter().map(|(_, h)| h).collect(),
                    body,
                }
            },
        )
        .boxed()
}
