//! `access` through the pure core, in virtual time: who may send new
//! requests (`callers`, `unknown`), whose identity and priority headers are
//! kept (`trusted`), what an untrusted source's request loses (and that
//! every other byte stays), and `strip_untrusted_location`.

use std::time::Duration;

use bytes::Bytes;
use lifeline_proxy::{AccessConfig, EmergencyRule, IpNet, ProxyConfig, UnknownSource};
use lifeline_sip::{HeaderName, Message, MessageWriter};

mod support;
use support::{addr, emergency_and_default, Bench, GW, TRUNK};

/// In `callers`, not in `trusted`.
const CALLER: &str = "192.0.2.20:5060";
/// In `callers` and in `trusted`.
const TRUSTED: &str = "192.0.2.10:5060";
/// In neither.
const STRANGER: &str = "127.0.0.77:5060";

const PIDF_BODY: &str = "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n\r\n--b1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@caller>\r\n\r\n<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:caller@example.net\"/>\r\n--b1--\r\n";
const MULTIPART: &str = "multipart/mixed;boundary=b1";

/// A forged identity and priority, written in several cases.
const FORGED: [&str; 5] = [
    "P-Asserted-Identity: <tel:+441632960999>\r\n",
    "p-asserted-identity: \"PSAP\" <sip:+441632960998@psap.example>\r\n",
    "P-Preferred-Identity: <sip:+441632960997@orig.example>\r\n",
    "Resource-Priority: esnet.0\r\n",
    "RESOURCE-PRIORITY : esnet.1, wps.3\r\n",
];

const LOCATION: [&str; 2] = [
    "Geolocation: <cid:loc@caller>\r\n",
    "Geolocation-Routing: no\r\n",
];

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn access(unknown: UnknownSource, strip_location: bool) -> AccessConfig {
    AccessConfig {
        callers: Some(vec![net("192.0.2.0/24"), net("2001:db8::/32")]),
        trusted: vec![net("192.0.2.10/32")],
        unknown,
        strip_untrusted_location: strip_location,
    }
}

fn config(access: AccessConfig) -> ProxyConfig {
    let mut cfg = emergency_and_default();
    cfg.access = access;
    cfg
}

/// The bench on [`config`] with `access`.
fn bench(access: AccessConfig) -> Bench {
    Bench::new(config(access))
}

fn invite(from: &str, id: &str, uri: &str, extra: &str, body: Option<(&str, &str)>) -> String {
    let head = format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+441632960001@orig.example>;tag=a-{id}\r\nTo: <{uri}>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{from}>\r\n{extra}"
    );
    match body {
        Some((ct, b)) => format!(
            "{head}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => format!("{head}Content-Length: 0\r\n\r\n"),
    }
}

