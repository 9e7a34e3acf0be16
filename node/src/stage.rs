//! Staging on the node that runs an attempt: inputs and packages in, outputs
//! out.
//!
//! Owns placing a task's inputs in its working directory (fetched once per
//! node into a read-only cache and hard-linked into every working directory
//! that needs them; a large file's cache entry is the store's own data file
//! under another name, so its bytes exist once on the node. Tasks of
//! another account (`--run-as`) cannot write it; when tasks run as the
//! node's own user, which can, every entry is hashed again before each
//! reuse, and one a task changed makes the store check its copy and fetch
//! what changed again), unpacking packages once per node and version, and
//! storing the files an attempt's output patterns match as one tree —
//! refusing symlinks that lead out of the working directory. Must not run
//! processes (the executor does) or decide which blob an input names (the
//! driver resolves `from_task` through the ledger).

use crate::fetch::{Fetcher, Progress};
use crate::store::blobs::BlobStore;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use libp2p::PeerId;
use peerbatch_protocol::content::Object;
use peerbatch_protocol::files::PackageUse;
use peerbatch_protocol::BlobId;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One input of an attempt with its source resolved to a blob.
#[derive(Clone, Debug)]
pub struct StagedInput {
    /// Destination relative to the working directory; empty for the directory itself.
    pub path: String,
    /// The blob, or why there is none (e.g. the task it comes from stored no outputs).
    pub blob: std::result::Result<BlobId, String>,
    /// A path inside the blob's tree; empty for all of it.
    pub within: String,
}

#[derive(Clone)]
pub struct Stager {
    blobs: BlobStore,
    fetcher: Fetcher,
    /// Input files by blob id and mode, read-only, for hard links.
    cache: PathBuf,
    /// Unpacked packages, one directory per package blob (the name the
    /// reclaimer goes by).
    packages: PathBuf,
    /// One lock per blob being materialized, so it is fetched and written once.
    locks: Arc<Mutex<HashMap<BlobId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Hash a cached input again before reusing it (tasks could change it).
    verify_cache: bool,
}

type Result<T> = std::result::Result<T, String>;

impl Stager {
    pub fn new(
        blobs: BlobStore,
        fetcher: Fetcher,
        cache: PathBuf,
        packages: PathBuf,
        verify_cache: bool,
    ) -> Stager {
        Stager {
            blobs,
            fetcher,
            cache,
            packages,
            locks: Arc::default(),
            verify_cache,
        }
    }

    /// Places every input in `dir` and links every package into `pkg_dir`
    /// (which becomes `$PEERBATCH_PACKAGES`).
    pub async fn prepare(
        &self,
        inputs: &[StagedInput],
        packages: &[PackageUse],
        peers: &[PeerId],
        dir: &Path,
        pkg_dir: &Path,
    ) -> Result<()> {
        for input in inputs {
            let name = if input.path.is_empty() {
                "the working directory".to_string()
            } else {
                input.path.clone()
            };
            self.place(input, peers, dir)
                .await
                .map_err(|e| format!("input {name}: {e}"))?;
        }
        if packages.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(pkg_dir)
            .map_err(|e| format!("cannot create {}: {e}", pkg_dir.display()))?;
        for p in packages {
            let unpacked = self
                .package(p, peers)
                .await
                .map_err(|e| format!("package {}@{}: {e}", p.name, p.version))?;
            let link = pkg_dir.join(&p.name);
            std::os::unix::fs::symlink(&unpacked, &link)
                .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
        }
        Ok(())
    }

    async fn place(&self, input: &StagedInput, peers: &[PeerId], dir: &Path) -> Result<()> {
        let blob = input.blob.clone()?;
        let object = self.fetcher.fetch_object(blob, peers).await.map_err(err)?;
        let files = select(&object, blob, &input.within, &input.path)?;
        for (dest, file, mode) in files {
            let cached = self.cached(file, mode, peers).await?;
            let target = dir.join(&dest);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            if fs::hard_link(&cached, &target).is_err() {
                fs::copy(&cached, &target)
                    .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            }
        }
        Ok(())
    }

    fn lock(&self, blob: BlobId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(blob).or_default().clone()
    }

