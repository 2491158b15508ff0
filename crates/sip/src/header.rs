//! Header fields: names (long and compact forms, any case), the line scanner
//! that handles folding, and comma splitting of list values.

use crate::error::{Error, ErrorKind};
use crate::scan::{find_value_stop, is_lws, is_token, word_at};

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
                match name {
                    [c] => compact_name(*c),
                    [first, .., last] if name.len() <= MAX_NAME => {
                        let mut padded = [0u8; MAX_NAME];
                        if let Some(dst) = padded.get_mut(..name.len()) {
                            dst.copy_from_slice(name);
                        }
                        let [w0, w1, w2] = [0, 8, 16].map(|at| load_word(&padded, at));
                        lookup(name.len(), *first, *last, [w0, w1, w2])
                    }
                    _ => Self::Other,
                }
            }
        }

        /// Every named header: variant, canonical name, compact form (0 if none).
        const NAMES: &[(HeaderName, &str, u8)] = &[
            $( (HeaderName::$variant, $canon, compact_or_zero!($($compact)?)), )*
        ];
    };
}

macro_rules! compact_or_zero {
    () => {
        0
    };
    ($c:literal) => {
        $c
    };
}

/// The longest long name `from_bytes` knows, in bytes (three words).
const MAX_NAME: usize = 24;
/// No entry in [`SLOTS`] / [`NEXT`].
const NONE: u8 = u8::MAX;
const SLOT_BITS: u32 = 7;

/// Hash of a long name from its length and its first and last bytes,
/// case-insensitive. The multipliers make it collision-free for the names of
/// [`header_names!`]; a collision would only cost a second comparison.
#[inline]
const fn name_hash(len: usize, first: u8, last: u8) -> usize {
    let h = len
        .wrapping_mul(47)
        .wrapping_add((first | 0x20) as usize)
        .wrapping_add(((last | 0x20) as usize).wrapping_mul(14));
    h & ((1 << SLOT_BITS) - 1)
}

