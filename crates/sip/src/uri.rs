//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), and opaque absolute
//! URIs of any other scheme (`urn:service:sos`, `http:` ...).
//!
//! Views borrow the message; nothing is unescaped eagerly. `%HH` escapes are
//! checked for form at parse time and decoded on demand by [`unescape`].

use core::fmt;
use std::net::Ipv4Addr;

use crate::error::{Error, ErrorKind};
use crate::scan::{
    escape_ok_at, host_class, is_ipv6, is_scheme, is_tel_number, is_token, is_uri_header,
    is_uri_param, is_uri_params, is_uri_params_plain, is_userinfo_or_colon, is_userinfo_plain,
    parse_u32, skip_lws, skip_while, trim_lws, HOST_NUMERIC,
};

/// A parsed URI.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'a>),
    /// Any other absolute URI, kept opaque: `scheme ":" rest`.
    Other {
        /// The scheme, as written.
        scheme: &'a [u8],
        /// Everything after the colon.
        rest: &'a [u8],
    },
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A host name (not validated against DNS rules beyond the character set).
    Domain(&'a [u8]),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference: the text between `[` and `]`. Kept as text because
    /// RFC 5118 §4.10 asks elements to tolerate forms (`2001:db8:::192.0.2.1`)
    /// that a strict address parser refuses.
    Ipv6(&'a [u8]),
}

/// A `sip:` or `sips:` URI.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `true` for `sips:`.
    pub secure: bool,
    /// The user part, still escaped (may hold `;`, `?`, `/` ... per `user-unreserved`).
    pub user: Option<&'a [u8]>,
    /// The password, still escaped.
    pub password: Option<&'a [u8]>,
    /// The host.
    pub host: Host<'a>,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters, without the leading `;` (empty if none).
    pub params: &'a [u8],
    /// URI headers, without the leading `?`.
    pub headers: Option<&'a [u8]>,
}

/// A `tel:` URI.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The telephone-subscriber number, with any visual separators.
    pub number: &'a [u8],
    /// Parameters, without the leading `;`.
    pub params: &'a [u8],
}

impl<'a> Uri<'a> {
    /// Parse a URI. `offset` is where `s` starts in the message (for errors).
    pub fn parse(s: &'a [u8], offset: usize) -> Result<Self, Error> {
        let bad = |at: usize| Error::new(ErrorKind::BadRequestUri, offset + at);
        // Most URIs are `sip:`; the others look for their colon.
        if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"sip:")) {
            return SipUri::parse_rest(s.get(4..).unwrap_or_default(), false, offset + 4)
                .map(Uri::Sip);
        }
        let colon = memchr::memchr(b':', s).ok_or_else(|| bad(0))?;
        let (scheme, rest) = (
            s.get(..colon).unwrap_or_default(),
            s.get(colon + 1..).unwrap_or_default(),
        );
        let rest_off = offset + colon + 1;
        if scheme.eq_ignore_ascii_case(b"sip") {
            SipUri::parse_rest(rest, false, rest_off).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            SipUri::parse_rest(rest, true, rest_off).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            TelUri::parse_rest(rest, rest_off).map(Uri::Tel)
        } else {
            let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
                && scheme.iter().all(|&b| is_scheme(b));
            if !valid_scheme {
                return Err(bad(0));
            }
            if rest.is_empty() {
                return Err(bad(colon + 1));
            }
            if let Some(p) = rest
                .iter()
                .position(|&b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
            {
                return Err(bad(colon + 1 + p));
            }
            Ok(Uri::Other { scheme, rest })
        }
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &'a [u8] {
        match self {
            Uri::Sip(u) if u.secure => b"sips",
            Uri::Sip(_) => b"sip",
            Uri::Tel(_) => b"tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The parameters of a SIP or tel URI (empty for other schemes).
    pub fn params(&self) -> Params<'a> {
        match self {
            Uri::Sip(u) => Params::new(u.params),
            Uri::Tel(t) => Params::new(t.params),
            Uri::Other { .. } => Params::new(b""),
        }
    }
}

