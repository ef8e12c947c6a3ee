//! `barman generate-manifest SERVER BACKUP_ID`: writes the `backup_manifest` of a backup
//! that has none (rsync-method backups), as Barman's `BackupManifest.create_backup_manifest`:
//! one SHA256 entry per file of the data directory (walked top-down), `Last-Modified` in
//! UTC, and the `Manifest-Checksum` over everything before it; an existing manifest is an
//! error.

use std::path::Path;

use barman_common::catalogue::{python_json, Catalogue};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// The manifest text for `data` (the files found by the walk, paths relative to it).
pub fn manifest_text(data: &Path) -> Result<String, CmdError> {
    let mut files = Vec::new();
    crate::cmd::list_files::walk(data, false, &mut files)?;
    let mut text = String::from("{\"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    for path in &files {
        let meta = std::fs::metadata(path)?;
        let modified: chrono::DateTime<chrono::Utc> = meta.modified()?.into();
        let relative = path.strip_prefix(data).unwrap_or(path).to_string_lossy().trim_matches('/').to_owned();
        let entry = json!({
            "Size": meta.len(),
            "Last-Modified": modified.format("%Y-%m-%d %H:%M:%S").to_string(),
            "Checksum-Algorithm": "SHA256",
            "Path": relative,
            "Checksum": hex::encode(Sha256::digest(std::fs::read(path)?)),
        });
        text.push_str(&python_json(&entry, None, true));
        text.push_str(",\n");
    }
    // Barman drops the last ",\n" (with no files, the "[\n" it follows) and closes the list.
    text.truncate(text.len() - 2);
    text.push_str("],\n");
    let checksum = hex::encode(Sha256::digest(text.as_bytes()));
    text.push_str(&format!("\"Manifest-Checksum\": \"{checksum}\"}}\n"));
    Ok(text)
}

/// `generate-manifest SERVER BACKUP_ID`.
pub fn run(ctx: &Context, name: &str, backup: &str, out: &mut Output) -> Result<(), CmdError> {
    let server = ctx.server(name)?;
    let catalogue = Catalogue::load(&server.layout)?;
    let (id, _) = crate::cmd::resolve_backup(&catalogue, backup, name)?;
    let data = server.layout.backup_dir(id).join("data");
    let path = data.join("backup_manifest");
    if path.exists() {
        return Err(CmdError::Exception(format!("File {} already exists.", path.display())));
    }
    let text = manifest_text(&data)?;
    barman_common::durable::write_new(&path, text.as_bytes(), 0o600)?;
    // Barman prints the server as the one-element list its argument parsing left behind.
    out.info(format!("Backup manifest for backup '{backup}' successfully generated for server ['{name}']"));
    Ok(())
}
