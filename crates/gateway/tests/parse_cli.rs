//! `lifeline parse` end to end: the binary's verdicts, JSON lines and exit codes
//! on the RFC 4475 / RFC 5118 corpus.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifeline"))
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sip/testdata")
}

/// (file, verdict) rows of the corpus manifest.
fn manifest() -> Vec<(String, String)> {
    std::fs::read_to_string(testdata().join("MANIFEST.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[2].to_string())
        })
        .collect()
}

#[test]
fn json_verdicts_for_the_whole_corpus() {
    let rows = manifest();
    let out = bin()
        .arg("parse")
        .arg("--json")
        .args(rows.iter().map(|(f, _)| testdata().join(f)))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "some corpus files are invalid");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for ((file, verdict), v) in rows.iter().zip(&lines) {
        assert!(v["file"].as_str().unwrap().ends_with(file.as_str()));
        for key in ["ok", "kind", "method", "code", "status", "error"] {
            assert!(v.get(key).is_some(), "{file}: no {key}");
        }
        let ok = v["ok"].as_bool().unwrap();
        let status = v["status"].as_u64();
        match (verdict.as_str(), file.as_str()) {
            ("valid" | "valid-but-tricky", _) => assert!(ok, "{file}: {v}"),
            (_, "rfc4475/baddate.dat") => assert!(ok, "liberal accept of an ignorable Date"),
            (_, "rfc4475/badvers.dat") => assert_eq!(status, Some(505)),
            (_, "rfc4475/mismatch02.dat") => assert_eq!(status, Some(501)),
            (_, "rfc4475/bigcode.dat" | "rfc4475/scalarlg.dat") => {
                assert!(!ok);
                assert_eq!(
                    v["status"],
                    serde_json::Value::Null,
                    "responses are dropped"
                );
                assert_eq!(v["kind"], "response");
            }
            _ => assert_eq!(status, Some(400), "{file}: {v}"),
        }
        if !ok {
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{file}: reason given"
            );
        }
    }
    let wsinv = &lines[rows
        .iter()
        .position(|(f, _)| f == "rfc4475/wsinv.dat")
        .unwrap()];
    assert_eq!(wsinv["kind"], "request");
    assert_eq!(wsinv["method"], "INVITE");
}

#[test]
fn exit_codes() {
    let valid = testdata().join("rfc4475/wsinv.dat");
    let out = bin().arg("parse").arg(&valid).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("accept"), "{text}");

    let invalid = testdata().join("rfc4475/badvers.dat");
    let out = bin()
        .arg("parse")
        .arg(&valid)
        .arg(&invalid)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stdout).unwrap().contains("reply 505"));

    assert_eq!(
        bin().arg("parse").output().unwrap().status.code(),
        Some(2),
        "no files"
    );
    assert_eq!(
        bin().arg("frobnicate").output().unwrap().status.code(),
        Some(2)
    );
    let missing = bin()
        .arg("parse")
        .arg("/nonexistent/x.sip")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
