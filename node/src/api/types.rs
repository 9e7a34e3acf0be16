//! The API's request and response bodies, as typed serde values shared by
//! the route handlers (which build them), the CLI (which reads them back
//! through `client`) and the OpenAPI document (`/v1/openapi.json`, whose
//! schemas are derived from them); the Python client in `clients/python`
//! is checked against that document's shapes by its tests.
//!
//! Owns these shapes and their field names, nothing else: must not compute
//! anything from a node's state (the handlers do) nor know about HTTP.

use peerbatch_protocol::core::Progress;
use peerbatch_protocol::{BlobId, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use utoipa::{IntoParams, ToSchema};

/// Every refusal: the HTTP status says what kind, `error` says what and where.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// A job's state, from its tasks' states: defined here only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// No task has started yet.
    Pending,
    /// Some task runs or has ended, and some has not ended.
    Running,
    /// Every task succeeded.
    Succeeded,
    /// Every task ended, some failed or was skipped.
    Failed,
    /// Every task ended, some because the job was cancelled.
    Cancelled,
}

impl JobState {
    /// The state of a job of `total` tasks whose tasks are at `p`.
    pub fn of(p: &Progress, total: u32) -> JobState {
        if p.done() == total {
            if p.cancelled > 0 {
                JobState::Cancelled
            } else if p.failed > 0 || p.skipped > 0 {
                JobState::Failed
            } else {
                JobState::Succeeded
            }
        } else if p.running > 0 || p.done() > 0 {
            JobState::Running
        } else {
            JobState::Pending
        }
    }

    pub fn ended(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }

    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A task's state in JSON: the protocol's `TaskState` by its `name()`.
mod task_state {
    use peerbatch_protocol::TaskState;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    pub fn serialize<S: Serializer>(state: &TaskState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TaskState, D::Error> {
        let name = String::deserialize(d)?;
        TaskState::from_name(&name)
            .ok_or_else(|| D::Error::custom(format!("{name:?} is not a task state")))
    }

    /// The schema: one of the states' names.
    pub fn schema() -> impl Into<RefOr<Schema>> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(TaskState::ALL.map(TaskState::name)))
    }
}

/// What a job's dependents do when one of its dependencies ends without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDependencyFailure {
    Skip,
    Fail,
    Run,
}

/// One job: `GET /v1/jobs` (a list) and `GET /v1/jobs/{job}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// 16 hex digits.
    pub id: String,
    pub name: String,
    pub priority: i32,
    pub state: JobState,
    /// How many tasks the job has; the counts below add up to it.
    pub tasks: u32,
    pub pending: u32,
    pub blocked: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub skipped: u32,
    /// Milliseconds since the Unix epoch, by the submitter's clock.
    pub submitted_ms: u64,
    pub max_wall_clock_ms: Option<u64>,
    /// Jobs (ids) every task of which must succeed first.
    pub after: Vec<String>,
    pub on_dependency_failure: OnDependencyFailure,
    /// The schedule that submitted it, if one did.
    pub schedule: Option<String>,
    pub occurrence_ms: Option<u64>,
    /// The peer id of the node it was submitted on.
    pub submitted_by: String,
    /// How long the job is kept after its submission; `null`: until it is
    /// forgotten with `peerbatch forget`.
    pub retention_ms: Option<u64>,
    /// When this node forgets the job (ms since the Unix epoch by its own
    /// clock: submission + retention + its clock-skew margin), if every
    /// task has ended by then; `null`: kept until forgotten by hand.
    pub forget_at_ms: Option<u64>,
    /// `GET /v1/jobs/{job}` only, while some task waits and no node of the
    /// mesh can run it: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<String>,
}

impl Job {
    /// How many tasks have ended (succeeded, failed, cancelled or skipped).
    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.cancelled + self.skipped
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Exited,
    Signaled,
    /// Killed at its wall-clock limit.
    TimedOut,
    FailedToStart,
    OutputsFailed,
}

