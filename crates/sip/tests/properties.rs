//! Property tests over generated valid SIP messages (see `support`):
//!
//! 1. parsing is the identity: `as_bytes()` is the input, and re-parsing it
//!    gives an equal message, headers and body; `validate` accepts it;
//! 2. the parsed structure (start line, every header's name, raw name, value
//!    and list items, body) is what was generated, and datagram rules hold
//!    (leading CRLFs skipped, octets past Content-Length dropped);
//! 3. proxy edits change only what they edit: every other header line and the
//!    body leave byte-identical, and the edited headers hold exactly the
//!    expected values;
//! 4. stream framing yields the same frames however the stream is cut;
//! 5. nothing panics on arbitrary bytes or on mutations of valid messages.

mod support;

use bytes::{Bytes, BytesMut};
use lifeline_sip::{
    check_datagram, fuzzing, validate, Edit, Error, Frame, HeaderName, Message, Method,
    StreamFramer, Verdict, DEFAULT_MAX_MESSAGE,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::RngAlgorithm;
use support::{message, request_uri, route_value, via_value, Msg, Start};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files in the source tree: a failure prints its
        // minimal input, which belongs in a named test.
        failure_persistence: None,
        // ChaCha is slow unoptimised; the generators draw many numbers.
        rng_algorithm: RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

fn esc(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Byte strings as readable strings, for assertion messages.
fn escs<T: AsRef<[u8]>>(v: impl IntoIterator<Item = T>) -> Vec<String> {
    v.into_iter().map(|b| esc(b.as_ref())).collect()
}

fn parsed(bytes: &[u8]) -> Result<Message, TestCaseError> {
    Message::parse(Bytes::copy_from_slice(bytes))
        .map_err(|e| TestCaseError::fail(format!("parse failed: {e} in b\"{}\"", esc(bytes))))
}

/// `(name, raw_name, value)` of every header.
fn header_list(m: &Message) -> Vec<(HeaderName, Vec<u8>, Vec<u8>)> {
    m.headers()
        .map(|h| (h.name, h.raw_name.to_vec(), h.value.to_vec()))
        .collect()
}

/// The whole lines (CRLF included) of the headers `keep` selects.
fn lines(m: &Message, keep: impl Fn(HeaderName) -> bool) -> Vec<Vec<u8>> {
    m.headers()
        .filter(|h| keep(h.name))
        .map(|h| m.as_bytes()[h.line_start..h.line_end].to_vec())
        .collect()
}

fn first_line(b: &[u8]) -> &[u8] {
    let end = b.windows(2).position(|w| w == b"\r\n").unwrap_or(b.len());
    &b[..end]
}

/// Line ends a datagram may start with (RFC 3261 §7.5).
const LEADING: &[&[u8]] = &[b"", b"\r\n", b"\r\n\r\n", b"\n\r\n"];

const LIST_HEADERS: [HeaderName; 4] = [
    HeaderName::Via,
    HeaderName::Contact,
    HeaderName::Route,
    HeaderName::RecordRoute,
];

fn expected_method(m: &[u8]) -> Method {
    match m {
        b"INVITE" => Method::Invite,
        b"ACK" => Method::Ack,
        b"BYE" => Method::Bye,
        b"CANCEL" => Method::Cancel,
        b"OPTIONS" => Method::Options,
        b"REGISTER" => Method::Register,
        b"PRACK" => Method::Prack,
        b"UPDATE" => Method::Update,
        b"INFO" => Method::Info,
        b"SUBSCRIBE" => Method::Subscribe,
        b"NOTIFY" => Method::Notify,
        b"REFER" => Method::Refer,
        b"MESSAGE" => Method::Message,
        b"PUBLISH" => Method::Publish,
        _ => Method::Other,
    }
}

// ------------------------------------------------------------------ 1, 2

proptest! {
    #![proptest_config(config(512))]

    /// parse(serialise(m)) == m.
    #[test]
    fn reparse_is_identity(msg in message(false)) {
        let bytes = msg.bytes();
        let m = parsed(&bytes)?;
        prop_assert_eq!(&m.as_bytes()[..], &bytes[..]);
        let again = Message::parse(m.as_bytes().clone());
        prop_assert_eq!(again.as_ref(), Ok(&m));
        let fresh = parsed(m.as_bytes())?;
        prop_assert_eq!(&fresh, &m);
        prop_assert_eq!(header_list(&fresh), header_list(&m));
        prop_assert_eq!(fresh.body(), m.body());
        prop_assert_eq!(validate(&m), Ok(()));
        let (dm, verdict) = check_datagram(Bytes::from(bytes));
        prop_assert_eq!(verdict, Verdict::Accept);
        prop_assert_eq!(dm.as_ref(), Some(&m));
    }

    /// The parser sees exactly what was generated.
    #[test]
    fn structure_is_what_was_generated(
        msg in message(false),
        leading in select(LEADING),
        trailing in vec(any::<u8>(), 1..48),
    ) {
        let bytes = msg.bytes();
        let m = parsed(&bytes)?;

        match &msg.start {
            Start::Request { method, uri, version } => {
                prop_assert!(m.is_request());
                prop_assert_eq!(m.method(), Some(expected_method(method)));
                prop_assert_eq!(m.method_bytes(), Some(&method[..]));
                prop_assert_eq!(m.request_uri_bytes(), Some(&uri[..]));
                prop_assert!(matches!(m.request_uri(), Some(Ok(_))));
                prop_assert_eq!(m.version(), &version[..]);
                prop_assert_eq!(m.status(), None);
                prop_assert_eq!(m.reason(), None);
            }
            Start::Response { version, code, reason, cseq_method } => {
                prop_assert!(!m.is_request());
                prop_assert_eq!(m.status(), Some(*code));
                prop_assert_eq!(m.reason(), Some(&reason[..]));
                prop_assert_eq!(m.version(), &version[..]);
                prop_assert_eq!(m.method(), None);
                prop_assert_eq!(m.method_bytes(), Some(&cseq_method[..]));
                prop_assert!(m.request_uri().is_none());
            }
        }

        let got: Vec<_> = m.headers().collect();
        prop_assert_eq!(got.len(), msg.headers.len());
        for (h, want) in got.iter().zip(&msg.headers) {
            prop_assert_eq!(h.name, want.name, "{:?}", want);
            prop_assert_eq!(h.raw_name, &want.raw_name[..], "{:?}", want);
            prop_assert_eq!(h.value, &want.value()[..], "{:?}", want);
            prop_assert_eq!(&bytes[h.line_start..h.line_end], &want.line()[..]);
            prop_assert_eq!(&bytes[h.value_offset..h.value_offset + h.value.len()], h.value);
            if want.name.is_list() {
                prop_assert_eq!(escs(h.values().map(|(_, v)| v)), escs(want.items()), "{:?}", want);
                for (off, v) in h.values() {
                    prop_assert_eq!(&bytes[off..off + v.len()], v);
                }
            }
        }
        for name in LIST_HEADERS {
            prop_assert_eq!(escs(m.values(name).map(|(_, v)| v)), escs(msg.items(name)), "{:?}", name);
        }

        // Typed views of what validation checked.
        let vias = msg.items(HeaderName::Via);
        prop_assert_eq!(m.vias().filter(Result::is_ok).count(), vias.len());
        let top = m.top_via();
        prop_assert!(top.is_ok());
        prop_assert_eq!(m.routes().filter(Result::is_ok).count(), msg.items(HeaderName::Route).len());
        prop_assert_eq!(
            m.record_routes().filter(Result::is_ok).count(),
            msg.items(HeaderName::RecordRoute).len()
        );
        prop_assert_eq!(m.call_id().map(<[u8]>::to_vec), msg.value(HeaderName::CallId));
        let cseq = m.cseq();
        prop_assert!(cseq.is_ok());
        prop_assert!(m.from().is_ok() && m.to().is_ok());
        let mf = msg.value(HeaderName::MaxForwards).map(|v| std::str::from_utf8(&v).unwrap().parse::<u8>().unwrap());
        prop_assert_eq!(m.max_forwards(), Ok(mf));
        let cl = msg.value(HeaderName::ContentLength);
        prop_assert_eq!(m.content_length(), cl.as_ref().map(|v| std::str::from_utf8(v).unwrap().parse::<u32>().unwrap()));

        prop_assert_eq!(&m.body()[..], &msg.body[..]);
        prop_assert_eq!(m.body_offset(), bytes.len() - msg.body.len());
        prop_assert_eq!(m.header_section().1 + 2, m.body_offset());

        // Datagram rules: leading CRLFs are skipped; octets past Content-Length
        // are dropped, and without it they are body.
        let datagram = [leading, &bytes[..], &trailing].concat();
        let d = parsed(&datagram)?;
        if cl.is_some() {
            prop_assert_eq!(&d.as_bytes()[..], &bytes[..]);
            prop_assert_eq!(&d, &m);
        } else {
            prop_assert_eq!(&d.as_bytes()[..], &datagram[leading.len()..]);
            prop_assert_eq!(&d.body()[..], &[&msg.body[..], &trailing].concat()[..]);
            prop_assert_eq!(header_list(&d), header_list(&m));
        }
    }
}

// ------------------------------------------------------------------ 3

#[derive(Clone, Debug)]
enum MaxForwards {
    Keep,
    Decrement,
    Set(u8),
}

#[derive(Clone, Debug)]
struct Edits {
    push_via: Option<Bytes>,
    pop_via: bool,
    remove_first_route: bool,
    record_route: Option<Bytes>,
    max_forwards: MaxForwards,
    request_uri: Option<Bytes>,
    content_length: bool,
    /// The order the edits are made in (it must not matter).
    order: Vec<u8>,
}

impl Edits {
    fn none(&self) -> bool {
        self.push_via.is_none()
            && !self.pop_via
            && !self.remove_first_route
            && self.record_route.is_none()
            && matches!(self.max_forwards, MaxForwards::Keep)
            && self.request_uri.is_none()
            && !self.content_length
    }
}

fn edits() -> impl Strategy<Value = Edits> {
    (
        option::of(via_value(false).prop_map(Bytes::from)),
        any::<bool>(),
        any::<bool>(),
        option::of(route_value().prop_map(Bytes::from)),
        prop_oneof![
            Just(MaxForwards::Keep),
            Just(MaxForwards::Decrement),
            any::<u8>().prop_map(MaxForwards::Set)
        ],
        option::of(request_uri().prop_map(Bytes::from)),
        any::<bool>(),
        Just((0..7).collect::<Vec<u8>>()).prop_shuffle(),
    )
        .prop_map(
            |(
                push_via,
                pop_via,
                remove_first_route,
                record_route,
                max_forwards,
                request_uri,
                content_length,
                order,
            )| Edits {
                push_via,
                pop_via,
                remove_first_route,
                record_route,
                max_forwards,
                request_uri,
                content_length,
                order,
            },
        )
}

fn apply<'m>(m: &'m Message, ed: &Edits) -> Result<Edit<'m>, Error> {
    let mut e = Edit::new(m);
    for step in &ed.order {
        match step {
            0 => {
                if let Some(v) = &ed.push_via {
                    e.push_via(v)?;
                }
            }
            1 => {
                if ed.pop_via {
                    e.pop_via();
                }
            }
            2 => {
                if ed.remove_first_route {
                    e.remove_first_route();
                }
            }
            3 => {
                if let Some(v) = &ed.record_route {
                    e.add_record_route(v)?;
                }
            }
            4 => match ed.max_forwards {
                MaxForwards::Keep => {}
                MaxForwards::Decrement => {
                    e.decrement_max_forwards();
                }
                MaxForwards::Set(n) => {
                    e.set_max_forwards(n);
                }
            },
            5 => {
                if let Some(u) = &ed.request_uri {
                    e.set_request_uri(u)?;
                }
            }
            _ => {
                if ed.content_length {
                    e.ensure_content_length();
                }
            }
        }
    }
    Ok(e)
}

