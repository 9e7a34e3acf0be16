//! One pull: getting a set of missing chunks from the peers that hold them.
//!
//! Owns the scheduling of chunk batches over providers: which peer holds
//! which missing chunk (asked with `Have`, and asked again while chunks are
//! missing, so that peers still fetching the same blob serve what they
//! already have), which batch goes to which provider, and what a failure
//! does (a bad chunk is counted against its sender and fetched elsewhere; a
//! provider whose request fails is dropped from this pull, but one the
//! network refuses to ask now, as too many requests await answers
//! (`net::Busy`), is asked again at the next tick). Every chunk is
//! verified against its hash before it is written where the fetcher says
//! ([`Dest`]: the chunk store, a file being exported, or both). Must not
//! decide which
//! chunks are missing (the fetcher does), serve requests, or touch the
//! Swarm.

use crate::fetch::{FetchError, Fetcher, Progress};
use crate::net::NetError;
use crate::store::blobs::{check_chunk, BlobError, BlobStore, FileExport};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{
    split_batch, FetchRequest, FetchResponse, CHUNK_SIZE, MAX_BATCH,
};
use peerbatch_protocol::ids::to_hex;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Batches at once over all providers, from request until written.
const IN_FLIGHT: usize = 8;
/// Bytes of chunks one batch asks for: 8 of the largest.
const BATCH_BYTES: u64 = 8 * CHUNK_SIZE as u64;
/// Requests awaiting an answer from one provider. Answered batches wait
/// for a writer without holding the provider's slot, so the network keeps
/// moving while the disk catches up.
const PER_PROVIDER: usize = 2;
/// A provider that sends this many bad chunks in one pull is dropped from it.
const MAX_BAD_PER_PULL: u32 = 3;
/// Waiting chunks a `Have` asks about: the next ones to request (4 GiB of
/// 1 MiB chunks, a 128 KiB question), not all of a huge blob's every
/// 100 ms; the rest are asked about as they come up.
const HAVE_WINDOW: usize = 4096;
/// How often peers that lack some of the missing chunks are asked again.
const HAVE_EVERY: Duration = Duration::from_millis(100);
/// How long the first requests wait for every peer's first `Have` answer,
/// so that the work is spread over all providers from the start.
const FIRST_ANSWERS: Duration = Duration::from_millis(250);
/// How long a pull that no provider can serve keeps asking (and taking in
/// peers that connect) before it fails.
const STALL_WAIT: Duration = Duration::from_secs(crate::fetch::LOCATE_RETRIES as u64);

/// A chunk to get: its hash and length (0 when unknown: an object).
pub type Want = ([u8; 32], u32);

/// Where verified chunks go.
#[derive(Clone)]
pub enum Dest {
    /// The chunk store.
    Store,
    /// The chunk store, and a file being written out.
    StoreAndFile(Arc<FileExport>),
    /// Only a file being written out (the node keeps no copy).
    File(Arc<FileExport>),
}

impl Dest {
    /// Whether the node keeps what it fetches (and so can pass it on).
    fn keeps(&self) -> bool {
        !matches!(self, Dest::File(_))
    }
}

/// What became of one chunk of a batch.
enum Outcome {
    Written,
    NotFound,
    Bad(String),
    Local(FetchError),
}

/// Why a whole request failed.
enum Failure {
    /// Too many requests await answers: not sent; ask again later.
    Busy,
    /// The peer is gone or not answering.
    Net(String),
    /// The peer answered something that does not parse.
    Garbled(String),
}

#[derive(Default)]
struct Provider {
    /// Per chunk index: the peer said it holds it (and has not since
    /// answered otherwise).
    have: Vec<bool>,
    /// A `Have` request to it is in flight.
    asking: bool,
    /// Requests to it awaiting an answer.
    load: usize,
    bad: u32,
    dropped: bool,
}

impl Provider {
    /// A provider not yet known to hold any of `chunks` chunks.
    fn new(chunks: usize) -> Provider {
        Provider {
            have: vec![false; chunks],
            ..Provider::default()
        }
    }
}

