//! Blob routes whose bytes travel in the HTTP body, never as a path the
//! node would open with its own permissions — so that a task's own token
//! may use them: `PUT /v1/blobs/stream` stores the request body as a file
//! blob, `GET /v1/blobs/{id}/bytes` sends a file blob's content (fetched
//! from peers first when it is not all here).
//!
//! Owns those two routes. A streamed body is spooled to a
//! private file under the node's `unpack` directory (cleared at every
//! start) and stored from there by the store's own `put_path`, so the
//! store alone decides how blobs are laid out. Must not chunk, lay out or
//! fetch blobs itself (`store::blobs` and `fetch` do).

use crate::api::guard::{next_part, TaskCaller};
use crate::api::types::{BlobPath, PutName, StoredBlob};
use crate::api::{bad_request, blob_id, keep, not_found, ApiError, ApiResult, ApiState};
use crate::driver::command::Mesh;
use crate::fetch::{FetchError, Progress};
use crate::store::blobs::{check_chunk, BlobStore, PutStats};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use futures::StreamExt;
use peerbatch_protocol::content::Object;
use peerbatch_protocol::BlobId;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

impl StoredBlob {
    pub fn new(id: BlobId, stats: PutStats, started: Instant) -> StoredBlob {
        StoredBlob {
            id,
            files: stats.files,
            bytes: stats.bytes,
            chunks: stats.chunks,
            chunks_written: stats.chunks_written,
            ms: started.elapsed().as_millis() as u64,
        }
    }
}

/// A spooled body, removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Stores the request body as a file blob, never holding more than one
/// part of it in memory. Refused (413) beyond the node's `--store-limit`;
/// 507 when the node's disk fills up. A blob the node's own account
/// stores is kept for good, as a `put` by path; one a task stores is cache
/// that `--store-limit` may reclaim once no job needs it, so that tasks
/// cannot fill the disk with blobs nobody may remove.
/// A put under a name (`?name=`, not by a task) fires the functions
/// whose blob trigger's prefix it starts with.
#[utoipa::path(put, path = "/v1/blobs/stream", tag = "blobs", params(PutName),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the file's bytes"),
    responses((status = 200, body = StoredBlob)))]
pub async fn put_stream(
    State(s): State<ApiState>,
    task: Option<Extension<TaskCaller>>,
    Query(put): Query<PutName>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<StoredBlob>> {
    let started = Instant::now();
    let blobs = s.data.blobs.clone();
    let max = s.data.reclaimer.limit().unwrap_or(u64::MAX);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > max) {
        return Err(too_large(len, max));
    }
    let spool = spool(&s.unpack.dir, body, max).await?;
    let path = spool.0.clone();
    let stored = tokio::task::spawn_blocking(move || blobs.put_path(&path))
        .await
        .map_err(|e| internal(e.to_string()))?;
    drop(spool);
    let (id, stats) = stored.map_err(|e| store_error(anyhow::Error::from(e)))?;
    if task.is_none() {
        keep(&s, id)?;
        crate::api::triggers::blob_put(&s, id, put.name).await?;
    }
    Ok(Json(StoredBlob::new(id, stats, started)))
}

/// Writes `body` to a fresh private file under `dir`, refusing it once it
/// exceeds `max` bytes.
async fn spool(dir: &std::path::Path, body: Body, max: u64) -> ApiResult<Spool> {
    let spool = Spool(dir.join(format!("stream-{:016x}", rand::random::<u64>())));
    let file = tokio::fs::create_dir_all(dir).await.and_then(|()| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&spool.0)
    });
    let mut file = tokio::fs::File::from_std(file.map_err(|e| disk_error(&spool.0, e))?);
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(part) = next_part(&mut stream).await? {
        total += part.len() as u64;
        if total > max {
            return Err(too_large(total, max));
        }
        file.write_all(&part)
            .await
            .map_err(|e| disk_error(&spool.0, e))?;
    }
    file.flush().await.map_err(|e| disk_error(&spool.0, e))?;
    Ok(spool)
}

fn too_large(bytes: u64, max: u64) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body ({bytes} bytes or more) is larger than this node's --store-limit of {max} bytes"),
    )
}

fn internal(msg: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// 507 for a full disk, naming where; 500 otherwise.
fn disk_error(path: &std::path::Path, e: std::io::Error) -> ApiError {
    let code = if e.kind() == ErrorKind::StorageFull {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError(
        code,
        format!("cannot spool the body to {}: {e}", path.display()),
    )
}

/// 507 when storing failed on a full disk; 500 otherwise.
fn store_error(e: anyhow::Error) -> ApiError {
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::StorageFull)
    });
    let code = if full {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError(code, format!("cannot store the body: {e:#}"))
}

/// Sends a file blob's bytes, fetching what is missing from connected
/// peers first (as `get` does). A tree is refused: it has no single
/// content.
#[utoipa::path(get, path = "/v1/blobs/{id}/bytes", tag = "blobs",
    params(BlobPath),
    responses((status = 200, description = "the file's bytes", body = Vec<u8>,
        content_type = "application/octet-stream")))]
pub async fn get_bytes(
    State(s): State<ApiState>,
    Path(BlobPath { id }): Path<BlobPath>,
) -> ApiResult<Response> {
    let blob = blob_id(&id)?;
    let fetcher = &s.data.fetcher;
    let peers = s.driver.call(|reply| Mesh::Peers { reply }).await?;
    let manifest = match fetcher.fetch_object(blob, &peers).await {
        Ok(Object::File(m)) => m,
        Ok(Object::Tree(_)) => {
            return Err(bad_request(format!(
                "blob {blob} is a directory tree; only a file blob can be read as bytes"
            )))
        }
        Err(e) => return Err(fetch_error(e)),
    };
    fetcher
        .fetch(blob, &peers, &Progress::default())
        .await
        .map_err(fetch_error)?;
    let store = fetcher.store().clone();
    let chunks = futures::stream::iter(manifest.chunks).then(move |c| {
        let store = store.clone();
        async move {
            tokio::task::spawn_blocking(move || read_chunk(&store, blob, &c.hash))
                .await
                .map_err(std::io::Error::other)?
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, manifest.size)
        .body(Body::from_stream(chunks))
        .map_err(|e| internal(e.to_string()))
}

/// One chunk of `blob`, checked against its hash. An error ends the
/// response early, which the client sees as a body shorter than its
/// `Content-Length`.
fn read_chunk(store: &BlobStore, blob: BlobId, hash: &[u8; 32]) -> std::io::Result<Bytes> {
    let bytes = store.read_chunk(hash).ok_or_else(|| {
        std::io::Error::other(format!(
            "a chunk of blob {blob} left the store while sending it"
        ))
    })?;
    check_chunk(hash, &bytes).map_err(std::io::Error::other)?;
    Ok(Bytes::from(bytes))
}

fn fetch_error(e: FetchError) -> ApiError {
    match e {
        FetchError::NoProvider { .. } => not_found(e.to_string()),
        FetchError::Store(_) => internal(e.to_string()),
        _ => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
