//! `lifeline check-config` end to end: the shipped example and the documented
//! one pass, errors come out one per line with file, line, column and key,
//! and the exit codes are 0 (usable), 1 (errors) and 2 (usage).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifeline"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Write `text` to a file of this name in the test scratch directory.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(path: &Path) -> Output {
    bin().arg("check-config").arg(path).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The fenced block after `heading` in a Markdown file.
fn yaml_block(markdown: &str, heading: &str) -> String {
    let rest = &markdown[markdown.find(heading).expect("heading")..];
    let start = rest.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let len = rest[start..].find("```").expect("block end");
    rest[start..start + len].to_string()
}

#[test]
fn the_deployed_example_passes() {
    let path = repo().join("deploy/lifeline.yaml");
    let o = check(&path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}: ok (2 trunks, 2 routes)\n", path.display())
    );
    assert_eq!(stderr(&o), "");
}

#[test]
fn the_documented_example_passes() {
    let doc = std::fs::read_to_string(repo().join("docs/CONFIG.md")).unwrap();
    let path = scratch("documented.yaml", &yaml_block(&doc, "## Example"));
    let o = check(&path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}: ok (2 trunks, 2 routes)\n", path.display())
    );
}

/// docs/CONFIG.md's example with the YAML block of section `section`
/// (which must start with `starts`) appended passes `check-config` with no
/// warning; its text.
fn documented_section_passes(section: &str, starts: &str, file: &str) -> String {
    let doc = std::fs::read_to_string(repo().join("docs/CONFIG.md")).unwrap();
    let block = yaml_block(&doc, section);
    assert!(block.starts_with(starts), "{block}");
    let text = format!("{}{block}", yaml_block(&doc, "## Example"));
    let path = scratch(file, &text);
    let o = check(&path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}: ok (2 trunks, 2 routes)\n", path.display())
    );
    assert_eq!(stderr(&o), "");
    text
}

#[test]
fn the_documented_access_example_passes() {
    documented_section_passes(
        "### `access`",
        "access:\n  callers: [",
        "documented-access.yaml",
    );
}

#[test]
fn the_documented_capture_example_passes() {
    let text = documented_section_passes(
        "### `capture`",
        "capture:\n  hep: ",
        "documented-capture.yaml",
    );
    // And a mistake in it is refused with its place.
    let bad = text.replace("calls: failed", "calls: failing");
    let path = scratch("documented-capture-bad.yaml", &bad);
    let o = check(&path);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(": capture.calls: \"failing\" is not all, emergency or failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_deprecated_trusted_resource_priority_still_loads_with_a_warning() {
    let path = scratch(
        "deprecated.yaml",
        "\
listen: [udp: 127.0.0.1:5060]
emergency: { trusted_resource_priority: [192.0.2.5] }
trunks: [{ name: primary, address: 192.0.2.10:5060 }]
routes: [{ name: all, match: any, trunks: [primary] }]
",
    );
    let o = check(&path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}: ok (1 trunk, 1 route; 1 warning)\n", path.display())
    );
    assert_eq!(
        stderr(&o),
        format!(
            "{}:2:41: warning: emergency.trusted_resource_priority: deprecated: write these \
             addresses in access.trusted, to which they are added (their P-Asserted-Identity \
             and Resource-Priority are kept, and esnet.* from them makes an emergency call)\n",
            path.display()
        )
    );
}

#[test]
fn the_design_example_lacks_only_advertise() {
    let doc = std::fs::read_to_string(repo().join("docs/CONFIG.md")).unwrap();
    let example = yaml_block(&doc, "## Example");
    // The design document's example is the documented one without this line.
    let design = example.replace("advertise: 192.0.2.1:5060\n", "");
    assert_ne!(design, example);
    let path = scratch("design.yaml", &design);
    let o = check(&path);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "{}:2:10: advertise: not set, and the first listen address 0.0.0.0:5060 is a \
             wildcard: set advertise to the address trunks and callers send to, e.g. \
             `advertise: 192.0.2.1:5060`\n",
            path.display()
        )
    );
}

#[test]
fn every_error_one_per_line_with_its_place() {
    let path = scratch(
        "lifeline.yaml",
        "\
listen:
  - udp: 127.0.0.1:5060
trunks:
  - name: primary
    address: 192.0.2.10:5060
  - name: backup
    address: backup.example:50x60
routes:
  - name: emergency
    match: emergency
    trunks: [primary, bakup]
    failover_after: 200
",
    );
    let o = check(&path);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    let f = path.display();
    assert_eq!(
        stderr(&o),
        format!(
            "{f}:7:14: trunks[1].address: \"backup.example:50x60\" is not host:port\n\
             {f}:11:23: routes[0].trunks[1]: unknown trunk \"bakup\" (trunks: primary, backup)\n\
             {f}:12:21: routes[0].failover_after: 200 has no unit: write 200ms, 200s, 200m or 200h\n"
        )
    );
}

