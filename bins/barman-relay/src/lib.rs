//! `barman-relay`: the passive node of Barman's geo-redundancy for one server. The binary
//! only parses its command line ([`cli`]); the relay itself is [`barman_server::relay`].
#![forbid(unsafe_code)]

pub mod cli;

pub use barman_server::relay::{run, Mode, Options, RelayError};
