//! rsync over `primary_ssh_command`, the transport Barman's passive node uses, so that a
//! real Barman primary (which offers nothing else) can be followed. The source is written
//! ` :<path>` (empty host: the real one is inside the ssh command), and `-s` keeps paths
//! with spaces intact.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// How rsync reaches the primary.
#[derive(Debug, Clone)]
pub struct Rsync {
    /// `primary_ssh_command`, given to `-e`.
    pub ssh_command: String,
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
    /// A base command: `rsync -e <ssh> -s [--bwlimit] [-z] --no-human-readable`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("rsync");
        cmd.arg("-e").arg(&self.ssh_command).arg("-s");
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

    /// Runs `cmd` with `--stats` (and progress when stderr is a terminal), feeding `stdin`.
    pub fn run(&self, mut cmd: Command, stdin: Option<&str>) -> Result<Stats, Failure> {
        cmd.arg("--stats");
        if std::io::stderr().is_terminal() {
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
        if output.status.success() {
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
    }

    #[test]
    fn base_command() {
        let r = Rsync { ssh_command: "ssh -p 2222 barman@a".into(), bwlimit: Some(100), compress: true };
        let args: Vec<String> = r.command().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-e", "ssh -p 2222 barman@a", "-s", "--bwlimit=100", "-z", "--no-human-readable"]);
        assert_eq!(Rsync::remote_dir("/srv/pg/wals/"), " :/srv/pg/wals/");
    }
}