    /// The read-only cached copy of a file blob, fetched and written once.
    async fn cached(&self, file: BlobId, mode: u32, peers: &[PeerId]) -> Result<PathBuf> {
        let mode = (mode & 0o555) | 0o444;
        let path = self.cache.join(format!("{file}-{mode:o}"));
        let lock = self.lock(file);
        let _held = lock.lock().await;
        if mark_used(&path) {
            if !self.verify_cache || self.intact(file, &path).await {
                return Ok(path);
            }
            // The entry is the store's data file under another name: what
            // a task changed there the store must fetch again.
            let blobs = self.blobs.clone();
            tokio::task::spawn_blocking(move || blobs.recheck(&file))
                .await
                .map_err(|e| e.to_string())?
                .map_err(err)?;
        }
        self.fetcher
            .fetch(file, peers, &Progress::default())
            .await
            .map_err(err)?;
        let tmp = self.cache.join(format!(".{file}-{mode:o}.part"));
        let _ = fs::remove_file(&tmp);
        let (blobs, out) = (self.blobs.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            fs::create_dir_all(out.parent().unwrap_or(Path::new("/")))
                .map_err(|e| e.to_string())?;
            blobs
                .export_file_mode(&file, &out, mode, true)
                .map(drop)
                .map_err(err)
        })
        .await
        .map_err(|e| e.to_string())??;
        fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // Renaming a name onto another name of the same file leaves both.
        let _ = fs::remove_file(&tmp);
        Ok(path)
    }

    /// Whether the cached copy at `path` still holds exactly `file`; if
    /// not, says so in the log (it is then written again).
    async fn intact(&self, file: BlobId, path: &Path) -> bool {
        let (blobs, at) = (self.blobs.clone(), path.to_path_buf());
        let same = tokio::task::spawn_blocking(move || same_content(&blobs, file, &at))
            .await
            .unwrap_or(false);
        if !same {
            tracing::warn!(
                "cached input {} was changed, probably by a task; writing it again",
                path.display()
            );
        }
        same
    }

    /// The unpacked directory of a package, fetched and unpacked once.
    async fn package(&self, p: &PackageUse, peers: &[PeerId]) -> Result<PathBuf> {
        let dir = self.packages.join(p.blob.to_string());
        let lock = self.lock(p.blob);
        let _held = lock.lock().await;
        if mark_used(&dir) {
            return Ok(dir);
        }
        self.fetcher
            .fetch(p.blob, peers, &Progress::default())
            .await
            .map_err(err)?;
        let tmp = self.packages.join(format!(".{}.part", p.blob));
        let _ = fs::remove_dir_all(&tmp);
        let (blobs, out, blob) = (self.blobs.clone(), tmp.clone(), p.blob);
        tokio::task::spawn_blocking(move || blobs.export(&blob, &out).map_err(err))
            .await
            .map_err(|e| e.to_string())??;
        fs::rename(&tmp, &dir).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Stores the files under `dir` that `patterns` match (a matched
    /// directory brings everything below it) as one tree; `None` if nothing
    /// matched. Blocking.
    pub fn collect(&self, patterns: &[String], dir: &Path) -> Result<Option<BlobId>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let set = glob_set(patterns)?;
        let root =
            fs::canonicalize(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        gather(&root, &root, "", &set, false, &mut files)?;
        if files.is_empty() {
            return Ok(None);
        }
        let (id, _) = self.blobs.put_files(files).map_err(err)?;
        Ok(Some(id))
    }
}

/// Whether `path` (a cached file or an unpacked package) is there; if so,
/// sets its modification time to now, which tells the reclaimer it is in
/// use (see `store::reclaim`).
fn mark_used(path: &Path) -> bool {
    match fs::File::open(path) {
        Ok(f) => {
            if let Err(e) = f.set_modified(std::time::SystemTime::now()) {
                tracing::warn!("cannot mark {} as used: {e}", path.display());
            }
            true
        }
        Err(_) => false,
    }
}

/// Whether the file at `path` has the size and chunk hashes of the file
/// blob `file`. Blocking; reads the file once.
fn same_content(blobs: &BlobStore, file: BlobId, path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(Some(Object::File(manifest))) = blobs.object(&file) else {
        return false;
    };
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).ok() != Some(manifest.size) {
        return false;
    }
    let mut buf = Vec::new();
    let mut at = 0u64;
    for chunk in &manifest.chunks {
        buf.resize(chunk.len as usize, 0);
        if f.read_exact_at(&mut buf, at).is_err() || blake3::hash(&buf).as_bytes() != &chunk.hash {
            return false;
        }
        at += u64::from(chunk.len);
    }
    true
}

