//! Bounding the chunk store: what a node must keep, and reclaiming the rest
//! least recently used first once the store is above `--store-limit`.
//!
//! Owns the pin rules — blobs stored on this node by `put` or `package add`
//! (listed in `DATA/kept`), inputs and packages of jobs not yet finished,
//! outputs and logs of jobs within their retention — the reclaim pass
//! over chunk files, the input cache and unpacked packages, and removing
//! the logs and outputs of forgotten jobs that nothing pins. Must not
//! fetch anything or decide job state; the driver hands it the ledger's
//! view.

use crate::store::blobs::BlobStore;
use peerbatch_protocol::content::Object;
use peerbatch_protocol::{BlobId, Core, EventStore, Source};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Blobs this node stored for a user: kept whatever the limit, because this
/// may be their only copy. Persisted one id per line.
#[derive(Clone)]
pub struct Kept {
    path: PathBuf,
    ids: Arc<Mutex<BTreeSet<BlobId>>>,
}

impl Kept {
    /// Reads `path`; lines that are not blob ids are skipped with a warning.
    pub fn open(path: PathBuf) -> Kept {
        let mut ids = BTreeSet::new();
        if let Ok(text) = fs::read_to_string(&path) {
            for (n, line) in text.lines().enumerate() {
                match BlobId::parse(line.trim()) {
                    Some(id) => {
                        ids.insert(id);
                    }
                    None if line.trim().is_empty() => {}
                    None => tracing::warn!("{}:{}: not a blob id, ignored", path.display(), n + 1),
                }
            }
        }
        Kept {
            path,
            ids: Arc::new(Mutex::new(ids)),
        }
    }

    /// Adds a blob (appending it to the file, synced) unless already kept.
    pub fn add(&self, id: BlobId) -> std::io::Result<()> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.contains(&id) {
            return Ok(());
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{id}")?;
        file.sync_data()?;
        ids.insert(id);
        Ok(())
    }

    pub fn ids(&self) -> Vec<BlobId> {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter().copied().collect()
    }
}

/// Runs reclaim passes in the background when the store has grown, one at
/// a time, and keeps the last pass's report for the status endpoint.
#[derive(Clone)]
pub struct Reclaimer {
    pub kept: Kept,
    limit: Option<u64>,
    /// Where the stager keeps materialized blobs: cached input files
    /// (`FILEBLOB-MODE`) and unpacked packages (`BLOB`).
    input_cache: PathBuf,
    packages: PathBuf,
    busy: Arc<AtomicBool>,
    /// Store writes counted at the last pass; `u64::MAX` before the first.
    seen_writes: Arc<AtomicU64>,
    pub history: Arc<Mutex<ReclaimHistory>>,
}

/// Reclaim passes over the node's lifetime, for the status endpoint.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReclaimHistory {
    pub passes: u64,
    pub freed_bytes: u64,
    pub freed_chunks: u64,
    pub last: Option<Reclaimed>,
}

