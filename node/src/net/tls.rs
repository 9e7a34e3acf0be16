//! The connection's security upgrade: libp2p's TLS 1.3 handshake (`/tls/1.0.0`, the libp2p TLS
//! spec, as libp2p-tls speaks it) with the cipher chosen for the CPU.
//!
//! libp2p-tls and noise both encrypt with ChaCha20-Poly1305, which ran at 2.7 GB/s on one core
//! here and was a fifth of a bulk transfer's CPU time on the two ends together; AES-128-GCM ran
//! at 11.5 GB/s where the CPU has AES instructions. In TLS 1.3 the dialer's order of cipher
//! suites decides (rustls servers follow the client's preference), so this module builds the
//! dialer's configuration itself, listing AES-GCM first when the CPU accelerates it and
//! ChaCha20-Poly1305 first when it does not. The listening side and the certificates (a fresh
//! key signed by the node's identity key) are libp2p-tls's own, and every certificate is checked
//! by libp2p-tls's parser, so a peer's identity is proved exactly as in libp2p-tls.
//!
//! Once TLS is up, the cluster admission exchange (`cluster`) runs inside the encrypted stream,
//! bound to this session by its exporter value and both authenticated peer ids; the upgrade
//! hands the connection on only when the peer is admitted.
//!
//! Owns this upgrade only: it must not touch the connection after the handshake and admission.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use super::cluster::{self, Admission, AdmissionError, Session};
use futures::{future::BoxFuture, io::BufReader, AsyncRead, AsyncWrite, FutureExt};
use futures_rustls::TlsStream;
use libp2p::{
    core::{
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
        UpgradeInfo,
    },
    identity::Keypair,
    tls::certificate,
    PeerId,
};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::aws_lc_rs::{cipher_suite, default_provider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme, SupportedCipherSuite,
};

/// The protocol name multistream-select agrees on: the libp2p TLS spec's.
const PROTOCOL: &str = "/tls/1.0.0";
/// ALPN value the libp2p TLS spec requires.
const ALPN: &[u8] = b"libp2p";
/// Bytes read from the socket at once under TLS. rustls asks its reader for 4 KiB at a time,
/// which would be one `recv` per 4 KiB of a bulk transfer.
const READ_BUFFER: usize = 64 * 1024;

/// The socket under TLS, read through a buffer of [`READ_BUFFER`] bytes.
type Buffered<C> = BufReader<C>;

/// The upgrade: a listening configuration (libp2p-tls's), a dialing one (ours), and how peers
/// are admitted once TLS is up.
#[derive(Clone)]
pub(super) struct Config {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    local: PeerId,
    admission: Admission,
}

/// Why a handshake or the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make this node's TLS certificate")]
    Certificate(#[from] certificate::GenError),
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    #[error("the peer's TLS certificate is not a libp2p certificate")]
    BadCertificate(#[from] certificate::ParseError),
    #[error("the peer presented {0} TLS certificates; exactly one is required")]
    CertificateCount(usize),
    #[error("cannot derive the session's exporter value")]
    Exporter(#[source] rustls::Error),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
}

impl Config {
    pub(super) fn new(keypair: &Keypair, admission: Admission) -> Result<Self, TlsError> {
        let server = libp2p::tls::make_server_config(keypair)?;
        // libp2p-tls's dialing configuration carries this node's certificate; keep it, and
        // replace the cipher order and the server check (which its config does not expose).
        let theirs = libp2p::tls::make_client_config(keypair, None)?;
        let mut provider = default_provider();
        provider.cipher_suites = cipher_order(aes_is_fast());
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerCertificate))
            .with_client_cert_resolver(theirs.client_auth_cert_resolver.clone());
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Config {
            server: Arc::new(server),
            client: Arc::new(client),
            local: keypair.public().to_peer_id(),
            admission,
        })
    }
}

/// TLS 1.3 suites in the order the dialer offers them.
fn cipher_order(aes_is_fast: bool) -> Vec<SupportedCipherSuite> {
    let aes = [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    let chacha = cipher_suite::TLS13_CHACHA20_POLY1305_SHA256;
    if aes_is_fast {
        aes.into_iter().chain([chacha]).collect()
    } else {
        [chacha].into_iter().chain(aes).collect()
    }
}

/// Whether this CPU has instructions for AES and for GCM's multiplication.
fn aes_is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The dialer's check of the listener's certificate, as the libp2p TLS spec sets it: exactly one
/// self-signed certificate, valid now, carrying the peer's identity key and that key's signature
/// over the certificate's key (all checked by `certificate::parse`), and the handshake signed by
/// the certificate's key. Which peer it is, the swarm compares with the one dialled.
#[derive(Debug)]
struct PeerCertificate;

impl ServerCertVerifier for PeerCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _server_name: &ServerName,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "a libp2p peer presents exactly one certificate".into(),
            ));
        }
        certificate::parse(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::parse(cert)?.verify_signature(dss.scheme, message, dss.signature())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ED25519,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA256,
        ]
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<Buffered<C>>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        let socket = BufReader::with_capacity(READ_BUFFER, socket);
        let handshake = futures_rustls::TlsAcceptor::from(self.server).accept(socket);
        let tls = with_exporter(handshake, |s| &**s.get_ref().1);
        admitted(tls, self.local, self.admission, false).boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<Buffered<C>>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        // The spec: a client sends no server name. An IP address name keeps rustls from sending
        // the SNI extension.
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into());
        let socket = BufReader::with_capacity(READ_BUFFER, socket);
        let handshake = futures_rustls::TlsConnector::from(self.client).connect(name, socket);
        let tls = with_exporter(handshake, |s| &**s.get_ref().1);
        admitted(tls, self.local, self.admission, true).boxed()
    }
}

