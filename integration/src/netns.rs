//! Linux network namespaces: separate "hosts" (data centres) joined by veth links.
//!
//! A [`NetNs`] is a named namespace (`ip netns add`) with `lo` up; dropping it kills every
//! process still inside (`ip netns pids`) and deletes it. A [`Link`] is a veth pair between
//! two namespaces (or the root namespace and one) with its own /30 from `10.213.0.0/16`:
//! the `a` end gets `.1`, the `b` end `.2`. Links are explicit: a namespace reaches exactly
//! the peers it is linked to, plus whatever [`Link::route_from_a`]/[`Link::route_from_b`]
//! add (forwarding through a middle namespace needs [`NetNs::enable_forwarding`]).
//! [`Link::set_down`]/[`Link::set_up`] cut and restore a link; [`Link::counters_b`] counts
//! the bytes that crossed it.
//!
//! Names are unique across concurrent test processes: namespaces are `bit<pid>-<n>-<prefix>`,
//! and each link holds an exclusive `flock` on `/run/barman-it-netns/<index>` for its subnet
//! index (veths are `bt<index>a`/`bt<index>b`), released even when a test process dies.
//! Namespaces left behind by dead test processes are deleted by the next [`NetNs::create`].
//!
//! Commands run inside with [`NetNs::command`] (as root) or [`NetNs::command_as`] (as an OS
//! user, through `setpriv`, since `ip netns exec` needs root). An [`crate::Sshd`] runs inside
//! a namespace with [`crate::SshdOptions::listen_in`].

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, OsUser};
use crate::wait_until;

/// The `ip` binary (iproute2).
pub const IP: &str = "/usr/sbin/ip";
const SETPRIV: &str = "/usr/bin/setpriv";
const NAME_MARK: &str = "bit";
const LOCK_DIR: &str = "/run/barman-it-netns";
/// Number of /30 subnets in 10.213.0.0/16.
const SUBNETS: u32 = 16384;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `ip [-n ns] args...`; returns stdout.
fn ip(ns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut command = Command::new(IP);
    if let Some(ns) = ns {
        command.args(["-n", ns]);
    }
    command.args(args);
    let output = cmd::run(&mut command)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip [-n ns] args...`, ignoring failures (cleanup).
fn ip_quiet(ns: Option<&str>, args: &[&str]) {
    let mut command = Command::new(IP);
    if let Some(ns) = ns {
        command.args(["-n", ns]);
    }
    let _ = cmd::outcome(command.args(args));
}

/// A network namespace; its processes are killed and it is deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Fails unless we are root, `ip` and `setpriv` exist, and a namespace can really be
    /// created (not in an unprivileged container).
    pub fn require() -> Result<()> {
        crate::require_root()?;
        for bin in [IP, SETPRIV] {
            if !Path::new(bin).is_file() {
                bail!("{bin} missing (install iproute2 / util-linux)");
            }
        }
        Self::create("probe").context("cannot create network namespaces here").map(drop)
    }

    /// Creates `bit<pid>-<n>-<prefix>` (prefix: up to 8 alphanumerics) with `lo` up.
    pub fn create(prefix: &str) -> Result<Self> {
        reap_stale();
        let prefix: String = prefix.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
        let pid = std::process::id();
        for _ in 0..20 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("{NAME_MARK}{pid}-{n}-{prefix}");
            let outcome = cmd::outcome(Command::new(IP).args(["netns", "add", &name]))?;
            if outcome.status.success() {
                let ns = Self { name };
                ns.ip(&["link", "set", "lo", "up"])?;
                return Ok(ns);
            }
            // A namespace of a dead process that had our pid: try the next name.
            if !outcome.stderr_str().contains("exists") {
                outcome.success()?;
            }
        }
        bail!("could not create a network namespace named {NAME_MARK}{pid}-*")
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <this> args...`; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ip(Some(&self.name), args)
    }

    /// A command running `program` as root inside this namespace (`ip netns exec`). Add
    /// arguments, environment and a working directory as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(&self.name, program)
    }

    /// A command running `program` inside this namespace as `user`: like
    /// [`cmd::as_user`] (uid/gid, no supplementary groups, `HOME`/`USER`/`LOGNAME`, no
    /// `PG*` variables, cwd `/`), but switching users with `setpriv` after entering the
    /// namespace, since only root may enter one.
    pub fn command_as(&self, user: &OsUser, program: impl AsRef<OsStr>) -> Command {
        command_as_in(&self.name, user, program)
    }

    /// Whether a TCP connection to `addr:port` succeeds from inside this namespace.
    pub fn tcp_reachable(&self, addr: &str, port: u16) -> bool {
        tcp_reachable_in(&self.name, addr, port)
    }

    /// Turns on IPv4 forwarding in this namespace, so that it routes between its links.
    pub fn enable_forwarding(&self) -> Result<()> {
        let mut sh = self.command("/bin/sh");
        sh.args(["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        cmd::run(&mut sh).map(drop)
    }

    /// Pids of the processes inside this namespace.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let out = ip(None, &["netns", "pids", &self.name])?;
        Ok(out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// [`NetNs::command`] for namespace `ns` given by name.
pub fn command_in(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(IP);
    command.args(["netns", "exec", ns]).arg(program);
    command
}

/// [`NetNs::command_as`] for a namespace known by name (a [`crate::BarmanHome`] keeps only
/// the name of the namespace its host lives in).
pub fn command_as_in(ns: &str, user: &OsUser, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(IP);
    command
        .args(["netns", "exec", ns, SETPRIV])
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args(["--clear-groups", "--"])
        .arg(program);
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGDATA", "PGPASSWORD"] {
        command.env_remove(var);
    }
    command.env("HOME", &user.home).env("USER", &user.name).env("LOGNAME", &user.name).current_dir("/");
    command
}

/// Whether a TCP connection to `addr:port` succeeds from inside namespace `ns` (by name).
pub fn tcp_reachable_in(ns: &str, addr: &str, port: u16) -> bool {
    let mut probe = command_in(ns, "/bin/bash");
    probe.args(["-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")]);
    cmd::execute(&mut probe, None, Duration::from_secs(10)).is_ok_and(|o| o.status.success())
}

/// Kills every process inside namespace `name` and deletes it.
fn destroy(name: &str) {
    for _ in 0..50 {
        let pids = ip(None, &["netns", "pids", name]).unwrap_or_default();
        let pids: Vec<i32> = pids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ip_quiet(None, &["netns", "delete", name]);
}

/// Deletes namespaces named by this harness whose creating process is gone.
fn reap_stale() {
    let Ok(list) = ip(None, &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(NAME_MARK).and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            destroy(name);
        }
    }
}

/// Which end of a [`Link`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The `a` end (`.1`; the root namespace when `connect` got `None`).
    A,
    /// The `b` end (`.2`).
    B,
}

