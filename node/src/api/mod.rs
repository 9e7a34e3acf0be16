//! The local HTTP API (JSON), served on loopback for the CLI, scripts and
//! the dashboard.
//!
//! Owns routes and the JSON shapes; `api::guard` checks the token and reads
//! bodies before any route runs. Every handler asks the driver through its
//! request channel; must not hold protocol state of its own.

pub(crate) mod cluster;
pub(crate) mod files;
pub(crate) mod guard;
pub(crate) mod pools;
pub(crate) mod schedules;
pub(crate) mod stream;

use crate::api::stream::StoredBlob;
use crate::driver::{Driver, Request};
use crate::fetch::{ExportState, Fetcher};
use crate::identity::peer_of;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use libp2p::PeerId;
use peerbatch_protocol::core::Progress;
use peerbatch_protocol::deps::OnDependencyFailure;
use peerbatch_protocol::ledger::{JobRecord, Ledger};
use peerbatch_protocol::resources::unschedulable;
use peerbatch_protocol::{
    BlobId, JobSpec, NodeId, NodeInfo, TaskRef, TaskResult, TaskState, TaskView,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::{mpsc, oneshot};

#[derive(Clone)]
pub struct ApiState {
    pub requests: mpsc::Sender<Request>,
    /// Where package archives are unpacked, and how much they may hold.
    pub unpack: crate::api::files::Unpack,
}

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn not_found(msg: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg)
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Every route; `guard::guard` puts the token check in front of all of
/// them. A new route also goes into `ROUTES` in `tests/tests/api_guard.rs`,
/// and is refused to tasks' own tokens unless listed in
/// `guard::TASK_ROUTES` (and in that test's `TASK_ROUTES`).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/jobs", get(jobs).post(submit))
        .route("/v1/jobs/{job}", get(job))
        .route("/v1/jobs/{job}/tasks", get(tasks))
        .route("/v1/jobs/{job}/cancel", post(cancel))
        .route("/v1/jobs/{job}/tasks/{task}/log", get(log))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{node}/drain", post(drain_node))
        .route("/v1/blobs", post(put_blob))
        .route("/v1/blobs/entries", post(files::put_entries))
        .route("/v1/blobs/stream", put(stream::put_stream))
        .route("/v1/blobs/{id}/bytes", get(stream::get_bytes))
        .route("/v1/jobs/{job}/outputs/export", post(files::export_outputs))
        .route("/v1/schedules", get(schedules::list).post(schedules::add))
        .route("/v1/schedules/{name}", delete(schedules::remove))
        .route("/v1/pools", get(pools::list).post(pools::define))
        .route("/v1/pools/{name}/logs/{node}", get(pools::logs))
        .route(
            "/v1/packages",
            get(files::packages).post(files::add_package),
        )
        .route("/v1/blobs/{id}/export", post(export_blob))
        .route("/v1/exports/{n}", get(export_progress))
        .with_state(state)
}

