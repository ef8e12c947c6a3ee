//! Issue 19: the native combine of an incremental chain (`barman_common::combine`) against
//! `pg_combinebackup` 18 on a real PostgreSQL 18 chain (full + two incrementals, pgbench
//! runs, a table truncated by VACUUM then extended again): the same files, byte for byte,
//! the same manifest entries (path, size, CRC-32C), `pg_verifybackup` accepts ours, and a
//! byte flipped in the root backup's copy of a relation is caught, naming the file.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::ServerLayout;
use barman_common::combine::{combine, Backup, Mode, Target};
use barman_common::manifest::Manifest;
use barman_integration::cmd::execute;
use barman_integration::fixtures::backup_ids;
use barman_integration::pgversion::PgVersion;
use barman_integration::{
    cargo_bin, skip_unless, BarmanHome, BarmanServerOptions, PgCluster, PgOptions, Scratch, Sshd, SshdOptions,
};
use sha2::Digest;

/// Every file under `dir` but the manifest: relative path -> SHA-256.
fn files_of(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir)?.to_string_lossy().into_owned();
                if rel != "backup_manifest" {
                    out.insert(rel, hex::encode(sha2::Sha256::digest(fs::read(&path)?)));
                }
            }
        }
    }
    Ok(out)
}

fn entries(dir: &Path) -> Result<BTreeMap<String, (u64, String)>> {
    let m = Manifest::read(&dir.join("backup_manifest"))?;
    Ok(m.files.into_iter().map(|f| (f.path, (f.size, f.checksum))).collect())
}

fn tool(name: &str) -> Command {
    Command::new(PgVersion::V18.tool(name))
}

#[test]
fn native_combine_equals_pg_combinebackup_18() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(PgVersion::V18.require());
    let scratch = Scratch::new("native combine")?;
    let sshd = Sshd::start(&scratch, SshdOptions::default())?;
    let mut barman = BarmanHome::new(&scratch, "barman", cargo_bin("barman")?)?;
    barman.add_path_prefix(sshd.ssh_wrapper_dir_for("barman")?);
    let archive_command = barman_integration::fixtures::archive_line(&barman, &sshd)?;
    let opts = PgOptions::default()
        .version(PgVersion::V18)
        .archive_command(archive_command)
        .path_prefix(sshd.ssh_wrapper_dir_for("postgres")?)
        .conf("summarize_wal = on");
    let pg = PgCluster::start(&scratch, opts)?;
    barman.add_server("pg", &pg, &BarmanServerOptions::default())?;
    let layout = ServerLayout::default_for(&barman.home(), "pg");
    let backup = |parent: Option<&str>| -> Result<String> {
        let mut args = vec!["backup", "pg", "--wait", "--immediate-checkpoint"];
        args.extend(parent.map(|p| ["--incremental", p]).iter().flatten());
        barman.run(&args)?;
        backup_ids(&layout).pop().context("no backup")
    };

    pg.pgbench_init(2)?;
    pg.psql("create table tr as select g from generate_series(1, 200000) g")?;
    let tr = pg.psql("select pg_relation_filepath('tr')")?;
    let accounts = pg.psql("select pg_relation_filepath('pgbench_accounts')")?;
    let full = backup(None)?;
    // Truncated by VACUUM below its length in the full backup, then extended again.
    pg.psql("delete from tr where g > 20000")?;
    pg.psql("vacuum tr")?;
    pg.pgbench(&["-n", "-t", "200", "-c", "2"])?;
    let inc1 = backup(Some("latest"))?;
    pg.psql("insert into tr select generate_series(1, 30000)")?;
    pg.pgbench(&["-n", "-t", "200", "-c", "2"])?;
    let inc2 = backup(Some("latest"))?;
    let data = |id: &str| -> PathBuf { layout.basebackups_directory.join(id).join("data") };
    let dirs = [data(&full), data(&inc1), data(&inc2)];
    ensure!(dirs[2].join(Path::new(&tr).with_file_name(format!("INCREMENTAL.{}", file_name(&tr)))).is_file());

    let theirs = scratch.join("pg_combinebackup");
    let t0 = Instant::now();
    execute(
        tool("pg_combinebackup").arg("--no-sync").arg("-o").arg(&theirs).args(&dirs),
        None,
        Duration::from_mins(3),
    )?
    .success()?;
    let their_time = t0.elapsed();
    let ours = scratch.join("native");
    let chain: Vec<Backup> = dirs.iter().map(|d| Backup { data: d.clone(), tablespaces: Vec::new() }).collect();
    let t0 = Instant::now();
    let done = combine(&chain, &Target { root: ours.clone(), tablespaces: Vec::new() }, Mode::Copy, 2)?;
    eprintln!(
        "native combine: {} files, {} rebuilt, {} bytes in {:?} (pg_combinebackup --no-sync: {their_time:?})",
        done.files,
        done.reconstructed,
        done.bytes,
        t0.elapsed()
    );
    ensure!(done.reconstructed > 10, "too few incremental files rebuilt: {done:?}");

    // Byte for byte: the same files with the same contents.
    let (a, b) = (files_of(&theirs)?, files_of(&ours)?);
    let differ: Vec<_> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
    ensure!(differ.is_empty(), "{} of {} files differ: {differ:?}", differ.len(), a.len());
    ensure!(entries(&theirs)? == entries(&ours)?, "the manifests list different files, sizes or checksums");
    let v = execute(tool("pg_verifybackup").arg("-n").arg(&ours), None, Duration::from_mins(2))?;
    ensure!(v.code() == Some(0) && v.stdout_str().contains("backup successfully verified"), "pg_verifybackup: {v:?}");

    // A byte flipped in the root's copy of a rebuilt relation: refused, naming the file.
    let incremental =
        |dir: &Path| dir.join(Path::new(&accounts).with_file_name(format!("INCREMENTAL.{}", file_name(&accounts))));
    ensure!(incremental(&dirs[1]).is_file() && incremental(&dirs[2]).is_file(), "pgbench_accounts sent whole");
    let damaged = dirs[0].join(&accounts);
    let file = fs::OpenOptions::new().read(true).write(true).open(&damaged)?;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, 100)?;
    file.write_all_at(&[byte[0] ^ 0xff], 100)?;
    let target = Target { root: scratch.join("never"), tablespaces: Vec::new() };
    let e = combine(&chain, &target, Mode::Copy, 2).expect_err("a damaged root is combined");
    ensure!(e.to_string().contains(&format!("{} is damaged: checksum", damaged.display())), "{e}");
    Ok(())
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
