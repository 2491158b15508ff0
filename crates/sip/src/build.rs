//! Writing new messages: requests a proxy originates (OPTIONS probes, CANCEL,
//! ACK for a non-2xx) and responses it generates (100 Trying, 400, 483, 503).
//!
//! Responses copy Via, From, To, Call-ID and CSeq from the request byte for
//! byte (RFC 3261 §8.2.6.2), so they match the client's transaction whatever
//! its formatting.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::header::HeaderName;
use crate::message::Message;

/// Builds one message: a start line, headers, then a body with its
/// Content-Length.
#[derive(Debug)]
pub struct MessageWriter {
    buf: BytesMut,
}

fn check(value: &[u8]) -> Result<(), Error> {
    // A value may hold a fold (CRLF followed by SP/HT) copied from the wire,
    // but never a line end that would start a new header.
    let mut i = 0;
    while let Some(off) = memchr::memchr2(b'\r', b'\n', value.get(i..).unwrap_or_default()) {
        let at = i + off;
        let folded = value.get(at..at + 2) == Some(b"\r\n")
            && matches!(value.get(at + 2), Some(b' ' | b'\t'));
        if !folded {
            return Err(Error::new(ErrorKind::BareLineEnd, at));
        }
        i = at + 3;
    }
    Ok(())
}

impl MessageWriter {
    /// Start a request: `METHOD uri SIP/2.0`.
    pub fn request(method: &str, uri: &[u8]) -> Result<Self, Error> {
        if method.is_empty() || !method.bytes().all(crate::scan::is_token) {
            return Err(Error::new(ErrorKind::BadStartLine, 0));
        }
        if uri.is_empty() || uri.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(Error::new(ErrorKind::BadRequestUri, method.len() + 1));
        }
        let mut buf = BytesMut::with_capacity(512);
        buf.put_slice(method.as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(uri);
        buf.put_slice(b" SIP/2.0\r\n");
        Ok(Self { buf })
    }

