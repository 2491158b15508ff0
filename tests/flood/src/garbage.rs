//! `flood garbage`: datagrams that are not usable SIP, at a steady rate,
//! from one or a few source addresses. Five kinds, in turn at random:
//!
//! - `random`: random bytes, 1 to 1400 of them;
//! - `truncated`: a well-formed INVITE cut short at a random octet;
//! - `start_line`: a bad start line (wrong version, no URI, a lower-case
//!   method with extra spaces, a status that is no number, binary) over
//!   otherwise good headers;
//! - `headers`: a good start line over bad headers (no Call-ID, a
//!   Content-Length beyond the datagram, a control character in a value,
//!   two CSeqs, a Via with no branch or host);
//! - `response`: a response no transaction asked for, well-formed or not.
//!
//! Each is the kind of datagram the gateway must reject cheaply: the
//! requests may earn a 400 (counted among the responses), the rest are
//! dropped.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::common::{nth_addr, own_usage, run_id, stop_after, udp_socket, Pacer, Responses, Rng};

#[derive(Debug, clap::Args)]
pub(crate) struct GarbageArgs {
    /// Where to send (the gateway's UDP listener).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// Datagrams per second, all sources together.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Source addresses, consecutive from --source-base.
    #[arg(long, default_value_t = 4)]
    sources: u32,
    #[arg(long, default_value = "127.0.5.1")]
    source_base: Ipv4Addr,
    /// Seconds to send for.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds to keep reading responses after the last datagram.
    #[arg(long, default_value_t = 2)]
    linger: u64,
    /// Seed of the generator (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 20)]
    max_burst_ms: u64,
}

const KINDS: [&str; 5] = ["random", "truncated", "start_line", "headers", "response"];

const BAD_START_LINES: [&str; 6] = [
    "INVITE sip:+442079460000@gw SIP/3.0",
    "INVITE SIP/2.0",
    "invite  sip:+442079460000@gw  SIP/2.0",
    "SIP/2.0 2x0 OK",
    "\u{1}\u{2}\u{3}INVITE sip:x@gw SIP/2.0",
    "GET / HTTP/1.1",
];

/// A good INVITE from `src` (`seq`-th of the run), for cutting and bending.
fn good_invite(src: SocketAddr, run: u64, seq: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(600);
    let _ = write!(
        b,
        "INVITE sip:+442079460000@gw.example.net SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-gb{run:x}.{seq:x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+441632960001@flood.example.net>;tag=gb{seq:x}\r\n\
         To: <sip:+442079460000@gw.example.net>\r\n\
         Call-ID: gb{run:x}.{seq:x}@{}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@{src}>\r\n\
         Content-Length: 0\r\n\r\n",
        src.ip()
    );
    b
}

/// The header lines of a good INVITE (everything after its start line).
fn headers_of(invite: &[u8]) -> &[u8] {
    let at = invite
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    &invite[at..]
}

/// One datagram of kind `kind` (an index into [`KINDS`]).
fn garbage(kind: usize, rng: &mut Rng, src: SocketAddr, run: u64, seq: u64) -> Vec<u8> {
    match kind {
        0 => {
            let n = 1 + rng.below(1400) as usize;
            let mut b = Vec::with_capacity(n);
            while b.len() < n {
                b.extend_from_slice(&rng.next().to_le_bytes());
            }
            b.truncate(n);
            b
        }
        1 => {
            let mut b = good_invite(src, run, seq);
            let cut = 1 + rng.below(b.len() as u64 - 2) as usize;
            b.truncate(cut);
            b
        }
        2 => {
            let inv = good_invite(src, run, seq);
            let line = BAD_START_LINES[rng.below(BAD_START_LINES.len() as u64) as usize];
            let mut b = Vec::with_capacity(inv.len() + 16);
            b.extend_from_slice(line.as_bytes());
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(headers_of(&inv));
            b
        }
        3 => {
            let s = String::from_utf8_lossy(&good_invite(src, run, seq)).into_owned();
            let bent = match rng.below(5) {
                0 => s.replacen("Call-ID: ", "X-Call-ID: ", 1),
                1 => s.replacen("Content-Length: 0", "Content-Length: 900", 1),
                2 => s.replacen("To: <", "To: \u{7}<", 1),
                3 => s.replacen(
                    "CSeq: 1 INVITE\r\n",
                    "CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n",
                    1,
                ),
                _ => s.replacen(&format!("Via: SIP/2.0/UDP {src}"), "Via: SIP/2.0/UDP ", 1),
            };
            bent.into_bytes()
        }
        _ => {
            let inv = good_invite(src, run, seq);
            let status = [
                "200 OK",
                "180 Ringing",
                "503 Service Unavailable",
                "2000 Huh",
            ][rng.below(4) as usize];
            let mut b = Vec::with_capacity(inv.len() + 16);
            b.extend_from_slice(b"SIP/2.0 ");
            b.extend_from_slice(status.as_bytes());
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(headers_of(&inv));
            b
        }
    }
}

