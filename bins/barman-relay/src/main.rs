//! Entry point: parse, run, map the result to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_relay::{cli, run};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), 3) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match run(&cli::options(&matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(e.code() as u8),
    }
}