/// Whether a multi-instance task's nodes have gathered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gang {
    None,
    Forming,
    Formed,
    Declined,
}

/// One instance of a multi-instance task.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GangHost {
    /// 0 is the primary.
    pub rank: usize,
    pub node: String,
    pub exit_code: Option<i32>,
}

/// One task of a job (`GET /v1/jobs/{job}/tasks`): its replicated state,
/// identical on every converged node.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    /// pending, blocked (waiting for dependencies), running, succeeded,
    /// failed, cancelled or skipped (a dependency ended without success).
    #[serde(with = "task_state")]
    #[schema(schema_with = task_state::schema)]
    pub state: TaskState,
    /// Why no node of the mesh can run it, while it waits.
    pub unschedulable: Option<String>,
    pub attempt: u32,
    /// The peer id of the node running it or that ran it.
    pub node: Option<String>,
    pub exit_code: Option<i32>,
    pub outcome: Option<Outcome>,
    pub wall_clock_limit_ms: Option<u64>,
    /// The blob id of its stored outputs (a tree).
    pub outputs: Option<String>,
    /// Multi-instance tasks only: how many nodes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<Gang>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<GangHost>>,
}

/// `POST /v1/jobs`: the job is durable here and, when peers exist, held by
/// `replicated_to` of them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    pub job_id: String,
    pub tasks: u64,
    pub replicated_to: usize,
    pub peers_connected: usize,
}

/// `POST /v1/jobs/file`: a job in the job-file format (the TOML of
/// `peerbatch submit`), as TOML text or as the same keys in JSON; exactly
/// one of `toml` and `job`. The node stages its local `source` inputs
/// itself, reading them by path.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobFile {
    pub toml: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub job: Option<serde_json::Value>,
    /// Names the job in error messages (`NAME:LINE:COL: what`) and is the
    /// job's name if it gives none (without a `.toml` ending). Default `job`.
    pub name: Option<String>,
    /// Absolute: where relative `source`, `lines` and `files` paths are read.
    #[schema(value_type = String)]
    pub dir: PathBuf,
}

/// `POST /v1/jobs/{job}/cancel`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub job_id: String,
    pub cancelled: bool,
}

/// `POST /v1/jobs/{job}/forget`: every node forgets the job once it holds
/// this request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Forgotten {
    pub job_id: String,
}

/// `PUT /v1/blobs/stream?name=…`: the name a blob is put under.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutName {
    /// Matched against functions' blob triggers (a put by a task fires none).
    #[serde(default)]
    pub name: Option<String>,
}

/// Which captured stream of a task to read.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// `stdout` (the default) or `stderr`.
    #[serde(default)]
    pub stream: Option<String>,
    /// An instance of a multi-instance task (0, the primary, by default).
    #[serde(default)]
    pub rank: Option<u32>,
    /// Stream the log as it is written, from its first byte, wherever the
    /// task runs, until the attempt ends (waits for a task not started yet);
    /// rank 0 only.
    #[serde(default)]
    pub follow: Option<bool>,
}

/// The reclaimer's passes (`--store-limit`), over the node's lifetime.
pub use crate::store::reclaim::ReclaimHistory;

