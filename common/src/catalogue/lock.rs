//! Barman's lock files (spec §6): `flock(2)` on `.<server>-<purpose>.lock` in the lock
//! directory, so that our tools and Python Barman exclude each other.
//!
//! As `barman.lockfile.LockFile`: the file is opened `O_CREAT|O_RDWR` with mode 0600, locked
//! `LOCK_EX` (plus `LOCK_NB` unless the kind is blocking), then the holder's PID and a
//! newline replace its content. Release is unlock + close; the file stays. flock locks
//! belong to the open file description, so two opens in one process conflict too. POSIX
//! `fcntl` locks would not see Barman's locks on Linux, hence `flock`.
//!
//! One improvement over Barman: after locking, the path is checked to still name the
//! locked inode. If `cleanup_stale` (or Barman's cron) unlinked it meanwhile, we retry, so
//! two processes never both believe they hold the same lock name.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::backup_id::BackupId;
use super::error::LockError;

/// Which lock (the part of the file name after the server name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// `.<srv>-cron.lock`: one cron pass per server.
    Cron,
    /// `.<srv>-backup.lock`: one `backup` at a time.
    Backup,
    /// `.<srv>-xlogdb.lock`: every xlog.db access (blocking).
    XlogDb,
    /// `.<srv>-archive-wal.lock`: archive-wal.
    ArchiveWal,
    /// `.<srv>-receive-wal.lock`: receive-wal.
    ReceiveWal,
    /// `.<srv>-<backup_id>.lock`: delete, check-backup, retention, parent refresh.
    BackupId(BackupId),
    /// `.<srv>-<backup_id>-sync-backup.lock`: sync-backup on a passive node.
    SyncBackup(BackupId),
    /// `.<srv>-sync-wal.lock`: sync-wals on a passive node (blocking).
    SyncWal,
    /// `.config-update.lock` (global, the server is ignored).
    ConfigUpdate,
    /// `.cron.lock` (global; defined but unused by Barman 3.20.1).
    GlobalCron,
}

impl LockKind {
    /// The lock file name for `server`.
    pub fn file_name(&self, server: &str) -> String {
        match self {
            LockKind::Cron => format!(".{server}-cron.lock"),
            LockKind::Backup => format!(".{server}-backup.lock"),
            LockKind::XlogDb => format!(".{server}-xlogdb.lock"),
            LockKind::ArchiveWal => format!(".{server}-archive-wal.lock"),
            LockKind::ReceiveWal => format!(".{server}-receive-wal.lock"),
            LockKind::BackupId(id) => format!(".{server}-{id}.lock"),
            LockKind::SyncBackup(id) => format!(".{server}-{id}-sync-backup.lock"),
            LockKind::SyncWal => format!(".{server}-sync-wal.lock"),
            LockKind::ConfigUpdate => ".config-update.lock".to_owned(),
            LockKind::GlobalCron => ".cron.lock".to_owned(),
        }
    }

    /// True for the locks Barman waits for (xlogdb and sync-wal); the others fail at once
    /// when busy.
    pub fn is_blocking(&self) -> bool {
        matches!(self, LockKind::XlogDb | LockKind::SyncWal)
    }
}

/// A held lock. Dropping it releases it; [`ServerLock::release`] does so explicitly.
#[derive(Debug)]
pub struct ServerLock {
    path: PathBuf,
    lock: Flock<File>,
}

impl ServerLock {
    /// Takes the lock at `path` without waiting; `Busy` (with the holder's PID) if held.
    pub fn try_acquire(path: &Path) -> Result<ServerLock, LockError> {
        ServerLock::acquire_with(path, false, true)
    }

    /// Takes the lock at `path`, waiting as long as needed.
    pub fn acquire_blocking(path: &Path) -> Result<ServerLock, LockError> {
        ServerLock::acquire_with(path, true, true)
    }

    /// Takes lock `kind` of `server` in `lock_dir`, waiting only if the kind is blocking.
    pub fn acquire(lock_dir: &Path, server: &str, kind: &LockKind) -> Result<ServerLock, LockError> {
        ServerLock::acquire_with(&lock_dir.join(kind.file_name(server)), kind.is_blocking(), true)
    }

    fn acquire_with(path: &Path, wait: bool, write_pid: bool) -> Result<ServerLock, LockError> {
        loop {
            let lock = lock_file(path, wait)?;
            if !still_linked(path, &lock) {
                continue;
            }
            let mut held = ServerLock { path: path.to_path_buf(), lock };
            if write_pid {
                held.write_pid()?;
            }
            return Ok(held);
        }
    }

