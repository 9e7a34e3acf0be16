//! Cluster-key admission: the first bytes on every new TCP connection when a cluster key is set.
//!
//! Both ends prove that they hold the pre-shared key before anything else is spoken; a peer that
//! cannot is disconnected before multistream-select or noise start. Unlike libp2p's pnet, this
//! adds no cipher pass over the traffic: noise, which runs next, already encrypts and
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

fn refused(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("cluster admission failed: {why}"),
    )
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
