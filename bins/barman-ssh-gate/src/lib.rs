//! `barman-ssh-gate`: the forced command of a Postgres host's key on the backup host. The
//! checking lives in [`barman_server::gate`]; this crate is its command line.
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_server::gate::{run, GateError, GateOptions};
