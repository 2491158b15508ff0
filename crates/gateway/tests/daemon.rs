//! `lifeline run` end to end: the real binary, a real configuration file,
//! trunks and a caller on loopback sockets (ports from the OS). Nothing here
//! asserts a duration: waits are bounded polls, assertions are on counts,
//! statuses and order.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use lifeline_kit::{Caller, Mode, Uas};
use support::{metric, Answer, Daemon};

fn config_text(
    sip: SocketAddr,
    admin: SocketAddr,
    dir: &Path,
    first: SocketAddr,
    second: SocketAddr,
) -> String {
    format!(
        "listen:\n  - udp: {sip}\n  - tcp: {sip}\nadmin: {admin}\njournal: {}\nnode_name: gw-test\ntrunks:\n  - name: primary\n    address: {first}\n    probe: {{ canary: 2s }}\n  - name: backup\n    address: {second}\nroutes:\n  - name: emergency\n    match: emergency\n    trunks: [primary, backup]\n  - name: default\n    match: any\n    trunks: [primary, backup]\n",
        dir.join("journal").display()
    )
}

/// A gateway through `primary` then `backup`, once its admin API answers.
fn start(name: &str, primary: SocketAddr, backup: SocketAddr) -> Daemon {
    Daemon::start(
        &format!("daemon-{name}"),
        |sip, admin, dir| config_text(sip, admin, dir, primary, backup),
        |d| d.get("/status", None).status == 200,
    )
}