/// The ACK for a non-2xx final to [`invite`]'s INVITE.
fn ack(from: &str, id: &str, uri: &str, to_tag: &str) -> String {
    format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+441632960001@orig.example>;tag=a-{id}\r\nTo: <{uri}>;tag={to_tag}\r\nCall-ID: {id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A forwarded request as the caller sent it: without the gateway's Via
/// and Record-Route, Max-Forwards back up by one.
fn without_our_edits(m: &Message) -> String {
    let text = String::from_utf8(m.as_bytes().to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let lines: Vec<String> = head
        .split("\r\n")
        .filter(|l| !l.starts_with(&format!("Via: SIP/2.0/UDP {GW};")))
        .filter(|l| !l.starts_with(&format!("Record-Route: <sip:{GW};")))
        .map(|l| l.replace("Max-Forwards: 69", "Max-Forwards: 70"))
        .collect();
    format!("{}\r\n\r\n{body}", lines.join("\r\n"))
}

/// `text` without each of `lines`.
fn minus(text: &str, lines: &[&str]) -> String {
    lines.iter().fold(text.to_string(), |t, l| {
        assert!(t.contains(l), "{l:?} not in the request");
        t.replacen(l, "", 1)
    })
}

#[test]
fn an_invite_from_outside_callers_is_dropped_and_counted() {
    let mut b = bench(access(UnknownSource::Drop, false));
    let forged = FORGED.concat();
    b.send(
        STRANGER,
        &invite(STRANGER, "s1", "sip:999@gw", &forged, None),
    );
    // Its retransmission too: nothing is kept for it.
    b.send(
        STRANGER,
        &invite(STRANGER, "s1", "sip:999@gw", &forged, None),
    );
    b.advance(Duration::from_secs(70));
    assert!(b.sent.is_empty(), "nothing sent, to anyone");
    assert_eq!(
        b.rejections(),
        vec![
            (addr(STRANGER), None, "access"),
            (addr(STRANGER), None, "access")
        ]
    );
    assert!(b.started().is_empty(), "no call, no callback entry");
    let st = b.proxy.stats();
    assert_eq!((st.calls, st.server_transactions), (0, 0));
    // OPTIONS, MESSAGE, REGISTER ... any new request.
    let options = format!(
        "OPTIONS sip:{GW} SIP/2.0\r\nVia: SIP/2.0/UDP {STRANGER};branch=z9hG4bK-o1\r\nFrom: <sip:scan@x>;tag=1\r\nTo: <sip:{GW}>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    b.send(STRANGER, &options);
    assert!(b.sent.is_empty());
    assert_eq!(b.rejections().len(), 3);
}

#[test]
fn with_unknown_reject_an_invite_from_outside_gets_403() {
    let mut b = bench(access(UnknownSource::Reject, false));
    let text = invite(STRANGER, "s2", "urn:service:sos", &FORGED.concat(), None);
    b.send(STRANGER, &text);
    let answers = b.to(STRANGER);
    assert_eq!(answers.len(), 1, "a 403 and nothing else (no 100 Trying)");
    assert_eq!(answers[0].status(), Some(403));
    assert_eq!(answers[0].call_id(), Some(&b"s2"[..]));
    assert_eq!(b.rejections(), vec![(addr(STRANGER), Some(403), "access")]);
    // A retransmission gets the same 403 again, and is not counted again.
    b.send(STRANGER, &text);
    assert_eq!(b.to(STRANGER).len(), 2);
    assert_eq!(b.to(STRANGER)[1].as_bytes(), answers[0].as_bytes());
    // Its ACK is absorbed by the transaction.
    let tag = answers[0].to().unwrap().tag().unwrap().to_vec();
    let tag = String::from_utf8(tag).unwrap();
    b.send(STRANGER, &ack(STRANGER, "s2", "urn:service:sos", &tag));
    b.advance(Duration::from_secs(70));
    assert_eq!(b.rejections().len(), 1);
    assert!(b.at_trunk().is_empty(), "never reaches a trunk");
    assert!(b.started().is_empty());
    assert_eq!(b.proxy.stats().requests_refused, 1);
}

#[test]
fn an_ack_from_outside_is_never_answered() {
    for unknown in [UnknownSource::Drop, UnknownSource::Reject] {
        let mut b = bench(access(unknown, false));
        b.send(STRANGER, &ack(STRANGER, "s3", "sip:999@gw", "x"));
        // One that claims a dialog of ours, with a made-up token.
        let forged_route = format!(
            "ACK sip:psap@{TRUNK} SIP/2.0\r\nVia: SIP/2.0/UDP {STRANGER};branch=z9hG4bK-s4\r\nRoute: <sip:{GW};lr;ll=0.00000000000000000000000000000000>\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:999@gw>;tag=2\r\nCall-ID: s4\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        b.send(STRANGER, &forged_route);
        assert!(b.sent.is_empty(), "{unknown:?}: nothing sent");
        assert_eq!(
            b.rejections(),
            vec![
                (addr(STRANGER), None, "access"),
                (addr(STRANGER), None, "access")
            ],
            "{unknown:?}"
        );
    }
}

#[test]
fn an_untrusted_caller_loses_identity_and_priority_and_nothing_else() {
    let mut b = bench(access(UnknownSource::Drop, false));
    let extra = format!(
        "{}Subject: help\r\n{}{}Call-Info: <urn:emergency:uid:callid:abc:orig.example>;purpose=emergency-CallId\r\n{}{}{}",
        FORGED[0], LOCATION[0], FORGED[1], FORGED[2], LOCATION[1], FORGED[3]
    ) + FORGED[4];
    let text = invite(
        CALLER,
        "u1",
        "sip:+441632960000@gw",
        &extra,
        Some((MULTIPART, PIDF_BODY)),
    );
    b.send(CALLER, &text);
    let fwd = b.at_trunk();
    assert_eq!(fwd.len(), 1);
    assert_eq!(without_our_edits(&fwd[0]), minus(&text, &FORGED));
    for name in [
        HeaderName::PAssertedIdentity,
        HeaderName::PPreferredIdentity,
        HeaderName::ResourcePriority,
    ] {
        assert!(fwd[0].header(name).is_none(), "{name:?}");
    }
    // Its esnet priority does not make it an emergency call, and what the
    // journal records as the caller is the From, not the forged identity.
    let info = &b.started()[0];
    assert_eq!(info.emergency, None);
    assert_eq!(info.route, "default");
    assert!(info.asserted_identities.is_empty());
    assert_eq!(
        info.from_uri,
        Bytes::from_static(b"sip:+441632960001@orig.example")
    );
    // Location is kept.
    assert_eq!(
        info.location.geolocation,
        vec![Bytes::from_static(b"<cid:loc@caller>")]
    );
    assert!(info.location.pidf_lo);
    assert!(b.rejections().is_empty());
}

#[test]
fn an_untrusted_caller_dialling_999_is_still_an_emergency_call() {
    let mut b = bench(access(UnknownSource::Drop, false));
    for (id, uri, rule) in [
        ("u2", "sip:999@gw", EmergencyRule::Number),
        ("u3", "urn:service:sos.police", EmergencyRule::SosUrn),
    ] {
        b.send(CALLER, &invite(CALLER, id, uri, &FORGED.concat(), None));
        let info = b.started().pop().unwrap();
        assert_eq!(info.emergency, Some(rule), "{uri}");
        assert_eq!(info.route, "emergency");
    }
    for m in b.at_trunk() {
        assert!(m.header(HeaderName::ResourcePriority).is_none());
        assert!(m.header(HeaderName::PAssertedIdentity).is_none());
    }
    assert_eq!(b.at_trunk().len(), 2);
}

#[test]
fn a_trusted_source_keeps_everything_and_its_esnet_counts() {
    let mut b = bench(access(UnknownSource::Drop, true));
    let extra = FORGED.concat() + &LOCATION.concat();
    let text = invite(
        TRUSTED,
        "t1",
        "sip:+441632960000@gw",
        &extra,
        Some((MULTIPART, PIDF_BODY)),
    );
    b.send(TRUSTED, &text);
    let fwd = b.at_trunk();
    assert_eq!(fwd.len(), 1);
    assert_eq!(without_our_edits(&fwd[0]), text);
    let info = &b.started()[0];
    assert_eq!(info.emergency, Some(EmergencyRule::ResourcePriority));
    assert_eq!(info.route, "emergency");
    assert_eq!(info.asserted_identities.len(), 2);
    assert!(info.location.pidf_lo);
}

#[test]
fn strip_untrusted_location_removes_geolocation_and_the_pidf_part() {
    let mut b = bench(access(UnknownSource::Drop, true));
    let extra = format!(
        "{}{}Subject: help\r\n{}",
        LOCATION[0], FORGED[0], LOCATION[1]
    );
    let text = invite(
        CALLER,
        "l1",
        "sip:999@gw",
        &extra,
        Some((MULTIPART, PIDF_BODY)),
    );
    b.send(CALLER, &text);
    let fwd = b.at_trunk();
    assert_eq!(fwd.len(), 1);
    let sdp_only = PIDF_BODY
        .split_once("--b1\r\nContent-Type: application/pidf+xml")
        .map(|(sdp, _)| format!("{sdp}--b1--\r\n"))
        .unwrap();
    let want = invite(
        CALLER,
        "l1",
        "sip:999@gw",
        "Subject: help\r\n",
        Some((MULTIPART, &sdp_only)),
    );
    assert_eq!(without_our_edits(&fwd[0]), want);
    let info = &b.started()[0];
    assert!(!info.location.present());
    assert_eq!(info.emergency, Some(EmergencyRule::Number));

    // A PIDF-LO body alone goes with its Content-Type.
    let pidf = "<presence/>";
    let text = invite(
        CALLER,
        "l2",
        "sip:999@gw",
        "",
        Some(("application/pidf+xml", pidf)),
    );
    b.send(CALLER, &text);
    let fwd = b.at_trunk();
    assert_eq!(
        without_our_edits(&fwd[1]),
        invite(CALLER, "l2", "sip:999@gw", "", None)
    );
}

/// A call from [`CALLER`] answered by the trunk: the Record-Route value
/// the trunk's in-dialog requests carry.
fn answered_call(b: &mut Bench, id: &str) -> String {
    b.send(CALLER, &invite(CALLER, id, "sip:999@gw", "", None));
    let fwd = b.at_trunk().pop().unwrap();
    let ok = MessageWriter::dialog_response_to(
        &fwd,
        200,
        "OK",
        b"psap",
        format!("<sip:psap@{TRUNK}>").as_bytes(),
    )
    .unwrap()
    .finish();
    b.send(TRUNK, std::str::from_utf8(&ok).unwrap());
    let rr = fwd.header(HeaderName::RecordRoute).unwrap().value;
    String::from_utf8(rr.to_vec()).unwrap()
}

#[test]
fn a_trunk_may_end_a_call_although_it_is_not_in_callers() {
    let mut b = bench(access(UnknownSource::Drop, false));
    let rr = answered_call(&mut b, "d1");
    assert_eq!(
        b.to(CALLER).last().and_then(|m| m.status()),
        Some(200),
        "answered"
    );
    let bye = format!(
        "BYE sip:caller@{CALLER} SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-tbye\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: <sip:999@gw>;tag=psap\r\nTo: \"Caller\" <sip:+441632960001@orig.example>;tag=a-d1\r\nCall-ID: d1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    b.send(TRUNK, &bye);
    let at_caller = b.to(CALLER);
    assert_eq!(
        at_caller.last().and_then(|m| m.method_bytes()),
        Some(&b"BYE"[..])
    );
    assert!(b.rejections().is_empty());
    // A new call from the trunk's address is a new request like any other.
    b.send(TRUNK, &invite(TRUNK, "d2", "sip:999@gw", "", None));
    assert_eq!(b.rejections(), vec![(addr(TRUNK), None, "access")]);
    assert_eq!(b.at_trunk().len(), 1, "only the first call's INVITE");
}

#[test]
fn a_reload_applies_new_lists_and_calls_in_progress_keep_their_dialog() {
    let mut b = bench(access(UnknownSource::Drop, false));
    let rr = answered_call(&mut b, "r1");
    // The caller's network is no longer allowed, and the stranger's is.
    let mut narrowed = access(UnknownSource::Drop, false);
    narrowed.callers = Some(vec![net("127.0.0.0/8")]);
    b.proxy.reload(b.now, config(narrowed)).unwrap();
    // A new call from the caller: dropped. From the stranger: forwarded.
    b.send(CALLER, &invite(CALLER, "r2", "sip:999@gw", "", None));
    assert_eq!(b.rejections(), vec![(addr(CALLER), None, "access")]);
    b.send(STRANGER, &invite(STRANGER, "r3", "sip:999@gw", "", None));
    assert_eq!(b.at_trunk().len(), 2);
    // The call admitted before the reload ends normally.
    let bye = format!(
        "BYE sip:psap@{TRUNK} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-cbye\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+441632960001@orig.example>;tag=a-r1\r\nTo: <sip:999@gw>;tag=psap\r\nCall-ID: r1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    b.send(CALLER, &bye);
    let last = b.at_trunk().pop().unwrap();
    assert_eq!(last.method_bytes(), Some(&b"BYE"[..]));
    assert_eq!(b.rejections().len(), 1);
}

#[test]
fn a_cancel_from_outside_stops_nothing() {
    let mut b = bench(access(UnknownSource::Drop, false));
    b.send(CALLER, &invite(CALLER, "c1", "sip:999@gw", "", None));
    let fwd = b.at_trunk().pop().unwrap();
    let ringing = MessageWriter::response_to(&fwd, 180, "Ringing", Some(b"psap"))
        .unwrap()
        .finish();
    b.send(TRUNK, std::str::from_utf8(&ringing).unwrap());
    // The caller's CANCEL, forged from another address.
    let cancel = format!(
        "CANCEL sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-c1\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+441632960001@orig.example>;tag=a-c1\r\nTo: <sip:999@gw>\r\nCall-ID: c1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    b.send(STRANGER, &cancel);
    assert_eq!(b.rejections(), vec![(addr(STRANGER), None, "access")]);
    assert!(
        b.at_trunk()
            .iter()
            .all(|m| m.method_bytes() != Some(b"CANCEL")),
        "the call goes on"
    );
    // From the caller it works.
    b.send(CALLER, &cancel);
    assert_eq!(
        b.at_trunk().last().and_then(|m| m.method_bytes()),
        Some(&b"CANCEL"[..])
    );
}

#[test]
fn without_callers_anyone_may_call_and_nobody_is_trusted() {
    let mut b = bench(AccessConfig::default());
    b.send(
        STRANGER,
        &invite(
            STRANGER,
            "n1",
            "sip:+441632960000@gw",
            &FORGED.concat(),
            None,
        ),
    );
    let fwd = b.at_trunk();
    assert_eq!(fwd.len(), 1);
    assert!(fwd[0].header(HeaderName::PAssertedIdentity).is_none());
    assert_eq!(b.started()[0].emergency, None);
    assert!(b.rejections().is_empty());
}

#[test]
fn a_malformed_request_from_outside_is_not_answered_either() {
    // No From, To, Call-ID or CSeq: a 400 to a caller.
    let bad = |from: &str| {
        format!("INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKbad\r\n\r\n")
    };
    let mut b = bench(access(UnknownSource::Drop, false));
    b.send(STRANGER, &bad(STRANGER));
    assert!(b.sent.is_empty());
    assert_eq!(b.rejections(), vec![(addr(STRANGER), None, "access")]);
    b.send(CALLER, &bad(CALLER));
    assert_eq!(b.to(CALLER)[0].status(), Some(400));
    // With `unknown: reject` the stranger hears why too.
    let mut b = bench(access(UnknownSource::Reject, false));
    b.send(STRANGER, &bad(STRANGER));
    assert_eq!(b.to(STRANGER)[0].status(), Some(400));
}
