//! Backup hosts for the geo-redundancy tests: a [`BackupHost`] is a Barman home (user
//! `barman`) plus its own sshd, optionally inside a network namespace of its own, whose
//! remote `barman` is that home's binary with that home's configuration — what a
//! separate machine with its own `/etc/barman.conf` looks like from the outside. A passive
//! host reaches its primary with [`BackupHost::primary_ssh_command`].

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::barman::BarmanHome;
use crate::netns::NetNs;
use crate::scratch::{write_file, Scratch};
use crate::sshd::{Sshd, SshdOptions};

/// One backup host.
#[derive(Debug)]
pub struct BackupHost {
    /// Its Barman home and configuration.
    pub home: BarmanHome,
    /// Its sshd.
    pub sshd: Sshd,
}

impl BackupHost {
    /// A host driven by `barman_bin` (ours or real Barman's). With `place`, it lives in that
    /// namespace and its sshd listens on that address; without, its sshd listens on
    /// 127.0.0.1 (a port of its own) in the test's namespace.
    pub fn start(scratch: &Scratch, label: &str, barman_bin: &Path, place: Option<(&NetNs, &str)>) -> Result<Self> {
        let mut home = BarmanHome::new(scratch, "barman", barman_bin)?;
        let bin_dir = scratch.unique_dir(&format!("host-{label}-bin"), "barman")?;
        let wrapper = format!(
            "#!/bin/sh\n# barman as host {label} runs it: with this host's configuration.\n\
             BARMAN_CONFIG_FILE='{cfg}'\nexport BARMAN_CONFIG_FILE\nexec '{bin}' \"$@\"\n",
            cfg = home.config_path().display(),
            bin = barman_bin.display()
        );
        write_file(&bin_dir.join("barman"), wrapper, 0o755)?;
        let mut opts = SshdOptions::default();
        opts.remote_path.insert(0, bin_dir);
        if let Some((ns, addr)) = place {
            opts = opts.listen_in(Some(ns), addr);
            home.set_netns(ns);
        } else {
            // An explicit address gives each host's sshd a directory (keys, wrappers) of its
            // own, so several hosts can share the test's namespace.
            opts = opts.listen_in(None, "127.0.0.1");
        }
        let sshd = Sshd::start(scratch, opts)?;
        Ok(Self { home, sshd })
    }

    /// `ssh … barman@<this host>`, for a passive's `primary_ssh_command`; keepalives make a
    /// cut link fail within seconds instead of hanging.
    pub fn primary_ssh_command(&self) -> String {
        format!("ssh -o ConnectTimeout=5 -o ServerAliveInterval=2 -o ServerAliveCountMax=3 barman@{}", self.sshd.host())
    }

    /// Lets this host's commands reach `other` with plain `ssh`.
    pub fn trust(&mut self, other: &BackupHost) -> Result<()> {
        self.home.add_path_prefix(other.sshd.ssh_wrapper_dir_for("barman")?);
        Ok(())
    }

    /// Runs `barman-relay -c <config> <args>` on this host; returns its outcome.
    pub fn relay(&self, args: &[&str]) -> Result<crate::Outcome> {
        let mut cmd = self.home.program_command(&crate::cargo_bin("barman-relay")?, args);
        crate::cmd::execute(&mut cmd, None, std::time::Duration::from_mins(10))
    }
}

/// Every file under `dir` (relative path → bytes), skipping `skip` names.
pub fn tree(dir: &Path, skip: &[&str]) -> Result<std::collections::BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) {
                continue;
            }
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.insert(e.path().strip_prefix(dir)?.to_path_buf(), fs::read(e.path())?);
            }
        }
    }
    Ok(out)
}

/// Fails unless the two trees hold the same files with the same bytes.
pub fn ensure_same_tree(a: &Path, b: &Path, skip: &[&str]) -> Result<usize> {
    let (ta, tb) = (tree(a, skip)?, tree(b, skip)?);
    let names = |t: &std::collections::BTreeMap<PathBuf, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    ensure!(names(&ta) == names(&tb), "file sets differ:\n{:?}\nvs\n{:?}", names(&ta), names(&tb));
    for (k, v) in &ta {
        ensure!(tb.get(k) == Some(v), "{} differs", k.display());
    }
    Ok(ta.len())
}

impl BackupHost {
    /// A PostgreSQL 15 cluster archiving `server` to this host with `barman-wal-archive`
    /// through its sshd (the cluster runs in the caller's namespace).
    pub fn archiving_cluster(&self, scratch: &Scratch, server: &str) -> Result<crate::PgCluster> {
        let archive_command = format!(
            "{client} --port {port} {addr} {server} %p",
            client = crate::cargo_bin("barman-wal-archive")?.display(),
            port = self.sshd.port(),
            addr = self.sshd.host(),
        );
        let opts = crate::PgOptions::default()
            .archive_command(archive_command)
            .path_prefix(self.sshd.ssh_wrapper_dir_for("postgres")?);
        crate::PgCluster::start(scratch, opts)
    }

    /// Adds `server` as a passive copy of `primary`'s, with `compression` and `extra` lines.
    pub fn add_passive(&mut self, server: &str, primary: &BackupHost, compression: &str, extra: &[&str]) -> Result<()> {
        let description = format!("description = \"passive copy of {server}\"");
        let ssh = format!("primary_ssh_command = {}", primary.primary_ssh_command());
        let compression = format!("compression = {compression}");
        let mut lines = vec![description.as_str(), ssh.as_str(), compression.as_str()];
        lines.extend_from_slice(extra);
        self.home.add_raw_server(server, &lines)
    }
}

/// Inserts rows `from..=to` into table `t(id int, v text)`.
pub fn insert_rows(pg: &crate::PgCluster, from: u32, to: u32) -> Result<()> {
    pg.psql(&format!("insert into t select g, md5(g::text) from generate_series({from}, {to}) g")).map(drop)
}

/// Closes `pg`'s current WAL segment, waits until it is archived, and runs `host`'s
/// archiver for `server`, so the segment is in its catalogue.
pub fn archive_now(pg: &crate::PgCluster, host: &BackupHost, server: &str) -> Result<()> {
    let last = pg.switch_wal()?;
    pg.wait_for_archived(&last, std::time::Duration::from_mins(1))?;
    host.home.run(&["archive-wal", server]).map(drop)
}
