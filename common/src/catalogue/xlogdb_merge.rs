//! Merging entries into xlog.db in name order (`barman import-backup`): the imported lines
//! go before the first existing line with a greater name, a name already present keeps its
//! existing line, and the whole content is replaced in place under the held lock.

use super::error::CatalogueError;
use super::xlogdb::{XlogDb, XlogDbEntry};

impl XlogDb {
    /// Merges `new` (sorted by name) into the file, as Barman 3.20.1's import merge-step:
    /// each existing entry is preceded by the new entries whose names sort before it; a new
    /// entry whose name is already indexed is dropped. Returns the entries actually added.
    pub fn merge_sorted(&mut self, new: &[XlogDbEntry]) -> Result<Vec<XlogDbEntry>, CatalogueError> {
        let existing = self.entries()?;
        let mut text = String::new();
        let mut added = Vec::new();
        let mut pending = new.iter().peekable();
        for (_, entry) in &existing {
            while let Some(n) = pending.next_if(|n| n.name.as_str() < entry.name.as_str()) {
                text.push_str(&n.to_line());
                added.push(n.clone());
            }
            pending.next_if(|n| n.name == entry.name);
            text.push_str(&entry.to_line());
        }
        for n in pending {
            text.push_str(&n.to_line());
            added.push(n.clone());
        }
        self.replace_content(text.as_bytes())?;
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::ServerLayout;

    fn entry(name: &str) -> XlogDbEntry {
        XlogDbEntry { name: name.parse().expect("name"), size: 16, time: 1.5, compression: None, encryption: None }
    }

    #[test]
    fn new_entries_are_merged_in_name_order_and_duplicates_keep_the_existing_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = ServerLayout::default_for(dir.path(), "pg");
        std::fs::create_dir_all(&layout.wals_directory).expect("wals");
        std::fs::create_dir_all(&layout.lock_directory).expect("locks");
        let mut db = XlogDb::open(&layout).expect("open");
        db.append(&[entry("000000010000000000000002"), entry("000000010000000000000005")]).expect("append");
        let mut dup = entry("000000010000000000000005");
        dup.size = 99;
        let new = [
            entry("000000010000000000000001"),
            entry("000000010000000000000003"),
            dup,
            entry("000000010000000000000007"),
        ];
        let added = db.merge_sorted(&new).expect("merge");
        assert_eq!(added.len(), 3);
        let names: Vec<(String, u64)> =
            db.entries().expect("entries").into_iter().map(|(_, e)| (e.name.to_string(), e.size)).collect();
        let want = [("1", 16), ("2", 16), ("3", 16), ("5", 16), ("7", 16)];
        assert_eq!(names.len(), want.len());
        for ((name, size), (last, want_size)) in names.iter().zip(want) {
            assert!(name.ends_with(last), "{name}");
            assert_eq!(*size, want_size);
        }
    }
}
