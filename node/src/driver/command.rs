//! What the API and the portal may ask of the driver: owns [`Command`]
//! (one variant per resource, each an enum whose variants carry typed
//! arguments and a oneshot [`Reply`] for a typed answer), the answers'
//! types, [`Refusal`] (why the driver said no), and [`DriverHandle`], the
//! cloneable sender that builds a command and awaits its answer — the
//! shape `net`'s handle has towards the swarm.
//!
//! Answers are the protocol's own values (records, views, progress) or
//! small structs of them; turning them into JSON is the API's. Must not
//! read or change the driver's state (`driver::answer` does, on the
//! driver's task) and must not know about HTTP.

use crate::functions::route::Plan;
use crate::functions::triggers::FireRefused;
use libp2p::PeerId;
use peerbatch_protocol::core::{Held, Progress, Stats};
use peerbatch_protocol::event::SideResult;
use peerbatch_protocol::function::keys::{KeyHash, KeyRefused};
use peerbatch_protocol::function::{FunctionEvent, FunctionView};
use peerbatch_protocol::ledger::ScheduleRecord;
use peerbatch_protocol::ledger::{JobRecord, PackageRecord, PoolRecord};
use peerbatch_protocol::schedule::Recurrence;
use peerbatch_protocol::{BlobId, JobId, JobSpec, NodeId, NodeInfo, TaskRef, TaskResult, TaskView};
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};

/// Where the driver sends one answer.
pub type Reply<T> = oneshot::Sender<T>;

/// Commands waiting for the driver, past which a caller waits for room.
const COMMAND_CHANNEL_CAPACITY: usize = 1024;

/// Something the API or the portal asks of the driver.
pub enum Command {
    Jobs(Jobs),
    Tasks(Tasks),
    Mesh(Mesh),
    Pools(Pools),
    Schedules(Schedules),
    Packages(Packages),
    Functions(Functions),
}

/// Jobs: list, look up, submit, cancel, forget.
pub enum Jobs {
    /// Every job this node knows.
    List { reply: Reply<Vec<JobEntry>> },
    /// One job (by id, unique id prefix or unique name), with why its
    /// waiting tasks fit no node if they do not.
    Show {
        job: String,
        reply: Reply<Result<JobEntry, Refusal>>,
    },
    /// A job's id (by id, unique id prefix or unique name).
    Resolve {
        job: String,
        reply: Reply<Result<JobId, Refusal>>,
    },
    /// Submits a job; `replicated` hears how many peers hold it once it is
    /// durable here.
    Submit {
        spec: JobSpec,
        replicated: Reply<usize>,
        reply: Reply<Result<Accepted, Refusal>>,
    },
    /// Cancels a job everywhere (its submitter or an admin only).
    Cancel {
        job: String,
        reply: Reply<Result<JobId, Refusal>>,
    },
    /// Forgets an ended job everywhere (its submitter or an admin only).
    Forget {
        job: String,
        reply: Reply<Result<JobId, Refusal>>,
    },
}

/// Tasks: a job's, one by id, one by position.
pub enum Tasks {
    /// A job's tasks, in the order of its expansion.
    List {
        job: String,
        reply: Reply<Result<JobTasks, Refusal>>,
    },
    /// Task `task` (its id) of job `job` (an id, id prefix or name).
    Show {
        job: String,
        task: String,
        reply: Reply<Result<FoundTask, Refusal>>,
    },
    /// A task's view, if this node's ledger has one.
    View {
        task: TaskRef,
        reply: Reply<Option<TaskView>>,
    },
}

/// The mesh as this node sees it, and this node in it.
pub enum Mesh {
    /// This node's own state: load, claiming, ledger and counters (for
    /// `status`, `/metrics` and the portal's live updates).
    State { reply: Reply<NodeState> },
    /// Every node the ledger knows.
    Nodes { reply: Reply<Vec<NodeEntry>> },
    /// Asks a node (a peer id, a unique prefix of one, or `self`) to drain
    /// or resume.
    Drain {
        node: String,
        drain: bool,
        reply: Reply<Result<NodeId, Refusal>>,
    },
    /// The connected peers: where blobs and logs are fetched from.
    Peers { reply: Reply<Vec<PeerId>> },
}

