//! `limits` through the pure core, in virtual time: what class admission
//! puts a message in, and the state caps (`max_calls`, `max_transactions`)
//! with their emergency reserve.

use std::time::Duration;

use bytes::Bytes;
use lifeline_proxy::admission::class_of;
use lifeline_proxy::{
    Class, EmergencyConfig, LimitsConfig, Peer, ProbeConfig, ProxyConfig, TrunkConfig,
};
use lifeline_sip::{HeaderName, Message};

mod support;
use support::{addr, emergency_and_default, Bench, CALLER, GW, TRUNK};

fn config(limits: LimitsConfig) -> ProxyConfig {
    let mut cfg = emergency_and_default();
    cfg.limits = limits;
    cfg
}

fn request(method: &str, id: &str, uri: &str, to_tag: Option<&str>, extra: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@orig.example>;tag=a-{id}\r\nTo: <{uri}>{to_tag}\r\nCall-ID: {id}\r\nCSeq: 1 {method}\r\nContact: <sip:caller@{CALLER}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn invite(id: &str, uri: &str) -> String {
    request("INVITE", id, uri, None, "")
}

fn parse(text: &str) -> Message {
    Message::parse(Bytes::from(text.to_string())).unwrap()
}

/// The final responses the caller got, as (status, Retry-After).
fn finals(b: &Bench) -> Vec<(u16, Option<String>)> {
    b.to(CALLER)
        .iter()
        .filter(|m| m.status().is_some_and(|s| s >= 200))
        .map(|m| {
            let retry = m
                .header(HeaderName::RetryAfter)
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            (m.status().unwrap(), retry)
        })
        .collect()
}

#[test]
fn admission_classes_from_real_messages() {
    let e = EmergencyConfig::default();
    let class = |text: &str, trusted| class_of(&parse(text), trusted, &e);
    assert_eq!(class(&invite("c1", "sip:999@gw"), false), Class::Emergency);
    assert_eq!(
        class(&invite("c2", "urn:service:sos.fire"), false),
        Class::Emergency
    );
    assert_eq!(class(&invite("c3", "tel:112"), false), Class::Emergency);
    assert_eq!(
        class(&invite("c4", "sip:+442079460000@gw"), false),
        Class::New
    );
    let options = request("OPTIONS", "c5", "sip:gw", None, "");
    assert_eq!(class(&options, false), Class::New, "any new request");
    let esnet = request(
        "INVITE",
        "c6",
        "sip:+442079460000@gw",
        None,
        "Resource-Priority: esnet.0\r\n",
    );
    assert_eq!(
        class(&esnet, true),
        Class::Emergency,
        "esnet from a trusted source"
    );
    assert_eq!(class(&esnet, false), Class::New, "esnet from anyone else");
    // Work already taken on: never limited.
    for text in [
        request("ACK", "c7", "sip:+442079460000@gw", Some("t"), ""),
        request("CANCEL", "c8", "sip:+442079460000@gw", None, ""),
        request("BYE", "c9", "sip:+442079460000@gw", Some("t"), ""),
        request("INVITE", "c10", "sip:+442079460000@gw", Some("t"), ""),
        format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {GW};branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
    ] {
        assert_eq!(class(&text, false), Class::Other, "{text}");
    }
}

#[test]
fn past_max_calls_new_calls_get_503_and_emergency_calls_still_go_through() {
    // Ten calls, the last one kept for emergency calls: nine others.
    let mut b = Bench::new(config(LimitsConfig {
        max_calls: Some(10),
        ..LimitsConfig::default()
    }));
    for i in 0..9 {
        b.send(CALLER, &invite(&format!("n{i}"), "sip:+442079460000@gw"));
    }
    assert_eq!(b.at_trunk().len(), 9);
    assert_eq!(finals(&b), []);
    b.send(CALLER, &invite("n9", "sip:+442079460000@gw"));
    assert_eq!(b.at_trunk().len(), 9, "the tenth did not reach the trunk");
    assert_eq!(finals(&b), [(503, Some("5".to_string()))]);
    assert_eq!(
        b.rejections(),
        [(addr(CALLER), Some(503), "max_calls")],
        "refused, and counted as such"
    );
    let st = b.proxy.stats();
    assert_eq!(
        (st.calls, st.server_transactions),
        (9, 9),
        "nothing kept for it"
    );
    // Emergency calls use the reserve, and go past the cap itself.
    for i in 0..3 {
        b.send(CALLER, &invite(&format!("e{i}"), "sip:999@gw"));
    }
    assert_eq!(b.at_trunk().len(), 12);
    assert_eq!(b.proxy.stats().calls, 12);
    assert_eq!(finals(&b).len(), 1);
    // Unanswered, the calls end (the failover timer, then Timer C); then
    // there is room again.
    b.advance(Duration::from_secs(240));
    assert_eq!(b.proxy.stats().calls, 0);
    // (The trunk, silent all along, is Down by now: the call is taken
    // and routed, and fails there, not at the cap.)
    b.send(CALLER, &invite("n10", "sip:+442079460000@gw"));
    assert_eq!(b.started().len(), 9 + 3 + 1);
    assert_eq!(b.rejections().len(), 1, "no second refusal");
}

#[test]
fn past_max_transactions_new_requests_get_503_and_in_dialog_ones_do_not() {
    let mut b = Bench::new(config(LimitsConfig {
        max_transactions: Some(5),
        ..LimitsConfig::default()
    }));
    // OPTIONS to the gateway: answered here, each server transaction kept
    // for Timer J (64 x T1 over UDP).
    for i in 0..4 {
        b.send(
            CALLER,
            &request("OPTIONS", &format!("o{i}"), &format!("sip:{GW}"), None, ""),
        );
    }
    assert_eq!(b.proxy.stats().server_transactions, 4);
    b.send(
        CALLER,
        &request("OPTIONS", "o4", &format!("sip:{GW}"), None, ""),
    );
    let statuses: Vec<u16> = finals(&b).iter().map(|f| f.0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 503]);
    assert_eq!(
        b.rejections(),
        [(addr(CALLER), Some(503), "max_transactions")]
    );
    // A request inside a dialog is not a new one: judged by the dialog
    // checks (here 481: no such dialog), never by the cap.
    b.send(
        CALLER,
        &request("BYE", "b1", "sip:+442079460000@gw", Some("t"), ""),
    );
    assert_eq!(finals(&b).last().map(|f| f.0), Some(481));
    // An emergency INVITE is never refused by it.
    b.send(CALLER, &invite("e1", "sip:999@gw"));
    assert_eq!(b.at_trunk().len(), 1);
    // Timer J lets the OPTIONS transactions go: room again.
    b.advance(Duration::from_secs(33));
    b.send(
        CALLER,
        &request("OPTIONS", "o5", &format!("sip:{GW}"), None, ""),
    );
    assert_eq!(finals(&b).last().map(|f| f.0), Some(200));
}

