//! The local HTTP API (JSON), served on loopback for the CLI, scripts, the
//! Python client and the dashboard, and described by the OpenAPI document
//! it serves at `/v1/openapi.json`.
//!
//! Owns the route table ([`table`]: every route, each an annotated handler,
//! so the router and the document come from one list) and the job, task,
//! node and status routes; `api::types` owns the JSON shapes and
//! `api::guard` checks the token and reads bodies before any route runs.
//! Every handler asks the driver with a typed command (`driver::command`)
//! and shapes its answer into `api::types`; handles that never change (the
//! blob store, fetcher, ledger store, reclaimer, live logs) are in
//! [`DataPlane`]. Must not hold protocol state of its own.

pub(crate) mod cluster;
pub(crate) mod files;
pub(crate) mod follow;
pub(crate) mod function_calls;
pub(crate) mod function_keys;
pub(crate) mod functions;
pub(crate) mod guard;
pub(crate) mod invoke;
pub(crate) mod login;
pub(crate) mod metrics;
pub(crate) mod pools;
pub(crate) mod schedules;
pub(crate) mod stream;
pub(crate) mod submit;
pub(crate) mod task_list;
pub(crate) mod tls;
pub(crate) mod triggers;
pub mod types;

use crate::api::cluster::ClusterState;
use crate::api::types::{
    BlobPath, Cancelled, Drain, Drained, ErrorBody, Export, ExportBlob, ExportStarted, Forgotten,
    Job, JobPath, JobState, LogQuery, Node, PutPath, Status, StoredBlob, Submitted, TaskPath,
};
use crate::driver::command::{
    DriverHandle, Gone, JobEntry, Jobs, Mesh, NodeEntry, Refusal, TaskEntry, Tasks,
};
use crate::fetch::{ExportState, Fetcher};
pub(crate) use crate::identity::node_name;
use crate::live_logs::LiveLogs;
use crate::store::blobs::BlobStore;
use crate::store::ledger::LedgerStore;
use crate::store::reclaim::Reclaimer;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use peerbatch_protocol::trigger::Origin;
use peerbatch_protocol::{BlobId, JobSpec, TaskResult, TaskState};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::LazyLock;
use tokio::sync::oneshot;
use utoipa::openapi::{OpenApi, RefOr, Response as DocResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct ApiState {
    /// Asks the driver, which owns the protocol core.
    pub driver: DriverHandle,
    /// The data plane's handles, used off the driver.
    pub data: DataPlane,
    /// Where package archives are unpacked, and how much they may hold.
    pub unpack: crate::api::files::Unpack,
    /// What the cluster-membership routes need.
    pub cluster: ClusterState,
    /// What `GET /metrics` reports into and remembers.
    pub metrics: crate::api::metrics::MetricsState,
    /// The portal's one-time login codes.
    pub login: std::sync::Arc<login::LoginCodes>,
    /// The live logs this node streams now.
    pub follow: follow::FollowState,
    /// The SHA-256 fingerprint of the API's TLS certificate, when it
    /// serves HTTPS.
    pub tls_fingerprint: Option<String>,
    /// Where the functions listener serves callers with function keys
    /// (`http://ADDR` or `https://ADDR`), if it was asked for.
    pub functions_url: Option<String>,
    /// Runs function calls here or sends them to a node with room.
    pub functions: crate::functions::Router,
}

/// The node's data plane as routes use it directly, off the driver: handles
/// fixed at start that move bytes and read stored events without the
/// driver's state.
#[derive(Clone)]
pub struct DataPlane {
    pub blobs: BlobStore,
    pub fetcher: Fetcher,
    /// The ledger's store, read for a job's stored events.
    pub ledger: LedgerStore,
    /// Which blobs users stored (never reclaimed) and how much the chunk
    /// store may hold.
    pub reclaimer: Reclaimer,
    /// The live output of the attempts running here.
    pub live: LiveLogs,
}

impl FromRef<ApiState> for ClusterState {
    fn from_ref(s: &ApiState) -> ClusterState {
        s.cluster.clone()
    }
}

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

pub(crate) fn not_found(msg: String) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg)
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl From<Gone> for ApiError {
    fn from(e: Gone) -> ApiError {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> ApiError {
        let status = match &e {
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::NotAllowed(_) => StatusCode::FORBIDDEN,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::Key { .. } => StatusCode::UNAUTHORIZED,
        };
        ApiError(status, e.to_string())
    }
}

/// Every route the node serves, and nothing else adds one: each is a
/// handler annotated with `#[utoipa::path]`, registered by `routes!`, which
/// puts it both in the router and in the OpenAPI document.
/// `guard::guard` puts the token check in front of all of them. A new route
/// also goes into `ROUTES` in `tests/tests/api_guard.rs`, and is refused to
/// tasks' own tokens unless listed in `guard::TASK_ROUTES` (and in that
/// test's `TASK_ROUTES`); `api::tests` fails while the router has a path
/// the document lacks.
pub fn table() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(jobs, submit))
        .routes(routes!(submit::submit_file))
        .routes(routes!(job))
        .routes(routes!(task_list::tasks))
        .routes(routes!(cancel))
        .routes(routes!(forget))
        .routes(routes!(log))
        .routes(routes!(nodes))
        .routes(routes!(drain_node))
        .routes(routes!(put_blob))
        .routes(routes!(files::put_entries))
        .routes(routes!(stream::put_stream))
        .routes(routes!(stream::get_bytes))
        .routes(routes!(files::export_outputs))
        .routes(routes!(schedules::list, schedules::add))
        .routes(routes!(schedules::remove))
        .routes(routes!(pools::list, pools::define))
        .routes(routes!(pools::logs))
        .routes(routes!(files::packages, files::add_package))
        .routes(routes!(functions::list, functions::deploy))
        .routes(routes!(functions::show, functions::remove))
        .routes(routes!(functions::rollback))
        .routes(routes!(function_calls::calls))
        .routes(routes!(function_calls::summary))
        .routes(routes!(function_keys::list, function_keys::create))
        .routes(routes!(function_keys::revoke))
        .routes(routes!(invoke::invoke))
        .routes(routes!(invoke::invoke_path))
        .routes(routes!(triggers::enqueue, triggers::queue))
        .routes(routes!(export_blob))
        .routes(routes!(export_progress))
        .routes(routes!(cluster::invite))
        .routes(routes!(cluster::waiting))
        .routes(routes!(cluster::approve))
        .routes(routes!(login::issue))
        .routes(routes!(openapi))
        .routes(routes!(metrics::scrape))
}

