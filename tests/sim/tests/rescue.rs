//! No call left behind: rescue of calls ringing on a trunk that dies, the
//! 2xx race that follows, the learned progress timeout, hedged attempts,
//! the canary after recovery and trunk capacity — in virtual time, with
//! exact instants.
//!
//! Probes go out every 250 ms from t = 0 and time out after 250 ms (the
//! defaults), so a trunk cut off at 1100 ms is probed at 1250 ms: a refused
//! link answers that probe with ICMP at once; a black hole lets it time out
//! at 1500 ms (Suspect, probed again at once) and again at 1750 ms (Down).

use std::net::SocketAddr;
use std::time::Duration;

use lifeline_proxy::{AttemptFailure, Event, ProxyConfig, RescueRinging, SkipReason, TrunkShare};
use lifeline_sim::scenario::{
    self, b, failures, gw, p, rescued, ringing, sim, sim_with, EMERGENCY, ORDINARY, PRIMARY,
};
use lifeline_sim::{ms, Link, Sim, TrunkScript};
use lifeline_sip::HeaderName;

/// The scenarios' configuration, edited.
fn config(edit: impl FnOnce(&mut ProxyConfig)) -> ProxyConfig {
    let mut cfg = scenario::config();
    edit(&mut cfg);
    cfg
}

/// Where the gateway sent the first INVITE of a call.
fn first_invite_to(s: &Sim, call_id: &str) -> Option<SocketAddr> {
    s.trace
        .packets
        .iter()
        .find(|p| p.from == gw() && p.summary() == "INVITE" && p.call_id() == call_id)
        .map(|p| p.to)
}

/// Place a call to `uri` at 1000 ms, cut the primary off (`link`) at
/// 1100 ms, and run to `until`.
fn call_and_cut_primary(s: &mut Sim, uri: &str, link: Link, until: Duration) -> String {
    let call = s.call(uri, "", None);
    s.run_until(ms(1100));
    s.set_link("primary", link);
    s.run_until(until);
    call
}

#[test]
fn a_call_ringing_on_a_killed_trunk_moves_to_the_backup_at_the_icmp() {
    let mut s = sim(ringing(ms(1500)), TrunkScript::answering());
    let call = s.call(EMERGENCY, "", None);
    s.run_until(ms(1100));
    assert_eq!(s.caller_call(&call).statuses(), vec![100, 180]);
    s.set_link("primary", Link::Refused);
    s.run_until(ms(3000));
    // The first send after the kill is the 1250 ms probe; its ICMP makes
    // the primary Suspect and sends another probe at once, whose ICMP
    // corroborates it: Down at 1250, and the backup INVITE leaves then.
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1250)));
    let cancel = s.trace.find(gw(), p(), "CANCEL").next().expect("CANCEL");
    assert_eq!(cancel.sent, ms(1250));
    assert_eq!(
        cancel
            .message()
            .unwrap()
            .header(HeaderName::Reason)
            .map(|h| h.value.to_vec()),
        Some(b"SIP;cause=503;text=\"trunk down\"".to_vec())
    );
    let c = s.caller_call(&call);
    // The backup's own 180 is relayed too, then its 200 (answers after 50 ms).
    assert_eq!(c.statuses(), vec![100, 180, 180, 200]);
    assert_eq!(c.responses.last().unwrap().1, ms(1300));
    assert_eq!(rescued(&s), vec![(ms(1250), true)]);
    // Moved by the Down verdict: no error answered the call's own messages.
    assert_eq!(failures(&s), vec![(ms(1250), AttemptFailure::TrunkDown)]);
}

#[test]
fn a_call_ringing_on_a_hung_trunk_moves_when_probes_take_it_down() {
    let mut s = sim(ringing(ms(5000)), TrunkScript::answering());
    let call = call_and_cut_primary(&mut s, "urn:service:sos", Link::BlackHole, ms(3000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1750)));
    assert_eq!(s.trace.first(gw(), p(), "CANCEL"), Some(ms(1750)));
    assert_eq!(rescued(&s), vec![(ms(1750), true)]);
    let c = s.caller_call(&call);
    assert_eq!(c.final_status(), Some(200));
    assert_eq!(c.responses.last().unwrap().1, ms(1800));
    assert_eq!(failures(&s), vec![(ms(1750), AttemptFailure::TrunkDown)]);
}