/// The lines the headers named `name` should have after the edits, from the
/// generated ones: `pop` drops the first value (or the first line, if it has
/// one value); `new_value` replaces the first value.
fn expected_lines(
    msg: &Msg,
    name: HeaderName,
    pop: bool,
    new_value: Option<&[u8]>,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, h) in msg.headers.iter().filter(|h| h.name == name).enumerate() {
        let line = match (i, pop, new_value) {
            (0, true, _) => h.line_without_first_item(),
            (0, false, Some(v)) => Some(h.line_with_value(v)),
            _ => Some(h.line()),
        };
        out.extend(line);
    }
    out
}

/// `(line, value)` of each header named `name` in `m`.
fn lines_and_values(m: &Message, name: HeaderName) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.headers()
        .filter(|h| h.name == name)
        .map(|h| {
            (
                m.as_bytes()[h.line_start..h.line_end].to_vec(),
                h.value.to_vec(),
            )
        })
        .collect()
}

/// Check the headers named `name` of the edited message: if `inserted` is
/// set, a header with that value comes first (a new top value); the rest are
/// exactly `expected` lines.
fn check_edited(
    edited: &Message,
    name: HeaderName,
    inserted: Option<&[u8]>,
    expected: Vec<Vec<u8>>,
) -> Result<(), TestCaseError> {
    let mut got = lines_and_values(edited, name);
    if let Some(v) = inserted {
        prop_assert!(!got.is_empty(), "{:?}: inserted header missing", name);
        let (_, value) = got.remove(0);
        prop_assert_eq!(&value[..], v, "{:?}: new top value", name);
    }
    prop_assert_eq!(
        escs(got.iter().map(|(l, _)| l)),
        escs(expected),
        "{:?} lines",
        name
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    /// Edits change what they edit, and not one other byte.
    #[test]
    fn edits_keep_every_untouched_byte(
        msg in message(false),
        ed in edits(),
        leading in select(LEADING),
        trailing in vec(any::<u8>(), 0..16),
    ) {
        // Edits apply to the message, not to what the datagram held around it.
        let bytes = msg.bytes();
        let trailing = if msg.value(HeaderName::ContentLength).is_some() { &trailing[..] } else { b"" };
        let m = parsed(&[leading, &bytes, trailing].concat())?;
        prop_assert_eq!(&m.as_bytes()[..], &bytes[..]);

        let untouched = Edit::new(&m);
        prop_assert_eq!(untouched.len(), bytes.len());
        prop_assert_eq!(&untouched.to_bytes()[..], &bytes[..]);

        let e = apply(&m, &ed).map_err(|err| TestCaseError::fail(format!("edit refused: {err}")))?;
        let out = e.to_bytes();
        prop_assert_eq!(e.len(), out.len());
        let mut written = BytesMut::new();
        e.write_to(&mut written);
        prop_assert_eq!(&written[..], &out[..]);
        if ed.none() {
            prop_assert_eq!(&out[..], &bytes[..]);
        }
        let edited = parsed(&out)?;
        prop_assert_eq!(&edited.as_bytes()[..], &out[..], "octets dropped: Content-Length wrong?");
        prop_assert_eq!(&edited.body()[..], &msg.body[..]);

        // Start line.
        let want_start = match (&msg.start, &ed.request_uri) {
            (Start::Request { method, version, .. }, Some(uri)) => {
                [&method[..], b" ", uri, b" ", version].concat()
            }
            _ => msg.start.line(),
        };
        prop_assert_eq!(esc(first_line(&out)), esc(&want_start));

        // Headers no edit touches: the same lines, in the same order.
        let touched = |n: HeaderName| match n {
            HeaderName::Via => ed.push_via.is_some() || ed.pop_via,
            HeaderName::Route => ed.remove_first_route,
            HeaderName::RecordRoute => ed.record_route.is_some(),
            HeaderName::MaxForwards => !matches!(ed.max_forwards, MaxForwards::Keep),
            HeaderName::ContentLength => ed.content_length,
            _ => false,
        };
        prop_assert_eq!(
            escs(lines(&edited, |n| !touched(n))),
            escs(lines(&m, |n| !touched(n)))
        );

        // Via: a new top value; the popped one gone; the rest untouched.
        check_edited(
            &edited,
            HeaderName::Via,
            ed.push_via.as_deref(),
            expected_lines(&msg, HeaderName::Via, ed.pop_via, None),
        )?;
        let mut vias = msg.items(HeaderName::Via);
        if ed.pop_via {
            vias.remove(0);
        }
        if let Some(v) = &ed.push_via {
            vias.insert(0, v.to_vec());
        }
        prop_assert_eq!(escs(edited.values(HeaderName::Via).map(|(_, v)| v)), escs(&vias));
        if let Some(v) = &ed.push_via {
            let branch = v.split(|&b| b == b';').find_map(|p| {
                let (name, value) = p.split_at(p.iter().position(|&b| b == b'=')?);
                (name.trim_ascii() == b"branch").then(|| value[1..].trim_ascii())
            });
            let top = edited.top_via();
            prop_assert!(top.is_ok());
            prop_assert_eq!(top.unwrap().branch(), branch);
        }

        // Route: the first value gone.
        check_edited(
            &edited,
            HeaderName::Route,
            None,
            expected_lines(&msg, HeaderName::Route, ed.remove_first_route, None),
        )?;
        let mut routes = msg.items(HeaderName::Route);
        if ed.remove_first_route && !routes.is_empty() {
            routes.remove(0);
        }
        prop_assert_eq!(escs(edited.values(HeaderName::Route).map(|(_, v)| v)), escs(routes));

        // Record-Route: a new top value.
        check_edited(
            &edited,
            HeaderName::RecordRoute,
            ed.record_route.as_deref(),
            expected_lines(&msg, HeaderName::RecordRoute, false, None),
        )?;

        // Max-Forwards: decremented in place, set, or added.
        let old_mf = msg.value(HeaderName::MaxForwards);
        let old_n = old_mf.as_ref().map(|v| std::str::from_utf8(v).unwrap().parse::<u8>().unwrap());
        let new_mf: Option<Vec<u8>> = match (&ed.max_forwards, old_n) {
            (MaxForwards::Keep, _) | (MaxForwards::Decrement, Some(0)) => None,
            (MaxForwards::Decrement, Some(n)) => Some((n - 1).to_string().into_bytes()),
            (MaxForwards::Decrement, None) => Some(b"70".to_vec()),
            (MaxForwards::Set(n), _) => Some(n.to_string().into_bytes()),
        };
        match (&old_mf, &new_mf) {
            (Some(_), new) => check_edited(
                &edited,
                HeaderName::MaxForwards,
                None,
                expected_lines(&msg, HeaderName::MaxForwards, false, new.as_deref()),
            )?,
            (None, Some(new)) => check_edited(&edited, HeaderName::MaxForwards, Some(new), vec![])?,
            (None, None) => check_edited(&edited, HeaderName::MaxForwards, None, vec![])?,
        }

        // Content-Length: added (with the body's length) only if absent.
        let added_cl = (ed.content_length && msg.value(HeaderName::ContentLength).is_none())
            .then(|| msg.body.len().to_string().into_bytes());
        check_edited(
            &edited,
            HeaderName::ContentLength,
            added_cl.as_deref(),
            expected_lines(&msg, HeaderName::ContentLength, false, None),
        )?;

        // Still a message a proxy accepts, unless the only Via was popped.
        if !vias.is_empty() {
            prop_assert_eq!(validate(&edited), Ok(()));
        }
    }

    /// Values that would inject a header line are refused, and change nothing.
    #[test]
    fn edits_refuse_line_breaks(
        msg in message(false),
        value in via_value(false),
        at in any::<Index>(),
        bad in select(&[b'\r', b'\n', 0][..]),
    ) {
        let m = parsed(&msg.bytes())?;
        let mut v = value;
        v.insert(at.index(v.len() + 1), bad);
        let mut e = Edit::new(&m);
        prop_assert!(e.push_via(&v).is_err());
        prop_assert!(e.add_record_route(&v).is_err());
        prop_assert!(e.set_request_uri(&v).is_err());
        prop_assert!(e.push_via(b"").is_err());
        prop_assert_eq!(&e.to_bytes()[..], &m.as_bytes()[..]);
    }
}

// ------------------------------------------------------------------ 4

/// Keep-alives and stray CRLFs between messages.
fn separator() -> impl Strategy<Value = Vec<u8>> {
    const SEPARATORS: &[&[u8]] = &[b"\r\n", b"\r\n\r\n"];
    vec(select(SEPARATORS), 0..=3).prop_map(|v| v.concat())
}

/// The frames the framer owes a run of CRLF pairs: a keep-alive per
/// CRLFCRLF. Returns how many octets it keeps waiting for more (a lone CRLF,
/// skipped once a message follows).
fn separator_frames(sep: &[u8], out: &mut Vec<Frame>) -> usize {
    out.extend(std::iter::repeat_n(Frame::KeepAlive, sep.len() / 4));
    sep.len() % 4
}

/// Feed `stream` to a framer capped at `max` in chunks ending at `cuts` (then
/// the rest), draining frames after each chunk. Returns the frames, and the
/// octets left buffered or the framing error that stopped it.
fn frame_capped(max: usize, stream: &[u8], cuts: &[usize]) -> (Vec<Frame>, Result<usize, Error>) {
    let mut f = StreamFramer::new(max);
    let mut frames = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&stream.len()]) {
        f.extend(&stream[from..to]);
        from = to;
        loop {
            match f.next_frame() {
                Ok(Some(fr)) => frames.push(fr),
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(f.buffered()))
}

fn frame(stream: &[u8], cuts: &[usize]) -> (Vec<Frame>, Result<usize, Error>) {
    frame_capped(DEFAULT_MAX_MESSAGE, stream, cuts)
}

/// Cut points after each of `sizes` (cycled) octets, up to `len`.
fn cuts(sizes: &[usize], len: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        at += size;
        if at >= len {
            break;
        }
        cuts.push(at);
    }
    cuts
}

