//! Writing the files of a combined backup: a whole file copied (checked against the newest
//! manifest as it is read) or hard-linked, a relation segment rebuilt from its
//! `INCREMENTAL.` file and the older backups ([`super::incremental::BlockMap`]), the label;
//! each giving the result's manifest entry (CRC-32C of what was written). Files are written
//! by a few threads, each taking the next file of the list.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::manifest::{Algorithm, FileEntry, Hasher};

use super::error::CombineError;
use super::incremental::{BlockMap, Header, BLOCK, PREFIX};
use super::label::Label;
use super::model::{Backup, Indexed, Mode};
use super::source::Source;
use super::walk::Job;

/// What every job reads from.
pub struct Context<'a> {
    /// The chain, oldest first.
    pub chain: &'a [Backup],
    /// Each backup's manifest.
    pub manifests: &'a [Indexed],
    /// Copy or link whole files.
    pub mode: Mode,
}

/// One entry of the result's manifest.
pub struct Entry {
    /// Manifest path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time recorded.
    pub mtime: SystemTime,
    /// CRC-32C, hex.
    pub crc: String,
}

/// Runs every job on `workers` threads; the manifest entries, or the first error.
pub fn run_all(ctx: &Context<'_>, jobs: &[Job], workers: usize) -> Result<Vec<Entry>, CombineError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results = Mutex::new((Vec::with_capacity(jobs.len()), None));
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs.len().max(1)) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let outcome = run(ctx, job);
                    let mut r = results.lock().expect("no worker panics holding the lock");
                    match outcome {
                        Ok(Some(entry)) => r.0.push(entry),
                        Ok(None) => {}
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            r.1.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let (entries, error) = results.into_inner().expect("workers are done");
    error.map_or(Ok(entries), Err)
}

fn run(ctx: &Context<'_>, job: &Job) -> Result<Option<Entry>, CombineError> {
    let newest = ctx.chain.len() - 1;
    let root = job.tree.root_in(&ctx.chain[newest]).expect("the newest backup has the trees walked");
    if job.wal {
        let src = root.join(job.relative(&job.name));
        fs::copy(&src, &job.out).map_err(|e| CombineError::io(&src, e))?;
        return Ok(None);
    }
    if job.incremental {
        return reconstruct(ctx, job, root).map(Some);
    }
    let src = root.join(job.relative(&job.name));
    let path = job.manifest_path(&job.name);
    let entry = listed(&ctx.manifests[newest], &path, &src)?;
    let mtime = fs::metadata(&src).and_then(|m| m.modified()).map_err(|e| CombineError::io(&src, e))?;
    let crc = if ctx.mode == Mode::Link && job.relation && entry.algorithm == Algorithm::Crc32c {
        fs::hard_link(&src, &job.out).map_err(|e| CombineError::io(&job.out, e))?;
        entry.checksum.clone()
    } else {
        copy_whole(&src, entry, &job.out, mtime)?
    };
    Ok(Some(Entry { path, size: entry.size, mtime, crc }))
}

/// The manifest entry of `path` in a backup (a file its manifest does not list cannot be
/// checked: refused).
fn listed<'m>(m: &'m Indexed, path: &str, file: &Path) -> Result<&'m FileEntry, CombineError> {
    m.entry(path).ok_or_else(|| CombineError::damaged(file, "is not listed in its backup_manifest".into()))
}

fn create(out: &Path) -> Result<BufWriter<File>, CombineError> {
    let file =
        File::options().write(true).create_new(true).mode(0o600).open(out).map_err(|e| CombineError::io(out, e))?;
    Ok(BufWriter::with_capacity(super::source::CHUNK, file))
}

fn close(w: BufWriter<File>, out: &Path, mtime: SystemTime) -> Result<(), CombineError> {
    let file = w.into_inner().map_err(|e| CombineError::io(out, e.into_error()))?;
    file.set_modified(mtime).map_err(|e| CombineError::io(out, e))
}

