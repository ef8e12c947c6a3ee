//! Our `barman` listing commands against real Barman 3.20.1 on the same real catalogue:
//! the outputs must be identical (nothing here depends on the time of the run).

use std::fs;
use std::process::Command;

use anyhow::{ensure, Result};
use barman_common::catalogue::{BackupInfo, BackupStatus, Catalogue, ServerLayout};
use barman_integration::cmd::{as_user, execute};
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, OsUser, RealBarman, Scratch};

fn ours(config: &std::path::Path, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let mut cmd = Command::new(cargo_bin("barman")?);
    as_user(&mut cmd, &OsUser::lookup("barman")?);
    cmd.arg("-c").arg(config).args(args);
    let out = execute(&mut cmd, None, std::time::Duration::from_mins(1))?;
    Ok((out.code(), out.stdout_str(), out.stderr_str()))
}

#[test]
fn listing_commands_match_real_barman() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("catalogue cli")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let barman = &fixture.barman;
    fixture.pg.psql("insert into harness_data select g, 'more' from generate_series(100001, 102000) g")?;
    barman.run(&["backup", "--name", "second one", "--wait", "pg"])?;
    let first = barman.done_backups("pg")?.into_iter().min().expect("two backups");
    barman.run(&["keep", "--target", "full", "pg", &first])?;

    // A failed backup, as Barman records one (status FAILED with an error, no end data).
    let layout = ServerLayout::default_for(&barman.home(), "pg");
    let catalogue = Catalogue::load(&layout)?;
    let (_, done) = catalogue.latest().expect("a backup");
    let failed = BackupInfo {
        status: BackupStatus::Failed,
        error: Some("failure copying files (connection lost)".into()),
        end_time: None,
        end_wal: None,
        end_xlog: None,
        ..done.clone()
    };
    let failed_id = barman_common::catalogue::BackupId::new("29991231T000000")?;
    fs::create_dir_all(layout.backup_dir(&failed_id))?;
    failed.save(&layout, &failed_id)?;
    barman_integration::scratch::chown_recursive(&barman.home(), &OsUser::lookup("barman")?)?;

    // Same catalogue, with a retention policy so the retention column shows.
    let config = scratch.path().join("retention.conf");
    fs::write(&config, fs::read_to_string(barman.config_path())? + "retention_policy = REDUNDANCY 1\n")?;
    let cases: &[&[&str]] = &[
        &["list-servers"],
        &["-f", "json", "list-servers"],
        &["list-backups", "pg"],
        &["list-backups", "all"],
        &["list-backups", "--minimal", "pg"],
        &["-f", "json", "list-backups", "pg"],
        &["show-backup", "pg", "latest"],
        &["show-backup", "pg", "oldest"],
        &["show-backup", "pg", "second one"],
        &["show-backup", "pg", "last-failed"],
    ];
    let mut compared = 0;
    for cfg in [barman.config_path(), config.clone()] {
        for args in cases {
            let mut real = barman.command(&[]);
            real.args(["-c"]).arg(&cfg).args(*args);
            let real_out = execute(&mut real, None, std::time::Duration::from_mins(1))?;
            let (code, stdout, _) = ours(&cfg, args)?;
            ensure!(code == real_out.code(), "{args:?}: exit {code:?} vs Barman's {:?}", real_out.code());
            ensure!(
                stdout == real_out.stdout_str(),
                "{args:?} differs:\n--- barman\n{}\n--- ours\n{stdout}",
                real_out.stdout_str()
            );
            compared += 1;
        }
    }
    let (_, listing, _) = ours(&config, &["list-backups", "pg"])?;
    ensure!(listing.contains("KEEP:FULL") && listing.contains("FAILED"), "scenario not exercised:\n{listing}");
    ensure!(compared == 2 * cases.len());
    Ok(())
}
