//! `barman terminate-process SERVER TASK`: sends SIGINT to the process holding the server's
//! lock for TASK and waits up to ten seconds for it to go, as Barman's `Server.kill` and
//! `ProcessManager.kill` do (same messages).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd::list_processes::{processes, ProcessInfo};
use crate::context::Context;
use crate::output::Output;
use crate::CmdError;

/// Barman checks ten times, a second apart.
const RETRIES: u32 = 10;

/// `terminate-process SERVER TASK`.
pub fn run(ctx: &Context, name: &str, task: &str, out: &mut Output) -> Result<(), CmdError> {
    let cfg = ctx.config().server(name).ok_or_else(|| CmdError::Error(format!("Unknown server '{name}'")))?;
    let Some(process) = processes(cfg.lock_directory(), name)?.into_iter().find(|p| p.task == task) else {
        return Err(CmdError::Error(format!("Termination of {task} failed: no such process for server {name}")));
    };
    if terminate(&process)? {
        out.info(format!("Stopped process {}({})", process.task, process.pid));
        Ok(())
    } else {
        Err(CmdError::Error(format!("Cannot terminate process {}({})", process.task, process.pid)))
    }
}

/// Barman's `Server.kill(task, fail_if_not_present=False)`: stops the process holding
/// `name`'s lock for `task`, if there is one (`Stopped process ...`).
pub(crate) fn stop_if_running(
    lock_dir: &std::path::Path,
    name: &str,
    task: &str,
    out: &mut Output,
) -> Result<(), CmdError> {
    let Some(process) = processes(lock_dir, name)?.into_iter().find(|p| p.task == task) else { return Ok(()) };
    if terminate(&process)? {
        out.info(format!("Stopped process {}({})", process.task, process.pid));
        Ok(())
    } else {
        Err(CmdError::Error(format!("Cannot terminate process {}({})", process.task, process.pid)))
    }
}

/// SIGINT, then polls with signal 0 until the process is gone; false if it outlives the
/// retries.
fn terminate(process: &ProcessInfo) -> Result<bool, CmdError> {
    let pid =
        Pid::from_raw(i32::try_from(process.pid).map_err(|_| CmdError::Error(format!("bad pid {}", process.pid)))?);
    match kill(pid, Signal::SIGINT) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Ok(true),
        Err(e) => return Err(CmdError::Error(e.to_string())),
    }
    for _ in 0..RETRIES {
        match kill(pid, None) {
            Ok(()) => {}
            Err(Errno::ESRCH) => return Ok(true),
            Err(e) => return Err(CmdError::Error(e.to_string())),
        }
        // A lock released by an exiting child that a zombie still holds counts as gone.
        if barman_common::catalogue::lock_owner(&process.lock).ok().flatten().is_none() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(false)
}
