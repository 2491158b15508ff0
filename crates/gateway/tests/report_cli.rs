//! `lifeline report` over journals written by lifeline-journal.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use lifeline_journal::reader::list_segments;
use lifeline_journal::{
    testing, CallRecord, Caller, JournalOptions, JournalRecord, JournalWriter, TrunkChange,
    TrunkRecord, TrunkState, WallTime,
};

/// A scratch directory removed on drop (no tempfile dependency here).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("lifeline-report-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const T0: i64 = 1_687_690_800_000_000; // 2023-06-25T11:00:00Z

/// Call `n` of `gateway`: an emergency call that every trunk failed
/// (`primary:no-response backup:503`), from a caller of its own whose
/// display name needs quoting in CSV.
fn failed_call(n: i64, gateway: &str) -> JournalRecord {
    let call = testing::failed_call(
        WallTime(T0 + n * 1_000_000),
        format!("{gateway}-call-{n}"),
        503,
    );
    JournalRecord::Call(Box::new(CallRecord {
        caller: Caller {
            from_uri: format!("sip:+44700900{n:04}@origin.example"),
            from_display: Some("Caller, \"quoted\"".into()),
            asserted_identities: vec![format!("<tel:+44700900{n:04}>")],
        },
        ..call
    }))
}

/// A journal of the gateway `gw-{gateway}` (its name in the segments'
/// headers; `gateway` empty: an unnamed one): trunk `primary` down at `T0`,
/// then failed emergency calls `calls`.
fn write_journal(dir: &Path, gateway: &str, calls: std::ops::Range<i64>) {
    let opts = JournalOptions {
        node_name: if gateway.is_empty() {
            String::new()
        } else {
            format!("gw-{gateway}")
        },
        ..JournalOptions::default()
    };
    let w = JournalWriter::open(dir, opts).unwrap();
    let h = w.handle();
    h.record(JournalRecord::Trunk(TrunkRecord {
        at: WallTime(T0),
        trunk: "primary".into(),
        change: TrunkChange::State {
            from: TrunkState::Up,
            to: TrunkState::Down,
            reason: "live: transport error (port unreachable)".into(),
        },
    }));
    for n in calls {
        h.record(failed_call(n, gateway));
    }
    w.shutdown();
}

