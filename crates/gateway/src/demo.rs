//! `lifeline demo`: the whole story in one command, on loopback.
//!
//! It starts the gateway, two trunks (real UAS on loopback sockets, answering
//! OPTIONS and calls) and a caller placing emergency calls — to 999 and to
//! `urn:service:sos`, each with SDP and a PIDF-LO location — at a steady
//! rate. The trunks ring for `--ring-ms` before answering. A few seconds in,
//! the primary trunk fails (killed, hung, or answering 503) with calls
//! ringing on it, which are rescued to the backup; later it comes back.
//! What happens is printed as it happens, and a summary at the end.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_kit::{Call, Mode, Uas, UasConfig};
use lifeline_proxy::{
    AccessConfig, AttemptFailure, Event, IpNet, Peer, ProxyConfig, RouteConfig, RouteMatch,
    Transport, TrunkConfig, TrunkId,
};
use lifeline_sip::Message;

use lifeline_io::{Gateway, Options};

/// How the primary trunk fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Fault {
    /// The process dies: its port answers ICMP port unreachable.
    Kill,
    /// The process hangs: packets vanish, nothing answers.
    Hang,
    /// It answers every call with 503 Service Unavailable.
    #[value(name = "503")]
    Reject503,
}

/// Demo settings.
#[derive(Clone, Debug)]
pub(crate) struct DemoOptions {
    pub(crate) admin: SocketAddr,
    pub(crate) duration: Duration,
    pub(crate) rate: u32,
    pub(crate) fault: Fault,
    pub(crate) hold: Duration,
    /// How long the PSAPs ring before they answer.
    pub(crate) ring: Duration,
}

/// The PSAPs: answer at once, or ring for `ring` first.
fn psap_mode(ring: Duration) -> Mode {
    if ring.is_zero() {
        Mode::Answer
    } else {
        Mode::Ring(ring)
    }
}

const BODY: &str = "--demo-boundary\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n\r\n--demo-boundary\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@orig.example>\r\n\r\n<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\" xmlns:gml=\"http://www.opengis.net/gml\" entity=\"pres:caller@example.net\"><tuple id=\"t\"><status><gp:geopriv><gp:location-info><gml:Point srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>51.5034 -0.1276</gml:pos></gml:Point></gp:location-info></gp:geopriv></status></tuple></presence>\r\n--demo-boundary--\r\n";

#[derive(Debug)]
struct CallState {
    call: Call,
    started: Instant,
    final_status: Option<u16>,
    bye_at: Option<Instant>,
    bye: Option<String>,
}

/// What the demo saw, for the summary.
#[derive(Debug, Default)]
struct Seen {
    /// (when, trunk name) of every INVITE sent to a trunk.
    attempts: Vec<(Instant, String)>,
    failovers: u64,
    /// Calls moved off a dying trunk while the caller heard it ring.
    rescued_ringing: u64,
}

