//! `lifeline run` end to end: the real binary, a real configuration file,
//! trunks and a caller on loopback sockets (ports from the OS). Nothing here
//! asserts a duration: waits are bounded polls, assertions are on counts,
//! statuses and order.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NORMAL: u8 = 0;
const HANG: u8 = 1;
const REJECT: u8 = 2;
const SLOW: u8 = 3; // ring, answer after 1 s

/// A trunk: a UAS on a loopback socket whose behaviour can be changed.
struct Trunk {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    invites: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// A response to `req` with every Via, From, To (+tag), Call-ID and CSeq.
fn response(req: &str, code: u16, contact: Option<SocketAddr>) -> String {
    let mut out = format!("SIP/2.0 {code} X\r\n");
    for v in headers(req, "Via") {
        out += &format!("Via: {v}\r\n");
    }
    out += &format!("From: {}\r\n", header(req, "From").unwrap_or_default());
    let to = header(req, "To").unwrap_or_default();
    if to.contains("tag=") || code == 100 {
        out += &format!("To: {to}\r\n");
    } else {
        out += &format!("To: {to};tag=uas1\r\n");
    }
    out += &format!(
        "Call-ID: {}\r\n",
        header(req, "Call-ID").unwrap_or_default()
    );
    out += &format!("CSeq: {}\r\n", header(req, "CSeq").unwrap_or_default());
    if let Some(c) = contact {
        for rr in headers(req, "Record-Route") {
            out += &format!("Record-Route: {rr}\r\n");
        }
        out += &format!("Contact: <sip:uas@{c}>\r\n");
    }
    out + "Content-Length: 0\r\n\r\n"
}

impl Trunk {
    fn start() -> Trunk {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Trunk::on(sock)
    }

    fn on(sock: UdpSocket) -> Trunk {
        sock.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(NORMAL));
        let invites = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, i, s) = (mode.clone(), invites.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut pending: Vec<(Instant, String, SocketAddr)> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                pending.retain(|(at, text, to)| {
                    if *at <= now {
                        let _ = sock.send_to(text.as_bytes(), to);
                        false
                    } else {
                        true
                    }
                });
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with("SIP/2.0") {
                    continue;
                }
                let mode = m.load(Ordering::Relaxed);
                if mode == HANG {
                    continue;
                }
                let method = text.split(' ').next().unwrap_or_default();
                match method {
                    "INVITE" => {
                        i.fetch_add(1, Ordering::Relaxed);
                        match mode {
                            REJECT => {
                                let _ = sock.send_to(response(&text, 503, None).as_bytes(), from);
                            }
                            SLOW => {
                                let _ = sock.send_to(response(&text, 100, None).as_bytes(), from);
                                let _ =
                                    sock.send_to(response(&text, 180, Some(addr)).as_bytes(), from);
                                pending.push((
                                    now + Duration::from_secs(1),
                                    response(&text, 200, Some(addr)),
                                    from,
                                ));
                            }
                            _ => {
                                for c in [100, 180, 200] {
                                    let contact = (c > 100).then_some(addr);
                                    let _ =
                                        sock.send_to(response(&text, c, contact).as_bytes(), from);
                                }
                            }
                        }
                    }
                    "ACK" => {}
                    _ => {
                        let _ = sock.send_to(response(&text, 200, None).as_bytes(), from);
                    }
                }
            }
        });
        Trunk {
            addr,
            mode,
            invites,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }

    fn invites(&self) -> u64 {
        self.invites.load(Ordering::Relaxed)
    }

    /// Close the socket: the port answers ICMP port unreachable.
    fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Open the same port again.
    fn reopen(&mut self) {
        self.close();
        let sock = UdpSocket::bind(self.addr).unwrap();
        let count = self.invites();
        let new = Trunk::on(sock);
        new.invites.store(count, Ordering::Relaxed);
        *self = new;
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP and TCP port that were both free a moment ago.
fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The daemons run one at a time: each test's trunks, caller and gateway
/// already compete for two cores, and the assertions wait on real time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Daemon {
    _turn: std::sync::MutexGuard<'static, ()>,
    child: Child,
    sip: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
    config: PathBuf,
}

fn config_text(
    sip: SocketAddr,
    admin: SocketAddr,
    dir: &Path,
    first: SocketAddr,
    second: SocketAddr,
) -> String {
    format!(
        "listen:\n  - udp: {sip}\n  - tcp: {sip}\nadmin: {admin}\njournal: {}\ntrunks:\n  - name: primary\n    address: {first}\n    probe: {{ canary: 2s }}\n  - name: backup\n    address: {second}\nroutes:\n  - name: emergency\n    match: emergency\n    trunks: [primary, backup]\n  - name: default\n    match: any\n    trunks: [primary, backup]\n",
        dir.join("journal").display()
    )
}

