//! Real object stores on 127.0.0.1 for the cloud tier: SeaweedFS (S3), Azurite (Azure Blob
//! Storage) and fake-gcs-server (Google Cloud Storage), as `integration/setup.sh` installs them
//! in [`OBJSTORE_DIR`].
//!
//! [`ObjectStore::start`] starts one store in its own scratch directory and waits until it
//! answers; every process is killed on drop. A SeaweedFS store is a real multi-process store: a
//! master, [`SeaweedOptions::volume_servers`] volume servers and a filer serving S3, so a test
//! can kill a volume server during an upload ([`ObjectStore::kill_volume_server`]) and bring it
//! back ([`ObjectStore::restart_volume_server`]). With two volume servers the default
//! replication is `001` (every write on both), as the cloud issue asks.
//!
//! The tools under test reach a store the way an operator's would: a source URL
//! ([`ObjectStore::source_url`]), `--cloud-provider` ([`ObjectStore::provider`]),
//! `--endpoint-url` where the provider has one ([`ObjectStore::endpoint_url`]) and the
//! credentials in the environment ([`ObjectStore::env`]: `AWS_*`, `AZURE_STORAGE_CONNECTION_STRING`,
//! `STORAGE_EMULATOR_HOST` + `GOOGLE_APPLICATION_CREDENTIALS`). The tests' own view of a bucket
//! ([`ObjectStore::create_bucket`], [`ObjectStore::list`], [`ObjectStore::get`]) goes through
//! the providers' official Python clients in real Barman's venv (boto3, azure-storage-blob,
//! google-cloud-storage), not through the code under test.

use std::fmt;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::barman::DEFAULT_VENV;
use crate::cmd::{self, free_port};
use crate::scratch::{write_file, Scratch};
use crate::wait_until;

/// Where `integration/setup.sh` installs the stores.
pub const OBJSTORE_DIR: &str = "/opt/objstores";

/// The S3 identity SeaweedFS is configured with (signatures are checked).
pub const S3_ACCESS_KEY: &str = "barmanaccess";
/// Its secret.
pub const S3_SECRET_KEY: &str = "barmansecret";
/// The region the S3 clients are told (SeaweedFS accepts any).
pub const S3_REGION: &str = "us-east-1";
/// Azurite's well-known development account.
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public, documented by Microsoft).
pub const AZURE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which provider a store speaks, named as `--cloud-provider` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// SeaweedFS's S3 gateway.
    AwsS3,
    /// Azurite's blob service.
    AzureBlobStorage,
    /// fake-gcs-server.
    GoogleCloudStorage,
}

impl Provider {
    /// Every provider, for tests that run on each.
    pub const ALL: [Provider; 3] = [Provider::AwsS3, Provider::AzureBlobStorage, Provider::GoogleCloudStorage];

