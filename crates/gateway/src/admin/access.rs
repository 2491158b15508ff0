//! Who may use the admin API: a bearer token read from `admin.token_file`,
//! and the paths left open without it (`admin.open_paths`).
//!
//! Without a token file every request is served: the configuration allows
//! that only on a loopback address. With one, every request but those for
//! an open path needs `Authorization: Bearer <token>`, compared in constant
//! time (`subtle`); anything else is answered 401 with
//! `WWW-Authenticate: Bearer`. The token can be changed with a reload
//! (SIGHUP): the [`AccessBoard`] holds the one in force.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The paths served without the token unless `admin.open_paths` says
/// otherwise: what load balancers, keepalived and Prometheus ask.
pub(crate) const DEFAULT_OPEN_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// The admin API's bearer token. Its `Debug` does not show it, so it stays
/// out of logs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AdminToken(String);

impl AdminToken {
    /// A token as read from its file (already trimmed and checked).
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    /// Whether `given` is the token. The comparison takes the same time
    /// whichever byte differs (only a difference in length returns early,
    /// which tells nothing of the token's bytes).
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The admin API's access rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdminAccess {
    /// `None`: no token file, every request is served.
    pub(crate) token: Option<AdminToken>,
    /// Paths served without the token (exact match on the request's path).
    pub(crate) open_paths: Vec<String>,
}

impl Default for AdminAccess {
    fn default() -> Self {
        Self::open()
    }
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No usable `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not the one configured.
    Wrong,
}

impl AdminAccess {
    /// No token: every request is served (a loopback address only).
    pub(crate) fn open() -> Self {
        Self {
            token: None,
            open_paths: DEFAULT_OPEN_PATHS.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Whether a request for `path` with these headers may be served.
    pub(crate) fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Denied> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if self.open_paths.iter().any(|p| p == path) {
            return Ok(());
        }
        match bearer(headers) {
            None => Err(Denied::Missing),
            Some(given) if token.matches(given) => Ok(()),
            Some(_) => Err(Denied::Wrong),
        }
    }
}

/// The credentials of `Authorization: Bearer <token>` (RFC 6750 §2.1; the
/// scheme in any case). `None` without exactly one Authorization header of
/// that scheme.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let value = value.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    let token = rest.get(start..)?;
    let end = token.iter().rposition(|&b| b != b' ' && b != b'\t')?;
    token.get(..=end)
}

/// The access rules in force, replaced by a reload.
#[derive(Debug)]
pub(crate) struct AccessBoard(RwLock<Arc<AdminAccess>>);

impl AccessBoard {
    pub(crate) fn new(access: AdminAccess) -> Arc<Self> {
        Arc::new(Self(RwLock::new(Arc::new(access))))
    }

    /// The rules in force now.
    pub(crate) fn current(&self) -> Arc<AdminAccess> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Put new rules in force (a reload).
    pub(crate) fn replace(&self, access: AdminAccess) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(access);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn guarded() -> AdminAccess {
        AdminAccess {
            token: Some(AdminToken::new("s3cr3t-t0ken-0123456789".into())),
            ..AdminAccess::open()
        }
    }

    #[test]
    fn bearer_credentials() {
        assert_eq!(bearer(&headers(&["Bearer abc"])), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers(&["bearer  abc "])), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers(&["BEARER abc"])), Some(&b"abc"[..]));
        assert_eq!(bearer(&headers(&["Basic YWJjOmRlZg=="])), None);
        assert_eq!(bearer(&headers(&["Bearer"])), None);
        assert_eq!(bearer(&headers(&["Bearer "])), None);
        assert_eq!(bearer(&headers(&["Bearerabc"])), None);
        assert_eq!(bearer(&headers(&[])), None);
        // Two Authorization headers: ambiguous, refused.
        assert_eq!(bearer(&headers(&["Bearer a", "Bearer b"])), None);
    }

    #[test]
    fn token_paths_and_answers() {
        let a = guarded();
        let good = headers(&["Bearer s3cr3t-t0ken-0123456789"]);
        assert_eq!(a.check("/status", &good), Ok(()));
        assert_eq!(a.check("/trunks/primary/drain", &good), Ok(()));
        assert_eq!(a.check("/status", &headers(&[])), Err(Denied::Missing));
        assert_eq!(
            a.check("/status", &headers(&["Bearer s3cr3t-t0ken-012345678"])),
            Err(Denied::Wrong)
        );
        assert_eq!(
            a.check("/status", &headers(&["Bearer s3cr3t-t0ken-01234567890"])),
            Err(Denied::Wrong)
        );
        for open in DEFAULT_OPEN_PATHS {
            assert_eq!(a.check(open, &headers(&[])), Ok(()), "{open}");
        }
        // Exact paths only.
        assert_eq!(a.check("/metrics/", &headers(&[])), Err(Denied::Missing));
        assert_eq!(
            a.check("/calls/failed", &headers(&[])),
            Err(Denied::Missing)
        );
        // No token file: everything is served.
        assert_eq!(
            AdminAccess::open().check("/calls/failed", &headers(&[])),
            Ok(())
        );
        // No open paths: the token everywhere.
        let closed = AdminAccess {
            open_paths: vec![],
            ..guarded()
        };
        assert_eq!(
            closed.check("/healthz", &headers(&[])),
            Err(Denied::Missing)
        );
        assert_eq!(closed.check("/healthz", &good), Ok(()));
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let text = format!("{:?}", guarded());
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn a_reload_replaces_the_rules() {
        let board = AccessBoard::new(AdminAccess::open());
        assert!(board.current().token.is_none());
        board.replace(guarded());
        assert_eq!(*board.current(), guarded());
    }
}
