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
//! - a node running open sends `O` and nothing else;
//! - a node waiting for approval (`--wait-for-approval`) sends `W` and its host name.
//!
//! A keyed node admits only a peer whose tag it computes itself (compared in constant time);
//! an open node admits only open peers. The exporter value is a secret of this one TLS session
//! and the two peer ids are those its certificates proved, so a tag is worth nothing on any
//! other connection: a host without the key that relays a member's bytes between two
//! connections (so that the member answers its own challenge) gets a tag for a session it is
//! not part of. The role byte stops a peer from reflecting our own tag back.
//!
//! No connection with a waiting node is ever admitted. A keyed node that reads `W` answers with
//! one verdict frame and closes: `P` (not approved; the peer goes on its lobby's list), or, when
//! an admin armed an approval for that peer id (proved by TLS), `A` with its cluster key file's
//! text, then reads the waiting node's one-byte answer (1: stored). A waiting node takes an
//! approval only if the tag of the keyed hello is the one the handed-over key makes on this
//! session — so an approval is bound to this TLS session like any tag and proves its sender
//! holds the key it hands over — and its sender (proved by TLS) is an admin listed with that
//! key; its [`Candidate`] takes only the first.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;

use super::{
    candidate::Candidate,
    lobby::{host_name, ApproveError, Lobby},
    ClusterKey, Standing,
};

/// Domain separation for the key derived from the cluster key.
const KEY_CONTEXT: &str = "peerbatch 2026-12 cluster admission v2";
/// The TLS exporter label of this exchange (RFC 5705 / RFC 8446 exporters).
pub(super) const EXPORTER_LABEL: &[u8] = b"EXPORTER-peerbatch-cluster-admission";
/// Kind byte of a keyed hello.
const KEYED: u8 = b'K';
/// Kind byte of an open node's hello.
const OPEN: u8 = b'O';
/// Kind byte of a waiting node's hello.
const WAITING: u8 = b'W';
/// Verdict to a waiting node: not approved (yet).
const PENDING: u8 = b'P';
/// Verdict to a waiting node: approved, with the key file's text.
const APPROVAL: u8 = b'A';
/// Largest verdict accepted: a key file with 64 admins is about 4 KiB.
const MAX_VERDICT: usize = 16 * 1024;

/// How this node admits peers.
#[derive(Clone)]
pub(super) enum Admission {
    /// Only peers holding the cluster key this admission key was derived from; waiting peers
    /// are listed in (and approved from) the lobby.
    Keyed { key: [u8; 32], lobby: Lobby },
    /// Only other open nodes (`--insecure-open`): anyone who can reach us and runs open.
    Open,
    /// Nobody: this node only asks to be approved.
    Waiting(Candidate),
}

impl Admission {
    pub(super) fn new(standing: &Standing) -> Admission {
        match standing {
            Standing::Member(lobby) => Admission::Keyed {
                key: admission_key(&lobby.key().secret),
                lobby: lobby.clone(),
            },
            Standing::Open => Admission::Open,
            Standing::Waiting(candidate) => Admission::Waiting(candidate.clone()),
        }
    }

    fn hello(&self, session: &Session, role: u8) -> Hello {
        match self {
            Admission::Keyed { key, .. } => Hello {
                kind: KEYED,
                body: session.tag(key, role).as_bytes().to_vec(),
            },
            Admission::Open => Hello {
                kind: OPEN,
                body: Vec::new(),
            },
            Admission::Waiting(candidate) => Hello {
                kind: WAITING,
                body: candidate.host().as_bytes().to_vec(),
            },
        }
    }
}

fn admission_key(secret: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(KEY_CONTEXT, secret)
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
    Malformed { kind: u8, len: usize },
    #[error("peer {peer} on host {host:?} waits for approval")]
    PeerWaiting { peer: PeerId, host: String },
    #[error("both this node and the peer wait for approval")]
    BothWaiting,
    #[error("approved peer {peer}: it stored the cluster key and will connect with it")]
    Approved { peer: PeerId },
    #[error("peer {peer} refused the approval (it took another one already)")]
    ApprovalRefused { peer: PeerId },
    #[error("keyed node {peer} has not approved this node yet")]
    NotApproved { peer: PeerId },
    #[error("approved by admin {by}")]
    TookApproval { by: PeerId },
    #[error("refused an approval from {peer}: {reason}")]
    BadApproval { peer: PeerId, reason: String },
    #[error("admission exchange interrupted")]
    Io(#[from] io::Error),
}

/// Writes one message, its head then its body, in one write.
async fn send_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    stream.write_all(&[head, body].concat()).await?;
    stream.flush().await
}

/// One side's first message.
struct Hello {
    kind: u8,
    body: Vec<u8>,
}

