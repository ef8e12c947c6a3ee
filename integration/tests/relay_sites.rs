//! Geo-redundancy, the seeds' symmetric setup: two sites, each with its own PostgreSQL 15
//! and its own backup host. Host A (site 1) is the primary for `pg1` and passive for `pg2`;
//! host B (site 2) is the primary for `pg2` and passive for `pg1`. Each host is a network
//! namespace of its own with its own sshd, A ↔ B linked by a veth pair; the clusters run in
//! the root namespace, take their backups over their unix sockets and archive over ssh to
//! their own site's host (root ↔ A, root ↔ B). The passives keep a longer retention
//! (`REDUNDANCY 3`) than the primaries (`REDUNDANCY 1`): after three backups a primary holds
//! one, its passive all three, with the WAL to restore each, and the oldest (gone from the
//! primary) recovers from the passive alone.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupId, BackupInfo, Catalogue, ServerLayout};
use barman_common::wal::WalSegSize;
use barman_integration::hosts::{archive_now, insert_rows, BackupHost};
use barman_integration::netns::{Link, NetNs};
use barman_integration::scratch::chown_recursive;
use barman_integration::{
    cargo_bin, skip_unless, wait_until, BarmanServerOptions, OsUser, PgCluster, PgOptions, Scratch, Sshd,
};

/// Backups taken on each primary.
const ROUNDS: u32 = 3;
/// Rows written before each backup.
const ROWS_PER_ROUND: u32 = 100;

/// The two sites. Fields drop in order: the clusters stop before the sshds they archive to.
struct Sites {
    pg1: PgCluster,
    pg2: PgCluster,
    /// Site 1's backup host: primary for `pg1`, passive for `pg2`.
    a: BackupHost,
    /// Site 2's backup host: primary for `pg2`, passive for `pg1`.
    b: BackupHost,
    /// The A ↔ B link (A end = `a`, B end = `b`).
    ab: Link,
    _root_links: (Link, Link),
    ns_a: NetNs,
    ns_b: NetNs,
    scratch: Scratch,
}

/// One direction of the mirror: a server, the host it is backed up on, and the host that
/// follows it.
#[derive(Clone, Copy)]
struct Mirror<'a> {
    server: &'static str,
    pg: &'a PgCluster,
    primary: &'a BackupHost,
    passive: &'a BackupHost,
    passive_ns: &'a NetNs,
}

impl Sites {
    fn mirrors(&self) -> [Mirror<'_>; 2] {
        [
            Mirror { server: "pg1", pg: &self.pg1, primary: &self.a, passive: &self.b, passive_ns: &self.ns_b },
            Mirror { server: "pg2", pg: &self.pg2, primary: &self.b, passive: &self.a, passive_ns: &self.ns_a },
        ]
    }
}

/// A cluster archiving to `host` (its site's backup host), with table `t`.
fn cluster(scratch: &Scratch, host: &BackupHost, server: &str) -> Result<PgCluster> {
    let pg = host.archiving_cluster(scratch, server)?;
    pg.psql("create table t(id int primary key, v text)")?;
    Ok(pg)
}

