//! Asking the primary backup host: `barman sync-info` run through `primary_ssh_command`,
//! exactly as Barman's passive node does it (spec `relay.md` §4).

use std::process::Command;

use barman_common::remote::{run_captured, shell_quote, RemoteShell};

use super::error::RelayError;

/// The primary of one passive server.
#[derive(Debug, Clone)]
pub struct Primary {
    /// `primary_ssh_command`, a shell command line (`ssh barman@primary`).
    pub ssh_command: String,
    /// The server name, the same on both nodes.
    pub server: String,
    /// `-c <path>` forwarded when `forward_config_path` is on.
    pub forward_config: Option<String>,
}

/// What a `sync-info` call returned.
#[derive(Debug)]
pub struct Answer {
    /// The raw JSON text (saved verbatim as `primary.info`).
    pub text: String,
    /// The warning to print when the call had to fall back to a full listing.
    pub recovered: bool,
}

impl Primary {
    /// The remote command string, with Barman's spacing: `barman [-c CFG] sync-info SRV`,
    /// then ` <last_wal> ` and ` <position> ` when known. A 0 position is never sent: the
    /// primary rejects it (exit 2) and Barman's passive then stays stuck (spec §3.1).
    pub fn sync_info_command(&self, last: Option<(&str, &str)>) -> String {
        let mut cmd = String::from("barman");
        if let Some(cfg) = &self.forward_config {
            cmd += &format!(" -c {}", shell_quote(cfg));
        }
        cmd += &format!(" sync-info {}", shell_quote(&self.server));
        if let Some((wal, position)) = last {
            cmd += &format!(" {} ", shell_quote(wal));
            if position.parse::<u64>().is_ok_and(|p| p > 0) {
                cmd += &format!(" {position} ");
            }
        }
        cmd
    }

    /// `sh -c '<primary_ssh_command> <quoted remote>'`.
    pub fn remote(&self, remote: &str) -> Command {
        RemoteShell::new(self.ssh_command.as_str()).command(remote)
    }

    /// Runs `sync-info`, incremental from `last` when given. Exit 1 with a position sent
    /// means the primary's xlog.db no longer matches it: retry once with a full listing
    /// (Barman's self-recovery).
    pub fn sync_info(&self, last: Option<(&str, &str)>) -> Result<Answer, RelayError> {
        match self.call(&self.sync_info_command(last)) {
            Ok(text) => Ok(Answer { text, recovered: false }),
            Err((1, _)) if last.is_some() => self
                .call(&self.sync_info_command(None))
                .map(|text| Answer { text, recovered: true })
                .map_err(|(_, e)| self.failure(&e)),
            Err((_, e)) => Err(self.failure(&e)),
        }
    }

    fn failure(&self, stderr: &str) -> RelayError {
        RelayError::Primary(format!("sync-info execution on remote primary server {} failed: {stderr}", self.server))
    }

    fn call(&self, remote: &str) -> Result<String, (i32, String)> {
        let output = run_captured(&mut self.remote(remote), None)
            .map_err(|e| (-1, format!("cannot run primary_ssh_command: {e}")))?
            .ok_or((-1, "timed out".to_owned()))?;
        let stderr = output.stderr_text();
        match output.status.code() {
            Some(0) => String::from_utf8(output.stdout).map_err(|_| (-1, "the answer is not UTF-8".to_owned())),
            Some(code) => Err((code, if stderr.is_empty() { format!("exit status {code}") } else { stderr })),
            None => Err((-1, format!("killed by a signal ({})", output.status))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> Primary {
        Primary { ssh_command: "ssh barman@primary".into(), server: "pg".into(), forward_config: None }
    }

    #[test]
    fn command_strings_match_barman() {
        let p = primary();
        assert_eq!(p.sync_info_command(None), "barman sync-info pg");
        assert_eq!(
            p.sync_info_command(Some(("000000010000000000000006", "329"))),
            "barman sync-info pg 000000010000000000000006  329 "
        );
        // Position 0 (a one-line xlog.db) is left out instead of being refused remotely.
        assert_eq!(
            p.sync_info_command(Some(("000000010000000000000001", "0"))),
            "barman sync-info pg 000000010000000000000001 "
        );
        let fwd = Primary { forward_config: Some("/etc/barman.conf".into()), ..primary() };
        assert_eq!(fwd.sync_info_command(None), "barman -c /etc/barman.conf sync-info pg");
        let args: Vec<String> =
            p.remote("barman sync-info pg").get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-c", "ssh barman@primary 'barman sync-info pg'"]);
    }

    #[test]
    fn self_recovery_and_failures() {
        let dir = tempfile::tempdir().expect("tmp");
        // A fake ssh: exit 1 when asked incrementally, answer when asked for everything.
        let script = dir.path().join("fake-ssh");
        std::fs::write(
            &script,
            "#!/bin/sh\ncase \"$1\" in *' 0000'*) echo 'last_wal is older' >&2; exit 1;; esac\nprintf '{}'\n",
        )
        .expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let p = Primary { ssh_command: script.display().to_string(), ..primary() };
        let a = p.sync_info(Some(("000000010000000000000006", "329"))).expect("recovered");
        assert!(a.recovered);
        assert_eq!(a.text, "{}");
        let broken = Primary { ssh_command: "false".into(), ..primary() };
        let e = broken.sync_info(None).expect_err("fails");
        assert!(e.to_string().starts_with("sync-info execution on remote primary server pg failed"), "{e}");
    }
}
