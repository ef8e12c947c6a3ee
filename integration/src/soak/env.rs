//! The soak's world: a PostgreSQL 15 cluster whose `archive_command` records each segment's
//! SHA-256 (the reference of what PostgreSQL archived) and then runs our
//! `barman-wal-archive` over ssh, across a veth link ([`Sites`]), into our catalogue, kept
//! on a tmpfs (so a ballast file can fill it). Server `pg` (postgres method, archiver +
//! streaming slot, gzip) and server `pgr` (rsync method over ssh as `postgres`, streaming
//! slot only); a passive host relays `pg` ([`Sites::passive`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use barman_common::catalogue::ServerLayout;

use super::procs::{self, Tmpfs};
use super::sites::Sites;
use crate::{cargo_bin, wait_until, BarmanHome, PgCluster, PgOptions, Scratch, Sshd, SshdOptions};

/// The whole scratch directory's tmpfs size (the catalogue's included).
const SCRATCH_SIZE: &str = "4g";

/// The catalogue's tmpfs size.
const CATALOGUE_SIZE: &str = "2500m";

/// Rows `soak` keeps (older ones are deleted as new ones come).
const KEEP_ROWS: u32 = 60_000;

/// The highest row id in `soak` of `pg` (0 when empty): what a restore must reach.
pub fn written(pg: &PgCluster) -> Result<i64> {
    Ok(pg.psql("select coalesce(max(id), 0) from soak")?.parse()?)
}

/// Everything one soak runs against. Fields drop in order: the cluster, the tools' homes,
/// the sshd, the tmpfs, then the scratch directory.
pub struct Env {
    /// The primary.
    pub pg: PgCluster,
    /// The object store and the cloud tools' namespace, started by the first cloud fault.
    pub cloud: Option<super::cloud::Cloud>,
    /// Our Barman home (servers `pg` and `pgr`), `barman_home` on [`Env::tmpfs`].
    pub barman: BarmanHome,
    /// The private sshd (127.0.0.1): the rsync method's ssh to `postgres`.
    pub sshd: Sshd,
    /// The namespaces, links, A's sshd (archiving, relay) and the passive host.
    pub sites: Sites,
    /// The catalogue's file system.
    pub tmpfs: Tmpfs,
    /// Where `archive_command` writes `<segment>.sha`.
    pub refs: PathBuf,
    /// Rows in table `soak` before each backup started, by backup id (sampled restores).
    pub rows_before: BTreeMap<String, i64>,
    /// A tmpfs over the whole scratch directory: the cluster's WAL (held by the slots while
    /// faults last) never fills the machine's shared disk.
    _root: Tmpfs,
    /// Where everything lives.
    pub scratch: Scratch,
}

fn server_lines(env_sock: &str, client_bin: &str, slot: &str) -> Vec<String> {
    vec![
        format!("conninfo = {env_sock} user=postgres dbname=postgres"),
        format!("streaming_conninfo = {env_sock} user=postgres"),
        format!("path_prefix = {client_bin}"),
        "streaming_archiver = on".into(),
        format!("slot_name = {slot}"),
        "create_slot = auto".into(),
    ]
}

