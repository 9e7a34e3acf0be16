//! Answering peers' fetch requests from the chunk store (chunk files, and
//! positioned reads from large blobs' data files, which `store::large`
//! checks again when other names could have changed them).
//!
//! Owns what a node sends back for `Chunk`, `Have` and `Chunks` requests,
//! the byte limit of a batch, and the first-copy rule: a chunk this node
//! sent to one peer is not sent to a second peer within [`SPREAD_WINDOW`],
//! so that when several nodes fetch the same blob at once the second gets
//! it from the first (it asks again elsewhere, or here once the window has
//! passed) and this node's upload carries chunks nobody has yet. The rule
//! holds back only what the node had before: a chunk it fetched itself in
//! the last [`PASS_ON_WINDOW`] goes to every peer that asks, so the nodes
//! fetching a blob together serve each other without refusals. Must not
//! fetch, schedule requests (`pull` does) or touch the Swarm.

use crate::store::blobs::BlobStore;
use crate::transfer_stats::FetchStats;
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{
    batch_frame, FetchRequest, FetchResponse, CHUNK_SIZE, MAX_BATCH, MAX_BATCH_BYTES, MAX_HAVE,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a chunk sent to one peer is not sent to another: long enough
/// for the first to receive it and for the others to learn that it has it
/// (peers fetching a blob ask each other every 100 ms).
pub const SPREAD_WINDOW: Duration = Duration::from_secs(1);

/// How long a chunk this node fetched is passed on to every peer that asks,
/// first-copy rule aside: longer than the gap between a node's fetching a
/// chunk and the last of its fellow fetchers asking for it.
pub const PASS_ON_WINDOW: Duration = Duration::from_secs(10);

/// The first-copy rule's memory: what this node sent lately (the chunk
/// server records it) and what it fetched lately (the fetcher records it).
#[derive(Default)]
pub struct SpreadState {
    /// Chunks sent in the last [`SPREAD_WINDOW`]: to whom and when.
    sent: Mutex<HashMap<[u8; 32], (PeerId, Instant)>>,
    /// Chunks fetched and kept, and when; entries older than
    /// [`PASS_ON_WINDOW`] are dropped every 1,024 records.
    fetched: Mutex<HashMap<[u8; 32], Instant>>,
}

impl SpreadState {
    /// Records that this node fetched `hash` and keeps it.
    pub fn fetched(&self, hash: [u8; 32]) {
        self.fetched_at(hash, Instant::now());
    }

    fn fetched_at(&self, hash: [u8; 32], now: Instant) {
        let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        if fetched.len() % 1024 == 1023 {
            fetched.retain(|_, at| now.duration_since(*at) < PASS_ON_WINDOW);
        }
        fetched.insert(hash, now);
    }
}

/// Serves this node's chunks to peers; cheap to clone.
#[derive(Clone)]
pub struct ChunkServer {
    blobs: BlobStore,
    stats: Arc<FetchStats>,
    spread: Arc<SpreadState>,
}

impl ChunkServer {
    pub fn new(blobs: BlobStore, stats: Arc<FetchStats>, spread: Arc<SpreadState>) -> ChunkServer {
        ChunkServer {
            blobs,
            stats,
            spread,
        }
    }

    /// The answer to one fetch request from `from`. Reads files: call it
    /// off the async runtime.
    pub fn answer(&self, from: &PeerId, data: &[u8]) -> Vec<u8> {
        let response = match codec::decode::<FetchRequest>(data) {
            Ok(FetchRequest::Chunk(hash)) => match self.blobs.read_chunk(&hash) {
                Some(bytes) => FetchResponse::Chunk(bytes),
                None => FetchResponse::NotFound,
            },
            Ok(FetchRequest::Have(hashes)) => {
                let mut bits = vec![0u8; hashes.len().div_ceil(8)];
                for (i, hash) in hashes.iter().take(MAX_HAVE).enumerate() {
                    if self.blobs.has_chunk(hash) {
                        bits[i / 8] |= 1 << (i % 8);
                    }
                }
                FetchResponse::Have(bits)
            }
            Ok(FetchRequest::Chunks(hashes)) => return self.batch(from, &hashes, true),
            Ok(FetchRequest::ChunksNotKept(hashes)) => return self.batch(from, &hashes, false),
            // The driver hands these to `live_logs`; no chunk answers them.
            Ok(FetchRequest::LiveLog { .. }) => FetchResponse::LiveLogNotHere,
            Err(e) => {
                tracing::warn!("garbled fetch request from {from}: {e}");
                FetchResponse::NotFound
            }
        };
        codec::encode(&response)
    }

    /// A batch frame: the held chunks back to back, straight from their
    /// files, within the batch byte limit, leaving out those the first-copy
    /// rule holds back (an asker that keeps them counts as their next
    /// provider); a batch of too many hashes answers nothing.
    fn batch(&self, from: &PeerId, hashes: &[[u8; 32]], kept: bool) -> Vec<u8> {
        let asked = if hashes.len() > MAX_BATCH {
            &[][..]
        } else {
            hashes
        };
        let sendable = self.claim(from, asked, kept, Instant::now());
        let mut out = Vec::with_capacity((asked.len() * CHUNK_SIZE).min(MAX_BATCH_BYTES) + 64);
        let lens: Vec<_> = asked
            .iter()
            .zip(sendable)
            .map(|(hash, send)| {
                let room = MAX_BATCH_BYTES.saturating_sub(out.len()) as u64;
                send.then(|| self.blobs.read_chunk_into(hash, &mut out, room))
                    .flatten()
            })
            .collect();
        let served = lens.iter().flatten().count() as u64;
        self.stats.chunks_served.fetch_add(served, Relaxed);
        let bytes = lens.iter().flatten().map(|l| u64::from(*l)).sum();
        self.stats.chunk_bytes_served.fetch_add(bytes, Relaxed);
        batch_frame(out, lens)
    }

    /// Per asked chunk: whether it may go to `from` at `now`, recording it
    /// as sent to `from` if so and `from` keeps it.
    fn claim(&self, from: &PeerId, asked: &[[u8; 32]], kept: bool, now: Instant) -> Vec<bool> {
        let fetched = self
            .spread
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let fresh = |hash| {
            fetched
                .get(hash)
                .is_some_and(|at| now.duration_since(*at) < PASS_ON_WINDOW)
        };
        let mut sent = self.spread.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.retain(|_, (_, at)| now.duration_since(*at) < SPREAD_WINDOW);
        asked
            .iter()
            .map(|hash| match sent.get(hash) {
                Some((to, _)) if to != from && !fresh(hash) => false,
                _ => {
                    if kept {
                        sent.insert(*hash, (*from, now));
                    }
                    true
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_sent_to_one_peer_goes_to_another_only_after_the_window() {
        let dir = std::env::temp_dir().join(format!("pb-chunk-server-{}", std::process::id()));
        let server = ChunkServer::new(
            BlobStore::open(&dir).unwrap(),
            Arc::default(),
            Arc::default(),
        );
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let (x, y, z) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let t0 = Instant::now();
        assert_eq!(server.claim(&a, &[x], true, t0), [true]);
        let to_b = server.claim(&b, &[x, y], true, t0);
        assert_eq!(to_b, [false, true], "x just went to a");
        let to_a = server.claim(&a, &[x, y], true, t0);
        assert_eq!(to_a, [true, false], "a may ask again");
        let later = t0 + SPREAD_WINDOW;
        assert_eq!(server.claim(&b, &[x], true, later), [true], "window passed");
        assert_eq!(server.claim(&c, &[z], false, later), [true]);
        let to_b = server.claim(&b, &[z], true, later);
        assert_eq!(to_b, [true], "c keeps no copy to pass on");

        let fresh = [4u8; 32];
        server.spread.fetched_at(fresh, later);
        assert_eq!(server.claim(&a, &[fresh], true, later), [true]);
        let to_b = server.claim(&b, &[fresh], true, later);
        assert_eq!(to_b, [true], "fetched here just now: passed on to all");
        let much_later = later + PASS_ON_WINDOW;
        assert_eq!(server.claim(&a, &[fresh], true, much_later), [true]);
        let to_b = server.claim(&b, &[fresh], true, much_later);
        assert_eq!(to_b, [false], "held long enough to be this node's own");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
