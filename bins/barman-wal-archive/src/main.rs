//! Entry point: parse, run, map the result to Barman's exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_wal_archive::{cli, run, ToolError};

fn main() -> ExitCode {
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(3);
        }
    };
    let result = cli::options(&matches).map_err(ToolError::Usage).and_then(|opts| run(&opts));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ToolError::TestStatus(code)) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(e.code() as u8)
        }
    }
}
