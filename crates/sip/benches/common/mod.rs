//! The work measured by `benches/parse.rs` and counted by
//! `examples/count_parse.rs` (which includes this file with `#[path]`), so the
//! criterion times and the callgrind instruction counts are for the same code.
//!
//! Per message, each parser does what an edge proxy does with every message
//! before routing it:
//!
//! 1. parse the bytes;
//! 2. scan every header, touching its name and value;
//! 3. extract the transaction key: top Via branch, CSeq number and method,
//!    Call-ID, From tag, To tag.
//!
//! `lifeline_validate` adds [`lifeline_sip::validate`] (every Via, From, To,
//! Contact, Route, Record-Route value parsed; mandatory headers checked).
//! `*_parse` do step 1 only and `lifeline_key` steps 1 and 3, to show where
//! the instructions go.

// Each includer uses a different subset.
#![allow(dead_code)]

use std::hint::black_box;

use bytes::Bytes;
use lifeline_sip::Message;
use rsip::prelude::*;

/// The emergency INVITE as an NG emergency call arrives: Request-URI and To
/// are `urn:service:sos`. rsip 0.4 rejects this Request-URI (and cannot parse
/// the To), so only lifeline is measured on it.
pub(crate) const EMERGENCY_INVITE_URN: &[u8] =
    include_bytes!("../../testdata/bench/emergency-invite.sip");
/// The same INVITE with Request-URI and To `sip:999@ecs.example.net;user=phone`
/// (a UK 999 call to an emergency call service): both parsers accept it, so
/// the lifeline/rsip comparison uses these bytes.
pub(crate) const EMERGENCY_INVITE: &[u8] =
    include_bytes!("../../testdata/bench/emergency-invite-999.sip");
/// A 180 Ringing for that INVITE, as it comes back through the proxy.
pub(crate) const RINGING_180: &[u8] = include_bytes!("../../testdata/bench/ringing-180.sip");

/// Fixtures by the names used on the command line and in benchmark ids.
pub(crate) const FIXTURES: &[(&str, &[u8])] = &[
    ("emergency-invite", EMERGENCY_INVITE),
    ("emergency-invite-urn", EMERGENCY_INVITE_URN),
    ("ringing-180", RINGING_180),
];

pub(crate) fn fixture(name: &str) -> Option<&'static [u8]> {
    FIXTURES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// lifeline: parse, scan all headers, extract the transaction key. `buf`
/// should be a `Bytes::from_static` (or an already shared `Bytes`) so the
/// clone is not a copy of the input.
pub(crate) fn lifeline(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("lifeline parses the fixture");
    lifeline_scan_and_key(&m)
}

/// lifeline: as [`lifeline`], plus [`lifeline_sip::validate`].
pub(crate) fn lifeline_validate(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("lifeline parses the fixture");
    lifeline_sip::validate(&m).expect("fixture validates");
    lifeline_scan_and_key(&m)
}

/// lifeline, step 1 only: parse.
pub(crate) fn lifeline_parse(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("lifeline parses the fixture");
    black_box(&m);
    m.as_bytes().len()
}

/// lifeline, steps 1 and 3: parse and extract the key, no header scan.
pub(crate) fn lifeline_key(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("lifeline parses the fixture");
    lifeline_key_of(&m)
}

fn lifeline_scan_and_key(m: &Message) -> usize {
    let mut n = 0;
    for h in m.headers() {
        black_box((h.name, h.raw_name, h.value));
        n += h.raw_name.len() + h.value.len();
    }
    n + lifeline_key_of(m)
}

fn lifeline_key_of(m: &Message) -> usize {
    let via = m.top_via().expect("top Via parses");
    let branch = via.branch().expect("top Via has a branch");
    let cseq = m.cseq().expect("CSeq parses");
    let call_id = m.call_id().expect("Call-ID present");
    let from = m.from().expect("From parses");
    let to = m.to().expect("To parses");
    let key = (branch, cseq.seq, cseq.method, call_id, from.tag(), to.tag());
    black_box(&key);
    branch.len() + call_id.len() + cseq.method.len()
}

/// rsip, step 1 only: parse.
pub(crate) fn rsip_parse(buf: &[u8]) -> usize {
    let m = rsip::SipMessage::try_from(buf).expect("rsip parses the fixture");
    black_box(&m);
    m.body().len()
}

/// rsip: parse, scan all headers, extract the same transaction key through
/// rsip's typed headers (`typed()` is how rsip parses a header's value).
pub(crate) fn rsip(buf: &[u8]) -> usize {
    let m = rsip::SipMessage::try_from(buf).expect("rsip parses the fixture");
    let mut n = 0;
    for h in m.headers().iter() {
        let (name, value) = rsip_name_value(h);
        black_box((name, value));
        n += name.len() + value.len();
    }
    let via = m.via_header().expect("Via").typed().expect("Via parses");
    let branch = via.branch().expect("top Via has a branch");
    let cseq = m.cseq_header().expect("CSeq").typed().expect("CSeq parses");
    let call_id = m.call_id_header().expect("Call-ID").value();
    let from = m.from_header().expect("From").typed().expect("From parses");
    let to = m.to_header().expect("To").typed().expect("To parses");
    let key = (
        branch.value(),
        cseq.seq,
        &cseq.method,
        call_id,
        from.tag().map(|t| t.value()),
        to.tag().map(|t| t.value()),
    );
    black_box(&key);
    n + branch.value().len() + call_id.len()
}

/// The name and value of an rsip header. rsip keeps known headers as an enum
/// variant around the value, so the variant stands for the name.
pub(crate) fn rsip_name_value(h: &rsip::Header) -> (&str, &str) {
    macro_rules! known {
        ($($v:ident),* $(,)?) => {
            match h {
                rsip::Header::Other(name, value) => (name.as_str(), value.as_str()),
                $(rsip::Header::$v(x) => (stringify!($v), x.value()),)*
            }
        };
    }
    known!(
        Accept,
        AcceptEncoding,
        AcceptLanguage,
        AlertInfo,
        Allow,
        AuthenticationInfo,
        Authorization,
        CSeq,
        CallId,
        CallInfo,
        Contact,
        ContentDisposition,
        ContentEncoding,
        ContentLanguage,
        ContentLength,
        ContentType,
        Date,
        ErrorInfo,
        Event,
        Expires,
        From,
        InReplyTo,
        MaxForwards,
        MimeVersion,
        MinExpires,
        Organization,
        Priority,
        ProxyAuthenticate,
        ProxyAuthorization,
        ProxyRequire,
        RecordRoute,
        ReplyTo,
        Require,
        RetryAfter,
        Route,
        Server,
        Subject,
        SubscriptionState,
        Supported,
        Timestamp,
        To,
        Unsupported,
        UserAgent,
        Via,
        Warning,
        WwwAuthenticate,
    )
}