/// The router of [`table`] with the node's state.
pub fn router(state: ApiState) -> Router {
    table().with_state(state).split_for_parts().0
}

/// The OpenAPI 3 document of every route in [`table`]; every operation
/// also answers refusals as an [`ErrorBody`].
pub fn document() -> OpenApi {
    let mut doc = table().into_openapi();
    doc.info.title = "peerbatch node API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "The local HTTP API of a peerbatch node. Every request carries `Authorization: Bearer TOKEN` \
         (the node's DATA_DIR/token, or a running task's PEERBATCH_TOKEN)."
            .into(),
    );
    let refused = DocResponse::builder()
        .description("refused: `error` says what was wrong and where")
        .content(
            "application/json",
            utoipa::openapi::Content::new(Some(RefOr::Ref(
                utoipa::openapi::Ref::from_schema_name("ErrorBody"),
            ))),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            op.responses
                .responses
                .insert("default".into(), RefOr::T(refused.clone()));
        }
    }
    let schemas = doc.components.get_or_insert_with(Default::default);
    schemas.schemas.insert(
        "ErrorBody".into(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    doc
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

static DOCUMENT: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::to_value(document()).unwrap_or_default());

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "api",
    responses((status = 200, description = "the OpenAPI 3 document of every route", body = Object)))]
async fn openapi() -> Json<serde_json::Value> {
    Json(DOCUMENT.clone())
}

