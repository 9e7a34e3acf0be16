//! Content-addressed blobs as they travel between nodes.
//!
//! Owns the manifest format (ordered chunk hashes and sizes; its blake3 hash
//! is the blob's id) and the chunk-fetch request/response. Must not read or
//! write files; the node's chunk store does.

use crate::codec;
use crate::ids::BlobId;
use serde::{Deserialize, Serialize};

/// Size of every chunk but a blob's last.
pub const CHUNK_SIZE: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub hash: [u8; 32],
    pub len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// The blob id: the hash of the encoded manifest, itself stored as a chunk.
    pub fn id(&self) -> BlobId {
        BlobId(*blake3::hash(&self.encode()).as_bytes())
    }
}

/// A request on the fetch protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchRequest {
    /// A chunk (or an encoded manifest) by its blake3 hash.
    Chunk([u8; 32]),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchResponse {
    Chunk(Vec<u8>),
    NotFound,
}
