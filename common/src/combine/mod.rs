//! Combining a chain of block-level incremental backups (PostgreSQL 17+) into one full
//! data directory, natively: what `pg_combinebackup` does, for every major, without a client
//! tool of the backup's version, and checked as it goes.
//!
//! The newest backup's file list is the result's: a file it holds whole is copied; an
//! `INCREMENTAL.<relfile>` ([`incremental`]) is rebuilt block by block from it and the older
//! backups, newest to oldest, down to the first full copy of the file (blocks nobody has are
//! zero-filled, as `reconstruct.c` does). Every file read from the catalogue is checked
//! against its own backup's `backup_manifest` (size and checksum) while it is read, so a
//! damaged link fails the combine naming the file, and nothing is read twice. The result gets
//! the newest `backup_label` without its `INCREMENTAL FROM` lines and a `backup_manifest`
//! (CRC-32C of every file written, the newest backup's WAL ranges) that `pg_verifybackup`
//! accepts. Before any file is written the chain itself is checked: one system identifier,
//! and each backup's label naming the start of the one before it.
//!
//! Files are written with mode 0600 and directories 0700; durability (one `syncfs` of each
//! destination) is the caller's, as for any recovery.

mod error;
pub mod incremental;
mod job;
mod label;
mod model;
mod source;
mod walk;

pub use error::CombineError;
pub use label::Label;
use model::Indexed;
pub use model::{Backup, Combined, Mode, Target};

/// Combines `chain` (oldest first, a full backup then its incrementals) into `target` with
/// `workers` files in flight.
pub fn combine(chain: &[Backup], target: &Target, mode: Mode, workers: usize) -> Result<Combined, CombineError> {
    let newest =
        chain.last().ok_or_else(|| CombineError::Chain { dir: target.root.clone(), reason: "empty".into() })?;
    let manifests = chain.iter().map(|b| Indexed::read(&b.data)).collect::<Result<Vec<_>, _>>()?;
    let system = manifests.last().and_then(|m| m.manifest.system_identifier);
    for (b, m) in chain.iter().zip(&manifests) {
        if m.manifest.system_identifier != system {
            return Err(CombineError::Chain {
                dir: b.data.clone(),
                reason: format!(
                    "has system identifier {:?}, the newest backup {:?}",
                    m.manifest.system_identifier, system
                ),
            });
        }
    }
    let labels =
        chain.iter().map(|b| Label::read(&b.data).map(|l| (b.data.as_path(), l))).collect::<Result<Vec<_>, _>>()?;
    label::check_chain(&labels)?;
    let (jobs, skipped) = walk::plan(newest, target)?;
    let ctx = job::Context { chain, manifests: &manifests, mode };
    let mut entries = job::run_all(&ctx, &jobs, workers.max(1))?;
    let mut done = Combined { skipped, ..Combined::default() };
    done.reconstructed = jobs.iter().filter(|j| j.incremental).count();
    let newest_label = &labels.last().expect("a chain has a newest backup").1;
    entries.push(job::write_label(newest_label, &newest.data, &target.root)?);
    done.files = entries.len();
    done.bytes = entries.iter().map(|e| e.size).sum();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let files: Vec<_> = entries.into_iter().map(|e| (e.path, e.size, e.mtime, e.crc)).collect();
    let text = manifests.last().expect("a chain has a newest manifest").manifest.render_with(&files);
    let path = target.root.join("backup_manifest");
    std::fs::write(&path, text).map_err(|e| CombineError::io(&path, e))?;
    Ok(done)
}
