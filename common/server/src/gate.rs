//! The forced command of a Postgres host's ssh key on the backup host
//! (`restrict,command="barman-ssh-gate pg" ssh-ed25519 …` in `authorized_keys`): whatever
//! the client asks for arrives in `SSH_ORIGINAL_COMMAND`, and only what
//! `barman-wal-archive` and `barman-wal-restore` need for the named servers runs — `barman
//! put-wal SERVER` and `barman get-wal [its options] SERVER WAL` (with `--test`, `--peek`,
//! `--batch`) — executed directly, never through a shell. Anything else is refused, and the
//! refusal is logged to Barman's log file, so a compromised Postgres host can neither run
//! commands on the backup host nor touch another server's WAL or backups.

use std::path::{Path, PathBuf};

use barman_common::exit::{ExitCode, HasExitCode};
use barman_common::remote::split_words;
use barman_common::wal::WalFileName;

/// What the gate lets through.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The configuration file the allowed commands use (`-c`), else Barman's default search.
    pub config: Option<PathBuf>,
    /// The servers this key may archive to and restore from.
    pub servers: Vec<String>,
}

/// Why a command was not run.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Not an allowed command.
    #[error("ssh command refused by barman-ssh-gate ({why}): {command}")]
    Refused {
        /// What was asked, as received.
        command: String,
        /// Which rule it broke.
        why: String,
    },
    /// `barman` could not be started.
    #[error("cannot run barman: {0}")]
    Exec(std::io::Error),
}

impl HasExitCode for GateError {
    fn exit_code(&self) -> ExitCode {
        match self {
            GateError::Refused { .. } => ExitCode::Failure,
            GateError::Exec(_) => ExitCode::Local,
        }
    }
}

/// `get-wal` flags that take no value, and those that take a number.
const GET_WAL_FLAGS: [&str; 11] =
    ["-P", "--partial", "-z", "-x", "--gzip", "-j", "--bzip2", "--keep-compression", "--batch-lz4", "-t", "--test"];
const GET_WAL_NUMBERS: [&str; 3] = ["-p", "--peek", "--batch"];

/// The `barman` arguments to run for `original`, or why not.
pub fn authorize(original: &str, opts: &GateOptions) -> Result<Vec<String>, String> {
    let words = split_words(original)?;
    let mut it = words.iter().map(String::as_str).peekable();
    if it.next() != Some("barman") {
        return Err("not a barman command".to_owned());
    }
    while let Some(w) = it.next_if(|w| w.starts_with('-')) {
        let value = match w.split_once('=') {
            Some(("--config", v)) => v.to_owned(),
            None if w == "-c" || w == "--config" => it.next().ok_or("option without a value")?.to_owned(),
            _ => return Err(format!("global option {w} not allowed")),
        };
        if !same_config(&value, opts.config.as_deref()) {
            return Err(format!("configuration file {value} not allowed"));
        }
    }
    let sub = it.next().ok_or("no subcommand")?;
    let rest: Vec<&str> = it.collect();
    let mut args = Vec::new();
    if let Some(config) = &opts.config {
        args.extend(["-c".to_owned(), config.display().to_string()]);
    }
    args.push(sub.to_owned());
    match sub {
        "put-wal" => args.extend(put_wal(&rest, opts)?),
        "get-wal" => args.extend(get_wal(&rest, opts)?),
        other => return Err(format!("subcommand {other} not allowed")),
    }
    Ok(args)
}

fn same_config(asked: &str, allowed: Option<&Path>) -> bool {
    allowed.is_some_and(|a| Path::new(asked) == a)
}

fn server<'a>(name: &'a str, opts: &GateOptions) -> Result<&'a str, String> {
    if opts.servers.iter().any(|s| s == name) {
        Ok(name)
    } else {
        Err(format!("server {name} not allowed"))
    }
}

