//! Pulling blobs from peers into the local chunk store, and export jobs.
//!
//! Owns the client side of the fetch protocol: ask connected peers for a
//! blob's object (those that have it are its providers), then pull every
//! missing chunk — of a file, or of every file of a tree — from several
//! providers at once, verifying each before it is written and moving a
//! chunk to another provider on any failure. Counts fetched and bad chunks
//! (per peer) for the status endpoint, and runs exports (fetch, then write
//! the blob out) with progress the API can poll. Must not serve requests
//! (the driver does) or touch the Swarm.

use crate::net::Net;
use crate::store::blobs::{decode_object, BlobError, BlobStore};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{FetchRequest, FetchResponse, Object};
use peerbatch_protocol::ids::to_hex;
use peerbatch_protocol::BlobId;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Chunk requests in flight at once, spread over the providers.
const IN_FLIGHT: usize = 16;
/// A provider that sends this many bad chunks in one fetch is dropped from it.
const MAX_BAD_PER_FETCH: u32 = 3;
/// Finished exports kept for polling.
const KEEP_FINISHED: usize = 64;

/// Why a fetch or an export failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Store(#[from] BlobError),
    #[error("blob {id} is not on this node and none of its {peers} connected peers has it")]
    NoProvider { id: BlobId, peers: usize },
    #[error("blob {0} vanished from the store while fetching it")]
    Vanished(BlobId),
    #[error("tree {tree} names tree {file} as a file")]
    NestedTree { tree: BlobId, file: BlobId },
    #[error("cannot fetch chunk {chunk}: {why}")]
    Chunk { chunk: String, why: String },
    #[error("a chunk writer failed: {0}")]
    Writer(String),
}

type Result<T> = std::result::Result<T, FetchError>;

/// Counters over the node's lifetime.
#[derive(Default)]
pub struct FetchStats {
    pub chunks_fetched: AtomicU64,
    pub bad_chunks: AtomicU64,
    pub bad_by_peer: Mutex<BTreeMap<PeerId, u64>>,
}

/// One fetch's progress: bytes of the chunks it needs, and how many chunks
/// came from peers or were already here.
#[derive(Default)]
pub struct Progress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub chunks_fetched: AtomicU64,
    pub chunks_present: AtomicU64,
}

pub enum ExportState {
    Running,
    Done { bytes: u64 },
    Failed(String),
}

pub struct Export {
    pub blob: BlobId,
    pub out: PathBuf,
    pub progress: Progress,
    pub state: Mutex<ExportState>,
}

#[derive(Clone)]
pub struct Fetcher {
    net: Net,
    blobs: BlobStore,
    pub stats: Arc<FetchStats>,
    exports: Arc<Mutex<BTreeMap<u64, Arc<Export>>>>,
    next_export: Arc<AtomicU64>,
}

/// Why one chunk request did not deliver the chunk.
enum Failure {
    /// The peer does not have it.
    NotFound,
    /// The peer sent bytes that do not match the hash, or garbage.
    Bad(String),
    /// The request failed: the peer is gone or not answering.
    Net(String),
    /// Writing here failed; no other provider will help.
    Local(FetchError),
}