#[test]
fn the_old_trunk_answering_first_wins_and_the_new_attempt_is_cancelled() {
    // The primary answers 1 s after the INVITE; it is cut off from 1100 to
    // 1800 ms (Down at 1750, the call rescued). The backup rings but takes
    // 500 ms to answer, so the primary's 200 at 2000 ms comes first.
    let mut s = sim(ringing(ms(1000)), ringing(ms(500)));
    let call = call_and_cut_primary(&mut s, EMERGENCY, Link::BlackHole, ms(1800));
    s.set_link("primary", Link::Up);
    s.run_until(ms(4000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1750)));
    let c = s.caller_call(&call);
    let finals: Vec<_> = c.responses.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(finals.len(), 1, "one answer reaches the caller");
    assert_eq!(finals[0].1, ms(2000));
    let to = c.answer.as_ref().unwrap().to().unwrap();
    assert_eq!(to.tag(), Some(&b"primary-1"[..]), "the primary's dialog");
    let cancel = s
        .trace
        .find(gw(), b(), "CANCEL")
        .next()
        .expect("backup cancelled");
    assert_eq!(cancel.sent, ms(2000));
    assert_eq!(s.trace.find(gw(), b(), "BYE").count(), 0);
    assert_eq!(s.trace.find(gw(), p(), "BYE").count(), 0);
}

#[test]
fn the_old_trunk_answering_second_is_acked_and_ended_with_a_bye() {
    // As above, but the backup answers 50 ms after its INVITE (1800 ms),
    // before the primary's 200 at 2000 ms.
    let mut s = sim(ringing(ms(1000)), TrunkScript::answering());
    let call = call_and_cut_primary(&mut s, EMERGENCY, Link::BlackHole, ms(1800));
    s.set_link("primary", Link::Up);
    s.run_until(ms(4000));
    let c = s.caller_call(&call);
    let finals: Vec<_> = c.responses.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(finals.len(), 1, "the second 2xx is not forwarded");
    assert_eq!(finals[0].1, ms(1800));
    let to = c.answer.as_ref().unwrap().to().unwrap();
    assert_eq!(to.tag(), Some(&b"backup-1"[..]));
    let ack = s.trace.find(gw(), p(), "ACK").next().expect("ACK");
    let bye = s.trace.find(gw(), p(), "BYE").next().expect("BYE");
    assert_eq!((ack.sent, bye.sent), (ms(2000), ms(2000)));
    let bye = bye.message().unwrap();
    assert_eq!(bye.to().unwrap().tag(), Some(&b"primary-1"[..]));
    assert_eq!(
        bye.request_uri_bytes(),
        Some(&format!("sip:uas@{PRIMARY}").into_bytes()[..])
    );
    assert_eq!(bye.cseq().unwrap().seq, 2);
    assert!(
        bye.header(HeaderName::Route).is_none(),
        "our own Record-Route is not a hop"
    );
    assert!(s
        .events()
        .iter()
        .any(|(t, e)| *t == ms(2000) && matches!(e, Event::DuplicateAnswer { .. })));
    // The primary's 200 OK to the BYE ends the transaction: nothing lingers.
    s.run_for(ms(40_000));
    assert_eq!(s.proxy.stats().client_transactions, 0);
    assert_eq!(s.proxy.stats().dialogs, 1, "the backup's dialog only");
}

#[test]
fn ringing_ordinary_calls_are_not_rescued_by_default() {
    let mut s = sim(ringing(ms(5000)), TrunkScript::answering());
    let call = call_and_cut_primary(&mut s, ORDINARY, Link::Refused, ms(3000));
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
    assert_eq!(s.caller_call(&call).statuses(), vec![100, 180]);
    assert!(rescued(&s).is_empty());
}

#[test]
fn rescue_ringing_all_rescues_ordinary_calls_and_off_rescues_none() {
    let all = config(|c| c.routes[1].rescue_ringing = RescueRinging::All);
    let mut s = sim_with(all, ringing(ms(5000)), TrunkScript::answering());
    let call = call_and_cut_primary(&mut s, ORDINARY, Link::Refused, ms(3000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1250)));
    assert_eq!(s.caller_call(&call).final_status(), Some(200));

    let off = config(|c| c.routes[0].rescue_ringing = RescueRinging::Off);
    let mut s = sim_with(off, ringing(ms(5000)), TrunkScript::answering());
    let call = call_and_cut_primary(&mut s, EMERGENCY, Link::Refused, ms(3000));
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
    assert_eq!(s.caller_call(&call).final_status(), None);
}

