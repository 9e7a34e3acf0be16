//! The durable copy of the replicated ledger, in sled.
//!
//! Owns the sled database (one tree per table: `events`) and the rule that a
//! database which fails to open is set aside and rebuilt from peers instead of
//! crashing the node. Must not interpret events: it stores bytes by id.

use anyhow::{Context, Result};
use peerbatch_protocol::{EventId, EventStore};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct LedgerStore {
    db: sled::Db,
    events: sled::Tree,
    /// Bytes of stored events, kept as they are written (the core persists
    /// each event once), so reporting it never scans the tree.
    event_bytes: Arc<AtomicU64>,
}

impl LedgerStore {
    /// Opens the database under `dir`. If it cannot be opened (corrupt,
    /// wrong format), it is renamed to `dir.broken-<unix secs>` and a fresh one
    /// is created: the events come back from peers by anti-entropy.
    pub fn open(dir: &Path) -> Result<(LedgerStore, Option<String>)> {
        match Self::open_at(dir) {
            Ok(store) => Ok((store, None)),
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
                let store = Self::open_at(dir)?;
                Ok((
                    store,
                    Some(format!(
                        "database {} failed to open ({first:#}); moved it to {} and starting empty, rebuilding from peers",
                        dir.display(),
                        aside.display()
                    )),
                ))
            }
        }
    }

    fn open_at(dir: &Path) -> Result<LedgerStore> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 << 20)
            .open()
            .with_context(|| format!("cannot open database {}", dir.display()))?;
        let events = db
            .open_tree("events")
            .context("cannot open the events tree")?;
        let event_bytes = events
            .iter()
            .values()
            .filter_map(|v| v.ok())
            .map(|v| v.len() as u64)
            .sum();
        Ok(LedgerStore {
            db,
            events,
            event_bytes: Arc::new(AtomicU64::new(event_bytes)),
        })
    }

    /// Every stored event.
    pub fn load_all(&self) -> Result<Vec<Vec<u8>>> {
        self.events
            .iter()
            .values()
            .map(|v| v.map(|v| v.to_vec()).context("reading the events tree"))
            .collect()
    }

    pub fn put_batch(&self, events: &[(EventId, Vec<u8>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (id, bytes) in events {
            batch.insert(&id.0[..], bytes.as_slice());
        }
        self.events.apply_batch(batch).context("writing events")?;
        let added: usize = events.iter().map(|(_, b)| b.len()).sum();
        self.event_bytes.fetch_add(added as u64, Ordering::Relaxed);
        Ok(())
    }

    pub async fn flush(&self) -> Result<()> {
        self.db
            .flush_async()
            .await
            .context("flushing the database")?;
        Ok(())
    }

    /// Total bytes of stored events (what the ledger really holds).
    pub fn event_bytes(&self) -> u64 {
        self.event_bytes.load(Ordering::Relaxed)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl EventStore for LedgerStore {
    fn get(&self, id: &EventId) -> Option<Vec<u8>> {
        self.events.get(id.0).ok().flatten().map(|v| v.to_vec())
    }
}
