//! Hook scripts, with Barman 3.20.1's semantics (`barman/hooks.py`).
//!
//! Each operation has four optional scripts per event (`backup`, `archive`, `delete`,
//! `recovery`, `wal_delete`): `pre_<event>_script`, `pre_<event>_retry_script`,
//! `post_<event>_retry_script`, `post_<event>_script`, run in that order around the action.
//! Scripts run through `/bin/sh -c` with stdin closed and their output captured (logged when
//! the exit code is not 0), with the caller's environment plus:
//!
//! * always `BARMAN_VERSION`, `BARMAN_SERVER`, `BARMAN_CONFIGURATION` (the configuration
//!   file as named on the command line), `BARMAN_HOOK` (`archive_script`,
//!   `archive_retry_script`, …), `BARMAN_PHASE` (`pre`/`post`), `BARMAN_RETRY` (`0`/`1`),
//!   and `PATH` prefixed with `path_prefix` when set;
//! * the operation's variables, built by the caller as a [`HookEnv`] ([`HookEnv::wal`] for
//!   `archive`/`wal_delete`, [`HookEnv::backup`] for `backup`/`delete`, or free-form).
//!
//! A standard script's exit code is only logged. A retry script is rerun until it exits 0,
//! [`EXIT_ABORT_CONTINUE`] (62: warn and go on) or [`EXIT_ABORT_STOP`] (63): 3 s between
//! attempts and a 60 s nap after every 5 failed attempts in a row. ABORT_STOP from a `pre`
//! retry script stops the operation ([`Aborted`]); from a `post` one it is logged and
//! ignored.
//!
//! The runner knows nothing about the events it serves: callers choose the event, the phase
//! and the variables, so `barman-backup` can reuse it for backup and recovery hooks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use barman_common::catalogue::{repr_float, BackupId, BackupInfo, ServerLayout};
use barman_common::config::{HookEvent, HookPhase, ServerConfig};

/// A retry script's success.
pub const EXIT_SUCCESS: i32 = 0;
/// A retry script asking Barman to stop retrying and go on.
pub const EXIT_ABORT_CONTINUE: i32 = 62;
/// A retry script asking Barman to stop retrying and abort the operation (pre phase only).
pub const EXIT_ABORT_STOP: i32 = 63;

/// Failed attempts in a row before the long nap.
const ATTEMPTS_BEFORE_NAP: u32 = 5;
/// Pause after a failed attempt.
const BREAK_TIME: Duration = Duration::from_secs(3);
/// Pause after [`ATTEMPTS_BEFORE_NAP`] failed attempts.
const NAP_TIME: Duration = Duration::from_mins(1);

const EVENTS: [HookEvent; 5] =
    [HookEvent::Backup, HookEvent::Archive, HookEvent::Delete, HookEvent::Recovery, HookEvent::WalDelete];

/// A `pre` retry script exited with [`EXIT_ABORT_STOP`]: the operation must stop. The
/// message is Barman's `AbortedRetryHookScript` text, which post scripts receive as
/// `BARMAN_ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Abort '{phase}_{hook}' retry hook script ({script}, exit code: {code})")]
pub struct Aborted {
    /// `pre` or `post`.
    pub phase: &'static str,
    /// `<event>_retry_script`.
    pub hook: String,
    /// The configured command.
    pub script: String,
    /// The exit code (63).
    pub code: i32,
}

/// The operation-specific variables of one hook run (`BARMAN_SEGMENT`, `BARMAN_BACKUP_ID`,
/// `BARMAN_ERROR`, …). The common ones are added by [`Hooks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookEnv(BTreeMap<String, String>);

impl HookEnv {
    /// No variables.
    pub fn new() -> HookEnv {
        HookEnv::default()
    }