pub struct Pull<'a> {
    fetcher: &'a Fetcher,
    progress: &'a Progress,
    chunks: Vec<Want>,
    /// Chunk indexes waiting to be requested, in the order to request them.
    queue: Vec<usize>,
    /// Per chunk: peers that sent it bad; they are not asked for it again.
    refused: Vec<BTreeSet<PeerId>>,
    failures: Vec<Vec<String>>,
    providers: BTreeMap<PeerId, Provider>,
    dest: Dest,
    /// Told the provider of each request as soon as its answer (or
    /// failure) arrives, which frees that provider's slot.
    answered: tokio::sync::mpsc::UnboundedSender<PeerId>,
    answers: tokio::sync::mpsc::UnboundedReceiver<PeerId>,
    /// The network refused a request (`Failure::Busy`): no new batches
    /// until the next tick.
    busy: bool,
}

type BatchDone = (PeerId, Vec<usize>, Result<Vec<Outcome>, Failure>);
type HaveDone = (PeerId, Vec<usize>, Result<Vec<u8>, Failure>);

impl<'a> Pull<'a> {
    pub fn new(
        fetcher: &'a Fetcher,
        chunks: Vec<Want>,
        peers: &[PeerId],
        progress: &'a Progress,
        dest: Dest,
    ) -> Pull<'a> {
        // Each fetcher takes the chunks in its own order, so that nodes
        // fetching the same blob at once soon hold different chunks to
        // serve one another.
        let mut queue: Vec<usize> = (0..chunks.len()).collect();
        queue.shuffle(&mut rand::thread_rng());
        let providers = peers
            .iter()
            .map(|p| (*p, Provider::new(chunks.len())))
            .collect();
        let (answered, answers) = tokio::sync::mpsc::unbounded_channel();
        Pull {
            fetcher,
            progress,
            refused: vec![BTreeSet::new(); chunks.len()],
            failures: vec![Vec::new(); chunks.len()],
            chunks,
            queue,
            providers,
            dest,
            answered,
            answers,
            busy: false,
        }
    }

    /// Runs until every chunk is here, or fails once a missing chunk has
    /// no provider left.
    pub async fn run(mut self) -> Result<(), FetchError> {
        let mut batches = FuturesUnordered::new();
        let mut haves = FuturesUnordered::new();
        let mut tick = tokio::time::interval(HAVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set when nothing could be requested and every provider was
        // asked again; cleared by progress. While it stays set, peers that
        // connect are taken in and everyone is asked again each second; the
        // pull fails once that has gone on for `LOCATE_RETRIES` seconds.
        let mut stalled: Option<tokio::time::Instant> = None;
        let mut unanswered = BTreeSet::new();
        for peer in self.peers_to_ask(false) {
            unanswered.insert(peer);
            haves.push(self.ask_have(peer));
        }
        let first_answers = tokio::time::Instant::now() + FIRST_ANSWERS;
        loop {
            while let Ok(peer) = self.answers.try_recv() {
                self.free_slot(peer);
            }
            let waiting = !unanswered.is_empty() && tokio::time::Instant::now() < first_answers;
            while !waiting && !self.busy && batches.len() < IN_FLIGHT {
                let Some((peer, batch)) = self.next_batch() else {
                    break;
                };
                batches.push(self.request(peer, batch));
            }
            if self.queue.is_empty() && batches.is_empty() {
                return Ok(());
            }
            if batches.is_empty() && haves.is_empty() && !self.busy {
                let since = *stalled.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= STALL_WAIT {
                    return Err(self.stuck());
                }
                if since.elapsed() > Duration::ZERO {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                self.take_in_new_peers().await;
                for peer in self.peers_to_ask(true) {
                    haves.push(self.ask_have(peer));
                }
                continue;
            }
            tokio::select! {
                Some((peer, batch, result)) = batches.next() => {
                    if self.on_batch(peer, batch, result)? {
                        stalled = None;
                    }
                }
                Some(peer) = self.answers.recv() => self.free_slot(peer),
                Some((peer, asked, result)) = haves.next() => {
                    unanswered.remove(&peer);
                    self.on_have(peer, asked, result);
                }
                _ = tokio::time::sleep_until(first_answers), if waiting => {}
                _ = tick.tick() => {
                    self.busy = false;
                    for peer in self.peers_to_ask(false) {
                        haves.push(self.ask_have(peer));
                    }
                }
            }
        }
    }

    /// A request to `peer` was answered (or failed).
    fn free_slot(&mut self, peer: PeerId) {
        if let Some(p) = self.providers.get_mut(&peer) {
            p.load = p.load.saturating_sub(1);
        }
    }

    /// Adds the peers connected now that are not providers yet: a node
    /// that just started may not be connected to the holder when the pull
    /// begins (nodes the ledger announces are dialled every 2 s).
    async fn take_in_new_peers(&mut self) {
        for peer in self.fetcher.net.connected_peers().await {
            let chunks = self.chunks.len();
            self.providers
                .entry(peer)
                .or_insert_with(|| Provider::new(chunks));
        }
    }

    /// Providers to ask `Have` now: not dropped, not being asked, and (unless
    /// `all`) not yet known to hold every waiting chunk.
    fn peers_to_ask(&mut self, all: bool) -> Vec<PeerId> {
        let mut ask = Vec::new();
        for (peer, p) in &mut self.providers {
            if p.dropped || p.asking {
                continue;
            }
            if all || self.queue.iter().take(HAVE_WINDOW).any(|&i| !p.have[i]) {
                p.asking = true;
                ask.push(*peer);
            }
        }
        ask
    }

    fn ask_have(&self, peer: PeerId) -> impl std::future::Future<Output = HaveDone> {
        let asked: Vec<usize> = self.queue.iter().copied().take(HAVE_WINDOW).collect();
        let hashes = asked.iter().map(|&i| self.chunks[i].0).collect();
        let request = codec::encode(&FetchRequest::Have(hashes));
        let net = self.fetcher.net.clone();
        async move {
            let reply = match net.fetch(peer, request).await {
                Ok(reply) => reply,
                Err(e) => return (peer, asked, Err(net_failure(e))),
            };
            let result = match codec::decode::<FetchResponse>(&reply) {
                Ok(FetchResponse::Have(bits)) if bits.len() == asked.len().div_ceil(8) => Ok(bits),
                Ok(_) => Err(Failure::Garbled("unexpected answer to Have".into())),
                Err(e) => Err(Failure::Garbled(e.to_string())),
            };
            (peer, asked, result)
        }
    }

    fn on_have(&mut self, peer: PeerId, asked: Vec<usize>, result: Result<Vec<u8>, Failure>) {
        let Some(p) = self.providers.get_mut(&peer) else {
            return;
        };
        p.asking = false;
        match result {
            Ok(bits) => {
                for (k, i) in asked.into_iter().enumerate() {
                    p.have[i] = bits[k / 8] & (1 << (k % 8)) != 0;
                }
            }
            Err(Failure::Busy) => {}
            Err(Failure::Net(e)) => {
                tracing::debug!("dropping {peer} from a pull: {e}");
                p.dropped = true;
            }
            Err(Failure::Garbled(e)) => self.bad(peer, &format!("garbled Have: {e}")),
        }
    }

    /// The least busy provider that holds a waiting chunk (ties broken at
    /// random), and waiting chunks it holds, rarest first (held by the
    /// fewest providers), so that a chunk only one peer has is asked of
    /// that peer while the others serve what they hold — nodes fetching
    /// the same blob at once then spread it among themselves instead of
    /// each taking it all from its first holder. A batch is up to
    /// [`MAX_BATCH`] chunks and [`BATCH_BYTES`] (so a tree's small files
    /// come many at a time), fewer when few chunks wait, so that they are
    /// shared among the providers. Objects of unknown length (a tree's file
    /// manifests) go in batches of their own.
    fn next_batch(&mut self) -> Option<(PeerId, Vec<usize>)> {
        let n = self.providers.len();
        let live = self.providers.values().filter(|p| !p.dropped).count();
        let size = self.queue.len().div_ceil(live.max(1)).clamp(1, MAX_BATCH);
        let start = if n == 0 {
            0
        } else {
            rand::random::<usize>() % n
        };
        let mut best: Option<(PeerId, usize)> = None;
        for (peer, p) in self.providers.iter().cycle().skip(start).take(n) {
            if p.dropped || p.load >= PER_PROVIDER || best.is_some_and(|(_, l)| l <= p.load) {
                continue;
            }
            if self
                .queue
                .iter()
                .any(|&i| p.have[i] && !self.refused[i].contains(peer))
            {
                best = Some((*peer, p.load));
            }
        }
        let (peer, _) = best?;
        let p = self.providers.get(&peer)?;
        let holders = |i: usize| {
            self.providers
                .values()
                .filter(|q| !q.dropped && q.have[i])
                .count()
        };
        // (holders, place in the queue) of every waiting chunk it can serve.
        let mut candidates: Vec<(usize, usize)> = self
            .queue
            .iter()
            .enumerate()
            .filter(|&(_, &i)| p.have[i] && !self.refused[i].contains(&peer))
            .map(|(at, &i)| (holders(i), at))
            .collect();
        candidates.sort_unstable();
        let mut picked: Vec<usize> = Vec::new();
        let (mut bytes, mut objects) = (0u64, None);
        for &(_, at) in &candidates {
            let len = u64::from(self.chunks[self.queue[at]].1);
            let object = len == 0;
            if *objects.get_or_insert(object) != object
                || (!picked.is_empty() && bytes + len > BATCH_BYTES)
            {
                continue;
            }
            bytes += len;
            picked.push(at);
            if picked.len() == size || bytes == BATCH_BYTES {
                break;
            }
        }
        picked.sort_unstable();
        let batch: Vec<usize> = picked.iter().map(|&at| self.queue[at]).collect();
        for at in picked.into_iter().rev() {
            self.queue.remove(at);
        }
        self.providers.get_mut(&peer)?.load += 1;
        Some((peer, batch))
    }

    fn request(
        &self,
        peer: PeerId,
        batch: Vec<usize>,
    ) -> impl std::future::Future<Output = BatchDone> {
        let wants: Vec<Want> = batch.iter().map(|&i| self.chunks[i]).collect();
        let hashes = wants.iter().map(|w| w.0).collect();
        let request = codec::encode(&if self.dest.keeps() {
            FetchRequest::Chunks(hashes)
        } else {
            FetchRequest::ChunksNotKept(hashes)
        });
        let (net, blobs) = (self.fetcher.net.clone(), self.fetcher.blobs.clone());
        let spread = self.fetcher.spread.clone();
        let (dest, writers) = (self.dest.clone(), self.fetcher.writers.clone());
        let answered = self.answered.clone();
        async move {
            let fetched = net.fetch(peer, request).await;
            // The loop holds the receiver for as long as it polls this.
            let _ = answered.send(peer);
            let frame = match fetched {
                Ok(frame) => frame,
                Err(e) => return (peer, batch, Err(net_failure(e))),
            };
            // Never closed, so acquiring cannot fail.
            let permit = writers.acquire_owned().await.ok();
            // Verifying and writing is CPU and disk work: off the runtime,
            // so that several batches are written at once.
            let written = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let parts = split_batch(&frame, wants.len())
                    .map_err(|e| Failure::Garbled(e.to_string()))?;
                Ok(wants
                    .iter()
                    .zip(parts)
                    .map(|(&(hash, len), part)| match part {
                        None => Outcome::NotFound,
                        Some(bytes) if len != 0 && bytes.len() != len as usize => {
                            Outcome::Bad(format!(
                                "chunk {} has {} bytes, not {len}",
                                to_hex(&hash),
                                bytes.len()
                            ))
                        }
                        Some(bytes) => {
                            let outcome = deliver(&blobs, &dest, &hash, bytes);
                            if matches!(outcome, Outcome::Written) && dest.keeps() {
                                spread.fetched(hash);
                            }
                            outcome
                        }
                    })
                    .collect())
            })
            .await;
            let result = written
                .unwrap_or_else(|e| Ok(vec![Outcome::Local(FetchError::Writer(e.to_string()))]));
            (peer, batch, result)
        }
    }

    /// Accounts for a finished batch; true if it brought a chunk.
    fn on_batch(
        &mut self,
        peer: PeerId,
        batch: Vec<usize>,
        result: Result<Vec<Outcome>, Failure>,
    ) -> Result<bool, FetchError> {
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(Failure::Busy) => {
                self.busy = true;
                self.queue.extend(batch);
                return Ok(false);
            }
            Err(Failure::Net(e)) => {
                if let Some(p) = self.providers.get_mut(&peer) {
                    p.dropped = true;
                }
                for i in batch {
                    self.failures[i].push(format!("{peer}: {e}"));
                    self.queue.push(i);
                }
                return Ok(false);
            }
            Err(Failure::Garbled(e)) => {
                self.bad(peer, &format!("garbled batch: {e}"));
                for i in batch {
                    self.failures[i].push(format!("{peer}: garbled batch"));
                    self.queue.push(i);
                }
                return Ok(false);
            }
        };
        let mut brought = false;
        for (i, outcome) in batch.into_iter().zip(outcomes) {
            let failure = match outcome {
                Outcome::Written => {
                    let len = u64::from(self.chunks[i].1);
                    self.progress.bytes_done.fetch_add(len, Relaxed);
                    self.progress.chunks_fetched.fetch_add(1, Relaxed);
                    self.fetcher.stats.chunks_fetched.fetch_add(1, Relaxed);
                    (self.fetcher.stats.chunk_bytes_fetched).fetch_add(len, Relaxed);
                    brought = true;
                    continue;
                }
                Outcome::Local(e) => return Err(e),
                Outcome::NotFound => {
                    if let Some(p) = self.providers.get_mut(&peer) {
                        p.have[i] = false;
                    }
                    format!("{peer}: not found")
                }
                Outcome::Bad(what) => {
                    self.refused[i].insert(peer);
                    self.bad(peer, &what);
                    format!("{peer}: {what}")
                }
            };
            self.failures[i].push(failure);
            self.queue.push(i);
        }
        Ok(brought)
    }

    /// Counts a bad answer against `peer`; drops it after too many.
    fn bad(&mut self, peer: PeerId, what: &str) {
        self.fetcher.count_bad(&peer, what);
        if let Some(p) = self.providers.get_mut(&peer) {
            p.bad += 1;
            if p.bad >= MAX_BAD_PER_PULL {
                p.dropped = true;
            }
        }
    }

    /// The error for a pull that cannot go on: the first waiting chunk and
    /// what every provider said about it.
    fn stuck(&self) -> FetchError {
        let Some(&i) = self.queue.first() else {
            return FetchError::Writer("pull stalled with nothing to fetch".into());
        };
        let why = if self.failures[i].is_empty() {
            "no connected peer has it".to_string()
        } else {
            self.failures[i].join("; ")
        };
        FetchError::Chunk {
            chunk: to_hex(&self.chunks[i].0),
            why,
        }
    }
}

/// Verifies a received chunk against its hash and writes it where `dest`
/// says.
fn deliver(blobs: &BlobStore, dest: &Dest, hash: &[u8; 32], bytes: &[u8]) -> Outcome {
    let written = match dest {
        Dest::Store => blobs.write_chunk(hash, bytes),
        Dest::StoreAndFile(file) => blobs
            .write_chunk(hash, bytes)
            .and_then(|()| file.write(hash, bytes)),
        Dest::File(file) => check_chunk(hash, bytes).and_then(|()| file.write(hash, bytes)),
    };
    match written {
        Ok(()) => Outcome::Written,
        Err(e @ BlobError::Mismatch { .. }) => Outcome::Bad(e.to_string()),
        Err(e) => Outcome::Local(e.into()),
    }
}

fn net_failure(e: NetError) -> Failure {
    match e {
        NetError::Busy(_) => Failure::Busy,
        e => Failure::Net(format!("{:#}", anyhow::Error::from(e))),
    }
}