pub(crate) fn run(opts: DemoOptions) -> std::process::ExitCode {
    match run_inner(opts) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("lifeline demo: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run_inner(opts: DemoOptions) -> std::io::Result<bool> {
    if !opts.admin.ip().is_loopback() {
        // The demo's admin API has no token (and serves its callback list).
        return Err(std::io::Error::other(format!(
            "--admin {}: the demo's admin API has no token, so it listens on loopback only",
            opts.admin
        )));
    }
    let loopback: SocketAddr = "127.0.0.1:0".parse().map_err(std::io::Error::other)?;
    let psap = |name: &str| UasConfig {
        name: name.into(),
        mode: psap_mode(opts.ring),
        ..UasConfig::default()
    };
    let mut primary = Uas::with(psap("primary"), loopback)?;
    let backup = Uas::with(psap("backup"), loopback)?;
    let (paddr, baddr) = (primary.addr(), backup.addr());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let t0 = Instant::now();
    let journal_dir = std::env::temp_dir().join(format!("lifeline-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&journal_dir);
    let obs = crate::run::Observability::new(Some(&journal_dir), "demo")?;
    let mut sinks = obs.sinks();
    let sink_seen = seen.clone();
    let gw = Gateway::start(Options {
        listen: vec![(Transport::Udp, loopback)],
        advertise: None,
        proxy_config: Box::new(move |adv| {
            // A short canary (2 s, not 10 s), so that failback fits in the
            // demo: the recovered primary takes calls again after it.
            let mut probe = lifeline_proxy::ProbeConfig::default();
            probe.canary.duration = Duration::from_secs(2);
            let t = |n: &str, a| TrunkConfig {
                probe: probe.clone(),
                ..TrunkConfig::new(n, Peer::udp(a))
            };
            let mut cfg = ProxyConfig::new(
                adv,
                vec![t("primary", paddr), t("backup", baddr)],
                vec![
                    RouteConfig::new("emergency", RouteMatch::Emergency, &["primary", "backup"]),
                    RouteConfig::new("default", RouteMatch::Any, &["primary", "backup"]),
                ],
            );
            // The simulated originating network is on loopback, and is the
            // trust domain: its callers' asserted identities are kept.
            let lo = IpAddr::from([127, 0, 0, 0]);
            let loopback = IpNet::new(lo, 8).unwrap_or(IpNet::from(lo));
            cfg.access = AccessConfig {
                callers: Some(vec![loopback]),
                trusted: vec![loopback],
                ..AccessConfig::default()
            };
            cfg
        }),
        io_threads: 1,
        sinks: {
            sinks.push(Box::new(
                move |ev: &Event, now: Instant, names: &Arc<lifeline_io::ProxyNames>| {
                    let name = |id: TrunkId| names.trunk(id).unwrap_or_default().to_string();
                    let at = now.saturating_duration_since(t0).as_secs_f64();
                    match ev {
                        Event::AttemptStarted { trunk, .. } => {
                            let n = name(*trunk);
                            if let Ok(mut s) = sink_seen.lock() {
                                s.attempts.push((now, n));
                            }
                        }
                        Event::AttemptFailed {
                            trunk,
                            reason,
                            elapsed,
                            ..
                        } => {
                            let why = match reason {
                                AttemptFailure::Response(c) => format!("answered {c}"),
                                AttemptFailure::NoResponse => "no response".into(),
                                AttemptFailure::NoProgress => "no progress after 100 Trying".into(),
                                AttemptFailure::TransportError => "ICMP port unreachable".into(),
                                AttemptFailure::TransactionTimeout => "timed out".into(),
                                AttemptFailure::TrunkDown => "went down while the call waited".into(),
                                AttemptFailure::Superseded => {
                                    // A hedge that lost: the call connected elsewhere.
                                    println!(
                                        "t={at:6.3}s  hedge on {} cancelled after {} ms: the other attempt answered",
                                        name(*trunk),
                                        elapsed.as_millis()
                                    );
                                    return;
                                }
                            };
                            if let Ok(mut s) = sink_seen.lock() {
                                s.failovers += 1;
                            }
                            println!(
                                "t={at:6.3}s  failover: {} {why} after {} ms, call moved on",
                                name(*trunk),
                                elapsed.as_millis()
                            );
                        }
                        Event::Rescued { trunk, ringing, .. } => {
                            if *ringing {
                                if let Ok(mut s) = sink_seen.lock() {
                                    s.rescued_ringing += 1;
                                }
                            }
                            let when = if *ringing { "while ringing" } else { "before ringing" };
                            println!(
                                "t={at:6.3}s  rescue: call moved off {} {when}, at once (not after Timer C)",
                                name(*trunk)
                            );
                        }
                        Event::Hedged { trunk, .. } => {
                            println!(
                                "t={at:6.3}s  hedge: no ringing yet, a parallel attempt on {}",
                                name(*trunk)
                            );
                        }
                        Event::TrunkSkipped { trunk, reason, .. } => {
                            println!(
                                "t={at:6.3}s  overflow: {} is full ({}), call sent to the next trunk",
                                name(*trunk),
                                reason.as_str()
                            );
                        }
                        Event::DuplicateAnswer { trunk, .. } => {
                            println!(
                                "t={at:6.3}s  second answer from {} ACKed and ended with BYE",
                                name(*trunk)
                            );
                        }
                        Event::Trunk(h) => match h.kind {
                            lifeline_health::EventKind::State { from, to, reason } => {
                                println!(
                                    "t={at:6.3}s  trunk {}: {} -> {} ({})",
                                    name(h.trunk),
                                    from.as_str(),
                                    to.as_str(),
                                    reason
                                );
                            }
                            lifeline_health::EventKind::CanaryStarted { until } => {
                                println!(
                                    "t={at:6.3}s  trunk {}: canary: a share of calls for up to {:.1} s before it is trusted again",
                                    name(h.trunk),
                                    until.saturating_duration_since(now).as_secs_f64()
                                );
                            }
                            lifeline_health::EventKind::CanaryEnded { passed } => {
                                println!(
                                    "t={at:6.3}s  trunk {}: canary {}",
                                    name(h.trunk),
                                    if passed { "passed: full traffic again" } else { "failed" }
                                );
                            }
                            _ => {}
                        },
                        Event::CallFailed { status, .. } => {
                            println!("t={at:6.3}s  CALL FAILED with {status}")
                        }
                        _ => {}
                    }
                },
            ));
            sinks
        },
        sink_ticks: vec![obs.sink_tick()],
        ticks: vec![obs.tick()],
        tick_every: Duration::from_millis(250),
        net: lifeline_io::transport::real(),
        clock: lifeline_io::clock::system(),
        tcp: lifeline_io::TcpLimits::default(),
        capture: None,
    })?;
    // The admin API, so /status and /metrics can be watched during the demo.
    let admin = obs
        .start_admin(&gw, opts.admin)
        .or_else(|_| obs.start_admin(&gw, SocketAddr::new(opts.admin.ip(), 0)))?;
    let gw_addr = *gw
        .bound
        .udp
        .first()
        .ok_or_else(|| std::io::Error::other("no UDP listener"))?;

    println!(
        "lifeline demo: gateway on {gw_addr}, primary trunk on {paddr}, backup trunk on {baddr}"
    );
    println!(
        "watch it: curl -s http://{admin}/status   curl -s http://{admin}/metrics   curl -s http://{admin}/calls/failed"
    );
    println!(
        "placing {} emergency calls/s (999 and urn:service:sos, with SDP and PIDF-LO) for {} s; the primary will {} at {:.1} s and come back at {:.1} s",
        opts.rate,
        opts.duration.as_secs(),
        match opts.fault {
            Fault::Kill => "be killed",
            Fault::Hang => "hang",
            Fault::Reject503 => "answer 503",
        },
        (opts.duration.as_secs_f64() * 0.3),
        (opts.duration.as_secs_f64() * 0.6),
    );

    let caller = UdpSocket::bind(loopback)?;
    caller.set_read_timeout(Some(Duration::from_millis(2)))?;
    let me = caller.local_addr()?;
    let fault_at = t0 + opts.duration.mul_f64(0.3);
    let revive_at = t0 + opts.duration.mul_f64(0.6);
    let stop_calls_at = t0 + opts.duration.mul_f64(0.9);
    let end_at = t0 + opts.duration + opts.hold + Duration::from_secs(2);
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let mut next_call = t0 + Duration::from_millis(500);
    let mut calls: HashMap<String, CallState> = HashMap::new();
    let mut n = 0u32;
    let (mut faulted, mut revived) = (false, false);
    let mut next_report = t0 + Duration::from_secs(1);
    let mut last_counts: (usize, usize) = (0, 0);
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= end_at {
            break;
        }
        if !faulted && now >= fault_at {
            faulted = true;
            match opts.fault {
                Fault::Kill => primary.kill(),
                Fault::Hang => primary.set_mode(Mode::Hang),
                Fault::Reject503 => primary.set_mode(Mode::Reject(503)),
            }
            println!(
                "t={:6.3}s  *** FAULT: primary trunk {} ***",
                (now - t0).as_secs_f64(),
                match opts.fault {
                    Fault::Kill => "killed",
                    Fault::Hang => "hung",
                    Fault::Reject503 => "answering 503",
                }
            );
        }
        if !revived && now >= revive_at {
            revived = true;
            match opts.fault {
                Fault::Kill => primary.reopen()?,
                _ => primary.set_mode(psap_mode(opts.ring)),
            }
            println!(
                "t={:6.3}s  *** primary trunk is back ***",
                (now - t0).as_secs_f64()
            );
        }
        if now >= next_call && now < stop_calls_at {
            next_call += interval;
            n += 1;
            let uri = if n.is_multiple_of(2) {
                "urn:service:sos"
            } else {
                "sip:999@lifeline.invalid"
            };
            let call = Call::new(me, format!("demo-{n}@{}", me.ip()), uri, n)
                .with_identity()
                .header("Geolocation-Routing", "no")
                .body("multipart/mixed;boundary=demo-boundary", BODY);
            let _ = caller.send_to(call.invite().as_bytes(), gw_addr);
            calls.insert(
                call.call_id.clone(),
                CallState {
                    call,
                    started: now,
                    final_status: None,
                    bye_at: None,
                    bye: None,
                },
            );
        }
        // BYEs due.
        for c in calls.values_mut() {
            if c.bye_at.is_some_and(|t| t <= now) {
                c.bye_at = None;
                if let Some(bye) = c.bye.take() {
                    let _ = caller.send_to(bye.as_bytes(), gw_addr);
                }
            }
        }
        if let Ok(len) = caller.recv(&mut buf) {
            if let Ok(m) =
                Message::parse(Bytes::copy_from_slice(buf.get(..len).unwrap_or_default()))
            {
                handle_response(&caller, gw_addr, &m, &mut calls, now, opts.hold);
            }
        }
        if now >= next_report {
            next_report += Duration::from_secs(1);
            let (to_p, to_b) = {
                let s = seen.lock().unwrap_or_else(|p| p.into_inner());
                let p = s.attempts.iter().filter(|a| a.1 == "primary").count();
                (p, s.attempts.len() - p)
            };
            let answered = calls
                .values()
                .filter(|c| c.final_status.is_some_and(|s| s < 300))
                .count();
            let failed = calls
                .values()
                .filter(|c| c.final_status.is_some_and(|s| s >= 300))
                .count();
            println!(
                "t={:6.3}s  calls {:4}  answered {:4}  failed {}   last second: primary {:3}  backup {:3}",
                (now - t0).as_secs_f64(),
                calls.len(),
                answered,
                failed,
                to_p.saturating_sub(last_counts.0),
                to_b.saturating_sub(last_counts.1)
            );
            last_counts = (to_p, to_b);
        }
    }
    let now = Instant::now();
    for c in calls.values_mut() {
        if c.final_status.is_none() && now.duration_since(c.started) > Duration::from_secs(5) {
            c.final_status = Some(408);
        }
    }
    let io = (
        gw.stats.received.load(Ordering::Relaxed),
        gw.stats.sent(),
        gw.stats.queue_drops.load(Ordering::Relaxed),
    );
    if let Err(e) = gw.shutdown(Duration::from_secs(2)) {
        println!("{e}");
    }
    let total = calls.len();
    let failed = calls
        .values()
        .filter(|c| c.final_status.is_none_or(|s| s >= 300))
        .count();
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    let to_primary: Vec<Instant> = s
        .attempts
        .iter()
        .filter(|a| a.1 == "primary")
        .map(|a| a.0)
        .collect();
    let failover_ms = to_primary
        .iter()
        .filter(|t| **t >= fault_at && **t < revive_at)
        .max()
        .map_or(0, |t| t.duration_since(fault_at).as_millis());
    let failback = to_primary
        .iter()
        .filter(|t| **t >= revive_at)
        .min()
        .map(|t| t.duration_since(revive_at).as_millis());
    // The incident report, from the journal this run wrote.
    obs.close();
    if let Ok(reader) = lifeline_journal::JournalReader::open(&[&journal_dir]) {
        let segments = reader.segments().count() as u64;
        let mut builder = lifeline_journal::report::ReportBuilder::new(Default::default());
        let issues = reader.for_each(|e| builder.push(&e.record));
        let rep = builder.finish(&issues, segments);
        println!();
        println!(
            "incident report (lifeline report --journal {}):",
            journal_dir.display()
        );
        print!("{}", lifeline_journal::report::render_table(&rep));
    }
    println!();
    println!("summary:");
    println!("  calls placed           {total}");
    println!("  answered               {}", total - failed);
    println!("  failed                 {failed}");
    println!(
        "  attempts on a failing trunk that moved on: {}",
        s.failovers
    );
    println!(
        "  calls ringing on the primary when it failed, moved to the backup at once: {}",
        s.rescued_ringing
    );
    println!(
        "  gateway messages in/out {} / {}, dropped by the gateway {}",
        io.0, io.1, io.2
    );
    println!(
        "  new calls left the faulty primary {failover_ms} ms after the fault; it took new calls again {} after it came back",
        failback.map_or("never".to_string(), |ms| format!("{ms} ms"))
    );
    println!(
        "demo: {total} calls, {failed} failed, failover in {failover_ms} ms, failback in {} ms",
        failback.map_or("-".to_string(), |ms| ms.to_string())
    );
    Ok(failed == 0)
}

#[allow(clippy::too_many_arguments)]
fn handle_response(
    sock: &UdpSocket,
    gw: SocketAddr,
    m: &Message,
    calls: &mut HashMap<String, CallState>,
    now: Instant,
    hold: Duration,
) {
    let Some(code) = m.status() else {
        return;
    };
    let call_id = String::from_utf8_lossy(m.call_id().unwrap_or_default()).into_owned();
    let Some(c) = calls.get_mut(&call_id) else {
        return;
    };
    if m.cseq().map_or(true, |cseq| cseq.method != b"INVITE") || code < 200 {
        return;
    }
    let first = c.final_status.is_none();
    c.final_status.get_or_insert(code);
    let _ = sock.send_to(c.call.ack(m).as_bytes(), gw);
    if first && code < 300 {
        c.bye = Some(c.call.bye(m));
        c.bye_at = Some(now + hold);
    }
}