/// A job as the API shows it.
fn job_of(entry: JobEntry) -> Job {
    use peerbatch_protocol::job::OnDependencyFailure as F;
    use types::OnDependencyFailure;
    let (record, p) = (&entry.record, &entry.progress);
    Job {
        id: record.id.to_string(),
        name: record.spec.name.clone(),
        priority: record.spec.priority,
        state: JobState::of(p, record.task_count),
        tasks: record.task_count,
        pending: p.pending,
        blocked: p.blocked,
        running: p.running,
        succeeded: p.succeeded,
        failed: p.failed,
        cancelled: p.cancelled,
        skipped: p.skipped,
        submitted_ms: record.submitted_ms,
        max_wall_clock_ms: record.spec.max_wall_clock_ms,
        after: record.spec.after.iter().map(ToString::to_string).collect(),
        on_dependency_failure: match record.spec.on_dependency_failure {
            F::Skip => OnDependencyFailure::Skip,
            F::Fail => OnDependencyFailure::Fail,
            F::Run => OnDependencyFailure::Run,
        },
        schedule: match &record.spec.origin {
            Some(Origin::Schedule(o)) => Some(o.schedule.clone()),
            _ => None,
        },
        occurrence_ms: record.spec.origin.as_ref().and_then(Origin::occurrence_ms),
        submitted_by: node_name(&record.submitted_by),
        retention_ms: record.spec.retention(),
        forget_at_ms: entry.forget_at,
        unschedulable: entry.unschedulable,
    }
}

/// How an attempt ended, as the API names it.
pub(crate) fn outcome_of(outcome: &peerbatch_protocol::Outcome) -> types::Outcome {
    use peerbatch_protocol::Outcome;
    match outcome {
        Outcome::Exited(_) => types::Outcome::Exited,
        Outcome::Signaled(_) => types::Outcome::Signaled,
        Outcome::TimedOut => types::Outcome::TimedOut,
        Outcome::FailedToStart(_) => types::Outcome::FailedToStart,
        Outcome::OutputsFailed(_) => types::Outcome::OutputsFailed,
    }
}

/// This node's own state: slots, load, peers, ledger and store figures.
#[utoipa::path(get, path = "/v1/status", tag = "nodes",
    responses((status = 200, body = Status)))]
pub(crate) async fn status(State(s): State<ApiState>) -> ApiResult<Json<Status>> {
    let node = s.driver.call(|reply| Mesh::State { reply }).await?;
    let (data, fetched) = (&s.data, &s.data.fetcher.stats);
    let heap = crate::heap::stats();
    let by_peer = fetched.bad_by_peer.lock().map(|m| {
        let counts = m.iter().map(|(p, n)| (p.to_string(), *n));
        counts.collect()
    });
    Ok(Json(Status {
        node: s.cluster.net.local_peer_id().to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        tls_fingerprint: s.tls_fingerprint.clone(),
        functions_url: s.functions_url.clone(),
        slots: node.slots,
        draining: node.draining,
        claiming: !node.draining && !node.paused,
        storage_error: node.storage_error,
        unavailable: node.unavailable,
        claimed: node.claimed,
        running: node.running,
        peers_connected: node.peers_connected,
        events: node.events,
        sealed_jobs: node.held.sealed_jobs,
        held_views: node.held.views,
        held_task_facts: node.held.task_facts,
        held_event_ids: node.held.live_event_ids,
        heap_allocated: heap.map(|h| h.allocated),
        heap_resident: heap.map(|h| h.resident),
        ledger_bytes: data.ledger.size_on_disk(),
        event_bytes: data.ledger.event_bytes(),
        attempts_started: node.stats.attempts_started,
        attempts_fenced: node.stats.attempts_fenced,
        events_rejected: node.stats.events_rejected,
        chunks_fetched: fetched.chunks_fetched.load(Relaxed),
        chunks_served: fetched.chunks_served.load(Relaxed),
        fetches_deferred: fetched.fetches_deferred.load(Relaxed),
        input_held: node.input_held,
        bad_chunks: fetched.bad_chunks.load(Relaxed),
        bad_chunks_by_peer: by_peer.unwrap_or_default(),
        store_limit: data.reclaimer.limit(),
        reclaim: Some(
            *data
                .reclaimer
                .history
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        ),
    }))
}

/// Every job this node knows, oldest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<Job>)))]
pub(crate) async fn jobs(State(s): State<ApiState>) -> ApiResult<Json<Vec<Job>>> {
    let entries = s.driver.call(|reply| Jobs::List { reply }).await?;
    let mut list: Vec<Job> = entries.into_iter().map(job_of).collect();
    list.sort_by_key(|j| j.submitted_ms);
    Ok(Json(list))
}

/// One job, with why its waiting tasks cannot run if no node fits them.
#[utoipa::path(get, path = "/v1/jobs/{job}", tag = "jobs", params(JobPath),
    responses((status = 200, body = Job)))]
