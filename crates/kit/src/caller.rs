//! A UAC: the requests of one call ([`Call`]) and a blocking UDP caller
//! placing them through a gateway ([`Caller`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_sip::{HeaderName, Message, MessageWriter};

/// One call at a UAC: its identity, and the requests of its transaction
/// and dialog, as text ready to send.
#[derive(Clone, Debug)]
pub struct Call {
    /// Where the caller is (its Via and Contact).
    pub me: SocketAddr,
    pub call_id: String,
    /// The Request-URI and To of the INVITE (`sip:999@gw`,
    /// `urn:service:sos`).
    pub uri: String,
    /// The caller's number (E.164, `+441632960nnn`).
    pub number: String,
    /// The From, with its tag.
    pub from: String,
    /// Extra header lines of the INVITE, each ending in CRLF.
    extra: String,
    body: Option<(String, String)>,
}

impl Call {
    /// Call `call_id` from `me` to `uri`, from a caller whose number ends
    /// in `n`.
    pub fn new(me: SocketAddr, call_id: impl Into<String>, uri: &str, n: u32) -> Call {
        let number = format!("+441632960{:03}", n % 1000);
        Call {
            me,
            from: format!("\"Caller\" <sip:{number}@orig.example>;tag=c{n}"),
            number,
            call_id: call_id.into(),
            uri: uri.into(),
            extra: String::new(),
            body: None,
        }
    }

    /// Add a header line to the INVITE.
    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.extra += &format!("{name}: {value}\r\n");
        self
    }

    /// The caller's asserted identity (RFC 3325) and a location by
    /// reference (RFC 6442), as an originating network sends them.
    pub fn with_identity(self) -> Call {
        let pai = format!("<tel:{}>", self.number);
        self.header("P-Asserted-Identity", &pai)
            .header("Geolocation", "<cid:loc@orig.example>")
    }

    /// Give the INVITE a body.
    pub fn body(mut self, content_type: &str, body: &str) -> Call {
        self.body = Some((content_type.into(), body.into()));
        self
    }

    /// A branch of this call's (a token: the Call-ID's other characters
    /// become `-`).
    fn branch(&self, what: &str) -> String {
        let id: String = self
            .call_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("z9hG4bK{what}-{id}")
    }

    /// The INVITE.
    pub fn invite(&self) -> String {
        let (me, uri, id) = (self.me, &self.uri, &self.call_id);
        let head = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <{uri}>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n{}",
            self.branch("i"),
            self.from,
            self.extra
        );
        match &self.body {
            Some((ct, body)) => format!(
                "{head}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            None => format!("{head}Content-Length: 0\r\n\r\n"),
        }
    }

    /// The CANCEL of the INVITE (RFC 3261 §9.1: its Via branch, CSeq 1).
    pub fn cancel(&self) -> String {
        let (me, uri, id) = (self.me, &self.uri, &self.call_id);
        format!(
            "CANCEL {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <{uri}>\r\nCall-ID: {id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            self.branch("i"),
            self.from
        )
    }

    /// The ACK for a final response to the INVITE: for a 2xx a request of
    /// the dialog it set up (RFC 3261 §13.2.2.4), for any other the ACK of
    /// the INVITE transaction (§17.1.1.3: its branch, the response's To).
    pub fn ack(&self, resp: &Message) -> String {
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            return self.in_dialog("ACK", 1, resp);
        }
        let (me, uri, id) = (self.me, &self.uri, &self.call_id);
        format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            self.branch("i"),
            self.from,
            value(resp, HeaderName::To)
        )
    }

    /// The BYE of the dialog a 2xx set up.
    pub fn bye(&self, ok: &Message) -> String {
        self.in_dialog("BYE", 2, ok)
    }

    /// A request in the dialog of `ok` (RFC 3261 §12.1.2, §12.2.1.1): the
    /// route set is the Record-Route reversed, the target its Contact, the
    /// To its To with the remote tag.
    fn in_dialog(&self, method: &str, cseq: u32, ok: &Message) -> String {
        let mut route: Vec<String> = ok
            .headers()
            .filter(|h| h.name == HeaderName::RecordRoute)
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect();
        route.reverse();
        let route = if route.is_empty() {
            String::new()
        } else {
            format!("Route: {}\r\n", route.join(", "))
        };
        let contact = value(ok, HeaderName::Contact);
        let target = contact
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map_or(contact.as_str(), |(t, _)| t);
        let target = if target.is_empty() {
            self.uri.as_str()
        } else {
            target
        };
        let (me, id) = (self.me, &self.call_id);
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={}\r\nMax-Forwards: 70\r\n{route}From: {}\r\nTo: {}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.branch(&method.to_ascii_lowercase()),
            self.from,
            value(ok, HeaderName::To)
        )
    }
}