/// `GET /v1/status`: this node's own state and counters.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub node: String,
    pub version: String,
    /// SHA-256 of the API's TLS certificate (`AB:CD:…`), when it serves
    /// HTTPS (off loopback).
    pub tls_fingerprint: Option<String>,
    /// Where its functions listener (`--functions-listen`) serves
    /// `ANY /fn/NAME/...` with function keys, if it has one.
    pub functions_url: Option<String>,
    pub slots: u32,
    pub draining: bool,
    /// Whether it takes new tasks now.
    pub claiming: bool,
    pub storage_error: Option<String>,
    /// Why its availability rules keep it from taking tasks, if they do.
    pub unavailable: Option<String>,
    pub claimed: usize,
    pub running: u32,
    pub peers_connected: usize,
    pub events: usize,
    /// Jobs finished and sealed: their tasks are read from the ledger's
    /// store when asked, not held in memory.
    pub sealed_jobs: usize,
    /// Tasks whose views (and whose ledger facts) are held in memory: those
    /// of jobs not sealed.
    pub held_views: usize,
    pub held_task_facts: usize,
    /// Ids of events about live work, in a B-tree; those of events about
    /// sealed jobs only take 32 bytes each in one sorted list.
    pub held_event_ids: usize,
    /// Bytes the node's allocator holds allocated (its state), and bytes in
    /// the allocator's touched pages (its part of RSS); none if the
    /// allocator cannot say.
    pub heap_allocated: Option<u64>,
    pub heap_resident: Option<u64>,
    pub ledger_bytes: u64,
    pub event_bytes: u64,
    pub attempts_started: u64,
    pub attempts_fenced: u64,
    pub events_rejected: u64,
    pub chunks_fetched: u64,
    pub chunks_served: u64,
    pub fetches_deferred: u64,
    pub input_held: u64,
    pub bad_chunks: u64,
    pub bad_chunks_by_peer: BTreeMap<String, u64>,
    pub store_limit: Option<u64>,
    pub reclaim: Option<ReclaimHistory>,
}

/// One node of the mesh (`GET /v1/nodes`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    /// The node answering.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Alive by the membership protocol, or suspected for less than a
    /// lease.
    pub live: bool,
    pub connected: bool,
    /// Since the last message from the node itself (a live node in a large
    /// mesh may go unheard for long: it is probed, not heard every period).
    pub last_heard_ms: Option<u64>,
    pub slots: u32,
    pub memory_mb: u64,
    pub gpus: u32,
    /// `key=value`.
    pub labels: Vec<String>,
    pub draining: bool,
    pub addrs: Vec<String>,
    pub version: String,
}

/// `POST /v1/nodes/{node}/drain`: drain (`true`) or resume (`false`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Drain {
    pub drain: bool,
}

/// The answer to a drain request: which node it was for.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Drained {
    pub node: String,
    pub drain: bool,
}

/// `POST /v1/blobs`: a file or directory on the node's machine, stored by
/// the node itself.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PutPath {
    /// Absolute.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// The name the blob is put under, which blob triggers match.
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/blobs/entries`: local files stored as one tree.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PutEntries {
    /// `[path in the tree, absolute local file]`.
    #[schema(value_type = Vec<(String, String)>)]
    pub entries: Vec<(String, PathBuf)>,
}

/// What storing a blob did: the answer of every route that stores one.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredBlob {
    /// 64 hex digits.
    #[serde(with = "hex_blob")]
    #[schema(value_type = String)]
    pub id: BlobId,
    pub files: u64,
    pub bytes: u64,
    /// Chunks (data and objects) the blob consists of.
    pub chunks: u64,
    /// Chunks that were not in the store before.
    pub chunks_written: u64,
    /// How long storing took on the node.
    pub ms: u64,
}

/// `POST /v1/blobs/{id}/export`: write a blob at `out` on the node's machine.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportBlob {
    /// Absolute; must not exist (a tree may go into an empty directory).
    #[schema(value_type = String)]
    pub out: PathBuf,
    /// Keep a copy of the fetched chunks in this node's store, so that it
    /// serves them to peers and a later get is local (default). `false`
    /// writes a file blob's fetched chunks into the file only.
    #[serde(default = "yes")]
    pub store: bool,
}

/// A blob id as its 64 hex digits in JSON.
mod hex_blob {
    use peerbatch_protocol::BlobId;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &BlobId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BlobId, D::Error> {
        let text = String::deserialize(d)?;
        BlobId::parse(&text).ok_or_else(|| D::Error::custom(format!("{text:?} is not a blob id")))
    }
}

fn yes() -> bool {
    true
}

/// `POST /v1/jobs/{job}/outputs/export`: write every succeeded task's
/// outputs at `out/TASK/...`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportOutputs {
    /// Absolute; must not exist (or be an empty directory).
    #[schema(value_type = String)]
    pub out: PathBuf,
}

/// An export started: poll `GET /v1/exports/{export}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportStarted {
    pub export: u64,
}

