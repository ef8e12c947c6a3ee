//! The command-line pieces every `barman-cloud-*` tool shares (`cloud_cli.py`'s
//! `create_argument_parser`): the URL and server name, `-V`, `--help`, `-v/-q`, `-t`,
//! `--cloud-provider`, the S3 options (`--endpoint-url`, `-P/--aws-profile/--profile`,
//! `--read-timeout`, `--addressing-style`) and the Azure `--azure-credential`; value parsers
//! with Barman's rules (`check_size`, `check_positive`, backup names, tags); and the
//! options a tool accepts but refuses ([`refused`]).

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::error::CloudError;
use crate::store::{ConnectOptions, Encryption, Provider};

/// Adds the shared arguments to `cmd`; `url` is `source_url` or `destination_url`.
pub fn common(cmd: Command, url: &'static str) -> Command {
    cmd.disable_help_flag(true)
        .disable_version_flag(true)
        .version(concat!("3.20.1 (barman-rs ", env!("CARGO_PKG_VERSION"), ")"))
        .arg(Arg::new(url).required(true).help("URL of the cloud storage, such as s3://bucket/path/to/folder"))
        .arg(Arg::new("server_name").required(true).help("the name of the server as configured in Barman"))
        .arg(Arg::new("version").short('V').long("version").action(ArgAction::Version).help("show program's version number and exit"))
        .arg(Arg::new("help").long("help").action(ArgAction::Help).help("show this help message and exit"))
        .arg(Arg::new("verbose").short('v').long("verbose").action(ArgAction::Count).conflicts_with("quiet").help("increase output verbosity (e.g., -vv is more than -v)"))
        .arg(Arg::new("quiet").short('q').long("quiet").action(ArgAction::Count).help("decrease output verbosity (e.g., -qq is less than -q)"))
        .arg(Arg::new("test").short('t').long("test").action(ArgAction::SetTrue).help("Test cloud connectivity and exit"))
        .arg(
            Arg::new("cloud-provider")
                .long("cloud-provider")
                .value_parser(["aws-s3", "azure-blob-storage", "google-cloud-storage"])
                .default_value("aws-s3")
                .help("The cloud provider to use as a storage backend"),
        )
        .arg(Arg::new("endpoint-url").long("endpoint-url").help("Override default S3 endpoint URL with the given one"))
        .arg(Arg::new("aws-profile").short('P').long("aws-profile").visible_alias("profile").help("profile name (e.g. INI section in AWS credentials file)"))
        .arg(Arg::new("read-timeout").long("read-timeout").value_parser(clap::value_parser!(u64)).help("the time in seconds until a timeout is raised when waiting to read from a connection (defaults to 60 seconds)"))
        .arg(Arg::new("addressing-style").long("addressing-style").value_parser(["auto", "virtual", "path"]).help("the addressing style to use for S3 requests"))
        .arg(
            Arg::new("azure-credential")
                .long("azure-credential")
                .visible_aliases(["credential", "default"])
                .value_parser(["azure-cli", "managed-identity", "default"])
                .help("the type of credential to use when authenticating with Azure"),
        )
}

/// `--format console|json` of the listing tools (backup-list, backup-show).
pub fn format() -> Arg {
    Arg::new("format").long("format").default_value("console").help("Output format (console or json). Default console.")
}

/// `--sse-customer-key FILE_URI`, shared by most tools.
pub fn sse_customer_key() -> Arg {
    Arg::new("sse-customer-key")
        .long("sse-customer-key")
        .help("file:// URI of a file holding the base64 SSE-C key for S3")
}

/// The connection options from parsed arguments; `url` names the URL argument.
pub fn connect_options(m: &ArgMatches, url: &str) -> Result<ConnectOptions, CloudError> {
    let s = |k: &str| m.try_get_one::<String>(k).ok().flatten().cloned();
    let provider = Provider::from_name(&s("cloud-provider").unwrap_or_else(|| "aws-s3".into()))?;
    let mut o = ConnectOptions::new(provider, &s(url).unwrap_or_default());
    o.endpoint = s("endpoint-url");
    o.profile = s("aws-profile");
    o.read_timeout = m.get_one::<u64>("read-timeout").copied();
    o.addressing_style = s("addressing-style");
    o.azure_credential = s("azure-credential");
    o.encryption = encryption(m)?;
    crate::log::configure(m.get_count("verbose"), m.get_count("quiet"));
    Ok(o)
}

