//! Byte classes and a bounds-checked cursor over wire data.
//!
//! Every read returns an `Option` or checks `pos < len` first: nothing here
//! indexes a slice without a bound proved on the same line.

const fn class_table(chars: &[u8], alnum: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] = true;
        i += 1;
    }
    if alnum {
        let mut c = b'0';
        while c <= b'9' {
            t[c as usize] = true;
            c += 1;
        }
        let mut c = b'a';
        while c <= b'z' {
            t[c as usize] = true;
            t[(c - 32) as usize] = true;
            c += 1;
        }
    }
    t
}

/// RFC 3261 `token`: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
static TOKEN: [bool; 256] = class_table(b"-.!%*_+`'~", true);
/// `paramchar` of a URI parameter: param-unreserved, unreserved, `%`.
static URI_PARAM: [bool; 256] = class_table(b"[]/:&+$-_.!~*'()%", true);
/// Characters of URI headers (`hname=hvalue&...`).
static URI_HEADER: [bool; 256] = class_table(b"[]/?:+$-_.!~*'()%=&", true);
/// [`USERINFO_COLON`] but `%` and `:`, which need a closer look.
static USERINFO_PLAIN: [bool; 256] = class_table(b"-_.!~*'()&=+$,;?/", true);
/// [`URI_PARAMS`] but `%`, `;` and `=`, which need a closer look.
static URI_PARAMS_PLAIN: [bool; 256] = class_table(b"[]/:&+$-_.!~*'()", true);
/// Characters of a SIP/SIPS URI user or password part (unreserved,
/// user-unreserved, password extras, and `%`, whose escapes are checked
/// separately) and the `:` between them.
static USERINFO_COLON: [bool; 256] = class_table(b"-_.!~*'()&=+$,;?/%:", true);
/// [`URI_PARAM`] and the `;` and `=` that separate parameters.
static URI_PARAMS: [bool; 256] = class_table(b"[]/:&+$-_.!~*'()%;=", true);
/// Host names and IPv4 addresses (liberal: `_` is seen in the wild), as
/// [`HOST_NAME`] or [`HOST_NUMERIC`] (digits and `.`); 0 for anything else.
static HOSTNAME: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_digit() || c == b'.' {
            t[b] = HOST_NUMERIC;
        } else if c.is_ascii_alphabetic() || c == b'-' || c == b'_' {
            t[b] = HOST_NAME;
        }
        b += 1;
    }
    t
};
/// A host-name character that is not a digit or `.`.
pub(crate) const HOST_NAME: u8 = 1;
/// A digit or `.`.
pub(crate) const HOST_NUMERIC: u8 = 2;
/// Characters inside an IPv6 reference.
static IPV6: [bool; 256] = class_table(b":.abcdefABCDEF0123456789", false);
/// Via parameter values: token plus what an unbracketed or bracketed IPv6
/// `received` or `maddr` needs.
static VIA_VALUE: [bool; 256] = class_table(b"-.!%*_+`'~:[]", true);
/// Characters of a telephone-subscriber (tel: URI number part).
static TEL_NUMBER: [bool; 256] = class_table(b"+-.()*#abcdefABCDEF0123456789", false);
/// Characters allowed after the scheme of an absolute URI of an unknown scheme.
static SCHEME: [bool; 256] = class_table(b"+-.", true);

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}
#[inline]
pub(crate) fn is_uri_param(b: u8) -> bool {
    URI_PARAM[b as usize]
}
#[inline]
pub(crate) fn is_uri_header(b: u8) -> bool {
    URI_HEADER[b as usize]
}
#[inline]
pub(crate) fn is_userinfo_or_colon(b: u8) -> bool {
    USERINFO_COLON[b as usize]
}
#[inline]
pub(crate) fn is_userinfo_plain(b: u8) -> bool {
    USERINFO_PLAIN[b as usize]
}
#[inline]
pub(crate) fn is_uri_params_plain(b: u8) -> bool {
    URI_PARAMS_PLAIN[b as usize]
}
#[inline]
pub(crate) fn is_uri_params(b: u8) -> bool {
    URI_PARAMS[b as usize]
}
/// [`HOST_NAME`], [`HOST_NUMERIC`] or 0 (not in a host name).
#[inline]
pub(crate) fn host_class(b: u8) -> u8 {
    HOSTNAME[b as usize]
}
#[inline]
pub(crate) fn is_ipv6(b: u8) -> bool {
    IPV6[b as usize]
}
#[inline]
pub(crate) fn is_via_value(b: u8) -> bool {
    VIA_VALUE[b as usize]
}
#[inline]
pub(crate) fn is_tel_number(b: u8) -> bool {
    TEL_NUMBER[b as usize]
}
#[inline]
pub(crate) fn is_scheme(b: u8) -> bool {
    SCHEME[b as usize]
}

