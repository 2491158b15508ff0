//! What a proxy checks before acting on a message (RFC 3261 §16.3, §8.2, §18.3).
//!
//! The outcome is a [`Verdict`]: accept, answer the request with a status, or
//! drop a response. Policy that needs configuration or routing state (483 for
//! Max-Forwards 0, 416 for a scheme the proxy does not route, 420 for
//! Proxy-Require, loop detection) belongs to `lifeline-proxy`, not here.

use bytes::Bytes;

use crate::error::{Error, ErrorKind};
use crate::header::{Header, HeaderName};
use crate::message::{dup_bit, Message, Method};
use crate::scan::find_space_or_control;
use crate::typed::{NameAddr, Via};
use crate::uri::Uri;

/// What to do with a message off the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Well-formed: hand it to the proxy.
    Accept,
    /// A malformed request: answer with `error.status()` (400, 413, 501, 505).
    Reply(Error),
    /// A malformed response (or garbage that is not a request): never answered,
    /// dropped and counted.
    Drop(Error),
}

impl Verdict {
    /// The status to answer with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Verdict::Reply(e) => Some(e.status()),
            _ => None,
        }
    }

    /// The error behind a reply or drop.
    pub fn error(&self) -> Option<Error> {
        match self {
            Verdict::Accept => None,
            Verdict::Reply(e) | Verdict::Drop(e) => Some(*e),
        }
    }
}

/// What the first line of some bytes looks like, read without parsing: enough
/// to know whether a broken message is a request (answer it) or a response
/// (drop it), and to name it in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff<'a> {
    /// Starts with a token and a space: a request with this method.
    Request(&'a [u8]),
    /// Starts with `SIP/`: a response.
    Response,
    /// Neither (empty, keep-alive CRLFs, or noise).
    Unknown,
}

/// Look at the start of `data` (after any leading CRLFs).
pub fn sniff(data: &[u8]) -> Sniff<'_> {
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let rest = data.get(start..).unwrap_or_default();
    if rest
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return Sniff::Response;
    }
    let n = rest
        .iter()
        .position(|&b| !crate::scan::is_token(b))
        .unwrap_or(rest.len());
    match (rest.get(..n), rest.get(n)) {
        (Some(m), Some(b' ')) if n > 0 => Sniff::Request(m),
        _ => Sniff::Unknown,
    }
}

/// Parse a datagram and validate it. The message comes back whenever it
/// parsed, so a reply can be built from it.
pub fn check_datagram(datagram: Bytes) -> (Option<Message>, Verdict) {
    let is_request = matches!(sniff(&datagram), Sniff::Request(_));
    match Message::parse(datagram) {
        // A request with an unreadable start line still gets its 400 if the
        // caller can find a Via to answer; responses and noise are dropped.
        Err(e) if is_request => (None, Verdict::Reply(e)),
        Err(e) => (None, Verdict::Drop(e)),
        Ok(m) => {
            let v = match validate(&m) {
                Ok(()) => Verdict::Accept,
                Err(e) if m.is_request() => Verdict::Reply(e),
                Err(e) => Verdict::Drop(e),
            };
            (Some(m), v)
        }
    }
}

/// Check a parsed message: no header value holds a control character
/// other than HT (outside a quoted-pair), the mandatory headers are present
/// once each, the version is SIP/2.0, every header a proxy reads parses (all Via values, From,
/// To, CSeq, Max-Forwards, Contact, Route, Record-Route), the CSeq method equals
/// the request method, and the Request-URI is usable.
pub fn validate(m: &Message) -> Result<(), Error> {
    // Found by the parse, refused here so that the message is there to
    // answer (400) from.
    if let Some((at, name)) = m.index.control {
        return Err(Error::new(ErrorKind::ControlCharacter(name), at as usize));
    }
    let request = m.is_request();
    if !m.version().eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(Error::new(ErrorKind::UnsupportedVersion, 0));
    }
    let ix = &m.index;
    for (name, present) in [
        (HeaderName::Via, ix.via.is_some()),
        (HeaderName::From, ix.from.is_some()),
        (HeaderName::To, ix.to.is_some()),
        (HeaderName::CallId, ix.call_id.is_some()),
        (HeaderName::CSeq, ix.cseq.is_some()),
    ] {
        if !present {
            return Err(Error::new(
                ErrorKind::MissingHeader(name),
                m.header_section().0,
            ));
        }
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentType,
    ] {
        if ix.duplicates & dup_bit(name) != 0 {
            let at = m
                .headers()
                .filter(|h| h.name == name)
                .nth(1)
                .map_or(0, |h| h.line_start);
            return Err(Error::new(ErrorKind::DuplicateHeader(name), at));
        }
    }

    let cseq = m.cseq()?;
    if let (Some(method), Some(bytes)) = (m.method(), m.method_bytes()) {
        if cseq.method != bytes {
            let kind = if method == Method::Other {
                ErrorKind::UnknownMethodMismatch
            } else {
                ErrorKind::MethodMismatch
            };
            let at = m.header(HeaderName::CSeq).map_or(0, |h| h.value_offset);
            return Err(Error::new(kind, at));
        }
    }

    if request {
        if let Some(uri) = m.request_uri() {
            let uri = uri.map_err(|e| Error::new(ErrorKind::BadRequestUri, e.offset()))?;
            if let Uri::Sip(sip) = uri {
                if sip.headers.is_some() {
                    let at = m.request_uri_span().map_or(0, |s| s.start as usize);
                    return Err(Error::new(ErrorKind::RequestUriHeaders, at));
                }
            }
        }
    }

    let call_id = m.call_id().unwrap_or_default();
    if call_id.is_empty() || find_space_or_control(call_id, 0).is_some() {
        let at = m.header(HeaderName::CallId).map_or(0, |h| h.value_offset);
        return Err(Error::new(
            ErrorKind::BadHeaderValue(HeaderName::CallId),
            at,
        ));
    }
    m.max_forwards()?;
    m.from()?;
    m.to()?;
    if let Some(ct) = m.content_type() {
        ct?;
    }
    check_lists(m)
}

