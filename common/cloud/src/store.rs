//! The one synchronous facade over `object_store`: a store opened once per process with its
//! own tokio runtime, so the tools stay plain sequential code. Requests are retried with
//! exponential backoff on throttling (429/503), other 5xx answers and timeouts
//! (`object_store`'s retry layer, up to [`MAX_RETRIES`] times within [`RETRY_TIMEOUT`]).
//! Multipart uploads keep up to `jobs` parts in flight ([`Upload`]); one dropped before
//! it completes is aborted, so no orphaned parts are left behind by a failed run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    RetryConfig, TagSet,
};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::creds;
use crate::error::CloudError;
use crate::gcs::GcsWriter;
use crate::pending::{PendingUpload, S3Uploads};
use crate::url::CloudUrl;

/// Retries per request.
pub const MAX_RETRIES: usize = 10;
/// Time budget for one request's retries.
pub const RETRY_TIMEOUT: Duration = Duration::from_mins(3);

/// `--cloud-provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `aws-s3` (and S3-compatible stores through `--endpoint-url`).
    AwsS3,
    /// `azure-blob-storage`.
    Azure,
    /// `google-cloud-storage`.
    Gcs,
}

impl Provider {
    /// Parses Barman's provider name.
    pub fn from_name(name: &str) -> Result<Provider, CloudError> {
        match name {
            "aws-s3" => Ok(Provider::AwsS3),
            "azure-blob-storage" => Ok(Provider::Azure),
            "google-cloud-storage" => Ok(Provider::Gcs),
            other => Err(CloudError::Usage(format!("invalid cloud provider '{other}'"))),
        }
    }

    /// The smallest multipart chunk (Barman's `MIN_CHUNK_SIZE`).
    pub fn min_chunk_size(self) -> u64 {
        match self {
            Provider::AwsS3 | Provider::Gcs => 5 << 20,
            Provider::Azure => 64 << 10,
        }
    }

    /// At most this many parts per object (Barman's `MAX_CHUNKS_PER_FILE`).
    pub fn max_chunks_per_file(self) -> u64 {
        match self {
            Provider::AwsS3 | Provider::Gcs => 10_000,
            Provider::Azure => 50_000,
        }
    }

    /// The largest archive (Barman's `MAX_ARCHIVE_SIZE`).
    pub fn max_archive_size(self) -> u64 {
        1 << 40
    }
}

/// S3 server-side encryption (`-e`, `--sse-kms-key-id`, `--sse-customer-key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Encryption {
    /// None requested.
    #[default]
    None,
    /// `-e AES256`.
    Aes256,
    /// `-e aws:kms` with an optional `--sse-kms-key-id`.
    Kms(Option<String>),
    /// `--sse-customer-key file://...`: the base64 key read from the file.
    CustomerKey(String),
}

/// How to reach the store: the common options of every cloud tool.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `--cloud-provider`.
    pub provider: Provider,
    /// The source or destination URL.
    pub url: String,
    /// `--endpoint-url`.
    pub endpoint: Option<String>,
    /// `-P/--aws-profile/--profile`.
    pub profile: Option<String>,
    /// `--read-timeout` (seconds).
    pub read_timeout: Option<u64>,
    /// `--addressing-style` (`auto`, `virtual`, `path`).
    pub addressing_style: Option<String>,
    /// `--azure-credential`.
    pub azure_credential: Option<String>,
    /// S3 encryption.
    pub encryption: Encryption,
    /// Tags for uploaded objects.
    pub tags: Vec<(String, String)>,
    /// `-J`: parts in flight per upload.
    pub jobs: usize,
}

impl ConnectOptions {
    /// Options for `url` on `provider` with every default.
    pub fn new(provider: Provider, url: &str) -> ConnectOptions {
        ConnectOptions {
            provider,
            url: url.to_owned(),
            endpoint: None,
            profile: None,
            read_timeout: None,
            addressing_style: None,
            azure_credential: None,
            encryption: Encryption::None,
            tags: Vec::new(),
            jobs: 2,
        }
    }
}