impl Reclaimer {
    pub fn new(
        kept: Kept,
        limit: Option<u64>,
        input_cache: PathBuf,
        packages: PathBuf,
    ) -> Reclaimer {
        Reclaimer {
            kept,
            limit,
            input_cache,
            packages,
            busy: Arc::default(),
            seen_writes: Arc::new(AtomicU64::new(u64::MAX)),
            history: Arc::default(),
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Whether a pass would start now (see [`Reclaimer::maybe_start`]):
    /// only then are the pins worth reading, as they read every finished
    /// job within its retention back from the store.
    pub fn due(&self, blobs: &BlobStore) -> bool {
        self.limit.is_some()
            && self.seen_writes.load(Ordering::Relaxed) != blobs.writes()
            && !self.busy.load(Ordering::Acquire)
    }

    /// Starts a pass if there is a limit, the store was written since the
    /// last one and none is running. `pins` come from [`ledger_pins`] plus
    /// running exports, read at `pinned_at` (taken before the ledger was
    /// read); kept blobs are added here.
    pub fn maybe_start(
        &self,
        blobs: &BlobStore,
        mut pins: BTreeSet<BlobId>,
        pinned_at: SystemTime,
    ) {
        let Some(limit) = self.limit else { return };
        let writes = blobs.writes();
        if self.seen_writes.load(Ordering::Relaxed) == writes
            || self.busy.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.seen_writes.store(writes, Ordering::Relaxed);
        pins.extend(self.kept.ids());
        let (this, blobs) = (self.clone(), blobs.clone());
        tokio::task::spawn_blocking(move || {
            let staged = Staged {
                input_cache: &this.input_cache,
                packages: &this.packages,
                pinned_at,
            };
            match reclaim(&blobs, &pins, limit, &staged) {
                Ok(report) => {
                    if report.freed_chunks > 0 {
                        tracing::info!(
                            "reclaimed {} chunks ({} bytes) of {} bytes stored; {} bytes pinned",
                            report.freed_chunks,
                            report.freed_bytes,
                            report.store_bytes,
                            report.pinned_bytes
                        );
                    }
                    let mut h = this.history.lock().unwrap_or_else(|p| p.into_inner());
                    h.passes += 1;
                    h.freed_bytes += report.freed_bytes;
                    h.freed_chunks += report.freed_chunks;
                    h.last = Some(report);
                }
                Err(e) => tracing::warn!("reclaiming the chunk store failed: {e}"),
            }
            this.busy.store(false, Ordering::Release);
        });
    }
}

impl Reclaimer {
    /// Removes, on a blocking thread, the chunks of `gone` (the logs and
    /// outputs of forgotten jobs) that no blob of `pins` (read from the
    /// ledger and running exports) nor any kept blob needs, whatever the
    /// store's limit.
    pub fn drop_forgotten(
        &self,
        blobs: &BlobStore,
        gone: BTreeSet<BlobId>,
        mut pins: BTreeSet<BlobId>,
    ) {
        pins.extend(self.kept.ids());
        let (this, blobs) = (self.clone(), blobs.clone());
        tokio::task::spawn_blocking(move || match drop_unneeded(&blobs, &gone, &pins) {
            Ok((chunks, bytes)) => {
                tracing::debug!("removed {chunks} chunks ({bytes} bytes) of forgotten jobs");
                let mut h = this.history.lock().unwrap_or_else(|p| p.into_inner());
                h.freed_bytes += bytes;
                h.freed_chunks += chunks;
            }
            Err(e) => tracing::warn!("removing forgotten jobs' logs and outputs failed: {e}"),
        });
    }
}

/// Removes the chunks (and large data files) of `gone` that `pins` do not
/// need; returns how many and their bytes.
fn drop_unneeded(
    blobs: &BlobStore,
    gone: &BTreeSet<BlobId>,
    pins: &BTreeSet<BlobId>,
) -> std::io::Result<(u64, u64)> {
    let (doomed, _) = needed_chunks(blobs, gone);
    let (needed, _) = needed_chunks(blobs, pins);
    let chunks = blobs
        .list_chunks()
        .map_err(|e| std::io::Error::other(format!("{:#}", anyhow::Error::from(e))))?;
    let (mut count, mut bytes) = (0, 0);
    for c in chunks {
        if doomed.contains(&c.hash) && !needed.contains(&c.hash) && blobs.remove(&c) {
            count += 1;
            bytes += c.bytes;
        }
    }
    Ok((count, bytes))
}

/// Blobs the ledger pins at wall-clock time `now_ms`: inputs and packages
/// of jobs with tasks left to run, and the outputs and logs of jobs whose
/// retention has not ended.
pub fn ledger_pins<S: EventStore>(core: &Core<S>, now_ms: u64) -> BTreeSet<BlobId> {
    let mut pins = BTreeSet::new();
    for job in core.ledger().jobs() {
        let unfinished = core.progress(&job.id).done() < job.task_count;
        if unfinished {
            for group in &job.spec.groups {
                let spec = group.spec();
                for input in &spec.inputs {
                    if let Source::Blob(id) = input.source {
                        pins.insert(id);
                    }
                }
                pins.extend(spec.packages.iter().map(|p| p.blob));
            }
        }
        if now_ms < job.submitted_ms.saturating_add(job.spec.retention_ms) {
            for view in core.views(job.id) {
                if let Some(r) = &view.result {
                    pins.extend([r.stdout, r.stderr, r.outputs].into_iter().flatten());
                }
            }
        }
    }
    pins
}

/// What one reclaim pass found and did.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Reclaimed {
    pub store_bytes: u64,
    pub pinned_bytes: u64,
    pub freed_bytes: u64,
    pub freed_chunks: u64,
    pub cache_files_removed: u64,
    pub packages_removed: u64,
}

/// What the stager materialized outside the chunk store, and when the pins
/// a pass works from were read. An entry the stager used since then (it
/// marks each use in the entry's modification time) belongs to a job the
/// pins may not show yet, so it stays.
pub struct Staged<'a> {
    pub input_cache: &'a Path,
    pub packages: &'a Path,
    pub pinned_at: SystemTime,
}

