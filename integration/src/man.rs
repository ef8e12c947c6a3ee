//! Man pages generated from each tool's clap definition (`cli::command()`), plus an EXIT
//! STATUS section with the tool's exit codes. `cargo run -p barman-integration --bin gen-man`
//! writes them into `man/`; a test checks the committed pages are current.

use anyhow::Result;

/// One page: file name and roff text.
pub struct Page {
    /// `barman.1`, ...
    pub file: String,
    /// The roff source.
    pub text: String,
}

const EXIT_STATUS_ARCHIVE: &str = "0\tthe WAL file is durable on the Barman host\n\
1\tthe remote put-wal failed (checksum, refused file)\n\
2\tlocal I/O error reading the file or feeding ssh\n\
3\tbad input, or ssh could not connect (ssh's 255 is mapped to 3 so PostgreSQL keeps retrying)";
const EXIT_STATUS_RESTORE: &str = "0\tthe WAL file was restored and verified\n\
1\tthe WAL file is not in the Barman catalogue\n\
2\tssh could not connect, or the received file failed verification\n\
3\tbad input: usage, unusable destination, invalid WAL name";
const EXIT_STATUS_RECEIVE: &str = "0\tstopped cleanly (SIGINT/SIGTERM, --endpos reached, slot command done)\n\
1\tstreaming or slot error reported by the server\n\
2\tthe server could not be reached or authentication failed\n\
3\tbad input: usage, connection string, or a directory holding another cluster's WAL";
const EXIT_STATUS_BACKUP: &str = "0\tthe backup was taken (WAITING_FOR_WALS or DONE)\n\
1\tthe backup failed and is marked FAILED with the reason\n\
2\tPostgreSQL could not be reached\n\
3\tbad input: usage, configuration, unknown server";
const EXIT_STATUS_RELAY: &str = "0\tthe passive copy is in sync, or there was nothing to do\n\
1\ta copy failed: the backup stays SYNCING (resumed by the next run) or, if it arrived corrupt, FAILED\n\
2\tthe primary could not be asked (ssh or sync-info failed)\n\
3\tbad input: usage, configuration, unknown or non-passive server";
const EXIT_STATUS_GATE: &str = "any\tthe allowed barman command's own exit status\n\
1\tthe ssh command is not allowed (logged to Barman's log file)\n\
2\tusage error, or barman could not be started";
const EXIT_STATUS_BARMAN: &str = "0\tsuccess\n\
1\tthe command failed (an ERROR line); get-wal: WAL file not found\n\
2\tusage error; check --nagios: CRITICAL\n\
3\tget-wal: invalid WAL file name or unusable output directory; an option Barman 3.20.1 has that is not supported yet (refused, never ignored)";

const EXIT_STATUS_CLOUD: &str = "0\tsuccess (for the WAL archiver: the object is stored, acknowledged by the store)\n\
1\tthe operation failed (for the WAL restorer: the WAL file is not in the bucket)\n\
2\tthe object store could not be reached\n\
3\tbad input: usage, an invalid option value, an option that is refused\n\
4\tany other error";

fn page(cmd: clap::Command, exit_status: &str) -> Result<Page> {
    let name = cmd.get_name().to_owned();
    let man = clap_mangen::Man::new(cmd);
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    let mut text = String::from_utf8(buf)?;
    text.push_str(".SH \"EXIT STATUS\"\n");
    for line in exit_status.lines() {
        let (code, meaning) = line.split_once('\t').unwrap_or((line, ""));
        text.push_str(&format!(".TP\n\\fB{code}\\fR\n{meaning}\n"));
    }
    Ok(Page { file: format!("{name}.1"), text })
}

/// Every page.
pub fn pages() -> Result<Vec<Page>> {
    Ok(vec![
        page(barman::cli::command(), EXIT_STATUS_BARMAN)?,
        page(barman_wal_archive::cli::command(), EXIT_STATUS_ARCHIVE)?,
        page(barman_wal_restore::cli::command(), EXIT_STATUS_RESTORE)?,
        page(barman_receive_wal::cli::command(), EXIT_STATUS_RECEIVE)?,
        page(barman_backup::cli::command(), EXIT_STATUS_BACKUP)?,
        page(barman_relay::cli::command(), EXIT_STATUS_RELAY)?,
        page(barman_ssh_gate::cli::command(), EXIT_STATUS_GATE)?,
        page(barman_cloud_wal_archive::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_wal_restore::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_backup::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_restore::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_backup_list::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_backup_show::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_backup_delete::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_backup_keep::cli::command(), EXIT_STATUS_CLOUD)?,
        page(barman_cloud_check_wal_archive::cli::command(), EXIT_STATUS_CLOUD)?,
    ])
}

/// The files generated beside the man pages: `barman.5` from the configuration option table,
/// and `barman`'s bash and zsh completion (clap_complete) under `completions/`.
pub fn extras() -> Result<Vec<Page>> {
    let mut files = vec![Page { file: "barman.5".into(), text: config_page() }];
    for (shell, file) in
        [(clap_complete::Shell::Bash, "completions/barman.bash"), (clap_complete::Shell::Zsh, "completions/_barman")]
    {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut barman::cli::command(), "barman", &mut buf);
        files.push(Page { file: file.into(), text: String::from_utf8(buf)? });
    }
    Ok(files)
}

/// roff-escapes a value (backslashes and leading dots).
fn roff(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

fn config_page() -> String {
    let mut text = String::from(
        ".TH barman 5 \"\" \"barman-rs\" \"File Formats\"\n.SH NAME\nbarman.conf \\- configuration of barman (barman-rs, Barman 3.20.1 compatible)\n\
         .SH SYNOPSIS\n\\fB/etc/barman.conf\\fR, \\fB~/.barman.conf\\fR, \\fB/etc/barman/barman.conf\\fR (the first found, or \\fB\\-c\\fR FILE), \
         then \\fIconfiguration_files_directory\\fR/*.conf\n\
         .SH DESCRIPTION\nAn INI file read as Barman 3.20.1 reads it: a \\fB[barman]\\fR section of global settings, one section per \
         server, and model sections (\\fBmodel = true\\fR). A server option set in \\fB[barman]\\fR applies to every server that does \
         not set it, when the option is marked \\fIinherited\\fR below. Options whose machinery is not implemented yet are refused \
         by \\fBbarman check\\fR (FAILED) and by the commands that would need them, never ignored.\n",
    );
    let options = barman_common::config::documented_options();
    for (title, global) in [("GLOBAL OPTIONS", true), ("SERVER OPTIONS", false)] {
        text.push_str(&format!(".SH \"{title}\"\n"));
        for o in options.iter().filter(|o| o.global_only == global) {
            text.push_str(&format!(".TP\n\\fB{}\\fR = \\fI{}\\fR\n", roff(o.name), roff(o.value)));
            let mut notes = Vec::new();
            if let Some(d) = o.default {
                notes.push(if d.is_empty() { "Default: empty.".to_owned() } else { format!("Default: {}.", roff(d)) });
            }
            if global {
                notes.push("In \\fB[barman]\\fR only.".to_owned());
            } else if o.inherited {
                notes.push("Inherited from \\fB[barman]\\fR.".to_owned());
            } else {
                notes.push("Per server only.".to_owned());
            }
            if o.model {
                notes.push("A model may set it.".to_owned());
            }
            text.push_str(&notes.join(" "));
            text.push('\n');
        }
    }
    text.push_str(".SH \"SEE ALSO\"\n\\fBbarman\\fR(1), \\fBbarman\\-backup\\fR(1), \\fBbarman\\-relay\\fR(1)\n");
    text
}
