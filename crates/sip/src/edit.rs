//! The edits a proxy makes when it forwards a message (RFC 3261 §16.6),
//! written as splices over the original bytes: every header the proxy does not
//! touch, and the body, leave byte for byte as they arrived. Caller identity
//! (From, P-Asserted-Identity), location (Geolocation, PIDF-LO bodies) and
//! priority (Resource-Priority) are therefore never re-serialised.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use crate::error::{Error, ErrorKind};
use crate::header::HeaderName;
use crate::message::Message;

#[derive(Clone, Copy, Debug)]
struct Splice {
    /// Delete `start..end` of the original...
    start: usize,
    end: usize,
    /// ...and write `arena[ins_start..ins_end]` in its place.
    ins_start: usize,
    ins_end: usize,
}

/// A set of edits to one message. Build it, then [`write_to`](Self::write_to)
/// or [`to_bytes`](Self::to_bytes). Each edit applies to the message as
/// received (popping the top Via and pushing a new one are independent).
///
/// Built for every message a proxy forwards, and short-lived: the edits
/// and the bytes they insert are kept inline (up to 8 edits and 256 bytes,
/// what forwarding a request or a response takes), so building one
/// allocates nothing.
#[derive(Debug)]
pub struct Edit<'m> {
    msg: &'m Message,
    /// Ordered by where they apply (`start`, then `end`); edits of the same
    /// place in the order they were made.
    splices: SmallVec<[Splice; 8]>,
    arena: SmallVec<[u8; 256]>,
    /// The body's length once edited, if [`Edit::set_body`] replaced it.
    body_len: Option<usize>,
}

fn check_value(v: &[u8], name: HeaderName) -> Result<(), Error> {
    match v.iter().position(|&b| b == b'\r' || b == b'\n' || b == 0) {
        Some(p) => Err(Error::new(ErrorKind::BadHeaderValue(name), p)),
        None if v.is_empty() => Err(Error::new(ErrorKind::BadHeaderValue(name), 0)),
        None => Ok(()),
    }
}

impl<'m> Edit<'m> {
    /// Start editing `msg`.
    pub fn new(msg: &'m Message) -> Self {
        Self {
            msg,
            splices: SmallVec::new(),
            arena: SmallVec::new(),
            body_len: None,
        }
    }

    fn splice(&mut self, start: usize, end: usize, parts: &[&[u8]]) {
        let ins_start = self.arena.len();
        for p in parts {
            self.arena.extend_from_slice(p);
        }
        let at = self
            .splices
            .partition_point(|s| (s.start, s.end) <= (start, end));
        self.splices.insert(
            at,
            Splice {
                start,
                end,
                ins_start,
                ins_end: self.arena.len(),
            },
        );
    }

    /// Add a Via value on top (`SIP/2.0/UDP gw.example.net;branch=z9hG4bK...`).
    pub fn push_via(&mut self, value: &[u8]) -> Result<&mut Self, Error> {
        check_value(value, HeaderName::Via)?;
        let at = self
            .msg
            .header(HeaderName::Via)
            .map_or(self.msg.header_section().0, |h| h.line_start);
        self.splice(at, at, &[b"Via: ", value, b"\r\n"]);
        Ok(self)
    }

    /// Append `params` (`;oc=20;oc-algo="loss"`, each with its leading
    /// `;`) to the top Via value's parameters: what a server tells the
    /// client that sent the request in the Via it returns (RFC 7339 §5.2).
    /// Nothing happens if the message has no top Via that parses.
    pub fn add_top_via_params(&mut self, params: &[u8]) -> Result<&mut Self, Error> {
        check_value(params, HeaderName::Via)?;
        if self.msg.top_via().is_err() {
            return Ok(self);
        }
        let Some(h) = self.msg.header(HeaderName::Via) else {
            return Ok(self);
        };
        if let Some((off, first)) = h.values().next() {
            let at = off + first.len();
            self.splice(at, at, &[params]);
        }
        Ok(self)
    }

    /// Remove the top Via value (a response leaving the proxy, §16.7 step 3).
    pub fn pop_via(&mut self) -> &mut Self {
        self.remove_first_value(HeaderName::Via)
    }

    /// Remove the top Route value (loose routing past this proxy, §16.4).
    pub fn remove_first_route(&mut self) -> &mut Self {
        self.remove_first_value(HeaderName::Route)
    }

    /// Add a Record-Route value on top (`<sip:gw.example.net;lr>`).
    pub fn add_record_route(&mut self, value: &[u8]) -> Result<&mut Self, Error> {
        check_value(value, HeaderName::RecordRoute)?;
        let at = self
            .msg
            .header(HeaderName::RecordRoute)
            .map_or(self.msg.header_section().1, |h| h.line_start);
        self.splice(at, at, &[b"Record-Route: ", value, b"\r\n"]);
        Ok(self)
    }