/// Runs `f` on the driver and returns its answer.
pub(crate) async fn ask<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&mut Driver) -> T + Send + 'static,
) -> ApiResult<T> {
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

/// Whether some task of the job still waits to run.
fn has_waiting(p: &Progress) -> bool {
    p.pending + p.blocked > 0
}

fn job_state(p: &Progress, total: u32) -> &'static str {
    if p.done() == total {
        if p.cancelled > 0 {
            "cancelled"
        } else if p.failed > 0 || p.skipped > 0 {
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

/// Maps a task position to its group's index.
fn group_index(spec: &JobSpec) -> impl Fn(u32) -> usize + '_ {
    let ends: Vec<u64> = spec
        .groups
        .iter()
        .scan(0u64, |end, g| {
            *end += g.len();
            Some(*end)
        })
        .collect();
    move |index| {
        ends.partition_point(|end| *end <= u64::from(index))
            .min(ends.len().saturating_sub(1))
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
        "blocked": p.blocked,
        "running": p.running,
        "succeeded": p.succeeded,
        "failed": p.failed,
        "cancelled": p.cancelled,
        "skipped": p.skipped,
        "submitted_ms": record.submitted_ms,
        "max_wall_clock_ms": record.spec.max_wall_clock_ms,
        "after": record.spec.after.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "on_dependency_failure": match record.spec.on_dependency_failure {
            OnDependencyFailure::Skip => "skip",
            OnDependencyFailure::Fail => "fail",
            OnDependencyFailure::Run => "run",
        },
        "schedule": record.spec.origin.as_ref().map(|o| o.schedule.clone()),
        "occurrence_ms": record.spec.origin.as_ref().map(|o| o.at_ms),
        "submitted_by": node_name(&record.submitted_by),
    })
}

/// Why each task group of a job fits no node of the mesh, if it does not.
fn unschedulable_groups(d: &Driver, record: &JobRecord) -> Vec<Option<String>> {
    let nodes: Vec<&NodeInfo> = d.core.ledger().nodes().map(|(_, i)| i).collect();
    record
        .spec
        .groups
        .iter()
        .map(|g| unschedulable(&g.spec().resources, nodes.iter().copied()))
        .collect()
}

/// The replicated fields of a task: identical on every converged node.
/// `why_not` is its group's entry from [`unschedulable_groups`].
fn task_json(
    ledger: &Ledger,
    record: &JobRecord,
    view: &TaskView,
    why_not: Option<&String>,
) -> Value {
    let resolved = record.spec.task(view.task.index);
    let limit = resolved.as_ref().and_then(|t| t.max_wall_clock_ms);
    let id = resolved.map_or_else(|| view.task.index.to_string(), |t| t.id);
    let waiting = matches!(view.state, TaskState::Pending | TaskState::Blocked);
    let mut task = json!({
        "id": id,
        "state": view.state.name(),
        "unschedulable": why_not.filter(|_| waiting),
        "attempt": view.attempt,
        "node": view.node.as_ref().map(node_name),
        "exit_code": view.result.as_ref().and_then(|r| r.outcome.exit_code()),
        "outcome": view.result.as_ref().map(|r| outcome_name(&r.outcome)),
        "wall_clock_limit_ms": limit,
        "outputs": view.result.as_ref().and_then(|r| r.outputs).map(|b| b.to_string()),
    });
    let instances = record
        .spec
        .template(view.task.index)
        .map_or(1, |t| t.resources.instances);
    if instances > 1 {
        task["instances"] = json!(instances);
        task["gang"] = json!(match &view.gang {
            Some(g) if g.formed => "formed",
            Some(g) if g.declined => "declined",
            Some(_) => "forming",
            None => "none",
        });
        task["hosts"] = gang_members(ledger, record, view)
            .iter()
            .enumerate()
            .map(|(rank, (node, result))| {
                let exit = result.and_then(|r| r.outcome.exit_code());
                json!({ "rank": rank, "node": node_name(node), "exit_code": exit })
            })
            .collect();
    }
    task
}

/// How an attempt ended, as `tasks --json` names it.
fn outcome_name(outcome: &peerbatch_protocol::Outcome) -> &'static str {
    use peerbatch_protocol::Outcome;
    match outcome {
        Outcome::Exited(_) => "exited",
        Outcome::Signaled(_) => "signaled",
        Outcome::TimedOut => "timed_out",
        Outcome::FailedToStart(_) => "failed_to_start",
        Outcome::OutputsFailed(_) => "outputs_failed",
    }
}

/// A multi-instance task's hosts for its view's attempt, in rank order,
/// each with its instance's result once reported (none for the primary,
/// whose result is the task's).
fn gang_members<'a>(
    ledger: &'a Ledger,
    record: &JobRecord,
    view: &TaskView,
) -> Vec<(NodeId, Option<&'a TaskResult>)> {
    let instances = record
        .spec
        .template(view.task.index)
        .map_or(1, |t| t.resources.instances);
    match (view.node, ledger.gang(&view.task)) {
        (Some(primary), Some(steps)) => steps.members(view.attempt, primary, instances),
        _ => Vec::new(),
    }
}

async fn status(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    ask(&s, |d| {
        let (claimed, running) = d.core.local_load();
        let stats = d.core.stats();
        let connected = d.core.peers().values().filter(|p| p.connected).count();
        Json(json!({
            "node": d.net.local_peer_id().to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "slots": d.core.config().slots,
            "draining": d.core.draining(),
            "claiming": !d.core.draining() && !d.core.paused(),
            "storage_error": d.storage.borrow().clone(),
            "unavailable": d.unavailable.clone(),
            "claimed": claimed,
            "running": running,
            "peers_connected": connected,
            "events": d.core.ledger().event_count(),
            "ledger_bytes": d.store.size_on_disk(),
            "event_bytes": d.store.event_bytes(),
            "attempts_started": stats.attempts_started,
            "attempts_fenced": stats.attempts_fenced,
            "events_rejected": stats.events_rejected,
            "chunks_fetched": d.fetcher.stats.chunks_fetched.load(Relaxed),
            "chunks_served": d.fetcher.stats.chunks_served.load(Relaxed),
            "fetches_deferred": d.fetcher.stats.fetches_deferred.load(Relaxed),
            "input_held": d.input_held,
            "bad_chunks": d.fetcher.stats.bad_chunks.load(Relaxed),
            "bad_chunks_by_peer": d.fetcher.stats.bad_by_peer.lock().map(|m| {
                m.iter().map(|(p, n)| (p.to_string(), json!(n))).collect::<serde_json::Map<_, _>>()
            }).unwrap_or_default(),
            "store_limit": d.reclaimer.as_ref().and_then(|r| r.limit()),
            "reclaim": d.reclaimer.as_ref().map(|r| *r.history.lock().unwrap_or_else(|p| p.into_inner())),
        }))
    })
    .await
}

