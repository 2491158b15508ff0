//! `trunks:`: each trunk's name, address (resolved now), transport, limits
//! and health probe.

use std::time::Duration;

use lifeline_health::{AliveCodes, FlapDamping, ProbeConfig};
use lifeline_proxy::{Peer, Transport, TrunkConfig};
use serde_saphyr::Spanned;

use super::{Checked, EntryNames, Validator};
use crate::config::raw::{Opt, RawAlive, RawProbe, RawTrunk};
use crate::config::units::show_duration;

/// Longest probe interval or timeout.
const MAX_PROBE: Duration = Duration::from_secs(60);

impl Validator<'_> {
    /// The trunks that passed; errors for the others.
    pub(super) fn trunks(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawTrunk>>>>,
        family_v4: Option<bool>,
    ) -> Vec<TrunkConfig> {
        let Some(raw) = raw.filter(|t| !t.value.is_empty()) else {
            self.error(
                raw.map(|t| t.referenced),
                "trunks",
                "at least one trunk is needed".into(),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut names = EntryNames::new(
            "trunks",
            "the trunk's name",
            "missing: every trunk needs a name (routes refer to it)",
        );
        for (i, entry) in raw.value.iter().enumerate() {
            let key = format!("trunks[{i}]");
            let t = &entry.value;
            let name = self.entry_name(&mut names, i, &t.name, entry.referenced);
            let label = name.clone().unwrap_or_else(|| key.clone());
            let addr = match &t.address.0 {
                Some(v) => self.host_port(v, &format!("{key}.address"), &label, family_v4),
                None => {
                    self.error(
                        Some(entry.referenced),
                        &format!("{key}.address"),
                        "missing: every trunk needs an address (ip:port or host:port)".into(),
                    );
                    None
                }
            };
            // `udp+tcp`: UDP, and TCP for requests too large for UDP.
            const TRANSPORTS: [(&str, (Transport, bool)); 3] = [
                ("udp", (Transport::Udp, false)),
                ("tcp", (Transport::Tcp, false)),
                ("udp+tcp", (Transport::Udp, true)),
            ];
            let transport = match &t.transport.0 {
                Some(v) => self.word(v, &format!("{key}.transport"), &TRANSPORTS),
                None => Some((Transport::Udp, false)),
            };
            let probe = self.probe(t.probe.as_ref(), &format!("{key}.probe"));
            let mut limit = |v: &Opt, f: &str, what: &str| match &v.0 {
                Some(v) => self
                    .int(v, &format!("{key}.{f}"), 1..=u32::MAX, what)
                    .map(Some),
                None => Some(None),
            };
            let max_calls = limit(&t.max_calls, "max_calls", "a limit of 1 or more calls");
            let max_cps = limit(
                &t.max_cps,
                "max_cps",
                "a limit of 1 or more calls per second",
            );
            if let (
                Some(name),
                Some(addr),
                Some((transport, large_over_tcp)),
                Some(probe),
                Some(max_calls),
                Some(max_cps),
            ) = (name, addr, transport, probe, max_calls, max_cps)
            {
                out.push(TrunkConfig {
                    name,
                    peer: Peer { addr, transport },
                    probe,
                    large_over_tcp,
                    max_calls,
                    max_cps,
                });
            }
        }
        out
    }

    fn probe(&mut self, raw: Option<&RawProbe>, key: &str) -> Checked<ProbeConfig> {
        let mut p = ProbeConfig::default();
        let Some(raw) = raw else { return Some(p) };
        let mut ok = true;
        let k = |f: &str| format!("{key}.{f}");
        for (v, f, slot) in [
            (&raw.interval, "interval", &mut p.interval),
            (&raw.timeout, "timeout", &mut p.timeout),
        ] {
            ok &= self.set(v, slot, |s, v| {
                s.duration_in(v, &k(f), Duration::from_nanos(1), Some(MAX_PROBE))
            });
        }
        for (v, f, slot) in [
            (&raw.down_after, "down_after", &mut p.down_after),
            (&raw.up_after, "up_after", &mut p.up_after),
        ] {
            ok &= self.set(v, slot, |s, v| {
                s.int(v, &k(f), 1..=100, "a count from 1 to 100")
            });
        }
        if let Some(alive) = &raw.alive {
            match self.alive(alive, &k("alive")) {
                Some(a) => p.alive = a,
                None => ok = false,
            }
        }
        ok &= self.set(&raw.enabled, &mut p.enabled, |s, v| {
            s.bool(v, &k("enabled"))
        });
        let mut flap = FlapDamping::default();
        for (v, f, slot) in [
            (&raw.flap_window, "flap_window", &mut flap.window),
            (&raw.flap_hold, "flap_hold", &mut flap.hold),
            (&raw.flap_max_hold, "flap_max_hold", &mut flap.max_hold),
            (&raw.live_hold, "live_hold", &mut flap.live_hold),
        ] {
            ok &= self.set(v, slot, |s, v| s.duration(v, &k(f)));
        }
        if ok && flap.hold > flap.max_hold {
            let (v, f) = match (&raw.flap_hold.0, &raw.flap_max_hold.0) {
                (Some(v), _) => (v, "flap_hold"),
                (None, Some(v)) => (v, "flap_max_hold"),
                (None, None) => unreachable!("the defaults are ordered"),
            };
            self.error(
                Some(v.referenced),
                &k(f),
                format!(
                    "flap_hold ({}) is longer than flap_max_hold ({})",
                    show_duration(flap.hold),
                    show_duration(flap.max_hold)
                ),
            );
            ok = false;
        }
        p.flap = flap;
        ok &= self.set(&raw.canary, &mut p.canary.duration, |s, v| {
            s.duration(v, &k("canary"))
        });
        ok &= self.set(&raw.canary_one_in, &mut p.canary.one_in, |s, v| {
            s.int(v, &k("canary_one_in"), 1..=1000, "a count from 1 to 1000")
        });
        ok.then_some(p)
    }

    fn alive(&mut self, raw: &Spanned<RawAlive>, key: &str) -> Checked<AliveCodes> {
        match &raw.value {
            RawAlive::Word(w) if w == "any" => Some(AliveCodes::Any),
            RawAlive::Word(w) if w == "not-5xx" => Some(AliveCodes::NotServerError),
            RawAlive::Word(w) => {
                self.error(
                    Some(raw.referenced),
                    key,
                    format!(
                        "{w:?} is not any, not-5xx or a list of status codes such as [200, 405]"
                    ),
                );
                None
            }
            RawAlive::Codes(codes) if codes.is_empty() => {
                self.error(
                    Some(raw.referenced),
                    key,
                    "empty list: no answer would count as alive; list codes such as [200, 405], or write any".into(),
                );
                None
            }
            RawAlive::Codes(codes) => {
                let mut out = Vec::new();
                for (i, c) in codes.iter().enumerate() {
                    out.push(self.int(
                        c,
                        &format!("{key}[{i}]"),
                        100..=699,
                        "a SIP status code (100-699)",
                    ));
                }
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(AliveCodes::Only)
            }
        }
    }
}
