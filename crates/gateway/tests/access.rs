//! `access` end to end: the real binary with a configuration file, a trunk
//! on a loopback socket, and callers on loopback addresses of their own
//! (127.0.0.77 is outside `callers`, 127.0.0.10 is trusted, 127.0.0.1 is
//! a caller but not trusted). Nothing here asserts a duration: waits are
//! bounded polls, assertions are on statuses, counts and bytes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use lifeline_kit::{end_to_end_headers, Call, Caller, Mode, Uas};
use lifeline_sip::{HeaderName, Message};
use support::Daemon;

/// A gateway with one trunk and `access` (YAML lines, indented under
/// `access:`).
fn config_text(sip: SocketAddr, admin: SocketAddr, trunk: SocketAddr, access: &str) -> String {
    format!(
        "listen:\n  - udp: {sip}\nadmin: {admin}\naccess:\n{access}trunks:\n  - name: primary\n    address: {trunk}\nroutes:\n  - name: emergency\n    match: emergency\n    trunks: [primary]\n  - name: default\n    match: any\n    trunks: [primary]\n"
    )
}

/// That gateway, once ready to take calls.
fn start(name: &str, trunk: SocketAddr, access: &str) -> Daemon {
    Daemon::start(
        &format!("access-{name}"),
        |sip, admin, _| config_text(sip, admin, trunk, access),
        Daemon::ready_with_trunks,
    )
}

/// Write a new `access` section and reload (SIGHUP).
fn reload(d: &Daemon, trunk: SocketAddr, access: &str) {
    d.reload(&config_text(d.sip, d.admin, trunk, access));
}

/// A caller on its own loopback address.
struct Phone(Caller);

impl Phone {
    fn at(ip: &str, gw: SocketAddr) -> Phone {
        Phone(Caller::from_ip(ip.parse().unwrap(), gw, "access").with_identities())
    }

    /// A call to `uri` with an asserted identity, a location and
    /// `Resource-Priority: esnet.0`, not yet placed.
    fn call(&mut self, uri: &str) -> Call {
        self.0.next_call(uri).header("Resource-Priority", "esnet.0")
    }

    /// Place `call`: its final status, if one comes within `wait`. The
    /// final is ACKed, and a 2xx ended with a BYE.
    fn place(&mut self, call: &Call, wait: Duration) -> Option<u16> {
        let id = self.0.place(call.clone());
        self.0.pump(wait, Some(&id))
    }
}

/// The INVITEs the trunk received, by Call-ID.
fn received(trunk: &Uas, call: &Call) -> Vec<Message> {
    trunk
        .requests()
        .into_iter()
        .filter_map(|b| Message::parse(b).ok())
        .filter(|m| {
            m.method_bytes() == Some(b"INVITE") && m.call_id() == Some(call.call_id.as_bytes())
        })
        .collect()
}

const ACCESS: &str = "  callers: [127.0.0.1/32, 127.0.0.10/32]\n  trusted: [127.0.0.10]\n";

