//! Running `barman` on the backup host through `ssh`, as Barman's clients do.
//!
//! The clients run the `ssh` found on PATH with `ssh [-p PORT] -q -T USER@HOST barman …`
//! and no `-o` options, so host keys, identities and multiplexing (`ControlMaster`) come from
//! the user's `~/.ssh/config`. ssh joins the remote words with spaces and the remote login
//! shell splits them again, so every word we build is shell-quoted here.

use std::os::fd::AsRawFd;
use std::process::Command;

/// ssh's own exit status for a connection failure (as opposed to the remote command's).
pub const SSH_CONNECTION_FAILED: i32 = 255;

/// Asks for a 1 MiB pipe (the unprivileged maximum; Linux's default is 64 KiB) behind `fd`
/// when it is a pipe: WAL streams between ssh and our processes then move in fewer,
/// larger writes, with fewer wakeups on both sides, and sshd does not have to buffer (and
/// later zero) what a full pipe would not take. Not a pipe, or refused: nothing changes.
pub fn widen_pipe(fd: &impl AsRawFd) {
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

/// Where the backup host's `barman` is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// ssh user (`-U/--user`, default `barman`).
    pub user: String,
    /// Backup host.
    pub host: String,
    /// ssh port (`--port`), passed as `-p`.
    pub port: Option<u16>,
}

impl SshTarget {
    /// A `Command` for `ssh [-p PORT] -q -T USER@HOST <remote words…>`; the words are passed
    /// as they are (callers quote what the remote shell must not split).
    pub fn command(&self, remote: &[String]) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(port) = self.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.args(["-q", "-T"]).arg(format!("{}@{}", self.user, self.host)).args(remote);
        cmd
    }
}

/// Quotes `word` for a POSIX shell: unchanged when it has only safe characters, otherwise in
/// single quotes with embedded single quotes written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A toolkit executable: beside the running one (the same installation), else found on
/// `PATH`.
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| std::path::PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_matches_barman_clients() {
        let t = SshTarget { user: "barman".into(), host: "backup1".into(), port: Some(2222) };
        let cmd = t.command(&["barman".into(), "put-wal".into(), "pg".into()]);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-p", "2222", "-q", "-T", "barman@backup1", "barman", "put-wal", "pg"]);
        assert_eq!(cmd.get_program(), "ssh");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("pg"), "pg");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