/// If the chunk store holds more than `limit` bytes, deletes chunks that no
/// pinned blob needs, least recently used first, until it fits, and drops
/// cached input files and unpacked packages of blobs no longer pinned.
pub fn reclaim(
    blobs: &BlobStore,
    pins: &BTreeSet<BlobId>,
    limit: u64,
    staged: &Staged,
) -> std::io::Result<Reclaimed> {
    let mut chunks = blobs
        .list_chunks()
        .map_err(|e| std::io::Error::other(format!("{:#}", anyhow::Error::from(e))))?;
    let mut report = Reclaimed {
        store_bytes: chunks.iter().map(|c| c.bytes).sum(),
        ..Reclaimed::default()
    };
    if report.store_bytes <= limit {
        return Ok(report);
    }
    let (needed, files) = needed_chunks(blobs, pins);
    chunks.retain(|c| {
        let pinned = needed.contains(&c.hash);
        if pinned {
            report.pinned_bytes += c.bytes;
        }
        !pinned
    });
    chunks.sort_by_key(|c| c.used);
    let mut size = report.store_bytes;
    for c in chunks {
        if size <= limit {
            break;
        }
        if blobs.remove(&c) {
            size -= c.bytes;
            report.freed_bytes += c.bytes;
            report.freed_chunks += 1;
        }
    }
    report.cache_files_removed = drop_unpinned(staged.input_cache, &files, staged.pinned_at);
    report.packages_removed = drop_unpinned(
        staged.packages,
        &pins.iter().copied().collect(),
        staged.pinned_at,
    );
    if size > limit {
        tracing::warn!(
            "the chunk store holds {size} bytes, above --store-limit {limit}: {} bytes are pinned",
            report.pinned_bytes
        );
    }
    Ok(report)
}

/// Every chunk hash the pinned blobs consist of (objects included, for the
/// parts that are here), and the ids of their files.
fn needed_chunks(
    blobs: &BlobStore,
    pins: &BTreeSet<BlobId>,
) -> (HashSet<[u8; 32]>, HashSet<BlobId>) {
    let mut needed = HashSet::new();
    let mut files = HashSet::new();
    let mut add_file = |id: BlobId, needed: &mut HashSet<[u8; 32]>| {
        needed.insert(id.0);
        files.insert(id);
        if let Ok(Some(Object::File(m))) = blobs.object(&id) {
            needed.extend(m.chunks.iter().map(|c| c.hash));
        }
    };
    for id in pins {
        match blobs.object(id) {
            Ok(Some(Object::Tree(tree))) => {
                needed.insert(id.0);
                for e in tree.entries {
                    add_file(e.blob, &mut needed);
                }
            }
            Ok(Some(Object::File(_))) => add_file(*id, &mut needed),
            // Not here (nothing to keep) or unreadable (nothing to save).
            Ok(None) | Err(_) => {}
        }
    }
    (needed, files)
}

