//! The chunk store: content-addressed files under `DATA/chunks/ab/abcdef…`.
//!
//! Owns splitting blobs into chunks, writing each chunk once (verified by its
//! blake3 hash, written atomically) and reading blobs back. Must not talk to
//! the network; `fetch` pulls missing chunks from peers into this store.

use anyhow::{bail, Context, Result};
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{ChunkRef, Manifest, CHUNK_SIZE};
use peerbatch_protocol::ids::to_hex;
use peerbatch_protocol::BlobId;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<BlobStore> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    fn chunk_path(&self, hash: &[u8; 32]) -> PathBuf {
        let hex = to_hex(hash);
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Stores `bytes` as a blob and returns its id.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobId> {
        let mut chunks = Vec::new();
        for piece in bytes.chunks(CHUNK_SIZE) {
            let hash = *blake3::hash(piece).as_bytes();
            self.write_chunk_unchecked(&hash, piece)?;
            chunks.push(ChunkRef {
                hash,
                len: piece.len() as u32,
            });
        }
        let manifest = Manifest {
            size: bytes.len() as u64,
            chunks,
        };
        let encoded = manifest.encode();
        let id = manifest.id();
        self.write_chunk_unchecked(&id.0, &encoded)?;
        Ok(id)
    }

    pub fn read_chunk(&self, hash: &[u8; 32]) -> Option<Vec<u8>> {
        fs::read(self.chunk_path(hash)).ok()
    }

    pub fn has_chunk(&self, hash: &[u8; 32]) -> bool {
        self.chunk_path(hash).exists()
    }

    /// Stores a chunk received from elsewhere, refusing bytes that do not
    /// match their hash.
    pub fn write_chunk(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<()> {
        if blake3::hash(bytes).as_bytes() != hash {
            bail!(
                "chunk {} does not match its hash ({} bytes received)",
                to_hex(hash),
                bytes.len()
            );
        }
        self.write_chunk_unchecked(hash, bytes)
    }

    fn write_chunk_unchecked(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<()> {
        let path = self.chunk_path(hash);
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().context("chunk path has a parent")?;
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, bytes)
            .and_then(|_| fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write chunk {}", path.display()))
    }

    /// A blob's manifest, if this store holds it.
    pub fn manifest(&self, id: &BlobId) -> Result<Option<Manifest>> {
        match self.read_chunk(&id.0) {
            None => Ok(None),
            Some(bytes) => codec::decode(&bytes)
                .map(Some)
                .with_context(|| format!("manifest {id} is garbled")),
        }
    }

    /// A whole blob, if every chunk of it is here.
    pub fn read_blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>> {
        let Some(manifest) = self.manifest(id)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(manifest.size as usize);
        for chunk in &manifest.chunks {
            match self.read_chunk(&chunk.hash) {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_bad_chunks_are_refused() {
        let dir = std::env::temp_dir().join(format!("pb-blobs-{}", std::process::id()));
        let store = BlobStore::open(&dir).unwrap();
        let data: Vec<u8> = (0..(CHUNK_SIZE * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let id = store.put_bytes(&data).unwrap();
        assert_eq!(store.read_blob(&id).unwrap(), Some(data.clone()));
        assert_eq!(store.put_bytes(&data).unwrap(), id);
        assert!(store.write_chunk(&[0; 32], b"not the hash").is_err());
        let empty = store.put_bytes(&[]).unwrap();
        assert_eq!(store.read_blob(&empty).unwrap(), Some(Vec::new()));
        fs::remove_dir_all(dir).unwrap();
    }
}
