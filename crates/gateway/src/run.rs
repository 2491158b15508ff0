//! `lifeline run --config FILE`: the daemon.
//!
//! Wires the event loop ([`lifeline_io`]) to everything around it: logs,
//! metrics and the admin API, the journal, systemd readiness and watchdog,
//! and signals (SIGTERM/SIGINT: stop taking calls, finish the rest, exit 0;
//! SIGHUP: reload the configuration without dropping calls).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use lifeline_io::quiet::{Limit, Quiet, Suppressed};
use lifeline_journal::{
    CallAggregator, FailedCalls, JournalHandle, JournalOptions, JournalWriter, TimeAnchor,
};
use lifeline_proxy::{AttemptFailure, CallRef, Event, Proxy, ProxyConfig, Transport};

use crate::admin::{self, AccessBoard, AdminAccess, AdminCommand, AdminState, StatusBoard};
use crate::metrics::{Metrics, Names};
use lifeline_io::{
    Capture, CaptureConfig, EventSink, Gateway, Input, InputTx, IoStats, Options, ProxyNames,
    SinkTick, Tick,
};

/// Log output format: the one type, the configuration's (`--log-format`).
pub(crate) use crate::config::LogFormat;

/// What the daemon needs from the configuration file.
pub(crate) struct RunConfig {
    pub(crate) listen: Vec<(Transport, std::net::SocketAddr)>,
    pub(crate) advertise: Option<std::net::SocketAddr>,
    pub(crate) admin: std::net::SocketAddr,
    /// The admin API's token and open paths.
    pub(crate) admin_access: AdminAccess,
    pub(crate) journal: Option<PathBuf>,
    /// `node_name`, written in the journal's segments.
    pub(crate) node_name: String,
    pub(crate) log_level: String,
    pub(crate) log_json: bool,
    /// How long a TCP connection may stay idle (zero: never closed for it).
    pub(crate) tcp_idle_timeout: Duration,
    /// `limits.tcp`.
    pub(crate) tcp_limits: lifeline_io::TcpLimits,
    /// `capture:`: export SIP messages to a HEP collector.
    pub(crate) capture: Option<CaptureConfig>,
    /// What the file has that is allowed but probably wrong, one line each
    /// (`file:line:column: warning: key: message`): logged at WARN.
    pub(crate) warnings: Vec<String>,
    /// Each trunk's `max_calls`, for `lifeline_trunk_max_calls`.
    pub(crate) max_calls: Vec<(String, Option<u32>)>,
    /// The proxy configuration, given the advertised address.
    pub(crate) proxy: Box<dyn Fn(std::net::SocketAddr) -> ProxyConfig + Send + Sync>,
}

/// Load the configuration file into what the daemon needs.
pub(crate) fn load_run_config(path: &Path) -> Result<RunConfig, String> {
    let cfg = crate::config::Config::load(path).map_err(|e| e.to_string())?;
    let log = cfg.log();
    // Branches, tags, Record-Route tokens and probe nonces: ChaCha20 keyed
    // with 256 bits from the operating system, once. Without them every
    // token would be predictable: refuse to start.
    let seed = {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| format!("cannot seed tokens from the operating system: {e}"))?;
        lifeline_proxy::Seed::from_bytes(bytes)
    };
    let shared = Arc::new(cfg);
    let for_proxy = shared.clone();
    Ok(RunConfig {
        listen: shared.listen(),
        advertise: Some(shared.advertise()),
        admin: shared.admin(),
        admin_access: shared.admin_access().clone(),
        journal: shared.journal().map(Path::to_path_buf),
        node_name: shared.node_name().to_string(),
        log_level: log.level.as_str().to_string(),
        log_json: log.format == LogFormat::Json,
        tcp_idle_timeout: shared.tcp_idle_timeout(),
        tcp_limits: shared.tcp_limits(),
        capture: shared.capture().cloned(),
        warnings: shared
            .warnings()
            .iter()
            .map(|w| crate::config::Warning(w).to_string())
            .chain(
                // Allowed, and the default, but never what an operator wants.
                shared.access().callers.is_none().then(|| {
                    format!(
                        "{}: warning: access.callers: not set: any source may place calls \
                         through this gateway; list the originating networks' prefixes",
                        path.display()
                    )
                }),
            )
            .collect(),
        max_calls: shared
            .trunks()
            .iter()
            .map(|t| (t.name.clone(), t.max_calls))
            .collect(),
        proxy: Box::new(move |adv| {
            let mut p = for_proxy.proxy_config(seed);
            p.advertise = adv;
            p
        }),
    })
}

/// Set up `tracing`: human or JSON lines on stderr, level from `RUST_LOG` or
/// the configuration.
pub(crate) fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("lifeline={level},warn")));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub(crate) fn run(
    config_path: &Path,
    log_format: Option<LogFormat>,
    io_threads: Option<usize>,
) -> ExitCode {
    let cfg = match load_run_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let json = match log_format {
        Some(f) => f == LogFormat::Json,
        None => cfg.log_json,
    };
    init_logging(json, &cfg.log_level);
    log_warnings(&cfg.warnings);
    match daemon(config_path, cfg, io_threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "lifeline stopped");
            ExitCode::from(1)
        }
    }
}

