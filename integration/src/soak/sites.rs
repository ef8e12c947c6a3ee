//! The soak's network and its passive node. The primary backup host's sshd runs in a network
//! namespace of its own (A); the passive backup host, with its own catalogue on a tmpfs of
//! its own, in another (B): root ↔ A ↔ B, as `tests/relay.rs` lays them out. PostgreSQL (in
//! the root namespace) archives over ssh to A's sshd through the root ↔ A link, and the
//! passive pulls server `pg` from A through `primary_ssh_command` over the A ↔ B link, so
//! cutting one link breaks exactly one path. The catalogue itself is the soak's primary
//! catalogue (the namespaces share the file system); `barman cron`, backups and recoveries
//! of the primary still run in the root namespace.
//!
//! After a fault on a passive path, [`heal`] runs the relay normally until the passive has
//! everything the primary has, and [`verify`] checks the passive's catalogue the way
//! [`super::checks::verify`] checks the primary's.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use barman_common::catalogue::ServerLayout;
use barman_common::wal::WalFileName;

use super::checks::{self, Findings, Verified};
use super::env::Env;
use super::procs::{self, Tmpfs};
use crate::hosts::BackupHost;
use crate::netns::{Link, NetNs};
use crate::scratch::write_file;
use crate::{cargo_bin, wait_until, Scratch, Sshd, SshdOptions};

/// The passive catalogue's tmpfs size.
const PASSIVE_SIZE: &str = "2000m";

/// The label of the passive's server in findings and `Verified`.
pub const LABEL: &str = "passive";

/// The namespaces, links, A's sshd and the passive host. Fields drop in order: the sshd and
/// the passive host (their processes), the links, the passive's tmpfs, the namespaces.
#[derive(Debug)]
pub struct Sites {
    /// A's sshd, in namespace A on A's end of A ↔ B; its remote `barman` reads the primary
    /// catalogue's configuration.
    pub a_sshd: Sshd,
    /// The passive backup host (namespace B): server `pg`, relayed from A.
    pub passive: BackupHost,
    /// root ↔ A: archiving over ssh crosses it.
    pub root_a: Link,
    /// A ↔ B: the relay crosses it.
    pub ab: Link,
    /// The passive's catalogue file system.
    pub passive_tmpfs: Tmpfs,
    _ns: (NetNs, NetNs),
}

impl Sites {
    /// Namespaces, links and A's sshd serving the catalogue configured by `primary_config`
    /// with `barman_bin`; the passive host with server `pg` pulling from it.
    pub fn start(scratch: &Scratch, primary_config: &Path, barman_bin: &Path) -> Result<Self> {
        let (nsa, nsb) = (NetNs::create("soaka")?, NetNs::create("soakb")?);
        let mut root_a = Link::connect(None, &nsa)?;
        let ab = Link::connect(Some(&nsa), &nsb)?;
        root_a.route_from_a(&ab.subnet())?;
        let bin_dir = scratch.unique_dir("host-a-bin", "barman")?;
        let wrapper = format!(
            "#!/bin/sh\n# barman as the primary backup host runs it.\nBARMAN_CONFIG_FILE='{}'\n\
             export BARMAN_CONFIG_FILE\nexec '{}' \"$@\"\n",
            primary_config.display(),
            barman_bin.display()
        );
        write_file(&bin_dir.join("barman"), wrapper, 0o755)?;
        let mut opts = SshdOptions::default().listen_in(Some(&nsa), ab.addr_a());
        opts.remote_path.insert(0, bin_dir);
        let a_sshd = Sshd::start(scratch, opts)?;
        let b_addr = ab.addr_b().to_string();
        let mut passive = BackupHost::start(scratch, "passive", &cargo_bin("barman")?, Some((&nsb, &b_addr)))?;
        let passive_tmpfs = Tmpfs::mount(&passive.home.home(), PASSIVE_SIZE, "barman")?;
        passive.home.add_path_prefix(a_sshd.ssh_wrapper_dir_for("barman")?);
        let ssh = format!(
            "primary_ssh_command = ssh -o ConnectTimeout=5 -o ServerAliveInterval=2 -o ServerAliveCountMax=3 barman@{}",
            a_sshd.host()
        );
        passive.home.add_raw_server(
            "pg",
            &["description = \"passive copy of pg\"", &ssh, "compression = gzip", "reuse_backup = link"],
        )?;
        Ok(Self { a_sshd, passive, root_a, ab, passive_tmpfs, _ns: (nsa, nsb) })
    }

