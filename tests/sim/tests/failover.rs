//! Failover scenarios in virtual time, with exact assertions.

use std::time::Duration;

use bytes::Bytes;
use lifeline_kit::end_to_end_headers;
use lifeline_proxy::{AttemptFailure, CallFailure, Event, Peer, TrunkConfig};
use lifeline_sim::scenario::{b, config, gw, p, sim};
use lifeline_sim::{ms, Link, Sim, TrunkScript};
use lifeline_sip::{HeaderName, Message};

#[test]
fn answered_call_through_the_primary() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    let c = s.caller_call(&call);
    assert_eq!(c.statuses(), vec![100, 180, 200]);
    assert_eq!(s.trace.first(gw(), p(), "INVITE"), Some(ms(1000)));
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
    // The 200 reached the caller 50 ms after the INVITE (the trunk's script).
    assert_eq!(c.responses[2].1, ms(1050));
    let connected = s.events().iter().find_map(|(_, e)| match e {
        Event::CallConnected { setup, .. } => Some(*setup),
        _ => None,
    });
    assert_eq!(connected, Some(ms(50)));
}

#[test]
fn silent_primary_fails_over_exactly_after_failover_after() {
    let mut s = sim(TrunkScript::silent_to_calls(), TrunkScript::answering());
    let call = s.call("urn:service:sos", "", None);
    s.run_for(ms(400));
    let to_primary = s.trace.first(gw(), p(), "INVITE").unwrap();
    let to_backup = s.trace.first(gw(), b(), "INVITE").unwrap();
    assert_eq!(to_backup - to_primary, ms(200), "failover_after");
    let c = s.caller_call(&call);
    assert_eq!(c.final_status(), Some(200));
    assert!(
        c.statuses().iter().all(|&st| st < 300),
        "the caller never sees a failure: {:?}",
        c.statuses()
    );
    assert_eq!(c.responses.last().unwrap().1, ms(1000 + 200 + 50));
    let failures: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::AttemptFailed {
                reason, elapsed, ..
            } => Some((*t, *reason, *elapsed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        vec![(ms(1200), AttemptFailure::NoResponse, ms(200))]
    );
}

#[test]
fn primary_503_fails_over_at_once_and_is_acked() {
    let mut s = sim(TrunkScript::rejecting(503), TrunkScript::answering());
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(200));
    assert_eq!(s.trace.first(gw(), p(), "INVITE"), Some(ms(1000)));
    assert_eq!(
        s.trace.first(gw(), b(), "INVITE"),
        Some(ms(1000)),
        "same instant"
    );
    assert_eq!(
        s.trace.first(gw(), p(), "ACK"),
        Some(ms(1000)),
        "the 503 is ACKed hop by hop"
    );
    let c = s.caller_call(&call);
    assert_eq!(
        c.statuses(),
        vec![100, 180, 200],
        "503 never reaches the caller"
    );
}

#[test]
fn trying_then_silence_fails_over_after_the_progress_timeout_and_cancels() {
    let mut s = sim(TrunkScript::stalling(), TrunkScript::answering());
    let call = s.call("sip:112@127.0.10.1", "", None);
    s.run_for(ms(2500));
    assert_eq!(
        s.trace.first(gw(), b(), "INVITE"),
        Some(ms(1800)),
        "progress_timeout = 800 ms after the 100"
    );
    let cancel = s
        .trace
        .find(gw(), p(), "CANCEL")
        .next()
        .expect("primary cancelled");
    assert_eq!(cancel.sent, ms(1800));
    let m = cancel.message().unwrap();
    assert!(m.header(HeaderName::Reason).is_some(), "RFC 3326 Reason");
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    let reasons: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::AttemptFailed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![AttemptFailure::NoProgress]);
}

#[test]
fn late_ringing_on_the_abandoned_primary_is_cancelled() {
    let late = TrunkScript {
        invite: vec![(ms(300), 180), (ms(400), 200)],
        answer_options: true,
    };
    let mut s = sim(late, TrunkScript::answering());
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(1000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1200)));
    // The backup answered at 1250; the primary's 180 at 1300 gets a CANCEL.
    let cancel = s
        .trace
        .find(gw(), p(), "CANCEL")
        .next()
        .expect("late 180 cancelled");
    assert_eq!(cancel.sent, ms(1300));
    assert!(cancel
        .message()
        .unwrap()
        .header(HeaderName::Reason)
        .is_some());
    let c = s.caller_call(&call);
    assert_eq!(c.statuses().iter().filter(|&&st| st == 200).count(), 1);
    assert!(s
        .events()
        .iter()
        .any(|(t, e)| *t == ms(1300) && matches!(e, Event::LateResponse { status: 180, .. })));
    // The primary's 487 for the cancelled INVITE is ACKed and absorbed.
    assert!(s.trace.first(gw(), p(), "ACK").is_some());
    assert!(!c.statuses().contains(&487));
}