fn copy_whole(src: &Path, entry: &FileEntry, out: &Path, mtime: SystemTime) -> Result<String, CombineError> {
    let mut source = Source::open(src, entry)?;
    let mut w = create(out)?;
    let mut crc = Hasher::new(Algorithm::Crc32c);
    loop {
        let chunk = source.next_chunk()?;
        if chunk.is_empty() {
            break;
        }
        crc.update(chunk);
        w.write_all(chunk).map_err(|e| CombineError::io(out, e))?;
    }
    close(w, out, mtime)?;
    source.finish()?;
    Ok(crc.finish())
}

/// The sources of an incremental file, newest first: the newest backup's `INCREMENTAL.`
/// file, then each older backup's incremental file, down to a full file.
fn sources(ctx: &Context<'_>, job: &Job, newest_root: &Path) -> Result<(BlockMap, Vec<Source>), CombineError> {
    let inc_name = format!("{PREFIX}{}", job.name);
    let newest = ctx.chain.len() - 1;
    let first = newest_root.join(job.relative(&inc_name));
    let header = Header::read(&first)?;
    let mut map = BlockMap::new(&header);
    let mut opened =
        vec![Source::open(&first, listed(&ctx.manifests[newest], &job.manifest_path(&inc_name), &first)?)?];
    for i in (0..newest).rev() {
        let root = job.tree.root_in(&ctx.chain[i]).unwrap_or_else(|| Path::new("/nonexistent"));
        let (full, inc) = (root.join(job.relative(&job.name)), root.join(job.relative(&inc_name)));
        if full.is_file() {
            let entry = listed(&ctx.manifests[i], &job.manifest_path(&job.name), &full)?;
            map.add_full(opened.len(), entry.size);
            opened.push(Source::open(&full, entry)?);
            return Ok((map, opened));
        }
        if !inc.is_file() {
            return Err(CombineError::Chain {
                dir: ctx.chain[i].data.clone(),
                reason: format!("has neither {} nor {inc_name}, needed to rebuild it", job.name),
            });
        }
        let h = Header::read(&inc)?;
        map.add_incremental(opened.len(), &h, false);
        opened.push(Source::open(&inc, listed(&ctx.manifests[i], &job.manifest_path(&inc_name), &inc)?)?);
    }
    Err(CombineError::Chain {
        dir: ctx.chain[0].data.clone(),
        reason: format!("has no full copy of {}", job.relative(&job.name)),
    })
}

fn reconstruct(ctx: &Context<'_>, job: &Job, newest_root: &Path) -> Result<Entry, CombineError> {
    let (map, mut sources) = sources(ctx, job, newest_root)?;
    let inc = newest_root.join(job.relative(&format!("{PREFIX}{}", job.name)));
    let mtime = fs::metadata(&inc).and_then(|m| m.modified()).map_err(|e| CombineError::io(&inc, e))?;
    let mut w = create(&job.out)?;
    let mut crc = Hasher::new(Algorithm::Crc32c);
    let mut block = vec![0u8; BLOCK as usize];
    for slot in &map.slots {
        match slot {
            None => block.fill(0),
            Some(s) => sources[s.source].read_at(s.offset, &mut block)?,
        }
        crc.update(&block);
        w.write_all(&block).map_err(|e| CombineError::io(&job.out, e))?;
    }
    close(w, &job.out, mtime)?;
    sources.into_iter().try_for_each(Source::finish)?;
    let size = map.slots.len() as u64 * BLOCK;
    Ok(Entry { path: job.manifest_path(&job.name), size, mtime, crc: crc.finish() })
}

/// The result's `backup_label`: the newest one without its `INCREMENTAL FROM` lines.
pub fn write_label(label: &Label, newest_data: &Path, root: &Path) -> Result<Entry, CombineError> {
    let text = label.combined_text();
    let src: PathBuf = newest_data.join("backup_label");
    let mtime = fs::metadata(&src).and_then(|m| m.modified()).map_err(|e| CombineError::io(&src, e))?;
    let out = root.join("backup_label");
    let mut w = create(&out)?;
    w.write_all(text.as_bytes()).map_err(|e| CombineError::io(&out, e))?;
    close(w, &out, mtime)?;
    let mut crc = Hasher::new(Algorithm::Crc32c);
    crc.update(text.as_bytes());
    Ok(Entry { path: "backup_label".into(), size: text.len() as u64, mtime, crc: crc.finish() })
}
