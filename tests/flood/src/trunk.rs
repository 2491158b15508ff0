//! `flood trunk`: a UDP trunk (UAS) that answers every call and counts the
//! INVITEs that reach it, emergency calls and other calls apart.
//!
//! Emergency INVITEs (Request-URI user part an emergency number, or
//! `urn:service:sos`) and every request but INVITE (ACK, BYE, CANCEL,
//! OPTIONS probes ...) are answered by the test kit's UAS
//! ([`lifeline_kit::uas::Answerer`]: 100, 180 and 200 with a To tag, the
//! Record-Route copied and a Contact; its 2xx sent again until the ACK;
//! BYE, CANCEL and OPTIONS answered 200). Other INVITEs, the flood, get the
//! same three answers built by the same writer, but statelessly: the kit's
//! UAS keeps every INVITE's answers for 32 s and looks through all of them
//! each time it is polled, which at 10,000 INVITEs a second would cost the
//! trunk more CPU than the gateway it measures. Retransmitted flood INVITEs
//! (by branch, remembered for 32 to 64 s) are answered again and counted
//! apart, not as new INVITEs.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_kit::uas::{Answerer, Mode, UasStats};
use lifeline_proxy::Transport;
use lifeline_sip::{Message, MessageWriter};
use tokio::net::UdpSocket;
use tokio::time::MissedTickBehavior;

use crate::common::{own_usage, stop_after, udp_socket};

#[derive(Debug, clap::Args)]
pub(crate) struct TrunkArgs {
    /// Where to listen (UDP).
    #[arg(long)]
    listen: SocketAddr,
    /// Its name: in its To tags and its summary.
    #[arg(long, default_value = "trunk")]
    name: String,
    /// Seconds to run (SIGTERM or SIGINT end it sooner).
    #[arg(long, default_value_t = 3600)]
    duration: u64,
    /// Request-URI user parts that make an INVITE an emergency call
    /// (`urn:service:sos` always does).
    #[arg(long, value_delimiter = ',', default_value = "999,112,911")]
    emergency_numbers: Vec<String>,
    /// Also write the summary line to this file, every second and at the
    /// end.
    #[arg(long)]
    stats: Option<PathBuf>,
}

/// How long a flood INVITE's branch is remembered, at least (64 x T1).
const REMEMBER: Duration = Duration::from_secs(32);

/// Whether `uri` (a Request-URI as written) dials an emergency number.
fn is_emergency(uri: &[u8], numbers: &[String]) -> bool {
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with(b"urn:service:sos") {
        return true;
    }
    let rest = ["sip:", "sips:", "tel:"]
        .iter()
        .find_map(|s| lower.strip_prefix(s.as_bytes()));
    let Some(rest) = rest else {
        return false;
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'@' | b';' | b'?' | b'>'))
        .unwrap_or(rest.len());
    let user = &rest[..end];
    numbers.iter().any(|n| n.as_bytes() == user)
}

/// What the trunk counted.
#[derive(Debug, Default)]
struct Counts {
    invites_other: u64,
    invites_other_retrans: u64,
    /// Every emergency INVITE that arrived, retransmissions included (the
    /// kit's UAS counts the new ones).
    emergency_datagrams: u64,
    acks: u64,
    byes: u64,
    cancels: u64,
    options: u64,
    other_requests: u64,
    responses: u64,
    unparseable: u64,
    sent: u64,
    send_errors: u64,
}

/// The flood INVITEs' branches seen lately: two generations, the older
/// dropped every [`REMEMBER`].
#[derive(Debug)]
struct Seen {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    since: Instant,
}

impl Seen {
    fn new(now: Instant) -> Self {
        Self {
            current: HashSet::new(),
            previous: HashSet::new(),
            since: now,
        }
    }

    /// Whether `key` is new (and remember it).
    fn insert(&mut self, key: u64) -> bool {
        !self.previous.contains(&key) && self.current.insert(key)
    }

    fn age(&mut self, now: Instant) {
        if now.duration_since(self.since) >= REMEMBER {
            self.previous = std::mem::take(&mut self.current);
            self.since = now;
        }
    }
}

/// The trunk: the kit's UAS for emergency calls and dialogs, the
/// stateless answers for the flood, and the counts.
#[derive(Debug)]
struct Trunk {
    name: String,
    contact: String,
    numbers: Vec<String>,
    answerer: Answerer,
    kit: UasStats,
    seen: Seen,
    counts: Counts,
}