async fn jobs(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    ask(&s, |d| {
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

async fn job(State(s): State<ApiState>, Path(job): Path<String>) -> ApiResult<Json<Value>> {
    ask(&s, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let record = d.core.ledger().job(&id).ok_or_else(|| not_found(job))?;
        let mut j = job_json(record, d.core.progress(&id));
        let why_not = unschedulable_groups(d, record).into_iter().flatten().next();
        if has_waiting(&d.core.progress(&id)) {
            j["unschedulable"] = json!(why_not);
        }
        Ok(Json(j))
    })
    .await?
}

async fn tasks(State(s): State<ApiState>, Path(job): Path<String>) -> ApiResult<Json<Value>> {
    ask(&s, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let record = d.core.ledger().job(&id).ok_or_else(|| not_found(job))?;
        let why_not = unschedulable_groups(d, record);
        let group_of = group_index(&record.spec);
        Ok(Json(Value::Array(
            d.core
                .views(id)
                .map(|v| {
                    let why_not = why_not[group_of(v.task.index)].as_ref();
                    task_json(d.core.ledger(), record, v, why_not)
                })
                .collect(),
        )))
    })
    .await?
}

async fn submit(State(s): State<ApiState>, Json(spec): Json<JobSpec>) -> ApiResult<Json<Value>> {
    let tasks = spec.task_count();
    let (tx, rx) = oneshot::channel();
    let (job, peers) = ask(&s, move |d| {
        let now = d.now();
        let wall = crate::wallclock::wall_ms();
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

async fn cancel(State(s): State<ApiState>, Path(job): Path<String>) -> ApiResult<Json<Value>> {
    ask(&s, move |d| {
        let id = d.resolve_job(&job).map_err(not_found)?;
        let now = d.now();
        if !d.core.cancel(now, id) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("job {id} may be cancelled only from the node that submitted it or an admin node"),
            ));
        }
        Ok(Json(json!({ "job_id": id.to_string(), "cancelled": true })))
    })
    .await?
}

async fn nodes(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    ask(&s, |d| {
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
                    "memory_mb": info.memory_mb,
                    "gpus": info.gpus,
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
struct DrainBody {
    drain: bool,
}

/// Asks a node (by peer id, a unique prefix of one, or `self`) to drain or
/// resume, through the ledger.
async fn drain_node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Json(body): Json<DrainBody>,
) -> ApiResult<Json<Value>> {
    ask(&s, move |d| {
        let me = d.core.node_id();
        let matches: Vec<NodeId> = d
            .core
            .ledger()
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| {
                if node == "self" {
                    *id == me
                } else {
                    node_name(id).starts_with(&node)
                }
            })
            .collect();
        let target = match matches.as_slice() {
            [one] => *one,
            [] => return Err(not_found(format!("no node {node:?} in the mesh"))),
            many => {
                return Err(bad_request(format!(
                    "{node:?} matches {} nodes; give more of the id",
                    many.len()
                )))
            }
        };
        let now = d.now();
        if !d
            .core
            .request_drain(now, target, body.drain, crate::wallclock::wall_ms())
        {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "node {} may be drained or resumed only from itself or an admin node",
                    node_name(&target)
                ),
            ));
        }
        Ok(Json(
            json!({ "node": node_name(&target), "drain": body.drain }),
        ))
    })
    .await?
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    stream: Option<String>,
    /// An instance of a multi-instance task (0, the primary, by default).
    #[serde(default)]
    rank: Option<u32>,
}

async fn log(
    State(s): State<ApiState>,
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
    type Found = (Option<BlobId>, Vec<PeerId>, Fetcher);
    let found: Found = ask(&s, move |d| {
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
        let result = match q.rank.filter(|r| *r > 0) {
            None => view.result.as_ref(),
            Some(rank) => {
                let members = gang_members(d.core.ledger(), record, view);
                let member = members.get(rank as usize).ok_or_else(|| {
                    not_found(format!(
                        "task {task:?} has no instance of rank {rank} (yet)"
                    ))
                })?;
                member.1
            }
        };
        let Some(result) = result else {
            let msg = match view.state {
                TaskState::Cancelled => format!("task {task:?} was cancelled before it finished"),
                _ => format!("task {task:?} has not finished yet ({})", view.state.name()),
            };
            return Err(not_found(msg));
        };
        let blob = if stderr { result.stderr } else { result.stdout };
        Ok((blob, d.connected_peers(), d.fetcher.clone()))
    })
    .await??;
    let (blob, peers, fetcher) = found;
    log_bytes(blob, &peers, &fetcher).await
}

