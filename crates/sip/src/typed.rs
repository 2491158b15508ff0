//! Typed views of the header values a proxy routes and matches on.
//!
//! Each `parse` takes one header value (one list item for list headers) and the
//! value's offset in the message, and returns a view that borrows it. White
//! space is accepted wherever RFC 3261's `SWS`/`LWS` allow it (around `/`,
//! `:`, `;`, `=`), including folds.

use core::fmt;

use crate::error::{Error, ErrorKind};
use crate::header::HeaderName;
use crate::scan::{
    has_lws, is_lws, is_token, is_via_value, parse_u32, quoted_end, skip_lws, skip_while, Cursor,
};
use crate::uri::{parse_host, token_param, Host, Params, Uri};

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name (`SIP`).
    pub protocol: &'a [u8],
    /// Protocol version (`2.0`).
    pub version: &'a [u8],
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS` ... or unknown).
    pub transport: &'a [u8],
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// The parameters, without the first `;`.
    pub params: &'a [u8],
}

impl<'a> Via<'a> {
    /// Parse one Via value.
    pub fn parse(s: &'a [u8], offset: usize) -> Result<Self, Error> {
        let err = |at: usize| Error::new(ErrorKind::BadHeaderValue(HeaderName::Via), offset + at);
        let part = |from: usize, to: usize| s.get(from..to).unwrap_or_default();
        // sent-protocol: name / version / transport, with LWS allowed
        // around the slashes; almost always "SIP/2.0/".
        let (protocol, version, mut i) = if s.get(..8) == Some(b"SIP/2.0/") {
            (part(0, 3), part(4, 7), skip_lws(s, 8))
        } else {
            let protocol_end = skip_while(s, 0, is_token);
            let slash = skip_lws(s, protocol_end);
            if protocol_end == 0 || s.get(slash) != Some(&b'/') {
                return Err(err(slash));
            }
            let version_start = skip_lws(s, slash + 1);
            let version_end = skip_while(s, version_start, is_token);
            let slash = skip_lws(s, version_end);
            if version_end == version_start || s.get(slash) != Some(&b'/') {
                return Err(err(slash));
            }
            (
                part(0, protocol_end),
                part(version_start, version_end),
                skip_lws(s, slash + 1),
            )
        };
        let transport_end = skip_while(s, i, is_token);
        if transport_end == i {
            return Err(err(i));
        }
        let transport = part(i, transport_end);
        let host_start = skip_lws(s, transport_end);
        if host_start == transport_end {
            return Err(err(transport_end));
        }
        let (host, used) = parse_host(part(host_start, s.len())).map_err(|_| err(host_start))?;
        i = host_start + used;
        let mut port = None;
        let colon = skip_lws(s, i);
        if s.get(colon) == Some(&b':') {
            let digits_start = skip_lws(s, colon + 1);
            let digits_end = skip_while(s, digits_start, |b| b.is_ascii_digit());
            let p = parse_u32(part(digits_start, digits_end), u32::from(u16::MAX));
            port = Some(p.ok_or(err(digits_end))? as u16);
            i = digits_end;
        }
        i = skip_lws(s, i);
        let (params, end) = parse_params_at(s, i, offset, is_via_value)?;
        if end != s.len() {
            return Err(err(end));
        }
        Ok(Self {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        })
    }

    /// A parameter by name (case-insensitive); `Some(None)` if it has no value.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        Params::new(self.params).get(name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        token_param(self.params, b"branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie. Branches
    /// without it (RFC 2543 peers) need the older matching rules of §17.2.3.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter (with any `[ ]` left on, as RFC 5118 §4.5 saw in the wild).
    pub fn received(&self) -> Option<&'a [u8]> {
        token_param(self.params, b"received").flatten()
    }

    /// `rport`: `None` if absent, `Some(None)` if present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| {
            v.and_then(|p| parse_u32(p, u32::from(u16::MAX)))
                .map(|p| p as u16)
        })
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param("maddr").flatten()
    }
}

/// Parse `*( SEMI name [EQUAL value] )` up to the end of `c` or a byte that
/// cannot start `;`. Returns the parameter text without the first `;`.
/// `value_char` says which bytes an unquoted value may hold.
fn parse_params<'a>(
    c: &mut Cursor<'a>,
    value_char: impl Fn(u8) -> bool + Copy,
) -> Result<&'a [u8], Error> {
    let (params, used) = parse_params_at(c.rest(), 0, c.offset(), value_char)?;
    c.advance(used);
    Ok(params)
}

/// [`parse_params`] on `s` from `start`, `s` sitting at `offset` in the
/// message: the parameters and where they end.
fn parse_params_at(
    s: &[u8],
    start: usize,
    offset: usize,
    value_char: impl Fn(u8) -> bool + Copy,
) -> Result<(&[u8], usize), Error> {
    let all = s.get(start..).unwrap_or_default();
    let base = offset + start;
    let empty = |at: usize| Error::new(ErrorKind::EmptyParameter, base + at);
    // `i` walks `all`; white space is only consumed when a ';' follows it.
    let mut i = 0;
    let mut end = 0;
    while all.get(i) == Some(&b';') {
        let name_start = skip_lws(all, i + 1);
        i = skip_while(all, name_start, is_token);
        if i == name_start {
            return Err(empty(i));
        }
        end = i;
        let eq = skip_lws(all, i);
        match all.get(eq) {
            Some(b'=') => {
                let value_start = skip_lws(all, eq + 1);
                i = if all.get(value_start) == Some(&b'"') {
                    quoted_end(all, value_start)
                        .map_err(|at| Error::new(ErrorKind::UnterminatedQuote, base + at))?
                } else {
                    skip_while(all, value_start, value_char)
                };
                if i == value_start {
                    return Err(empty(i));
                }
                end = i;
                let next = skip_lws(all, i);
                if all.get(next) == Some(&b';') {
                    i = next;
                }
            }
            Some(b';') => i = eq,
            _ => {}
        }
    }
    Ok((all.get(1..end).unwrap_or_default(), start + i))
}

/// `CSeq: <number> <method>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (at most 2^31 - 1 when generated; up to 2^32 - 1 accepted).
    pub seq: u32,
    /// The method, as written (case-sensitive).
    pub method: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// Parse a CSeq value.
    pub fn parse(s: &'a [u8], offset: usize) -> Result<Self, Error> {
        let err = |at: usize| Error::new(ErrorKind::BadHeaderValue(HeaderName::CSeq), offset + at);
        // The number, read as it is found; more than 32 bits is an error at
        // its end.
        let mut digits = 0;
        let mut seq: u64 = 0;
        while let Some(d) = s
            .get(digits)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|&d| d <= 9)
        {
            seq = (seq * 10 + u64::from(d)).min(u64::from(u32::MAX) + 1);
            digits += 1;
        }
        let seq = u32::try_from(seq)
            .ok()
            .filter(|_| digits > 0)
            .ok_or(err(digits))?;
        let method_start = skip_lws(s, digits);
        if method_start == digits {
            return Err(err(digits));
        }
        let method_end = skip_while(s, method_start, is_token);
        if method_end == method_start || method_end != s.len() {
            return Err(err(method_end));
        }
        Ok(Self {
            seq,
            method: s.get(method_start..).unwrap_or_default(),
        })
    }
}