fn sites() -> Result<Sites> {
    let scratch = Scratch::new("relay two sites")?;
    let (ns_a, ns_b) = (NetNs::create("sa")?, NetNs::create("sb")?);
    let ab = Link::connect(Some(&ns_a), &ns_b)?;
    // Each site's cluster reaches its own host's sshd (on the A ↔ B link) through its own link.
    let mut root_a = Link::connect(None, &ns_a)?;
    let mut root_b = Link::connect(None, &ns_b)?;
    root_a.route_from_a(&format!("{}/32", ab.addr_a()))?;
    root_b.route_from_a(&format!("{}/32", ab.addr_b()))?;
    let bin = cargo_bin("barman")?;
    let mut a = BackupHost::start(&scratch, "a", &bin, Some((&ns_a, &ab.addr_a().to_string())))?;
    let mut b = BackupHost::start(&scratch, "b", &bin, Some((&ns_b, &ab.addr_b().to_string())))?;
    // Each host's barman (its relay) reaches the other host; the clusters use their own
    // host's `postgres` wrapper. Nobody needs two sshds, so one wrapper dir each is enough.
    a.trust(&b)?;
    b.trust(&a)?;
    let pg1 = cluster(&scratch, &a, "pg1")?;
    let pg2 = cluster(&scratch, &b, "pg2")?;
    let primary_opts = BarmanServerOptions {
        compression: Some("gzip".into()),
        extra: vec!["retention_policy = REDUNDANCY 1".into(), "minimum_redundancy = 1".into()],
        ..BarmanServerOptions::default()
    };
    a.home.add_server("pg1", &pg1, &primary_opts)?;
    b.home.add_server("pg2", &pg2, &primary_opts)?;
    let passive_lines = |primary: &BackupHost, server: &str| {
        vec![
            format!("description = \"passive copy of {server}\""),
            format!("primary_ssh_command = {}", primary.primary_ssh_command()),
            "compression = gzip".into(),
            "retention_policy = REDUNDANCY 3".into(),
            "minimum_redundancy = 1".into(),
        ]
    };
    let lines = passive_lines(&a, "pg1");
    b.home.add_raw_server("pg1", &lines.iter().map(String::as_str).collect::<Vec<_>>())?;
    let lines = passive_lines(&b, "pg2");
    a.home.add_raw_server("pg2", &lines.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(Sites { pg1, pg2, a, b, ab, _root_links: (root_a, root_b), ns_a, ns_b, scratch })
}

/// Switches WAL, waits for the cluster to archive it to the primary, runs the archiver there.
/// `barman-relay` processes (not zombies) inside `ns`.
fn relays_running(ns: &NetNs) -> Result<usize> {
    Ok(ns
        .pids()?
        .into_iter()
        .filter(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            comm.trim() == "barman-relay" && state != Some("Z")
        })
        .count())
}

/// Waits until the relays `barman cron` started (detached) inside `ns` have ended.
fn wait_relays(ns: &NetNs) -> Result<()> {
    wait_until(Duration::from_mins(1), "the relays started by cron to end", || Ok(relays_running(ns)? == 0))
}

/// `barman cron` on `host`; it must have started the relay for `passive_server`.
fn cron(host: &BackupHost, passive_server: &str) -> Result<String> {
    let out = host.home.run(&["cron"])?;
    ensure!(
        out.contains(&format!("Starting synchronisation with the primary for server {passive_server}")),
        "cron said:\n{out}"
    );
    Ok(out)
}

/// `(backup_id, status)` of every backup `host` lists for `server`.
fn listed(host: &BackupHost, server: &str) -> Result<Vec<(String, String)>> {
    let json = host.home.run_json(&["list-backups", server])?;
    let backups = json.get(server).and_then(serde_json::Value::as_array).with_context(|| format!("{json}"))?;
    let field =
        |b: &serde_json::Value, k: &str| b.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().into();
    let mut out: Vec<(String, String)> = backups.iter().map(|b| (field(b, "backup_id"), field(b, "status"))).collect();
    out.sort();
    Ok(out)
}

fn done(ids: &[String]) -> Vec<(String, String)> {
    ids.iter().map(|id| (id.clone(), "DONE".to_owned())).collect()
}

/// The backup records of `server` on `host`.
fn catalogue(host: &BackupHost, server: &str) -> Result<Vec<(BackupId, BackupInfo)>> {
    Ok(Catalogue::load(&ServerLayout::default_for(&host.home.home(), server))?.entries().to_vec())
}

/// The WAL names `host`'s xlog.db lists for `server`; each must be listed once (the relay
/// never re-appends what it already indexed, even after the primary's xlog.db was rewritten
/// by its retention).
fn xlog_names(host: &BackupHost, server: &str) -> Result<BTreeSet<String>> {
    let path = host.home.xlog_db(server);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let names: Vec<&str> = text.lines().filter_map(|l| l.split('\t').next()).collect();
    let unique: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    ensure!(unique.len() == names.len(), "{server}: duplicate xlog.db entries on the passive:\n{text}");
    Ok(unique)
}

