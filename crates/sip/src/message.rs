//! A parsed SIP message: one [`Bytes`] buffer plus offsets.

use core::fmt;

use bytes::Bytes;

use crate::error::{Error, ErrorKind};
use crate::header::{
    scan_header, simple_line, Header, HeaderName, Headers, Line, Scanned, SimpleLine, MAX_LINES,
};
use crate::scan::{find_line_end, find_space_or_control, is_token, parse_u32};
use crate::typed::{CSeq, ContentType, NameAddr, Via};
use crate::uri::Uri;

/// A byte range of the message buffer. `u32` keeps [`Message`] small; messages
/// are capped far below 4 GiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        // Callers stay below MAX_MESSAGE, so these fit.
        Self {
            start: start as u32,
            end: end as u32,
        }
    }
    pub(crate) fn range(self) -> core::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// The largest message [`Message::parse`] accepts (offsets are 32-bit; transports
/// impose far smaller caps).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A SIP method. Extension methods are [`Method::Other`]; the bytes are
/// available from [`Message::method_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// UPDATE (RFC 3311)
    Update,
    /// INFO (RFC 6086)
    Info,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other (extension) method.
    Other,
}

impl Method {
    /// Classify method bytes. Methods are case-sensitive (RFC 3261 §7.1).
    pub fn from_bytes(m: &[u8]) -> Self {
        match m {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"OPTIONS" => Self::Options,
            b"REGISTER" => Self::Register,
            b"PRACK" => Self::Prack,
            b"UPDATE" => Self::Update,
            b"INFO" => Self::Info,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"REFER" => Self::Refer,
            b"MESSAGE" => Self::Message,
            b"PUBLISH" => Self::Publish,
            _ => Self::Other,
        }
    }

    /// The method name, or `None` for [`Method::Other`].
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Info => "INFO",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            Self::Other => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
        version: Span,
    },
    Response {
        code: u16,
        reason: Span,
        version: Span,
    },
}

/// Where the headers a proxy needs on every message sit, found in the single
/// pass of [`Message::parse`]. Counts let validation reject duplicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) via: Option<Span>,
    pub(crate) from: Option<Span>,
    pub(crate) to: Option<Span>,
    pub(crate) call_id: Option<Span>,
    pub(crate) cseq: Option<Span>,
    pub(crate) max_forwards: Option<Span>,
    pub(crate) content_type: Option<Span>,
    pub(crate) route: Option<Span>,
    pub(crate) record_route: Option<Span>,
    pub(crate) content_length: Option<u32>,
    /// Bit per single-valued header seen twice ([`dup_bit`]).
    pub(crate) duplicates: u16,
    /// The first control character in a header value that may not be
    /// there, and the header: the message parses (so that a request can be
    /// answered), and validation refuses it.
    pub(crate) control: Option<(u32, HeaderName)>,
}

pub(crate) fn dup_bit(name: HeaderName) -> u16 {
    match name {
        HeaderName::From => 1,
        HeaderName::To => 2,
        HeaderName::CallId => 4,
        HeaderName::CSeq => 8,
        HeaderName::MaxForwards => 16,
        HeaderName::ContentType => 32,
        _ => 0,
    }
}

/// A parsed SIP request or response.
///
/// Holds the message's bytes and the offsets of its parts. Cloning is cheap
/// (a reference count). Header values are slices of the buffer; typed views
/// ([`Via`], [`CSeq`], [`NameAddr`] ...) are built on demand from them.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    /// Offset of the first header line.
    headers_start: u32,
    /// Offset of the empty line that ends the headers.
    headers_end: u32,
    body: Span,
    pub(crate) index: Index,
    /// The first header lines, as found by `parse`, so `headers()` and
    /// everything built on it need not scan them again.
    lines: [Line; MAX_LINES],
    line_count: u8,
}

