//! Cluster-key admission: the first bytes on every new TCP connection when a cluster key is set.
//!
//! Both ends prove that they hold the pre-shared key before anything else is spoken; a peer that
//! cannot is disconnected before multistream-select or TLS start. Unlike libp2p's pnet, this
//! adds no cipher pass over the traffic: TLS, which runs next, already encrypts and
//! authenticates every byte, and pnet's software XSalsa20 (≈0.6 GB/s here, once on each end) was
//! the largest single cost of a bulk transfer. Owns only this exchange; it must not touch the
//! connection after it or any other node state.
//!
//! The exchange, each side sending at once and then reading:
//! 1. a fresh 32-byte random nonce;
//! 2. `tag = blake3::keyed_hash(K, role ‖ dialer_nonce ‖ listener_nonce)`, where `K` is derived
//!    from the cluster key and `role` is `b'D'` for the dialer's tag and `b'L'` for the
//!    listener's.
//!
//! Each side checks the other's tag (in constant time). Binding both fresh nonces stops replays;
//! binding the role stops a peer from reflecting our own tag back; equal nonces are refused.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rand::RngCore;

/// Domain separation for the key derived from the cluster key.
const KEY_CONTEXT: &str = "peerbatch 2026-11 cluster admission v1";

/// Derives the tag key from the cluster key file's 32 bytes.
pub(super) fn admission_key(cluster_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(KEY_CONTEXT, cluster_key)
}

fn tag(
    key: &[u8; 32],
    role: u8,
    dialer_nonce: &[u8; 32],
    listener_nonce: &[u8; 32],
) -> blake3::Hash {
    let mut message = [0u8; 65];
    message[0] = role;
    message[1..33].copy_from_slice(dialer_nonce);
    message[33..].copy_from_slice(listener_nonce);
    blake3::keyed_hash(key, &message)
}

/// How every admission failure's message begins.
pub(super) const REFUSED: &str = "cluster admission failed";

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("{REFUSED}: {why}"))
}

/// Runs the exchange on `socket` and hands it back once the peer has proved it holds the key.
pub(super) async fn admit<S>(mut socket: S, key: [u8; 32], dialer: bool) -> io::Result<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut mine = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut mine);
    socket.write_all(&mine).await?;
    socket.flush().await?;
    let mut theirs = [0u8; 32];
    socket.read_exact(&mut theirs).await?;
    if theirs == mine {
        return Err(refused("the peer sent our own nonce back"));
    }
    let (dialer_nonce, listener_nonce) = if dialer {
        (&mine, &theirs)
    } else {
        (&theirs, &mine)
    };
    let (my_role, their_role) = if dialer { (b'D', b'L') } else { (b'L', b'D') };
    let my_tag = tag(&key, my_role, dialer_nonce, listener_nonce);
    socket.write_all(my_tag.as_bytes()).await?;
    socket.flush().await?;
    let mut their_tag = [0u8; 32];
    socket.read_exact(&mut their_tag).await?;
    // `blake3::Hash` compares in constant time.
    if tag(&key, their_role, dialer_nonce, listener_nonce) != their_tag {
        return Err(refused("the peer does not hold our cluster key"));
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::tcp::tokio::TcpStream;

    /// Two ends of a loopback TCP connection.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (TcpStream(dialed.unwrap()), TcpStream(accepted.unwrap().0))
    }

    #[tokio::test]
    async fn same_key_admits_and_another_key_is_refused() {
        let key = admission_key(&[7; 32]);
        let (a, b) = pair().await;
        let (a, b) = tokio::join!(admit(a, key, true), admit(b, key, false));
        assert!(a.is_ok() && b.is_ok());

        let other = admission_key(&[8; 32]);
        let (a, b) = pair().await;
        let (a, b) = tokio::join!(admit(a, key, true), admit(b, other, false));
        for refused in [a.map(drop), b.map(drop)] {
            let err = refused.expect_err("a different key must be refused");
            assert!(err.to_string().contains("cluster key"), "{err}");
        }
    }

    /// A peer without the key that sends back what it reads: our nonce (or
    /// a fresh one), then our own tag.
    async fn reflect(fresh_nonce: bool) -> io::Result<TcpStream> {
        let (a, mut mirror) = pair().await;
        let echo = async move {
            let mut buf = [0u8; 32];
            for round in 0..2 {
                if mirror.read_exact(&mut buf).await.is_err() {
                    return;
                }
                if round == 0 && fresh_nonce {
                    buf = [9; 32];
                }
                let _ = mirror.write_all(&buf).await;
            }
        };
        tokio::join!(admit(a, admission_key(&[7; 32]), true), echo).0
    }

    #[tokio::test]
    async fn a_peer_reflecting_our_own_bytes_is_refused() {
        for fresh_nonce in [false, true] {
            let err = reflect(fresh_nonce)
                .await
                .expect_err("a reflection must not admit");
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        }
    }
}
