//! `barman-common`: the one crate that knows Barman's formats.
//!
//! Everything that two tools must agree on lives here, organised by domain: the
//! configuration files ([`config`]), the on-disk catalogue ([`catalogue`]), WAL names, LSNs
//! and page headers ([`wal`]), compression ([`compress`]), crash-safe file writes
//! ([`durable`]) and the exit-code table ([`exit`]).
#![deny(missing_docs)]

pub mod catalogue;
#[cfg(feature = "cli")]
pub mod cli;
pub mod combine;
pub mod compress;
pub mod config;
pub mod durable;
pub mod exit;
pub mod gpg;
pub mod manifest;
#[cfg(feature = "pg")]
pub mod pg;
pub mod remote;
pub mod tar;
pub mod wal;
pub mod wire;
