//! Header fields: names (long and compact forms, any case), the line scanner
//! that handles folding, and comma splitting of list values.

use crate::error::{Error, ErrorKind};
use crate::scan::{is_lws, is_token};

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are recognised in any case and in
        /// their compact form; everything else is [`HeaderName::Other`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no name for; the raw name is on the [`Header`].
            Other,
        }

        impl HeaderName {
            /// The canonical long form (`"Via"`, `"Call-ID"` ...). `"Other"` for unknown.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $canon, )*
                    Self::Other => "Other",
                }
            }

            /// The compact form, if RFC 3261 or an extension defines one.
            pub const fn compact(self) -> Option<u8> {
                match self {
                    $( $( Self::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            /// Classify a raw header name (case-insensitive, compact forms too).
            pub fn from_bytes(name: &[u8]) -> Self {
                if let [c] = name {
                    return Self::from_compact(c.to_ascii_lowercase());
                }
                $( if name.eq_ignore_ascii_case($canon.as_bytes()) { return Self::$variant; } )*
                Self::Other
            }

            fn from_compact(c: u8) -> Self {
                $( $( if c == $compact { return Self::$variant; } )? )*
                Self::Other
            }
        }
    };
}

header_names! {
    /// `Via` / `v`
    Via => "Via", b'v';
    /// `From` / `f`
    From => "From", b'f';
    /// `To` / `t`
    To => "To", b't';
    /// `Call-ID` / `i`
    CallId => "Call-ID", b'i';
    /// `CSeq`
    CSeq => "CSeq";
    /// `Max-Forwards`
    MaxForwards => "Max-Forwards";
    /// `Content-Length` / `l`
    ContentLength => "Content-Length", b'l';
    /// `Content-Type` / `c`
    ContentType => "Content-Type", b'c';
    /// `Contact` / `m`
    Contact => "Contact", b'm';
    /// `Route`
    Route => "Route";
    /// `Record-Route`
    RecordRoute => "Record-Route";
    /// `Subject` / `s`
    Subject => "Subject", b's';
    /// `Supported` / `k`
    Supported => "Supported", b'k';
    /// `Content-Encoding` / `e`
    ContentEncoding => "Content-Encoding", b'e';
    /// `Allow-Events` / `u` (RFC 6665)
    AllowEvents => "Allow-Events", b'u';
    /// `Event` / `o` (RFC 6665)
    Event => "Event", b'o';
    /// `Refer-To` / `r` (RFC 3515)
    ReferTo => "Refer-To", b'r';
    /// `Referred-By` / `b` (RFC 3892)
    ReferredBy => "Referred-By", b'b';
    /// `Accept-Contact` / `a` (RFC 3841)
    AcceptContact => "Accept-Contact", b'a';
    /// `Reject-Contact` / `j` (RFC 3841)
    RejectContact => "Reject-Contact", b'j';
    /// `Request-Disposition` / `d` (RFC 3841)
    RequestDisposition => "Request-Disposition", b'd';
    /// `Session-Expires` / `x` (RFC 4028)
    SessionExpires => "Session-Expires", b'x';
    /// `Identity` / `y` (RFC 8224)
    Identity => "Identity", b'y';
    /// `Require`
    Require => "Require";
    /// `Proxy-Require`
    ProxyRequire => "Proxy-Require";
    /// `Unsupported`
    Unsupported => "Unsupported";
    /// `Allow`
    Allow => "Allow";
    /// `Accept`
    Accept => "Accept";
    /// `Expires`
    Expires => "Expires";
    /// `Date`
    Date => "Date";
    /// `Reason` (RFC 3326)
    Reason => "Reason";
    /// `Retry-After`
    RetryAfter => "Retry-After";
    /// `Authorization`
    Authorization => "Authorization";
    /// `Proxy-Authorization`
    ProxyAuthorization => "Proxy-Authorization";
    /// `WWW-Authenticate`
    WwwAuthenticate => "WWW-Authenticate";
    /// `Proxy-Authenticate`
    ProxyAuthenticate => "Proxy-Authenticate";
    /// `User-Agent`
    UserAgent => "User-Agent";
    /// `Server`
    Server => "Server";
    /// `Warning`
    Warning => "Warning";
    /// `Timestamp`
    Timestamp => "Timestamp";
    /// `Max-Breadth` (RFC 5393)
    MaxBreadth => "Max-Breadth";
    /// `P-Asserted-Identity` (RFC 3325)
    PAssertedIdentity => "P-Asserted-Identity";
    /// `P-Preferred-Identity` (RFC 3325)
    PPreferredIdentity => "P-Preferred-Identity";
    /// `Privacy` (RFC 3323)
    Privacy => "Privacy";
    /// `Geolocation` (RFC 6442)
    Geolocation => "Geolocation";
    /// `Geolocation-Routing` (RFC 6442)
    GeolocationRouting => "Geolocation-Routing";
    /// `Resource-Priority` (RFC 4412)
    ResourcePriority => "Resource-Priority";
    /// `Call-Info`
    CallInfo => "Call-Info";
    /// `History-Info` (RFC 7044)
    HistoryInfo => "History-Info";
}

impl HeaderName {
    /// Whether the header's value is a comma-separated list that
    /// [`split_values`] may split (Via, Contact, Route ...). Headers whose values
    /// contain bare commas (Date, authentication headers) are never split.
    pub const fn is_list(self) -> bool {
        matches!(
            self,
            Self::Via
                | Self::Contact
                | Self::Route
                | Self::RecordRoute
                | Self::Supported
                | Self::Require
                | Self::ProxyRequire
                | Self::Unsupported
                | Self::Allow
                | Self::Accept
                | Self::ContentEncoding
                | Self::AllowEvents
                | Self::PAssertedIdentity
                | Self::PPreferredIdentity
                | Self::Geolocation
                | Self::ResourcePriority
                | Self::CallInfo
                | Self::HistoryInfo
                | Self::AcceptContact
                | Self::RejectContact
                | Self::RequestDisposition
                | Self::Reason
        )
    }
}

/// One header field line (with its continuation lines), as views into the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The classified name.
    pub name: HeaderName,
    /// The name exactly as written.
    pub raw_name: &'a [u8],
    /// The value, with leading and trailing white space removed. Folded lines
    /// stay in place (CRLF followed by SP or HT), so the value is a slice of the
    /// message; typed parsers treat folds as white space.
    pub value: &'a [u8],
    /// Offset of the value in the message.
    pub value_offset: usize,
    /// Offset of the first byte of the line (the name).
    pub line_start: usize,
    /// Offset just past the line's final CRLF.
    pub line_end: usize,
}

