//! Every metric the Grafana dashboard (`deploy/grafana/lifeline.json`) and
//! the alert rules (`deploy/alerts.yml`) query is one a running gateway
//! exports. The names are taken from the PromQL expressions themselves (a
//! panel's targets, a variable's query, a rule's `expr`) and looked up in
//! the `# TYPE` lines of the real daemon's `/metrics`, which name every
//! family that has a series. Most series exist from the start, at zero;
//! those that appear only after an event (`lifeline_probe_rtt_seconds`, an
//! answered probe) are made to appear first: both trunks answer probes and
//! a call connects before the page is read.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lifeline_kit::{Caller, Mode, Uas};
use regex::Regex;
use serde_json::Value;
use support::Daemon;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: the targets' `expr` (panels
/// and rows, at any depth) and the query variables' `query` and
/// `definition`.
fn dashboard_exprs(json: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(e)) = map.get("expr") {
                    out.push(e.clone());
                }
                for (k, child) in map {
                    if k != "templating" {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(json, &mut out);
    let vars = json["templating"]["list"].as_array().cloned();
    for var in vars.unwrap_or_default() {
        if var["type"] != "query" {
            continue;
        }
        for q in [&var["definition"], &var["query"], &var["query"]["query"]] {
            if let Some(q) = q.as_str() {
                out.push(q.to_string());
            }
        }
    }
    out
}

/// Every rule's `expr` in a Prometheus rules file.
fn rule_exprs(yaml: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for group in yaml["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let expr = rule["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("no expr: {rule}"));
            out.push(expr.to_string());
        }
    }
    out
}

/// PromQL with its string literals (label values, `"..."`, `'...'`,
/// `` `...` ``) and comments blanked, so a label value that happens to
/// look like a metric name is not taken for one.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                out.push(' ');
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' && c != '`' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The `lifeline_*` metric names an expression uses.
fn names_in(expr: &str) -> BTreeSet<String> {
    let re = Regex::new(r"(^|[^A-Za-z0-9_:])(lifeline_[A-Za-z0-9_:]*)").unwrap();
    re.captures_iter(&without_strings(expr))
        .map(|c| c[2].to_string())
        .collect()
}

/// The families a `/metrics` page declares: name -> type, from its
/// `# TYPE` lines.
fn families(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// Whether `name` is a series of one of `families`: a family's own name,
/// or a histogram's `_bucket`, `_sum` or `_count`.
fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|t| t == "histogram")
    })
}

/// The names of `used` (name -> where) that `families` lacks.
fn missing<'a>(
    used: &'a BTreeMap<String, BTreeSet<String>>,
    families: &BTreeMap<String, String>,
) -> Vec<(&'a String, &'a BTreeSet<String>)> {
    used.iter()
        .filter(|(name, _)| !exported(name, families))
        .collect()
}

fn config(
    sip: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    dir: &Path,
    primary: std::net::SocketAddr,
    backup: std::net::SocketAddr,
) -> String {
    format!(
        "listen:\n  - udp: {sip}\nadmin: {admin}\njournal: {}\ntrunks:\n  - name: primary\n    address: {primary}\n  - name: backup\n    address: {backup}\nroutes:\n  - name: emergency\n    match: emergency\n    trunks: [primary, backup]\n  - name: default\n    match: any\n    trunks: [primary, backup]\n",
        dir.join("journal").display()
    )
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    // What the two files query, and where.
    let dashboard_file = deploy("grafana/lifeline.json");
    let dashboard: Value = serde_json::from_str(&read(&dashboard_file)).unwrap();
    let alerts_file = deploy("alerts.yml");
    let alerts_text = read(&alerts_file);
    let alerts: Value = serde_saphyr::from_str(&alerts_text).unwrap();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let sources = [
        ("deploy/grafana/lifeline.json", dashboard_exprs(&dashboard)),
        ("deploy/alerts.yml", rule_exprs(&alerts)),
    ];
    for (file, exprs) in &sources {
        assert!(!exprs.is_empty(), "{file}: no PromQL expression found");
        for expr in exprs {
            let names = names_in(expr);
            assert!(!names.is_empty(), "{file}: no lifeline_ metric in {expr}");
            for name in names {
                used.entry(name).or_default().insert((*file).to_string());
            }
        }
    }
    // Every alert's expression was read (none skipped by the walk).
    assert_eq!(
        sources[1].1.len(),
        alerts_text.matches("- alert: ").count(),
        "rules read from deploy/alerts.yml"
    );

    // A running gateway whose trunks answered probes, after a call.
    let primary = Uas::start(Mode::Answer);
    let backup = Uas::start(Mode::Answer);
    let (p, b) = (primary.addr(), backup.addr());
    let d = Daemon::start(
        "metric-names",
        |sip, admin, dir| config(sip, admin, dir, p, b),
        |d| d.get("/status", None).status == 200,
    );
    d.wait_for(Daemon::ready_with_trunks);
    let mut caller = Caller::new(d.sip, "names").with_identities();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    d.wait_for(|d| {
        d.metric("lifeline_calls_total{route=\"emergency\",outcome=\"connected\"}") == 1.0
    });
    let page = d.get("/metrics", None).body;
    let families = families(&page);

    let absent = missing(&used, &families);
    assert!(
        absent.is_empty(),
        "queried but not exported by a running gateway (name: files):\n{}\n\nexported families:\n{}",
        absent
            .iter()
            .map(|(n, files)| format!("  {n}: {}", files.iter().cloned().collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join("\n"),
        families.keys().cloned().collect::<Vec<_>>().join("\n")
    );

    // The check itself catches what it is for, against the same page: a
    // misspelled name, and a histogram suffix on a family that is no
    // histogram.
    for (expr, wrong) in [
        (
            "rate(lifeline_core_bussy_seconds_total[1m]) > 0.7",
            "lifeline_core_bussy_seconds_total",
        ),
        (
            r#"histogram_quantile(0.99, rate(lifeline_trunk_state_bucket{state="lifeline_setup_seconds"}[5m]))"#,
            "lifeline_trunk_state_bucket",
        ),
    ] {
        let names = names_in(expr);
        assert_eq!(names, BTreeSet::from([wrong.to_string()]), "{expr}");
        let used = BTreeMap::from([(wrong.to_string(), BTreeSet::new())]);
        assert_eq!(missing(&used, &families).len(), 1, "{wrong} passed");
    }
    assert!(exported("lifeline_setup_seconds_bucket", &families));
}