/// An opened bucket or container.
pub struct Store {
    rt: Runtime,
    os: Arc<dyn ObjectStore>,
    /// The parsed URL (bucket and path).
    pub url: CloudUrl,
    /// The provider.
    pub provider: Provider,
    tags: Vec<(String, String)>,
    jobs: usize,
    s3_uploads: Option<S3Uploads>,
    gcs_writer: Option<GcsWriter>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    }
}

fn client_options(o: &ConnectOptions, endpoint: Option<&str>) -> ClientOptions {
    let mut c = ClientOptions::new().with_timeout(Duration::from_secs(o.read_timeout.unwrap_or(60)));
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        c = c.with_allow_http(true);
    }
    c
}

fn build_s3(o: &ConnectOptions, url: &CloudUrl) -> Result<(Arc<dyn ObjectStore>, S3Uploads), CloudError> {
    let aws = creds::aws(o.profile.as_deref());
    let endpoint = o.endpoint.clone().or(aws.endpoint);
    let region = aws.region.unwrap_or_else(|| "us-east-1".into());
    let mut b = AmazonS3Builder::new().with_bucket_name(&url.bucket).with_retry(retry());
    b = b.with_region(&region);
    if let (Some(k), Some(s)) = (aws.key_id, aws.secret) {
        b = b.with_access_key_id(k).with_secret_access_key(s);
        if let Some(t) = aws.token {
            b = b.with_token(t);
        }
    }
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e);
    }
    let virtual_hosted = o.addressing_style.as_deref() == Some("virtual");
    b = b.with_virtual_hosted_style_request(virtual_hosted);
    b = match &o.encryption {
        Encryption::None => b,
        Encryption::Aes256 => sse(b, "AES256")?,
        Encryption::Kms(key) => match key {
            Some(k) => b.with_sse_kms_encryption(k),
            None => sse(b, "aws:kms")?,
        },
        Encryption::CustomerKey(k) => b.with_ssec_encryption(k),
    };
    let options = client_options(o, endpoint.as_deref());
    let b = b.with_client_options(options.clone());
    let s3 = Arc::new(b.build().map_err(|e| CloudError::General(e.to_string()))?);
    let uploads = S3Uploads::new(Arc::clone(&s3), &options, endpoint.as_deref(), &url.bucket, &region, virtual_hosted)?;
    Ok((s3, uploads))
}

fn sse(b: AmazonS3Builder, kind: &str) -> Result<AmazonS3Builder, CloudError> {
    let key =
        "aws_server_side_encryption".parse().map_err(|e: object_store::Error| CloudError::General(e.to_string()))?;
    Ok(b.with_config(key, kind))
}

fn build_azure(o: &ConnectOptions, url: &CloudUrl) -> Result<Arc<dyn ObjectStore>, CloudError> {
    let account_url = url.account_url.clone().unwrap_or_default();
    let mut b = MicrosoftAzureBuilder::new().with_container_name(&url.bucket).with_retry(retry());
    let mut endpoint = None;
    if let Some(text) = std::env::var("AZURE_STORAGE_CONNECTION_STRING").ok().filter(|_| o.azure_credential.is_none()) {
        let cs = creds::azure_connection_string(&text);
        if let Some(a) = cs.get("AccountName") {
            b = b.with_account(a);
        }
        if let Some(k) = cs.get("AccountKey") {
            b = b.with_access_key(k);
        }
        if let Some(sas) = cs.get("SharedAccessSignature") {
            b = b.with_sas_authorization(sas_pairs(sas));
        }
        endpoint = cs.get("BlobEndpoint").cloned();
    } else {
        let account = account_url.split('.').next().unwrap_or_default().rsplit('/').next().unwrap_or_default();
        b = b.with_account(account);
        if let Ok(sas) = std::env::var("AZURE_STORAGE_SAS_TOKEN") {
            b = b.with_sas_authorization(sas_pairs(&sas));
        } else if let Ok(key) = std::env::var("AZURE_STORAGE_KEY") {
            b = b.with_access_key(key);
        }
        if o.azure_credential.as_deref() == Some("azure-cli") {
            b = b.with_use_azure_cli(true);
        }
        if account_url.contains("://") {
            endpoint = Some(account_url.clone());
        }
    }
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e.clone()).with_allow_http(e.starts_with("http://"));
    }
    let b = b.with_client_options(client_options(o, endpoint.as_deref()));
    Ok(Arc::new(b.build().map_err(|e| CloudError::General(e.to_string()))?))
}

