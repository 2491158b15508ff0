//! `limits:`: per-source rate limits and state caps (every limit absent
//! means no limit), and the TCP bounds (which have defaults).
//!
//! ```yaml
//! limits:
//!   per_source: {rate: 100, burst: 200}             # new non-emergency requests/s per source
//!   per_source_emergency: {rate: 1000, burst: 2000} # new emergency requests/s per source
//!   over_limit: reject                              # reject (503 + Retry-After) | drop
//!   max_calls: 20000
//!   max_transactions: 100000
//!   tcp:
//!     max_connections: 4096
//!     max_connections_per_ip: 256
//!     message_timeout: 10s
//!     write_queue_bytes: 1048576
//! ```

use lifeline_proxy::{LimitsConfig, OverLimit, Rate};
use serde_saphyr::Spanned;

use super::super::raw::{RawLimits, RawRate, RawTcpLimits};
use super::{Checked, Validator};
use lifeline_io::TcpLimits;

impl Validator<'_> {
    /// `limits:` into the proxy's limits and the TCP bounds.
    pub(super) fn limits(
        &mut self,
        raw: Option<&Spanned<RawLimits>>,
    ) -> Checked<(LimitsConfig, TcpLimits)> {
        let mut cfg = LimitsConfig::default();
        let Some(raw) = raw else {
            return Some((cfg, TcpLimits::default()));
        };
        let l = &raw.value;
        let mut ok = true;
        if let Some(r) = &l.per_source {
            ok &= self
                .rate(r, "limits.per_source")
                .map(|r| cfg.per_source = Some(r))
                .is_some();
        }
        if let Some(r) = &l.per_source_emergency {
            ok &= self
                .rate(r, "limits.per_source_emergency")
                .map(|r| cfg.per_source_emergency = Some(r))
                .is_some();
        }
        const OVER: [(&str, OverLimit); 2] =
            [("reject", OverLimit::Reject), ("drop", OverLimit::Drop)];
        ok &= self.set(&l.over_limit, &mut cfg.over_limit, |v, s| {
            v.word(s, "limits.over_limit", &OVER)
        });
        ok &= self.set(&l.max_calls, &mut cfg.max_calls, |v, s| {
            v.int(
                s,
                "limits.max_calls",
                1..=u32::MAX,
                "a limit of 1 or more calls",
            )
            .map(Some)
        });
        ok &= self.set(&l.max_transactions, &mut cfg.max_transactions, |v, s| {
            v.int(
                s,
                "limits.max_transactions",
                1..=u32::MAX,
                "a limit of 1 or more transactions",
            )
            .map(Some)
        });
        if let (Some(calls), Some(txns)) = (cfg.max_calls, cfg.max_transactions) {
            if txns < calls {
                self.warning(
                    Some(raw.referenced),
                    "limits.max_transactions",
                    format!(
                        "{txns} is below max_calls ({calls}): every call holds at least one \
                         transaction, so calls will be refused at max_transactions first"
                    ),
                );
            }
        }
        let tcp = self.tcp_limits(l.tcp.as_ref());
        if ok {
            Some((cfg, tcp?))
        } else {
            None
        }
    }

    /// `{rate: N, burst: M}`: both whole numbers, rate at least 1, burst
    /// at least 1 (default: the rate, one second's worth).
    fn rate(&mut self, raw: &Spanned<RawRate>, key: &str) -> Checked<Rate> {
        let r = &raw.value;
        let Some(v) = &r.rate.0 else {
            self.error(
                Some(raw.referenced),
                key,
                "no rate: write {rate: 100, burst: 200} (requests a second, and how many \
                 may come at once)"
                    .into(),
            );
            return None;
        };
        let rate = self.int(
            v,
            &format!("{key}.rate"),
            1..=1_000_000u32,
            "1 to 1000000 a second",
        );
        let burst = match &r.burst.0 {
            Some(v) => self.int(
                v,
                &format!("{key}.burst"),
                1..=10_000_000u32,
                "1 to 10000000",
            ),
            None => rate,
        };
        Some(Rate {
            rate: rate?,
            burst: burst?,
        })
    }

    fn tcp_limits(&mut self, raw: Option<&RawTcpLimits>) -> Checked<TcpLimits> {
        let mut t = TcpLimits::default();
        let Some(raw) = raw else { return Some(t) };
        let mut ok = true;
        ok &= self.set(&raw.max_connections, &mut t.max_connections, |v, s| {
            v.int(
                s,
                "limits.tcp.max_connections",
                1..=1_000_000u32,
                "1 to 1000000",
            )
            .map(|n| n as usize)
        });
        ok &= self.set(
            &raw.max_connections_per_ip,
            &mut t.max_connections_per_ip,
            |v, s| {
                v.int(
                    s,
                    "limits.tcp.max_connections_per_ip",
                    1..=1_000_000u32,
                    "1 to 1000000",
                )
                .map(|n| n as usize)
            },
        );
        ok &= self.set(&raw.message_timeout, &mut t.message_timeout, |v, s| {
            v.positive(s, "limits.tcp.message_timeout")
        });
        ok &= self.set(&raw.write_queue_bytes, &mut t.write_queue_bytes, |v, s| {
            v.int(
                s,
                "limits.tcp.write_queue_bytes",
                65_536..=1_073_741_824u32,
                "65536 (64 KiB) to 1073741824 (1 GiB)",
            )
            .map(|n| n as usize)
        });
        ok.then_some(t)
    }
}
