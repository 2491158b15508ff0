//! What is refreshed on a tick, from the proxy's and the health checker's
//! current view: gauges, and the counters the proxy keeps cumulatively.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use lifeline_health::{Health, State};
use lifeline_io::IoStats;
use lifeline_proxy::{Proxy, Stats};
use prometheus_client::metrics::counter::Counter;

use super::labels::{
    AdmissionLabels, CaptureDropLabels, DirectionLabels, KindLabels, MessageLabels, Name,
    ProgressLabels, RouteLabels, StateLabels, TcpClosedLabels, TrunkLabels,
};
use super::Metrics;

const STATES: [State; 4] = [State::Up, State::Suspect, State::Down, State::Recovering];

/// The proxy's cumulative counters as last seen by [`Metrics::set_gauges`],
/// and the IO side's TCP ones as last seen by [`Metrics::set_tcp`], to turn
/// them into counter increments.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Seen {
    requests: u64,
    responses: u64,
    retransmissions: u64,
    tcp_refused_per_ip: u64,
    tcp_message_timeouts: u64,
    tcp_write_queue_overflows: u64,
    tcp_accept_paused: u64,
    tcp_framing_errors: u64,
    /// IoStats' UDP syscalls and datagrams (in, out), as last seen.
    udp: [u64; 4],
    /// IoStats::admission_refused, as last seen.
    admission: [[u64; 2]; lifeline_proxy::Refusal::ALL.len()],
    /// IoStats' capture counters, as last seen: exported, and dropped by
    /// reason.
    capture_exported: u64,
    capture_dropped: [u64; lifeline_io::CaptureDrop::ALL.len()],
}

/// Add to `c` what a cumulative count gained since `old`, and remember
/// `now`. A smaller value means a new count (a reload or restart of the
/// core): everything it has seen is added.
fn count_since(old: &mut u64, now: u64, c: &Counter) {
    c.inc_by(now.checked_sub(*old).unwrap_or(now));
    *old = now;
}

