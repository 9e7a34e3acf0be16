//! Large file blobs: one data file per blob, each chunk written straight
//! into place as it arrives.
//!
//! Owns `large/ID` under the chunk store (the file's bytes at their
//! offsets, allocated up front) and `large/ID.have` (one byte per chunk of
//! its manifest: 1 once that chunk was verified and written), the index
//! from a chunk's hash to the places that hold it, reading a chunk by
//! position, and linking a complete blob out under another name. A chunk
//! becomes servable only once its bytes are in the data file: its have
//! byte is written after them, so a node killed meanwhile leaves that
//! chunk missing, never wrong, and a blob is complete only when every byte
//! is 1. A data file that has other names (linked out to a user's `get
//! --out` or an input cache) is hashed again chunk by chunk whenever it is
//! read, because whoever holds the other name could change it; a chunk
//! that no longer matches stops being served and is fetched again. Must
//! not talk to the network, decide what to fetch or keep, or touch the
//! chunk files of small blobs and objects (`blobs` owns those and calls in
//! here).

use peerbatch_protocol::content::{Manifest, CHUNK_SIZE};
use peerbatch_protocol::ids::to_hex;
use peerbatch_protocol::BlobId;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// File blobs larger than this (16 chunks) get a data file; smaller ones,
/// and every object, stay chunk files.
pub const LARGE: u64 = 16 * CHUNK_SIZE as u64;

/// The mode of a complete data file, and so of every name it is linked at:
/// read-only, since it is the node's one copy.
pub const LINKED_MODE: u32 = 0o444;

/// Whether a file blob is kept as a data file.
pub fn is_large(manifest: &Manifest) -> bool {
    manifest.size > LARGE
}

/// An IO error, with what was being done and to which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct IoError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Maps an IO error on `path` to an [`IoError`] saying what failed.
pub fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IoError + 'a {
    move |source| IoError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What can go wrong with a data file; every variant names its blob or path.
#[derive(Debug, thiserror::Error)]
pub enum LargeError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("blob {0} is not all here")]
    Incomplete(BlobId),
    #[error("{chunks} chunks of blob {blob} were changed in its data file (they are fetched again on the next get)")]
    Changed { blob: BlobId, chunks: usize },
}

type Result<T> = std::result::Result<T, LargeError>;

/// One chunk's place in its data file.
#[derive(Clone, Copy)]
struct Place {
    hash: [u8; 32],
    offset: u64,
    len: u32,
}

/// A place a chunk is to be written: blob, chunk index, offset, writer.
type Target = (BlobId, usize, u64, Arc<Writer>);

/// The open data and have files of a blob being filled.
struct Writer {
    data: fs::File,
    have: fs::File,
}

struct Entry {
    places: Vec<Place>,
    have: Vec<bool>,
    missing: usize,
    size: u64,
    /// Set while chunks are missing; dropped once complete.
    writer: Option<Arc<Writer>>,
    /// When it was last written or read, for least-recently-used reclaiming.
    used: SystemTime,
}

#[derive(Default)]
struct Index {
    entries: HashMap<BlobId, Entry>,
    /// Chunk hash → (blob, chunk index) of every place that holds or wants it.
    by_hash: HashMap<[u8; 32], Vec<(BlobId, usize)>>,
}

impl Index {
    fn insert(&mut self, id: BlobId, entry: Entry) {
        self.forget(&id);
        for (i, p) in entry.places.iter().enumerate() {
            self.by_hash.entry(p.hash).or_default().push((id, i));
        }
        self.entries.insert(id, entry);
    }

    fn forget(&mut self, id: &BlobId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        for p in &entry.places {
            if let Some(list) = self.by_hash.get_mut(&p.hash) {
                list.retain(|(b, _)| b != id);
                if list.is_empty() {
                    self.by_hash.remove(&p.hash);
                }
            }
        }
        Some(entry)
    }
}

/// The data files of large blobs; shared by every clone of the store.
pub struct Large {
    dir: PathBuf,
    index: Mutex<Index>,
}

impl std::fmt::Debug for Large {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Large").field("dir", &self.dir).finish()
    }
}

/// A data file as reclaiming lists it.
pub struct DataFile {
    pub id: BlobId,
    pub bytes: u64,
    pub used: SystemTime,
}