/// Every segment from the oldest backup's begin_wal to the newest one's end_wal is indexed
/// in the passive's xlog.db and on its disk (so each kept backup restores, and the oldest
/// replays up to the newest); `barman check-backup` agrees for each backup. Returns the
/// number of segments.
fn ensure_wal_covers(host: &BackupHost, server: &str) -> Result<usize> {
    let entries = catalogue(host, server)?;
    let (first, last) = (&entries.first().context("no backup")?.1, &entries.last().context("no backup")?.1);
    let size = last.xlog_segment_size.unwrap_or(WalSegSize::DEFAULT);
    let end = last.end_wal.clone().context("no end_wal")?;
    let indexed = xlog_names(host, server)?;
    let layout = ServerLayout::default_for(&host.home.home(), server);
    let mut w = first.begin_wal.clone().context("no begin_wal")?;
    let mut n = 0;
    while w.as_str() <= end.as_str() {
        ensure!(indexed.contains(w.as_str()), "{server}: {w} missing from the passive's xlog.db: {indexed:?}");
        ensure!(layout.wal_path(&w).is_file(), "{server}: {} missing on the passive", layout.wal_path(&w).display());
        n += 1;
        w = w.next_segment(size)?;
    }
    for (id, _) in &entries {
        host.home.run(&["check-backup", server, id.as_str()])?;
    }
    Ok(n)
}

/// Diagnostics for a failure: both hosts' logs and catalogues.
fn report(s: &Sites) -> String {
    let mut out = String::new();
    for (label, host) in [("A", &s.a), ("B", &s.b)] {
        let lists: Vec<_> = ["pg1", "pg2"].iter().map(|srv| (srv, listed(host, srv))).collect();
        out += &format!("--- host {label}: {lists:?}\nlog:\n{}\n", host.home.log());
    }
    out
}

/// Round `round` on both sites: rows, WAL switch, a backup on each primary, then each
/// passive catches up (a foreground `barman-relay`, or `barman cron` on the passive host
/// for the mirrors listed in `by_cron`, waiting for its detached relay), and finally cron on
/// both hosts (the primaries' retention, the passives' relay and retention).
fn round(s: &Sites, round: u32, by_cron: &[&str], taken: &mut [Vec<String>; 2]) -> Result<()> {
    let mirrors = s.mirrors();
    for m in &mirrors {
        insert_rows(m.pg, (round - 1) * ROWS_PER_ROUND + 1, round * ROWS_PER_ROUND)?;
        archive_now(m.pg, m.primary, m.server)?;
    }
    for (i, m) in mirrors.iter().enumerate() {
        m.primary.home.run(&["backup", m.server, "--wait", "--immediate-checkpoint"])?;
        let ids = m.primary.home.done_backups(m.server)?;
        let newest = ids.iter().max().context("no backup on the primary")?.clone();
        ensure!(!taken[i].contains(&newest), "{}: no new backup ({ids:?})", m.server);
        taken[i].push(newest);
    }
    // The passives catch up before any primary's retention runs: cron on a host also
    // enforces the retention of the server it is primary for, so the foreground relays go
    // first, then the cron-driven ones.
    let mut order: Vec<usize> = (0..mirrors.len()).collect();
    order.sort_by_key(|&i| by_cron.contains(&mirrors[i].server));
    for i in order {
        let m = &mirrors[i];
        if by_cron.contains(&m.server) {
            cron(m.passive, m.server)?;
            wait_until(Duration::from_mins(1), &format!("{}'s passive to list every backup", m.server), || {
                Ok(listed(m.passive, m.server)? == done(&taken[i]))
            })?;
            wait_relays(m.passive_ns)?;
        } else {
            let out = m.passive.relay(&[m.server])?;
            out.success().with_context(|| format!("relay of {} round {round}", m.server))?;
            eprintln!("relay {} round {round}:\n{}{}", m.server, out.stdout_str(), out.stderr_str());
        }
        ensure!(
            listed(m.passive, m.server)? == done(&taken[i]),
            "{}: passive {:?}",
            m.server,
            listed(m.passive, m.server)?
        );
    }
    for (m, passive_server) in [(&mirrors[0], "pg2"), (&mirrors[1], "pg1")] {
        let out = cron(m.primary, passive_server)?;
        eprintln!("cron on the primary of {} round {round}:\n{out}", m.server);
    }
    for m in &mirrors {
        wait_relays(m.passive_ns)?;
    }
    // The primaries keep the newest backup, the passives every one so far.
    for (i, m) in mirrors.iter().enumerate() {
        let newest = taken[i].last().cloned().into_iter().collect::<Vec<_>>();
        ensure!(
            listed(m.primary, m.server)? == done(&newest),
            "{} on its primary: {:?}",
            m.server,
            listed(m.primary, m.server)?
        );
        ensure!(
            listed(m.passive, m.server)? == done(&taken[i]),
            "{} on its passive: {:?}",
            m.server,
            listed(m.passive, m.server)?
        );
    }
    Ok(())
}

