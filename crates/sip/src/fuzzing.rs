//! Checks shared by the cargo-fuzz targets (`fuzz/`) and by the tests that
//! replay their committed corpora, so a crash found by the fuzzer is a failing
//! `cargo test` from then on. Each function panics only when an invariant of
//! this crate is broken.

use bytes::Bytes;

use crate::{check_datagram, Edit, Frame, HeaderName, Message, StreamFramer, Uri, Verdict};

/// Parse a datagram, validate it, and walk every accessor.
pub fn parse_message(data: &[u8]) {
    let (msg, verdict) = check_datagram(Bytes::copy_from_slice(data));
    if let Some(m) = msg {
        exercise(&m);
        if verdict == Verdict::Accept {
            // Everything validation promised is there.
            assert!(m.top_via().is_ok());
            assert!(m.cseq().is_ok());
            assert!(m.from().is_ok() && m.to().is_ok());
            assert!(m.call_id().is_some());
        }
    }
}

fn exercise(m: &Message) {
    let _ = m.method_bytes();
    let _ = m.request_uri();
    for h in m.headers() {
        assert!(m.as_bytes().get(h.line_start..h.line_end).is_some());
        for (off, v) in h.values() {
            assert_eq!(m.as_bytes().get(off..off + v.len()), Some(v));
        }
    }
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport());
    }
    for r in m.routes().chain(m.record_routes()).flatten() {
        let _ = r.uri().params().count();
    }
    let _ = (
        m.cseq(),
        m.from().map(|f| f.tag()),
        m.to(),
        m.max_forwards(),
        m.content_type(),
    );
    assert_eq!(m.body().len(), m.as_bytes().len() - m.body_offset());
}

/// Frame `data` as a stream, cut into chunks whose sizes come from the first
/// bytes, and check the result equals framing it in one piece.
pub fn stream_framing(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let whole = frame_all(data, &[data.len().max(1)]);
    let sizes = [
        usize::from(seed % 7) + 1,
        usize::from(seed / 7 % 13) + 1,
        1,
        64,
    ];
    let chunked = frame_all(data, &sizes);
    assert_eq!(whole, chunked);
}

fn frame_all(data: &[u8], sizes: &[usize]) -> (Vec<Frame>, bool) {
    let mut f = StreamFramer::new(4096);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut i = 0;
    loop {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        f.extend(chunk);
        rest = tail;
        i += 1;
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => {
                    if let Frame::Message(b) = &fr {
                        let _ = Message::parse(b.clone()).map(|m| exercise(&m));
                    }
                    frames.push(fr);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
        if rest.is_empty() {
            return (frames, false);
        }
    }
}

/// Parse a URI and walk its parts.
pub fn uri(data: &[u8]) {
    if let Ok(u) = Uri::parse(data, 0) {
        let _ = u.params().count();
        if let Uri::Sip(s) = u {
            let _ = s.user.map(|u| crate::unescape(u).count());
            let _ = s.param("transport");
        }
    }
}

/// Parse, serialise, parse again; apply every proxy edit and check the result
/// still parses and that untouched headers and the body are byte-identical.
pub fn roundtrip(data: &[u8]) {
    let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = Message::parse(m.as_bytes().clone()).expect("a parsed message re-parses");
    assert_eq!(m, again);
    if crate::validate(&m).is_err() {
        return;
    }
    let mut e = Edit::new(&m);
    e.push_via(b"SIP/2.0/UDP 192.0.2.254:5060;branch=z9hG4bKfuzz")
        .expect("valid via");
    e.pop_via()
        .remove_first_route()
        .decrement_max_forwards()
        .ensure_content_length();
    e.add_record_route(b"<sip:192.0.2.254;lr>")
        .expect("valid rr");
    if m.is_request() {
        e.set_request_uri(b"sip:trunk.example.net")
            .expect("valid uri");
    }
    let out = e.to_bytes();
    assert_eq!(out.len(), e.len());
    let edited = Message::parse(out).expect("an edited message parses");
    assert_eq!(edited.body(), m.body());
    let untouched = |h: &crate::Header<'_>| {
        !matches!(
            h.name,
            HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
        )
    };
    let before: Vec<_> = m
        .headers()
        .filter(untouched)
        .map(|h| (h.raw_name, h.value))
        .collect();
    let after: Vec<_> = edited
        .headers()
        .filter(untouched)
        .map(|h| (h.raw_name, h.value))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        edited.top_via().ok().and_then(|v| v.branch()),
        Some(&b"z9hG4bKfuzz"[..])
    );
}
