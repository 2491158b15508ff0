//! `flood trickle`: many TCP connections that each send the start of an
//! INVITE one byte at a time (slowloris): every connection is busy, none
//! ever completes a message. Counts what the server does with them:
//! accepted, closed (and when), still open at the end.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::common::{nth_addr, own_usage, stop_after, Rng};

#[derive(Debug, clap::Args)]
pub(crate) struct TrickleArgs {
    /// Where to connect (the gateway's TCP listener).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// Connections, all sources together.
    #[arg(long, default_value_t = 2000)]
    connections: u32,
    /// Source addresses, consecutive from --source-base; connections are
    /// spread evenly over them (connections / sources each).
    #[arg(long, default_value_t = 8)]
    sources: u32,
    #[arg(long, default_value = "127.0.6.1")]
    source_base: Ipv4Addr,
    /// Seconds to run, from the first connection attempt.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Milliseconds between the bytes each connection writes.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// New connections per second while opening them.
    #[arg(long, default_value_t = 1000)]
    connect_rate: u64,
    /// Seconds a connection attempt may take.
    #[arg(long, default_value_t = 5)]
    connect_timeout: u64,
}

/// What the connections saw, all together.
#[derive(Debug, Default)]
struct Counts {
    attempted: AtomicU64,
    connected: AtomicU64,
    connect_failed: AtomicU64,
    /// Closed by the server: a read of 0 (FIN), a reset, a failed write.
    closed_by_server: AtomicU64,
    /// Of those, closed with a reset or a write error rather than a FIN.
    reset: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// Seconds each closed connection had been open when it was closed.
    closed_after: Mutex<Vec<f64>>,
    /// Seconds from the start of the run to each close.
    closed_at: Mutex<Vec<f64>>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The bytes the connections write, one at a time: the start of an INVITE
/// (over and over, should a run outlast it).
const PAYLOAD: &[u8] = b"INVITE sip:+442079460000@gw.example.net SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.6.1:40000;branch=z9hG4bK-trickle\r\n\
Max-Forwards: 70\r\n\
From: <sip:+441632960001@flood.example.net>;tag=trickle\r\n\
To: <sip:+442079460000@gw.example.net>\r\n\
Call-ID: trickle@127.0.6.1\r\n\
CSeq: 1 INVITE\r\n";

/// Connect from `src`, then write a byte every `interval` until the
/// server closes the connection or `stop` changes.
async fn trickle(
    src: Ipv4Addr,
    args: Arc<TrickleArgs>,
    first_byte: Duration,
    counts: Arc<Counts>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> Option<SocketAddr> {
    bump(&counts.attempted);
    let sock = TcpSocket::new_v4().ok()?;
    if sock
        .bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))
        .is_err()
    {
        bump(&counts.connect_failed);
        return None;
    }
    let connect = tokio::time::timeout(
        Duration::from_secs(args.connect_timeout),
        sock.connect(args.target),
    );
    let stream = tokio::select! {
        r = connect => match r {
            Ok(Ok(s)) => s,
            _ => {
                bump(&counts.connect_failed);
                return None;
            }
        },
        _ = stop.changed() => return None,
    };
    bump(&counts.connected);
    let opened = Instant::now();
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first_byte, interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = [0u8; 4096];
    let mut i = 0usize;
    let closed = |reset: bool| {
        bump(&counts.closed_by_server);
        if reset {
            bump(&counts.reset);
        }
        let now = Instant::now();
        counts
            .closed_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(now.duration_since(opened).as_secs_f64());
        counts
            .closed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(now.duration_since(t0).as_secs_f64());
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let byte = [PAYLOAD[i % PAYLOAD.len()]];
                i += 1;
                if wr.write_all(&byte).await.is_err() {
                    closed(true);
                    break;
                }
                bump(&counts.bytes_sent);
            }
            r = rd.read(&mut buf) => match r {
                Ok(0) => { closed(false); break; }
                Ok(n) => { counts.bytes_received.fetch_add(n as u64, Ordering::Relaxed); }
                Err(_) => { closed(true); break; }
            },
            _ = stop.changed() => return Some(SocketAddr::V4(SocketAddrV4::new(src, 0))),
        }
    }
    None
}

/// `p`-th percentile (0..=100) of sorted `v`, "na" if empty.
fn pct(v: &[f64], p: usize) -> String {
    if v.is_empty() {
        return "na".into();
    }
    let i = ((v.len() * p).div_ceil(100)).clamp(1, v.len()) - 1;
    format!("{:.1}", v[i])
}

pub(crate) async fn run(args: TrickleArgs) -> std::io::Result<()> {
    let r = measure(args).await?;
    eprintln!(
        "trickle: {} connections accepted, {} closed by the server, {} still open at the end",
        r.connected, r.closed_by_server, r.still_open
    );
    println!("{}", r.line);
    Ok(())
}