/// A backup trunk beside [`TRUNK`].
const BACKUP: &str = "127.0.30.2:5060";

fn two_trunks() -> Bench {
    let mut cfg = config(LimitsConfig::default());
    let probe = ProbeConfig {
        enabled: false,
        ..ProbeConfig::default()
    };
    cfg.trunks.push(TrunkConfig {
        probe,
        ..TrunkConfig::new("backup", Peer::udp(addr(BACKUP)))
    });
    for r in &mut cfg.routes {
        r.trunks.push("backup".into());
    }
    Bench::new(cfg)
}

/// Where each INVITE went, in order: "p" (the primary) or "b" (the backup).
fn invites_to(b: &Bench) -> String {
    b.sent
        .iter()
        .filter(|t| t.payload.starts_with(b"INVITE "))
        .map(|t| if t.peer.addr == addr(TRUNK) { 'p' } else { 'b' })
        .collect()
}

/// The primary answers the last INVITE it got with 180, its Via saying
/// `oc` (RFC 7339: the server puts its values in the client's `oc`).
fn ring_with_oc(b: &mut Bench, oc: &str) {
    let invite = b.at_trunk().into_iter().rfind(|m| m.is_request()).unwrap();
    let w = lifeline_sip::MessageWriter::response_to(&invite, 180, "Ringing", Some(b"t1")).unwrap();
    let text = String::from_utf8(w.finish().to_vec()).unwrap();
    assert!(
        text.contains(";oc;oc-algo=\"loss\""),
        "we offer overload control: {text}"
    );
    let text = text.replacen(";oc;oc-algo=\"loss\"", oc, 1);
    b.send(TRUNK, &text);
}

