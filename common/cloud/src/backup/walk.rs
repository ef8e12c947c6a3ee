//! The directory walk of Barman's `CloudUploadController.upload_directory`: `os.walk`
//! top-down without following symlinked directories (they are left out), each directory
//! as `relpath` (`.` for the root), its files as `<relpath>/<name>`, filtered by
//! `path_allowed(exclude, include, path, is_dir)` with Barman's rsync-like rules (`fs.py`):
//! a leading `/` anchors a rule, a trailing `/` limits it to directories, `*` matches
//! within one path component, `**` across them, `?` one character, and everything else
//! (brackets included) literally.

use std::path::{Path, PathBuf};

/// One pattern against one path, as `_wildcard_match_path` (whole-string match).
fn wildcard(path: &[u8], pat: &[u8]) -> bool {
    match pat {
        [] => path.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|i| wildcard(&path[i..], rest)),
        [b'*', rest @ ..] => {
            let stop = path.iter().position(|&c| c == b'/').unwrap_or(path.len());
            (0..=stop).any(|i| wildcard(&path[i..], rest))
        }
        [b'?', rest @ ..] => !path.is_empty() && wildcard(&path[1..], rest),
        [c, rest @ ..] => path.first() == Some(c) && wildcard(&path[1..], rest),
    }
}

/// `_match_path`.
fn matches(rules: &[String], path: &str, is_dir: bool) -> bool {
    rules.iter().any(|rule| {
        let mut rule = rule.as_str();
        if let Some(r) = rule.strip_suffix('/') {
            if !is_dir {
                return false;
            }
            rule = r;
        }
        let (rule, anchored) = rule.strip_prefix('/').map_or((rule, false), |r| (r, true));
        wildcard(path.as_bytes(), rule.as_bytes())
            || (!anchored && wildcard(path.as_bytes(), format!("**/{rule}").as_bytes()))
    })
}

/// `path_allowed`: an include match accepts, then an exclude match rejects.
pub fn allowed(exclude: &[String], include: &[String], path: &str, is_dir: bool) -> bool {
    if matches(include, path, is_dir) {
        return true;
    }
    !matches(exclude, path, is_dir)
}

/// An entry to archive: the file on disk and its name in the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// On disk.
    pub src: PathBuf,
    /// In the archive.
    pub arcname: String,
}

/// The entries of `root` in walk order (sorted names within a directory, for
/// reproducible archives). Directories that vanish are skipped.
pub fn walk(root: &Path, exclude: &[String], include: &[String]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), ".".to_owned())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<(String, bool)> = read
            .filter_map(Result::ok)
            .map(|e| {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (e.file_name().to_string_lossy().into_owned(), is_dir)
            })
            .collect();
        names.sort();
        let dir_ok = allowed(exclude, include, &rel, true);
        if dir_ok {
            out.push(Entry { src: dir.clone(), arcname: rel.clone() });
        }
        let child = |name: &str| if rel == "." { format!("./{name}") } else { format!("{rel}/{name}") };
        let sub = |name: &str| if rel == "." { name.to_owned() } else { format!("{rel}/{name}") };
        for (name, is_dir) in &names {
            if !is_dir && dir_ok {
                let arcname = child(name);
                if allowed(exclude, include, &arcname, false) {
                    out.push(Entry { src: dir.join(name), arcname });
                }
            }
        }
        for (name, _) in names.iter().rev().filter(|(_, d)| *d) {
            stack.push((dir.join(name), sub(name)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn barman_rules() {
        let ex = rules(&["/pg_wal/*", "pg_replslot/*", "postmaster.pid", "/*"]);
        assert!(!allowed(&ex, &[], "pg_wal/000000010000000000000001", false));
        assert!(allowed(&rules(&["/pg_wal/*"]), &[], "pg_wal", true));
        assert!(!allowed(&ex, &[], "pg_replslot/slot", true));
        assert!(!allowed(&ex, &[], "./postmaster.pid", false));
        assert!(!allowed(&ex, &[], ".", true));
        assert!(allowed(&ex, &rules(&["/PG_15_*"]), "PG_15_202209061", true));
        assert!(allowed(&ex, &[], "PG_15_202209061/16384", true));
        // Brackets are literal in Barman's translation.
        assert!(allowed(&rules(&["**/[0-9]*/t[0-9]*_[0-9]*"]), &[], "base/1/t1_2", false));
    }
}
