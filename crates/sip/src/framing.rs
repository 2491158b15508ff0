//! Cutting messages out of a byte stream (TCP, TLS): RFC 3261 §18.3.
//!
//! A stream message must carry Content-Length; the framer finds the end of the
//! header section, reads Content-Length, and waits for that many body octets.
//! CRLFs between messages are skipped; a double CRLF at a message boundary is
//! reported as an RFC 5626 keep-alive ping (answer it with a single CRLF).
//! Any framing error is final: the stream can no longer be trusted, and the
//! connection must be closed.

use bytes::{Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::header::{scan_header, HeaderName, Scanned};
use crate::scan::parse_u32;

/// Default cap on one framed message.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// What [`StreamFramer::next_frame`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (start line through body), ready for
    /// [`Message::parse`](crate::Message::parse).
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping between messages.
    KeepAlive,
}

/// Incremental stream framer. Feed bytes with [`extend`](Self::extend), take
/// frames with [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_message: usize,
    /// How far the search for the end of the header section has looked.
    scanned: usize,
    /// Total length of the message at the front, once its headers are complete.
    pending: Option<usize>,
    failed: Option<Error>,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl StreamFramer {
    /// A framer that refuses messages longer than `max_message` octets (413).
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_message,
            scanned: 0,
            pending: None,
            failed: None,
        }
    }

    /// Append received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Octets buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether part of a message is buffered: an octet other than the CR
    /// and LF allowed between messages. Line ends alone — a keep-alive
    /// (RFC 5626) still arriving — are not a message. A reader that bounds
    /// how long a message may take to arrive (against a peer sending a
    /// byte at a time) asks this after [`next_frame`](Self::next_frame)
    /// returned `Ok(None)`.
    pub fn in_message(&self) -> bool {
        self.pending.is_some()
            || self.scanned > 0
            || self.buf.iter().any(|&b| b != b'\r' && b != b'\n')
    }

    /// The next frame, `Ok(None)` if more bytes are needed, or the (final)
    /// framing error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.frame();
        if let Err(e) = r {
            self.failed = Some(e);
            self.buf = BytesMut::new();
        }
        r
    }

    fn frame(&mut self) -> Result<Option<Frame>, Error> {
        while self.pending.is_none() && self.scanned == 0 {
            // Between messages: keep-alives and stray line ends.
            match &self.buf[..] {
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    let _ = self.buf.split_to(4);
                    return Ok(Some(Frame::KeepAlive));
                }
                [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return Ok(None),
                [b'\r', b'\n', ..] => {
                    let _ = self.buf.split_to(2);
                }
                [b'\n', ..] => {
                    let _ = self.buf.split_to(1);
                }
                _ => break,
            }
        }
        let total = match self.pending {
            Some(t) => t,
            None => {
                let from = self.scanned.saturating_sub(3);
                let Some(at) = memchr::memmem::find(&self.buf[from..], b"\r\n\r\n") else {
                    self.scanned = self.buf.len();
                    if self.buf.len() > self.max_message {
                        return Err(Error::new(ErrorKind::TooLarge, self.max_message));
                    }
                    return Ok(None);
                };
                let body_start = from + at + 4;
                let cl = content_length(&self.buf[..body_start])?;
                let total = body_start + cl as usize;
                if total > self.max_message {
                    return Err(Error::new(ErrorKind::TooLarge, self.max_message));
                }
                self.pending = Some(total);
                total
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// The Content-Length of a complete header block (start line through the
/// empty line), checked for duplicates and form.
fn content_length(head: &[u8]) -> Result<u32, Error> {
    let line_end =
        memchr::memmem::find(head, b"\r\n").ok_or(Error::new(ErrorKind::Unterminated, 0))?;
    let mut pos = line_end + 2;
    let mut found = None;
    loop {
        match scan_header(head, pos)? {
            Scanned::End(_) => break,
            // A control character in a value does not change the framing;
            // validation refuses the message once it is cut.
            Scanned::Header(h, _) => {
                if h.name == HeaderName::ContentLength {
                    if found.is_some() {
                        return Err(Error::new(
                            ErrorKind::DuplicateHeader(HeaderName::ContentLength),
                            h.line_start,
                        ));
                    }
                    found = Some(
                        parse_u32(h.value, u32::MAX)
                            .ok_or(Error::new(ErrorKind::BadContentLength, h.value_offset))?,
                    );
                }
                pos = h.line_end;
            }
        }
    }
    found.ok_or(Error::new(ErrorKind::MissingContentLength, line_end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";
    const B: &[u8] = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";

    fn drain(f: &mut StreamFramer) -> Result<Vec<Frame>, Error> {
        let mut out = vec![];
        while let Some(fr) = f.next_frame()? {
            out.push(fr);
        }
        Ok(out)
    }

    #[test]
    fn frames_and_keepalives() {
        let mut f = StreamFramer::default();
        f.extend(b"\r\n\r\n");
        f.extend(A);
        f.extend(b"\r\n");
        f.extend(B);
        let frames = drain(&mut f).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::KeepAlive,
                Frame::Message(Bytes::from_static(A)),
                Frame::Message(Bytes::from_static(B))
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn byte_at_a_time() {
        let mut f = StreamFramer::default();
        let mut got = vec![];
        for &b in A.iter().chain(B) {
            f.extend(&[b]);
            got.extend(drain(&mut f).unwrap());
        }
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn in_message_only_once_a_message_has_begun() {
        let mut f = StreamFramer::default();
        assert!(!f.in_message());
        // A keep-alive arriving a byte at a time is not a message.
        for b in b"\r\n\r" {
            f.extend(&[*b]);
            assert_eq!(drain(&mut f).unwrap(), vec![]);
            assert!(!f.in_message());
        }
        f.extend(b"\n");
        assert_eq!(drain(&mut f).unwrap(), vec![Frame::KeepAlive]);
        assert!(!f.in_message());
        // Its first octet starts one, until its last.
        for (i, &b) in A.iter().enumerate() {
            f.extend(&[b]);
            let frames = drain(&mut f).unwrap();
            assert_eq!(f.in_message(), i + 1 < A.len(), "after {} octets", i + 1);
            assert_eq!(frames.len(), usize::from(i + 1 == A.len()));
        }
        // Line ends after it are not part of the next.
        f.extend(b"\r\n");
        assert_eq!(drain(&mut f).unwrap(), vec![]);
        assert!(!f.in_message());
        f.extend(&B[..1]);
        assert!(f.in_message(), "before next_frame too");
    }

    #[test]
    fn errors_are_final() {
        let mut f = StreamFramer::default();
        f.extend(b"INVITE sip:a SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nxx");
        assert!(f.next_frame().is_err());
        f.extend(A);
        assert!(f.next_frame().is_err());

        let mut f = StreamFramer::default();
        f.extend(b"INVITE sip:a SIP/2.0\r\nTo: x\r\n\r\n");
        assert_eq!(
            f.next_frame().unwrap_err().kind(),
            ErrorKind::MissingContentLength
        );

        let mut f = StreamFramer::new(100);
        f.extend(&[b'a'; 101]);
        assert_eq!(f.next_frame().unwrap_err().kind(), ErrorKind::TooLarge);

        let mut f = StreamFramer::new(100);
        f.extend(b"INVITE sip:a SIP/2.0\r\nl: 1000\r\n\r\n");
        assert_eq!(f.next_frame().unwrap_err().kind(), ErrorKind::TooLarge);
    }
}