impl Large {
    /// Opens (creating) `dir`, removing what a node killed in the middle
    /// of a put or of creating a data file left behind. Blobs are indexed
    /// by [`Large::load`], once their manifests are read.
    pub fn open(dir: PathBuf) -> Result<Large> {
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let items = fs::read_dir(&dir).map_err(io("read directory", &dir))?;
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let orphan = match BlobId::parse(&name) {
                Some(_) => !dir.join(format!("{name}.have")).exists(),
                None => name.starts_with(".put-"),
            };
            if orphan {
                let _ = fs::remove_file(item.path());
            }
        }
        Ok(Large {
            dir,
            index: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn have_path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(format!("{id}.have"))
    }

    /// The blobs with a data file on disk.
    pub fn on_disk(&self) -> Vec<BlobId> {
        let Ok(items) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        items
            .flatten()
            .filter_map(|i| {
                let name = i.file_name();
                BlobId::parse(name.to_str()?.strip_suffix(".have")?)
            })
            .collect()
    }

    /// Indexes blob `id` from its files; removes them if they do not fit
    /// `manifest` (a node killed while creating them).
    pub fn load(&self, id: BlobId, manifest: &Manifest) {
        let (data, have) = (self.data_path(&id), self.have_path(&id));
        let bits = fs::read(&have).unwrap_or_default();
        let fits = fs::metadata(&data).is_ok_and(|m| m.len() == manifest.size)
            && bits.len() == manifest.chunks.len();
        if !fits {
            tracing::warn!("removing the unfinished data file of {id}");
            self.remove(&id);
            return;
        }
        let used = fs::metadata(&have)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        let have: Vec<bool> = bits.iter().map(|&b| b == 1).collect();
        self.lock().insert(id, entry(manifest, have, None, used));
    }

    /// Makes sure blob `id` has a data file (allocated, every chunk
    /// missing, if it had none), so that chunks written to the store go
    /// into it.
    pub fn reserve(&self, id: BlobId, manifest: &Manifest) -> Result<()> {
        let mut index = self.lock();
        if index.entries.contains_key(&id) {
            if self.data_path(&id).exists() {
                return Ok(());
            }
            index.forget(&id); // removed underneath the node
        }
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let (data, have) = (self.data_path(&id), self.have_path(&id));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&data)
            .map_err(io("create", &data))?;
        if let Err(e) = allocate(&file, manifest.size) {
            let _ = fs::remove_file(&data);
            return Err(io("allocate", &data)(e).into());
        }
        // Written after the data file: a node killed between the two
        // leaves a data file without have bytes, which `open` removes.
        fs::write(&have, vec![0u8; manifest.chunks.len()]).map_err(io("write", &have))?;
        let writer = Writer {
            data: file,
            have: open_rw(&have)?,
        };
        let have_bits = vec![false; manifest.chunks.len()];
        let e = entry(
            manifest,
            have_bits,
            Some(Arc::new(writer)),
            SystemTime::now(),
        );
        index.insert(id, e);
        Ok(())
    }

    /// Whether some data file holds chunk `hash`.
    pub fn has(&self, hash: &[u8; 32]) -> bool {
        self.holder(hash).is_some()
    }

    /// A blob whose data file holds chunk `hash`, with that chunk's place.
    fn holder(&self, hash: &[u8; 32]) -> Option<(BlobId, usize, Place)> {
        let candidates: Vec<(BlobId, usize, Place)> = {
            let index = self.lock();
            let places = index.by_hash.get(hash)?;
            places
                .iter()
                .filter_map(|&(id, i)| {
                    let e = index.entries.get(&id)?;
                    e.have[i].then_some((id, i, e.places[i]))
                })
                .collect()
        };
        for (id, i, place) in candidates {
            if self.data_path(&id).exists() {
                return Some((id, i, place));
            }
            // Removed underneath the node: nothing there to serve.
            self.lock().forget(&id);
        }
        None
    }

    /// The places that want chunk `hash`, with their blob's writer; `None`
    /// if no data file has a place for it.
    fn wanting(&self, hash: &[u8; 32]) -> Result<Option<Vec<Target>>> {
        let mut index = self.lock();
        let Some(places) = index.by_hash.get(hash).cloned() else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (id, i) in places {
            let Some(e) = index.entries.get_mut(&id) else {
                continue;
            };
            if e.have[i] {
                continue;
            }
            let writer = match &e.writer {
                Some(w) => w.clone(),
                None => {
                    let w = Arc::new(open_writer(&self.data_path(&id), &self.have_path(&id))?);
                    e.writer = Some(w.clone());
                    w
                }
            };
            out.push((id, i, e.places[i].offset, writer));
        }
        Ok(Some(out))
    }

