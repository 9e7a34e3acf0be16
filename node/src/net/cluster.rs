//! Cluster admission, bound to the TLS session: the first bytes each side sends inside a new
//! connection's TLS stream, before multistream-select negotiates anything over it.
//!
//! Owns this exchange and the admission key derived from the cluster key; it must not touch
//! the connection after the exchange, the TLS handshake before it, or any other node state.
//!
//! Each side sends one [`Hello`] at once and then reads the other's:
//! - a node with a cluster key sends `K` and
//!   `tag = blake3::keyed_hash(K, role ‖ exporter ‖ dialer id ‖ listener id)`, where `K` is
//!   derived from the cluster key, `role` is `b'D'` for the dialer's tag and `b'L'` for the
//!   listener's, `exporter` is the TLS session's exporter value (RFC 8446 §7.5, label
//!   [`EXPORTER_LABEL`]) and the ids are the peer ids TLS authenticated, each with its length;
//! - a node running open sends `O` and nothing else.
//!
//! A keyed node admits only a peer whose tag it computes itself (compared in constant time);
//! an open node admits only open peers. The exporter value is a secret of this one TLS session
//! and the two peer ids are those its certificates proved, so a tag is worth nothing on any
//! other connection: a host without the key that relays a member's bytes between two
//! connections (so that the member answers its own challenge) gets a tag for a session it is
//! not part of. The role byte stops a peer from reflecting our own tag back.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;

/// Domain separation for the key derived from the cluster key.
const KEY_CONTEXT: &str = "peerbatch 2026-12 cluster admission v2";
/// The TLS exporter label of this exchange (RFC 5705 / RFC 8446 exporters).
pub(super) const EXPORTER_LABEL: &[u8] = b"EXPORTER-peerbatch-cluster-admission";
/// Kind byte of a keyed hello.
const KEYED: u8 = b'K';
/// Kind byte of an open node's hello.
const OPEN: u8 = b'O';

/// How this node admits peers.
#[derive(Clone, Copy)]
pub(super) enum Admission {
    /// Only peers holding the cluster key this admission key was derived from.
    Keyed([u8; 32]),
    /// Only other open nodes (`--insecure-open`): anyone who can reach us and runs open.
    Open,
}

impl Admission {
    /// Admission with the cluster key file's 32 bytes, or open without one.
    pub(super) fn new(cluster_key: Option<&[u8; 32]>) -> Admission {
        match cluster_key {
            Some(key) => Admission::Keyed(blake3::derive_key(KEY_CONTEXT, key)),
            None => Admission::Open,
        }
    }
}

/// What TLS established for one connection, which every tag is bound to.
pub(super) struct Session {
    /// [`EXPORTER_LABEL`]'s exporter value of this TLS session.
    pub(super) exporter: [u8; 32],
    pub(super) dialer: PeerId,
    pub(super) listener: PeerId,
}

impl Session {
    fn tag(&self, key: &[u8; 32], role: u8) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(key);
        hasher.update(&[role]).update(&self.exporter);
        for id in [self.dialer, self.listener] {
            let bytes = id.to_bytes();
            let len = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
            hasher.update(&[len]).update(&bytes);
        }
        hasher.finalize()
    }
}

/// How every admission refusal's message begins (`refusals` recognises it).
pub(super) const REFUSED: &str = "cluster admission failed";

/// Why a connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("{REFUSED}: the peer does not hold our cluster key")]
    WrongKey,
    #[error("{REFUSED}: the peer runs open, without a cluster key")]
    PeerOpen,
    #[error("{REFUSED}: the peer holds a cluster key and this node runs open")]
    PeerKeyed,
    #[error("admission message of kind {kind:#04x} ({len} bytes) is not one this version sends")]
    Malformed { kind: u8, len: u8 },
    #[error("admission exchange interrupted")]
    Io(#[from] io::Error),
}

/// One side's first message.
struct Hello {
    kind: u8,
    body: Vec<u8>,
}

