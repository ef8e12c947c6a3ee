//! The `tls-server-end-point` channel binding hash (RFC 5929): the server certificate's DER
//! hashed with the hash of its signature algorithm, SHA-256 when that is MD5 or SHA-1. The
//! algorithm is read from the certificate's outer `signatureAlgorithm` (a few DER headers,
//! no X.509 parser needed).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash, or `None` for an unknown or parameterised algorithm (RSASSA-PSS, Ed25519).
pub fn hash(cert: &[u8]) -> Option<Vec<u8>> {
    Some(match hash_name(signature_oid(cert)?)? {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The hash for a signature algorithm OID (its DER content bytes).
fn hash_name(oid: &[u8]) -> Option<Hash> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    if oid == ECDSA_SHA1 {
        return Some(Hash::Sha256);
    }
    if let Some(&[last]) = oid.strip_prefix(RSA) {
        return match last {
            4 | 5 | 11 => Some(Hash::Sha256), // md5, sha1, sha256 WithRSAEncryption
            12 => Some(Hash::Sha384),
            13 => Some(Hash::Sha512),
            _ => None,
        };
    }
    match oid.strip_prefix(ECDSA_SHA2) {
        Some(&[2]) => Some(Hash::Sha256),
        Some(&[3]) => Some(Hash::Sha384),
        Some(&[4]) => Some(Hash::Sha512),
        _ => None,
    }
}

/// A DER element's tag, header length and content length.
fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((tag, 2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*b.get(2 + i)?);
    }
    Some((tag, 2 + n, len))
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }`.
fn signature_oid(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (tag, h, _) = header(cert)?;
    let inner = cert.get(h..).filter(|_| tag == SEQUENCE)?;
    let (tag, h, len) = header(inner)?;
    let after_tbs = inner.get(h + len..).filter(|_| tag == SEQUENCE)?;
    let (tag, h, _) = header(after_tbs)?;
    let algorithm = after_tbs.get(h..).filter(|_| tag == SEQUENCE)?;
    let (tag, h, len) = header(algorithm)?;
    algorithm.get(h..h + len).filter(|_| tag == OID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_signature_algorithm() {
        // SEQUENCE { SEQUENCE {} (tbs), SEQUENCE { OID sha384WithRSAEncryption, NULL }, BIT STRING }
        let cert = [
            0x30, 0x14, 0x30, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05,
            0x00, 0x03, 0x01, 0x00,
        ];
        assert_eq!(signature_oid(&cert), Some(&cert[8..17]));
        assert_eq!(hash(&cert).map(|h| h.len()), Some(48));
        assert!(hash(&cert[..10]).is_none(), "a truncated certificate has no hash");
    }
}