/// What a run saw: the summary line, and its main counts for tests.
#[derive(Debug)]
struct Report {
    line: String,
    connected: u64,
    closed_by_server: u64,
    still_open: u64,
}

async fn measure(args: TrickleArgs) -> std::io::Result<Report> {
    if args.sources == 0 || args.connections == 0 || args.connect_rate == 0 {
        return Err(std::io::Error::other(
            "--sources, --connections and --connect-rate must be > 0",
        ));
    }
    let mut srcs = Vec::new();
    for i in 0..args.sources {
        srcs.push(nth_addr(args.source_base, i)?);
    }
    let args = Arc::new(args);
    let counts = Arc::new(Counts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    let stop = stop_after(Duration::from_secs(args.duration));
    tokio::pin!(stop);
    let mut rng = Rng::new(crate::common::run_id());
    let mut tasks = Vec::new();
    let gap = Duration::from_micros(1_000_000 / args.connect_rate);
    let mut next = tokio::time::Instant::now();
    let mut why = None;
    // Open the connections at --connect-rate, each on the next source in
    // turn; each writes its first byte at a random point of its first
    // interval, so the writes spread evenly over time.
    for n in 0..args.connections {
        tokio::select! {
            w = &mut stop => { why = Some(w); break; }
            _ = tokio::time::sleep_until(next) => {}
        }
        next += gap;
        let src = srcs[(n % args.sources) as usize];
        let first = Duration::from_millis(rng.below(args.interval_ms.max(1)));
        tasks.push(tokio::spawn(trickle(
            src,
            args.clone(),
            first,
            counts.clone(),
            t0,
            stop_rx.clone(),
        )));
    }
    let why = match why {
        Some(w) => w,
        None => stop.await,
    };
    let _ = stop_tx.send(true);
    // Connections still open when the run ended, by source address.
    let mut open_by_src = vec![0u64; srcs.len()];
    for t in tasks {
        if let Ok(Some(SocketAddr::V4(a))) = t.await {
            if let Some(i) = srcs.iter().position(|s| s == a.ip()) {
                open_by_src[i] += 1;
            }
        }
    }
    let still_open: u64 = open_by_src.iter().sum();
    let mut after = std::mem::take(
        &mut *counts
            .closed_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let mut at = std::mem::take(
        &mut *counts
            .closed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    after.sort_by(f64::total_cmp);
    at.sort_by(f64::total_cmp);
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let per_src: Vec<String> = open_by_src.iter().map(u64::to_string).collect();
    let line = format!(
        "flood: mode=trickle stopped_by={why} target={} sources={} attempted={} connected={} \
         connect_failed={} closed_by_server={} closed_reset={} still_open={still_open} \
         still_open_per_source={} bytes_sent={} bytes_received={} \
         closed_after_s_min={} closed_after_s_p50={} closed_after_s_max={} \
         first_close_at_s={} last_close_at_s={} elapsed_s={:.1}{}",
        args.target,
        args.sources,
        g(&counts.attempted),
        g(&counts.connected),
        g(&counts.connect_failed),
        g(&counts.closed_by_server),
        g(&counts.reset),
        per_src.join(","),
        g(&counts.bytes_sent),
        g(&counts.bytes_received),
        pct(&after, 0),
        pct(&after, 50),
        pct(&after, 100),
        pct(&at, 0),
        pct(&at, 100),
        t0.elapsed().as_secs_f64(),
        own_usage()
    );
    Ok(Report {
        line,
        connected: g(&counts.connected),
        closed_by_server: g(&counts.closed_by_server),
        still_open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(pct(&v, 0), "1.0");
        assert_eq!(pct(&v, 50), "2.0");
        assert_eq!(pct(&v, 100), "4.0");
        assert_eq!(pct(&[], 50), "na");
    }

    #[tokio::test]
    async fn counts_a_server_that_closes_and_one_that_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        // The server keeps the first connection and closes the second
        // after its first byte.
        tokio::spawn(async move {
            let mut kept = Vec::new();
            for n in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                if n == 0 {
                    kept.push(s);
                } else {
                    let mut b = [0u8; 1];
                    let _ = s.read(&mut b).await;
                    drop(s);
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(kept);
        });
        let args = TrickleArgs {
            target,
            connections: 2,
            sources: 2,
            source_base: "127.0.6.1".parse().unwrap(),
            duration: 1,
            interval_ms: 100,
            connect_rate: 1000,
            connect_timeout: 1,
        };
        let r = measure(args).await.unwrap();
        assert_eq!(
            (r.connected, r.closed_by_server, r.still_open),
            (2, 1, 1),
            "{}",
            r.line
        );
        assert!(r.line.contains(" still_open_per_source="), "{}", r.line);
    }
}
