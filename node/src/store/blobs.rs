//! The chunk store: content-addressed files under `DATA/chunks/ab/abcdef…`,
//! and the data files of large blobs (`large`) under `DATA/chunks/large/`.
//!
//! Owns splitting local files and directory trees into chunks (a file on
//! every CPU at once, each chunk written once: atomically as a chunk file,
//! or in place in a large blob's data file), the objects naming them (file
//! and tree manifests), reading chunks for peers from either, routing a
//! received chunk to the data files that want it, and writing stored blobs
//! back out as files and trees (a large file blob linked out, other files
//! through a temporary file linked into place when complete). Must not
//! talk to the network; `pull` fetches missing chunks from peers into this
//! store.

use crate::store::large::{allocate, io, is_large, IoError, Large, LargeError, LINKED_MODE};
use peerbatch_protocol::codec::{self, CodecError};
use peerbatch_protocol::content::{
    ChunkRef, Manifest, ManifestError, Object, Tree, TreeEntry, TreeError, CHUNK_SIZE,
};
use peerbatch_protocol::ids::to_hex;
use peerbatch_protocol::BlobId;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What can go wrong in the chunk store; every variant names its file,
/// chunk or blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{} is neither a regular file nor a directory", .0.display())]
    NotFileOrDir(PathBuf),
    #[error("{} changed size while it was being stored", .0.display())]
    Changed(PathBuf),
    #[error("{} is a symbolic link; trees hold only files and directories", .0.display())]
    Symlink(PathBuf),
    #[error("{}: file name is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("chunk {hash} does not match its hash ({len} bytes received)")]
    Mismatch { hash: String, len: usize },
    #[error("stored object {0} does not match its hash")]
    CorruptObject(BlobId),
    #[error("blob {id} is not a valid object")]
    Garbled {
        id: BlobId,
        #[source]
        source: CodecError,
    },
    #[error("refusing tree {id}")]
    UnsafeTree {
        id: BlobId,
        #[source]
        source: TreeError,
    },
    #[error("refusing file manifest {id}")]
    BadManifest {
        id: BlobId,
        #[source]
        source: ManifestError,
    },
    #[error("blob {0} is a directory tree, not a file")]
    NotAFile(BlobId),
    #[error("blob {0} is not here")]
    Missing(BlobId),
    #[error("tree entry {0:?} names a tree, not a file")]
    NestedTree(String),
    #[error("chunk {chunk} of {} is missing", path.display())]
    MissingChunk { chunk: String, path: PathBuf },
    #[error("chunk {chunk} of {} was corrupt in the local store (removed; get it again)", path.display())]
    CorruptChunk { chunk: String, path: PathBuf },
    #[error("{} already exists and is not empty; refusing to overwrite it", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Large(#[from] LargeError),
}

type Result<T> = std::result::Result<T, BlobError>;

#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
    /// Chunks written since the node started, so reclaiming can tell
    /// whether the store grew.
    writes: Arc<AtomicU64>,
    /// The data files of large file blobs.
    large: Arc<Large>,
}

/// One chunk file, or one large blob's data file, as the store lists it
/// for reclaiming.
#[derive(Clone, Debug)]
pub struct ChunkFile {
    /// The chunk's hash, or the large blob's id.
    pub hash: [u8; 32],
    pub bytes: u64,
    /// When it was last written or read.
    pub used: std::time::SystemTime,
    /// A large blob's data file rather than a chunk file.
    pub large: bool,
}

/// What storing a local path did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutStats {
    pub files: u64,
    pub bytes: u64,
    /// Chunks (data and objects) the blob consists of.
    pub chunks: u64,
    /// Chunks that were not in the store before.
    pub chunks_written: u64,
}

impl PutStats {
    fn add(&mut self, other: PutStats) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.chunks += other.chunks;
        self.chunks_written += other.chunks_written;
    }
}