#[test]
fn caller_cancel_during_failover_stops_further_attempts() {
    let mut s = sim(TrunkScript::silent_to_calls(), TrunkScript::answering());
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    s.cancel(&call);
    s.run_for(ms(2000));
    assert_eq!(
        s.trace.find(gw(), b(), "INVITE").count(),
        0,
        "no attempt after CANCEL"
    );
    let c = s.caller_call(&call);
    assert_eq!(c.final_status(), Some(487));
    assert!(s
        .events()
        .iter()
        .any(|(t, e)| *t == ms(1100) && matches!(e, Event::CallCancelled { .. })));
    assert!(!s
        .events()
        .iter()
        .any(|(_, e)| matches!(e, Event::AttemptStarted { attempt: 2, .. })));
}

#[test]
fn all_trunks_failing_gives_503_with_retry_after_and_a_failed_call() {
    let mut s = sim(TrunkScript::rejecting(503), TrunkScript::rejecting(500));
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    let c = s.caller_call(&call);
    assert_eq!(c.final_status(), Some(503));
    let resp = s.trace.first_message(gw(), s.caller_addr(), "503").unwrap();
    assert_eq!(
        resp.header(HeaderName::RetryAfter).map(|h| h.value),
        Some(&b"5"[..])
    );
    let failed: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::CallFailed { status, reason, .. } => Some((*t, *status, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![(ms(1000), 503, CallFailure::AllTrunksFailed)]);
    // The caller's ACK for the 503 ends the server transaction quietly.
    s.run_for(ms(40_000));
    assert_eq!(s.proxy.stats().server_transactions, 0);
    assert_eq!(s.proxy.stats().calls, 0);
}

#[test]
fn callee_answers_are_relayed_not_failed_over() {
    let mut s = sim(TrunkScript::rejecting(486), TrunkScript::answering());
    let call = s.call("sip:+441632960000@127.0.10.1", "", None);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&call).final_status(), Some(486));
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
}

#[test]
fn ack_and_bye_follow_the_record_route() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    let c = s.caller_call(&call).clone();
    assert_eq!(c.route_set.len(), 1, "our Record-Route");
    assert!(String::from_utf8_lossy(&c.route_set[0]).contains(";lr;ll="));
    // The 2xx ACK went caller -> gateway -> primary.
    assert!(s.trace.find(s.caller_addr(), gw(), "ACK").next().is_some());
    assert_eq!(s.trace.find(gw(), p(), "ACK").count(), 1);
    assert_eq!(s.proxy.stats().dialogs, 1);
    s.bye(&call);
    s.run_for(ms(100));
    assert_eq!(s.trace.find(gw(), p(), "BYE").count(), 1);
    let bye_ok = s
        .trace
        .find(gw(), s.caller_addr(), "200")
        .filter(|p| p.cseq_method() == "BYE")
        .count();
    assert_eq!(bye_ok, 1);
    assert_eq!(s.proxy.stats().dialogs, 0, "BYE ends the dialog");
}

#[test]
fn retransmitted_invites_are_absorbed() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    s.set_latency("caller", ms(0));
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(5));
    s.retransmit_invite(&call);
    s.retransmit_invite(&call);
    s.run_for(ms(100));
    assert_eq!(s.trace.find(gw(), p(), "INVITE").count(), 1);
    assert_eq!(s.trunks["primary"].invites.len(), 1);
    assert_eq!(s.proxy.stats().retransmissions_absorbed, 2);
    assert_eq!(
        s.caller_call(&call)
            .statuses()
            .iter()
            .filter(|&&c| c == 100)
            .count(),
        3,
        "100 resent"
    );
}