impl Env {
    /// Starts the world and waits until both slots stream.
    pub fn start(name: &str) -> Result<Env> {
        let scratch = Scratch::new(name)?;
        let root = Tmpfs::mount_mode(scratch.path(), SCRATCH_SIZE, "root", 0o755)?;
        let sshd = Sshd::start(&scratch, SshdOptions::default())?;
        let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
        let tmpfs = Tmpfs::mount(&barman.home(), CATALOGUE_SIZE, "barman")?;
        barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
        let sites = Sites::start(&scratch, &barman.config_path(), barman.barman_bin())?;
        let refs = scratch.mkdir_owned("refs", "postgres")?;
        let archive_command = format!(
            "sha256sum %p > {refs}/%f.sha && {client} -c {cfg} --port {port} {host} pg %p",
            refs = refs.display(),
            client = cargo_bin("barman-wal-archive")?.display(),
            cfg = barman.config_path().display(),
            port = sites.a_sshd.port(),
            host = sites.a_sshd.host(),
        );
        let opts = PgOptions::default()
            .archive_command(archive_command)
            .path_prefix(sites.a_sshd.ssh_wrapper_dir_for("postgres")?)
            .conf("archive_timeout = 0");
        let pg = PgCluster::start(&scratch, opts)?;
        let sock = format!("host={} port={}", pg.socket_dir().display(), pg.port());
        let client_bin = pg.version().client_bin().display().to_string();
        let mut lines = server_lines(&sock, &client_bin, "barman");
        lines.extend(["backup_method = postgres".into(), "archiver = on".into(), "compression = gzip".into()]);
        barman.add_raw_server("pg", &lines.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut lines = server_lines(&sock, &client_bin, "barman_r");
        lines.extend([
            "backup_method = rsync".into(),
            "archiver = off".into(),
            "ssh_command = ssh postgres@127.0.0.1".into(),
            "reuse_backup = link".into(),
            "compression = gzip".into(),
        ]);
        barman.add_raw_server("pgr", &lines.iter().map(String::as_str).collect::<Vec<_>>())?;
        pg.psql("create table soak(id bigserial primary key, pad text)")?;
        let env = Env {
            pg,
            cloud: None,
            barman,
            sshd,
            sites,
            tmpfs,
            refs,
            rows_before: BTreeMap::new(),
            _root: root,
            scratch,
        };
        wait_until(Duration::from_mins(2), "both slots streaming", || {
            env.barman.run(&["cron"])?;
            std::thread::sleep(Duration::from_millis(300));
            Ok(env.pg.psql("select count(*) from pg_replication_slots where active")? == "2")
        })?;
        Ok(env)
    }

    /// The scratch path: every process of this soak has it on its command line.
    pub fn scope(&self) -> String {
        self.scratch.path().display().to_string()
    }

    /// The catalogue layout of `server`.
    pub fn layout(&self, server: &str) -> ServerLayout {
        ServerLayout::default_for(&self.barman.home(), server)
    }

    /// Writes some rows and closes the segment; returns the closed segment's name. The table
    /// keeps its last [`KEEP_ROWS`] rows (so backups stay small over hundreds of faults).
    pub fn write_and_switch(&self) -> Result<String> {
        self.pg.psql("insert into soak(pad) select repeat('x', 200) from generate_series(1, 2000)")?;
        self.pg.psql(&format!("delete from soak where id <= (select max(id) from soak) - {KEEP_ROWS}"))?;
        self.pg.psql("select pg_walfile_name(pg_switch_wal())")
    }

    /// The highest row id written to `soak` (rows are only trimmed from the bottom).
    pub fn rows(&self) -> Result<i64> {
        written(&self.pg)
    }

    /// The segments PostgreSQL handed to `archive_command`, with their SHA-256.
    pub fn references(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for e in fs::read_dir(&self.refs)? {
            let path = e?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".sha")) else {
                continue;
            };
            let text = fs::read_to_string(&path).unwrap_or_default();
            if let Some(sha) = text.split_whitespace().next().filter(|s| s.len() == 64) {
                if name.len() == 24 {
                    out.insert(name.to_owned(), sha.to_owned());
                }
            }
        }
        Ok(out)
    }

    /// `pg_stat_archiver.last_archived_wal`.
    pub fn last_archived(&self) -> Result<String> {
        self.pg.psql("select coalesce(last_archived_wal, '') from pg_stat_archiver")
    }

    /// A fresh directory owned by `barman` for a recovery.
    pub fn recovery_dir(&self, tag: &str) -> Result<PathBuf> {
        self.scratch.unique_dir(tag, "barman")
    }

    /// The path of a catalogue file, for messages.
    pub fn rel<'a>(&self, p: &'a Path) -> &'a Path {
        p.strip_prefix(self.scratch.path()).unwrap_or(p)
    }

    /// Reads the ballast-free space left on the catalogue (for ENOSPC faults).
    pub fn catalogue_free(&self) -> Result<u64> {
        self.tmpfs.free().context("statvfs on the catalogue")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The streamers are detached from cron: stop them before the tmpfs goes.
        procs::kill_all(&self.scope(), "barman-receive-wal");
        procs::kill_all(&self.scope(), "receive-wal");
        procs::kill_all(&self.scope(), "barman-relay");
    }
}
