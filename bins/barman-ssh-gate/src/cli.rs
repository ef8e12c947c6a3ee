//! Command line of `barman-ssh-gate`.

use std::path::PathBuf;

use barman_server::gate::GateOptions;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    Command::new("barman-ssh-gate")
        .version(concat!(env!("CARGO_PKG_VERSION"), " (Barman 3.20.1 compatible)"))
        .about("Forced ssh command on the backup host: lets a Postgres host's key run only put-wal and get-wal for its servers")
        .long_about(
            "Used as the command= of a key in the barman user's authorized_keys, for example\n\
             restrict,command=\"/usr/bin/barman-ssh-gate -c /etc/barman.conf pg\" ssh-ed25519 AAAA... postgres@pg\n\
             It reads SSH_ORIGINAL_COMMAND and runs barman (without a shell) only for `put-wal SERVER` and \
             `get-wal [options] SERVER WAL` of the servers named here, as barman-wal-archive and barman-wal-restore \
             send them. Anything else is refused and logged to Barman's log file.",
        )
        .after_help("Exit status: the allowed barman command's own status; 1 refused; 2 barman could not be started.")
        .arg(Arg::new("config").short('c').long("config").value_parser(clap::value_parser!(PathBuf)).help("the configuration file the allowed commands use"))
        .arg(Arg::new("SERVER").required(true).action(ArgAction::Append).help("a server this key may archive to and restore from"))
}

/// Converts parsed arguments into [`GateOptions`].
pub fn options(m: &ArgMatches) -> GateOptions {
    GateOptions {
        config: m.get_one::<PathBuf>("config").cloned(),
        servers: m.get_many::<String>("SERVER").map(|v| v.cloned().collect()).unwrap_or_default(),
    }
}
