//! The parts of a `multipart/*` body (RFC 2046 §5.1.1), found without
//! copying: enough to see which part is which (its Content-Type) and to
//! write the body again without some of them. Part contents stay opaque.
//!
//! ```text
//! preamble CRLF
//! --boundary CRLF  part-headers CRLF CRLF  content
//! CRLF --boundary CRLF  part-headers CRLF CRLF  content
//! CRLF --boundary--  epilogue
//! ```

use crate::typed::ContentType;

/// One body part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// Where the part sits in the body: from the start of its delimiter
    /// (the CRLF before `--boundary`, or `--boundary` itself at the very
    /// start of the body) to the start of the next delimiter.
    pub span: (usize, usize),
    /// The part's header lines (MIME, not SIP), without the empty line
    /// that ends them; empty when the part has none.
    pub headers: &'a [u8],
    /// The part's content.
    pub content: &'a [u8],
}

impl<'a> Part<'a> {
    /// The part's `Content-Type`, if it has one that parses. A part
    /// without one is `text/plain` (RFC 2046 §5.1), reported as `None`.
    pub fn content_type(&self) -> Option<ContentType<'a>> {
        let mut found = None;
        for line in lines(self.headers) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (line.get(..colon)?, line.get(colon + 1..)?);
            if trim(name).eq_ignore_ascii_case(b"content-type") {
                found = ContentType::parse(trim(value), 0).ok();
                break;
            }
        }
        found
    }

    /// Whether the part's Content-Type is `media_type/subtype` (any case).
    pub fn is(&self, media_type: &str, subtype: &str) -> bool {
        self.content_type()
            .is_some_and(|ct| ct.is(media_type, subtype))
    }
}

/// A `multipart/*` body split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Multipart<'a> {
    body: &'a [u8],
    parts: Vec<Part<'a>>,
}