/// An outputs export started, with what it covers.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OutputsExportStarted {
    pub export: u64,
    pub job_id: String,
    /// The tree of every task's outputs, as `TASK/...`.
    pub tree: String,
    pub tasks: u32,
    pub succeeded: u32,
    pub tasks_with_outputs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    Running,
    Done,
    Failed,
}

/// `GET /v1/exports/{n}`: how far an export is.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Export {
    pub blob: String,
    pub out: String,
    pub state: ExportState,
    pub error: Option<String>,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub chunks_fetched: u64,
    pub chunks_present: u64,
    /// Once done.
    pub bytes_written: Option<u64>,
}

/// One schedule (`GET /v1/schedules`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    pub every_ms: Option<u64>,
    pub cron: Option<String>,
    /// The name of the job it submits.
    pub job_name: String,
    pub tasks: u64,
    pub added_ms: u64,
    pub last_fired_ms: Option<u64>,
}

/// `POST /v1/schedules`: exactly one of `every_ms` (at least 1000) and `cron`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AddSchedule {
    pub name: String,
    pub every_ms: Option<u64>,
    /// minute hour day month weekday, in the node's local time.
    pub cron: Option<String>,
    /// The job to submit, as `POST /v1/jobs` takes it.
    #[schema(value_type = Object)]
    pub template: peerbatch_protocol::JobSpec,
}

/// The name a definition was stored under.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Named {
    pub name: String,
}

/// `DELETE /v1/schedules/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    pub name: String,
    pub removed: bool,
}

/// One member node of a pool and its start task's result.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PoolMember {
    pub node: String,
    /// `pending`, `succeeded` or `failed: HOW`.
    pub start_task: String,
}

/// One pool (`GET /v1/pools`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Pool {
    pub name: String,
    pub start_task: String,
    pub wait_for_success: bool,
    pub nodes: Vec<PoolMember>,
}

/// `POST /v1/pools`: a pool's start task (a `/bin/sh -c` command line).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DefinePool {
    pub name: String,
    pub start_task: String,
    #[serde(default)]
    pub wait_for_success: bool,
}

/// Which captured stream of a start task to read.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// `stdout` (the default) or `stderr`.
    #[serde(default)]
    pub stream: Option<String>,
}

/// One package version (`GET /v1/packages`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub blob: String,
    pub added_by: String,
    pub added_ms: u64,
}

/// `POST /v1/packages`: a directory or `.tar`/`.tar.gz`/`.tgz` archive on
/// the node's machine.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AddPackage {
    pub name: String,
    pub version: String,
    /// Absolute.
    #[schema(value_type = String)]
    pub path: PathBuf,
}

/// A package version stored and announced (`new` is false when that
/// version already held the same content).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PackageAdded {
    pub name: String,
    pub version: String,
    pub blob: String,
    pub files: u64,
    pub new: bool,
}

/// `GET /v1/invite`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Invite {
    pub token: String,
    pub addrs: Vec<String>,
    pub admins: Vec<String>,
}

/// One entry of `GET /v1/waiting`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Waiting {
    /// Proved by the peer's TLS certificate.
    pub peer: String,
    /// The host name it gave (letters, digits, `-._`, at most 64; not proved).
    pub host: String,
    /// Its listen address if this node dialled it, else where its connection came from.
    pub addr: String,
    pub dialled: bool,
    /// Milliseconds since the Unix epoch.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// `POST /v1/waiting/{peer}/approve`, once the peer stored the key.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Approved {
    pub peer: String,
    /// This node, the admin that approved it.
    pub by: String,
}

/// A job named in a route.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// A job id, a unique prefix of one, or a job name.
    pub job: String,
}

/// A task of a job named in a route.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// A job id, a unique prefix of one, or a job name.
    pub job: String,
    /// A task id of that job.
    pub task: String,
}

