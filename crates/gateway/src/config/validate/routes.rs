//! `routes:`: each route's match, its trunks (which must exist) with their
//! shares, and its timeouts.

use lifeline_proxy::{RescueRinging, RouteConfig, RouteMatch, TrunkShare};
use serde_saphyr::{Location, Spanned};

use super::{Checked, EntryNames, Validator};
use crate::config::raw::{RawMatch, RawRoute, RawRouteTrunk};
use crate::config::units::show_duration;

impl Validator<'_> {
    pub(super) fn routes(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawRoute>>>>,
        trunk_names: &[String],
        written: &[String],
    ) -> Checked<Vec<RouteConfig>> {
        let Some(raw) = raw.filter(|r| !r.value.is_empty()) else {
            self.error(
                raw.map(|r| r.referenced),
                "routes",
                "at least one route is needed, e.g. `- { name: emergency, match: emergency, \
                 trunks: [primary, backup] }`"
                    .into(),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        let mut names = EntryNames::new(
            "routes",
            "the route's name",
            "missing: every route needs a name (for logs and metrics)",
        );
        // The first route taking everything, and the first taking every
        // emergency call: routes after them can never match.
        let mut any_at: Option<usize> = None;
        let mut emergency_at: Option<usize> = None;
        for (i, entry) in raw.value.iter().enumerate() {
            let key = format!("routes[{i}]");
            let r = &entry.value;
            let name = self.entry_name(&mut names, i, &r.name, entry.referenced);
            let matches = match &r.matches {
                None => {
                    self.error(
                        Some(entry.referenced),
                        &format!("{key}.match"),
                        "missing: write emergency, any or { uri: REGEX }".into(),
                    );
                    None
                }
                Some(m) => self.route_match(m, &format!("{key}.match")),
            };
            if let Some(j) = any_at {
                self.error(
                    Some(entry.referenced),
                    &key,
                    format!("never used: routes[{j}] (match: any) takes every request first"),
                );
                ok = false;
            } else if let (Some(RouteMatch::Emergency), Some(j)) = (&matches, emergency_at) {
                self.error(
                    Some(entry.referenced),
                    &key,
                    format!("never used: routes[{j}] (match: emergency) takes every emergency call first"),
                );
                ok = false;
            }
            match &matches {
                Some(RouteMatch::Any) => any_at = any_at.or(Some(i)),
                Some(RouteMatch::Emergency) => emergency_at = emergency_at.or(Some(i)),
                _ => {}
            }
            let trunks = self.route_trunks(
                r.trunks.as_ref(),
                entry.referenced,
                &key,
                trunk_names,
                written,
            );
            let mut route = RouteConfig::new("", RouteMatch::Any, &[]);
            ok &= self.route_settings(r, &key, &mut route);
            match (name, matches, trunks) {
                (Some(name), Some(matches), Some((trunks, shares))) => {
                    route.name = name;
                    route.matches = matches;
                    route.trunks = trunks;
                    route.shares = shares;
                    out.push(route);
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A route's timeouts, hedging, rescue and failover codes, into
    /// `route`; false after an error.
    fn route_settings(&mut self, r: &RawRoute, key: &str, route: &mut RouteConfig) -> bool {
        let mut ok = self.set(&r.failover_after, &mut route.failover_after, |s, v| {
            s.positive(v, &format!("{key}.failover_after"))
        });
        let progress_ok = self.set(&r.progress_timeout, &mut route.progress_timeout, |s, v| {
            s.positive(v, &format!("{key}.progress_timeout"))
        });
        // The floor of the adaptive progress timeout; by default 100 ms,
        // or the progress timeout itself if that is shorter.
        route.progress_timeout_min = route.progress_timeout_min.min(route.progress_timeout);
        if let Some(v) = &r.progress_timeout_min.0 {
            let k = format!("{key}.progress_timeout_min");
            match self.positive(v, &k) {
                Some(d) if progress_ok && d > route.progress_timeout => {
                    self.error(
                        Some(v.referenced),
                        &k,
                        format!(
                            "progress_timeout_min ({}) is longer than progress_timeout ({})",
                            show_duration(d),
                            show_duration(route.progress_timeout)
                        ),
                    );
                    ok = false;
                }
                Some(d) => route.progress_timeout_min = d,
                None => ok = false,
            }
        }
        ok &= self.set(
            &r.progress_timeout_factor,
            &mut route.progress_timeout_factor,
            |s, v| {
                s.int(
                    v,
                    &format!("{key}.progress_timeout_factor"),
                    1..=100,
                    "a factor from 1 to 100",
                )
            },
        );
        const RESCUE: [RescueRinging; 3] = [
            RescueRinging::Emergency,
            RescueRinging::All,
            RescueRinging::Off,
        ];
        ok &= self.set(&r.rescue_ringing, &mut route.rescue_ringing, |s, v| {
            s.word(
                v,
                &format!("{key}.rescue_ringing"),
                &RESCUE.map(|r| (r.as_str(), r)),
            )
        });
        if let Some(v) = &r.hedge_after.0 {
            let k = format!("{key}.hedge_after");
            match self.duration(v, &k) {
                Some(d) if d.is_zero() => {
                    let t = self.text(v);
                    self.error(
                        Some(v.referenced),
                        &k,
                        format!("{t}: must be more than 0 (leave hedge_after out for no hedging)"),
                    );
                    ok = false;
                }
                Some(d) if progress_ok && d >= route.progress_timeout => {
                    self.error(
                        Some(v.referenced),
                        &k,
                        format!(
                            "hedge_after ({}) is not shorter than progress_timeout ({}): \
                             the attempt would be given up before it is hedged",
                            show_duration(d),
                            show_duration(route.progress_timeout)
                        ),
                    );
                    ok = false;
                }
                Some(d) => route.hedge_after = Some(d),
                None => ok = false,
            }
        }
        ok &= progress_ok;
        if let Some(codes) = &r.failover_codes {
            let mut list = Vec::new();
            for (j, c) in codes.value.iter().enumerate() {
                match self.int(
                    c,
                    &format!("{key}.failover_codes[{j}]"),
                    400..=699,
                    "a failure status (400-699)",
                ) {
                    Some(n) => list.push(n),
                    None => ok = false,
                }
            }
            route.failover_codes = list;
        }
        ok
    }

    fn route_match(&mut self, m: &Spanned<RawMatch>, key: &str) -> Checked<RouteMatch> {
        match &m.value {
            RawMatch::Word(w) if w == "emergency" => Some(RouteMatch::Emergency),
            RawMatch::Word(w) if w == "any" => Some(RouteMatch::Any),
            RawMatch::Word(w) => {
                self.error(
                    Some(m.referenced),
                    key,
                    format!("{w:?} is not emergency, any or {{ uri: REGEX }}"),
                );
                None
            }
            RawMatch::Uri(v) => {
                let key = format!("{key}.uri");
                let t = self.present(v, &key, "a regular expression")?;
                match regex::Regex::new(&t) {
                    Ok(re) => Some(RouteMatch::Uri(re)),
                    Err(e) => {
                        self.error(
                            Some(v.referenced),
                            &key,
                            format!(
                                "{t:?} is not a valid regular expression: {}",
                                regex_reason(&e)
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    /// A route's `trunks`: the names, and their shares when any entry gives
    /// a priority or weight (then every entry must give a priority).
    fn route_trunks(
        &mut self,
        raw: Option<&Spanned<Vec<Spanned<RawRouteTrunk>>>>,
        route_at: Location,
        key: &str,
        trunk_names: &[String],
        written: &[String],
    ) -> Checked<(Vec<String>, Vec<TrunkShare>)> {
        let key = format!("{key}.trunks");
        let Some(list) = raw else {
            self.error(
                Some(route_at),
                &key,
                "missing: list the trunks to try, in order, e.g. [primary, backup]".into(),
            );
            return None;
        };
        if list.value.is_empty() {
            self.error(
                Some(list.referenced),
                &key,
                "empty: list the trunks to try, in order, e.g. [primary, backup]".into(),
            );
            return None;
        }
        let sharing = list.value.iter().any(|e| {
            matches!(&e.value, RawRouteTrunk::Share(s) if s.priority.0.is_some() || s.weight.0.is_some())
        });
        let mut out: Vec<String> = Vec::new();
        // Where each name in `out` is listed (entries with errors are not in `out`).
        let mut listed_at: Vec<usize> = Vec::new();
        let mut shares: Vec<TrunkShare> = Vec::new();
        let mut ok = true;
        for (j, entry) in list.value.iter().enumerate() {
            let k = format!("{key}[{j}]");
            let (v, name_key, share) = match &entry.value {
                RawRouteTrunk::Name(scalar) => (
                    Some(Spanned::new(
                        scalar.clone(),
                        entry.referenced,
                        entry.defined,
                    )),
                    k.clone(),
                    None,
                ),
                RawRouteTrunk::Share(s) => (s.name.0.clone(), format!("{k}.name"), Some(s)),
            };
            let Some(v) = v else {
                self.error(
                    Some(entry.referenced),
                    &name_key,
                    "missing: write the trunk's name, e.g. { name: backup, priority: 2 }".into(),
                );
                ok = false;
                continue;
            };
            let Some(name) = self.name(&v, &name_key, "a trunk's name") else {
                ok = false;
                continue;
            };
            if sharing {
                match share {
                    None => {
                        self.error(
                            Some(entry.referenced),
                            &k,
                            format!(
                                "{name:?} has no priority: when a trunk of the route has a \
                                 priority or weight, every one needs a priority, e.g. \
                                 {{ name: {name}, priority: 1 }}"
                            ),
                        );
                        ok = false;
                    }
                    Some(s) => {
                        let priority = match &s.priority.0 {
                            Some(p) => self.int(
                                p,
                                &format!("{k}.priority"),
                                0..=1000,
                                "a priority from 0 to 1000 (lower first)",
                            ),
                            None => {
                                self.error(
                                    Some(entry.referenced),
                                    &format!("{k}.priority"),
                                    "missing: when a trunk of the route has a priority or \
                                     weight, every one needs a priority"
                                        .into(),
                                );
                                None
                            }
                        };
                        let weight = match &s.weight.0 {
                            Some(w) => self.int(
                                w,
                                &format!("{k}.weight"),
                                0..=1000,
                                "a weight from 0 to 1000",
                            ),
                            None => Some(1),
                        };
                        match (priority, weight) {
                            (Some(priority), Some(weight)) => {
                                shares.push(TrunkShare { priority, weight });
                            }
                            _ => ok = false,
                        }
                    }
                }
            }
            if let Some(prev) = out.iter().position(|n| *n == name) {
                let prev = listed_at.get(prev).copied().unwrap_or(prev);
                self.error(
                    Some(v.referenced),
                    &name_key,
                    format!("trunk {name:?} is already listed as {key}[{prev}]"),
                );
                ok = false;
            } else if !trunk_names.contains(&name) {
                // A trunk that is in the file but has errors of its own is
                // reported where it is defined; no trunks at all, at
                // `trunks:`.
                let mut known: Vec<&str> = Vec::new();
                for n in written {
                    if !n.is_empty() && !known.contains(&n.as_str()) {
                        known.push(n);
                    }
                }
                if !known.contains(&name.as_str()) && !known.is_empty() {
                    self.error(
                        Some(v.referenced),
                        &name_key,
                        format!("unknown trunk {name:?} (trunks: {})", known.join(", ")),
                    );
                }
                ok = false;
            }
            out.push(name);
            listed_at.push(j);
        }
        if ok && !shares.is_empty() && shares.iter().all(|s| s.weight == 0) {
            self.error(
                Some(list.referenced),
                &key,
                "every weight is 0: give at least one trunk a weight above 0".into(),
            );
            ok = false;
        }
        ok.then_some((out, shares))
    }
}

/// The line of a regex error that says what is wrong (its message spans
/// several lines, with a caret under the pattern).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}