proptest! {
    #![proptest_config(config(128))]

    /// However the stream is cut, the same frames come out: the messages as
    /// sent, and a keep-alive for each CRLFCRLF between them.
    #[test]
    fn framing_ignores_chunk_boundaries(
        parts in vec((separator(), message(true)), 1..=3),
        tail in separator(),
        sizes in vec(1usize..=64, 1..=8),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        let mut boundaries = Vec::new();
        for (sep, msg) in &parts {
            stream.extend_from_slice(sep);
            separator_frames(sep, &mut want);
            boundaries.push(stream.len());
            let bytes = msg.bytes();
            stream.extend_from_slice(&bytes);
            want.push(Frame::Message(Bytes::from(bytes)));
            boundaries.push(stream.len());
        }
        stream.extend_from_slice(&tail);
        let left = separator_frames(&tail, &mut want);
        let want = (want, Ok(left));

        prop_assert_eq!(frame(&stream, &[]), want.clone());

        // Two chunks, cut at every point of a modest stream; in a long one at
        // every point next to a CR or LF (line ends, the empty line, the
        // keep-alives, CRs and LFs in bodies), near each message boundary,
        // and every 5th point elsewhere (the cost is quadratic).
        let near_line_end = |c: usize| {
            [c - 1, c].iter().any(|&i| matches!(stream[i], b'\r' | b'\n'))
        };
        let near_boundary = |c: usize| boundaries.iter().any(|&b| c.abs_diff(b) <= 4);
        for cut in 1..stream.len() {
            if stream.len() <= 1500 || cut % 5 == 0 || near_line_end(cut) || near_boundary(cut) {
                let got = frame(&stream, &[cut]);
                prop_assert_eq!(got, want.clone(), "cut at {}", cut);
            }
        }

        // Random chunk sizes, and one octet at a time.
        let cuts = cuts(&sizes, stream.len());
        prop_assert_eq!(frame(&stream, &cuts), want.clone(), "cuts {:?}", cuts);
        let every: Vec<usize> = (1..stream.len()).collect();
        prop_assert_eq!(frame(&stream, &every), want.clone());

        // Every frame is a message that parses back to itself and validates.
        for fr in &want.0 {
            if let Frame::Message(b) = fr {
                let m = parsed(b)?;
                prop_assert_eq!(m.as_bytes(), b);
                prop_assert_eq!(validate(&m), Ok(()));
            }
        }
    }
}

