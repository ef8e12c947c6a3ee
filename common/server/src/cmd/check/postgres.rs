//! The checks that need the live PostgreSQL status: the connections and privileges
//! (`PostgreSQLConnection` and `StreamingConnection` checks), the replication slot
//! (`check_wal_streaming`), the postgres backup executor's tools and the system identifier
//! stored in the catalogue (`check_identity`).

use serde_json::Value;

use barman_common::remote::sibling_installed;

use super::results::Checks;
use super::subject::Subject;
use crate::cmd::live::Remote;

/// The PostgreSQL connection, backup privileges, streaming connection and `wal_level`.
pub fn check_postgres(remote: &Remote, c: &mut Checks) {
    if remote.server_txt_version.is_none() {
        c.add("PostgreSQL", false, None);
        return;
    }
    c.ok("PostgreSQL");
    if let Some(priv_ok) = remote.has_backup_privileges {
        if priv_ok {
            c.ok("superuser or standard user with backup privileges");
        } else {
            c.fail("no access to backup functions", backup_privileges_hint(&remote.missing_backup_privileges));
        }
    }
    if let Some(st) = &remote.streaming {
        c.add("PostgreSQL streaming", st.streaming, if st.streaming { None } else { st.connection_error.clone() });
    }
    if let Some(level) = &remote.wal_level {
        if level == "minimal" {
            c.fail("wal_level", "please set it to a higher level than 'minimal'");
        } else {
            c.ok("wal_level");
        }
    }
}

/// Barman's hint, followed by the grants found missing (Barman's check names none).
fn backup_privileges_hint(missing: &[String]) -> String {
    let hint = "privileges for PostgreSQL backup functions are required (see documentation)";
    if missing.is_empty() {
        hint.to_owned()
    } else {
        format!("{hint}: missing {}", missing.join(", "))
    }
}

/// `check_wal_streaming`'s slot part: with the streaming archiver the configured slot must
/// exist, be initialised and active; without it, a live slot only earns a warning.
pub fn check_replication_slot(s: &Subject<'_>, remote: &Remote, c: &mut Checks) {
    const NAME: &str = "replication slot";
    let Some(slot_name) = &s.cfg.slot_name else { return };
    if !s.cfg.streaming_archiver {
        if let Some(slot) = remote.slot.as_ref().filter(|slot| slot.initialised) {
            let state = if slot.active { "active" } else { "initialised" };
            let hint = format!("WARNING: slot '{slot_name}' is {state} but not required by the current config");
            c.add(NAME, true, Some(hint));
        }
        return;
    }
    match &remote.slot {
        None => c.fail(
            NAME,
            format!(
                "replication slot '{slot_name}' doesn't exist. Please execute \
                 'barman receive-wal --create-slot {}'",
                s.cfg.name()
            ),
        ),
        Some(slot) if !slot.initialised => {
            c.fail(NAME, format!("slot '{slot_name}' not initialised: is 'receive-wal' running?"));
        }
        Some(slot) if !slot.active => c.fail(NAME, format!("slot '{slot_name}' not active: is 'receive-wal' running?")),
        Some(_) => c.ok(NAME),
    }
}

/// `PostgresBackupExecutor.check`: our `barman-backup` plays pg_basebackup's part.
pub fn check_backup_executor(remote: &Remote, c: &mut Checks) {
    let found = sibling_installed("barman-backup");
    c.add("pg_basebackup", found, None);
    // As Barman: compatibility cannot be known without the server's version, nor when the
    // streaming connection is refused.
    if found && remote.server_txt_version.is_some() && remote.streaming_works() {
        c.ok("pg_basebackup compatible");
    } else {
        let pg = if remote.streaming_works() {
            remote.server_txt_version.as_deref().unwrap_or(if found { "None" } else { "Unknown" })
        } else {
            "None"
        };
        let client = if found { pg_basebackup_version() } else { "Unknown".to_owned() };
        c.fail("pg_basebackup compatible", format!("PostgreSQL version: {pg}, pg_basebackup version: {client}"));
    }
    if remote.server_txt_version.is_none() {
        return;
    }
    if found {
        c.ok("pg_basebackup supports tablespaces mapping");
    } else {
        c.add(
            "pg_basebackup supports tablespaces mapping",
            true,
            Some("pg_basebackup 9.4 or higher is required for tablespaces support".into()),
        );
    }
}

/// `check_identity`: the system identifiers PostgreSQL and the streaming connection report
/// agree with each other and with the one stored in the catalogue (live servers only;
/// the others have none to compare).
pub fn check_identity(s: &Subject<'_>, remote: &Remote, c: &mut Checks) {
    const NAME: &str = "systemid coherence";
    if !s.live {
        c.add(NAME, true, Some("no system Id available".into()));
        return;
    }
    let streaming = remote.streaming.as_ref().and_then(|st| st.systemid.clone());
    let postgres = remote.postgres_systemid.clone();
    if let (Some(st), Some(pg)) = (&streaming, &postgres) {
        if st != pg {
            c.fail(NAME, "is the streaming DSN targeting the same server of the PostgreSQL connection string?");
            return;
        }
    }
    let Some(live) = streaming.or(postgres) else {
        c.add(NAME, true, Some("no system Id available".into()));
        return;
    };
    let path = s.layout.identity_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        c.add(NAME, true, Some("no system Id stored on disk".into()));
        return;
    };
    let stored = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("systemid").and_then(Value::as_str).map(str::to_owned));
    if stored.as_deref() == Some(live.as_str()) {
        c.ok(NAME);
    } else {
        c.fail(
            NAME,
            format!("the system Id of the connected PostgreSQL server changed, stored in \"{}\"", path.display()),
        );
    }
}

/// The version `pg_basebackup --version` on `PATH` reports (what Barman prints beside the
/// server's), `None` when there is none.
fn pg_basebackup_version() -> String {
    std::process::Command::new("pg_basebackup")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().last().map(str::to_owned))
        .unwrap_or_else(|| "None".to_owned())
}