/// What this node's driver and core know of this node now.
pub struct NodeState {
    pub slots: u32,
    pub draining: bool,
    /// Claiming is paused: the ledger cannot be written.
    pub paused: bool,
    /// Why the ledger cannot be written now, if it cannot.
    pub storage_error: Option<String>,
    /// Why this node offers no slots now (drained, outside its policy).
    pub unavailable: Option<String>,
    pub claimed: usize,
    pub running: u32,
    pub peers_connected: usize,
    pub nodes_known: usize,
    /// Events in the ledger.
    pub events: usize,
    pub held: Held,
    pub stats: Stats,
    /// Times network input was held because the outbox was over its limit.
    pub input_held: u64,
    /// Every known job's tasks, by state.
    pub tasks: Progress,
}

/// A node the ledger knows, as this node sees it.
pub struct NodeEntry {
    pub id: NodeId,
    pub info: NodeInfo,
    pub is_self: bool,
    /// Heard from within a lease, by this node's clock.
    pub live: bool,
    pub connected: bool,
    /// Since it was last heard from.
    pub last_heard_ms: Option<u64>,
}

/// Pools: list, define, a member's start-task result.
pub enum Pools {
    /// Every pool with its members.
    List { reply: Reply<Vec<PoolEntry>> },
    /// Gives a pool a start task.
    Define {
        name: String,
        start_task: peerbatch_protocol::Command,
        wait_for_success: bool,
        reply: Reply<Result<(), Refusal>>,
    },
    /// How a node (a peer id or a prefix of one) ran a pool's start task.
    StartResult {
        pool: String,
        node: String,
        reply: Reply<Result<SideResult, Refusal>>,
    },
}

/// Job schedules: list, add, remove.
pub enum Schedules {
    /// Every active schedule.
    List { reply: Reply<Vec<ScheduleEntry>> },
    /// Adds a schedule.
    Add {
        name: String,
        recurrence: Recurrence,
        template: Box<JobSpec>,
        reply: Reply<Result<(), Refusal>>,
    },
    /// Stops a schedule (its author or an admin only).
    Remove {
        name: String,
        reply: Reply<Result<(), Refusal>>,
    },
}

/// Application packages: list, add a version.
pub enum Packages {
    /// Every package version the ledger holds.
    List { reply: Reply<Vec<PackageRecord>> },
    /// Adds a version stored as `blob`; answers whether it is new.
    Add {
        name: String,
        version: String,
        blob: BlobId,
        reply: Reply<Result<bool, Refusal>>,
    },
}

/// Functions: list, show, change, plan a call.
pub enum Functions {
    /// Every function the mesh knows, with its versions.
    List { reply: Reply<Vec<FunctionView>> },
    /// One function and its versions.
    Show {
        name: String,
        reply: Reply<Result<FunctionView, Refusal>>,
    },
    /// Publishes a change (deploy, roll back, remove, a key created or
    /// revoked); answers the number of the version serving afterwards.
    Change {
        event: FunctionEvent,
        reply: Reply<Result<Option<u32>, Refusal>>,
    },
    /// What a call of a function needs: its serving version and where it
    /// may run. `key`: the hash of the key a caller on the functions
    /// listener presented, which must open the function; `None` for a
    /// call through the node's API, whose token the guard checked.
    Plan {
        name: String,
        key: Option<KeyHash>,
        reply: Reply<Result<Plan, Refusal>>,
    },
    /// Adds a message to a function's queue (its job's id); `replicated`
    /// hears how many peers hold it once it is durable here.
    Enqueue {
        name: String,
        message: Vec<u8>,
        replicated: Reply<usize>,
        reply: Reply<Result<JobId, FireRefused>>,
    },
    /// A function's queue: its messages' jobs.
    Queue {
        name: String,
        reply: Reply<Result<Vec<QueuedMessage>, Refusal>>,
    },
    /// Fires the blob triggers a put of `blob` under `name` matches: the
    /// jobs submitted, by function.
    BlobPut {
        blob: BlobId,
        name: String,
        reply: Reply<Result<Vec<(String, JobId)>, FireRefused>>,
    },
}

