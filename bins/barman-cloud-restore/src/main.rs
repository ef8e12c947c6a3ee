//! Entry point: parse, run, map the result to Barman's cloud exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = barman_cloud_restore::cli::command();
    let m = match barman_common::cli::parse_args(cmd, std::env::args_os(), barman_common::exit::ExitCode::BadInput) {
        Ok(m) => m,
        Err(code) => return code,
    };
    barman_cloud::error::finish(
        barman_cloud_restore::cli::options(&m).and_then(|o| barman_cloud_restore::run(&o)),
        "Barman cloud restore",
    )
}