/// Eight bytes at `at`, little-endian; 0 past the end.
#[inline]
fn load_word(s: &[u8], at: usize) -> u64 {
    s.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

/// A known long name as three little-endian words, lowercase and zero-padded
/// to [`MAX_NAME`] bytes, and the bits that OR-ing with makes a letter
/// lowercase (0x20 at each letter). A name written in any case matches when
/// `word | mask == lower` for all three words.
#[derive(Clone, Copy)]
struct Known {
    name: HeaderName,
    len: usize,
    lower: [u64; 3],
    masks: [u64; 3],
    /// All ones over the name's bytes, zero past them: what to keep of
    /// three words loaded from a message, where the name runs on into `:`
    /// and the value.
    keep: [u64; 3],
}

impl Known {
    const fn new(name: HeaderName, canon: &str) -> Self {
        let b = canon.as_bytes();
        assert!(
            b.len() >= 2 && b.len() <= MAX_NAME,
            "long header names are 2 to 24 bytes"
        );
        let mut lower = [0u64; 3];
        let mut masks = [0u64; 3];
        let mut keep = [0u64; 3];
        let mut i = 0;
        while i < b.len() {
            keep[i / 8] |= 0xFF << (8 * (i % 8));
            assert!(
                b[i].is_ascii_alphabetic() || b[i] == b'-',
                "header names are letters and '-'"
            );
            lower[i / 8] |= (b[i].to_ascii_lowercase() as u64) << (8 * (i % 8));
            if b[i].is_ascii_alphabetic() {
                masks[i / 8] |= 0x20 << (8 * (i % 8));
            }
            i += 1;
        }
        Self {
            name,
            len: b.len(),
            lower,
            masks,
            keep,
        }
    }
}

/// Hash of the first four bytes of a name, case-insensitive.
#[inline]
const fn prefix_hash(first4: u32) -> usize {
    ((first4 | 0x2020_2020).wrapping_mul(0x9E37_79B1) >> (32 - SLOT_BITS)) as usize
}

/// First entry of [`KNOWN`] of four or more bytes per [`prefix_hash`]
/// ([`NONE`] if none).
static PREFIX_SLOTS: [u8; 1 << SLOT_BITS] = prefix_chains().0;
/// The next entry of [`KNOWN`] with the same prefix hash.
static PREFIX_NEXT: [u8; KNOWN_LEN] = prefix_chains().1;

const fn prefix_chains() -> ([u8; 1 << SLOT_BITS], [u8; KNOWN_LEN]) {
    let mut slots = [NONE; 1 << SLOT_BITS];
    let mut next = [NONE; KNOWN_LEN];
    let mut i = NAMES.len();
    let mut n = KNOWN_LEN;
    while i > 0 {
        i -= 1;
        let canon = NAMES[i].1.as_bytes();
        if canon.len() >= 2 {
            n -= 1;
            if canon.len() >= 4 {
                let first4 = u32::from_le_bytes([canon[0], canon[1], canon[2], canon[3]]);
                let h = prefix_hash(first4);
                next[n] = slots[h];
                slots[h] = n as u8;
            }
        }
    }
    (slots, next)
}

/// Classify a long name of `len` (2..=24) bytes given as three words,
/// zero past the name.
#[inline]
fn lookup(len: usize, first: u8, last: u8, words: [u64; 3]) -> HeaderName {
    let mut slot = SLOTS[name_hash(len, first, last)];
    while let Some(k) = KNOWN.get(usize::from(slot)) {
        if k.len == len
            && (words[0] | k.masks[0]) == k.lower[0]
            && (words[1] | k.masks[1]) == k.lower[1]
            && (words[2] | k.masks[2]) == k.lower[2]
        {
            return k.name;
        }
        slot = NEXT.get(usize::from(slot)).copied().unwrap_or(NONE);
    }
    HeaderName::Other
}

/// A one-byte (compact) name, any case. Only letters land in `0..26`.
#[inline]
fn compact_name(c: u8) -> HeaderName {
    COMPACT
        .get(usize::from((c | 0x20).wrapping_sub(b'a')))
        .copied()
        .unwrap_or(HeaderName::Other)
}

const KNOWN_LEN: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < NAMES.len() {
        if NAMES[i].1.len() >= 2 {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The long names, in [`NAMES`] order.
static KNOWN: [Known; KNOWN_LEN] = {
    let mut out = [Known::new(HeaderName::Other, "xx"); KNOWN_LEN];
    let mut i = 0;
    let mut n = 0;
    while i < NAMES.len() {
        if NAMES[i].1.len() >= 2 {
            out[n] = Known::new(NAMES[i].0, NAMES[i].1);
            n += 1;
        }
        i += 1;
    }
    assert!(n < NONE as usize);
    out
};

/// First entry of [`KNOWN`] per hash value ([`NONE`] if none).
static SLOTS: [u8; 1 << SLOT_BITS] = chains().0;
/// The next entry of [`KNOWN`] with the same hash ([`NONE`] at the end).
static NEXT: [u8; KNOWN_LEN] = chains().1;

const fn chains() -> ([u8; 1 << SLOT_BITS], [u8; KNOWN_LEN]) {
    let mut slots = [NONE; 1 << SLOT_BITS];
    let mut next = [NONE; KNOWN_LEN];
    // Backwards, so that each chain lists its names in `NAMES` order.
    let mut i = NAMES.len();
    let mut n = KNOWN_LEN;
    while i > 0 {
        i -= 1;
        let canon = NAMES[i].1.as_bytes();
        if canon.len() >= 2 {
            n -= 1;
            let h = name_hash(canon.len(), canon[0], canon[canon.len() - 1]);
            next[n] = slots[h];
            slots[h] = n as u8;
        }
    }
    (slots, next)
}

/// Compact forms, indexed by letter - 'a'.
static COMPACT: [HeaderName; 26] = {
    let mut t = [HeaderName::Other; 26];
    let mut i = 0;
    while i < NAMES.len() {
        let c = NAMES[i].2;
        if c != 0 {
            assert!(
                c.is_ascii_lowercase(),
                "compact forms are lowercase letters"
            );
            assert!(
                matches!(t[(c - b'a') as usize], HeaderName::Other),
                "duplicate compact form"
            );
            t[(c - b'a') as usize] = NAMES[i].0;
        }
        i += 1;
    }
    t
};

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
#[inline(always)]
pub(crate) fn scan_header(buf: &[u8], pos: usize) -> Result<Scanned<'_>, Error> {
    match known_name(buf, pos) {
        // The common case: a known name directly followed by ':'.
        Some((name_len, name)) => scan_value(buf, pos, name_len, name, name_len + 1),
        None => scan_header_slow(buf, pos),
    }
}

/// [`scan_header`] for everything but a known name directly followed by
/// `:`: the end of the header section, other names, and errors.
#[inline(never)]
fn scan_header_slow(buf: &[u8], pos: usize) -> Result<Scanned<'_>, Error> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest {
        [b'\r', b'\n', ..] => return Ok(Scanned::End(pos + 2)),
        [] => return Err(Error::new(ErrorKind::Unterminated, pos)),
        [b'\r' | b'\n', ..] => return Err(Error::new(ErrorKind::BareLineEnd, pos)),
        _ => {}
    }
    // Name: a token, then optional SP/HT, then ':'.
    let mut name_len = 0;
    while rest.get(name_len).is_some_and(|&b| is_token(b)) {
        name_len += 1;
    }
    if name_len == 0 {
        return Err(Error::new(ErrorKind::BadHeaderName, pos));
    }
    let name = HeaderName::from_bytes(rest.get(..name_len).unwrap_or_default());
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
    scan_value(buf, pos, name_len, name, i)
}

