//! Passive nodes (`primary_ssh_command` set, per server or inherited from `[barman]`): our
//! `barman` against real Barman 3.20.1 on the same configuration and catalogue, byte for byte
//! (stdout, stderr and exit code): `list-servers`, `status`, `check` (console, JSON, Nagios;
//! the `ssh` and `ssh output clean` checks), `backup` / `backup all` (skipped), `receive-wal`
//! (refused), `archive-wal` (nothing to do) and `list-backups` with a `SYNCING` backup.
//! No PostgreSQL is needed: a passive server has no connection. The primary is a fake `ssh`
//! that logs its argv and runs the remote command with `sh -c`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::{as_user, execute};
use barman_integration::scratch::{chown_recursive, write_file};
use barman_integration::{cargo_bin, skip_unless, OsUser, RealBarman, Scratch};

/// The fake ssh: `fakessh <host> [options...] <command>`. Host `noisy` prints a banner first,
/// host `down` fails as ssh does when it cannot connect, host `hang` outlives the check timeout.
const FAKE_SSH: &str = r#"#!/bin/sh
echo "$*" >> "$(dirname "$0")/../var/ssh.log"
case "$1" in
    noisy) echo "Welcome to the primary" ;;
    down) echo "ssh: connect to host down port 22: Connection refused" >&2; exit 255 ;;
    hang) sleep 10 ;;
esac
for last; do :; done
exec sh -c "$last"
"#;

/// One run: exit code, stdout, stderr.
type Run = (Option<i32>, String, String);

struct Setup {
    _scratch: Scratch,
    real: RealBarman,
    user: OsUser,
    home: PathBuf,
    var: PathBuf,
    ssh: PathBuf,
}

impl Setup {
    fn new() -> Result<Setup> {
        let real = RealBarman::require()?;
        let scratch = Scratch::new("passive cli")?;
        let user = OsUser::lookup("barman")?;
        let home = scratch.mkdir_owned("home", &user.name)?;
        let var = scratch.mkdir_owned("var", &user.name)?;
        let bin = scratch.mkdir("bin")?;
        let ssh = bin.join("fakessh");
        write_file(&ssh, FAKE_SSH, 0o755)?;
        Ok(Setup { _scratch: scratch, real, user, home, var, ssh })
    }

    /// Writes config `name` with `[barman]` extras and server sections.
    fn config(&self, name: &str, global: &str, servers: &str) -> Result<PathBuf> {
        let path = self.var.join(name);
        let text = format!(
            "[barman]\nbarman_home = {home}\nbarman_user = {user}\nlog_file = {log}\nlog_level = INFO\n{global}\n{servers}",
            home = self.home.display(),
            user = self.user.name,
            log = self.var.join("barman.log").display(),
        );
        write_file(&path, text, 0o644)?;
        Ok(path)
    }

    fn run(&self, program: &Path, config: &Path, args: &[&str]) -> Result<Run> {
        let mut cmd = Command::new(program);
        as_user(&mut cmd, &self.user);
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin").arg("-c").arg(config).args(args);
        let out = execute(&mut cmd, None, Duration::from_mins(1))?;
        Ok((out.code(), out.stdout_str(), out.stderr_str()))
    }

    /// Runs `args` with real Barman, then ours; both must print the same and exit alike.
    /// Returns real Barman's run.
    fn same(&self, config: &Path, args: &[&str]) -> Result<Run> {
        let real = self.run(&self.real.bin("barman"), config, args)?;
        let ours = self.run(&cargo_bin("barman")?, config, args)?;
        ensure!(
            real == ours,
            "{args:?} differs:\n--- barman (exit {:?})\n{}\n{}\n--- ours (exit {:?})\n{}\n{}",
            real.0,
            real.1,
            real.2,
            ours.0,
            ours.1,
            ours.2
        );
        Ok(real)
    }

    fn ssh_log(&self) -> String {
        fs::read_to_string(self.var.join("ssh.log")).unwrap_or_default()
    }

    fn clear_ssh_log(&self) {
        let _ = fs::remove_file(self.var.join("ssh.log"));
    }
}

