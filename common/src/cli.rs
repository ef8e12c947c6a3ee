//! Command-line parsing shared by every binary: clap's own exit status 2 would read as
//! "connection failed" in Barman's table, so usage errors get the caller's code instead.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{ArgMatches, Command};

/// Parses `args` with `cmd`. `--help`/`--version` print and yield `Err(SUCCESS)`; a usage
/// error prints clap's message and yields `Err(usage_code)` (a [`crate::exit::ExitCode`] or a
/// raw status).
pub fn parse_args<I, T>(cmd: Command, args: I, usage_code: impl Into<ExitCode>) -> Result<ArgMatches, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    cmd.try_get_matches_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            usage_code.into()
        } else {
            ExitCode::SUCCESS
        }
    })
}