fn encryption(m: &ArgMatches) -> Result<Encryption, CloudError> {
    let s = |k: &str| m.try_get_one::<String>(k).ok().flatten().cloned();
    if let Some(uri) = s("sse-customer-key") {
        if s("encryption").is_some() || s("sse-kms-key-id").is_some() {
            return Err(CloudError::Usage(
                "--sse-customer-key cannot be used together with --encryption or --sse-kms-key-id".into(),
            ));
        }
        let path = uri
            .strip_prefix("file://")
            .ok_or_else(|| CloudError::Usage(format!("--sse-customer-key must be a file:// URI: {uri}")))?;
        let key = std::fs::read_to_string(path).map_err(|e| CloudError::Usage(format!("cannot read {path}: {e}")))?;
        return Ok(Encryption::CustomerKey(key.trim().to_owned()));
    }
    let kms_id = s("sse-kms-key-id");
    match s("encryption").as_deref() {
        None | Some("AES256") if kms_id.is_some() => {
            Err(CloudError::Usage("Encryption type must be aws:kms if SSE KMS Key ID is specified".into()))
        }
        None => Ok(Encryption::None),
        Some("AES256") => Ok(Encryption::Aes256),
        Some(_) => Ok(Encryption::Kms(kms_id)),
    }
}

/// Options accepted on the command line (for parity with Barman) but not implemented:
/// if any is given, one clear error (exit 3) instead of silently ignoring it.
pub fn refused(m: &ArgMatches, ids: &[&str]) -> Result<(), CloudError> {
    for id in ids {
        let given = m.try_contains_id(id).unwrap_or(false)
            && m.value_source(id).is_some_and(|s| s == clap::parser::ValueSource::CommandLine);
        if given {
            return Err(CloudError::Usage(format!("option --{id} is not supported by this implementation yet")));
        }
    }
    Ok(())
}

/// Barman's `check_size`: `10GB` (base 1024), `10GiB` (base 1000, as Barman has it), or bytes.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || format!("'{value}' is not a valid size string");
    let v = value.to_uppercase();
    let n: f64 = if let Some(body) = v.strip_suffix('B') {
        let (base, body) = match body.strip_suffix('I') {
            Some(b) => (1000f64, b),
            None => (1024f64, body),
        };
        match body.char_indices().last() {
            Some((i, c)) if "KMGTPEZY".contains(c) => {
                let exp = i32::try_from("KMGTPEZY".find(c).expect("found above")).expect("index < 8") + 1;
                body[..i].parse::<f64>().map_err(|_| bad())? * base.powi(exp)
            }
            _ => body.parse::<u64>().map_err(|_| bad())? as f64,
        }
    } else {
        v.parse::<u64>().map_err(|_| bad())? as f64
    };
    if n < 1.0 {
        return Err(bad());
    }
    Ok(n as u64)
}

/// Barman's `check_positive`.
pub fn parse_positive(value: &str) -> Result<usize, String> {
    match value.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n as usize),
        Ok(_) => Err(format!("'{value}' is not a valid positive integer")),
        Err(_) => Err(format!("'{value}' is not a valid input")),
    }
}

/// Barman's `check_tag`: `key,value`.
pub fn parse_tag(value: &str) -> Result<(String, String), String> {
    let (k, v) = value.split_once(',').ok_or("Invalid tag format. Expected 'key,value'.")?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// The tags from `--tags K,V ...` or `--tag K,V` (repeated).
pub fn tags(m: &ArgMatches, list: &str, append: &str) -> Vec<(String, String)> {
    let get = |id: &str| -> Vec<(String, String)> {
        m.try_get_many::<(String, String)>(id).ok().flatten().map(|v| v.cloned().collect()).unwrap_or_default()
    };
    let a = get(append);
    if a.is_empty() {
        get(list)
    } else {
        a
    }
}

/// `--tags`/`--tag` argument pair with the given names.
pub fn tag_args(cmd: Command, list: &'static str, append: &'static str, help: &'static str) -> Command {
    cmd.arg(Arg::new(list).long(list).num_args(0..).value_parser(parse_tag).conflicts_with(append).help(help))
        .arg(Arg::new(append).long(append).action(ArgAction::Append).value_parser(parse_tag).help(help))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100GB"), Ok(100 << 30));
        assert_eq!(parse_size("5MB"), Ok(5 << 20));
        assert_eq!(parse_size("1kiB"), Ok(1000));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
    }
}
