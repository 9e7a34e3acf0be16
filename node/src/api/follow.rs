//! `GET /v1/jobs/{job}/tasks/{task}/log?follow=true`: a task's stdout or
//! stderr as it is written, from its first byte, wherever the task runs;
//! the body ends when the followed attempt ends (with the whole stored log
//! sent).
//!
//! Owns following: where the task runs now (the ledger's view, through the
//! driver), asking that node for the bytes past what was sent (this node's
//! `live_logs`, or another node's through the fetch protocol's `LiveLog`
//! request), and the bounds: [`MAX_FOLLOWERS`] bodies at once on one node,
//! a poll at most every [`POLL_GAP`] per follower, and a body ended after
//! [`MAX_IDLE`] without a byte. The portal and the CLI share it. Must not
//! read captures itself (`live_logs` does).

use crate::api::{ApiError, ApiResult, ApiState};
use crate::driver::command::{Mesh, Tasks};
use crate::identity::peer_of;
use crate::live_logs::{LiveLogs, Piece, POLL_WAIT};
use crate::net::Net;
use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use libp2p::PeerId;
use peerbatch_protocol::codec;
use peerbatch_protocol::content::{FetchRequest, FetchResponse};
use peerbatch_protocol::{BlobId, TaskRef, TaskState, TaskView};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Live logs one node's API streams at once; more are refused (429).
/// Each may hold one of the fetch slots to its runner (`net::FETCHES_PER_PEER`,
/// 32), so followers of tasks on one peer leave chunk fetches room.
pub const MAX_FOLLOWERS: usize = 16;
/// Shortest time between two polls of one follower: a task writing a byte
/// a millisecond costs at most this many requests a second, not a thousand.
pub const POLL_GAP: Duration = Duration::from_millis(20);
/// A followed log with no new byte for this long ends its body (follow
/// again to go on).
pub const MAX_IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a follower waits before asking again about a task that has
/// not started (or whose runner does not know the attempt yet).
const WAIT_STEP: Duration = Duration::from_millis(100);

/// The followers this node's API serves now.
#[derive(Clone)]
pub struct FollowState {
    slots: Arc<Semaphore>,
}

impl Default for FollowState {
    fn default() -> FollowState {
        FollowState {
            slots: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
        }
    }
}

impl FollowState {
    /// Live logs being streamed now.
    pub fn active(&self) -> usize {
        MAX_FOLLOWERS - self.slots.available_permits()
    }
}

/// Where the followed task stands, as this node's ledger says.
enum Where {
    /// Not running yet.
    Waiting { attempt: u32 },
    /// Running here (`on` none) or on a peer.
    Running { attempt: u32, on: Option<PeerId> },
    /// Ended, with its stored log.
    Ended { attempt: u32, log: Option<BlobId> },
}

/// The streamed body of `task`'s stdout (or `stderr`).
pub(crate) async fn follow(s: &ApiState, task: TaskRef, stderr: bool) -> ApiResult<Response> {
    let turn = s.follow.slots.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this node already streams {MAX_FOLLOWERS} live logs; try again later"),
        )
    })?;
    let follower = Follower {
        api: s.clone(),
        live: s.data.live.clone(),
        net: s.cluster.net.clone(),
        task,
        stderr,
        offset: 0,
        attempt: None,
        drained: false,
        done: false,
        last_byte: Instant::now(),
        last_poll: Instant::now() - POLL_GAP,
        _turn: turn,
    };
    let body = futures::stream::unfold(follower, |mut f| async move {
        let bytes = f.next().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(bytes)), f))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

struct Follower {
    api: ApiState,
    live: LiveLogs,
    net: Net,
    task: TaskRef,
    stderr: bool,
    /// Bytes sent so far.
    offset: u64,
    /// The attempt followed, once seen.
    attempt: Option<u32>,
    /// The runner sent the attempt's last byte; the body ends once this
    /// node's ledger shows the attempt ended too (so that a client sees
    /// the task ended when its body ends).
    drained: bool,
    done: bool,
    last_byte: Instant,
    last_poll: Instant,
    _turn: OwnedSemaphorePermit,
}