impl Trunk {
    /// The answers to a datagram from `from`.
    fn on_datagram(&mut self, now: Instant, data: Bytes, from: SocketAddr) -> Vec<Bytes> {
        let Ok(m) = Message::parse(data.clone()) else {
            self.counts.unparseable += 1;
            return vec![];
        };
        let Some(method) = m.method_bytes() else {
            self.counts.responses += 1;
            return vec![];
        };
        let c = &mut self.counts;
        match method {
            b"INVITE" => {
                let uri = m.request_uri_bytes().unwrap_or_default();
                if !is_emergency(uri, &self.numbers) {
                    return self.flood_invite(&m);
                }
                c.emergency_datagrams += 1;
            }
            b"ACK" => c.acks += 1,
            b"BYE" => c.byes += 1,
            b"CANCEL" => c.cancels += 1,
            b"OPTIONS" => c.options += 1,
            _ => c.other_requests += 1,
        }
        self.answerer
            .on_message(now, data, from, Transport::Udp, &self.kit)
            .into_iter()
            .map(|o| o.bytes)
            .collect()
    }

    /// 100, 180 and 200 to a non-emergency INVITE, as the kit's UAS would
    /// answer it, without keeping anything but its branch.
    fn flood_invite(&mut self, m: &Message) -> Vec<Bytes> {
        let branch = m
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .unwrap_or_default();
        let mut h = DefaultHasher::new();
        branch.hash(&mut h);
        m.call_id().unwrap_or_default().hash(&mut h);
        if self.seen.insert(h.finish()) {
            self.counts.invites_other += 1;
        } else {
            self.counts.invites_other_retrans += 1;
        }
        let mut out = Vec::with_capacity(3);
        if let Ok(w) = MessageWriter::response_to(m, 100, "Trying", None) {
            out.push(w.finish());
        }
        for (code, reason) in [(180, "Ringing"), (200, "OK")] {
            if let Ok(w) = MessageWriter::dialog_response_to(
                m,
                code,
                reason,
                self.name.as_bytes(),
                self.contact.as_bytes(),
            ) {
                out.push(w.finish());
            }
        }
        out
    }

    fn summary(&self) -> String {
        let c = &self.counts;
        let k = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "trunk: name={} invites_emergency={} invites_emergency_datagrams={} \
             invites_other={} invites_other_retrans={} acks={} byes={} cancels={} options={} \
             other_requests={} responses={} unparseable={} resent_2xx={} sent={} send_errors={}{}",
            self.name,
            k(&self.kit.invites),
            c.emergency_datagrams,
            c.invites_other,
            c.invites_other_retrans,
            c.acks,
            c.byes,
            c.cancels,
            c.options,
            c.other_requests,
            c.responses,
            c.unparseable,
            k(&self.kit.resent),
            c.sent,
            c.send_errors,
            own_usage()
        )
    }
}

async fn send(socket: &UdpSocket, counts: &mut Counts, to: SocketAddr, d: &[u8]) {
    let r = match socket.try_send_to(d, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.send_to(d, to).await,
        r => r,
    };
    match r {
        Ok(_) => counts.sent += 1,
        Err(_) => counts.send_errors += 1,
    }
}

