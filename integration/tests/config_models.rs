//! Issue 17: `barman config-switch` and `barman config-update` against real Barman 3.20.1.
//! Each command line runs twice from the same starting files, once with real Barman and
//! once with ours: same exit status, same output, and the same files afterwards
//! (`.active-model.auto`, barman.conf, `.barman.auto.conf`, the changes queue). A queue
//! left for `barman cron` is applied by our cron as by Barman's, and the switched model
//! is what the next command sees (`show-servers`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd::execute;
use barman_integration::{cargo_bin, skip_unless, BarmanHome, Outcome, RealBarman, Scratch};

/// The files a config command may change, with their content (`None`: absent).
struct Files {
    paths: Vec<PathBuf>,
}

impl Files {
    fn snapshot(&self) -> Result<Vec<Option<Vec<u8>>>> {
        self.paths
            .iter()
            .map(|p| match fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            })
            .collect()
    }

    fn restore(&self, state: &[Option<Vec<u8>>], owner: &barman_integration::OsUser) -> Result<()> {
        for (path, content) in self.paths.iter().zip(state) {
            match content {
                Some(bytes) => {
                    fs::write(path, bytes)?;
                    nix::unistd::chown(path, Some(owner.uid.into()), Some(owner.gid.into()))?;
                }
                None => {
                    let _ = fs::remove_file(path);
                }
            }
        }
        Ok(())
    }
}

fn ours(home: &BarmanHome, args: &[&str]) -> Result<Outcome> {
    execute(&mut home.program_command(&cargo_bin("barman")?, args), None, Duration::from_mins(1))
}

/// Runs `args` with real Barman, then from the same starting files with ours; the exit
/// status, stdout, stderr and resulting files must be equal. Returns our outcome.
fn both(home: &BarmanHome, files: &Files, args: &[&str]) -> Result<Outcome> {
    let start = files.snapshot()?;
    let theirs = home.outcome(args)?;
    let after_theirs = files.snapshot()?;
    files.restore(&start, home.user())?;
    let mine = ours(home, args)?;
    let after_mine = files.snapshot()?;
    ensure!(
        theirs.code() == mine.code(),
        "{args:?}: exit {:?}, Barman's {:?}\n{}",
        mine.code(),
        theirs.code(),
        mine.stderr_str()
    );
    ensure!(
        theirs.stdout_str() == mine.stdout_str(),
        "{args:?} stdout:\n--- barman\n{}--- ours\n{}",
        theirs.stdout_str(),
        mine.stdout_str()
    );
    ensure!(
        theirs.stderr_str() == mine.stderr_str(),
        "{args:?} stderr:\n--- barman\n{}--- ours\n{}",
        theirs.stderr_str(),
        mine.stderr_str()
    );
    for ((path, t), m) in files.paths.iter().zip(&after_theirs).zip(&after_mine) {
        let show = |c: &Option<Vec<u8>>| c.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        ensure!(t == m, "{args:?}: {} differs:\n--- barman\n{:?}\n--- ours\n{:?}", path.display(), show(t), show(m));
    }
    Ok(mine)
}

fn setup(scratch: &Scratch) -> Result<(BarmanHome, Files)> {
    let real = RealBarman::require()?;
    let mut home = BarmanHome::real(scratch, &real, "barman")?;
    let common = ["archiver = on", "streaming_archiver = off", "backup_method = postgres"];
    let mut pg = vec!["description = \"primary\"", "conninfo = host=/nonexistent dbname=postgres", "cluster = c1"];
    pg.extend(common);
    home.add_raw_server("pg", &pg)?;
    home.add_raw_server(
        "fast",
        &["model = true", "cluster = c1", "conninfo = host=/nonexistent/standby dbname=postgres"],
    )?;
    home.add_raw_server("elsewhere", &["model = true", "cluster = c2", "compression = gzip"])?;
    let config = home.config_path();
    nix::unistd::chown(&config, Some(home.user().uid.into()), Some(home.user().gid.into()))?;
    fs::create_dir_all(home.server_dir("pg"))?;
    nix::unistd::chown(&home.server_dir("pg"), Some(home.user().uid.into()), Some(home.user().gid.into()))?;
    let files = Files {
        paths: vec![
            home.server_dir("pg").join(".active-model.auto"),
            config,
            home.home().join(".barman.auto.conf"),
            home.home().join("cfg_changes.queue"),
        ],
    };
    Ok((home, files))
}

