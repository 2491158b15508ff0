//! The admin API of a running `lifeline run`, over real sockets: the bearer
//! token (401 without it or with a wrong one, open paths open), the size,
//! time and connection limits, mutations logged with the peer's address,
//! the token changed by a reload, and a public address without a token
//! refused by the configuration check.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{free_port, fresh_dir, read_answer, Daemon};

const TOKEN: &str = "9f2c4e7a1b3d5f60718293a4b5c6d7e8";

/// The token file, in the daemon's directory.
const TOKEN_FILE: &str = "admin.token";

fn write_token(path: &Path, token: &str) {
    std::fs::write(path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A gateway whose admin API needs [`TOKEN`] from its token file
/// (`admin_extra` adds keys under `admin:`), once the API answers.
fn start(name: &str, admin_extra: &str) -> Daemon {
    Daemon::start(
        &format!("admin-{name}"),
        |sip, admin, dir| {
            let token_file = dir.join(TOKEN_FILE);
            write_token(&token_file, TOKEN);
            let (t1, t2) = (free_port(), free_port());
            format!(
                "listen:\n  - udp: {sip}\nadmin:\n  listen: {admin}\n  token_file: {}\n{admin_extra}trunks:\n  - name: primary\n    address: 127.0.0.1:{t1}\n    probe: {{ enabled: false }}\n  - name: backup\n    address: 127.0.0.1:{t2}\n    probe: {{ enabled: false }}\nroutes:\n  - name: default\n    match: any\n    trunks: [primary, backup]\n",
                token_file.display()
            )
        },
        |d| d.get("/healthz", None).status == 200,
    )
}

/// Whether `trunk` is drained, by `/status`.
fn drained(d: &Daemon, trunk: &str) -> bool {
    let a = d.get("/status", Some(TOKEN));
    assert_eq!(a.status, 200, "{a:?}");
    let s: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    s["trunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == trunk)
        .unwrap()["drained"]
        .as_bool()
        .unwrap()
}

#[test]
fn the_token_guards_everything_but_the_open_paths() {
    let d = start("token", "");
    // Open by default: what monitoring asks.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let a = d.get(path, None);
        assert_ne!(a.status, 401, "{path}: {a:?}");
    }
    // Everything else needs the token.
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/calls/failed"),
        ("POST", "/trunks/primary/drain"),
        ("POST", "/trunks/primary/undrain"),
        ("GET", "/no/such/path"),
    ] {
        let a = d.call(method, path, None);
        assert_eq!(a.status, 401, "{method} {path}: {a:?}");
        assert_eq!(
            a.header("www-authenticate"),
            Some("Bearer realm=\"lifeline\"")
        );
        for wrong in [
            "9f2c4e7a1b3d5f60718293a4b5c6d7e9",
            "9f2c4e7a1b3d5f60718293a4b5c6d7e",
            "",
        ] {
            let a = d.call(method, path, Some(wrong));
            assert_eq!(a.status, 401, "{method} {path} with {wrong:?}: {a:?}");
        }
        let a = d
            .request(
                method,
                path,
                &format!("Authorization: Basic {TOKEN}\r\nContent-Length: 0\r\n"),
            )
            .0;
        assert_eq!(a.status, 401, "{method} {path}, Basic: {a:?}");
    }
    let wrong = d.get("/status", Some("not-the-token"));
    assert_eq!(
        wrong.header("www-authenticate"),
        Some("Bearer realm=\"lifeline\", error=\"invalid_token\"")
    );
    // The refused drain changed nothing.
    assert!(!drained(&d, "primary"));
    // With the token.
    assert_eq!(d.get("/status", Some(TOKEN)).status, 200);
    assert_eq!(d.get("/calls/failed", Some(TOKEN)).status, 200);
    assert_eq!(d.get("/no/such/path", Some(TOKEN)).status, 404);
    assert_eq!(
        d.call("POST", "/trunks/primary/drain", Some(TOKEN)).status,
        200
    );
    assert!(drained(&d, "primary"));
    assert_eq!(
        d.call("POST", "/trunks/primary/undrain", Some(TOKEN))
            .status,
        200
    );
    assert!(!drained(&d, "primary"));
}

#[test]
fn open_paths_as_configured() {
    let d = start("open-paths", "  open_paths: [/healthz, /status]\n");
    assert_eq!(d.get("/status", None).status, 200);
    assert_eq!(d.get("/metrics", None).status, 401);
    assert_eq!(d.get("/readyz", None).status, 401);
    assert_ne!(d.get("/readyz", Some(TOKEN)).status, 401);
}

#[test]
fn mutations_are_logged_with_the_peer() {
    let d = start("log", "");
    let (a, from) = d.request(
        "POST",
        "/trunks/backup/drain",
        &format!("Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n"),
    );
    assert_eq!(a.status, 200);
    let (a, refused_from) = d.request("POST", "/trunks/primary/drain", "Content-Length: 0\r\n");
    assert_eq!(a.status, 401);
    d.wait_for(|d| {
        let log = d.log();
        log.contains(&format!(
            "admin API: POST /trunks/backup/drain from {from}: 200"
        )) && log.contains(&format!(
            "admin API: POST /trunks/primary/drain from {refused_from}: 401"
        ))
    });
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("/trunks/backup/drain from"))
        .unwrap();
    assert!(line.contains("WARN"), "{line}");
    assert!(!log.contains(TOKEN), "the token is never logged");
    // Reads are not mutations.
    assert!(!log.contains("admin API: GET"), "{log}");
}

