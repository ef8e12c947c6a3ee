//! Connection service files (`service=name` / `PGSERVICE`), as libpq reads them: the user's
//! file (`PGSERVICEFILE`, else `~/.pg_service.conf`) first, then the system one
//! (`$PGSYSCONFDIR/pg_service.conf`, Debian's libpq default directory
//! `/etc/postgresql-common`). The first file with a `[name]` section wins; its settings fill
//! the options the connection string left unset, before the environment.

use std::fs;
use std::path::{Path, PathBuf};

use super::PgError;

/// Debian's libpq `SYSCONFDIR`.
pub const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// The `key=value` settings of service `name`, in file order.
pub fn lookup(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<Vec<(String, String)>, PgError> {
    let user_file = env("PGSERVICEFILE").map(PathBuf::from).or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let system_file =
        Path::new(&env("PGSYSCONFDIR").unwrap_or_else(|| DEFAULT_SYSCONFDIR.to_owned())).join("pg_service.conf");
    for file in user_file.into_iter().chain(std::iter::once(system_file)) {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        if let Some(settings) = section(&file, &text, name)? {
            return Ok(settings);
        }
    }
    Err(PgError::ConnInfo(format!("definition of service \"{name}\" not found")))
}

/// The settings of section `[name]` in `text`, `None` when the file has no such section.
fn section(file: &Path, text: &str, name: &str) -> Result<Option<Vec<(String, String)>>, PgError> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            inside = header.strip_suffix(']').is_some_and(|h| h == name);
            if inside {
                found = Some(Vec::new());
            }
            continue;
        }
        if !inside {
            continue;
        }
        let syntax =
            || PgError::ConnInfo(format!("syntax error in service file \"{}\", line {}", file.display(), number + 1));
        let (key, value) = line.split_once('=').ok_or_else(syntax)?;
        let key = key.trim();
        if key == "service" {
            return Err(PgError::ConnInfo(format!(
                "nested service specifications not supported in service file \"{}\", line {}",
                file.display(),
                number + 1
            )));
        }
        if key.is_empty() {
            return Err(syntax());
        }
        found.get_or_insert_with(Vec::new).push((key.to_owned(), value.trim().to_owned()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_file_then_system_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(".pg_service.conf"), "# mine\n[pg]\nhost=h1\nport = 5433\n[other]\nhost=x\n")
            .expect("write");
        let sys = dir.path().join("sys");
        fs::create_dir(&sys).expect("mkdir");
        fs::write(sys.join("pg_service.conf"), "[pg]\nhost=never\n[sysonly]\ndbname=d\n").expect("write");
        let sys_str = sys.display().to_string();
        let env = |k: &str| (k == "PGSYSCONFDIR").then(|| sys_str.clone());
        let pg = lookup("pg", &env, Some(dir.path())).expect("found");
        assert_eq!(pg, vec![("host".into(), "h1".into()), ("port".into(), "5433".into())]);
        assert_eq!(lookup("sysonly", &env, Some(dir.path())).expect("found"), vec![("dbname".into(), "d".into())]);
        let e = lookup("nope", &env, Some(dir.path())).expect_err("missing");
        assert!(e.to_string().contains("definition of service \"nope\" not found"), "{e}");
        fs::write(dir.path().join(".pg_service.conf"), "[bad]\nhost\n").expect("write");
        assert!(lookup("bad", &env, Some(dir.path())).expect_err("syntax").to_string().contains("line 2"));
    }
}