/// Recovers `id` of `server` on `host` into a new data directory (with `extra` recover
/// options), starts it and returns `count|min|max` of `t`.
fn recover_rows(s: &Sites, host: &BackupHost, server: &str, id: &str, extra: &[&str]) -> Result<String> {
    let rec = s.scratch.mkdir_owned(format!("rec-{server}"), "barman")?;
    let dest = rec.join("pgdata");
    let dest_s = dest.to_str().context("utf8")?;
    let mut args = vec!["recover"];
    args.extend_from_slice(extra);
    args.extend([server, id, dest_s]);
    host.home.run(&args)?;
    chown_recursive(&dest, &OsUser::lookup("postgres")?)?;
    let restored = PgCluster::start_existing(&s.scratch, &dest, PgOptions::default())?;
    restored.wait_for_recovery_end(Duration::from_mins(1))?;
    restored.psql("select count(*), min(id), max(id) from t")
}

fn run(s: &Sites) -> Result<()> {
    let mut taken: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for r in 1..=ROUNDS {
        // The last round goes through cron on the passive host for pg1 (B); pg2's passive
        // (A) relays in the foreground first, since cron on A also applies pg1's retention.
        let by_cron: &[&str] = if r == ROUNDS { &["pg1"] } else { &[] };
        round(s, r, by_cron, &mut taken).with_context(|| format!("round {r}"))?;
    }
    let mirrors = s.mirrors();
    for (i, m) in mirrors.iter().enumerate() {
        ensure!(taken[i].len() == usize::try_from(ROUNDS)?, "{}: {:?}", m.server, taken[i]);
        let segments = ensure_wal_covers(m.passive, m.server)?;
        eprintln!("{}: passive holds {:?}, WAL ({segments} segments) from the oldest on", m.server, taken[i]);
        // One more cron on each host changes nothing.
        let _ = cron(m.passive, m.server)?;
    }
    for m in &mirrors {
        wait_relays(m.passive_ns)?;
    }
    for (i, m) in mirrors.iter().enumerate() {
        let newest = taken[i].last().cloned().into_iter().collect::<Vec<_>>();
        ensure!(listed(m.primary, m.server)? == done(&newest), "{} on its primary at the end", m.server);
        ensure!(listed(m.passive, m.server)? == done(&taken[i]), "{} on its passive at the end", m.server);
    }

    // The oldest backups, gone from the primaries, recover from the passives alone.
    s.ab.set_down()?;
    let oldest1 = &taken[0][0];
    let got = recover_rows(s, &s.b, "pg1", oldest1, &["--target-immediate", "--target-action", "promote"])?;
    let want = format!("{ROWS_PER_ROUND}|1|{ROWS_PER_ROUND}");
    ensure!(got == want, "pg1 {oldest1} recovered on B up to its end: {got}, want {want}");
    let oldest2 = &taken[1][0];
    let got = recover_rows(s, &s.a, "pg2", oldest2, &[])?;
    let all = ROUNDS * ROWS_PER_ROUND;
    let want = format!("{all}|1|{all}");
    ensure!(got == want, "pg2 {oldest2} recovered on A with all WAL: {got}, want {want}");
    Ok(())
}

#[test]
fn symmetric_sites_keep_longer_retention_on_the_passive() -> Result<()> {
    skip_unless!(NetNs::require());
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    let started = std::time::Instant::now();
    let s = sites()?;
    let result = run(&s);
    let result = result.with_context(|| report(&s));
    eprintln!("relay_sites took {:.1}s", started.elapsed().as_secs_f64());
    result
}
