//! Admin HTTP (127.0.0.1:9060 by default): what operators and their
//! monitoring ask the gateway, and the one thing they tell it.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition (version 0.0.4) of [`Metrics`] |
//! | `GET /healthz` | `200 ok` while the process serves HTTP |
//! | `GET /readyz` | `200` while this process can take calls: its sockets are bound, its configuration loaded and its event loop publishes status and accepts new calls; else `503` with a JSON body saying why. Trunks do not count: a gateway whose trunks are all down still takes calls (emergency calls try every trunk, and the other gateway of a pair is no better off), so keepalived must not move the service address for it. The `200` body names the routes without a usable trunk, if any; `/status` and the metrics have the trunks' state |
//! | `GET /status` | JSON: the latest [`StatusSnapshot`] plus call totals |
//! | `POST /trunks/{name}/drain` | drain a trunk: `200` JSON, `404` unknown trunk, `503` if the event loop does not answer within [`COMMAND_TIMEOUT`] |
//! | `POST /trunks/{name}/undrain` | the reverse, same answers |
//! | `GET /calls/failed[?limit=N]` | JSON: the callback list, newest first |
//! | anything else | `404` (`405` for a known path with another method) |
//!
//! With `admin.token_file`, every request but those for `admin.open_paths`
//! (`/metrics`, `/healthz`, `/readyz` by default) needs `Authorization:
//! Bearer <token>`, else `401` ([`access`]); the server's limits on
//! connections, sizes and time are in [`server`]. Every request that may
//! change state is logged at WARN with its peer's address.
//!
//! The server never touches the [`Proxy`]: the event loop owns it. The loop
//! publishes a [`StatusSnapshot`] (built with [`snapshot_from`]) on the
//! [`StatusBoard`] on a regular tick, and answers [`AdminCommand`]s (with
//! [`handle_command`]) that arrive on a channel. A loop that stops
//! publishing for [`STALE_STATUS`] makes `/readyz` fail: a wedged gateway
//! must not look ready to keepalived or a load balancer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lifeline_health::TrunkStatus;
use lifeline_proxy::Proxy;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{CallTotals, Metrics, CONTENT_TYPE};

mod access;
mod server;

pub(crate) use access::{AccessBoard, AdminAccess, AdminToken, DEFAULT_OPEN_PATHS};

/// How long a drain or undrain waits for the event loop's answer.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Status older than this makes `/readyz` fail (the loop should publish about
/// once a second).
pub(crate) const STALE_STATUS: Duration = Duration::from_secs(5);

/// What the admin server shares with the rest of the daemon.
#[derive(Clone, Debug)]
pub(crate) struct AdminState {
    /// The series `/metrics` encodes.
    pub(crate) metrics: Arc<Metrics>,
    /// The status the event loop publishes.
    pub(crate) status: Arc<StatusBoard>,
    /// Commands to the event loop.
    pub(crate) commands: mpsc::Sender<AdminCommand>,
    /// Recent emergency calls that did not connect (set once the event loop
    /// has seen its first event).
    pub(crate) failed: Arc<std::sync::OnceLock<lifeline_journal::FailedCalls>>,
    /// Who may ask (the token and open paths in force).
    pub(crate) access: Arc<AccessBoard>,
}

