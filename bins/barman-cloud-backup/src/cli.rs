//! Command line of `barman-cloud-backup`, option for option as Barman 3.20.1's.

use std::time::Duration;

use barman_cloud::args;
use barman_cloud::backup::{build_conninfo, Options};
use barman_cloud::CloudError;
use barman_common::compress::Codec;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Options accepted for parity but not implemented (refused loudly, exit 3): snapshot
/// backups and provider features `object_store` does not offer.
const REFUSED: [&str; 16] = [
    "snapshot-instance",
    "snapshot-disk",
    "snapshot-zone",
    "snapshot-gcp-project",
    "gcp-project",
    "kms-key-name",
    "gcp-zone",
    "aws-region",
    "aws-await-snapshots-timeout",
    "aws-snapshot-lock-mode",
    "aws-snapshot-lock-cool-off-period",
    "aws-snapshot-lock-expiration-date",
    "aws-snapshot-lock-duration",
    "encryption-scope",
    "azure-subscription-id",
    "azure-resource-group",
];

fn check_backup_name(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("Backup name cannot be empty".into());
    }
    if barman_common::catalogue::BackupId::new_strict(v).is_ok() {
        return Err(format!("Backup name '{v}' is not allowed: backup ID"));
    }
    if ["latest", "last", "oldest", "first", "last-failed"].contains(&v) {
        return Err(format!("Backup name '{v}' is not allowed: reserved word"));
    }
    Ok(v.to_owned())
}