#[test]
fn calls_not_yet_ringing_move_when_the_trunk_goes_down_whatever_their_class() {
    // A trunk that sends 100 and then nothing, black-holed: the ordinary
    // call would wait its 800 ms progress timeout; the Down verdict at
    // 1750 ms moves it sooner.
    let mut s = sim(TrunkScript::stalling(), TrunkScript::answering());
    let call = call_and_cut_primary(&mut s, ORDINARY, Link::BlackHole, ms(3000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1750)));
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
    assert_eq!(rescued(&s), vec![(ms(1750), false)]);
}

/// Ten calls through a primary that rings 5 ms after its 100 Trying, one
/// every 20 ms from 1000 ms: its learned time to ringing is then a few ms.
fn learn_fast_primary(s: &mut Sim) {
    for _ in 0..10 {
        s.call(EMERGENCY, "", None);
        s.run_for(ms(20));
    }
    s.run_for(ms(200));
    let learned = s
        .proxy
        .health()
        .trunk(s.proxy.health().find("primary").unwrap());
    let learned = learned
        .unwrap()
        .progress
        .trying_to_ringing
        .expect("learned");
    assert!(learned < ms(25), "{learned:?}");
}

fn fast() -> TrunkScript {
    TrunkScript {
        invite: vec![(ms(0), 100), (ms(5), 180), (ms(10), 200)],
        answer_options: true,
    }
}

#[test]
fn a_stall_on_a_fast_trunk_is_left_after_progress_timeout_min() {
    let mut s = sim(fast(), TrunkScript::answering());
    learn_fast_primary(&mut s);
    s.set_script("primary", TrunkScript::stalling());
    let t = s.elapsed();
    let call = s.call(EMERGENCY, "", None);
    s.run_for(ms(500));
    // 4 x a few ms is under the floor: 100 ms after the 100 Trying.
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(t + ms(100)));
    assert_eq!(s.caller_call(&call).final_status(), Some(200));
}

#[test]
fn two_stalls_take_the_trunk_down_and_every_waiting_call_moves_then() {
    let mut s = sim(fast(), TrunkScript::answering());
    learn_fast_primary(&mut s);
    s.set_script("primary", TrunkScript::stalling());
    let t = s.elapsed();
    let mut calls = Vec::new();
    for _ in 0..6 {
        calls.push(s.call(EMERGENCY, "", None));
        s.run_for(ms(10));
    }
    s.run_until(t + ms(600));
    // Call 1 stalls at t+100 (Suspect), call 2 at t+110 (Down): calls 3-6,
    // sent at t+20 .. t+50, move to the backup at t+110, all at once.
    let to_backup: Vec<_> = calls
        .iter()
        .map(|c| {
            s.trace
                .packets
                .iter()
                .find(|p| p.to == b() && p.summary() == "INVITE" && &p.call_id() == c)
                .map(|p| p.sent - t)
        })
        .collect();
    assert_eq!(
        to_backup,
        vec![
            Some(ms(100)),
            Some(ms(110)),
            Some(ms(110)),
            Some(ms(110)),
            Some(ms(110)),
            Some(ms(110))
        ]
    );
    for c in &calls {
        assert_eq!(s.caller_call(c).final_status(), Some(200));
    }
}

#[test]
fn a_slow_psap_keeps_its_calls_and_a_stall_there_waits_the_configured_maximum() {
    let slow = TrunkScript {
        invite: vec![(ms(0), 100), (ms(600), 180), (ms(700), 200)],
        answer_options: true,
    };
    let mut s = sim(slow, TrunkScript::answering());
    for _ in 0..10 {
        s.call(EMERGENCY, "", None);
        s.run_for(ms(50));
    }
    s.run_for(ms(1000));
    assert_eq!(
        s.trace.find(gw(), b(), "INVITE").count(),
        0,
        "never abandoned"
    );
    s.set_script("primary", TrunkScript::stalling());
    let t = s.elapsed();
    s.call(EMERGENCY, "", None);
    s.run_for(ms(1500));
    // 4 x ~600 ms is over the ceiling: the configured 800 ms.
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(t + ms(800)));
}

