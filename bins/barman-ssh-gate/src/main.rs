//! Entry point: parse, check the ssh command, run it or report the refusal.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_common::exit::{self, HasExitCode};
use barman_ssh_gate::{cli, run};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), exit::ExitCode::Usage) {
        Ok(m) => m,
        Err(code) => return code,
    };
    match run(&cli::options(&matches)) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("ERROR: {e}");
            e.exit_code().into()
        }
    }
}