/// Every value of Via, Contact, Route and Record-Route parses, in one pass
/// over the headers. The error reported is the one the checks give when made
/// a kind at a time: an empty line of any of the four first (it has no
/// value, and splitting yields nothing for it; found by the parse_message
/// fuzz target: a lone `Via:` passed as the top Via), then the first bad Via
/// value, then Contact, Route and Record-Route.
fn check_lists(m: &Message) -> Result<(), Error> {
    // The first error so far and the rank of its kind (0 = Via ... 3 =
    // Record-Route); values of a kind ranked at or after it need no parsing.
    let mut first: Option<(u8, Error)> = None;
    for h in m.headers() {
        let rank = match h.name {
            HeaderName::Via => 0,
            HeaderName::Contact => 1,
            HeaderName::Route => 2,
            HeaderName::RecordRoute => 3,
            _ => continue,
        };
        if h.value.is_empty() {
            return Err(Error::new(
                ErrorKind::BadHeaderValue(h.name),
                h.value_offset,
            ));
        }
        if first.is_some_and(|(r, _)| r <= rank) {
            continue;
        }
        if let Err(e) = check_values(&h) {
            first = Some((rank, e));
        }
    }
    first.map_or(Ok(()), |(_, e)| Err(e))
}

/// Every value of one Via, Contact, Route or Record-Route line parses.
fn check_values(h: &Header<'_>) -> Result<(), Error> {
    for (off, v) in h.values() {
        match h.name {
            HeaderName::Via => {
                Via::parse(v, off)?;
            }
            HeaderName::Contact if v == b"*" => {}
            name => {
                NameAddr::parse(v, off, name)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(s: &str) -> Verdict {
        check_datagram(Bytes::copy_from_slice(s.replace('\n', "\r\n").as_bytes())).1
    }

    const OK: &str = "OPTIONS sip:gw.example.net SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
From: <sip:probe@example.net>;tag=1
To: <sip:gw.example.net>
Call-ID: abc
CSeq: 7 OPTIONS

";

    #[test]
    fn accept_and_reject() {
        assert_eq!(verdict(OK), Verdict::Accept);
        let v = verdict(&OK.replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE"));
        assert_eq!(v.status(), Some(400));
        let v = verdict(&OK.replace("SIP/2.0\n", "SIP/3.0\n"));
        assert_eq!(v.status(), Some(505));
        let v = verdict(&OK.replace("Call-ID: abc\n", ""));
        assert_eq!(
            v.error().unwrap().kind(),
            ErrorKind::MissingHeader(HeaderName::CallId)
        );
        let v = verdict(&OK.replace("Call-ID: abc\n", "Call-ID: abc\ni: def\n"));
        assert_eq!(
            v.error().unwrap().kind(),
            ErrorKind::DuplicateHeader(HeaderName::CallId)
        );
        let v = verdict(&OK.replace("CSeq: 7", "Max-Forwards: 300\nCSeq: 7"));
        assert_eq!(v.status(), Some(400));
        let v = verdict(&OK.replace("sip:gw.example.net SIP", "sip:gw.example.net?Route=x SIP"));
        assert_eq!(v.error().unwrap().kind(), ErrorKind::RequestUriHeaders);
        for name in ["Via", "v", "Contact", "Route", "Record-Route"] {
            let v = verdict(&OK.replace("Call-ID", &format!("{name}: \nCall-ID")));
            assert_eq!(v.status(), Some(400), "empty {name}");
        }
    }

    /// `OK` with `extra` (a header line) before its Call-ID.
    fn with_header(extra: &[u8]) -> (Option<Message>, Verdict) {
        let ok = OK.replace('\n', "\r\n");
        let at = ok.find("Call-ID").unwrap();
        let mut data = ok.as_bytes()[..at].to_vec();
        data.extend_from_slice(extra);
        data.extend_from_slice(&ok.as_bytes()[at..]);
        check_datagram(Bytes::from(data))
    }

    #[test]
    fn control_characters_in_header_values_get_400() {
        let offset = OK.replace('\n', "\r\n").find("Call-ID").unwrap();
        for (line, name, at) in [
            (&b"Subject: urgent\x00Via: SIP/2.0/UDP 198.51.100.66\r\n"[..], HeaderName::Subject, 15),
            (b"Subject: a\x7f\r\n", HeaderName::Subject, 10),
            (b"s: \x1b[2J\r\n", HeaderName::Subject, 3),
            (b"X-Custom: ok\x01\r\n", HeaderName::Other, 12),
            (b"P-Asserted-Identity: <sip:+441632960001@example.net>\x00<sip:evil@example.net>\r\n", HeaderName::PAssertedIdentity, 52),
            (b"Geolocation: <cid:a@b>\r\n \x0c\r\n", HeaderName::Geolocation, 25),
        ] {
            let (m, v) = with_header(line);
            let e = v.error().unwrap_or_else(|| panic!("{:?} accepted", String::from_utf8_lossy(line)));
            assert_eq!(e.kind(), ErrorKind::ControlCharacter(name), "{line:?}");
            assert_eq!(e.offset(), offset + at, "{line:?}");
            assert_eq!(v.status(), Some(400));
            assert!(m.is_some(), "the request is there to answer");
        }
        // A control character in the Call-ID or the From is reported the
        // same way, before anything else validation checks.
        let v = verdict(&OK.replace("Call-ID: abc", "Call-ID: a\u{0}bc"));
        assert_eq!(
            v.error().unwrap().kind(),
            ErrorKind::ControlCharacter(HeaderName::CallId)
        );
        let v = verdict(
            &OK.replace("SIP/2.0\n", "SIP/3.0\n")
                .replace("To:", "To: \u{7}"),
        );
        assert_eq!(
            v.error().unwrap().kind(),
            ErrorKind::ControlCharacter(HeaderName::To)
        );
        // HT, folds, UTF-8, and a quoted-pair escaping one (RFC 4475
        // §3.1.1.2) are fine.
        for line in [
            &b"Subject: \ttabs\tinside\t\r\n"[..],
            b"Subject: folded\r\n continued\r\n\tagain\r\n",
            "Subject: caf\u{e9}\r\n".as_bytes(),
            b"X-Quoted: \"bell \\\x07 nul \\\x00 del \\\x7f\"\r\n",
        ] {
            assert_eq!(with_header(line).1, Verdict::Accept, "{line:?}");
        }
        // A response with one is dropped, never answered.
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: abc\r\nCSeq: 7 OPTIONS\r\nServer: x\u{0}y\r\n\r\n";
        let (_, v) = check_datagram(Bytes::from(resp));
        assert!(
            matches!(v, Verdict::Drop(e) if e.kind() == ErrorKind::ControlCharacter(HeaderName::Server)),
            "{v:?}"
        );
    }

    #[test]
    fn list_errors_in_the_order_of_the_kinds() {
        let kind = |extra: &str| {
            verdict(&OK.replace("Call-ID", &format!("{extra}Call-ID")))
                .error()
                .map(|e| (e.kind(), e.offset()))
        };
        let bad_contact = "Contact: <sip:a@b\n";
        let bad_via = "Via: SIP/2.0/UDP\n";
        let bad_route = "Route: <sip:r@b\n";
        let bad_rr = "Record-Route: x y\n";
        // A bad Via is reported before a bad Contact, wherever each is.
        let (via, _) = kind(&format!("{bad_contact}{bad_via}")).unwrap();
        assert_eq!(via, ErrorKind::BadHeaderValue(HeaderName::Via));
        let (contact, _) = kind(&format!("{bad_rr}{bad_route}{bad_contact}")).unwrap();
        assert_eq!(contact, ErrorKind::BadHeaderValue(HeaderName::Contact));
        let (route, _) = kind(&format!("{bad_rr}{bad_route}")).unwrap();
        assert_eq!(route, ErrorKind::BadHeaderValue(HeaderName::Route));
        // The first bad value of a kind, in message order.
        let two = kind(&format!("{bad_rr}Record-Route: <sip:ok@b>, <bad\n")).unwrap();
        let one = kind(bad_rr).unwrap();
        assert_eq!(two, one);
        // An empty line comes before all of them, even after them.
        let (empty, _) = kind(&format!("{bad_via}{bad_contact}Route: \n")).unwrap();
        assert_eq!(empty, ErrorKind::BadHeaderValue(HeaderName::Route));
        // "*" is a Contact, not a name-addr.
        assert_eq!(kind("Contact: *\n"), None);
    }

    #[test]
    fn responses_are_dropped() {
        let resp = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
From: <sip:probe@example.net>;tag=1
To: <sip:gw.example.net>;tag=2
Call-ID: abc
CSeq: 7 OPTIONS

";
        assert_eq!(verdict(resp), Verdict::Accept);
        assert!(matches!(
            verdict(&resp.replace("CSeq: 7", "CSeq: 99999999999")),
            Verdict::Drop(_)
        ));
        assert!(matches!(verdict("SIP/2.0 2000 OK\n\n"), Verdict::Drop(_)));
        assert!(matches!(verdict("\n\n"), Verdict::Drop(_)));
    }
}