fn report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn csv_callback_list_newest_first_from_several_gateways() {
    let tmp = TempDir::new("csv");
    let (a, b) = (tmp.path().join("gw-a"), tmp.path().join("gw-b"));
    write_journal(&a, "a", 1..4);
    write_journal(&b, "b", 4..6);
    let out = report(&[
        "--journal",
        a.to_str().unwrap(),
        "--journal",
        b.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    let csv = s(&out.stdout);
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 6, "{csv}");
    assert!(rows[1].starts_with("2023-06-25T11:00:05.000Z,<tel:+447009000005>,"));
    assert!(rows[5].contains("a-call-1"));
    assert!(
        rows[1].contains("\"Caller, \"\"quoted\"\"\""),
        "RFC 4180 quoting: {}",
        rows[1]
    );
    assert!(rows[1].contains("primary:no-response backup:503"));
    assert!(rows[0].ends_with(",notes,gateway"), "{}", rows[0]);
    assert!(rows[1].ends_with(",gw-b"), "{}", rows[1]);
    assert!(rows[5].ends_with(",gw-a"), "{}", rows[5]);
}

/// Two gateways with a trunk of the same name: every row names its gateway
/// (from the segments, not the directories), each gateway's `primary` is a
/// trunk of its own, and the callback list merges both by time.
#[test]
fn fleet_report_tags_every_row_with_its_gateway() {
    let tmp = TempDir::new("fleet");
    let (a, b, c) = (
        tmp.path().join("shipped-1"),
        tmp.path().join("shipped-2"),
        tmp.path().join("gw-old"),
    );
    write_journal(&a, "east", 1..3);
    write_journal(&b, "west", 3..4);
    // Unnamed segments: the directory names the gateway.
    write_journal(&c, "", 4..5);
    let dirs = [&a, &b, &c].map(|d| d.to_str().unwrap().to_string());
    let mut args = Vec::new();
    for d in &dirs {
        args.extend(["--journal", d.as_str()]);
    }
    let out = report(&[args.as_slice(), &["--format", "json"]].concat());
    assert!(out.status.success(), "{}", s(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["gateways"],
        serde_json::json!(["gw-east", "gw-old", "gw-west"])
    );
    let outages: Vec<(&str, &str)> = json["outages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["gateway"].as_str().unwrap(), o["trunk"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outages.len(),
        3,
        "one outage per gateway's primary: {outages:?}"
    );
    for g in ["gw-east", "gw-west", "gw-old"] {
        assert!(outages.contains(&(g, "primary")), "{outages:?}");
    }
    let callbacks: Vec<(&str, &str)> = json["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["gateway"].as_str().unwrap(),
                c["call_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        callbacks,
        [
            ("gw-old", "-call-4"),
            ("gw-west", "west-call-3"),
            ("gw-east", "east-call-2"),
            ("gw-east", "east-call-1"),
        ],
        "merged, newest first"
    );
    let trunks: Vec<(&str, &str, u64)> = json["totals"]["trunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["gateway"].as_str().unwrap(),
                t["trunk"].as_str().unwrap(),
                t["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(trunks.contains(&("gw-east", "primary", 2)), "{trunks:?}");
    assert!(trunks.contains(&("gw-west", "primary", 1)), "{trunks:?}");

    let out = report(&args);
    assert!(out.status.success());
    let table = s(&out.stdout);
    assert!(
        table.contains("gateways: gw-east, gw-old, gw-west"),
        "{table}"
    );
    assert!(table.contains("\nGATEWAY  TIME"), "{table}");
    assert!(table.contains("\nGATEWAY  TRUNK"), "{table}");
    let down_lines = table
        .lines()
        .filter(|l| l.contains("up -> down"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(down_lines.len(), 3, "{table}");

    // One gateway: no gateway column.
    let out = report(&["--journal", dirs[0].as_str()]);
    let table = s(&out.stdout);
    assert!(!table.contains("GATEWAY"), "{table}");
}

#[test]
fn window_and_formats() {
    let tmp = TempDir::new("window");
    write_journal(tmp.path(), "a", 1..10);
    let dir = tmp.path().to_str().unwrap();
    let out = report(&[
        "--journal",
        dir,
        "--since",
        "2023-06-25T12:00:03+01:00",
        "--until",
        "2023-06-25T11:00:06Z",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = json["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-call-5", "a-call-4", "a-call-3"]);
    assert_eq!(json["outages"][0]["trunk"], "primary");
    assert_eq!(json["outages"][0]["up"], serde_json::Value::Null);

    let out = report(&["--journal", dir]);
    assert!(out.status.success());
    let table = s(&out.stdout);
    assert!(
        table.contains("CALLBACK LIST: 9 emergency call(s)"),
        "{table}"
    );
    assert!(table.contains("TIMELINE"));
    assert!(table.contains("still down"));
}

#[test]
fn torn_tail_is_a_note_not_a_failure() {
    let tmp = TempDir::new("torn");
    write_journal(tmp.path(), "a", 1..3);
    let seg = list_segments(tmp.path()).unwrap().pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap(); // half a record
    let out = report(&["--journal", tmp.path().to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success());
    assert_eq!(
        s(&out.stdout).matches("\r\n").count(),
        3,
        "header + 2 calls"
    );
    assert!(
        s(&out.stderr).contains("torn final record"),
        "{}",
        s(&out.stderr)
    );
}

#[test]
fn bad_arguments_exit_2() {
    let tmp = TempDir::new("badargs");
    let dir = tmp.path().to_str().unwrap();
    let out = report(&["--journal", dir, "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(s(&out.stderr).contains("--since"));
    let out = report(&["--journal", "/nonexistent/journal"]);
    assert_eq!(out.status.code(), Some(2));
    let out = report(&[]);
    assert_eq!(out.status.code(), Some(2), "--journal is required");
}