/// Traffic counters of one veth end, from `ip -s -j link show`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// A veth pair between two namespaces with its own /30; deleted on drop.
#[derive(Debug)]
pub struct Link {
    ns_a: Option<String>,
    ns_b: String,
    dev_a: String,
    dev_b: String,
    addr_a: Ipv4Addr,
    addr_b: Ipv4Addr,
    routes: Vec<(End, String)>,
    _lock: File,
}

impl Link {
    /// Joins `a` (`None`: the root namespace) and `b` with a veth pair, both ends up, `a`
    /// at `10.213.x.y+1/30` and `b` at `+2`. Only the /30 itself is routed.
    pub fn connect(a: Option<&NetNs>, b: &NetNs) -> Result<Self> {
        let (index, lock) = lock_subnet()?;
        let base = 0x0AD5_0000_u32 + index * 4;
        let ns_a = a.map(|ns| ns.name.clone());
        let (dev_a, dev_b) = (format!("bt{index}a"), format!("bt{index}b"));
        ip(ns_a.as_deref(), &["link", "add", &dev_a, "type", "veth", "peer", "name", &dev_b, "netns", &b.name])?;
        let link = Self {
            ns_a,
            ns_b: b.name.clone(),
            dev_a,
            dev_b,
            addr_a: Ipv4Addr::from(base + 1),
            addr_b: Ipv4Addr::from(base + 2),
            routes: Vec::new(),
            _lock: lock,
        };
        let ns_a = link.ns_a.as_deref();
        ip(ns_a, &["addr", "add", &format!("{}/30", link.addr_a), "dev", &link.dev_a])?;
        ip(Some(&link.ns_b), &["addr", "add", &format!("{}/30", link.addr_b), "dev", &link.dev_b])?;
        link.set_up()?;
        Ok(link)
    }

    /// The `a` end's address.
    pub fn addr_a(&self) -> Ipv4Addr {
        self.addr_a
    }

    /// The `b` end's address.
    pub fn addr_b(&self) -> Ipv4Addr {
        self.addr_b
    }

    /// The link's subnet, e.g. `10.213.4.8/30`.
    pub fn subnet(&self) -> String {
        format!("{}/30", Ipv4Addr::from(u32::from(self.addr_a) - 1))
    }

    /// The `a` end's interface name (in `a`'s namespace).
    pub fn dev_a(&self) -> &str {
        &self.dev_a
    }

    /// The `b` end's interface name (in `b`'s namespace).
    pub fn dev_b(&self) -> &str {
        &self.dev_b
    }