impl Message {
    /// Parse one message with datagram rules (RFC 3261 §18.3): the buffer holds
    /// one message; octets past Content-Length are discarded; a Content-Length
    /// larger than the remaining octets is an error; without Content-Length the
    /// body is the rest of the buffer. Leading CRLFs are skipped (§7.5).
    ///
    /// This checks the message's framing and syntax (start line, header lines,
    /// Content-Length). [`validate`](crate::validate::validate) then checks what a
    /// proxy needs before acting on it.
    pub fn parse(buf: Bytes) -> Result<Self, Error> {
        let mut skip = 0;
        while let Some(b'\r' | b'\n') = buf.get(skip) {
            skip += 1;
        }
        if skip == buf.len() {
            return Err(Error::new(ErrorKind::Empty, 0));
        }
        if buf.len() > MAX_MESSAGE {
            return Err(Error::new(ErrorKind::TooLarge, MAX_MESSAGE));
        }
        let buf = if skip > 0 { buf.slice(skip..) } else { buf };
        let b: &[u8] = &buf;

        // Start line.
        let line_end = find_line_end(b, 0).ok_or(Error::new(ErrorKind::Unterminated, b.len()))?;
        if b.get(line_end) != Some(&b'\r') || b.get(line_end + 1) != Some(&b'\n') {
            return Err(Error::new(ErrorKind::BareLineEnd, line_end));
        }
        let line = b.get(..line_end).unwrap_or_default();
        let start = parse_start_line(line)?;

        // Headers, one pass, indexing what routing needs.
        let headers_start = line_end + 2;
        let mut index = Index::default();
        let mut lines = [Line::EMPTY; MAX_LINES];
        let mut line_count = 0;
        // Lines are kept while they fit, in order; the first that does not
        // (too many, too far into the message) ends the keeping.
        let mut keeping = true;
        let mut pos = headers_start;
        let (headers_end, body_start) = loop {
            let line = match simple_line(b, pos) {
                Some(line) => line,
                None => match scan_header(b, pos)? {
                    Scanned::End(body) => break (pos, body),
                    Scanned::Header(h, control) => {
                        if let (Some(at), None) = (control, index.control) {
                            index.control = Some((at as u32, h.name));
                        }
                        SimpleLine {
                            name: h.name,
                            name_len: h.raw_name.len(),
                            value_start: h.value_offset,
                            value_end: h.value_offset + h.value.len(),
                            line_end: h.line_end,
                        }
                    }
                },
            };
            index_header(&mut index, b, pos, &line)?;
            if keeping {
                match (lines.get_mut(line_count), Line::new(&line)) {
                    (Some(slot), Some(kept)) => {
                        *slot = kept;
                        line_count += 1;
                    }
                    _ => keeping = false,
                }
            }
            pos = line.line_end;
        };

        // Body, by Content-Length.
        let available = b.len() - body_start;
        let body_len = match index.content_length {
            Some(cl) if cl as usize > available => {
                return Err(Error::new(ErrorKind::ContentLengthExceedsBody, body_start));
            }
            Some(cl) => cl as usize,
            None => available,
        };
        let end = body_start + body_len;
        let buf = if end < buf.len() {
            buf.slice(..end)
        } else {
            buf
        };
        Ok(Self {
            buf,
            start,
            headers_start: headers_start as u32,
            headers_end: headers_end as u32,
            body: Span::new(body_start, end),
            index,
            lines,
            line_count: line_count as u8,
        })
    }

