//! Function bundles staged once per node and linked into each call's
//! working directory.
//!
//! Owns `FN_WORK/bundles/` (private to the node): one directory per
//! bundle blob, staged by the stager as a task's input is (fetched once
//! per node, the stager's read-only cached files hard-linked in, each
//! checked again by the stager where tasks could change them), at most
//! [`MAX_BUNDLES`], the one used longest ago removed first. A call or a
//! warm worker gets a fresh working directory with a hard link to each of
//! the bundle's files ([`Prepared::link_into`]), so staging a bundle and
//! hashing its files again happens once per bundle rather than once per
//! call. Before each use every file's inode, size, mode and modification
//! time are compared with what they were when staged (a task that wrote
//! one changed its modification time, which was set to a known instant
//! then); a bundle whose files changed is staged again. Each use at most
//! every [`MARK_EVERY`] marks the files used (their modification time,
//! which the reclaimer reads on the stager's cached files: the same
//! inodes). Must not run anything nor decide which bundle a call needs.

use crate::stage::{StagedInput, Stager};
use libp2p::PeerId;
use peerbatch_protocol::BlobId;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Bundles kept staged on this node at most.
pub const MAX_BUNDLES: usize = 64;
/// Files a bundle may have for a call's directory to be emptied and kept
/// for the next call rather than removed (see [`Prepared::unlink_from`]).
pub const SPARE_FILES: usize = 16;
/// How often the files of a bundle in use are marked used for the reclaimer.
pub const MARK_EVERY: Duration = Duration::from_secs(60);

/// The staged bundles of this node.
#[derive(Clone)]
pub struct Bundles {
    stager: Stager,
    /// `FN_WORK`, which tasks may traverse, not list.
    work: PathBuf,
    /// `FN_WORK/bundles`, the node's alone.
    root: PathBuf,
    staged: Arc<Mutex<Staged>>,
    /// One lock per bundle being staged, so it is staged once.
    staging: Arc<Mutex<HashMap<BlobId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Names the directories of dropped bundles while they are removed.
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Staged {
    by_blob: HashMap<BlobId, Arc<Prepared>>,
    /// Counts uses: the order in which bundles were last used.
    clock: u64,
}

/// One staged bundle.
pub struct Prepared {
    dir: PathBuf,
    /// Its directories (relative, parents first) and files.
    dirs: Vec<PathBuf>,
    files: Mutex<Files>,
    /// When it was last used, by [`Staged::clock`].
    used: Mutex<u64>,
}

struct Files {
    each: Vec<(PathBuf, Print)>,
    /// When the files were last marked used.
    marked: Instant,
}

/// What a staged file looks like while nothing changed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Print {
    ino: u64,
    len: u64,
    mode: u32,
    mtime: (i64, i64),
}