impl<'a> Multipart<'a> {
    /// Split `body` at the delimiters of `boundary` (the Content-Type's
    /// `boundary` parameter). `None` if the body is not well formed: no
    /// delimiter, no closing delimiter, or a part whose headers do not end.
    pub fn parse(body: &'a [u8], boundary: &[u8]) -> Option<Self> {
        if boundary.is_empty() || boundary.len() > 70 {
            return None; // RFC 2046 §5.1.1: 1 to 70 characters
        }
        let mut parts = Vec::new();
        // The delimiter that opens the part being read: its span start and
        // the end of its line.
        let mut open: Option<(usize, usize)> = None;
        let mut from = 0;
        loop {
            let d = find_delimiter(body, boundary, from)?;
            if let Some((start, content_start)) = open {
                let region = body.get(content_start..d.start)?;
                let (headers, content) = split_part(region)?;
                parts.push(Part {
                    span: (start, d.start),
                    headers,
                    content,
                });
            }
            if d.close {
                return Some(Self { body, parts });
            }
            open = Some((d.start, d.line_end));
            from = d.line_end;
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part<'a>] {
        &self.parts
    }

    /// The body again without the parts `drop` picks, every other byte as
    /// it was; `None` if that leaves no part.
    pub fn without(&self, drop: impl Fn(&Part<'a>) -> bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.body.len());
        let mut pos = 0;
        let mut kept = 0;
        for p in &self.parts {
            if !drop(p) {
                kept += 1;
                continue;
            }
            let (start, mut end) = p.span;
            if start == 0 && !self.body.starts_with(b"\r\n") {
                // The first delimiter has no CRLF before it; the next one
                // gives up its CRLF to take its place at the start.
                end += 2;
            }
            // After a first part that gave up the next delimiter's CRLF,
            // `pos` may be past the start of the next part dropped.
            out.extend_from_slice(self.body.get(pos..start).unwrap_or_default());
            pos = pos.max(end);
        }
        if kept == 0 {
            return None;
        }
        out.extend_from_slice(self.body.get(pos..).unwrap_or_default());
        Some(out)
    }
}

/// A delimiter line: where its span starts (at its CRLF, or at `--` at the
/// start of the body), where its line ends, and whether it closes the body.
struct Delimiter {
    start: usize,
    line_end: usize,
    close: bool,
}

/// The first delimiter of `boundary` at or after `from`: `--boundary` at
/// the start of the body or after a CRLF, followed by `--` (the close) or
/// by optional white space and CRLF.
fn find_delimiter(body: &[u8], boundary: &[u8], from: usize) -> Option<Delimiter> {
    let mut at = from;
    loop {
        let rest = body.get(at..)?;
        let dash = at + memchr::memmem::find(rest, b"--")?;
        let next = dash + 2;
        let line_start = dash == 0 || body.get(dash.saturating_sub(2)..dash) == Some(b"\r\n");
        let named = body
            .get(next..next + boundary.len())
            .is_some_and(|b| b == boundary);
        if line_start && named {
            let after = next + boundary.len();
            let start = if dash == 0 { 0 } else { dash - 2 };
            if body.get(after..after + 2) == Some(b"--") {
                return Some(Delimiter {
                    start,
                    line_end: after + 2,
                    close: true,
                });
            }
            let pad = body
                .get(after..)?
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            if body.get(after + pad..after + pad + 2) == Some(b"\r\n") {
                return Some(Delimiter {
                    start,
                    line_end: after + pad + 2,
                    close: false,
                });
            }
        }
        at = dash + 1;
    }
}

/// A part's headers and content: the headers end at the first empty line;
/// a part starting with CRLF has none.
fn split_part(region: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(content) = region.strip_prefix(b"\r\n") {
        return Some((&[], content));
    }
    let end = memchr::memmem::find(region, b"\r\n\r\n")?;
    Some((region.get(..end)?, region.get(end + 4..)?))
}

/// Header lines, with folded continuation lines joined to the line they
/// continue (as one slice running over the fold).
fn lines(headers: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = headers;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        loop {
            match memchr::memmem::find(rest.get(end..)?, b"\r\n") {
                Some(i) => {
                    end += i;
                    if matches!(rest.get(end + 2), Some(b' ' | b'\t')) {
                        end += 2;
                        continue;
                    }
                    let line = rest.get(..end)?;
                    rest = rest.get(end + 2..).unwrap_or_default();
                    return Some(line);
                }
                None => {
                    let line = rest;
                    rest = &[];
                    return Some(line);
                }
            }
        }
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "Content-Type: application/sdp\r\n\r\nv=0\r\n";
    const PIDF: &str =
        "Content-Type: application/pidf+xml\r\nContent-ID: <loc@caller>\r\n\r\n<presence/>";

    fn body(parts: &[&str]) -> String {
        let mut b = String::new();
        for p in parts {
            b += "--b1\r\n";
            b += p;
            b += "\r\n";
        }
        b + "--b1--\r\n"
    }

    #[test]
    fn parts_and_their_types() {
        let text = body(&[SDP, PIDF]);
        let m = Multipart::parse(text.as_bytes(), b"b1").unwrap();
        assert_eq!(m.parts().len(), 2);
        assert!(m.parts()[0].is("application", "sdp"));
        assert_eq!(m.parts()[0].content, b"v=0\r\n");
        assert!(m.parts()[1].is("APPLICATION", "PIDF+XML"));
        assert_eq!(m.parts()[1].content, b"<presence/>");
    }

    #[test]
    fn without_a_part_every_other_byte_stays() {
        let pidf = |p: &Part<'_>| p.is("application", "pidf+xml");
        let text = body(&[SDP, PIDF]);
        let m = Multipart::parse(text.as_bytes(), b"b1").unwrap();
        assert_eq!(m.without(pidf).unwrap(), body(&[SDP]).as_bytes());
        // The first part.
        let text = body(&[PIDF, SDP]);
        let m = Multipart::parse(text.as_bytes(), b"b1").unwrap();
        assert_eq!(m.without(pidf).unwrap(), body(&[SDP]).as_bytes());
        // With a preamble and an epilogue.
        let text = format!("preamble\r\n{}epilogue", body(&[SDP, PIDF, SDP]));
        let m = Multipart::parse(text.as_bytes(), b"b1").unwrap();
        assert_eq!(
            String::from_utf8(m.without(pidf).unwrap()).unwrap(),
            format!("preamble\r\n{}epilogue", body(&[SDP, SDP]))
        );
        // Two in a row, at the start.
        let text = body(&[PIDF, PIDF, SDP]);
        let m = Multipart::parse(text.as_bytes(), b"b1").unwrap();
        assert_eq!(
            String::from_utf8(m.without(pidf).unwrap()).unwrap(),
            format!("\r\n{}", body(&[SDP]))
        );
        // Nothing left.
        let text = body(&[PIDF]);
        let m = Multipart::parse(text.as_bytes(), b"b1").unwrap();
        assert_eq!(m.without(pidf), None);
    }

    #[test]
    fn malformed_bodies_are_none() {
        assert!(Multipart::parse(b"no delimiter", b"b1").is_none());
        assert!(Multipart::parse(b"--b1\r\nContent-Type: a/b\r\n\r\nx", b"b1").is_none());
        assert!(Multipart::parse(b"--b1\r\nContent-Type: a/b\r\nx\r\n--b1--", b"b1").is_none());
        assert!(Multipart::parse(b"--b1--", b"").is_none());
        // A longer boundary that starts with this one is not a delimiter.
        assert!(Multipart::parse(b"--b12\r\n\r\nx\r\n--b12--", b"b1").is_none());
        // A part without headers.
        let m = Multipart::parse(b"--b1\r\n\r\nx\r\n--b1--", b"b1").unwrap();
        assert_eq!(m.parts()[0].content, b"x");
        assert_eq!(m.parts()[0].content_type(), None);
    }
}
