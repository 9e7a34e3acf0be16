//! The local HTTP API (JSON), served on loopback for the CLI, scripts and
//! the dashboard.
//!
//! Owns routes, the bearer-token check and the JSON shapes. Every handler
//! asks the driver through its request channel; must not hold protocol state
//! of its own.

use crate::driver::{Driver, Request};
use crate::fetch::fetch_blob;
use crate::identity::peer_of;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use libp2p::PeerId;
use peerbatch_protocol::core::Progress;
use peerbatch_protocol::ledger::JobRecord;
use peerbatch_protocol::{BlobId, JobSpec, NodeId, TaskRef, TaskState, TaskView};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
pub struct ApiState {
    pub requests: mpsc::Sender<Request>,
    pub token: String,
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn not_found(msg: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg)
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/jobs", get(jobs).post(submit))
        .route("/v1/jobs/{job}", get(job))
        .route("/v1/jobs/{job}/tasks", get(tasks))
        .route("/v1/jobs/{job}/cancel", post(cancel))
        .route("/v1/jobs/{job}/tasks/{task}/log", get(log))
        .route("/v1/nodes", get(nodes))
        .with_state(state)
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let expected = format!("Bearer {}", state.token);
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => Ok(()),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong access token (see DATA_DIR/token or PEERBATCH_TOKEN)".into(),
        )),
    }
}

/// Runs `f` on the driver and returns its answer.
async fn ask<T: Send + 'static>(
    state: &ApiState,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Driver) -> T + Send + 'static,
) -> ApiResult<T> {
    authorize(state, headers)?;
    let (tx, rx) = oneshot::channel();
    let request: Request = Box::new(move |driver| {
        let _ = tx.send(f(driver));
    });
    let gone = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is shutting down".into(),
        )
    };
    state.requests.send(request).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())
}

fn node_name(node: &NodeId) -> String {
    peer_of(node).map_or_else(|| node.to_string(), |p| p.to_string())
}

fn job_state(p: &Progress, total: u32) -> &'static str {
    if p.done() == total {
        if p.cancelled > 0 {
            "cancelled"
        } else if p.failed > 0 {
            "failed"
        } else {
            "succeeded"
        }
    } else if p.running > 0 || p.done() > 0 {
        "running"
    } else {
        "pending"
    }
}

fn job_json(record: &JobRecord, p: Progress) -> Value {
    json!({
        "id": record.id.to_string(),
        "name": record.spec.name,
        "priority": record.spec.priority,
        "state": job_state(&p, record.task_count),
        "tasks": record.task_count,
        "pending": p.pending,
        "running": p.running,
        "succeeded": p.succeeded,
        "failed": p.failed,
        "cancelled": p.cancelled,
        "submitted_ms": record.submitted_ms,
        "submitted_by": node_name(&record.submitted_by),
    })
}

/// The replicated fields of a task: identical on every converged node.
fn task_json(record: &JobRecord, view: &TaskView) -> Value {
    let id = record
        .spec
        .task(view.task.index)
        .map_or_else(|| view.task.index.to_string(), |t| t.id);
    json!({
        "id": id,
        "state": view.state.name(),
        "attempt": view.attempt,
        "node": view.node.as_ref().map(node_name),
        "exit_code": view.result.as_ref().and_then(|r| r.outcome.exit_code()),
    })
}

async fn status(State(s): State<ApiState>, h: HeaderMap) -> ApiResult<Json<Value>> {
    ask(&s, &h, |d| {
        let (claimed, running) = d.core.local_load();
        let stats = d.core.stats();
        let connected = d.core.peers().values().filter(|p| p.connected).count();
        Json(json!({
            "node": d.net.local_peer_id().to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "slots": d.core.config().slots,
            "draining": d.core.draining(),
            "claimed": claimed,
            "running": running,
            "peers_connected": connected,
            "events": d.core.ledger().event_count(),
            "ledger_bytes": d.store.size_on_disk(),
            "event_bytes": d.store.event_bytes(),
            "attempts_started": stats.attempts_started,
            "attempts_fenced": stats.attempts_fenced,
            "events_rejected": stats.events_rejected,
        }))
    })
    .await
}

async fn jobs(State(s): State<ApiState>, h: HeaderMap) -> ApiResult<Json<Value>> {
    ask(&s, &h, |d| {
        let mut list: Vec<(u64, Value)> = d
            .core
            .ledger()
            .jobs()
            .map(|j| (j.submitted_ms, job_json(j, d.core.progress(&j.id))))
            .collect();
        list.sort_by_key(|(t, _)| *t);
        Json(Value::Array(list.into_iter().map(|(_, v)| v).collect()))
    })
    .await
}

