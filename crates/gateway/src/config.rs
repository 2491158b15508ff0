//! The daemon's configuration: YAML in, validated settings out (being written).

use std::path::Path;
use std::process::ExitCode;

/// `lifeline check-config FILE`.
pub(crate) fn check_config(file: &Path) -> ExitCode {
    eprintln!("{}: check-config is not implemented yet", file.display());
    ExitCode::from(1)
}