fn err(e: impl Into<anyhow::Error>) -> String {
    format!("{:#}", e.into())
}

/// The files an input takes from `object`: `(destination, file blob, mode)`.
fn select(
    object: &Object,
    blob: BlobId,
    within: &str,
    dest: &str,
) -> Result<Vec<(String, BlobId, u32)>> {
    let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    };
    match object {
        Object::File(_) if !within.is_empty() => Err(format!(
            "{blob} is a file; taking {within:?} from it needs a tree"
        )),
        Object::File(_) if dest.is_empty() => {
            Err(format!("{blob} is a file and needs a path to be placed at"))
        }
        Object::File(_) => Ok(vec![(dest.to_string(), blob, 0o644)]),
        Object::Tree(tree) => {
            let mut files = Vec::new();
            for e in &tree.entries {
                if within.is_empty() {
                    files.push((join(dest, &e.path), e.blob, e.mode));
                } else if e.path == within {
                    let name = if dest.is_empty() { within } else { dest };
                    files.push((name.to_string(), e.blob, e.mode));
                } else if let Some(rest) = e
                    .path
                    .strip_prefix(within)
                    .and_then(|r| r.strip_prefix('/'))
                {
                    files.push((join(dest, rest), e.blob, e.mode));
                }
            }
            if files.is_empty() {
                return Err(if within.is_empty() {
                    format!("tree {blob} is empty")
                } else {
                    format!("{within:?} is not in tree {blob}")
                });
            }
            Ok(files)
        }
    }
}

fn glob_set(patterns: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("output pattern {p:?}: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| format!("output patterns: {e}"))
}

/// Walks `dir` (below `root`), adding files that match `set` or lie below a
/// matching directory. A matched symlink is followed only to a file inside
/// `root`.
fn gather(
    root: &Path,
    dir: &Path,
    prefix: &str,
    set: &GlobSet,
    inherited: bool,
    out: &mut Vec<(String, PathBuf, u32)>,
) -> Result<()> {
    let items = fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for item in items {
        let item = item.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = item.path();
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let matched = inherited || set.is_match(&rel);
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            gather(root, &path, &rel, set, matched, out)?;
        } else if !matched {
            continue;
        } else if meta.is_file() {
            out.push((rel, path, meta.permissions().mode() & 0o777));
        } else if meta.file_type().is_symlink() {
            let target = fs::canonicalize(&path)
                .map_err(|e| format!("output {rel} is a broken symbolic link: {e}"))?;
            if !target.starts_with(root) {
                return Err(format!(
                    "output {rel} is a symbolic link to {}, outside the working directory",
                    target.display()
                ));
            }
            let meta = fs::metadata(&target)
                .map_err(|e| format!("cannot read {}: {e}", target.display()))?;
            if !meta.is_file() {
                return Err(format!(
                    "output {rel} is a symbolic link to a directory; not followed"
                ));
            }
            out.push((rel, target, meta.permissions().mode() & 0o777));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_files_and_whole_directories_but_not_escaping_links() {
        let dir = std::env::temp_dir().join(format!("pb-stage-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("results/deep")).unwrap();
        for f in ["a.mp3", "b.txt", "results/r1", "results/deep/r2"] {
            fs::write(dir.join(f), f).unwrap();
        }
        let root = fs::canonicalize(&dir).unwrap();
        let mut files = Vec::new();
        let set = glob_set(&["*.mp3".into(), "results".into()]).unwrap();
        gather(&root, &root, "", &set, false, &mut files).unwrap();
        let mut names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a.mp3", "results/deep/r2", "results/r1"]);

        std::os::unix::fs::symlink("/etc/hostname", dir.join("leak.mp3")).unwrap();
        let e = gather(&root, &root, "", &set, false, &mut Vec::new()).unwrap_err();
        assert!(
            e.contains("output leak.mp3 is a symbolic link to /etc/hostname, outside"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