/// The rest of a header line whose name (`name_len` bytes at `pos`) and
/// colon have been read; the value starts at `pos + i`.
#[inline(always)]
fn scan_value(
    buf: &[u8],
    pos: usize,
    name_len: usize,
    name: HeaderName,
    mut i: usize,
) -> Result<Scanned<'_>, Error> {
    let rest = buf.get(pos..).unwrap_or_default();
    let raw_name = rest.get(..name_len).unwrap_or_default();
    // Value: up to a CRLF that is not followed by SP/HT. Leading SP/HT is
    // skipped before searching (it holds no line end).
    while matches!(rest.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let value_start = i;
    // The first control character the value may not hold, and how far the
    // quoted strings before it have been followed.
    let mut control = None;
    let mut quotes = Quotes::new(value_start);
    loop {
        let Some(cr) = find_value_stop(rest, i) else {
            return Err(Error::new(ErrorKind::Unterminated, buf.len()));
        };
        match (rest.get(cr), rest.get(cr + 1), rest.get(cr + 2)) {
            (Some(b'\r'), Some(b'\n'), Some(b' ' | b'\t')) => i = cr + 3, // folded continuation
            (Some(b'\r'), Some(b'\n'), _) => {
                let raw_value = rest.get(value_start..cr).unwrap_or_default();
                // Only a value that starts with a fold has white space left
                // in front.
                let lead = raw_value
                    .iter()
                    .position(|&b| !is_lws(b))
                    .unwrap_or(raw_value.len());
                let trail = raw_value
                    .iter()
                    .rposition(|&b| !is_lws(b))
                    .map_or(lead, |p| p + 1);
                let header = Header {
                    name,
                    raw_name,
                    value: raw_value.get(lead..trail).unwrap_or_default(),
                    value_offset: pos + value_start + lead,
                    line_start: pos,
                    line_end: pos + cr + 2,
                };
                return Ok(Scanned::Header(header, control));
            }
            (Some(b'\r'), None, _) => {
                return Err(Error::new(ErrorKind::Unterminated, pos + cr + 1))
            }
            (Some(b'\r' | b'\n'), _, _) => {
                return Err(Error::new(ErrorKind::BareLineEnd, pos + cr))
            }
            // Any other control character: kept track of, and the line read
            // on to its end, so that the message still parses and the
            // request can be answered (validation refuses it).
            _ => {
                if control.is_none() && !quotes.escapes(rest, cr) {
                    control = Some(pos + cr);
                }
                i = cr + 1;
            }
        }
    }
}

/// Where the quoted strings of a header value stand, followed from the
/// value's start only as far as a control character found in it, to tell
/// whether that character is the second octet of a `quoted-pair` (RFC
/// 3261 §25.1: `"\" (%x00-09 / %x0B-0C / %x0E-7F)` inside a quoted string),
/// the one place the grammar allows one. Each byte is looked at once
/// however many control characters the value holds.
#[derive(Clone, Copy, Debug)]
struct Quotes {
    /// The next byte to look at.
    at: usize,
    quoted: bool,
    escaped: bool,
}

impl Quotes {
    fn new(at: usize) -> Self {
        Self {
            at,
            quoted: false,
            escaped: false,
        }
    }

