//! The live stdout and stderr of the task attempts running on this node,
//! for `logs --follow` (here or on another node, through the fetch
//! protocol's `LiveLog` request).
//!
//! Owns, per running attempt, what its captures have kept so far (the
//! bytes in memory, then the capture file they spilled to, read through a
//! descriptor of its own so that the file's removal at the attempt's end
//! loses nothing), the rest of the stored log once the attempt ended (the
//! truncation mark and the node's own lines, read from the stored blob),
//! waking readers when bytes arrive, and forgetting an attempt
//! [`KEPT_AFTER_END`] after its end. Must not capture (the sandbox's `Sink`
//! writes into a [`Tap`]), run anything, or touch the network.

use crate::store::blobs::BlobStore;
use peerbatch_protocol::content::{FetchResponse, MAX_LIVE_PIECE};
use peerbatch_protocol::{BlobId, TaskRef};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long an ended attempt's streams stay readable here, for followers
/// that were a poll behind; later ones read the stored log.
pub const KEPT_AFTER_END: Duration = Duration::from_secs(60);

/// How long a peer's `LiveLog` request waits for new bytes before it is
/// answered with none (well within the fetch protocol's 30 s timeout).
pub const POLL_WAIT: Duration = Duration::from_secs(5);

/// `LiveLog` requests from peers waited on at once; past it they are
/// answered `LiveLogNotHere` at once and the follower asks again later.
pub const MAX_POLLS: usize = 64;

/// The attempts of this node, by task and attempt; cheap to clone.
#[derive(Clone)]
pub struct LiveLogs {
    attempts: Arc<Mutex<BTreeMap<(TaskRef, u32), Streams>>>,
    blobs: BlobStore,
}

/// An attempt's stdout and stderr.
type Streams = [Arc<Stream>; 2];

/// One stream of one attempt, written by its capture.
pub struct Stream {
    state: Mutex<State>,
    /// Bumped at each change; readers wait on it.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The kept bytes while the capture holds them in memory.
    head: Vec<u8>,
    /// Once spilled, the capture file, which holds every kept byte.
    file: Option<Arc<File>>,
    kept: u64,
    end: Option<End>,
}

/// What is known of a stream once its attempt ended.
struct End {
    /// The stored log, whose first `kept` bytes are the ones kept above.
    blob: Option<BlobId>,
    /// The stored log past `kept`, once read.
    tail: Option<Arc<Vec<u8>>>,
}

/// Where a capture reports what it keeps.
#[derive(Clone)]
pub struct Tap(Arc<Stream>);

/// What a read at an offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes from the offset on; `ended` when they are the stream's last.
    Bytes { bytes: Vec<u8>, ended: bool },
    /// Nothing past the offset yet.
    Nothing,
    /// No such attempt runs here.
    NotHere,
}

impl LiveLogs {
    pub fn new(blobs: BlobStore) -> LiveLogs {
        LiveLogs {
            attempts: Arc::default(),
            blobs,
        }
    }

    /// Registers an attempt starting here; its captures write into the
    /// returned taps (stdout, stderr).
    pub fn open(&self, task: TaskRef, attempt: u32) -> [Tap; 2] {
        let streams = [Arc::new(Stream::new()), Arc::new(Stream::new())];
        let taps = [Tap(streams[0].clone()), Tap(streams[1].clone())];
        lock(&self.attempts).insert((task, attempt), streams);
        taps
    }

    /// Marks an attempt ended with its stored logs (stdout, stderr), and
    /// forgets it [`KEPT_AFTER_END`] later.
    pub fn ended(&self, task: TaskRef, attempt: u32, logs: [Option<BlobId>; 2]) {
        let Some(streams) = lock(&self.attempts).get(&(task, attempt)).cloned() else {
            return;
        };
        for (stream, blob) in streams.iter().zip(logs) {
            lock(&stream.state).end = Some(End { blob, tail: None });
            stream.changed.send_modify(|n| *n += 1);
        }
        let attempts = self.attempts.clone();
        tokio::spawn(async move {
            tokio::time::sleep(KEPT_AFTER_END).await;
            lock(&attempts).remove(&(task, attempt));
        });
    }

    /// The bytes of a stream from `offset` on, waiting up to `wait` for
    /// some when there are none yet.
    pub async fn read(
        &self,
        task: TaskRef,
        attempt: u32,
        stderr: bool,
        offset: u64,
        wait: Duration,
    ) -> Piece {
        let stream = lock(&self.attempts)
            .get(&(task, attempt))
            .map(|s| s[usize::from(stderr)].clone());
        let Some(stream) = stream else {
            return Piece::NotHere;
        };
        let mut changes = stream.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (stream2, blobs) = (stream.clone(), self.blobs.clone());
            let piece = tokio::task::spawn_blocking(move || stream2.read_at(offset, &blobs))
                .await
                .unwrap_or(Piece::NotHere);
            if piece != Piece::Nothing {
                return piece;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Piece::Nothing,
            }
        }
    }
}

