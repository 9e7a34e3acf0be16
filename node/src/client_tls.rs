//! The CLI's side of the API's HTTPS (`api::tls`): which certificate a
//! node may present, and the TLS connector the HTTP client dials with.
//!
//! Owns [`Trust`] — a pinned SHA-256 fingerprint (given, or the one the
//! node wrote to its data dir), or a certificate authority's PEM file for
//! a node started with `--tls-cert` — and checking the node's certificate
//! against it in the handshake. Must not know routes or bodies
//! (`client` does).

use crate::paths::DataDir;
use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

/// What certificate an HTTPS node may present.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Its SHA-256 fingerprint (`AB:CD:…`, colons and case optional).
    pub fingerprint: Option<String>,
    /// A PEM file of the authorities that may have issued it.
    pub ca: Option<PathBuf>,
}

/// The TLS connector for a node's HTTPS API: `trust`'s fingerprint, else
/// its authorities, else the fingerprint the node on `dir` wrote.
pub fn connector(dir: &DataDir, trust: &Trust) -> Result<Arc<Connector>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match (&trust.fingerprint, &trust.ca) {
        (None, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read --ca {}", ca.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!("--ca {} holds no usable certificate", ca.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (given, _) => {
            let text = match given {
                Some(f) => f.clone(),
                None => pinned_in(dir)?,
            };
            let pin = Pinned {
                sha256: parse_fingerprint(&text)?,
                provider,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(pin))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(Connector(Arc::new(config))))
}

/// The fingerprint the node on `dir` serves with.
fn pinned_in(dir: &DataDir) -> Result<String> {
    let file = crate::api::tls::fingerprint_file(dir);
    std::fs::read_to_string(&file).with_context(|| {
        format!(
            "the node's API is HTTPS and {} cannot be read: give its certificate's fingerprint \
             with --api-fingerprint (the node prints it at start; `peerbatch status` on its \
             machine shows it), or --ca with the authority that issued it",
            file.display()
        )
    })
}

/// A fingerprint as 32 bytes, from `AB:CD:…` (colons, case and a
/// `SHA256:` prefix optional).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    let hex: String = text
        .strip_prefix("SHA256:")
        .or_else(|| text.strip_prefix("sha256:"))
        .unwrap_or(text)
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>();
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| {
            format!("{text:?} is not a SHA-256 fingerprint (32 hex bytes, as AB:CD:…)")
        })
}

/// Accepts exactly the certificate whose SHA-256 is pinned (its name is
/// not checked: a self-signed certificate names no address for certain),
/// and checks the handshake is signed with its key.
#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if seen.as_ref() == self.sha256 {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::General(format!(
            "the node's certificate has fingerprint {}, not the one trusted",
            crate::api::tls::fingerprint(end_entity)
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Dials HTTPS for `ureq` with a [`Trust`]'s config.
pub struct Connector(Arc<ClientConfig>);

impl ureq::TlsConnector for Connector {
    fn connect(
        &self,
        dns_name: &str,
        mut io: Box<dyn ureq::ReadWrite>,
    ) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let failed = |e: String| ureq::Error::from(std::io::Error::other(e));
        let name = ServerName::try_from(dns_name.to_string())
            .map_err(|e| failed(format!("{dns_name:?}: {e}")))?;
        let mut conn =
            ClientConnection::new(self.0.clone(), name).map_err(|e| failed(e.to_string()))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut io)
                .map_err(|e| failed(format!("TLS handshake: {e}")))?;
        }
        Ok(Box::new(TlsStream(rustls::StreamOwned::new(conn, io))))
    }
}

struct TlsStream(rustls::StreamOwned<ClientConnection, Box<dyn ureq::ReadWrite>>);

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsStream")
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ureq::ReadWrite for TlsStream {
    fn socket(&self) -> Option<&TcpStream> {
        self.0.sock.socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_with_or_without_colons_prefix_or_case() {
        let colons = "AB:".repeat(31) + "AB";
        for text in [
            colons.clone(),
            colons.to_lowercase(),
            "ab".repeat(32),
            format!("SHA256:{colons}"),
        ] {
            assert_eq!(parse_fingerprint(&text).unwrap(), [0xAB; 32], "{text}");
        }
        for bad in ["AB:CD", "", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
