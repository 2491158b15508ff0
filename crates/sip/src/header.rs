//! Header fields: names (long and compact forms, any case), the line scanner
//! that handles folding, and comma splitting of list values.

use crate::error::{Error, ErrorKind};
use crate::name::known_name;
pub use crate::name::HeaderName;
use crate::scan::{find_value_stop, is_lws, is_token};

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