impl<'a> Header<'a> {
    /// The comma-separated values of a list header (see [`split_values`]).
    pub fn values(&self) -> Values<'a> {
        split_values(self.value, self.value_offset)
    }
}

/// Scan one header line of `buf` starting at `pos`.
///
/// Returns `Ok(None)` at the empty line that ends the header section (and the
/// position after it), `Ok(Some)` for a header, or an error. `buf` is the whole
/// message so offsets are absolute.
pub(crate) fn scan_header(buf: &[u8], pos: usize) -> Result<Scanned<'_>, Error> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest {
        [b'\r', b'\n', ..] => return Ok(Scanned::End(pos + 2)),
        [] => return Err(Error::new(ErrorKind::Unterminated, pos)),
        [b'\r' | b'\n', ..] => return Err(Error::new(ErrorKind::BareLineEnd, pos)),
        _ => {}
    }
    // Name: a token, then optional SP/HT, then ':'.
    let name_len = rest
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(rest.len());
    if name_len == 0 {
        return Err(Error::new(ErrorKind::BadHeaderName, pos));
    }
    let raw_name = rest.get(..name_len).unwrap_or_default();
    let mut i = name_len;
    while matches!(rest.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match rest.get(i) {
        Some(b':') => i += 1,
        None => return Err(Error::new(ErrorKind::Unterminated, pos + i)),
        Some(b) if b.is_ascii_control() || i == name_len => {
            // A control byte or separator glued to the name.
            let kind = if *b == b'\r' || *b == b'\n' || i > name_len {
                ErrorKind::MissingColon
            } else {
                ErrorKind::BadHeaderName
            };
            return Err(Error::new(kind, pos + i));
        }
        Some(_) => return Err(Error::new(ErrorKind::MissingColon, pos + i)),
    }
    // Value: up to a CRLF that is not followed by SP/HT.
    let value_start = i;
    loop {
        let Some(off) = memchr::memchr2(b'\r', b'\n', rest.get(i..).unwrap_or_default()) else {
            return Err(Error::new(ErrorKind::Unterminated, buf.len()));
        };
        let cr = i + off;
        if rest.get(cr) != Some(&b'\r') {
            return Err(Error::new(ErrorKind::BareLineEnd, pos + cr));
        }
        match rest.get(cr + 1) {
            Some(b'\n') => {}
            None => return Err(Error::new(ErrorKind::Unterminated, pos + cr + 1)),
            Some(_) => return Err(Error::new(ErrorKind::BareLineEnd, pos + cr)),
        }
        match rest.get(cr + 2) {
            Some(b' ' | b'\t') => i = cr + 3, // folded continuation
            _ => {
                let raw_value = rest.get(value_start..cr).unwrap_or_default();
                let lead = raw_value
                    .iter()
                    .position(|&b| !is_lws(b))
                    .unwrap_or(raw_value.len());
                let trail = raw_value
                    .iter()
                    .rposition(|&b| !is_lws(b))
                    .map_or(lead, |p| p + 1);
                return Ok(Scanned::Header(Header {
                    name: HeaderName::from_bytes(raw_name),
                    raw_name,
                    value: raw_value.get(lead..trail).unwrap_or_default(),
                    value_offset: pos + value_start + lead,
                    line_start: pos,
                    line_end: pos + cr + 2,
                }));
            }
        }
    }
}

