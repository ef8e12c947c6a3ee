//! Command line of `barman-cloud-restore`, option for option as Barman 3.20.1's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use barman_cloud::args;
use barman_cloud::restore::Options;
use barman_cloud::CloudError;
use barman_common::catalogue::parse_py_datetime;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Snapshot recovery is refused loudly (exit 3).
const REFUSED: [&str; 5] =
    ["snapshot-recovery-instance", "snapshot-recovery-zone", "aws-region", "gcp-zone", "azure-resource-group"];

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let value = |name: &'static str, help: &'static str| Arg::new(name).long(name).help(help);
    let cmd = Command::new("barman-cloud-restore")
        .about("Restore a backup made by barman-cloud-backup from cloud storage; AWS S3, Azure Blob Storage and Google Cloud Storage")
        .after_help("Exit status: 0 restored; 1 operation failed (no such backup, destination not empty); 2 network error; 3 command line; 4 other error.");
    args::common(cmd, "source_url")
        .arg(Arg::new("backup_id").required(true).help("the backup ID (or name, shortcut, or 'auto' with --target-*)"))
        .arg(
            Arg::new("recovery_dir")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("the path to a directory for recovery."),
        )
        .arg(
            Arg::new("tablespace")
                .long("tablespace")
                .action(ArgAction::Append)
                .value_name("NAME:LOCATION")
                .help("tablespace relocation rule"),
        )
        .arg(value("snapshot-recovery-instance", "snapshot recovery (not supported: refused)"))
        .arg(value("snapshot-recovery-zone", "snapshot recovery (not supported: refused)"))
        .arg(args::sse_customer_key())
        .arg(value("aws-region", "snapshot recovery (not supported: refused)"))
        .arg(value("gcp-zone", "snapshot recovery (not supported: refused)"))
        .arg(value("azure-resource-group", "snapshot recovery (not supported: refused)"))
        .arg(value("target-tli", "target timeline"))
        .arg(value("target-lsn", "target LSN (Log Sequence Number)").conflicts_with("target-time"))
        .arg(value(
            "target-time",
            "target time. You can use any valid unambiguous representation. e.g: \"YYYY-MM-DD HH:MM:SS.mmm\"",
        ))
}

fn tablespace_map(rules: &[String]) -> Result<BTreeMap<String, PathBuf>, CloudError> {
    rules
        .iter()
        .map(|r| {
            r.split_once(':').map(|(n, l)| (n.to_owned(), PathBuf::from(l))).ok_or_else(|| {
                CloudError::Usage(format!(
                    "Invalid tablespace relocation rule '{r}'\nHINT: The valid syntax for a relocation rule is NAME:LOCATION"
                ))
            })
        })
        .collect()
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    args::refused(m, &REFUSED)?;
    let s = |k: &str| m.get_one::<String>(k).cloned();
    let rules: Vec<String> = m.get_many::<String>("tablespace").map(|v| v.cloned().collect()).unwrap_or_default();
    let target_time = s("target-time")
        .map(|t| parse_py_datetime(&t).ok_or_else(|| CloudError::Usage(format!("invalid --target-time '{t}'"))))
        .transpose()?;
    let target_lsn = s("target-lsn")
        .map(|l| l.parse().map_err(|_| CloudError::Usage(format!("invalid --target-lsn '{l}'"))))
        .transpose()?;
    let target_tli = s("target-tli")
        .map(|t| {
            t.parse::<u32>().map_err(|_| {
                CloudError::Usage(format!(
                    "--target-tli '{t}' is not supported by this implementation yet (numbers only)"
                ))
            })
        })
        .transpose()?;
    Ok(Options {
        connect: args::connect_options(m, "source_url")?,
        server: s("server_name").unwrap_or_default(),
        backup_id: s("backup_id").unwrap_or_default(),
        dest: m.get_one::<PathBuf>("recovery_dir").cloned().unwrap_or_default(),
        tablespaces: tablespace_map(&rules)?,
        target_time,
        target_lsn,
        target_tli,
        test: m.get_flag("test"),
    })
}