impl<'a> SipUri<'a> {
    fn parse_rest(s: &'a [u8], secure: bool, offset: usize) -> Result<Self, Error> {
        let bad = |at: usize| Error::new(ErrorKind::BadRequestUri, offset + at);
        // userinfo: everything before the first '@' (neither params nor headers
        // may hold a bare '@'). One pass checks the characters (the first bad
        // one is the error) and the escapes, and finds the password's ':'.
        let (user, password, host_start) = match memchr::memchr(b'@', s) {
            Some(at) => {
                let info = s.get(..at).unwrap_or_default();
                let mut colon = None;
                let mut escapes = true;
                let mut i = 0;
                loop {
                    i = skip_while(info, i, is_userinfo_plain);
                    let Some(&b) = info.get(i) else {
                        break;
                    };
                    if !is_userinfo_or_colon(b) {
                        return Err(bad(i));
                    }
                    if b == b'%' {
                        escapes &= escape_ok_at(info, i);
                    } else if colon.is_none() {
                        colon = Some(i);
                    }
                    i += 1;
                }
                if !escapes {
                    return Err(bad(0));
                }
                let (user, password) = match colon {
                    Some(c) => (info.get(..c).unwrap_or_default(), info.get(c + 1..)),
                    None => (info, None),
                };
                if user.is_empty() {
                    return Err(bad(0));
                }
                (Some(user), password, at + 1)
            }
            None => (None, None, 0),
        };
        let after = s.get(host_start..).unwrap_or_default();
        let (host, port, used) = parse_hostport(after).map_err(|p| bad(host_start + p))?;
        let mut i = host_start + used;
        let mut params: &[u8] = b"";
        let mut headers = None;
        if s.get(i) == Some(&b';') {
            let start = i + 1;
            i = start;
            // One pass: the characters (the first bad one is the error), the
            // escapes, and no empty parameter name (at the start, after a ';',
            // or after a trailing ';'), as `Params` would yield them.
            let mut escapes = true;
            let mut names = true;
            let mut at_name = true;
            loop {
                // Plain parameter characters end any name start.
                let plain_end = skip_while(s, i, is_uri_params_plain);
                if plain_end > i {
                    at_name = false;
                    i = plain_end;
                }
                let Some(&b) = s.get(i) else {
                    break;
                };
                if b == b'?' {
                    break;
                }
                if !is_uri_params(b) {
                    return Err(bad(i));
                }
                if b == b'%' {
                    // The params end at '?' or at the end, neither a hex
                    // digit, so looking past them cannot pass a cut escape.
                    escapes &= escape_ok_at(s, i);
                }
                if at_name && (b == b';' || b == b'=') {
                    names = false;
                }
                at_name = b == b';';
                i += 1;
            }
            params = s.get(start..i).unwrap_or_default();
            if at_name && !params.is_empty() {
                names = false;
            }
            if !(escapes && names) {
                return Err(bad(start));
            }
        }
        if s.get(i) == Some(&b'?') {
            let h = s.get(i + 1..).unwrap_or_default();
            let mut escapes = true;
            for (p, &b) in h.iter().enumerate() {
                if !is_uri_header(b) {
                    return Err(bad(i + 1 + p));
                }
                if b == b'%' {
                    escapes &= escape_ok_at(h, p);
                }
            }
            if !escapes {
                return Err(bad(i + 1));
            }
            headers = Some(h);
            i = s.len();
        }
        if i != s.len() {
            return Err(bad(i));
        }
        Ok(Self {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// Look up a URI parameter by name (case-insensitive). `Some(None)` for a
    /// parameter without a value (`;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        Params::new(self.params).get(name)
    }
}

impl<'a> TelUri<'a> {
    fn parse_rest(s: &'a [u8], offset: usize) -> Result<Self, Error> {
        let bad = |at: usize| Error::new(ErrorKind::BadRequestUri, offset + at);
        let end = memchr::memchr(b';', s).unwrap_or(s.len());
        let number = s.get(..end).unwrap_or_default();
        if number.is_empty() || !number.iter().all(|&b| is_tel_number(b)) {
            return Err(bad(0));
        }
        let params = s.get(end + 1..).unwrap_or_default();
        if let Some(p) = params
            .iter()
            .position(|&b| !(is_uri_param(b) || b == b';' || b == b'='))
        {
            return Err(bad(end + 1 + p));
        }
        if s.get(end) == Some(&b';') && Params::new(params).any(|(name, _)| name.is_empty()) {
            return Err(bad(end + 1));
        }
        Ok(Self { number, params })
    }
}

/// Parse `host [":" port]` at the start of `s`; returns the host, the port and
/// how many bytes were used. The error is the offset of the fault.
pub(crate) fn parse_hostport(s: &[u8]) -> Result<(Host<'_>, Option<u16>, usize), usize> {
    let (host, mut i) = parse_host(s)?;
    let mut port = None;
    if s.get(i) == Some(&b':') {
        let digits = s.get(i + 1..).unwrap_or_default();
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        let p = parse_u32(digits.get(..n).unwrap_or_default(), u32::from(u16::MAX)).ok_or(i + 1)?;
        port = Some(p as u16);
        i += 1 + n;
    }
    Ok((host, port, i))
}

/// Parse a host (IPv6 reference, IPv4 address or host name) at the start of `s`.
pub(crate) fn parse_host(s: &[u8]) -> Result<(Host<'_>, usize), usize> {
    if s.first() == Some(&b'[') {
        let close = memchr::memchr(b']', s).ok_or(0usize)?;
        let inner = s.get(1..close).unwrap_or_default();
        if inner.len() < 2 || !inner.iter().all(|&b| is_ipv6(b)) || !inner.contains(&b':') {
            return Err(1);
        }
        return Ok((Host::Ipv6(inner), close + 1));
    }
    if let Some(ipv4) = leading_ipv4(s) {
        return Ok(ipv4);
    }
    let mut n = 0;
    let mut seen = 0;
    while let Some(&[a, b, c, d]) = s.get(n..n + 4) {
        let classes = [host_class(a), host_class(b), host_class(c), host_class(d)];
        if classes.contains(&0) {
            break;
        }
        seen |= classes[0] | classes[1] | classes[2] | classes[3];
        n += 4;
    }
    while let Some(&b) = s.get(n) {
        let class = host_class(b);
        if class == 0 {
            break;
        }
        seen |= class;
        n += 1;
    }
    let name = s.get(..n).unwrap_or_default();
    match name.first() {
        None | Some(b'.' | b'-') => Err(0),
        // Looks numeric: it must be a dotted quad.
        Some(_) if seen == HOST_NUMERIC => dotted_quad(name).map(|ip| (Host::Ipv4(ip), n)).ok_or(0),
        Some(_) => Ok((Host::Domain(name), n)),
    }
}

/// A dotted quad at the start of `s` that is the whole host (the next byte
/// cannot continue a host name), read in the same pass that finds its end;
/// `None` leaves the host to the general path, which reads it the same way.
#[inline]
fn leading_ipv4(s: &[u8]) -> Option<(Host<'_>, usize)> {
    let digit = |i: usize| s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9);
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let first = digit(i)?;
        let mut value = u32::from(first);
        i += 1;
        if let Some(second) = digit(i) {
            if first == 0 {
                return None;
            }
            value = value * 10 + u32::from(second);
            i += 1;
            if let Some(third) = digit(i) {
                value = value * 10 + u32::from(third);
                i += 1;
            }
        }
        *octet = u8::try_from(value).ok()?;
    }
    if s.get(i).is_some_and(|&b| host_class(b) != 0) {
        return None;
    }
    Some((Host::Ipv4(Ipv4Addr::from(octets)), i))
}

