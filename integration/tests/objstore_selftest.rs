//! The object stores the cloud tier is tested on really run, really store, and real Barman
//! 3.20.1's cloud tools reach them with the URL and environment the harness hands out.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use barman_integration::cmd;
use barman_integration::objstore::{ObjectStore, Provider, SeaweedOptions};
use barman_integration::{skip_unless, Scratch};

const VENV_BIN: &str = "/opt/barman-venv/bin";

/// Round trip through the provider's own client, then real `barman-cloud-wal-archive` and
/// `barman-cloud-backup-list` against the same bucket.
fn round_trip(store: &ObjectStore, scratch: &Scratch) -> Result<()> {
    let bucket = "barman-selftest";
    store.create_bucket(bucket)?;
    store.put(bucket, "hello/world", b"payload")?;
    ensure!(store.get(bucket, "hello/world")? == b"payload", "object read back differs");
    ensure!(store.list(bucket, "hello/")? == vec![("hello/world".to_string(), 7)], "listing differs");

    let wal = scratch.write("000000010000000000000001", vec![7u8; 16 * 1024 * 1024])?;
    let url = store.source_url(bucket, "catalogue");
    let mut archive = Command::new(format!("{VENV_BIN}/barman-cloud-wal-archive"));
    archive.args(["--cloud-provider", store.provider().cli_name()]);
    if let Some(endpoint) = store.endpoint_url() {
        archive.args(["--endpoint-url", &endpoint]);
    }
    archive.args([&url, "pg"]).arg(&wal);
    store.apply_env(&mut archive);
    let out = cmd::execute(&mut archive, None, Duration::from_mins(2))?;
    ensure!(out.status.success(), "real barman-cloud-wal-archive failed: {}\n{}", out.stderr_str(), store.logs());
    let keys = store.list(bucket, "catalogue/pg/wals/")?;
    ensure!(
        keys == vec![("catalogue/pg/wals/0000000100000000/000000010000000000000001".to_string(), 16 * 1024 * 1024)],
        "unexpected WAL layout: {keys:?}"
    );

    let mut list = Command::new(format!("{VENV_BIN}/barman-cloud-backup-list"));
    list.args(["--cloud-provider", store.provider().cli_name(), "--format", "json"]);
    if let Some(endpoint) = store.endpoint_url() {
        list.args(["--endpoint-url", &endpoint]);
    }
    list.args([&url, "pg"]);
    store.apply_env(&mut list);
    let out = cmd::execute(&mut list, None, Duration::from_mins(1))?;
    ensure!(out.status.success(), "real barman-cloud-backup-list failed: {}", out.stderr_str());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(json == serde_json::json!({"backups_list": []}), "unexpected listing {json}");
    Ok(())
}

#[test]
fn seaweedfs_s3() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    let scratch = Scratch::new("objstore-s3")?;
    let store = ObjectStore::start(&scratch, Provider::AwsS3)?;
    round_trip(&store, &scratch)
}

#[test]
fn azurite_blob() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AzureBlobStorage));
    let scratch = Scratch::new("objstore-azure")?;
    let store = ObjectStore::start(&scratch, Provider::AzureBlobStorage)?;
    round_trip(&store, &scratch)
}

#[test]
fn fake_gcs() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::GoogleCloudStorage));
    let scratch = Scratch::new("objstore-gcs")?;
    let store = ObjectStore::start(&scratch, Provider::GoogleCloudStorage)?;
    round_trip(&store, &scratch)
}

/// Two volume servers with replication 001: with one killed, a write fails or hangs (no second
/// copy can be made); once it is back, writes succeed and earlier objects are intact.
#[test]
fn seaweedfs_cluster_survives_a_volume_server_restart() -> Result<()> {
    skip_unless!(ObjectStore::require(Provider::AwsS3));
    let scratch = Scratch::new("objstore-cluster")?;
    let mut store = ObjectStore::seaweed(&scratch, &SeaweedOptions::cluster())?;
    let bucket = "barman-cluster";
    store.create_bucket(bucket)?;
    store.put(bucket, "before", &vec![1u8; 1 << 20])?;
    store.kill_volume_server(1)?;
    let during = store.put_within(bucket, "during", &vec![2u8; 1 << 20], Duration::from_secs(8));
    store.restart_volume_server(1)?;
    barman_integration::wait_until(Duration::from_mins(1), "writes accepted again", || {
        Ok(store.put(bucket, "after", &vec![3u8; 1 << 20]).is_ok())
    })?;
    ensure!(store.get(bucket, "before")? == vec![1u8; 1 << 20], "object written before the kill changed");
    ensure!(store.get(bucket, "after")? == vec![3u8; 1 << 20], "object written after the restart differs");
    if during.is_ok() {
        ensure!(store.get(bucket, "during")? == vec![2u8; 1 << 20], "a write acknowledged during the outage was lost");
    }
    Ok(())
}