    /// Whether the byte at `control` (past `self.at`) is escaped by a
    /// backslash inside a quoted string; the byte is then consumed.
    #[cold]
    fn escapes(&mut self, s: &[u8], control: usize) -> bool {
        for &b in s.get(self.at..control).unwrap_or_default() {
            if !self.quoted {
                self.quoted = b == b'"';
            } else if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.quoted = false;
            }
        }
        let escaped = self.quoted && self.escaped;
        self.escaped = false;
        self.at = control + 1;
        escaped
    }
}

/// The name of the line at `buf[pos]` when it is a known name directly
/// followed by `:`: `(length, name)`. A known name is made of letters and
/// `-`, so it is a token; anything else (unknown names, fewer than eight
/// bytes left, white space before the colon) is left to the byte-by-byte
/// scan. Names of one to three bytes are found by where the colon is; longer
/// ones by their first four bytes, then compared whole, a word at a time.
#[inline(always)]
fn known_name(buf: &[u8], pos: usize) -> Option<(usize, HeaderName)> {
    let w0 = word_at(buf, pos)?;
    let [b0, b1, b2, b3, ..] = w0.to_le_bytes();
    // Names of one to three bytes end at byte 1, 2 or 3.
    let (len, name) = if b1 == b':' {
        (1, compact_name(b0))
    } else if b2 == b':' {
        (2, lookup(2, b0, b1, [w0 & 0xFFFF, 0, 0]))
    } else if b3 == b':' {
        (3, lookup(3, b0, b2, [w0 & 0xFF_FFFF, 0, 0]))
    } else {
        // Longer names: the candidates sharing the first four bytes, each
        // compared whole and followed by ':'.
        let words = [
            w0,
            word_at(buf, pos + 8).unwrap_or(0),
            word_at(buf, pos + 16).unwrap_or(0),
        ];
        let mut slot = PREFIX_SLOTS[prefix_hash(w0 as u32)];
        loop {
            let k = KNOWN.get(usize::from(slot))?;
            if (words[0] & k.keep[0] | k.masks[0]) == k.lower[0]
                && (words[1] & k.keep[1] | k.masks[1]) == k.lower[1]
                && (words[2] & k.keep[2] | k.masks[2]) == k.lower[2]
                && buf.get(pos + k.len) == Some(&b':')
            {
                break (k.len, k.name);
            }
            slot = PREFIX_NEXT.get(usize::from(slot)).copied().unwrap_or(NONE);
        }
    };
    (name != HeaderName::Other).then_some((len, name))
}

/// A header line in its most common form, as offsets: a known name directly
/// followed by `:`, at most one SP, a value that neither starts nor ends
/// with white space nor is folded, and CRLF.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SimpleLine {
    pub(crate) name: HeaderName,
    pub(crate) name_len: usize,
    pub(crate) value_start: usize,
    pub(crate) value_end: usize,
    pub(crate) line_end: usize,
}

/// The header line at `pos` if it has the common form of [`SimpleLine`];
/// `None` sends the caller to [`scan_header`], which reads any line the same
/// way (this is only a shorter path to the same result).
#[inline(always)]
pub(crate) fn simple_line(buf: &[u8], pos: usize) -> Option<SimpleLine> {
    let (name_len, name) = known_name(buf, pos)?;
    let mut value_start = pos + name_len + 1;
    if buf.get(value_start) == Some(&b' ') {
        value_start += 1;
    }
    // The value starts with neither white space nor a line end, and the
    // first byte it stops at is its CR (else it holds a control character,
    // which `scan_header` deals with).
    if *buf.get(value_start)? <= b' ' {
        return None;
    }
    let value_end = find_value_stop(buf, value_start)?;
    match (
        buf.get(value_end - 1),
        buf.get(value_end),
        buf.get(value_end + 1),
        buf.get(value_end + 2),
    ) {
        (Some(&last), Some(b'\r'), Some(b'\n'), Some(&next))
            if !is_lws(last) && next != b' ' && next != b'\t' =>
        {
            Some(SimpleLine {
                name,
                name_len,
                value_start,
                value_end,
                line_end: value_end + 2,
            })
        }
        _ => None,
    }
}

pub(crate) enum Scanned<'a> {
    /// A header line, and the offset of the first control character its
    /// value may not hold, if it has one
    /// ([`ErrorKind::ControlCharacter`]).
    Header(Header<'a>, Option<usize>),
    /// End of the header section; the body starts at this offset.
    End(usize),
}