/// A dotted-quad IPv4 address, as [`Ipv4Addr`]'s `FromStr` reads it: four
/// decimal numbers of one to three digits, each at most 255 and without a
/// leading zero (which could mean octal elsewhere), separated by single dots.
fn dotted_quad(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut k = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &b in s {
        if b == b'.' {
            if digits == 0 {
                return None;
            }
            *octets.get_mut(k)? = u8::try_from(value).ok()?;
            k += 1;
            (value, digits) = (0, 0);
        } else if b.is_ascii_digit() && digits < 3 && !(digits == 1 && value == 0) {
            value = value * 10 + u32::from(b - b'0');
            digits += 1;
        } else {
            return None;
        }
    }
    if digits == 0 || k != 3 {
        return None;
    }
    *octets.get_mut(3)? = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Iterator over `;`-separated parameters: `(name, Option<value>)`, each trimmed
/// of white space. Works for URI parameters and header parameters alike
/// (quoted values are kept whole, quotes included).
#[derive(Clone, Debug)]
pub struct Params<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Params<'a> {
    /// Parameters of `s` (without the leading `;`).
    pub fn new(s: &'a [u8]) -> Self {
        Self {
            rest: s,
            done: s.is_empty(),
        }
    }

    /// Look up by name, case-insensitively.
    pub fn get(self, name: &str) -> Option<Option<&'a [u8]>> {
        let want = name.as_bytes();
        let mut lower = [0u8; 32];
        match lower.get_mut(..want.len()) {
            Some(dst) if !want.is_empty() && want.iter().all(|&b| is_token(b)) => {
                dst.copy_from_slice(want);
                dst.make_ascii_lowercase();
                if self.done {
                    return None;
                }
                token_param(self.rest, dst)
            }
            _ => {
                let mut this = self;
                this.find(|(n, _)| n.eq_ignore_ascii_case(want))
                    .map(|(_, v)| v)
            }
        }
    }
}