/// An operator's request the event loop carries out (see [`handle_command`]).
#[derive(Debug)]
pub(crate) enum AdminCommand {
    /// Stop routing new calls to the trunk; it keeps being probed.
    Drain {
        /// Trunk name.
        trunk: String,
        /// `Err` means no trunk has that name.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Route calls to the trunk again (if its measured state allows).
    Undrain {
        /// Trunk name.
        trunk: String,
        /// `Err` means no trunk has that name.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Carry out a command on the event loop's proxy, publish fresh status if a
/// trunk changed (so the operator's next `/status` or `/readyz` sees it), and
/// answer. Returns whether a trunk's drained flag changed.
pub(crate) fn handle_command(
    proxy: &mut Proxy,
    now: Instant,
    cmd: AdminCommand,
    status: &StatusBoard,
    started: &Started,
) -> bool {
    let (name, drain, reply) = match cmd {
        AdminCommand::Drain { trunk, reply } => (trunk, true, reply),
        AdminCommand::Undrain { trunk, reply } => (trunk, false, reply),
    };
    let health = proxy.health_mut();
    let Some(id) = health.find(&name) else {
        let _ = reply.send(Err(format!("no trunk named {name:?}")));
        return false;
    };
    let before = health.trunk(id).is_some_and(|t| t.drained);
    if drain {
        health.drain(now, id);
    } else {
        health.undrain(now, id);
    }
    let changed = before != drain;
    if changed {
        status.publish(snapshot_from(proxy, now, started));
    }
    // The requester may have given up (timeout); the change stands anyway.
    let _ = reply.send(Ok(()));
    changed
}

/// When the daemon started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Started {
    /// On the monotonic clock the event loop passes as `now`.
    pub(crate) at: Instant,
    /// Unix seconds.
    pub(crate) unix: u64,
}

impl Started {
    /// Now.
    pub(crate) fn now() -> Self {
        Self {
            at: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Everything `/status` shows, as of one moment of the event loop.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StatusSnapshot {
    /// The gateway's version.
    pub(crate) version: &'static str,
    /// Start time, Unix seconds.
    pub(crate) started: u64,
    /// Seconds since start.
    pub(crate) uptime_seconds: f64,
    /// Whether new calls are taken (false during a graceful shutdown: see
    /// [`StatusBoard::set_accepting`]).
    pub(crate) accepting: bool,
    /// Takes calls: accepting (what `/readyz` answers; trunks do not count).
    pub(crate) ready: bool,
    /// Every route has a trunk that takes new calls.
    pub(crate) routes_usable: bool,
    /// Every trunk, in configuration order.
    pub(crate) trunks: Vec<TrunkView>,
    /// Every route, in configuration order.
    pub(crate) routes: Vec<RouteView>,
    /// The proxy's counters and sizes.
    pub(crate) counters: Counters,
}

/// One trunk in `/status`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TrunkView {
    pub(crate) name: String,
    /// `up`, `suspect`, `down` or `recovering`.
    pub(crate) state: &'static str,
    pub(crate) drained: bool,
    /// Takes new calls: usable state and not drained.
    pub(crate) ready: bool,
    /// Seconds since it entered `state`.
    pub(crate) since_seconds_ago: f64,
    /// The evidence that put it there, in words.
    pub(crate) reason: String,
    /// Seconds left of a flap hold-down, if one is running.
    pub(crate) held_down_seconds: Option<f64>,
    pub(crate) rtt_ms: RttView,
    pub(crate) probes: ProbeView,
    /// Live (call) failures not yet cleared by an answered call.
    pub(crate) live_failures: u32,
    pub(crate) consecutive_failures: u32,
    pub(crate) consecutive_successes: u32,
}

/// Probe round-trip times in milliseconds (`null` until a probe is answered).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct RttView {
    pub(crate) last: Option<f64>,
    pub(crate) ewma: Option<f64>,
    pub(crate) max: Option<f64>,
}

/// Probe counters.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct ProbeView {
    pub(crate) sent: u64,
    pub(crate) answered: u64,
    pub(crate) timeouts: u64,
}

/// One route in `/status`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RouteView {
    pub(crate) name: String,
    /// Trunk names, in priority order.
    pub(crate) trunks: Vec<String>,
    /// Some trunk of the route takes new calls (usable state, not drained).
    pub(crate) usable: bool,
}

/// The proxy's counters and live sizes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Counters {
    pub(crate) requests: u64,
    pub(crate) responses: u64,
    pub(crate) retransmissions_absorbed: u64,
    pub(crate) responses_dropped: u64,
    pub(crate) requests_refused: u64,
    pub(crate) calls_active: usize,
    pub(crate) server_transactions: usize,
    pub(crate) client_transactions: usize,
    pub(crate) dialogs: usize,
}

/// Build the status the event loop publishes.
pub(crate) fn snapshot_from(proxy: &Proxy, now: Instant, started: &Started) -> StatusSnapshot {
    let health = proxy.health();
    let trunks = health.trunks().map(|t| trunk_view(&t, now)).collect();
    let routes = proxy
        .routes()
        .map(|(name, ids)| RouteView {
            name: name.to_string(),
            trunks: ids
                .iter()
                .filter_map(|id| health.trunk(*id).map(|t| t.name.to_string()))
                .collect(),
            usable: ids
                .iter()
                .any(|id| health.trunk(*id).is_some_and(|t| t.ready())),
        })
        .collect();
    let s = proxy.stats();
    let mut snap = StatusSnapshot {
        version: env!("CARGO_PKG_VERSION"),
        started: started.unix,
        uptime_seconds: now.saturating_duration_since(started.at).as_secs_f64(),
        accepting: true,
        ready: false,
        routes_usable: false,
        trunks,
        routes,
        counters: Counters {
            requests: s.requests,
            responses: s.responses,
            retransmissions_absorbed: s.retransmissions_absorbed,
            responses_dropped: s.responses_dropped,
            requests_refused: s.requests_refused,
            calls_active: s.calls,
            server_transactions: s.server_transactions,
            client_transactions: s.client_transactions,
            dialogs: s.dialogs,
        },
    };
    snap.ready = snap.compute_ready();
    snap.routes_usable = snap.compute_routes_usable();
    snap
}

