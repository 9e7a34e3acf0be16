//! The data plane's counters over the node's lifetime: chunks (and their
//! bytes) fetched and served, fetches deferred by a peer's budget, bad chunks by peer.
//!
//! Owns only the counters, written by the fetcher (`fetch`, `pull`) and the
//! chunk server and read by `status` and `/metrics`; its own module so neither side imports
//! the other for them. Must not decide anything.

use libp2p::PeerId;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// Counters over the node's lifetime.
#[derive(Default)]
pub struct FetchStats {
    pub chunks_fetched: AtomicU64,
    /// Bytes of the chunks fetched.
    pub chunk_bytes_fetched: AtomicU64,
    /// Chunks sent to peers that asked for them.
    pub chunks_served: AtomicU64,
    /// Bytes of the chunks sent.
    pub chunk_bytes_served: AtomicU64,
    /// Fetches from peers that waited because the peer was past its
    /// chunk budget (`--chunk-rate`).
    pub fetches_deferred: AtomicU64,
    pub bad_chunks: AtomicU64,
    pub bad_by_peer: Mutex<BTreeMap<PeerId, u64>>,
}