    /// The message exactly as received (minus discarded trailing octets and
    /// leading CRLFs). This is also its serialisation: an unedited message is
    /// forwarded byte for byte.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The method as written (request), or the CSeq method (response).
    pub fn method_bytes(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { method_span, .. } => self.buf.get(method_span.range()),
            StartLine::Response { .. } => self.cseq().ok().map(|c| c.method),
        }
    }

    /// The Request-URI text, `None` for a response.
    pub fn request_uri_bytes(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { uri, .. } => self.buf.get(uri.range()),
            StartLine::Response { .. } => None,
        }
    }

    /// The parsed Request-URI, `None` for a response.
    pub fn request_uri(&self) -> Option<Result<Uri<'_>, Error>> {
        match self.start {
            StartLine::Request { uri, .. } => Some(Uri::parse(
                self.buf.get(uri.range()).unwrap_or_default(),
                uri.start as usize,
            )),
            StartLine::Response { .. } => None,
        }
    }

    pub(crate) fn request_uri_span(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response (arbitrary UTF-8; informational only).
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Response { reason, .. } => self.buf.get(reason.range()),
            StartLine::Request { .. } => None,
        }
    }

    /// The SIP-Version as written (`SIP/2.0`).
    pub fn version(&self) -> &[u8] {
        let v = match self.start {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => version,
        };
        self.buf.get(v.range()).unwrap_or_default()
    }

    /// Every header field, in order.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new(
            &self.buf,
            self.lines
                .get(..usize::from(self.line_count))
                .unwrap_or_default(),
            self.headers_start as usize,
            self.headers_end as usize,
        )
    }

    /// Offset of the first header line and of the empty line ending the headers.
    pub fn header_section(&self) -> (usize, usize) {
        (self.headers_start as usize, self.headers_end as usize)
    }

    /// Every value of the header `name`, split at commas for list headers,
    /// as `(offset, value)` pairs.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.headers()
            .filter(move |h| h.name == name)
            .flat_map(move |h| {
                let whole = if name.is_list() {
                    None
                } else {
                    Some((h.value_offset, h.value))
                };
                whole
                    .into_iter()
                    .chain(name.is_list().then(|| h.values()).into_iter().flatten())
            })
    }

    /// The first header named `name` (its whole value, not split).
    pub fn header(&self, name: HeaderName) -> Option<Header<'_>> {
        self.headers().find(|h| h.name == name)
    }

    fn span(&self, s: Option<Span>) -> Option<(&[u8], usize)> {
        let s = s?;
        Some((self.buf.get(s.range())?, s.start as usize))
    }

    /// The top Via value.
    pub fn top_via(&self) -> Result<Via<'_>, Error> {
        let (v, off) = self.span(self.index.via).ok_or(missing(HeaderName::Via))?;
        let (off, first) = crate::header::split_values(v, off)
            .next()
            .unwrap_or((off, v));
        Via::parse(first, off)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, Error>> + '_ {
        self.values(HeaderName::Via)
            .map(|(off, v)| Via::parse(v, off))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&[u8]> {
        self.span(self.index.call_id).map(|(v, _)| v)
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, Error> {
        let (v, off) = self
            .span(self.index.cseq)
            .ok_or(missing(HeaderName::CSeq))?;
        CSeq::parse(v, off)
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'_>, Error> {
        let (v, off) = self
            .span(self.index.from)
            .ok_or(missing(HeaderName::From))?;
        NameAddr::parse(v, off, HeaderName::From)
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'_>, Error> {
        let (v, off) = self.span(self.index.to).ok_or(missing(HeaderName::To))?;
        NameAddr::parse(v, off, HeaderName::To)
    }

    /// Max-Forwards: `Ok(None)` if absent (a proxy then uses 70).
    pub fn max_forwards(&self) -> Result<Option<u8>, Error> {
        match self.span(self.index.max_forwards) {
            None => Ok(None),
            Some((v, off)) => parse_u32(v, 255).map(|n| Some(n as u8)).ok_or(Error::new(
                ErrorKind::BadHeaderValue(HeaderName::MaxForwards),
                off,
            )),
        }
    }

    /// Content-Length as written, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.index.content_length
    }

    /// The Content-Type.
    pub fn content_type(&self) -> Option<Result<ContentType<'_>, Error>> {
        self.span(self.index.content_type)
            .map(|(v, off)| ContentType::parse(v, off))
    }

    /// The Route values, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, Error>> + '_ {
        self.values(HeaderName::Route)
            .map(|(off, v)| NameAddr::parse(v, off, HeaderName::Route))
    }

    /// The Record-Route values, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, Error>> + '_ {
        self.values(HeaderName::RecordRoute)
            .map(|(off, v)| NameAddr::parse(v, off, HeaderName::RecordRoute))
    }

    /// Whether the message has a Route header (cheap: from the index).
    pub fn has_route(&self) -> bool {
        self.index.route.is_some()
    }

    /// Whether the message has a Record-Route header (cheap: from the index).
    pub fn has_record_route(&self) -> bool {
        self.index.record_route.is_some()
    }

    /// The body (a zero-copy slice of the message).
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.range())
    }

    /// Offset where the body starts.
    pub fn body_offset(&self) -> usize {
        self.body.start as usize
    }
}