/// Removes the entries of `dir` named after a blob (`BLOB` or `BLOB-…`)
/// that is not in `keep` and that were last used before `pinned_at`:
/// cached input files and unpacked package directories. Working
/// directories that hard-linked a cached file keep their own link.
fn drop_unpinned(dir: &Path, keep: &HashSet<BlobId>, pinned_at: SystemTime) -> u64 {
    let Ok(items) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for item in items.flatten() {
        let name = item.file_name();
        let Some(id) = name
            .to_str()
            .map(|n| n.split_once('-').map_or(n, |(id, _)| id))
            .and_then(BlobId::parse)
        else {
            continue;
        };
        let Ok(meta) = item.metadata() else { continue };
        let used_since = meta.modified().map_or(true, |m| m >= pinned_at);
        if keep.contains(&id) || used_since {
            continue;
        }
        let gone = if meta.is_dir() {
            fs::remove_dir_all(item.path())
        } else {
            fs::remove_file(item.path())
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// `10GiB`, `500MB`, `2g`, `123456` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 500MB or 10GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)"
            ))
        }
    };
    Ok((n * factor as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn staged_blobs_go_once_unpinned_unless_used_since_the_pins_were_read() {
        let dir = std::env::temp_dir().join(format!("pb-staged-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ids: Vec<BlobId> = (1..=3u8).map(|b| BlobId([b; 32])).collect();
        for id in &ids {
            fs::create_dir_all(dir.join(id.to_string()).join("bin")).unwrap();
        }
        fs::write(dir.join(format!("{}-444", ids[0])), b"cached input").unwrap();
        fs::write(dir.join("notes.txt"), b"not a blob").unwrap();
        let pinned_at = SystemTime::now();
        // Used by a job the pins do not show yet.
        let later = pinned_at + std::time::Duration::from_secs(1);
        fs::File::open(dir.join(ids[2].to_string()))
            .unwrap()
            .set_modified(later)
            .unwrap();
        let before = pinned_at - std::time::Duration::from_secs(60);
        for name in [
            ids[0].to_string(),
            ids[1].to_string(),
            format!("{}-444", ids[0]),
        ] {
            fs::File::open(dir.join(name))
                .unwrap()
                .set_modified(before)
                .unwrap();
        }
        let keep: HashSet<BlobId> = [ids[1]].into();
        assert_eq!(drop_unpinned(&dir, &keep, pinned_at), 2);
        assert!(!dir.join(ids[0].to_string()).exists(), "unpinned package");
        assert!(
            !dir.join(format!("{}-444", ids[0])).exists(),
            "unpinned input"
        );
        assert!(dir.join(ids[1].to_string()).exists(), "pinned");
        assert!(dir.join(ids[2].to_string()).exists(), "used since");
        assert!(dir.join("notes.txt").exists(), "not ours");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unpinned_large_blob_is_reclaimed_whole_and_a_pinned_one_stays() {
        let dir = std::env::temp_dir().join(format!("pb-reclaim-large-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = BlobStore::open(&dir.join("chunks")).unwrap();
        let size = 17u32 << 20;
        let data = |seed: u8| -> Vec<u8> {
            (0..size)
                .map(|i| (i as u8) ^ ((i >> 20) as u8).wrapping_mul(7) ^ seed.wrapping_mul(64))
                .collect()
        };
        let mut ids = Vec::new();
        for seed in 1..=2u8 {
            let path = dir.join(format!("f{seed}"));
            fs::write(&path, data(seed)).unwrap();
            ids.push(store.put_path(&path).unwrap().0);
        }
        let staged = Staged {
            input_cache: &dir.join("inputs"),
            packages: &dir.join("packages"),
            pinned_at: SystemTime::now(),
        };
        let pins: BTreeSet<BlobId> = [ids[1]].into();
        let report = reclaim(&store, &pins, 20 << 20, &staged).unwrap();
        assert!(report.freed_bytes >= u64::from(size), "{report:?}");
        assert_eq!(
            store.read_blob(&ids[1]).unwrap().unwrap(),
            data(2),
            "pinned"
        );
        assert!(store.read_blob(&ids[0]).unwrap().is_none(), "reclaimed");
        let large = fs::read_dir(dir.join("chunks/large")).unwrap().count();
        assert_eq!(large, 2, "the pinned blob's data and have files only");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn least_recently_used_unpinned_chunks_go_first_and_pins_stay() {
        let dir = std::env::temp_dir().join(format!("pb-reclaim-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = BlobStore::open(&dir.join("chunks")).unwrap();
        // Every 1 MiB chunk of every file distinct.
        let data = |seed: u8| -> Vec<u8> {
            (0..(3u32 << 20))
                .map(|i| (i as u8) ^ ((i >> 20) as u8).wrapping_mul(7) ^ seed.wrapping_mul(64))
                .collect()
        };
        let mut ids = Vec::new();
        for seed in 1..=3u8 {
            let path = dir.join(format!("f{seed}"));
            fs::write(&path, data(seed)).unwrap();
            ids.push(store.put_path(&path).unwrap().0);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Reading the oldest makes it the most recently used.
        store.read_blob(&ids[0]).unwrap().unwrap();
        let pins: BTreeSet<BlobId> = [ids[2]].into();
        let staged = Staged {
            input_cache: &dir.join("inputs"),
            packages: &dir.join("packages"),
            pinned_at: SystemTime::now(),
        };
        let report = reclaim(&store, &pins, 7 << 20, &staged).unwrap();
        assert!(report.store_bytes > 9 << 20);
        assert!(report.freed_bytes >= 2 << 20, "{report:?}");
        assert_eq!(
            store.read_blob(&ids[2]).unwrap().unwrap(),
            data(3),
            "pinned"
        );
        assert_eq!(
            store.read_blob(&ids[0]).unwrap().unwrap(),
            data(1),
            "recently used"
        );
        assert!(
            store.read_blob(&ids[1]).unwrap().is_none(),
            "least recently used goes first"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
