//! Phases 3-6 of a recovery: the recovery settings (`restore_command` and the targets)
//! appended to `postgresql.auto.conf`, the signal file (`recovery.signal` or
//! `standby.signal`), and Barman's configuration safety pass: options that would harm the
//! recovered server commented out with `#BARMAN#` (the original kept as `<file>.origin`)
//! and options the user must review listed.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use barman_common::catalogue::format_py_datetime;

use super::plan::Plan;
use super::wal;
use crate::output::Output;
use crate::CmdError;

/// The options Barman's safety pass rewrites (`None`: only commented out).
const OPTIONS_TO_MANGLE: [(&str, Option<&str>); 9] = [
    ("archive_command", Some("false")),
    ("recovery_target", None),
    ("recovery_target_name", None),
    ("recovery_target_time", None),
    ("recovery_target_xid", None),
    ("recovery_target_lsn", None),
    ("recovery_target_inclusive", None),
    ("recovery_target_timeline", None),
    ("recovery_target_action", None),
];

/// Options the user must review after a recovery.
const DANGEROUS_OPTIONS: [&str; 14] = [
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "external_pid_file",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_crl_file",
    "unix_socket_directory",
    "unix_socket_directories",
    "include",
    "include_dir",
    "include_if_exists",
];

/// One line of the IMPORTANT/WARNING blocks: file, 0-based line, key, value.
pub struct Assertion {
    file: String,
    line: usize,
    key: String,
    value: String,
}

/// What the safety pass did and found.
#[derive(Default)]
pub struct Findings {
    /// Options rewritten (the IMPORTANT block).
    changes: Vec<Assertion>,
    /// Options to review (the WARNING block).
    warnings: Vec<Assertion>,
}

impl Findings {
    /// The IMPORTANT and WARNING blocks, each only when it has lines.
    pub fn print(&self, out: &mut Output) {
        block(out, "IMPORTANT", "These settings have been modified to prevent data losses", &self.changes);
        block(
            out,
            "WARNING",
            "You are required to review the following options as potentially dangerous",
            &self.warnings,
        );
    }
}

/// One titled block of assertions.
fn block(out: &mut Output, title: &str, intro: &str, items: &[Assertion]) {
    if items.is_empty() {
        return;
    }
    out.info("");
    out.info(title.to_owned());
    out.info(intro.to_owned());
    out.info("");
    for a in items {
        out.info(format!("{} line {}: {} = {}", a.file, a.line, a.key, a.value));
    }
}

/// The recovery settings lines for a PITR, get-wal or standby recovery (none otherwise),
/// with the signal file created in `root`.
pub fn recovery_configuration(plan: &Plan<'_>, root: &Path, out: &mut Output) -> Result<Vec<String>, CmdError> {
    let opts = plan.opts;
    if !(plan.targets.is_pitr || plan.get_wal || opts.standby_mode) {
        return Ok(Vec::new());
    }
    out.info("Generating recovery configuration");
    let mut lines = wal::restore_lines(plan, out);
    lines.extend(target_lines(plan));
    let signal = if opts.standby_mode { "standby.signal" } else { "recovery.signal" };
    File::create(root.join(signal))?;
    Ok(lines)
}

/// The `recovery_target*` lines.
fn target_lines(plan: &Plan<'_>) -> Vec<String> {
    let opts = plan.opts;
    let mut lines = Vec::new();
    if let Some(dt) = &plan.targets.datetime {
        lines.push(format!("recovery_target_time = '{}'", format_py_datetime(dt)));
    }
    if let Some(x) = &opts.target_xid {
        lines.push(format!("recovery_target_xid = '{x}'"));
    }
    if let Some(l) = &opts.target_lsn {
        lines.push(format!("recovery_target_lsn = '{l}'"));
    }
    if let Some(n) = &opts.target_name {
        lines.push(format!("recovery_target_name = '{n}'"));
    }
    if opts.target_immediate {
        lines.push("recovery_target = 'immediate'".into());
    }
    if opts.exclusive && (opts.target_xid.is_some() || opts.target_time.is_some() || opts.target_lsn.is_some()) {
        lines.push("recovery_target_inclusive = 'False'".into());
    }
    // The value as given (`current`, `latest` or a number), as Barman writes it.
    if let Some(tli) = &opts.target_tli {
        lines.push(format!("recovery_target_timeline = {tli}"));
    }
    if let Some(a) = opts.target_action.as_ref().filter(|_| plan.targets.is_pitr) {
        lines.push(format!("recovery_target_action = '{a}'"));
    }
    lines
}