fn write_stats(path: &Option<PathBuf>, line: &str) {
    if let Some(p) = path {
        let tmp = p.with_extension("tmp");
        let ok = std::fs::File::create(&tmp).and_then(|mut f| writeln!(f, "{line}"));
        if ok.is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
}

pub(crate) async fn run(args: TrunkArgs) -> std::io::Result<()> {
    let SocketAddr::V4(listen) = args.listen else {
        return Err(std::io::Error::other("--listen: an IPv4 address"));
    };
    let socket = udp_socket(*listen.ip(), listen.port())?;
    let me = socket.local_addr()?;
    let now = Instant::now();
    let mut trunk = Trunk {
        name: args.name.clone(),
        contact: format!("<sip:uas@{me}>"),
        numbers: args.emergency_numbers.clone(),
        answerer: Answerer::new(me, &args.name, Mode::Answer, true),
        kit: UasStats::default(),
        seen: Seen::new(now),
        counts: Counts::default(),
    };
    eprintln!("trunk {} listening on udp {me}", args.name);
    let stop = stop_after(Duration::from_secs(args.duration));
    tokio::pin!(stop);
    // The kit's UAS is polled for its due 2xx retransmissions; the stats
    // file is refreshed every 100 polls.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let data = Bytes::copy_from_slice(&buf[..n]);
                for d in trunk.on_datagram(Instant::now(), data, from) {
                    send(&socket, &mut trunk.counts, from, &d).await;
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                for o in trunk.answerer.poll(now, &trunk.kit) {
                    send(&socket, &mut trunk.counts, o.to, &o.bytes).await;
                }
                trunk.seen.age(now);
                ticks += 1;
                if ticks.is_multiple_of(100) {
                    write_stats(&args.stats, &trunk.summary());
                }
            }
        }
    }
    let line = trunk.summary();
    write_stats(&args.stats, &line);
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers() -> Vec<String> {
        ["999", "112", "911"].map(String::from).to_vec()
    }

    #[test]
    fn emergency_request_uris() {
        let n = numbers();
        for u in [
            "sip:999@emergency.example.net",
            "sip:112@127.0.0.1:5060;user=phone",
            "tel:911",
            "urn:service:sos",
            "urn:service:sos.police",
            "SIP:999@x",
        ] {
            assert!(is_emergency(u.as_bytes(), &n), "{u}");
        }
        for u in [
            "sip:+442079460000@127.0.0.1:5060",
            "sip:9999@x",
            "sip:99@x",
            "sip:x@999",
            "urn:service:counseling",
        ] {
            assert!(!is_emergency(u.as_bytes(), &n), "{u}");
        }
    }

    fn invite(uri: &str, branch: &str) -> Bytes {
        Bytes::from(format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}\r\n\
             Record-Route: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:a@b>;tag=1\r\nTo: <{uri}>\r\n\
             Call-ID: {branch}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    fn trunk() -> Trunk {
        let me = "127.0.0.1:5070".parse().unwrap();
        Trunk {
            name: "primary".into(),
            contact: format!("<sip:uas@{me}>"),
            numbers: numbers(),
            answerer: Answerer::new(me, "primary", Mode::Answer, true),
            kit: UasStats::default(),
            seen: Seen::new(Instant::now()),
            counts: Counts::default(),
        }
    }

    #[test]
    fn answers_and_counts_both_kinds_of_invite() {
        let mut t = trunk();
        let gw = "127.0.0.1:5060".parse().unwrap();
        let now = Instant::now();
        for (uri, branch) in [
            ("sip:999@x", "e1"),
            ("sip:999@x", "e1"),
            ("sip:+442079460000@x", "o1"),
            ("sip:+442079460000@x", "o1"),
            ("sip:+442079460000@x", "o2"),
        ] {
            let out = t.on_datagram(now, invite(uri, branch), gw);
            let codes: Vec<u16> = out
                .iter()
                .map(|b| Message::parse(b.clone()).unwrap().status().unwrap())
                .collect();
            assert_eq!(codes, [100, 180, 200], "{uri} {branch}");
            let ok = Message::parse(out[2].clone()).unwrap();
            assert!(ok.has_record_route());
            assert!(ok.to().unwrap().tag().is_some());
        }
        assert_eq!(t.kit.invites.load(Ordering::Relaxed), 1);
        assert_eq!(t.counts.emergency_datagrams, 2);
        assert_eq!(
            (t.counts.invites_other, t.counts.invites_other_retrans),
            (2, 1)
        );
        let bye = String::from_utf8(invite("sip:999@x", "b1").to_vec())
            .unwrap()
            .replace("INVITE", "BYE");
        let out = t.on_datagram(now, Bytes::from(bye), gw);
        assert_eq!(out.len(), 1);
        assert_eq!(t.counts.byes, 1);
        let s = t.summary();
        assert!(s.contains(" invites_emergency=1 "), "{s}");
        assert!(s.contains(" invites_other=2 "), "{s}");
    }

    #[test]
    fn branches_are_forgotten_after_two_generations() {
        let t0 = Instant::now();
        let mut s = Seen::new(t0);
        assert!(s.insert(1));
        assert!(!s.insert(1));
        s.age(t0 + REMEMBER);
        assert!(!s.insert(1), "still remembered in the previous generation");
        s.age(t0 + 2 * REMEMBER);
        assert!(s.insert(1));
    }
}