pub(crate) async fn job(
    State(s): State<ApiState>,
    Path(JobPath { job }): Path<JobPath>,
) -> ApiResult<Json<Job>> {
    let entry = s.driver.call(|reply| Jobs::Show { job, reply }).await??;
    Ok(Json(job_of(entry)))
}

/// Submits a job (a protocol `JobSpec`, as `peerbatch submit` builds it
/// from a job file; `POST /v1/jobs/file` takes the job file itself).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = Object, description = "a JobSpec"),
    responses((status = 200, body = Submitted)))]
pub(crate) async fn submit(
    State(s): State<ApiState>,
    Json(spec): Json<JobSpec>,
) -> ApiResult<Json<Submitted>> {
    submit_spec(&s, spec).await.map(Json)
}

/// Submits a job; answers once it is durable here and, when peers are
/// connected, held by one of them or after a while.
pub(crate) async fn submit_spec(s: &ApiState, spec: JobSpec) -> ApiResult<Submitted> {
    let tasks = spec.task_count();
    let (replicated, held) = oneshot::channel();
    let submit = |reply| Jobs::Submit {
        spec,
        replicated,
        reply,
    };
    let accepted = s.driver.call(submit).await??;
    let replicated_to = held.await.unwrap_or(0);
    Ok(Submitted {
        job_id: accepted.job.to_string(),
        tasks,
        replicated_to,
        peers_connected: accepted.peers_connected,
    })
}

/// Cancels a job everywhere: from the node that submitted it or an admin node.
#[utoipa::path(post, path = "/v1/jobs/{job}/cancel", tag = "jobs", params(JobPath),
    responses((status = 200, body = Cancelled)))]
pub(crate) async fn cancel(
    State(s): State<ApiState>,
    Path(JobPath { job }): Path<JobPath>,
) -> ApiResult<Json<Cancelled>> {
    let id = s.driver.call(|reply| Jobs::Cancel { job, reply }).await??;
    Ok(Json(Cancelled {
        job_id: id.to_string(),
        cancelled: true,
    }))
}

/// Asks every node to forget a job that has ended (its events, views, logs
/// and outputs), without waiting for its retention: from the node that
/// submitted it or an admin node.
#[utoipa::path(post, path = "/v1/jobs/{job}/forget", tag = "jobs", params(JobPath),
    responses((status = 200, body = Forgotten)))]
pub(crate) async fn forget(
    State(s): State<ApiState>,
    Path(JobPath { job }): Path<JobPath>,
) -> ApiResult<Json<Forgotten>> {
    let id = s.driver.call(|reply| Jobs::Forget { job, reply }).await??;
    Ok(Json(Forgotten {
        job_id: id.to_string(),
    }))
}

/// Every node of the mesh this node has heard of.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, body = Vec<Node>)))]
pub(crate) async fn nodes(State(s): State<ApiState>) -> ApiResult<Json<Vec<Node>>> {
    let nodes = s.driver.call(|reply| Mesh::Nodes { reply }).await?;
    Ok(Json(nodes.into_iter().map(node_of).collect()))
}

/// A node as the API shows it.
fn node_of(n: NodeEntry) -> Node {
    Node {
        id: node_name(&n.id),
        is_self: n.is_self,
        live: n.live,
        connected: n.connected,
        last_heard_ms: n.last_heard_ms,
        slots: n.info.slots,
        memory_mb: n.info.memory_mb,
        gpus: n.info.gpus,
        labels: (n.info.labels.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        draining: n.info.draining,
        addrs: n.info.addrs,
        version: n.info.version,
    }
}

/// Asks a node (by peer id, a unique prefix of one, or `self`) to drain or
/// resume, through the ledger.
#[utoipa::path(post, path = "/v1/nodes/{node}/drain", tag = "nodes",
    params(("node" = String, Path, description = "a peer id, a unique prefix of one, or `self`")),
    request_body = Drain,
    responses((status = 200, body = Drained)))]
pub(crate) async fn drain_node(
    State(s): State<ApiState>,
    Path(node): Path<String>,
    Json(body): Json<Drain>,
) -> ApiResult<Json<Drained>> {
    let drain = body.drain;
    let target = (s.driver.call(|reply| Mesh::Drain { node, drain, reply })).await??;
    Ok(Json(Drained {
        node: node_name(&target),
        drain,
    }))
}

