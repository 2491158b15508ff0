//! `lifeline`: the SIP edge gateway binary.
//!
//! Subcommands:
//! - `lifeline parse [--json] FILE...`: would the gateway accept each message,
//!   and if not, what would it answer (or would it drop it), and why.
//! - `lifeline check-config FILE`: load a configuration the way the daemon
//!   does and print every error in it (exit 0 if it is usable, 1 if not).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod config;
mod engine;
mod metrics;
mod parse;

/// lifeline: a SIP edge gateway for emergency calls.
#[derive(Debug, Parser)]
#[command(name = "lifeline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        Command::Parse { json, files } => parse::run(&files, json),
        Command::CheckConfig { file } => config::check_config(&file),
    }
}