/// [`Params::get`] for a name that is a non-empty token without uppercase
/// letters, on parameters `s`
/// (without the leading `;`): found without splitting every parameter — at
/// each parameter's start the name is compared, and the others are skipped
/// to their `;`.
pub(crate) fn token_param<'a>(s: &'a [u8], want: &[u8]) -> Option<Option<&'a [u8]>> {
    if s.is_empty() {
        return None;
    }
    let mut i = 0;
    loop {
        let name_start = skip_lws(s, i);
        let name_end = name_start + want.len();
        if s.get(name_start..name_end)
            .is_some_and(|n| eq_lowercase(n, want))
        {
            let after = skip_lws(s, name_end);
            match s.get(after) {
                None | Some(b';') => return Some(None),
                Some(b'=') => {
                    let end = param_end(s, after + 1);
                    return Some(Some(trim_lws(s.get(after + 1..end).unwrap_or_default())));
                }
                Some(_) => {}
            }
        }
        let end = param_end(s, i);
        if end >= s.len() {
            return None;
        }
        i = end + 1;
    }
}

/// Whether `a` equals `lower`, which has no uppercase letters, ignoring
/// ASCII case: a letter of `lower` matches either case, anything else only
/// itself (as `eq_ignore_ascii_case` does for such a `lower`).
#[inline]
fn eq_lowercase(a: &[u8], lower: &[u8]) -> bool {
    a.len() == lower.len()
        && a.iter().zip(lower).all(|(&x, &w)| {
            let x = if w.is_ascii_lowercase() { x | 0x20 } else { x };
            x == w
        })
}

/// The end of the parameter of `s` that `i` is in (outside any quoted
/// string): its `;`, or the end of `s`.
#[inline]
fn param_end(s: &[u8], mut i: usize) -> usize {
    loop {
        i = skip_while(s, i, |b| b != b';' && b != b'"');
        match s.get(i) {
            None => return s.len(),
            Some(b';') => return i,
            Some(_) => {}
        }
        // A quoted string, to its closing quote or the end.
        i += 1;
        while let Some(&q) = s.get(i) {
            match q {
                b'"' => break,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        i += 1;
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut end = self.rest.len();
        let mut eq = None;
        let mut i = 0;
        while let Some(&b) = self.rest.get(i) {
            match b {
                b';' => {
                    end = i;
                    break;
                }
                b'=' if eq.is_none() => eq = Some(i),
                b'"' => {
                    // A quoted string, to its closing quote or the end.
                    i += 1;
                    while let Some(&q) = self.rest.get(i) {
                        match q {
                            b'"' => break,
                            b'\\' => i += 2,
                            _ => i += 1,
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let item = self.rest.get(..end).unwrap_or_default();
        match self.rest.get(end + 1..) {
            Some(r) => self.rest = r,
            None => self.done = true,
        }
        Some(match eq {
            Some(e) => (
                crate::scan::trim_lws(item.get(..e).unwrap_or_default()),
                Some(crate::scan::trim_lws(item.get(e + 1..).unwrap_or_default())),
            ),
            None => (crate::scan::trim_lws(item), None),
        })
    }
}

/// Decode `%HH` escapes on the fly. Malformed escapes pass through literally.
pub fn unescape(s: &[u8]) -> Unescape<'_> {
    Unescape { s, i: 0 }
}

/// Iterator returned by [`unescape`].
#[derive(Clone, Debug)]
pub struct Unescape<'a> {
    s: &'a [u8],
    i: usize,
}

impl Iterator for Unescape<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.i)?;
        if b == b'%' {
            if let (Some(h), Some(l)) = (self.s.get(self.i + 1), self.s.get(self.i + 2)) {
                if let (Some(h), Some(l)) = (hex(*h), hex(*l)) {
                    self.i += 3;
                    return Some(h << 4 | l);
                }
            }
        }
        self.i += 1;
        Some(b)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

struct Lossy<'a>(&'a [u8]);

impl fmt::Debug for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

impl fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => write!(f, "Domain({:?})", Lossy(d)),
            Host::Ipv4(a) => write!(f, "Ipv4({a})"),
            Host::Ipv6(a) => write!(f, "Ipv6({:?})", Lossy(a)),
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(&String::from_utf8_lossy(d)),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{}]", String::from_utf8_lossy(a)),
        }
    }
}

impl fmt::Debug for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipUri")
            .field("secure", &self.secure)
            .field("user", &self.user.map(Lossy))
            .field("password", &self.password.map(Lossy))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("params", &Lossy(self.params))
            .field("headers", &self.headers.map(Lossy))
            .finish()
    }
}

