//! `flood invite`: well-formed, non-emergency INVITEs at a steady rate from
//! one or many source addresses, every one a new call (its own Call-ID,
//! branch and From tag). Responses are read and counted by status, never
//! answered: no ACK, no CANCEL, as a flooder or a dialler gone wrong does.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::MissedTickBehavior;

use crate::common::{nth_addr, own_usage, run_id, stop_after, udp_socket, Pacer, Responses};

/// What `flood invite` was asked to do.
#[derive(Debug, clap::Args)]
pub(crate) struct InviteArgs {
    /// Where to send (the gateway's UDP listener).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// INVITEs per second, all sources together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Source addresses: one UDP socket on each of this many consecutive
    /// addresses from --source-base; INVITEs are sent from them in turn.
    #[arg(long, default_value_t = 1)]
    sources: u32,
    /// The first source address.
    #[arg(long, default_value = "127.0.2.1")]
    source_base: Ipv4Addr,
    /// Seconds to send for.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds to keep reading responses after the last INVITE.
    #[arg(long, default_value_t = 2)]
    linger: u64,
    /// The number dialled: the user part of the Request-URI and To.
    #[arg(long, default_value = "+442079460000")]
    number: String,
    /// Most milliseconds' worth of INVITEs sent at once when catching up
    /// after the flooder was starved of CPU; beyond that they are skipped
    /// (and counted).
    #[arg(long, default_value_t = 20)]
    max_burst_ms: u64,
}

/// One source: its socket and what every INVITE from it shares.
#[derive(Debug)]
struct Source {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    sdp: String,
}

/// Write a new INVITE, the `seq`-th of run `run`, from `src` into `buf`.
fn write_invite(
    buf: &mut Vec<u8>,
    target: SocketAddr,
    number: &str,
    src: &Source,
    run: u64,
    seq: u64,
) {
    buf.clear();
    let a = src.addr;
    let ip = a.ip();
    let caller = seq % 1000;
    let _ = write!(
        buf,
        "INVITE sip:{number}@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK-fl{run:x}.{seq:x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+441632960{caller:03}@flood.example.net>;tag=fl{seq:x}\r\n\
         To: <sip:{number}@{target}>\r\n\
         Call-ID: fl{run:x}.{seq:x}@{ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+441632960{caller:03}@{a}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {}",
        src.sdp.len(),
        src.sdp
    );
}

pub(crate) async fn run(args: InviteArgs) -> std::io::Result<()> {
    if args.sources == 0 || args.rate == 0 {
        return Err(std::io::Error::other("--sources and --rate must be > 0"));
    }
    let responses = Arc::new(Responses::default());
    let mut sources = Vec::new();
    let mut readers = Vec::new();
    for i in 0..args.sources {
        let ip = nth_addr(args.source_base, i)?;
        let socket = Arc::new(udp_socket(ip, 0)?);
        let addr = socket.local_addr()?;
        let sdp = format!(
            "v=0\r\no=flood 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        // Each socket's responses, read as they come.
        let (s, r) = (socket.clone(), responses.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                r.count(&buf[..n]);
            }
        }));
        sources.push(Source { socket, addr, sdp });
    }

    let run = run_id();
    let mut pacer = Pacer::new(args.rate, Duration::from_millis(args.max_burst_ms));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let stop = stop_after(Duration::from_secs(args.duration));
    tokio::pin!(stop);
    let (mut seq, mut sent, mut errors, mut blocked) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = Vec::with_capacity(1024);
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            _ = tick.tick() => {}
        }
        for _ in 0..pacer.due(tokio::time::Instant::now().into_std()) {
            let src = &sources[(seq % sources.len() as u64) as usize];
            write_invite(&mut buf, args.target, &args.number, src, run, seq);
            seq += 1;
            match src.socket.try_send_to(&buf, args.target) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => blocked += 1,
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
    println!(
        "flood: mode=invite stopped_by={why} target={} sources={} rate={} sent={sent} \
         achieved_rate={:.0} skipped={} send_blocked={blocked} send_errors={errors} \
         responses={}{}{}",
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
    use lifeline_sip::{check_datagram, Message, Verdict};

    #[tokio::test]
    async fn the_invite_is_valid_sip_and_not_an_emergency_call() {
        let socket = Arc::new(udp_socket("127.0.0.1".parse().unwrap(), 0).unwrap());
        let addr = socket.local_addr().unwrap();
        let src = Source {
            socket,
            addr,
            sdp: "v=0\r\n".into(),
        };
        let mut buf = Vec::new();
        let target = "127.0.0.1:5060".parse().unwrap();
        write_invite(&mut buf, target, "+442079460000", &src, 0xabc, 7);
        let m = Message::parse(Bytes::from(buf.clone())).unwrap();
        assert!(matches!(
            check_datagram(Bytes::from(buf)).1,
            Verdict::Accept
        ));
        assert_eq!(
            m.request_uri_bytes().unwrap(),
            b"sip:+442079460000@127.0.0.1:5060"
        );
        assert_eq!(m.call_id().unwrap(), b"flabc.7@127.0.0.1");
        assert_eq!(m.top_via().unwrap().branch().unwrap(), b"z9hG4bK-flabc.7");
        assert_eq!(m.max_forwards().unwrap(), Some(70));
    }
}