    /// Sets one variable.
    #[must_use]
    pub fn set(mut self, key: &str, value: impl Into<String>) -> HookEnv {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// The same variables with `BARMAN_ERROR` replaced.
    #[must_use]
    pub fn with_error(&self, error: &str) -> HookEnv {
        self.clone().set("BARMAN_ERROR", error)
    }

    /// One variable.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// All variables, by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Barman's `env_from_wal_info`: a WAL file being archived or deleted. `time` is the
    /// file's mtime (printed as Python's `str(float)`), `compression` its format (empty when
    /// plain); `BARMAN_ERROR` is empty.
    pub fn wal(segment: &str, file: &Path, size: u64, time: f64, compression: Option<&str>) -> HookEnv {
        HookEnv::new()
            .set("BARMAN_SEGMENT", segment)
            .set("BARMAN_FILE", file.display().to_string())
            .set("BARMAN_SIZE", size.to_string())
            .set("BARMAN_TIMESTAMP", repr_float(time))
            .set("BARMAN_COMPRESSION", compression.unwrap_or_default())
            .set("BARMAN_ERROR", "")
    }

    /// Barman's `env_from_backup_info`: a backup being taken or deleted, with the ids of the
    /// closest available (WAITING_FOR_WALS/DONE) backups before and after it (empty when
    /// none); `BARMAN_ERROR` is the backup's `error`.
    pub fn backup(
        layout: &ServerLayout,
        id: &BackupId,
        info: &BackupInfo,
        previous: Option<&BackupId>,
        next: Option<&BackupId>,
    ) -> HookEnv {
        // LocalBackupInfo.get_filename(): the meta/ path unless only the legacy file exists.
        let meta = layout.backup_info_path(id);
        let legacy = layout.legacy_backup_info_path(id);
        let info_path = if meta.exists() || !legacy.exists() { meta } else { legacy };
        let id_or_empty = |b: Option<&BackupId>| b.map(ToString::to_string).unwrap_or_default();
        HookEnv::new()
            .set("BARMAN_BACKUP_DIR", layout.backup_dir(id).display().to_string())
            .set("BARMAN_BACKUP_INFO_PATH", info_path.display().to_string())
            .set("BARMAN_BACKUP_ID", id.to_string())
            .set("BARMAN_PREVIOUS_ID", id_or_empty(previous))
            .set("BARMAN_NEXT_ID", id_or_empty(next))
            .set("BARMAN_STATUS", info.status.as_str())
            .set("BARMAN_ERROR", info.error.clone().unwrap_or_default())
    }
}

/// A server's hook scripts and what every run needs (server name, configuration file,
/// `path_prefix`).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    server: String,
    config_file: String,
    path_prefix: Option<String>,
    scripts: HashMap<(HookPhase, HookEvent, bool), String>,
}

fn phase_str(phase: HookPhase) -> &'static str {
    match phase {
        HookPhase::Pre => "pre",
        HookPhase::Post => "post",
    }
}

fn hook_name(event: HookEvent, retry: bool) -> String {
    format!("{}{}_script", event.as_str(), if retry { "_retry" } else { "" })
}

impl Hooks {
    /// The scripts configured for `cfg`; `config_file` is the main configuration file as
    /// it was named (Barman passes it unchanged, relative or not).
    pub fn from_config(cfg: &ServerConfig, config_file: &Path) -> Hooks {
        let mut scripts = HashMap::new();
        for event in EVENTS {
            for phase in [HookPhase::Pre, HookPhase::Post] {
                for retry in [false, true] {
                    if let Some(s) = cfg.hook_script(phase, event, retry).filter(|s| !s.is_empty()) {
                        scripts.insert((phase, event, retry), s.to_owned());
                    }
                }
            }
        }
        Hooks {
            server: cfg.name().to_owned(),
            config_file: config_file.display().to_string(),
            path_prefix: cfg.path_prefix.clone().filter(|p| !p.is_empty()),
            scripts,
        }
    }

    /// The configured command, if any.
    pub fn script(&self, phase: HookPhase, event: HookEvent, retry: bool) -> Option<&str> {
        self.scripts.get(&(phase, event, retry)).map(String::as_str)
    }

    /// True when any script is configured for `event`.
    pub fn any(&self, event: HookEvent) -> bool {
        self.scripts.keys().any(|(_, e, _)| *e == event)
    }

    /// The `pre` phase: the standard script, then the retry script. `Err` when the retry
    /// script asked to stop (the caller must not perform the operation).
    pub fn pre(&self, event: HookEvent, env: &HookEnv) -> Result<(), Aborted> {
        self.run(HookPhase::Pre, event, env);
        self.run_retry(HookPhase::Pre, event, env).map(drop)
    }

    /// The `post` phase: the retry script with `retry_env`, then the standard script with
    /// `env` (Barman gives them different `BARMAN_ERROR`s for some events). A stop request
    /// is logged and ignored.
    pub fn post(&self, event: HookEvent, retry_env: &HookEnv, env: &HookEnv) {
        if let Err(abort) = self.run_retry(HookPhase::Post, event, retry_env) {
            crate::log::warning(
                "hooks",
                &format!(
                    "Ignoring stop request after receiving abort (exit code {}) from post-{} retry hook script: {}",
                    abort.code,
                    event.as_str().replace('_', "-"),
                    abort.script
                ),
            );
        }
        self.run(HookPhase::Post, event, env);
    }

    /// Runs a standard script once, if configured; its exit code (`None` when not
    /// configured or it could not be started).
    pub fn run(&self, phase: HookPhase, event: HookEvent, env: &HookEnv) -> Option<i32> {
        let script = self.script(phase, event, false)?;
        self.execute(script, phase, &hook_name(event, false), false, env)
    }

