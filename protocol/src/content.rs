//! Content-addressed blobs as they travel between nodes.
//!
//! Owns the object formats — a file manifest (ordered chunk hashes and
//! sizes) and a tree manifest (relative paths, modes and file blob ids) —
//! whose encoded form's blake3 hash is the blob's id, the path rules for
//! trees, and the chunk-fetch request/response. Must not read or write
//! files; the node's chunk store does.

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

/// Largest file a manifest may describe (a manifest within the codec's
/// 16 MiB lists at most ~466,000 chunks, ~455 GiB, anyway).
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// One file: its chunks in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub size: u64,
    pub chunks: Vec<ChunkRef>,
}

/// A file manifest whose sizes do not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("it declares {size} bytes but its chunks hold {sum}")]
    SizeMismatch { size: u64, sum: u64 },
    #[error("it declares {size} bytes; the limit is {MAX_FILE_SIZE}")]
    TooLarge { size: u64 },
    #[error("its chunk {index} is {len} bytes; a chunk holds 1 to {CHUNK_SIZE}")]
    BadChunk { index: usize, len: u32 },
}

impl Manifest {
    /// Refuses a size that is not the sum of the chunks' lengths or is past
    /// [`MAX_FILE_SIZE`], and empty or oversized chunks: whoever reads a
    /// manifest sizes buffers and files by it. Checked whenever one is read.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.size > MAX_FILE_SIZE {
            return Err(ManifestError::TooLarge { size: self.size });
        }
        let mut sum = 0u64;
        for (index, chunk) in self.chunks.iter().enumerate() {
            if chunk.len == 0 || chunk.len as usize > CHUNK_SIZE {
                return Err(ManifestError::BadChunk {
                    index,
                    len: chunk.len,
                });
            }
            sum += u64::from(chunk.len);
        }
        if sum != self.size {
            return Err(ManifestError::SizeMismatch {
                size: self.size,
                sum,
            });
        }
        Ok(())
    }
}

/// One file of a directory tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Relative path with `/` separators (see [`check_path`]).
    pub path: String,
    /// Unix permission bits (`0o777` mask), e.g. `0o755` for an executable.
    pub mode: u32,
    /// The file's blob id (a [`Manifest`]).
    pub blob: BlobId,
}

/// A directory tree: its files, sorted by path, each path at most once.
/// Directories are implied by the paths; empty directories are not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub entries: Vec<TreeEntry>,
}

/// What a blob id names: the encoding of this value is hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    File(Manifest),
    Tree(Tree),
}

impl Object {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// The blob id: the hash of the encoded object, itself stored as a chunk.
    pub fn id(&self) -> BlobId {
        BlobId(*blake3::hash(&self.encode()).as_bytes())
    }
}

/// A tree that breaks the path rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("unsafe path {path:?} in tree: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("tree entries are not sorted and unique at {path:?}")]
    Unsorted { path: String },
    #[error("tree entry {path:?} is a file and also a directory of {other:?}")]
    FileIsDir { path: String, other: String },
}

/// Checks one tree path: relative, `/`-separated, no empty, `.` or `..`
/// component, no NUL or backslash.
pub fn check_path(path: &str) -> Result<(), TreeError> {
    let bad = |reason| {
        Err(TreeError::BadPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty path");
    }
    if path.starts_with('/') {
        return bad("absolute path");
    }
    if path.contains('\0') || path.contains('\\') {
        return bad("NUL or backslash in path");
    }
    for part in path.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." => return bad("`.` component"),
            ".." => return bad("`..` component escapes the tree"),
            _ => {}
        }
    }
    Ok(())
}