impl Hello {
    async fn send<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> io::Result<()> {
        let len = u8::try_from(self.body.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        send_frame(stream, &[self.kind, len], &self.body).await
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

/// A keyed node's verdict to a waiting one: kind, a two-byte length, the body.
struct Verdict {
    kind: u8,
    body: Vec<u8>,
}

impl Verdict {
    async fn send<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> io::Result<()> {
        let len = u16::try_from(self.body.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let [hi, lo] = len.to_be_bytes();
        send_frame(stream, &[self.kind, hi, lo], &self.body).await
    }

    /// Reads a verdict, refusing one longer than [`MAX_VERDICT`] before reading its body.
    async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Verdict, AdmissionError> {
        let mut head = [0u8; 3];
        stream.read_exact(&mut head).await?;
        let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
        if len > MAX_VERDICT {
            return Err(AdmissionError::Malformed { kind: head[0], len });
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        Ok(Verdict {
            kind: head[0],
            body,
        })
    }
}

/// Runs the exchange on a freshly authenticated TLS stream. `dialer` says which end we are.
pub(super) async fn admit<S>(
    stream: &mut S,
    admission: &Admission,
    session: &Session,
    dialer: bool,
) -> Result<(), AdmissionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (my_role, their_role) = if dialer { (b'D', b'L') } else { (b'L', b'D') };
    let peer = if dialer {
        session.listener
    } else {
        session.dialer
    };
    admission.hello(session, my_role).send(stream).await?;
    let theirs = Hello::read(stream).await?;
    let body = theirs.body.as_slice();
    match (admission, theirs.kind, body.len()) {
        (Admission::Keyed { key, .. }, KEYED, 32) => {
            // `blake3::Hash` compares in constant time.
            if session.tag(key, their_role) == *body {
                Ok(())
            } else {
                Err(AdmissionError::WrongKey)
            }
        }
        (Admission::Keyed { lobby, .. }, WAITING, 1..) => {
            meet_waiting(stream, lobby, peer, body).await
        }
        (Admission::Keyed { .. } | Admission::Waiting(_), OPEN, 0) => Err(AdmissionError::PeerOpen),
        (Admission::Open, OPEN, 0) => Ok(()),
        (Admission::Open, KEYED, 32) => Err(AdmissionError::PeerKeyed),
        (Admission::Open, WAITING, 1..) => Err(AdmissionError::PeerWaiting {
            peer,
            host: host_name(&String::from_utf8_lossy(body)),
        }),
        (Admission::Waiting(candidate), KEYED, 32) => {
            let offer = Offer {
                session,
                their_role,
                tag: body,
                peer,
            };
            meet_keyed(stream, candidate, &offer).await
        }
        (Admission::Waiting(_), WAITING, 1..) => Err(AdmissionError::BothWaiting),
        (_, kind, len) => Err(AdmissionError::Malformed { kind, len }),
    }
}

/// A keyed node's answer to waiting `peer` (host name `host`): the armed approval, if any,
/// else "not yet".
async fn meet_waiting<S>(
    stream: &mut S,
    lobby: &Lobby,
    peer: PeerId,
    host: &[u8],
) -> Result<(), AdmissionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(armed) = lobby.take_armed(&peer) else {
        let pending = Verdict {
            kind: PENDING,
            body: Vec::new(),
        };
        pending.send(stream).await?;
        let host = host_name(&String::from_utf8_lossy(host));
        return Err(AdmissionError::PeerWaiting { peer, host });
    };
    let outcome = hand_over(stream, lobby.key(), peer).await;
    armed.finish(match &outcome {
        Ok(()) => {
            lobby.approved(&peer);
            Ok(())
        }
        Err(e) => Err(ApproveError::Failed {
            peer,
            reason: e.to_string(),
        }),
    });
    outcome?;
    Err(AdmissionError::Approved { peer })
}

/// Sends the key and reads whether the waiting node stored it.
async fn hand_over<S>(stream: &mut S, key: &ClusterKey, peer: PeerId) -> Result<(), AdmissionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let approval = Verdict {
        kind: APPROVAL,
        body: key.encode().into_bytes(),
    };
    approval.send(stream).await?;
    let mut stored = [0u8; 1];
    stream.read_exact(&mut stored).await?;
    match stored {
        [1] => Ok(()),
        _ => Err(AdmissionError::ApprovalRefused { peer }),
    }
}

/// What a keyed peer showed a waiting node: its hello's tag on this session.
struct Offer<'a> {
    session: &'a Session,
    their_role: u8,
    tag: &'a [u8],
    peer: PeerId,
}

/// A waiting node reads a keyed node's verdict, and takes an approval that checks out.
async fn meet_keyed<S>(
    stream: &mut S,
    candidate: &Candidate,
    offer: &Offer<'_>,
) -> Result<(), AdmissionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = offer.peer;
    let verdict = Verdict::read(stream).await?;
    match (verdict.kind, verdict.body.len()) {
        (PENDING, 0) => Err(AdmissionError::NotApproved { peer }),
        (APPROVAL, _) => {
            let taken = take(candidate, offer, &verdict.body);
            stream.write_all(&[u8::from(taken.is_ok())]).await?;
            stream.flush().await?;
            taken?;
            Err(AdmissionError::TookApproval { by: peer })
        }
        (kind, len) => Err(AdmissionError::Malformed { kind, len }),
    }
}