impl LiveLogs {
    /// The answer to a peer's `LiveLog` request.
    pub async fn answer(
        &self,
        task: TaskRef,
        attempt: u32,
        stderr: bool,
        offset: u64,
    ) -> FetchResponse {
        match self.read(task, attempt, stderr, offset, POLL_WAIT).await {
            Piece::Bytes { bytes, ended } => FetchResponse::LiveLog { bytes, ended },
            Piece::Nothing => FetchResponse::LiveLog {
                bytes: Vec::new(),
                ended: false,
            },
            Piece::NotHere => FetchResponse::LiveLogNotHere,
        }
    }
}

impl Stream {
    fn new() -> Stream {
        Stream {
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }

    /// What is past `offset` now (reads files: off the async runtime).
    fn read_at(&self, offset: u64, blobs: &BlobStore) -> Piece {
        let mut state = lock(&self.state);
        if offset < state.kept {
            let len = (state.kept - offset).min(MAX_LIVE_PIECE as u64) as usize;
            let bytes = match &state.file {
                Some(file) => {
                    let mut bytes = vec![0; len];
                    match file.read_exact_at(&mut bytes, offset) {
                        Ok(()) => bytes,
                        Err(e) => {
                            tracing::warn!("cannot read a live capture: {e}");
                            return Piece::NotHere;
                        }
                    }
                }
                None => (state.head.get(offset as usize..))
                    .map_or_else(Vec::new, |h| h[..len.min(h.len())].to_vec()),
            };
            return Piece::Bytes {
                bytes,
                ended: false,
            };
        }
        let kept = state.kept;
        let Some(end) = state.end.as_mut() else {
            return Piece::Nothing;
        };
        let tail = end
            .tail
            .get_or_insert_with(|| Arc::new(stored_tail(blobs, end.blob, kept)));
        let from = (offset - kept).min(tail.len() as u64) as usize;
        let bytes = tail[from..][..(tail.len() - from).min(MAX_LIVE_PIECE)].to_vec();
        let ended = from + bytes.len() == tail.len();
        Piece::Bytes { bytes, ended }
    }
}

/// The stored log past its first `kept` bytes (the capture's truncation
/// mark and the node's own lines).
fn stored_tail(blobs: &BlobStore, blob: Option<BlobId>, kept: u64) -> Vec<u8> {
    let Some(blob) = blob else {
        return Vec::new();
    };
    match blobs.read_blob(&blob) {
        Ok(Some(bytes)) => bytes.get(kept as usize..).unwrap_or_default().to_vec(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read the stored log {blob}: {e:#}");
            Vec::new()
        }
    }
}

impl Tap {
    /// The capture kept `bytes` more, in memory (`file` none) or in `file`,
    /// which then holds every kept byte.
    pub fn kept(&self, bytes: &[u8], file: Option<&File>) {
        let mut state = lock(&self.0.state);
        match file {
            None => state.head.extend_from_slice(bytes),
            Some(file) if state.file.is_none() => match file.try_clone() {
                Ok(own) => {
                    state.file = Some(Arc::new(own));
                    state.head = Vec::new();
                }
                Err(e) => tracing::warn!("cannot follow a capture file: {e}"),
            },
            Some(_) => {}
        }
        state.kept += bytes.len() as u64;
        drop(state);
        self.0.changed.send_modify(|n| *n += 1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn bytes(piece: Piece) -> Vec<u8> {
        match piece {
            Piece::Bytes { bytes, .. } => bytes,
            other => panic!("no bytes: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reader_gets_memory_then_spilled_bytes_then_the_stored_tail_and_the_end() {
        let dir = tempfile_dir("live-logs");
        let blobs = BlobStore::open(&dir.join("chunks")).unwrap();
        let live = LiveLogs::new(blobs.clone());
        let task = TaskRef {
            job: peerbatch_protocol::JobId([7; 8]),
            index: 0,
        };
        let [out, _err] = live.open(task, 1);
        let wait = Duration::from_millis(10);
        assert_eq!(live.read(task, 1, false, 0, wait).await, Piece::Nothing);
        assert_eq!(live.read(task, 2, false, 0, wait).await, Piece::NotHere);
        out.kept(b"one\n", None);
        assert_eq!(bytes(live.read(task, 1, false, 0, wait).await), b"one\n");
        // The capture spills: its file holds every kept byte.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("spill"))
            .unwrap();
        file.write_all(b"one\ntwo\n").unwrap();
        out.kept(b"two\n", Some(&file));
        std::fs::remove_file(dir.join("spill")).unwrap();
        assert_eq!(bytes(live.read(task, 1, false, 4, wait).await), b"two\n");
        let stored = blobs.put_bytes(b"one\ntwo\n[truncated]\n").unwrap();
        live.ended(task, 1, [Some(stored), None]);
        assert_eq!(
            live.read(task, 1, false, 8, wait).await,
            Piece::Bytes {
                bytes: b"[truncated]\n".to_vec(),
                ended: true
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pb-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
