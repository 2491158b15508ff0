//! Emergency classification (RFC 5031, RFC 7135) and route matching.

use lifeline_sip::{HeaderName, Message, Uri};

use crate::config::{EmergencyConfig, RouteConfig, RouteMatch};

/// Why a call counts as an emergency call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmergencyRule {
    /// Request-URI `urn:service:sos` or a sub-service (`urn:service:sos.fire`).
    SosUrn,
    /// The user part of a sip:/sips:/tel: Request-URI is a configured
    /// emergency number (visual separators ignored).
    Number,
    /// `Resource-Priority: esnet.*` from a trusted source (RFC 7135;
    /// `access.trusted`).
    ResourcePriority,
}

impl EmergencyRule {
    /// Name for logs, metrics and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SosUrn => "sos-urn",
            Self::Number => "number",
            Self::ResourcePriority => "resource-priority",
        }
    }
}

/// Classify a request. `trusted`: it comes from a source in
/// [`AccessConfig::trusted`](crate::AccessConfig::trusted), whose
/// `Resource-Priority: esnet.*` makes it an emergency call; from any other
/// source only the dialled URI counts (an emergency number or a sos URN is
/// an emergency call whoever dials it).
pub fn classify(msg: &Message, trusted: bool, cfg: &EmergencyConfig) -> Option<EmergencyRule> {
    match msg.request_uri()? {
        Ok(Uri::Other { scheme, rest }) if scheme.eq_ignore_ascii_case(b"urn") && is_sos(rest) => {
            return Some(EmergencyRule::SosUrn);
        }
        Ok(Uri::Sip(u)) if u.user.is_some_and(|user| is_number(user, cfg)) => {
            return Some(EmergencyRule::Number);
        }
        Ok(Uri::Tel(t)) if is_number(t.number, cfg) => return Some(EmergencyRule::Number),
        _ => {}
    }
    if trusted {
        let esnet = msg.values(HeaderName::ResourcePriority).any(|(_, v)| {
            v.len() > 6
                && v.get(..6)
                    .is_some_and(|p| p.eq_ignore_ascii_case(b"esnet."))
        });
        if esnet {
            return Some(EmergencyRule::ResourcePriority);
        }
    }
    None
}

/// `service:sos` or `service:sos.<anything>`, case-insensitive (RFC 5031 §4).
fn is_sos(rest: &[u8]) -> bool {
    const SOS: &[u8] = b"service:sos";
    let Some(head) = rest.get(..SOS.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(SOS) && matches!(rest.get(SOS.len()), None | Some(b'.'))
}

/// Whether a user part (still escaped) is an emergency number once visual
/// separators (`-`, `.`, `(`, `)`, and escaped or literal spaces) are removed.
/// A user part carrying parameters (`999;phone-context=...`) is judged on the
/// number before the first `;`.
fn is_number(user: &[u8], cfg: &EmergencyConfig) -> bool {
    let number = user.split(|&b| b == b';').next().unwrap_or_default();
    let mut digits = [0u8; 32];
    let mut n = 0;
    for b in lifeline_sip::unescape(number) {
        match b {
            b'-' | b'.' | b'(' | b')' | b' ' => continue,
            b'0'..=b'9' | b'*' | b'#' | b'+' => {
                let Some(slot) = digits.get_mut(n) else {
                    return false;
                };
                *slot = b;
                n += 1;
            }
            _ => return false,
        }
    }
    let digits = digits.get(..n).unwrap_or_default();
    n > 0 && cfg.numbers.iter().any(|e| e.as_bytes() == digits)
}

/// The first route that takes this request.
pub fn select_route<'a>(
    routes: &'a [RouteConfig],
    msg: &Message,
    emergency: Option<EmergencyRule>,
) -> Option<(usize, &'a RouteConfig)> {
    let uri = msg.request_uri_bytes().unwrap_or_default();
    routes.iter().enumerate().find(|(_, r)| match &r.matches {
        RouteMatch::Emergency => emergency.is_some(),
        RouteMatch::Uri(re) => std::str::from_utf8(uri).is_ok_and(|u| re.is_match(u)),
        RouteMatch::Any => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(uri: &str, extra: &str) -> Message {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    fn class(uri: &str) -> Option<EmergencyRule> {
        classify(&req(uri, ""), false, &EmergencyConfig::default())
    }

    #[test]
    fn sos_urns() {
        assert_eq!(class("urn:service:sos"), Some(EmergencyRule::SosUrn));
        assert_eq!(class("URN:Service:SOS.fire"), Some(EmergencyRule::SosUrn));
        assert_eq!(
            class("urn:service:sos.animal-control"),
            Some(EmergencyRule::SosUrn)
        );
        assert_eq!(class("urn:service:sosx"), None);
        assert_eq!(class("urn:service:counseling"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(class("sip:999@gw.example.net"), Some(EmergencyRule::Number));
        assert_eq!(
            class("sip:112@gw.example.net;user=phone"),
            Some(EmergencyRule::Number)
        );
        assert_eq!(class("tel:911"), Some(EmergencyRule::Number));
        assert_eq!(
            class("tel:9-1-1;phone-context=example.com"),
            Some(EmergencyRule::Number)
        );
        assert_eq!(class("sip:9%2099@gw"), Some(EmergencyRule::Number));
        assert_eq!(
            class("sip:999;phone-context=+44@gw"),
            Some(EmergencyRule::Number)
        );
        assert_eq!(class("sip:9999@gw"), None);
        assert_eq!(class("sip:+44999@gw"), None);
        assert_eq!(class("sip:alice@gw"), None);
        assert_eq!(class("sip:gw.example.net"), None);
    }

    #[test]
    fn resource_priority_only_from_trusted_sources() {
        let m = req("sip:+441632960000@gw", "Resource-Priority: esnet.1\r\n");
        let cfg = EmergencyConfig::default();
        assert_eq!(classify(&m, false, &cfg), None);
        assert_eq!(
            classify(&m, true, &cfg),
            Some(EmergencyRule::ResourcePriority)
        );
        let m = req("sip:+441632960000@gw", "Resource-Priority: dsn.flash\r\n");
        assert_eq!(classify(&m, true, &cfg), None);
        // A dialled emergency number counts from anyone.
        let m = req("sip:999@gw", "Resource-Priority: esnet.1\r\n");
        assert_eq!(classify(&m, false, &cfg), Some(EmergencyRule::Number));
    }

    #[test]
    fn routes_in_order() {
        let routes = vec![
            RouteConfig::new("emergency", RouteMatch::Emergency, &["a"]),
            RouteConfig::new(
                "uk",
                RouteMatch::Uri(regex::Regex::new(r"^sip:\+44").unwrap()),
                &["b"],
            ),
            RouteConfig::new("default", RouteMatch::Any, &["c"]),
        ];
        let pick = |uri: &str| {
            let m = req(uri, "");
            let e = classify(&m, false, &EmergencyConfig::default());
            select_route(&routes, &m, e).map(|(_, r)| r.name.clone())
        };
        assert_eq!(pick("urn:service:sos").as_deref(), Some("emergency"));
        assert_eq!(pick("sip:+441632960000@gw").as_deref(), Some("uk"));
        assert_eq!(pick("sip:+15550100@gw").as_deref(), Some("default"));
        assert_eq!(
            select_route(&routes[..2], &req("sip:x@y", ""), None).map(|r| r.0),
            None
        );
    }
}
