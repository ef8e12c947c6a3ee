//! Single-object writes to Google Cloud Storage through the JSON API's upload
//! (`POST <base>/upload/storage/v1/b/<bucket>/o?uploadType=media&name=<key>`, or
//! `uploadType=multipart` with the object's metadata when there are tags, which Barman stores
//! as the blob's `metadata`), the call Google's own clients (and so Barman) use. `object_store` writes GCS objects with the XML
//! API's `PUT <base>/<bucket>/<key>`, which fake-gcs-server, the emulator the tests run on,
//! does not implement (fsouza/fake-gcs-server#331); reads, listings and deletions stay with
//! `object_store`. The bearer token comes from `object_store`'s own credential provider
//! (service-account file, metadata server, or none for an emulator), and a request is retried
//! with backoff on throttling, 5xx and transport errors as the rest of the store's calls are.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::gcp::GoogleCloudStorage;
use object_store::ClientOptions;

use crate::error::CloudError;

/// Google's public endpoint, when neither the service-account file nor the environment names
/// another.
pub const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";
/// Attempts per upload.
const ATTEMPTS: u32 = 6;
/// The `multipart/related` boundary of an upload with metadata.
const BOUNDARY: &str = "barman_cloud_object_boundary";

/// The JSON-API writer of one bucket.
#[derive(Debug)]
pub struct GcsWriter {
    gcs: Arc<GoogleCloudStorage>,
    client: HttpClient,
    base: String,
    bucket: String,
}

/// Percent-encodes a query value (a whole object name: `/` included).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API's base URL: `gcs_base_url` of the service-account file in
/// `GOOGLE_APPLICATION_CREDENTIALS` (what `object_store` reads too), else
/// `STORAGE_EMULATOR_HOST` (what Google's clients read), else Google's.
pub fn base_url() -> String {
    let from_file = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .and_then(|v| v["gcs_base_url"].as_str().map(str::to_owned));
    let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok().filter(|v| !v.is_empty()).map(|h| {
        if h.contains("://") {
            h
        } else {
            format!("http://{h}")
        }
    });
    from_file.or(emulator).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()).trim_end_matches('/').to_owned()
}

impl GcsWriter {
    /// A writer for `bucket` sharing `gcs`'s credentials.
    pub fn new(gcs: Arc<GoogleCloudStorage>, options: &ClientOptions, bucket: &str) -> Result<GcsWriter, CloudError> {
        let client = ReqwestConnector::default().connect(options)?;
        Ok(GcsWriter { gcs, client, base: base_url(), bucket: bucket.to_owned() })
    }

    /// The request body and its content type: the bytes alone, or, with tags, a
    /// `multipart/related` body of the metadata (JSON) and the bytes.
    fn body(key: &str, data: &Bytes, tags: &[(String, String)]) -> (Bytes, String) {
        if tags.is_empty() {
            return (data.clone(), "application/octet-stream".to_owned());
        }
        let metadata: serde_json::Map<String, serde_json::Value> =
            tags.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let meta = serde_json::json!({ "name": key, "metadata": metadata });
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        (Bytes::from(body), format!("multipart/related; boundary={BOUNDARY}"))
    }

    async fn attempt(&self, key: &str, data: &Bytes, tags: &[(String, String)]) -> Result<(), (bool, CloudError)> {
        let credential = self.gcs.credentials().get_credential().await.map_err(|e| (false, CloudError::from(e)))?;
        let kind = if tags.is_empty() { "media" } else { "multipart" };
        let uri = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={kind}&name={}",
            self.base,
            encode(&self.bucket),
            encode(key)
        );
        let (body, content_type) = Self::body(key, data, tags);
        let mut builder = http::Request::builder().method("POST").uri(uri).header("content-type", content_type);
        if !credential.bearer.is_empty() {
            builder = builder.header("authorization", format!("Bearer {}", credential.bearer));
        }
        let request: HttpRequest =
            builder.body(HttpRequestBody::from(body)).map_err(|e| (false, CloudError::general(e)))?;
        let response = self.client.execute(request).await.map_err(|e| (true, CloudError::Network(e.to_string())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.into_body().bytes().await.unwrap_or_default();
        let retry = status.as_u16() == 429 || status.is_server_error();
        let text = format!("upload of {key}: {status}: {}", String::from_utf8_lossy(&body).trim());
        Err((retry, if retry { CloudError::Network(text) } else { CloudError::General(text) }))
    }

    /// Stores `data` as `key` with `tags` as its metadata; returns once the store
    /// acknowledged it.
    pub async fn put(&self, key: &str, data: Bytes, tags: &[(String, String)]) -> Result<(), CloudError> {
        let mut pause = Duration::from_millis(100);
        let mut tries = 1;
        loop {
            match self.attempt(key, &data, tags).await {
                Ok(()) => return Ok(()),
                Err((true, _)) if tries < ATTEMPTS => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_query_encoded() {
        assert_eq!(encode("p/pg/wals/0000000100000000/x.gz"), "p%2Fpg%2Fwals%2F0000000100000000%2Fx.gz");
    }
}
