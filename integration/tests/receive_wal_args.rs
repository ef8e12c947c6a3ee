//! `barman-receive-wal` against the real `pg_receivewal` of PostgreSQL 18 on the same
//! argument vectors: each either refuses both (the same first `error:` line, program name
//! aside) or lets both go on to connect (to a socket directory with no server, so both fail
//! there). Our refusals exit 3 (bad input, the project's table) where pg_receivewal exits 1.
//! The missing-slot error and the slot's reservation after `--create-slot` need a server and
//! are in `tests/receive_wal.rs`.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::execute;
use barman_integration::{cargo_bin, skip_unless, PgVersion};

/// What one run did: refused its arguments (with this first line), or got to connecting.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Refused(String),
    Connected,
}

fn verdict(program: &std::path::Path, name: &str, args: &[&str]) -> Result<(Verdict, Option<i32>)> {
    let out = execute(Command::new(program).args(args), None, Duration::from_secs(30))?;
    let err = out.stderr_str();
    let first = err.lines().next().unwrap_or_default().to_owned();
    let first = first.replace(&program.display().to_string(), name).replacen(&format!("{name}: "), "", 1);
    let connect = first.contains("connection to server") || first.contains("could not connect");
    Ok((if connect { Verdict::Connected } else { Verdict::Refused(first) }, out.code()))
}

#[test]
fn arguments_are_accepted_and_refused_as_pg_receivewal_18_does() -> Result<()> {
    skip_unless!(PgVersion::V18.require());
    let theirs = PgVersion::V18.client_bin().join("pg_receivewal");
    let ours = cargo_bin("barman-receive-wal")?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path().to_str().expect("utf-8 temp dir").to_owned();
    let d = ["-D", dir.as_str(), "-h", "/nonexistent"];
    let cases: &[&[&str]] = &[
        &["--synchronous", "--no-sync"],
        &["-n", "-n"],
        &["-n", "--no-loop", "-v", "-v"],
        &["--compress", "none:1"],
        &["--compress", "none:0"],
        &["--compress", "gzip:99"],
        &["--compress", "gzip:0"],
        &["--compress", "gzip:level=x"],
        &["--compress", "gzip:level=3"],
        &["--compress", "gzip:workers=2"],
        &["--compress", "foo"],
        &["-Z", "10"],
        &["-Z", "0"],
        &["--create-slot"],
        &["--drop-slot"],
        &["--create-slot", "--drop-slot", "-S", "s"],
        &["--create-slot", "--synchronous", "--no-sync"],
        &["-S", "a", "-S", "b", "-s", "5", "-s", "6"],
    ];
    let mut report = Vec::new();
    for case in cases {
        let args: Vec<&str> = d.iter().chain(case.iter()).copied().collect();
        let (t, t_code) = verdict(&theirs, "pg_receivewal", &args)?;
        let (o, o_code) = verdict(&ours, "barman-receive-wal", &args)?;
        report.push(format!("{case:?}\n  pg_receivewal ({t_code:?}): {t:?}\n  ours ({o_code:?}):          {o:?}"));
        ensure!(t == o, "{case:?}: pg_receivewal {t:?} ({t_code:?}), ours {o:?} ({o_code:?})");
        let refused = matches!(t, Verdict::Refused(_));
        ensure!(!refused || (t_code == Some(1) && o_code == Some(3)), "{case:?}: exit {t_code:?} / {o_code:?}");
    }
    eprintln!("{}", report.join("\n"));
    let (t, _) = verdict(&theirs, "pg_receivewal", &["-h", "/nonexistent"])?;
    let (o, _) = verdict(&ours, "barman-receive-wal", &["-h", "/nonexistent"])?;
    ensure!(t == o, "no -D: {t:?} / {o:?}");
    Ok(())
}

/// A slot that does not exist: both stop with the same error line.
#[test]
fn a_missing_slot_is_reported_as_pg_receivewal_18_does() -> Result<()> {
    skip_unless!(PgVersion::V18.require());
    let scratch = barman_integration::Scratch::new("receive-wal missing slot")?;
    let pg = barman_integration::PgCluster::start(
        &scratch,
        barman_integration::PgOptions::default().version(PgVersion::V18),
    )?;
    let theirs = PgVersion::V18.client_bin().join("pg_receivewal");
    let ours = cargo_bin("barman-receive-wal")?;
    let mut lines = Vec::new();
    for (program, name) in [(&theirs, "pg_receivewal"), (&ours, "barman-receive-wal")] {
        let dir = tempfile::tempdir()?;
        let socket = pg.socket_dir().display().to_string();
        let port = pg.port().to_string();
        let args = [
            "-D",
            dir.path().to_str().expect("utf-8"),
            "-h",
            &socket,
            "-p",
            &port,
            "-U",
            "postgres",
            "-n",
            "-S",
            "nosuch",
        ];
        let mut cmd = Command::new(program);
        barman_integration::cmd::as_user(&mut cmd, &barman_integration::OsUser::lookup("postgres")?);
        cmd.args(args);
        let out = execute(&mut cmd, None, Duration::from_secs(30))?;
        let err = out.stderr_str().replace(&program.display().to_string(), name);
        let first = err.lines().find(|l| l.contains("error")).unwrap_or_default().replacen(&format!("{name}: "), "", 1);
        lines.push((out.code(), first));
    }
    eprintln!("missing slot:\n  pg_receivewal: {:?}\n  ours:          {:?}", lines[0], lines[1]);
    ensure!(lines[0].1 == lines[1].1, "messages differ: {lines:?}");
    ensure!(lines[0].0 == Some(1) && lines[1].0 == Some(1), "exit codes: {lines:?}");
    Ok(())
}