/// A header's value as text ("" when absent).
fn value(m: &Message, name: HeaderName) -> String {
    m.header(name)
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .unwrap_or_default()
}

/// Every header but those each hop may rewrite (Via, Max-Forwards,
/// Record-Route), as (name as written, value), in order: what a proxy must
/// pass on byte for byte.
pub fn end_to_end_headers(m: &Message) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.headers()
        .filter(|h| {
            !matches!(
                h.name,
                HeaderName::Via | HeaderName::MaxForwards | HeaderName::RecordRoute
            )
        })
        .map(|h| (h.raw_name.to_vec(), h.value.to_vec()))
        .collect()
}

/// What a caller saw of one call.
#[derive(Clone, Debug)]
pub struct Final {
    pub call_id: String,
    /// The INVITE's final status.
    pub status: u16,
    /// When the caller got it.
    pub at: Instant,
}

/// A caller on a loopback UDP socket, placing calls through a gateway: it
/// ACKs every final response, ends each answered call with a BYE, and
/// answers what the far side sends (a BYE) with 200. Nothing is
/// retransmitted: on loopback nothing is lost.
#[derive(Debug)]
pub struct Caller {
    sock: UdpSocket,
    gw: SocketAddr,
    prefix: String,
    n: u32,
    hang_up: bool,
    identities: bool,
    calls: Vec<Call>,
    finals: Vec<Final>,
}

impl Caller {
    /// A caller on 127.0.0.1 to the gateway at `gw`; Call-IDs start with
    /// `prefix`.
    pub fn new(gw: SocketAddr, prefix: &str) -> Caller {
        Caller::from_ip(Ipv4Addr::LOCALHOST.into(), gw, prefix)
    }

    /// A caller on a loopback address of its own (`127.0.0.77`: any
    /// address of 127.0.0.0/8 on Linux), for tests of who may call.
    pub fn from_ip(ip: IpAddr, gw: SocketAddr, prefix: &str) -> Caller {
        let sock = UdpSocket::bind((ip, 0)).expect("a loopback socket");
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .expect("a read timeout");
        Caller {
            sock,
            gw,
            prefix: prefix.into(),
            n: 0,
            hang_up: true,
            identities: false,
            calls: Vec::new(),
            finals: Vec::new(),
        }
    }

    /// Leave answered calls up (no BYE).
    pub fn keep_calls_up(mut self) -> Caller {
        self.hang_up = false;
        self
    }

    /// Give every call an asserted identity and a location
    /// ([`Call::with_identity`]).
    pub fn with_identities(mut self) -> Caller {
        self.identities = true;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("a bound socket")
    }

    /// The next call to `uri`, not yet placed.
    pub fn next_call(&mut self, uri: &str) -> Call {
        self.n += 1;
        let me = self.addr();
        let id = format!("{}-{}-{}@{}", self.prefix, me.port(), self.n, me.ip());
        let call = Call::new(me, id, uri, self.n);
        if self.identities {
            call.with_identity()
        } else {
            call
        }
    }

    /// Place `call` (send its INVITE); its Call-ID.
    pub fn place(&mut self, call: Call) -> String {
        self.send(&call.invite());
        let id = call.call_id.clone();
        self.calls.push(call);
        id
    }

    /// Place the next call to `uri`; its Call-ID.
    pub fn invite(&mut self, uri: &str) -> String {
        let call = self.next_call(uri);
        self.place(call)
    }

