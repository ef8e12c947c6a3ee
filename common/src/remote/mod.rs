//! Running commands on other hosts: the one place that quotes words for a shell, runs a
//! configured shell command line (`ssh_command`, `primary_ssh_command`,
//! `--remote-ssh-command`, hook scripts) through `/bin/sh -c` as Barman does, captures what
//! it prints within a time limit, and finds the toolkit's sibling executables.
//!
//! Barman's clients run the `ssh` found on PATH with `ssh [-p PORT] -q -T USER@HOST barman …`
//! and no `-o` options, so host keys and identities come from the user's `~/.ssh/config`
//! ([`SshTarget`]); ours add only the connection-reuse options of [`mux`]. ssh joins the remote words with spaces and
//! the remote login shell splits them again, so every word we build is shell-quoted here.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod mux;
mod words;

pub use words::split_words;

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
    /// A `Command` for `ssh [-p PORT] [reuse options] -q -T USER@HOST <remote words…>`; the
    /// words are passed as they are (callers quote what the remote shell must not split).
    /// The connection is shared between calls unless [`mux`] says otherwise.
    pub fn command(&self, remote: &[String]) -> Command {
        self.command_with(&mux::ssh_options(), remote)
    }

    fn command_with(&self, options: &[String], remote: &[String]) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(port) = self.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.args(options).args(["-q", "-T"]).arg(format!("{}@{}", self.user, self.host)).args(remote);
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
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether a toolkit executable is installed: beside the running one, or on `PATH`.
pub fn sibling_installed(name: &str) -> bool {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(name)));
    beside.is_some_and(|p| p.is_file())
        || std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

/// `/bin/sh -c LINE`, stdin closed: how Barman runs every configured command line
/// (`Command(shell=True)`), so the user's quoting and expansions mean what they would in
/// their shell.
pub fn shell(line: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line).stdin(Stdio::null());
    cmd
}

/// A configured command line that reaches another host (`ssh postgres@pg`), to which a
/// remote command is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteShell {
    line: String,
}

impl RemoteShell {
    /// The configured line, used as written.
    pub fn new(line: impl Into<String>) -> Self {
        RemoteShell { line: line.into() }
    }

    /// The configured line (also what `rsync -e` takes).
    pub fn line(&self) -> &str {
        &self.line
    }

    /// `sh -c '<line> <remote>'` with the remote command line quoted as one word, so the
    /// local shell hands it to the remote shell intact.
    pub fn command(&self, remote: &str) -> Command {
        shell(&format!("{} {}", self.line, shell_quote(remote)))
    }

    /// `sh -c '<line> <word> <word>…'`, each word quoted: the remote shell gets the words
    /// as they are (Barman's `UnixRemoteCommand.cmd`).
    pub fn command_words(&self, words: &[&str]) -> Command {
        let mut line = self.line.clone();
        for w in words {
            line.push(' ');
            line.push_str(&shell_quote(w));
        }
        shell(&line)
    }

    /// Runs `remote` (see [`RemoteShell::command`]) and captures its output.
    pub fn run(&self, remote: &str, limit: Option<Duration>) -> io::Result<Option<Captured>> {
        run_captured(&mut self.command(remote), limit)
    }
}

/// What a finished child printed, and how it ended.
#[derive(Debug)]
pub struct Captured {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Captured {
    /// The exit code as Python's `Popen.returncode` gives it: minus the signal number when
    /// the child was killed.
    pub fn returncode(&self) -> i32 {
        self.status.code().unwrap_or_else(|| -self.status.signal().unwrap_or(1))
    }

    /// stderr as trimmed text, for an error message.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

/// Runs `cmd` with stdout and stderr captured (drained on threads, so a chatty child never
/// blocks on a full pipe). With a `limit`, a child still running then is killed and
/// `Ok(None)` returned.
pub fn run_captured(cmd: &mut Command, limit: Option<Duration>) -> io::Result<Option<Captured>> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let status = match limit {
        None => child.wait()?,
        Some(limit) => {
            let deadline = Instant::now() + limit;
            loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Some(Captured { status, stdout, stderr }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_matches_barman_clients() {
        let t = SshTarget { user: "barman".into(), host: "backup1".into(), port: Some(2222) };
        let cmd = t.command_with(&[], &["barman".into(), "put-wal".into(), "pg".into()]);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-p", "2222", "-q", "-T", "barman@backup1", "barman", "put-wal", "pg"]);
        assert_eq!(cmd.get_program(), "ssh");
        let reuse = ["-o".to_owned(), "ControlMaster=auto".to_owned()];
        let cmd = t.command_with(&reuse, &["barman".into()]);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-p", "2222", "-o", "ControlMaster=auto", "-q", "-T", "barman@backup1", "barman"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("pg"), "pg");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn remote_shell_passes_words_intact() {
        // `printf` stands in for ssh: it receives what the remote shell would.
        let r = RemoteShell::new("printf '%s|'");
        let got = run_captured(&mut r.command_words(&["a b", "it's", "$HOME"]), None).expect("runs").expect("done");
        assert_eq!(String::from_utf8_lossy(&got.stdout), "a b|it's|$HOME|");
        let got = r.run("ls -A '/x y'", None).expect("runs").expect("done");
        assert_eq!(String::from_utf8_lossy(&got.stdout), "ls -A '/x y'|");
    }

    #[test]
    fn captured_run_is_time_limited() {
        let t = Instant::now();
        assert!(run_captured(&mut shell("sleep 5"), Some(Duration::from_millis(200))).expect("runs").is_none());
        assert!(t.elapsed() < Duration::from_secs(3));
        let done = run_captured(&mut shell("echo out; echo err >&2; exit 3"), Some(Duration::from_secs(5)))
            .expect("runs")
            .expect("done");
        assert_eq!((done.returncode(), done.stdout.as_slice(), done.stderr_text().as_str()), (3, &b"out\n"[..], "err"));
    }
}