// ------------------------------------------------------------------ 5

/// Pieces of SIP syntax, so random input reaches deep into the parser.
#[rustfmt::skip]
const PIECES: &[&str] = &[
    "\r\n", "\r\n\r\n", "\r", "\n", " ", "\t", ":", ";", ",", "<", ">", "\"", "\\", "@", "[",
    "]", "=", "%", "%4", "?", "/", "0", "1", "99999999999", "4294967296", "INVITE", "ACK",
    "SIP/2.0", "SIP/", "sip:", "sips:", "tel:+1", "urn:service:sos", "Via", "v", "l",
    "Content-Length", "f", "t", "i", "CSeq", "Max-Forwards", "Route", "Record-Route", "m",
    "SIP/2.0/UDP ", "host", "192.0.2.1", "[2001:db8::1]", "branch=z9hG4bK", "tag=", ";lr", "\0",
    "\u{e9}", "\x7f",
];

fn sip_noise() -> impl Strategy<Value = Vec<u8>> {
    vec(select(PIECES), 0..=120).prop_map(|v| v.concat().into_bytes())
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    InsertPiece(Index, &'static str),
    Delete(Index),
    Truncate(Index),
    Duplicate(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), select(PIECES)).prop_map(|(i, p)| Mutation::InsertPiece(i, p)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        match m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let i = i.index(b.len());
                b[i] ^= x;
            }
            Mutation::Insert(i, x) => b.insert(i.index(b.len() + 1), *x),
            Mutation::InsertPiece(i, p) => {
                let i = i.index(b.len() + 1);
                b.splice(i..i, p.bytes());
            }
            Mutation::Delete(i) if !b.is_empty() => {
                b.remove(i.index(b.len()));
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len() + 1)),
            Mutation::Duplicate(a, len) if !b.is_empty() => {
                let a = a.index(b.len());
                let end = a + len.index(b.len() - a) + 1;
                let piece = b[a..end].to_vec();
                b.splice(end..end, piece);
            }
            _ => {}
        }
    }
    b
}

