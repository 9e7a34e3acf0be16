//! The durable copy of the replicated ledger, in sled.
//!
//! Owns the sled database (one tree per table: `events`, and `by_job`, an
//! index of each event's id under the jobs whose tasks it states facts
//! about, so that a finished job's events are read back without a scan,
//! and `forgotten`, the tombstones of the jobs this node forgot),
//! the rule that a
//! database which is damaged is set aside and rebuilt from peers instead of
//! crashing the node (and that one which is merely unavailable — locked, not
//! permitted — is left alone), and the check at load that every stored
//! event still hashes to its key. Must not interpret events beyond the
//! jobs they name (`EventBody::task_jobs`, the protocol's): it stores
//! bytes by id.

use anyhow::{Context, Result};
use peerbatch_protocol::event::event_id;
use peerbatch_protocol::ledger::Tombstone;
use peerbatch_protocol::storage::Forgetting;
use peerbatch_protocol::{EventId, EventStore, JobId};
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
    by_job: sled::Tree,
    forgotten: sled::Tree,
}

/// Set in the default tree once `by_job` indexes every stored event (a
/// database written before the index existed is indexed when opened).
const INDEXED: &[u8] = b"by_job indexed";

/// The `by_job` entries of one event: job id, then event id.
fn index_keys(id: &EventId, bytes: &[u8]) -> Vec<[u8; 40]> {
    let Ok(event) = peerbatch_protocol::codec::decode::<peerbatch_protocol::Event>(bytes) else {
        return Vec::new();
    };
    event
        .body
        .task_jobs()
        .into_iter()
        .map(|job| {
            let mut key = [0u8; 40];
            key[..8].copy_from_slice(&job.0);
            key[8..].copy_from_slice(&id.0);
            key
        })
        .collect()
}

/// What [`LedgerStore::read_all`] found besides the events.
#[derive(Debug, Default)]
pub struct Reading {
    /// The ids (hex) of events whose bytes no longer hash to their id:
    /// removed, so that anti-entropy fetches them again from peers.
    pub damaged: Vec<String>,
    /// The error that ended the reading before the last event, if one did.
    pub failed: Option<anyhow::Error>,
}

/// Why the database did not open; in every case nothing was moved.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// In use by another process, not permitted, a disk error: the database
    /// itself may be fine, so it is left where it is.
    #[error("cannot open database {}: {source}", dir.display())]
    Unavailable { dir: PathBuf, source: sled::Error },
    #[error("database {} is damaged ({damage}) and could not be set aside: {source}", dir.display())]
    SetAside {
        dir: PathBuf,
        damage: sled::Error,
        source: std::io::Error,
    },
}

/// Whether sled's error says the files themselves are damaged or in a format
/// it cannot read (what setting aside and rebuilding from peers repairs), as
/// opposed to a lock, a permission or a disk that failed.
fn is_damage(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_) => true,
        sled::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// sled's page cache, as sled counts it. What it holds in memory is about
/// four times this (decoded nodes, their keys and values, its page table):
/// at 8 MiB it was 37 MiB of a node's heap after a million tasks (BENCHMARKS,
/// "After the burst").
const SLED_CACHE_BYTES: u64 = 2 << 20;

impl LedgerStore {
    /// Opens the database under `dir`. If it is damaged (corrupt, wrong
    /// format), it is renamed to `dir.broken-<unix secs>` and a fresh one is
    /// created: the events come back from peers by anti-entropy. Any other
    /// failure is returned with the database untouched.
    pub fn open(dir: &Path) -> Result<(LedgerStore, Option<String>), OpenError> {
        let unavailable = |source| OpenError::Unavailable {
            dir: dir.to_path_buf(),
            source,
        };
        let damage = match Self::open_at(dir) {
            Ok(open) => return Ok((Self::wrap(dir, open), None)),
            Err(e) if is_damage(&e) => e,
            Err(e) => return Err(unavailable(e)),
        };
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = dir.with_extension(format!("broken-{secs}"));
        if let Err(source) = std::fs::rename(dir, &aside) {
            return Err(OpenError::SetAside {
                dir: dir.to_path_buf(),
                damage,
                source,
            });
        }
        let open = Self::open_at(dir).map_err(unavailable)?;
        Ok((
            Self::wrap(dir, open),
            Some(format!(
                "database {} is damaged ({damage}); moved it to {} and starting empty, rebuilding from peers",
                dir.display(),
                aside.display()
            )),
        ))
    }