#[test]
fn failover_and_failback_over_real_sockets() {
    let mut primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let d = start("failover", primary.addr(), backup.addr());
    let mut caller = Caller::new(d.sip, "daemon").with_identities();
    d.wait_for(Daemon::ready_with_trunks);
    for _ in 0..3 {
        assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    }
    assert_eq!((primary.invites(), backup.invites()), (3, 0));

    let up = |d: &Daemon| {
        d.get("/status", None)
            .body
            .contains(r#""name":"primary","state":"up""#)
    };
    // Up, and past the canary that follows a Down on failed calls.
    let trusted = |d: &Daemon| {
        up(d)
            && metric(
                &d.get("/metrics", None).body,
                r#"lifeline_trunk_canary{trunk="primary"}"#,
            ) == 0.0
    };

    // Killed: its port answers ICMP port unreachable.
    primary.kill();
    for _ in 0..3 {
        assert_eq!(
            caller.call("sip:999@lifeline"),
            Some(200),
            "a killed primary costs no call"
        );
    }
    // /status (published every 250 ms) shows it down.
    d.wait_for(|d| {
        d.get("/status", None)
            .body
            .contains(r#""name":"primary","state":"down""#)
    });
    // Back: probes bring it up. Down on failed calls and up on probes alone,
    // it is a canary for a while (2 s here): emergency calls go to the
    // backup. Then it takes new calls again.
    primary.reopen().unwrap();
    d.wait_for(up);
    let before = primary.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(primary.invites(), before, "no emergency call to a canary");
    d.wait_for(trusted);
    assert!(d.log().contains("canary"), "the canary is logged");
    let before = primary.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(primary.invites(), before + 1, "failback");

    // Hung: no answer, no ICMP.
    primary.set_mode(Mode::Hang);
    for _ in 0..3 {
        assert_eq!(
            caller.call("urn:service:sos"),
            Some(200),
            "a hung primary costs no call"
        );
    }
    // Seen down before it is let recover (/status is published every
    // 250 ms: an older snapshot would still say up).
    d.wait_for(|d| {
        d.get("/status", None)
            .body
            .contains(r#""name":"primary","state":"down""#)
    });
    primary.set_mode(Mode::Answer);
    d.wait_for(trusted);

    // Answering 503 while OPTIONS are fine.
    primary.set_mode(Mode::Reject(503));
    for _ in 0..3 {
        assert_eq!(
            caller.call("sip:112@lifeline"),
            Some(200),
            "a 503 primary costs no call"
        );
    }
    assert!(
        backup.invites() >= 6,
        "the backup took the calls: {}",
        backup.invites()
    );

    let Answer {
        status: code,
        body: metrics,
        ..
    } = d.get("/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metric(
            &metrics,
            r#"lifeline_failovers_total{trunk="primary",reason="no-response"}"#
        ) >= 1.0,
        "{metrics}"
    );
    // The finished calls' transactions linger (32 s), counted apart; UDP
    // moved every datagram in at least one call each.
    d.wait_for(|d| {
        metric(
            &d.get("/metrics", None).body,
            "lifeline_transactions_lingering",
        ) >= 1.0
    });
    for direction in ["in", "out"] {
        let calls = metric(
            &metrics,
            &format!(r#"lifeline_udp_syscalls_total{{direction="{direction}"}}"#),
        );
        let datagrams = metric(
            &metrics,
            &format!(r#"lifeline_udp_datagrams_total{{direction="{direction}"}}"#),
        );
        assert!(
            calls >= 1.0 && datagrams >= calls,
            "{direction}: {calls} calls, {datagrams} datagrams"
        );
    }
    assert!(
        metric(
            &metrics,
            r#"lifeline_failovers_total{trunk="primary",reason="response-503"}"#
        ) >= 1.0
    );
    // The kill was seen through ICMP: a call whose INVITE it answered moved
    // at once, or (when the previous call's BYE reached the killed primary
    // first) the primary went Down on that error and the one answering the
    // probe sent at once, and the next call went straight to the backup.
    let log = d.log();
    assert!(
        metric(
            &metrics,
            r#"lifeline_failovers_total{trunk="primary",reason="transport-error"}"#
        ) >= 1.0
            || log.lines().any(|l| {
                l.contains("trunk state changed")
                    && l.contains("trunk=primary")
                    && l.contains(r#"to="down""#)
                    && l.contains("transport error")
            }),
        "{log}"
    );
    assert!(metric(&metrics, r#"lifeline_emergency_calls_total{rule="number"}"#) >= 1.0);
    assert_eq!(
        metric(&metrics, "lifeline_emergency_calls_failed_total"),
        0.0
    );
    // What the gateway sent is counted (every INVITE to a trunk, probe and
    // response to a caller), and no send failed other than as evidence.
    assert!(
        metric(
            &metrics,
            r#"lifeline_messages_total{direction="out",kind="request"}"#
        ) >= 12.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"lifeline_messages_total{direction="out",kind="response"}"#
        ) >= 12.0,
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "lifeline_send_errors_total 0"),
        "{metrics}"
    );
    assert!(
        d.log().contains("failover: attempt given up"),
        "failovers are logged"
    );
}

#[test]
fn malformed_datagrams_are_answered_or_dropped_while_calls_go_on() {
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let d = start("malformed", primary.addr(), backup.addr());
    let mut caller = Caller::new(d.sip, "daemon").with_identities();
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = probe.local_addr().unwrap();
    // A request missing From, To, Call-ID and CSeq: 400.
    let bad = format!(
        "INVITE sip:999@lifeline SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad\r\n\r\n"
    );
    probe.send_to(bad.as_bytes(), d.sip).unwrap();
    let mut buf = [0u8; 4096];
    let n = probe.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400"));
    // Version 7: 505. A broken response and noise: silence.
    probe
        .send_to(bad.replace("SIP/2.0\r\n", "SIP/7.0\r\n").as_bytes(), d.sip)
        .unwrap();
    let n = probe.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 505"));
    probe
        .send_to(b"SIP/2.0 4294967301 big\r\nVia: x\r\n\r\n", d.sip)
        .unwrap();
    probe.send_to(&[0u8, 159, 146, 150, 13, 10], d.sip).unwrap();
    assert!(
        probe.recv(&mut buf).is_err(),
        "nothing answers a bad response or noise"
    );
    // Calls are not disturbed.
    for _ in 0..3 {
        assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    }
    let metrics = d.get("/metrics", None).body;
    assert!(
        metric(&metrics, r#"lifeline_messages_rejected_total{status="400""#) >= 1.0
            || metrics.contains(r#"status="400""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"status="dropped""#));
}

#[test]
fn sighup_reloads_without_dropping_calls_and_refuses_a_bad_file() {
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    primary.set_mode(Mode::Ring(Duration::from_secs(1)));
    let d = start("reload", primary.addr(), backup.addr());
    let mut caller = Caller::new(d.sip, "daemon").with_identities();
    d.wait_for(Daemon::ready_with_trunks);
    // Two calls ringing on the primary (answered after 1 s) ...
    let a = caller.invite("sip:999@lifeline");
    let b = caller.invite("sip:999@lifeline");
    caller.pump(Duration::from_millis(200), None);
    // ... while the configuration changes: backup first now.
    let text = config_text(d.sip, d.admin, &d.dir, backup.addr(), primary.addr());
    d.reload(&text);
    caller.pump(Duration::from_millis(1500), None);
    let finals = caller.finals().to_vec();
    for id in [&a, &b] {
        assert!(
            finals.iter().any(|f| f.call_id == *id && f.status == 200),
            "{id} survived the reload: {finals:?}"
        );
    }
    // New calls follow the new order: the trunk listed first is now "primary"
    // in name but the former backup's address.
    let before = backup.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(backup.invites(), before + 1);
    // A broken file is refused and the running configuration stays.
    std::fs::write(&d.config, "listen: [}").unwrap();
    d.signal("HUP");
    d.wait_for(|d| d.log().contains("reload refused"));
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    // A trunk the reload adds is named as configured in metrics and logs,
    // not by its number.
    let text = config_text(d.sip, d.admin, &d.dir, backup.addr(), primary.addr())
        .replace("name: backup", "name: standby")
        .replace("[primary, backup]", "[standby, primary]");
    d.reload(&text);
    let before = primary.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(primary.invites(), before + 1, "the call went to standby");
    d.wait_for(|d| {
        metric(
            &d.get("/metrics", None).body,
            r#"lifeline_attempts_total{trunk="standby"}"#,
        ) >= 1.0
    });
}

#[test]
fn sigterm_refuses_new_calls_finishes_the_rest_and_exits_0() {
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    primary.set_mode(Mode::Ring(Duration::from_secs(1)));
    backup.set_mode(Mode::Ring(Duration::from_secs(1)));
    let mut d = start("sigterm", primary.addr(), backup.addr());
    let mut caller = Caller::new(d.sip, "daemon").with_identities();
    d.wait_for(Daemon::ready_with_trunks);
    let live = caller.invite("sip:999@lifeline");
    caller.pump(Duration::from_millis(200), None);
    d.signal("TERM");
    d.wait_for(|d| d.log().contains("shutting down"));
    let refused = caller.invite("sip:999@lifeline");
    caller.pump(Duration::from_millis(1500), None);
    let finals = caller.finals().to_vec();
    assert!(
        finals
            .iter()
            .any(|f| f.call_id == refused && f.status == 503),
        "{finals:?}"
    );
    assert!(
        finals.iter().any(|f| f.call_id == live && f.status == 200),
        "{finals:?}"
    );
    caller.pump(Duration::from_millis(500), None); // BYE completes
    assert_eq!(d.wait_exit(), Some(0), "log:\n{}", d.log());
}

/// Emergency calls ringing when the gateway is SIGKILLed never end in its
/// journal, yet the report still lists them for call-back: each was
/// journaled as it started.
#[test]
fn emergency_calls_in_progress_at_a_sigkill_are_on_the_callback_list() {
    let primary = Uas::start(Mode::Ring(Duration::from_secs(60)));
    let backup = Uas::start(Mode::Answer);
    let mut d = start("sigkill-ringing", primary.addr(), backup.addr());
    let mut caller = Caller::new(d.sip, "ringing").with_identities();
    d.wait_for(Daemon::ready_with_trunks);
    let ids: Vec<String> = (0..5)
        .map(|i| {
            caller.invite(if i % 2 == 0 {
                "sip:999@lifeline"
            } else {
                "urn:service:sos"
            })
        })
        .collect();
    // Answered (ringing) on the primary, then past the journal's group
    // commit (20 ms) with room to spare.
    for _ in 0..100 {
        if primary.invites() >= 5 {
            break;
        }
        caller.pump(Duration::from_millis(20), None);
    }
    assert_eq!(primary.invites(), 5);
    caller.pump(Duration::from_millis(300), None);
    assert!(
        caller.finals().is_empty(),
        "still ringing: {:?}",
        caller.finals()
    );
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["report", "--format", "json", "--journal"])
        .arg(d.dir.join("journal"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut listed: Vec<(String, String, String)> = json["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["call_id"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
                c["gateway"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let mut want: Vec<(String, String, String)> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                lifeline_journal::report::NO_END.to_string(),
                "gw-test".to_string(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(json["totals"]["unfinished"]["emergency"], 5);
    // Who to call back, from the INVITE (no trusted peer asserts an
    // identity here: the From).
    assert!(json["callbacks"][0]["from_uri"]
        .as_str()
        .unwrap()
        .starts_with("sip:+44163296"));
}

#[test]
fn sigkill_during_load_leaves_every_finished_call_in_the_journal() {
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let mut d = start("sigkill", primary.addr(), backup.addr());
    let mut caller = Caller::new(d.sip, "daemon").with_identities();
    d.wait_for(Daemon::ready_with_trunks);
    // Load: a call every 10 ms for 1.5 s; the primary fails half way.
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        caller.invite(if i % 2 == 0 {
            "sip:999@lifeline"
        } else {
            "urn:service:sos"
        });
        i += 1;
        if i == 75 {
            primary.set_mode(Mode::Reject(503));
        }
        caller.pump(Duration::from_millis(10), None);
    }
    let killed_at = Instant::now();
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    let finals = caller.finals().to_vec();
    // Settled: answered long enough before the kill for the record to be
    // on disk: the 20 ms group commit, plus the fsync and scheduling delays
    // of a loaded machine (100 ms was seen to be too little under load).
    let settled: Vec<&String> = finals
        .iter()
        .filter(|f| killed_at.saturating_duration_since(f.at) >= Duration::from_millis(500))
        .map(|f| &f.call_id)
        .collect();
    assert!(
        settled.len() > 50,
        "enough calls finished before the kill: {}",
        settled.len()
    );
    let reader = lifeline_journal::JournalReader::open(&[d.dir.join("journal")]).unwrap();
    let (entries, issues) = reader.read_all();
    assert!(
        issues.iter().all(|i| i.is_torn_tail()),
        "only a torn tail may be damaged: {issues:?}"
    );
    // Every segment names the gateway (`node_name`), for fleet reports.
    let mut nodes = std::collections::BTreeSet::new();
    reader.for_each_from(|origin, _| {
        nodes.insert(origin.node.map(str::to_string));
    });
    assert_eq!(nodes, [Some("gw-test".to_string())].into());
    let journalled: std::collections::HashSet<String> = entries
        .iter()
        .filter_map(|e| match &e.record {
            lifeline_journal::JournalRecord::Call(c) => Some(c.call_id.clone()),
            _ => None,
        })
        .collect();
    let missing: Vec<_> = settled
        .iter()
        .filter(|c| !journalled.contains(c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} settled calls missing from the journal: {missing:?}",
        missing.len(),
        settled.len()
    );
}

/// One HEP3 packet's chunks, by type (vendor 0), read from the
/// specification's layout: "HEP3", total length, then type-length-value
/// chunks whose length counts their 6-byte header.
fn hep_chunks(p: &[u8]) -> std::collections::HashMap<u16, Vec<u8>> {
    assert_eq!(&p[..4], b"HEP3");
    assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize, p.len());
    let mut chunks = std::collections::HashMap::new();
    let mut at = 6;
    while at < p.len() {
        let kind = u16::from_be_bytes([p[at + 2], p[at + 3]]);
        let len = u16::from_be_bytes([p[at + 4], p[at + 5]]) as usize;
        assert!(len >= 6 && at + len <= p.len());
        chunks.insert(kind, p[at + 6..at + len].to_vec());
        at += len;
    }
    chunks
}

/// What a collector received until `done` holds for it (10 s at most),
/// or, with `quiet`, until nothing came for one read timeout: each
/// packet's (Call-ID, first line, source port, node id).
fn collect(
    homer: &UdpSocket,
    quiet: bool,
    done: impl Fn(&[(String, String, u16, u32)]) -> bool,
) -> Vec<(String, String, u16, u32)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !done(&got) {
        let Ok(n) = homer.recv(&mut buf) else {
            if quiet {
                break;
            }
            continue;
        };
        let c = hep_chunks(&buf[..n]);
        let text = |k| String::from_utf8_lossy(c.get(&k).map_or(&[][..], |v| v)).into_owned();
        let payload = text(15);
        let port = c.get(&7).map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
        let node = c
            .get(&12)
            .map_or(0, |v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        let line = payload.lines().next().unwrap_or_default().to_string();
        got.push((text(17), line, port, node));
    }
    got
}

#[test]
fn capture_exports_to_a_hep_collector_and_a_reload_changes_it() {
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let homer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let homer2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    for h in [&homer, &homer2] {
        h.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let (first, second) = (primary.addr(), backup.addr());
    let to = |collector: SocketAddr, calls: &str| {
        format!(
            "capture:\n  hep: {collector}\n  calls: {calls}\n  node_id: 2001\n  password: s3cret\n"
        )
    };
    let first_capture = to(homer.local_addr().unwrap(), "all");
    let d = Daemon::start(
        "daemon-capture",
        |sip, admin, dir| config_text(sip, admin, dir, first, second) + &first_capture,
        |d| d.get("/status", None).status == 200,
    );
    d.wait_for(Daemon::ready_with_trunks);
    assert!(
        d.log().contains("capture: exporting SIP messages"),
        "{}",
        d.log()
    );
    let mut caller = Caller::new(d.sip, "hep");
    let id = caller.invite("sip:999@lifeline");
    assert_eq!(caller.pump(Duration::from_secs(5), Some(&id)), Some(200));
    // The INVITE as the caller sent it, from the caller's port, node 2001;
    // the call's BYE answered in the end.
    let got = collect(&homer, false, |g| {
        g.iter().any(|(c, l, _, _)| {
            c == &id
                && l.starts_with("SIP/2.0 200")
                && g.iter()
                    .any(|(c2, l2, _, _)| c2 == &id && l2.starts_with("BYE"))
        })
    });
    let invite = got
        .iter()
        .find(|(c, l, port, _)| {
            c == &id && l.starts_with("INVITE") && *port == caller.addr().port()
        })
        .unwrap_or_else(|| panic!("no INVITE from the caller: {got:#?}"));
    assert_eq!(invite.3, 2001);
    assert!(
        got.iter()
            .any(|(c, l, _, _)| c == &id && l.starts_with("BYE")),
        "{got:#?}"
    );
    d.wait_for(|d| d.metric("lifeline_capture_messages_total") >= 8.0);
    assert_eq!(
        d.metric(r#"lifeline_capture_dropped_total{reason="queue_full"}"#),
        0.0
    );

    // A reload: another collector, emergency calls only.
    let text = config_text(d.sip, d.admin, &d.dir, first, second)
        + &to(homer2.local_addr().unwrap(), "emergency");
    d.reload(&text);
    d.wait_for(|d| d.log().contains("capture: settings reloaded"));
    let normal = caller.invite("sip:1234@lifeline");
    assert_eq!(
        caller.pump(Duration::from_secs(5), Some(&normal)),
        Some(200)
    );
    let sos = caller.invite("urn:service:sos");
    assert_eq!(caller.pump(Duration::from_secs(5), Some(&sos)), Some(200));
    caller.pump(Duration::from_millis(300), None);
    let got = collect(&homer2, false, |g| {
        g.iter()
            .filter(|(c, l, _, _)| c == &sos && l.starts_with("SIP/2.0 200"))
            .count()
            >= 4
    });
    assert!(got.iter().all(|(c, _, _, _)| c == &sos), "{got:#?}");
    assert_eq!(
        got.iter()
            .filter(|(_, l, _, _)| l.starts_with("INVITE"))
            .count(),
        2
    );
    // The first collector hears nothing of the calls after the reload.
    let old = collect(&homer, true, |_| false);
    assert!(
        old.iter().all(|(c, _, _, _)| c != &sos && c != &normal),
        "{old:#?}"
    );
}
