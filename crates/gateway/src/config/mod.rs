//! The daemon's configuration: a YAML file in, validated settings out.
//!
//! YAML crate: serde-saphyr. serde_yaml is deprecated by its author and gets
//! no more releases; serde_yml is unsound (RUSTSEC-2025-0068) and archived.
//! serde-saphyr is maintained, pure Rust without unsafe code, reports its own
//! errors with line and column, and offers `Spanned<T>`, which keeps each
//! value's line and column so that errors found after parsing (a route naming
//! an unknown trunk, a duplicate name, a name that does not resolve) point at
//! the place in the file too. The cost: its 2.x releases declare Rust 1.89.
//!
//! Loading has two stages. Parsing reads the file into `Raw*` structs whose
//! leaves are `Scalar`s with their location; it checks only the shape (YAML
//! syntax, unknown keys, a list where a value belongs) and stops at the first
//! such error. Validation then turns every leaf into its type and checks it,
//! collecting every error in the file rather than the first. Every error
//! names the file, the line and column where known, the key path
//! (`trunks[1].address`) and what is wrong.
//!
//! Modules, in the order a file goes through them:
//! - `raw`: stage one, YAML to `Raw*` structs (the shape of the file);
//! - `validate`: stage two, `Raw*` to [`Config`], with `units` (durations)
//!   and, under it, the trunk and route sections and the warnings;
//! - `error`: [`ConfigError`] and how errors and warnings are printed;
//! - this module: the checked [`Config`] and `lifeline check-config`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::admin::AdminAccess;
use lifeline_io::{CaptureConfig, TcpLimits};
use lifeline_proxy::{
    AccessConfig, AllFailed, EmergencyConfig, LimitsConfig, Proxy, ProxyConfig, RouteConfig,
    Timers, Transport, TrunkConfig,
};

mod error;
mod raw;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub(crate) use error::{ConfigError, ConfigErrors, Warning};
use validate::{system_resolve, Resolver};

// ---------------------------------------------------------------------------
// The validated configuration.

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    node_name: String,
    listen: Vec<(Transport, SocketAddr)>,
    advertise: SocketAddr,
    admin: AdminConfig,
    journal: Option<PathBuf>,
    emergency: EmergencyConfig,
    access: AccessConfig,
    timers: Timers,
    trunks: Vec<TrunkConfig>,
    routes: Vec<RouteConfig>,
    all_failed: AllFailed,
    dialog_max_age: Duration,
    tcp_idle_timeout: Duration,
    limits: LimitsConfig,
    tcp_limits: TcpLimits,
    log: LogConfig,
    /// `capture:`, if set.
    capture: Option<CaptureConfig>,
    /// Things that are allowed but probably wrong (an under-sized backup).
    warnings: Vec<ConfigError>,
}

/// `admin:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdminConfig {
    /// `listen:` (or the short form's address; default 127.0.0.1:9060).
    pub(crate) listen: SocketAddr,
    /// The token read from `token_file:`, and `open_paths:`.
    pub(crate) access: AdminAccess,
    /// `token_file:` as read (relative paths made absolute against the
    /// configuration file's directory).
    pub(crate) token_file: Option<PathBuf>,
}

/// `log:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogConfig {
    /// `format:` (default human).
    pub(crate) format: LogFormat,
    /// `level:` (default info).
    pub(crate) level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: LogLevel::Info,
        }
    }
}

/// How log lines are written: the file's `log.format`, and the command
/// line's `--log-format` (which wins), so the variants' docs are its help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The most detailed level logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The level as written in the file (and as `tracing` filters spell it).
    #[allow(dead_code, reason = "read by the daemon's logging setup")]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