/// A `name-addr` or `addr-spec` with header parameters: the value of From, To,
/// Contact, Route, Record-Route, P-Asserted-Identity ...
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written: a quoted string (quotes included) or one or
    /// more tokens separated by white space.
    pub display_name: Option<&'a [u8]>,
    /// The URI text (between `<` and `>` for the name-addr form).
    pub uri_text: &'a [u8],
    /// Offset of `uri_text` in the message.
    pub uri_offset: usize,
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// Header parameters (`tag=...`, `expires=...`), without the first `;`.
    pub params: &'a [u8],
}

impl<'a> NameAddr<'a> {
    /// Parse one value of `header`; errors are attributed to `header`.
    pub fn parse(s: &'a [u8], offset: usize, header: HeaderName) -> Result<Self, Error> {
        Self::parse_inner(s, offset).map_err(|e| e.in_header(header))
    }

    fn parse_inner(s: &'a [u8], offset: usize) -> Result<Self, Error> {
        let mut c = Cursor::new(s, offset);
        let bad = |at: usize| Error::new(ErrorKind::BadRequestUri, at);
        c.skip_lws();
        let mut display_name = None;
        let bracketed;
        let uri_text;
        let uri_offset;
        if c.peek() == Some(b'"') {
            let q = c
                .take_quoted()
                .map_err(|at| Error::new(ErrorKind::UnterminatedQuote, at))?;
            display_name = Some(q);
            c.skip_lws();
            if c.peek() != Some(b'<') {
                return Err(bad(c.offset()));
            }
        } else {
            // Token display name: tokens and LWS up to '<'. If something else
            // comes first, this is an addr-spec.
            let mut probe = c.clone();
            let start = c.rest();
            let mut last_token_end = 0;
            loop {
                let t = probe.take_while(is_token);
                if !t.is_empty() {
                    last_token_end = start.len() - probe.rest().len();
                }
                if !probe.skip_lws() {
                    break;
                }
            }
            if probe.peek() == Some(b'<') {
                if last_token_end > 0 {
                    display_name = start.get(..last_token_end);
                }
                c = probe;
            }
        }
        if c.eat(b'<') {
            bracketed = true;
            let rest = c.rest();
            let close = memchr::memchr(b'>', rest).ok_or_else(|| bad(c.offset()))?;
            uri_text = rest.get(..close).unwrap_or_default();
            uri_offset = c.offset();
            c.advance(close + 1);
            c.skip_lws();
        } else {
            bracketed = false;
            uri_offset = c.offset();
            let rest = c.rest();
            // addr-spec: the URI ends at the first ';' (what follows are header
            // parameters) or white space. A '?' or ',' requires brackets.
            let end = rest
                .iter()
                .position(|&b| b == b';' || is_lws(b))
                .unwrap_or(rest.len());
            uri_text = rest.get(..end).unwrap_or_default();
            if uri_text.contains(&b'?') || uri_text.contains(&b',') {
                return Err(bad(uri_offset));
            }
            c.advance(end);
            c.skip_lws();
        }
        // No URI that parses holds white space; one that does not is blamed
        // on the white space first.
        if let Err(e) = Uri::parse(uri_text, uri_offset) {
            return Err(if bracketed && has_lws(uri_text) {
                bad(uri_offset)
            } else {
                e
            });
        }
        // Values: tokens, and ':' '[' ']' for IPv6 (the Via value class).
        let params = parse_params(&mut c, is_via_value)?;
        if !c.at_end() {
            return Err(bad(c.offset()));
        }
        Ok(Self {
            display_name,
            uri_text,
            uri_offset,
            bracketed,
            params,
        })
    }