const SYNCING_INFO: &str = "backup_label=None
begin_offset=40
begin_time=2026-11-21 20:37:50.812209+00:00
begin_wal=000000010000000000000006
begin_xlog=0/6000028
compression=None
config_file=/tmp/toy/pgdata/postgresql.conf
copy_stats=None
end_offset=0
end_time=2026-11-21 20:37:53.684014+00:00
end_wal=000000010000000000000006
end_xlog=0/7000000
error=None
hba_file=/tmp/toy/pgdata/pg_hba.conf
ident_file=/tmp/toy/pgdata/pg_ident.conf
included_files=None
mode=postgres
pgdata=/tmp/toy/pgdata
server_name=pg
size=23203462
status=SYNCING
systemid=7710723584768459498
tablespaces=None
timeline=1
version=150018
xlog_segment_size=16777216
";

#[test]
fn passive_server_matches_real_barman() -> Result<()> {
    let s = skip_unless!(Setup::new());
    let config = s.config(
        "passive.conf",
        "",
        &format!("[pg]\ndescription = \"Toy passive\"\nprimary_ssh_command = {} primary\n", s.ssh.display()),
    )?;

    for args in [
        &["list-servers"][..],
        &["-f", "json", "list-servers"],
        &["list-servers", "--minimal"],
        &["status", "pg"],
        &["-f", "json", "status", "pg"],
    ] {
        s.same(&config, args)?;
    }
    let (_, listing, _) = s.same(&config, &["list-servers"])?;
    ensure!(listing == "pg - Toy passive (Passive)\n", "{listing}");
    let (_, status, _) = s.same(&config, &["status", "pg"])?;
    ensure!(status.contains("\tPassive node: True\n"), "{status}");
    ensure!(status.contains(&format!("\tSSH command to primary server: {} primary\n", s.ssh.display())), "{status}");
    ensure!(!status.contains("PostgreSQL"), "{status}");

    // check: no PostgreSQL checks, `ssh` through the primary command, WAL archive failing
    // while xlog.db is empty.
    s.clear_ssh_log();
    let (code, check, _) = s.same(&config, &["check", "pg"])?;
    ensure!(code == Some(1), "{check}");
    ensure!(check.contains("\tssh: OK (Barman primary node)\n"), "{check}");
    ensure!(check.contains("\tWAL archive: FAILED (please make sure WAL shipping is setup)\n"), "{check}");
    ensure!(!check.contains("PostgreSQL"), "{check}");
    let expected = "primary -o BatchMode=yes -o StrictHostKeyChecking=no true\n";
    ensure!(s.ssh_log() == expected.repeat(2), "ssh argv (barman then ours):\n{}", s.ssh_log());
    s.same(&config, &["-f", "json", "check", "pg"])?;
    let (code, nagios, _) = s.same(&config, &["check", "--nagios", "pg"])?;
    ensure!(code == Some(2) && nagios.starts_with("BARMAN CRITICAL - server pg has issues"), "{nagios}");

    // Restrictions.
    for args in [
        &["backup", "pg"][..],
        &["backup", "all"],
        &["-f", "json", "backup", "pg"],
        &["-q", "backup", "pg"],
        &["receive-wal", "pg"],
        &["-f", "json", "receive-wal", "pg"],
        &["receive-wal", "--reset", "pg"],
        &["receive-wal", "--create-slot", "pg"],
        &["receive-wal", "--drop-slot", "pg"],
        &["archive-wal", "pg"],
        &["-f", "json", "archive-wal", "pg"],
    ] {
        s.same(&config, args)?;
    }
    let backup = s.same(&config, &["backup", "pg"])?;
    ensure!(backup == (Some(0), "Skipping passive server 'pg'\n".into(), String::new()), "{backup:?}");
    let (code, _, err) = s.same(&config, &["receive-wal", "pg"])?;
    ensure!(code == Some(1) && err.starts_with("ERROR: ") && err.lines().count() == 1, "{err}");

    // A sync in progress, then WALs in xlog.db.
    let base = s.home.join("pg/base/20261121T203750");
    fs::create_dir_all(&base)?;
    fs::write(base.join("backup.info"), SYNCING_INFO)?;
    chown_recursive(&s.home, &s.user)?;
    for args in [
        &["list-backups", "pg"][..],
        &["-f", "json", "list-backups", "pg"],
        &["list-backups", "--minimal", "pg"],
        &["status", "pg"],
        &["check", "pg"],
    ] {
        s.same(&config, args)?;
    }
    let (_, list, _) = s.same(&config, &["list-backups", "pg"])?;
    ensure!(list == "pg 20261121T203750 - F - SYNCING\n", "{list}");
    let (_, json, _) = s.same(&config, &["-f", "json", "list-backups", "pg"])?;
    ensure!(
        json == r#"{"pg": [{"backup_id": "20261121T203750", "backup_type": "full", "status": "SYNCING"}]}"#,
        "{json}"
    );
    let xlogdb = s.home.join("pg/wals/pg-xlog.db");
    fs::write(&xlogdb, "000000010000000000000006\t16777216\t1763757470.0\tNone\n")?;
    chown_recursive(&s.home, &s.user)?;
    let (code, check, _) = s.same(&config, &["check", "pg"])?;
    ensure!(code == Some(0) && !check.contains("WAL archive"), "{check}");
    s.same(&config, &["check", "--nagios", "pg"])?;
    Ok(())
}

