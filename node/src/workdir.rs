//! Attempts' working directories under `WORK`.
//!
//! Owns making each attempt's `WORK/N` (empty, mode 0700, the task
//! account's), taking it out of the task's reach when the attempt ends (a
//! rename into the node-private `WORK/.gone`), and then either removing it
//! on a blocking thread or keeping it as a spare for a later attempt.
//!
//! A spare is kept only when the directory is empty, has no extended
//! attributes (a default ACL would reach the next task's files) and the
//! sandbox knows every process of the attempt has ended, so nothing of it
//! can write there again; it is handed out with its mode reset. Why spares:
//! removing a directory frees its block, and on a filesystem mounted with
//! `discard` (as many VMs' are) the kernel then waits for the disk to
//! discard that block — measured at stop 19, that wait for every `true`
//! task cost a quarter of the node's task throughput.
//!
//! Must not run commands or decide whether an attempt's processes are gone
//! (`sandbox` does), nor what goes into a directory (`exec`, `stage`).

use crate::sandbox::Sandbox;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Under `WORK`: working directories of ended attempts, being removed or
/// kept as spares.
const GONE: &str = ".gone";

/// Spares kept at most; enough for every slot of a large node to start
/// its next attempt in one.
const MAX_SPARES: usize = 64;

/// `WORK` and its spare directories.
#[derive(Clone)]
pub struct WorkDirs {
    root: PathBuf,
    spares: Arc<Mutex<Vec<PathBuf>>>,
}

/// One attempt's files: its working directory `WORK/N`, empty when made and
/// given to the task account, and beside it, the node's, where long
/// captures spill and the links to its packages (made only when it has
/// some).
pub struct AttemptDir {
    pub dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// `$PEERBATCH_PACKAGES`: links to unpacked packages.
    pub packages: PathBuf,
    /// Where the working directory goes once the attempt ended.
    gone: PathBuf,
}

/// How an attempt that used an [`AttemptDir`] ended, for what becomes of it.
pub struct Finished {
    pub had_packages: bool,
    /// The sandbox's word that none of the attempt's processes is left.
    pub tree_gone: bool,
}

impl WorkDirs {
    pub fn new(root: PathBuf) -> WorkDirs {
        WorkDirs {
            root,
            spares: Arc::default(),
        }
    }

    /// Makes attempt `n`'s directory, from a spare if there is one.
    pub fn create(&self, n: u64, sandbox: &Sandbox) -> Result<AttemptDir, String> {
        let dir = self.root.join(n.to_string());
        if !self.reuse_spare(&dir) {
            let made = match sandbox.make_fresh_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    make_root(&self.root).and_then(|()| sandbox.make_fresh_dir(&dir))
                }
                made => made,
            };
            made.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let beside = |what: &str| self.root.join(format!("{n}.{what}"));
        Ok(AttemptDir {
            stdout: beside("stdout"),
            stderr: beside("stderr"),
            packages: beside("packages"),
            gone: self.root.join(GONE).join(n.to_string()),
            dir,
        })
    }

    /// Moves a spare to `dir` with its mode reset; false if there is none
    /// or it cannot be used (it is then removed).
    fn reuse_spare(&self, dir: &Path) -> bool {
        let Some(spare) = self.lock().pop() else {
            return false;
        };
        let moved = std::fs::rename(&spare, dir).map(|()| dir.to_path_buf());
        let reset = moved.and_then(|d| {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map(|()| d)
        });
        match reset {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("cannot reuse {}: {e}", spare.display());
                let left = if dir.exists() { dir } else { &spare };
                remove_in_background(left.to_path_buf(), None);
                false
            }
        }
    }

    /// Takes the working directory out of the task's reach at once (a
    /// rename), then keeps it as a spare or removes it, and the package
    /// links if the attempt had any, on a blocking thread: freeing a
    /// directory's block waits for the disk (a discard, on some), which
    /// must not hold up a runtime worker.
    pub fn finish(&self, d: AttemptDir, how: Finished) {
        let dir = match std::fs::rename(&d.dir, &d.gone) {
            Ok(()) => d.gone,
            Err(e) => {
                tracing::warn!("cannot move {}: {e}", d.dir.display());
                d.dir
            }
        };
        let packages = how.had_packages.then_some(d.packages);
        if how.tree_gone && is_bare(&dir) {
            let mut spares = self.lock();
            if spares.len() < MAX_SPARES {
                spares.push(dir);
                drop(spares);
                if let Some(links) = packages {
                    remove_in_background(links, None);
                }
                return;
            }
        }
        remove_in_background(dir, packages);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `dir` is an empty directory without extended attributes.
fn is_bare(dir: &Path) -> bool {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut items| items.next().is_none());
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and no buffer: asks only for the size
    // of the attribute name list.
    let names = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    empty && names == 0
}

/// Removes `dir` (and `also`) on a blocking thread.
fn remove_in_background(dir: PathBuf, also: Option<PathBuf>) {
    tokio::task::spawn_blocking(move || {
        let removed = std::fs::remove_dir(&dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::DirectoryNotEmpty => std::fs::remove_dir_all(&dir),
            _ => Err(e),
        });
        if let Err(e) = removed {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
        if let Some(links) = also {
            if let Err(e) = std::fs::remove_dir_all(&links) {
                tracing::warn!("cannot remove {}: {e}", links.display());
            }
        }
    });
}

/// `WORK`, the node's, which tasks may traverse but not list or write, with
/// [`GONE`] in it, private to the node.
fn make_root(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join(GONE))?;
    std::fs::set_permissions(root.join(GONE), std::fs::Permissions::from_mode(0o700))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
}