#[test]
fn killed_primary_refusing_with_icmp_fails_over_at_once() {
    let mut s = sim(TrunkScript::answering(), TrunkScript::answering());
    s.set_link("primary", Link::Refused);
    let call = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    assert_eq!(s.trace.first(gw(), p(), "INVITE"), Some(ms(1000)));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1000)));
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    let primary = s.proxy.health().find("primary").unwrap();
    // The call's ICMP made it Suspect; the confirming probe's ICMP made it Down.
    assert_eq!(
        s.proxy.health().trunk(primary).unwrap().state,
        lifeline_health::State::Down
    );
}

#[test]
fn a_trunk_that_keeps_timing_out_is_skipped_by_new_calls() {
    let mut s = sim(TrunkScript::silent_to_calls(), TrunkScript::answering());
    // Two calls time out on the primary (down_after = 2) ...
    let first = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(10));
    let second = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(300));
    // ... so the third goes straight to the backup.
    let third = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    for c in [&first, &second, &third] {
        assert_eq!(s.caller_call(c).final_status(), Some(200));
    }
    let invites_to_primary: Vec<_> = s
        .trace
        .find(gw(), p(), "INVITE")
        .map(|p| p.call_id())
        .collect();
    assert_eq!(invites_to_primary, vec![first.clone(), second.clone()]);
}

const EMERGENCY_BODY: &[u8] = b"--boundary1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.20.1\r\ns=-\r\nc=IN IP4 127.0.20.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n\r\n--boundary1\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@caller>\r\n\r\n<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:caller@example.net\"><tuple id=\"a\"><status><geopriv><location-info><Point xmlns=\"http://www.opengis.net/gml\"><pos>51.5 -0.12</pos></Point></location-info></geopriv></status></tuple></presence>\r\n--boundary1--\r\n";

