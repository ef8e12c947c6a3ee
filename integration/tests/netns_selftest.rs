//! Self tests of the network-namespace harness: two "data centres" A and B (root ↔ A ↔ B),
//! one private sshd in each, cut links, byte counters, and PostgreSQL across a link.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use barman_integration::netns::{Link, NetNs};
use barman_integration::pg::PG_BIN;
use barman_integration::{cmd, skip_unless, sshd, OsUser, Outcome, PgCluster, PgOptions, Scratch, Sshd, SshdOptions};

/// root ↔ A ↔ B, an sshd in A (on A's end of A↔B) and one in B (on B's end).
/// Fields drop in order: sshds, then links, then namespaces, then the scratch dir.
struct TwoSites {
    sshd_a: Sshd,
    sshd_b: Sshd,
    a_b: Link,
    root_a: Link,
    b: NetNs,
    a: NetNs,
    scratch: Scratch,
}

impl TwoSites {
    fn build(name: &str) -> Result<Self> {
        let scratch = Scratch::new(name)?;
        let a = NetNs::create("dca")?;
        let b = NetNs::create("dcb")?;
        let root_a = Link::connect(None, &a)?;
        let a_b = Link::connect(Some(&a), &b)?;
        let sshd_a = Sshd::start(&scratch, SshdOptions::default().listen_in(Some(&a), a_b.addr_a()))?;
        let sshd_b = Sshd::start(&scratch, SshdOptions::default().listen_in(Some(&b), a_b.addr_b()))?;
        Ok(Self { sshd_a, sshd_b, a_b, root_a, b, a, scratch })
    }

    /// The names to check for leftovers after drop.
    fn names(&self) -> Vec<String> {
        vec![
            self.a.name().to_string(),
            self.b.name().to_string(),
            self.root_a.dev_a().to_string(),
            self.a_b.dev_a().to_string(),
        ]
    }
}

/// Runs `ssh <args>` from inside `ns` as `user` through `sshd`'s wrapper for `user`.
fn ssh_from(ns: &NetNs, sshd: &Sshd, user: &str, args: &[&str]) -> Result<Outcome> {
    let wrapper = sshd.ssh_wrapper_dir_for(user)?.join("ssh");
    let mut ssh = ns.command_as(&OsUser::lookup(user)?, wrapper);
    ssh.args(args);
    cmd::outcome(&mut ssh)
}

/// Runs `ssh <args>` from the test's own namespace as `user` through `sshd`'s wrapper.
fn ssh_here(sshd: &Sshd, user: &str, args: &[&str]) -> Result<Outcome> {
    let mut ssh = Command::new(sshd.ssh_wrapper_dir_for(user)?.join("ssh"));
    cmd::as_user(&mut ssh, &OsUser::lookup(user)?);
    cmd::outcome(ssh.args(args))
}

/// Fails if a namespace or root-namespace interface named in `names` still exists.
fn assert_cleaned_up(names: &[String]) -> Result<()> {
    let list = String::from_utf8_lossy(&cmd::run(Command::new("ip").args(["netns", "list"]))?.stdout).into_owned();
    for name in names {
        let listed = list.lines().any(|l| l.split_whitespace().next() == Some(name.as_str()));
        ensure!(!listed, "namespace {name} left behind:\n{list}");
        ensure!(!Path::new("/sys/class/net").join(name).exists(), "interface {name} left behind");
    }
    Ok(())
}

fn require() -> Result<()> {
    NetNs::require()?;
    Sshd::require()
}

