//! `admin:`: the admin API's address, its bearer token and the paths open
//! without it.
//!
//! ```yaml
//! admin: 127.0.0.1:9060               # the short form: loopback, no token
//! admin:
//!   listen: 0.0.0.0:9060
//!   token_file: /etc/lifeline/admin.token
//!   open_paths: [/metrics, /healthz, /readyz]
//! ```
//!
//! The token file is read here, at load and at every reload. It must be a
//! file that only its owner and group can read, holding one word of
//! printable ASCII (white space around it is trimmed). A non-loopback
//! address without a token file is an error: anyone who can reach it could
//! drain every trunk and read callers' identities and locations.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::super::raw::{RawAdmin, RawAdminMap, Scalar, S};
use super::{Checked, Validator, DEFAULT_ADMIN};
use crate::admin::{AdminAccess, AdminToken, DEFAULT_OPEN_PATHS};
use crate::config::AdminConfig;

/// Tokens shorter than this draw a warning.
const SHORT_TOKEN: usize = 16;
/// A token file longer than this is not a token.
const MAX_TOKEN_FILE: u64 = 4096;

impl Validator<'_> {
    /// `admin:` in either form; the default without it.
    pub(super) fn admin(&mut self, raw: Option<&Spanned<RawAdmin>>) -> Checked<AdminConfig> {
        let Some(raw) = raw else {
            return Some(AdminConfig {
                listen: DEFAULT_ADMIN,
                access: AdminAccess::open(),
                token_file: None,
            });
        };
        match &raw.value {
            RawAdmin::Listen(s) => {
                let v = S {
                    value: s.clone(),
                    referenced: raw.referenced,
                    defined: raw.defined,
                };
                let listen = self.ip_port(&v, "admin")?;
                self.loopback_or_token(listen, false, Some(raw.referenced), "admin")?;
                Some(AdminConfig {
                    listen,
                    access: AdminAccess::open(),
                    token_file: None,
                })
            }
            RawAdmin::Map(m) => self.admin_map(m, raw.referenced),
        }
    }

    fn admin_map(&mut self, m: &RawAdminMap, at: Location) -> Checked<AdminConfig> {
        let listen = match &m.listen.0 {
            Some(v) => self.ip_port(v, "admin.listen"),
            None => Some(DEFAULT_ADMIN),
        };
        let token = match &m.token_file.0 {
            Some(v) => self.token_file(v).map(Some),
            None => Some(None),
        };
        let open_paths = self.open_paths(m);
        let listen = listen?;
        let (token_file, token) = match token? {
            Some((path, token)) => (Some(path), Some(token)),
            None => (None, None),
        };
        let listen_at = m.listen.0.as_ref().map_or(at, |v| v.referenced);
        self.loopback_or_token(listen, token.is_some(), Some(listen_at), "admin.listen")?;
        Some(AdminConfig {
            listen,
            access: AdminAccess {
                token,
                open_paths: open_paths?,
            },
            token_file,
        })
    }

    /// A non-loopback address needs a token.
    fn loopback_or_token(
        &mut self,
        listen: SocketAddr,
        token: bool,
        at: Option<Location>,
        key: &str,
    ) -> Checked<()> {
        if token || listen.ip().is_loopback() {
            return Some(());
        }
        self.error(
            at,
            key,
            format!(
                "{listen} is not a loopback address, and there is no admin.token_file: anyone \
                 who can reach it could drain every trunk and read callers' identities and \
                 locations. Set token_file (see docs/SECURITY.md) or listen on 127.0.0.1"
            ),
        );
        None
    }

    /// `admin.token_file`: read now; the path as written (made absolute
    /// against the configuration file's directory) and the token.
    fn token_file(&mut self, v: &S) -> Checked<(PathBuf, AdminToken)> {
        const KEY: &str = "admin.token_file";
        let written = self.name(v, KEY, "the path of a file holding the admin API's token")?;
        let path = self.beside_config(Path::new(&written));
        let shown = path.display().to_string();
        let bad = |s: &mut Self, msg: String| {
            s.error(Some(v.referenced), KEY, msg);
            None
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => return bad(self, format!("cannot read {shown}: {e}")),
        };
        if !meta.is_file() {
            return bad(self, format!("{shown} is not a file"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                return bad(
                    self,
                    format!(
                        "{shown} can be read by every user (mode {mode:04o}), so its token is \
                         no secret: make it readable by its owner and group only, e.g. \
                         `chmod 0640 {shown}`"
                    ),
                );
            }
        }
        if meta.len() > MAX_TOKEN_FILE {
            return bad(
                self,
                format!(
                    "{shown} holds {} bytes: a token file holds one token",
                    meta.len()
                ),
            );
        }
        let mut text = String::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text));
        if let Err(e) = read {
            let why = if e.kind() == std::io::ErrorKind::InvalidData {
                "is not UTF-8 text".to_string()
            } else {
                format!("cannot be read: {e}")
            };
            return bad(self, format!("{shown} {why}"));
        }
        let token = text.trim();
        if token.is_empty() {
            return bad(
                self,
                format!(
                    "{shown} is empty: put a long random token in it, e.g. \
                     `openssl rand -hex 32 > {shown}`"
                ),
            );
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(
                self,
                format!(
                    "the token in {shown} holds white space, control or non-ASCII \
                     characters: a bearer token is one word of printable ASCII"
                ),
            );
        }
        if token.len() < SHORT_TOKEN {
            self.warning(
                Some(v.referenced),
                KEY,
                format!(
                    "the token in {shown} has {} characters, which is easy to guess: use at \
                     least {SHORT_TOKEN} random ones (`openssl rand -hex 32`)",
                    token.len()
                ),
            );
        }
        Some((path, AdminToken::new(token.to_string())))
    }

    /// A relative path is taken from the configuration file's directory.
    fn beside_config(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match Path::new(self.origin).parent() {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }

    /// `admin.open_paths`: exact request paths served without the token;
    /// the default three when not written.
    fn open_paths(&mut self, m: &RawAdminMap) -> Checked<Vec<String>> {
        const KEY: &str = "admin.open_paths";
        let Some(list) = &m.open_paths else {
            return Some(DEFAULT_OPEN_PATHS.iter().map(|p| p.to_string()).collect());
        };
        if m.token_file.0.is_none() {
            self.warning(
                Some(list.referenced),
                KEY,
                "has no effect without token_file: every path is open".into(),
            );
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in list.value.iter().enumerate() {
            let key = format!("{KEY}[{i}]");
            let Some(p) = self.present(v, &key, "a path such as /metrics") else {
                ok = false;
                continue;
            };
            let Scalar::Text(_) = &v.value else {
                self.error(
                    Some(v.referenced),
                    &key,
                    format!("{p:?} is not a path: write one such as /metrics"),
                );
                ok = false;
                continue;
            };
            if !p.starts_with('/')
                || !p.bytes().all(|b| b.is_ascii_graphic())
                || p.contains(['?', '#'])
            {
                self.error(
                    Some(v.referenced),
                    &key,
                    format!("{p:?} is not a path: it starts with / and has no spaces, query or fragment, e.g. /metrics"),
                );
                ok = false;
                continue;
            }
            if p.starts_with("/calls") || p.starts_with("/trunks") {
                self.warning(
                    Some(v.referenced),
                    &key,
                    format!("{p} opens to anyone who can reach the admin address what the token guards (callers' data or trunk drains)"),
                );
            }
            out.push(p);
        }
        ok.then_some(out)
    }
}