/// The configuration's warnings, at WARN (at start and on every reload).
fn log_warnings(warnings: &[String]) {
    for w in warnings {
        tracing::warn!(warning = %w, "configuration warning");
    }
}

/// Event observers the daemon always has: metrics and logs.
fn observers(metrics: Arc<Metrics>, logs: Arc<Mutex<Logs>>) -> EventSink {
    // The names the metrics' labels were made from, and the snapshot they
    // came from: held, so a new snapshot (a reload) is never at its address.
    let mut names: Option<(Arc<ProxyNames>, Names)> = None;
    Box::new(move |ev: &Event, now: Instant, proxy: &Arc<ProxyNames>| {
        if !names
            .as_ref()
            .is_some_and(|(seen, _)| Arc::ptr_eq(seen, proxy))
        {
            names = Some((proxy.clone(), metrics.names_of(proxy)));
        }
        let Some((_, n)) = &names else {
            return;
        };
        metrics.on_event(ev, n);
        log_event(ev, proxy, now, &mut lock(&logs));
    })
}

/// A lock that a panic elsewhere does not poison for good: what it guards
/// (log limits, the aggregator) is still fit to use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The per-call and per-message log lines, each kind rate-limited on its
/// own: the first [`LOG_LINES`] per [`LOG_INTERVAL`] are logged (failed
/// emergency calls: [`EMERGENCY_LOG_LINES`]), the rest counted and summed
/// up in one line when the interval ends (`lifeline_io::quiet`). Trunk
/// state changes, drains and canaries are rare and always logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    CallFailed,
    EmergencyCallFailed,
    AttemptGivenUp,
    HedgeLost,
    Hedged,
    Rescued,
    TrunkFull,
    LateResponse,
    DuplicateAnswer,
}

/// The interval of each kind's allowance.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Lines of one kind logged per interval.
const LOG_LINES: u32 = 20;
/// Failed emergency calls logged per interval: the lines operators must see.
const EMERGENCY_LOG_LINES: u32 = 200;
/// Emergency calls in progress remembered (to log their failure as one);
/// past it the oldest is forgotten (its failure logs as `call failed`).
const MAX_EMERGENCY_TRACKED: usize = 65_536;

impl Line {
    /// Every kind, in the order of their numbers.
    const ALL: [Line; 9] = [
        Line::CallFailed,
        Line::EmergencyCallFailed,
        Line::AttemptGivenUp,
        Line::HedgeLost,
        Line::Hedged,
        Line::Rescued,
        Line::TrunkFull,
        Line::LateResponse,
        Line::DuplicateAnswer,
    ];

    /// The kind's name in summaries: how its lines' message starts.
    fn name(self) -> &'static str {
        match self {
            Line::CallFailed => "call failed",
            Line::EmergencyCallFailed => "emergency call failed",
            Line::AttemptGivenUp => "failover: attempt given up",
            Line::HedgeLost => "hedge lost",
            Line::Hedged => "emergency call not ringing yet: hedged",
            Line::Rescued => "call rescued off trunk",
            Line::TrunkFull => "trunk full: skipped",
            Line::LateResponse => "late response on an abandoned attempt",
            Line::DuplicateAnswer => "second answer to a hedged call",
        }
    }

    /// Lines logged per interval.
    fn allowance(self) -> u32 {
        match self {
            Line::EmergencyCallFailed => EMERGENCY_LOG_LINES,
            _ => LOG_LINES,
        }
    }

    /// Whether its lines (and its summaries) are at WARN, else INFO.
    fn warn(self) -> bool {
        !matches!(
            self,
            Line::CallFailed | Line::HedgeLost | Line::TrunkFull | Line::LateResponse
        )
    }
}

/// What the log lines need between events: each kind's rate limit, and
/// which calls in progress are emergency calls (`CallFailed` does not say).
#[derive(Debug)]
pub(crate) struct Logs {
    quiet: Quiet,
    emergency: BTreeSet<CallRef>,
}

impl Logs {
    pub(crate) fn new() -> Self {
        Self {
            quiet: Quiet::new(Line::ALL.map(|l| Limit::new(l.name(), l.allowance(), LOG_INTERVAL))),
            emergency: BTreeSet::new(),
        }
    }

    /// Whether a line of kind `line` at `now` is logged; logs the summary
    /// of the kind's previous interval first, if it is due and was not yet.
    fn pass(&mut self, line: Line, now: Instant) -> bool {
        let c = self.quiet.check(line as usize, now);
        if let Some(s) = &c.summary {
            log_suppressed(line, s);
        }
        c.log
    }

    /// The summaries due at `now` (every housekeeping tick).
    fn tick(&mut self, now: Instant) {
        while let Some((kind, s)) = self.quiet.poll(now) {
            if let Some(&line) = Line::ALL.get(kind) {
                log_suppressed(line, &s);
            }
        }
    }