fn sas_pairs(sas: &str) -> Vec<(String, String)> {
    sas.trim_start_matches('?')
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn build_gcs(o: &ConnectOptions, url: &CloudUrl) -> Result<(Arc<dyn ObjectStore>, GcsWriter), CloudError> {
    let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(&url.bucket).with_retry(retry());
    if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
        // A service-account key is read as one (so its `gcs_base_url` / `disable_oauth`, an
        // emulator's settings, apply); other files (authorized_user) as application defaults.
        let service_account = std::fs::read(&path)
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["type"] == "service_account");
        b = if service_account { b.with_service_account_path(path) } else { b.with_application_credentials(path) };
    }
    let options = client_options(o, Some(&crate::gcs::base_url()));
    let b = b.with_client_options(options.clone());
    let gcs = Arc::new(b.build().map_err(|e| CloudError::General(e.to_string()))?);
    let writer = GcsWriter::new(Arc::clone(&gcs), &options, &url.bucket)?;
    Ok((gcs, writer))
}

impl Store {
    /// Opens the store described by `o`.
    pub fn open(o: &ConnectOptions) -> Result<Store, CloudError> {
        let url = CloudUrl::parse(o.provider, &o.url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| CloudError::General(format!("cannot start the I/O runtime: {e}")))?;
        let (os, s3_uploads, gcs_writer) = {
            let _guard = rt.enter();
            match o.provider {
                Provider::AwsS3 => build_s3(o, &url).map(|(os, u)| (os, Some(u), None))?,
                Provider::Azure => (build_azure(o, &url)?, None, None),
                Provider::Gcs => build_gcs(o, &url).map(|(os, w)| (os, None, Some(w)))?,
            }
        };
        let jobs = o.jobs.max(1);
        Ok(Store { rt, os, url, provider: o.provider, tags: o.tags.clone(), jobs, s3_uploads, gcs_writer })
    }

    fn tagset(&self, over: Option<&[(String, String)]>) -> TagSet {
        let mut t = TagSet::default();
        for (k, v) in over.unwrap_or(&self.tags) {
            t.push(k, v);
        }
        t
    }

    /// Runs a future on the store's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Stores `data` under `key` in one request; returns once the store acknowledged it.
    pub fn put(&self, key: &str, data: Bytes, tags: Option<&[(String, String)]>) -> Result<(), CloudError> {
        if let Some(w) = &self.gcs_writer {
            return self.rt.block_on(w.put(key, data, tags.unwrap_or(&self.tags)));
        }
        let opts = PutOptions { tags: self.tagset(tags), ..PutOptions::default() };
        self.rt.block_on(self.os.put_opts(&Path::from(key), PutPayload::from_bytes(data), opts))?;
        Ok(())
    }

