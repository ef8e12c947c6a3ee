//! A private sshd on 127.0.0.1 and the `ssh` wrappers that reach it.
//!
//! [`Sshd::start`] generates a host key and one client key, writes an `sshd_config` (free
//! port, key-only logins for `root`, `postgres` and `barman`, `SetEnv PATH=...` so that a
//! remote `barman` resolves to the binary a test chooses) and runs `/usr/sbin/sshd -D` as
//! root. For each of those users it prepares `<scratch>/ssh-<user>/` owned by that user,
//! holding a private copy of the client key (ssh refuses keys others can read), an
//! `ssh_config` and an executable `ssh` script running `/usr/bin/ssh -F that-config "$@"`.
//! Put [`Sshd::ssh_wrapper_dir_for`] first on a process's `PATH` and every `ssh 127.0.0.1`
//! it runs (Barman's clients, ours, rsync) lands on this sshd without options.

use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, OsUser};
use crate::pg::SYSTEM_PATH;
use crate::scratch::{chown_recursive, set_mode, write_file, Scratch};
use crate::{barman::DEFAULT_VENV, wait_until};

const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";

/// How to run the private sshd.
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// Directories first on the `PATH` of remote commands (`SetEnv PATH=...`), in order.
    pub remote_path: Vec<PathBuf>,
    /// Users allowed to log in; each gets a wrapper dir.
    pub users: Vec<String>,
    /// sshd `LogLevel`.
    pub log_level: String,
}

impl Default for SshdOptions {
    /// Our binaries (`target/debug`) first, then real Barman's venv.
    fn default() -> Self {
        Self {
            remote_path: vec![cmd::target_dir(), Path::new(DEFAULT_VENV).join("bin")],
            users: vec!["barman".into(), "postgres".into(), "root".into()],
            log_level: "VERBOSE".into(),
        }
    }
}

impl SshdOptions {
    /// Real Barman's venv first: the remote `barman` is Barman 3.20.1.
    pub fn real_barman_first() -> Self {
        let mut opts = Self::default();
        opts.remote_path.reverse();
        opts
    }

    /// The remote `PATH` value.
    pub fn remote_path_value(&self) -> String {
        let mut dirs: Vec<String> = self.remote_path.iter().map(|d| d.display().to_string()).collect();
        dirs.push(SYSTEM_PATH.into());
        dirs.join(":")
    }
}

/// A running private sshd; killed on drop.
#[derive(Debug)]
pub struct Sshd {
    _scratch: Scratch,
    dir: PathBuf,
    port: u16,
    opts: SshdOptions,
    child: Option<Child>,
}

impl Sshd {
    /// Fails unless sshd, ssh and ssh-keygen exist, we are root, and every user in a default
    /// [`SshdOptions`] exists and is not locked (a shadow field of `!`, see setup.sh).
    pub fn require() -> Result<()> {
        crate::require_root()?;
        for bin in [SSHD, SSH, "/usr/bin/ssh-keygen"] {
            if !Path::new(bin).is_file() {
                bail!("{bin} missing (run integration/setup.sh)");
            }
        }
        let shadow = fs::read_to_string("/etc/shadow").context("reading /etc/shadow")?;
        for user in SshdOptions::default().users {
            OsUser::lookup(&user)?;
            let field = shadow
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{user}:")))
                .and_then(|rest| rest.split(':').next())
                .unwrap_or_default();
            if field.starts_with('!') {
                bail!("account {user} is locked for sshd (shadow '!'); run integration/setup.sh");
            }
        }
        Ok(())
    }