fn hedged() -> ProxyConfig {
    config(|c| c.routes[0].hedge_after = Some(ms(300)))
}

#[test]
fn a_hedge_that_answers_first_wins_and_the_first_attempt_is_cancelled() {
    let slow = TrunkScript {
        invite: vec![(ms(0), 100), (ms(400), 180), (ms(450), 200)],
        answer_options: true,
    };
    let mut s = sim_with(hedged(), slow, TrunkScript::answering());
    let call = s.call(EMERGENCY, "", None);
    s.run_for(ms(1000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1300)));
    assert_eq!(s.trace.first(gw(), p(), "CANCEL"), Some(ms(1350)));
    let c = s.caller_call(&call);
    assert_eq!(c.final_status(), Some(200));
    assert_eq!(c.responses.last().unwrap().1, ms(1350));
    let ev: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Hedged { .. } => Some((*t, "hedged")),
            Event::AttemptFailed {
                reason: AttemptFailure::Superseded,
                ..
            } => Some((*t, "superseded")),
            _ => None,
        })
        .collect();
    assert_eq!(ev, vec![(ms(1300), "hedged"), (ms(1350), "superseded")]);
    // No failure is held against the slow trunk.
    let primary = s.proxy.health().find("primary").unwrap();
    assert_eq!(s.proxy.health().trunk(primary).unwrap().live_failures, 0);
}

#[test]
fn a_hedge_that_loses_is_cancelled_or_if_it_answers_too_ended() {
    // The primary rings at 1350 and answers at 1400; the hedge on the
    // backup (sent at 1300) answers at 1400 too, but 5 ms away: its 200
    // arrives at 1405, after the primary's was forwarded.
    let primary = TrunkScript {
        invite: vec![(ms(0), 100), (ms(350), 180), (ms(400), 200)],
        answer_options: true,
    };
    let backup = TrunkScript {
        invite: vec![(ms(0), 100), (ms(95), 200)],
        answer_options: true,
    };
    let mut s = sim_with(hedged(), primary, backup);
    s.set_latency("backup", ms(5));
    let call = s.call(EMERGENCY, "", None);
    s.run_for(ms(1000));
    assert_eq!(s.trace.first(gw(), b(), "INVITE"), Some(ms(1300)));
    let c = s.caller_call(&call);
    assert_eq!(c.responses.iter().filter(|r| r.0 == 200).count(), 1);
    assert_eq!(c.responses.last().unwrap().1, ms(1400));
    assert_eq!(s.trace.first(gw(), b(), "CANCEL"), Some(ms(1400)));
    assert_eq!(s.trace.first(gw(), b(), "ACK"), Some(ms(1405)));
    assert_eq!(s.trace.first(gw(), b(), "BYE"), Some(ms(1405)));
}

#[test]
fn hedging_is_for_emergency_calls_only() {
    let slow = TrunkScript {
        invite: vec![(ms(0), 100), (ms(400), 180), (ms(450), 200)],
        answer_options: true,
    };
    let cfg = config(|c| {
        c.routes[0].hedge_after = Some(ms(300));
        c.routes[1].hedge_after = Some(ms(300));
    });
    let mut s = sim_with(cfg, slow, TrunkScript::answering());
    let call = s.call(ORDINARY, "", None);
    s.run_for(ms(1000));
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 0);
    assert_eq!(s.caller_call(&call).responses.last().unwrap().1, ms(1450));
}

#[test]
fn after_a_live_outage_the_primary_gets_one_ordinary_call_in_ten_and_no_emergency_call() {
    let mut s = sim(TrunkScript::rejecting(503), TrunkScript::answering());
    // Two 503s take it Down on live evidence; probes still answer.
    s.call(ORDINARY, "", None);
    s.call(ORDINARY, "", None);
    s.run_for(ms(10));
    let primary = s.proxy.health().find("primary").unwrap();
    assert!(!s.proxy.health().trunk(primary).unwrap().state.usable());
    s.set_script("primary", TrunkScript::answering());
    // live_hold (5 s), then three answered probes: Up, in a canary.
    s.run_until(ms(7000));
    let status = s.proxy.health().trunk(primary).unwrap();
    assert!(status.state.usable(), "{:?}", status.state);
    let until = status.canary_until.expect("in a canary");
    let before = s.trace.find(gw(), p(), "INVITE").count();
    for _ in 0..20 {
        s.call(ORDINARY, "", None);
        s.run_for(ms(5));
    }
    let emergency = s.call(EMERGENCY, "", None);
    s.run_for(ms(100));
    assert!(s.elapsed() < until - s.t0);
    assert_eq!(s.trace.find(gw(), p(), "INVITE").count() - before, 2);
    let went_to = first_invite_to(&s, &emergency);
    assert_eq!(went_to, Some(b()), "emergency calls go to the proven trunk");
}