impl BlobStore {
    /// Opens (creating) the store at `dir` and indexes its large blobs.
    pub fn open(dir: &Path) -> Result<BlobStore> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let store = BlobStore {
            dir: dir.to_path_buf(),
            writes: Arc::default(),
            large: Arc::new(Large::open(dir.join("large"))?),
        };
        for id in store.large.on_disk() {
            match store.object(&id) {
                Ok(Some(Object::File(m))) if is_large(&m) => store.large.load(id, &m),
                _ => {
                    tracing::warn!("removing the data file of {id}, whose manifest is not here");
                    store.large.remove(&id);
                }
            }
        }
        Ok(store)
    }

    fn chunk_path(&self, hash: &[u8; 32]) -> PathBuf {
        let hex = to_hex(hash);
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Stores `bytes` as a file blob and returns its id.
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
        let object = Object::File(Manifest {
            size: bytes.len() as u64,
            chunks,
        });
        Ok(self.put_object(&object)?.0)
    }

    /// Stores an object; returns its id and whether it was new.
    fn put_object(&self, object: &Object) -> Result<(BlobId, bool)> {
        let encoded = object.encode();
        let id = BlobId(*blake3::hash(&encoded).as_bytes());
        let written = self.write_chunk_unchecked(&id.0, &encoded)?;
        Ok((id, written))
    }

    /// Stores a local file or directory tree (symlinks and special files are
    /// refused, naming them) and returns its id.
    pub fn put_path(&self, path: &Path) -> Result<(BlobId, PutStats)> {
        let meta = fs::symlink_metadata(path).map_err(io("read", path))?;
        if meta.is_dir() {
            self.put_tree(path)
        } else if meta.is_file() {
            self.put_file(path)
        } else {
            Err(BlobError::NotFileOrDir(path.to_path_buf()))
        }
    }

    /// Splits a file into chunks on every CPU at once: worker `k` of `n`
    /// reads, hashes and stores chunks `k`, `k + n`, … (one chunk in memory
    /// per worker; a large file's chunks are copied into its new data file
    /// and hashed there). A file whose size changes meanwhile is refused.
    fn put_file(&self, path: &Path) -> Result<(BlobId, PutStats)> {
        let file = fs::File::open(path).map_err(io("open", path))?;
        let size = file.metadata().map_err(io("read", path))?.len();
        let count = size.div_ceil(CHUNK_SIZE as u64) as usize;
        let large = if size > crate::store::large::LARGE {
            Some(self.large.put_file(size)?)
        } else {
            None
        };
        let chunk = |i: usize, buf: &mut Vec<u8>| -> Result<(ChunkRef, bool)> {
            let at = i as u64 * CHUNK_SIZE as u64;
            let len = (size - at).min(CHUNK_SIZE as u64) as usize;
            let chunk = |hash| ChunkRef {
                hash,
                len: len as u32,
            };
            if let Some(put) = &large {
                let hash = put.copy_chunk(&file, path, at, len, buf)?;
                return Ok((chunk(hash), !self.has_chunk(&hash)));
            }
            buf.resize(len, 0);
            file.read_exact_at(buf, at).map_err(io("read", path))?;
            let hash = *blake3::hash(buf).as_bytes();
            Ok((chunk(hash), self.write_chunk_unchecked(&hash, buf)?))
        };
        let done = on_every_cpu(count, chunk)?;
        if file.metadata().map_err(io("read", path))?.len() != size {
            return Err(BlobError::Changed(path.to_path_buf()));
        }
        let written = done.iter().filter(|(_, new)| *new).count() as u64;
        let manifest = Manifest {
            size,
            chunks: done.into_iter().map(|(c, _)| c).collect(),
        };
        let (id, new) = self.put_object(&Object::File(manifest.clone()))?;
        let stats = PutStats {
            files: 1,
            bytes: size,
            chunks: count as u64 + 1,
            chunks_written: written + u64::from(new),
        };
        if let Some(put) = large {
            self.large.adopt(id, &manifest, put)?;
            self.writes.fetch_add(written, Ordering::Relaxed);
        }
        Ok((id, stats))
    }

    /// Makes sure a large file blob has a data file that received chunks
    /// go into, and copies in the chunks of it held here elsewhere
    /// (verified); nothing for other blobs.
    pub fn reserve(&self, id: &BlobId, manifest: &Manifest) -> Result<()> {
        if is_large(manifest) {
            self.large.reserve(*id, manifest)?;
            self.fill(id);
        }
        Ok(())
    }

    /// Copies into the data file of `id` the chunks it lacks that are here
    /// elsewhere (chunk files, other data files), each verified.
    fn fill(&self, id: &BlobId) {
        for hash in self.large.missing(id) {
            let Some(bytes) = self.read_chunk(&hash) else {
                continue;
            };
            if check_chunk(&hash, &bytes).is_err() {
                continue;
            }
            if let Err(e) = self.large.write(&hash, &bytes) {
                tracing::warn!("{e}");
            }
        }
    }

    fn put_tree(&self, root: &Path) -> Result<(BlobId, PutStats)> {
        let mut files = Vec::new();
        walk(root, "", &mut files)?;
        self.put_files(files)
    }

    /// Stores listed files as one tree: `(path in the tree, local file, mode)`.
    pub fn put_files(&self, mut files: Vec<(String, PathBuf, u32)>) -> Result<(BlobId, PutStats)> {
        files.sort();
        let mut stats = PutStats::default();
        let mut entries = Vec::with_capacity(files.len());
        for (rel, abs, mode) in files {
            let (blob, file_stats) = self.put_file(&abs)?;
            stats.add(file_stats);
            entries.push(TreeEntry {
                path: rel,
                mode,
                blob,
            });
        }
        let (id, new) = self.put_tree_object(Tree { entries })?;
        stats.chunks += 1;
        stats.chunks_written += u64::from(new);
        Ok((id, stats))
    }

    /// Stores a tree of files already stored, after checking its paths.
    pub fn put_tree_object(&self, tree: Tree) -> Result<(BlobId, bool)> {
        let object = Object::Tree(tree);
        if let Object::Tree(tree) = &object {
            tree.validate().map_err(|source| BlobError::UnsafeTree {
                id: object.id(),
                source,
            })?;
        }
        self.put_object(&object)
    }

    /// A chunk's bytes; marks it used now, for least-recently-used reclaiming.
    pub fn read_chunk(&self, hash: &[u8; 32]) -> Option<Vec<u8>> {
        let Ok(mut file) = fs::File::open(self.chunk_path(hash)) else {
            let mut bytes = Vec::new();
            self.large.read_into(hash, &mut bytes, u64::MAX, true)?;
            return Some(bytes);
        };
        let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
        file.read_to_end(&mut bytes).ok()?;
        // Only the reclaim order depends on this; a failure changes nothing else.
        let _ = file.set_modified(std::time::SystemTime::now());
        Some(bytes)
    }

    /// Chunks written since this store was opened.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Every chunk file and data file with its size and last use.
    pub fn list_chunks(&self) -> Result<Vec<ChunkFile>> {
        let mut out: Vec<ChunkFile> = (self.large.list().into_iter())
            .map(|d| ChunkFile {
                hash: d.id.0,
                bytes: d.bytes,
                used: d.used,
                large: true,
            })
            .collect();
        let dirs = fs::read_dir(&self.dir).map_err(io("read directory", &self.dir))?;
        for dir in dirs.flatten() {
            // Chunk files are in the shards `00` to `ff`.
            if dir.file_name().len() != 2 {
                continue;
            }
            let Ok(files) = fs::read_dir(dir.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(hash) = name.to_str().and_then(BlobId::parse) else {
                    continue; // temporary files of writes in progress
                };
                let Ok(meta) = file.metadata() else { continue };
                out.push(ChunkFile {
                    hash: hash.0,
                    bytes: meta.len(),
                    used: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    large: false,
                });
            }
        }
        Ok(out)
    }

    /// Deletes a chunk file or data file; false if it was not here.
    pub fn remove(&self, file: &ChunkFile) -> bool {
        if file.large {
            self.large.remove(&BlobId(file.hash))
        } else {
            fs::remove_file(self.chunk_path(&file.hash)).is_ok()
        }
    }

    /// Appends chunk `hash` to `out` and returns its length, or leaves `out`
    /// as it was and returns `None` when the chunk is not here (or is larger
    /// than `max` bytes).
    pub fn read_chunk_into(&self, hash: &[u8; 32], out: &mut Vec<u8>, max: u64) -> Option<u32> {
        let Ok(mut file) = fs::File::open(self.chunk_path(hash)) else {
            return self.large.read_into(hash, out, max, false);
        };
        let len = file.metadata().ok()?.len();
        if len > max {
            return None;
        }
        let start = out.len();
        out.reserve(len as usize);
        let read = file
            .read_to_end(out)
            .ok()
            .and_then(|n| u32::try_from(n).ok());
        if read.is_none() {
            out.truncate(start);
        }
        read
    }

    pub fn has_chunk(&self, hash: &[u8; 32]) -> bool {
        self.chunk_path(hash).exists() || self.large.has(hash)
    }

    /// Stores a chunk received from elsewhere, refusing bytes that do not
    /// match their hash: into the data files of large blobs that want it,
    /// else as a chunk file.
    pub fn write_chunk(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<()> {
        check_chunk(hash, bytes)?;
        if self.large.write(hash, bytes)? {
            self.writes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.write_chunk_unchecked(hash, bytes).map(drop)
    }

    /// Writes a chunk unless it is already here; true if it was written.
    fn write_chunk_unchecked(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<bool> {
        let path = self.chunk_path(hash);
        if path.exists() {
            return Ok(false);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(io("create", parent))?;
        // Unique per writer, so concurrent writers of one chunk never
        // share a temporary file.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = parent.join(format!(
            ".{}.tmp{}-{}",
            &to_hex(hash)[..16],
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = fs::write(&tmp, bytes).and_then(|_| fs::rename(&tmp, &path)) {
            // A full disk leaves a partial file; nothing else would remove it.
            let _ = fs::remove_file(&tmp);
            return Err(io("write chunk", &path)(e).into());
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The object `id` names, if this store holds it; a tree is validated.
    pub fn object(&self, id: &BlobId) -> Result<Option<Object>> {
        let Some(bytes) = self.read_chunk(&id.0) else {
            return Ok(None);
        };
        if blake3::hash(&bytes).as_bytes() != &id.0 {
            return Err(BlobError::CorruptObject(*id));
        }
        decode_object(id, &bytes).map(Some)
    }

    /// A whole file blob, if every chunk of it is here.
    pub fn read_blob(&self, id: &BlobId) -> Result<Option<Vec<u8>>> {
        let manifest = match self.object(id)? {
            None => return Ok(None),
            Some(Object::File(m)) => m,
            Some(Object::Tree(_)) => return Err(BlobError::NotAFile(*id)),
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

    /// Writes blob `id` (all of it must be here) at `out`, which must not
    /// exist (a tree may also go into an empty directory). Returns the
    /// number of bytes written. A large file blob, alone or in a tree
    /// (unless executable), is linked out where the file system allows
    /// (read-only: it is the store's copy), so that its bytes exist once.
    pub fn export(&self, id: &BlobId, out: &Path) -> Result<u64> {
        check_out(out)?;
        match self.object(id)?.ok_or(BlobError::Missing(*id))? {
            Object::File(manifest) => self.export_file_as(id, &manifest, out, 0o644, true),
            Object::Tree(tree) => {
                fs::create_dir_all(out).map_err(io("create", out))?;
                let mut bytes = 0;
                for entry in &tree.entries {
                    // `validate` refused `..`, absolute and empty components,
                    // so every path stays under `out`.
                    let path = out.join(&entry.path);
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent).map_err(io("create", parent))?;
                    }
                    let manifest = match self.object(&entry.blob)? {
                        Some(Object::File(m)) => m,
                        Some(Object::Tree(_)) => {
                            return Err(BlobError::NestedTree(entry.path.clone()))
                        }
                        None => return Err(BlobError::Missing(entry.blob)),
                    };
                    // A large file without execute bits is linked out
                    // (read-only) as a lone file is; an executable one is
                    // copied, as every name of a data file has its mode.
                    let mode = entry.mode & 0o777;
                    let link = mode & 0o111 == 0;
                    bytes += self.export_file_as(&entry.blob, &manifest, &path, mode, link)?;
                }
                Ok(bytes)
            }
        }
    }

    /// Hashes the held chunks of large blob `id` again (its data file may
    /// have been changed through a name it was linked at); those that no
    /// longer match count as missing, so the next fetch gets them again.
    /// Returns how many did not match.
    pub fn recheck(&self, id: &BlobId) -> Result<usize> {
        Ok(self.large.recheck(id)?)
    }

    /// Writes file blob `id` at `out` (which must not exist) with
    /// permission bits `mode`; if `link` allows and `mode` is read-only
    /// (that of every data file), linked from its data file where it has
    /// one and the file system can, else copied.
    pub fn export_file_mode(&self, id: &BlobId, out: &Path, mode: u32, link: bool) -> Result<u64> {
        check_out(out)?;
        match self.object(id)?.ok_or(BlobError::Missing(*id))? {
            Object::File(manifest) => {
                let link = link && mode == LINKED_MODE;
                self.export_file_as(id, &manifest, out, mode, link)
            }
            Object::Tree(_) => Err(BlobError::NotAFile(*id)),
        }
    }

    /// Links a large file blob out (read-only) when `link` says so, the
    /// blob has a data file and the file system can; else writes a copy
    /// with mode `mode`.
    fn export_file_as(
        &self,
        id: &BlobId,
        m: &Manifest,
        out: &Path,
        mode: u32,
        link: bool,
    ) -> Result<u64> {
        if link && self.large.holds(id) && self.large.link_out(id, out)? {
            return Ok(m.size);
        }
        self.export_file(m, out, mode)
    }

    /// Writes one new file from the chunks here.
    fn export_file(&self, manifest: &Manifest, path: &Path, mode: u32) -> Result<u64> {
        let file = self.begin_export(manifest, path, mode)?;
        for hash in file.chunks() {
            file.copy_from(self, &hash)?;
        }
        file.finish()
    }

    /// Starts writing a file blob at `path` (which must not exist) with
    /// permission bits `mode`: a temporary file beside it that its chunks
    /// are written into, in any order, and that is linked into place by
    /// [`FileExport::finish`] only once every chunk is in.
    pub fn begin_export(&self, manifest: &Manifest, path: &Path, mode: u32) -> Result<FileExport> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = path
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy());
        let tmp = path.with_file_name(format!(
            ".{name}.{}-{}.partial",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        let mut offsets: HashMap<[u8; 32], Vec<u64>> = HashMap::new();
        let mut at = 0;
        for chunk in &manifest.chunks {
            offsets.entry(chunk.hash).or_default().push(at);
            at += u64::from(chunk.len);
        }
        let export = FileExport {
            file,
            tmp,
            path: path.to_path_buf(),
            mode,
            size: manifest.size,
            offsets,
        };
        allocate(&export.file, manifest.size).map_err(io("allocate", &export.tmp))?;
        Ok(export)
    }
}

/// Runs `work(i, buffer)` for `i` in `0..count` on every CPU at once
/// (worker `k` of `n` takes `k`, `k + n`, …, with one buffer of its own)
/// and returns the results in order of `i`.
fn on_every_cpu<T: Send>(
    count: usize,
    work: impl Fn(usize, &mut Vec<u8>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, count.max(1));
    let work = &work;
    let parts: Vec<Result<Vec<(usize, T)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|k| {
                s.spawn(move || {
                    let mut buf = Vec::new();
                    (k..count)
                        .step_by(workers)
                        .map(|i| Ok((i, work(i, &mut buf)?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for part in parts {
        all.extend(part?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// A file blob being written out (see [`BlobStore::begin_export`]). Its
/// methods take `&self`, so chunks may be written from several threads.
/// Dropped before [`FileExport::finish`], it removes its temporary file.
pub struct FileExport {
    file: fs::File,
    tmp: PathBuf,
    path: PathBuf,
    mode: u32,
    size: u64,
    offsets: HashMap<[u8; 32], Vec<u64>>,
}

impl FileExport {
    /// The file's distinct chunks.
    pub fn chunks(&self) -> Vec<[u8; 32]> {
        self.offsets.keys().copied().collect()
    }

    /// Writes chunk `hash` (already verified) wherever the file holds it.
    pub fn write(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<()> {
        for &at in self.offsets.get(hash).into_iter().flatten() {
            self.file
                .write_all_at(bytes, at)
                .map_err(io("write", &self.path))?;
        }
        Ok(())
    }

    /// Writes chunk `hash` from `store`, verifying it first; a chunk that
    /// does not match its hash is removed from the store (so that the next
    /// fetch pulls a good copy) and fails the export.
    pub fn copy_from(&self, store: &BlobStore, hash: &[u8; 32]) -> Result<()> {
        let bytes = store
            .read_chunk(hash)
            .ok_or_else(|| BlobError::MissingChunk {
                chunk: to_hex(hash),
                path: self.path.clone(),
            })?;
        if blake3::hash(&bytes).as_bytes() != hash {
            let _ = fs::remove_file(store.chunk_path(hash));
            return Err(BlobError::CorruptChunk {
                chunk: to_hex(hash),
                path: self.path.clone(),
            });
        }
        self.write(hash, &bytes)
    }

    /// Gives the file its mode and puts it in place (failing if something
    /// appeared there meanwhile); returns its size.
    pub fn finish(self) -> Result<u64> {
        // The process umask does not apply to an explicit chmod.
        self.file
            .set_permissions(fs::Permissions::from_mode(self.mode))
            .map_err(io("set the mode of", &self.path))?;
        // A link never replaces an existing file; where links are not
        // supported, a rename after checking is the fallback.
        match fs::hard_link(&self.tmp, &self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists || self.path.exists() => {
                return Err(io("create", &self.path)(e).into())
            }
            Err(_) => fs::rename(&self.tmp, &self.path).map_err(io("create", &self.path))?,
        }
        Ok(self.size)
    }
}

impl Drop for FileExport {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Refuses chunk bytes that do not match their hash.
pub fn check_chunk(hash: &[u8; 32], bytes: &[u8]) -> Result<()> {
    if blake3::hash(bytes).as_bytes() != hash {
        return Err(BlobError::Mismatch {
            hash: to_hex(hash),
            len: bytes.len(),
        });
    }
    Ok(())
}

/// Decodes an object, validating a tree's paths and a manifest's sizes.
pub fn decode_object(id: &BlobId, bytes: &[u8]) -> Result<Object> {
    let object: Object =
        codec::decode(bytes).map_err(|source| BlobError::Garbled { id: *id, source })?;
    match &object {
        Object::Tree(tree) => tree
            .validate()
            .map_err(|source| BlobError::UnsafeTree { id: *id, source })?,
        Object::File(manifest) => manifest
            .validate()
            .map_err(|source| BlobError::BadManifest { id: *id, source })?,
    }
    Ok(object)
}

/// Refuses an output path that exists, unless it is an empty directory.
pub fn check_out(out: &Path) -> Result<()> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspect", out)(e).into()),
        Ok(meta) if meta.is_dir() => {
            let mut items = fs::read_dir(out).map_err(io("read directory", out))?;
            match items.next() {
                None => Ok(()),
                Some(_) => Err(BlobError::NotEmpty(out.to_path_buf())),
            }
        }
        Ok(_) => Err(BlobError::Exists(out.to_path_buf())),
    }
}

/// Collects `(relative path, absolute path, mode)` of every file under
/// `dir`; refuses symlinks, special files and names that are not UTF-8.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf, u32)>) -> Result<()> {
    let items = fs::read_dir(dir).map_err(io("read directory", dir))?;
    for item in items {
        let item = item.map_err(io("read directory", dir))?;
        let path = item.path();
        let name = item
            .file_name()
            .into_string()
            .map_err(|_| BlobError::NotUtf8(path.clone()))?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(io("read", &path))?;
        if meta.is_dir() {
            walk(&path, &rel, out)?;
        } else if meta.is_file() {
            out.push((rel, path, meta.permissions().mode() & 0o777));
        } else if meta.file_type().is_symlink() {
            return Err(BlobError::Symlink(path));
        } else {
            return Err(BlobError::NotFileOrDir(path));
        }
    }
    Ok(())
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

    #[test]
    fn trees_round_trip_with_modes_and_dedupe() {
        let tmp = std::env::temp_dir().join(format!("pb-trees-{}", std::process::id()));
        let src = tmp.join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("top.txt"), b"top").unwrap();
        fs::write(src.join("a/b/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(src.join("a/b/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let store = BlobStore::open(&tmp.join("chunks")).unwrap();
        let (id, first) = store.put_path(&src).unwrap();
        assert_eq!(first.files, 2);
        assert!(first.chunks_written > 0);
        let (again, second) = store.put_path(&src).unwrap();
        assert_eq!((again, second.chunks_written), (id, 0));

        let out = tmp.join("out");
        store.export(&id, &out).unwrap();
        assert_eq!(
            fs::read(out.join("a/b/run.sh")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        let mode = fs::metadata(out.join("a/b/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let err = store.export(&id, &out).unwrap_err();
        assert!(format!("{err:#}").contains("not empty"), "{err:#}");
        fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn a_large_file_is_one_data_file_linked_out_and_a_changed_chunk_stops_being_served() {
        let tmp = std::env::temp_dir().join(format!("pb-large-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).unwrap();
        let data: Vec<u8> = (0..(20 * CHUNK_SIZE + 3))
            .map(|i| (i as u32 ^ (i as u32 >> 20).wrapping_mul(77)) as u8)
            .collect();
        let src = tmp.join("src");
        fs::write(&src, &data).unwrap();
        let store = BlobStore::open(&tmp.join("chunks")).unwrap();
        let (id, stats) = store.put_path(&src).unwrap();
        assert_eq!(stats.chunks_written, 22);
        let shards = fs::read_dir(tmp.join("chunks")).unwrap().count();
        assert_eq!(shards, 2, "one shard for the manifest, and large/");
        let (_, again) = store.put_path(&src).unwrap();
        assert_eq!(again.chunks_written, 0, "nothing new the second time");

        let out = tmp.join("out");
        assert_eq!(store.export(&id, &out).unwrap(), data.len() as u64);
        assert_eq!(fs::read(&out).unwrap(), data);
        let meta = fs::metadata(&out).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444, "read-only");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.nlink(), 2, "the store's own copy, linked out");

        // Reopened, the store knows the blob; a chunk changed through the
        // other name is no longer served, and the next export refuses.
        let store = BlobStore::open(&tmp.join("chunks")).unwrap();
        let second = blake3::hash(&data[CHUNK_SIZE..2 * CHUNK_SIZE]);
        assert!(store.has_chunk(second.as_bytes()));
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
        let f = fs::OpenOptions::new().write(true).open(&out).unwrap();
        f.write_all_at(b"changed", CHUNK_SIZE as u64 + 5).unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            store.read_chunk_into(second.as_bytes(), &mut buf, u64::MAX),
            None
        );
        assert!(!store.has_chunk(second.as_bytes()));
        let err = store.export(&id, &tmp.join("out2")).unwrap_err();
        assert!(format!("{err:#}").contains("not all here"), "{err:#}");
        // A good copy of that chunk mends it.
        let piece = &data[CHUNK_SIZE..2 * CHUNK_SIZE];
        store.write_chunk(second.as_bytes(), piece).unwrap();
        store.export(&id, &tmp.join("out3")).unwrap();
        assert_eq!(fs::read(tmp.join("out3")).unwrap(), data);
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_tree_links_its_large_files_out_and_copies_executable_ones() {
        use std::os::unix::fs::MetadataExt;
        let tmp = std::env::temp_dir().join(format!("pb-tree-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let src = tmp.join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        let data: Vec<u8> = (0..(17 * CHUNK_SIZE + 9))
            .map(|i| (i % 253) as u8)
            .collect();
        fs::write(src.join("d/big.bin"), &data).unwrap();
        fs::write(src.join("run"), &data[1..]).unwrap();
        fs::set_permissions(src.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(src.join("small.txt"), b"small").unwrap();
        let store = BlobStore::open(&tmp.join("chunks")).unwrap();
        let (id, _) = store.put_path(&src).unwrap();

        let out = tmp.join("out");
        store.export(&id, &out).unwrap();
        let big = fs::metadata(out.join("d/big.bin")).unwrap();
        assert_eq!(big.nlink(), 2, "the store's own copy, linked out");
        assert_eq!(big.permissions().mode() & 0o777, 0o444, "read-only");
        assert_eq!(fs::read(out.join("d/big.bin")).unwrap(), data);
        let run = fs::metadata(out.join("run")).unwrap();
        assert_eq!(run.nlink(), 1, "an executable is a copy of its own");
        assert_eq!(run.permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read(out.join("run")).unwrap(), &data[1..]);
        assert_eq!(fs::read(out.join("small.txt")).unwrap(), b"small");
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_large_file_on_another_file_system_is_stored_through_memory() {
        let tmp = std::env::temp_dir().join(format!("pb-other-fs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let mnt = tmp.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let at = mnt.to_str().unwrap();
        // Needs root, as CI runs the suite.
        run(&["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", at]);
        let data: Vec<u8> = (0..(18 * CHUNK_SIZE + 5))
            .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
            .collect();
        fs::write(mnt.join("src"), &data).unwrap();
        let store = BlobStore::open(&tmp.join("chunks")).unwrap();
        let stored = store.put_path(&mnt.join("src"));
        let _ = std::process::Command::new("umount").arg(at).status();
        let (id, stats) = stored.unwrap();
        assert_eq!(stats.chunks_written, 20, "19 chunks and the manifest");
        assert_eq!(store.read_blob(&id).unwrap(), Some(data));
        fs::remove_dir_all(&tmp).unwrap();
    }

    /// Runs `command`, panicking with its stderr if it fails.
    fn run(command: &[&str]) {
        let out = std::process::Command::new(command[0])
            .args(&command[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_chunk_write_that_fails_on_a_full_disk_leaves_no_temporary_file() {
        let tmp = std::env::temp_dir().join(format!("pb-full-{}", std::process::id()));
        fs::create_dir_all(&tmp).unwrap();
        let at = tmp.to_str().unwrap();
        // A filesystem of 64 KiB (needs root, as CI runs the suite).
        run(&["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", at]);
        let store = BlobStore::open(&tmp.join("chunks")).unwrap();
        let chunk = vec![7u8; 1 << 20];
        let hash = *blake3::hash(&chunk).as_bytes();
        let err = store.write_chunk(&hash, &chunk).unwrap_err();
        let mut left = Vec::new();
        let walked = walk(&tmp, "", &mut left);
        let _ = std::process::Command::new("umount").arg(at).status();
        fs::remove_dir_all(&tmp).unwrap();
        walked.unwrap();
        assert!(format!("{err:#}").contains("write chunk"), "{err:#}");
        assert_eq!(left, Vec::new(), "files left behind");
    }
}