    fn wrap(dir: &Path, open: Open) -> LedgerStore {
        let bytes = Self::count_bytes(&open.events);
        LedgerStore {
            dir: dir.to_path_buf(),
            open: Arc::new(RwLock::new(Some(open))),
            event_bytes: Arc::new(AtomicU64::new(bytes)),
        }
    }

    fn open_at(dir: &Path) -> sled::Result<Open> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .open()?;
        let events = db.open_tree("events")?;
        let by_job = db.open_tree("by_job")?;
        let forgotten = db.open_tree("forgotten")?;
        if db.get(INDEXED)?.is_none() {
            for entry in events.iter() {
                let (key, value) = entry?;
                let Ok(id) = <[u8; 32]>::try_from(&key[..]) else {
                    continue;
                };
                for k in index_keys(&EventId(id), &value) {
                    by_job.insert(k, &[])?;
                }
            }
            db.insert(INDEXED, &[])?;
        }
        Ok(Open {
            db,
            events,
            by_job,
            forgotten,
        })
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
        let open = Self::open_at(&self.dir)
            .with_context(|| format!("cannot open database {}", self.dir.display()))?;
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

    /// Every stored event whose bytes still hash to the id it is stored
    /// under, read one at a time (a start folds them as they come, without
    /// holding them all). Those that do not hash to their id are removed
    /// from the tree, so that anti-entropy fetches them again from peers,
    /// and named in `reading`, as is an error that ends the reading early.
    ///
    /// A hash, not a signature check: every event was verified before it
    /// was stored, so what can change it afterwards is the disk or the
    /// node's own user (who also holds `node.key`); the hash catches the
    /// first at memory speed, and a signature would not stop the second.
    pub fn read_all<'a>(&'a self, reading: &'a mut Reading) -> impl Iterator<Item = Vec<u8>> + 'a {
        let events = self
            .with(|open| Ok(open.events.clone()))
            .map_err(|e| reading.failed = Some(e))
            .ok();
        let Reading { damaged, failed } = reading;
        let mut next = move |entry: sled::Result<(sled::IVec, sled::IVec)>, tree: &sled::Tree| {
            let (key, value) = entry.context("reading the events tree")?;
            if event_id(&value).0[..] == key[..] {
                return Ok(Some(value.to_vec()));
            }
            tree.remove(&key).context("removing a damaged event")?;
            self.event_bytes
                .fetch_sub(value.len() as u64, Ordering::Relaxed);
            damaged.push(peerbatch_protocol::ids::to_hex(&key));
            anyhow::Ok(None)
        };
        events
            .into_iter()
            .flat_map(|tree| tree.iter().map(move |entry| (entry, tree.clone())))
            .map_while(move |(entry, tree)| next(entry, &tree).map_err(|e| *failed = Some(e)).ok())
            .flatten()
    }

