//! `flood`: load generators and a counting trunk for lifeline's flood
//! benchmark (tests/flood/run.sh).
//!
//! - `flood invite`: well-formed non-emergency INVITEs at a steady rate
//!   from one or many loopback addresses; responses counted by status.
//! - `flood garbage`: datagrams that are not usable SIP.
//! - `flood trickle`: TCP connections that each write one byte a second.
//! - `flood trunk`: a UDP trunk that answers calls and counts the INVITEs
//!   reaching it, emergency and other apart.
//!
//! Each runs on one thread (the machine running a benchmark is shared with
//! the gateway it measures) and ends with one `key=value` summary line on
//! stdout, after `--duration` or at SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod garbage;
mod invite;
mod trickle;
mod trunk;

/// Flood generators and a counting trunk for benchmarking lifeline.
#[derive(Debug, Parser)]
#[command(name = "flood", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Well-formed non-emergency INVITEs at --rate per second from
    /// --sources consecutive loopback addresses.
    Invite(invite::InviteArgs),
    /// Garbage datagrams (random bytes, truncated SIP, bad start lines, bad
    /// headers, stray responses) at --rate per second.
    Garbage(garbage::GarbageArgs),
    /// --connections TCP connections, each writing the start of an INVITE
    /// one byte per --interval-ms.
    Trickle(trickle::TrickleArgs),
    /// A UDP trunk answering every call (100, 180, 200) and counting the
    /// INVITEs it receives, emergency and other apart.
    Trunk(trunk::TrunkArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flood: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        match cli.command {
            Command::Invite(a) => invite::run(a).await,
            Command::Garbage(a) => garbage::run(a).await,
            Command::Trickle(a) => trickle::run(a).await,
            Command::Trunk(a) => trunk::run(a).await,
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flood: {e}");
            ExitCode::FAILURE
        }
    }
}
