//! The layout of a node's data directory and how clients find it.
//!
//! Owns file names and permissions under the data dir (identity key, API
//! address, access token, listen addresses, database, chunks, work dirs)
//! and the lock that keeps a second node off a data dir in use. Must not
//! interpret what is stored in them beyond reading and writing.

use anyhow::{Context, Result};
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// `--data-dir`, else `$PEERBATCH_DATA_DIR`, else `$XDG_DATA_HOME/peerbatch`
    /// (`~/.local/share/peerbatch`).
    pub fn resolve(flag: Option<PathBuf>) -> Result<DataDir> {
        let root = match flag.or_else(|| std::env::var_os("PEERBATCH_DATA_DIR").map(PathBuf::from))
        {
            Some(dir) => dir,
            None => match std::env::var_os("XDG_DATA_HOME") {
                Some(xdg) if !xdg.is_empty() => PathBuf::from(xdg).join("peerbatch"),
                _ => PathBuf::from(
                    std::env::var_os("HOME")
                        .context("neither --data-dir, PEERBATCH_DATA_DIR nor HOME is set")?,
                )
                .join(".local/share/peerbatch"),
            },
        };
        Ok(DataDir { root })
    }

    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create data dir {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set permissions on {}", self.root.display()))
    }

    /// Takes the data dir for this process: an exclusive `flock` on
    /// `DATA/lock`, which then holds this process's id. The kernel releases
    /// it when the process ends, however it ends (and the descriptor is
    /// close-on-exec, so tasks never inherit it). Call before touching
    /// anything else in the dir.
    pub fn lock(&self) -> Result<DirLock, LockError> {
        let path = self.root.join("lock");
        let failed = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(failed)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: self.root.clone(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(failed)?;
        Ok(DirLock { _file: file })
    }

    pub fn key_file(&self) -> PathBuf {
        self.root.join("node.key")
    }
    pub fn api_file(&self) -> PathBuf {
        self.root.join("api")
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join("token")
    }
    pub fn listen_file(&self) -> PathBuf {
        self.root.join("listen")
    }
    /// The cluster key (0600) a node made or was given by a join token.
    pub fn cluster_key_file(&self) -> PathBuf {
        self.root.join("cluster.key")
    }
    pub fn db_dir(&self) -> PathBuf {
        self.root.join("db")
    }
    pub fn chunks_dir(&self) -> PathBuf {
        self.root.join("chunks")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }
    /// Working directories of function invocations (cleared at start, as `work`).
    pub fn fn_work_dir(&self) -> PathBuf {
        self.root.join("fn-work")
    }
    /// Input files materialized once, hard-linked into working directories.
    pub fn input_cache_dir(&self) -> PathBuf {
        self.root.join("inputs")
    }
    /// Pool start tasks' working directories.
    pub fn pools_dir(&self) -> PathBuf {
        self.root.join("pools")
    }
    /// Job preparation and release working directories.
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    /// Blobs stored here by users, never reclaimed.
    pub fn kept_file(&self) -> PathBuf {
        self.root.join("kept")
    }
    /// Unpacked packages, one directory per package blob id.
    pub fn packages_dir(&self) -> PathBuf {
        self.root.join("packages")
    }
    /// Package archives being unpacked by `package add`.
    pub fn unpack_dir(&self) -> PathBuf {
        self.root.join("unpack")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("node.log")
    }
}

/// A data dir taken by this process ([`DataDir::lock`]); released when
/// dropped or when the process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("a node already runs on {} (pid {pid})", dir.display())]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock the data dir with {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes a file readable by its owner only, atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The node's 32-byte identity seed, created on first start.
pub fn load_or_create_seed(dir: &DataDir) -> Result<[u8; 32]> {
    let path = dir.key_file();
    match fs::read(&path) {
        Ok(bytes) => bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{}: identity key must be 32 bytes, found {}",
                path.display(),
                bytes.len()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            write_private(&path, &seed)?;
            Ok(seed)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_data_dir_refuses_a_second_lock_naming_the_holder_until_released() {
        let tmp = std::env::temp_dir().join(format!("pb-lock-{}", std::process::id()));
        let dir = DataDir { root: tmp.clone() };
        dir.create().unwrap();
        let held = dir.lock().unwrap();
        let refused = dir.lock().unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "a node already runs on {} (pid {})",
                tmp.display(),
                std::process::id()
            )
        );
        drop(held);
        // A process forked meanwhile by another test may hold a copy of the
        // descriptor until it execs: allow it a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Err(e) = dir.lock() {
            assert!(std::time::Instant::now() < deadline, "never released: {e}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        fs::remove_dir_all(tmp).unwrap();
    }
}
