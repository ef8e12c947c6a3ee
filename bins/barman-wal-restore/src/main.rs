//! Entry point: parse, run, map the result to Barman's exit codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use barman_common::exit::{self, HasExitCode};
use barman_wal_restore::{cli, run, ToolError};

fn main() -> ExitCode {
    let matches = match barman_common::cli::parse_args(cli::command(), std::env::args_os(), exit::ExitCode::BadInput) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let opts = cli::options(&matches);
    if opts.server_compression.is_some() {
        println!("WARNING: --gzip and --bzip2 are deprecated; use --keep-compression");
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ToolError::TestStatus(_)) => e.exit_code().into(),
        Err(e) => {
            eprintln!("ERROR: {e}");
            if e.sleeps() && opts.sleep > 0 {
                println!("Sleeping for {} seconds.", opts.sleep);
                std::thread::sleep(std::time::Duration::from_secs(opts.sleep));
            }
            e.exit_code().into()
        }
    }
}
