//! The one rsync runner: over `primary_ssh_command` for the relay (the transport Barman's
//! passive node uses, so that a real Barman primary, which offers nothing else, can be
//! followed), over `ssh_command` for `backup_method = rsync`, and without ssh for
//! `local-rsync`. A remote source is written ` :<path>` (empty host: the real one is inside
//! the ssh command), and `-s` keeps paths with spaces intact.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use barman_common::remote::mux;

/// How rsync reaches the primary.
#[derive(Debug, Clone)]
pub struct Rsync {
    /// The ssh command given to `-e` (`primary_ssh_command`, `ssh_command`); `None`: the
    /// source is local (`local-rsync`).
    pub ssh_command: Option<String>,
    /// `bandwidth_limit` in KiB/s (0 or none: unlimited).
    pub bwlimit: Option<u64>,
    /// `network_compression` (`-z`).
    pub compress: bool,
}

/// Counters rsync reports with `--stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Files whose data was (re)sent.
    pub files_transferred: u64,
    /// Bytes received from the primary on the wire.
    pub bytes_received: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.files_transferred += o.files_transferred;
        self.bytes_received += o.bytes_received;
    }
}

/// A failed rsync run.
#[derive(Debug, Clone)]
pub struct Failure {
    /// rsync's exit status (-1: killed or not started).
    pub code: i32,
    /// The last lines of its stderr.
    pub stderr: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rsync exit status {}: {}", self.code, self.stderr)
    }
}

impl Rsync {
    /// A base command: `rsync [-e <ssh>] -s [--bwlimit] [-z] --no-human-readable`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("rsync");
        if let Some(ssh) = &self.ssh_command {
            cmd.arg("-e").arg(ssh);
        }
        cmd.arg("-s");
        if let Some(kbps) = self.bwlimit.filter(|&k| k > 0) {
            cmd.arg(format!("--bwlimit={kbps}"));
        }
        if self.compress {
            cmd.arg("-z");
        }
        cmd.arg("--no-human-readable");
        cmd
    }

    /// ` :<dir>/`, the remote source for a directory's content.
    pub fn remote_dir(dir: &str) -> String {
        format!(" :{}/", dir.trim_end_matches('/'))
    }

    /// `<path>` as a source: ` :<path>` over ssh, the path itself locally.
    pub fn source(&self, path: &str) -> String {
        if self.ssh_command.is_some() {
            format!(" :{path}")
        } else {
            path.to_owned()
        }
    }

    /// Runs `cmd` with `--stats` (and progress when stderr is a terminal), feeding `stdin`.
    pub fn run(&self, cmd: Command, stdin: Option<&str>) -> Result<Stats, Failure> {
        Self::exec(cmd, stdin, std::io::stderr().is_terminal(), false)
    }

    /// [`Rsync::run`] for one of several concurrent workers: no progress, and files that
    /// vanished on the source during the copy (exit 24: a table dropped, a temp file gone)
    /// are not a failure, as for Barman's copy controller.
    pub fn run_worker(&self, cmd: Command, stdin: Option<&str>) -> Result<Stats, Failure> {
        Self::exec(cmd, stdin, false, true)
    }

    fn exec(mut cmd: Command, stdin: Option<&str>, progress: bool, vanished_ok: bool) -> Result<Stats, Failure> {
        cmd.arg("--stats");
        if progress {
            cmd.arg("--info=progress2");
            cmd.stderr(Stdio::inherit());
        } else {
            cmd.stderr(Stdio::piped());
        }
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Failure { code: -1, stderr: format!("cannot run rsync: {e}") })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // rsync reads the whole list before transferring; a write error shows in its status.
            let _ = pipe.write_all(text.as_bytes());
        }
        let output =
            child.wait_with_output().map_err(|e| Failure { code: -1, stderr: format!("waiting for rsync: {e}") })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() || (vanished_ok && output.status.code() == Some(VANISHED)) {
            return Ok(parse_stats(&stdout));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
        Err(Failure { code: output.status.code().unwrap_or(-1), stderr: tail })
    }

    /// `rsync --list-only` of a remote directory: `(name, size)` of its regular files.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, Failure> {
        let mut cmd = self.command();
        cmd.arg("--list-only").arg(Self::remote_dir(dir));
        let output = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Failure { code: -1, stderr: format!("cannot run rsync: {e}") })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(Failure { code: output.status.code().unwrap_or(-1), stderr });
        }
        Ok(parse_listing(&String::from_utf8_lossy(&output.stdout)))
    }
}

/// The runners of a parallel copy, one per worker: over ssh, each keeps its own shared
/// connection ([`mux::reuse_in_line`]) for all its rsync calls (one handshake per worker, not
/// one per call, and still one cipher stream per worker); the masters end when this is
/// dropped. Worker 0's runner also serves the listings and single files.
#[derive(Debug)]
pub struct WorkerRunners {
    runners: Vec<Rsync>,
    /// The lines whose masters are ours to end.
    masters: Vec<String>,
}

impl Rsync {
    /// `workers` runners (at least one) sharing this one's settings.
    pub fn per_worker(&self, workers: usize) -> WorkerRunners {
        let mut masters = Vec::new();
        let runners = (0..workers.max(1))
            .map(|i| {
                let slot = format!("{}-{i}", std::process::id());
                let reusing = self.ssh_command.as_deref().and_then(|line| mux::reuse_in_line(line, &slot));
                masters.extend(reusing.clone());
                Rsync { ssh_command: reusing.or_else(|| self.ssh_command.clone()), ..self.clone() }
            })
            .collect();
        WorkerRunners { runners, masters }
    }
}

