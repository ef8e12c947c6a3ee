//! Entry point: parse, run, map the result to Barman's exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_common::exit;
use clap::FromArgMatches;

fn main() -> ExitCode {
    let args = barman::cli::normalise_args(std::env::args());
    let matches = match barman_common::cli::parse_args(barman::cli::command(), args, exit::ExitCode::Usage) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match barman::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => barman::run(&cli).into(),
        Err(e) => {
            let _ = e.print();
            exit::ExitCode::Usage.into()
        }
    }
}