/// A blob named in a route.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BlobPath {
    /// 64 hex digits.
    pub id: String,
}

/// `POST /v1/portal/login`: a one-time login link for the portal.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PortalLogin {
    /// The link's path on this node's API address (`/login?code=…`).
    pub path: String,
    /// Seconds the link stays usable (once).
    pub expires_in_s: u64,
}

/// One version of a function.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionVersion {
    /// 1 for a function's first version, then 2, 3, …
    pub number: u32,
    /// Its deploy event's id: the version's stable name.
    pub id: String,
    /// The bundle's tree blob.
    pub bundle: String,
    /// The handler command, run by `/bin/sh -c` in the bundle.
    pub command: String,
    /// `http`, `queue`, `timer:CRON`, `timer:every DURATION`, `blob:PREFIX`.
    pub triggers: Vec<String>,
    pub timeout_ms: u64,
    /// Whether a call whose node died before answering is tried once more elsewhere.
    pub retry: bool,
    /// Attempts at a timer's, message's or blob's invocation before it
    /// fails (a message is then dead-lettered).
    pub max_attempts: u32,
    /// Its warm workers; none when the handler runs once per call.
    pub warm: Option<WarmWorkers>,
    pub deployed_by: String,
    pub deployed_ms: u64,
    /// Whether this version serves calls now.
    pub serving: bool,
}

/// A function and its versions, oldest first (`GET /v1/functions`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Function {
    pub name: String,
    /// The node that deployed its first version: with admins, the only
    /// node whose deploys, rollbacks and removals count.
    pub owner: String,
    /// The number of the version serving calls; none once removed.
    pub serving: Option<u32>,
    pub versions: Vec<FunctionVersion>,
}

/// `POST /v1/functions`: a new version of function `name` from a
/// directory or `.tar`/`.tar.gz`/`.tgz` archive on the node's machine.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeployFunction {
    pub name: String,
    /// Absolute.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Run by `/bin/sh -c` in a fresh copy of the bundle at each call.
    pub command: String,
    /// `http`, `queue`, `timer:CRON` (5 fields, or 6 with seconds
    /// first), `timer:every DURATION` or `blob:PREFIX`.
    pub triggers: Vec<String>,
    /// Kill the handler and answer 504 after this long (default 30 s, at most 15 min).
    pub timeout_ms: Option<u64>,
    /// Try a call once more elsewhere if its node dies before answering.
    pub retry: bool,
    /// Attempts at a timer's, message's or blob's invocation before it
    /// fails (default 5; a message is then dead-lettered).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Keep the handler up between calls (AWS Lambda's runtime API) instead
    /// of running it once per call.
    #[serde(default)]
    pub warm: Option<WarmWorkers>,
}

/// `POST /v1/functions/{name}/queue`: the message is in the ledger.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Enqueued {
    pub name: String,
    /// The message's job, which runs the handler with it on stdin.
    pub job_id: String,
    /// Peers that acknowledged holding it (0 with none connected).
    pub replicated_to: usize,
}

/// `GET /v1/functions/{name}/queue`: its messages as the ledger shows them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionQueue {
    pub name: String,
    /// Waiting to run, or to be retried.
    pub pending: u64,
    pub running: u64,
    /// Handled: the handler exited 0.
    pub done: u64,
    /// Every attempt failed (or the message was cancelled), newest first.
    pub dead_letters: Vec<DeadLetter>,
}

/// A message whose every attempt failed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    pub job_id: String,
    pub enqueued_ms: u64,
    pub message_bytes: u64,
    /// Attempts made.
    pub attempts: u32,
    /// How the last attempt ended, with the end of its stderr.
    pub error: String,
}

/// How a warm function's workers are kept on each node.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
pub struct WarmWorkers {
    /// Workers each available node keeps up even without calls.
    pub min_warm: u32,
    /// Most workers of the version on one node at once.
    pub max_per_node: u32,
    /// A worker beyond `min_warm` idle this long stops.
    pub idle_timeout_ms: u64,
}