fn trunk_view(t: &TrunkStatus<'_>, now: Instant) -> TrunkView {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    TrunkView {
        name: t.name.to_string(),
        state: t.state.as_str(),
        drained: t.drained,
        ready: t.ready(),
        since_seconds_ago: now.saturating_duration_since(t.since).as_secs_f64(),
        reason: t.reason.to_string(),
        held_down_seconds: t
            .held_until
            .filter(|h| *h > now)
            .map(|h| (h - now).as_secs_f64()),
        rtt_ms: RttView {
            last: ms(t.rtt.last),
            ewma: ms(t.rtt.ewma),
            max: ms(t.rtt.max),
        },
        probes: ProbeView {
            sent: t.stats.probes_sent,
            answered: t.stats.probes_answered,
            timeouts: t.stats.probe_timeouts,
        },
        live_failures: t.live_failures,
        consecutive_failures: t.consecutive_failures,
        consecutive_successes: t.consecutive_successes,
    }
}

impl StatusSnapshot {
    fn compute_ready(&self) -> bool {
        self.accepting
    }

    fn compute_routes_usable(&self) -> bool {
        self.routes.iter().all(|r| r.usable)
    }
}

/// The latest status the event loop published, and whether the gateway
/// takes new calls.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    latest: RwLock<Option<(StatusSnapshot, Instant)>>,
    accepting: AtomicBool,
}

impl StatusBoard {
    /// Nothing published yet: `/readyz` answers 503 until the loop publishes.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            latest: RwLock::new(None),
            accepting: AtomicBool::new(true),
        })
    }

    /// Replace the status (its `accepting` and `ready` are filled in here).
    pub(crate) fn publish(&self, snap: StatusSnapshot) {
        self.publish_at(snap, Instant::now());
    }

    fn publish_at(&self, mut snap: StatusSnapshot, at: Instant) {
        snap.accepting = self.accepting();
        snap.ready = snap.compute_ready();
        snap.routes_usable = snap.compute_routes_usable();
        snap.routes_usable = snap.compute_routes_usable();
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Some((snap, at));
    }

    /// Say whether new calls are taken: `false` at the start of a graceful
    /// shutdown makes `/readyz` fail at once.
    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Relaxed);
    }

    /// Whether new calls are taken.
    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// The latest status and how old it is.
    pub(crate) fn latest(&self) -> Option<(StatusSnapshot, Duration)> {
        let guard = self.latest.read().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(|(s, at)| {
            let mut s = s.clone();
            s.accepting = self.accepting();
            s.ready = s.compute_ready();
            s.routes_usable = s.compute_routes_usable();
            (s, at.elapsed())
        })
    }
}

/// Serve the admin endpoints on `listener` until the runtime stops, with
/// the access rules of `state.access` and the limits of [`server`].
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
) -> std::io::Result<()> {
    server::serve(listener, router(state)).await
}

fn router(state: AdminState) -> Router {
    let routes = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/trunks/{name}/drain", post(drain))
        .route("/trunks/{name}/undrain", post(undrain))
        .route("/calls/failed", get(calls_failed))
        .fallback(not_found);
    server::guarded(routes, state)
}

/// `GET /calls/failed[?limit=N]`: the callback list, newest first (JSON).
async fn calls_failed(
    State(st): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1000)
        .min(10_000);
    let body = match st.failed.get() {
        Some(f) => f.to_json(limit),
        None => "[]".to_string(),
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(st): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], st.metrics.encode()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AdminState>) -> Response {
    let Some((snap, age)) = st.status.latest() else {
        return unavailable(json!({"ready": false, "reason": "starting: no status published yet"}));
    };
    if age > STALE_STATUS {
        return unavailable(json!({
            "ready": false,
            "reason": format!("event loop has published no status for {:.1} s", age.as_secs_f64()),
        }));
    }
    if !snap.accepting {
        return unavailable(
            json!({"ready": false, "reason": "not accepting new calls (shutting down)"}),
        );
    }
    // Ready whatever the trunks' state: told, not judged on.
    let without: Vec<&str> = snap
        .routes
        .iter()
        .filter(|r| !r.usable)
        .map(|r| r.name.as_str())
        .collect();
    (
        StatusCode::OK,
        Json(json!({"ready": true, "routes_without_usable_trunk": without})),
    )
        .into_response()
}