    fn end(&self, end: End) -> (Option<&str>, &str) {
        match end {
            End::A => (self.ns_a.as_deref(), &self.dev_a),
            End::B => (Some(&self.ns_b), &self.dev_b),
        }
    }

    /// Cuts the link: both ends down. Routes through it vanish until [`Link::set_up`].
    pub fn set_down(&self) -> Result<()> {
        for end in [End::A, End::B] {
            let (ns, dev) = self.end(end);
            ip(ns, &["link", "set", dev, "down"])?;
        }
        Ok(())
    }

    /// Restores the link: both ends up, routes added through it re-added; waits until both
    /// ends report `UP`.
    pub fn set_up(&self) -> Result<()> {
        for end in [End::A, End::B] {
            let (ns, dev) = self.end(end);
            ip(ns, &["link", "set", dev, "up"])?;
        }
        wait_until(Duration::from_secs(10), "veth ends to come up", || {
            for end in [End::A, End::B] {
                let (ns, dev) = self.end(end);
                if !ip(ns, &["-j", "link", "show", dev])?.contains("\"operstate\":\"UP\"") {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        for (end, dest) in &self.routes {
            self.add_route(*end, dest)?;
        }
        Ok(())
    }

    fn add_route(&self, from: End, dest: &str) -> Result<()> {
        let (ns, dev) = self.end(from);
        let via = match from {
            End::A => self.addr_b,
            End::B => self.addr_a,
        };
        ip(ns, &["route", "replace", dest, "via", &via.to_string(), "dev", dev]).map(drop)
    }

    /// In `a`'s namespace, routes `dest` (an address or CIDR) through the `b` end. Kept
    /// across [`Link::set_down`]/[`Link::set_up`].
    pub fn route_from_a(&mut self, dest: &str) -> Result<()> {
        self.add_route(End::A, dest)?;
        self.routes.push((End::A, dest.to_string()));
        Ok(())
    }

    /// In `b`'s namespace, routes `dest` (an address or CIDR) through the `a` end. Kept
    /// across [`Link::set_down`]/[`Link::set_up`].
    pub fn route_from_b(&mut self, dest: &str) -> Result<()> {
        self.add_route(End::B, dest)?;
        self.routes.push((End::B, dest.to_string()));
        Ok(())
    }

    /// Traffic counters of one end.
    pub fn counters(&self, end: End) -> Result<Counters> {
        let (ns, dev) = self.end(end);
        let json = ip(ns, &["-s", "-j", "link", "show", dev])?;
        let value: serde_json::Value = serde_json::from_str(&json).with_context(|| format!("ip -s -j: {json}"))?;
        let stats = &value[0]["stats64"];
        let get = |dir: &str, what: &str| {
            stats[dir][what].as_u64().with_context(|| format!("no stats64.{dir}.{what} in {json}"))
        };
        Ok(Counters {
            rx_bytes: get("rx", "bytes")?,
            tx_bytes: get("tx", "bytes")?,
            rx_packets: get("rx", "packets")?,
            tx_packets: get("tx", "packets")?,
        })
    }

    /// Counters of the `a` end.
    pub fn counters_a(&self) -> Result<Counters> {
        self.counters(End::A)
    }

    /// Counters of the `b` end.
    pub fn counters_b(&self) -> Result<Counters> {
        self.counters(End::B)
    }

    /// Bytes received by the `b` end (sent from `a` to `b`).
    pub fn rx_bytes_b(&self) -> Result<u64> {
        Ok(self.counters_b()?.rx_bytes)
    }

    /// Bytes sent by the `b` end (from `b` to `a`).
    pub fn tx_bytes_b(&self) -> Result<u64> {
        Ok(self.counters_b()?.tx_bytes)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting one end deletes the pair (and the routes through it).
        ip_quiet(self.ns_a.as_deref(), &["link", "delete", &self.dev_a]);
    }
}

/// Takes an exclusive `flock` on a free subnet index (released when the file closes, even
/// if the process dies), starting from one derived from our pid and a counter.
fn lock_subnet() -> Result<(u32, File)> {
    fs::create_dir_all(LOCK_DIR).with_context(|| format!("mkdir {LOCK_DIR}"))?;
    let start = std::process::id().wrapping_mul(64).wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    for i in 0..SUBNETS {
        let index = start.wrapping_add(i) % SUBNETS;
        let path = Path::new(LOCK_DIR).join(index.to_string());
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if file.try_lock().is_ok() {
            // A veth left in the root namespace by a dead process with this index.
            let stale = format!("bt{index}a");
            if Path::new("/sys/class/net").join(&stale).exists() {
                ip_quiet(None, &["link", "delete", &stale]);
            }
            return Ok((index, file));
        }
    }
    bail!("all {SUBNETS} test subnets of 10.213.0.0/16 are in use")
}
