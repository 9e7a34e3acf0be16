//! The layout of a node's data directory and how clients find it.
//!
//! Owns file names and permissions under the data dir (identity key, API
//! address, access token, listen addresses, database, chunks, work dirs).
//! Must not interpret what is stored in them beyond reading and writing.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
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
    pub fn db_dir(&self) -> PathBuf {
        self.root.join("db")
    }
    pub fn chunks_dir(&self) -> PathBuf {
        self.root.join("chunks")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
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
    pub fn log_file(&self) -> PathBuf {
        self.root.join("node.log")
    }
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