    /// The `--cloud-provider` value.
    pub fn cli_name(self) -> &'static str {
        match self {
            Provider::AwsS3 => "aws-s3",
            Provider::AzureBlobStorage => "azure-blob-storage",
            Provider::GoogleCloudStorage => "google-cloud-storage",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

/// How to lay out a SeaweedFS store.
#[derive(Clone, Debug)]
pub struct SeaweedOptions {
    /// Volume servers (1: replication `000`; 2 or more: `001`, each write on two of them).
    pub volume_servers: usize,
    /// The master's volume size limit, MiB (small volumes spread a backup over servers).
    pub volume_size_limit_mb: u32,
}

impl Default for SeaweedOptions {
    fn default() -> Self {
        Self { volume_servers: 1, volume_size_limit_mb: 256 }
    }
}

impl SeaweedOptions {
    /// A master, two volume servers with replication `001`, a filer with S3.
    pub fn cluster() -> Self {
        Self { volume_servers: 2, volume_size_limit_mb: 64 }
    }
}

/// One volume server: how to start it again after a kill.
#[derive(Debug)]
struct Volume {
    args: Vec<String>,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

/// A running object store; every process is killed on drop.
#[derive(Debug)]
pub struct ObjectStore {
    _scratch: Scratch,
    provider: Provider,
    dir: PathBuf,
    /// The port clients talk to (S3 gateway, blob service, GCS JSON API).
    port: u16,
    /// Processes other than volume servers (master, filer; or the single emulator).
    children: Vec<Child>,
    volumes: Vec<Volume>,
}

impl ObjectStore {
    /// Fails unless the store's programs are installed (run `integration/setup.sh`) and the
    /// Python client the harness uses is in Barman's venv.
    pub fn require(provider: Provider) -> Result<()> {
        crate::require_root()?;
        let (program, module) = match provider {
            Provider::AwsS3 => (weed(), "boto3"),
            Provider::AzureBlobStorage => (azurite(), "azure.storage.blob"),
            Provider::GoogleCloudStorage => (fake_gcs(), "google.cloud.storage"),
        };
        if !program.is_file() {
            bail!("{} missing (run integration/setup.sh)", program.display());
        }
        let ok = Command::new(python())
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("{module} missing from {DEFAULT_VENV} (run integration/setup.sh: barman[cloud,azure,google])");
        }
        Ok(())
    }

    /// Starts a store of `provider` (SeaweedFS with default options for S3).
    pub fn start(scratch: &Scratch, provider: Provider) -> Result<Self> {
        match provider {
            Provider::AwsS3 => Self::seaweed(scratch, &SeaweedOptions::default()),
            Provider::AzureBlobStorage => Self::azurite(scratch),
            Provider::GoogleCloudStorage => Self::fake_gcs(scratch),
        }
    }

    /// SeaweedFS: master, volume servers, filer with the S3 gateway (signatures checked
    /// against [`S3_ACCESS_KEY`] / [`S3_SECRET_KEY`]).
    pub fn seaweed(scratch: &Scratch, opts: &SeaweedOptions) -> Result<Self> {
        Self::require(Provider::AwsS3)?;
        let dir = scratch.unique_dir("seaweed", "root")?;
        let s3_config = dir.join("s3.json");
        write_file(
            &s3_config,
            format!(
                r#"{{"identities":[{{"name":"barman","credentials":[{{"accessKey":"{S3_ACCESS_KEY}","secretKey":"{S3_SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
            0o600,
        )?;
        let replication = if opts.volume_servers > 1 { "001" } else { "000" };
        let master_port = free_port()?;
        let master = format!("127.0.0.1:{master_port}.{}", free_port()?);
        let mdir = dir.join("master");
        fs::create_dir_all(&mdir)?;
        let mut store = Self {
            _scratch: scratch.clone(),
            provider: Provider::AwsS3,
            dir: dir.clone(),
            port: free_port()?,
            children: Vec::new(),
            volumes: Vec::new(),
        };
        let master_args = vec![
            "master".to_string(),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-port={master_port}"),
            format!("-port.grpc={}", grpc_port(&master)?),
            format!("-mdir={}", mdir.display()),
            format!("-defaultReplication={replication}"),
            format!("-volumeSizeLimitMB={}", opts.volume_size_limit_mb),
        ];
        store.children.push(spawn(&weed(), &master_args, &dir.join("master.log"))?);
        wait_port(master_port, "SeaweedFS master")?;
        for n in 0..opts.volume_servers {
            let vdir = dir.join(format!("volume{n}"));
            fs::create_dir_all(&vdir)?;
            let port = free_port()?;
            let args = vec![
                "volume".to_string(),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-port={port}"),
                format!("-port.grpc={}", free_port()?),
                format!("-dir={}", vdir.display()),
                format!("-mserver={master}"),
                "-max=0".into(),
                "-dataCenter=dc1".into(),
                "-rack=rack1".into(),
            ];
            let log = dir.join(format!("volume{n}.log"));
            let child = spawn(&weed(), &args, &log)?;
            store.volumes.push(Volume { args, port, child: Some(child), log });
            wait_port(port, "SeaweedFS volume server")?;
        }
        let filer_port = free_port()?;
        let filer = format!("127.0.0.1:{filer_port}.{}", free_port()?);
        let filer_args = vec![
            "filer".to_string(),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-port={filer_port}"),
            format!("-port.grpc={}", grpc_port(&filer)?),
            format!("-master={master}"),
            format!("-defaultStoreDir={}", dir.join("filer").display()),
        ];
        let filer_dir = dir.join("filer");
        fs::create_dir_all(&filer_dir)?;
        store.children.push(spawn_in(&weed(), &filer_args, &dir.join("filer.log"), &filer_dir)?);
        wait_port(filer_port, "SeaweedFS filer").with_context(|| store.logs())?;
        let s3_args = vec![
            "s3".to_string(),
            "-ip.bind=127.0.0.1".into(),
            format!("-port={}", store.port),
            format!("-port.grpc={}", free_port()?),
            "-port.iceberg=0".into(),
            "-port.lance=0".into(),
            format!("-filer={filer}"),
            format!("-config={}", s3_config.display()),
        ];
        store.children.push(spawn(&weed(), &s3_args, &dir.join("s3.log"))?);
        wait_port(store.port, "SeaweedFS S3 gateway").with_context(|| store.logs())?;
        // The gateway listens before the filer has seen the volume servers: wait until a
        // bucket can really be written.
        let probe = format!("probe-{}", std::process::id());
        wait_until(Duration::from_mins(1), "SeaweedFS accepting writes", || {
            Ok(store.create_bucket(&probe).is_ok() && store.put(&probe, "probe", b"ok").is_ok())
        })?;
        Ok(store)
    }

    /// Azurite's blob service (in-memory, loose mode off: real API checks).
    pub fn azurite(scratch: &Scratch) -> Result<Self> {
        Self::require(Provider::AzureBlobStorage)?;
        let dir = scratch.unique_dir("azurite", "root")?;
        let port = free_port()?;
        let args = vec![
            "--blobHost".to_string(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            "--location".into(),
            dir.join("data").display().to_string(),
            "--skipApiVersionCheck".into(),
            "--silent".into(),
        ];
        let child = spawn(&azurite(), &args, &dir.join("azurite.log"))?;
        let store = Self {
            _scratch: scratch.clone(),
            provider: Provider::AzureBlobStorage,
            dir,
            port,
            children: vec![child],
            volumes: Vec::new(),
        };
        wait_port(port, "Azurite")?;
        Ok(store)
    }

    /// fake-gcs-server on plain HTTP, filesystem backend.
    pub fn fake_gcs(scratch: &Scratch) -> Result<Self> {
        Self::require(Provider::GoogleCloudStorage)?;
        let dir = scratch.unique_dir("fakegcs", "root")?;
        let port = free_port()?;
        let args = vec![
            "-scheme".to_string(),
            "http".into(),
            "-host".into(),
            "127.0.0.1".into(),
            "-port".into(),
            port.to_string(),
            "-backend".into(),
            "filesystem".into(),
            "-filesystem-root".into(),
            dir.join("data").display().to_string(),
            "-public-host".into(),
            format!("127.0.0.1:{port}"),
            "-external-url".into(),
            format!("http://127.0.0.1:{port}"),
            "-log-level".into(),
            "warn".into(),
        ];
        let child = spawn(&fake_gcs(), &args, &dir.join("fake-gcs.log"))?;
        // A service-account file in the shape `object_store` reads for emulators: its base URL
        // and no OAuth (real Google clients use STORAGE_EMULATOR_HOST instead).
        write_file(
            &dir.join("service-account.json"),
            format!(
                r#"{{"type":"service_account","project_id":"test","private_key_id":"","private_key":"","client_email":"","gcs_base_url":"http://127.0.0.1:{port}","disable_oauth":true}}"#
            ),
            0o644,
        )?;
        let store = Self {
            _scratch: scratch.clone(),
            provider: Provider::GoogleCloudStorage,
            dir,
            port,
            children: vec![child],
            volumes: Vec::new(),
        };
        wait_port(port, "fake-gcs-server")?;
        Ok(store)
    }

    /// The provider, as `--cloud-provider` names it.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The port the store's API listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the store's data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `--endpoint-url` for S3; `None` for the others (their endpoint is in the URL or the
    /// environment).
    pub fn endpoint_url(&self) -> Option<String> {
        (self.provider == Provider::AwsS3).then(|| format!("http://127.0.0.1:{}", self.port))
    }

    /// The source URL of `prefix` in `bucket` as Barman's cloud tools take it
    /// (`s3://bucket/prefix`, `http://127.0.0.1:port/devstoreaccount1/container/prefix`,
    /// `gs://bucket/prefix`).
    pub fn source_url(&self, bucket: &str, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        let tail = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        match self.provider {
            Provider::AwsS3 => format!("s3://{bucket}{tail}"),
            Provider::AzureBlobStorage => format!("http://127.0.0.1:{}/{AZURE_ACCOUNT}/{bucket}{tail}", self.port),
            Provider::GoogleCloudStorage => format!("gs://{bucket}{tail}"),
        }
    }

    /// The credentials and endpoints, as environment variables, for our tools and Barman's.
    pub fn env(&self) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.provider {
            Provider::AwsS3 => vec![
                ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
                ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
                ("AWS_DEFAULT_REGION", S3_REGION.into()),
                ("AWS_REGION", S3_REGION.into()),
                ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ],
            Provider::AzureBlobStorage => vec![("AZURE_STORAGE_CONNECTION_STRING", self.azure_connection_string())],
            Provider::GoogleCloudStorage => vec![
                ("STORAGE_EMULATOR_HOST", format!("http://127.0.0.1:{}", self.port)),
                ("GOOGLE_CLOUD_PROJECT", "test".into()),
                ("GOOGLE_APPLICATION_CREDENTIALS", self.dir.join("service-account.json").display().to_string()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Azurite's connection string.
    pub fn azure_connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};BlobEndpoint=http://127.0.0.1:{}/{AZURE_ACCOUNT};",
            self.port
        )
    }

    /// Applies [`ObjectStore::env`] to `cmd`.
    pub fn apply_env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Creates a bucket (container); succeeds if it exists already.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.client("create", bucket, "", None).map(drop)
    }

    /// Stores one object (through the provider's Python client).
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) -> Result<()> {
        self.client("put", bucket, key, Some(data)).map(drop)
    }

    /// Stores one object, giving up after `timeout` (a store missing a node may hang).
    pub fn put_within(&self, bucket: &str, key: &str, data: &[u8], timeout: Duration) -> Result<()> {
        self.client_within("put", bucket, key, Some(data), timeout).map(drop)
    }

    /// Reads one object.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        self.client("get", bucket, key, None)
    }

    /// Deletes one object.
    pub fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        self.client("delete", bucket, key, None).map(drop)
    }