impl Print {
    fn of(meta: &fs::Metadata) -> Print {
        Print {
            ino: meta.ino(),
            len: meta.len(),
            mode: meta.mode(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

impl Bundles {
    /// The bundles under `work` (`FN_WORK`).
    pub fn new(stager: Stager, work: PathBuf) -> Bundles {
        Bundles {
            stager,
            root: work.join("bundles"),
            work,
            staged: Arc::default(),
            staging: Arc::default(),
            dropped: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Staged> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The staged `bundle`, staged now (fetched from `peers` if this node
    /// lacks it) if it is not, or if a file of it changed since.
    pub async fn get(&self, bundle: BlobId, peers: &[PeerId]) -> Result<Arc<Prepared>, String> {
        if let Some(p) = self.intact(bundle) {
            return Ok(p);
        }
        let lock = {
            let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
            staging.entry(bundle).or_default().clone()
        };
        let held = lock.lock().await;
        let staged = match self.intact(bundle) {
            Some(p) => Ok(p),
            None => self.stage(bundle, peers).await,
        };
        drop(held);
        let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) == 2 {
            staging.remove(&bundle);
        }
        staged
    }

    /// The staged `bundle` if its files are as staged (marked used if
    /// due); a changed one is forgotten and removed.
    fn intact(&self, bundle: BlobId) -> Option<Arc<Prepared>> {
        let p = {
            let mut staged = self.lock();
            staged.clock += 1;
            let now = staged.clock;
            let p = staged.by_blob.get(&bundle)?.clone();
            *p.used.lock().unwrap_or_else(|e| e.into_inner()) = now;
            p
        };
        match p.check() {
            Ok(()) => Some(p),
            Err(why) => {
                tracing::warn!("staged bundle {bundle}: {why}; staging it again");
                let mut staged = self.lock();
                if staged
                    .by_blob
                    .get(&bundle)
                    .is_some_and(|q| Arc::ptr_eq(q, &p))
                {
                    staged.by_blob.remove(&bundle);
                    self.drop_dir(&p.dir);
                }
                None
            }
        }
    }

    /// Stages `bundle` into its own directory and keeps it, removing the
    /// bundle used longest ago beyond [`MAX_BUNDLES`].
    async fn stage(&self, bundle: BlobId, peers: &[PeerId]) -> Result<Arc<Prepared>, String> {
        self.make_root()
            .map_err(|e| format!("cannot create {}: {e}", self.root.display()))?;
        let dir = self.root.join(bundle.to_string());
        let part = self.root.join(format!(".{bundle}.part"));
        let (dir_, part_) = (dir.clone(), part.clone());
        tokio::task::spawn_blocking(move || {
            let _ = fs::remove_dir_all(&dir_);
            let _ = fs::remove_dir_all(&part_);
            fs::create_dir(&part_)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        let input = StagedInput {
            path: String::new(),
            blob: Ok(bundle),
            within: String::new(),
        };
        let packages = self.root.join(format!(".{bundle}.packages"));
        let placed = (self.stager)
            .prepare(&[input], &[], peers, &part, &packages)
            .await
            .and_then(|()| {
                fs::rename(&part, &dir).map_err(|e| format!("cannot move {}: {e}", part.display()))
            });
        if let Err(e) = placed {
            remove_in_background(part);
            return Err(format!("cannot place its bundle: {e}"));
        }
        let d = dir.clone();
        let prepared = tokio::task::spawn_blocking(move || Prepared::read(d))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        Ok(self.keep(bundle, prepared))
    }

    /// Keeps `prepared` as `bundle`'s, dropping the one used longest ago
    /// beyond [`MAX_BUNDLES`].
    fn keep(&self, bundle: BlobId, prepared: Prepared) -> Arc<Prepared> {
        let mut staged = self.lock();
        staged.clock += 1;
        *prepared.used.lock().unwrap_or_else(|e| e.into_inner()) = staged.clock;
        let prepared = Arc::new(prepared);
        staged.by_blob.insert(bundle, prepared.clone());
        while staged.by_blob.len() > MAX_BUNDLES {
            let oldest = staged
                .by_blob
                .iter()
                .min_by_key(|(_, p)| *p.used.lock().unwrap_or_else(|e| e.into_inner()))
                .map(|(b, _)| *b);
            let Some(gone) = oldest.and_then(|b| staged.by_blob.remove(&b)) else {
                break;
            };
            self.drop_dir(&gone.dir);
        }
        prepared
    }

    /// Moves a dropped bundle's directory out of the way at once (so that
    /// staging it again never meets it), then removes it in the background.
    fn drop_dir(&self, dir: &Path) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed);
        let gone = self.root.join(format!(".dropped-{n}"));
        match fs::rename(dir, &gone) {
            Ok(()) => remove_in_background(gone),
            Err(e) => tracing::warn!("cannot move {}: {e}", dir.display()),
        }
    }

    /// `FN_WORK` (traverse only) and `FN_WORK/bundles` (the node's alone).
    fn make_root(&self) -> std::io::Result<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        match fs::DirBuilder::new().mode(0o711).create(&self.work) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => fs::set_permissions(&self.work, fs::Permissions::from_mode(0o711))?,
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.root) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }
}

impl Prepared {
    /// The staged bundle in `dir`, its files marked used now. Blocking.
    fn read(dir: PathBuf) -> std::io::Result<Prepared> {
        let (mut dirs, mut names) = (Vec::new(), Vec::new());
        walk(&dir, Path::new(""), &mut dirs, &mut names)?;
        let files = Files {
            each: names.into_iter().map(|n| (n, PRINT_UNREAD)).collect(),
            marked: Instant::now(),
        };
        let prepared = Prepared {
            dir,
            dirs,
            files: Mutex::new(files),
            used: Mutex::new(0),
        };
        prepared.mark(&mut prepared.lock_files())?;
        Ok(prepared)
    }

    fn lock_files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every file is as staged; marks them used if due.
    fn check(&self) -> Result<(), String> {
        let mut files = self.lock_files();
        for (name, print) in &files.each {
            let path = self.dir.join(name);
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if Print::of(&meta) != *print {
                return Err(format!("{} was changed", name.display()));
            }
        }
        if files.marked.elapsed() >= MARK_EVERY {
            self.mark(&mut files)
                .map_err(|e| format!("cannot mark it used: {e}"))?;
        }
        Ok(())
    }

    /// Sets every file's modification time to now (it is in use), which a
    /// later write changes, and notes how each file looks.
    fn mark(&self, files: &mut Files) -> std::io::Result<()> {
        let now = SystemTime::now();
        for (name, print) in &mut files.each {
            let f = fs::File::open(self.dir.join(&*name))?;
            f.set_modified(now)?;
            *print = Print::of(&f.metadata()?);
        }
        files.marked = Instant::now();
        Ok(())
    }

    /// Makes the bundle's directories in `dir` (a call's fresh working
    /// directory) and hard-links its files there.
    pub fn link_into(&self, dir: &Path) -> Result<(), String> {
        for d in &self.dirs {
            let path = dir.join(d);
            fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        let files = self.lock_files();
        for (name, _) in &files.each {
            let (from, to) = (self.dir.join(name), dir.join(name));
            fs::hard_link(&from, &to).map_err(|e| format!("cannot link {}: {e}", to.display()))?;
        }
        Ok(())
    }
}

impl Prepared {
    /// Takes the bundle's links out of `dir` (a call's working directory,
    /// none of whose processes is left), by name, so that it may serve
    /// another call; true if that was done. Done only for a bundle of at
    /// most [`SPARE_FILES`] files and no directories: others, and a
    /// directory whose handler renamed or replaced a bundle file, are
    /// removed whole in the background.
    pub fn unlink_from(&self, dir: &Path) -> bool {
        let files = self.lock_files();
        if !self.dirs.is_empty() || files.each.len() > SPARE_FILES {
            return false;
        }
        // A name the handler replaced by a symbolic link removes the link
        // only; one replaced by a directory is not removed.
        files
            .each
            .iter()
            .all(|(name, _)| fs::remove_file(dir.join(name)).is_ok())
    }
}

/// A print no file has, before the first [`Prepared::mark`].
const PRINT_UNREAD: Print = Print {
    ino: 0,
    len: 0,
    mode: 0,
    mtime: (0, 0),
};

/// Lists the directories and files below `root`'s `rel`, parents first.
fn walk(
    root: &Path,
    rel: &Path,
    dirs: &mut Vec<PathBuf>,
    files: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for item in fs::read_dir(root.join(rel))? {
        let item = item?;
        let name = rel.join(item.file_name());
        if item.file_type()?.is_dir() {
            dirs.push(name.clone());
            walk(root, &name, dirs, files)?;
        } else {
            files.push(name);
        }
    }
    Ok(())
}

/// Removes `dir` on a blocking thread.
fn remove_in_background(dir: PathBuf) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    });
}