#[test]
fn ssh_between_namespaces_follows_links_and_routes() -> Result<()> {
    skip_unless!(require());
    let mut sites = TwoSites::build("netns ssh")?;
    let names = sites.names();
    let (sshd_a, sshd_b, a, b) = (&sites.sshd_a, &sites.sshd_b, &sites.a, &sites.b);

    // Two sshds in one scratch dir: separate wrapper dirs for the same user.
    ensure!(sshd_a.ssh_wrapper_dir_for("barman")? != sshd_b.ssh_wrapper_dir_for("barman")?);
    let addr_a = sites.a_b.addr_a().to_string();
    let addr_b = sites.a_b.addr_b().to_string();
    assert_eq!(sshd_a.host(), addr_a);

    // From B, as barman, a plain `ssh <A's address>` lands in A (whose interfaces it lists).
    let outcome = ssh_from(b, sshd_a, "barman", &[&addr_a, "id -un; /usr/sbin/ip -br addr"])?;
    outcome.success().with_context(|| sshd_a.log())?;
    let stdout = outcome.stdout_str();
    ensure!(stdout.starts_with("barman\n"), "{stdout}");
    ensure!(stdout.contains(&sites.root_a.addr_b().to_string()) && stdout.contains(&addr_a), "not in A:\n{stdout}");
    ensure!(!stdout.contains(&addr_b), "B's address seen remotely:\n{stdout}");
    // The helper does the same.
    cmd::run(&mut sshd_a.ssh_command_from(Some(b), "barman", "barman", "true")?)?;
    // And A reaches B's sshd directly.
    cmd::run(&mut sshd_b.ssh_command_from(Some(a), "postgres", "barman", "true")?).with_context(|| sshd_b.log())?;

    // One wrapper dir reaching both sshds, used from A: its own address and B's.
    let both = sshd::combined_wrapper_dir(&sites.scratch, "barman", &[sshd_a, sshd_b])?;
    let barman = OsUser::lookup("barman")?;
    for addr in [&addr_a, &addr_b] {
        let mut ssh = a.command_as(&barman, both.join("ssh"));
        ssh.args([addr.as_str(), "/usr/sbin/ip -br addr"]);
        let stdout = String::from_utf8_lossy(&cmd::run(&mut ssh)?.stdout).into_owned();
        ensure!(stdout.contains(addr.as_str()), "ssh {addr} landed elsewhere:\n{stdout}");
    }

    // The root namespace is linked to A only: B is unreachable from it, and it from B...
    let unreachable = ssh_here(sshd_b, "root", &["-o", "ConnectTimeout=3", &addr_b, "true"])?;
    ensure!(!unreachable.status.success(), "root reached B without a route:\n{unreachable}");
    ensure!(!b.tcp_reachable(&sites.root_a.addr_a().to_string(), sshd_b.port()));

    // ...until A forwards and both ends route through it.
    a.enable_forwarding()?;
    let (root_a_subnet, a_b_subnet) = (sites.root_a.subnet(), sites.a_b.subnet());
    sites.root_a.route_from_a(&a_b_subnet)?;
    sites.a_b.route_from_b(&root_a_subnet)?;
    let outcome = ssh_here(&sites.sshd_b, "root", &["-o", "ConnectTimeout=3", &addr_b, "echo $SSH_CONNECTION"])?;
    outcome.success().with_context(|| sites.sshd_b.log())?;
    // B sees the root namespace's own address (routed, not NATed).
    ensure!(outcome.stdout_str().starts_with(&format!("{} ", sites.root_a.addr_a())), "{outcome}");
    ensure!(outcome.stdout_str().trim_end().ends_with(&format!(" {addr_b} {}", sites.sshd_b.port())), "{outcome}");
    // Routes survive a cut and restore.
    sites.a_b.set_down()?;
    sites.a_b.set_up()?;
    cmd::run(&mut sites.sshd_b.ssh_command("root", "root", "true")?)?;

    drop(sites);
    assert_cleaned_up(&names)
}

#[test]
fn cut_link_fails_fast_and_restores() -> Result<()> {
    skip_unless!(require());
    let sites = TwoSites::build("netns cut")?;
    let names = sites.names();
    let addr_a = sites.a_b.addr_a().to_string();
    let args = ["-o", "ConnectTimeout=3", addr_a.as_str(), "true"];
    ssh_from(&sites.b, &sites.sshd_a, "barman", &args)?.success()?;

    sites.a_b.set_down()?;
    let cut = ssh_from(&sites.b, &sites.sshd_a, "barman", &args)?;
    ensure!(!cut.status.success(), "ssh crossed a cut link:\n{cut}");
    ensure!(cut.elapsed < Duration::from_secs(10), "a cut link took {:?} to fail:\n{cut}", cut.elapsed);

    sites.a_b.set_up()?;
    ssh_from(&sites.b, &sites.sshd_a, "barman", &args)?.success().with_context(|| sites.sshd_a.log())?;

    drop(sites);
    assert_cleaned_up(&names)
}

