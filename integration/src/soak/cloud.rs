//! The soak's cloud path: a real SeaweedFS (S3) in the root namespace, reached by our
//! `barman-cloud-*` tools running as `postgres` in a namespace of their own (C) through a
//! veth link and a byte proxy on the root end of it (SeaweedFS listens on 127.0.0.1 only), so
//! a cut of the root ↔ C link hangs an upload mid-way as a network outage would.
//!
//! The cloud WAL archive follows PostgreSQL's archive: every segment PostgreSQL archived
//! since the cloud started is handed to `barman-cloud-wal-archive` (from a spool holding its
//! bytes, checked against the SHA-256 PostgreSQL's `archive_command` recorded), until it
//! exits 0. [`Cloud::heal`] is that normal run after a fault (plus a normal
//! `barman-cloud-backup` after a backup fault); [`Cloud::verify`] reads every archived
//! segment back with our `barman-cloud-wal-restore` and compares it, and checks the backups
//! listed by `barman-cloud-backup-list`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::compress::read_maybe_compressed;

use super::checks::{self, Findings};
use super::env::Env;
use crate::cmd::{self, OsUser, Outcome};
use crate::netns::{command_as_in, Link, NetNs};
use crate::objstore::{ObjectStore, Provider};
use crate::scratch::{chown_recursive, write_file};
use crate::{cargo_bin, PgCluster, PgOptions};

const BUCKET: &str = "soak";
const TOOL_TIMEOUT: Duration = Duration::from_mins(3);

/// The store, the link, what was archived and verified.
#[derive(Debug)]
pub struct Cloud {
    link: Link,
    ns: NetNs,
    /// `--endpoint-url` from inside C (the proxy on the root end of the link).
    endpoint: String,
    spool: PathBuf,
    /// Segments before this one were archived before the cloud started: not its business.
    from: String,
    /// Segments `barman-cloud-wal-archive` acknowledged (exit 0).
    archived: BTreeSet<String>,
    verified: BTreeSet<String>,
    /// Backups a SIGKILL left `STARTED` in the bucket (as Barman's leaves them).
    pub orphans: BTreeSet<String>,
    store: ObjectStore,
}

/// Forwards every connection to `listen` (an address of this namespace) to
/// `127.0.0.1:upstream`, byte for byte; returns the port it listens on.
fn proxy(listen: &str, upstream: u16) -> Result<u16> {
    let listener = TcpListener::bind((listen, 0)).with_context(|| format!("proxy bind {listen}"))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { continue };
            let (mut c, mut s) = (client, server);
            std::thread::spawn(move || {
                let _ = io::copy(&mut c, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(Shutdown::Write);
            });
        }
    });
    Ok(port)
}

impl Cloud {
    /// Starts SeaweedFS, namespace C, the link and the proxy; the cloud archive starts after
    /// the last segment PostgreSQL archived so far.
    pub fn start(env: &Env) -> Result<Self> {
        let store = ObjectStore::start(&env.scratch, Provider::AwsS3)?;
        store.create_bucket(BUCKET)?;
        let ns = NetNs::create("soakc")?;
        let link = Link::connect(None, &ns)?;
        let port = proxy(&link.addr_a().to_string(), store.port())?;
        let endpoint = format!("http://{}:{port}", link.addr_a());
        let spool = env.scratch.mkdir_owned("cloud-spool", "postgres")?;
        let from = env.last_archived()?;
        let cloud = Cloud {
            link,
            ns,
            endpoint,
            spool,
            from,
            archived: BTreeSet::new(),
            verified: BTreeSet::new(),
            orphans: BTreeSet::new(),
            store,
        };
        ensure!(cloud.ns.tcp_reachable(&cloud.link.addr_a().to_string(), port), "the proxy is not reachable from C");
        Ok(cloud)
    }

    /// `tool --cloud-provider aws-s3 --endpoint-url <proxy>` as `postgres` in namespace C.
    fn tool(&self, tool: &str) -> Result<Command> {
        let mut c = command_as_in(self.ns.name(), &OsUser::lookup("postgres")?, cargo_bin(tool)?);
        c.args(["--cloud-provider", "aws-s3", "--endpoint-url", &self.endpoint]);
        self.store.apply_env(&mut c);
        Ok(c)
    }

    fn url(&self) -> String {
        self.store.source_url(BUCKET, "soak")
    }

    /// Segments PostgreSQL archived (up to `last`) that the cloud has not acknowledged.
    fn pending(&self, env: &Env, last: &str) -> Result<Vec<(String, String)>> {
        Ok(env
            .references()?
            .into_iter()
            .filter(|(n, _)| n.as_str() > self.from.as_str() && n.as_str() <= last && !self.archived.contains(n))
            .collect())
    }

