//! The admin API's HTTP server: the connection loop and what guards it.
//!
//! Every limit is fixed (docs/SECURITY.md lists them):
//!
//! | limit | value | beyond it |
//! |---|---|---|
//! | connections at once | [`MAX_CONNECTIONS`] | further connections wait in the listen backlog until one closes |
//! | time to send a request's line and headers (and how long an idle connection is kept) | [`HEADER_TIMEOUT`] | the connection is closed |
//! | request line and headers | [`MAX_HEADER_BYTES`] bytes, [`MAX_HEADERS`] headers | `431`, connection closed |
//! | request body (no endpoint takes one) | [`MAX_BODY_BYTES`] bytes | `413` |
//! | time to answer a request | [`REQUEST_TIMEOUT`] | `408` |
//!
//! hyper's HTTP/1 connection builder sets the header limits and timeout,
//! which `axum::serve` leaves at hyper's defaults; tower-http's layers set
//! the request timeout and body limit; a semaphore held by each connection
//! caps how many are served at once.
//!
//! In front of the routes, [`guard`] applies the
//! [`AdminAccess`](super::AdminAccess) in force
//! and logs every request that may change state (any method but GET, HEAD,
//! OPTIONS and TRACE) at WARN with the peer's address, what was asked and
//! the answer, whether it was carried out or refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::access::Denied;
use super::AdminState;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send a request's line and headers, counted from
/// when the connection is ready for it (so also how long an idle keep-alive
/// connection is kept).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may take to be answered (a drain waits at most
/// [`super::COMMAND_TIMEOUT`] for the event loop, well within it).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The request line and headers, in bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Header fields in one request.
pub(crate) const MAX_HEADERS: usize = 32;
/// A request body, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 1024;
/// The connection limit is logged at most this often while it is reached.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The routes with their limits and the access guard in front.
pub(super) fn guarded(routes: Router<AdminState>, state: AdminState) -> Router {
    routes
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serve `app` on `listener` until the runtime stops: at most
/// [`MAX_CONNECTIONS`] connections at once, each with the header limits and
/// timeout above; each request carries its peer's address
/// ([`ConnectInfo`]).
pub(super) async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut logged: Option<Instant> = None;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    loop {
        if slots.available_permits() == 0 && logged.is_none_or(|at| at.elapsed() >= LIMIT_LOG_EVERY)
        {
            tracing::warn!(
                max = MAX_CONNECTIONS,
                "admin API: connection limit reached; new connections wait"
            );
            logged = Some(Instant::now());
        }
        // Never closed, so acquiring fails only if it were.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let app = app.clone().map_request(move |mut req: Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        tokio::spawn(async move {
            // Errors are the client's: it went away, was too slow, or sent
            // too much.
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin API: connection ended");
            }
            drop(permit);
        });
    }
}

/// After a failed accept: a connection that failed before it was taken is
/// skipped; anything else (out of file descriptors) is waited out.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "admin API: accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Apply the access rules in force, and log requests that may change
/// state.
async fn guard(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let access = st.access.current();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
    let mutation = !method.is_safe();
    let response = match access.check(&path, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(denied) => {
            if !mutation {
                tracing::info!(%peer, %method, %path, "admin API: request refused: no valid token");
            }
            unauthorized(denied)
        }
    };
    if mutation {
        let status = response.status().as_u16();
        tracing::warn!(%peer, %method, %path, status, "admin API: {method} {path} from {peer}: {status}");
    }
    response
}

/// 401 with the challenge of RFC 6750 §3.
fn unauthorized(denied: Denied) -> Response {
    let (challenge, error) = match denied {
        Denied::Missing => (
            "Bearer realm=\"lifeline\"",
            "this path needs Authorization: Bearer <token> (admin.token_file)",
        ),
        Denied::Wrong => (
            "Bearer realm=\"lifeline\", error=\"invalid_token\"",
            "the bearer token is not the admin API's",
        ),
    };
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({ "error": error }))).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}
