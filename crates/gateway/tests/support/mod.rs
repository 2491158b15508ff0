//! The harness of the end-to-end tests: the real `lifeline run` with a
//! configuration file in a directory of its own, on loopback ports the OS
//! gave a moment before, one daemon at a time; its admin API over HTTP/1.1
//! (with a bearer token or without), its log, signals, its exit. Nothing
//! here asserts a duration: waits are bounded polls.
//!
//! Each test binary that says `mod support;` uses a part of this, so the
//! rest would warn as dead code in it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A UDP and TCP port of 127.0.0.1 that were both free a moment ago.
pub(crate) fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An empty directory for test `name` of this process:
/// `lifeline-{name}-{pid}` in the temporary directory.
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lifeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The value of the first line of a Prometheus text `text` that starts
/// with `series` (a whole series, or the start of one); 0 if none.
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// An HTTP answer (status 0: no connection).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Read an answer to the end (the request asked to close).
pub(crate) fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The daemons run one at a time: each test's trunks, callers and gateway
/// already compete for two cores, and the assertions wait on real time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running `lifeline run`, killed and its directory removed on drop.
pub(crate) struct Daemon {
    _turn: MutexGuard<'static, ()>,
    pub(crate) child: Child,
    /// The SIP address its configuration was given.
    pub(crate) sip: SocketAddr,
    /// The admin API's address.
    pub(crate) admin: SocketAddr,
    /// Its directory: the configuration, `stderr.log`, what the test adds.
    pub(crate) dir: PathBuf,
    /// The configuration file.
    pub(crate) config: PathBuf,
}

impl Daemon {
    /// `lifeline run` (with `RUST_LOG=lifeline=info`, stderr to
    /// `stderr.log`) in a [`fresh_dir`] for `name`, with the configuration
    /// `config` writes for a SIP and an admin address on free ports and
    /// the directory; returned once `ready` holds.
    pub(crate) fn start(
        name: &str,
        config: impl FnOnce(SocketAddr, SocketAddr, &Path) -> String,
        ready: impl Fn(&Daemon) -> bool,
    ) -> Daemon {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = fresh_dir(name);
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let file = dir.join("lifeline.yaml");
        std::fs::write(&file, config(sip, admin, &dir)).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", "lifeline=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon {
            _turn: turn,
            child,
            sip,
            admin,
            dir,
            config: file,
        };
        d.wait_for(ready);
        d
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Takes calls (`/readyz`) and every route has a usable trunk (`/status`:
    /// the trunks answered their probes).
    pub(crate) fn ready_with_trunks(&self) -> bool {
        self.get("/readyz", None).status == 200
            && self
                .get("/status", None)
                .body
                .contains(r#""routes_usable":true"#)
    }

    /// Poll `f` until it holds (30 s at the most, then panic with the log).
    pub(crate) fn wait_for(&self, f: impl Fn(&Daemon) -> bool) {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("condition never held; log:\n{}", self.log());
    }

    /// A connection to the admin API.
    pub(crate) fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// One request to the admin API on a fresh connection, `extra` header
    /// lines (and anything after them) added; the answer and the local
    /// address it came from.
    pub(crate) fn request(&self, method: &str, path: &str, extra: &str) -> (Answer, SocketAddr) {
        let Ok(mut s) = TcpStream::connect(self.admin) else {
            let none = Answer {
                status: 0,
                head: String::new(),
                body: String::new(),
            };
            return (none, self.admin);
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let local = s.local_addr().unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: lifeline\r\n{extra}Connection: close\r\n\r\n"
        );
        let _ = s.write_all(req.as_bytes());
        (read_answer(&mut s), local)
    }

    /// `method path`, with `Authorization: Bearer` if there is a `token`.
    pub(crate) fn call(&self, method: &str, path: &str, token: Option<&str>) -> Answer {
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let body = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        self.request(method, path, &format!("{auth}{body}")).0
    }

    /// `GET path`, with `Authorization: Bearer` if there is a `token`.
    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call("GET", path, token)
    }

    /// A series' value in `/metrics` ([`metric`]; asked without a token).
    pub(crate) fn metric(&self, series: &str) -> f64 {
        metric(&self.get("/metrics", None).body, series)
    }

    /// Send signal `sig` (`HUP`, `TERM` ...).
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Write `config` to the configuration file and reload it (SIGHUP):
    /// returns once one more "configuration reloaded" is logged.
    pub(crate) fn reload(&self, config: &str) {
        let reloads = self.log().matches("configuration reloaded").count();
        std::fs::write(&self.config, config).unwrap();
        self.signal("HUP");
        self.wait_for(|d| d.log().matches("configuration reloaded").count() > reloads);
    }

    /// Wait for the process to exit on its own; its exit code.
    pub(crate) fn wait_exit(&mut self) -> Option<i32> {
        for _ in 0..1000 {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