/// A captured stream's bytes (empty when nothing was captured), fetched
/// from wherever they are.
pub(crate) async fn log_bytes(
    blob: Option<BlobId>,
    peers: &[PeerId],
    fetcher: &Fetcher,
) -> ApiResult<Response> {
    let Some(blob) = blob else {
        return Ok(Vec::<u8>::new().into_response());
    };
    let bytes = fetcher.fetch_bytes(blob, peers).await.map_err(|e| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            format!("{:#}", anyhow::Error::from(e)),
        )
    })?;
    Ok(bytes.into_response())
}

/// A blob id from a URL.
pub(crate) fn blob_id(text: &str) -> ApiResult<BlobId> {
    BlobId::parse(text)
        .ok_or_else(|| bad_request(format!("{text:?} is not a blob id (64 hex digits)")))
}

pub(crate) fn bad_request(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

/// A path from a client on this machine: must be absolute (the node's
/// working directory means nothing to the client).
pub(crate) fn absolute(field: &str, path: PathBuf) -> ApiResult<PathBuf> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(bad_request(format!(
            "{field} {} must be an absolute path",
            path.display()
        )))
    }
}

#[derive(Deserialize)]
struct PutBody {
    path: PathBuf,
}

/// Stores a local file or directory tree (read by the node itself: the API
/// is loopback-only, so the client is on this machine).
async fn put_blob(
    State(s): State<ApiState>,
    Json(body): Json<PutBody>,
) -> ApiResult<Json<StoredBlob>> {
    let path = absolute("path", body.path)?;
    let blobs = ask(&s, |d| d.blobs.clone()).await?;
    let started = std::time::Instant::now();
    let stored = tokio::task::spawn_blocking(move || blobs.put_path(&path))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (id, stats) = stored.map_err(|e| bad_request(format!("{:#}", anyhow::Error::from(e))))?;
    keep(&s, id).await?;
    Ok(Json(StoredBlob::new(id, stats, started)))
}

/// Records that blob `id` was stored here by a user: never reclaimed.
pub(crate) async fn keep(s: &ApiState, id: BlobId) -> ApiResult<()> {
    let kept = ask(s, |d| d.reclaimer.as_ref().map(|r| r.kept.clone())).await?;
    if let Some(kept) = kept {
        kept.add(id).map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stored {id} but cannot record it as kept: {e}"),
            )
        })?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct ExportBody {
    out: PathBuf,
    /// Keep a copy of the fetched chunks in this node's store, so that it
    /// serves them to peers and a later get is local (default). `false`
    /// writes a file blob's fetched chunks into the file only.
    #[serde(default = "yes")]
    store: bool,
}

fn yes() -> bool {
    true
}

/// Starts fetching a blob from the mesh and writing it at `out`; answers
/// with an export number to poll at `/v1/exports/{n}`.
async fn export_blob(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(body): Json<ExportBody>,
) -> ApiResult<Json<Value>> {
    let blob = blob_id(&id)?;
    let out = absolute("out", body.out)?;
    crate::store::blobs::check_out(&out)
        .map_err(|e| bad_request(format!("{:#}", anyhow::Error::from(e))))?;
    let store = body.store;
    let number = ask(&s, move |d| {
        let peers = d.connected_peers();
        d.fetcher.start_export(blob, out, peers, store)
    })
    .await?;
    Ok(Json(json!({ "export": number })))
}

async fn export_progress(State(s): State<ApiState>, Path(n): Path<u64>) -> ApiResult<Json<Value>> {
    let export = ask(&s, move |d| d.fetcher.export(n))
        .await?
        .ok_or_else(|| not_found(format!("no export {n} on this node")))?;
    let p = &export.progress;
    let (state, bytes_written, error) = match export.state.lock().as_deref() {
        Ok(ExportState::Running) => ("running", None, None),
        Ok(ExportState::Done { bytes }) => ("done", Some(*bytes), None),
        Ok(ExportState::Failed(e)) => ("failed", None, Some(e.clone())),
        Err(_) => ("failed", None, Some("export state lost".to_string())),
    };
    Ok(Json(json!({
        "blob": export.blob.to_string(),
        "out": export.out.display().to_string(),
        "state": state,
        "error": error,
        "bytes_total": p.bytes_total.load(Relaxed),
        "bytes_done": p.bytes_done.load(Relaxed),
        "chunks_fetched": p.chunks_fetched.load(Relaxed),
        "chunks_present": p.chunks_present.load(Relaxed),
        "bytes_written": bytes_written,
    })))
}
