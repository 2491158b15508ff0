//! Trust at the edge, in virtual time: forged ICMP errors move one attempt
//! and never fail an emergency call; a trunk goes Down on transport errors
//! only when they corroborate each other; responses count only from the
//! peer the request went to; in-dialog requests need a token that names a
//! live dialog.
//!
//! Probes go out every 250 ms from t = 0 and time out after 250 ms (the
//! defaults); the first calls are placed at 1000 ms.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use lifeline_health::{EventKind, Reason, State, TransportError};
use lifeline_proxy::{AttemptFailure, Event};
use lifeline_sim::scenario::{
    b, failures, gw, p, rescued, ringing, sim, EMERGENCY, ORDINARY, PRIMARY,
};
use lifeline_sim::{ms, Link, Sim, TrunkScript, ATTACKER, GATEWAY};
use lifeline_sip::{HeaderName, Message};

fn attacker() -> SocketAddr {
    ATTACKER.parse().unwrap()
}

const PORT_UNREACHABLE: Reason = Reason::Live(lifeline_health::Outcome::TransportError(
    TransportError::PortUnreachable,
));

/// The primary's state changes: (time, from, to, reason).
fn primary_changes(s: &Sim) -> Vec<(Duration, State, State, Reason)> {
    let primary = s.proxy.health().find("primary").unwrap();
    s.events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Trunk(ev) if ev.trunk == primary => match ev.kind {
                EventKind::State { from, to, reason } => Some((*t, from, to, reason)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// When the gateway sent a call's INVITE to `to`, if it did.
fn invite_to(s: &Sim, call_id: &str, to: SocketAddr) -> Option<Duration> {
    s.trace
        .packets
        .iter()
        .find(|p| p.from == gw() && p.to == to && p.summary() == "INVITE" && p.call_id() == call_id)
        .map(|p| p.sent)
}

/// Place a call and, as soon as the gateway has sent its INVITE on, forge
/// an ICMP error about `trunk` (which the gateway takes to answer the last
/// message it sent there: that INVITE).
fn call_then_forge(s: &mut Sim, uri: &str, trunk: &str) -> String {
    let call = s.call(uri, "", None);
    let now = s.elapsed();
    s.run_until(now); // the INVITE reaches the gateway and leaves for the trunk
    s.forge_icmp(trunk);
    call
}

/// Which trunk's dialog a call's answer is (the To tag the sim's trunks set).
fn answered_by(s: &Sim, call_id: &str) -> Option<String> {
    let c = s.caller_call(call_id);
    let tag = c.answer.as_ref()?.to().ok()?.tag()?;
    let tag = String::from_utf8_lossy(tag).into_owned();
    Some(tag.split('-').next().unwrap_or_default().to_string())
}

#[test]
fn a_forged_icmp_moves_only_the_attempt_it_answers_and_the_trunk_stays_usable() {
    let mut s = sim(ringing(ms(40)), TrunkScript::answering());
    s.set_latency("primary", ms(5));
    // A rings on the primary from 1020; B's INVITE is on its way (1020).
    let a = s.call(EMERGENCY, "", None);
    s.run_until(ms(1020));
    let b_call = s.call(EMERGENCY, "", None);
    s.run_until(ms(1021));
    // C's INVITE leaves at 1021, and a forged ICMP error follows it.
    let c = call_then_forge(&mut s, EMERGENCY, "primary");
    // D comes while the primary is Suspect: still usable, still first.
    s.run_until(ms(1025));
    let d = s.call(EMERGENCY, "", None);
    s.run_until(ms(2000));

    assert_eq!(invite_to(&s, &c, b()), Some(ms(1021)), "C moved at once");
    for other in [&a, &b_call, &d] {
        assert_eq!(invite_to(&s, other, b()), None, "{other} stays");
        assert_eq!(answered_by(&s, other).as_deref(), Some("primary"));
    }
    assert_eq!(answered_by(&s, &c).as_deref(), Some("backup"));
    assert_eq!(invite_to(&s, &d, p()), Some(ms(1025)));
    assert_eq!(
        failures(&s),
        vec![(ms(1021), AttemptFailure::TransportError)]
    );
    assert!(rescued(&s).is_empty());
    // Suspect at the error; the probe sent then is answered after a round
    // trip (2 x 5 ms): Up. Never Down.
    assert_eq!(
        primary_changes(&s),
        vec![
            (ms(1021), State::Up, State::Suspect, PORT_UNREACHABLE),
            (
                ms(1031),
                State::Suspect,
                State::Up,
                Reason::ProbeAnswered(200)
            ),
        ]
    );
    // C's INVITE reached the primary anyway (the error was forged): its
    // attempt was CANCELled there once it answered 100, with a Reason.
    let cancel = s
        .trace
        .find(gw(), p(), "CANCEL")
        .find(|x| x.call_id() == c)
        .expect("CANCEL");
    assert_eq!(cancel.sent, ms(1031));
    assert_eq!(
        cancel
            .message()
            .unwrap()
            .header(HeaderName::Reason)
            .map(|h| h.value.to_vec()),
        Some(b"SIP;cause=503;text=\"transport error, trying another trunk\"".to_vec())
    );
}

#[test]
fn forged_icmp_after_every_send_to_every_trunk_fails_no_emergency_call() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    s.forge_icmp_per_send("primary", true);
    s.forge_icmp_per_send("backup", true);
    let uris = [EMERGENCY, "urn:service:sos", "tel:112"];
    let mut calls = Vec::new();
    for i in 0..300 {
        calls.push(s.call(uris[i % uris.len()], "", None));
        s.run_for(ms(5));
    }
    s.run_for(ms(2000));
    for c in &calls {
        let call = s.caller_call(c);
        assert_eq!(call.final_status(), Some(200), "{c}: {:?}", call.statuses());
        assert!(answered_by(&s, c).is_some(), "{c} completed on a trunk");
    }
    assert!(!s
        .events()
        .iter()
        .any(|(_, e)| matches!(e, Event::CallFailed { .. })));
    // The first call's error moved it to the backup, then usable; the
    // errors after both trunks' INVITE and the probes sent at once
    // corroborated each other: both Down at 1000. From then on a call is
    // tried on the primary (an emergency call may use a Down trunk) and an
    // error moves it nowhere (no usable trunk): it stays, and is answered.
    assert_eq!(
        failures(&s),
        vec![(ms(1000), AttemptFailure::TransportError)]
    );
    assert_eq!(answered_by(&s, &calls[0]).as_deref(), Some("backup"));
    for c in &calls[1..] {
        assert_eq!(answered_by(&s, c).as_deref(), Some("primary"));
    }
    // An ordinary call, which is not tried on Down trunks, is refused: the
    // price of a sustained flood of forged errors, which emergency calls do
    // not pay.
    let primary = s.proxy.health().find("primary").unwrap();
    let backup = s.proxy.health().find("backup").unwrap();
    for t in [primary, backup] {
        assert_eq!(s.proxy.health().trunk(t).unwrap().state, State::Down);
    }
    let ordinary = s.call(ORDINARY, "", None);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&ordinary).final_status(), Some(503));
    // When the flood stops, answered probes bring both back.
    s.forge_icmp_per_send("primary", false);
    s.forge_icmp_per_send("backup", false);
    s.run_for(ms(3000));
    for t in [primary, backup] {
        assert_eq!(s.proxy.health().trunk(t).unwrap().state, State::Up);
    }
    let ordinary = s.call(ORDINARY, "", None);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&ordinary).final_status(), Some(200));
}

