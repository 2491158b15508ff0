//! What every subcommand shares: source addresses, sockets, pacing, the
//! stop signal, response counters and the process's own CPU and memory.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffers of every UDP socket here: large, so that none of ours
/// overflows. The gateway watches the host's UDP receive-buffer errors
/// (`/proc/net/snmp`, `RcvbufErrors`) to tell when it is overloaded, and a
/// tool's own overflowing socket would count there too.
pub(crate) const UDP_BUFFER: usize = 8 << 20;

/// Linux reports `/proc/PID/stat` times in USER_HZ, 100 per second on
/// every architecture Linux ships with.
const USER_HZ: f64 = 100.0;

/// The `i`-th address from `base` (127.0.2.1, 127.0.2.2, ...), which must
/// stay inside 127.0.0.0/8: every such address is bindable on Linux.
pub(crate) fn nth_addr(base: Ipv4Addr, i: u32) -> io::Result<Ipv4Addr> {
    let a = Ipv4Addr::from(u32::from(base).wrapping_add(i));
    if a.octets()[0] != 127 || u32::from(a) < u32::from(base) {
        return Err(io::Error::other(format!(
            "source address {i} from {base} leaves 127.0.0.0/8"
        )));
    }
    Ok(a)
}

/// A non-blocking UDP socket on `ip` (port from the OS) with large buffers.
pub(crate) fn udp_socket(ip: Ipv4Addr, port: u16) -> io::Result<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps them at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(UDP_BUFFER);
    let _ = s.set_send_buffer_size(UDP_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, port)).into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Sends at `rate` per second on average: [`Pacer::due`] says how many are
/// due now. A tool starved of CPU catches up, but by at most `max_burst`
/// worth of messages at once; what it could not send in time is counted
/// as skipped, so the rate achieved is reported, never assumed.
#[derive(Debug)]
pub(crate) struct Pacer {
    start: Instant,
    rate: u64,
    /// Messages due so far (sent or skipped).
    done: u64,
    max_burst: u64,
    pub(crate) skipped: u64,
}

impl Pacer {
    pub(crate) fn new(rate: u64, max_burst: Duration) -> Self {
        let max_burst = (rate as u128 * max_burst.as_micros() / 1_000_000).max(1) as u64;
        Self {
            start: Instant::now(),
            rate,
            done: 0,
            max_burst,
            skipped: 0,
        }
    }

    /// How many to send now.
    pub(crate) fn due(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_micros();
        let target = (self.rate as u128 * elapsed / 1_000_000) as u64;
        let mut n = target.saturating_sub(self.done);
        if n > self.max_burst {
            self.skipped += n - self.max_burst;
            n = self.max_burst;
        }
        self.done = target;
        n
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Resolves after `duration`, or at SIGTERM or SIGINT, whichever is first;
/// says which.
pub(crate) async fn stop_after(duration: Duration) -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::time::sleep(duration) => "duration",
        _ = term.recv() => "sigterm",
        _ = tokio::signal::ctrl_c() => "sigint",
    }
}

/// Responses (and anything else) arriving at a flooder, by status.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    pub(crate) r100: AtomicU64,
    /// 180, 183 and any other provisional but 100.
    pub(crate) r18x: AtomicU64,
    pub(crate) r2xx: AtomicU64,
    pub(crate) r503: AtomicU64,
    pub(crate) r4xx: AtomicU64,
    /// 3xx, 5xx but 503, 6xx.
    pub(crate) other: AtomicU64,
    /// Datagrams that are no SIP response at all.
    pub(crate) not_response: AtomicU64,
}

impl Responses {
    /// Count one datagram received.
    pub(crate) fn count(&self, d: &[u8]) {
        let c = match status(d) {
            Some(100) => &self.r100,
            Some(101..=199) => &self.r18x,
            Some(200..=299) => &self.r2xx,
            Some(503) => &self.r503,
            Some(400..=499) => &self.r4xx,
            Some(_) => &self.other,
            None => &self.not_response,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn total(&self) -> u64 {
        [
            &self.r100,
            &self.r18x,
            &self.r2xx,
            &self.r503,
            &self.r4xx,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// ` resp_100=N resp_18x=N ...`
    pub(crate) fn fields(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            " resp_100={} resp_18x={} resp_2xx={} resp_503={} resp_4xx={} resp_other={} not_response={}",
            g(&self.r100),
            g(&self.r18x),
            g(&self.r2xx),
            g(&self.r503),
            g(&self.r4xx),
            g(&self.other),
            g(&self.not_response)
        )
    }
}

/// The status code of a SIP response (`SIP/2.0 NNN ...`), if it is one.
pub(crate) fn status(d: &[u8]) -> Option<u16> {
    let rest = d.strip_prefix(b"SIP/2.0 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u16, |a, &b| a * 10 + u16::from(b - b'0')),
    )
}

/// ` cpu_s=N peak_rss_kib=N`: this process's CPU (user + system) and its
/// peak resident set, from /proc/self.
pub(crate) fn own_usage() -> String {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and
            // may hold spaces: state is field 3, utime 14, stime 15.
            let rest = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / USER_HZ)
        });
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        });
    let mut out = String::new();
    match cpu {
        Some(c) => {
            let _ = write!(out, " cpu_s={c:.2}");
        }
        None => out.push_str(" cpu_s=na"),
    }
    match hwm {
        Some(k) => {
            let _ = write!(out, " peak_rss_kib={k}");
        }
        None => out.push_str(" peak_rss_kib=na"),
    }
    out
}

/// A small, fast pseudo-random generator (xorshift64*): garbage and
/// jitter need variety, not quality.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A number unique to this run, for Call-IDs, branches and tags.
pub(crate) fn run_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_consecutive_and_stay_on_loopback() {
        let base: Ipv4Addr = "127.0.2.255".parse().unwrap();
        assert_eq!(nth_addr(base, 0).unwrap(), base);
        assert_eq!(
            nth_addr(base, 1).unwrap(),
            "127.0.3.0".parse::<Ipv4Addr>().unwrap()
        );
        assert!(nth_addr("127.255.255.255".parse().unwrap(), 1).is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(status(b"SIP/2.0 100 Trying\r\n"), Some(100));
        assert_eq!(status(b"SIP/2.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status(b"SIP/2.0 20 OK\r\n"), None);
        assert_eq!(status(b"INVITE sip:a@b SIP/2.0\r\n"), None);
        let r = Responses::default();
        for d in [
            &b"SIP/2.0 100 T"[..],
            b"SIP/2.0 180 R",
            b"SIP/2.0 200 OK",
            b"junk",
        ] {
            r.count(d);
        }
        assert_eq!(r.total(), 3);
        assert!(r.fields().contains(" not_response=1"));
    }

    #[test]
    fn the_pacer_keeps_the_average_and_caps_a_catch_up() {
        let mut p = Pacer::new(10_000, Duration::from_millis(10));
        let t0 = p.start;
        assert_eq!(p.due(t0 + Duration::from_millis(1)), 10);
        assert_eq!(p.due(t0 + Duration::from_millis(2)), 10);
        // Starved for a second: 100 sent at once, the rest skipped.
        assert_eq!(p.due(t0 + Duration::from_millis(1002)), 100);
        assert_eq!(p.skipped, 10_000 - 100);
    }
}
