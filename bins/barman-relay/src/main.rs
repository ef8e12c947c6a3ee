//! Entry point: parse, run, map the result to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_common::exit::{self, HasExitCode};
use barman_relay::{cli, run};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), exit::ExitCode::BadInput) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match run(&cli::options(&matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit_code().into(),
    }
}
