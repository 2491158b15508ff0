//! A [`Report`] as text: aligned tables for people, the callback list as
//! CSV for spreadsheets, everything as JSON.

use std::fmt::Write as _;

use super::{Counts, Report, TimelineEntry};
use crate::aggregate::CallbackEntry;

/// Left-aligned columns, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                s.push_str("  ");
            }
            let _ = write!(s, "{cell:<w$}");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}

/// With journals of several gateways, every table names the gateway in a
/// first column: `rows` get it in front and `header` gets `GATEWAY`.
struct Tagged {
    several: bool,
}

impl Tagged {
    fn header<'a>(&self, h: &[&'a str]) -> Vec<&'a str> {
        let mut out = Vec::with_capacity(h.len() + 1);
        if self.several {
            out.push("GATEWAY");
        }
        out.extend_from_slice(h);
        out
    }

    fn row(&self, gateway: &str, mut row: Vec<String>) -> Vec<String> {
        if self.several {
            row.insert(0, gateway.to_string());
        }
        row
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.1}"))
}

/// The report as human-readable aligned tables.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lifeline incident report: {} records from {} segment(s), window {} .. {}",
        r.records,
        r.segments,
        r.since.as_deref().unwrap_or("start"),
        r.until.as_deref().unwrap_or("end")
    );
    let tag = Tagged {
        several: r.gateways.len() > 1,
    };
    if tag.several {
        let _ = writeln!(out, "gateways: {}", r.gateways.join(", "));
    }
    for i in &r.issues {
        let _ = writeln!(out, "note: {i}");
    }

    out.push_str("\nTIMELINE\n");
    if r.timeline.is_empty() {
        out.push_str("(no trunk changes, failovers, rescues, hedges or full trunks)\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .timeline
            .iter()
            .map(|e| match e {
                TimelineEntry::Trunk {
                    time,
                    gateway,
                    trunk,
                    change,
                    reason,
                    ..
                } => tag.row(
                    gateway,
                    vec![time.clone(), trunk.clone(), change.clone(), reason.clone()],
                ),
                TimelineEntry::Failover {
                    time,
                    until,
                    gateway,
                    from,
                    to,
                    calls,
                    emergency,
                    reasons,
                    ..
                } => tag.row(
                    gateway,
                    vec![
                        time.clone(),
                        from.clone(),
                        format!("failover -> {to}"),
                        format!(
                            "{calls} call(s), {emergency} emergency, until {until}: {}",
                            reasons.join(", ")
                        ),
                    ],
                ),
                TimelineEntry::Calls {
                    time,
                    until,
                    gateway,
                    trunk,
                    event,
                    calls,
                    emergency,
                    ..
                } => tag.row(
                    gateway,
                    vec![
                        time.clone(),
                        trunk.clone(),
                        event.clone(),
                        format!("{calls} call(s), {emergency} emergency, until {until}"),
                    ],
                ),
            })
            .collect();
        table(
            &mut out,
            &tag.header(&["TIME", "TRUNK", "EVENT", "DETAIL"]),
            &rows,
        );
    }

    out.push_str("\nOUTAGES\n");
    if r.outages.is_empty() {
        out.push_str("(none)\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .outages
            .iter()
            .map(|o| {
                tag.row(
                    &o.gateway,
                    vec![
                        o.trunk.clone(),
                        o.first_sign.clone(),
                        o.down.clone(),
                        o.up.clone().unwrap_or_else(|| "still down".into()),
                        format!("{:.3}", o.duration_s),
                        format!("{}/{}", o.calls_touched.emergency, o.calls_touched.other),
                        format!("{}/{}", o.not_connected.emergency, o.not_connected.other),
                        o.failovers.to_string(),
                        o.down_reason.clone(),
                    ],
                )
            })
            .collect();
        table(
            &mut out,
            &tag.header(&[
                "TRUNK",
                "FIRST SIGN",
                "DOWN",
                "UP",
                "SECONDS",
                "TOUCHED EMERG/OTHER",
                "NOT CONNECTED EMERG/OTHER",
                "FAILOVERS",
                "DOWN BECAUSE",
            ]),
            &rows,
        );
    }

    let _ = writeln!(
        out,
        "\nCALLBACK LIST: {} emergency call(s) that did not connect, newest first",
        r.callbacks.len()
    );
    if !r.callbacks.is_empty() {
        let rows: Vec<Vec<String>> = r
            .callbacks
            .iter()
            .map(|c| {
                let mut outcome = c.outcome.clone();
                if let Some(t) = &c.late_answer_via {
                    outcome.push_str(&format!("; late answer via {t}"));
                }
                for n in &c.notes {
                    outcome.push_str(&format!("; {n}"));
                }
                tag.row(
                    &c.gateway,
                    vec![
                        c.time.clone(),
                        c.asserted_identities
                            .first()
                            .cloned()
                            .unwrap_or_else(|| c.from_uri.clone()),
                        caller_text(c),
                        c.dialled.clone(),
                        if c.location.is_empty() {
                            "-".into()
                        } else {
                            c.location.clone()
                        },
                        c.tried_summary(),
                        outcome,
                        c.call_id.clone(),
                    ],
                )
            })
            .collect();
        table(
            &mut out,
            &tag.header(&[
                "TIME",
                "CALL BACK",
                "CALLER",
                "DIALLED",
                "LOCATION",
                "TRUNKS TRIED",
                "OUTCOME",
                "CALL-ID",
            ]),
            &rows,
        );
    }

    let f = &r.refused;
    if f.calls + f.messages == 0 {
        out.push_str("\nREFUSED WITHOUT REACHING A TRUNK\n(none)\n");
    } else {
        let _ = writeln!(
            out,
            "\nREFUSED WITHOUT REACHING A TRUNK: {} call(s), {} other message(s), from {} \
             source(s); counted per source, not recorded one by one",
            f.calls, f.messages, f.sources
        );
    }
    if !f.rows.is_empty() {
        let rows: Vec<Vec<String>> = f
            .rows
            .iter()
            .map(|x| {
                vec![
                    x.source.clone(),
                    x.what.clone(),
                    x.reason.clone(),
                    x.status.map_or("dropped".into(), |s| s.to_string()),
                    x.count.to_string(),
                    x.first.clone(),
                    x.last.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "SOURCE", "WHAT", "REASON", "STATUS", "COUNT", "FIRST", "LAST",
            ],
            &rows,
        );
    }
    if f.rows_left_out > 0 {
        let _ = writeln!(
            out,
            "... and {} more row(s), with {} refusal(s)",
            f.rows_left_out, f.count_left_out
        );
    }

    let t = &r.totals;
    out.push_str("\nTOTALS (emergency/other)\n");
    let pair = |c: Counts| format!("{}/{}", c.emergency, c.other);
    table(
        &mut out,
        &[
            "CALLS",
            "CONNECTED",
            "FAILED",
            "CANCELLED",
            "UNKNOWN",
            "FAILED OVER",
            "RESCUED",
            "HEDGED",
            "SKIPPED FULL TRUNK",
            "SETUP MEDIAN MS",
            "SETUP WORST MS",
        ],
        &[vec![
            pair(t.calls),
            pair(t.connected),
            pair(t.failed),
            pair(t.cancelled),
            pair(t.unfinished),
            pair(t.failed_over),
            pair(t.rescued),
            pair(t.hedged),
            pair(t.skipped_full),
            ms(t.setup_median_ms),
            ms(t.setup_max_ms),
        ]],
    );
    if !t.trunks.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = t
            .trunks
            .iter()
            .map(|x| {
                tag.row(
                    &x.gateway,
                    vec![
                        x.trunk.clone(),
                        x.attempts.to_string(),
                        x.connected.to_string(),
                        x.failed_attempts.to_string(),
                        x.rescued_off.to_string(),
                        x.skipped_full.to_string(),
                        ms(x.setup_median_ms),
                        ms(x.setup_max_ms),
                    ],
                )
            })
            .collect();
        table(
            &mut out,
            &tag.header(&[
                "TRUNK",
                "ATTEMPTS",
                "CONNECTED",
                "FAILED ATTEMPTS",
                "RESCUED OFF",
                "SKIPPED FULL",
                "SETUP MEDIAN MS",
                "SETUP WORST MS",
            ]),
            &rows,
        );
    }
    out
}

fn caller_text(c: &CallbackEntry) -> String {
    let mut ids: Vec<String> = Vec::new();
    if let Some(d) = &c.from_display {
        ids.push(d.clone());
    }
    ids.push(c.from_uri.clone());
    ids.extend(c.asserted_identities.iter().cloned());
    ids.join(" | ")
}

/// The callback list as CSV (RFC 4180, with a header line; the gateway
/// that handled each call is the last column). Cells an
/// untrusted caller controls that a spreadsheet would run as a formula
/// (`=`, `@`, or `+`/`-` not followed by a phone number) get a leading `'`.
pub fn render_csv(r: &Report) -> String {
    let mut out = String::new();
    let header = [
        "time",
        "call_back",
        "from_display",
        "from_uri",
        "asserted_identities",
        "dialled",
        "emergency_rule",
        "location",
        "trunks_tried",
        "outcome",
        "status",
        "late_answer_via",
        "call_id",
        "source",
        "notes",
        "gateway",
    ];
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for c in &r.callbacks {
        let cells = [
            c.time.clone(),
            c.asserted_identities
                .first()
                .cloned()
                .unwrap_or_else(|| c.from_uri.clone()),
            c.from_display.clone().unwrap_or_default(),
            c.from_uri.clone(),
            c.asserted_identities.join(" | "),
            c.dialled.clone(),
            c.emergency_rule.clone(),
            c.location.clone(),
            c.tried_summary(),
            c.outcome.clone(),
            c.status.map(|s| s.to_string()).unwrap_or_default(),
            c.late_answer_via.clone().unwrap_or_default(),
            c.call_id.clone(),
            c.source.clone(),
            c.notes.join("; "),
            c.gateway.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|s| csv_cell(s)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(s: &str) -> String {
    let phone_like = |rest: &str| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|ch| ch.is_ascii_digit() || " -.()+".contains(ch))
    };
    let mut v = String::with_capacity(s.len() + 2);
    match s.chars().next() {
        Some('=' | '@' | '\t' | '\r') => v.push('\''),
        Some('+' | '-') if !phone_like(s) => v.push('\''),
        _ => {}
    }
    v.push_str(s);
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The whole report as pretty JSON.
pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("+44 7700 900123"), "+44 7700 900123");
        assert_eq!(csv_cell("+cmd"), "'+cmd");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
    }
}