impl Fetcher {
    pub fn new(net: Net, blobs: BlobStore) -> Fetcher {
        Fetcher {
            net,
            blobs,
            stats: Arc::default(),
            exports: Arc::default(),
            next_export: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The chunk store fetches write into.
    pub fn store(&self) -> &BlobStore {
        &self.blobs
    }

    /// Makes every chunk of blob `id` (and, for a tree, of its files)
    /// present here, asking `peers` for what is missing. Peers are asked
    /// only when something is missing.
    pub async fn fetch(&self, id: BlobId, peers: &[PeerId], progress: &Progress) -> Result<()> {
        let mut providers = None;
        if !self.blobs.has_chunk(&id.0) {
            providers = Some(self.providers(id, peers).await?);
        }
        let object = self.blobs.object(&id)?.ok_or(FetchError::Vanished(id))?;
        let manifests = match object {
            Object::File(m) => vec![m],
            Object::Tree(tree) => {
                let files: BTreeSet<BlobId> = tree.entries.iter().map(|e| e.blob).collect();
                let missing: Vec<_> = files
                    .iter()
                    .filter(|b| !self.blobs.has_chunk(&b.0))
                    .map(|b| (b.0, 0))
                    .collect();
                if !missing.is_empty() {
                    let from = self.known(&mut providers, id, peers).await?;
                    self.pull(missing, &from, &Progress::default()).await?;
                }
                let mut manifests = Vec::with_capacity(files.len());
                for file in files {
                    match self.blobs.object(&file)? {
                        Some(Object::File(m)) => manifests.push(m),
                        Some(Object::Tree(_)) => {
                            return Err(FetchError::NestedTree { tree: id, file })
                        }
                        None => return Err(FetchError::Vanished(file)),
                    }
                }
                manifests
            }
        };
        let mut chunks: BTreeMap<[u8; 32], u32> = BTreeMap::new();
        for m in &manifests {
            for c in &m.chunks {
                chunks.insert(c.hash, c.len);
            }
        }
        let mut missing = Vec::new();
        for (hash, len) in chunks {
            progress.bytes_total.fetch_add(u64::from(len), Relaxed);
            if self.blobs.has_chunk(&hash) {
                progress.bytes_done.fetch_add(u64::from(len), Relaxed);
                progress.chunks_present.fetch_add(1, Relaxed);
            } else {
                missing.push((hash, len));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let from = self.known(&mut providers, id, peers).await?;
        self.pull(missing, &from, progress).await
    }

    /// The object `id` names (a file manifest or a tree), asked of `peers`
    /// if it is not here; none of its chunks are fetched.
    pub async fn fetch_object(&self, id: BlobId, peers: &[PeerId]) -> Result<Object> {
        if !self.blobs.has_chunk(&id.0) {
            self.providers(id, peers).await?;
        }
        self.blobs.object(&id)?.ok_or(FetchError::Vanished(id))
    }

    /// The providers of `id`, asked for once. A tree made here that no
    /// peer holds (a job's outputs gathered into one) has its files spread
    /// over the mesh: every peer is a candidate then.
    async fn known(
        &self,
        providers: &mut Option<Vec<PeerId>>,
        id: BlobId,
        peers: &[PeerId],
    ) -> Result<Vec<PeerId>> {
        if providers.is_none() {
            let found = self.providers(id, peers).await?;
            *providers = Some(if found.is_empty() {
                peers.to_vec()
            } else {
                found
            });
        }
        Ok(providers.clone().unwrap_or_default())
    }

    /// Asks every peer for the object `id`; those that send it are its
    /// providers. Stores the object if it was not here.
    async fn providers(&self, id: BlobId, peers: &[PeerId]) -> Result<Vec<PeerId>> {
        let request = codec::encode(&FetchRequest::Chunk(id.0));
        let asks = peers.iter().map(|peer| {
            let request = request.clone();
            async move { (*peer, self.net.fetch(*peer, request).await) }
        });
        let replies = futures::future::join_all(asks).await;
        let mut providers = Vec::new();
        for (peer, reply) in replies {
            let Ok(reply) = reply else { continue };
            match codec::decode::<FetchResponse>(&reply) {
                Ok(FetchResponse::Chunk(bytes)) => {
                    if blake3::hash(&bytes).as_bytes() != &id.0 {
                        self.count_bad(&peer, &format!("object {id} does not match its hash"));
                        continue;
                    }
                    if !self.blobs.has_chunk(&id.0) {
                        // Refuse an unsafe tree before anything of it is stored.
                        decode_object(&id, &bytes)?;
                        self.blobs.write_chunk(&id.0, &bytes)?;
                    }
                    providers.push(peer);
                }
                Ok(FetchResponse::NotFound) => {}
                Err(e) => self.count_bad(&peer, &format!("garbled reply: {e}")),
            }
        }
        if !self.blobs.has_chunk(&id.0) {
            return Err(FetchError::NoProvider {
                id,
                peers: peers.len(),
            });
        }
        Ok(providers)
    }

    fn count_bad(&self, peer: &PeerId, what: &str) {
        tracing::warn!("peer {peer} sent a bad chunk: {what}");
        self.stats.bad_chunks.fetch_add(1, Relaxed);
        if let Ok(mut map) = self.stats.bad_by_peer.lock() {
            *map.entry(*peer).or_default() += 1;
        }
    }

    /// Fetches `chunks` (hash, length) with up to [`IN_FLIGHT`] requests at
    /// once, each to the least busy provider that has not yet failed it.
    async fn pull(
        &self,
        chunks: Vec<([u8; 32], u32)>,
        providers: &[PeerId],
        progress: &Progress,
    ) -> Result<()> {
        let mut queue: VecDeque<usize> = (0..chunks.len()).collect();
        let mut tried: Vec<BTreeSet<PeerId>> = vec![BTreeSet::new(); chunks.len()];
        let mut failures: Vec<Vec<String>> = vec![Vec::new(); chunks.len()];
        let mut alive: Vec<PeerId> = providers.to_vec();
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        let mut bad: HashMap<PeerId, u32> = HashMap::new();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < IN_FLIGHT {
                let Some(i) = queue.pop_front() else { break };
                let (hash, _) = chunks[i];
                // Least busy first; ties rotate with the chunk index.
                let n = alive.len();
                let pick = alive
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !tried[i].contains(*p))
                    .min_by_key(|(k, p)| (load.get(*p).copied().unwrap_or(0), (k + i) % n))
                    .map(|(_, p)| *p);
                let Some(peer) = pick else {
                    let why = if failures[i].is_empty() {
                        "no connected peer has it".to_string()
                    } else {
                        failures[i].join("; ")
                    };
                    return Err(FetchError::Chunk {
                        chunk: to_hex(&hash),
                        why,
                    });
                };
                tried[i].insert(peer);
                *load.entry(peer).or_default() += 1;
                running.push(self.request(i, hash, peer));
            }
            let Some((i, peer, result)) = running.next().await else {
                return Ok(());
            };
            if let Some(n) = load.get_mut(&peer) {
                *n = n.saturating_sub(1);
            }
            let failure = match result {
                Ok(()) => {
                    progress
                        .bytes_done
                        .fetch_add(u64::from(chunks[i].1), Relaxed);
                    progress.chunks_fetched.fetch_add(1, Relaxed);
                    self.stats.chunks_fetched.fetch_add(1, Relaxed);
                    continue;
                }
                Err(Failure::Local(e)) => return Err(e),
                Err(Failure::NotFound) => format!("{peer}: not found"),
                Err(Failure::Bad(what)) => {
                    self.count_bad(&peer, &what);
                    let n = bad.entry(peer).or_default();
                    *n += 1;
                    if *n >= MAX_BAD_PER_FETCH {
                        alive.retain(|p| *p != peer);
                    }
                    format!("{peer}: {what}")
                }
                Err(Failure::Net(e)) => {
                    alive.retain(|p| *p != peer);
                    format!("{peer}: {e}")
                }
            };
            failures[i].push(failure);
            queue.push_back(i);
        }
    }

    async fn request(
        &self,
        i: usize,
        hash: [u8; 32],
        peer: PeerId,
    ) -> (usize, PeerId, std::result::Result<(), Failure>) {
        let request = codec::encode(&FetchRequest::Chunk(hash));
        let reply = match self.net.fetch(peer, request).await {
            Ok(reply) => reply,
            Err(e) => {
                let e = format!("{:#}", anyhow::Error::from(e));
                return (i, peer, Err(Failure::Net(e)));
            }
        };
        let bytes = match codec::decode::<FetchResponse>(&reply) {
            Ok(FetchResponse::Chunk(bytes)) => bytes,
            Ok(FetchResponse::NotFound) => return (i, peer, Err(Failure::NotFound)),
            Err(e) => return (i, peer, Err(Failure::Bad(format!("garbled reply: {e}")))),
        };
        let blobs = self.blobs.clone();
        let written = tokio::task::spawn_blocking(move || {
            if blake3::hash(&bytes).as_bytes() != &hash {
                return Err(Failure::Bad(format!(
                    "chunk {} does not match its hash ({} bytes)",
                    to_hex(&hash),
                    bytes.len()
                )));
            }
            blobs
                .write_chunk(&hash, &bytes)
                .map_err(|e| Failure::Local(e.into()))
        })
        .await;
        let result = match written {
            Ok(r) => r,
            Err(e) => Err(Failure::Local(FetchError::Writer(e.to_string()))),
        };
        (i, peer, result)
    }

    /// A whole file blob, fetched from `peers` if it is not all here.
    pub async fn fetch_bytes(&self, id: BlobId, peers: &[PeerId]) -> Result<Vec<u8>> {
        if let Some(bytes) = self.blobs.read_blob(&id)? {
            return Ok(bytes);
        }
        self.fetch(id, peers, &Progress::default()).await?;
        self.blobs.read_blob(&id)?.ok_or(FetchError::Vanished(id))
    }

    /// Starts fetching `blob` and writing it at `out`; returns the export's
    /// number for [`Fetcher::export`].
    pub fn start_export(&self, blob: BlobId, out: PathBuf, peers: Vec<PeerId>) -> u64 {
        let number = self.next_export.fetch_add(1, Relaxed);
        let export = Arc::new(Export {
            blob,
            out,
            progress: Progress::default(),
            state: Mutex::new(ExportState::Running),
        });
        if let Ok(mut exports) = self.exports.lock() {
            exports.insert(number, export.clone());
            while exports.len() > KEEP_FINISHED {
                let finished = exports.iter().find_map(|(n, e)| {
                    let running = e
                        .state
                        .lock()
                        .is_ok_and(|s| matches!(*s, ExportState::Running));
                    (!running).then_some(*n)
                });
                match finished {
                    Some(n) => exports.remove(&n),
                    None => break,
                };
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.run_export(&export, &peers).await;
            let state = match result {
                Ok(bytes) => ExportState::Done { bytes },
                Err(e) => {
                    let e = format!("{:#}", anyhow::Error::from(e));
                    tracing::warn!("export of {} failed: {e}", export.blob);
                    ExportState::Failed(e)
                }
            };
            if let Ok(mut s) = export.state.lock() {
                *s = state;
            }
        });
        number
    }

    async fn run_export(&self, export: &Export, peers: &[PeerId]) -> Result<u64> {
        let started = std::time::Instant::now();
        self.fetch(export.blob, peers, &export.progress).await?;
        let fetched = started.elapsed();
        let (blobs, blob, out) = (self.blobs.clone(), export.blob, export.out.clone());
        let bytes = tokio::task::spawn_blocking(move || blobs.export(&blob, &out))
            .await
            .map_err(|e| FetchError::Writer(e.to_string()))??;
        tracing::info!(
            "exported {} to {}: {bytes} bytes, {} chunks fetched and {} already here in {:.2} s, written in {:.2} s",
            export.blob,
            export.out.display(),
            export.progress.chunks_fetched.load(Relaxed),
            export.progress.chunks_present.load(Relaxed),
            fetched.as_secs_f64(),
            (started.elapsed() - fetched).as_secs_f64(),
        );
        Ok(bytes)
    }

    /// Blobs of exports still running, which must stay while they are written.
    pub fn exporting(&self) -> Vec<BlobId> {
        let Ok(exports) = self.exports.lock() else {
            return Vec::new();
        };
        exports
            .values()
            .filter(|e| {
                e.state
                    .lock()
                    .is_ok_and(|s| matches!(*s, ExportState::Running))
            })
            .map(|e| e.blob)
            .collect()
    }

    pub fn export(&self, number: u64) -> Option<Arc<Export>> {
        self.exports.lock().ok()?.get(&number).cloned()
    }
}