#[test]
fn errors_answering_two_attempts_take_the_trunk_down_at_the_second() {
    let mut s = sim(ringing(ms(5000)), TrunkScript::answering());
    s.set_latency("primary", ms(10));
    // A rings on the primary from 1030 (10 ms each way).
    let a = s.call(EMERGENCY, "", None);
    s.run_until(ms(1100));
    assert_eq!(s.caller_call(&a).statuses(), vec![100, 180]);
    // An error answers B's INVITE: Suspect, probed at once.
    let b_call = call_then_forge(&mut s, EMERGENCY, "primary");
    s.run_until(ms(1105));
    // Another answers C's: corroborated, Down.
    let c = call_then_forge(&mut s, EMERGENCY, "primary");
    s.run_until(ms(3000));

    assert_eq!(
        primary_changes(&s)[..2],
        [
            (ms(1100), State::Up, State::Suspect, PORT_UNREACHABLE),
            (ms(1105), State::Suspect, State::Down, PORT_UNREACHABLE),
        ]
    );
    assert_eq!(invite_to(&s, &b_call, b()), Some(ms(1100)));
    assert_eq!(invite_to(&s, &c, b()), Some(ms(1105)));
    // The Down rescues A, ringing there, at that instant.
    assert_eq!(invite_to(&s, &a, b()), Some(ms(1105)));
    assert_eq!(rescued(&s), vec![(ms(1105), true)]);
    let mut f = failures(&s);
    f.sort_by_key(|x| (x.0, x.1.as_str()));
    assert_eq!(
        f,
        vec![
            (ms(1100), AttemptFailure::TransportError),
            (ms(1105), AttemptFailure::TransportError),
            (ms(1105), AttemptFailure::TrunkDown),
        ]
    );
    for call in [&a, &b_call, &c] {
        assert_eq!(answered_by(&s, call).as_deref(), Some("backup"));
    }
}