    /// Every count not yet logged, up to `now` (at shutdown).
    fn flush(&mut self, now: Instant) {
        while let Some((kind, s)) = self.quiet.flush(now) {
            if let Some(&line) = Line::ALL.get(kind) {
                log_suppressed(line, &s);
            }
        }
    }

    /// Remember an emergency call until it ends.
    fn emergency_started(&mut self, call: CallRef) {
        if self.emergency.len() >= MAX_EMERGENCY_TRACKED {
            self.emergency.pop_first();
        }
        self.emergency.insert(call);
    }
}

/// `"call failed": 1,234 more lines suppressed in the last 10 s`, at the
/// level of the kind's lines.
fn log_suppressed(line: Line, s: &Suppressed) {
    let interval_s = s.interval().as_secs_f64();
    if line.warn() {
        tracing::warn!(kind = s.name, suppressed = s.lines, interval_s, "{s}");
    } else {
        tracing::info!(kind = s.name, suppressed = s.lines, interval_s, "{s}");
    }
}

fn trunk_name(names: &ProxyNames, id: lifeline_proxy::TrunkId) -> String {
    names.trunk(id).unwrap_or_default().to_string()
}

/// Failovers, rescues, hedges, second answers, failed emergency calls,
/// trunk state changes and canaries at WARN with the reason; calls
/// overflowing a full trunk and other failed calls at INFO. Per-call lines
/// are rate-limited per kind ([`Line`]; metrics count every event): under a
/// flood, the first lines of each kind per 10 s, then one summary line.
fn log_event(ev: &Event, proxy: &ProxyNames, now: Instant, logs: &mut Logs) {
    match ev {
        Event::AttemptFailed {
            call,
            trunk,
            reason,
            elapsed,
            ..
        } => {
            if *reason == AttemptFailure::Superseded {
                if logs.pass(Line::HedgeLost, now) {
                    tracing::info!(call = call.0, trunk = %trunk_name(proxy, *trunk), elapsed_ms = elapsed.as_millis() as u64, "hedge lost: the call was answered through another trunk; attempt cancelled");
                }
                return;
            }
            if !logs.pass(Line::AttemptGivenUp, now) {
                return;
            }
            let why = match reason {
                AttemptFailure::Response(code) => format!("response {code}"),
                other => other.as_str().to_string(),
            };
            tracing::warn!(call = call.0, trunk = %trunk_name(proxy, *trunk), reason = %why, elapsed_ms = elapsed.as_millis() as u64, "failover: attempt given up");
        }
        Event::Trunk(h) => match h.kind {
            lifeline_health::EventKind::State { from, to, reason } => {
                tracing::warn!(trunk = %trunk_name(proxy, h.trunk), from = from.as_str(), to = to.as_str(), reason = %reason, "trunk state changed");
            }
            lifeline_health::EventKind::Drained => {
                tracing::warn!(trunk = %trunk_name(proxy, h.trunk), "trunk drained")
            }
            lifeline_health::EventKind::Undrained => {
                tracing::warn!(trunk = %trunk_name(proxy, h.trunk), "trunk undrained")
            }
            lifeline_health::EventKind::CanaryStarted { until } => {
                tracing::warn!(trunk = %trunk_name(proxy, h.trunk), for_ms = until.saturating_duration_since(h.at).as_millis() as u64, "trunk back up on probes after failing calls: canary, a share of calls until it proves itself")
            }
            lifeline_health::EventKind::CanaryEnded { passed: true } => {
                tracing::info!(trunk = %trunk_name(proxy, h.trunk), "canary passed: trunk takes full traffic again")
            }
            lifeline_health::EventKind::CanaryEnded { passed: false } => {
                tracing::warn!(trunk = %trunk_name(proxy, h.trunk), "canary failed: trunk failed calls again")
            }
        },
        Event::Rescued {
            call,
            trunk,
            ringing,
            ..
        } => {
            if !logs.pass(Line::Rescued, now) {
                return;
            }
            let name = trunk_name(proxy, *trunk);
            if *ringing {
                tracing::warn!(call = call.0, trunk = %name, ringing = true, "call rescued off trunk {name} while ringing");
            } else {
                tracing::warn!(call = call.0, trunk = %name, ringing = false, "call rescued off trunk {name} before ringing");
            }
        }
        Event::Hedged { call, trunk, .. } => {
            if !logs.pass(Line::Hedged, now) {
                return;
            }
            tracing::warn!(call = call.0, trunk = %trunk_name(proxy, *trunk), "emergency call not ringing yet: hedged, a parallel attempt on the next trunk");
        }
        Event::TrunkSkipped {
            call,
            trunk,
            reason,
            ..
        } => {
            // Every call while a trunk is full: INFO, the metric is the alarm.
            if !logs.pass(Line::TrunkFull, now) {
                return;
            }
            tracing::info!(call = call.0, trunk = %trunk_name(proxy, *trunk), reason = reason.as_str(), "trunk full: skipped, call overflows to the next");
        }
        Event::DuplicateAnswer { call, trunk, .. } => {
            if !logs.pass(Line::DuplicateAnswer, now) {
                return;
            }
            tracing::warn!(call = call.0, trunk = %trunk_name(proxy, *trunk), "second answer to a hedged call: ACKed and ended with BYE");
        }
        Event::CallFailed {
            call,
            status,
            reason,
            ..
        } => {
            if logs.emergency.remove(call) {
                if logs.pass(Line::EmergencyCallFailed, now) {
                    tracing::warn!(call = call.0, status, reason = ?reason, emergency = true, "emergency call failed");
                }
            } else if logs.pass(Line::CallFailed, now) {
                tracing::info!(call = call.0, status, reason = ?reason, "call failed");
            }
        }
        Event::LateResponse {
            call,
            trunk,
            status,
            ..
        } => {
            if !logs.pass(Line::LateResponse, now) {
                return;
            }
            tracing::info!(call = call.0, trunk = %trunk_name(proxy, *trunk), status, "late response on an abandoned attempt");
        }
        Event::CallStarted { call, info, .. } => {
            if info.emergency.is_some() {
                logs.emergency_started(*call);
            }
            tracing::debug!(call = call.0, call_id = %String::from_utf8_lossy(&info.call_id), emergency = info.emergency.is_some(), route = %info.route, "call started");
        }
        Event::CallConnected {
            call, trunk, setup, ..
        } => {
            logs.emergency.remove(call);
            tracing::debug!(call = call.0, trunk = %trunk_name(proxy, *trunk), setup_ms = setup.as_millis() as u64, "call connected");
        }
        Event::CallCancelled { call, .. } => {
            logs.emergency.remove(call);
        }
        _ => {}
    }
}

