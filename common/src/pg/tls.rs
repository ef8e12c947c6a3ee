//! TLS for the client, with libpq's `sslmode` rules (rustls, ring provider):
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | `disable`, `allow` | no | - |
//! | `prefer` (default) | if the server accepts it | not checked |
//! | `require` | mandatory | not checked, unless the root file exists: then as `verify-ca` (libpq's compatibility rule) |
//! | `verify-ca` | mandatory | chain to `sslrootcert` |
//! | `verify-full` | mandatory | chain to `sslrootcert` and the host name |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`; a client certificate is sent when
//! `sslcert` and `sslkey` (default `~/.postgresql/postgresql.crt` / `.key`) both exist.
//! Unix sockets never use TLS, as with libpq. `sslsni`, `ssl_min_protocol_version` /
//! `ssl_max_protocol_version` (this client speaks TLS 1.2 and 1.3) and the revocation
//! lists `sslcrl` (default `~/.postgresql/root.crl`) / `sslcrldir`, checked whenever the
//! server certificate is verified, are honoured.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conninfo::{ConnTarget, SslMode};
use super::connopts::TlsVersion;
use super::PgError;

/// The SSLRequest message: length 8, code 1234/5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The stream after the SSL negotiation: TLS, or the TCP stream as it was.
pub(super) enum Negotiated {
    /// TLS is on.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Plaintext (sslmode disable/allow, or prefer with a server without SSL).
    Plain(TcpStream),
}

fn tls_error(target: &ConnTarget, msg: impl std::fmt::Display) -> PgError {
    PgError::Tls(format!("{}: {msg}", target.describe()))
}

/// Runs the SSL negotiation `target.sslmode` asks for on a fresh TCP connection.
pub(super) async fn negotiate(mut tcp: TcpStream, target: &ConnTarget) -> Result<Negotiated, PgError> {
    if matches!(target.sslmode, SslMode::Disable | SslMode::Allow) {
        return Ok(Negotiated::Plain(tcp));
    }
    let config = client_config(target)?;
    tcp.write_all(&SSL_REQUEST).await?;
    match tcp.read_u8().await? {
        b'S' => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| tls_error(target, format!("invalid server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| tls_error(target, format!("SSL connection failed: {e}")))?;
            Ok(Negotiated::Tls(Box::new(tls)))
        }
        b'N' if target.sslmode == SslMode::Prefer => Ok(Negotiated::Plain(tcp)),
        b'N' => Err(tls_error(target, "server does not support SSL, but SSL was required")),
        other => Err(PgError::Protocol(format!("unexpected answer to SSLRequest: 0x{other:02x}"))),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The rustls configuration for `target`'s sslmode and files.
fn client_config(target: &ConnTarget) -> Result<ClientConfig, PgError> {
    let provider = provider();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(TlsVersion::V1_2, &rustls::version::TLS12), (TlsVersion::V1_3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| target.ssl_versions.allows(*v))
            .map(|(_, p)| p)
            .collect();
    if versions.is_empty() {
        return Err(tls_error(
            target,
            "ssl_min_protocol_version/ssl_max_protocol_version allow no TLS version this client speaks (TLSv1.2, TLSv1.3)",
        ));
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| tls_error(target, e))?;
    let root_file = target.sslrootcert.as_deref().filter(|p| p.exists());
    let verifier: Arc<dyn ServerCertVerifier> = match (target.sslmode, root_file) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            let file = target
                .sslrootcert
                .as_deref()
                .map_or_else(|| "~/.postgresql/root.crt".into(), |p| p.display().to_string());
            return Err(tls_error(
                target,
                format!("root certificate file \"{file}\" does not exist; either provide the file or change sslmode to disable server certificate verification"),
            ));
        }
        (SslMode::VerifyFull, Some(file)) => webpki(target, file, &provider)?,
        (SslMode::VerifyCa | SslMode::Require, Some(file)) => Arc::new(IgnoreName(webpki(target, file, &provider)?)),
        _ => Arc::new(NoVerify(provider)),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match (&target.sslcert, &target.sslkey) {
        (Some(cert), Some(key)) if cert.exists() && key.exists() => {
            let chain = read_certs(target, cert)?;
            let key = rustls_pemfile::private_key(&mut BufReader::new(open(target, key)?))
                .map_err(|e| tls_error(target, format!("{}: {e}", key.display())))?
                .ok_or_else(|| tls_error(target, format!("no private key in {}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| tls_error(target, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = config;
    config.enable_sni = target.sslsni;
    Ok(config)
}

fn open(target: &ConnTarget, path: &Path) -> Result<std::fs::File, PgError> {
    std::fs::File::open(path).map_err(|e| tls_error(target, format!("cannot read {}: {e}", path.display())))
}

fn read_certs(target: &ConnTarget, path: &Path) -> Result<Vec<CertificateDer<'static>>, PgError> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(open(target, path)?))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(target, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(target, format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

fn webpki(
    target: &ConnTarget,
    roots_file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, PgError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(target, roots_file)? {
        roots.add(cert).map_err(|e| tls_error(target, format!("{}: {e}", roots_file.display())))?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(revocation_lists(target)?)
        .build()
        .map_err(|e| tls_error(target, e))
}

/// The revocation lists of `sslcrl` and of every file in `sslcrldir` (missing: none).
fn revocation_lists(target: &ConnTarget) -> Result<Vec<CertificateRevocationListDer<'static>>, PgError> {
    let mut files: Vec<std::path::PathBuf> = target.sslcrl.iter().filter(|p| p.is_file()).cloned().collect();
    if let Some(dir) = &target.sslcrldir {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
    }
    let mut crls = Vec::new();
    for file in files {
        for crl in rustls_pemfile::crls(&mut BufReader::new(open(target, &file)?)) {
            crls.push(crl.map_err(|e| tls_error(target, format!("{}: {e}", file.display())))?);
        }
    }
    Ok(crls)
}

/// The `tls-server-end-point` channel binding data of an established TLS connection: the
/// server certificate hashed with its signature's hash (SHA-256 for MD5 and SHA-1), or
/// `None` when that hash is not one of SHA-256/384/512 (as libpq, which then cannot bind).
pub(super) fn server_end_point(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let cert = stream.get_ref().1.peer_certificates()?.first()?;
    super::endpoint::hash(cert.as_ref())
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root file: encryption without authentication of the server
/// (the handshake signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
