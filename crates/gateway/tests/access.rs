//! `access` end to end: the real binary with a configuration file, a trunk
//! on a loopback socket, and callers on loopback addresses of their own
//! (127.0.0.77 is outside `callers`, 127.0.0.10 is trusted, 127.0.0.1 is
//! a caller but not trusted). Nothing here asserts a duration: waits are
//! bounded polls, assertions are on statuses, counts and bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_kit::{Call, Mode, Uas};
use lifeline_sip::{HeaderName, Message};

/// One daemon at a time: they share two cores with their peers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A UDP and TCP port of 127.0.0.1 that were both free a moment ago.
fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Daemon {
    _turn: std::sync::MutexGuard<'static, ()>,
    child: Child,
    sip: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
    config: PathBuf,
    trunk: SocketAddr,
}

/// A gateway with one trunk and `access` (YAML lines, indented under
/// `access:`).
fn config_text(sip: SocketAddr, admin: SocketAddr, trunk: SocketAddr, access: &str) -> String {
    format!(
        "listen:\n  - udp: {sip}\nadmin: {admin}\naccess:\n{access}trunks:\n  - name: primary\n    address: {trunk}\nroutes:\n  - name: emergency\n    match: emergency\n    trunks: [primary]\n  - name: default\n    match: any\n    trunks: [primary]\n"
    )
}

