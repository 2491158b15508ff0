//! A running `lifeline run` over real sockets: a request whose header holds
//! a control character (a NUL in a Subject, DEL in an unknown header) is
//! answered 400, never reaches the trunk, and is counted in the metrics;
//! the same request without it is forwarded.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use support::Daemon;

/// A gateway with one unprobed trunk, once its metrics are served.
fn start(trunk: SocketAddr) -> Daemon {
    Daemon::start(
        "wire",
        |sip, admin, _| {
            format!(
                "listen:\n  - udp: {sip}\nadmin: {admin}\ntrunks:\n  - name: primary\n    address: {trunk}\n    probe: {{ enabled: false }}\nroutes:\n  - name: default\n    match: any\n    trunks: [primary]\n"
            )
        },
        |d| d.get("/metrics", None).body.contains("lifeline_build_info"),
    )
}

fn invite(caller: SocketAddr, call_id: &str, extra: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "INVITE sip:999@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:+15555550123@example.net>;tag=c1\r\nTo: <sip:999@gw.example>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
    )
    .into_bytes();
    m.extend_from_slice(extra);
    m.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    m
}

/// Datagrams received on `sock` until `quiet` passes without one.
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_control_character_in_a_header_gets_400_and_is_not_forwarded() {
    let trunk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap();
    let d = start(trunk.local_addr().unwrap());

    // Without a control character: forwarded.
    caller
        .send_to(&invite(me, "clean-1", b"Subject: help\r\n"), d.sip)
        .unwrap();
    trunk
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let (n, _) = trunk
        .recv_from(&mut buf)
        .expect("the clean INVITE reaches the trunk");
    assert!(contains(&buf[..n], "Call-ID: clean-1"));

    // With one: 400 to the caller, nothing to the trunk.
    let bad: [(&str, &[u8]); 3] = [
        (
            "nul-1",
            b"Subject: help\x00Via: SIP/2.0/UDP 203.0.113.66\r\n",
        ),
        ("del-1", b"X-Custom: a\x7fb\r\n"),
        (
            "esc-1",
            b"P-Asserted-Identity: <sip:+15555550123@example.net>\x1b\r\n",
        ),
    ];
    for (call_id, line) in bad {
        caller.send_to(&invite(me, call_id, line), d.sip).unwrap();
        // The answer to this call (the clean call's 100 Trying may come
        // first).
        caller
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let answer = loop {
            let (n, _) = caller.recv_from(&mut buf).expect("an answer");
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.contains(&format!("Call-ID: {call_id}\r\n")) {
                break m;
            }
        };
        assert!(
            answer.starts_with("SIP/2.0 400 Bad Request\r\n"),
            "{answer}"
        );
    }
    let seen = drain(&trunk, Duration::from_millis(300));
    for (call_id, _) in bad {
        assert!(
            seen.iter().all(|m| !contains(m, call_id)),
            "{call_id} reached the trunk"
        );
    }
    // Counted.
    d.wait_for(|d| {
        d.get("/metrics", None).body.contains(
            "lifeline_messages_rejected_total{status=\"400\",reason=\"control character\"} 3\n",
        )
    });
}
