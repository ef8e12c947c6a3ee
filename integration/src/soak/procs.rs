//! The soak's blunt instruments: SIGKILL to the processes of one scratch directory (found by
//! their command line, so concurrent tests of other engineers are never hit), and a tmpfs
//! mounted for the duration of a guard.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng;

use crate::cmd;

/// The pids whose command line contains `scope` (the scratch path) and `needle`.
pub fn matching(scope: &str, needle: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| u32::try_from(pid).ok() != Some(me))
        .filter(|pid| {
            let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            line.contains(scope) && line.contains(needle)
        })
        .collect()
}

/// SIGKILL to `pid`; true when it was alive.
pub fn kill9(pid: i32) -> bool {
    kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok()
}

/// Waits up to `within` for a process matching `needle` to appear, sleeps a random
/// `0..max_delay`, then SIGKILLs every match still there. True when one was killed.
pub fn kill_when_seen(scope: &str, needle: &str, within: Duration, max_delay: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !matching(scope, needle).is_empty() {
            let ms = u64::try_from(max_delay.as_millis()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..=ms)));
            let killed = matching(scope, needle).into_iter().filter(|&p| kill9(p)).count();
            return killed > 0;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Every process of the scratch directory matching `needle`, killed (teardown).
pub fn kill_all(scope: &str, needle: &str) {
    for pid in matching(scope, needle) {
        kill9(pid);
    }
}

/// A tmpfs mounted on a directory until dropped (lazy unmount).
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`"1500m"`) on `dir`, owned by `owner`, mode 0700.
    pub fn mount(dir: &Path, size: &str, owner: &str) -> Result<Tmpfs> {
        Self::mount_mode(dir, size, owner, 0o700)
    }

    /// [`Tmpfs::mount`] with the root directory's `mode`.
    pub fn mount_mode(dir: &Path, size: &str, owner: &str, mode: u32) -> Result<Tmpfs> {
        fs::create_dir_all(dir)?;
        let opts = format!("size={size},mode={mode:o}");
        cmd::run(Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(dir))
            .with_context(|| format!("mount tmpfs on {}", dir.display()))?;
        let user = cmd::OsUser::lookup(owner)?;
        nix::unistd::chown(
            dir,
            Some(nix::unistd::Uid::from_raw(user.uid)),
            Some(nix::unistd::Gid::from_raw(user.gid)),
        )?;
        Ok(Tmpfs { dir: dir.to_path_buf() })
    }

    /// Free bytes on the file system.
    pub fn free(&self) -> Result<u64> {
        let st = nix::sys::statvfs::statvfs(&self.dir)?;
        Ok(st.blocks_available() * st.fragment_size())
    }

    /// Fills the file system with `<dir>/.ballast` until `leave` bytes stay free.
    pub fn fill(&self, leave: u64) -> Result<()> {
        let size = self.free()?.saturating_sub(leave);
        let f = fs::File::create(self.ballast())?;
        f.set_len(0)?;
        let block = vec![0x5a_u8; 1 << 20];
        let mut w = std::io::BufWriter::new(f);
        let mut left = size;
        while left > 0 {
            let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
            if std::io::Write::write_all(&mut w, &block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = std::io::Write::flush(&mut w);
        Ok(())
    }

    /// Removes the ballast.
    pub fn drain(&self) -> Result<()> {
        fs::remove_file(self.ballast()).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        Ok(())
    }

    fn ballast(&self) -> PathBuf {
        self.dir.join(".ballast")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = cmd::outcome(Command::new("umount").arg("-l").arg(&self.dir));
    }
}