/// Everything a datagram or a stream goes through; panics are the failure.
fn survive(data: &[u8], sizes: &[usize], max: usize) -> Result<(), TestCaseError> {
    let (m, verdict) = check_datagram(Bytes::copy_from_slice(data));
    if let Some(m) = &m {
        let again = Message::parse(m.as_bytes().clone());
        prop_assert_eq!(again.as_ref(), Ok(m));
        // The message is the input minus leading CRLFs and trailing octets.
        let skip = data
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        prop_assert_eq!(
            data.get(skip..skip + m.as_bytes().len()),
            Some(&m.as_bytes()[..])
        );
    }
    prop_assert_eq!(
        verdict == Verdict::Accept,
        m.as_ref().is_some_and(|m| validate(m).is_ok())
    );
    // The crate's own invariants, as the fuzz targets check them.
    fuzzing::parse_message(data);
    fuzzing::roundtrip(data);
    fuzzing::stream_framing(data);
    fuzzing::uri(data);
    // The framer, in one piece and in chunks, agrees with itself; with a
    // small cap, the same frames come out before the stream is refused (which
    // error depends on how much had arrived: TooLarge may come first).
    let cuts = cuts(sizes, data.len());
    prop_assert_eq!(frame(data, &[]), frame(data, &cuts));
    let (whole, end) = frame_capped(max, data, &[]);
    let (chunked, chunked_end) = frame_capped(max, data, &cuts);
    prop_assert_eq!(whole, chunked);
    prop_assert_eq!(end.is_ok(), chunked_end.is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        data in prop_oneof![vec(any::<u8>(), 0..512), sip_noise()],
        sizes in vec(1usize..=40, 1..=6),
        max in 16usize..=1024,
    ) {
        survive(&data, &sizes, max)?;
    }

    #[test]
    fn mutated_messages_never_panic(
        msgs in vec(message(false), 1..=2),
        ms in vec(mutation(), 1..=4),
        sizes in vec(1usize..=40, 1..=6),
        max in 64usize..=4096,
    ) {
        let mut data = Vec::new();
        for m in &msgs {
            data.extend_from_slice(&m.bytes());
        }
        survive(&mutate(data, &ms), &sizes, max)?;
    }
}