    /// Set Max-Forwards to `n`, adding the header if it is absent.
    pub fn set_max_forwards(&mut self, n: u8) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(n).as_bytes();
        match self.msg.header(HeaderName::MaxForwards) {
            Some(h) => {
                let v = h.value_offset;
                self.splice(v, v + h.value.len(), &[text]);
            }
            None => {
                let at = self.msg.header_section().1;
                self.splice(at, at, &[b"Max-Forwards: ", text, b"\r\n"]);
            }
        }
        self
    }

    /// §16.6 step 3: decrement Max-Forwards, or add `Max-Forwards: 70` if
    /// absent. A value that is already 0 is left alone: the proxy answers 483
    /// instead of forwarding, and an unparsable one was refused by validation.
    pub fn decrement_max_forwards(&mut self) -> &mut Self {
        match self.msg.max_forwards() {
            Ok(Some(0)) | Err(_) => self,
            Ok(Some(n)) => self.set_max_forwards(n - 1),
            Ok(None) => self.set_max_forwards(70),
        }
    }

    /// Replace the Request-URI (retargeting to a trunk).
    pub fn set_request_uri(&mut self, uri: &[u8]) -> Result<&mut Self, Error> {
        if uri.iter().any(|&b| b <= b' ' || b == 0x7f) || uri.is_empty() {
            return Err(Error::new(ErrorKind::BadRequestUri, 0));
        }
        if let Some(s) = self.msg.request_uri_span() {
            self.splice(s.start as usize, s.end as usize, &[uri]);
        }
        Ok(self)
    }

    /// Remove every header line whose name is one of `names`, in any case
    /// and in compact form (names are compared as [`HeaderName`]s;
    /// [`HeaderName::Other`] matches nothing), with its folded
    /// continuation lines. Every other byte stays as it was.
    pub fn remove_headers(&mut self, names: &[HeaderName]) -> &mut Self {
        let msg = self.msg;
        for h in msg.headers() {
            if h.name != HeaderName::Other && names.contains(&h.name) {
                self.splice(h.line_start, h.line_end, &[]);
            }
        }
        self
    }

    /// Replace the body with `body`, and the Content-Length value, if the
    /// message has one, with its length. Content-Type is left alone (remove
    /// it with [`Edit::remove_headers`] when the body goes).
    pub fn set_body(&mut self, body: &[u8]) -> &mut Self {
        let start = self.msg.body_offset();
        let end = start + self.msg.body().len();
        self.splice(start, end, &[body]);
        if let Some(h) = self.msg.header(HeaderName::ContentLength) {
            let mut digits = itoa::Buffer::new();
            let text = digits.format(body.len()).as_bytes();
            let v = h.value_offset;
            self.splice(v, v + h.value.len(), &[text]);
        }
        self.body_len = Some(body.len());
        self
    }

    /// Add Content-Length if the message has none (a UDP message without it
    /// must carry it on a stream transport).
    pub fn ensure_content_length(&mut self) -> &mut Self {
        if self.msg.content_length().is_none() {
            let mut digits = itoa::Buffer::new();
            let len = self.body_len.unwrap_or(self.msg.body().len());
            let text = digits.format(len).as_bytes();
            let at = self.msg.header_section().1;
            self.splice(at, at, &[b"Content-Length: ", text, b"\r\n"]);
        }
        self
    }

    fn remove_first_value(&mut self, name: HeaderName) -> &mut Self {
        let Some(h) = self.msg.header(name) else {
            return self;
        };
        let mut values = h.values();
        match (values.next(), values.next()) {
            (Some((first, _)), Some((second, _))) => self.splice(first, second, &[]),
            _ => self.splice(h.line_start, h.line_end, &[]),
        }
        self
    }

    /// Length of the edited message.
    pub fn len(&self) -> usize {
        let src = self.msg.as_bytes().len();
        self.splices.iter().fold(src, |n, s| {
            n + (s.ins_end - s.ins_start) - (s.end - s.start)
        })
    }

    /// Whether the edited message is empty (never, for a parsed message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append the edited message to `out`.
    pub fn write_to(&self, out: &mut impl BufMut) {
        let src: &[u8] = self.msg.as_bytes();
        let mut pos = 0;
        for s in &self.splices {
            if s.start < pos {
                // Overlapping edits of the same bytes: the first one wins.
                continue;
            }
            out.put_slice(src.get(pos..s.start).unwrap_or_default());
            out.put_slice(self.arena.get(s.ins_start..s.ins_end).unwrap_or_default());
            pos = s.end;
        }
        out.put_slice(src.get(pos..).unwrap_or_default());
    }

    /// The edited message as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        if self.splices.is_empty() {
            return self.msg.as_bytes().clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        self.write_to(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"INVITE sip:999@gw SIP/2.0\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
Route: <sip:gw;lr>\r\n\
Route: <sip:next;lr>\r\n\
Max-Forwards: 10\r\n\
Geolocation: <cid:loc@example.net>\r\n\
Content-Length: 2\r\n\
\r\nxy";

    #[test]
    fn proxy_edits() {
        let m = Message::parse(Bytes::from_static(MSG)).unwrap();
        let mut e = Edit::new(&m);
        e.push_via(b"SIP/2.0/UDP gw;branch=z9hG4bKgw").unwrap();
        e.remove_first_route().decrement_max_forwards();
        e.add_record_route(b"<sip:gw;lr>").unwrap();
        e.set_request_uri(b"sip:999@trunk").unwrap();
        let out = e.to_bytes();
        assert_eq!(out.len(), e.len());
        let expected = b"INVITE sip:999@trunk SIP/2.0\r\n\
Via: SIP/2.0/UDP gw;branch=z9hG4bKgw\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
Route: <sip:next;lr>\r\n\
Max-Forwards: 9\r\n\
Geolocation: <cid:loc@example.net>\r\n\
Content-Length: 2\r\n\
Record-Route: <sip:gw;lr>\r\n\
\r\nxy";
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn params_go_on_the_top_via_value_only() {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let m = Message::parse(Bytes::from_static(
            b"SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1;oc , SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\n\r\n",
        ))
        .unwrap();
        let out = Edit::new(&m)
            .add_top_via_params(b";oc=50;oc-algo=\"loss\"")
            .unwrap()
            .to_bytes();
        assert_eq!(
            text(&out),
            "SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1;oc;oc=50;oc-algo=\"loss\" , SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\n\r\n"
        );
        // A Via with no parameters at all, at the end of its line.
        let m = Message::parse(Bytes::from_static(
            b"SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP c:5060\r\n\r\n",
        ))
        .unwrap();
        let out = Edit::new(&m)
            .add_top_via_params(b";oc=1")
            .unwrap()
            .to_bytes();
        assert_eq!(
            text(&out),
            "SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP c:5060;oc=1\r\n\r\n"
        );
        assert!(Edit::new(&m).add_top_via_params(b";a\r\nX: y").is_err());
    }

    #[test]
    fn pop_from_a_list_and_add_missing() {
        let m = Message::parse(Bytes::from_static(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b\r\n\r\nbody",
        ))
        .unwrap();
        let out = Edit::new(&m)
            .pop_via()
            .ensure_content_length()
            .decrement_max_forwards()
            .to_bytes();
        assert_eq!(
            &out[..],
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP b\r\nContent-Length: 4\r\nMax-Forwards: 70\r\n\r\nbody"
        );
    }

    #[test]
    fn removed_headers_leave_every_other_byte_alone() {
        let text: &[u8] = b"INVITE sip:999@gw SIP/2.0\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
P-Asserted-Identity: <tel:+441632960999>\r\n\
From: <sip:a@b>;tag=1\r\n\
p-asserted-identity: <sip:forged@example.net>,\r\n <tel:+441632960998>\r\n\
To: <sip:999@gw>\r\n\
Call-ID: x\r\n\
CSeq: 1 INVITE\r\n\
P-Preferred-Identity: <sip:me@example.net>\r\n\
Resource-Priority : esnet.0\r\n\
Geolocation: <cid:loc@example.net>\r\n\
Content-Length: 2\r\n\
\r\nxy";
        let m = Message::parse(Bytes::from_static(text)).unwrap();
        let mut e = Edit::new(&m);
        e.remove_headers(&[
            HeaderName::PAssertedIdentity,
            HeaderName::PPreferredIdentity,
            HeaderName::ResourcePriority,
            HeaderName::Other,
        ]);
        let out = e.to_bytes();
        assert_eq!(out.len(), e.len());
        let expected: &[u8] = b"INVITE sip:999@gw SIP/2.0\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\n\
To: <sip:999@gw>\r\n\
Call-ID: x\r\n\
CSeq: 1 INVITE\r\n\
Geolocation: <cid:loc@example.net>\r\n\
Content-Length: 2\r\n\
\r\nxy";
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
        // Compact forms go too (Content-Type is `c`).
        let m = Message::parse(Bytes::from_static(
            b"MESSAGE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nc: text/plain\r\nl: 0\r\n\r\n",
        ))
        .unwrap();
        let out = Edit::new(&m)
            .remove_headers(&[HeaderName::ContentType])
            .to_bytes();
        assert_eq!(
            &out[..],
            b"MESSAGE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nl: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_new_body_and_its_length() {
        let m = Message::parse(Bytes::from_static(MSG)).unwrap();
        let out = Edit::new(&m).set_body(b"").to_bytes();
        let want = String::from_utf8_lossy(MSG)
            .replace("Content-Length: 2\r\n\r\nxy", "Content-Length: 0\r\n\r\n");
        assert_eq!(String::from_utf8_lossy(&out), want);
        // Without a Content-Length, one added for a stream says the new length.
        let m = Message::parse(Bytes::from_static(
            b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\nhello",
        ))
        .unwrap();
        let out = Edit::new(&m)
            .set_body(b"hi")
            .ensure_content_length()
            .to_bytes();
        assert_eq!(
            &out[..],
            b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn rejects_header_injection() {
        let m = Message::parse(Bytes::from_static(MSG)).unwrap();
        assert!(Edit::new(&m).push_via(b"x\r\nEvil: 1").is_err());
        assert!(Edit::new(&m).set_request_uri(b"sip:a b").is_err());
        assert_eq!(Edit::new(&m).to_bytes(), *m.as_bytes());
    }
}
