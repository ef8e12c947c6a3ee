//! The checksums of a stream: [`SumAlgo`] and its [`Hasher`], the sums member's text
//! ([`parse_sums`]) and, parsed, [`Sums`], which checks a member's digest.

use std::collections::HashMap;

use md5::Md5;
use sha2::{Digest, Sha256};

/// The checksum algorithm of a stream, named by its member (`SHA256SUMS` or `MD5SUMS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SumAlgo {
    /// SHA-256, the default since Barman 3.12.
    Sha256,
    /// MD5, for Barman servers older than 3.12 (`--md5`).
    Md5,
}

impl SumAlgo {
    /// The member name carrying the sums.
    pub fn member_name(self) -> &'static str {
        match self {
            SumAlgo::Sha256 => "SHA256SUMS",
            SumAlgo::Md5 => "MD5SUMS",
        }
    }

    /// The algorithm a member name announces, if it is a checksum member.
    pub fn from_member_name(name: &str) -> Option<SumAlgo> {
        match name {
            "SHA256SUMS" => Some(SumAlgo::Sha256),
            "MD5SUMS" => Some(SumAlgo::Md5),
            _ => None,
        }
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            SumAlgo::Sha256 => Hasher::Sha256(Sha256::new()),
            SumAlgo::Md5 => Hasher::Md5(Md5::new()),
        }
    }
}

/// A running digest of either algorithm.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(Sha256),
    /// MD5.
    Md5(Md5),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    /// The lower-case hex digest.
    pub fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// The digest of `data` in lower-case hex.
pub fn digest_hex(algo: SumAlgo, data: &[u8]) -> String {
    let mut h = algo.hasher();
    h.update(data);
    h.hex()
}

/// Parses the body of a sums member: `<hex> *<name>` or `<hex>  <name>` lines. Malformed
/// lines are returned separately so the caller can warn about them, as Barman does.
pub fn parse_sums(body: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut sums, mut bad) = (Vec::new(), Vec::new());
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line.split_once(' ').and_then(|(hash, rest)| {
            let name = rest.strip_prefix('*').or_else(|| rest.strip_prefix(' '))?;
            let ok = !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty();
            ok.then(|| (name.to_owned(), hash.to_ascii_lowercase()))
        });
        match parsed {
            Some(pair) => sums.push(pair),
            None => bad.push(line.to_owned()),
        }
    }
    (sums, bad)
}

/// The sums member of a stream, parsed: the expected digest of each file it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sums {
    algo: SumAlgo,
    digests: HashMap<String, String>,
    bad_lines: Vec<String>,
}

/// Why a file's digest does not check out against the sums member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumError {
    /// The sums member does not name the file.
    #[error("no checksum for {name}")]
    Missing {
        /// The file.
        name: String,
    },
    /// The digests differ.
    #[error("checksum mismatch for {name}: got {got}, expected {want}")]
    Mismatch {
        /// The file.
        name: String,
        /// The digest of the bytes received.
        got: String,
        /// The digest the sums member gives.
        want: String,
    },
}

impl Sums {
    /// Parses the body of a sums member of algorithm `algo` (see [`parse_sums`]).
    pub fn parse(algo: SumAlgo, body: &str) -> Sums {
        let (sums, bad_lines) = parse_sums(body);
        Sums { algo, digests: sums.into_iter().collect(), bad_lines }
    }

    /// No sums at all (a stream without a sums member): every file is [`SumError::Missing`].
    pub fn empty(algo: SumAlgo) -> Sums {
        Sums { algo, digests: HashMap::new(), bad_lines: Vec::new() }
    }

    /// The algorithm of the digests.
    pub fn algo(&self) -> SumAlgo {
        self.algo
    }

    /// The lines that were not `<hex> *<name>` or `<hex>  <name>` (Barman warns about them).
    pub fn bad_lines(&self) -> &[String] {
        &self.bad_lines
    }

    /// Whether the member names `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.digests.contains_key(name)
    }

    /// The names of the files it gives a digest for, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.digests.keys().map(String::as_str)
    }

    /// Checks the lower-case hex `digest` (of [`Sums::algo`]) of the file `name`.
    pub fn check(&self, name: &str, digest: &str) -> Result<(), SumError> {
        match self.digests.get(name) {
            None => Err(SumError::Missing { name: name.to_owned() }),
            Some(want) if want != digest => {
                Err(SumError::Mismatch { name: name.to_owned(), got: digest.to_owned(), want: want.clone() })
            }
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_lines_in_both_forms() {
        let (sums, bad) = parse_sums("ab *x\nCD  y\nnonsense\n");
        assert_eq!(sums, vec![("x".into(), "ab".into()), ("y".into(), "cd".into())]);
        assert_eq!(bad, vec!["nonsense".to_owned()]);
    }

    #[test]
    fn a_digest_checks_against_its_line() {
        let sums = Sums::parse(SumAlgo::Sha256, "ab *x\nbad line\n");
        assert_eq!(sums.bad_lines(), ["bad line"]);
        assert!(sums.covers("x") && !sums.covers("y"));
        assert_eq!(sums.check("x", "ab"), Ok(()));
        assert!(matches!(sums.check("x", "cd"), Err(SumError::Mismatch { ref want, .. }) if want == "ab"));
        assert!(matches!(sums.check("y", "ab"), Err(SumError::Missing { .. })));
    }
}