#[test]
fn unknown_keys_are_refused_with_their_place() {
    let path = scratch(
        "typo.yaml",
        "\
listen:
  - udp: 127.0.0.1:5060
trunks:
  - name: primary
    address: 192.0.2.10:5060
    probe: { interval: 250ms, down_afer: 2 }
routes:
  - { name: all, match: any, trunks: [primary] }
",
    );
    let o = check(&path);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "{}:6:31: trunks[0].probe.down_afer: unknown field `down_afer`, expected one of \
             interval, timeout, down_after, up_after, alive, enabled, flap_window, flap_hold, \
             flap_max_hold, live_hold, canary, canary_one_in\n",
            path.display()
        )
    );
}

/// The snippets in CONFIG.md's sections on capacity, hedging and load
/// sharing, each completed into a whole file, pass.
#[test]
fn the_documented_snippets_pass() {
    let doc = std::fs::read_to_string(repo().join("docs/CONFIG.md")).unwrap();
    let listen = "listen: [udp: 127.0.0.1:5060]\n";
    let two = "trunks:\n  - { name: primary, address: 192.0.2.10:5060 }\n  - { name: backup, address: 198.51.100.20:5060 }\n";
    let cases = [
        (
            "capacity",
            format!(
                "{listen}{}routes: [{{ name: all, match: any, trunks: [primary, backup] }}]\n",
                yaml_block(&doc, "#### Capacity")
            ),
            "2 trunks, 1 route",
        ),
        (
            "hedging",
            format!("{listen}{two}{}", yaml_block(&doc, "#### Hedging")),
            "2 trunks, 1 route",
        ),
        (
            "sharing",
            format!(
                "{listen}trunks:\n  - {{ name: primary-a, address: 192.0.2.10:5060 }}\n  \
                 - {{ name: primary-b, address: 192.0.2.11:5060 }}\n  \
                 - {{ name: backup, address: 198.51.100.20:5060 }}\n{}",
                yaml_block(&doc, "#### Load sharing")
            ),
            "3 trunks, 1 route",
        ),
    ];
    for (name, text, counts) in cases {
        let path = scratch(&format!("{name}.yaml"), &text);
        let o = check(&path);
        assert_eq!(o.status.code(), Some(0), "{name}: {}\n{text}", stderr(&o));
        assert_eq!(stdout(&o), format!("{}: ok ({counts})\n", path.display()));
        assert_eq!(stderr(&o), "", "{name}");
    }
}

/// A file that is valid but probably wrong passes, with a warning on stderr
/// in the errors' format.
#[test]
fn warnings_do_not_fail_the_check() {
    let path = scratch(
        "small-backup.yaml",
        "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - { name: primary, address: 192.0.2.10:5060, max_calls: 200 }
  - { name: backup, address: 198.51.100.20:5060, max_calls: 50 }
routes:
  - name: emergency
    match: emergency
    trunks: [primary, backup]
  - name: default
    match: any
    trunks: [{ name: backup, priority: 1 }, { name: primary, priority: 2 }]
",
    );
    let o = check(&path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}: ok (2 trunks, 2 routes; 1 warning)\n", path.display())
    );
    assert_eq!(
        stderr(&o),
        format!(
            "{}:8:13: warning: routes[0].trunks: backup capacity is below the primary's: \
             primary \"primary\" takes up to 200 calls, its backups 50 in all (backup 50); if \
             \"primary\" fails, not all of its calls fit\n",
            path.display()
        )
    );
}

#[test]
fn host_names_resolve() {
    let path = scratch(
        "localhost.yaml",
        "\
listen: [udp: 127.0.0.1:5060]
trunks: [{ name: local, address: localhost:5070 }]
routes: [{ name: all, match: any, trunks: [local] }]
",
    );
    let o = check(&path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{}: ok (1 trunk, 1 route)\n", path.display())
    );
}

#[test]
fn exit_codes() {
    // A file that cannot be read: 1, and why.
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-config.yaml");
    let o = check(&missing);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );
    // Not YAML at all: 1.
    let o = check(&scratch("text.yaml", "just some text\n"));
    assert_eq!(o.status.code(), Some(1));
    // Usage errors: 2, as clap does.
    let o = bin().arg("check-config").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("<FILE>"), "{}", stderr(&o));
    let o = bin()
        .args(["check-config", "a.yaml", "b.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = bin()
        .args(["check-config", "--frobnicate", "a.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // Help is not an error.
    let o = bin().args(["check-config", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("check-config"), "{}", stdout(&o));
}