    pub fn put_batch<'a>(
        &self,
        events: impl IntoIterator<Item = &'a (EventId, Vec<u8>)>,
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        let mut index = sled::Batch::default();
        let mut added = 0;
        for (id, bytes) in events {
            batch.insert(&id.0[..], bytes.as_slice());
            for key in index_keys(id, bytes) {
                index.insert(&key[..], &[]);
            }
            added += bytes.len();
        }
        // The index first: an entry whose event is missing names nothing.
        self.with(|open| {
            open.by_job
                .apply_batch(index)
                .context("writing the job index")?;
            open.events.apply_batch(batch).context("writing events")
        })?;
        self.event_bytes.fetch_add(added as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Carries out what the core's forgetting asks: removes events (their
    /// index entries after them) and keeps or drops tombstones. Written without
    /// a flush of its own: a removal lost to a crash is found again at the
    /// next start (the core names stored events of forgotten jobs).
    pub fn forget(&self, forgetting: &Forgetting) -> Result<()> {
        self.remove(forgetting.events())?;
        let Some((job, tombstone)) = forgetting.tombstone() else {
            return Ok(());
        };
        self.with(|open| {
            match tombstone {
                Some(t) => open
                    .forgotten
                    .insert(job.0, peerbatch_protocol::codec::encode(&t)),
                None => open.forgotten.remove(job.0),
            }
            .context("writing a tombstone")?;
            Ok(())
        })
    }

    /// Removes events, each before its index entries: every stored event
    /// stays in the index (a start reads a job's task facts through it),
    /// and an entry left by a crash between the two names nothing.
    fn remove(&self, ids: &[EventId]) -> Result<()> {
        self.with(|open| {
            for id in ids {
                let Some(bytes) = open.events.remove(id.0).context("removing an event")? else {
                    continue;
                };
                self.event_bytes
                    .fetch_sub(bytes.len() as u64, Ordering::Relaxed);
                for key in index_keys(id, &bytes) {
                    open.by_job
                        .remove(&key[..])
                        .context("removing from the job index")?;
                }
            }
            Ok(())
        })
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

    fn job_events(&self, job: &JobId) -> Vec<Vec<u8>> {
        self.with(|open| {
            let mut events = Vec::new();
            for key in open.by_job.scan_prefix(job.0).keys() {
                let key = key.context("reading the job index")?;
                if let Some(bytes) = open.events.get(&key[8..]).context("reading an event")? {
                    events.push(bytes.to_vec());
                }
            }
            Ok(events)
        })
        .unwrap_or_else(|e| {
            tracing::warn!("cannot read the events of job {job}: {e:#}");
            Vec::new()
        })
    }

    fn tombstones(&self) -> Vec<(JobId, Tombstone)> {
        self.with(|open| {
            let mut out = Vec::new();
            for entry in open.forgotten.iter() {
                let (key, value) = entry.context("reading the tombstones")?;
                let (Ok(job), Ok(tombstone)) = (
                    <[u8; 8]>::try_from(&key[..]),
                    peerbatch_protocol::codec::decode::<Tombstone>(&value),
                ) else {
                    tracing::warn!("skipping a damaged tombstone");
                    continue;
                };
                out.push((JobId(job), tombstone));
            }
            Ok(out)
        })
        .unwrap_or_else(|e| {
            tracing::warn!("cannot read the tombstones: {e:#}");
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pb-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Opens `db` again after a handle was dropped. sled's flusher thread
    /// lets go of the database's file lock a moment after the last handle
    /// is dropped, so an open straight after it can find the lock still
    /// held (seen in a loaded full test run); wait for it, at most 10 s.
    fn reopen(db: &Path) -> (LedgerStore, Option<String>) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match LedgerStore::open(db) {
                Err(OpenError::Unavailable { .. }) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                opened => return opened.unwrap(),
            }
        }
    }

    fn event(bytes: &[u8]) -> (EventId, Vec<u8>) {
        (event_id(bytes), bytes.to_vec())
    }

    /// Every event `read_all` yields, and the damaged ids it named.
    fn load_all(store: &LedgerStore) -> (Vec<Vec<u8>>, Vec<String>) {
        let mut reading = Reading::default();
        let events = store.read_all(&mut reading).collect();
        assert!(reading.failed.is_none(), "{:?}", reading.failed);
        (events, reading.damaged)
    }

    /// A signed event claiming attempt 0 of task `index` of `job`.
    fn claim(job: JobId, index: u32) -> (EventId, Vec<u8>) {
        use peerbatch_protocol::event::Claim;
        let body = peerbatch_protocol::EventBody::Claims {
            claims: vec![Claim {
                task: peerbatch_protocol::TaskRef { job, index },
                attempt: 0,
            }],
        };
        let bytes = peerbatch_protocol::Identity::from_seed([3; 32])
            .sign(body)
            .encode();
        event(&bytes)
    }

    #[test]
    fn a_jobs_events_are_found_by_job_also_in_a_database_written_before_the_index() {
        let root = scratch("by-job");
        let db = root.join("db");
        let (a, b) = (JobId([1; 8]), JobId([2; 8]));
        let old = claim(a, 0);
        {
            // As a node before the index wrote it: events only.
            let raw = sled::open(&db).unwrap();
            let events = raw.open_tree("events").unwrap();
            events.insert(old.0 .0, old.1.as_slice()).unwrap();
            raw.flush().unwrap();
        }
        let (store, _) = reopen(&db);
        let (new_a, new_b) = (claim(a, 1), claim(b, 0));
        store.put_batch(&[new_a.clone(), new_b.clone()]).unwrap();
        let mut found = store.job_events(&a);
        found.sort();
        let mut want = vec![old.1, new_a.1];
        want.sort();
        assert_eq!(found, want);
        assert_eq!(store.job_events(&b), [new_b.1]);
        assert!(store.job_events(&JobId([9; 8])).is_empty());
        drop(store);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_forgotten_jobs_events_leave_the_database_and_its_tombstone_survives_a_reopen() {
        use peerbatch_protocol::ledger::JobOutcome;
        let root = scratch("forget");
        let db = root.join("db");
        let (a, b) = (JobId([1; 8]), JobId([2; 8]));
        let (gone, stays) = (claim(a, 0), claim(b, 0));
        let tombstone = Tombstone {
            until_ms: 42,
            outcome: JobOutcome::Succeeded,
        };
        {
            let (store, _) = LedgerStore::open(&db).unwrap();
            store.put_batch(&[gone.clone(), stays.clone()]).unwrap();
            let bytes = store.event_bytes();
            store
                .forget(&Forgetting::Job {
                    job: a,
                    tombstone,
                    events: vec![gone.0],
                    blobs: Vec::new(),
                })
                .unwrap();
            assert_eq!(store.event_bytes(), bytes - gone.1.len() as u64);
        }
        let (store, _) = reopen(&db);
        assert_eq!(load_all(&store).0, std::slice::from_ref(&stays.1));
        assert!(store.job_events(&a).is_empty());
        assert_eq!(store.job_events(&b), [stays.1]);
        assert_eq!(store.tombstones(), [(a, tombstone)]);
        store
            .forget(&Forgetting::DropTombstone {
                job: a,
                events: Vec::new(),
            })
            .unwrap();
        assert!(store.tombstones().is_empty());
        drop(store);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_database_in_use_by_another_handle_is_refused_and_left_in_place() {
        let root = scratch("in-use");
        let db = root.join("db");
        let (first, _) = LedgerStore::open(&db).unwrap();
        first.put_batch(&[event(b"kept")]).unwrap();
        let refused = LedgerStore::open(&db)
            .err()
            .expect("a second open is refused");
        assert!(
            matches!(refused, OpenError::Unavailable { .. }),
            "{refused}"
        );
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["db"], "nothing was set aside");
        assert_eq!(load_all(&first).0, [b"kept".to_vec()]);
        drop(first);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_damaged_database_is_set_aside_and_a_fresh_one_opened() {
        let root = scratch("damaged");
        let db = root.join("db");
        drop(LedgerStore::open(&db).unwrap());
        for entry in std::fs::read_dir(&db).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::write(&path, b"this is not a sled database").unwrap();
            }
        }
        let (store, warning) = reopen(&db);
        assert!(warning.unwrap().contains("is damaged"));
        assert!(load_all(&store).0.is_empty());
        let aside = std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("db.broken-")
            })
            .count();
        assert_eq!(aside, 1);
        drop(store);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_stored_event_changed_on_disk_is_named_removed_and_not_loaded() {
        let root = scratch("tampered");
        let db = root.join("db");
        let (store, _) = LedgerStore::open(&db).unwrap();
        let (good, bad) = (event(b"an honest event"), event(b"an event to tamper"));
        store.put_batch(&[good.clone(), bad.clone()]).unwrap();
        store
            .put_batch(&[(bad.0, b"an event tampered with".to_vec())])
            .unwrap();
        drop(store);
        let (store, _) = reopen(&db);
        let (loaded, damaged) = load_all(&store);
        assert_eq!(loaded, std::slice::from_ref(&good.1));
        assert_eq!(damaged, [bad.0.to_string()]);
        assert_eq!(
            store.get(&bad.0),
            None,
            "removed, so peers are asked for it"
        );
        assert_eq!(store.event_bytes(), good.1.len() as u64);
        drop(store);
        std::fs::remove_dir_all(root).unwrap();
    }
}