    /// The URI, parsed (it was checked when the value was parsed).
    pub fn uri(&self) -> Uri<'a> {
        Uri::parse(self.uri_text, self.uri_offset).unwrap_or(Uri::Other {
            scheme: b"",
            rest: self.uri_text,
        })
    }

    /// A header parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        Params::new(self.params).get(name)
    }

    /// The `tag` parameter (From, To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        token_param(self.params, b"tag").flatten()
    }
}

/// `Content-Type: type/subtype;params`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ContentType<'a> {
    /// Media type (`application`, `multipart` ...).
    pub media_type: &'a [u8],
    /// Subtype (`sdp`, `mixed`, `pidf+xml` ...).
    pub subtype: &'a [u8],
    /// Parameters without the first `;`.
    pub params: &'a [u8],
}

impl<'a> ContentType<'a> {
    /// Parse a Content-Type value.
    pub fn parse(s: &'a [u8], offset: usize) -> Result<Self, Error> {
        let mut c = Cursor::new(s, offset);
        let err = |c: &Cursor<'_>| {
            Error::new(
                ErrorKind::BadHeaderValue(HeaderName::ContentType),
                c.offset(),
            )
        };
        let media_type = c.take_while(is_token);
        c.skip_lws();
        if media_type.is_empty() || !c.eat(b'/') {
            return Err(err(&c));
        }
        c.skip_lws();
        let subtype = c.take_while(is_token);
        if subtype.is_empty() {
            return Err(err(&c));
        }
        c.skip_lws();
        let params = parse_params(&mut c, is_token)?;
        if !c.at_end() {
            return Err(err(&c));
        }
        Ok(Self {
            media_type,
            subtype,
            params,
        })
    }

    /// Whether this is `type/subtype` (case-insensitive).
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }

    /// A parameter (e.g. `boundary`), with surrounding quotes removed.
    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        let v = Params::new(self.params).get(name)??;
        Some(
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v),
        )
    }
}

struct Lossy<'a>(&'a [u8]);
impl fmt::Debug for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