impl Metrics {
    /// Refresh the gauges (and the counters the proxy keeps cumulatively)
    /// from the proxy's and the health checker's current view. Call it on a
    /// regular tick, about once a second.
    pub(crate) fn set_gauges(&self, stats: &Stats, health: &Health) {
        for kind in ["server", "client"] {
            let n = if kind == "server" {
                stats.server_transactions
            } else {
                stats.client_transactions
            };
            self.transactions
                .get_or_create(&KindLabels { kind })
                .set(to_i64(n));
        }
        self.lingering.set(to_i64(stats.lingering));
        self.calls_active.set(to_i64(stats.calls));
        self.dialogs.set(to_i64(stats.dialogs));
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let inc = count_since;
            let received = |kind| MessageLabels {
                direction: "in",
                kind,
            };
            inc(
                &mut seen.requests,
                stats.requests,
                &self.messages.get_or_create_owned(&received("request")),
            );
            inc(
                &mut seen.responses,
                stats.responses,
                &self.messages.get_or_create_owned(&received("response")),
            );
            inc(
                &mut seen.retransmissions,
                stats.retransmissions_absorbed,
                &self.retransmissions,
            );
        }
        for t in health.trunks() {
            let trunk = Name::new(t.name);
            self.set_state(&trunk, t.state);
            self.trunk_drained
                .get_or_create(&TrunkLabels {
                    trunk: trunk.clone(),
                })
                .set(i64::from(t.drained));
            for (from, value) in [
                ("invite", t.progress.invite_to_ringing),
                ("trying", t.progress.trying_to_ringing),
            ] {
                let labels = ProgressLabels {
                    trunk: trunk.clone(),
                    from,
                };
                if let Some(d) = value {
                    self.progress.get_or_create(&labels).set(d.as_secs_f64());
                } else {
                    // Not learned (yet, or again after a reload): no series
                    // rather than a made-up value.
                    self.progress.remove(&labels);
                }
            }
            let labels = TrunkLabels { trunk };
            self.canary
                .get_or_create(&labels)
                .set(i64::from(t.canary_until.is_some()));
            if let Some(ewma) = t.rtt.ewma {
                self.rtt.get_or_create(&labels).set(ewma.as_secs_f64());
            }
            if let Some(max) = t.rtt.max {
                self.rtt_max.get_or_create(&labels).set(max.as_secs_f64());
            }
        }
    }

    /// Refresh `lifeline_tcp_connections` from the IO side's count of open
    /// TCP connections, and add the TCP connections it reset for breaking a
    /// bound (`lifeline_tcp_closed_total{reason}`) and the accept pauses
    /// (`lifeline_tcp_accept_paused_total`) since the last call: [`IoStats`]
    /// keeps totals. Call it on the same tick as [`Metrics::set_gauges`].
    pub(crate) fn set_tcp(&self, io: &IoStats) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.tcp_connections
            .set(i64::try_from(get(&io.tcp_open)).unwrap_or(i64::MAX));
        let closed = |reason| {
            self.tcp_closed
                .get_or_create_owned(&TcpClosedLabels { reason })
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        count_since(
            &mut seen.tcp_refused_per_ip,
            get(&io.tcp_refused_per_ip),
            &closed("per_ip_cap"),
        );
        count_since(
            &mut seen.tcp_message_timeouts,
            get(&io.tcp_message_timeouts),
            &closed("message_timeout"),
        );
        count_since(
            &mut seen.tcp_write_queue_overflows,
            get(&io.tcp_write_queue_overflows),
            &closed("write_queue"),
        );
        count_since(
            &mut seen.tcp_framing_errors,
            get(&io.tcp_framing_errors),
            &closed("framing"),
        );
        count_since(
            &mut seen.tcp_accept_paused,
            get(&io.tcp_accept_paused),
            &self.tcp_accept_paused,
        );
    }

    /// Refresh the IO threads' admission: what they refused since the last
    /// call (`lifeline_admission_refused_total`), whether the gateway is
    /// shedding, and the bytes queued for the core. Call it on the same
    /// tick as [`Metrics::set_gauges`].
    pub(crate) fn set_admission(&self, io: &IoStats) {
        self.shedding
            .set(i64::from(io.shedding.load(Ordering::Relaxed)));
        self.queued_bytes
            .set(i64::try_from(io.queued_bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let udp = [
            (&io.recv_batches, &self.udp_calls, "in"),
            (&io.recv_datagrams, &self.udp_datagrams, "in"),
            (&io.send_batches, &self.udp_calls, "out"),
            (&io.send_datagrams, &self.udp_datagrams, "out"),
        ];
        for (i, (count, family, direction)) in udp.into_iter().enumerate() {
            count_since(
                &mut seen.udp[i],
                count.load(Ordering::Relaxed),
                &family.get_or_create_owned(&DirectionLabels { direction }),
            );
        }
        for (i, why) in lifeline_proxy::Refusal::ALL.into_iter().enumerate() {
            for (rejected, action) in [(false, "drop"), (true, "reject")] {
                let c = self
                    .admission_refused
                    .get_or_create_owned(&AdmissionLabels {
                        reason: why.as_str(),
                        action,
                    });
                count_since(
                    &mut seen.admission[i][usize::from(rejected)],
                    io.refused_count(why, rejected),
                    &c,
                );
            }
        }
    }

    /// Refresh the capture's series from the IO side's counters: what was
    /// exported and dropped since the last call, and what is held. Call it
    /// on the same tick as [`Metrics::set_gauges`].
    pub(crate) fn set_capture(&self, io: &IoStats) {
        self.capture_held
            .set(i64::try_from(io.capture_held_bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        count_since(
            &mut seen.capture_exported,
            io.capture_exported.load(Ordering::Relaxed),
            &self.capture_messages,
        );
        for (i, why) in lifeline_io::CaptureDrop::ALL.into_iter().enumerate() {
            let c = self
                .capture_dropped
                .get_or_create_owned(&CaptureDropLabels {
                    reason: why.as_str(),
                });
            count_since(
                &mut seen.capture_dropped[i],
                io.capture_dropped_count(why),
                &c,
            );
        }
    }

    /// Refresh `lifeline_trunk_calls` from the proxy's count of calls on
    /// each trunk. Call it on the same tick as [`Metrics::set_gauges`].
    pub(crate) fn set_trunk_calls(&self, proxy: &Proxy) {
        for t in proxy.health().trunks() {
            self.trunk_calls
                .get_or_create(&TrunkLabels {
                    trunk: Name::new(t.name),
                })
                .set(i64::from(proxy.trunk_calls(t.id)));
        }
    }

    /// Refresh `lifeline_route_usable_trunks`: for each route, how many of
    /// its trunks take new calls now (usable state and not drained, as
    /// `/status` and `/readyz` count them). A route a reload took away loses
    /// its series. Call it on the same tick as [`Metrics::set_gauges`].
    pub(crate) fn set_routes(&self, proxy: &Proxy) {
        let health = proxy.health();
        let mut names = self
            .route_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut now = Vec::with_capacity(names.len());
        for (route, trunks) in proxy.routes() {
            let usable = trunks
                .iter()
                .filter(|id| health.trunk(**id).is_some_and(|t| t.ready()))
                .count();
            let name = names
                .iter()
                .find(|n| n.as_str() == route)
                .cloned()
                .unwrap_or_else(|| Name::new(route));
            self.route_usable
                .get_or_create(&RouteLabels {
                    route: name.clone(),
                })
                .set(to_i64(usable));
            now.push(name);
        }
        for gone in names.iter().filter(|n| !now.contains(n)) {
            self.route_usable.remove(&RouteLabels {
                route: gone.clone(),
            });
        }
        *names = now;
    }

    /// The configured `max_calls` of each trunk (by name; `None`: unlimited,
    /// no series). Call it at start and after every reload.
    pub(crate) fn set_max_calls<'a>(
        &self,
        limits: impl IntoIterator<Item = (&'a str, Option<u32>)>,
    ) {
        self.trunk_max_calls.clear();
        for (trunk, max) in limits {
            if let Some(max) = max {
                self.trunk_max_calls
                    .get_or_create(&TrunkLabels {
                        trunk: Name::new(trunk),
                    })
                    .set(i64::from(max));
            }
        }
    }

    pub(super) fn set_state(&self, trunk: &Name, state: State) {
        for s in STATES {
            self.trunk_state
                .get_or_create(&StateLabels {
                    trunk: trunk.clone(),
                    state: s.as_str(),
                })
                .set(i64::from(s == state));
        }
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
