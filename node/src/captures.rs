//! A command's captured stdout and stderr, kept as blobs.
//!
//! Owns turning a [`Captured`] stream (in memory, or spilled to a file by the
//! sandbox) into a blob in the store and removing its spill file, for task
//! attempts (`exec`) and side commands (`side`) alike. Must not run commands
//! or decide what a result means.

use crate::sandbox::Captured;
use crate::store::blobs::BlobStore;
use peerbatch_protocol::BlobId;
use std::path::Path;

/// Stores a captured stream as a blob (empty is none) and removes its
/// capture file, without reading more than a chunk of it into memory.
pub(crate) fn keep(blobs: &BlobStore, captured: Captured) -> Option<BlobId> {
    let stored = match &captured {
        Captured::Memory(bytes) if bytes.is_empty() => return None,
        Captured::Memory(bytes) => blobs.put_bytes(bytes).map_err(anyhow::Error::from),
        Captured::File(path) => keep_file(blobs, path),
    };
    if let Captured::File(path) = &captured {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
    match stored {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!("could not store a captured stream: {e:#}");
            None
        }
    }
}

fn keep_file(blobs: &BlobStore, path: &Path) -> anyhow::Result<BlobId> {
    let len = std::fs::symlink_metadata(path)?.len();
    if len <= peerbatch_protocol::content::CHUNK_SIZE as u64 {
        Ok(blobs.put_bytes(&std::fs::read(path)?)?)
    } else {
        Ok(blobs.put_path(path)?.0)
    }
}
