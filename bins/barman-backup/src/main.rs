//! Entry point: parse, run, map the result to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_backup::{cli, run};

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
    match run(&cli::options(&matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barman-backup: ERROR: {e}");
            ExitCode::from(e.code() as u8)
        }
    }
}
