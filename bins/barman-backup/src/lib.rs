//! `barman-backup`: takes a base backup of one Barman server. The binary only parses its
//! command line ([`cli`]); the backup itself is [`barman_server::backup`].
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_server::backup::{run, Options, ToolError};