/// Where one header line's parts sit, kept by [`Message`](crate::Message)
/// for its first [`MAX_LINES`] lines so that reading the headers again does
/// not rescan them. Offsets are from the start of the message, so only lines
/// ending within the first 64 KiB are kept (every datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    value_start: u16,
    value_end: u16,
    line_end: u16,
    name_len: u8,
    name: HeaderName,
}

/// How many header lines a [`Message`](crate::Message) keeps as [`Line`]s.
pub(crate) const MAX_LINES: usize = 32;

impl Line {
    pub(crate) const EMPTY: Self = Self {
        value_start: 0,
        value_end: 0,
        line_end: 0,
        name_len: 0,
        name: HeaderName::Other,
    };

    /// The line of `h`, if its offsets fit.
    #[inline]
    pub(crate) fn new(h: &SimpleLine) -> Option<Self> {
        // The other offsets are smaller than the line's end.
        let line_end = u16::try_from(h.line_end).ok()?;
        Some(Self {
            value_start: h.value_start as u16,
            value_end: h.value_end as u16,
            line_end,
            name_len: u8::try_from(h.name_len).ok()?,
            name: h.name,
        })
    }

    /// The header again, given the message and where the line starts.
    #[inline]
    fn header<'a>(&self, buf: &'a [u8], line_start: usize) -> Header<'a> {
        let value_start = usize::from(self.value_start);
        Header {
            name: self.name,
            raw_name: buf
                .get(line_start..line_start + usize::from(self.name_len))
                .unwrap_or_default(),
            value: buf
                .get(value_start..usize::from(self.value_end))
                .unwrap_or_default(),
            value_offset: value_start,
            line_start,
            line_end: usize::from(self.line_end),
        }
    }
}

/// Iterator over the header fields of a message that has already been parsed
/// (so scanning cannot fail): the lines the message kept, then any further
/// lines scanned again.
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    buf: &'a [u8],
    lines: &'a [Line],
    pos: usize,
    end: usize,
}

impl<'a> Headers<'a> {
    pub(crate) fn new(buf: &'a [u8], lines: &'a [Line], pos: usize, end: usize) -> Self {
        Self {
            buf,
            lines,
            pos,
            end,
        }
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    #[inline]
    fn next(&mut self) -> Option<Header<'a>> {
        if let Some((line, rest)) = self.lines.split_first() {
            self.lines = rest;
            let h = line.header(self.buf, self.pos);
            self.pos = h.line_end;
            return Some(h);
        }
        if self.pos >= self.end {
            return None;
        }
        match rescan(self.buf, self.pos) {
            Some(h) => {
                self.pos = h.line_end;
                Some(h)
            }
            None => {
                self.pos = self.end;
                None
            }
        }
    }
}

/// The header line at `pos` of a message that parsed, past the lines it kept.
#[inline(never)]
fn rescan(buf: &[u8], pos: usize) -> Option<Header<'_>> {
    match scan_header(buf, pos) {
        Ok(Scanned::Header(h, _)) => Some(h),
        _ => None,
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
        let end = match self.fast_end(start) {
            Some(end) => end,
            None => self.slow_end(start),
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

impl Values<'_> {
    /// [`slow_end`](Self::slow_end) for an item without quoted strings
    /// (outside `<...>` or inside): from comma, `"` or `<` to the next, and
    /// from `<` to `>`. `None` at a quote.
    #[inline]
    fn fast_end(&mut self, start: usize) -> Option<usize> {
        let mut i = start;
        loop {
            let rest = self.value.get(i..).unwrap_or_default();
            let Some(at) = memchr::memchr3(b',', b'"', b'<', rest) else {
                self.done = true;
                return Some(self.value.len());
            };
            i += at;
            match self.value.get(i) {
                Some(b',') => return Some(i),
                Some(b'<') => {
                    let inner = self.value.get(i + 1..).unwrap_or_default();
                    match memchr::memchr2(b'>', b'"', inner) {
                        // An unclosed '<' runs to the end.
                        None => {
                            self.done = true;
                            return Some(self.value.len());
                        }
                        Some(close) if inner.get(close) == Some(&b'>') => i += close + 2,
                        Some(_) => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// Where the item starting at `start` ends, honouring quoted strings and
    /// `<...>`; sets `done` at the end of the value.
    fn slow_end(&mut self, start: usize) -> usize {
        let (mut quoted, mut angle, mut escaped) = (false, false, false);
        let mut i = start;
        loop {
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
        }
    }
}

#[cfg(test)]
mod tests;
