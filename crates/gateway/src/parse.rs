//! `lifeline parse`: the gateway's verdict on message files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use lifeline_sip::{check_datagram, sniff, Sniff, Verdict};
use serde::Serialize;

/// One file's verdict; also the `--json` line format.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    file: String,
    ok: bool,
    /// "request" or "response" (`null` when the start line is unreadable).
    kind: Option<&'static str>,
    method: Option<String>,
    code: Option<u16>,
    /// The status the gateway would answer with; `null` if accepted or dropped.
    status: Option<u16>,
    /// "accept", "reply" or "drop".
    action: &'static str,
    error: Option<String>,
}

pub(crate) fn check(path: &Path, data: Vec<u8>) -> Report {
    let sniffed = match sniff(&data) {
        Sniff::Request(m) => (
            Some("request"),
            Some(String::from_utf8_lossy(m).into_owned()),
        ),
        Sniff::Response => (Some("response"), None),
        Sniff::Unknown => (None, None),
    };
    let (msg, verdict) = check_datagram(Bytes::from(data));
    let (kind, method) = match &msg {
        Some(m) if m.is_request() => (
            Some("request"),
            m.method_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        ),
        Some(_) => (Some("response"), None),
        None => sniffed,
    };
    let code = msg.as_ref().and_then(|m| m.status());
    let (action, error) = match verdict {
        Verdict::Accept => ("accept", None),
        Verdict::Reply(e) => ("reply", Some(e)),
        Verdict::Drop(e) => ("drop", Some(e)),
    };
    Report {
        file: path.display().to_string(),
        ok: verdict == Verdict::Accept,
        kind,
        method,
        code,
        status: verdict.status(),
        action,
        error: error.map(|e| e.to_string()),
    }
}

pub(crate) fn run(files: &[PathBuf], json: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut all_ok = true;
    for path in files {
        let report = match std::fs::read(path) {
            Ok(data) => check(path, data),
            Err(e) => {
                eprintln!("lifeline parse: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        all_ok &= report.ok;
        let line = if json {
            serde_json::to_string(&report).unwrap_or_default()
        } else {
            let verdict = match (report.action, report.status) {
                ("reply", Some(s)) => format!("reply {s}"),
                (a, _) => a.to_string(),
            };
            let what = match (report.kind, &report.method, report.code) {
                (_, _, Some(c)) => format!("response {c}"),
                (_, Some(m), None) => format!("request {m}"),
                (Some(k), None, None) => k.to_string(),
                (None, _, None) => "unreadable".to_string(),
            };
            let why = report
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!("{}\t{verdict}\t{what}{why}", report.file)
        };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::from(2);
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
