//! Pulling blobs from peers into the local chunk store, and export jobs.
//!
//! Owns the client side of the fetch protocol above the chunk level: get a
//! blob's object from whichever connected peer has it (and a tree's file
//! manifests), work out which chunks are missing, and hand those to a
//! [`Pull`](pull::Pull), after giving every large file blob its
//! data file in the store (so that its chunks are written straight into
//! place). Runs exports with progress the API can poll: a large file kept
//! in the store is linked out of it once complete, other files are written
//! out while their chunks arrive. Counts fetched,
//! served and bad chunks (per peer) for the status endpoint. Must not
//! schedule chunk requests (`pull` does), serve requests (the driver does)
//! or touch the Swarm.

pub(crate) mod pull;

use crate::chunk_server::SpreadState;
use crate::net::{Net, NetError, BUSY_RETRY};
use crate::store::blobs::{check_out, decode_object, BlobError, BlobStore};
use crate::store::large::is_large;
use crate::transfer_stats::FetchStats;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{FetchRequest, FetchResponse, Manifest, Object};
use peerbatch_protocol::BlobId;
use pull::{Dest, Pull, Want};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Seconds a blob or chunk no connected peer has is asked again of new
/// connections before the fetch gives up.
pub(crate) const LOCATE_RETRIES: usize = 5;

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
    /// Fetched chunks also go into the chunk store (else, for a file blob,
    /// only into the file).
    pub store: bool,
    pub progress: Progress,
    pub state: Mutex<ExportState>,
}

#[derive(Clone)]
pub struct Fetcher {
    pub(crate) net: Net,
    pub(crate) blobs: BlobStore,
    /// Chunk batches being verified and written at once: one per CPU, more
    /// would only contend for the same files and cores.
    pub(crate) writers: Arc<tokio::sync::Semaphore>,
    pub stats: Arc<FetchStats>,
    /// Chunks fetched lately, which the chunk server passes on freely.
    pub spread: Arc<SpreadState>,
    exports: Arc<Mutex<BTreeMap<u64, Arc<Export>>>>,
    next_export: Arc<AtomicU64>,
}