#[test]
fn a_full_trunk_overflows_to_the_next_but_never_sheds_an_emergency_call() {
    let cfg = config(|c| {
        c.trunks[0].max_calls = Some(2);
        c.trunks[1].max_calls = Some(1);
    });
    let mut s = sim_with(cfg, ringing(ms(5000)), ringing(ms(5000)));
    let calls: Vec<_> = (0..3).map(|_| s.call(ORDINARY, "", None)).collect();
    s.run_for(ms(50));
    let primary = s.proxy.health().find("primary").unwrap();
    let backup = s.proxy.health().find("backup").unwrap();
    assert_eq!(s.proxy.trunk_calls(primary), 2);
    assert_eq!(s.proxy.trunk_calls(backup), 1);
    let third = first_invite_to(&s, &calls[2]);
    assert_eq!(third, Some(b()));
    let skipped: Vec<_> = s
        .events()
        .iter()
        .filter_map(|(t, e)| match e {
            Event::TrunkSkipped { trunk, reason, .. } => Some((*t, *trunk, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, vec![(ms(1000), primary, SkipReason::MaxCalls)]);
    // Both full: an ordinary call is refused, an emergency call is not.
    let ordinary = s.call(ORDINARY, "", None);
    let emergency = s.call(EMERGENCY, "", None);
    s.run_for(ms(50));
    assert_eq!(s.caller_call(&ordinary).final_status(), Some(503));
    let to = first_invite_to(&s, &emergency);
    assert_eq!(to, Some(p()), "the full primary, first in its route");
    // A call that ends frees its place.
    s.run_for(ms(6000));
    assert_eq!(
        s.proxy.trunk_calls(primary),
        3,
        "answered calls keep theirs"
    );
    for c in &calls[..2] {
        s.bye(c);
    }
    s.run_for(ms(100));
    assert_eq!(s.proxy.trunk_calls(primary), 1);
}

#[test]
fn max_cps_passes_the_excess_of_a_second_to_the_next_trunk() {
    let cfg = config(|c| c.trunks[0].max_cps = Some(5));
    let mut s = sim_with(cfg, TrunkScript::answering(), TrunkScript::answering());
    for _ in 0..7 {
        s.call(ORDINARY, "", None);
    }
    s.run_for(ms(100));
    assert_eq!(s.trace.find(gw(), p(), "INVITE").count(), 5);
    assert_eq!(s.trace.find(gw(), b(), "INVITE").count(), 2);
    // 200 ms later the bucket has one token again.
    s.run_for(ms(100));
    s.call(ORDINARY, "", None);
    s.run_for(ms(10));
    assert_eq!(s.trace.find(gw(), p(), "INVITE").count(), 6);
}

#[test]
fn weights_share_calls_within_a_priority_group() {
    let cfg = config(|c| {
        c.routes[1].shares = vec![
            TrunkShare {
                priority: 1,
                weight: 3,
            },
            TrunkShare {
                priority: 1,
                weight: 1,
            },
        ];
    });
    let mut s = sim_with(cfg, TrunkScript::answering(), TrunkScript::answering());
    for _ in 0..400 {
        s.call(ORDINARY, "", None);
        s.run_for(ms(2));
    }
    s.run_for(ms(100));
    let to_p = s.trace.find(gw(), p(), "INVITE").count();
    let to_b = s.trace.find(gw(), b(), "INVITE").count();
    assert_eq!(to_p + to_b, 400);
    // 3:1 of 400 is 300:100; a seeded draw lands near it.
    assert!((270..=330).contains(&to_p), "{to_p} / {to_b}");
}
