//! Control characters in header values (a NUL, DEL, ESC ...) through the
//! pure core: the request is answered 400 and never reaches a trunk, a
//! response carrying one is dropped, and HT, folds and a quoted-pair stay
//! allowed and are forwarded untouched.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::{Event, Peer, Proxy, Transmit};
use lifeline_sip::{HeaderName, Message, MessageWriter};
use support::{addr, one_trunk, CALLER, EMERGENCY_INVITE as INVITE, TRUNK};

/// The INVITE with `line` (a whole header line, CRLF included) added after
/// its CSeq.
fn invite_with(line: &[u8]) -> Bytes {
    let at = INVITE.find("Contact:").unwrap();
    let mut out = INVITE.as_bytes()[..at].to_vec();
    out.extend_from_slice(line);
    out.extend_from_slice(&INVITE.as_bytes()[at..]);
    Bytes::from(out)
}

fn transmits(p: &mut Proxy) -> Vec<Transmit> {
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

fn rejections(p: &mut Proxy) -> Vec<(Option<u16>, &'static str)> {
    std::iter::from_fn(|| p.poll_event())
        .filter_map(|e| match e {
            Event::Rejected { status, reason, .. } => Some((status, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_request_with_a_control_character_gets_400_and_goes_nowhere() {
    for line in [
        // The smuggling case: a stack that stops at the NUL reads a
        // Subject, and this proxy a Subject with more after it.
        &b"Subject: help\x00\r\n"[..],
        b"Subject: del\x7f\r\n",
        b"X-Unknown: \x1b[31mred\r\n",
        b"P-Asserted-Identity: <sip:+15555550123@carrier.example.net>\x00<sip:evil@example.net>\r\n",
        b"Subject: folded\r\n \x0c\r\n",
    ] {
        let t0 = Instant::now();
        let mut p = one_trunk(false);
        p.handle_message(t0, Peer::udp(addr(CALLER)), invite_with(line));
        let out = transmits(&mut p);
        assert!(
            out.iter().all(|t| t.peer.addr != addr(TRUNK)),
            "{line:?} reached the trunk"
        );
        assert_eq!(out.len(), 1, "{line:?}: one answer");
        assert_eq!(out[0].peer.addr, addr(CALLER));
        let answer = Message::parse(out[0].payload.clone()).unwrap();
        assert_eq!(answer.status(), Some(400), "{line:?}");
        assert_eq!(answer.reason(), Some(&b"Bad Request"[..]));
        // It answers the caller's transaction.
        let req = Message::parse(invite_with(line)).unwrap();
        assert_eq!(answer.call_id(), req.call_id());
        assert_eq!(
            answer.top_via().unwrap().branch(),
            req.top_via().unwrap().branch()
        );
        assert_eq!(rejections(&mut p), vec![(Some(400), "control character")]);
        assert_eq!(p.stats().requests_refused, 1);
        assert_eq!(p.stats().calls, 0, "no call was started");
        // Nothing is left to send later.
        p.handle_timeout(t0 + Duration::from_secs(70));
        assert!(transmits(&mut p).iter().all(|t| t.peer.addr != addr(TRUNK)));
    }
}

#[test]
fn tabs_folds_and_quoted_pairs_are_forwarded_byte_for_byte() {
    for line in [
        &b"Subject: \ttabbed\tsubject\r\n"[..],
        b"Subject: folded\r\n  over two lines\r\n",
        b"X-Quoted: \"a quoted-pair may carry one: \\\x00\"\r\n",
    ] {
        let t0 = Instant::now();
        let mut p = one_trunk(false);
        p.handle_message(t0, Peer::udp(addr(CALLER)), invite_with(line));
        let out = transmits(&mut p);
        let to_trunk: Vec<&Transmit> = out.iter().filter(|t| t.peer.addr == addr(TRUNK)).collect();
        assert_eq!(to_trunk.len(), 1, "{line:?} was not forwarded");
        let fwd = &to_trunk[0].payload;
        assert!(
            fwd.windows(line.len()).any(|w| w == line),
            "{line:?} not forwarded as it arrived"
        );
        assert!(rejections(&mut p).is_empty());
    }
}

#[test]
fn a_response_with_a_control_character_is_dropped() {
    let t0 = Instant::now();
    let mut p = one_trunk(false);
    p.handle_message(t0, Peer::udp(addr(CALLER)), invite_with(b""));
    let out = transmits(&mut p);
    let sent = out
        .iter()
        .find(|t| t.peer.addr == addr(TRUNK))
        .expect("forwarded");
    let fwd = Message::parse(sent.payload.clone()).unwrap();
    let ringing = MessageWriter::response_to(&fwd, 180, "Ringing", Some(b"uas"))
        .unwrap()
        .finish();
    // A NUL in the Server header of the trunk's 180.
    let mut bad = ringing.to_vec();
    let at = bad.len() - b"Content-Length: 0\r\n\r\n".len();
    bad.splice(at..at, b"Server: psap\x00\r\n".iter().copied());
    let dropped_before = p.stats().responses_dropped;
    // From the peer the INVITE went to (over TCP if it was large).
    let trunk = sent.peer;
    p.handle_message(t0 + Duration::from_millis(10), trunk, Bytes::from(bad));
    assert!(
        transmits(&mut p).iter().all(|t| t.peer.addr == addr(TRUNK)),
        "nothing relayed to the caller"
    );
    assert_eq!(p.stats().responses_dropped, dropped_before + 1);
    assert_eq!(
        rejections(&mut p),
        vec![(None, "control character in response")]
    );
    // The same 180 without it is relayed.
    p.handle_message(t0 + Duration::from_millis(20), trunk, ringing);
    let relayed: Vec<Message> = transmits(&mut p)
        .into_iter()
        .filter(|t| t.peer.addr != addr(TRUNK))
        .map(|t| Message::parse(t.payload).unwrap())
        .collect();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].status(), Some(180));
    assert!(relayed[0].header(HeaderName::Server).is_none());
}