#[test]
fn a_stranger_reaches_no_trunk_and_a_reload_changes_who_may_call() {
    let trunk = Uas::start(Mode::Answer);
    let d = start("stranger", trunk.addr(), ACCESS);
    assert!(
        !d.log().contains("access.callers: not set"),
        "callers are set: no warning"
    );
    let mut stranger = Phone::at("127.0.0.77", d.sip);
    let forged = stranger.call("sip:999@lifeline");
    assert_eq!(
        stranger.place(&forged, Duration::from_secs(1)),
        None,
        "dropped: no answer at all"
    );
    d.wait_for(|d| d.metric(r#"lifeline_rejected_total{reason="access"}"#) == 1.0);
    assert_eq!(
        d.metric(r#"lifeline_messages_rejected_total{status="dropped",reason="access"}"#),
        1.0
    );
    // A caller in `callers` goes through, so the stranger's INVITE would
    // have been seen by now.
    let mut caller = Phone::at("127.0.0.1", d.sip);
    let ok = caller.call("sip:999@lifeline");
    assert_eq!(caller.place(&ok, Duration::from_secs(5)), Some(200));
    assert_eq!(received(&trunk, &ok).len(), 1);
    assert!(
        received(&trunk, &forged).is_empty(),
        "the trunk saw nothing"
    );
    assert_eq!(trunk.invites(), 1);

    // unknown: reject, by reload: the stranger now hears 403.
    reload(&d, trunk.addr(), &format!("{ACCESS}  unknown: reject\n"));
    let forged = stranger.call("sip:999@lifeline");
    assert_eq!(stranger.place(&forged, Duration::from_secs(5)), Some(403));
    d.wait_for(|d| d.metric(r#"lifeline_rejected_total{reason="access"}"#) == 2.0);
    assert!(received(&trunk, &forged).is_empty());

    // Its network added to callers: its call goes through, without the
    // identity it claims (it is not trusted).
    reload(
        &d,
        trunk.addr(),
        "  callers: [127.0.0.1/32, 127.0.0.64/26]\n  trusted: [127.0.0.10]\n",
    );
    let call = stranger.call("sip:999@lifeline");
    assert_eq!(stranger.place(&call, Duration::from_secs(5)), Some(200));
    let at_trunk = received(&trunk, &call);
    assert_eq!(at_trunk.len(), 1);
    assert!(at_trunk[0].header(HeaderName::PAssertedIdentity).is_none());
    assert_eq!(d.metric(r#"lifeline_rejected_total{reason="access"}"#), 2.0);
}

#[test]
fn identity_and_priority_reach_the_trunk_only_from_a_trusted_source() {
    let trunk = Uas::start(Mode::Answer);
    let d = start("identity", trunk.addr(), ACCESS);
    // Untrusted: P-Asserted-Identity and Resource-Priority removed, every
    // other header as sent.
    let mut untrusted = Phone::at("127.0.0.1", d.sip);
    let call = untrusted.call("sip:999@lifeline");
    assert_eq!(untrusted.place(&call, Duration::from_secs(5)), Some(200));
    let sent = Message::parse(Bytes::from(call.invite())).unwrap();
    let got = received(&trunk, &call);
    assert_eq!(got.len(), 1);
    let others = end_to_end_headers;
    let mut want = others(&sent);
    want.retain(|(name, _)| {
        !name.eq_ignore_ascii_case(b"P-Asserted-Identity")
            && !name.eq_ignore_ascii_case(b"Resource-Priority")
    });
    assert_eq!(others(&got[0]), want);
    assert!(
        got[0].header(HeaderName::Geolocation).is_some(),
        "location kept"
    );
    assert_eq!(got[0].body(), sent.body());

    // Trusted: everything as sent.
    let mut trusted = Phone::at("127.0.0.10", d.sip);
    let call = trusted.call("sip:+441632960000@lifeline");
    assert_eq!(trusted.place(&call, Duration::from_secs(5)), Some(200));
    let sent = Message::parse(Bytes::from(call.invite())).unwrap();
    let got = received(&trunk, &call);
    assert_eq!(got.len(), 1);
    assert_eq!(others(&got[0]), others(&sent));
    // Its esnet made it an emergency call.
    d.wait_for(|d| d.metric(r#"lifeline_emergency_calls_total{rule="resource-priority"}"#) == 1.0);
    assert_eq!(d.metric(r#"lifeline_rejected_total{reason="access"}"#), 0.0);
}

#[test]
fn without_callers_the_daemon_warns_that_anyone_may_call() {
    let trunk = Uas::start(Mode::Answer);
    let d = start("open", trunk.addr(), "  trusted: [127.0.0.10]\n");
    d.wait_for(|d| {
        d.log()
            .contains("access.callers: not set: any source may place calls")
    });
    let mut anyone = Phone::at("127.0.0.77", d.sip);
    let call = anyone.call("sip:999@lifeline");
    assert_eq!(anyone.place(&call, Duration::from_secs(5)), Some(200));
    assert_eq!(received(&trunk, &call).len(), 1);
}