    /// Writes a verified chunk into every data file that wants it; false if
    /// no data file has a place for it. Its have byte is written after its
    /// bytes.
    pub fn write(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<bool> {
        let Some(targets) = self.wanting(hash)? else {
            return Ok(false);
        };
        for (id, i, offset, writer) in &targets {
            let data = self.data_path(id);
            writer
                .data
                .write_all_at(bytes, *offset)
                .map_err(io("write", &data))?;
            let have = self.have_path(id);
            writer
                .have
                .write_all_at(&[1], *i as u64)
                .map_err(io("write", &have))?;
            self.mark(id, *i, writer);
        }
        Ok(true)
    }

    /// Records chunk `i` of `id` as held, unless the blob's files were
    /// made anew meanwhile; a blob that became complete turns read-only.
    fn mark(&self, id: &BlobId, i: usize, writer: &Arc<Writer>) {
        let mut index = self.lock();
        let Some(e) = index.entries.get_mut(id) else {
            return;
        };
        let current = e.writer.as_ref().is_some_and(|w| Arc::ptr_eq(w, writer));
        if !current || e.have[i] {
            return;
        }
        e.have[i] = true;
        e.missing -= 1;
        e.used = SystemTime::now();
        if e.missing == 0 {
            e.writer = None;
            let path = self.data_path(id);
            if let Err(err) = fs::set_permissions(&path, fs::Permissions::from_mode(LINKED_MODE)) {
                tracing::warn!("cannot make {} read-only: {err}", path.display());
            }
        }
    }

    /// Records chunk `i` of `id` as missing again (its bytes changed).
    fn unmark(&self, id: &BlobId, i: usize) {
        let mut index = self.lock();
        let Some(e) = index.entries.get_mut(id) else {
            return;
        };
        if !e.have[i] {
            return;
        }
        e.have[i] = false;
        e.missing += 1;
        let have = self.have_path(id);
        if let Err(err) =
            open_rw(&have).and_then(|f| f.write_all_at(&[0], i as u64).map_err(io("write", &have)))
        {
            tracing::warn!("{err}");
        }
    }

    /// Appends chunk `hash` to `out` from a data file (at most `max`
    /// bytes) and returns its length, or `None` if no data file holds it.
    /// The chunk is hashed again if `verify` says so or its data file has
    /// other names.
    pub fn read_into(
        &self,
        hash: &[u8; 32],
        out: &mut Vec<u8>,
        max: u64,
        verify: bool,
    ) -> Option<u32> {
        let (id, i, place) = self.holder(hash)?;
        if u64::from(place.len) > max {
            return None;
        }
        let file = fs::File::open(self.data_path(&id)).ok()?;
        let check = verify || file.metadata().ok()?.nlink() > 1;
        let start = out.len();
        out.resize(start + place.len as usize, 0);
        let read = file.read_exact_at(&mut out[start..], place.offset);
        if read.is_err() || (check && blake3::hash(&out[start..]).as_bytes() != hash) {
            out.truncate(start);
            if read.is_ok() {
                tracing::warn!(
                    "chunk {} of {id} was changed in its data file; no longer serving it",
                    to_hex(hash)
                );
                self.unmark(&id, i);
            }
            return None;
        }
        if let Some(e) = self.lock().entries.get_mut(&id) {
            e.used = SystemTime::now();
        }
        Some(place.len)
    }

    /// The chunks blob `id` still lacks (none if it has no data file).
    pub fn missing(&self, id: &BlobId) -> Vec<[u8; 32]> {
        let index = self.lock();
        let Some(e) = index.entries.get(id) else {
            return Vec::new();
        };
        e.places
            .iter()
            .zip(&e.have)
            .filter(|(_, have)| !**have)
            .map(|(p, _)| p.hash)
            .collect()
    }

    /// Whether blob `id` has a data file.
    pub fn holds(&self, id: &BlobId) -> bool {
        self.lock().entries.contains_key(id)
    }

    /// Hashes every held chunk of `id` again, marks those that no longer
    /// match as missing and returns how many did not.
    pub fn recheck(&self, id: &BlobId) -> Result<usize> {
        let (held, size): (Vec<(usize, Place)>, u64) = {
            let index = self.lock();
            let Some(e) = index.entries.get(id) else {
                return Ok(0);
            };
            let held = (0..e.places.len())
                .filter(|&i| e.have[i])
                .map(|i| (i, e.places[i]))
                .collect();
            (held, e.size)
        };
        let path = self.data_path(id);
        let file = fs::File::open(&path).map_err(io("open", &path))?;
        let grown = file.metadata().map_err(io("read", &path))?.len() > size;
        if grown {
            // Appended to through another name: cut back to the blob.
            tracing::warn!(
                "{} grew past its blob's size; cutting it back",
                path.display()
            );
            let mode = file.metadata().map_err(io("read", &path))?.permissions();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .map_err(io("set the mode of", &path))?;
            open_rw(&path)?
                .set_len(size)
                .map_err(io("truncate", &path))?;
            fs::set_permissions(&path, mode).map_err(io("set the mode of", &path))?;
        }
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut bad = 0;
        for (i, place) in held {
            let piece = &mut buf[..place.len as usize];
            let same = file.read_exact_at(piece, place.offset).is_ok()
                && blake3::hash(piece).as_bytes() == &place.hash;
            if !same {
                self.unmark(id, i);
                bad += 1;
            }
        }
        Ok(bad + usize::from(grown))
    }

    /// Links the complete data file of `id` at `out` (never replacing
    /// anything there); false if the file system cannot link it there (the
    /// caller copies instead). A data file that already has other names
    /// is hashed again first.
    pub fn link_out(&self, id: &BlobId, out: &Path) -> Result<bool> {
        if self.lock().entries.get(id).is_none_or(|e| e.missing != 0) {
            return Err(LargeError::Incomplete(*id));
        }
        let data = self.data_path(id);
        let meta = fs::metadata(&data).map_err(io("read", &data))?;
        if meta.nlink() > 1 {
            let chunks = self.recheck(id)?;
            if chunks > 0 {
                return Err(LargeError::Changed { blob: *id, chunks });
            }
        }
        match fs::hard_link(&data, out) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(io("create", out)(e).into())
            }
            Err(_) => Ok(false),
        }
    }

    /// A new temporary data file for a put of `size` bytes, allocated.
    pub fn put_file(&self, size: u64) -> Result<PutFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let tmp = self.dir.join(format!(
            ".put-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        let mut put = PutFile {
            map: None,
            file,
            path: tmp,
        };
        allocate(&put.file, size).map_err(io("allocate", &put.path))?;
        put.map = Some(Mapped::new(&put.file, size).map_err(io("map", &put.path))?);
        Ok(put)
    }

    /// Makes the temporary file of a put, which holds every chunk of
    /// `manifest`, the data file of `id`; if `id` has a data file
    /// already, copies into it only the chunks it lacks instead.
    pub fn adopt(&self, id: BlobId, manifest: &Manifest, mut put: PutFile) -> Result<()> {
        let tmp = put.path.clone();
        if self.holds(&id) && self.data_path(&id).exists() {
            let lacking: std::collections::HashSet<[u8; 32]> =
                self.missing(&id).into_iter().collect();
            let mut at = 0;
            for chunk in &manifest.chunks {
                if lacking.contains(&chunk.hash) {
                    let mut buf = vec![0u8; chunk.len as usize];
                    put.file
                        .read_exact_at(&mut buf, at)
                        .map_err(io("read", &tmp))?;
                    self.write(&chunk.hash, &buf)?;
                }
                at += u64::from(chunk.len);
            }
            return Ok(()); // dropping `put` removes it
        }
        let (data, have) = (self.data_path(&id), self.have_path(&id));
        fs::write(&have, vec![1u8; manifest.chunks.len()]).map_err(io("write", &have))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(LINKED_MODE))
            .map_err(io("set the mode of", &tmp))?;
        fs::rename(&tmp, &data).map_err(io("create", &data))?;
        put.path = PathBuf::new(); // moved: nothing to remove
        let have = vec![true; manifest.chunks.len()];
        self.lock()
            .insert(id, entry(manifest, have, None, SystemTime::now()));
        Ok(())
    }

    /// Every data file with its size and last use.
    pub fn list(&self) -> Vec<DataFile> {
        let index = self.lock();
        index
            .entries
            .iter()
            .map(|(id, e)| DataFile {
                id: *id,
                bytes: e.size,
                used: e.used,
            })
            .collect()
    }

    /// Deletes the data file of `id`; false if there was none. Names it
    /// was linked at keep the bytes.
    pub fn remove(&self, id: &BlobId) -> bool {
        self.lock().forget(id);
        let gone = fs::remove_file(self.data_path(id)).is_ok();
        let _ = fs::remove_file(self.have_path(id));
        gone
    }
}