impl Daemon {
    fn start(name: &str, primary: SocketAddr, backup: SocketAddr) -> Daemon {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir =
            std::env::temp_dir().join(format!("lifeline-daemon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.join("lifeline.yaml");
        std::fs::write(&config, config_text(sip, admin, &dir, primary, backup)).unwrap();
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
        };
        d.wait_for(|d| d.http("GET", "/status").0 == 200);
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

    fn http(&self, method: &str, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(self.admin) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!("{method} {path} HTTP/1.1\r\nHost: lifeline\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
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

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait for the process to exit on its own; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
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

/// A caller placing complete calls (INVITE, ACK, BYE) and recording outcomes.
struct Caller {
    sock: UdpSocket,
    gw: SocketAddr,
    n: u32,
    /// Call-ID -> (final status, when the caller saw it).
    finals: Arc<Mutex<Vec<(String, u16, Instant)>>>,
}

impl Caller {
    fn new(gw: SocketAddr) -> Caller {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Caller {
            sock,
            gw,
            n: 0,
            finals: Arc::default(),
        }
    }

    fn invite(&mut self, uri: &str) -> String {
        self.n += 1;
        let me = self.sock.local_addr().unwrap();
        let call_id = format!("daemon-{}-{}@127.0.0.1", me.port(), self.n);
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKd{}-{}\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:+441632960{:03}@orig.example>;tag=c{}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nP-Asserted-Identity: <tel:+441632960{:03}>\r\nGeolocation: <cid:loc@orig.example>\r\nContent-Length: 0\r\n\r\n",
            me.port(),
            self.n,
            self.n % 1000,
            self.n,
            self.n % 1000
        );
        self.sock.send_to(text.as_bytes(), self.gw).unwrap();
        call_id
    }

    /// Handle what arrives for `wait`; returns finals seen for `want`.
    fn pump(&self, wait: Duration, want: Option<&str>) -> Option<u16> {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(code) = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|_| text.starts_with("SIP/2.0"))
            else {
                // A request from the far side (BYE): answer 200.
                if !text.starts_with("ACK") {
                    let _ = self
                        .sock
                        .send_to(response(&text, 200, None).as_bytes(), self.gw);
                }
                continue;
            };
            let cseq = header(&text, "CSeq").unwrap_or_default().to_string();
            let call_id = header(&text, "Call-ID").unwrap_or_default().to_string();
            if !cseq.ends_with("INVITE") || code < 200 {
                continue;
            }
            let me = self.sock.local_addr().unwrap();
            let from = header(&text, "From").unwrap_or_default();
            let to = header(&text, "To").unwrap_or_default();
            if code >= 300 {
                let via = header(&text, "Via").unwrap_or_default();
                let ack = format!("ACK sip:x@gw SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
                let _ = self.sock.send_to(ack.as_bytes(), self.gw);
            } else {
                let routes: String = headers(&text, "Record-Route")
                    .iter()
                    .map(|r| format!("Route: {r}\r\n"))
                    .collect();
                let target = header(&text, "Contact")
                    .unwrap_or("<sip:uas@127.0.0.1>")
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_string();
                let ack = format!("ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKa{call_id}\r\nMax-Forwards: 70\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
                let _ = self.sock.send_to(ack.as_bytes(), self.gw);
                let bye = format!("BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKb{call_id}\r\nMax-Forwards: 70\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n");
                let _ = self.sock.send_to(bye.as_bytes(), self.gw);
            }
            let mut f = self.finals.lock().unwrap();
            if !f.iter().any(|(c, _, _)| *c == call_id) {
                f.push((call_id.clone(), code, Instant::now()));
            }
            if want == Some(call_id.as_str()) {
                return Some(code);
            }
        }
        None
    }

    /// One call, waiting for its final status.
    fn call(&mut self, uri: &str) -> Option<u16> {
        let id = self.invite(uri);
        self.pump(Duration::from_secs(10), Some(&id))
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn failover_and_failback_over_real_sockets() {
    let mut primary = Trunk::start();
    let backup = Trunk::start();
    let d = Daemon::start("failover", primary.addr, backup.addr);
    let mut caller = Caller::new(d.sip);
    d.wait_for(|d| d.http("GET", "/readyz").0 == 200);
    for _ in 0..3 {
        assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    }
    assert_eq!((primary.invites(), backup.invites()), (3, 0));

    let up = |d: &Daemon| {
        d.http("GET", "/status")
            .1
            .contains(r#""name":"primary","state":"up""#)
    };
    // Up, and past the canary that follows a Down on failed calls.
    let trusted = |d: &Daemon| {
        up(d)
            && metric(
                &d.http("GET", "/metrics").1,
                r#"lifeline_trunk_canary{trunk="primary"}"#,
            ) == 0.0
    };

    // Killed: its port answers ICMP port unreachable.
    primary.close();
    for _ in 0..3 {
        assert_eq!(
            caller.call("sip:999@lifeline"),
            Some(200),
            "a killed primary costs no call"
        );
    }
    // /status (published every 250 ms) shows it down.
    d.wait_for(|d| {
        d.http("GET", "/status")
            .1
            .contains(r#""name":"primary","state":"down""#)
    });
    // Back: probes bring it up. Down on failed calls and up on probes alone,
    // it is a canary for a while (2 s here): emergency calls go to the
    // backup. Then it takes new calls again.
    primary.reopen();
    d.wait_for(up);
    let before = primary.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(primary.invites(), before, "no emergency call to a canary");
    d.wait_for(trusted);
    assert!(d.log().contains("canary"), "the canary is logged");
    let before = primary.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(primary.invites(), before + 1, "failback");

    // Hung: no answer, no ICMP.
    primary.set(HANG);
    for _ in 0..3 {
        assert_eq!(
            caller.call("urn:service:sos"),
            Some(200),
            "a hung primary costs no call"
        );
    }
    // Seen down before it is let recover (/status is published every
    // 250 ms: an older snapshot would still say up).
    d.wait_for(|d| {
        d.http("GET", "/status")
            .1
            .contains(r#""name":"primary","state":"down""#)
    });
    primary.set(NORMAL);
    d.wait_for(trusted);

    // Answering 503 while OPTIONS are fine.
    primary.set(REJECT);
    for _ in 0..3 {
        assert_eq!(
            caller.call("sip:112@lifeline"),
            Some(200),
            "a 503 primary costs no call"
        );
    }
    assert!(
        backup.invites() >= 6,
        "the backup took the calls: {}",
        backup.invites()
    );

    let (code, metrics) = d.http("GET", "/metrics");
    assert_eq!(code, 200);
    assert!(
        metric(
            &metrics,
            r#"lifeline_failovers_total{trunk="primary",reason="no-response"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"lifeline_failovers_total{trunk="primary",reason="response-503"}"#
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            r#"lifeline_failovers_total{trunk="primary",reason="transport-error"}"#
        ) >= 1.0
    );
    assert!(metric(&metrics, r#"lifeline_emergency_calls_total{rule="number"}"#) >= 1.0);
    assert_eq!(
        metric(&metrics, "lifeline_emergency_calls_failed_total"),
        0.0
    );
    // What the gateway sent is counted (every INVITE to a trunk, probe and
    // response to a caller), and no send failed other than as evidence.
    assert!(
        metric(
            &metrics,
            r#"lifeline_messages_total{direction="out",kind="request"}"#
        ) >= 12.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"lifeline_messages_total{direction="out",kind="response"}"#
        ) >= 12.0,
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "lifeline_send_errors_total 0"),
        "{metrics}"
    );
    assert!(
        d.log().contains("failover: attempt given up"),
        "failovers are logged"
    );
}

#[test]
fn malformed_datagrams_are_answered_or_dropped_while_calls_go_on() {
    let primary = Trunk::start();
    let backup = Trunk::start();
    let d = Daemon::start("malformed", primary.addr, backup.addr);
    let mut caller = Caller::new(d.sip);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = probe.local_addr().unwrap();
    // A request missing From, To, Call-ID and CSeq: 400.
    let bad = format!(
        "INVITE sip:999@lifeline SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad\r\n\r\n"
    );
    probe.send_to(bad.as_bytes(), d.sip).unwrap();
    let mut buf = [0u8; 4096];
    let n = probe.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400"));
    // Version 7: 505. A broken response and noise: silence.
    probe
        .send_to(bad.replace("SIP/2.0\r\n", "SIP/7.0\r\n").as_bytes(), d.sip)
        .unwrap();
    let n = probe.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 505"));
    probe
        .send_to(b"SIP/2.0 4294967301 big\r\nVia: x\r\n\r\n", d.sip)
        .unwrap();
    probe.send_to(&[0u8, 159, 146, 150, 13, 10], d.sip).unwrap();
    assert!(
        probe.recv(&mut buf).is_err(),
        "nothing answers a bad response or noise"
    );
    // Calls are not disturbed.
    for _ in 0..3 {
        assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    }
    let (_, metrics) = d.http("GET", "/metrics");
    assert!(
        metric(&metrics, r#"lifeline_messages_rejected_total{status="400""#) >= 1.0
            || metrics.contains(r#"status="400""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"status="dropped""#));
}

#[test]
fn sighup_reloads_without_dropping_calls_and_refuses_a_bad_file() {
    let primary = Trunk::start();
    let backup = Trunk::start();
    primary.set(SLOW);
    let d = Daemon::start("reload", primary.addr, backup.addr);
    let mut caller = Caller::new(d.sip);
    d.wait_for(|d| d.http("GET", "/readyz").0 == 200);
    // Two calls ringing on the primary (answered after 1 s) ...
    let a = caller.invite("sip:999@lifeline");
    let b = caller.invite("sip:999@lifeline");
    caller.pump(Duration::from_millis(200), None);
    // ... while the configuration changes: backup first now.
    let text = config_text(d.sip, d.admin, &d.dir, backup.addr, primary.addr);
    std::fs::write(&d.config, text).unwrap();
    d.signal("HUP");
    d.wait_for(|d| d.log().contains("configuration reloaded"));
    caller.pump(Duration::from_millis(1500), None);
    let finals = caller.finals.lock().unwrap().clone();
    for id in [&a, &b] {
        assert!(
            finals.iter().any(|(c, s, _)| c == id && *s == 200),
            "{id} survived the reload: {finals:?}"
        );
    }
    // New calls follow the new order: the trunk listed first is now "primary"
    // in name but the former backup's address.
    let before = backup.invites();
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
    assert_eq!(backup.invites(), before + 1);
    // A broken file is refused and the running configuration stays.
    std::fs::write(&d.config, "listen: [}").unwrap();
    d.signal("HUP");
    d.wait_for(|d| d.log().contains("reload refused"));
    assert_eq!(caller.call("sip:999@lifeline"), Some(200));
}

#[test]
fn sigterm_refuses_new_calls_finishes_the_rest_and_exits_0() {
    let primary = Trunk::start();
    let backup = Trunk::start();
    primary.set(SLOW);
    backup.set(SLOW);
    let mut d = Daemon::start("sigterm", primary.addr, backup.addr);
    let mut caller = Caller::new(d.sip);
    d.wait_for(|d| d.http("GET", "/readyz").0 == 200);
    let live = caller.invite("sip:999@lifeline");
    caller.pump(Duration::from_millis(200), None);
    d.signal("TERM");
    d.wait_for(|d| d.log().contains("shutting down"));
    let refused = caller.invite("sip:999@lifeline");
    caller.pump(Duration::from_millis(1500), None);
    let finals = caller.finals.lock().unwrap().clone();
    assert!(
        finals.iter().any(|(c, s, _)| *c == refused && *s == 503),
        "{finals:?}"
    );
    assert!(
        finals.iter().any(|(c, s, _)| *c == live && *s == 200),
        "{finals:?}"
    );
    caller.pump(Duration::from_millis(500), None); // BYE completes
    assert_eq!(d.wait_exit(), Some(0), "log:\n{}", d.log());
}

#[test]
fn sigkill_during_load_leaves_every_finished_call_in_the_journal() {
    let primary = Trunk::start();
    let backup = Trunk::start();
    let mut d = Daemon::start("sigkill", primary.addr, backup.addr);
    let mut caller = Caller::new(d.sip);
    d.wait_for(|d| d.http("GET", "/readyz").0 == 200);
    // Load: a call every 10 ms for 1.5 s; the primary fails half way.
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        caller.invite(if i % 2 == 0 {
            "sip:999@lifeline"
        } else {
            "urn:service:sos"
        });
        i += 1;
        if i == 75 {
            primary.set(REJECT);
        }
        caller.pump(Duration::from_millis(10), None);
    }
    let killed_at = Instant::now();
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    let finals = caller.finals.lock().unwrap().clone();
    let settled: Vec<&String> = finals
        .iter()
        .filter(|(_, _, at)| killed_at.saturating_duration_since(*at) >= Duration::from_millis(100))
        .map(|(c, _, _)| c)
        .collect();
    assert!(
        settled.len() > 50,
        "enough calls finished before the kill: {}",
        settled.len()
    );
    let reader = lifeline_journal::JournalReader::open(&[d.dir.join("journal")]).unwrap();
    let (entries, issues) = reader.read_all();
    assert!(
        issues.iter().all(|i| i.is_torn_tail()),
        "only a torn tail may be damaged: {issues:?}"
    );
    let journalled: std::collections::HashSet<String> = entries
        .iter()
        .filter_map(|e| match &e.record {
            lifeline_journal::JournalRecord::Call(c) => Some(c.call_id.clone()),
            _ => None,
        })
        .collect();
    let missing: Vec<_> = settled
        .iter()
        .filter(|c| !journalled.contains(c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} settled calls missing from the journal: {missing:?}",
        missing.len(),
        settled.len()
    );
}