/// A finished task's captured stdout or stderr (empty when nothing was
/// captured), fetched from wherever it is.
#[utoipa::path(get, path = "/v1/jobs/{job}/tasks/{task}/log", tag = "jobs",
    params(TaskPath, LogQuery),
    responses((status = 200, description = "the stream's bytes", body = Vec<u8>,
        content_type = "application/octet-stream")))]
async fn log(
    State(s): State<ApiState>,
    Path(TaskPath { job, task }): Path<TaskPath>,
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
    let follow = q.follow == Some(true);
    if follow && q.rank.is_some_and(|r| r > 0) {
        return Err(bad_request(
            "follow=true follows rank 0 (the primary) only".into(),
        ));
    }
    let find = |reply| Tasks::Show {
        job,
        task: task.clone(),
        reply,
    };
    let found = s.driver.call(find).await??;
    if follow {
        return follow::follow(&s, found.task, stderr).await;
    }
    let entry = found
        .entry
        .ok_or_else(|| not_found(format!("task {task:?} is unknown here")))?;
    let result = ended(&entry, q.rank.filter(|r| *r > 0), &task)?;
    log_bytes(&s, if stderr { result.stderr } else { result.stdout }).await
}

/// The result of a task that ended (of its gang's instance `rank`, if
/// given), or why there is none.
fn ended<'a>(entry: &'a TaskEntry, rank: Option<u32>, task: &str) -> ApiResult<&'a TaskResult> {
    let result = match rank {
        None => entry.view.result.as_ref(),
        Some(rank) => {
            let member = entry.gang.get(rank as usize).ok_or_else(|| {
                not_found(format!(
                    "task {task:?} has no instance of rank {rank} (yet)"
                ))
            })?;
            member.1.as_ref()
        }
    };
    result.ok_or_else(|| {
        not_found(match entry.view.state {
            TaskState::Cancelled => format!("task {task:?} was cancelled before it finished"),
            state => format!("task {task:?} has not finished yet ({})", state.name()),
        })
    })
}

/// A captured stream's bytes (empty when nothing was captured), fetched
/// from wherever they are.
pub(crate) async fn log_bytes(s: &ApiState, blob: Option<BlobId>) -> ApiResult<Response> {
    let Some(blob) = blob else {
        return Ok(Vec::<u8>::new().into_response());
    };
    let peers = s.driver.call(|reply| Mesh::Peers { reply }).await?;
    let bytes = s
        .data
        .fetcher
        .fetch_bytes(blob, &peers)
        .await
        .map_err(|e| {
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

/// Stores a local file or directory tree (read by the node itself: the API
/// is loopback-only, so the client is on this machine).
#[utoipa::path(post, path = "/v1/blobs", tag = "blobs", request_body = PutPath,
    responses((status = 200, body = StoredBlob)))]
async fn put_blob(
    State(s): State<ApiState>,
    Json(body): Json<PutPath>,
) -> ApiResult<Json<StoredBlob>> {
    let path = absolute("path", body.path)?;
    let blobs = s.data.blobs.clone();
    let started = std::time::Instant::now();
    let stored = tokio::task::spawn_blocking(move || blobs.put_path(&path))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (id, stats) = stored.map_err(|e| bad_request(format!("{:#}", anyhow::Error::from(e))))?;
    keep(&s, id)?;
    triggers::blob_put(&s, id, body.name).await?;
    Ok(Json(StoredBlob::new(id, stats, started)))
}

/// Records that blob `id` was stored here by a user: never reclaimed.
pub(crate) fn keep(s: &ApiState, id: BlobId) -> ApiResult<()> {
    s.data.reclaimer.kept.add(id).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored {id} but cannot record it as kept: {e}"),
        )
    })
}

/// Starts fetching a blob from the mesh and writing it at `out`; answers
/// with an export number to poll at `/v1/exports/{n}`.
#[utoipa::path(post, path = "/v1/blobs/{id}/export", tag = "blobs",
    params(BlobPath), request_body = ExportBlob,
    responses((status = 200, body = ExportStarted)))]
