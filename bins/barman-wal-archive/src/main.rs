//! Entry point: parse, run, map the result to Barman's exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_common::exit::{self, HasExitCode};
use barman_wal_archive::{cli, run, ToolError};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), exit::ExitCode::BadInput) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let result = cli::options(&matches).map_err(ToolError::Usage).and_then(|opts| run(&opts));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ToolError::TestStatus(_)) => e.exit_code().into(),
        Err(e) => {
            eprintln!("ERROR: {e}");
            e.exit_code().into()
        }
    }
}
