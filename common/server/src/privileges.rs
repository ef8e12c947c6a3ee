//! Barman's privilege rule (`barman.utils.drop_privileges`): a command started as another
//! user, root typically (`sudo barman backup pg`), becomes `barman_user` (its groups, then
//! its gid, then its uid, and its `HOME`) before it touches the catalogue or the log, so
//! every file it creates belongs to that user; any other user cannot switch and is refused
//! with Barman's message.

use std::ffi::CString;

use nix::unistd::{getgrouplist, setgid, setgroups, setuid, Uid, User};

use crate::CmdError;

/// Becomes `user` unless already running as it: `please run barman as 'USER' user` when
/// switching is not permitted, `the configured user 'USER' does not exists` (sic, Barman's
/// text) when there is no such user.
pub fn drop_to(user: &str) -> Result<(), CmdError> {
    let refused = || CmdError::Error(format!("please run barman as '{user}' user"));
    let Some(pw) = User::from_name(user).map_err(|_| refused())? else {
        return Err(CmdError::Error(format!("the configured user '{user}' does not exists")));
    };
    if pw.uid == Uid::current() {
        return Ok(());
    }
    let name = CString::new(pw.name.as_bytes()).map_err(|_| refused())?;
    let groups = getgrouplist(&name, pw.gid).map_err(|_| refused())?;
    setgroups(&groups).map_err(|_| refused())?;
    setgid(pw.gid).map_err(|_| refused())?;
    setuid(pw.uid).map_err(|_| refused())?;
    // Children (ssh, rsync, hook scripts) look for their files in the new user's home.
    std::env::set_var("HOME", &pw.dir);
    Ok(())
}