pub(crate) enum Scanned<'a> {
    Header(Header<'a>),
    /// End of the header section; the body starts at this offset.
    End(usize),
}

/// Iterator over the header fields of a message that has already been parsed
/// (so scanning cannot fail).
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Headers<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize, end: usize) -> Self {
        Self { buf, pos, end }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.pos >= self.end {
            return None;
        }
        match scan_header(self.buf, self.pos) {
            Ok(Scanned::Header(h)) => {
                self.pos = h.line_end;
                Some(h)
            }
            _ => {
                self.pos = self.end;
                None
            }
        }
    }
}

/// Split a list value at commas that are outside quoted strings and `<...>`.
/// Each item is trimmed of white space; empty items are yielded (so a
/// grammar check can reject them).
pub fn split_values(value: &[u8], offset: usize) -> Values<'_> {
    Values {
        value,
        pos: 0,
        offset,
        done: value.is_empty(),
    }
}

/// Iterator returned by [`split_values`]: `(offset, item)` pairs.
#[derive(Clone, Debug)]
pub struct Values<'a> {
    value: &'a [u8],
    pos: usize,
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Values<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let (mut quoted, mut angle, mut escaped) = (false, false, false);
        let mut i = start;
        let end = loop {
            let Some(&b) = self.value.get(i) else {
                self.done = true;
                break i;
            };
            if quoted {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = false;
                }
            } else {
                match b {
                    b'"' => quoted = true,
                    b'<' => angle = true,
                    b'>' => angle = false,
                    b',' if !angle => break i,
                    _ => {}
                }
            }
            i += 1;
        };
        self.pos = end + 1;
        let item = self.value.get(start..end).unwrap_or_default();
        let lead = item.iter().position(|&b| !is_lws(b)).unwrap_or(item.len());
        let trail = item
            .iter()
            .rposition(|&b| !is_lws(b))
            .map_or(lead, |p| p + 1);
        Some((
            self.offset + start + lead,
            item.get(lead..trail).unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"ViA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"q"), HeaderName::Other);
        assert_eq!(HeaderName::Via.compact(), Some(b'v'));
        assert_eq!(HeaderName::CSeq.compact(), None);
    }

    fn one(line: &[u8]) -> Result<Header<'_>, Error> {
        match scan_header(line, 0)? {
            Scanned::Header(h) => Ok(h),
            Scanned::End(_) => panic!("end"),
        }
    }

    #[test]
    fn folding_and_spacing() {
        let h = one(b"TO :\r\n sip:vivekg@example.com ;   tag = 1\r\nX").unwrap();
        assert_eq!(h.name, HeaderName::To);
        assert_eq!(h.raw_name, b"TO");
        assert_eq!(h.value, b"sip:vivekg@example.com ;   tag = 1");
        assert_eq!(h.value_offset, 7);
        assert_eq!(h.line_end, 43);
        let h = one(b"s :\r\nX").unwrap();
        assert_eq!(h.value, b"");
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            one(b"Foobar roobar\r\n").unwrap_err().kind(),
            ErrorKind::MissingColon
        );
        assert_eq!(
            one(b"Via\x01: x\r\n").unwrap_err().kind(),
            ErrorKind::BadHeaderName
        );
        assert_eq!(
            one(b": x\r\n").unwrap_err().kind(),
            ErrorKind::BadHeaderName
        );
        assert_eq!(
            one(b"Via: a\nb\r\n").unwrap_err().kind(),
            ErrorKind::BareLineEnd
        );
        assert_eq!(
            one(b"Via: a\rb\r\n").unwrap_err().kind(),
            ErrorKind::BareLineEnd
        );
        assert_eq!(one(b"Via: a").unwrap_err().kind(), ErrorKind::Unterminated);
    }

    #[test]
    fn splitting() {
        let v: Vec<_> = split_values(br#""a, b" <sip:x,y>;p=1 , c,,d"#, 10).collect();
        assert_eq!(
            v,
            vec![
                (10, &br#""a, b" <sip:x,y>;p=1"#[..]),
                (33, &b"c"[..]),
                (35, &b""[..]),
                (36, &b"d"[..])
            ]
        );
        assert_eq!(split_values(b"", 0).count(), 0);
        assert_eq!(split_values(br#""a\",b", c"#, 0).count(), 2);
    }
}