    /// Send `text` to the gateway.
    pub fn send(&self, text: &str) {
        let _ = self.sock.send_to(text.as_bytes(), self.gw);
    }

    /// Every final status seen so far, in arrival order (first per call).
    pub fn finals(&self) -> &[Final] {
        &self.finals
    }

    /// The final status of `call_id`, if it came.
    pub fn final_of(&self, call_id: &str) -> Option<u16> {
        self.finals
            .iter()
            .find(|f| f.call_id == call_id)
            .map(|f| f.status)
    }

    /// Handle what arrives for up to `wait`; return early with the final
    /// status of `want` when it comes.
    pub fn pump(&mut self, wait: Duration, want: Option<&str>) -> Option<u16> {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                continue;
            };
            let Some(status) = m.status() else {
                // A request from the far side (a BYE): 200, but no answer
                // to an ACK.
                if m.method_bytes() != Some(b"ACK") {
                    if let Ok(w) = MessageWriter::response_to(&m, 200, "OK", Some(b"caller")) {
                        let _ = self.sock.send_to(&w.finish(), self.gw);
                    }
                }
                continue;
            };
            let to_invite = m.cseq().is_ok_and(|c| c.method == b"INVITE");
            let id = String::from_utf8_lossy(m.call_id().unwrap_or_default()).into_owned();
            if !to_invite || status < 200 {
                continue;
            }
            if let Some(call) = self.calls.iter().find(|c| c.call_id == id) {
                self.send(&call.ack(&m));
                if status < 300 && self.hang_up {
                    self.send(&call.bye(&m));
                }
            }
            if !self.finals.iter().any(|f| f.call_id == id) {
                self.finals.push(Final {
                    call_id: id.clone(),
                    status,
                    at: Instant::now(),
                });
            }
            if want == Some(id.as_str()) {
                return Some(status);
            }
        }
        want.and_then(|w| self.final_of(w))
    }

    /// One call to `uri`, waiting up to 10 s for its final status.
    pub fn call(&mut self, uri: &str) -> Option<u16> {
        let id = self.invite(uri);
        self.pump(Duration::from_secs(10), Some(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialog_requests_follow_the_2xx() {
        let me = "127.0.0.1:4000".parse().unwrap();
        let call = Call::new(me, "k-1", "sip:999@gw", 7).header("Priority", "emergency");
        let invite = call.invite();
        assert!(invite.contains("Priority: emergency\r\n"));
        assert!(invite.contains("From: \"Caller\" <sip:+441632960007@orig.example>;tag=c7"));
        let with_id = call.clone().with_identity().invite();
        assert!(
            with_id.contains("P-Asserted-Identity: <tel:+441632960007>\r\n"),
            "{with_id}"
        );
        let ok = Message::parse(Bytes::from(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bKi-k-1\r\nRecord-Route: <sip:gw2;lr>\r\nRecord-Route: <sip:gw1;lr>\r\nFrom: \"Caller\" <sip:+441632960007@orig.example>;tag=c7\r\nTo: <sip:999@gw>;tag=far\r\nCall-ID: k-1\r\nCSeq: 1 INVITE\r\nContact: <sip:uas@192.0.2.9:5060>;expires=5\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let bye = call.bye(&ok);
        assert!(
            bye.starts_with("BYE sip:uas@192.0.2.9:5060 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("Route: <sip:gw1;lr>, <sip:gw2;lr>\r\n"),
            "reversed: {bye}"
        );
        assert!(bye.contains("To: <sip:999@gw>;tag=far\r\n"));
        assert!(bye.contains("CSeq: 2 BYE\r\n"));
        assert!(call.ack(&ok).contains("CSeq: 1 ACK\r\n"));
        let busy = Message::parse(Bytes::from(
            String::from_utf8(ok.as_bytes().to_vec())
                .unwrap()
                .replace("200 OK", "486 Busy Here"),
        ))
        .unwrap();
        let ack = call.ack(&busy);
        assert!(ack.starts_with("ACK sip:999@gw SIP/2.0\r\n"), "{ack}");
        assert!(
            ack.contains("branch=z9hG4bKi-k-1\r\n"),
            "the INVITE's branch: {ack}"
        );
    }
}