fn entry(
    manifest: &Manifest,
    have: Vec<bool>,
    writer: Option<Arc<Writer>>,
    used: SystemTime,
) -> Entry {
    let mut offset = 0;
    let places = manifest
        .chunks
        .iter()
        .map(|c| {
            let p = Place {
                hash: c.hash,
                offset,
                len: c.len,
            };
            offset += u64::from(c.len);
            p
        })
        .collect();
    Entry {
        places,
        missing: have.iter().filter(|h| !**h).count(),
        have,
        size: manifest.size,
        writer,
        used,
    }
}

fn open_rw(path: &Path) -> std::result::Result<fs::File, IoError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("open", path))
}

/// Opens a data file (made writable again if it was complete and read-only)
/// and its have file for writing.
fn open_writer(data: &Path, have: &Path) -> Result<Writer> {
    fs::set_permissions(data, fs::Permissions::from_mode(0o600))
        .map_err(io("set the mode of", data))?;
    Ok(Writer {
        data: open_rw(data)?,
        have: open_rw(have)?,
    })
}

/// Gives a new file its final size with its blocks allocated up front where
/// the file system can (so a download that cannot fit fails at once, and
/// ext4 takes buffered writes into it faster: `dd` of 1 GiB here ran at
/// 655–675 MB/s into an allocated file, 435–595 MB/s into a sparse one),
/// else sparse.
pub fn allocate(file: &fs::File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(size).map_err(std::io::Error::other)?;
    // SAFETY: fallocate only acts on the open descriptor it is given.
    if size == 0 || unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
        return file.set_len(size);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(size),
        _ => Err(e),
    }
}

