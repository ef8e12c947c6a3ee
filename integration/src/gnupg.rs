//! A throwaway GnuPG home for `barman` with one passphrase-protected key (gpg's default, RSA
//! 3072 with an encryption subkey), whose agent keeps no passphrase in cache (every
//! decryption asks), and a server section with `encryption = gpg` as Barman 3.20.1 reads it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cmd::{as_user, execute, OsUser};
use crate::scratch::{chown, set_mode, write_file, Scratch};

/// The key's passphrase (in `pass/good`; `pass/bad` holds a wrong one).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The GnuPG home and its key; the agent is stopped on drop.
#[derive(Debug)]
pub struct Gnupg {
    /// `GNUPGHOME`.
    pub home: PathBuf,
    /// Its owner (`barman`).
    pub user: OsUser,
    /// The key's fingerprint (`encryption_key_id`).
    pub fpr: String,
}

impl Gnupg {
    /// Generates the key in `<scratch>/gnupg`.
    pub fn generate(scratch: &Scratch) -> Result<Gnupg> {
        let user = OsUser::lookup("barman")?;
        let home = scratch.mkdir_owned_mode("gnupg", "barman", 0o700)?;
        write_file(
            &home.join("gpg-agent.conf"),
            "default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n",
            0o600,
        )?;
        chown(&home.join("gpg-agent.conf"), &user)?;
        let mut g = Gnupg { home, user, fpr: String::new() };
        let uid = "barman-rs gpg test <gpg-test@invalid>";
        let args = ["--pinentry-mode", "loopback", "--passphrase", PASSPHRASE, "--quick-gen-key", uid, "default"];
        g.run(&[&args[..], &["default", "never"]].concat())?;
        let listing = g.run(&["--with-colons", "--list-keys"])?;
        g.fpr =
            listing.lines().find_map(|l| l.strip_prefix("fpr:")).context("no fingerprint")?.trim_matches(':').into();
        Ok(g)
    }

    /// Runs `gpg --batch <args>` as the owner on this home; returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("gpg");
        as_user(&mut c, &self.user).env("GNUPGHOME", &self.home).arg("--batch").args(args);
        let o = execute(&mut c, None, Duration::from_mins(1))?;
        o.success()?;
        Ok(o.stdout_str())
    }

    /// A server section with encryption (gzip WAL, gzip tar backups), and the files
    /// `pass/good` and `pass/bad` (0600, `barman`) holding the right and a wrong passphrase;
    /// `encryption_passphrase_command = cat <pass/good>`.
    pub fn server_lines(&self, scratch: &Scratch) -> Result<Vec<String>> {
        scratch.mkdir_owned_mode("pass", "barman", 0o700)?;
        let good = scratch.write("pass/good", format!("{PASSPHRASE}\n"))?;
        let bad = scratch.write("pass/bad", "not the passphrase\n")?;
        for f in [&good, &bad] {
            chown(f, &self.user)?;
            set_mode(f, 0o600)?;
        }
        Ok(vec![
            "compression = gzip".into(),
            "encryption = gpg".into(),
            format!("encryption_key_id = {}", self.fpr),
            format!("encryption_passphrase_command = cat {}", good.display()),
            "backup_compression = gzip".into(),
            "backup_compression_format = tar".into(),
        ])
    }
}

impl Drop for Gnupg {
    fn drop(&mut self) {
        let mut c = Command::new("gpgconf");
        as_user(&mut c, &self.user).env("GNUPGHOME", &self.home).args(["--kill", "gpg-agent"]);
        let _ = c.status();
    }
}