fn put_wal(rest: &[&str], opts: &GateOptions) -> Result<Vec<String>, String> {
    let (flags, positional): (Vec<&str>, Vec<&str>) = rest.iter().partition(|w| w.starts_with('-'));
    if let Some(bad) = flags.iter().find(|f| !matches!(**f, "-t" | "--test" | "--wire-lz4")) {
        return Err(format!("put-wal option {bad} not allowed"));
    }
    let [name] = positional[..] else { return Err("put-wal takes one server".to_owned()) };
    let mut out: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
    out.push(server(name, opts)?.to_owned());
    Ok(out)
}

fn get_wal(rest: &[&str], opts: &GateOptions) -> Result<Vec<String>, String> {
    let (mut out, mut positional) = (Vec::new(), Vec::new());
    let mut it = rest.iter();
    while let Some(&w) = it.next() {
        if GET_WAL_FLAGS.contains(&w) {
            out.push(w.to_owned());
        } else if GET_WAL_NUMBERS.contains(&w) {
            let n = it.next().ok_or(format!("{w} without a value"))?;
            n.parse::<u32>().map_err(|_| format!("{w} {n}: not a number"))?;
            out.extend([w.to_owned(), (*n).to_owned()]);
        } else if w.starts_with('-') {
            return Err(format!("get-wal option {w} not allowed"));
        } else {
            positional.push(w);
        }
    }
    let [name, wal] = positional[..] else { return Err("get-wal takes a server and a WAL name".to_owned()) };
    out.push(server(name, opts)?.to_owned());
    wal.parse::<WalFileName>().map_err(|_| format!("{wal} is not a WAL file name"))?;
    out.push(wal.to_owned());
    Ok(out)
}

/// Checks `SSH_ORIGINAL_COMMAND` and replaces this process with `barman` when it is
/// allowed; a refusal is logged (Barman's log file) and returned.
pub fn run(opts: &GateOptions) -> Result<std::convert::Infallible, GateError> {
    use std::os::unix::process::CommandExt;
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    if let Ok(loaded) =
        barman_common::config::load_default(opts.config.as_deref(), &barman_common::config::LoadOptions::default())
    {
        crate::log::init(loaded.config.global().log_file.clone());
    }
    let args = authorize(&original, opts).map_err(|why| {
        let client = std::env::var("SSH_CLIENT").unwrap_or_default();
        let client = client.split_whitespace().next().unwrap_or("unknown host");
        crate::log::warning("ssh_gate", &format!("refused ssh command from {client} ({why}): {original}"));
        GateError::Refused { command: original.clone(), why }
    })?;
    Err(GateError::Exec(std::process::Command::new(barman_common::remote::sibling_binary("barman")).args(args).exec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GateOptions {
        GateOptions { config: Some(PathBuf::from("/etc/barman.conf")), servers: vec!["pg".to_owned()] }
    }

    #[test]
    fn lets_the_clients_commands_through() {
        let ok = |line: &str| authorize(line, &opts()).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(ok("barman --config='/etc/barman.conf' put-wal pg"), ["-c", "/etc/barman.conf", "put-wal", "pg"]);
        assert_eq!(ok("barman put-wal 'pg' --test"), ["-c", "/etc/barman.conf", "put-wal", "--test", "pg"]);
        assert_eq!(
            ok("barman -c /etc/barman.conf get-wal --batch '4096' --keep-compression --batch-lz4 'pg' '000000010000000000000002'"),
            ["-c", "/etc/barman.conf", "get-wal", "--batch", "4096", "--keep-compression", "--batch-lz4", "pg", "000000010000000000000002"]
        );
        ok("barman get-wal -P --peek 8 pg 000000010000000000000002.partial");
        ok("barman get-wal pg 00000002.history");
    }

    #[test]
    fn refuses_everything_else() {
        for line in [
            "sh -c id",
            "barman delete pg all",
            "barman put-wal other",
            "barman put-wal pg other",
            "barman --config=/tmp/evil.conf put-wal pg",
            "barman -q put-wal pg",
            "barman get-wal -o /etc pg 000000010000000000000002",
            "barman get-wal pg ../../etc/passwd",
            "barman get-wal --peek x pg 000000010000000000000002",
            "barman put-wal pg; rm -rf /",
            "barman put-wal $(id)",
            "",
        ] {
            assert!(authorize(line, &opts()).is_err(), "{line:?} allowed");
        }
    }
}