fn missing(name: HeaderName) -> Error {
    Error::new(ErrorKind::MissingHeader(name), 0)
}

/// Record the header line at `line_start` of `buf` in the index.
#[inline(always)]
fn index_header(
    index: &mut Index,
    buf: &[u8],
    line_start: usize,
    h: &SimpleLine,
) -> Result<(), Error> {
    let span = Some(Span::new(h.value_start, h.value_end));
    let slot = match h.name {
        HeaderName::Via => &mut index.via,
        HeaderName::Route => &mut index.route,
        HeaderName::RecordRoute => &mut index.record_route,
        HeaderName::From => &mut index.from,
        HeaderName::To => &mut index.to,
        HeaderName::CallId => &mut index.call_id,
        HeaderName::CSeq => &mut index.cseq,
        HeaderName::MaxForwards => &mut index.max_forwards,
        HeaderName::ContentType => &mut index.content_type,
        HeaderName::ContentLength => {
            // Framing depends on it: any doubt is an error (RFC 4475 §3.3.9).
            if index.content_length.is_some() {
                return Err(Error::new(
                    ErrorKind::DuplicateHeader(HeaderName::ContentLength),
                    line_start,
                ));
            }
            let value = buf.get(h.value_start..h.value_end).unwrap_or_default();
            let n = parse_u32(value, u32::MAX)
                .ok_or(Error::new(ErrorKind::BadContentLength, h.value_start))?;
            index.content_length = Some(n);
            return Ok(());
        }
        _ => return Ok(()),
    };
    if slot.is_none() {
        *slot = span;
    } else {
        index.duplicates |= dup_bit(h.name);
    }
    Ok(())
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, Error> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return parse_status_line(line);
    }
    let bad = |at: usize| Error::new(ErrorKind::BadStartLine, at);
    let m_len = line
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(line.len());
    if m_len == 0 || line.get(m_len) != Some(&b' ') {
        return Err(bad(m_len));
    }
    let uri_start = m_len + 1;
    // The Request-URI runs to the next SP and holds no control, SP or DEL.
    let uri_end = match find_space_or_control(line, uri_start) {
        None => return Err(bad(line.len())),
        Some(at) if line.get(at) == Some(&b' ') => at,
        // A control or DEL inside the URI, if a SP ends it.
        Some(at) => {
            return Err(
                match memchr::memchr(b' ', line.get(at..).unwrap_or_default()) {
                    Some(_) => Error::new(ErrorKind::BadRequestUri, at),
                    None => bad(line.len()),
                },
            )
        }
    };
    if uri_end == uri_start {
        return Err(bad(uri_start)); // two spaces (RFC 4475 §3.1.2.9)
    }
    let version = line.get(uri_end + 1..).unwrap_or_default();
    check_version(version, uri_end + 1)?;
    let method_bytes = line.get(..m_len).unwrap_or_default();
    Ok(StartLine::Request {
        method: Method::from_bytes(method_bytes),
        method_span: Span::new(0, m_len),
        uri: Span::new(uri_start, uri_end),
        version: Span::new(uri_end + 1, line.len()),
    })
}

fn parse_status_line(line: &[u8]) -> Result<StartLine, Error> {
    let v_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    check_version(line.get(..v_len).unwrap_or_default(), 0)?;
    let code = line.get(v_len + 1..v_len + 4).unwrap_or_default();
    let valid = code.len() == 3
        && code.iter().all(u8::is_ascii_digit)
        && line.get(v_len + 4) == Some(&b' ');
    let code = if valid { parse_u32(code, 699) } else { None };
    let code = match code {
        Some(c) if c >= 100 => c as u16,
        _ => return Err(Error::new(ErrorKind::BadStatusCode, v_len + 1)),
    };
    Ok(StartLine::Response {
        code,
        reason: Span::new(v_len + 5, line.len()),
        version: Span::new(0, v_len),
    })
}