pub(crate) async fn run(args: GarbageArgs) -> std::io::Result<()> {
    if args.sources == 0 || args.rate == 0 {
        return Err(std::io::Error::other("--sources and --rate must be > 0"));
    }
    let run = run_id();
    let mut rng = Rng::new(args.seed.unwrap_or(run));
    let responses = Arc::new(Responses::default());
    let mut sockets = Vec::new();
    let mut readers = Vec::new();
    for i in 0..args.sources {
        let s = Arc::new(udp_socket(nth_addr(args.source_base, i)?, 0)?);
        let (s2, r) = (s.clone(), responses.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = s2.recv_from(&mut buf).await {
                r.count(&buf[..n]);
            }
        }));
        let addr = s.local_addr()?;
        sockets.push((s, addr));
    }

    let mut pacer = Pacer::new(args.rate, Duration::from_millis(args.max_burst_ms));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let stop = stop_after(Duration::from_secs(args.duration));
    tokio::pin!(stop);
    let mut by_kind = [0u64; KINDS.len()];
    let (mut seq, mut sent, mut errors) = (0u64, 0u64, 0u64);
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            _ = tick.tick() => {}
        }
        for _ in 0..pacer.due(tokio::time::Instant::now().into_std()) {
            let (s, addr) = &sockets[(seq % sockets.len() as u64) as usize];
            let kind = rng.below(KINDS.len() as u64) as usize;
            let d = garbage(kind, &mut rng, *addr, run, seq);
            seq += 1;
            match s.try_send_to(&d, args.target) {
                Ok(_) => {
                    sent += 1;
                    by_kind[kind] += 1;
                }
                Err(_) => errors += 1,
            }
        }
    };
    let sending = pacer.elapsed().as_secs_f64();
    if why == "duration" {
        tokio::time::sleep(Duration::from_secs(args.linger)).await;
    }
    for r in readers {
        r.abort();
    }
    let kinds: String = KINDS
        .iter()
        .zip(by_kind)
        .map(|(k, n)| format!(" sent_{k}={n}"))
        .collect();
    println!(
        "flood: mode=garbage stopped_by={why} target={} sources={} rate={} sent={sent} \
         achieved_rate={:.0} skipped={} send_errors={errors}{kinds} responses={}{}{}",
        args.target,
        args.sources,
        args.rate,
        sent as f64 / sending.max(1e-3),
        pacer.skipped,
        responses.total(),
        responses.fields(),
        own_usage()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use lifeline_sip::{check_datagram, Verdict};

    #[test]
    fn no_kind_is_a_usable_request() {
        let src = "127.0.5.1:40000".parse().unwrap();
        let mut rng = Rng::new(7);
        assert!(matches!(
            check_datagram(Bytes::from(good_invite(src, 1, 1))).1,
            Verdict::Accept
        ));
        for seq in 0..2000 {
            let kind = (seq % KINDS.len() as u64) as usize;
            let d = garbage(kind, &mut rng, src, 1, seq);
            let (_, v) = check_datagram(Bytes::from(d.clone()));
            // A stray but well-formed response is accepted by the parser:
            // the proxy drops it, matching no transaction.
            if kind != 4 {
                assert!(
                    !matches!(v, Verdict::Accept),
                    "kind {} accepted: {}",
                    KINDS[kind],
                    String::from_utf8_lossy(&d)
                );
            }
        }
    }
}