/// One message of a function's queue: its job, its task's counts, and
/// its task's view once it ended without succeeding.
pub struct QueuedMessage {
    pub record: JobRecord,
    pub progress: Progress,
    pub ended: Option<TaskView>,
}

/// A pool and the nodes labelled with it or that ran its start task, each
/// with its start-task result if it has one.
pub struct PoolEntry {
    pub record: PoolRecord,
    pub members: Vec<(NodeId, Option<SideResult>)>,
}

/// A schedule and when it last fired.
pub struct ScheduleEntry {
    pub record: ScheduleRecord,
    pub last_fired_ms: Option<u64>,
}

/// A job with its tasks' counts by state.
pub struct JobEntry {
    pub record: JobRecord,
    pub progress: Progress,
    /// When this node forgets the job once it has ended.
    pub forget_at: Option<u64>,
    /// Why a waiting task of the job fits no node (only asked of
    /// [`Jobs::Show`]).
    pub unschedulable: Option<String>,
}

/// A submitted job, durable here.
pub struct Accepted {
    pub job: JobId,
    pub peers_connected: usize,
}

/// A job and its tasks.
pub struct JobTasks {
    pub record: JobRecord,
    /// Every task's view, in the order of the job's expansion.
    pub views: Vec<TaskView>,
    /// The gang of each multi-instance task that has one, by task index.
    pub gangs: BTreeMap<u32, Gang>,
    /// Why each task group fits no node of the mesh, if it does not.
    pub unschedulable: Vec<Option<String>>,
}

/// A multi-instance task's hosts for its view's attempt, in rank order,
/// each with its instance's result once reported (none for the primary,
/// whose result is the task's).
pub type Gang = Vec<(NodeId, Option<TaskResult>)>;

/// A task's view and its gang (empty unless a multi-instance task has one).
pub struct TaskEntry {
    pub view: TaskView,
    pub gang: Gang,
}

/// A task found by its id, with its entry if this node has a view of it.
pub struct FoundTask {
    pub task: TaskRef,
    pub entry: Option<TaskEntry>,
}

/// Why the driver refused a command; each says what and where.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// What the command names is not known here.
    #[error("{0}")]
    NotFound(String),
    /// This node may not do it.
    #[error("{0}")]
    NotAllowed(String),
    /// What the command carries is not valid.
    #[error("{0}")]
    Invalid(String),
    /// It clashes with what the ledger holds.
    #[error("{0}")]
    Conflict(String),
    /// The caller's function key does not open the function.
    #[error("function {name}: {why}")]
    Key { name: String, why: KeyRefused },
}

/// The driver has stopped: the node is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the node is shutting down")]
pub struct Gone;

/// Sends commands to the driver and awaits their answers.
#[derive(Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
}

impl DriverHandle {
    /// A handle and the receiver the driver reads.
    pub fn channel() -> (DriverHandle, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
        (DriverHandle { commands }, rx)
    }

    /// Sends the command `make` builds around a reply, and awaits the answer.
    pub async fn call<T, C: Into<Command>>(
        &self,
        make: impl FnOnce(Reply<T>) -> C,
    ) -> Result<T, Gone> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply).into())
            .await
            .map_err(|_| Gone)?;
        answer.await.map_err(|_| Gone)
    }
}

/// `From<R> for Command` for each resource enum `R`, so that a caller
/// builds `R`'s variant and [`DriverHandle::call`] wraps it.
macro_rules! resources {
    ($($resource:ident),*) => {$(
        impl From<$resource> for Command {
            fn from(c: $resource) -> Command {
                Command::$resource(c)
            }
        }
    )*};
}

resources!(Jobs, Tasks, Mesh, Pools, Schedules, Packages, Functions);
