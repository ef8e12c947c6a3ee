//! GnuPG encryption as Barman 3.20.1 applies it (`encryption = gpg`, its `encryption.py`
//! and `command_wrappers.GPG`): WAL files and tar base backups are encrypted to the public
//! key `encryption_key_id` and decrypted with the private key's passphrase, which
//! `encryption_passphrase_command` prints.
//!
//! Barman runs `gpg --yes --batch --pinentry-mode loopback --compress-level 0 --recipient KEY
//! --encrypt --output OUT IN` and `gpg --yes --batch --pinentry-mode loopback --passphrase-fd 0
//! --decrypt --output OUT IN` (passphrase on stdin). The same options are used here, with the
//! data streamed: encryption reads the (already compressed) bytes on stdin and writes
//! OpenPGP to the destination's open file; decryption reads the stored file by path (stdin
//! carries the passphrase) and streams the plaintext out of stdout, so a tar backup is
//! decrypted, decompressed and extracted in one pass with no staging copy.
//!
//! An encrypted file is recognised by its first OpenPGP packet (a public-key or symmetric
//! encrypted session key), what `file --brief` reports as "PGP ... encrypted" for Barman.
//!
//! The passphrase never reaches a log or an error message: the command's stdout is kept in a
//! [`Passphrase`] (zeroed on drop, redacted by `Debug`), and only its exit code is reported.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

/// The options every gpg call gets (Barman's `GPG` wrapper).
const BASE: [&str; 4] = ["--yes", "--batch", "--pinentry-mode", "loopback"];

/// Barman's `encryption` values that mean "encrypt": only `gpg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// GnuPG public-key encryption.
    Gpg,
}

