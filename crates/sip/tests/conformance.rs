//! RFC 4475 and RFC 5118 torture messages against the verdicts in
//! `testdata/MANIFEST.tsv` (copied from the shared conformance corpus).
//!
//! - `valid` and `valid-but-tricky` messages must be accepted;
//! - `invalid` requests must be answered with the status the manifest names,
//!   invalid responses dropped — except where RFC 4475 lets a liberal element
//!   accept the message (listed in `LIBERAL`, with the reason);
//! - nothing may panic, and framing the same bytes as a TCP stream must agree.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use lifeline_sip::{check_datagram, Frame, Message, StreamFramer, Verdict};

/// Invalid messages this parser accepts, as RFC 4475 allows a liberal element
/// to. Each must still be accepted (so a change in behaviour is noticed).
const LIBERAL: &[(&str, &str)] = &[(
    "rfc4475/baddate.dat",
    "§3.1.2.12: Date does not matter to a proxy's processing; it is forwarded untouched",
)];

/// The expected outcome of each invalid message.
fn expected_invalid(file: &str) -> Verdict2 {
    match file {
        "rfc4475/badvers.dat" => Verdict2::Reply(505),
        "rfc4475/mismatch02.dat" => Verdict2::Reply(501),
        "rfc4475/scalarlg.dat" | "rfc4475/bigcode.dat" => Verdict2::Drop,
        _ => Verdict2::Reply(400),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict2 {
    Accept,
    Reply(u16),
    Drop,
}

fn simplify(v: Verdict) -> Verdict2 {
    match v {
        Verdict::Accept => Verdict2::Accept,
        Verdict::Reply(e) => Verdict2::Reply(e.status()),
        Verdict::Drop(_) => Verdict2::Drop,
    }
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn manifest() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(testdata().join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (
                cols[0].to_string(),
                cols[1].to_string(),
                cols[2].to_string(),
            )
        })
        .collect()
}

#[test]
fn every_manifest_verdict() {
    let rows = manifest();
    assert_eq!(
        rows.len(),
        63,
        "50 RFC 4475 archive members, 1 derived, 12 RFC 5118"
    );
    let mut agree = 0;
    let mut failures = vec![];
    for (file, source, verdict) in &rows {
        let data = std::fs::read(testdata().join(file)).unwrap();
        let (_, got) = check_datagram(Bytes::from(data));
        let got = simplify(got);
        let want = match verdict.as_str() {
            "valid" | "valid-but-tricky" => Verdict2::Accept,
            "invalid" if LIBERAL.iter().any(|(f, _)| f == file) => Verdict2::Accept,
            "invalid" => expected_invalid(file),
            other => panic!("unknown verdict {other} for {file}"),
        };
        if got == want {
            agree += 1;
        } else {
            failures.push(format!("{file} ({source}): want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} agree; disagreements:\n{}",
        agree,
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn dblreq_forwards_only_the_register() {
    let data = std::fs::read(testdata().join("rfc4475/dblreq.dat")).unwrap();
    let (m, v) = check_datagram(Bytes::from(data.clone()));
    assert_eq!(v, Verdict::Accept);
    let m = m.unwrap();
    assert_eq!(m.method_bytes(), Some(&b"REGISTER"[..]));
    assert!(m.as_bytes().len() < data.len());
    assert!(!m.as_bytes().windows(6).any(|w| w == b"INVITE"));
}

#[test]
fn inv2543_body_is_rest_of_datagram() {
    let data = std::fs::read(testdata().join("rfc4475/inv2543.dat")).unwrap();
    let m = Message::parse(Bytes::from(data)).unwrap();
    assert_eq!(m.content_length(), None);
    assert_eq!(m.body().len(), 105, "RFC 4475 §3.4.1");
    assert!(!m.top_via().unwrap().is_rfc3261_branch());
}

#[test]
fn mpart01_body_kept_as_octets() {
    let data = std::fs::read(testdata().join("rfc4475/mpart01.dat")).unwrap();
    let m = Message::parse(Bytes::from(data)).unwrap();
    assert_eq!(m.body().len(), 553);
    assert!(m.body().contains(&0));
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"));
}

#[test]
fn longreq_all_vias() {
    let data = std::fs::read(testdata().join("rfc4475/longreq.dat")).unwrap();
    let m = Message::parse(Bytes::from(data)).unwrap();
    assert_eq!(m.vias().count(), 34);
    assert!(m.vias().all(|v| v.is_ok()));
}

#[test]
fn rfc5118_ipv6_details() {
    use lifeline_sip::{Host, Uri};
    let read =
        |f: &str| Message::parse(Bytes::from(std::fs::read(testdata().join(f)).unwrap())).unwrap();
    let m = read("rfc5118/port-ambiguous.dat");
    let Some(Ok(Uri::Sip(u))) = m.request_uri() else {
        panic!()
    };
    assert_eq!(u.host, Host::Ipv6(b"2001:db8::10:5070"));
    assert_eq!(u.port, None);
    let m = read("rfc5118/port-unambiguous.dat");
    let Some(Ok(Uri::Sip(u))) = m.request_uri() else {
        panic!()
    };
    assert_eq!((u.host, u.port), (Host::Ipv6(b"2001:db8::10"), Some(5070)));
    let m = read("rfc5118/mult-ip-in-header.dat");
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].port, Some(6050));
    assert_eq!(vias[2].received(), Some(&b"192.0.2.200"[..]));
}

/// Over a stream, messages with a correct Content-Length frame to exactly the
/// bytes the datagram parser kept; the stream-only faults close the connection.
#[test]
fn stream_framing_agrees_with_datagrams() {
    for (file, _, verdict) in manifest() {
        let data = std::fs::read(testdata().join(&file)).unwrap();
        let mut framer = StreamFramer::default();
        framer.extend(&data);
        let framed = framer.next_frame();
        match (check_datagram(Bytes::from(data.clone())), framed) {
            ((Some(m), _), Ok(Some(Frame::Message(bytes)))) => {
                assert_eq!(&bytes, m.as_bytes(), "{file}");
            }
            (_, Err(_) | Ok(None)) => {
                // No Content-Length, a bad one, or one longer than the data
                // (clerr: over TCP it waits for more, then the connection closes).
                assert!(
                    verdict == "invalid" || file.contains("inv2543") || file.contains("baddn"),
                    "{file} did not frame"
                );
            }
            (_, Ok(Some(_))) => {}
        }
    }
}