async fn job(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(job): Path<String>,
) -> ApiResult<Json<Value>> {
    ask(&s, &h, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let record = d.core.ledger().job(&id).ok_or_else(|| not_found(job))?;
        Ok(Json(job_json(record, d.core.progress(&id))))
    })
    .await?
}

async fn tasks(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(job): Path<String>,
) -> ApiResult<Json<Value>> {
    ask(&s, &h, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let record = d.core.ledger().job(&id).ok_or_else(|| not_found(job))?;
        Ok(Json(Value::Array(
            d.core.views(id).map(|v| task_json(record, v)).collect(),
        )))
    })
    .await?
}

async fn submit(
    State(s): State<ApiState>,
    h: HeaderMap,
    Json(spec): Json<JobSpec>,
) -> ApiResult<Json<Value>> {
    let tasks = spec.task_count();
    let (tx, rx) = oneshot::channel();
    let (job, peers) = ask(&s, &h, move |d| {
        let now = d.now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as u64);
        let (job, event) = d
            .core
            .submit(now, spec, wall)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        d.replicate_then_reply(event, tx);
        Ok((job, d.core.peers().values().filter(|p| p.connected).count()))
    })
    .await??;
    let replicated_to = rx.await.unwrap_or(0);
    Ok(Json(json!({
        "job_id": job.to_string(),
        "tasks": tasks,
        "replicated_to": replicated_to,
        "peers_connected": peers,
    })))
}

async fn cancel(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(job): Path<String>,
) -> ApiResult<Json<Value>> {
    ask(&s, &h, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let now = d.now();
        d.core.cancel(now, id);
        Ok(Json(json!({ "job_id": id.to_string(), "cancelled": true })))
    })
    .await?
}

async fn nodes(State(s): State<ApiState>, h: HeaderMap) -> ApiResult<Json<Value>> {
    ask(&s, &h, |d| {
        let now = d.now();
        let me = d.core.node_id();
        let lease = d.core.config().lease_ms;
        let list = d
            .core
            .ledger()
            .nodes()
            .map(|(id, info)| {
                let peer = d.core.peers().get(id);
                let silent = peer.and_then(|p| p.last_heard).map(|t| now.since(t));
                let live = *id == me || silent.is_some_and(|s| s <= lease);
                json!({
                    "id": node_name(id),
                    "self": *id == me,
                    "live": live,
                    "connected": peer.is_some_and(|p| p.connected),
                    "last_heard_ms": if *id == me { Some(0) } else { silent },
                    "slots": info.slots,
                    "labels": info.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                    "draining": info.draining,
                    "addrs": info.addrs,
                    "version": info.version,
                })
            })
            .collect();
        Json(Value::Array(list))
    })
    .await
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    stream: Option<String>,
}

async fn log(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((job, task)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let stderr = match q.stream.as_deref() {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("stream must be stdout or stderr, not {other:?}"),
            ))
        }
    };
    type Found = (
        Option<BlobId>,
        Vec<PeerId>,
        crate::net::Net,
        crate::store::blobs::BlobStore,
    );
    let found: Found = ask(&s, &h, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let record = d
            .core
            .ledger()
            .job(&id)
            .ok_or_else(|| not_found(job.clone()))?;
        let index = record
            .spec
            .position_of(&task)
            .ok_or_else(|| not_found(format!("job {id} has no task {task:?}")))?;
        let view = d
            .core
            .view(TaskRef { job: id, index })
            .ok_or_else(|| not_found(format!("task {task:?} is unknown here")))?;
        let Some(result) = &view.result else {
            let msg = match view.state {
                TaskState::Cancelled => format!("task {task:?} was cancelled before it finished"),
                _ => format!("task {task:?} has not finished yet ({})", view.state.name()),
            };
            return Err(not_found(msg));
        };
        let blob = if stderr { result.stderr } else { result.stdout };
        // The node that ran it first, then every other connected peer.
        let mut providers: Vec<PeerId> = view.node.iter().filter_map(peer_of).collect();
        providers.extend(
            d.core
                .peers()
                .iter()
                .filter(|(n, p)| p.connected && Some(**n) != view.node)
                .filter_map(|(n, _)| peer_of(n)),
        );
        Ok((blob, providers, d.net.clone(), d.blobs.clone()))
    })
    .await??;
    let (blob, providers, net, blobs) = found;
    let Some(blob) = blob else {
        return Ok(Vec::<u8>::new().into_response());
    };
    let bytes = fetch_blob(&net, &blobs, blob, &providers)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    Ok(bytes.into_response())
}