    /// Runs a retry script, if configured, until it exits 0, 62 or 63 (Barman's
    /// `RetryHookScriptRunner`). `Err` on 63.
    pub fn run_retry(&self, phase: HookPhase, event: HookEvent, env: &HookEnv) -> Result<Option<i32>, Aborted> {
        let Some(script) = self.script(phase, event, true) else { return Ok(None) };
        let name = hook_name(event, true);
        let mut attempts = 1;
        let code = loop {
            let code = self.execute(script, phase, &name, true, env);
            if let Some(c @ (EXIT_SUCCESS | EXIT_ABORT_CONTINUE | EXIT_ABORT_STOP)) = code {
                break c;
            }
            if attempts <= ATTEMPTS_BEFORE_NAP {
                attempts += 1;
                std::thread::sleep(BREAK_TIME);
            } else {
                attempts = 1;
                std::thread::sleep(NAP_TIME);
            }
        };
        match code {
            EXIT_ABORT_CONTINUE => {
                crate::log::warning("hooks", &format!("{script} was aborted (got exit status {code}, Barman resumes)"));
            }
            EXIT_ABORT_STOP => {
                crate::log::error(
                    "hooks",
                    &format!("{script} was aborted (got exit status {code}, Barman requested to stop)"),
                );
                return Err(Aborted { phase: phase_str(phase), hook: name, script: script.to_owned(), code });
            }
            _ => {}
        }
        Ok(Some(code))
    }

    fn execute(&self, script: &str, phase: HookPhase, name: &str, retry: bool, env: &HookEnv) -> Option<i32> {
        let mut cmd = barman_common::remote::shell(script);
        cmd.envs(env.vars());
        cmd.env("BARMAN_VERSION", barman_common::catalogue::sync::VERSION)
            .env("BARMAN_SERVER", &self.server)
            .env("BARMAN_CONFIGURATION", &self.config_file)
            .env("BARMAN_HOOK", name)
            .env("BARMAN_RETRY", if retry { "1" } else { "0" })
            .env("BARMAN_PHASE", phase_str(phase));
        if let Some(prefix) = &self.path_prefix {
            let path = std::env::var("PATH").unwrap_or_else(|_| "None".to_owned());
            cmd.env("PATH", format!("{prefix}:{path}"));
        }
        match cmd.output() {
            Ok(out) => {
                // Killed by a signal: Python reports -signal, never one of the exit codes
                // that end a retry loop.
                let code = out.status.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    -out.status.signal().unwrap_or(1)
                });
                if code != 0 {
                    crate::log::warning(
                        "hooks",
                        &format!(
                            "{script} returned {code}\nOutput details:\n{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    );
                }
                Some(code)
            }
            Err(e) => {
                crate::log::error("hooks", &format!("Exception running {name}: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(scripts: &[(HookPhase, HookEvent, bool, &str)]) -> Hooks {
        Hooks {
            server: "pg".into(),
            config_file: "/etc/barman.conf".into(),
            path_prefix: Some("/opt/x".into()),
            scripts: scripts.iter().map(|(p, e, r, s)| ((*p, *e, *r), (*s).to_owned())).collect(),
        }
    }

    #[test]
    fn environment_and_exit_codes() {
        let dump = std::env::temp_dir().join(format!("barman-hooks-test-{}", std::process::id()));
        let script = format!("env > {}; exit 7", dump.display());
        let h = hooks(&[(HookPhase::Pre, HookEvent::Archive, false, &script)]);
        let env = HookEnv::wal("000000010000000000000001", Path::new("/in/x"), 10, 1.5, None);
        assert_eq!(h.run(HookPhase::Pre, HookEvent::Archive, &env), Some(7));
        let text = std::fs::read_to_string(&dump).expect("dump");
        let _ = std::fs::remove_file(&dump);
        for line in [
            "BARMAN_HOOK=archive_script",
            "BARMAN_PHASE=pre",
            "BARMAN_RETRY=0",
            "BARMAN_SERVER=pg",
            "BARMAN_CONFIGURATION=/etc/barman.conf",
            "BARMAN_SEGMENT=000000010000000000000001",
            "BARMAN_SIZE=10",
            "BARMAN_TIMESTAMP=1.5",
            "BARMAN_COMPRESSION=",
            "BARMAN_ERROR=",
            "BARMAN_VERSION=3.20.1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(text.lines().any(|l| l.starts_with("PATH=/opt/x:")), "{text}");
        assert_eq!(h.run(HookPhase::Post, HookEvent::Archive, &env), None, "not configured");
    }

    #[test]
    fn retry_abort_stop_only_stops_pre() {
        let h = hooks(&[
            (HookPhase::Pre, HookEvent::Delete, true, "exit 63"),
            (HookPhase::Post, HookEvent::Delete, true, "exit 63"),
            (HookPhase::Pre, HookEvent::WalDelete, true, "exit 62"),
        ]);
        let err = h.pre(HookEvent::Delete, &HookEnv::new()).expect_err("aborted");
        assert_eq!(err.to_string(), "Abort 'pre_delete_retry_script' retry hook script (exit 63, exit code: 63)");
        h.post(HookEvent::Delete, &HookEnv::new(), &HookEnv::new());
        assert_eq!(h.run_retry(HookPhase::Pre, HookEvent::WalDelete, &HookEnv::new()), Ok(Some(62)));
        assert!(h.pre(HookEvent::Archive, &HookEnv::new()).is_ok());
    }
}
