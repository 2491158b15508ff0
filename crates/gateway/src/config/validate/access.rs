//! `access:`: who may send new requests, and whose identity and priority
//! headers are kept (the RFC 3325 trust domain).
//!
//! ```yaml
//! access:
//!   callers: [192.0.2.0/24, "2001:db8::/32"]   # default: any source (the daemon warns)
//!   trusted: [192.0.2.10/32]                   # default: none
//!   unknown: drop                              # drop | reject (403)
//!   strip_untrusted_location: false
//! ```
//!
//! A prefix is an address and a length (`192.0.2.0/24`) or one address
//! (a /32 or /128). `emergency.trusted_resource_priority`, which this
//! section replaces, still works: its addresses are added to `trusted`,
//! with a warning.

use std::net::IpAddr;

use lifeline_proxy::{AccessConfig, IpNet, UnknownSource};
use serde_saphyr::Spanned;

use super::super::raw::{RawAccess, S};
use super::{Checked, Validator};

impl Validator<'_> {
    /// `access:`, with the deprecated `emergency.trusted_resource_priority`
    /// (`legacy`) added to `trusted`.
    pub(super) fn access(
        &mut self,
        raw: Option<&Spanned<RawAccess>>,
        legacy: Option<&Spanned<Vec<S>>>,
    ) -> Checked<AccessConfig> {
        let mut cfg = AccessConfig::default();
        let mut ok = true;
        if let Some(raw) = raw {
            let a = &raw.value;
            match &a.callers {
                Some(list) if list.value.is_empty() => {
                    self.error(
                        Some(list.referenced),
                        "access.callers",
                        "empty: nobody could place a call. List the originating networks' \
                         prefixes, e.g. [192.0.2.0/24], or leave callers out to take calls \
                         from any source"
                            .into(),
                    );
                    ok = false;
                }
                Some(list) => match self.prefixes(list, "access.callers") {
                    Some(p) => cfg.callers = Some(p),
                    None => ok = false,
                },
                None => {}
            }
            if let Some(list) = &a.trusted {
                match self.prefixes(list, "access.trusted") {
                    Some(p) => cfg.trusted = p,
                    None => ok = false,
                }
            }
            const UNKNOWN: [(&str, UnknownSource); 2] = [
                ("drop", UnknownSource::Drop),
                ("reject", UnknownSource::Reject),
            ];
            ok &= self.set(&a.unknown, &mut cfg.unknown, |s, v| {
                s.word(v, "access.unknown", &UNKNOWN)
            });
            ok &= self.set(
                &a.strip_untrusted_location,
                &mut cfg.strip_untrusted_location,
                |s, v| s.bool(v, "access.strip_untrusted_location"),
            );
        }
        match self.legacy_trusted(legacy) {
            Some(extra) => {
                for net in extra {
                    if !cfg.trusted.contains(&net) {
                        cfg.trusted.push(net);
                    }
                }
            }
            None => ok = false,
        }
        ok.then_some(cfg)
    }

    /// Every prefix of a list; `None` after an error in any.
    fn prefixes(&mut self, list: &Spanned<Vec<S>>, key: &str) -> Checked<Vec<IpNet>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in list.value.iter().enumerate() {
            match self.prefix(v, &format!("{key}[{i}]")) {
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `192.0.2.0/24`, `"2001:db8::/32"`, or one address (a /32 or /128).
    fn prefix(&mut self, v: &S, key: &str) -> Checked<IpNet> {
        let t = self.present(v, key, "an IP prefix such as 192.0.2.0/24")?;
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Some(IpNet::from(ip));
        }
        match t.parse::<IpNet>() {
            Ok(net) if net.trunc() != net => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!(
                        "{t:?} has address bits set past the /{}: write {} for the network, \
                         or {}/{} for the one address",
                        net.prefix_len(),
                        net.trunc(),
                        net.addr(),
                        net.max_prefix_len()
                    ),
                );
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                self.error(
                    Some(v.referenced),
                    key,
                    format!(
                        "{t:?} is not an IP prefix: write an address and a length, e.g. \
                         192.0.2.0/24 or \"2001:db8::/32\", or one address (no port, no name)"
                    ),
                );
                None
            }
        }
    }

    /// `emergency.trusted_resource_priority`: IP addresses, each a /32 or
    /// /128 of `access.trusted`; a warning that the key is deprecated.
    fn legacy_trusted(&mut self, raw: Option<&Spanned<Vec<S>>>) -> Checked<Vec<IpNet>> {
        let Some(list) = raw else {
            return Some(Vec::new());
        };
        self.warning(
            Some(list.referenced),
            "emergency.trusted_resource_priority",
            "deprecated: write these addresses in access.trusted, to which they are added \
             (their P-Asserted-Identity and Resource-Priority are kept, and esnet.* from them \
             makes an emergency call)"
                .into(),
        );
        let mut out = Vec::new();
        let mut ok = true;
        for (i, ip) in list.value.iter().enumerate() {
            let key = format!("emergency.trusted_resource_priority[{i}]");
            let Some(t) = self.present(ip, &key, "an IP address") else {
                ok = false;
                continue;
            };
            match t.parse::<IpAddr>() {
                Ok(a) => out.push(IpNet::from(a)),
                Err(_) => {
                    self.error(
                        Some(ip.referenced),
                        &key,
                        format!("{t:?} is not an IP address (no port, no name)"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