/// One WARN line every [`RefusalLog::EVERY`] while the IO threads refuse
/// new requests (per-source limits, shedding), with the counts by reason:
/// the requests themselves are never logged one by one.
#[derive(Debug, Default)]
struct RefusalLog {
    /// The totals as of the last line (or the first tick).
    seen: [u64; lifeline_proxy::Refusal::ALL.len()],
    since: Option<Instant>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn totals(io: &IoStats) -> [u64; lifeline_proxy::Refusal::ALL.len()] {
        lifeline_proxy::Refusal::ALL.map(|r| io.refused_count(r, true) + io.refused_count(r, false))
    }

    fn tick(&mut self, now: Instant, io: &IoStats) {
        let Some(since) = self.since else {
            self.since = Some(now);
            self.seen = Self::totals(io);
            return;
        };
        if now.saturating_duration_since(since) < Self::EVERY {
            return;
        }
        let totals = Self::totals(io);
        let delta: Vec<u64> = totals
            .iter()
            .zip(self.seen)
            .map(|(t, s)| t.saturating_sub(s))
            .collect();
        if delta.iter().any(|d| *d > 0) {
            let by_reason: Vec<String> = lifeline_proxy::Refusal::ALL
                .iter()
                .zip(&delta)
                .filter(|(_, d)| **d > 0)
                .map(|(r, d)| format!("{}={d}", r.as_str()))
                .collect();
            let total: u64 = delta.iter().sum();
            let secs = now.saturating_duration_since(since).as_secs();
            tracing::warn!(refused = total, by_reason = %by_reason.join(" "), interval_s = secs, shedding = io.shedding.load(std::sync::atomic::Ordering::Relaxed), "admission: new requests refused");
        }
        self.seen = totals;
        self.since = Some(now);
    }
}

/// Metrics, status, the call aggregator (journal records and the live
/// list of failed emergency calls) and the journal writer: what both
/// `lifeline run` and `lifeline demo` put around the event loop.
pub(crate) struct Observability {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: Arc<StatusBoard>,
    pub(crate) failed: Arc<OnceLock<FailedCalls>>,
    pub(crate) started: admin::Started,
    pub(crate) journal: Option<JournalWriter>,
    /// The admin API's access rules in force (open until the daemon puts
    /// the configuration's in force, and replaced on reload).
    pub(crate) access: Arc<AccessBoard>,
    /// The log lines' rate limits, shared by the log sink and the sink
    /// tick (both run in the event stage, one at a time).
    logs: Arc<Mutex<Logs>>,
    /// The call aggregator, made at the first event (it needs the proxy's
    /// names), shared by its sink, the sink tick and [`close`](Self::close).
    aggregator: Arc<Mutex<Option<CallAggregator>>>,
}

/// The journal's names for the proxy's trunks and routes.
fn journal_names(proxy: &ProxyNames) -> lifeline_journal::Names {
    let trunk = |id: lifeline_proxy::TrunkId| {
        proxy
            .trunk(id)
            .map_or_else(|| format!("trunk-{}", id.index()), str::to_string)
    };
    let mut names = lifeline_journal::Names::new(proxy.trunks().map(|(_, n)| n));
    for (route, trunks) in proxy.routes() {
        let trunks: Vec<String> = trunks.iter().map(|t| trunk(*t)).collect();
        let trunks: Vec<&str> = trunks.iter().map(String::as_str).collect();
        names = names.with_route(route, &trunks);
    }
    names
}