impl Encryption {
    /// The name written to xlog.db and backup.info (`gpg`).
    pub fn name(self) -> &'static str {
        "gpg"
    }

    /// The encryption recorded as `name` (`gpg`), `None` for anything else.
    pub fn from_name(name: &str) -> Option<Encryption> {
        name.eq_ignore_ascii_case("gpg").then_some(Encryption::Gpg)
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `encryption_key_id`: the recipient of every encrypted file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyId(String);

impl KeyId {
    /// A key id, fingerprint or user id as gpg's `--recipient` takes it.
    pub fn new(id: impl Into<String>) -> KeyId {
        KeyId(id.into())
    }

    /// The text given to `--recipient`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A private key's passphrase: zeroed when dropped, never printed.
pub struct Passphrase(Vec<u8>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// Why encryption or decryption failed. Messages carry no passphrase and no command output
/// that could hold one.
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    /// No `encryption_passphrase_command` while an encrypted file must be read.
    #[error("encrypted file '{0}' found, but no 'encryption_passphrase_command' is configured")]
    NoPassphraseCommand(String),
    /// The passphrase command failed (Barman's `EncryptionCommandException`).
    #[error("encryption_passphrase_command failed with code {0}")]
    PassphraseCommand(i32),
    /// The passphrase command printed nothing.
    #[error("encryption_passphrase_command returned an empty passphrase")]
    EmptyPassphrase,
    /// gpg refused the passphrase (Barman: `Error: Bad passphrase provided for decryption.`).
    #[error("Bad passphrase provided for decryption of '{0}'")]
    BadPassphrase(String),
    /// gpg asked for a passphrase it did not get.
    #[error("No passphrase provided for decryption of '{0}'")]
    NoPassphrase(String),
    /// gpg failed for another reason (missing key, corrupt file); its last stderr line.
    #[error("gpg failed on '{file}': {detail}")]
    Failed {
        /// The file being processed.
        file: String,
        /// gpg's own explanation.
        detail: String,
    },
    /// gpg could not be run or its pipes failed.
    #[error("cannot run gpg: {0}")]
    Io(#[from] io::Error),
}

impl From<GpgError> for io::Error {
    fn from(e: GpgError) -> io::Error {
        match e {
            GpgError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// Whether `head` (the first bytes of a file) starts an OpenPGP encrypted message: a
/// public-key (tag 1) or symmetric-key (tag 3) encrypted session key packet, in the old or
/// the new packet format.
pub fn is_encrypted(head: &[u8]) -> bool {
    match head.first() {
        Some(&b) if b & 0xc0 == 0xc0 => matches!(b & 0x3f, 1 | 3),
        Some(&b) if b & 0xc0 == 0x80 => matches!((b >> 2) & 0x0f, 1 | 3),
        _ => false,
    }
}

/// [`is_encrypted`] for a file on disk.
pub fn is_encrypted_file(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 1];
    let n = File::open(path)?.read(&mut head)?;
    Ok(is_encrypted(&head[..n]))
}

/// A server's GnuPG settings: the recipient for encryption and the command that prints the
/// passphrase for decryption (run at most once per process, when first needed).
#[derive(Debug, Default)]
pub struct Gpg {
    key_id: Option<KeyId>,
    passphrase_command: Option<String>,
    passphrase: OnceLock<Passphrase>,
}

impl Gpg {
    /// Settings from `encryption_key_id` and `encryption_passphrase_command`.
    pub fn new(key_id: Option<KeyId>, passphrase_command: Option<String>) -> Gpg {
        Gpg { key_id, passphrase_command, passphrase: OnceLock::new() }
    }

    /// The configured recipient.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key_id.as_ref()
    }

    /// Whether a passphrase command is configured.
    pub fn can_decrypt(&self) -> bool {
        self.passphrase_command.is_some()
    }

    /// Runs the passphrase command now (once), so that a missing or failing command is found
    /// before anything is written. `file` names what needs it, for the error.
    pub fn passphrase(&self, file: &str) -> Result<&Passphrase, GpgError> {
        if let Some(p) = self.passphrase.get() {
            return Ok(p);
        }
        let line = self.passphrase_command.as_deref().ok_or_else(|| GpgError::NoPassphraseCommand(file.to_owned()))?;
        let p = passphrase_from_command(line)?;
        Ok(self.passphrase.get_or_init(|| p))
    }

    /// Starts encrypting to `key` into `output`: write the plaintext to the returned writer,
    /// then [`Encrypter::finish`].
    pub fn encrypter(key: &KeyId, output: File, what: &str) -> Result<Encrypter, GpgError> {
        let mut cmd = gpg();
        cmd.args(["--compress-level", "0", "--recipient", key.as_str(), "--encrypt"]);
        let mut child = cmd.stdin(Stdio::piped()).stdout(output).stderr(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take();
        Ok(Encrypter { child, stdin, what: what.to_owned() })
    }

    /// The plaintext of the encrypted file `path`, streamed out of gpg. The end of the stream
    /// is only reported once gpg has exited successfully, so a wrong passphrase or a
    /// corrupt file is an error, never a short read that looks whole.
    pub fn decrypt(&self, path: &Path) -> Result<Decrypted, GpgError> {
        let what = path.display().to_string();
        let passphrase = self.passphrase(&what)?;
        let mut cmd = gpg();
        cmd.args(["--passphrase-fd", "0", "--decrypt"]).arg(path);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // gpg reads the passphrase up to a newline or EOF; a write error means gpg already
        // exited, which the exit status reports.
        let _ = stdin.write_all(&passphrase.0).and_then(|()| stdin.write_all(b"\n"));
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(Decrypted { child: Some(child), stdout, what })
    }
}

impl Gpg {
    /// Decrypts the first bytes of `path` and stops: proves, before anything is written,
    /// that the passphrase opens the files (gpg decrypts the session key before it prints
    /// any plaintext).
    pub fn check_opens(&self, path: &Path) -> Result<(), GpgError> {
        let mut plain = self.decrypt(path)?;
        let mut first = [0u8; 1];
        // Zero bytes read is an empty plaintext, which gpg only reports after a successful exit.
        plain.read(&mut first).map(drop).map_err(GpgError::from_io)
    }
}

/// Encrypts `src` to `key` into `<src>.gpg` (published durably, never replacing a file),
/// then removes `src`: what Barman's `_encrypt_tar_backup` does to each tar archive.
pub fn encrypt_file(key: &KeyId, src: &Path) -> Result<std::path::PathBuf, GpgError> {
    let mut name = src.as_os_str().to_owned();
    name.push(".gpg");
    let dest = std::path::PathBuf::from(name);
    let mut tmp = crate::durable::TempFile::create(&dest, 0o600)?;
    let mut enc = Gpg::encrypter(key, tmp.file().try_clone()?, &src.display().to_string())?;
    io::copy(&mut io::BufReader::with_capacity(1 << 20, File::open(src)?), &mut enc)?;
    enc.finish()?;
    tmp.publish_new()?;
    std::fs::remove_file(src)?;
    crate::durable::fsync_dir(crate::durable::parent_of(src))?;
    Ok(dest)
}

/// Barman's `check_encryption` test: encrypts a short message to `key` (and throws it away).
pub fn test_encryption(key: &KeyId) -> Result<(), GpgError> {
    let sink = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let mut enc = Gpg::encrypter(key, sink, "the encryption test message")?;
    let _ = enc.write_all(b"I am a secret message. Encrypt me!");
    enc.finish()
}

impl GpgError {
    /// The [`GpgError`] an I/O error carries (from a [`Decrypted`] read), or the I/O error.
    pub fn from_io(e: io::Error) -> GpgError {
        e.downcast::<GpgError>().unwrap_or_else(GpgError::Io)
    }
}

/// `gpg` with Barman's base options, its environment (`GNUPGHOME`) inherited.
fn gpg() -> Command {
    let mut cmd = Command::new("gpg");
    cmd.args(BASE);
    cmd
}

/// Runs `line` with `sh -c` and returns its stdout, trimmed, as Barman's
/// `get_passphrase_from_command`: a non-zero exit or an empty output is an error, and
/// neither the output nor stderr is ever shown.
pub fn passphrase_from_command(line: &str) -> Result<Passphrase, GpgError> {
    let mut cmd = crate::remote::shell(line);
    let done = crate::remote::run_captured(&mut cmd, None)?.expect("no time limit");
    if !done.status.success() {
        return Err(GpgError::PassphraseCommand(done.returncode()));
    }
    let mut out = done.stdout;
    let text = String::from_utf8_lossy(&out).trim().as_bytes().to_vec();
    out.fill(0);
    if text.is_empty() {
        return Err(GpgError::EmptyPassphrase);
    }
    Ok(Passphrase(text))
}

/// Classifies a failed gpg run from its stderr, as Barman's `GPGEncryption.decrypt` does.
fn failure(file: &str, stderr: &[u8]) -> GpgError {
    let text = String::from_utf8_lossy(stderr);
    if text.contains("Bad passphrase") {
        return GpgError::BadPassphrase(file.to_owned());
    }
    if text.contains("No passphrase given") {
        return GpgError::NoPassphrase(file.to_owned());
    }
    let detail = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_owned();
    GpgError::Failed { file: file.to_owned(), detail }
}

fn read_stderr(child: &mut Child) -> Vec<u8> {
    let mut err = Vec::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut err);
    }
    err
}

/// A running `gpg --encrypt`: plaintext in, OpenPGP out to the file it was given.
#[derive(Debug)]
pub struct Encrypter {
    child: Child,
    stdin: Option<ChildStdin>,
    what: String,
}

impl Encrypter {
    /// Closes the input and waits for gpg; an error unless it succeeded.
    pub fn finish(mut self) -> Result<(), GpgError> {
        drop(self.stdin.take());
        let err = read_stderr(&mut self.child);
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(failure(&self.what, &err))
        }
    }
}

impl Write for Encrypter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin.as_mut().expect("open until finish").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin.as_mut().expect("open until finish").flush()
    }
}