/// `SIP/<digits>.<digits>`, "SIP" in any case. Other versions parse; validation
/// answers them with 505.
fn check_version(v: &[u8], at: usize) -> Result<(), Error> {
    let bad = Error::new(ErrorKind::BadVersion, at);
    let rest = v.get(4..).ok_or(bad)?;
    if !v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/")) {
        return Err(bad);
    }
    let dot = rest.iter().position(|&b| b == b'.').ok_or(bad)?;
    let (major, minor) = (
        rest.get(..dot).unwrap_or_default(),
        rest.get(dot + 1..).unwrap_or_default(),
    );
    if major.is_empty() || minor.is_empty() || !major.iter().chain(minor).all(u8::is_ascii_digit) {
        return Err(bad);
    }
    Ok(())
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first_line = self.buf.split(|&b| b == b'\r').next().unwrap_or_default();
        f.debug_struct("Message")
            .field("start_line", &String::from_utf8_lossy(first_line))
            .field("len", &self.buf.len())
            .field("body_len", &(self.body.end - self.body.start))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:999@gw.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKdef\r\n\
v: SIP/2.0/TCP third.example.com;branch=z9hG4bK3\r\n\
Max-Forwards: 70\r\n\
f: \"Caller\" <sip:+441632960001@orig.example.net>;tag=f1\r\n\
t: <sip:999@gw.example.net>\r\n\
i: call-1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
l: 4\r\n\
\r\nbodyTRAILING";

    #[test]
    fn request_parts() {
        let m = Message::parse(Bytes::from_static(INVITE)).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:999@gw.example.net"[..]));
        assert_eq!(m.version(), b"SIP/2.0");
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKabc"[..]));
        assert_eq!(m.vias().count(), 3);
        assert_eq!(m.call_id(), Some(&b"call-1@192.0.2.1"[..]));
        assert_eq!(m.cseq().unwrap().seq, 1);
        assert_eq!(m.from().unwrap().tag(), Some(&b"f1"[..]));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(&m.body()[..], b"body");
        assert!(
            m.as_bytes().ends_with(b"\r\n\r\nbody"),
            "trailing octets dropped"
        );
        assert_eq!(m.headers().count(), 8);
    }

    #[test]
    fn responses() {
        let m = Message::parse(Bytes::from_static(
            b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(m.status(), Some(100));
        assert_eq!(m.reason(), Some(&b""[..]));
        let e = Message::parse(Bytes::from_static(b"SIP/2.0 4294967301 big\r\n\r\n")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadStatusCode);
        let e = Message::parse(Bytes::from_static(b"SIP/2.0 099 low\r\n\r\n")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadStatusCode);
    }

    #[test]
    fn start_line_errors() {
        let cases: &[(&[u8], ErrorKind)] = &[
            (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", ErrorKind::BadStartLine),
            (b"INVITE sip:a@b SIP/2.0 \r\n\r\n", ErrorKind::BadVersion),
            (b"INVITE sip:a@b; lr SIP/2.0\r\n\r\n", ErrorKind::BadVersion),
            (b"INVITE sip:a@b\r\n\r\n", ErrorKind::BadStartLine),
            (b"INVITE sip:a@b SIP/2.0\n\r\n", ErrorKind::BareLineEnd),
            (b"\r\n\r\n", ErrorKind::Empty),
            (
                b"INVITE sip:a@b SIP/2.0\r\nl: 10\r\n\r\nshort",
                ErrorKind::ContentLengthExceedsBody,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n",
                ErrorKind::BadContentLength,
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx",
                ErrorKind::DuplicateHeader(HeaderName::ContentLength),
            ),
            (
                b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n",
                ErrorKind::Unterminated,
            ),
        ];
        for (input, kind) in cases {
            let e = Message::parse(Bytes::from_static(input)).unwrap_err();
            assert_eq!(e.kind(), *kind, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