impl fmt::Debug for TelUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelUri")
            .field("number", &Lossy(self.number))
            .field("params", &Lossy(self.params))
            .finish()
    }
}

impl fmt::Debug for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => t.fmt(f),
            Uri::Other { scheme, rest } => {
                write!(f, "Other({:?}:{:?})", Lossy(scheme), Lossy(rest))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s.as_bytes(), 0).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn sip_uris() {
        let u = sip("sip:alice:pw@example.com:5070;transport=udp;lr?Subject=hi&X=1");
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"pw"[..]));
        assert_eq!(u.host, Host::Domain(b"example.com"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("TRANSPORT"), Some(Some(&b"udp"[..])));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers, Some(&b"Subject=hi&X=1"[..]));
        let u = sip("sips:192.0.2.1");
        assert!(u.secure);
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn rfc4475_uri_cases() {
        // §3.1.1.9: ';' in the user part belongs to the userinfo.
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, Host::Domain(b"example.com"));
        assert!(u.params.is_empty());
        let decoded: Vec<u8> = unescape(u.user.unwrap()).collect();
        assert_eq!(decoded, b"user;par=u@example.net");
        // §3.1.1.2: '?' and ',' in the user part, ':' splits the password.
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert!(u.headers.is_none());
        // escaped NUL does not truncate.
        let u = sip("sip:%00bob@example.com");
        assert_eq!(unescape(u.user.unwrap()).collect::<Vec<_>>(), b"\0bob");
    }

    #[test]
    fn ipv6() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6(b"2001:db8::10"));
        assert_eq!(u.port, Some(5070));
        // RFC 5118 §4.3: the 5070 inside the brackets is not a port.
        let u = sip("sip:user@[2001:db8::10:5070]");
        assert_eq!(u.host, Host::Ipv6(b"2001:db8::10:5070"));
        assert_eq!(u.port, None);
        // §4.10: tolerate the three-colon form.
        assert!(Uri::parse(b"sip:user@[2001:db8:::192.0.2.1]", 0).is_ok());
        // §4.2: unbracketed IPv6 is an error.
        assert!(Uri::parse(b"sip:2001:db8::10", 0).is_err());
    }

    #[test]
    fn other_schemes() {
        assert_eq!(
            Uri::parse(b"urn:service:sos.fire", 0).unwrap(),
            Uri::Other {
                scheme: b"urn",
                rest: b"service:sos.fire"
            }
        );
        let t = match Uri::parse(b"tel:+44-20-7946-0999;phone-context=example.com", 0).unwrap() {
            Uri::Tel(t) => t,
            _ => panic!(),
        };
        assert_eq!(t.number, b"+44-20-7946-0999");
        assert_eq!(
            Params::new(t.params).get("phone-context"),
            Some(Some(&b"example.com"[..]))
        );
        assert!(Uri::parse(b"soap.beep://192.0.2.103:3002", 0).is_ok());
        assert!(Uri::parse(b"nobodyKnowsThisScheme:totallyopaquecontent", 0).is_ok());
        for bad in [
            &b"sip:"[..],
            b"sip:@host",
            b"sip:host;;lr",
            b"sip:host:99999",
            b"sip:ho st",
            b"1x:y",
            b"urn:",
            b":x",
            b"sip:a%4@h",
            b"tel:",
        ] {
            assert!(
                Uri::parse(bad, 0).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn dotted_quads_as_std_reads_them() {
        let mut cases: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1000.1.1.1",
            "0.00.0.0",
            "192.0.2.1",
            "",
            ".",
            "...",
            "1",
            "10.0.0.255",
            "99.199.249.250",
            "001.1.1.1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        // Dotted strings of three to five awkward numbers.
        let nums = [
            "0", "00", "1", "09", "10", "99", "100", "199", "249", "255", "256", "299", "999",
            "0000", "",
        ];
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize
        };
        for _ in 0..20_000 {
            let n = 3 + next() % 3;
            let parts: Vec<&str> = (0..n).map(|_| nums[next() % nums.len()]).collect();
            cases.push(parts.join("."));
        }
        for c in cases {
            assert_eq!(
                dotted_quad(c.as_bytes()),
                c.parse::<Ipv4Addr>().ok(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn params_iter() {
        let p: Vec<_> = Params::new(b" tag = 1918 ; lr ;x=\"a;b\"").collect();
        assert_eq!(
            p,
            vec![
                (&b"tag"[..], Some(&b"1918"[..])),
                (b"lr", None),
                (b"x", Some(b"\"a;b\""))
            ]
        );
        assert_eq!(Params::new(b"").count(), 0);
        assert_eq!(Params::new(b";").count(), 2);
    }
}