impl Tree {
    /// Refuses unsafe paths, unsorted or duplicate entries, and a file that
    /// is also used as a directory. Checked when a tree is built and again
    /// whenever one is read.
    pub fn validate(&self) -> Result<(), TreeError> {
        for entry in &self.entries {
            check_path(&entry.path)?;
        }
        for pair in self.entries.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(TreeError::Unsorted {
                    path: pair[1].path.clone(),
                });
            }
        }
        let files: std::collections::BTreeSet<&str> =
            self.entries.iter().map(|e| e.path.as_str()).collect();
        for entry in &self.entries {
            let mut dirs = entry.path.match_indices('/').map(|(i, _)| &entry.path[..i]);
            if let Some(dir) = dirs.find(|d| files.contains(d)) {
                return Err(TreeError::FileIsDir {
                    path: dir.to_string(),
                    other: entry.path.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Most chunks one [`FetchRequest::Chunks`] may ask for; the answer holds
/// at most [`MAX_BATCH_BYTES`] of them.
pub const MAX_BATCH: usize = 256;

/// Most bytes of chunks one batch frame carries; a held chunk that would
/// go past it is answered as not held. One chunk or object of up to this
/// size always fits.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Most hashes one [`FetchRequest::Have`] may ask about.
pub const MAX_HAVE: usize = 1 << 16;

/// A request on the fetch protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchRequest {
    /// A chunk (or an encoded object) by its blake3 hash.
    Chunk([u8; 32]),
    /// Which of these chunks do you hold? Answered with [`FetchResponse::Have`].
    Have(Vec<[u8; 32]>),
    /// These chunks (at most [`MAX_BATCH`]), answered with a batch frame
    /// (see [`batch_frame`]), not a [`FetchResponse`]. The asker keeps them
    /// and serves them to others.
    Chunks(Vec<[u8; 32]>),
    /// As [`FetchRequest::Chunks`], from an asker that writes them only
    /// into a file and keeps no copy to serve: the sender must not count on
    /// it to pass them on.
    ChunksNotKept(Vec<[u8; 32]>),
    /// What attempt `attempt` of `task`, running on the asked node, has
    /// written to its stdout (or `stderr`) from byte `offset` on: answered
    /// with [`FetchResponse::LiveLog`] once there are such bytes or the
    /// attempt ended (or after a few seconds with none), or
    /// [`FetchResponse::LiveLogNotHere`].
    LiveLog {
        task: crate::TaskRef,
        attempt: u32,
        stderr: bool,
        offset: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchResponse {
    Chunk(Vec<u8>),
    NotFound,
    /// One bit per asked hash, in order (bit `i % 8` of byte `i / 8`): set
    /// when the chunk is held.
    Have(Vec<u8>),
    /// Bytes of a running attempt's stream from the asked offset (at most
    /// [`MAX_LIVE_PIECE`]; none when nothing new came in time), and whether
    /// the stream ended with them.
    LiveLog {
        bytes: Vec<u8>,
        ended: bool,
    },
    /// The asked node runs no such attempt now (not yet, or no longer), or
    /// is serving as many followers as it may.
    LiveLogNotHere,
}

/// Most bytes one [`FetchResponse::LiveLog`] carries.
pub const MAX_LIVE_PIECE: usize = 256 << 10;

/// The trailer of a batch frame: the length of each asked chunk, in the
/// order asked, `None` for a chunk the sender does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTrailer {
    pub lens: Vec<Option<u32>>,
}

/// Finishes a batch frame: `data` holds the held chunks' bytes back to
/// back, in the order asked; this appends the encoded [`BatchTrailer`] and
/// its length (u32, big-endian). Chunk bytes travel raw, so neither end
/// copies them through the codec.
pub fn batch_frame(mut data: Vec<u8>, lens: Vec<Option<u32>>) -> Vec<u8> {
    let trailer = codec::encode(&BatchTrailer { lens });
    data.extend_from_slice(&trailer);
    data.extend_from_slice(&(trailer.len() as u32).to_be_bytes());
    data
}

/// A batch frame that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch frame of {0} bytes is too short for its trailer")]
    Short(usize),
    #[error("batch trailer: {0}")]
    Trailer(#[from] codec::CodecError),
    #[error("batch answers {got} chunks, {asked} were asked for")]
    Count { asked: usize, got: usize },
    #[error("batch lengths add up to {lens} bytes, the frame carries {data}")]
    Lengths { lens: u64, data: usize },
}

/// Splits a batch frame answering `asked` hashes into each chunk's bytes
/// (`None`: not held). Checks that the lengths add up to the frame; the
/// bytes are not verified against their hashes here.
pub fn split_batch(frame: &[u8], asked: usize) -> Result<Vec<Option<&[u8]>>, BatchError> {
    let short = || BatchError::Short(frame.len());
    let (rest, len) = frame.split_last_chunk::<4>().ok_or_else(short)?;
    let cut = rest
        .len()
        .checked_sub(u32::from_be_bytes(*len) as usize)
        .ok_or_else(short)?;
    let (mut data, trailer) = rest.split_at(cut);
    let trailer: BatchTrailer = codec::decode(trailer)?;
    if trailer.lens.len() != asked {
        return Err(BatchError::Count {
            asked,
            got: trailer.lens.len(),
        });
    }
    let total: u64 = trailer.lens.iter().flatten().map(|&n| u64::from(n)).sum();
    if total != data.len() as u64 {
        return Err(BatchError::Lengths {
            lens: total,
            data: data.len(),
        });
    }
    let mut chunks = Vec::with_capacity(asked);
    for len in trailer.lens {
        chunks.push(match len {
            None => None,
            Some(n) => {
                let (chunk, rest) = data.split_at(n as usize);
                data = rest;
                Some(chunk)
            }
        });
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(paths: &[&str]) -> Tree {
        Tree {
            entries: paths
                .iter()
                .map(|p| TreeEntry {
                    path: p.to_string(),
                    mode: 0o644,
                    blob: BlobId([0; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn tree_paths_are_checked() {
        assert_eq!(tree(&["a", "b/c", "b/d/e"]).validate(), Ok(()));
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "a/", "./a", ""] {
            let err = tree(&[bad]).validate().unwrap_err();
            assert!(matches!(err, TreeError::BadPath { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(matches!(
            tree(&["b", "a"]).validate(),
            Err(TreeError::Unsorted { .. })
        ));
        assert!(matches!(
            tree(&["a", "a"]).validate(),
            Err(TreeError::Unsorted { .. })
        ));
        assert!(matches!(
            tree(&["a", "a-b", "a/b"]).validate(),
            Err(TreeError::FileIsDir { .. })
        ));
        assert_eq!(tree(&["a", "a-b", "ab/c"]).validate(), Ok(()));
    }

    #[test]
    fn files_and_trees_have_distinct_ids() {
        let file = Object::File(Manifest {
            size: 0,
            chunks: Vec::new(),
        });
        let empty_tree = Object::Tree(Tree {
            entries: Vec::new(),
        });
        assert_ne!(file.id(), empty_tree.id());
        assert_eq!(codec::decode::<Object>(&file.encode()), Ok(file));
    }

    #[test]
    fn batch_frames_split_and_refuse_bad_lengths() {
        let frame = batch_frame(b"abcdefg".to_vec(), vec![Some(3), None, Some(4)]);
        let parts = split_batch(&frame, 3).unwrap();
        assert_eq!(parts, vec![Some(&b"abc"[..]), None, Some(&b"defg"[..])]);
        assert!(matches!(
            split_batch(&frame, 2),
            Err(BatchError::Count { .. })
        ));
        let lying = batch_frame(b"abc".to_vec(), vec![Some(4)]);
        assert!(matches!(
            split_batch(&lying, 1),
            Err(BatchError::Lengths { .. })
        ));
        for junk in [&b""[..], b"\0\0\0\x09", b"xyz\0\0\0\x01"] {
            assert!(split_batch(junk, 1).is_err());
        }
    }

    #[test]
    fn a_manifest_must_hold_the_bytes_it_declares_and_stay_under_the_limit() {
        let chunk = |len| ChunkRef { hash: [1; 32], len };
        let ok = Manifest {
            size: CHUNK_SIZE as u64 + 5,
            chunks: vec![chunk(CHUNK_SIZE as u32), chunk(5)],
        };
        assert_eq!(ok.validate(), Ok(()));
        let empty = Manifest {
            size: 0,
            chunks: vec![],
        };
        assert_eq!(empty.validate(), Ok(()));
        let huge = Manifest {
            size: 16 << 40,
            chunks: vec![chunk(5)],
        };
        assert_eq!(
            huge.validate(),
            Err(ManifestError::TooLarge { size: 16 << 40 })
        );
        let lying = Manifest {
            size: 6,
            chunks: vec![chunk(5)],
        };
        assert_eq!(
            lying.validate(),
            Err(ManifestError::SizeMismatch { size: 6, sum: 5 })
        );
        let fat = Manifest {
            size: CHUNK_SIZE as u64 + 1,
            chunks: vec![chunk(CHUNK_SIZE as u32 + 1)],
        };
        assert!(matches!(
            fat.validate(),
            Err(ManifestError::BadChunk { index: 0, .. })
        ));
    }
}