impl fmt::Debug for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Via")
            .field("protocol", &Lossy(self.protocol))
            .field("version", &Lossy(self.version))
            .field("transport", &Lossy(self.transport))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("params", &Lossy(self.params))
            .finish()
    }
}

impl fmt::Debug for CSeq<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CSeq({} {:?})", self.seq, Lossy(self.method))
    }
}

impl fmt::Debug for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameAddr")
            .field("display_name", &self.display_name.map(Lossy))
            .field("uri", &Lossy(self.uri_text))
            .field("params", &Lossy(self.params))
            .finish()
    }
}

impl fmt::Debug for ContentType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ContentType({:?}/{:?};{:?})",
            Lossy(self.media_type),
            Lossy(self.subtype),
            Lossy(self.params)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_everywhere() {
        let v = Via::parse(
            b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
            0,
        )
        .unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::Ipv4([192, 0, 2, 2].into()));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.is_rfc3261_branch());
        let v = Via::parse(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
            0,
        )
        .unwrap();
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert!(v.is_rfc3261_branch());
        let v = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];rport",
            0,
        )
        .unwrap();
        assert_eq!(v.host, Host::Ipv6(b"2001:db8::9:1"));
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received(), Some(&b"[2001:db8::9:255]"[..]));
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse(b"SIP/2.0/UDP host;received=2001:db8::9:255;rport=5061", 0).unwrap();
        assert_eq!(v.received(), Some(&b"2001:db8::9:255"[..]));
        assert_eq!(v.rport(), Some(Some(5061)));
    }

    #[test]
    fn via_errors() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..],
            b"SIP/2.0/UDP 192.0.2.15;",
            b"SIP/2.0/UDP",
            b"SIP/2.0 host",
            b"SIP/2.0/UDP host:70000",
            b"SIP/2.0/UDP host;branch=",
            b"SIP/2.0/UDP host garbage",
        ] {
            assert!(
                Via::parse(bad, 0).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cseq() {
        assert_eq!(CSeq::parse(b"0009\r\n  INVITE", 0).unwrap().seq, 9);
        assert!(CSeq::parse(b"36893488147419103232 INVITE", 0).is_err());
        assert!(CSeq::parse(b"1INVITE", 0).is_err());
        assert!(CSeq::parse(b"1 INVITE x", 0).is_err());
    }

    #[test]
    fn name_addrs() {
        let n = NameAddr::parse(
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8"#,
            0,
            HeaderName::From,
        )
        .unwrap();
        assert_eq!(n.display_name, Some(&br#""J Rosenberg \\\"""#[..]));
        assert_eq!(n.uri_text, b"sip:jdrosen@example.com");
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
        let n = NameAddr::parse(
            b"caller<sip:caller@example.com>;tag=323",
            0,
            HeaderName::From,
        )
        .unwrap();
        assert_eq!(n.display_name, Some(&b"caller"[..]));
        let n = NameAddr::parse(
            b"sip:user@example.com;tag=1;unknownparam",
            0,
            HeaderName::Contact,
        )
        .unwrap();
        assert_eq!(n.uri_text, b"sip:user@example.com");
        assert_eq!(n.param("unknownparam"), Some(None));
        let n = NameAddr::parse(
            b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.",
            0,
            HeaderName::From,
        )
        .unwrap();
        assert_eq!(n.display_name, Some(&b"token1~` token2'+_ token3*%!.-"[..]));
        assert_eq!(n.tag(), Some(&b"_token~1'+`*%!-."[..]));
        let n = NameAddr::parse(b"isbn:2983792873", 0, HeaderName::To).unwrap();
        assert!(!n.bracketed);
    }

    #[test]
    fn name_addr_errors() {
        for bad in [
            &br#""Mr. J. User <sip:j.user@example.com>"#[..],
            br#""Watson, Thomas" < sip:t.watson@example.org >"#,
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
            br#""Joe" <sip:joe@example.org>;;;;"#,
            b"<sip:a@b",
            b"<sip:a@b> junk",
        ] {
            assert!(
                NameAddr::parse(bad, 0, HeaderName::To).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_type() {
        let ct = ContentType::parse(b"multipart/mixed;boundary=\"unique-boundary-1\"", 0).unwrap();
        assert!(ct.is("Multipart", "MIXED"));
        assert_eq!(ct.param("boundary"), Some(&b"unique-boundary-1"[..]));
        assert!(ContentType::parse(b"application", 0).is_err());
    }
}
