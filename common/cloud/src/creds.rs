//! Credentials found where Barman's provider clients find them.
//!
//! * AWS (botocore's chain): `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//!   `AWS_SESSION_TOKEN` unless a profile is named on the command line (`-P`), then the
//!   profile (`-P`, else `AWS_PROFILE`, else `default`) in `AWS_SHARED_CREDENTIALS_FILE`
//!   (`~/.aws/credentials`) and `AWS_CONFIG_FILE` (`~/.aws/config`, section
//!   `[profile NAME]`); the region from `AWS_DEFAULT_REGION` / `AWS_REGION` or the profile;
//!   the endpoint from `--endpoint-url`, `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`. With
//!   none of these, `object_store`'s instance-metadata and web-identity providers apply.
//! * Azure: `AZURE_STORAGE_CONNECTION_STRING` (`AccountName`, `AccountKey`, `BlobEndpoint`,
//!   `SharedAccessSignature`), else `AZURE_STORAGE_SAS_TOKEN` or `AZURE_STORAGE_KEY`, else
//!   `object_store`'s default chain (`--azure-credential azure-cli` selects the CLI).
//! * GCS: the service-account file in `GOOGLE_APPLICATION_CREDENTIALS`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// AWS settings resolved from the environment and the shared files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Access key id.
    pub key_id: Option<String>,
    /// Secret key.
    pub secret: Option<String>,
    /// Session token.
    pub token: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint from the environment or the profile (`endpoint_url`).
    pub endpoint: Option<String>,
}

/// Sections of an INI file (`[name]`, `key = value`).
fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name.trim().clone_into(&mut section);
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone()).or_default().insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

fn home_file(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(default))
}

fn section(var: &str, default: &str, name: &str) -> BTreeMap<String, String> {
    let Some(path) = home_file(var, default) else { return BTreeMap::new() };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    ini(&text).remove(name).unwrap_or_default()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Resolves AWS settings; `profile` is `-P/--aws-profile`.
pub fn aws(profile: Option<&str>) -> AwsSettings {
    let name = profile.map(str::to_owned).or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let creds = section("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials", &name);
    let config_name = if name == "default" { name.clone() } else { format!("profile {name}") };
    let config = section("AWS_CONFIG_FILE", ".aws/config", &config_name);
    let from_files = |key: &str| creds.get(key).or_else(|| config.get(key)).cloned();
    let env_first = profile.is_none() && env("AWS_ACCESS_KEY_ID").is_some();
    let (key_id, secret, token) = if env_first {
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN"))
    } else {
        (from_files("aws_access_key_id"), from_files("aws_secret_access_key"), from_files("aws_session_token"))
    };
    AwsSettings {
        key_id,
        secret,
        token,
        region: env("AWS_DEFAULT_REGION").or_else(|| env("AWS_REGION")).or_else(|| config.get("region").cloned()),
        endpoint: env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| config.get("endpoint_url").cloned()),
    }
}

/// The fields of an Azure connection string (`Key=Value;...`).
pub fn azure_connection_string(text: &str) -> BTreeMap<String, String> {
    text.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections() {
        let s = ini("[default]\naws_access_key_id = A\n[profile x]\nregion=eu-west-1\n# c\n");
        assert_eq!(s["default"]["aws_access_key_id"], "A");
        assert_eq!(s["profile x"]["region"], "eu-west-1");
    }

    #[test]
    fn connection_string() {
        let c = azure_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Zm9v==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        );
        assert_eq!(c["AccountKey"], "Zm9v==");
        assert_eq!(c["BlobEndpoint"], "http://127.0.0.1:10000/devstoreaccount1");
    }
}