#[test]
fn config_switch_matches_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("config switch")?;
    let (home, files) = setup(&scratch)?;
    let active = &files.paths[0];
    for args in [
        &["config-switch", "pg"][..],
        &["config-switch", "pg", "nosuch"],
        &["config-switch", "pg", "elsewhere"],
        &["config-switch", "nosrv", "fast"],
    ] {
        both(&home, &files, args)?.fails_with_code(1)?;
    }
    let o = both(&home, &files, &["config-switch", "pg", "fast"])?;
    o.success()?.stdout_contains("Changing value of option 'conninfo' for server 'pg'")?;
    ensure!(fs::read_to_string(active)? == "fast");
    let shown = ours(&home, &["show-servers", "pg"])?;
    shown.stdout_contains("host=/nonexistent/standby")?;
    both(&home, &files, &["config-switch", "pg", "fast"])?.success()?.stdout_contains("already active")?;
    both(&home, &files, &["config-switch", "--reset", "pg"])?.success()?;
    ensure!(!active.exists());
    ensure!(!ours(&home, &["show-servers", "pg"])?.stdout_str().contains("host=/nonexistent/standby"));
    Ok(())
}

#[test]
fn config_update_and_its_queue_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("config update")?;
    let (home, files) = setup(&scratch)?;
    let invalid = [
        r#"[{"scope": "cluster", "server_name": "pg"}]"#,
        r#"[{"scope": "server", "description": "x"}]"#,
        r#"[{"scope": "server", "server_name": "fast", "description": "x"}]"#,
        r#"[{"scope": "model", "model_name": "pg", "description": "x"}]"#,
        r#"[{"scope": "model", "model_name": "brandnew", "compression": "gzip"}]"#,
        r#"[{"scope": "server", "server_name": "pg", "no_such_option": "x"}]"#,
        r#"[{"scope": "server", "server_name": "pg", "description": "ok"}, {"scope": "nope"}]"#,
    ];
    for json in invalid {
        both(&home, &files, &["config-update", json])?.fails_with_code(1)?;
    }
    // An option set in barman.conf, one set nowhere (to .barman.auto.conf), a new model.
    let json = r#"[{"scope": "server", "server_name": "pg", "description": "changed", "retention_policy": "REDUNDANCY 2"},
                  {"scope": "model", "model_name": "night", "cluster": "c1", "compression": "gzip"}]"#;
    let o = both(&home, &files, &["config-update", json])?;
    o.success()?.stdout_contains("from 'primary' to 'changed' through config-update.")?;
    ensure!(fs::read_to_string(&files.paths[2])?.contains("[night]"), "no new model in .barman.auto.conf");
    ensure!(fs::read_to_string(&files.paths[3])?.trim() == "[]", "queue not drained");
    // A queue left for cron (as a config-update killed before processing leaves it).
    let queue = format!(
        r#"[{{"section": "pg", "changes_set": [{{"key": "description", "value": "from cron", "config_file": "{}"}}]}}]"#,
        home.config_path().display()
    );
    fs::write(&files.paths[3], queue)?;
    nix::unistd::chown(&files.paths[3], Some(home.user().uid.into()), Some(home.user().gid.into()))?;
    let start = files.snapshot()?;
    home.outcome(&["cron"])?;
    let after_theirs = files.snapshot()?;
    files.restore(&start, home.user())?;
    ours(&home, &["cron"])?;
    ensure!(files.snapshot()? == after_theirs, "cron left other files than Barman's");
    ensure!(fs::read_to_string(home.config_path())?.contains("description = from cron"));
    ensure!(Path::new(&files.paths[3]).exists());
    Ok(())
}
