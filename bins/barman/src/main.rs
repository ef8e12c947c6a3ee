//! Entry point: parse, run, map the result to Barman's exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = barman::cli::normalise_args(std::env::args());
    let matches = match barman_common::cli::parse_args(barman::cli::command(), args, 2) {
        Ok(m) => m,
        Err(code) => return code,
    };
    ExitCode::from(barman::run(&matches) as u8)
}