    /// The segment's bytes in the spool (from the primary catalogue, checked against
    /// PostgreSQL's SHA-256), for `barman-cloud-wal-archive`.
    fn stage(&self, env: &Env, name: &str, sha: &str) -> Result<PathBuf> {
        let src = env.layout("pg").wal_path(&name.parse()?);
        let (bytes, _) = read_maybe_compressed(&src).with_context(|| format!("reading {}", src.display()))?;
        ensure!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)) == sha, "{name} in the catalogue differs");
        let path = self.spool.join(name);
        write_file(&path, bytes, 0o600)?;
        chown_recursive(&path, &OsUser::lookup("postgres")?)?;
        Ok(path)
    }

    fn archive_command(&self, path: &std::path::Path) -> Result<Command> {
        let mut c = self.tool("barman-cloud-wal-archive")?;
        c.args(["-z", &self.url(), "pg"]).arg(path);
        Ok(c)
    }

    /// Archives the pending segments (up to `last`) one by one; with `strict`, a failure is
    /// an error (the normal run), otherwise it stays pending.
    fn ship(&mut self, env: &Env, last: &str, strict: bool) -> Result<()> {
        for (name, sha) in self.pending(env, last)? {
            let path = self.stage(env, &name, &sha)?;
            let out = cmd::execute(&mut self.archive_command(&path)?, None, TOOL_TIMEOUT)?;
            if out.status.success() {
                self.archived.insert(name);
                let _ = fs::remove_file(&path);
            } else if strict {
                anyhow::bail!("barman-cloud-wal-archive {name}: {}", out.stderr_str().trim());
            }
        }
        Ok(())
    }

    /// Starts `barman-cloud-backup` of the primary (as `postgres`, in C).
    fn spawn_backup(&self, env: &Env) -> Result<Child> {
        let mut c = self.tool("barman-cloud-backup")?;
        c.args(["--immediate-checkpoint", "-z", "-h"]).arg(env.pg.socket_dir());
        c.args(["-p", &env.pg.port().to_string(), &self.url(), "pg"]);
        c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().context("spawn barman-cloud-backup")
    }

    /// `barman-cloud-backup-list --format json`: backup id → status.
    fn backups(&self) -> Result<BTreeMap<String, String>> {
        let mut c = self.tool("barman-cloud-backup-list")?;
        c.args(["--format", "json", &self.url(), "pg"]);
        let out = cmd::execute(&mut c, None, TOOL_TIMEOUT)?;
        out.success()?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("backup-list JSON")?;
        let list = json["backups_list"].as_array().context("no backups_list")?;
        Ok(list
            .iter()
            .filter_map(|b| Some((b["backup_id"].as_str()?.to_owned(), b["status"].as_str()?.to_owned())))
            .collect())
    }

    /// A normal `barman-cloud-backup`: must exit 0 with a DONE backup.
    fn backup(&self, env: &mut Env) -> Result<()> {
        let before = env.rows()?;
        let had = self.backups()?;
        let child = self.spawn_backup(env)?;
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "barman-cloud-backup: {}", String::from_utf8_lossy(&out.stderr).trim());
        for (id, status) in self.backups()? {
            if !had.contains_key(&id) {
                ensure!(status == "DONE", "the new cloud backup {id} is {status}");
                env.rows_before.insert(id, before);
            }
        }
        Ok(())
    }
}

/// The cloud faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of `barman-cloud-wal-archive` mid-upload.
    KillWalArchive,
    /// SIGKILL of `barman-cloud-backup`.
    KillBackup,
    /// The root ↔ C link cut during an upload (WAL on even rounds, a backup on odd ones).
    Cut,
}

fn lazily(env: &mut Env) -> Result<()> {
    if env.cloud.is_none() {
        env.cloud = Some(Cloud::start(env)?);
    }
    Ok(())
}

fn rand_ms(max: u64) -> Duration {
    Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=max))
}

/// Injects one cloud fault; true when it hit.
pub fn inject(env: &mut Env, fault: Fault, round: u32) -> Result<bool> {
    lazily(env)?;
    let last = checks::heal(env)?;
    let mut cloud = env.cloud.take().context("cloud")?;
    let result = inject_with(env, &mut cloud, fault, round, &last);
    env.cloud = Some(cloud);
    result
}

fn inject_with(env: &Env, cloud: &mut Cloud, fault: Fault, round: u32, last: &str) -> Result<bool> {
    match fault {
        Fault::KillWalArchive => {
            let pending = cloud.pending(env, last)?;
            let (name, sha) = pending.last().context("nothing to archive to the cloud")?;
            let path = cloud.stage(env, name, sha)?;
            let mut child = cloud.archive_command(&path)?.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
            std::thread::sleep(rand_ms(400));
            let alive = child.try_wait()?.is_none();
            let _ = child.kill();
            child.wait()?;
            Ok(alive)
        }
        Fault::KillBackup => {
            let mut child = cloud.spawn_backup(env)?;
            std::thread::sleep(rand_ms(1200));
            let alive = child.try_wait()?.is_none();
            let _ = child.kill();
            child.wait()?;
            Ok(alive)
        }
        Fault::Cut => {
            let child = if round.is_multiple_of(2) { None } else { Some(cloud.spawn_backup(env)?) };
            let link = &cloud.link;
            std::thread::scope(|s| -> Result<bool> {
                let cutter = s.spawn(|| -> Result<()> {
                    std::thread::sleep(Duration::from_millis(100) + rand_ms(600));
                    link.set_down()?;
                    std::thread::sleep(Duration::from_secs(1) + rand_ms(5000));
                    link.set_up()
                });
                if child.is_none() {
                    // Uploads during the cut may fail: they stay pending for the normal run.
                    let c: &Cloud = cloud;
                    for (name, sha) in c.pending(env, last)? {
                        let path = c.stage(env, &name, &sha)?;
                        let _ = cmd::execute(&mut c.archive_command(&path)?, None, TOOL_TIMEOUT)?;
                    }
                }
                cutter.join().map_err(|_| anyhow::anyhow!("cutter panicked"))??;
                if let Some(child) = child {
                    super::sites::wait_child(child, TOOL_TIMEOUT, "barman-cloud-backup after a link cut")?;
                }
                Ok(true)
            })
        }
    }
}

