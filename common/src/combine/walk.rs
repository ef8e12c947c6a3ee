//! The newest backup's tree walked into the list of files to write (each tagged whole or
//! incremental), with the result's directories created on the way, as
//! `process_directory_recursively` classifies them: `INCREMENTAL.` files are rebuilt only
//! under `base/`, `global` and tablespaces; the top-level `backup_label` and
//! `backup_manifest` are written afresh; `pg_tblspc/<oid>` entries are the tablespaces,
//! combined on their own; `pg_wal` files have no manifest entry.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::CombineError;
use super::incremental::PREFIX;
use super::model::{Backup, Target};

/// Which tree of a backup a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The data directory.
    Data,
    /// A tablespace, by oid.
    Tablespace(u32),
}

impl Tree {
    /// The tree's directory in `backup` (None: the backup lacks that tablespace).
    pub fn root_in(self, backup: &Backup) -> Option<&Path> {
        match self {
            Tree::Data => Some(&backup.data),
            Tree::Tablespace(oid) => backup.tablespaces.iter().find(|(o, _)| *o == oid).map(|(_, p)| p.as_path()),
        }
    }

    /// The prefix of its files' manifest paths.
    fn manifest_prefix(self) -> String {
        match self {
            Tree::Data => String::new(),
            Tree::Tablespace(oid) => format!("pg_tblspc/{oid}/"),
        }
    }
}

/// One file of the result.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its tree.
    pub tree: Tree,
    /// Its directory, relative to the tree ("" at the top).
    pub dir: String,
    /// Its name in the result (without `INCREMENTAL.`).
    pub name: String,
    /// Rebuilt from an `INCREMENTAL.` file.
    pub incremental: bool,
    /// Under `pg_wal`: copied, not in the manifest.
    pub wal: bool,
    /// A relation file (under `base/`, `global` or a tablespace), `pg_control` aside: the
    /// only files [`super::model::Mode::Link`] links, as recovery never edits them in place.
    pub relation: bool,
    /// Where it is written.
    pub out: PathBuf,
}

impl Job {
    /// The path of `name` within the tree (`dir/name`).
    pub fn relative(&self, name: &str) -> String {
        if self.dir.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    /// The manifest path of `name` in this file's directory.
    pub fn manifest_path(&self, name: &str) -> String {
        self.tree.manifest_prefix() + &self.relative(name)
    }
}

/// The files of `newest` to write into `target`, and what was skipped.
pub fn plan(newest: &Backup, target: &Target) -> Result<(Vec<Job>, Vec<PathBuf>), CombineError> {
    let mut walk = Walk { jobs: Vec::new(), skipped: Vec::new() };
    make_dir(&target.root)?;
    walk.tree(Tree::Data, &newest.data, &target.root, "")?;
    for (oid, dir) in &newest.tablespaces {
        let out = target.tablespaces.iter().find(|(o, _)| o == oid).map(|(_, p)| p).ok_or_else(|| {
            CombineError::Chain { dir: newest.data.clone(), reason: format!("has tablespace {oid}, not mapped") }
        })?;
        make_dir(out)?;
        walk.tree(Tree::Tablespace(*oid), dir, out, "")?;
    }
    Ok((walk.jobs, walk.skipped))
}

fn make_dir(dir: &Path) -> Result<(), CombineError> {
    fs::create_dir_all(dir).map_err(|e| CombineError::io(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| CombineError::io(dir, e))
}

struct Walk {
    jobs: Vec<Job>,
    skipped: Vec<PathBuf>,
}

impl Walk {
    fn tree(&mut self, tree: Tree, input: &Path, output: &Path, rel: &str) -> Result<(), CombineError> {
        let mut entries: Vec<_> = fs::read_dir(input)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| CombineError::io(input, e))?;
        entries.sort_by_key(fs::DirEntry::file_name);
        let incremental_dir = match tree {
            Tree::Tablespace(_) => true,
            Tree::Data => rel.starts_with("base/") || rel == "global" || rel.starts_with("pg_tblspc/"),
        };
        let wal = tree == Tree::Data && (rel == "pg_wal" || rel.starts_with("pg_wal/"));
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ft = entry.file_type().map_err(|e| CombineError::io(&entry.path(), e))?;
            let is_oid = name.parse::<u32>().is_ok_and(|o| o > 0 && o.to_string() == name);
            if tree == Tree::Data && rel == "pg_tblspc" && is_oid && (ft.is_dir() || ft.is_symlink()) {
                continue;
            }
            let sub = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            if ft.is_dir() {
                make_dir(&output.join(&name))?;
                self.tree(tree, &entry.path(), &output.join(&name), &sub)?;
                continue;
            }
            if !ft.is_file() {
                self.skipped.push(entry.path());
                continue;
            }
            if tree == Tree::Data && rel.is_empty() && (name == "backup_label" || name == "backup_manifest") {
                continue;
            }
            let stripped = name.strip_prefix(PREFIX).filter(|_| incremental_dir);
            let out_name = stripped.unwrap_or(&name).to_owned();
            self.jobs.push(Job {
                tree,
                dir: rel.to_owned(),
                out: output.join(&out_name),
                name: out_name,
                incremental: stripped.is_some(),
                wal,
                relation: incremental_dir && name != "pg_control",
            });
        }
        Ok(())
    }
}
