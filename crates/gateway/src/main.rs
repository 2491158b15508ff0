//! `lifeline`: the SIP edge gateway binary.
//!
//! Subcommands:
//! - `lifeline parse [--json] FILE...`: would the gateway accept each message,
//!   and if not, what would it answer (or would it drop it), and why.
//! - `lifeline check-config FILE`: load a configuration the way the daemon
//!   does and print every error in it (exit 0 if it is usable, 1 if not).
//! - `lifeline report --journal PATH [--since T] [--until T] [--format table|csv|json]`:
//!   the incident timeline, outages, callback list and totals from journals.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod config;
mod demo;
mod metrics;
mod parse;
mod report;
mod run;

/// lifeline: a SIP edge gateway for emergency calls.
#[derive(Debug, Parser)]
#[command(name = "lifeline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with a configuration file. SIGTERM or SIGINT: stop
    /// taking calls, finish the ones in progress, exit 0. SIGHUP: reload the
    /// file without dropping calls (a bad file keeps the running one).
    Run {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format (default: the file's `log.format`, else human).
        #[arg(long, value_enum)]
        log_format: Option<run::LogFormat>,
        /// IO threads, each receiving, parsing and handling messages (default:
        /// one per core); a timer thread runs the core's timers.
        #[arg(long)]
        io_threads: Option<usize>,
    },
    /// The whole story in one command, on loopback: a gateway, two trunks and
    /// a caller placing emergency calls; the primary trunk fails and comes
    /// back; failover and failback are timed. Exit 0 if no call failed.
    Demo {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Calls per second.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// How the primary trunk fails.
        #[arg(long, value_enum, default_value = "kill")]
        fault: demo::Fault,
        /// How long each answered call lasts before the caller hangs up, in ms.
        #[arg(long, default_value_t = 1000)]
        hold_ms: u64,
        /// How long the PSAPs ring before they answer, in ms (calls ringing
        /// when the primary fails are rescued to the backup).
        #[arg(long, default_value_t = 300)]
        ring_ms: u64,
        /// Admin API address (GET /status, /metrics, /calls/failed); if it is
        /// taken, any free port on the same address.
        #[arg(long, default_value = "127.0.0.1:9060")]
        admin: std::net::SocketAddr,
    },
    /// Check SIP messages the way the gateway checks them off the wire (each
    /// file is one UDP datagram). Exit 0 if every file is accepted, 1 if not.
    Parse {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Files holding one SIP message each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a configuration file: print `FILE: ok (N trunks, M routes)` and
    /// exit 0, or print every error with its line, column and key and exit 1.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Read call journals: incident timeline, outages and the calls they
    /// touched, the callback list of emergency calls that did not connect,
    /// totals.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Run {
            config,
            log_format,
            io_threads,
        } => run::run(&config, log_format, io_threads),
        Command::Demo {
            duration,
            rate,
            fault,
            hold_ms,
            ring_ms,
            admin,
        } => demo::run(demo::DemoOptions {
            admin,
            duration: std::time::Duration::from_secs(duration.max(5)),
            rate: rate.clamp(1, 2000),
            fault,
            hold: std::time::Duration::from_millis(hold_ms),
            ring: std::time::Duration::from_millis(ring_ms.min(10_000)),
        }),
        Command::Parse { json, files } => parse::run(&files, json),
        Command::CheckConfig { file } => config::check_config(&file),
        Command::Report(args) => report::run(&args),
    }
}