impl Hello {
    async fn send<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> io::Result<()> {
        let len = u8::try_from(self.body.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut frame = vec![self.kind, len];
        frame.extend_from_slice(&self.body);
        stream.write_all(&frame).await?;
        stream.flush().await
    }

    /// Reads a hello; its body is at most 255 bytes by construction.
    async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Hello> {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        let mut body = vec![0u8; usize::from(head[1])];
        stream.read_exact(&mut body).await?;
        Ok(Hello {
            kind: head[0],
            body,
        })
    }
}

/// Runs the exchange on a freshly authenticated TLS stream. `dialer` says which end we are.
pub(super) async fn admit<S>(
    stream: &mut S,
    admission: Admission,
    session: &Session,
    dialer: bool,
) -> Result<(), AdmissionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (my_role, their_role) = if dialer { (b'D', b'L') } else { (b'L', b'D') };
    let mine = match admission {
        Admission::Keyed(key) => Hello {
            kind: KEYED,
            body: session.tag(&key, my_role).as_bytes().to_vec(),
        },
        Admission::Open => Hello {
            kind: OPEN,
            body: Vec::new(),
        },
    };
    mine.send(stream).await?;
    let theirs = Hello::read(stream).await?;
    match (admission, theirs.kind, theirs.body.len()) {
        (Admission::Keyed(key), KEYED, 32) => {
            // `blake3::Hash` compares in constant time.
            if session.tag(&key, their_role) == *theirs.body.as_slice() {
                Ok(())
            } else {
                Err(AdmissionError::WrongKey)
            }
        }
        (Admission::Keyed(_), OPEN, 0) => Err(AdmissionError::PeerOpen),
        (Admission::Open, OPEN, 0) => Ok(()),
        (Admission::Open, KEYED, 32) => Err(AdmissionError::PeerKeyed),
        (_, kind, len) => Err(AdmissionError::Malformed {
            kind,
            len: u8::try_from(len).unwrap_or(u8::MAX),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::{identity::Keypair, tcp::tokio::TcpStream};

    fn session(exporter: u8) -> Session {
        Session {
            exporter: [exporter; 32],
            dialer: Keypair::generate_ed25519().public().to_peer_id(),
            listener: Keypair::generate_ed25519().public().to_peer_id(),
        }
    }

    /// Two ends of a loopback TCP connection.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (TcpStream(dialed.unwrap()), TcpStream(accepted.unwrap().0))
    }

    /// Runs both ends over loopback; each end sees its own view of the session.
    async fn exchange(
        dialer: (Admission, &Session),
        listener: (Admission, &Session),
    ) -> (Result<(), AdmissionError>, Result<(), AdmissionError>) {
        let (mut a, mut b) = pair().await;
        tokio::join!(
            admit(&mut a, dialer.0, dialer.1, true),
            admit(&mut b, listener.0, listener.1, false)
        )
    }

    #[tokio::test]
    async fn same_key_on_one_session_admits_and_another_key_is_refused() {
        let (key, other) = (
            Admission::new(Some(&[7; 32])),
            Admission::new(Some(&[8; 32])),
        );
        let s = session(1);
        let (a, b) = exchange((key, &s), (key, &s)).await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        let (a, b) = exchange((key, &s), (other, &s)).await;
        assert!(matches!(a, Err(AdmissionError::WrongKey)), "{a:?}");
        assert!(matches!(b, Err(AdmissionError::WrongKey)), "{b:?}");
    }

    #[tokio::test]
    async fn a_tag_from_another_session_or_for_other_peers_is_refused() {
        let key = Admission::new(Some(&[7; 32]));
        let s = session(1);
        let elsewhere = Session {
            exporter: [2; 32],
            dialer: s.dialer,
            listener: s.listener,
        };
        let (a, b) = exchange((key, &s), (key, &elsewhere)).await;
        assert!(matches!(a, Err(AdmissionError::WrongKey)), "{a:?}");
        assert!(matches!(b, Err(AdmissionError::WrongKey)), "{b:?}");
        let other_peer = Session {
            exporter: s.exporter,
            dialer: Keypair::generate_ed25519().public().to_peer_id(),
            listener: s.listener,
        };
        let (a, _) = exchange((key, &s), (key, &other_peer)).await;
        assert!(matches!(a, Err(AdmissionError::WrongKey)), "{a:?}");
    }

    #[tokio::test]
    async fn open_and_keyed_nodes_refuse_each_other_and_open_nodes_admit_each_other() {
        let key = Admission::new(Some(&[7; 32]));
        let s = session(1);
        let (a, b) = exchange((key, &s), (Admission::Open, &s)).await;
        assert!(matches!(a, Err(AdmissionError::PeerOpen)), "{a:?}");
        assert!(matches!(b, Err(AdmissionError::PeerKeyed)), "{b:?}");
        let (a, b) = exchange((Admission::Open, &s), (Admission::Open, &s)).await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    }

    #[tokio::test]
    async fn a_peer_reflecting_our_own_tag_is_refused() {
        let Admission::Keyed(key) = Admission::new(Some(&[7; 32])) else {
            unreachable!("a key was given");
        };
        let s = session(1);
        let (mut a, mut mirror) = pair().await;
        let echo = async {
            let hello = Hello::read(&mut mirror).await.expect("our hello");
            hello.send(&mut mirror).await.expect("echo");
        };
        let (result, ()) = tokio::join!(admit(&mut a, Admission::Keyed(key), &s, true), echo);
        assert!(
            matches!(result, Err(AdmissionError::WrongKey)),
            "{result:?}"
        );
    }
}