    /// Starts sshd in `<scratch>/sshd` with `opts`; waits until it accepts connections.
    pub fn start(scratch: &Scratch, opts: SshdOptions) -> Result<Self> {
        let dir = scratch.mkdir("sshd")?;
        set_mode(&dir, 0o755)?;
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").context("mkdir /run/sshd")?;
        keygen(&dir.join("host_key"))?;
        keygen(&dir.join("client_key"))?;
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        set_mode(&dir.join("authorized_keys"), 0o644)?;
        let mut sshd = Self { _scratch: scratch.clone(), dir, port: 0, opts, child: None };
        sshd.launch()?;
        for user in sshd.opts.users.clone() {
            sshd.make_wrapper_dir(scratch, &user)?;
        }
        Ok(sshd)
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The remote `PATH` sshd sets for sessions.
    pub fn remote_path(&self) -> String {
        self.opts.remote_path_value()
    }

    /// Wrapper dir for root (the user running the tests).
    pub fn ssh_wrapper_dir(&self) -> PathBuf {
        self.wrapper_dir("root")
    }

    /// Wrapper dir for `user`: put it first on `PATH` of processes running as `user`.
    pub fn ssh_wrapper_dir_for(&self, user: &str) -> Result<PathBuf> {
        let dir = self.wrapper_dir(user);
        if !dir.join("ssh").is_file() {
            bail!("no ssh wrapper for {user}; add it to SshdOptions::users");
        }
        Ok(dir)
    }

    fn wrapper_dir(&self, user: &str) -> PathBuf {
        self.dir.parent().expect("sshd dir is inside scratch").join(format!("ssh-{user}"))
    }

    /// An `ssh` command through `user`'s wrapper, run as `user`, to `remote_user@127.0.0.1`
    /// running `remote_command` (a shell string, as ssh passes it).
    pub fn ssh_command(&self, user: &str, remote_user: &str, remote_command: &str) -> Result<Command> {
        let os_user = OsUser::lookup(user)?;
        let mut ssh = Command::new(self.ssh_wrapper_dir_for(user)?.join("ssh"));
        cmd::as_user(&mut ssh, &os_user);
        ssh.arg(format!("{remote_user}@127.0.0.1")).arg(remote_command);
        Ok(ssh)
    }

    /// sshd's own log (connections, authentication failures).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn launch(&mut self) -> Result<()> {
        for _ in 0..5 {
            self.port = cmd::free_port()?;
            write_file(&self.dir.join("sshd_config"), self.sshd_config(), 0o644)?;
            let log = File::create(self.dir.join("sshd.log"))?;
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(self.dir.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting /usr/sbin/sshd")?;
            self.child = Some(child);
            match self.wait_listening() {
                Ok(()) => return Ok(()),
                Err(_) if self.log().contains("Address already in use") => {}
                Err(e) => return Err(e).with_context(|| format!("sshd log:\n{}", self.log())),
            }
        }
        bail!("sshd could not bind a free port; log:\n{}", self.log())
    }

    fn wait_listening(&mut self) -> Result<()> {
        let port = self.port;
        let child = self.child.as_mut().expect("launched");
        wait_until(Duration::from_secs(10), "sshd to listen", || {
            if let Some(status) = child.try_wait()? {
                bail!("sshd exited with {status}");
            }
            Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
    }

    fn sshd_config(&self) -> String {
        let d = self.dir.display();
        format!(
            "# Written by the integration harness.
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
AllowUsers {users}
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200
MaxSessions 200
LogLevel {level}
AcceptEnv LANG LC_* RUST_LOG RUST_BACKTRACE BARMAN_*
SetEnv PATH={path}
",
            port = self.port,
            users = self.opts.users.join(" "),
            level = self.opts.log_level,
            path = self.opts.remote_path_value(),
        )
    }

    fn make_wrapper_dir(&self, scratch: &Scratch, user: &str) -> Result<()> {
        let os_user = OsUser::lookup(user)?;
        let dir = scratch.mkdir(format!("ssh-{user}"))?;
        let key = dir.join("id_ed25519");
        fs::copy(self.dir.join("client_key"), &key)?;
        set_mode(&key, 0o600)?;
        let config = dir.join("ssh_config");
        write_file(&config, self.ssh_config(&key), 0o644)?;
        let wrapper = dir.join("ssh");
        let script = format!("#!/bin/sh\nexec {SSH} -F '{}' \"$@\"\n", config.display());
        write_file(&wrapper, script, 0o755)?;
        chown_recursive(&dir, &os_user)
    }

    fn ssh_config(&self, key: &Path) -> String {
        format!(
            "# Written by the integration harness.
Host 127.0.0.1 localhost
    Port {port}
Host *
    IdentityFile {key}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 10
    SendEnv RUST_LOG RUST_BACKTRACE
",
            port = self.port,
            key = key.display(),
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn keygen(path: &Path) -> Result<()> {
    cmd::run(
        Command::new("/usr/bin/ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "barman-integration", "-f"])
            .arg(path),
    )
    .map(drop)
}