impl Follower {
    /// The next bytes of the log; `None` once it ended (or went idle, or
    /// the node stops).
    async fn next(&mut self) -> Option<Vec<u8>> {
        while !self.done && self.last_byte.elapsed() < MAX_IDLE {
            let task = self.task;
            let view = (self.api.driver.call(|reply| Tasks::View { task, reply }))
                .await
                .ok()?;
            let piece = match self.where_is(view) {
                Where::Waiting { attempt } => {
                    if self.attempt.is_some_and(|a| a < attempt) {
                        return None; // the followed attempt ended, another will run
                    }
                    Piece::NotHere
                }
                Where::Running { attempt, on } => {
                    if *self.attempt.get_or_insert(attempt) != attempt {
                        return None;
                    }
                    if self.drained {
                        Piece::NotHere // waits for the ledger to see the end
                    } else {
                        self.poll(attempt, on).await
                    }
                }
                Where::Ended { attempt, log } => {
                    if *self.attempt.get_or_insert(attempt) != attempt || self.drained {
                        return None;
                    }
                    self.done = true;
                    self.stored(log).await
                }
            };
            match piece {
                Piece::Bytes { bytes, ended } => {
                    self.drained |= ended;
                    if !bytes.is_empty() {
                        self.offset += bytes.len() as u64;
                        self.last_byte = Instant::now();
                        return Some(bytes);
                    }
                }
                Piece::Nothing => {}
                Piece::NotHere => tokio::time::sleep(WAIT_STEP).await,
            }
        }
        None
    }

    /// Asks the runner (`on`, or this node) for the bytes past the offset.
    async fn poll(&mut self, attempt: u32, on: Option<PeerId>) -> Piece {
        tokio::time::sleep_until(self.last_poll + POLL_GAP).await;
        self.last_poll = Instant::now();
        let (task, stderr, offset) = (self.task, self.stderr, self.offset);
        let Some(peer) = on else {
            return self
                .live
                .read(task, attempt, stderr, offset, POLL_WAIT)
                .await;
        };
        let request = FetchRequest::LiveLog {
            task,
            attempt,
            stderr,
            offset,
        };
        let answer = match self.net.fetch(peer, codec::encode(&request)).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!("live log of {task:?} from {peer}: {e}");
                return Piece::NotHere;
            }
        };
        match codec::decode::<FetchResponse>(&answer) {
            Ok(FetchResponse::LiveLog { bytes, ended }) if bytes.is_empty() && !ended => {
                Piece::Nothing
            }
            Ok(FetchResponse::LiveLog { bytes, ended }) => Piece::Bytes { bytes, ended },
            _ => Piece::NotHere,
        }
    }

    /// The stored log past the offset, fetched from wherever it is.
    async fn stored(&self, log: Option<BlobId>) -> Piece {
        let Some(blob) = log else {
            return Piece::Nothing;
        };
        let Ok(peers) = self.api.driver.call(|reply| Mesh::Peers { reply }).await else {
            return Piece::Nothing;
        };
        match self.api.data.fetcher.fetch_bytes(blob, &peers).await {
            Ok(bytes) => Piece::Bytes {
                bytes: bytes
                    .get(self.offset as usize..)
                    .unwrap_or_default()
                    .to_vec(),
                ended: true,
            },
            Err(e) => {
                tracing::warn!("live log: cannot fetch the stored log {blob}: {e}");
                Piece::Nothing
            }
        }
    }
}

impl Follower {
    /// Where the followed task stands, by its `view` in this node's ledger.
    fn where_is(&self, view: Option<TaskView>) -> Where {
        let Some(view) = view else {
            return Where::Waiting { attempt: 0 };
        };
        match (view.state, &view.result) {
            (TaskState::Running, _) => {
                let me = self.net.local_peer_id();
                let on = view.node.and_then(|n| peer_of(&n)).filter(|p| *p != me);
                Where::Running {
                    attempt: view.attempt,
                    on,
                }
            }
            (TaskState::Pending | TaskState::Blocked, _) => Where::Waiting {
                attempt: view.attempt,
            },
            (_, Some(result)) => Where::Ended {
                attempt: result.attempt,
                log: if self.stderr {
                    result.stderr
                } else {
                    result.stdout
                },
            },
            (_, None) => Where::Ended {
                attempt: view.attempt,
                log: None,
            },
        }
    }
}
