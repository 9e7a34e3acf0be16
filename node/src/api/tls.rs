//! HTTPS for the API: required when it listens beyond loopback (its token
//! and the portal's session cookie must not cross a network in the clear).
//!
//! Owns which addresses need it ([`needs_tls`]: any but `127.0.0.1` and
//! `::1`), the certificate — given with `--tls-cert/--tls-key`, or
//! self-signed, made at the node's first start and kept in
//! `DATA/api-tls/` — its SHA-256 [`fingerprint`] (written to
//! `DATA/api-tls/fingerprint` for the CLI and the Python client on this
//! machine to pin), and the server side of the handshake. Must not know
//! routes; `guard::serve` runs the handshake it configures, and
//! `client_tls` is the CLI's side.

use crate::paths::{self, DataDir};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Why the API's certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert and --tls-key are given together, or neither")]
    Half,
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("{path} holds no certificate")]
    NoCert { path: PathBuf },
    #[error("cannot make the API's self-signed certificate: {0}")]
    Make(#[from] rcgen::Error),
    #[error("{0}")]
    Write(String),
    #[error("the API's certificate and key do not make a TLS server: {0}")]
    Config(#[from] rustls::Error),
}

/// The API's TLS server side and its certificate's fingerprint.
#[derive(Clone)]
pub struct ApiTls {
    pub acceptor: TlsAcceptor,
    /// SHA-256 of the certificate, as `AB:CD:…` (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub fingerprint: String,
}

/// Whether the API at `addr` must serve HTTPS: anywhere but the loopback
/// addresses a remote machine can never reach through a route
/// (`127.0.0.1`, `::1`).
pub fn needs_tls(addr: &SocketAddr) -> bool {
    !matches!(addr.ip(), IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST)
        && !matches!(addr.ip(), IpAddr::V6(ip) if ip == Ipv6Addr::LOCALHOST)
}

/// The API's address as the `api` file and `PEERBATCH_API` give it:
/// `https://ADDR` over TLS, else `ADDR`.
pub fn api_url(addr: SocketAddr, tls: Option<&ApiTls>) -> String {
    match tls {
        Some(_) => format!("https://{addr}"),
        None => addr.to_string(),
    }
}

/// The SHA-256 fingerprint of a DER certificate, as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Where the self-signed certificate, its key and the fingerprint of the
/// certificate in use are kept.
pub fn cert_dir(dir: &DataDir) -> PathBuf {
    dir.root.join("api-tls")
}

/// The file holding the fingerprint of the certificate the API serves.
pub fn fingerprint_file(dir: &DataDir) -> PathBuf {
    cert_dir(dir).join("fingerprint")
}

/// The API's TLS for a node listening on `addr`: `None` on loopback
/// without a certificate given; else the given certificate, or the data
/// dir's self-signed one (made now if there is none yet, naming `addr`'s
/// IP, `localhost` and this host).
pub fn for_api(
    dir: &DataDir,
    addr: &SocketAddr,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ApiTls>, TlsError> {
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        (None, None) if !needs_tls(addr) => {
            let _ = std::fs::remove_file(fingerprint_file(dir));
            return Ok(None);
        }
        (None, None) => self_signed(dir, addr)?,
        _ => return Err(TlsError::Half),
    };
    let chain = read_chain(&cert)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem {
        path: key.clone(),
        why: e.to_string(),
    })?;
    let printed = fingerprint(&chain[0]);
    write(&fingerprint_file(dir), &printed)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(ApiTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint: printed,
    }))
}

/// TLS for the functions listener at `addr` (its callers' keys must not
/// cross a network in the clear either): the API's when it has one, else
/// what [`for_api`] makes for `addr` (none on loopback).
pub fn for_functions(
    dir: &DataDir,
    addr: &SocketAddr,
    api: Option<&ApiTls>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ApiTls>, TlsError> {
    match api {
        Some(tls) => Ok(Some(tls.clone())),
        None if !needs_tls(addr) => Ok(None),
        None => for_api(dir, addr, cert, key),
    }
}

/// The certificates of a PEM file, the server's first.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// The data dir's self-signed certificate and key files, made if missing.
fn self_signed(dir: &DataDir, addr: &SocketAddr) -> Result<(PathBuf, PathBuf), TlsError> {
    let folder = cert_dir(dir);
    let (cert, key) = (folder.join("cert.pem"), folder.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_string()];
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if !host.trim().is_empty() {
        names.push(host.trim().to_string());
    }
    let made = rcgen::generate_simple_self_signed(names)?;
    write(&key, &made.key_pair.serialize_pem())?;
    write(&cert, &made.cert.pem())?;
    Ok((cert, key))
}

/// Writes `text` to `path` (readable by the node's account only), making
/// its folder if needed.
fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .map_err(|e| TlsError::Write(format!("cannot make {}: {e}", folder.display())))?;
    paths::write_private(path, text.as_bytes()).map_err(|e| TlsError::Write(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_loopback_addresses_go_without_tls() {
        for plain in ["127.0.0.1:1", "[::1]:1"] {
            assert!(!needs_tls(&plain.parse().unwrap()), "{plain}");
        }
        for lan in ["0.0.0.0:1", "127.0.0.2:1", "10.1.2.3:1", "[::]:1"] {
            assert!(needs_tls(&lan.parse().unwrap()), "{lan}");
        }
    }
}
