//! Command line of `barman-cloud-backup-delete`, option for option as Barman 3.20.1's.

use barman_cloud::args;
use barman_cloud::delete::Options;
use barman_cloud::CloudError;
use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Command};

/// The clap definition (also used to generate the man page).
pub fn command() -> Command {
    let cmd = Command::new("barman-cloud-backup-delete")
        .about(
            "Delete backups made with barman-cloud-backup, by ID or by retention policy, with the WAL no longer needed",
        )
        .after_help(
            "Exit status: 0 done; 1 operation refused or failed; 2 network error; 3 command line; 4 other error.",
        );
    args::common(cmd, "source_url")
        .arg(args::sse_customer_key())
        .arg(Arg::new("backup-id").short('b').long("backup-id").help("Backup ID of the backup to be deleted"))
        .arg(Arg::new("minimum-redundancy").short('m').long("minimum-redundancy").value_parser(clap::value_parser!(u32)).default_value("0").help("The minimum number of backups that should always be available."))
        .arg(Arg::new("retention-policy").short('r').long("retention-policy").help("If specified, delete all backups eligible for deletion according to the supplied retention policy. Syntax: REDUNDANCY value | RECOVERY WINDOW OF value {DAYS | WEEKS | MONTHS}"))
        .group(ArgGroup::new("what").args(["backup-id", "retention-policy"]).required(true))
        .arg(Arg::new("dry-run").long("dry-run").action(ArgAction::SetTrue).help("Find the objects which need to be deleted but do not delete them"))
        .arg(Arg::new("batch-size").long("batch-size").value_parser(args::parse_positive).help("The maximum number of objects to be deleted in a single request (the store client batches on its own)"))
        .arg(Arg::new("check-object-lock").long("check-object-lock").action(ArgAction::SetTrue).help("Check for S3 Object Lock before deleting (not supported: refused)"))
}

/// Converts parsed arguments into [`Options`].
pub fn options(m: &ArgMatches) -> Result<Options, CloudError> {
    if m.get_flag("check-object-lock") {
        return Err(CloudError::Usage("option --check-object-lock is not supported by this implementation yet".into()));
    }
    let s = |k: &str| m.get_one::<String>(k).cloned();
    Ok(Options {
        connect: args::connect_options(m, "source_url")?,
        server: s("server_name").unwrap_or_default(),
        backup_id: s("backup-id"),
        policy: s("retention-policy"),
        minimum_redundancy: m.get_one::<u32>("minimum-redundancy").copied().unwrap_or(0),
        dry_run: m.get_flag("dry-run"),
        test: m.get_flag("test"),
    })
}