impl Fetcher {
    pub fn new(net: Net, blobs: BlobStore) -> Fetcher {
        Fetcher {
            net,
            blobs,
            writers: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            stats: Arc::default(),
            spread: Arc::default(),
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
        let peers = &self.locate(id, peers).await?;
        let manifests = self.manifests(id, peers).await?;
        self.reserve(&manifests).await?;
        let (missing, _) = self.missing(&manifests, progress);
        self.pull(missing, peers, progress, Dest::Store).await
    }

    /// Gives every large file blob among `manifests` its data file in the
    /// store, so that the pull writes its chunks straight into place.
    async fn reserve(&self, manifests: &[(BlobId, Manifest)]) -> Result<()> {
        let large: Vec<(BlobId, Manifest)> = manifests
            .iter()
            .filter(|(_, m)| is_large(m))
            .cloned()
            .collect();
        if large.is_empty() {
            return Ok(());
        }
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            large.iter().try_for_each(|(id, m)| blobs.reserve(id, m))
        })
        .await
        .map_err(|e| FetchError::Writer(e.to_string()))??;
        Ok(())
    }

    async fn pull(
        &self,
        missing: Vec<Want>,
        peers: &[PeerId],
        progress: &Progress,
        dest: Dest,
    ) -> Result<()> {
        if missing.is_empty() {
            return Ok(());
        }
        Pull::new(self, missing, peers, progress, dest).run().await
    }

    /// The file manifests of blob `id` (its own for a file) with their
    /// ids, fetching the object and a tree's file manifests if they are
    /// not here.
    async fn manifests(&self, id: BlobId, peers: &[PeerId]) -> Result<Vec<(BlobId, Manifest)>> {
        match self.fetch_object(id, peers).await? {
            Object::File(m) => Ok(vec![(id, m)]),
            Object::Tree(tree) => {
                let files: BTreeSet<BlobId> = tree.entries.iter().map(|e| e.blob).collect();
                let missing: Vec<_> = files
                    .iter()
                    .filter(|b| !self.blobs.has_chunk(&b.0))
                    .map(|b| (b.0, 0))
                    .collect();
                self.pull(missing, peers, &Progress::default(), Dest::Store)
                    .await?;
                let mut manifests = Vec::with_capacity(files.len());
                for file in files {
                    match self.blobs.object(&file)? {
                        Some(Object::File(m)) => manifests.push((file, m)),
                        Some(Object::Tree(_)) => {
                            return Err(FetchError::NestedTree { tree: id, file })
                        }
                        None => return Err(FetchError::Vanished(file)),
                    }
                }
                Ok(manifests)
            }
        }
    }

    /// The distinct chunks of `manifests` split into those to fetch and
    /// those already here, counted into `progress`.
    fn missing(
        &self,
        manifests: &[(BlobId, Manifest)],
        progress: &Progress,
    ) -> (Vec<Want>, Vec<[u8; 32]>) {
        let mut chunks: BTreeMap<[u8; 32], u32> = BTreeMap::new();
        for (_, m) in manifests {
            for c in &m.chunks {
                chunks.insert(c.hash, c.len);
            }
        }
        let (mut missing, mut present) = (Vec::new(), Vec::new());
        for (hash, len) in chunks {
            progress.bytes_total.fetch_add(u64::from(len), Relaxed);
            if self.blobs.has_chunk(&hash) {
                progress.bytes_done.fetch_add(u64::from(len), Relaxed);
                progress.chunks_present.fetch_add(1, Relaxed);
                present.push(hash);
            } else {
                missing.push((hash, len));
            }
        }
        (missing, present)
    }

    /// Makes sure blob `id`'s object is here and returns the peers to
    /// fetch the rest from: `peers` and whoever connected since. A node
    /// that just started may not be connected to the holder yet (nodes
    /// announced in the ledger are dialled every 2 s), so a blob no peer
    /// has is asked again of new connections for a few seconds.
    async fn locate(&self, id: BlobId, peers: &[PeerId]) -> Result<Vec<PeerId>> {
        let mut known: Vec<PeerId> = peers.to_vec();
        let mut asked = if self.blobs.has_chunk(&id.0) {
            Ok(())
        } else {
            self.download_object(id, peers).await
        };
        for _ in 0..LOCATE_RETRIES {
            let fresh: Vec<PeerId> = self
                .net
                .connected_peers()
                .await
                .into_iter()
                .filter(|p| !known.contains(p))
                .collect();
            known.extend(&fresh);
            match asked {
                Err(FetchError::NoProvider { .. }) if fresh.is_empty() => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(FetchError::NoProvider { .. }) => {
                    asked = self.download_object(id, &fresh).await;
                }
                _ => break,
            }
        }
        asked.map(|()| known)
    }

    /// The object `id` names (a file manifest or a tree), asked of `peers`
    /// (and of peers that connect meanwhile) if it is not here; none of
    /// its chunks are fetched.
    pub async fn fetch_object(&self, id: BlobId, peers: &[PeerId]) -> Result<Object> {
        self.locate(id, peers).await?;
        self.blobs.object(&id)?.ok_or(FetchError::Vanished(id))
    }

    /// Asks every peer for the object `id` and stores the first copy that
    /// matches its hash (an unsafe tree is refused before it is stored). A
    /// peer the network refuses to ask now (too many requests await
    /// answers) is asked again a little later.
    async fn download_object(&self, id: BlobId, peers: &[PeerId]) -> Result<()> {
        let request = codec::encode(&FetchRequest::Chunk(id.0));
        let mut asks: FuturesUnordered<_> = peers
            .iter()
            .map(|peer| {
                let request = request.clone();
                async move {
                    loop {
                        match self.net.fetch(*peer, request.clone()).await {
                            Err(NetError::Busy(_)) => tokio::time::sleep(BUSY_RETRY).await,
                            reply => return (*peer, reply),
                        }
                    }
                }
            })
            .collect();
        while let Some((peer, reply)) = asks.next().await {
            let Ok(reply) = reply else { continue };
            match codec::decode::<FetchResponse>(&reply) {
                Ok(FetchResponse::Chunk(bytes)) => {
                    if blake3::hash(&bytes).as_bytes() != &id.0 {
                        self.count_bad(&peer, &format!("object {id} does not match its hash"));
                        continue;
                    }
                    decode_object(&id, &bytes)?;
                    self.blobs.write_chunk(&id.0, &bytes)?;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => self.count_bad(&peer, &format!("garbled reply: {e}")),
            }
        }
        Err(FetchError::NoProvider {
            id,
            peers: peers.len(),
        })
    }

    pub(crate) fn count_bad(&self, peer: &PeerId, what: &str) {
        tracing::warn!("peer {peer} sent a bad chunk: {what}");
        self.stats.bad_chunks.fetch_add(1, Relaxed);
        if let Ok(mut map) = self.stats.bad_by_peer.lock() {
            *map.entry(*peer).or_default() += 1;
        }
    }

    /// A whole file blob, fetched from `peers` if it is not all here.
    pub async fn fetch_bytes(&self, id: BlobId, peers: &[PeerId]) -> Result<Vec<u8>> {
        if let Some(bytes) = self.blobs.read_blob(&id)? {
            return Ok(bytes);
        }
        self.fetch(id, peers, &Progress::default()).await?;
        self.blobs.read_blob(&id)?.ok_or(FetchError::Vanished(id))
    }

    /// Starts fetching `blob` and writing it at `out` (keeping the fetched
    /// chunks in the store too when `store`); returns the export's number
    /// for [`Fetcher::export`].
    pub fn start_export(&self, blob: BlobId, out: PathBuf, peers: Vec<PeerId>, store: bool) -> u64 {
        let number = self.next_export.fetch_add(1, Relaxed);
        let export = Arc::new(Export {
            blob,
            out,
            store,
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
        let peers = &self.locate(export.blob, peers).await?;
        let started = std::time::Instant::now();
        let manifests = self.manifests(export.blob, peers).await?;
        let streamed = match &manifests[..] {
            [(id, m)] if *id == export.blob && !(export.store && is_large(m)) => Some(m),
            _ => None,
        };
        let bytes = match streamed {
            Some(manifest) => self.stream_file(manifest, export, peers).await?,
            None => {
                check_out(&export.out)?;
                if export.store {
                    self.reserve(&manifests).await?;
                }
                let (missing, _) = self.missing(&manifests, &export.progress);
                self.pull(missing, peers, &export.progress, Dest::Store)
                    .await?;
                let (blobs, blob, out) = (self.blobs.clone(), export.blob, export.out.clone());
                tokio::task::spawn_blocking(move || blobs.export(&blob, &out))
                    .await
                    .map_err(|e| FetchError::Writer(e.to_string()))??
            }
        };
        tracing::info!(
            "exported {} to {}: {bytes} bytes, {} chunks fetched and {} already here, in {:.2} s",
            export.blob,
            export.out.display(),
            export.progress.chunks_fetched.load(Relaxed),
            export.progress.chunks_present.load(Relaxed),
            started.elapsed().as_secs_f64(),
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

    /// Writes a file blob out while its missing chunks arrive: each is
    /// written into the file (and, if the export stores, the chunk store)
    /// as soon as it is verified, and the chunks already here are copied in
    /// meanwhile.
    async fn stream_file(
        &self,
        manifest: &Manifest,
        export: &Export,
        peers: &[PeerId],
    ) -> Result<u64> {
        check_out(&export.out)?;
        let sink = Arc::new(self.blobs.begin_export(manifest, &export.out, 0o644)?);
        let file = [(export.blob, manifest.clone())];
        let (missing, present) = self.missing(&file, &export.progress);
        let copy = {
            let (sink, blobs) = (sink.clone(), self.blobs.clone());
            tokio::task::spawn_blocking(move || {
                present
                    .iter()
                    .try_for_each(|hash| sink.copy_from(&blobs, hash))
            })
        };
        let dest = if export.store {
            Dest::StoreAndFile(sink.clone())
        } else {
            Dest::File(sink.clone())
        };
        self.pull(missing, peers, &export.progress, dest).await?;
        copy.await
            .map_err(|e| FetchError::Writer(e.to_string()))??;
        let sink = Arc::into_inner(sink)
            .ok_or_else(|| FetchError::Writer("the export is still being written".into()))?;
        Ok(sink.finish()?)
    }

    pub fn export(&self, number: u64) -> Option<Arc<Export>> {
        self.exports.lock().ok()?.get(&number).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_server::ChunkServer;
    use crate::net::silent_peer::SilentPeer;
    use crate::net::{self, NetConfig, NetEvent, Standing};
    use libp2p::identity::Keypair;
    use libp2p::Multiaddr;
    use std::time::Duration;
    use tokio::sync::mpsc::Receiver;

    async fn start_net(join: Vec<Multiaddr>) -> (Net, Receiver<NetEvent>) {
        net::start(NetConfig {
            keypair: Keypair::generate_ed25519(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            join,
            standing: Standing::Open,
            mdns: false,
        })
        .await
        .unwrap()
    }

    async fn until_connected(rx: &mut Receiver<NetEvent>, peer: PeerId) {
        while !matches!(rx.recv().await, Some(NetEvent::PeerConnected(p)) if p == peer) {}
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pb-fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A node whose every fetch slot a silent peer holds, a provider of a
    /// 3 MiB blob, and the blob's id and bytes. The silent peers answer
    /// once `release` is called.
    struct Busy {
        fetcher: Fetcher,
        provider: Net,
        source: BlobStore,
        silent: Vec<SilentPeer>,
        id: BlobId,
        bytes: Vec<u8>,
        /// The two stores' directories, removed when done.
        dirs: [PathBuf; 2],
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            for dir in &self.dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    impl Busy {
        async fn start(name: &str) -> Busy {
            let (a, mut a_rx) = start_net(vec![]).await;
            let Some(NetEvent::Listening(addr)) = a_rx.recv().await else {
                panic!("the network listens first");
            };
            let dirs = [scratch(&format!("{name}-p")), scratch(&format!("{name}-a"))];
            let source = BlobStore::open(&dirs[0]).unwrap();
            let bytes: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
            let id = source.put_bytes(&bytes).unwrap();
            let (provider, mut p_rx) = start_net(vec![addr.clone()]).await;
            until_connected(&mut a_rx, provider.local_peer_id()).await;
            let server = ChunkServer::new(source.clone(), Arc::default(), Arc::default());
            let responder = provider.clone();
            tokio::spawn(async move {
                while let Some(event) = p_rx.recv().await {
                    if let NetEvent::Fetch { from, data, reply } = event {
                        responder.respond(reply, server.answer(&from, &data)).await;
                    }
                }
            });
            let mut silent = Vec::new();
            for _ in 0..net::FETCHES_IN_ALL / net::FETCHES_PER_PEER {
                let peer = SilentPeer::start(addr.clone()).await;
                until_connected(&mut a_rx, peer.id).await;
                silent.push(peer);
            }
            tokio::spawn(async move { while a_rx.recv().await.is_some() {} });
            for peer in &mut silent {
                peer.hold_fetches(&a, net::FETCHES_PER_PEER).await;
            }
            let blobs = BlobStore::open(&dirs[1]).unwrap();
            Busy {
                fetcher: Fetcher::new(a, blobs),
                provider,
                source,
                silent,
                id,
                bytes,
                dirs,
            }
        }

        /// Fetches the blob while the slots are held, frees them a second
        /// later, and returns how the fetch ended.
        async fn fetch(&self) -> Result<()> {
            let peers = [self.provider.local_peer_id()];
            let progress = Progress::default();
            let fetch = self.fetcher.fetch(self.id, &peers, &progress);
            tokio::pin!(fetch);
            let early = tokio::time::timeout(Duration::from_secs(1), &mut fetch).await;
            assert!(early.is_err(), "the fetch waits while every slot is held");
            for peer in &self.silent {
                peer.answer_all();
            }
            tokio::time::timeout(Duration::from_secs(30), fetch)
                .await
                .expect("the fetch ends")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_fetch_waits_out_a_busy_network_and_completes() {
        let busy = Busy::start("object").await;
        busy.fetch().await.expect("the fetch completes");
        let got = busy.fetcher.blobs.read_blob(&busy.id).unwrap();
        assert!(got.as_ref() == Some(&busy.bytes), "the blob arrived whole");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pull_waits_out_a_busy_network_keeping_its_provider_and_completes() {
        let busy = Busy::start("pull").await;
        // The object is here already: the first requests are the pull's.
        let object = busy.source.read_chunk(&busy.id.0).unwrap();
        busy.fetcher.blobs.write_chunk(&busy.id.0, &object).unwrap();
        busy.fetch().await.expect("the fetch completes");
        let got = busy.fetcher.blobs.read_blob(&busy.id).unwrap();
        assert!(got.as_ref() == Some(&busy.bytes), "the blob arrived whole");
    }
}