/// Hand the aggregator's finished records to the journal (if there is one).
fn drain_records(agg: &mut CallAggregator, journal: Option<&JournalHandle>) {
    while let Some(rec) = agg.poll_record() {
        if let Some(j) = journal {
            j.record(rec);
        }
    }
}

impl Observability {
    /// `node_name` names this gateway in the journal's segments.
    pub(crate) fn new(journal_dir: Option<&Path>, node_name: &str) -> std::io::Result<Self> {
        let journal = match journal_dir {
            Some(dir) => {
                let opts = JournalOptions {
                    node_name: node_name.to_string(),
                    ..JournalOptions::default()
                };
                Some(JournalWriter::open(dir, opts)?)
            }
            None => None,
        };
        Ok(Self {
            metrics: Metrics::new(),
            status: StatusBoard::new(),
            failed: Arc::default(),
            started: admin::Started::now(),
            journal,
            access: AccessBoard::new(AdminAccess::open()),
            logs: Arc::new(Mutex::new(Logs::new())),
            aggregator: Arc::default(),
        })
    }

    /// Event observers: metrics, logs, and the aggregator feeding the
    /// journal and the failed-calls list. Call it once: the sinks share
    /// this `Observability`'s aggregator and log limits.
    pub(crate) fn sinks(&self) -> Vec<EventSink> {
        let agg = self.aggregator.clone();
        let journal = self.journal.as_ref().map(JournalWriter::handle);
        let failed = self.failed.clone();
        // The snapshot the aggregator's names came from (held, as above).
        let mut named: Option<Arc<ProxyNames>> = None;
        let aggregate: EventSink =
            Box::new(move |ev: &Event, _now: Instant, proxy: &Arc<ProxyNames>| {
                let mut slot = lock(&agg);
                let a = slot.get_or_insert_with(|| {
                    named = Some(proxy.clone());
                    let a = CallAggregator::new(
                        journal_names(proxy),
                        TimeAnchor::new(Instant::now(), SystemTime::now()),
                        Default::default(),
                    );
                    let _ = failed.set(a.failed_calls());
                    a
                });
                // A reload renamed trunks or routes, or added some.
                if !named.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, proxy)) {
                    named = Some(proxy.clone());
                    a.set_names(journal_names(proxy));
                }
                a.handle(ev);
                drain_records(a, journal.as_ref());
            });
        vec![
            observers(self.metrics.clone(), self.logs.clone()),
            aggregate,
        ]
    }

    /// The periodic work beside the sinks, after the events before it: the
    /// summaries of suppressed log lines, the journal's counts of refused
    /// requests whose interval ended.
    pub(crate) fn sink_tick(&self) -> SinkTick {
        let journal = self.journal.as_ref().map(JournalWriter::handle);
        let (logs, agg) = (self.logs.clone(), self.aggregator.clone());
        Box::new(move |now: Instant| {
            lock(&logs).tick(now);
            if let Some(a) = lock(&agg).as_mut() {
                a.handle_timeout(now);
                drain_records(a, journal.as_ref());
            }
        })
    }

    /// The periodic work on the core: gauges, status for /status and
    /// /readyz, IO and journal loss counters, the systemd watchdog (a stuck
    /// core stops feeding it).
    pub(crate) fn tick(&self) -> Tick {
        let (metrics, status, started) = (self.metrics.clone(), self.status.clone(), self.started);
        let journal = self.journal.as_ref().map(JournalWriter::handle);
        let mut watchdog_usec = 0u64;
        let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
        let mut last = (0u64, 0u64, 0u64);
        let mut last_idle_closed = 0u64;
        let mut last_write_errors = 0u64;
        let mut last_busy = 0u64;
        let mut last_sent = (0u64, 0u64, 0u64);
        let mut refusals = RefusalLog::default();
        Box::new(move |proxy: &mut Proxy, now: Instant, io: &IoStats| {
            refusals.tick(now, io);
            metrics.set_gauges(&proxy.stats(), proxy.health());
            metrics.set_trunk_calls(proxy);
            metrics.set_routes(proxy);
            let q = io.queue_drops.load(std::sync::atomic::Ordering::Relaxed);
            let s = io.socket_drops.load(std::sync::atomic::Ordering::Relaxed);
            let js = journal
                .as_ref()
                .map(JournalHandle::stats)
                .unwrap_or_default();
            let j = js.dropped();
            metrics.set_journal(
                js.write_errors.saturating_sub(last_write_errors),
                js.failing,
                js.backlog(),
            );
            last_write_errors = js.write_errors;
            metrics.add_queue_drops(q.saturating_sub(last.0));
            // The first reading is the host's total so far, not ours.
            if last.1 != 0 {
                metrics.add_socket_drops(s.saturating_sub(last.1));
            }
            metrics.add_journal_dropped(j.saturating_sub(last.2));
            last = (q, s, j);
            let idle = io
                .tcp_idle_closed
                .load(std::sync::atomic::Ordering::Relaxed);
            metrics.add_tcp_idle_closed(idle.saturating_sub(last_idle_closed));
            last_idle_closed = idle;
            metrics.set_tcp(io);
            metrics.set_admission(io);
            metrics.set_capture(io);
            let busy = io.core_busy_ns.load(std::sync::atomic::Ordering::Relaxed);
            metrics.add_core_busy(busy.saturating_sub(last_busy) as f64 / 1e9);
            last_busy = busy;
            // Sent messages and failed sends: counted by the IO side,
            // exported here as received ones are (by difference).
            let sent = (
                io.sent_requests.load(std::sync::atomic::Ordering::Relaxed),
                io.sent_responses.load(std::sync::atomic::Ordering::Relaxed),
                io.send_errors.load(std::sync::atomic::Ordering::Relaxed),
            );
            metrics.add_transmitted(
                sent.0.saturating_sub(last_sent.0),
                sent.1.saturating_sub(last_sent.1),
            );
            metrics.add_send_errors(sent.2.saturating_sub(last_sent.2));
            last_sent = sent;
            status.publish(admin::snapshot_from(proxy, now, &started));
            if watchdog {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        })
    }

    /// Serve the admin API on `addr` (port 0: any), with commands carried
    /// out on the core. Returns the bound address.
    pub(crate) fn start_admin(
        &self,
        gw: &Gateway,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<std::net::SocketAddr> {
        let rt = gw
            .runtime()
            .ok_or_else(|| std::io::Error::other("no runtime"))?;
        let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<AdminCommand>(64);
        let state = AdminState {
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            commands: cmd_tx,
            failed: self.failed.clone(),
            access: self.access.clone(),
        };
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
        let bound = listener.local_addr()?;
        rt.spawn(async move {
            if let Err(e) = admin::serve(listener, state).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
        let (input, board, started) = (gw.input.clone(), self.status.clone(), self.started);
        rt.spawn(async move {
            while let Some(cmd) = cmd_rx.recv().await {
                let board = board.clone();
                let _ = input.try_send(Input::Call(Box::new(move |p, now| {
                    admin::handle_command(p, now, cmd, &board, &started);
                })));
            }
        });
        Ok(bound)
    }

    /// Log the counts of suppressed lines not yet logged, journal what the
    /// aggregator still holds (calls in progress as unfinished, the open
    /// interval's refusals), then flush and close the journal. After the
    /// event loop has stopped.
    pub(crate) fn close(self) {
        let now = Instant::now();
        lock(&self.logs).flush(now);
        if let Some(a) = lock(&self.aggregator).as_mut() {
            a.finish_all(now);
            drain_records(a, self.journal.as_ref().map(JournalWriter::handle).as_ref());
        }
        if let Some(w) = self.journal {
            let s = w.shutdown();
            tracing::info!(durable = s.durable, dropped = s.dropped(), "journal closed");
        }
    }
}

fn daemon(config_path: &Path, cfg: RunConfig, io_threads: Option<usize>) -> std::io::Result<()> {
    let obs = Observability::new(cfg.journal.as_deref(), &cfg.node_name)?;
    let gw = Gateway::start(Options {
        listen: cfg.listen.clone(),
        advertise: cfg.advertise,
        proxy_config: cfg.proxy,
        io_threads: io_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        sinks: obs.sinks(),
        sink_ticks: vec![obs.sink_tick()],
        ticks: vec![obs.tick()],
        tick_every: Duration::from_millis(250),
        net: lifeline_io::transport::real(),
        clock: lifeline_io::clock::system(),
        tcp: cfg.tcp_limits,
        capture: cfg.capture.clone(),
    })?;
    gw.tcp_idle.send_replace(cfg.tcp_idle_timeout);
    if let Some(c) = &cfg.capture {
        tracing::info!(collector = %c.collector, calls = c.calls.as_str(), node_id = c.node_id, "capture: exporting SIP messages to the HEP collector");
    }
    obs.metrics
        .set_max_calls(cfg.max_calls.iter().map(|(t, m)| (t.as_str(), *m)));
    // Signals, installed before the admin API answers: a SIGHUP or SIGTERM
    // sent as soon as /healthz does is handled, not the default (fatal).
    let rt = gw
        .runtime()
        .ok_or_else(|| std::io::Error::other("no runtime"))?;
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = rt.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        )
    };
    obs.access.replace(cfg.admin_access.clone());
    let admin = obs.start_admin(&gw, cfg.admin)?;
    tracing::info!(node = %cfg.node_name, udp = ?gw.bound.udp, tcp = ?gw.bound.tcp, %admin, "lifeline listening");

    let (input, board, path) = (
        gw.input.clone(),
        obs.status.clone(),
        config_path.to_path_buf(),
    );
    let tcp_idle = gw.tcp_idle.clone();
    let tcp_limits = gw.tcp_limits.clone();
    let metrics = obs.metrics.clone();
    let access = obs.access.clone();
    let node_name = cfg.node_name.clone();
    let capture = gw.capture().cloned();
    rt.spawn(async move {
        let (mut term, mut int, mut hup) = signals;
        loop {
            tokio::select! {
                _ = term.recv() => { shutdown(&input, &board, "SIGTERM"); }
                _ = int.recv() => { shutdown(&input, &board, "SIGINT"); }
                _ = hup.recv() => { reload(&input, &path, &node_name, (&tcp_idle, &tcp_limits), &metrics, (admin, &access), capture.as_deref()).await; }
            }
        }
    });

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut gw = gw;
    // `Err`: a panic in the engine (only where panics unwind: release
    // builds abort); exit with an error so systemd restarts the process.
    let stopped = gw.join();
    if stopped.is_ok() {
        tracing::info!("lifeline stopped: every request answered");
    }
    obs.close();
    stopped.map_err(std::io::Error::other)
}

fn shutdown(input: &InputTx, board: &StatusBoard, why: &str) {
    tracing::warn!(
        signal = why,
        "shutting down: no new calls; finishing the calls in progress"
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    board.set_accepting(false);
    let _ = input.try_send(Input::Shutdown {
        grace: Duration::from_secs(35),
    });
}

/// Reload the configuration (SIGHUP). `node_name`: the running one (a new
/// one takes a restart: the journal writes it). `admin`: the admin API's bound
/// address, which stays (a new `admin.listen` takes a restart), and its
/// access rules, replaced with the file's. `capture`: the running capture,
/// if the gateway started with one, which takes the file's settings.
async fn reload(
    input: &InputTx,
    path: &Path,
    node_name: &str,
    tcp: (
        &tokio::sync::watch::Sender<Duration>,
        &tokio::sync::watch::Sender<lifeline_io::TcpLimits>,
    ),
    metrics: &Metrics,
    admin: (std::net::SocketAddr, &AccessBoard),
    capture: Option<&Capture>,
) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    let (admin_bound, access) = admin;
    match load_run_config(path) {
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "reload refused: the running configuration stays")
        }
        // The admin API keeps its socket: a file that moves it to loopback
        // and drops the token would leave the old address open to anyone.
        Ok(cfg) if !admin_bound.ip().is_loopback() && cfg.admin_access.token.is_none() => {
            tracing::error!(file = %path.display(), admin = %admin_bound, "reload refused: the admin API stays on {admin_bound} until a restart, and the new file has no admin.token_file for it; the running configuration stays")
        }
        Ok(cfg) => {
            let (idle, limits) = (cfg.tcp_idle_timeout, cfg.tcp_limits);
            let (warnings, max_calls) = (cfg.warnings, cfg.max_calls);
            let (admin_listen, admin_access) = (cfg.admin, cfg.admin_access);
            let new_node = cfg.node_name;
            let new_capture = cfg.capture;
            let (tx, rx) = crossbeam_channel::bounded(1);
            // The advertised address cannot change; reuse the proxy's own.
            let builder = cfg.proxy;
            let io = input.clone();
            let send = input.try_send(Input::Call(Box::new(move |p: &mut Proxy, now: Instant| {
                let adv = p.advertise();
                let cfg = builder(adv);
                let r = p.reload(now, cfg.clone()).map_err(|e| e.to_string());
                if r.is_ok() {
                    // The IO threads' admission takes the new limits too.
                    io.set_limits(&cfg);
                }
                let _ = tx.send(r);
            })));
            if send.is_err() {
                tracing::error!("reload refused: the event loop is not answering");
            } else {
                match tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
                    .await
                {
                    Ok(Ok(Ok(()))) => {
                        // Open connections take the new idle timeout too.
                        tcp.0.send_replace(idle);
                        // New connections and messages take the new bounds.
                        tcp.1.send_replace(limits);
                        metrics.set_max_calls(max_calls.iter().map(|(t, m)| (t.as_str(), *m)));
                        access.replace(admin_access);
                        if admin_listen != admin_bound && admin_listen.port() != 0 {
                            tracing::warn!(admin = %admin_bound, new = %admin_listen, "admin.listen changed: the admin API moves at the next restart");
                        }
                        if new_node != node_name {
                            tracing::warn!(node = %node_name, new = %new_node, "node_name changed: the journal takes it at the next restart");
                        }
                        reload_capture(capture, new_capture);
                        tracing::warn!(file = %path.display(), "configuration reloaded");
                        log_warnings(&warnings);
                    }
                    Ok(Ok(Err(e))) => {
                        tracing::error!(error = %e, "reload refused: the running configuration stays")
                    }
                    _ => tracing::error!("reload: no answer from the event loop"),
                }
            }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// Put the reloaded file's `capture:` in force: new settings for the
/// running capture, or off. What only a restart changes (starting capture
/// when the gateway started without it, the queue's size) is logged.
fn reload_capture(running: Option<&Capture>, new: Option<CaptureConfig>) {
    match (running, new) {
        (Some(c), new) => {
            let before = c.config();
            if let Some(n) = &new {
                if n.queue != c.queue() {
                    tracing::warn!(
                        queue = c.queue(),
                        new = n.queue,
                        "capture.queue changed: the queue keeps its size until the next restart"
                    );
                }
            }
            if before == new {
                return;
            }
            match &new {
                Some(n) => {
                    tracing::info!(collector = %n.collector, calls = n.calls.as_str(), node_id = n.node_id, "capture: settings reloaded")
                }
                None => tracing::warn!("capture: turned off (no capture: in the file)"),
            }
            c.reconfigure(new);
        }
        (None, Some(n)) => {
            tracing::warn!(collector = %n.collector, "capture: the gateway started without it; turning it on takes a restart");
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use lifeline_proxy::{CallFailure, CallInfo, EmergencyRule, Location, Peer};

    fn started(call: u64, at: Instant, emergency: bool) -> Event {
        Event::CallStarted {
            call: CallRef(call),
            at,
            info: std::sync::Arc::new(CallInfo {
                call_id: Bytes::from(format!("c{call}")),
                from_uri: Bytes::from_static(b"sip:a@example.com"),
                from_display: None,
                asserted_identities: vec![],
                dialled: Bytes::from_static(b"urn:service:sos"),
                emergency: emergency.then_some(EmergencyRule::SosUrn),
                location: Location::default(),
                route: String::new(),
                source: Peer::udp("192.0.2.7:5060".parse().unwrap()),
            }),
        }
    }

    fn failed(call: u64, at: Instant) -> Event {
        Event::CallFailed {
            call: CallRef(call),
            at,
            status: 404,
            reason: CallFailure::NoRoute,
        }
    }

    /// The journal's names from the snapshot the sinks get are the ones it
    /// used to take from the proxy itself, before and after a reload that
    /// retires a trunk, adds one and changes the routes.
    #[test]
    fn journal_names_from_the_snapshot_are_the_proxys() {
        use lifeline_proxy::{RouteConfig, RouteMatch, TrunkConfig};
        let t0 = Instant::now();
        let adv = "127.0.0.1:5060".parse().unwrap();
        let trunk = |n: &str, port: u16| {
            TrunkConfig::new(
                n,
                Peer::udp(std::net::SocketAddr::from(([192, 0, 2, 1], port))),
            )
        };
        let mut proxy = Proxy::new(
            t0,
            ProxyConfig::new(
                adv,
                vec![trunk("a", 5060), trunk("b", 5061)],
                vec![RouteConfig::new("r1", RouteMatch::Any, &["a", "b"])],
            ),
        )
        .unwrap();
        let same = |p: &Proxy| {
            assert_eq!(
                journal_names(&ProxyNames::of(p)),
                lifeline_journal::Names::from_proxy(p)
            );
        };
        same(&proxy);
        proxy
            .reload(
                t0,
                ProxyConfig::new(
                    adv,
                    vec![trunk("b", 5061), trunk("c", 5062)],
                    vec![RouteConfig::new("r2", RouteMatch::Any, &["c", "b"])],
                ),
            )
            .unwrap();
        same(&proxy);
        let names = ProxyNames::of(&proxy);
        let trunks: Vec<&str> = names.trunks().map(|(_, n)| n).collect();
        assert_eq!(
            trunks,
            ["a", "b", "c"],
            "a retired trunk keeps its id and name"
        );
    }

    /// Failed emergency calls are their own kind, with the larger
    /// allowance: a flood of other failed calls does not use it up.
    #[test]
    fn failed_emergency_calls_have_their_own_allowance() {
        let t0 = Instant::now();
        let proxy = Proxy::new(
            t0,
            ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), vec![], vec![]),
        )
        .unwrap();
        let names = ProxyNames::of(&proxy);
        let mut logs = Logs::new();
        for call in 0..1_000u64 {
            let at = t0 + Duration::from_millis(call);
            let emergency = call % 4 == 0;
            log_event(&started(call, at, emergency), &names, at, &mut logs);
            log_event(&failed(call, at), &names, at, &mut logs);
        }
        assert!(logs.emergency.is_empty(), "forgotten when they end");
        // Each kind's interval runs from its first line: the emergency
        // calls' from call 0, the others' from call 1, 1 ms later.
        let end = t0 + LOG_INTERVAL;
        let mut summary = |at| logs.quiet.poll(at).map(|(k, s)| (Line::ALL[k], s.lines));
        assert_eq!(summary(end - Duration::from_nanos(1)), None);
        assert_eq!(
            summary(end),
            Some((
                Line::EmergencyCallFailed,
                250 - u64::from(EMERGENCY_LOG_LINES)
            ))
        );
        assert_eq!(summary(end), None);
        let end = end + Duration::from_millis(1);
        assert_eq!(
            summary(end),
            Some((Line::CallFailed, 750 - u64::from(LOG_LINES)))
        );
        for (i, l) in Line::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "numbered in order");
            assert_eq!(logs.quiet.limit(i).map(Limit::name), Some(l.name()));
        }
    }
}
