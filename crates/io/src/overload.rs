//! Whether the gateway itself is overloaded, from its own queue, its drop
//! counters, the kernel's (`/proc/net/snmp`) and how late its timer wakes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::stats::IoStats;

/// The share of time the core may be held before the gateway counts as
/// overloaded: past it, new work would only queue.
const BUSY_SHARE: f64 = 0.9;

/// Whether the gateway itself is overloaded: its input queue filling, inputs
/// or kernel socket buffers dropping, or the loop waking late. Evidence seen
/// while overloaded (timeouts above all) says more about the gateway than
/// about the trunks, so the health checker is told.
#[derive(Debug, Default)]
pub(crate) struct Overload {
    /// How late the timer thread woke since the last check (the largest).
    pub(crate) lag: Duration,
    queue_drops: u64,
    socket_drops: u64,
    /// The core's busy time as of the last check, and when that was.
    busy: Option<(Instant, u64)>,
    /// What the health checker was last told.
    pub(crate) reported: bool,
}

impl Overload {
    /// Look at the counters since the last check, at `now`: `queued`
    /// inputs of a queue that holds `capacity`. Returns whether the gateway
    /// is overloaded (for the health checker: any sign, the host's kernel
    /// drops included) and whether to shed new calls (the gateway's own
    /// signs only: its queue, its drops, a late timer, the core busy over
    /// 90 % of the time — another program's full socket buffer on the same
    /// host is no reason to refuse calls).
    pub(crate) fn check(
        &mut self,
        now: Instant,
        queued: usize,
        capacity: usize,
        stats: &IoStats,
    ) -> (bool, bool) {
        let busy = self.busy_share(now, stats.core_busy_ns.load(Ordering::Relaxed));
        let (lag, drops) = (self.lag, stats.queue_drops.load(Ordering::Relaxed));
        let own = queued > capacity / 4
            || drops > self.queue_drops
            || lag > Duration::from_millis(100)
            || busy > BUSY_SHARE;
        let any = self.check_with(queued, capacity, stats, udp_receive_errors());
        (any || own, own)
    }

    /// The share of the time since the last check the core was held.
    fn busy_share(&mut self, now: Instant, busy_ns: u64) -> f64 {
        let share = match self.busy {
            Some((at, ns)) if now > at => {
                busy_ns.saturating_sub(ns) as f64 / now.duration_since(at).as_nanos() as f64
            }
            _ => 0.0,
        };
        self.busy = Some((now, busy_ns));
        share
    }

    /// [`Overload::check`] with the kernel's drop count given (`None`:
    /// unknown, taken as unchanged).
    fn check_with(
        &mut self,
        queued: usize,
        capacity: usize,
        stats: &IoStats,
        kernel_drops: Option<u64>,
    ) -> bool {
        let drops = stats.queue_drops.load(Ordering::Relaxed);
        let socket = kernel_drops.unwrap_or(self.socket_drops);
        stats.socket_drops.store(socket, Ordering::Relaxed);
        let overloaded = queued > capacity / 4
            || drops > self.queue_drops
            || socket > self.socket_drops
            || self.lag > Duration::from_millis(100);
        self.queue_drops = drops;
        self.socket_drops = socket;
        self.lag = Duration::ZERO;
        overloaded
    }
}

/// The kernel's count of UDP datagrams dropped for want of receive buffer
/// (Linux `/proc/net/snmp`, `Udp: RcvbufErrors`), for every socket of the
/// host: a rise means someone's socket overflowed, most likely ours.
///
/// Read as `/proc/self/net/snmp`, the file `/proc/net` links to: systemd's
/// `ProcSubset=pid` (deploy/lifeline.service) hides `/proc/net` but not the
/// process's own directory.
fn udp_receive_errors() -> Option<u64> {
    rcvbuf_errors(&std::fs::read_to_string("/proc/self/net/snmp").ok()?)
}

/// `RcvbufErrors` from the text of `/proc/net/snmp`: the first `Udp:` line
/// names the columns, the second holds the values.
fn rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcvbuf_errors_from_proc_net_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            Udp: 9040 12 3 9100 7 0 0 0 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            UdpLite: 0 0 0 0 99 0\n";
        assert_eq!(rcvbuf_errors(snmp), Some(7));
        assert_eq!(rcvbuf_errors("Udp: InDatagrams\nUdp: 1\n"), None);
        assert_eq!(rcvbuf_errors(""), None);
    }

    /// The path the gateway reads is there and holds the counter (a wrong
    /// path would leave socket drops unseen, and overload undetected).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_counter_is_read() {
        assert!(udp_receive_errors().is_some());
    }

    #[test]
    fn the_core_busy_share_is_measured_between_checks() {
        let mut o = Overload::default();
        let t0 = Instant::now();
        assert_eq!(o.busy_share(t0, 0), 0.0, "nothing to compare with yet");
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(o.busy_share(t1, 95_000_000), 0.95);
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(o.busy_share(t2, 95_000_000 + 50_000_000), 0.5);
        const { assert!(0.95 > BUSY_SHARE && 0.5 < BUSY_SHARE) };
    }

    #[test]
    fn a_late_timer_or_new_drops_mean_overloaded_once() {
        let stats = IoStats::default();
        let mut o = Overload::default();
        let check = |o: &mut Overload, queued, kernel| o.check_with(queued, 1024, &stats, kernel);
        // (As before the move to lifeline-io: the first reading counts the
        // host's drops so far.)
        assert!(check(&mut o, 0, Some(5)), "the first reading");
        assert!(!check(&mut o, 0, Some(5)));
        assert!(!check(&mut o, 256, None), "a quarter full is not yet");
        assert!(check(&mut o, 257, None), "over a quarter full");
        assert!(check(&mut o, 0, Some(6)), "the kernel dropped");
        stats.queue_drops.store(1, Ordering::Relaxed);
        assert!(check(&mut o, 0, Some(6)), "we dropped");
        assert!(!check(&mut o, 0, Some(6)), "the same drops again");
        o.lag = Duration::from_millis(101);
        assert!(check(&mut o, 0, None), "woke late");
        assert!(!check(&mut o, 0, None), "a check resets the lag");
    }
}
