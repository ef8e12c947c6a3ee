//! Cloud URLs as Barman's providers parse them: `s3://bucket/path`,
//! `https://<account>.blob.core.windows.net/<container>/path` (or, for an emulator,
//! `http://host:port/<account>/<container>/path`), `gs://bucket/path` or
//! `https://console.cloud.google.com/storage/browser/bucket/path`.

use crate::error::CloudError;
use crate::store::Provider;

/// The GCS console URL form Barman accepts beside `gs://`.
const GCS_BASE_URL: &str = "https://console.cloud.google.com/storage/browser/";
/// The domain of real Azure Blob Storage accounts.
const AZURE_DOMAIN: &str = "blob.core.windows.net";

/// A parsed destination or source URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudUrl {
    /// The bucket or container.
    pub bucket: String,
    /// The path inside it, without leading or trailing `/` (may be empty).
    pub path: String,
    /// Azure only: the account host (`acct.blob.core.windows.net`) or, for an emulator,
    /// `scheme://host:port/account`.
    pub account_url: Option<String>,
}

impl CloudUrl {
    /// Parses `url` for `provider`.
    pub fn parse(provider: Provider, url: &str) -> Result<CloudUrl, CloudError> {
        match provider {
            Provider::AwsS3 => parse_s3(url),
            Provider::Azure => parse_azure(url),
            Provider::Gcs => parse_gcs(url),
        }
    }

    /// `path/<rest>`, as Python's `os.path.join(path, rest)` with an empty path.
    pub fn join(&self, rest: &str) -> String {
        if self.path.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.path)
        }
    }
}

/// Splits `scheme://netloc/path` as `urlparse` does (no query or fragment handling needed).
fn split(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (netloc, path) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
    Some((scheme, netloc, path))
}

fn parse_s3(url: &str) -> Result<CloudUrl, CloudError> {
    match split(url) {
        Some(("s3", netloc, path)) if !netloc.is_empty() => Ok(CloudUrl {
            bucket: netloc.to_owned(),
            path: path.trim_start_matches('/').trim_end_matches('/').to_owned(),
            account_url: None,
        }),
        _ => Err(CloudError::General(format!("Invalid s3 URL address: {url}"))),
    }
}

fn parse_azure(url: &str) -> Result<CloudUrl, CloudError> {
    let malformed = || CloudError::General(format!("azure blob storage URL {url} is malformed"));
    let (scheme, netloc, path) = split(url).ok_or_else(malformed)?;
    let parts: Vec<&str> = path.split('/').collect();
    let (account_url, bucket, rest) = if netloc.ends_with(AZURE_DOMAIN) {
        (netloc.to_owned(), parts.get(1).ok_or_else(malformed)?, parts.get(2..).unwrap_or(&[]))
    } else {
        let account = parts.get(1).ok_or_else(malformed)?;
        (format!("{scheme}://{netloc}/{account}"), parts.get(2).ok_or_else(malformed)?, parts.get(3..).unwrap_or(&[]))
    };
    if bucket.is_empty() {
        return Err(malformed());
    }
    Ok(CloudUrl {
        bucket: (*bucket).to_owned(),
        path: rest.join("/").trim_end_matches('/').to_owned(),
        account_url: Some(account_url),
    })
}

fn parse_gcs(url: &str) -> Result<CloudUrl, CloudError> {
    let gs = url.strip_prefix(GCS_BASE_URL).map_or_else(|| url.to_owned(), |r| format!("gs://{r}"));
    match split(&gs) {
        Some(("gs", netloc, path)) if !netloc.is_empty() => {
            Ok(CloudUrl { bucket: netloc.to_owned(), path: path.trim_matches('/').to_owned(), account_url: None })
        }
        Some(("gs", ..)) => {
            Err(CloudError::General(format!("Google cloud storage URL {url} is malformed. Bucket name not found")))
        }
        _ => Err(CloudError::General(format!(
            "Google cloud storage URL {url} is malformed. Expected format are '{GCS_BASE_URL}bucket-name/some/path' or 'gs://bucket-name/some/path'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let u = CloudUrl::parse(Provider::AwsS3, "s3://bkt/some/path/").expect("valid");
        assert_eq!((u.bucket.as_str(), u.path.as_str()), ("bkt", "some/path"));
        assert_eq!(u.join("pg/wals"), "some/path/pg/wals");
        let u = CloudUrl::parse(Provider::AwsS3, "s3://bkt").expect("valid");
        assert_eq!(u.join("pg"), "pg");
        assert!(CloudUrl::parse(Provider::AwsS3, "gs://bkt/x").is_err());
    }

    #[test]
    fn azure_urls() {
        let u = CloudUrl::parse(Provider::Azure, "https://acct.blob.core.windows.net/cont/a/b").expect("valid");
        assert_eq!(u.account_url.as_deref(), Some("acct.blob.core.windows.net"));
        assert_eq!((u.bucket.as_str(), u.path.as_str()), ("cont", "a/b"));
        let u = CloudUrl::parse(Provider::Azure, "http://127.0.0.1:10000/devstoreaccount1/cont/p").expect("valid");
        assert_eq!(u.account_url.as_deref(), Some("http://127.0.0.1:10000/devstoreaccount1"));
        assert_eq!((u.bucket.as_str(), u.path.as_str()), ("cont", "p"));
    }

    #[test]
    fn gcs_urls() {
        let u =
            CloudUrl::parse(Provider::Gcs, "https://console.cloud.google.com/storage/browser/b/x/y").expect("valid");
        assert_eq!((u.bucket.as_str(), u.path.as_str()), ("b", "x/y"));
        assert!(CloudUrl::parse(Provider::Gcs, "s3://b").is_err());
    }
}