async fn export_blob(
    State(s): State<ApiState>,
    Path(BlobPath { id }): Path<BlobPath>,
    Json(body): Json<ExportBlob>,
) -> ApiResult<Json<ExportStarted>> {
    let blob = blob_id(&id)?;
    let out = absolute("out", body.out)?;
    crate::store::blobs::check_out(&out)
        .map_err(|e| bad_request(format!("{:#}", anyhow::Error::from(e))))?;
    let peers = s.driver.call(|reply| Mesh::Peers { reply }).await?;
    let export = (s.data.fetcher).start_export(blob, out, peers, body.store);
    Ok(Json(ExportStarted { export }))
}

/// How far an export (`get`) on this node is.
#[utoipa::path(get, path = "/v1/exports/{n}", tag = "blobs",
    params(("n" = u64, Path, description = "the export number a start answered")),
    responses((status = 200, body = Export)))]
async fn export_progress(State(s): State<ApiState>, Path(n): Path<u64>) -> ApiResult<Json<Export>> {
    let export = (s.data.fetcher.export(n))
        .ok_or_else(|| not_found(format!("no export {n} on this node")))?;
    let p = &export.progress;
    let (state, bytes_written, error) = match export.state.lock().as_deref() {
        Ok(ExportState::Running) => (types::ExportState::Running, None, None),
        Ok(ExportState::Done { bytes }) => (types::ExportState::Done, Some(*bytes), None),
        Ok(ExportState::Failed(e)) => (types::ExportState::Failed, None, Some(e.clone())),
        Err(_) => (
            types::ExportState::Failed,
            None,
            Some("export state lost".to_string()),
        ),
    };
    Ok(Json(Export {
        blob: export.blob.to_string(),
        out: export.out.display().to_string(),
        state,
        error,
        bytes_total: p.bytes_total.load(Relaxed),
        bytes_done: p.bytes_done.load(Relaxed),
        chunks_fetched: p.chunks_fetched.load(Relaxed),
        chunks_present: p.chunks_present.load(Relaxed),
        bytes_written,
    }))
}

#[cfg(test)]
mod tests {
    use super::{document, table, ApiState};
    use std::collections::BTreeSet;

    /// Every `(METHOD, path)` `router` serves, read from its `Debug` form,
    /// the one place axum lists its routes: `paths: {RouteId(N): "/path"}`
    /// and, per route id, `allow_header: Bytes(b"GET,HEAD")`, in its
    /// `path_router` (its `fallback_router` holds only axum's own fallback).
    fn served(router: &axum::Router<ApiState>) -> BTreeSet<(String, String)> {
        let debug = format!("{router:?}");
        let text = debug.split("fallback_router:").next().unwrap_or_default();
        let paths = text
            .split_once("paths: {")
            .map(|(_, rest)| rest)
            .expect("axum's Router Debug form lists no paths: update `served` for this axum");
        let mut served = BTreeSet::new();
        for entry in paths.split("RouteId(").skip(1) {
            let Some((id, rest)) = entry.split_once("): \"") else {
                continue;
            };
            let path = rest.split('"').next().unwrap_or_default();
            let allow = text
                .split(&format!("RouteId({id}): MethodRouter("))
                .nth(1)
                .and_then(|r| r.split_once("allow_header: Bytes(b\""))
                .map_or("ANY", |(_, r)| r.split('"').next().unwrap_or_default());
            for method in allow.split(',').filter(|m| *m != "HEAD") {
                served.insert((method.to_string(), path.to_string()));
            }
        }
        served
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        documented
    }

    #[test]
    fn every_route_the_node_serves_is_in_the_openapi_document() {
        let (router, _) = table().split_for_parts();
        let served = served(&router);
        assert!(
            served.contains(&("GET".into(), "/v1/status".into())),
            "could not read the routes from axum's Router: {served:?}"
        );
        let documented = documented();
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes served but not in /v1/openapi.json (register them with `routes!` and a \
             #[utoipa::path] on the handler): {missing:?}"
        );
    }

    #[test]
    fn every_operation_of_the_document_says_what_it_answers_and_how_it_refuses() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = &op["responses"];
                assert!(
                    responses["200"].is_object(),
                    "{method} {path}: no 200 answer"
                );
                assert!(
                    responses["default"].is_object(),
                    "{method} {path}: no refusal"
                );
            }
        }
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Job"]["properties"]["state"]["$ref"],
            "#/components/schemas/JobState"
        );
        let states = &schemas["Task"]["properties"]["state"]["enum"];
        assert_eq!(states.as_array().map(Vec::len), Some(7), "{states}");
    }
}
