//! Command line of `barman-cloud-wal-archive`, option for option as Barman 3.20.1's.

use std::path::PathBuf;

use barman_cloud::args;
use barman_cloud::wal_archive::Options;
use barman_cloud::CloudError;
use barman_common::compress::{Codec, Level};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Options accepted for parity but not implemented (refused loudly).
const REFUSED: [&str; 5] =
    ["kms-key-name", "encryption-scope", "max-block-size", "max-concurrency", "max-single-put-size"];

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let flag = |name: &'static str| Arg::new(name).long(name).action(ArgAction::SetTrue).group("compression");
    let cmd = Command::new("barman-cloud-wal-archive")
        .about("Ship a WAL file to the cloud (archive_command helper); AWS S3, Azure Blob Storage and Google Cloud Storage")
        .after_help("Exit status: 0 archived; 1 operation failed; 2 network error; 3 invalid WAL name or command line; 4 other error.");
    let cmd = args::common(cmd, "destination_url")
        .arg(
            Arg::new("wal_path")
                .value_parser(clap::value_parser!(PathBuf))
                .help("the value of the '%p' keyword (according to 'archive_command')"),
        )
        .arg(flag("gzip").short('z').help("gzip-compress the WAL while uploading to the cloud"))
        .arg(flag("bzip2").short('j').help("bzip2-compress the WAL while uploading to the cloud"))
        .arg(flag("xz").help("xz-compress the WAL while uploading to the cloud"))
        .arg(flag("snappy").help("snappy-compress the WAL while uploading to the cloud"))
        .arg(flag("zstd").help("zstd-compress the WAL while uploading to the cloud"))
        .arg(flag("lz4").help("lz4-compress the WAL while uploading to the cloud"))
        .group(clap::ArgGroup::new("compression").multiple(false))
        .arg(
            Arg::new("compression-level")
                .long("compression-level")
                .allow_hyphen_values(true)
                .help("A compression level for the specified compression algorithm"),
        )
        .arg(Arg::new("kms-key-name").long("kms-key-name").help("The name of the GCP KMS key (not supported: refused)"))
        .arg(
            Arg::new("encryption")
                .short('e')
                .long("encryption")
                .value_parser(["AES256", "aws:kms"])
                .value_name("ENCRYPTION")
                .help("The encryption algorithm used when storing the uploaded data in S3"),
        )
        .arg(Arg::new("sse-kms-key-id").long("sse-kms-key-id").help("The AWS KMS key ID for aws:kms encryption"))
        .arg(args::sse_customer_key())
        .arg(
            Arg::new("encryption-scope")
                .long("encryption-scope")
                .help("Azure encryption scope (not supported: refused)"),
        )
        .arg(Arg::new("max-block-size").long("max-block-size").help("Azure chunk size (not supported: refused)"))
        .arg(
            Arg::new("max-concurrency")
                .long("max-concurrency")
                .help("Azure chunk concurrency (not supported: refused)"),
        )
        .arg(
            Arg::new("max-single-put-size")
                .long("max-single-put-size")
                .help("Azure single-put limit (not supported: refused)"),
        );
    let cmd = args::tag_args(cmd, "tags", "tag", "Tags to be added to archived WAL files in cloud storage");
    args::tag_args(cmd, "history-tags", "history-tag", "Tags to be added to archived history files in cloud storage")
}

/// `--compression-level`: `low`, `medium`, `high` or an integer.
pub fn level(m: &ArgMatches) -> Result<Level, CloudError> {
    Ok(match m.get_one::<String>("compression-level").map(String::as_str) {
        None | Some("medium") => Level::Medium,
        Some("low") => Level::Low,
        Some("high") => Level::High,
        Some(n) => Level::Int(n.parse().map_err(|_| CloudError::Usage(format!("invalid compression level '{n}'")))?),
    })
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    args::refused(m, &REFUSED)?;
    let compression = ["gzip", "bzip2", "xz", "snappy", "zstd", "lz4"]
        .into_iter()
        .find(|f| m.get_flag(f))
        .map(|f| Codec::from_barman_name(f).map_err(|e| CloudError::Usage(e.to_string())))
        .transpose()?;
    let mut connect = args::connect_options(m, "destination_url")?;
    connect.tags = args::tags(m, "tags", "tag");
    Ok(Options {
        connect,
        server: m.get_one::<String>("server_name").cloned().unwrap_or_default(),
        wal_path: m.get_one::<PathBuf>("wal_path").cloned(),
        compression,
        level: level(m)?,
        history_tags: args::tags(m, "history-tags", "history-tag"),
        test: m.get_flag("test"),
    })
}