#[test]
fn a_trunk_asking_for_less_traffic_sheds_non_emergency_calls_only() {
    let mut b = two_trunks();
    b.send(CALLER, &invite("o0", "sip:+442079460000@gw"));
    assert_eq!(invites_to(&b), "p");
    ring_with_oc(
        &mut b,
        ";oc=50;oc-algo=\"loss\";oc-validity=1000;oc-seq=100.5",
    );
    // Half the new calls go elsewhere, evenly: every second one.
    for i in 1..=4 {
        b.send(CALLER, &invite(&format!("o{i}"), "sip:+442079460000@gw"));
    }
    assert_eq!(invites_to(&b), "ppbpb");
    let skipped = b
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                lifeline_proxy::Event::TrunkSkipped {
                    reason: lifeline_proxy::SkipReason::Overload,
                    ..
                }
            )
        })
        .count();
    assert_eq!(skipped, 2);
    // Emergency calls are never shed for it.
    for i in 0..3 {
        b.send(CALLER, &invite(&format!("e{i}"), "sip:999@gw"));
    }
    assert_eq!(invites_to(&b), "ppbpbppp");
    // An older request (a reordered response) changes nothing; oc=0 ends it.
    ring_with_oc(&mut b, ";oc=100;oc-algo=\"loss\";oc-seq=99.0");
    b.send(CALLER, &invite("o5", "sip:+442079460000@gw"));
    b.send(CALLER, &invite("o6", "sip:+442079460000@gw"));
    assert_eq!(invites_to(&b), "ppbpbppppb", "still every second one");
    ring_with_oc(&mut b, ";oc=0;oc-algo=\"loss\";oc-seq=101.0");
    b.send(CALLER, &invite("o7", "sip:+442079460000@gw"));
    b.send(CALLER, &invite("o8", "sip:+442079460000@gw"));
    assert_eq!(invites_to(&b), "ppbpbppppbpp");
}

#[test]
fn an_overload_control_request_lapses_after_its_validity() {
    let mut b = two_trunks();
    b.send(CALLER, &invite("v0", "sip:+442079460000@gw"));
    // 100 %: every new call elsewhere, for 500 ms (the default validity).
    ring_with_oc(&mut b, ";oc=100");
    let asked = b.now;
    b.send(CALLER, &invite("v1", "sip:+442079460000@gw"));
    assert_eq!(invites_to(&b), "pb");
    // (`send` moves the clock 1 ms first.)
    b.now = asked + Duration::from_millis(498);
    b.send(CALLER, &invite("v2", "sip:+442079460000@gw"));
    assert_eq!(invites_to(&b), "pbb", "1 ms before it lapses");
    b.now = asked + Duration::from_millis(499);
    b.send(CALLER, &invite("v3", "sip:+442079460000@gw"));
    assert_eq!(invites_to(&b), "pbbp", "lapsed");
}

/// The trunk answers the INVITE of `call_id` with 200 (a UAS's: its
/// Record-Route copied, a Contact); the caller gets it.
fn answer(b: &mut Bench, call_id: &str) {
    let invite = b
        .at_trunk()
        .into_iter()
        .find(|m| m.is_request() && m.call_id() == Some(call_id.as_bytes()))
        .unwrap();
    let ok = lifeline_sip::MessageWriter::dialog_response_to(
        &invite,
        200,
        "OK",
        b"callee",
        format!("<sip:callee@{TRUNK}>").as_bytes(),
    )
    .unwrap()
    .finish();
    b.send(TRUNK, std::str::from_utf8(&ok).unwrap());
}

/// The caller's ACK of the 200 it got for `call_id`, along the route set.
fn ack(b: &mut Bench, call_id: &str, uri: &str) {
    let ok = b
        .to(CALLER)
        .into_iter()
        .find(|m| m.status() == Some(200) && m.call_id() == Some(call_id.as_bytes()))
        .unwrap();
    let rr = String::from_utf8(ok.header(HeaderName::RecordRoute).unwrap().value.to_vec()).unwrap();
    let text = format!(
        "ACK sip:callee@{TRUNK} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-ack-{call_id}\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@orig.example>;tag=a-{call_id}\r\nTo: <{uri}>;tag=callee\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    b.send(CALLER, &text);
}

#[test]
fn an_answered_call_never_acked_lets_its_dialog_go_after_64_t1() {
    let mut b = Bench::new(config(LimitsConfig::default()));
    let number = "sip:+442079460000@gw";
    for id in ["never-acked", "acked"] {
        b.send(CALLER, &invite(id, number));
        answer(&mut b, id);
    }
    b.send(CALLER, &invite("sos-never-acked", "sip:999@gw"));
    answer(&mut b, "sos-never-acked");
    ack(&mut b, "acked", number);
    let acks = b
        .at_trunk()
        .iter()
        .filter(|m| m.method_bytes() == Some(b"ACK"))
        .count();
    assert_eq!(acks, 1, "the ACK went on to the trunk");
    assert_eq!(b.proxy.stats().dialogs, 3);
    // 64 x T1 after its 200, the dialog nobody ACKed is gone; the ACKed
    // one and the emergency call's stay (dialog_max_age).
    b.advance(Duration::from_millis(31_990));
    assert_eq!(b.proxy.stats().dialogs, 3);
    b.advance(Duration::from_millis(20));
    assert_eq!(b.proxy.stats().dialogs, 2);
    b.advance(Duration::from_secs(3600));
    assert_eq!(b.proxy.stats().dialogs, 2);
}
