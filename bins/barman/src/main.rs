//! Entry point: parse, run, map the result to Barman's exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = barman::cli::normalise_args(std::env::args());
    let matches = match barman::cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    ExitCode::from(barman::run(&matches) as u8)
}