/// The normal run after a cloud fault (pending WAL archived, a normal backup after a backup
/// fault) and the invariants; an error of the normal run is a manual repair.
pub fn heal(env: &mut Env, last: &str, backup: bool) -> Result<()> {
    let mut cloud = env.cloud.take().context("cloud")?;
    let result = (|| {
        cloud.ship(env, last, true)?;
        if backup {
            cloud.backup(env)?;
            // The new backup's last segment, archived by PostgreSQL, into the cloud too.
            let last = checks::heal(env)?;
            cloud.ship(env, &last, true)?;
        }
        Ok(())
    })();
    env.cloud = Some(cloud);
    result
}

/// Every acknowledged segment reads back (our `barman-cloud-wal-restore`) equal to what
/// PostgreSQL archived; every backup DONE, FAILED or a killed one's STARTED (noted).
pub fn verify(env: &mut Env, f: &mut Findings) -> Result<()> {
    let mut cloud = env.cloud.take().context("cloud")?;
    let result = verify_with(env, &mut cloud, f);
    env.cloud = Some(cloud);
    result
}

fn verify_with(env: &Env, cloud: &mut Cloud, f: &mut Findings) -> Result<()> {
    let refs = env.references()?;
    let todo: Vec<String> = cloud.archived.difference(&cloud.verified).cloned().collect();
    for name in todo {
        let dest = cloud.spool.join(format!("{name}.back"));
        let mut c = cloud.tool("barman-cloud-wal-restore")?;
        c.args([&cloud.url(), "pg", &name]).arg(&dest);
        let out = cmd::execute(&mut c, None, TOOL_TIMEOUT)?;
        let got = if out.status.success() { checks::sha_of(&dest).ok() } else { None };
        let _ = fs::remove_file(&dest);
        match got {
            Some((sha, _)) if refs.get(&name) == Some(&sha) => {
                cloud.verified.insert(name);
            }
            Some(_) => f.lost.push(format!("cloud/{name} differs")),
            None => f.lost.push(format!("cloud/{name} missing: {}", out.stderr_str().trim())),
        }
    }
    for (id, status) in cloud.backups()? {
        match status.as_str() {
            "DONE" | "FAILED" => {}
            "STARTED" => {
                cloud.orphans.insert(id);
            }
            other => f.violations.push(format!("cloud backup {id} is {other}")),
        }
    }
    Ok(())
}

/// A sampled restore of the newest DONE cloud backup: `barman-cloud-restore`, then
/// PostgreSQL recovering with `barman-cloud-wal-restore` as `restore_command`; it must hold
/// the rows written before the backup began.
pub fn sampled_restore(env: &Env) -> Result<()> {
    let cloud = env.cloud.as_ref().context("cloud")?;
    let id = cloud.backups()?.into_iter().filter(|(_, s)| s == "DONE").map(|(id, _)| id).next_back();
    let id = id.context("no DONE cloud backup")?;
    let dir = env.scratch.unique_dir("cloud-restore", "postgres")?;
    let dest = dir.join("pgdata");
    let mut c = cloud.tool("barman-cloud-restore")?;
    c.args([&cloud.url(), "pg", &id]).arg(&dest);
    let out: Outcome = cmd::execute(&mut c, None, TOOL_TIMEOUT)?;
    out.success()?;
    write_file(&dest.join("recovery.signal"), "", 0o600)?;
    chown_recursive(&dest, &OsUser::lookup("postgres")?)?;
    let restore = format!(
        "{} --cloud-provider aws-s3 --endpoint-url {} {} pg %f %p",
        cargo_bin("barman-cloud-wal-restore")?.display(),
        cloud.store.endpoint_url().context("endpoint")?,
        cloud.url()
    );
    let mut opts =
        PgOptions::default().conf(format!("restore_command = '{restore}'")).conf("recovery_target_action = 'promote'");
    for (k, v) in cloud.store.env() {
        opts = opts.env(k, v);
    }
    let restored = PgCluster::start_existing(&env.scratch, &dest, opts)?;
    restored.wait_for_recovery_end(Duration::from_mins(2))?;
    let rows = super::env::written(&restored)?;
    let want = env.rows_before.get(&id).copied().unwrap_or(0);
    ensure!(rows >= want, "cloud backup {id} restored rows up to {rows}, not the {want} written before it");
    drop(restored);
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}
