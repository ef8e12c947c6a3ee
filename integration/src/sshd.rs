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
//!
//! With [`SshdOptions::listen_in`] sshd runs inside a network namespace (see
//! [`crate::netns`]) and listens on that namespace's address instead of 127.0.0.1. Its files
//! then live in `<scratch>/sshd-<netns>-<n>/` and its wrappers in
//! `<scratch>/ssh-<user>-<netns>-<n>/`, so several sshds share one scratch dir; their
//! `ssh_config` maps that address to the port, and since `ssh` runs wherever its caller
//! runs, a wrapper works from any namespace that has a route to the address.

use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, OsUser};
use crate::netns::NetNs;
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
    /// Address to listen on (and that the wrappers map to the port); `None`: 127.0.0.1.
    pub listen_address: Option<String>,
    /// Network namespace to run sshd in (`ip netns exec`); `None`: the caller's.
    pub netns: Option<String>,
}

impl Default for SshdOptions {
    /// Our binaries (`target/debug`) first, then real Barman's venv.
    fn default() -> Self {
        Self {
            remote_path: vec![cmd::target_dir(), Path::new(DEFAULT_VENV).join("bin")],
            users: vec!["barman".into(), "postgres".into(), "root".into()],
            log_level: "VERBOSE".into(),
            listen_address: None,
            netns: None,
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

    /// Runs sshd inside `netns` (`None`: the caller's namespace), listening on `address`
    /// (an address of that namespace, e.g. a [`crate::netns::Link`] end).
    #[must_use]
    #[allow(clippy::needless_pass_by_value)] // takes `&str`, `String` and `Ipv4Addr` alike
    pub fn listen_in(mut self, netns: Option<&NetNs>, address: impl ToString) -> Self {
        self.netns = netns.map(|ns| ns.name().to_string());
        self.listen_address = Some(address.to_string());
        self
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
    /// Appended to `ssh-<user>` for wrapper dirs: empty for the default sshd.
    suffix: String,
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
        let (dir, suffix) = if opts.listen_address.is_none() && opts.netns.is_none() {
            (scratch.mkdir("sshd")?, String::new())
        } else {
            let tag: String = opts
                .netns
                .as_deref()
                .or(opts.listen_address.as_deref())
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let dir = scratch.unique_dir(&format!("sshd-{tag}"), "root")?;
            let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let suffix = name.strip_prefix("sshd").unwrap_or_default().to_string();
            (dir, suffix)
        };
        set_mode(&dir, 0o755)?;
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").context("mkdir /run/sshd")?;
        keygen(&dir.join("host_key"))?;
        keygen(&dir.join("client_key"))?;
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        set_mode(&dir.join("authorized_keys"), 0o644)?;
        let mut sshd = Self { _scratch: scratch.clone(), dir, suffix, port: 0, opts, child: None };
        sshd.launch()?;
        for user in sshd.opts.users.clone() {
            sshd.make_wrapper_dir(scratch, &user)?;
        }
        Ok(sshd)
    }

    /// The port sshd listens on (on [`Sshd::host`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address sshd listens on: [`SshdOptions::listen_address`] or `127.0.0.1`.
    pub fn host(&self) -> &str {
        self.opts.listen_address.as_deref().unwrap_or("127.0.0.1")
    }

    /// The network namespace sshd runs in (`None`: the test's).
    pub fn netns(&self) -> Option<&str> {
        self.opts.netns.as_deref()
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
        self.dir.parent().expect("sshd dir is inside scratch").join(format!("ssh-{user}{}", self.suffix))
    }

    /// An `ssh` command through `user`'s wrapper, run as `user`, to
    /// `remote_user@`[`Sshd::host`] running `remote_command` (a shell string, as ssh passes it).
    pub fn ssh_command(&self, user: &str, remote_user: &str, remote_command: &str) -> Result<Command> {
        self.ssh_command_from(None, user, remote_user, remote_command)
    }

    /// [`Sshd::ssh_command`] run from inside `netns` (`None`: the test's namespace).
    pub fn ssh_command_from(
        &self,
        netns: Option<&NetNs>,
        user: &str,
        remote_user: &str,
        remote_command: &str,
    ) -> Result<Command> {
        let os_user = OsUser::lookup(user)?;
        let wrapper = self.ssh_wrapper_dir_for(user)?.join("ssh");
        let mut ssh = if let Some(ns) = netns {
            ns.command_as(&os_user, wrapper)
        } else {
            let mut ssh = Command::new(wrapper);
            cmd::as_user(&mut ssh, &os_user);
            ssh
        };
        ssh.arg(format!("{remote_user}@{}", self.host())).arg(remote_command);
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
            let mut command = match &self.opts.netns {
                Some(ns) => crate::netns::command_in(ns, SSHD),
                None => Command::new(SSHD),
            };
            let child = command
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
        let host = self.host().to_string();
        let netns = self.opts.netns.clone();
        let child = self.child.as_mut().expect("launched");
        wait_until(Duration::from_secs(10), "sshd to listen", || {
            if let Some(status) = child.try_wait()? {
                bail!("sshd exited with {status}");
            }
            Ok(match &netns {
                Some(ns) => crate::netns::tcp_reachable_in(ns, &host, port),
                None => TcpStream::connect((host.as_str(), port)).is_ok(),
            })
        })
    }

    fn sshd_config(&self) -> String {
        let d = self.dir.display();
        format!(
            "# Written by the integration harness.
Port {port}
ListenAddress {host}
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
            host = self.host(),
            users = self.opts.users.join(" "),
            level = self.opts.log_level,
            path = self.opts.remote_path_value(),
        )
    }

    fn make_wrapper_dir(&self, scratch: &Scratch, user: &str) -> Result<()> {
        let os_user = OsUser::lookup(user)?;
        let dir = scratch.mkdir(format!("ssh-{user}{}", self.suffix))?;
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
Host {hosts}
    Port {port}
Host *
    IdentityFile {key}
{CLIENT_OPTIONS}",
            hosts = self.ssh_config_hosts(),
            port = self.port,
            key = key.display(),
        )
    }

    /// The `Host` patterns of this sshd in an `ssh_config`.
    fn ssh_config_hosts(&self) -> &str {
        self.opts.listen_address.as_deref().unwrap_or("127.0.0.1 localhost")
    }
}

/// The `Host *` options of every generated `ssh_config`, after `IdentityFile`.
const CLIENT_OPTIONS: &str = "    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 10
    SendEnv RUST_LOG RUST_BACKTRACE
";

/// A new wrapper dir `<scratch>/ssh-<user>-all-<n>/` owned by `user` whose `ssh` reaches
/// every sshd in `sshds`, each by its [`Sshd::host`] with its own port and client key: for
/// a host that must reach several others (each [`Sshd::ssh_wrapper_dir_for`] knows only
/// its own sshd, and only the first `ssh` on `PATH` counts). Every sshd must accept `user`.
pub fn combined_wrapper_dir(scratch: &Scratch, user: &str, sshds: &[&Sshd]) -> Result<PathBuf> {
    let os_user = OsUser::lookup(user)?;
    let dir = scratch.unique_dir(&format!("ssh-{user}-all"), "root")?;
    let mut config = String::from("# Written by the integration harness.\n");
    for (i, sshd) in sshds.iter().enumerate() {
        if !sshd.opts.users.iter().any(|u| u == user) {
            bail!("sshd on {}:{} does not accept {user}; add it to SshdOptions::users", sshd.host(), sshd.port);
        }
        let key = dir.join(format!("id_ed25519_{i}"));
        fs::copy(sshd.dir.join("client_key"), &key)?;
        set_mode(&key, 0o600)?;
        config.push_str(&format!(
            "Host {hosts}\n    Port {port}\n    IdentityFile {key}\n",
            hosts = sshd.ssh_config_hosts(),
            port = sshd.port,
            key = key.display()
        ));
    }
    config.push_str("Host *\n");
    config.push_str(CLIENT_OPTIONS);
    let config_path = dir.join("ssh_config");
    write_file(&config_path, config, 0o644)?;
    let script = format!("#!/bin/sh\nexec {SSH} -F '{}' \"$@\"\n", config_path.display());
    write_file(&dir.join("ssh"), script, 0o755)?;
    chown_recursive(&dir, &os_user)?;
    Ok(dir)
}

impl Drop for Sshd {
    /// Stops the listener and every session it started, as a host going down would: the
    /// clients' shared connections (ssh `ControlPersist` masters) end with them instead of
    /// outliving the test on a dead server.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let sessions = i32::try_from(child.id()).map(cmd::descendants).unwrap_or_default();
            let _ = child.kill();
            let _ = child.wait();
            for pid in sessions {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
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