impl Daemon {
    fn start(name: &str, trunk: SocketAddr, access: &str) -> Daemon {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir =
            std::env::temp_dir().join(format!("lifeline-access-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("lifeline.yaml");
        std::fs::write(&config, config_text(sip, admin, trunk, access)).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
            .args(["run", "--config"])
            .arg(&config)
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
            config,
            trunk,
        };
        d.wait_for(|d| d.http("/readyz").0 == 200);
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn wait_for(&self, f: impl Fn(&Daemon) -> bool) {
        for _ in 0..1500 {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("condition never held; log:\n{}", self.log());
    }

    fn http(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(self.admin) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: lifeline\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        if s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    fn metric(&self, series: &str) -> f64 {
        self.http("/metrics")
            .1
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Write a new `access` section and reload (SIGHUP).
    fn reload(&self, access: &str) {
        let reloads = self.log().matches("configuration reloaded").count();
        std::fs::write(
            &self.config,
            config_text(self.sip, self.admin, self.trunk, access),
        )
        .unwrap();
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        self.wait_for(|d| d.log().matches("configuration reloaded").count() > reloads);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A caller on its own loopback address.
struct Phone {
    sock: UdpSocket,
    gw: SocketAddr,
    n: u32,
}

impl Phone {
    fn at(ip: &str, gw: SocketAddr) -> Phone {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Phone { sock, gw, n: 0 }
    }

    /// A call to `uri` with an asserted identity, a location and
    /// `Resource-Priority: esnet.0`, not yet placed.
    fn call(&mut self, uri: &str) -> Call {
        self.n += 1;
        let me = self.sock.local_addr().unwrap();
        Call::new(
            me,
            format!("access-{}-{}@{}", me.port(), self.n, me.ip()),
            uri,
            self.n,
        )
        .with_identity()
        .header("Resource-Priority", "esnet.0")
    }

    /// Place `call`: its final status, if one comes within `wait`. The
    /// final is ACKed, and a 2xx ended with a BYE.
    fn place(&self, call: &Call, wait: Duration) -> Option<u16> {
        self.sock
            .send_to(call.invite().as_bytes(), self.gw)
            .unwrap();
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                continue;
            };
            let Some(status) = m.status().filter(|s| *s >= 200) else {
                continue;
            };
            let _ = self.sock.send_to(call.ack(&m).as_bytes(), self.gw);
            if status < 300 {
                let _ = self.sock.send_to(call.bye(&m).as_bytes(), self.gw);
            }
            return Some(status);
        }
        None
    }
}

/// The INVITEs the trunk received, by Call-ID.
fn received(trunk: &Uas, call: &Call) -> Vec<Message> {
    trunk
        .requests()
        .into_iter()
        .filter_map(|b| Message::parse(b).ok())
        .filter(|m| {
            m.method_bytes() == Some(b"INVITE") && m.call_id() == Some(call.call_id.as_bytes())
        })
        .collect()
}

const ACCESS: &str = "  callers: [127.0.0.1/32, 127.0.0.10/32]\n  trusted: [127.0.0.10]\n";

#[test]
fn a_stranger_reaches_no_trunk_and_a_reload_changes_who_may_call() {
    let trunk = Uas::start(Mode::Answer);
    let d = Daemon::start("stranger", trunk.addr(), ACCESS);
    assert!(
        !d.log().contains("access.callers: not set"),
        "callers are set: no warning"
    );
    let mut stranger = Phone::at("127.0.0.77", d.sip);
    let forged = stranger.call("sip:999@lifeline");
    assert_eq!(
        stranger.place(&forged, Duration::from_secs(1)),
        None,
        "dropped: no answer at all"
    );
    d.wait_for(|d| d.metric(r#"lifeline_rejected_total{reason="access"}"#) == 1.0);
    assert_eq!(
        d.metric(r#"lifeline_messages_rejected_total{status="dropped",reason="access"}"#),
        1.0
    );
    // A caller in `callers` goes through, so the stranger's INVITE would
    // have been seen by now.
    let mut caller = Phone::at("127.0.0.1", d.sip);
    let ok = caller.call("sip:999@lifeline");
    assert_eq!(caller.place(&ok, Duration::from_secs(5)), Some(200));
    assert_eq!(received(&trunk, &ok).len(), 1);
    assert!(
        received(&trunk, &forged).is_empty(),
        "the trunk saw nothing"
    );
    assert_eq!(trunk.invites(), 1);

    // unknown: reject, by reload: the stranger now hears 403.
    d.reload(&format!("{ACCESS}  unknown: reject\n"));
    let forged = stranger.call("sip:999@lifeline");
    assert_eq!(stranger.place(&forged, Duration::from_secs(5)), Some(403));
    d.wait_for(|d| d.metric(r#"lifeline_rejected_total{reason="access"}"#) == 2.0);
    assert!(received(&trunk, &forged).is_empty());

    // Its network added to callers: its call goes through, without the
    // identity it claims (it is not trusted).
    d.reload("  callers: [127.0.0.1/32, 127.0.0.64/26]\n  trusted: [127.0.0.10]\n");
    let call = stranger.call("sip:999@lifeline");
    assert_eq!(stranger.place(&call, Duration::from_secs(5)), Some(200));
    let at_trunk = received(&trunk, &call);
    assert_eq!(at_trunk.len(), 1);
    assert!(at_trunk[0].header(HeaderName::PAssertedIdentity).is_none());
    assert_eq!(d.metric(r#"lifeline_rejected_total{reason="access"}"#), 2.0);
}

#[test]
fn identity_and_priority_reach_the_trunk_only_from_a_trusted_source() {
    let trunk = Uas::start(Mode::Answer);
    let d = Daemon::start("identity", trunk.addr(), ACCESS);
    // Untrusted: P-Asserted-Identity and Resource-Priority removed, every
    // other header as sent.
    let mut untrusted = Phone::at("127.0.0.1", d.sip);
    let call = untrusted.call("sip:999@lifeline");
    assert_eq!(untrusted.place(&call, Duration::from_secs(5)), Some(200));
    let sent = Message::parse(Bytes::from(call.invite())).unwrap();
    let got = received(&trunk, &call);
    assert_eq!(got.len(), 1);
    let others = |m: &Message| -> Vec<(Vec<u8>, Vec<u8>)> {
        m.headers()
            .filter(|h| {
                !matches!(
                    h.name,
                    HeaderName::Via | HeaderName::MaxForwards | HeaderName::RecordRoute
                )
            })
            .map(|h| (h.raw_name.to_vec(), h.value.to_vec()))
            .collect()
    };
    let mut want = others(&sent);
    want.retain(|(name, _)| {
        !name.eq_ignore_ascii_case(b"P-Asserted-Identity")
            && !name.eq_ignore_ascii_case(b"Resource-Priority")
    });
    assert_eq!(others(&got[0]), want);
    assert!(
        got[0].header(HeaderName::Geolocation).is_some(),
        "location kept"
    );
    assert_eq!(got[0].body(), sent.body());

    // Trusted: everything as sent.
    let mut trusted = Phone::at("127.0.0.10", d.sip);
    let call = trusted.call("sip:+441632960000@lifeline");
    assert_eq!(trusted.place(&call, Duration::from_secs(5)), Some(200));
    let sent = Message::parse(Bytes::from(call.invite())).unwrap();
    let got = received(&trunk, &call);
    assert_eq!(got.len(), 1);
    assert_eq!(others(&got[0]), others(&sent));
    // Its esnet made it an emergency call.
    d.wait_for(|d| d.metric(r#"lifeline_emergency_calls_total{rule="resource-priority"}"#) == 1.0);
    assert_eq!(d.metric(r#"lifeline_rejected_total{reason="access"}"#), 0.0);
}

#[test]
fn without_callers_the_daemon_warns_that_anyone_may_call() {
    let trunk = Uas::start(Mode::Answer);
    let d = Daemon::start("open", trunk.addr(), "  trusted: [127.0.0.10]\n");
    d.wait_for(|d| {
        d.log()
            .contains("access.callers: not set: any source may place calls")
    });
    let mut anyone = Phone::at("127.0.0.77", d.sip);
    let call = anyone.call("sip:999@lifeline");
    assert_eq!(anyone.place(&call, Duration::from_secs(5)), Some(200));
    assert_eq!(received(&trunk, &call).len(), 1);
}