#[test]
fn an_icmp_with_no_usable_trunk_left_leaves_the_attempt_to_its_timers() {
    // The backup is really gone (ICMP); the primary is fine but an error is
    // forged after the INVITE it gets: no usable trunk is left, so the call
    // stays on the primary and is answered there.
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    s.set_link("backup", Link::Refused);
    s.set_latency("primary", ms(5));
    // The backup goes Down on the 1250 probe's error and its own (the one
    // sent at once).
    s.run_until(ms(1300));
    let backup = s.proxy.health().find("backup").unwrap();
    assert_eq!(s.proxy.health().trunk(backup).unwrap().state, State::Down);
    // An emergency call on the primary, a forged error after its INVITE:
    // the backup is Down (an emergency call may still try it, on its
    // timers, but an ICMP error moves no call to a Down trunk).
    let t = s.elapsed();
    let call = call_then_forge(&mut s, EMERGENCY, "primary");
    s.run_for(ms(1000));
    assert_eq!(invite_to(&s, &call, b()), None);
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    assert_eq!(answered_by(&s, &call).as_deref(), Some("primary"));
    assert_eq!(s.caller_call(&call).responses.last().unwrap().1, t + ms(60));
    assert!(failures(&s).is_empty());

    // The same for an ordinary call.
    let t = s.elapsed();
    let call = call_then_forge(&mut s, ORDINARY, "primary");
    s.run_for(ms(1000));
    assert_eq!(invite_to(&s, &call, b()), None);
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    assert_eq!(
        s.caller_call(&call).responses.last().unwrap().1,
        t + ms(60),
        "answered when the primary answers (50 ms after its INVITE arrives)"
    );
}

#[test]
fn a_response_from_another_peer_is_dropped_and_counted_and_the_call_completes() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    // Someone who sees the INVITEs to the primary answers each at once:
    // 503 (which would move the call) from elsewhere, and 486 (which would
    // be relayed to the caller) from the primary's address but another port.
    s.spoof_answers("primary", "INVITE", attacker(), 503);
    let other_port: SocketAddr = "127.0.30.1:5999".parse().unwrap();
    s.spoof_answers("primary", "INVITE", other_port, 486);
    let call = s.call(EMERGENCY, "", None);
    s.run_for(ms(200));
    let c = s.caller_call(&call);
    assert_eq!(c.statuses(), vec![100, 180, 200]);
    assert_eq!(c.responses.last().unwrap().1, ms(1050));
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
    assert_eq!(s.proxy.stats().responses_wrong_peer, 2);
    let dropped: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Rejected {
                from,
                status: None,
                reason,
                ..
            } => Some((*t, from.addr, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        vec![
            (ms(1000), attacker(), "response from wrong peer"),
            (ms(1000), other_port, "response from wrong peer"),
        ]
    );
    let primary = s.proxy.health().find("primary").unwrap();
    let st = s.proxy.health().trunk(primary).unwrap();
    assert_eq!((st.state, st.consecutive_failures), (State::Up, 0));
}

#[test]
fn a_probe_answered_from_a_forged_source_does_not_keep_a_dead_trunk_up() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    s.spoof_answers("primary", "OPTIONS", attacker(), 200);
    s.run_until(ms(1100));
    s.set_link("primary", Link::BlackHole);
    s.run_until(ms(2000));
    // Exactly as without the forged answers: the 1250 probe times out at
    // 1500 (Suspect, probed at once), that one at 1750: Down.
    assert_eq!(
        primary_changes(&s),
        vec![
            (ms(1500), State::Up, State::Suspect, Reason::ProbeTimeout),
            (ms(1750), State::Suspect, State::Down, Reason::ProbeTimeout),
        ]
    );
    let probes = s
        .trace
        .packets
        .iter()
        .filter(|x| x.from == gw() && x.to == p() && x.cseq_method() == "OPTIONS")
        .filter(|x| x.sent > ms(1000))
        .count();
    assert_eq!(probes, 4, "1250, 1500, 1750, 2000");
    assert_eq!(s.proxy.stats().responses_wrong_peer, probes as u64);
}