fn value(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).help(help)
}

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue).group("compression");
    let cmd = Command::new("barman-cloud-backup")
        .about("Back up a local PostgreSQL server straight into cloud storage; AWS S3, Azure Blob Storage and Google Cloud Storage")
        .after_help("Exit status: 0 backup DONE; 1 backup failed (backup.info says FAILED); 2 network error; 3 command line; 4 other error.");
    let cmd = args::common(cmd, "destination_url")
        .arg(flag("gzip").short('z').help("gzip-compress the backup while uploading to the cloud"))
        .arg(flag("bzip2").short('j').help("bzip2-compress the backup while uploading to the cloud"))
        .arg(flag("snappy").help("snappy-compress the backup while uploading to the cloud"))
        .arg(flag("lz4").help("lz4-compress the backup while uploading to the cloud"))
        .arg(flag("zstd").help("zstd-compress the backup while uploading to the cloud"))
        .group(clap::ArgGroup::new("compression").multiple(false))
        .arg(Arg::new("host").short('h').long("host").help("host or Unix socket for PostgreSQL connection (default: libpq settings)"))
        .arg(Arg::new("port").short('p').long("port").help("port for PostgreSQL connection (default: libpq settings)"))
        .arg(Arg::new("user").short('U').long("user").help("user name for PostgreSQL connection (default: libpq settings)"))
        .arg(Arg::new("immediate-checkpoint").long("immediate-checkpoint").action(ArgAction::SetTrue).help("forces the initial checkpoint to be done as quickly as possible"))
        .arg(Arg::new("jobs").short('J').long("jobs").value_parser(args::parse_positive).default_value("2").help("number of parts uploaded in parallel (default: 2)"))
        .arg(Arg::new("keepalive-interval").long("keepalive-interval").value_parser(clap::value_parser!(u64)).default_value("60").help("seconds between heartbeat queries keeping the PostgreSQL connection alive during the upload (0: off)"))
        .arg(Arg::new("max-archive-size").short('S').long("max-archive-size").value_parser(args::parse_size).default_value("100GB").help("maximum size of an archive when uploading to cloud storage (default: 100GB)"))
        .arg(Arg::new("min-chunk-size").long("min-chunk-size").value_parser(args::parse_size).help("minimum size of an individual chunk when uploading to cloud storage"))
        .arg(Arg::new("max-bandwidth").long("max-bandwidth").value_parser(args::parse_size).help("the maximum amount of data to be uploaded per second"))
        .arg(Arg::new("dbname").short('d').long("dbname").default_value("postgres").help("Database name or conninfo string for Postgres connection (default: postgres)"))
        .arg(Arg::new("name").short('n').long("name").value_parser(check_backup_name).help("a name which can be used to reference this backup"))
        .arg(value("snapshot-instance", "snapshot backups (not supported: refused)"))
        .arg(value("snapshot-disk", "snapshot backups (not supported: refused)").action(ArgAction::Append).value_name("NAME"))
        .arg(value("snapshot-zone", "snapshot backups (not supported: refused)"))
        .arg(value("snapshot-gcp-project", "snapshot backups (not supported: refused)"))
        .arg(value("gcp-project", "snapshot backups (not supported: refused)"))
        .arg(value("kms-key-name", "GCP KMS key (not supported: refused)"))
        .arg(value("gcp-zone", "snapshot backups (not supported: refused)"))
        .arg(Arg::new("encryption").short('e').long("encryption").value_parser(["AES256", "aws:kms"]).help("The encryption algorithm used when storing the uploaded data in S3"))
        .arg(value("sse-kms-key-id", "The AWS KMS key ID for aws:kms encryption"))
        .arg(args::sse_customer_key())
        .arg(value("aws-region", "snapshot backups (not supported: refused)"))
        .arg(value("aws-await-snapshots-timeout", "snapshot backups (not supported: refused)"))
        .arg(value("aws-snapshot-lock-mode", "snapshot backups (not supported: refused)").value_parser(["governance", "compliance"]))
        .arg(value("aws-snapshot-lock-cool-off-period", "snapshot backups (not supported: refused)"))
        .arg(value("aws-snapshot-lock-expiration-date", "snapshot backups (not supported: refused)").conflicts_with("aws-snapshot-lock-duration"))
        .arg(value("aws-snapshot-lock-duration", "snapshot backups (not supported: refused)"))
        .arg(value("encryption-scope", "Azure encryption scope (not supported: refused)"))
        .arg(value("azure-subscription-id", "snapshot backups (not supported: refused)"))
        .arg(value("azure-resource-group", "snapshot backups (not supported: refused)"));
    args::tag_args(cmd, "tags", "tag", "Tags to be added to all uploaded files in cloud storage")
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    args::refused(m, &REFUSED)?;
    let s = |k: &str| m.get_one::<String>(k).cloned();
    let compression = ["gzip", "bzip2", "snappy", "lz4", "zstd"]
        .into_iter()
        .find(|f| m.get_flag(f))
        .map(|f| Codec::from_barman_name(f).map_err(|e| CloudError::Usage(e.to_string())))
        .transpose()?;
    let mut connect = args::connect_options(m, "destination_url")?;
    connect.tags = args::tags(m, "tags", "tag");
    connect.jobs = m.get_one::<usize>("jobs").copied().unwrap_or(2);
    if std::env::var("BARMAN_HOOK").is_ok() && std::env::var("BARMAN_PHASE").is_ok() {
        return Err(CloudError::Usage(
            "barman-cloud-backup as a backup hook script is not supported by this implementation yet".into(),
        ));
    }
    Ok(Options {
        connect,
        server: s("server_name").unwrap_or_default(),
        conninfo: build_conninfo(
            s("host").as_deref(),
            s("port").as_deref(),
            s("user").as_deref(),
            &s("dbname").unwrap_or_default(),
        ),
        compression,
        immediate: m.get_flag("immediate-checkpoint"),
        max_archive_size: m.get_one::<u64>("max-archive-size").copied().unwrap_or(100 << 30),
        min_chunk_size: m.get_one::<u64>("min-chunk-size").copied(),
        max_bandwidth: m.get_one::<u64>("max-bandwidth").copied(),
        name: s("name"),
        keepalive: Duration::from_secs(m.get_one::<u64>("keepalive-interval").copied().unwrap_or(60)),
        test: m.get_flag("test"),
    })
}
