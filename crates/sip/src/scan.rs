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
/// Characters of a SIP/SIPS URI user or password part: unreserved, user-unreserved,
/// password extras, and `%` (escapes are checked separately).
static USERINFO: [bool; 256] = class_table(b"-_.!~*'()&=+$,;?/%", true);
/// `paramchar` of a URI parameter: param-unreserved, unreserved, `%`.
static URI_PARAM: [bool; 256] = class_table(b"[]/:&+$-_.!~*'()%", true);
/// Characters of URI headers (`hname=hvalue&...`).
static URI_HEADER: [bool; 256] = class_table(b"[]/?:+$-_.!~*'()%=&", true);
/// Host names and IPv4 addresses (liberal: `_` is seen in the wild).
static HOSTNAME: [bool; 256] = class_table(b"-._", true);
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
pub(crate) fn is_userinfo(b: u8) -> bool {
    USERINFO[b as usize]
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
pub(crate) fn is_hostname(b: u8) -> bool {
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

/// Strip leading and trailing LWS.
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Every `%` in `s` is followed by two hex digits.
pub(crate) fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Parse an unsigned decimal of at most `max`, allowing leading zeros.
/// `None` for an empty string, a non-digit, or overflow.
pub(crate) fn parse_u32(s: &[u8], max: u32) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    (v <= max).then_some(v)
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

    #[inline]
    pub(crate) fn bump(&mut self) {
        self.pos += 1;
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
        while let Some(b) = self.peek() {
            if !f(b) {
                break;
            }
            self.pos += 1;
        }
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
    fn quoted() {
        let mut c = Cursor::new(br#""a \" b" rest"#, 0);
        assert_eq!(c.take_quoted(), Ok(&br#""a \" b""#[..]));
        let mut c = Cursor::new(br#""unterminated"#, 10);
        assert_eq!(c.take_quoted(), Err(10));
    }
}