/// The new data file of a put: each chunk is copied into it from the
/// source file once (in the kernel, where source and store share a file
/// system) and hashed where it landed, so a chunk's hash is always that
/// of the bytes the store holds, whatever happens to the source
/// meanwhile. Removed when dropped unless adopted.
pub struct PutFile {
    path: PathBuf,
    file: fs::File,
    /// The file mapped read-only, to hash chunks in place.
    map: Option<Mapped>,
}

impl PutFile {
    /// Copies `len` bytes at `at` of `src` (at `src_path`) to the same
    /// place here and returns their hash. `buf` is for a copy through
    /// memory where the kernel cannot copy.
    pub fn copy_chunk(
        &self,
        src: &fs::File,
        src_path: &Path,
        at: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<[u8; 32], IoError> {
        if copy_range(src, &self.file, at, len).map_err(io("copy", src_path))? {
            let map = self.map.as_ref().expect("mapped since put_file");
            return Ok(*blake3::hash(map.slice(at, len)).as_bytes());
        }
        buf.resize(len, 0);
        src.read_exact_at(buf, at).map_err(io("read", src_path))?;
        self.file
            .write_all_at(buf, at)
            .map_err(io("write", &self.path))?;
        Ok(*blake3::hash(buf).as_bytes())
    }
}

impl Drop for PutFile {
    fn drop(&mut self) {
        self.map = None;
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Copies `len` bytes at `at` from `src` to the same offset of `dst` in
/// the kernel; false (nothing copied) where it cannot, e.g. across file
/// systems.
fn copy_range(src: &fs::File, dst: &fs::File, at: u64, len: usize) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let start = libc::loff_t::try_from(at).map_err(std::io::Error::other)?;
    let (mut off_in, mut off_out, mut left) = (start, start, len);
    while left > 0 {
        // SAFETY: both descriptors are open for as long as the borrows;
        // the offsets are this function's own variables.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                left,
                0,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            let unsupported = matches!(
                e.raw_os_error(),
                Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
            );
            if unsupported && left == len {
                return Ok(false);
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as usize;
    }
    Ok(true)
}

/// A file mapped read-only into memory.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and only read through `slice`.
unsafe impl Send for Mapped {}
// SAFETY: as above; reads from several threads are fine.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` (> 0) bytes of `file`, which must not be
    /// truncated while mapped: `put_file`'s own new file in the store.
    fn new(file: &fs::File, len: u64) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        // SAFETY: a new read-only shared mapping of an open file; the
        // result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    /// Bytes `at..at + len` (within the mapping).
    fn slice(&self, at: u64, len: usize) -> &[u8] {
        let at = at as usize;
        assert!(at + len <= self.len, "a slice within the mapping");
        // SAFETY: in bounds (checked above) of a live mapping; the file is
        // not truncated while mapped (see `new`).
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>().add(at), len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