#[test]
fn byte_counters_see_a_mebibyte_cross() -> Result<()> {
    const SIZE: u64 = 1024 * 1024;
    skip_unless!(require());
    let sites = TwoSites::build("netns bytes")?;
    let names = sites.names();
    let data: Vec<u8> = (0..SIZE).map(|_| rand::random::<u8>()).collect();
    let file = sites.scratch.write("mebibyte", &data)?;

    let before_b = sites.a_b.counters_b()?;
    let before_a = sites.a_b.counters_a()?;
    let wrapper_dir = sites.sshd_a.ssh_wrapper_dir_for("barman")?;
    let mut sh = sites.b.command_as(&OsUser::lookup("barman")?, "/bin/sh");
    sh.env("PATH", format!("{}:/usr/bin:/bin", wrapper_dir.display()))
        .args(["-c", &format!("cat '{}' | ssh {} 'cat > /dev/null; echo done'", file.display(), sites.a_b.addr_a())]);
    let outcome = cmd::outcome(&mut sh)?;
    outcome.success()?.stdout_contains("done")?;
    let after_b = sites.a_b.counters_b()?;
    let after_a = sites.a_b.counters_a()?;

    let sent = after_b.tx_bytes - before_b.tx_bytes;
    let received = after_a.rx_bytes - before_a.rx_bytes;
    ensure!(sent >= SIZE, "B sent {sent} bytes, less than {SIZE}: {before_b:?} -> {after_b:?}");
    ensure!(received >= SIZE, "A received {received} bytes: {before_a:?} -> {after_a:?}");
    ensure!(sites.a_b.tx_bytes_b()? >= after_b.tx_bytes);
    // Nothing of it went over the root link.
    let root_side = sites.root_a.counters_b()?;
    ensure!(root_side.rx_bytes < SIZE, "A↔root carried the transfer: {root_side:?}");

    drop(sites);
    assert_cleaned_up(&names)
}

#[test]
fn postgres_in_root_namespace_reachable_from_a() -> Result<()> {
    skip_unless!(NetNs::require());
    skip_unless!(PgCluster::require());
    let scratch = Scratch::new("netns pg")?;
    let a = NetNs::create("pga")?;
    let lone = NetNs::create("pglone")?;
    let link = Link::connect(None, &a)?;
    let names = vec![a.name().to_string(), lone.name().to_string(), link.dev_a().to_string()];
    let host = link.addr_a().to_string();
    let pg = PgCluster::start(&scratch, PgOptions::default().conf(format!("listen_addresses = '127.0.0.1,{host}'")))?;
    let port = pg.port().to_string();
    let pg_bin = Path::new(PG_BIN);

    let mut ready = a.command(pg_bin.join("pg_isready"));
    ready.args(["-h", &host, "-p", &port, "-t", "10"]);
    cmd::run(&mut ready)?;
    let mut psql = a.command_as(&OsUser::lookup("postgres")?, pg_bin.join("psql"));
    psql.args(["-h", &host, "-p", &port, "-U", "postgres", "-d", "postgres", "-XAtc", "select inet_client_addr()"]);
    let output = pg.with_log(cmd::run(&mut psql))?;
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), link.addr_b().to_string());

    // A namespace with no link does not reach it (pg_isready: 2 = no response).
    let mut unlinked = lone.command(pg_bin.join("pg_isready"));
    unlinked.args(["-h", &host, "-p", &port, "-t", "2"]);
    cmd::outcome(&mut unlinked)?.fails_with_code(2)?;

    drop(pg);
    drop(link);
    drop((a, lone));
    assert_cleaned_up(&names)
}
