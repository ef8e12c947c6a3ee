//! `barman-server`: the server core, everything that runs on the backup host.
//!
//! The binaries under `bins/` parse their command lines and call into this crate; none of
//! them imports another. Data flows, by owner:
//!
//! - WAL in: [`cmd::put_wal`] (from `barman-wal-archive`), [`cmd::receive_wal`] (supervises
//!   `barman-receive-wal`), [`cmd::archive_wal`] (the archiver: `incoming/` and `streaming/`
//!   into `wals/` and `xlog.db`).
//! - WAL out: [`cmd::get_wal`] (to `barman-wal-restore`).
//! - Backups: [`backup`] (the postgres method, run by `barman-backup`), [`cmd::check_backup`]
//!   (the WAL verdict that turns WAITING_FOR_WALS into DONE), [`cmd::delete`] and retention.
//! - Recovery: [`cmd::recover`], [`cmd::verify_restore`].
//! - Relay (geo-redundancy): [`relay`] (run by `barman-relay`), [`cmd::sync_info`].
//! - The Postgres host's key, restricted: [`gate`] (run by `barman-ssh-gate` as a forced
//!   command: put-wal and get-wal for its own servers only).
//! - Shared by all: [`context`] (configuration), [`server`], [`hooks`], [`output`], [`log`],
//!   [`progress`].
#![forbid(unsafe_code)]

pub mod backup;
pub mod cmd;
pub mod context;
mod error;
pub mod gate;
pub mod hooks;
pub mod log;
pub mod output;
pub mod privileges;
pub mod progress;
pub mod relay;
pub mod rsync;
pub mod server;
pub mod walinfo;

pub use error::CmdError;
