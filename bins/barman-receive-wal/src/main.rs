//! Entry point: parse, set up logging, run, map the result to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_common::exit::{self, HasExitCode};
use barman_receive_wal::{cli, run, ToolError};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), exit::ExitCode::BadInput) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let result = cli::options(&matches).map_err(ToolError::Usage).and_then(|opts| {
        init_logging(opts.verbose);
        run(&opts)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barman-receive-wal: error: {e}");
            e.exit_code().into()
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BARMAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .init();
}