/// The Record-Route token of an answered call's route set: (dialog key,
/// 32 hex digits of nonce).
fn token(s: &Sim, call_id: &str) -> (String, String) {
    let rr = String::from_utf8_lossy(&s.caller_call(call_id).route_set[0]).into_owned();
    let ll = rr.split("ll=").nth(1).unwrap().trim_end_matches('>');
    let (k, n) = ll.split_once('.').unwrap();
    (k.to_string(), n.to_string())
}

/// A BYE in `call_id`'s dialog as the caller would send it, with `route`
/// (a whole header line, or "") and a branch of its own.
fn bye(s: &Sim, call_id: &str, route: &str, branch: &str) -> Bytes {
    let c = s.caller_call(call_id);
    let answer = c.answer.as_ref().unwrap();
    let inv = Message::parse(c.invite.clone().unwrap()).unwrap();
    let text = |m: &Message, h: HeaderName| {
        String::from_utf8_lossy(m.header(h).unwrap().value).into_owned()
    };
    Bytes::from(format!(
        "BYE sip:uas@{PRIMARY} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n{route}From: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        s.caller_addr(),
        text(&inv, HeaderName::From),
        text(answer, HeaderName::To),
    ))
}

/// Statuses the gateway sent to `to` for BYEs.
fn bye_answers(s: &Sim, to: SocketAddr) -> Vec<String> {
    s.trace
        .packets
        .iter()
        .filter(|x| x.from == gw() && x.to == to && x.cseq_method() == "BYE")
        .map(|x| x.summary())
        .collect()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn in_dialog_requests_need_a_token_naming_a_live_dialog_and_are_never_new_calls() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    let call = s.call(EMERGENCY, "", None);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    let (key, nonce) = token(&s, &call);
    assert_eq!(nonce.len(), 32, "128 bits");
    assert!(is_hex(&nonce));
    let route = |n: &str| format!("Route: <sip:{GATEWAY};lr;ll={key}.{n}>\r\n");
    let caller = s.caller_addr();
    // The answered call's INVITE transaction lingers (RFC 6026): one call.
    let calls = s.proxy.stats().calls;

    // A guessed nonce: 481, and nothing reaches a trunk.
    let mut guess = nonce.clone().into_bytes();
    guess[31] = if guess[31] == b'0' { b'1' } else { b'0' };
    let guess = String::from_utf8(guess).unwrap();
    s.inject(caller, bye(&s, &call, &route(&guess), "g1"));
    // No token at all, but a To tag: 481 too, not a new call to the
    // emergency route (the Request-URI is the primary's).
    s.inject(caller, bye(&s, &call, "", "g2"));
    // The right token from an address outside the dialog: 403.
    let forged = bye(&s, &call, &route(&nonce), "g3");
    s.inject_spoofed(attacker(), forged);
    // An ACK with a guessed token goes nowhere (an ACK gets no answer).
    let ack = String::from_utf8(bye(&s, &call, &route(&guess), "g4").to_vec())
        .unwrap()
        .replace("BYE", "ACK")
        .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    s.inject(caller, Bytes::from(ack));
    s.run_for(ms(100));
    assert_eq!(bye_answers(&s, caller), vec!["481", "481"]);
    assert_eq!(bye_answers(&s, attacker()), vec!["403"]);
    assert_eq!(s.trace.find(gw(), p(), "BYE").count(), 0);
    assert_eq!(s.trace.find(gw(), b(), "BYE").count(), 0);
    assert_eq!(s.trace.find(gw(), p(), "ACK").count(), 1, "the 2xx's only");
    assert_eq!(s.proxy.stats().dialogs, 1, "the dialog is untouched");
    assert_eq!(s.proxy.stats().calls, calls, "no call was started");

    // The caller's own BYE, with the real token, ends the dialog; the same
    // token afterwards names nothing: 481.
    s.bye(&call);
    s.run_for(ms(100));
    assert_eq!(s.trace.find(gw(), p(), "BYE").count(), 1);
    assert_eq!(s.proxy.stats().dialogs, 0);
    s.inject(caller, bye(&s, &call, &route(&nonce), "g5"));
    s.run_for(ms(100));
    assert_eq!(bye_answers(&s, caller), vec!["481", "481", "200", "481"]);
    let why: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Rejected {
                status: Some(status),
                reason,
                ..
            } => Some((*status, *reason)),
            _ => None,
        })
        .collect();
    // (The forged source's BYE was delivered at once; the caller's went
    // through the network.)
    assert_eq!(
        why,
        vec![
            (403, "not a peer of the dialog"),
            (481, "unknown dialog"),
            (481, "unknown dialog"),
            (481, "unknown dialog"),
        ]
    );
}

