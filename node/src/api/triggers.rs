//! HTTP routes for the function triggers that go through the ledger:
//! `POST /v1/functions/{name}/queue` enqueues a message, `GET` shows the
//! queue (counts and dead letters); and the blob trigger a put under a
//! name fires.
//!
//! Owns those routes (their shapes are `api::types`') and reading a
//! queue's state from the ledger's views of its messages' jobs. Firing is
//! `functions::triggers`'; like every handler, these keep no state.

use crate::api::types::{DeadLetter, Enqueued, FunctionQueue};
use crate::api::{ApiError, ApiResult, ApiState};
use crate::driver::command::{Functions, Mesh, QueuedMessage};
use crate::functions::triggers::FireRefused;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use peerbatch_protocol::ledger::JobRecord;
use peerbatch_protocol::trigger::Origin;
use peerbatch_protocol::{BlobId, Outcome, TaskState, TaskView};
use tokio::sync::oneshot;

/// Most dead letters `GET …/queue` lists (the newest).
const SHOWN_DEAD_LETTERS: usize = 100;
/// Bytes of a dead letter's stderr shown with its error (its end).
const SHOWN_STDERR: usize = 1_024;

fn refused(e: FireRefused) -> ApiError {
    let status = match e {
        FireRefused::Unknown(_) => StatusCode::NOT_FOUND,
        FireRefused::TooLarge { .. } | FireRefused::LongName { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        FireRefused::Backlog { .. } => StatusCode::TOO_MANY_REQUESTS,
        FireRefused::Removed(_) | FireRefused::NoTrigger { .. } => StatusCode::CONFLICT,
        FireRefused::Job(_) => StatusCode::BAD_REQUEST,
    };
    ApiError(status, e.to_string())
}

/// Adds the request body as a message to function `name`'s queue;
/// answers once it is durable here and, with peers connected, held by
/// one of them (or after a while).
#[utoipa::path(post, path = "/v1/functions/{name}/queue", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the message (at most 64 KiB), handed to the handler on stdin"),
    responses((status = 200, body = Enqueued)))]
pub async fn enqueue(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Enqueued>> {
    let (replicated, rx) = oneshot::channel();
    let (asked, message) = (name.clone(), body.to_vec());
    let job = (s.driver)
        .call(|reply| Functions::Enqueue {
            name: asked,
            message,
            replicated,
            reply,
        })
        .await?
        .map_err(refused)?;
    Ok(Json(Enqueued {
        name,
        job_id: job.to_string(),
        replicated_to: rx.await.unwrap_or(0),
    }))
}

/// Function `name`'s queue: how many messages wait, run and are done,
/// and the dead letters with their last error.
#[utoipa::path(get, path = "/v1/functions/{name}/queue", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    responses((status = 200, body = FunctionQueue)))]
pub async fn queue(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<FunctionQueue>> {
    let asked = name.clone();
    let messages = (s.driver)
        .call(|reply| Functions::Queue { name: asked, reply })
        .await??;
    let (mut queue, dead) = read_queue(&name, &messages);
    let peers = s.driver.call(|reply| Mesh::Peers { reply }).await?;
    for (mut letter, stderr) in dead {
        let fetched = match stderr {
            Some(blob) => s.data.fetcher.fetch_bytes(blob, &peers).await.ok(),
            None => None,
        };
        if let Some(bytes) = fetched {
            let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(SHOWN_STDERR)..]);
            letter.error = format!("{}; stderr: {}", letter.error, text.trim_end());
        }
        queue.dead_letters.push(letter);
    }
    Ok(Json(queue))
}

/// The counts of function `name`'s messages, and its newest dead letters
/// with their stderr's blob.
fn read_queue(
    name: &str,
    messages: &[QueuedMessage],
) -> (FunctionQueue, Vec<(DeadLetter, Option<BlobId>)>) {
    let mut queue = FunctionQueue {
        name: name.to_string(),
        pending: 0,
        running: 0,
        done: 0,
        dead_letters: Vec::new(),
    };
    let mut dead = Vec::new();
    for m in messages {
        let Some(message) = m.record.spec.origin.as_ref().and_then(Origin::message) else {
            continue;
        };
        let p = &m.progress;
        if p.running > 0 {
            queue.running += 1;
        } else if p.succeeded > 0 {
            queue.done += 1;
        } else if let Some(view) = &m.ended {
            dead.push(dead_letter(&m.record, message.len(), view));
        } else {
            queue.pending += 1;
        }
    }
    dead.sort_by_key(|(l, _)| std::cmp::Reverse(l.enqueued_ms));
    dead.truncate(SHOWN_DEAD_LETTERS);
    (queue, dead)
}

fn dead_letter(job: &JobRecord, bytes: usize, view: &TaskView) -> (DeadLetter, Option<BlobId>) {
    let result = view.result.as_ref();
    let error = match result.map(|r| &r.outcome) {
        Some(Outcome::Exited(code)) => format!("exited with code {code}"),
        Some(Outcome::Signaled(sig)) => format!("killed by signal {sig}"),
        Some(Outcome::TimedOut) => "killed at its time-out".to_string(),
        Some(Outcome::FailedToStart(why)) => format!("did not start: {why}"),
        Some(Outcome::OutputsFailed(why)) => why.clone(),
        None if view.state == TaskState::Cancelled => "cancelled".to_string(),
        None => "its node was lost during the last attempt".to_string(),
    };
    let letter = DeadLetter {
        job_id: job.id.to_string(),
        enqueued_ms: job.submitted_ms,
        message_bytes: bytes as u64,
        attempts: view.attempt + 1,
        error,
    };
    (letter, result.and_then(|r| r.stderr))
}

/// Fires the blob triggers whose prefix `name` starts with, for blob
/// `blob` just put (nothing without a name).
pub(crate) async fn blob_put(s: &ApiState, blob: BlobId, name: Option<String>) -> ApiResult<()> {
    let Some(name) = name else {
        return Ok(());
    };
    let fired = (s.driver)
        .call(|reply| Functions::BlobPut { blob, name, reply })
        .await?
        .map_err(refused)?;
    for (function, job) in fired {
        tracing::info!("blob {blob} fired function {function}: job {job}");
    }
    Ok(())
}