/// Phase 6: the safety pass over `postgresql.conf`, `postgresql.auto.conf` and the
/// recovery configuration file `conf` (`postgresql.auto.conf` unless
/// `--recovery-conf-filename`; created 0600 when settings must be appended to it), `lines`
/// appended to `conf`.
pub fn safety_pass(root: &Path, conf: &str, lines: &[String], out: &mut Output) -> Result<Findings, CmdError> {
    out.info("Identify dangerous settings in destination directory.");
    let conf_path = root.join(conf);
    if !lines.is_empty() && !conf_path.exists() {
        File::create(&conf_path)?;
        fs::set_permissions(&conf_path, fs::Permissions::from_mode(0o600))?;
    }
    let mut findings = Findings::default();
    let mut files = vec!["postgresql.conf", "postgresql.auto.conf"];
    if !files.contains(&conf) {
        files.push(conf);
    }
    for file in files {
        let path = root.join(file);
        if !path.exists() {
            continue;
        }
        let append = if file == conf { lines } else { &[] };
        findings.changes.extend(mangle(&path, append)?);
        findings.warnings.extend(detect_issues(&path)?);
    }
    Ok(findings)
}

/// Barman's `PG_CONF_SETTING_RE` (`^\s*([^\s=]+)\s*=?\s*(.*)$`): key and value.
fn setting(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    let end = t.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let (key, rest) = t.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((key, rest.trim_end_matches(['\n', '\r'])))
}

/// The file name shown in the assertions.
fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The safety pass over one file (original kept as `<file>.origin`), appending `append`.
fn mangle(path: &Path, append: &[String]) -> Result<Vec<Assertion>, CmdError> {
    let content = fs::read(path)?;
    let text = String::from_utf8_lossy(&content);
    let file = file_name(path);
    let origin = PathBuf::from(format!("{}.origin", path.display()));
    fs::rename(path, &origin)?;
    let mut mangled = String::with_capacity(text.len() + 256);
    let mut changes = Vec::new();
    let mut last: Option<&str> = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if let Some((key, _)) = setting(line) {
            if let Some((_, value)) = OPTIONS_TO_MANGLE.iter().find(|(k, _)| *k == key) {
                mangled.push_str("#BARMAN#");
                mangled.push_str(line);
                if let Some(v) = value {
                    mangled.push_str(&format!("{key} = {v}\n"));
                }
                let value = value.unwrap_or("None").to_owned();
                changes.push(Assertion { file: file.clone(), line: n, key: key.to_owned(), value });
                continue;
            }
        }
        last = Some(line);
        mangled.push_str(line);
    }
    if !append.is_empty() {
        // Barman compares `last_line[-1]` (an int for bytes) with b"\n": always unequal, so
        // a newline is always added after a file with any unmangled line.
        if last.is_some_and(|l| !l.is_empty()) {
            mangled.push('\n');
        }
        mangled.push_str(&append.join("\n"));
        mangled.push('\n');
    }
    fs::write(path, mangled)?;
    fs::set_permissions(path, fs::metadata(&origin)?.permissions())?;
    Ok(changes)
}

/// Options the user must review (Barman's `ConfigIssueDetection`).
fn detect_issues(path: &Path) -> Result<Vec<Assertion>, CmdError> {
    let text = fs::read_to_string(path)?;
    let file = file_name(path);
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let (key, value) = setting(line)?;
            DANGEROUS_OPTIONS.contains(&key).then(|| Assertion {
                file: file.clone(),
                line: n,
                key: key.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_parsed_like_barman() {
        assert_eq!(setting("archive_command = 'x %p'\n"), Some(("archive_command", "'x %p'")));
        assert_eq!(setting("  port=5432"), Some(("port", "5432")));
        assert_eq!(setting("#archive_command = 'x'"), Some(("#archive_command", "'x'")));
        assert_eq!(setting("   \n"), None);
    }

    #[test]
    fn mangle_comments_archive_command_and_appends() {
        let dir = std::env::temp_dir().join(format!("recover-mangle-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("test");
        let conf = dir.join("postgresql.auto.conf");
        fs::write(&conf, "port = 5\narchive_command = 'cp %p /x'\nrecovery_target_name = 'a'").expect("test");
        let changes = mangle(&conf, &["restore_command = 'cp'".to_owned()]).expect("test");
        let text = fs::read_to_string(&conf).expect("test");
        assert_eq!(
            text,
            "port = 5\n#BARMAN#archive_command = 'cp %p /x'\narchive_command = false\n\
             #BARMAN#recovery_target_name = 'a'\nrestore_command = 'cp'\n"
        );
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].line, changes[0].value.as_str()), (1, "false"));
        assert!(dir.join("postgresql.auto.conf.origin").exists());
        fs::remove_dir_all(&dir).expect("test");
    }
}