    /// The keys under `prefix` in `bucket` with their sizes, sorted by key.
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>> {
        let out = self.client("list", bucket, prefix, None)?;
        let mut keys = Vec::new();
        for line in String::from_utf8(out)?.lines().filter(|l| !l.is_empty()) {
            let (size, key) = line.split_once(' ').with_context(|| format!("bad listing line {line:?}"))?;
            keys.push((key.to_string(), size.parse()?));
        }
        keys.sort();
        Ok(keys)
    }

    /// Multipart uploads started and neither completed nor aborted under `prefix` (S3 only;
    /// the other providers have no such state visible to a lister).
    pub fn pending_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        if self.provider != Provider::AwsS3 {
            return Ok(Vec::new());
        }
        let out = self.client("uploads", bucket, prefix, None)?;
        Ok(String::from_utf8(out)?.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// Kills volume server `n` (SIGKILL), as a crashed node.
    pub fn kill_volume_server(&mut self, n: usize) -> Result<()> {
        let volume = self.volumes.get_mut(n).with_context(|| format!("no volume server {n}"))?;
        if let Some(mut child) = volume.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts volume server `n` again on its directory and port.
    pub fn restart_volume_server(&mut self, n: usize) -> Result<()> {
        let volume = self.volumes.get_mut(n).with_context(|| format!("no volume server {n}"))?;
        if volume.child.is_none() {
            volume.child = Some(spawn(&weed(), &volume.args, &volume.log)?);
        }
        wait_port(volume.port, "SeaweedFS volume server")
    }

    /// The store's logs, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                out.push_str(&format!("== {}\n", path.display()));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Runs the harness client (`objstore_client.py`) for one operation.
    fn client(&self, op: &str, bucket: &str, key: &str, input: Option<&[u8]>) -> Result<Vec<u8>> {
        self.client_within(op, bucket, key, input, Duration::from_mins(1))
    }

    fn client_within(
        &self,
        op: &str,
        bucket: &str,
        key: &str,
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/objstore_client.py");
        let mut command = Command::new(python());
        command.arg(script).args([self.provider.cli_name(), op, bucket, key]);
        if let Some(url) = self.endpoint_url() {
            command.env("OBJSTORE_ENDPOINT", url);
        }
        self.apply_env(&mut command);
        let outcome = cmd::execute(&mut command, input, timeout)?;
        if !outcome.status.success() {
            bail!("{op} {bucket}/{key} on {}: {}", self.provider, outcome.stderr_str().trim());
        }
        Ok(outcome.stdout)
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        let children = self.children.iter_mut().chain(self.volumes.iter_mut().filter_map(|v| v.child.as_mut()));
        for child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn weed() -> PathBuf {
    Path::new(OBJSTORE_DIR).join("bin/weed")
}

fn fake_gcs() -> PathBuf {
    Path::new(OBJSTORE_DIR).join("bin/fake-gcs-server")
}

fn azurite() -> PathBuf {
    Path::new(OBJSTORE_DIR).join("azurite/node_modules/.bin/azurite-blob")
}

fn python() -> PathBuf {
    Path::new(DEFAULT_VENV).join("bin/python")
}

/// The gRPC port in a SeaweedFS `host:port.grpcport` address.
fn grpc_port(address: &str) -> Result<u16> {
    address.rsplit('.').next().and_then(|p| p.parse().ok()).with_context(|| format!("no gRPC port in {address}"))
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    spawn_in(program, args, log, log.parent().unwrap_or(Path::new("/")))
}

fn spawn_in(program: &Path, args: &[String], log: &Path, cwd: &Path) -> Result<Child> {
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

fn wait_port(port: u16, what: &str) -> Result<()> {
    wait_until(Duration::from_mins(1), &format!("{what} listening on 127.0.0.1:{port}"), || {
        Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
    })
}