#[test]
fn oversized_requests_are_refused() {
    let d = start("sizes", "");
    // Headers over 8 KiB: 431.
    let big = format!("X-Filler: {}\r\n", "a".repeat(9 * 1024));
    let a = d.request("GET", "/healthz", &big).0;
    assert_eq!(a.status, 431, "{a:?}");
    // Too many header fields: 431.
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(d.request("GET", "/healthz", &many).0.status, 431);
    // A body over 1 KiB: 413 (with the token, so the limit is what refuses).
    let body = "x".repeat(2048);
    let a = d
        .request(
            "POST",
            "/trunks/primary/drain",
            &format!(
                "Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .0;
    assert_eq!(a.status, 413, "{a:?}");
    assert!(!drained(&d, "primary"));
    // The server still serves.
    assert_eq!(d.get("/healthz", None).status, 200);
}

#[test]
fn slow_and_idle_connections_are_closed() {
    let d = start("slow", "");
    // Half a request, never finished: the server closes the connection
    // (after its header timeout; the test waits for the close, however long).
    let mut s = d.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: lifeline\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = loop {
        match s.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("the connection stayed open: {e}"),
        }
    };
    // Closed: nothing, or hyper's 408 before the close.
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[test]
fn connections_beyond_the_limit_wait_for_a_free_one() {
    let d = start("connections", "");
    // Hold every connection the server serves at once (32), idle.
    let mut held: Vec<TcpStream> = (0..32).map(|_| d.connect()).collect();
    // One more, with a request: it is not served while all are held.
    let mut extra = d.connect();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: lifeline\r\nConnection: close\r\n\r\n")
        .unwrap();
    extra.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 64];
    match extra.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("served beyond the limit: {other:?}"),
    }
    d.wait_for(|d| d.log().contains("admin API: connection limit reached"));
    // A held connection closes: the waiting request is served.
    drop(held.pop());
    extra.set_nonblocking(false).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let a = read_answer(&mut extra);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, "ok\n");
}

#[test]
fn a_reload_changes_the_token() {
    let mut d = start("reload", "");
    assert_eq!(d.get("/status", Some(TOKEN)).status, 200);
    let new = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let token_file = d.dir.join(TOKEN_FILE);
    write_token(&token_file, new);
    d.signal("HUP");
    d.wait_for(|d| d.get("/status", Some(new)).status == 200);
    assert_eq!(d.get("/status", Some(TOKEN)).status, 401);
    // A reload whose token file is now readable by everyone is refused:
    // the token in force stays.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.signal("HUP");
    d.wait_for(|d| d.log().contains("reload refused"));
    assert_eq!(d.get("/status", Some(new)).status, 200);
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn a_public_address_without_a_token_is_a_configuration_error() {
    let dir = fresh_dir("admin-public");
    let config = dir.join("lifeline.yaml");
    std::fs::write(
        &config,
        "listen:\n  - udp: 127.0.0.1:5060\nadmin: 0.0.0.0:9060\ntrunks:\n  - name: a\n    address: 192.0.2.10:5060\nroutes:\n  - name: r\n    match: any\n    trunks: [a]\n",
    )
    .unwrap();
    for args in [&["check-config"][..], &["run", "--config"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .args(args)
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("lifeline.yaml:3:8: admin: 0.0.0.0:9060 is not a loopback address, and there is no admin.token_file"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
