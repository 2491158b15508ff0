//! `lifeline report --journal PATH [--journal PATH ...] [--since T] [--until T]
//! [--format table|csv|json]`: the incident timeline, outages, the callback
//! list and totals, read from one or more journals. With several, every
//! row names its gateway (`node_name`, written in each segment) and the
//! callback list merges them by time.
//!
//! Exit status: 0 with a report (problems found in the journal, such as the
//! torn final record a crash leaves, are printed as notes: on stderr for csv
//! and json, in the table otherwise); 2 if an argument or a journal path is
//! wrong.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, ValueEnum};
use lifeline_journal::report::{self, ReportBuilder, Window};
use lifeline_journal::{JournalReader, WallTime};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned tables for people: timeline, outages, callback list, totals.
    Table,
    /// The callback list as CSV (RFC 4180), for a spreadsheet or a dialler.
    Csv,
    /// Everything as JSON.
    Json,
}

/// Arguments of `lifeline report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// A journal directory (every segment in it) or one segment file. Repeat
    /// to merge the journals of several gateways.
    #[arg(long = "journal", value_name = "PATH", required = true)]
    journals: Vec<PathBuf>,
    /// Only calls and events at or after T: an RFC 3339 time with an offset
    /// (2023-06-25T10:00:00Z) or a span back from now (2h, 90m, 1d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only calls and events before T (same forms as --since).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub(crate) fn run(args: &ReportArgs) -> ExitCode {
    let now = WallTime::from_system(SystemTime::now());
    let parse = |arg: &Option<String>, flag: &str| match arg {
        None => Ok(None),
        Some(s) => report::parse_time(s, now)
            .map(Some)
            .map_err(|e| format!("--{flag} {e}")),
    };
    let window = match (parse(&args.since, "since"), parse(&args.until, "until")) {
        (Ok(since), Ok(until)) => Window { since, until },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("lifeline report: {e}");
            return ExitCode::from(2);
        }
    };
    let reader = match JournalReader::open(&args.journals) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeline report: {e}");
            return ExitCode::from(2);
        }
    };
    let segments = reader.segments().count() as u64;
    let mut builder = ReportBuilder::new(window);
    // Each source's gateway: the name in its segments' headers, else its
    // directory's name; looked up once per source and name, not per record.
    let mut current: Option<(usize, Option<String>)> = None;
    let issues = reader.for_each_from(|origin, e| {
        let same = current
            .as_ref()
            .is_some_and(|(src, node)| *src == origin.source && node.as_deref() == origin.node);
        if !same {
            builder.set_gateway(&origin.gateway());
            current = Some((origin.source, origin.node.map(str::to_string)));
        }
        builder.push(&e.record);
    });
    let rep = builder.finish(&issues, segments);
    let out = match args.format {
        Format::Table => report::render_table(&rep),
        Format::Csv => report::render_csv(&rep),
        Format::Json => report::render_json(&rep) + "\n",
    };
    if args.format != Format::Table {
        for i in &rep.issues {
            eprintln!("note: {i}");
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}