    /// The whole object, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, CloudError> {
        self.rt.block_on(async {
            match self.os.get(&Path::from(key)).await {
                Ok(r) => Ok(Some(r.bytes().await?)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Streams the object into `sink` chunk by chunk; `false` if there is none.
    pub fn get_into(&self, key: &str, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> Result<bool, CloudError> {
        self.rt.block_on(async {
            let r = match self.os.get(&Path::from(key)).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(CloudError::from(e)),
            };
            let mut stream = r.into_stream();
            while let Some(chunk) = stream.next().await {
                sink(&chunk?)?;
            }
            Ok(true)
        })
    }

    /// Every object whose key starts with `prefix` (a plain string prefix, as Barman's
    /// `list_bucket(prefix, delimiter="")`), sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>, CloudError> {
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let mut out: Vec<Object> = self.rt.block_on(async {
            let base = (!dir.is_empty()).then(|| Path::from(dir));
            let mut s = self.os.list(base.as_ref());
            let mut v = Vec::new();
            while let Some(m) = s.next().await {
                let m = m?;
                let key = m.location.to_string();
                if key.starts_with(prefix) {
                    v.push(Object { key, size: m.size });
                }
            }
            Ok::<_, CloudError>(v)
        })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The "directories" right under `dir` (`list_bucket(dir + "/")` with the `/`
    /// delimiter), as full keys ending in `/`.
    pub fn list_dirs(&self, dir: &str) -> Result<Vec<String>, CloudError> {
        let r = self.rt.block_on(self.os.list_with_delimiter(Some(&Path::from(dir))))?;
        let mut v: Vec<String> = r.common_prefixes.iter().map(|p| format!("{p}/")).collect();
        v.sort();
        Ok(v)
    }

    /// Deletes `keys` (a missing one is no error).
    pub fn delete(&self, keys: &[String]) -> Result<(), CloudError> {
        self.rt.block_on(async {
            let paths = futures::stream::iter(keys.iter().map(|k| Ok(Path::from(k.as_str())))).boxed();
            let mut results = self.os.delete_stream(paths);
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(CloudError::from(e)),
                }
            }
            Ok(())
        })
    }

    /// Checks that the bucket answers (`-t/--test`): a listing of the URL's path.
    pub fn test_connectivity(&self) -> Result<(), CloudError> {
        let dir = (!self.url.path.is_empty()).then(|| Path::from(self.url.path.as_str()));
        self.rt.block_on(self.os.list_with_delimiter(dir.as_ref())).map_err(|e| CloudError::Network(e.to_string()))?;
        Ok(())
    }

    /// Multipart uploads started and neither completed nor aborted under `prefix` (S3; the
    /// other providers show none, see [`crate::pending`]).
    pub fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, CloudError> {
        match &self.s3_uploads {
            Some(u) => self.rt.block_on(u.list(prefix)),
            None => Ok(Vec::new()),
        }
    }

    /// Aborts one pending multipart upload (its parts are freed).
    pub fn abort_upload(&self, upload: &PendingUpload) -> Result<(), CloudError> {
        match &self.s3_uploads {
            Some(u) => self.rt.block_on(u.abort(upload)),
            None => Ok(()),
        }
    }

    /// Starts a multipart upload of `key`.
    pub fn multipart(&self, key: &str) -> Result<Upload<'_>, CloudError> {
        let opts = PutMultipartOptions { tags: self.tagset(None), ..PutMultipartOptions::default() };
        let inner = self.rt.block_on(self.os.put_multipart_opts(&Path::from(key), opts))?;
        Ok(Upload { store: self, inner: Some(inner), inflight: VecDeque::new(), parts: 0 })
    }
}

/// A multipart upload in progress: parts go up in the background, at most `-J` at a time.
pub struct Upload<'a> {
    store: &'a Store,
    inner: Option<Box<dyn MultipartUpload>>,
    inflight: VecDeque<JoinHandle<object_store::Result<()>>>,
    parts: usize,
}

impl Upload<'_> {
    fn wait_one(&mut self) -> Result<(), CloudError> {
        if let Some(h) = self.inflight.pop_front() {
            self.store.rt.block_on(h).map_err(CloudError::general)??;
        }
        Ok(())
    }

    /// Queues one part (every part but the last must be at least the provider's minimum).
    pub fn put_part(&mut self, data: Bytes) -> Result<(), CloudError> {
        while self.inflight.len() >= self.store.jobs {
            self.wait_one()?;
        }
        let inner = self.inner.as_mut().ok_or_else(|| CloudError::General("upload already finished".into()))?;
        let fut = inner.put_part(PutPayload::from_bytes(data));
        self.inflight.push_back(self.store.rt.spawn(fut));
        self.parts += 1;
        Ok(())
    }

    /// Waits for every part and completes the object; it is visible only from here on.
    pub fn complete(mut self) -> Result<usize, CloudError> {
        while !self.inflight.is_empty() {
            self.wait_one()?;
        }
        let mut inner = self.inner.take().ok_or_else(|| CloudError::General("upload already finished".into()))?;
        if self.parts == 0 {
            self.store.rt.block_on(inner.put_part(PutPayload::default()))?;
        }
        self.store.rt.block_on(inner.complete())?;
        Ok(self.parts)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            for h in self.inflight.drain(..) {
                h.abort();
            }
            let _ = self.store.rt.block_on(inner.abort());
        }
    }
}
