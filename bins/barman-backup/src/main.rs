//! Entry point: parse, run, map the result to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_backup::{cli, run};
use barman_common::exit::{self, HasExitCode};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), exit::ExitCode::BadInput) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match run(&cli::options(&matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barman-backup: ERROR: {e}");
            e.exit_code().into()
        }
    }
}
