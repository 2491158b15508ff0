//! `capture:`: every SIP message, or those of some calls, exported to a
//! HEP collector (Homer) over UDP.
//!
//! ```yaml
//! capture:
//!   hep: 127.0.0.1:9060      # the collector (required)
//!   calls: all               # all | emergency | failed
//!   node_id: 2001            # HEP capture agent id (default 1)
//!   password: secret         # HEP authentication key (default none)
//!   queue: 8192              # messages waiting for the capture thread
//!   hold: 5m                 # failed: how long a call's messages wait for its outcome
//!   hold_bytes: 33554432     # emergency, failed: bytes held at most
//! ```

use std::time::Duration;

use lifeline_io::{CaptureCalls, CaptureConfig};
use serde_saphyr::Spanned;

use super::super::raw::RawCapture;
use super::{Checked, Validator};

/// The longest an authentication key may be.
const MAX_PASSWORD: usize = 1024;

impl Validator<'_> {
    /// `capture:` into the capture's settings; `None` when it is not set.
    pub(super) fn capture(
        &mut self,
        raw: Option<&Spanned<RawCapture>>,
    ) -> Checked<Option<CaptureConfig>> {
        let Some(raw) = raw else { return Some(None) };
        let c = &raw.value;
        let mut ok = true;
        let collector = match &c.hep.0 {
            None => {
                self.error(
                    Some(raw.referenced),
                    "capture.hep",
                    "missing: write the HEP collector's ip:port, e.g. `hep: 127.0.0.1:9060`".into(),
                );
                None
            }
            Some(v) => match self.ip_port(v, "capture.hep") {
                Some(a) if a.ip().is_unspecified() => {
                    self.error(
                        Some(v.referenced),
                        "capture.hep",
                        format!("{a} is a wildcard: write the collector's address"),
                    );
                    None
                }
                a => a,
            },
        };
        // A placeholder until the collector is known to be good.
        let mut cfg = CaptureConfig::new(collector.unwrap_or(([127, 0, 0, 1], 9060).into()));
        const CALLS: [(&str, CaptureCalls); 3] = [
            ("all", CaptureCalls::All),
            ("emergency", CaptureCalls::Emergency),
            ("failed", CaptureCalls::Failed),
        ];
        ok &= self.set(&c.calls, &mut cfg.calls, |v, s| {
            v.word(s, "capture.calls", &CALLS)
        });
        ok &= self.set(&c.node_id, &mut cfg.node_id, |v, s| {
            v.int(
                s,
                "capture.node_id",
                0..=u32::MAX,
                "a capture agent id, 0 to 4294967295",
            )
        });
        ok &= self.set(&c.password, &mut cfg.password, |v, s| {
            let key = "capture.password";
            let t = v.name(s, key, "the collector's authentication key")?;
            if t.len() > MAX_PASSWORD {
                v.error(
                    Some(s.referenced),
                    key,
                    format!("{} bytes: at most {MAX_PASSWORD}", t.len()),
                );
                return None;
            }
            Some(Some(t))
        });
        ok &= self.set(&c.queue, &mut cfg.queue, |v, s| {
            v.int(
                s,
                "capture.queue",
                1..=1_048_576u32,
                "1 to 1048576 messages",
            )
            .map(|n| n as usize)
        });
        ok &= self.set(&c.hold, &mut cfg.hold, |v, s| {
            v.duration_in(
                s,
                "capture.hold",
                Duration::from_secs(1),
                Some(Duration::from_secs(3600)),
            )
        });
        ok &= self.set(&c.hold_bytes, &mut cfg.hold_bytes, |v, s| {
            v.int(
                s,
                "capture.hold_bytes",
                65_536..=1_073_741_824u32,
                "65536 (64 KiB) to 1073741824 (1 GiB)",
            )
            .map(|n| n as usize)
        });
        if ok && cfg.calls == CaptureCalls::All {
            for (v, key) in [
                (&c.hold, "capture.hold"),
                (&c.hold_bytes, "capture.hold_bytes"),
            ] {
                if let Some(v) = &v.0 {
                    self.warning(
                        Some(v.referenced),
                        key,
                        "has no effect with `calls: all`: nothing is held, every message is \
                         exported as it comes"
                            .into(),
                    );
                }
            }
        }
        let collector = collector?;
        ok.then_some(Some(CaptureConfig { collector, ..cfg }))
    }
}
