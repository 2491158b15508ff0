//! What is allowed but probably wrong. Warnings never make a file invalid;
//! the daemon logs them and `check-config` prints them (a file with errors
//! gets only its errors).

use lifeline_proxy::{RouteConfig, TrunkConfig};
use serde_saphyr::Spanned;

use super::Validator;
use crate::config::raw::RawRoute;

impl Validator<'_> {
    /// Warn about each route whose backups together may carry fewer calls
    /// at once than its primary (the trunk tried first): if the primary
    /// fails, its calls do not fit. A trunk without `max_calls` counts as
    /// unlimited. (The 2023 UK 999 outage report faulted an under-sized
    /// backup.)
    pub(super) fn backup_capacity(
        &mut self,
        routes: &[RouteConfig],
        raw: &[Spanned<RawRoute>],
        trunks: &[TrunkConfig],
    ) {
        let max_calls = |name: &str| {
            trunks
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| t.max_calls)
        };
        for (i, (route, raw)) in routes.iter().zip(raw).enumerate() {
            // The trunk tried first: the first of the lowest priority.
            let first = match route
                .shares
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.priority)
            {
                Some((j, _)) => j,
                None => 0,
            };
            let Some(primary) = route.trunks.get(first) else {
                continue;
            };
            let backups: Vec<(&str, Option<u32>)> = route
                .trunks
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != first)
                .map(|(_, t)| (t.as_str(), max_calls(t)))
                .collect();
            if backups.is_empty() {
                continue;
            }
            // `None`: unlimited.
            let total: Option<u64> = backups
                .iter()
                .try_fold(0u64, |sum, (_, m)| m.map(|m| sum + u64::from(m)));
            let Some(total) = total else { continue };
            let primary_max = max_calls(primary);
            if primary_max.is_some_and(|p| u64::from(p) <= total) {
                continue;
            }
            let each: Vec<String> = backups
                .iter()
                .map(|(t, m)| format!("{t} {}", m.unwrap_or_default()))
                .collect();
            let primary_text = match primary_max {
                Some(p) => format!("primary {primary:?} takes up to {p} calls"),
                None => format!("primary {primary:?} has no max_calls"),
            };
            let at = raw
                .value
                .trunks
                .as_ref()
                .map_or(raw.referenced, |l| l.referenced);
            self.warning(
                Some(at),
                &format!("routes[{i}].trunks"),
                format!(
                    "backup capacity is below the primary's: {primary_text}, its backups \
                     {total} in all ({}); if {primary:?} fails, not all of its calls fit",
                    each.join(", ")
                ),
            );
        }
    }
}
