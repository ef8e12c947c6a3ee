//! `barman metrics` on a real Barman catalogue parses with the Prometheus client library's
//! text-format parser, and its values match the catalogue.
#![allow(clippy::float_cmp)] // the compared values are integral counts and sizes, exact in f64

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use barman_common::catalogue::{BackupStatus, Catalogue, ServerLayout, XlogDb};
use barman_integration::cmd::{as_user, execute};
use barman_integration::{cargo_bin, real_barman_catalogue, skip_unless, OsUser, RealBarman, Scratch};

const PARSE: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        key = s.name + "{" + ",".join("%s=%s" % kv for kv in sorted(s.labels.items())) + "}"
        out[key] = s.value
print(json.dumps(out))
"#;

#[test]
fn metrics_parse_and_match_the_catalogue() -> Result<()> {
    skip_unless!(RealBarman::require());
    let scratch = Scratch::new("metrics")?;
    let fixture = real_barman_catalogue(&scratch)?;
    let mut cmd = Command::new(cargo_bin("barman")?);
    as_user(&mut cmd, &OsUser::lookup("barman")?);
    cmd.arg("-c").arg(fixture.barman.config_path()).arg("metrics");
    let text = execute(&mut cmd, None, std::time::Duration::from_mins(1))?.success()?.stdout_str();

    let python = RealBarman::require()?.venv().join("bin/python");
    let mut parser = Command::new(python).arg("-c").arg(PARSE).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    parser.stdin.take().context("stdin")?.write_all(text.as_bytes())?;
    let out = parser.wait_with_output()?;
    ensure!(out.status.success(), "prometheus_client could not parse:\n{text}");
    let values: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let get =
        |k: &str| values.get(k).and_then(serde_json::Value::as_f64).with_context(|| format!("{k} missing in {values}"));

    let layout = ServerLayout::default_for(&fixture.barman.home(), "pg");
    let catalogue = Catalogue::load(&layout)?;
    let done = catalogue.entries().iter().filter(|(_, i)| i.status == BackupStatus::Done).count();
    let wal = XlogDb::open(&layout)?.entries()?;
    ensure!(get("barman_up{server=pg}")? == 1.0);
    ensure!(get("barman_backups{server=pg,status=DONE}")? == done as f64 && done >= 1);
    ensure!(get("barman_wal_files{server=pg}")? == wal.len() as f64);
    let size: u64 = wal.iter().map(|(_, e)| e.size).sum();
    ensure!(get("barman_wal_size_bytes{server=pg}")? == size as f64);
    let last = catalogue.entries().iter().rev().find(|(_, i)| i.status == BackupStatus::Done).context("done")?;
    ensure!(get("barman_last_backup_size_bytes{server=pg}")? == last.1.size.unwrap_or(0) as f64);
    let age = get("barman_last_backup_age_seconds{server=pg}")?;
    ensure!((0.0..600.0).contains(&age), "backup age {age}");
    ensure!(get("barman_receive_wal_running{server=pg}")? == 0.0);
    Ok(())
}
