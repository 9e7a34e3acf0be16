//! The durable copy of the replicated ledger, in sled.
//!
//! Owns the sled database (one tree per table: `events`) and the rule that a
//! database which fails to open is set aside and rebuilt from peers instead of
//! crashing the node. Must not interpret events: it stores bytes by id.

use anyhow::{Context, Result};
use peerbatch_protocol::{EventId, EventStore};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct LedgerStore {
    dir: PathBuf,
    /// `None` only while [`LedgerStore::reopen`] swaps it.
    open: Arc<RwLock<Option<Open>>>,
    /// Bytes of stored events, kept as they are written (the core persists
    /// each event once), so reporting it never scans the tree.
    event_bytes: Arc<AtomicU64>,
}

struct Open {
    db: sled::Db,
    events: sled::Tree,
}

impl LedgerStore {
    /// Opens the database under `dir`. If it cannot be opened (corrupt,
    /// wrong format), it is renamed to `dir.broken-<unix secs>` and a fresh one
    /// is created: the events come back from peers by anti-entropy.
    pub fn open(dir: &Path) -> Result<(LedgerStore, Option<String>)> {
        match Self::open_at(dir) {
            Ok(open) => Ok((Self::wrap(dir, open), None)),
            Err(first) => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = dir.with_extension(format!("broken-{secs}"));
                std::fs::rename(dir, &aside).with_context(|| {
                    format!(
                        "database {} failed to open ({first:#}) and could not be set aside",
                        dir.display()
                    )
                })?;
                let open = Self::open_at(dir)?;
                Ok((
                    Self::wrap(dir, open),
                    Some(format!(
                        "database {} failed to open ({first:#}); moved it to {} and starting empty, rebuilding from peers",
                        dir.display(),
                        aside.display()
                    )),
                ))
            }
        }
    }

    fn wrap(dir: &Path, open: Open) -> LedgerStore {
        let bytes = Self::count_bytes(&open.events);
        LedgerStore {
            dir: dir.to_path_buf(),
            open: Arc::new(RwLock::new(Some(open))),
            event_bytes: Arc::new(AtomicU64::new(bytes)),
        }
    }

    fn open_at(dir: &Path) -> Result<Open> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 << 20)
            .open()
            .with_context(|| format!("cannot open database {}", dir.display()))?;
        let events = db
            .open_tree("events")
            .context("cannot open the events tree")?;
        Ok(Open { db, events })
    }

    fn count_bytes(events: &sled::Tree) -> u64 {
        events
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .map(|v| v.len() as u64)
            .sum()
    }

    /// Closes and opens the database again. sled refuses every write after
    /// one failed (a full disk, say); reopening recovers what was flushed,
    /// and the caller writes the rest again.
    pub fn reopen(&self) -> Result<()> {
        let mut slot = self.open.write().unwrap_or_else(|p| p.into_inner());
        // The old handles must be gone before sled's lock can be taken again.
        drop(slot.take());
        let open = Self::open_at(&self.dir)?;
        self.event_bytes
            .store(Self::count_bytes(&open.events), Ordering::Relaxed);
        *slot = Some(open);
        Ok(())
    }

    /// False after a failed [`LedgerStore::reopen`], until one succeeds.
    pub fn is_open(&self) -> bool {
        let slot = self.open.read().unwrap_or_else(|p| p.into_inner());
        slot.is_some()
    }

    fn with<T>(&self, f: impl FnOnce(&Open) -> Result<T>) -> Result<T> {
        let slot = self.open.read().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(open) => f(open),
            None => anyhow::bail!("the database {} is not open", self.dir.display()),
        }
    }

    /// Every stored event.
    pub fn load_all(&self) -> Result<Vec<Vec<u8>>> {
        self.with(|open| {
            open.events
                .iter()
                .values()
                .map(|v| v.map(|v| v.to_vec()).context("reading the events tree"))
                .collect()
        })
    }

    pub fn put_batch<'a>(
        &self,
        events: impl IntoIterator<Item = &'a (EventId, Vec<u8>)>,
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut added = 0;
        for (id, bytes) in events {
            batch.insert(&id.0[..], bytes.as_slice());
            added += bytes.len();
        }
        self.with(|open| open.events.apply_batch(batch).context("writing events"))?;
        self.event_bytes.fetch_add(added as u64, Ordering::Relaxed);
        Ok(())
    }

    pub async fn flush(&self) -> Result<()> {
        // flush_async holds no lock across the await: the Db handle is cloned.
        let db = self.with(|open| Ok(open.db.clone()))?;
        db.flush_async().await.context("flushing the database")?;
        Ok(())
    }

    /// Total bytes of stored events (what the ledger really holds).
    pub fn event_bytes(&self) -> u64 {
        self.event_bytes.load(Ordering::Relaxed)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.with(|open| Ok(open.db.size_on_disk().unwrap_or(0)))
            .unwrap_or(0)
    }
}

impl EventStore for LedgerStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>> {
        self.with(|open| Ok(open.events.get(id.0).ok().flatten().map(|v| v.to_vec())))
            .ok()
            .flatten()
    }
}
