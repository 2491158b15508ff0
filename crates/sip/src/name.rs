//! Header field names: the long and compact forms, recognised in any case
//! (one table, looked up by length, first and last byte and the first
//! words), and which names carry comma-separated lists.

use crate::scan::word_at;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are recognised in any case and in
        /// their compact form; everything else is [`HeaderName::Other`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no name for; the raw name is on the [`Header`](crate::Header).
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
    /// [`split_values`](crate::split_values) may split (Via, Contact, Route ...). Headers whose values
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

/// The name of the line at `buf[pos]` when it is a known name directly
/// followed by `:`: `(length, name)`. A known name is made of letters and
/// `-`, so it is a token; anything else (unknown names, fewer than eight
/// bytes left, white space before the colon) is left to the byte-by-byte
/// scan. Names of one to three bytes are found by where the colon is; longer
/// ones by their first four bytes, then compared whole, a word at a time.
#[inline(always)]
pub(crate) fn known_name(buf: &[u8], pos: usize) -> Option<(usize, HeaderName)> {
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