    /// The passive's catalogue layout of `pg`.
    pub fn layout(&self) -> ServerLayout {
        ServerLayout::default_for(&self.passive.home.home(), "pg")
    }

    /// `barman-relay -c <passive config> pg`, started in namespace B.
    pub fn spawn_relay(&self) -> Result<Child> {
        self.passive
            .home
            .program_command(&cargo_bin("barman-relay")?, &["pg"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("spawn barman-relay")
    }
}

/// Waits until no `barman-relay` of the soak runs (a detached pass started by the passive's
/// cron finishes by itself); one still running after `within` is a hung relay.
pub fn wait_relay_idle(env: &Env, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if procs::matching(&env.scope(), "barman-relay").is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    procs::kill_all(&env.scope(), "barman-relay");
    bail!("a barman-relay pass was still running after {} s (killed)", within.as_secs())
}

/// Waits up to `within` for `child` to exit; kills it and fails when it does not.
pub fn wait_child(mut child: Child, within: Duration, what: &str) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} still running after {} s (killed)", within.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The normal run on the passive after a fault: relay passes (as its cron would start them)
/// until it holds `last` (the primary's last archived segment) and every DONE backup of the
/// primary is DONE on it. An error is a tool that did not come back: a manual repair.
pub fn heal(env: &Env, last: &str) -> Result<()> {
    wait_relay_idle(env, Duration::from_mins(2))?;
    let want: BTreeSet<String> = env.barman.done_backups("pg")?.into_iter().collect();
    let name: WalFileName = last.parse()?;
    let sites = &env.sites;
    let mut said = String::new();
    wait_until(Duration::from_mins(4), &format!("the passive to hold {last} and the primary's backups"), || {
        let out = sites.passive.relay(&["pg"])?;
        if out.code() != Some(0) {
            said = format!("{}{}", out.stdout_str(), out.stderr_str());
            std::thread::sleep(Duration::from_secs(1));
            return Ok(false);
        }
        let have: BTreeSet<String> = sites.passive.home.done_backups("pg")?.into_iter().collect();
        Ok(sites.layout().wal_path(&name).is_file() && want.is_subset(&have))
    })
    .with_context(|| format!("the relay did not catch up; its last failing pass said: {said}"))
}

/// The passive's invariants: every segment the primary holds from its first backup on, up to
/// `last`, is on the passive and byte-identical after decompression; nothing short under a
/// final name; xlog.db equal to `rebuild-xlogdb`'s; every backup DONE or FAILED.
pub fn verify(env: &Env, last: &str, done: &mut Verified) -> Result<Findings> {
    let mut f = Findings::default();
    let from = checks::first_backup_wal(env, "pg")?;
    let layout = env.sites.layout();
    for (name, sha) in env.references()? {
        if name.as_str() > last || name < from {
            continue;
        }
        let key = (LABEL.to_owned(), name.clone());
        if done.segments.contains(&key) {
            continue;
        }
        let path = layout.wal_path(&name.parse()?);
        if path.is_file() && checks::sha_of(&path).is_ok_and(|(s, _)| s == sha) {
            done.segments.insert(key);
        } else if done.lost.insert(format!("{LABEL}/{name}")) {
            let state = if path.is_file() { "differs" } else { "missing" };
            let found = checks::find_named(&env.sites.passive.home.home(), &name);
            f.lost.push(format!("{LABEL}/{name} ({state}; found as {found:?})"));
        }
    }
    let home = &env.sites.passive.home;
    checks::check_no_partial_in(home, "pg", &done.segments, LABEL, &mut f)?;
    checks::check_xlogdb_in(home, "pg", LABEL, &mut f)?;
    checks::check_backups_in(home, "pg", LABEL, &mut f)?;
    Ok(f)
}
