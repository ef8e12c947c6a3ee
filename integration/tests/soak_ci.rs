//! The CI subset of the fault-injection soak (`integration/soak.sh` runs the full one, 19
//! paths): one fault on each of eight paths (archive client, put-wal, receive-wal right after
//! a switch, backup with the postgres method, recover, PostgreSQL crash, a link cut during
//! archive over ssh, the relay killed mid-copy), with the same code and the same invariants,
//! and sampled restores after the backup fault and (from the passive alone) after the relay
//! fault. The cloud paths stay in the full soak (SeaweedFS start-up and uploads would double
//! this test's time).

use anyhow::{ensure, Result};
use barman_integration::netns::NetNs;
use barman_integration::soak::{run, table, Env, Path, Plan};
use barman_integration::{skip_unless, PgCluster, Sshd};

#[test]
fn one_fault_on_eight_paths_loses_no_wal_and_needs_no_repair() -> Result<()> {
    skip_unless!(PgCluster::require());
    skip_unless!(Sshd::require());
    skip_unless!(NetNs::require());
    let mut env = Env::start("soak ci")?;
    let plan = Plan { per_path: 1, restore_every: 1, verbose: true };
    let paths = [
        Path::WalArchive,
        Path::PutWal,
        Path::ReceiveWalSwitch,
        Path::BackupPostgres,
        Path::Recover,
        Path::PgRestart,
        Path::CutArchive,
        Path::KillRelay,
    ];
    let rows = run(&mut env, &plan, &paths)?;
    let text = table(&rows);
    eprint!("{text}");
    let notes: Vec<&String> = rows.iter().flat_map(|r| &r.notes).collect();
    ensure!(rows.iter().all(barman_integration::soak::Row::clean), "soak subset:\n{text}{notes:#?}");
    ensure!(rows.iter().all(|r| r.faults >= 1), "a path injected no fault:\n{text}");
    Ok(())
}