impl Drop for Encrypter {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The plaintext of one file, read from a running `gpg --decrypt`.
#[derive(Debug)]
pub struct Decrypted {
    child: Option<Child>,
    stdout: ChildStdout,
    what: String,
}

impl Decrypted {
    fn check_exit(&mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let err = read_stderr(&mut child);
        if child.wait()?.success() {
            Ok(())
        } else {
            Err(failure(&self.what, &err).into())
        }
    }
}

impl Read for Decrypted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check_exit()?;
        }
        Ok(n)
    }
}

impl Drop for Decrypted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_openpgp_session_key_packets() {
        assert!(is_encrypted(&[0x85, 0x01, 0x0c])); // old format, tag 1, 2-byte length
        assert!(is_encrypted(&[0x84, 0x5e])); // old format, tag 1
        assert!(is_encrypted(&[0xc1, 0x5e])); // new format, tag 1
        assert!(is_encrypted(&[0x8c, 0x0d])); // old format, tag 3 (symmetric)
        assert!(!is_encrypted(&[0x1f, 0x8b, 0x08])); // gzip
        assert!(!is_encrypted(&[0xd1, 0x07])); // WAL page magic
        assert!(!is_encrypted(&[]));
    }

    #[test]
    fn passphrase_command_output_is_trimmed_and_never_shown() {
        let p = passphrase_from_command("printf '  s3cret \\n'").expect("runs");
        assert_eq!(p.0, b"s3cret");
        assert!(!format!("{p:?}").contains("s3cret"));
        let e = passphrase_from_command("echo s3cret; echo s3cret >&2; exit 7").expect_err("fails");
        assert_eq!(e.to_string(), "encryption_passphrase_command failed with code 7");
        assert!(matches!(passphrase_from_command("true"), Err(GpgError::EmptyPassphrase)));
        let none = Gpg::new(None, None);
        assert!(matches!(none.passphrase("f"), Err(GpgError::NoPassphraseCommand(_))));
    }

    #[test]
    fn gpg_failures_are_classified() {
        let bad =
            failure("f", b"gpg: public key decryption failed: Bad passphrase\ngpg: decryption failed: No secret key\n");
        assert!(matches!(bad, GpgError::BadPassphrase(_)));
        assert!(matches!(failure("f", b"gpg: No passphrase given\n"), GpgError::NoPassphrase(_)));
        let other = failure("f", b"gpg: x: skipped: No public key\ngpg: [stdin]: encryption failed: No public key\n");
        assert_eq!(other.to_string(), "gpg failed on 'f': gpg: [stdin]: encryption failed: No public key");
    }
}