#[test]
fn inherited_passive_servers_match_real_barman() -> Result<()> {
    let s = skip_unless!(Setup::new());
    let ssh = s.ssh.display();
    let home = s.home.display();
    // Sections in name order, as Barman walks `all` in file order and we in name order.
    let servers = format!(
        "[a_dis]\ndescription = \"Disabled one\"\nstreaming_wals_directory = {home}/a_dis/incoming\n\n\
         [b_ina]\ndescription = \"Inactive one\"\nactive = false\n\n\
         [c_noisy]\ndescription = \"Noisy primary\"\nprimary_ssh_command = {ssh} noisy\n\n\
         [d_down]\ndescription = \"Primary down\"\nprimary_ssh_command = {ssh} down\n\n\
         [e_nodesc]\nstreaming_archiver = on\nslot_name = barman\n\n\
         [pg]\ndescription = \"Toy passive\"\nstreaming_archiver = on\narchiver = off\n"
    );
    let config = s.config("inherited.conf", &format!("primary_ssh_command = {ssh} primary\n"), &servers)?;

    for args in [
        &["list-servers"][..],
        &["-f", "json", "list-servers"],
        &["status", "all"],
        &["-f", "json", "status", "all"],
        &["check", "all"],
        &["-f", "json", "check", "all"],
        &["check", "--nagios", "all"],
        &["check", "c_noisy"],
        &["check", "--nagios", "d_down"],
        &["backup", "all"],
        &["backup", "b_ina"],
        &["backup", "a_dis"],
        &["receive-wal", "pg"],
        &["receive-wal", "--reset", "pg"],
        &["receive-wal", "--create-slot", "pg"],
        &["receive-wal", "e_nodesc"],
        &["receive-wal", "b_ina"],
        &["receive-wal", "a_dis"],
        &["receive-wal", "--create-slot", "b_ina"],
        &["list-backups", "all"],
        &["archive-wal", "e_nodesc"],
        &["archive-wal", "pg"],
    ] {
        s.same(&config, args)?;
    }
    let (_, listing, _) = s.same(&config, &["list-servers"])?;
    ensure!(
        listing
            == "a_dis - Disabled one (WARNING: disabled) (Passive)\nb_ina - Inactive one (inactive) (Passive)\n\
                c_noisy - Noisy primary (Passive)\nd_down - Primary down (Passive)\ne_nodesc -  (Passive)\n\
                pg - Toy passive (Passive)\n",
        "{listing}"
    );
    let (_, noisy, _) = s.same(&config, &["check", "c_noisy"])?;
    ensure!(
        noisy.contains(
            "\tssh: OK (Barman primary node)\n\tssh output clean: FAILED (the configured ssh_command must not add \
             anything to the remote command output)\n"
        ),
        "{noisy}"
    );
    let (_, down, _) = s.same(&config, &["check", "d_down"])?;
    ensure!(
        down.contains(&format!(
            "\tssh: FAILED (Connection failed using '{ssh} down -o BatchMode=yes -o StrictHostKeyChecking=no' \
             return code 255)\n"
        )),
        "{down}"
    );
    let (_, backup, _) = s.same(&config, &["backup", "all"])?;
    ensure!(backup.contains("Skipping inactive server 'b_ina'\n") && backup.contains("Skipping passive server 'pg'\n"));
    Ok(())
}

#[test]
fn hanging_primary_times_the_check_out_like_real_barman() -> Result<()> {
    let s = skip_unless!(Setup::new());
    let servers = format!("[hang]\nprimary_ssh_command = {} hang\ncheck_timeout = 2\n", s.ssh.display());
    let config = s.config("hang.conf", "", &servers)?;
    let (code, check, _) = s.same(&config, &["check", "hang"])?;
    ensure!(code == Some(1) && check.contains("\tcheck timeout: FAILED (barman check command timed out)\n"), "{check}");
    ensure!(!check.contains("\tssh:"), "{check}");
    s.same(&config, &["check", "--nagios", "hang"])?;
    Ok(())
}
