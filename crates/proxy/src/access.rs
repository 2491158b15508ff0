//! What a request from an untrusted source loses before it is classified,
//! recorded or forwarded: the identity and priority it claims (RFC 3325
//! §9.1, RFC 4412), and, when the operator asks, the location it claims
//! (RFC 6442). Everything else leaves byte for byte as it arrived.

use lifeline_sip::{Edit, Error, HeaderName, Message, Multipart, Part};

/// Headers only a trusted source may send: RFC 3325 §9.1 (a proxy removes
/// them from requests it takes from outside the trust domain) and RFC 4412
/// (a priority is worth what its sender's authorisation is).
const IDENTITY: [HeaderName; 3] = [
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
    HeaderName::ResourcePriority,
];

/// [`IDENTITY`] and the location headers of RFC 6442.
const IDENTITY_AND_LOCATION: [HeaderName; 5] = [
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
    HeaderName::ResourcePriority,
    HeaderName::Geolocation,
    HeaderName::GeolocationRouting,
];

/// What happens to the body.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Keep,
    /// The whole body was a PIDF-LO, or every part of it was one.
    Remove,
    /// A multipart body without its PIDF-LO parts.
    Replace(Vec<u8>),
}

/// `m` without P-Asserted-Identity, P-Preferred-Identity and
/// Resource-Priority and, with `location`, without Geolocation,
/// Geolocation-Routing and PIDF-LO bodies; `None` when there is nothing to
/// remove. An error only if the edited message does not parse, which
/// removing whole header lines and body parts of a valid message cannot
/// cause.
pub(crate) fn strip_untrusted(m: &Message, location: bool) -> Result<Option<Message>, Error> {
    let names: &[HeaderName] = if location {
        &IDENTITY_AND_LOCATION
    } else {
        &IDENTITY
    };
    let body = if location {
        location_body(m)
    } else {
        Body::Keep
    };
    if body == Body::Keep && !m.headers().any(|h| names.contains(&h.name)) {
        return Ok(None);
    }
    let mut e = Edit::new(m);
    e.remove_headers(names);
    match &body {
        Body::Keep => {}
        Body::Remove => {
            e.set_body(b"").remove_headers(&[HeaderName::ContentType]);
        }
        Body::Replace(b) => {
            e.set_body(b);
        }
    }
    Message::parse(e.to_bytes()).map(Some)
}

fn is_pidf(p: &Part<'_>) -> bool {
    p.is("application", "pidf+xml")
}

/// What becomes of the body when location is removed: a PIDF-LO body goes;
/// in a multipart body, its PIDF-LO parts go. A multipart body that does not
/// parse is kept as it is (nested multiparts are not looked into).
fn location_body(m: &Message) -> Body {
    let Some(Ok(ct)) = m.content_type() else {
        return Body::Keep;
    };
    if ct.is("application", "pidf+xml") {
        return Body::Remove;
    }
    if !ct.media_type.eq_ignore_ascii_case(b"multipart") {
        return Body::Keep;
    }
    let Some(boundary) = ct.param("boundary") else {
        return Body::Keep;
    };
    let body = m.body();
    let Some(parts) = Multipart::parse(&body, boundary) else {
        return Body::Keep;
    };
    if !parts.parts().iter().any(is_pidf) {
        return Body::Keep;
    }
    match parts.without(is_pidf) {
        Some(rest) => Body::Replace(rest),
        None => Body::Remove,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const HEAD: &str = "INVITE sip:999@gw SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:999@gw>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n";

    fn msg(extra: &str, body: Option<(&str, &str)>) -> Message {
        let text = match body {
            Some((ct, b)) => format!(
                "{HEAD}{extra}Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
            None => format!("{HEAD}{extra}Content-Length: 0\r\n\r\n"),
        };
        Message::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn nothing_to_remove_is_nothing_to_do() {
        let m = msg("Subject: hi\r\nGeolocation: <cid:loc@x>\r\n", None);
        assert_eq!(strip_untrusted(&m, false), Ok(None));
        let m = msg("Subject: hi\r\n", Some(("application/sdp", "v=0\r\n")));
        assert_eq!(strip_untrusted(&m, true), Ok(None));
    }

    fn strip(m: Message, location: bool) -> Message {
        strip_untrusted(&m, location).unwrap().unwrap()
    }

    #[test]
    fn identity_goes_location_stays_unless_asked() {
        let extra = "P-Asserted-Identity: <tel:+441632960999>\r\nGeolocation: <cid:loc@x>\r\nResource-Priority: esnet.0\r\n";
        let pidf = ("application/pidf+xml", "<presence/>");
        let out = strip(msg(extra, Some(pidf)), false);
        assert_eq!(
            out.as_bytes(),
            msg("Geolocation: <cid:loc@x>\r\n", Some(pidf)).as_bytes()
        );
        let out = strip(msg(extra, Some(pidf)), true);
        let want = format!("{HEAD}Content-Length: 0\r\n\r\n");
        assert_eq!(out.as_bytes(), want.as_bytes());
    }

    #[test]
    fn a_pidf_part_of_a_multipart_body_goes() {
        let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n--b--\r\n";
        let ct = "multipart/mixed;boundary=b";
        let out = strip(msg("", Some((ct, body))), true);
        let kept = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b--\r\n";
        assert_eq!(out.as_bytes(), msg("", Some((ct, kept))).as_bytes());
        // Without `location`, untouched.
        assert_eq!(strip_untrusted(&msg("", Some((ct, body))), false), Ok(None));
    }
}