    fn write_pid(&mut self) -> Result<(), LockError> {
        let io = |source| LockError::Io { path: self.path.clone(), source };
        let file: &mut File = &mut self.lock;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io)?;
        let end = file.stream_position().map_err(io)?;
        file.set_len(end).map_err(io)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unlocks and closes; the file stays.
    pub fn release(self) -> Result<(), LockError> {
        let path = self.path;
        match self.lock.unlock() {
            Ok(file) => {
                drop(file);
                Ok(())
            }
            Err((_, errno)) => Err(LockError::Io { path, source: errno.into() }),
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path).map_err(
        |source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                LockError::PermissionDenied { path: path.to_path_buf() }
            } else {
                LockError::Io { path: path.to_path_buf(), source }
            }
        },
    )?;
    give_to_directory_owner(&file, path);
    Ok(file)
}

/// A lock file root creates in a catalogue owned by another user (the `barman` user) is
/// handed to that user: lock files are 0600, and one left owned by root (once the lock
/// directory cleanup has removed the user's own) would lock the user out of its catalogue.
fn give_to_directory_owner(file: &File, path: &Path) {
    if crate::durable::current_euid() != 0 {
        return;
    }
    let (Ok(md), Some(dir)) = (file.metadata(), path.parent().and_then(|d| std::fs::metadata(d).ok())) else {
        return;
    };
    if md.uid() == 0 && dir.uid() != 0 {
        let owner = (Some(nix::unistd::Uid::from_raw(dir.uid())), Some(nix::unistd::Gid::from_raw(dir.gid())));
        let _ = nix::unistd::fchown(std::os::fd::AsRawFd::as_raw_fd(file), owner.0, owner.1);
    }
}

fn lock_file(path: &Path, wait: bool) -> Result<Flock<File>, LockError> {
    let arg = if wait { FlockArg::LockExclusive } else { FlockArg::LockExclusiveNonblock };
    let mut file = open_lock_file(path)?;
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(LockError::Busy { path: path.to_path_buf(), pid: read_lock_pid(path) })
            }
            Err((_, errno)) => return Err(LockError::Io { path: path.to_path_buf(), source: errno.into() }),
        }
    }
}

/// True when `path` still names the inode we locked (it was not unlinked or replaced).
fn still_linked(path: &Path, lock: &Flock<File>) -> bool {
    let (Ok(on_disk), Ok(ours)) = (std::fs::metadata(path), lock.metadata()) else { return false };
    on_disk.dev() == ours.dev() && on_disk.ino() == ours.ino()
}