#[allow(dead_code, reason = "accessors read by the daemon (lifeline run)")]
impl Config {
    /// Read and validate the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = if e.kind() == io::ErrorKind::InvalidData {
                "is not UTF-8 text".to_string()
            } else {
                format!("cannot read: {e}")
            };
            ConfigErrors(vec![ConfigError::whole_file(&origin, message)])
        })?;
        Self::from_str(&text, &origin)
    }

    /// Parse and validate `text`; `origin` names it in errors (the file name).
    /// Trunk host names are resolved here, once.
    pub(crate) fn from_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Self::from_str_with(text, origin, &system_resolve)
    }

    /// [`Config::from_str`] with a given name resolver (tests: no DNS).
    fn from_str_with(
        text: &str,
        origin: &str,
        resolve: Resolver<'_>,
    ) -> Result<Config, ConfigErrors> {
        let raw = raw::parse(text, origin)?;
        validate::validate(raw, text, origin, resolve)
    }

    /// The proxy core's settings; `seed` for branches, tags and tokens (the
    /// daemon passes OS randomness).
    pub(crate) fn proxy_config(&self, seed: lifeline_proxy::Seed) -> ProxyConfig {
        let mut cfg = ProxyConfig::new(self.advertise, self.trunks.clone(), self.routes.clone());
        cfg.timers = self.timers;
        cfg.emergency = self.emergency.clone();
        cfg.access = self.access.clone();
        cfg.all_failed = self.all_failed.clone();
        cfg.dialog_max_age = self.dialog_max_age;
        cfg.limits = self.limits.clone();
        cfg.seed = seed;
        cfg
    }

    /// `limits.tcp`: the bounds on TCP connections.
    pub(crate) fn tcp_limits(&self) -> TcpLimits {
        self.tcp_limits
    }

    /// Sockets to listen on, in file order.
    pub(crate) fn listen(&self) -> Vec<(Transport, SocketAddr)> {
        self.listen.clone()
    }

    /// The address put in Via and Record-Route.
    pub(crate) fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// The admin HTTP server's address (health, metrics).
    pub(crate) fn admin(&self) -> SocketAddr {
        self.admin.listen
    }

    /// Who may use the admin API: its token and open paths.
    pub(crate) fn admin_access(&self) -> &AdminAccess {
        &self.admin.access
    }

    /// The admin API's settings as written.
    pub(crate) fn admin_config(&self) -> &AdminConfig {
        &self.admin
    }

    /// `node_name:` (default: the host's name): the gateway's name in its
    /// journal, so that reports over several gateways tell them apart.
    pub(crate) fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The journal directory, if journalling is on.
    pub(crate) fn journal(&self) -> Option<&Path> {
        self.journal.as_deref()
    }

    /// How long a TCP connection may stay idle before it is closed (zero:
    /// never).
    pub(crate) fn tcp_idle_timeout(&self) -> Duration {
        self.tcp_idle_timeout
    }

    /// Capture to a HEP collector, if set.
    pub(crate) fn capture(&self) -> Option<&CaptureConfig> {
        self.capture.as_ref()
    }

    /// Log format and level.
    pub(crate) fn log(&self) -> LogConfig {
        self.log
    }

    /// The trunks, with their addresses resolved.
    pub(crate) fn trunks(&self) -> &[TrunkConfig] {
        &self.trunks
    }

    /// The routes, in the order they are tried.
    pub(crate) fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    /// Who may call, and whose identity and priority headers are kept.
    pub(crate) fn access(&self) -> &AccessConfig {
        &self.access
    }

    /// What is allowed but probably wrong, in file order: the daemon logs
    /// each at WARN (at start and on reload), `check-config` prints them.
    pub(crate) fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }
}

/// `lifeline check-config FILE`: exit 0 and `FILE: ok (N trunks, M routes)`,
/// or every error on stderr and exit 1.
pub(crate) fn check_config(file: &Path) -> ExitCode {
    let cfg = match Config::load(file) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    // The proxy core checks its settings again when built; a disagreement
    // between the two is a bug here, but the operator should hear of it now
    // rather than when the daemon starts.
    if let Err(e) = Proxy::new(
        Instant::now(),
        cfg.proxy_config(lifeline_proxy::Seed::from(0)),
    ) {
        eprintln!(
            "{}: the proxy core refuses this configuration: {e}",
            file.display()
        );
        return ExitCode::from(1);
    }
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    for w in cfg.warnings() {
        eprintln!("{}", Warning(w));
    }
    let warnings = match cfg.warnings().len() {
        0 => String::new(),
        n => format!("; {}", plural(n, "warning")),
    };
    println!(
        "{}: ok ({}, {}{warnings})",
        file.display(),
        plural(cfg.trunks.len(), "trunk"),
        plural(cfg.routes.len(), "route")
    );
    ExitCode::SUCCESS
}