/// Linear white space inside a header value. The header scanner guarantees that
/// any CR or LF inside a value belongs to a CRLF followed by SP or HT (a
/// folded line), so treating all four as white space is exact.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The index of the first byte of `s` at or after `i` that is not LWS.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while s.get(i).is_some_and(|&b| is_lws(b)) {
        i += 1;
    }
    i
}

/// The index of the first byte of `s` at or after `i` for which `f` fails.
#[inline]
pub(crate) fn skip_while(s: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    // Four bytes a step while all four pass, then one at a time.
    while let Some(&[a, b, c, d]) = s.get(i..i + 4) {
        if !(f(a) & f(b) & f(c) & f(d)) {
            break;
        }
        i += 4;
    }
    while s.get(i).is_some_and(|&b| f(b)) {
        i += 1;
    }
    i
}

/// The end of the quoted string opening at `s[i]` (just past its closing
/// quote), honouring backslash escapes; `Err(i)` if it is not closed or a
/// backslash escapes CR or LF (as [`Cursor::take_quoted`]).
#[inline]
pub(crate) fn quoted_end(s: &[u8], i: usize) -> Result<usize, usize> {
    let mut j = i + 1;
    loop {
        match s.get(j) {
            None => return Err(i),
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => match s.get(j + 1) {
                Some(b'\r' | b'\n') | None => return Err(i),
                Some(_) => j += 2,
            },
            Some(_) => j += 1,
        }
    }
}

/// Strip leading and trailing LWS.
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `s` at `i`, little-endian, if there are eight.
#[inline]
pub(crate) fn word_at(s: &[u8], i: usize) -> Option<u64> {
    s.get(i..i + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map(u64::from_le_bytes)
}

/// The high bit of each byte of `w` below `n` (`n` <= 0x80). Only the lowest
/// flagged byte is sure to be below `n` (a borrow out of it may flag the
/// byte above), which is all a search for the first such byte needs.
#[inline]
pub(crate) const fn bytes_below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * n as u64) & !w & HIGHS
}

/// The high bit of the lowest byte of `w` equal to `b` (and perhaps of
/// higher ones, as [`bytes_below`]).
#[inline]
pub(crate) const fn bytes_equal(w: u64, b: u8) -> u64 {
    bytes_below(w ^ (ONES * b as u64), 1)
}

