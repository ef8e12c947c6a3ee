//! GPG encryption of a finished tar-format backup, as Barman 3.20.1 does it.

use std::path::{Path, PathBuf};

use barman_common::gpg::KeyId;

/// Barman's `_encrypt_tar_backup`: every `*.tar` and `*.tar.<ext>` of the data directory
/// becomes `<name>.gpg` (`backup_manifest` stays in clear).
pub(super) fn encrypt_archives(data: &Path, key: &KeyId) -> Result<(), String> {
    let entries = std::fs::read_dir(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let mut tars: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_tar_name))
        .collect();
    tars.sort();
    for tar in tars {
        barman_common::gpg::encrypt_file(key, &tar).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `re.search(r"\.tar(\.[^.]+)?$", name)`.
fn is_tar_name(name: &str) -> bool {
    match name.rfind(".tar") {
        Some(i) => {
            let rest = &name[i + 4..];
            rest.is_empty() || (rest.starts_with('.') && rest.len() > 1 && !rest[1..].contains('.'))
        }
        None => false,
    }
}