impl WorkerRunners {
    /// Worker `i`'s runner.
    pub fn get(&self, i: usize) -> &Rsync {
        &self.runners[i % self.runners.len()]
    }
}

impl Drop for WorkerRunners {
    fn drop(&mut self) {
        self.masters.iter().for_each(|line| mux::close_line(line));
    }
}

/// rsync's exit status for "some files vanished before they could be transferred".
const VANISHED: i32 = 24;

/// One entry of a recursive `--list-only`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the listed directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time as rsync prints it (the local time of this host, to the second).
    pub mtime: chrono::NaiveDateTime,
    /// A directory (else a regular file; other kinds are not listed).
    pub is_dir: bool,
}

impl Rsync {
    /// `rsync --list-only -r -L <filters> <src>/`: every directory and regular file under a
    /// directory, local or remote, after the filters (`--exclude=...` style arguments).
    pub fn list_tree(&self, src: &str, filters: &[String]) -> Result<Vec<Entry>, Failure> {
        let mut cmd = self.command();
        cmd.args(["--list-only", "-r", "-L"]).args(filters).arg(src);
        let output = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Failure { code: -1, stderr: format!("cannot run rsync: {e}") })?;
        if !output.status.success() && output.status.code() != Some(VANISHED) {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(Failure { code: output.status.code().unwrap_or(-1), stderr });
        }
        Ok(parse_tree(&String::from_utf8_lossy(&output.stdout)))
    }
}

fn parse_tree(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| l.starts_with('-') || l.starts_with('d'))
        .filter_map(|l| {
            let (mode, rest) = l.split_once(' ')?;
            let rest = rest.trim_start();
            let (size, rest) = rest.split_once(' ')?;
            let (date, rest) = rest.trim_start().split_once(' ')?;
            let (time, path) = rest.split_once(' ')?;
            let mtime = chrono::NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y/%m/%d %H:%M:%S").ok()?;
            Some(Entry {
                path: path.to_owned(),
                size: size.replace(',', "").parse().ok()?,
                mtime,
                is_dir: mode.starts_with('d'),
            })
        })
        .filter(|e| e.path != ".")
        .collect()
}

/// `-rw------- 16777216 2026/11/22 01:00:00 name` lines (regular files only; the size
/// column is space-padded, the name may hold spaces).
fn parse_listing(text: &str) -> Vec<(String, u64)> {
    fn token(s: &str) -> Option<(&str, &str)> {
        let s = s.trim_start_matches(' ');
        let end = s.find(' ')?;
        Some((&s[..end], &s[end + 1..]))
    }
    text.lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let (_mode, rest) = token(l)?;
            let (size, rest) = token(rest)?;
            let (_date, rest) = token(rest)?;
            let (_time, name) = token(rest)?;
            Some((name.to_owned(), size.replace(',', "").parse().ok()?))
        })
        .collect()
}

fn parse_stats(text: &str) -> Stats {
    let number = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next().map(|n| n.replace(',', "")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Stats {
        files_transferred: number("Number of regular files transferred:"),
        bytes_received: number("Total bytes received:"),
    }
}

/// The local path given to rsync as a destination directory (with a trailing slash).
pub fn local_dir(path: &Path) -> String {
    format!("{}/", path.display().to_string().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_stats() {
        let l = "drwx------ 4096 2026/11/22 01:00:00 .\n-rw-------     16,777,216 2026/11/22 01:00:01 000000010000000000000005.partial\n-rw------- 3 2026/11/22 01:00:01 a b\n";
        assert_eq!(
            parse_listing(l),
            vec![("000000010000000000000005.partial".to_owned(), 16_777_216), ("a b".to_owned(), 3)]
        );
        let s = "Number of files: 10 (reg: 8, dir: 2)\nNumber of regular files transferred: 3\nTotal bytes sent: 120\nTotal bytes received: 4567\n";
        assert_eq!(parse_stats(s), Stats { files_transferred: 3, bytes_received: 4567 });
        let t = "drwx------ 4096 2026/11/22 01:00:00 .\ndrwx------ 4096 2026/11/22 01:00:00 base\n-rw------- 8192 2026/11/22 01:00:02 base/1/1 2\n";
        let tree = parse_tree(t);
        assert_eq!(tree.len(), 2);
        assert!(tree[0].is_dir && tree[0].path == "base");
        assert_eq!((tree[1].path.as_str(), tree[1].size, tree[1].is_dir), ("base/1/1 2", 8192, false));
        assert_eq!(tree[1].mtime.to_string(), "2026-11-22 01:00:02");
    }

    #[test]
    fn base_command() {
        let r = Rsync { ssh_command: Some("ssh -p 2222 barman@a".into()), bwlimit: Some(100), compress: true };
        let args: Vec<String> = r.command().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-e", "ssh -p 2222 barman@a", "-s", "--bwlimit=100", "-z", "--no-human-readable"]);
        assert_eq!(Rsync::remote_dir("/srv/pg/wals/"), " :/srv/pg/wals/");
    }
}
