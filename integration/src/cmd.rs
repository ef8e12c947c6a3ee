//! Running commands so that a failure explains itself.
//!
//! Every helper here waits with a timeout (a hung `ssh` or `pg_ctl` must fail the test, not
//! stall CI) and, on failure, returns an error holding the command line, the user it ran as,
//! its working directory and environment changes, the exit status, stdout and stderr. Also
//! here: OS users ([`OsUser`], [`as_user`]), the workspace's built binaries ([`cargo_bin`]) and
//! [`free_port`].

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long a command may run before it is killed and reported as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_mins(2);

/// A local account that a command can run as (`root`, `postgres`, `barman`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory from the password database.
    pub home: PathBuf,
}

impl OsUser {
    /// Looks `name` up in the password database.
    pub fn lookup(name: &str) -> Result<Self> {
        let user = nix::unistd::User::from_name(name)
            .with_context(|| format!("looking up OS user {name}"))?
            .ok_or_else(|| anyhow!("OS user {name:?} does not exist (run integration/setup.sh as root)"))?;
        Ok(Self { name: user.name, uid: user.uid.as_raw(), gid: user.gid.as_raw(), home: user.dir })
    }

    /// The user running the tests.
    pub fn current() -> Result<Self> {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)?.ok_or_else(|| anyhow!("uid {uid} has no password entry"))?;
        Self::lookup(&user.name)
    }
}

/// Makes `cmd` run as `user`: uid/gid (supplementary groups are dropped), `HOME`, `USER`,
/// `LOGNAME`, and no inherited `PG*` connection variables. Call it before adding the
/// command's own environment.
pub fn as_user<'a>(cmd: &'a mut Command, user: &OsUser) -> &'a mut Command {
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGDATA", "PGPASSWORD"] {
        cmd.env_remove(var);
    }
    if nix::unistd::getuid().as_raw() != user.uid {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd.env("HOME", &user.home).env("USER", &user.name).env("LOGNAME", &user.name);
    if cmd.get_current_dir().is_none() {
        // The test's own cwd may not be readable by `user`; some tools (initdb) insist.
        cmd.current_dir("/");
    }
    cmd
}

/// The result of a finished command, with everything needed to explain it.
#[derive(Debug)]
pub struct Outcome {
    /// The command line as described by [`describe`].
    pub line: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Wall-clock time it took.
    pub elapsed: Duration,
}

impl Outcome {
    /// Standard output as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The exit code, or `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Fails (with the whole dump) unless the command exited 0.
    pub fn success(&self) -> Result<&Self> {
        self.expect(self.status.success(), "expected success")
    }

    /// Fails unless the command exited with exactly `code`.
    pub fn fails_with_code(&self, code: i32) -> Result<&Self> {
        self.expect(self.code() == Some(code), &format!("expected exit code {code}"))
    }

    /// Fails unless stdout contains `needle`.
    pub fn stdout_contains(&self, needle: &str) -> Result<&Self> {
        let ok = self.stdout_str().contains(needle);
        self.expect(ok, &format!("expected stdout to contain {needle:?}"))
    }

    /// Fails unless stderr contains `needle`.
    pub fn stderr_contains(&self, needle: &str) -> Result<&Self> {
        let ok = self.stderr_str().contains(needle);
        self.expect(ok, &format!("expected stderr to contain {needle:?}"))
    }

    fn expect(&self, ok: bool, what: &str) -> Result<&Self> {
        if ok {
            Ok(self)
        } else {
            bail!("{what}\n{self}")
        }
    }

    /// Converts into a std [`Output`].
    pub fn into_output(self) -> Output {
        Output { status: self.status, stdout: self.stdout, stderr: self.stderr }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => format!("{:?}", self.status),
        };
        writeln!(f, "command: {}", self.line)?;
        writeln!(f, "status:  {status} after {:.2?}", self.elapsed)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout_str().trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr_str().trim_end())
    }
}

/// Runs `cmd` and fails unless it exits 0; the error carries the full dump.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let outcome = execute(cmd, None, DEFAULT_TIMEOUT)?;
    outcome.success()?;
    Ok(outcome.into_output())
}

/// [`run`] as the OS user `user`.
pub fn run_as(user: &str, cmd: &mut Command) -> Result<Output> {
    let user = OsUser::lookup(user)?;
    run(as_user(cmd, &user))
}

/// Runs `cmd` and returns its [`Outcome`] whatever the exit status (for tests that expect
/// failures). Errors only when it cannot start or times out.
pub fn outcome(cmd: &mut Command) -> Result<Outcome> {
    execute(cmd, None, DEFAULT_TIMEOUT)
}

/// Runs `cmd` with `input` on stdin, killing it after `timeout`.
pub fn execute(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Result<Outcome> {
    let line = describe(cmd);
    let started = Instant::now();
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("could not start: {line}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        // A writer thread: a child that does not read its input must not block us.
        thread::spawn(move || stdin.write_all(&data));
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(timeout) else {
        kill_pid(pid);
        let partial = rx.recv_timeout(Duration::from_secs(5)).ok().and_then(Result::ok);
        let (out, err) = partial.map_or((Vec::new(), Vec::new()), |o| (o.stdout, o.stderr));
        bail!(
            "timed out after {timeout:?}, killed: {line}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        );
    };
    let output = output.with_context(|| format!("waiting for: {line}"))?;
    Ok(Outcome {
        line,
        status: output.status,
        stdout: output.stdout,
        stderr: output.stderr,
        elapsed: started.elapsed(),
    })
}

fn kill_pid(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A shell-like rendering of `cmd`: environment changes, program, quoted arguments, cwd.
pub fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        match value {
            Some(value) => parts.push(format!("{key}={}", quote(value))),
            None => parts.push(format!("-u {key}")),
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    let mut line = parts.join(" ");
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(line, "  (cwd {})", dir.display());
    }
    line
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The directory holding the workspace's built binaries (`target/debug`).
///
/// Derived from the running test executable (`target/debug/deps/<test>-<hash>`), so it
/// follows `CARGO_TARGET_DIR` and the profile; falls back to `<workspace>/target/debug`.
pub fn target_dir() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        let dir = if dir.ends_with("deps") { dir.parent()? } else { dir };
        Some(dir.to_path_buf())
    });
    from_exe.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug").components().collect())
}

/// Path of the workspace binary `name`: `$CARGO_BIN_EXE_<name>` when set, else
/// `target/debug/<name>`. Fails when it has not been built.
pub fn cargo_bin(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os(format!("CARGO_BIN_EXE_{name}")).map_or_else(|| target_dir().join(name), PathBuf::from);
    if !path.is_file() {
        bail!("binary {name} not built at {} (run `cargo build --workspace` first)", path.display());
    }
    Ok(path)
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed
/// out before. Callers still retry on a bind collision with other processes.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?.local_addr()?.port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    bail!("no unused TCP port found on 127.0.0.1")
}

/// The parent pid of a live process, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Pids of the live processes descended from `ancestor` (children, grandchildren...).
pub fn descendants(ancestor: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids: Vec<i32> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    pids.into_iter()
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..32 {
                match parent_of(p) {
                    Some(pp) if pp == ancestor => return true,
                    Some(pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}