#[test]
fn identity_and_location_reach_the_backup_byte_identical() {
    // The caller's network is the trust domain (`access.trusted`): its
    // identity and priority are kept.
    let mut cfg = config();
    cfg.access.trusted = vec!["127.0.20.0/24".parse().unwrap()];
    let mut s = Sim::new(
        cfg,
        &[
            ("primary", TrunkScript::silent_to_calls()),
            ("backup", TrunkScript::answering()),
        ],
    );
    s.run_until(ms(1000));
    let extra = "P-Asserted-Identity: \"Caller\" <sip:+441632960001@orig.example.net>, <tel:+441632960001>\r\nGeolocation: <cid:loc@caller>\r\nGeolocation-Routing: no\r\nResource-Priority: esnet.1\r\nCall-Info: <urn:emergency:uid:callid:abc:orig.example.net>;purpose=emergency-CallId\r\n";
    let call = s.call(
        "urn:service:sos",
        extra,
        Some(("multipart/mixed;boundary=boundary1", EMERGENCY_BODY)),
    );
    s.run_for(ms(400));
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    let sent = Message::parse(s.caller_call(&call).invite.clone().unwrap()).unwrap();
    let at_backup = Message::parse(s.trunks["backup"].invites[0].clone()).unwrap();
    let at_primary = Message::parse(s.trunks["primary"].invites[0].clone()).unwrap();
    let untouched = end_to_end_headers;
    assert_eq!(untouched(&at_backup), untouched(&sent));
    assert_eq!(untouched(&at_primary), untouched(&sent));
    assert_eq!(at_backup.body(), sent.body());
    assert_eq!(at_backup.request_uri_bytes(), sent.request_uri_bytes());
    assert_eq!(at_backup.max_forwards().unwrap(), Some(69));
    // The caller's identity and location are in the journal's CallStarted event.
    let info = s
        .events()
        .iter()
        .find_map(|(_, e)| match e {
            Event::CallStarted { info, .. } => Some(info.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(info.asserted_identities.len(), 2);
    assert_eq!(
        info.location.geolocation,
        vec![Bytes::from_static(b"<cid:loc@caller>")]
    );
    assert!(info.location.pidf_lo);
    assert_eq!(info.emergency, Some(lifeline_proxy::EmergencyRule::SosUrn));
}

#[test]
fn ten_thousand_concurrent_calls() {
    let ringing_long = TrunkScript {
        invite: vec![(ms(0), 100), (ms(10), 180), (ms(20_000), 200)],
        answer_options: true,
    };
    let mut s = sim(ringing_long, TrunkScript::answering());
    let mut calls = Vec::new();
    for i in 0..10_000u32 {
        calls.push(s.call("sip:999@127.0.10.1", "", None));
        if i % 100 == 99 {
            s.run_for(Duration::from_millis(1));
        }
    }
    s.run_for(ms(1000));
    let st = s.proxy.stats();
    assert_eq!(st.calls, 10_000, "all ringing at once");
    assert_eq!(st.server_transactions, 10_000);
    s.run_for(ms(20_000));
    for c in &calls {
        assert_eq!(s.caller_call(c).final_status(), Some(200));
    }
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
    s.run_for(ms(40_000));
    let st = s.proxy.stats();
    assert_eq!(
        (st.calls, st.server_transactions, st.client_transactions),
        (0, 0, 0),
        "everything cleaned up"
    );
    assert_eq!(st.dialogs, 10_000, "answered dialogs stay until BYE");
}

#[test]
fn reload_keeps_calls_in_progress_and_health() {
    let ringing = TrunkScript {
        invite: vec![(ms(0), 100), (ms(10), 180), (ms(3000), 200)],
        answer_options: true,
    };
    let mut s = sim(ringing, TrunkScript::answering());
    let before = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    // New configuration: a third trunk first in the emergency route.
    let mut cfg = config();
    cfg.trunks.push(TrunkConfig::new(
        "third",
        Peer::udp("127.0.30.3:5060".parse().unwrap()),
    ));
    cfg.routes[0].trunks = vec!["backup".into(), "primary".into()];
    let now = s.now;
    s.proxy.reload(now, cfg.clone()).unwrap();
    let after = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(4000));
    assert_eq!(
        s.caller_call(&before).final_status(),
        Some(200),
        "the ringing call completes on the primary"
    );
    assert_eq!(s.trace.find(gw(), p(), "INVITE").count(), 1);
    assert_eq!(s.caller_call(&after).final_status(), Some(200));
    assert_eq!(
        s.trace.find(gw(), b(), "INVITE").count(),
        1,
        "the new call takes the new route"
    );
    assert!(s.proxy.health().find("third").is_some());
    // A bad configuration is refused and the old one stays.
    cfg.routes[0].trunks = vec!["nonexistent".into()];
    assert!(s.proxy.reload(now, cfg).is_err());
    let third = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(100));
    assert_eq!(s.caller_call(&third).final_status(), Some(200));
}

#[test]
fn shutting_down_refuses_new_calls_and_finishes_the_rest() {
    let ringing = TrunkScript {
        invite: vec![(ms(0), 100), (ms(10), 180), (ms(500), 200)],
        answer_options: true,
    };
    let mut s = sim(ringing, TrunkScript::answering());
    let live = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(50));
    s.proxy.set_accepting(false);
    let refused = s.call("sip:999@127.0.10.1", "", None);
    s.run_for(ms(600));
    assert_eq!(s.caller_call(&refused).final_status(), Some(503));
    assert_eq!(s.caller_call(&live).final_status(), Some(200));
    s.bye(&live);
    s.run_for(ms(40_000));
    assert!(s.proxy.is_idle());
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let mut s = sim(TrunkScript::silent_to_calls(), TrunkScript::answering());
    let _ = s.call("sip:+441632960000@127.0.10.1", "", None);
    s.run_for(ms(10));
    // The primary (a misconfigured proxy) routes our INVITE straight back,
    // adding its own Via as a proxy does.
    let original = String::from_utf8(s.trunks["primary"].invites[0].to_vec()).unwrap();
    let via =
        |b: &str| format!("SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.30.1:5060;branch=z9hG4bK{b}\r\n");
    let looped = original.replacen("SIP/2.0\r\n", &via("loop"), 1);
    s.inject(p(), Bytes::from(looped));
    s.run_for(ms(10));
    let answer = s.trace.find(gw(), p(), "482").next();
    assert!(answer.is_some(), "482 Loop Detected to the looping trunk");
    // A spiral (the Request-URI changed on the way) is not a loop.
    let spiral = original
        .replacen("SIP/2.0\r\n", &via("spiral"), 1)
        .replacen(
            "sip:+441632960000@127.0.10.1",
            "sip:+441632960001@127.0.10.1",
            1,
        );
    s.inject(p(), Bytes::from(spiral));
    s.run_for(ms(10));
    assert_eq!(s.trace.find(gw(), p(), "482").count(), 1);
}