/// The PID written in a lock file (first line), as Barman's `get_owner_pid` reads it.
pub fn read_lock_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The PID of the process holding the lock at `path`, `None` if it is free (Barman's
/// `get_owner_pid`; probing does not change the file).
pub fn lock_owner(path: &Path) -> Result<Option<u32>, LockError> {
    if !path.exists() {
        return Ok(None);
    }
    match lock_file(path, false) {
        Ok(_probe) => Ok(None),
        Err(LockError::Busy { pid, .. }) => Ok(pid),
        Err(e) => Err(e),
    }
}

/// Cron's `lock_directory_cleanup`: unlinks every `.*.lock` in `dir` that can be locked
/// without waiting; returns the removed paths. Held locks are left alone.
pub fn cleanup_stale(dir: &Path) -> Result<Vec<PathBuf>, LockError> {
    let io = |source| LockError::Io { path: dir.to_path_buf(), source };
    let mut removed = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_lock_name(p))
        .collect();
    names.sort();
    for path in names {
        match ServerLock::acquire_with(&path, false, false) {
            Ok(held) => {
                if unlink_held(&held)? {
                    removed.push(path);
                }
            }
            Err(LockError::Busy { .. } | LockError::PermissionDenied { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn unlink_held(held: &ServerLock) -> Result<bool, LockError> {
    match std::fs::remove_file(held.path()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(LockError::Io { path: held.path().to_path_buf(), source }),
    }
}

/// Matches the glob `.*.lock` (a dot, anything, `.lock`), case-sensitively like glob.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
fn is_lock_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.len() >= 7 && name.starts_with('.') && name[1..].ends_with(".lock")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    const PYTHON: &str = "/opt/barman-venv/bin/python";

    #[test]
    fn file_names_match_barman() {
        let id = BackupId::new("20261121T203640").expect("id");
        let cases = [
            (LockKind::Cron, ".pg-cron.lock", false),
            (LockKind::Backup, ".pg-backup.lock", false),
            (LockKind::XlogDb, ".pg-xlogdb.lock", true),
            (LockKind::ArchiveWal, ".pg-archive-wal.lock", false),
            (LockKind::ReceiveWal, ".pg-receive-wal.lock", false),
            (LockKind::BackupId(id.clone()), ".pg-20261121T203640.lock", false),
            (LockKind::SyncBackup(id), ".pg-20261121T203640-sync-backup.lock", false),
            (LockKind::SyncWal, ".pg-sync-wal.lock", true),
            (LockKind::ConfigUpdate, ".config-update.lock", false),
            (LockKind::GlobalCron, ".cron.lock", false),
        ];
        for (kind, name, blocking) in cases {
            assert_eq!(kind.file_name("pg"), name);
            assert_eq!(kind.is_blocking(), blocking, "{name}");
        }
    }

    #[test]
    fn two_opens_conflict_and_pid_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = ServerLock::acquire(dir.path(), "pg", &LockKind::Backup).expect("first");
        let content = std::fs::read_to_string(held.path()).expect("read");
        assert_eq!(content, format!("{}\n", std::process::id()));
        let mode = std::fs::metadata(held.path()).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o600);
        match ServerLock::acquire(dir.path(), "pg", &LockKind::Backup) {
            Err(LockError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(lock_owner(held.path()).expect("owner"), Some(std::process::id()));
        let path = held.path().to_path_buf();
        held.release().expect("release");
        assert!(path.exists(), "release keeps the file");
        assert_eq!(lock_owner(&path).expect("owner"), None);
        ServerLock::try_acquire(&path).expect("free again");
    }

    #[test]
    fn blocking_acquire_waits_for_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LockKind::XlogDb.file_name("pg"));
        let held = ServerLock::acquire_blocking(&path).expect("first");
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || ServerLock::acquire_blocking(&path).map(|_| std::time::Instant::now())
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let released_at = std::time::Instant::now();
        drop(held);
        let acquired_at = waiter.join().expect("thread").expect("second");
        assert!(acquired_at >= released_at);
    }

    #[test]
    fn stale_cleanup_skips_held_locks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = ServerLock::acquire(dir.path(), "pg", &LockKind::ReceiveWal).expect("held");
        drop(ServerLock::acquire(dir.path(), "pg", &LockKind::Cron).expect("stale"));
        std::fs::write(dir.path().join("not-a-lock.lock"), "").expect("write");
        std::fs::write(dir.path().join(".pg-xlog.db"), "").expect("write");
        let removed = cleanup_stale(dir.path()).expect("cleanup");
        assert_eq!(removed, vec![dir.path().join(".pg-cron.lock")]);
        assert!(held.path().exists());
        assert!(dir.path().join("not-a-lock.lock").exists());
    }

    #[test]
    fn lock_unlinked_while_waiting_is_retaken_on_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".pg-sync-wal.lock");
        let held = ServerLock::acquire_blocking(&path).expect("first");
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || ServerLock::acquire_blocking(&path).map(|l| std::fs::metadata(l.path()).map(|m| m.ino()))
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::remove_file(&path).expect("unlink while held");
        drop(held);
        let ino = waiter.join().expect("thread").expect("second").expect("stat");
        assert_eq!(std::fs::metadata(&path).expect("recreated").ino(), ino);
    }

    /// A lock held by real Python `fcntl.flock` (what Barman uses) makes ours Busy, and
    /// ours makes Python's LOCK_NB fail.
    #[test]
    fn interoperates_with_python_flock() {
        if !Path::new(PYTHON).exists() {
            eprintln!("skipping: {PYTHON} not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".pg-backup.lock");
        let script = "import fcntl, os, sys\nfrom barman.lockfile import ServerBackupLock\nlock = ServerBackupLock(sys.argv[1], 'pg')\nlock.acquire()\nprint('locked', flush=True)\nsys.stdin.read()\n";
        let mut child = Command::new(PYTHON)
            .args(["-c", script, dir.path().to_str().expect("utf-8 path")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked");
        match ServerLock::try_acquire(&path) {
            Err(LockError::Busy { pid, .. }) => assert_eq!(pid, Some(child.id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success());
        let ours = ServerLock::try_acquire(&path).expect("free after python exits");
        let probe = "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ntry:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('acquired')\nexcept BlockingIOError:\n    print('busy')\n";
        let out =
            Command::new(PYTHON).args(["-c", probe, path.to_str().expect("utf-8 path")]).output().expect("run python");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "busy");
        drop(ours);
    }
}
