//! Multipart uploads that were started and never completed nor aborted: what a
//! `barman-cloud-backup` killed with SIGKILL (or a host that lost power) leaves behind. Their
//! parts are billed storage, invisible to any lister of objects, so no catalogue (ours or
//! Barman's) takes them for a backup; Barman 3.20.1 leaves them to a bucket lifecycle rule.
//! We abort them: [`crate::delete`] when it deletes a backup (by `-b` or by retention), and
//! `barman-cloud-backup` before it starts, for every backup of the server that is not
//! `STARTED` (a `FAILED` or `DONE` backup, or one whose `backup.info` is gone, has no live
//! writer).
//!
//! S3 only: `object_store` has no call for `ListMultipartUploads` / `AbortMultipartUpload`, so
//! these two requests are built here and signed with `object_store`'s own SigV4
//! [`AwsAuthorizer`] and credential provider. Azure discards uncommitted blocks itself after
//! seven days and nothing of them is visible; GCS's XML multipart uploads are not listed here.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::ClientOptions;

use crate::error::CloudError;

/// One multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The object key it would create.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
}

/// The bucket-level S3 requests `object_store` lacks.
#[derive(Debug)]
pub struct S3Uploads {
    s3: Arc<AmazonS3>,
    client: HttpClient,
    /// `scheme://host[:port]/bucket` (path style) or `scheme://bucket.host[:port]`.
    base: String,
    region: String,
}

/// Percent-encodes `s` as SigV4's canonical URI and query want it (`/` kept in keys).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of every `<tag>...</tag>` inside `xml`, in order (S3's answers carry no nested
/// tags of the same name and no CDATA).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// XML's five predefined entities, as S3 escapes keys.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

impl S3Uploads {
    /// For `bucket` behind `endpoint` (AWS's regional endpoint when `None`), path-style
    /// unless `virtual_hosted`.
    pub fn new(
        s3: Arc<AmazonS3>,
        options: &ClientOptions,
        endpoint: Option<&str>,
        bucket: &str,
        region: &str,
        virtual_hosted: bool,
    ) -> Result<S3Uploads, CloudError> {
        let client = ReqwestConnector::default().connect(options)?;
        let endpoint = endpoint.map_or_else(|| format!("https://s3.{region}.amazonaws.com"), str::to_owned);
        let endpoint = endpoint.trim_end_matches('/');
        let base = match (virtual_hosted, endpoint.split_once("://")) {
            (true, Some((scheme, host))) => format!("{scheme}://{bucket}.{host}"),
            _ => format!("{endpoint}/{}", encode(bucket, false)),
        };
        Ok(S3Uploads { s3, client, base, region: region.to_owned() })
    }

    async fn send(&self, method: &str, path_and_query: &str) -> Result<String, CloudError> {
        let credential = self.s3.credentials().get_credential().await?;
        let mut request: HttpRequest = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .body(HttpRequestBody::empty())
            .map_err(CloudError::general)?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        let response = self.client.execute(request).await.map_err(|e| CloudError::Network(e.to_string()))?;
        let status = response.status();
        let body = response.into_body().bytes().await.map_err(|e| CloudError::Network(e.to_string()))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(CloudError::General(format!("{method} {path_and_query}: {status}: {body}")));
        }
        Ok(body)
    }

    /// The multipart uploads in progress under `prefix` (every page).
    pub async fn list(&self, prefix: &str) -> Result<Vec<PendingUpload>, CloudError> {
        let mut out = Vec::new();
        let mut markers = String::new();
        loop {
            let body = self.send("GET", &format!("/?uploads&prefix={}{markers}", encode(prefix, false))).await?;
            for upload in elements(&body, "Upload") {
                let key = elements(upload, "Key").first().map(|k| unescape(k));
                let id = elements(upload, "UploadId").first().map(|k| unescape(k));
                if let (Some(key), Some(upload_id)) = (key, id) {
                    out.push(PendingUpload { key, upload_id });
                }
            }
            let truncated = elements(&body, "IsTruncated").first() == Some(&"true");
            let next_key = elements(&body, "NextKeyMarker").first().map(|k| unescape(k));
            let next_id = elements(&body, "NextUploadIdMarker").first().map(|k| unescape(k));
            match (truncated, next_key, next_id) {
                (true, Some(k), Some(i)) => {
                    markers = format!("&key-marker={}&upload-id-marker={}", encode(&k, false), encode(&i, false));
                }
                _ => return Ok(out),
            }
        }
    }

    /// Aborts one upload (its parts are freed).
    pub async fn abort(&self, upload: &PendingUpload) -> Result<(), CloudError> {
        let path = format!("/{}?uploadId={}", encode(&upload.key, true), encode(&upload.upload_id, false));
        self.send("DELETE", &path).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uploads() {
        let xml = "<ListMultipartUploadsResult><Bucket>b</Bucket><Upload><Key>p/a&amp;b</Key><UploadId>x1</UploadId></Upload><Upload><Key>p/c</Key><UploadId>x2</UploadId></Upload><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
        let uploads = elements(xml, "Upload");
        assert_eq!(uploads.len(), 2);
        assert_eq!(unescape(elements(uploads[0], "Key")[0]), "p/a&b");
        assert_eq!(elements(uploads[1], "UploadId"), vec!["x2"]);
    }

    #[test]
    fn encodes_keys() {
        assert_eq!(encode("pg/base/2026 x/data.tar", true), "pg/base/2026%20x/data.tar");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }
}