/// Index of the lowest flagged byte of a non-zero mask.
#[inline]
pub(crate) const fn first_flagged(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Whether any of the 16 bytes is below `n`. Written as a fold over a
/// fixed-size chunk so that the compiler makes it a few vector instructions.
#[inline]
fn any_below(chunk: &[u8], n: u8) -> bool {
    chunk.iter().fold(0u8, |acc, &b| acc | u8::from(b < n)) != 0
}

/// The first CR or LF of `s` at or after `from` (see [`find_first`]: the
/// bytes below 0x0E are flagged, and an HT or another flagged control is
/// passed over).
#[inline(always)]
pub(crate) fn find_line_end(s: &[u8], from: usize) -> Option<usize> {
    find_first(
        s,
        from,
        |chunk| any_below(chunk, 0x0E),
        |w| bytes_below(w, 0x0E),
        |b| b != b'\r' && b != b'\n',
        |b| b == b'\r' || b == b'\n',
    )
}

/// Whether any of the 16 bytes is a control character (below 0x20) or DEL:
/// [`any_below`] and one more comparison.
#[inline]
fn any_control(chunk: &[u8]) -> bool {
    chunk.iter().fold(0u8, |acc, &b| {
        acc | u8::from(b < 0x20) | u8::from(b == 0x7F)
    }) != 0
}

/// The high bit of the lowest byte of `w` that is a control character or
/// DEL (and perhaps of higher ones, as [`bytes_below`]).
#[inline]
const fn controls(w: u64) -> u64 {
    bytes_below(w, 0x20) | bytes_equal(w, 0x7F)
}

/// Whether `b` ends a header value's run of text: CR, LF, or a control
/// character other than HT (DEL included).
#[inline]
pub(crate) fn is_value_stop(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7F
}

/// The first byte of `s` at or after `from` that is CR, LF, or a control
/// character other than HT (DEL included): the end of a header line, or a
/// byte that RFC 3261's `TEXT-UTF8` and `qdtext` exclude from header
/// values. [`find_line_end`] with the set of bytes it stops at widened,
/// at the cost of one more comparison per sixteen bytes.
#[inline(always)]
pub(crate) fn find_value_stop(s: &[u8], from: usize) -> Option<usize> {
    find_first(
        s,
        from,
        any_control,
        controls,
        |b| b == b'\t',
        is_value_stop,
    )
}

/// The first byte of `s` at or after `from` for which `stop` holds, sixteen
/// bytes at a time: while `any` finds no candidate in a chunk it is passed
/// over whole; otherwise `flags` marks the candidates in each of its two
/// words (the high bit of each, as [`bytes_below`]) and the first is looked
/// at. A candidate that `pass_over` names (an HT) is passed over and the
/// search goes on after it; any other is the answer. In the last, short
/// chunk, the answer is the first byte for which `stop` holds: the
/// candidates that are not passed over.
#[inline(always)]
fn find_first(
    s: &[u8],
    from: usize,
    any: impl Fn(&[u8]) -> bool,
    flags: impl Fn(u64) -> u64,
    pass_over: impl Fn(u8) -> bool,
    stop: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = from;
    loop {
        let mut chunks = s.get(i..)?.chunks_exact(16);
        let found = loop {
            let Some(chunk) = chunks.next() else {
                break None;
            };
            if any(chunk) {
                let lo = word_at(chunk, 0).map_or(0, &flags);
                if lo != 0 {
                    break Some(i + first_flagged(lo));
                }
                let hi = word_at(chunk, 8).map_or(0, &flags);
                if hi != 0 {
                    break Some(i + 8 + first_flagged(hi));
                }
            }
            i += 16;
        };
        match found {
            Some(at) if s.get(at).is_some_and(|&b| pass_over(b)) => i = at + 1,
            Some(at) => return Some(at),
            None => {
                let tail = chunks.remainder();
                return tail.iter().position(|&b| stop(b)).map(|p| i + p);
            }
        }
    }
}

/// The first byte of `s` at or after `from` that is SP, a control character
/// or DEL.
#[inline]
pub(crate) fn find_space_or_control(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(w) = word_at(s, i) {
        let m = bytes_below(w, 0x21) | bytes_equal(w, 0x7F);
        if m != 0 {
            return Some(i + first_flagged(m));
        }
        i += 8;
    }
    let tail = s.get(i..)?;
    tail.iter()
        .position(|&b| b < 0x21 || b == 0x7F)
        .map(|p| i + p)
}

/// Whether `s` holds linear white space (SP, HT, CR or LF). Eight bytes at a
/// time: a word with no byte below 0x21 has none.
pub(crate) fn has_lws(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let w = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
        // High bit set in the lowest byte below 0x21 (and perhaps above it).
        if bytes_below(w, 0x21) != 0 && chunk.iter().any(|&b| is_lws(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| is_lws(b))
}

/// Whether the `%` at `i` of `s` is followed by two hex digits.
#[inline]
pub(crate) fn escape_ok_at(s: &[u8], i: usize) -> bool {
    matches!(
        (s.get(i + 1), s.get(i + 2)),
        (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit()
    )
}

/// Every `%` in `s` is followed by two hex digits.
#[cfg(test)]
pub(crate) fn escapes_ok(s: &[u8]) -> bool {
    s.iter()
        .enumerate()
        .all(|(i, &b)| b != b'%' || escape_ok_at(s, i))
}

/// Parse an unsigned decimal of at most `max`, allowing leading zeros.
/// `None` for an empty string, a non-digit, or overflow.
pub(crate) fn parse_u32(s: &[u8], max: u32) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    // In 64 bits, stopping as soon as the value leaves 32.
    let mut v: u64 = 0;
    for &b in s {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        v = v * 10 + u64::from(digit);
        if v > u64::from(u32::MAX) {
            return None;
        }
    }
    u32::try_from(v).ok().filter(|&v| v <= max)
}

/// A forward cursor over a slice. `base` is the offset of the slice within the
/// whole message, so errors point into the message.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Step over `n` bytes.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos += n;
    }

    /// Consume `b` if it is next.
    #[inline]
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skip linear white space (including folds). Returns whether any was skipped.
    #[inline]
    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !is_lws(b) {
                break;
            }
            self.pos += 1;
        }
        self.pos > start
    }

    /// Take the longest run of bytes for which `f` holds.
    #[inline]
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        self.pos = skip_while(self.buf, start, f);
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    /// The unread rest.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Take a quoted string starting at the opening quote, honouring
    /// backslash escapes. Returns the whole string including both quotes.
    pub(crate) fn take_quoted(&mut self) -> Result<&'a [u8], usize> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err(self.offset());
        }
        loop {
            self.pos = skip_while(self.buf, self.pos, |b| b != b'"' && b != b'\\');
            match self.peek() {
                None => return Err(self.base + start),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.buf.get(start..self.pos).unwrap_or_default());
                }
                Some(b'\\') => {
                    // quoted-pair: any octet but CR and LF may follow.
                    self.pos += 1;
                    match self.peek() {
                        Some(b'\r' | b'\n') | None => return Err(self.base + start),
                        Some(_) => self.pos += 1,
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0068", 255), Some(68));
        assert_eq!(parse_u32(b"256", 255), None);
        assert_eq!(parse_u32(b"4294967295", u32::MAX), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296", u32::MAX), None);
        assert_eq!(parse_u32(b"36893488147419103232", u32::MAX), None);
        assert_eq!(parse_u32(b"-1", u32::MAX), None);
        assert_eq!(parse_u32(b"", u32::MAX), None);
    }

    #[test]
    fn trimming_and_escapes() {
        assert_eq!(trim_lws(b" \r\n\tabc \t"), b"abc");
        assert_eq!(trim_lws(b"   "), b"");
        assert!(escapes_ok(b"a%41b%00"));
        assert!(!escapes_ok(b"a%4"));
        assert!(!escapes_ok(b"%ZZ"));
    }

    #[test]
    fn word_searches() {
        let text = b"Via: SIP/2.0/UDP h\tx;branch=z9hG4bK1\x0b\r\nTo: <sip:a@b>\r\n";
        for from in 0..text.len() + 2 {
            let want = text
                .get(from..)
                .and_then(|t| t.iter().position(|&b| b == b'\r' || b == b'\n'))
                .map(|p| from + p);
            assert_eq!(find_line_end(text, from), want, "{from}");
            let want = text
                .get(from..)
                .and_then(|t| t.iter().position(|&b| b < 0x21 || b == 0x7F))
                .map(|p| from + p);
            assert_eq!(find_space_or_control(text, from), want, "{from}");
        }
        let mut all: Vec<u8> = (0..=255).collect();
        all.extend((0..=255).rev());
        for from in 0..all.len() {
            let want = all[from..].iter().position(|&b| b == b'\r' || b == b'\n');
            assert_eq!(find_line_end(&all, from), want.map(|p| from + p));
            let want = all[from..].iter().position(|&b| b < 0x21 || b == 0x7F);
            assert_eq!(find_space_or_control(&all, from), want.map(|p| from + p));
        }
    }

    #[test]
    fn value_stop_search() {
        let want = |s: &[u8], from: usize| {
            s.get(from..)
                .and_then(|t| t.iter().position(|&b| is_value_stop(b)))
                .map(|p| from + p)
        };
        let text = b"Subject: tab\there and there\x00, DEL\x7f, \xc3\xa9\x1f\r\n x\r\n";
        for from in 0..text.len() + 2 {
            assert_eq!(find_value_stop(text, from), want(text, from), "{from}");
        }
        let mut all: Vec<u8> = (0..=255).collect();
        all.extend((0..=255).rev());
        all.extend([b'\t'; 40]);
        all.extend(b"0123456789abcdef0123456789abcdef\x7f");
        for from in 0..all.len() {
            assert_eq!(find_value_stop(&all, from), want(&all, from), "{from}");
        }
        for b in 0..=255u8 {
            let stops = (b < 0x20 && b != b'\t') || b == 0x7F;
            assert_eq!(is_value_stop(b), stops, "{b:#04x}");
        }
    }

    #[test]
    fn lws_search() {
        for (s, want) in [
            (&b""[..], false),
            (b"sip:alice@example.com;transport=tcp", false),
            (b"sip:alice@example.com;transport=tcp\t", true),
            (b"sip:a b", true),
            (b"12345678\r", true),
            (b"1234567\n8", true),
            (b"\x00\x01\x1f!\x7f\xff\x80\x0b", false),
        ] {
            assert_eq!(has_lws(s), want, "{s:?}");
        }
    }

    #[test]
    fn quoted() {
        let mut c = Cursor::new(br#""a \" b" rest"#, 0);
        assert_eq!(c.take_quoted(), Ok(&br#""a \" b""#[..]));
        let mut c = Cursor::new(br#""unterminated"#, 10);
        assert_eq!(c.take_quoted(), Err(10));
    }
}