#[test]
fn branches_carry_128_random_bits_and_a_guessed_branch_is_a_stray() {
    let mut s = sim(TrunkScript::rejecting(486), TrunkScript::answering());
    let call = s.call(ORDINARY, "", None);
    s.run_for(ms(100));
    // The branch on the INVITE to the primary: prefix, loop hash, nonce.
    let invite = s.trace.find(gw(), p(), "INVITE").next().unwrap();
    let m = invite.message().unwrap();
    let branch = String::from_utf8_lossy(m.top_via().unwrap().branch().unwrap()).into_owned();
    let rest = branch.strip_prefix("z9hG4bK-lp").unwrap();
    let (hash, nonce) = rest.split_once('.').unwrap();
    assert_eq!(hash.len(), 16);
    assert_eq!(nonce.len(), 33, "32 hex digits and the attempt number");
    assert!(is_hex(nonce));
    // Probe branches carry 32 hex digits of nonce too.
    let probe = s
        .trace
        .packets
        .iter()
        .find(|x| x.from == gw() && x.cseq_method() == "OPTIONS")
        .unwrap()
        .message()
        .unwrap();
    let pb = String::from_utf8_lossy(probe.top_via().unwrap().branch().unwrap()).into_owned();
    assert_eq!(pb.rsplit('.').next().unwrap().len(), 32);

    // A second call: a 200 from the primary's own address whose branch
    // differs from the real one in the last nonce digit matches nothing.
    let second = s.call(ORDINARY, "", None);
    let now = s.elapsed();
    s.run_until(now);
    let invite = s
        .trace
        .find(gw(), p(), "INVITE")
        .find(|x| x.call_id() == second)
        .unwrap()
        .message()
        .unwrap();
    let real = String::from_utf8_lossy(invite.top_via().unwrap().branch().unwrap()).into_owned();
    // The last nonce digit (before the attempt number) changed.
    let digit = &real[real.len() - 2..real.len() - 1];
    let other = if digit == "f" { "0" } else { "f" };
    let guessed = format!(
        "{}{other}{}",
        &real[..real.len() - 2],
        &real[real.len() - 1..]
    );
    assert_ne!(guessed, real);
    let wire = String::from_utf8_lossy(invite.as_bytes())
        .into_owned()
        .replace(&real, &guessed);
    let forged = lifeline_sip::MessageWriter::response_to(
        &Message::parse(Bytes::from(wire)).unwrap(),
        200,
        "OK",
        Some(b"x"),
    )
    .unwrap()
    .finish();
    let before = s.proxy.stats().responses_dropped;
    s.inject(p(), forged);
    let now = s.elapsed();
    s.run_until(now);
    assert_eq!(s.proxy.stats().responses_dropped, before + 1);
    assert_eq!(s.proxy.stats().responses_wrong_peer, 0);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&second).final_status(), Some(486));
    assert_eq!(s.caller_call(&call).final_status(), Some(486));

    // The gateway's own To tag, on the 503 when every trunk fails.
    s.set_script("primary", TrunkScript::rejecting(503));
    s.set_script("backup", TrunkScript::rejecting(503));
    let third = s.call(ORDINARY, "", None);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&third).final_status(), Some(503));
    let refusal = s.trace.first_message(gw(), s.caller_addr(), "503").unwrap();
    let tag = String::from_utf8_lossy(refusal.to().unwrap().tag().unwrap()).into_owned();
    assert_eq!(tag.len(), 32);
    assert!(is_hex(&tag));
}