/// `POST /v1/functions/{name}/rollback`: serve an earlier version again.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RollbackFunction {
    pub version: u32,
}

/// A function after a deploy, rollback or removal.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionChanged {
    pub name: String,
    /// The number of the version serving calls now; none once removed.
    pub serving: Option<u32>,
    /// For a deploy: the bundle's tree blob and its count of files.
    pub bundle: Option<String>,
    pub files: Option<u64>,
}

/// `POST /v1/functions/{name}/keys`: a new key that opens the function
/// to callers on the functions listener.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateFunctionKey {
    /// 1 to 64 letters, digits, `-`, `_` or `.`, unique among the
    /// function's keys not revoked; `default` if none.
    pub label: Option<String>,
}

/// A new function key. Its secret is shown this once: the ledger keeps
/// only its hash.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionKeyCreated {
    pub name: String,
    pub label: String,
    /// The secret, for the `x-functions-key` header or `?code=`.
    pub key: String,
}

/// One of a function's keys, without its secret.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionKey {
    pub label: String,
    /// The node that created it.
    pub created_by: String,
    pub created_ms: u64,
    /// When it was revoked; it opens nothing since.
    pub revoked_ms: Option<u64>,
}

/// A function key after it was revoked.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionKeyRevoked {
    pub name: String,
    pub label: String,
}

/// A function's calls by how they were answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    /// The handler answered (200 for a handler run once per call).
    #[serde(rename = "2xx")]
    pub ok: u64,
    #[serde(rename = "3xx")]
    pub redirect: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// The handler failed (500) or its node did (5xx other than 503 and 504).
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// No node had room for the call, or no warm worker took it in time.
    #[serde(rename = "503")]
    pub busy: u64,
    /// The handler ran past its time-out and was killed.
    #[serde(rename = "504")]
    pub timed_out: u64,
}

/// How many calls of a function ran, how they ended and how long they
/// took, on one node or on every node that answered, since each started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallFigures {
    pub calls: u64,
    pub by_status: StatusCounts,
    /// Calls that started in the 60 s before the answer.
    pub last_minute: u64,
    pub mean_ms: Option<u64>,
    /// An upper bound of the median duration (within a factor of two).
    pub p50_ms: Option<u64>,
    /// An upper bound of the 99th percentile (within a factor of two).
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// One node's figures of a function's calls.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeCallFigures {
    pub node: String,
    pub figures: CallFigures,
}

/// One call of a function, as the node that ran it keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    /// The node that ran it; for a call no node ran (502: the node
    /// running it died, 503: no node had room), the node that answered it.
    pub node: String,
    #[serde(flatten)]
    pub call: crate::functions::calls::CallRecord,
}

/// A node asked for its calls that did not answer, and why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Unanswered {
    pub node: String,
    pub why: String,
}

/// `GET /v1/functions/{name}/calls`: a function's calls on every node
/// that answered in time.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionCalls {
    pub name: String,
    /// Over every node that answered.
    pub total: CallFigures,
    /// Each node that ran some of its calls.
    pub nodes: Vec<NodeCallFigures>,
    /// The newest calls, newest last, at most `limit`.
    pub calls: Vec<FunctionCall>,
    /// Nodes asked that did not answer in time: their calls are missing.
    pub unanswered: Vec<Unanswered>,
}

/// One function's figures over the nodes that answered.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionFigures {
    pub name: String,
    pub total: CallFigures,
}

/// `GET /v1/function-calls`: every function's calls on every node that
/// answered in time, by name.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CallsSummary {
    pub functions: Vec<FunctionFigures>,
    pub unanswered: Vec<Unanswered>,
}

/// How many of a function's newest calls to answer.
#[derive(Clone, Debug, Deserialize, IntoParams)]
pub struct CallsQuery {
    /// At most this many calls, newest last (default 50, at most 1,000;
    /// each node keeps its 32 newest per function).
    pub limit: Option<u32>,
}