#[derive(Serialize)]
struct StatusBody {
    #[serde(flatten)]
    snapshot: StatusSnapshot,
    /// Seconds since the event loop published `snapshot`.
    status_age_seconds: f64,
    calls: CallTotals,
}

async fn status(State(st): State<AdminState>) -> Response {
    let Some((snapshot, age)) = st.status.latest() else {
        return unavailable(json!({"ready": false, "reason": "starting: no status published yet"}));
    };
    Json(StatusBody {
        snapshot,
        status_age_seconds: age.as_secs_f64(),
        calls: st.metrics.call_totals(),
    })
    .into_response()
}

async fn drain(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    command(&st, name, true).await
}

async fn undrain(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    command(&st, name, false).await
}

async fn command(st: &AdminState, trunk: String, drain: bool) -> Response {
    let (reply, answer) = oneshot::channel();
    let cmd = if drain {
        AdminCommand::Drain {
            trunk: trunk.clone(),
            reply,
        }
    } else {
        AdminCommand::Undrain {
            trunk: trunk.clone(),
            reply,
        }
    };
    let exchange = async {
        st.commands.send(cmd).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
        Ok(Some(Ok(()))) => Json(json!({"trunk": trunk, "drained": drain})).into_response(),
        Ok(Some(Err(e))) => (StatusCode::NOT_FOUND, Json(json!({"error": e}))).into_response(),
        // The loop is gone (channel closed, reply dropped) or too busy.
        Ok(None) => unavailable(json!({"error": "the event loop is not running"})),
        Err(_) => unavailable(json!({
            "error": format!("the event loop did not answer within {} s", COMMAND_TIMEOUT.as_secs()),
        })),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

fn unavailable(body: serde_json::Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper::Request;
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::{
        handle_command, serve, snapshot_from, AccessBoard, AdminAccess, AdminCommand, AdminState,
        Started, StatusBoard, STALE_STATUS,
    };
    use crate::metrics::testing::{Bench, PRIMARY};
    use crate::metrics::Metrics;

    struct Response {
        status: u16,
        content_type: String,
        body: String,
    }

    impl Response {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
        }
    }

    /// One HTTP/1.1 request on a fresh connection.
    async fn http(addr: SocketAddr, method: &str, path: &str) -> Response {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Response {
            status,
            content_type,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    struct Gateway {
        addr: SocketAddr,
        bench: Arc<Mutex<Bench>>,
        board: Arc<StatusBoard>,
        metrics: Arc<Metrics>,
        started: Started,
    }

    impl Gateway {
        fn publish(&self) {
            let b = self.bench.lock().unwrap();
            self.board
                .publish(snapshot_from(&b.proxy, b.now, &self.started));
        }
    }

    async fn listen() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    /// The admin server, and a stand-in event loop answering its commands
    /// against a real proxy (routes `emergency` over primary and backup,
    /// `default` over primary only).
    async fn gateway() -> Gateway {
        let bench = Arc::new(Mutex::new(Bench::new(true)));
        let started = Started {
            at: bench.lock().unwrap().t0,
            unix: 1_700_000_000,
        };
        let board = StatusBoard::new();
        let metrics = Metrics::new();
        let (tx, mut rx) = mpsc::channel::<AdminCommand>(8);
        {
            let bench = bench.clone();
            let board = board.clone();
            tokio::spawn(async move {
                while let Some(cmd) = rx.recv().await {
                    let mut b = bench.lock().unwrap();
                    let now = b.now;
                    handle_command(&mut b.proxy, now, cmd, &board, &started);
                }
            });
        }
        let (listener, addr) = listen().await;
        let state = AdminState {
            metrics: metrics.clone(),
            status: board.clone(),
            commands: tx,
            failed: Arc::default(),
            access: AccessBoard::new(AdminAccess::open()),
        };
        tokio::spawn(serve(listener, state));
        Gateway {
            addr,
            bench,
            board,
            metrics,
            started,
        }
    }

    #[tokio::test]
    async fn healthz_metrics_and_unknown_paths() {
        let gw = gateway().await;
        let r = http(gw.addr, "GET", "/healthz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

        {
            let mut b = gw.bench.lock().unwrap();
            let names = gw.metrics.names(&b.proxy);
            b.invite("m1", "urn:service:sos");
            for ev in b.take_events() {
                gw.metrics.on_event(&ev, &names);
            }
        }
        let r = http(gw.addr, "GET", "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            r.body
                .contains("lifeline_emergency_calls_total{rule=\"sos-urn\"} 1\n"),
            "{}",
            r.body
        );
        assert!(r
            .body
            .contains("lifeline_attempts_total{trunk=\"primary\"} 1\n"));
        assert!(r.body.contains("# TYPE lifeline_build_info gauge\n"));

        assert_eq!(http(gw.addr, "GET", "/nope").await.status, 404);
        assert_eq!(
            http(gw.addr, "GET", "/trunks/primary/drain").await.status,
            405
        );
        assert_eq!(
            http(gw.addr, "POST", "/trunks/primary/reboot").await.status,
            404
        );
    }

    #[tokio::test]
    async fn status_shows_trunks_routes_and_counters() {
        let gw = gateway().await;
        let r = http(gw.addr, "GET", "/status").await;
        assert_eq!(r.status, 503, "nothing published yet: {}", r.body);

        {
            let mut b = gw.bench.lock().unwrap();
            let names = gw.metrics.names(&b.proxy);
            b.invite("s1", "sip:bob@example.org");
            b.answer(PRIMARY, "s1", 486, "Busy Here");
            b.advance(1500);
            for ev in b.take_events() {
                gw.metrics.on_event(&ev, &names);
            }
        }
        gw.publish();
        let r = http(gw.addr, "GET", "/status").await;
        assert_eq!(r.status, 200);
        assert!(r.content_type.starts_with("application/json"));
        let s = r.json();
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s["started"], 1_700_000_000);
        assert_eq!(s["uptime_seconds"], 1.5);
        assert_eq!(s["ready"], true);
        assert_eq!(s["accepting"], true);
        let trunks = s["trunks"].as_array().unwrap();
        assert_eq!(trunks.len(), 2);
        assert_eq!(trunks[0]["name"], "primary");
        assert_eq!(trunks[0]["state"], "up");
        assert_eq!(trunks[0]["drained"], false);
        assert_eq!(trunks[0]["ready"], true);
        assert_eq!(trunks[0]["reason"], "configured");
        assert_eq!(trunks[0]["since_seconds_ago"], 1.5);
        assert_eq!(trunks[0]["rtt_ms"]["ewma"], Value::Null);
        assert_eq!(trunks[0]["probes"]["sent"], 0);
        assert_eq!(trunks[0]["live_failures"], 0);
        assert_eq!(trunks[1]["name"], "backup");
        let routes = s["routes"].as_array().unwrap();
        assert_eq!(routes[0]["name"], "emergency");
        assert_eq!(
            routes[0]["trunks"],
            serde_json::json!(["primary", "backup"])
        );
        assert_eq!(routes[0]["usable"], true);
        assert_eq!(routes[1]["name"], "default");
        assert_eq!(s["counters"]["requests"], 1, "the INVITE");
        assert_eq!(s["counters"]["responses"], 1);
        assert!(s["counters"]["server_transactions"].is_u64());
        assert!(s["counters"]["dialogs"].is_u64());
        assert_eq!(s["calls"]["started"], 1);
        assert_eq!(s["calls"]["rejected"], 1);
        assert!(s["status_age_seconds"].as_f64().unwrap() < 5.0);
    }

    #[tokio::test]
    async fn drain_and_undrain_show_in_readiness_and_status() {
        let gw = gateway().await;
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 503, "nothing published yet");
        assert_eq!(r.json()["ready"], false);
        gw.publish();
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(
            (r.status, r.json()["ready"].clone()),
            (200, Value::Bool(true))
        );

        // Draining the primary leaves route "default" without a trunk.
        let r = http(gw.addr, "POST", "/trunks/primary/drain").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.json(),
            serde_json::json!({"trunk": "primary", "drained": true})
        );
        {
            let b = gw.bench.lock().unwrap();
            let primary = b.proxy.health().find("primary").unwrap();
            assert!(b.proxy.health().trunk(primary).unwrap().drained);
        }
        // Still ready (the process takes calls); the route is named.
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["routes_without_usable_trunk"],
            serde_json::json!(["default"])
        );
        let s = http(gw.addr, "GET", "/status").await.json();
        assert_eq!(s["routes_usable"], false);
        assert_eq!(s["trunks"][0]["drained"], true);
        assert_eq!(s["trunks"][0]["ready"], false);
        assert_eq!(s["routes"][0]["usable"], true);
        assert_eq!(s["routes"][1]["usable"], false);

        // And the backup too: both routes.
        assert_eq!(
            http(gw.addr, "POST", "/trunks/backup/drain").await.status,
            200
        );
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["routes_without_usable_trunk"],
            serde_json::json!(["emergency", "default"])
        );

        // Draining twice is fine.
        assert_eq!(
            http(gw.addr, "POST", "/trunks/backup/drain").await.status,
            200
        );
        for t in ["primary", "backup"] {
            let r = http(gw.addr, "POST", &format!("/trunks/{t}/undrain")).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["drained"], false);
        }
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["routes_without_usable_trunk"],
            serde_json::json!([])
        );
        gw.publish();
        assert_eq!(
            http(gw.addr, "GET", "/status").await.json()["routes_usable"],
            true
        );

        let r = http(gw.addr, "POST", "/trunks/nosuch/drain").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"], "no trunk named \"nosuch\"");
        assert_eq!(
            http(gw.addr, "POST", "/trunks/nosuch/undrain").await.status,
            404
        );
    }

    #[tokio::test]
    async fn readyz_holds_with_trunks_down_and_fails_for_a_stale_loop_and_a_shutdown() {
        let gw = gateway().await;
        {
            // Two calls the primary never answers: it goes down, and route
            // "default" has nothing else.
            let mut b = gw.bench.lock().unwrap();
            for id in ["d1", "d2"] {
                b.invite(id, "sip:bob@example.org");
                b.advance(40_000);
            }
            let primary = b.proxy.health().find("primary").unwrap();
            assert_eq!(
                b.proxy.health().trunk(primary).unwrap().state.as_str(),
                "down"
            );
        }
        gw.publish();
        // Trunks are not the process: still ready (an HA pair must not
        // withdraw its address because the trunks failed), and says which
        // routes have no trunk.
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["routes_without_usable_trunk"],
            serde_json::json!(["default"])
        );
        let s = http(gw.addr, "GET", "/status").await.json();
        assert_eq!(s["ready"], true);
        assert_eq!(s["routes_usable"], false);
        assert_eq!(s["trunks"][0]["state"], "down");
        assert_eq!(s["trunks"][0]["reason"], "live: no response");

        // A fresh proxy, published long ago: the loop looks wedged.
        let fresh = Bench::new(true);
        let snap = snapshot_from(&fresh.proxy, fresh.now, &gw.started);
        gw.board.publish_at(
            snap.clone(),
            Instant::now() - STALE_STATUS - Duration::from_secs(1),
        );
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 503);
        assert!(r.json()["reason"].as_str().unwrap().contains("no status"));
        gw.board.publish(snap);
        assert_eq!(http(gw.addr, "GET", "/readyz").await.status, 200);

        // Graceful shutdown: not ready at once, without a new snapshot.
        gw.board.set_accepting(false);
        let r = http(gw.addr, "GET", "/readyz").await;
        assert_eq!(r.status, 503);
        assert!(r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("not accepting"));
        assert_eq!(
            http(gw.addr, "GET", "/status").await.json()["accepting"],
            false
        );
    }

    fn state_with(commands: mpsc::Sender<AdminCommand>) -> AdminState {
        AdminState {
            metrics: Metrics::new(),
            status: StatusBoard::new(),
            commands,
            failed: Arc::default(),
            access: AccessBoard::new(AdminAccess::open()),
        }
    }

    #[tokio::test]
    async fn commands_fail_with_503_when_the_loop_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let (listener, addr) = listen().await;
        tokio::spawn(serve(listener, state_with(tx)));
        let t = Instant::now();
        let r = http(addr, "POST", "/trunks/primary/drain").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["error"], "the event loop is not running");
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn commands_time_out_with_503_when_the_loop_does_not_answer() {
        let (tx, mut rx) = mpsc::channel::<AdminCommand>(1);
        // A loop that takes commands and never answers them.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(cmd) = rx.recv().await {
                held.push(cmd);
            }
        });
        let (listener, addr) = listen().await;
        tokio::spawn(serve(listener, state_with(tx)));
        let t = Instant::now();
        let r = http(addr, "POST", "/trunks/primary/undrain").await;
        assert_eq!(r.status, 503);
        assert!(r.json()["error"].as_str().unwrap().contains("within 2 s"));
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