    /// Start a response: `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> Result<Self, Error> {
        if !(100..=699).contains(&code) {
            return Err(Error::new(ErrorKind::BadStatusCode, 8));
        }
        check(reason.as_bytes())?;
        let mut buf = BytesMut::with_capacity(512);
        buf.put_slice(b"SIP/2.0 ");
        let digits = [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ];
        buf.put_slice(&digits);
        buf.put_u8(b' ');
        buf.put_slice(reason.as_bytes());
        buf.put_slice(b"\r\n");
        Ok(Self { buf })
    }

    /// A response to `req` (RFC 3261 §8.2.6): every Via, From, To, Call-ID and
    /// CSeq copied as received, a To tag added if the request's To has none and
    /// `to_tag` is given (any response but 100), and `Content-Length: 0` unless
    /// a body is added with [`finish_with_body`](Self::finish_with_body).
    pub fn response_to(
        req: &Message,
        code: u16,
        reason: &str,
        to_tag: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let mut w = Self::response(code, reason)?;
        for h in req.headers() {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    w.raw_header(h.raw_name, h.value)?;
                }
                HeaderName::To => {
                    let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
                    match to_tag {
                        Some(tag) if !has_tag && code != 100 => {
                            check(tag)?;
                            w.buf.put_slice(h.raw_name);
                            w.buf.put_slice(b": ");
                            w.buf.put_slice(h.value);
                            w.buf.put_slice(b";tag=");
                            w.buf.put_slice(tag);
                            w.buf.put_slice(b"\r\n");
                        }
                        _ => {
                            w.raw_header(h.raw_name, h.value)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(w)
    }

    /// A UAS's response that may establish a dialog (RFC 3261 §12.1.1):
    /// [`response_to`](Self::response_to) with `to_tag`, and, for 101 to
    /// 299 (an early or confirmed dialog), every Record-Route of the
    /// request copied in order and `contact` (the whole value, such as
    /// `<sip:uas@192.0.2.1:5060>`) as the Contact. Any other status is a
    /// plain [`response_to`](Self::response_to).
    pub fn dialog_response_to(
        req: &Message,
        code: u16,
        reason: &str,
        to_tag: &[u8],
        contact: &[u8],
    ) -> Result<Self, Error> {
        let mut w = Self::response_to(req, code, reason, Some(to_tag))?;
        if (101..300).contains(&code) {
            for h in req.headers().filter(|h| h.name == HeaderName::RecordRoute) {
                w.raw_header(h.raw_name, h.value)?;
            }
            w.header(HeaderName::Contact, contact)?;
        }
        Ok(w)
    }

    /// Add a header.
    pub fn header(&mut self, name: HeaderName, value: &[u8]) -> Result<&mut Self, Error> {
        self.raw_header(name.as_str().as_bytes(), value)
    }

    /// Add a header with a name of your own (an extension header).
    pub fn raw_header(&mut self, name: &[u8], value: &[u8]) -> Result<&mut Self, Error> {
        if name.is_empty() || !name.iter().all(|&b| crate::scan::is_token(b)) {
            return Err(Error::new(ErrorKind::BadHeaderName, self.buf.len()));
        }
        check(value)?;
        self.buf.put_slice(name);
        self.buf.put_slice(b": ");
        self.buf.put_slice(value);
        self.buf.put_slice(b"\r\n");
        Ok(self)
    }

    /// Finish with no body (`Content-Length: 0`).
    pub fn finish(self) -> Bytes {
        self.finish_with_body(None, b"")
    }

    /// Finish with a body of the given Content-Type.
    pub fn finish_with_body(mut self, content_type: Option<&str>, body: &[u8]) -> Bytes {
        if let Some(ct) = content_type.filter(|ct| check(ct.as_bytes()).is_ok()) {
            self.buf.put_slice(b"Content-Type: ");
            self.buf.put_slice(ct.as_bytes());
            self.buf.put_slice(b"\r\n");
        }
        self.buf.put_slice(b"Content-Length: ");
        let mut n = body.len();
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.put_slice(&digits[i..]);
        self.buf.put_slice(b"\r\n\r\n");
        self.buf.put_slice(body);
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    #[test]
    fn options_probe_parses_and_validates() {
        let mut w = MessageWriter::request("OPTIONS", b"sip:192.0.2.10:5060").unwrap();
        w.header(
            HeaderName::Via,
            b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKp1",
        )
        .unwrap();
        w.header(HeaderName::MaxForwards, b"70").unwrap();
        w.header(HeaderName::From, b"<sip:lifeline@192.0.2.1>;tag=t1")
            .unwrap();
        w.header(HeaderName::To, b"<sip:192.0.2.10:5060>").unwrap();
        w.header(HeaderName::CallId, b"probe-1@192.0.2.1").unwrap();
        w.header(HeaderName::CSeq, b"1 OPTIONS").unwrap();
        let m = Message::parse(w.finish()).unwrap();
        validate(&m).unwrap();
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKp1"[..]));
        assert_eq!(m.content_length(), Some(0));
    }

    #[test]
    fn response_copies_transaction_headers() {
        let req = Message::parse(Bytes::from_static(
            b"INVITE sip:999@gw SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nf: <sip:c@x>;tag=9\r\nt: <sip:999@gw>\r\ni: abc\r\nCSeq: 4 INVITE\r\nGeolocation: <cid:x>\r\n\r\n",
        ))
        .unwrap();
        let mut w =
            MessageWriter::response_to(&req, 503, "Service Unavailable", Some(b"gw1")).unwrap();
        w.header(HeaderName::RetryAfter, b"5").unwrap();
        let bytes = w.finish();
        let expected = "SIP/2.0 503 Service Unavailable\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nf: <sip:c@x>;tag=9\r\nt: <sip:999@gw>;tag=gw1\r\ni: abc\r\nCSeq: 4 INVITE\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
        let resp = Message::parse(bytes).unwrap();
        validate(&resp).unwrap();
        let trying = MessageWriter::response_to(&req, 100, "Trying", Some(b"gw1"))
            .unwrap()
            .finish();
        assert!(!String::from_utf8_lossy(&trying).contains("tag=gw1"));
    }

    #[test]
    fn dialog_response_copies_record_route_in_order_and_adds_contact() {
        let req = Message::parse(Bytes::from_static(
            b"INVITE sip:999@psap SIP/2.0\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bK1\r\nRecord-Route: <sip:gw2;lr>\r\nRecord-Route: <sip:gw1;lr;ftag=x>\r\nFrom: <sip:c@x>;tag=9\r\nTo: <sip:999@psap>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n",
        ))
        .unwrap();
        let ok = MessageWriter::dialog_response_to(&req, 200, "OK", b"uas", b"<sip:uas@psap>")
            .unwrap()
            .finish();
        let expected = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP gw;branch=z9hG4bK1\r\nFrom: <sip:c@x>;tag=9\r\nTo: <sip:999@psap>;tag=uas\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\nRecord-Route: <sip:gw2;lr>\r\nRecord-Route: <sip:gw1;lr;ftag=x>\r\nContact: <sip:uas@psap>\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(String::from_utf8_lossy(&ok), expected);
        validate(&Message::parse(ok).unwrap()).unwrap();
        // 180 makes an early dialog: the same; 100 and a failure do not.
        let ringing = MessageWriter::dialog_response_to(&req, 180, "Ringing", b"uas", b"<sip:u>")
            .unwrap()
            .finish();
        assert!(String::from_utf8_lossy(&ringing).contains("Contact: <sip:u>"));
        for code in [100, 486] {
            let r = MessageWriter::dialog_response_to(&req, code, "X", b"uas", b"<sip:u>")
                .unwrap()
                .finish();
            let text = String::from_utf8_lossy(&r).into_owned();
            assert!(
                !text.contains("Record-Route") && !text.contains("Contact"),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_injection() {
        assert!(MessageWriter::request("OPTIONS", b"sip:a b").is_err());
        assert!(MessageWriter::request("OPT IONS", b"sip:a").is_err());
        let mut w = MessageWriter::request("OPTIONS", b"sip:a").unwrap();
        assert!(w.header(HeaderName::Subject, b"x\r\nEvil: 1").is_err());
        assert!(w.header(HeaderName::Subject, b"folded\r\n value").is_ok());
        assert!(w.raw_header(b"Bad Name", b"x").is_err());
        assert!(MessageWriter::response(700, "x").is_err());
    }
}