/// Checks an approval's key against the session and its sender, and hands it to `candidate`.
fn take(candidate: &Candidate, offer: &Offer<'_>, body: &[u8]) -> Result<(), AdmissionError> {
    let peer = offer.peer;
    let bad = |reason: String| AdmissionError::BadApproval { peer, reason };
    let text = std::str::from_utf8(body).map_err(|_| bad("its key is not UTF-8".into()))?;
    let key = ClusterKey::decode(text).map_err(bad)?;
    let made = offer
        .session
        .tag(&admission_key(&key.secret), offer.their_role);
    if made != *offer.tag {
        return Err(bad(
            "its hello was not made with the key it hands over, on this session".into(),
        ));
    }
    if !key.admins.contains(&peer) {
        return Err(bad("it is not an admin of the cluster it hands over".into()));
    }
    candidate.accept(key, peer).map_err(|e| bad(e.to_string()))
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

    /// A keyed node `me` with secret `[byte; 32]`, an admin of its cluster.
    fn keyed_as(byte: u8, me: PeerId) -> Admission {
        let key = ClusterKey {
            secret: [byte; 32],
            admins: vec![me],
        };
        Admission::new(&Standing::Member(Lobby::new(key, me)))
    }

    fn keyed(byte: u8) -> Admission {
        keyed_as(byte, PeerId::random())
    }

    fn lobby(admission: &Admission) -> &Lobby {
        match admission {
            Admission::Keyed { lobby, .. } => lobby,
            _ => unreachable!("a keyed admission"),
        }
    }

    /// A waiting node on host `host` and where it stores its key.
    fn waiting(host: &str) -> (Admission, Candidate, std::path::PathBuf) {
        let path = super::super::tests::temp_path("waiting.key");
        let candidate = Candidate::new(host, path.clone());
        let admission = Admission::new(&Standing::Waiting(candidate.clone()));
        (admission, candidate, path)
    }

    /// Two ends of a loopback TCP connection.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (TcpStream(dialed.unwrap()), TcpStream(accepted.unwrap().0))
    }

    type Both = (Result<(), AdmissionError>, Result<(), AdmissionError>);

    /// Runs both ends over loopback; each end sees its own view of the session.
    async fn exchange(dialer: (&Admission, &Session), listener: (&Admission, &Session)) -> Both {
        let (mut a, mut b) = pair().await;
        tokio::join!(
            admit(&mut a, dialer.0, dialer.1, true),
            admit(&mut b, listener.0, listener.1, false)
        )
    }

    #[tokio::test]
    async fn same_key_on_one_session_admits_and_another_key_is_refused() {
        let (key, other) = (keyed(7), keyed(8));
        let s = session(1);
        let (a, b) = exchange((&key, &s), (&key, &s)).await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
        let (a, b) = exchange((&key, &s), (&other, &s)).await;
        assert!(matches!(a, Err(AdmissionError::WrongKey)), "{a:?}");
        assert!(matches!(b, Err(AdmissionError::WrongKey)), "{b:?}");
    }

    #[tokio::test]
    async fn a_tag_from_another_session_or_for_other_peers_is_refused() {
        let key = keyed(7);
        let s = session(1);
        let elsewhere = Session {
            exporter: [2; 32],
            dialer: s.dialer,
            listener: s.listener,
        };
        let (a, b) = exchange((&key, &s), (&key, &elsewhere)).await;
        assert!(matches!(a, Err(AdmissionError::WrongKey)), "{a:?}");
        assert!(matches!(b, Err(AdmissionError::WrongKey)), "{b:?}");
        let other_peer = Session {
            exporter: s.exporter,
            dialer: Keypair::generate_ed25519().public().to_peer_id(),
            listener: s.listener,
        };
        let (a, _) = exchange((&key, &s), (&key, &other_peer)).await;
        assert!(matches!(a, Err(AdmissionError::WrongKey)), "{a:?}");
    }

    #[tokio::test]
    async fn open_and_keyed_nodes_refuse_each_other_and_open_nodes_admit_each_other() {
        let key = keyed(7);
        let s = session(1);
        let (a, b) = exchange((&key, &s), (&Admission::Open, &s)).await;
        assert!(matches!(a, Err(AdmissionError::PeerOpen)), "{a:?}");
        assert!(matches!(b, Err(AdmissionError::PeerKeyed)), "{b:?}");
        let (a, b) = exchange((&Admission::Open, &s), (&Admission::Open, &s)).await;
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    }

    #[tokio::test]
    async fn a_peer_reflecting_our_own_tag_is_refused() {
        let key = keyed(7);
        let s = session(1);
        let (mut a, mut mirror) = pair().await;
        let echo = async {
            let hello = Hello::read(&mut mirror).await.expect("our hello");
            hello.send(&mut mirror).await.expect("echo");
        };
        let (result, ()) = tokio::join!(admit(&mut a, &key, &s, true), echo);
        assert!(
            matches!(result, Err(AdmissionError::WrongKey)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_waiting_node_is_listed_by_name_and_admitted_by_nobody() {
        let (wait, _candidate, path) = waiting("lab-7");
        let key = keyed(7);
        let s = session(1);
        let (w, k) = exchange((&wait, &s), (&key, &s)).await;
        assert!(matches!(w, Err(AdmissionError::NotApproved { peer }) if peer == s.listener));
        assert!(
            matches!(&k, Err(AdmissionError::PeerWaiting { peer, host }) if *peer == s.dialer && host == "lab-7"),
            "{k:?}"
        );
        let (w, o) = exchange((&wait, &s), (&Admission::Open, &s)).await;
        assert!(w.is_err() && o.is_err(), "{w:?} {o:?}");
        let (w1, w2) = exchange((&wait, &s), (&wait, &s)).await;
        assert!(w1.is_err() && w2.is_err(), "{w1:?} {w2:?}");
        assert!(!path.exists(), "no key was handed over");
    }

    #[tokio::test]
    async fn an_armed_approval_hands_the_key_to_that_peer_once() {
        let (wait, candidate, path) = waiting("lab-7");
        let s = session(1);
        // The admin listens; the waiting node dialled it.
        let admin = keyed_as(7, s.listener);
        let lobby = lobby(&admin);
        let addr = "/ip4/127.0.0.9/tcp/1".parse().expect("addr");
        lobby.met(s.dialer, "lab-7", &addr, false);
        let outcome = lobby.arm(s.dialer).expect("armed").outcome;
        let (w, a) = exchange((&wait, &s), (&admin, &s)).await;
        assert!(
            matches!(w, Err(AdmissionError::TookApproval { by }) if by == s.listener),
            "{w:?}"
        );
        assert!(matches!(a, Err(AdmissionError::Approved { .. })), "{a:?}");
        assert_eq!(outcome.await.expect("reported"), Ok(()));
        let approval = candidate.approved().await;
        assert_eq!(approval.by, s.listener);
        assert_eq!(&approval.key, lobby.key());
        assert_eq!(ClusterKey::read(&path).expect("stored"), approval.key);
        assert!(
            lobby.waiting().is_empty(),
            "an approved peer no longer waits"
        );
        let _ = std::fs::remove_file(&path);
    }

    /// Sends a keyed hello tagged with `secret` on session `tagged`, then an approval with the
    /// key `secret` and `admins`; returns the waiting node's verdict.
    async fn offer(
        secret: [u8; 32],
        admins: Vec<PeerId>,
        tagged: &Session,
        seen: &Session,
    ) -> Result<(), AdmissionError> {
        let (wait, _candidate, path) = waiting("lab-7");
        let (mut to_waiting, mut forger) = pair().await;
        let forge = async {
            let _ = Hello::read(&mut forger).await.expect("its hello");
            let tag = tagged.tag(&admission_key(&secret), b'L');
            let hello = Hello {
                kind: KEYED,
                body: tag.as_bytes().to_vec(),
            };
            hello.send(&mut forger).await.expect("hello");
            let key = ClusterKey { secret, admins };
            let approval = Verdict {
                kind: APPROVAL,
                body: key.encode().into_bytes(),
            };
            approval.send(&mut forger).await.expect("approval");
        };
        let (result, ()) = tokio::join!(admit(&mut to_waiting, &wait, seen, true), forge);
        assert!(!path.exists(), "the waiting node stored a key it refused");
        result
    }

    #[tokio::test]
    async fn an_approval_from_another_session_or_a_non_admin_is_refused() {
        let s = session(1);
        let relayed = Session {
            exporter: [2; 32],
            dialer: s.dialer,
            listener: s.listener,
        };
        let result = offer([7; 32], vec![s.listener], &relayed, &s).await;
        assert!(
            matches!(&result, Err(AdmissionError::BadApproval { reason, .. }) if reason.contains("this session")),
            "{result:?}"
        );
        let result = offer([7; 32], vec![PeerId::random()], &s, &s).await;
        assert!(
            matches!(&result, Err(AdmissionError::BadApproval { reason, .. }) if reason.contains("not an admin")),
            "{result:?}"
        );
    }
}