/// Finishes either side's handshake and takes the session's exporter value for admission from
/// its connection (`connection`).
async fn with_exporter<S, C, D>(
    handshake: impl Future<Output = std::io::Result<S>>,
    connection: impl FnOnce(&S) -> &rustls::ConnectionCommon<D>,
) -> std::io::Result<(TlsStream<C>, Result<[u8; 32], TlsError>)>
where
    S: Into<TlsStream<C>>,
{
    let stream = handshake.await?;
    let exporter = connection(&stream)
        .export_keying_material([0u8; 32], cluster::EXPORTER_LABEL, None)
        .map_err(TlsError::Exporter);
    Ok((stream.into(), exporter))
}

/// Waits for either side's handshake, names the peer by the one certificate it presented
/// (already verified during the handshake), then runs cluster admission bound to this session.
async fn admitted<C>(
    handshake: impl Future<Output = std::io::Result<(TlsStream<C>, Result<[u8; 32], TlsError>)>>,
    local: PeerId,
    admission: Admission,
    dialer: bool,
) -> Result<(PeerId, TlsStream<C>), TlsError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut stream, exporter) = handshake.await.map_err(TlsError::Handshake)?;
    let peer = match stream.get_ref().1.peer_certificates() {
        Some([cert]) => certificate::parse(cert)?.peer_id(),
        Some(certs) => return Err(TlsError::CertificateCount(certs.len())),
        None => return Err(TlsError::CertificateCount(0)),
    };
    let (dialer_id, listener_id) = if dialer { (local, peer) } else { (peer, local) };
    let session = Session {
        exporter: exporter?,
        dialer: dialer_id,
        listener: listener_id,
    };
    cluster::admit(&mut stream, &admission, &session, dialer).await?;
    Ok((peer, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::tcp::tokio::TcpStream;

    fn keyed(byte: u8) -> Admission {
        let me = PeerId::random();
        let key = super::super::ClusterKey {
            secret: [byte; 32],
            admins: vec![me],
        };
        Admission::new(&super::super::Standing::Member(super::super::Lobby::new(
            key, me,
        )))
    }

    type Upgraded = Result<(PeerId, TlsStream<Buffered<TcpStream>>), TlsError>;

    /// Runs both ends of the handshake over a loopback TCP connection, both with cluster key
    /// [7; 32].
    async fn handshake(dialer: &Keypair, listener: &Keypair) -> (Upgraded, Upgraded) {
        handshake_with((dialer, keyed(7)), (listener, keyed(7))).await
    }

    async fn handshake_with(
        (dialer, dialer_admission): (&Keypair, Admission),
        (listener, listener_admission): (&Keypair, Admission),
    ) -> (Upgraded, Upgraded) {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), socket.accept());
        let (a, (b, _)) = (a.expect("connect"), b.expect("accept"));
        let out = Config::new(dialer, dialer_admission)
            .expect("dialer config")
            .upgrade_outbound(TcpStream(a), PROTOCOL);
        let inb = Config::new(listener, listener_admission)
            .expect("listener config")
            .upgrade_inbound(TcpStream(b), PROTOCOL);
        tokio::join!(out, inb)
    }

    #[tokio::test]
    async fn each_end_learns_the_others_peer_id_and_bytes_cross() {
        let (dialer, listener) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (out, inb) = handshake(&dialer, &listener).await;
        let (listener_seen, mut out) = out.expect("dialer side");
        let (dialer_seen, mut inb) = inb.expect("listener side");
        assert_eq!(listener_seen, listener.public().to_peer_id());
        assert_eq!(dialer_seen, dialer.public().to_peer_id());

        let suite = out.get_ref().1.negotiated_cipher_suite().expect("suite");
        assert_eq!(suite, cipher_order(aes_is_fast())[0]);

        let payload = vec![7u8; 200_000];
        let send = async {
            out.write_all(&payload).await.expect("write");
            out.flush().await.expect("flush");
        };
        let mut got = vec![0u8; payload.len()];
        let recv = async { inb.read_exact(&mut got).await.expect("read") };
        tokio::join!(send, recv);
        assert_eq!(got, payload);
    }

    #[tokio::test]
    async fn another_cluster_key_is_refused_after_the_handshake_on_both_ends() {
        let (dialer, listener) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (out, inb) = handshake_with((&dialer, keyed(7)), (&listener, keyed(8))).await;
        for side in [out.map(drop), inb.map(drop)] {
            let err = side.expect_err("another key must be refused");
            assert!(
                matches!(err, TlsError::Admission(AdmissionError::WrongKey)),
                "{err}"
            );
            assert!(err.to_string().starts_with(cluster::REFUSED), "{err}");
        }
    }

    #[test]
    fn a_tampered_certificate_or_a_chain_is_refused() {
        let (cert, _key) = certificate::generate(&Keypair::generate_ed25519()).expect("cert");
        let check = |end: &CertificateDer, chain: &[CertificateDer]| {
            PeerCertificate.verify_server_cert(
                end,
                chain,
                &ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into()),
                &[],
                UnixTime::now(),
            )
        };
        assert!(check(&cert, &[]).is_ok());
        assert!(check(&cert, std::slice::from_ref(&cert)).is_err());
        let mut bytes = cert.as_ref().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55; // inside the self-signature
        assert!(check(&CertificateDer::from(bytes), &[]).is_err());
    }

    #[test]
    fn the_dialer_offers_aes_first_only_where_the_cpu_accelerates_it() {
        let names = |fast| -> Vec<_> {
            cipher_order(fast)
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(true)[0],
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(
            names(false)[0],
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        assert_eq!(names(true).len(), 3);
    }
}
