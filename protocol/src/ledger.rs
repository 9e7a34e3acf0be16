//! The replicated ledger's fold: from a set of events to job and task state.
//!
//! Owns the rules that turn facts into state — who won a claim, which attempt
//! is live, which result is canonical, when a task is terminal — and who may
//! write what: an event that fails `validate` is refused; the others are kept
//! as facts and judged at view time, so that a fact from a node that may not
//! write it changes nothing (a result from a node that did not claim its
//! attempt, a cancel from neither the submitter nor an admin, a drain of
//! another node, a scheduled job that is not its schedule's template, a
//! function's fired job that is not the job its firing is). The
//! fold is a pure function of the *set* of events: insertion order,
//! duplicates and subsets arriving in any order give the same state. Must
//! not know about peers, liveness or IO, nor read a clock: the one rule that
//! needs the time (a timestamp far ahead does not count yet) takes the
//! caller's wall clock as an argument.

mod facts;
mod forget;
mod ids;
mod seal;

use crate::codec;
use crate::deps::{DepGraph, Tally};
use crate::event::{Claim, Event, EventBody, NodeInfo, SideResult, TaskResult};
use crate::exit::{verdict, ExitAction, Verdict};
use crate::gang::{GangFacts, GangView};
use crate::ids::{BlobId, EventId, JobId, NodeId, TaskRef};
use crate::job::{JobSpec, OnDependencyFailure};
use crate::per_task::PerTask;
use crate::schedule::Recurrence;
use crate::sync::Fingerprints;
use crate::trigger::{Firing, Issuer, Origin};
use crate::validate::InvalidEvent;
use facts::TaskFacts;
pub use forget::{Forgot, Tombstone};
pub use ids::{EventIds, Merged};
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A job as the ledger knows it.
/// A schedule as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub name: String,
    pub recurrence: Recurrence,
    pub template: JobSpec,
    pub added_ms: u64,
    pub event: EventId,
    /// The node that added this version: it (or an admin) may remove it.
    pub author: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: JobId,
    pub event: EventId,
    pub spec: JobSpec,
    pub submitted_by: NodeId,
    /// The submitter's wall clock at submission; for a scheduled or
    /// timer-fired job its occurrence's time (any node may fire it, so no firer's clock counts).
    pub submitted_ms: u64,
    pub task_count: u32,
    /// Who waits for whom, if any task does.
    pub deps: Option<Arc<DepGraph>>,
}

/// An application package version as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    pub blob: BlobId,
    pub added_by: NodeId,
    pub added_ms: u64,
    event: EventId,
}

/// How far ahead of the reader's wall clock a timestamp in an event may
/// be and still count now; one further ahead counts once the clock gets
/// there (so `at_ms = u64::MAX` never does).
pub const CLOCK_AHEAD_MS: u64 = 5 * 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Pending,
    /// Waiting for dependencies to succeed.
    Blocked,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Will never run: a dependency failed, was cancelled or was skipped.
    Skipped,
}

impl TaskState {
    /// Every state, in declaration order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::Blocked,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Skipped,
    ];

    /// The state [`TaskState::name`] names.
    pub fn from_name(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Skipped
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Blocked => "blocked",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Skipped => "skipped",
        }
    }
}

/// How a job stands for the jobs that wait for it (`after`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// Some task is not terminal yet and none ended without success (or
    /// the job is not known here).
    #[default]
    Unfinished,
    /// Every task succeeded.
    Succeeded,
    /// Every task ended, some without success (failed, cancelled,
    /// skipped).
    Failed,
    /// Some task ended without success and some have not ended yet: a
    /// dependent skipped or failed for it can be so at once; one that runs
    /// anyway (`run`) waits for the job to end.
    Failing,
}

impl JobOutcome {
    /// From counts of a job's `total` tasks: succeeded, and ended otherwise.
    pub fn of(succeeded: u32, ended_otherwise: u32, total: u32) -> JobOutcome {
        let ended = succeeded as u64 + ended_otherwise as u64 >= total as u64;
        match (ended_otherwise > 0, ended) {
            (true, true) => JobOutcome::Failed,
            (true, false) => JobOutcome::Failing,
            (false, true) if total > 0 => JobOutcome::Succeeded,
            _ => JobOutcome::Unfinished,
        }
    }
}

/// How many `after` jobs deep the pure fold follows a chain.
const MAX_AFTER_DEPTH: u32 = 64;

/// A task's replicated state: the same on every node holding the same events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub task: TaskRef,
    pub state: TaskState,
    /// The live attempt, or the canonical result's attempt once terminal.
    pub attempt: u32,
    /// The claim winner while running, the canonical result's node once done.
    pub node: Option<NodeId>,
    /// The canonical result, once there is one.
    pub result: Option<TaskResult>,
    /// A running multi-instance task's gang, once its primary invited one.
    pub gang: Option<GangView>,
}

/// What applying one event changed.
#[derive(Debug, Default)]
pub struct Touched {
    pub tasks: Vec<TaskRef>,
    pub new_jobs: Vec<JobId>,
    pub cancelled_jobs: Vec<JobId>,
    pub nodes: Vec<NodeId>,
}

#[derive(Default)]
pub struct Ledger {
    ids: EventIds,
    fingerprints: Fingerprints,
    jobs: BTreeMap<JobId, JobRecord>,
    /// Every submit of a job with an origin (a schedule's or a function
    /// trigger's), by job id: the lowest event id of those fired from a
    /// version of their schedule or function is the job.
    scheduled: BTreeMap<JobId, BTreeMap<EventId, JobRecord>>,
    /// Jobs with an origin by what fired them.
    scheduled_by_name: BTreeMap<Issuer, BTreeSet<JobId>>,
    /// The authors of every cancel of each job.
    cancels: BTreeMap<JobId, BTreeSet<NodeId>>,
    /// Jobs that a node allowed to cancel them cancelled.
    cancelled: BTreeSet<JobId>,
    /// Every task's facts, each job's in one block once its record is in.
    facts: PerTask<TaskFacts>,
    /// Multi-instance tasks' gang steps (few tasks have any).
    gangs: BTreeMap<TaskRef, GangFacts>,
    nodes: BTreeMap<NodeId, (u64, NodeInfo)>,
    packages: BTreeMap<(String, String), PackageRecord>,
    functions: crate::function::Functions,
    /// Jobs where some result's exit code says to fail the whole job.
    failed_jobs: BTreeSet<JobId>,
    /// Every version of every schedule, and who asked to remove each.
    schedules: BTreeMap<String, BTreeMap<(u64, EventId), ScheduleRecord>>,
    removed_schedules: BTreeMap<EventId, BTreeSet<NodeId>>,
    /// Occurrence times each schedule or function timer has a job for.
    fired: BTreeMap<Issuer, BTreeSet<u64>>,
    /// Every drain or resume request per node: time, event, drain, author.
    drain_requests: BTreeMap<NodeId, BTreeSet<(u64, EventId, bool, NodeId)>>,
    /// Every definition of every pool; the newest `(added_ms, id)` counts.
    pools: BTreeMap<String, BTreeMap<(u64, EventId), PoolRecord>>,
    /// Start-task results per (pool definition, node): a success is kept
    /// over a failure, else the smaller encoding (any order gives the same).
    start_results: BTreeMap<(EventId, NodeId), SideResult>,
    /// Nodes that may cancel any job and drain any node.
    admins: BTreeSet<NodeId>,
    /// Finished jobs whose task facts are out of memory (see `seal`), and
    /// how each ended.
    sealed: BTreeMap<JobId, seal::Sealed>,
    /// Forgotten jobs (see `forget`).
    forgotten: BTreeMap<JobId, Tombstone>,
    /// The authors of every request to forget each job, and their ids
    /// (kept while the job's tombstone is).
    forgets: BTreeMap<JobId, BTreeSet<NodeId>>,
    forget_events: BTreeMap<JobId, BTreeSet<EventId>>,
    /// Ids of the events that name each job outside its task facts:
    /// submits and cancels.
    job_events: BTreeMap<JobId, BTreeSet<EventId>>,
}

/// A pool definition as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRecord {
    pub name: String,
    pub start_task: crate::job::Command,
    pub wait_for_success: bool,
    pub added_ms: u64,
    pub event: EventId,
}

/// The job id a submit creates: its schedule's or timer's occurrence's,
/// or else the event id's first 8 bytes.
pub fn job_id_for(event: &EventId, job: &JobSpec) -> JobId {
    job.origin
        .as_ref()
        .and_then(Origin::job_id)
        .unwrap_or_else(|| job_id_of(event))
}

/// The job id that a submit event with this id creates (no schedule).
pub fn job_id_of(event: &EventId) -> JobId {
    let mut id = [0u8; 8];
    id.copy_from_slice(&event.0[..8]);
    JobId(id)
}

impl Ledger {
    /// An empty ledger whose fold lets `admins` act for every node.
    pub fn with_admins(admins: BTreeSet<NodeId>) -> Ledger {
        Ledger {
            admins,
            ..Ledger::default()
        }
    }

    pub fn admins(&self) -> &BTreeSet<NodeId> {
        &self.admins
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.ids.contains(id)
    }

    pub fn event_count(&self) -> usize {
        self.ids.len()
    }

    pub fn ids(&self) -> &EventIds {
        &self.ids
    }

    pub fn fingerprints(&self) -> &Fingerprints {
        &self.fingerprints
    }

    pub fn job(&self, id: &JobId) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    /// Whether a node allowed to cancel the job did.
    pub fn is_cancelled(&self, job: &JobId) -> bool {
        self.cancelled.contains(job)
    }

    /// Whether `node` may cancel `job`: an admin, the node that submitted
    /// it, or for a scheduled job a node that added a version of its
    /// schedule (any node may fire an occurrence, so firing it gives no
    /// say over it).
    pub fn may_cancel(&self, job: &JobId, node: &NodeId) -> bool {
        if self.admins.contains(node) {
            return true;
        }
        let Some(record) = self.jobs.get(job) else {
            return false;
        };
        match &record.spec.origin {
            None => record.submitted_by == *node,
            Some(Origin::Schedule(o)) => self
                .schedules
                .get(&o.schedule)
                .is_some_and(|versions| versions.values().any(|v| v.author == *node)),
            Some(Origin::Function(f)) => self
                .functions
                .view(&f.function, &self.admins, u64::MAX)
                .is_some_and(|v| v.owner == *node),
        }
    }

    /// Whether `author` may drain or resume `node`: itself or an admin.
    pub fn may_drain(&self, author: &NodeId, node: &NodeId) -> bool {
        author == node || self.admins.contains(author)
    }

    /// Whether `node` may remove schedule version `version`: its author or
    /// an admin.
    pub fn may_remove_schedule(&self, version: &ScheduleRecord, node: &NodeId) -> bool {
        version.author == *node || self.admins.contains(node)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &NodeInfo)> {
        self.nodes.iter().map(|(id, (_, info))| (id, info))
    }

    /// The sequence number of a node's newest announce.
    pub fn announce_seq(&self, id: &NodeId) -> Option<u64> {
        self.nodes.get(id).map(|(seq, _)| *seq)
    }

    pub fn node(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id).map(|(_, info)| info)
    }

    /// Active schedules at wall-clock time `wall_ms`: each name's newest
    /// version (not dated more than [`CLOCK_AHEAD_MS`] later), unless it
    /// was removed.
    pub fn schedules(&self, wall_ms: u64) -> impl Iterator<Item = &ScheduleRecord> {
        self.schedules.values().filter_map(move |versions| {
            let newest = newest_at(versions, wall_ms)?;
            let removed = self
                .removed_schedules
                .get(&newest.event)
                .is_some_and(|by| by.iter().any(|n| self.may_remove_schedule(newest, n)));
            (!removed).then_some(newest)
        })
    }

    /// Every pool's current definition at wall-clock time `wall_ms`: the
    /// newest not dated more than [`CLOCK_AHEAD_MS`] later.
    pub fn pools(&self, wall_ms: u64) -> impl Iterator<Item = &PoolRecord> {
        self.pools
            .values()
            .filter_map(move |versions| newest_at(versions, wall_ms))
    }

    /// How `node`'s run of the start task of pool definition `definition` ended.
    pub fn start_result(&self, definition: &EventId, node: &NodeId) -> Option<&SideResult> {
        self.start_results.get(&(*definition, *node))
    }

    /// Whether the newest request for `node` from itself or an admin asks
    /// it to drain, judged at wall-clock time `wall_ms`: a request dated
    /// more than [`CLOCK_AHEAD_MS`] later does not count yet.
    pub fn drain_requested(&self, node: &NodeId, wall_ms: u64) -> Option<bool> {
        let horizon = wall_ms.saturating_add(CLOCK_AHEAD_MS);
        self.drain_requests
            .get(node)?
            .iter()
            .rev()
            .find(|(at, _, _, author)| *at <= horizon && self.may_drain(author, node))
            .map(|(_, _, drain, _)| *drain)
    }

    /// The latest occurrence time a schedule has a job for, among those
    /// not more than [`CLOCK_AHEAD_MS`] after wall-clock time `wall_ms`
    /// (an occurrence fired far ahead would otherwise stop the schedule).
    pub fn last_fired(&self, issuer: &Issuer, wall_ms: u64) -> Option<u64> {
        let horizon = wall_ms.saturating_add(CLOCK_AHEAD_MS);
        self.fired
            .get(issuer)?
            .range(..=horizon)
            .next_back()
            .copied()
    }

    pub fn packages(&self) -> impl Iterator<Item = &PackageRecord> {
        self.packages.values()
    }

    /// Whether `node` claimed `attempt` of `task` (whether or not the
    /// claim counts yet).
    pub fn claimed_by(&self, task: &TaskRef, attempt: u32, node: &NodeId) -> bool {
        self.facts
            .get(task)
            .is_some_and(|f| f.claimed_by(attempt, node))
    }

    /// A multi-instance task's gang steps, if it has any.
    pub fn gang(&self, task: &TaskRef) -> Option<&GangFacts> {
        self.gangs.get(task)
    }

    /// Every function's name, in order (see [`Ledger::function`]).
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.names()
    }

    /// The jobs function `name`'s triggers fired that count, in id order.
    pub fn function_jobs(&self, name: &str) -> impl Iterator<Item = &JobRecord> {
        let issuer = Issuer::Function(name.to_string());
        let jobs = self.scheduled_by_name.get(&issuer).into_iter().flatten();
        jobs.filter_map(|j| self.jobs.get(j))
    }

    /// The function `name` at wall-clock time `wall_ms`: changes dated
    /// more than [`CLOCK_AHEAD_MS`] later do not count yet, nor those from
    /// a node other than its owner or an admin.
    pub fn function(&self, name: &str, wall_ms: u64) -> Option<crate::function::FunctionView> {
        let horizon = wall_ms.saturating_add(CLOCK_AHEAD_MS);
        self.functions.view(name, &self.admins, horizon)
    }

    pub fn package(&self, name: &str, version: &str) -> Option<&PackageRecord> {
        self.packages.get(&(name.to_string(), version.to_string()))
    }

    /// Adds an already verified event. Returns what changed, or `None` if the
    /// ledger already held it or refused it (see [`Ledger::admit`]).
    pub fn insert(&mut self, id: EventId, event: &Event) -> Option<Touched> {
        self.admit(id, event).ok().flatten()
    }

    /// Adds an already verified event unless `validate` refuses it. Returns
    /// what changed, or `None` if the ledger already held it.
    pub fn admit(&mut self, id: EventId, event: &Event) -> Result<Option<Touched>, InvalidEvent> {
        if self.ids.contains(&id) {
            return Ok(None);
        }
        crate::validate::check(&event.body)?;
        if self.about_forgotten(&id, &event.body) {
            return Ok(None);
        }
        self.ids.insert(id);
        self.fingerprints.add(&id);
        let mut touched = Touched::default();
        match &event.body {
            EventBody::JobSubmitted {
                job, submitted_ms, ..
            } => {
                let job_id = job_id_for(&id, job);
                self.note_job_event(job_id, id);
                let record = JobRecord {
                    id: job_id,
                    event: id,
                    spec: job.clone(),
                    submitted_by: event.author,
                    submitted_ms: (job.origin.as_ref())
                        .and_then(Origin::occurrence_ms)
                        .unwrap_or(*submitted_ms),
                    task_count: job.task_count().min(u32::MAX as u64) as u32,
                    deps: DepGraph::build(job).ok().flatten().map(Arc::new),
                };
                match &job.origin {
                    None => self.install(record, &mut touched),
                    Some(o) => {
                        self.scheduled.entry(job_id).or_default().insert(id, record);
                        self.scheduled_by_name
                            .entry(o.issuer())
                            .or_default()
                            .insert(job_id);
                        self.settle_scheduled(job_id, &mut touched);
                    }
                }
            }
            EventBody::JobCancelled { job } => {
                self.note_job_event(*job, id);
                self.cancels.entry(*job).or_default().insert(event.author);
                self.judge_cancel(*job, &mut touched);
            }
            EventBody::JobForgotten { job } => self.note_forget(*job, id, event.author),
            EventBody::Claims { .. }
            | EventBody::Finished { .. }
            | EventBody::Reclaimed { .. }
            | EventBody::Gang { .. } => {
                self.add_facts(event.author, &event.body, None, &mut touched);
            }
            EventBody::NodeAnnounce { seq, info } => {
                // Latest seq wins; equal seqs (never written by one honest node) tie on bytes.
                let newer = self.nodes.get(&event.author).is_none_or(|(old_seq, old)| {
                    (*seq, codec::encode(info)) > (*old_seq, codec::encode(old))
                });
                if newer {
                    self.nodes.insert(event.author, (*seq, info.clone()));
                    touched.nodes.push(event.author);
                }
            }
            EventBody::ScheduleAdded {
                name,
                recurrence,
                template,
                added_ms,
            } => {
                let record = ScheduleRecord {
                    name: name.clone(),
                    recurrence: recurrence.clone(),
                    template: template.clone(),
                    added_ms: *added_ms,
                    event: id,
                    author: event.author,
                };
                self.schedules
                    .entry(name.clone())
                    .or_default()
                    .insert((*added_ms, id), record);
                // Jobs fired from this version, and cancels by its author.
                self.settle_issued(Issuer::Schedule(name.clone()), &mut touched);
            }
            EventBody::DrainRequested { node, drain, at_ms } => {
                self.drain_requests.entry(*node).or_default().insert((
                    *at_ms,
                    id,
                    *drain,
                    event.author,
                ));
                touched.nodes.push(*node);
            }
            EventBody::PoolDefined {
                name,
                start_task,
                wait_for_success,
                added_ms,
            } => {
                let record = PoolRecord {
                    name: name.clone(),
                    start_task: start_task.clone(),
                    wait_for_success: *wait_for_success,
                    added_ms: *added_ms,
                    event: id,
                };
                self.pools
                    .entry(name.clone())
                    .or_default()
                    .insert((*added_ms, id), record);
                touched.nodes.push(event.author);
            }
            EventBody::StartTaskFinished {
                definition, result, ..
            } => {
                let key = (*definition, event.author);
                let better = self.start_results.get(&key).is_none_or(|old| {
                    let rank = |r: &SideResult| (!r.outcome.success(), codec::encode(r));
                    rank(result) < rank(old)
                });
                if better {
                    self.start_results.insert(key, result.clone());
                    touched.nodes.push(event.author);
                }
            }
            EventBody::ScheduleRemoved { added, .. } => {
                self.removed_schedules
                    .entry(*added)
                    .or_default()
                    .insert(event.author);
            }
            EventBody::Function(f) => {
                self.functions.insert(id, event.author, f);
                // Jobs fired from it, and cancels by its owner.
                self.settle_issued(Issuer::Function(f.name().to_string()), &mut touched);
            }
            EventBody::PackageAdded {
                name,
                version,
                blob,
                added_ms,
            } => {
                let record = PackageRecord {
                    name: name.clone(),
                    version: version.clone(),
                    blob: *blob,
                    added_by: event.author,
                    added_ms: *added_ms,
                    event: id,
                };
                // A version is immutable: of two adds, the lower event id wins everywhere.
                match self.packages.entry((name.clone(), version.clone())) {
                    Entry::Vacant(slot) => {
                        slot.insert(record);
                    }
                    Entry::Occupied(mut slot) if id < slot.get().event => {
                        slot.insert(record);
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
        Ok(Some(touched))
    }

    /// Adds what a claims, results, reclaims or gang event states about
    /// tasks (of job `only`, if given; other events add nothing).
    fn add_facts(
        &mut self,
        author: NodeId,
        body: &EventBody,
        only: Option<JobId>,
        touched: &mut Touched,
    ) {
        // Facts about a forgotten job's tasks (in an event that also names
        // a remembered job) are not kept.
        let forgotten: BTreeSet<JobId> = body
            .task_jobs()
            .into_iter()
            .filter(|j| self.is_forgotten(j))
            .collect();
        let wanted =
            |task: &TaskRef| only.is_none_or(|j| j == task.job) && !forgotten.contains(&task.job);
        match body {
            EventBody::Claims { claims } => {
                for c in claims.iter().filter(|c| wanted(&c.task)) {
                    self.facts
                        .get_or_default(c.task)
                        .add_claim(c.attempt, author);
                    self.judge_fail_job(c.task, touched);
                }
            }
            EventBody::Finished { results } => {
                for r in results.iter().filter(|r| wanted(&r.task)) {
                    self.facts.get_or_default(r.task).add_result(author, r);
                    self.judge_fail_job(r.task, touched);
                }
            }
            EventBody::Reclaimed { claims } => {
                for Claim { task, attempt } in claims.iter().filter(|c| wanted(&c.task)) {
                    self.facts.get_or_default(*task).add_reclaim(*attempt);
                    self.judge_fail_job(*task, touched);
                }
            }
            EventBody::Gang {
                task,
                attempt,
                step,
            } if wanted(task) => {
                self.gangs
                    .entry(*task)
                    .or_default()
                    .insert(*attempt, author, step.clone());
                touched.tasks.push(*task);
            }
            _ => {}
        }
    }

    /// Makes `record` its job unless a submit with a lower event id did
    /// (two submits sharing an 8-byte prefix, or two firings of one
    /// occurrence), everywhere alike.
    fn install(&mut self, record: JobRecord, touched: &mut Touched) {
        let job_id = record.id;
        if self
            .jobs
            .get(&job_id)
            .is_some_and(|old| old.event <= record.event)
        {
            return;
        }
        self.facts.size_job(job_id, record.task_count);
        self.jobs.insert(job_id, record);
        touched.new_jobs.push(job_id);
        // Results may have come first: judge them by this spec.
        let fails = self
            .facts
            .job(job_id)
            .any(|(task, _)| self.task_fails_job(task));
        if fails {
            self.failed_jobs.insert(job_id);
        } else {
            self.failed_jobs.remove(&job_id);
        }
        self.judge_cancel(job_id, touched);
    }

    /// Settles again every job `issuer` fired, and judges their cancels,
    /// once a version of it arrived.
    fn settle_issued(&mut self, issuer: Issuer, touched: &mut Touched) {
        let jobs = (self.scheduled_by_name.get(&issuer))
            .cloned()
            .unwrap_or_default();
        for job in jobs {
            self.settle_scheduled(job, touched);
            self.judge_cancel(job, touched);
        }
    }

    /// Makes the lowest submit of scheduled job `job` that was fired from a
    /// version of its schedule the job, if there is one yet.
    fn settle_scheduled(&mut self, job: JobId, touched: &mut Touched) {
        let Some(submits) = self.scheduled.get(&job) else {
            return;
        };
        let Some(record) = submits.values().find(|r| self.fired_validly(&r.spec)) else {
            return;
        };
        let record = record.clone();
        if let Some(o) = &record.spec.origin {
            if let Some(at_ms) = o.occurrence_ms() {
                self.fired.entry(o.issuer()).or_default().insert(at_ms);
            }
        }
        self.install(record, touched);
    }

    /// Whether a job with an origin is what that origin fires.
    fn fired_validly(&self, spec: &JobSpec) -> bool {
        match &spec.origin {
            None => false,
            Some(Origin::Schedule(_)) => self.fired_from_schedule(spec),
            Some(Origin::Function(f)) => self.fired_from_function(f, spec),
        }
    }

    /// Whether `spec` is the job `firing` is with the version it names, a
    /// counted version of its function with a trigger that fires it.
    fn fired_from_function(&self, firing: &Firing, spec: &JobSpec) -> bool {
        let Some(view) = (self.functions).view(&firing.function, &self.admins, u64::MAX) else {
            return false;
        };
        view.versions.iter().any(|v| {
            v.event == firing.version && v.spec.fires(firing) && v.spec.fired_job(firing) == *spec
        })
    }

    /// Whether a scheduled job's spec is the template of a version of its
    /// schedule, for an occurrence that version can have: a submit that is
    /// not cannot take an occurrence's job id.
    fn fired_from_schedule(&self, spec: &JobSpec) -> bool {
        let Some(Origin::Schedule(o)) = &spec.origin else {
            return false;
        };
        let Some(versions) = self.schedules.get(&o.schedule) else {
            return false;
        };
        let bare = JobSpec {
            origin: None,
            ..spec.clone()
        };
        versions
            .values()
            .any(|v| v.template == bare && v.recurrence.has_occurrence(o.at_ms))
    }

    /// Marks `job` cancelled once a node allowed to cancel it has.
    fn judge_cancel(&mut self, job: JobId, touched: &mut Touched) {
        if self.cancelled.contains(&job) {
            return;
        }
        let allowed = self
            .cancels
            .get(&job)
            .is_some_and(|by| by.iter().any(|n| self.may_cancel(&job, n)));
        if allowed {
            self.cancelled.insert(job);
            touched.cancelled_jobs.push(job);
        }
    }

    /// Notes that a task's facts grew: it is touched, and if a result that
    /// now counts says to fail the whole job, the job is.
    fn judge_fail_job(&mut self, task: TaskRef, touched: &mut Touched) {
        touched.tasks.push(task);
        if !self.failed_jobs.contains(&task.job) && self.task_fails_job(task) {
            self.failed_jobs.insert(task.job);
            touched.cancelled_jobs.push(task.job);
        }
    }

    /// Whether a result of the task that counts is judged `fail_job` by
    /// its job's exit-code rules (a job not known yet fails nothing: its
    /// results are judged when it arrives).
    fn task_fails_job(&self, task: TaskRef) -> bool {
        let Some(rules) = self
            .jobs
            .get(&task.job)
            .and_then(|j| j.spec.template(task.index))
            .map(|t| t.exit_codes.as_slice())
            .filter(|rules| rules.iter().any(|r| r.action == ExitAction::FailJob))
        else {
            return false;
        };
        let Some(facts) = self.facts.get(&task) else {
            return false;
        };
        facts
            .counted_results(facts.last_counted())
            .any(|(_, r)| verdict(&r.outcome, rules) == Verdict::FailJob)
    }

    /// The replicated state of one task, or `None` if its job is unknown
    /// or sealed (see [`Ledger::sealed_views`]).
    /// For a task with dependencies this folds the job's other tasks (and
    /// the jobs it waits for) too; callers that keep views use
    /// [`Ledger::view_with`].
    pub fn view(&self, task: TaskRef) -> Option<TaskView> {
        let job = self.jobs.get(&task.job)?;
        if job.deps.is_none() && job.spec.after.is_empty() {
            return self.view_with(task, Tally::default, |_| JobOutcome::Unfinished);
        }
        self.job_views(&task.job)
            .into_iter()
            .nth(task.index as usize)
    }

    /// The state of one task given how its dependencies stand (see
    /// [`dependency_tally`]; asked only if it has some) and the outcome of
    /// the jobs its job waits for (`after`).
    pub fn view_with(
        &self,
        task: TaskRef,
        dep_tally: impl FnOnce() -> Tally,
        job_outcome: impl Fn(&JobId) -> JobOutcome,
    ) -> Option<TaskView> {
        let own = self.own_view(task)?;
        if own.state != TaskState::Pending || own.attempt > 0 {
            return Some(own);
        }
        let job = self.jobs.get(&task.job)?;
        let (mut waiting, mut broken) = (false, false);
        for other in &job.spec.after {
            match job_outcome(other) {
                JobOutcome::Succeeded => {}
                JobOutcome::Failed => broken = true,
                JobOutcome::Failing => (broken, waiting) = (true, true),
                JobOutcome::Unfinished => waiting = true,
            }
        }
        let total = job.deps.as_ref().map_or(0, |g| g.dep_count(task.index));
        if total > 0 {
            let tally = dep_tally();
            broken |= tally.broken > 0;
            waiting |= tally.waiting(total);
        }
        let state = match (broken, job.spec.on_dependency_failure) {
            (true, OnDependencyFailure::Skip) => TaskState::Skipped,
            (true, OnDependencyFailure::Fail) => TaskState::Failed,
            _ if waiting => TaskState::Blocked,
            _ => TaskState::Pending,
        };
        Some(TaskView { state, ..own })
    }

    /// How job `job` stands for the jobs waiting for it, from its tasks'
    /// states (a job not known here is unfinished). `depth` bounds the
    /// chain of `after` jobs folded on the way (a chain never loops: a
    /// job's id hashes its `after`, except a scheduled job's).
    fn job_outcome(&self, job: &JobId, depth: u32) -> JobOutcome {
        if let Some(outcome) = self.kept_outcome(job) {
            return outcome;
        }
        if depth > MAX_AFTER_DEPTH {
            return JobOutcome::Unfinished;
        }
        let views = self.job_views_at(job, depth + 1);
        let total = self.jobs.get(job).map_or(0, |j| j.task_count);
        let succeeded = views
            .iter()
            .filter(|v| v.state == TaskState::Succeeded)
            .count();
        let ended = views.iter().filter(|v| v.state.terminal()).count();
        JobOutcome::of(succeeded as u32, (ended - succeeded) as u32, total)
    }

    /// How a job whose views left memory stands for the jobs waiting for
    /// it: a sealed job's outcome, or a forgotten one's from its
    /// tombstone (`None` for a job whose views are here, or unknown).
    pub fn kept_outcome(&self, job: &JobId) -> Option<JobOutcome> {
        self.sealed_outcome(job).or(self.forgotten_outcome(job))
    }

    /// A task's state from its own facts alone (`None` for a sealed job's:
    /// its facts are not here).
    fn own_view(&self, task: TaskRef) -> Option<TaskView> {
        if self.is_sealed(&task.job) {
            return None;
        }
        let job = self.jobs.get(&task.job)?;
        let template = job.spec.template(task.index)?;
        let (max_retries, rules) = (template.max_retries, &template.exit_codes);
        let instances = template.resources.instances;
        let judged = |r: &TaskResult| verdict(&r.outcome, rules);
        let empty = TaskFacts::default();
        let facts = self.facts.get(&task).unwrap_or(&empty);
        let view = |state, attempt, node, result| {
            Some(TaskView {
                task,
                state,
                attempt,
                node,
                result,
                gang: None,
            })
        };
        // Only what counts (see `facts`): claims one attempt after another,
        // results from claimers, reclaims of claimed attempts.
        let last = facts.last_counted();
        // Canonical result: the lowest (attempt, node) success…
        let success = facts
            .counted_results(last)
            .find(|(_, r)| judged(r) == Verdict::Success);
        if let Some(((a, n), r)) = success {
            return view(TaskState::Succeeded, *a, Some(*n), Some(r.clone()));
        }
        // …else the lowest failure of an attempt that had no retry left, or
        // that its exit code says not to retry.
        let failure = facts.counted_results(last).find(|((a, _), r)| {
            *a >= max_retries || matches!(judged(r), Verdict::FailTask | Verdict::FailJob)
        });
        if let Some(((a, n), r)) = failure {
            return view(TaskState::Failed, *a, Some(*n), Some(r.clone()));
        }
        if let Some(a) = facts.counted_reclaims(last).find(|a| *a >= max_retries) {
            return view(TaskState::Failed, a, facts.winner(task, a), None);
        }
        let (state, attempt, node) = match last {
            None => (TaskState::Pending, 0, None),
            Some(a) if facts.closed(a) => (TaskState::Pending, a + 1, None),
            Some(a) => (TaskState::Running, a, facts.winner(task, a)),
        };
        if self.cancelled.contains(&task.job) {
            return view(TaskState::Cancelled, attempt, node, None);
        }
        if self.failed_jobs.contains(&task.job) {
            return view(TaskState::Skipped, attempt, node, None);
        }
        let gang = match (state, node, self.gangs.get(&task)) {
            (TaskState::Running, Some(primary), Some(g)) => g.view(attempt, primary, instances),
            _ => None,
        };
        Some(TaskView {
            gang,
            ..view(state, attempt, node, None)?
        })
    }

    /// Every task of a job, in index order (none for a sealed job: see
    /// [`Ledger::sealed_views`]).
    pub fn job_views(&self, job: &JobId) -> Vec<TaskView> {
        self.job_views_at(job, 0)
    }

    fn job_views_at(&self, job: &JobId, depth: u32) -> Vec<TaskView> {
        let Some(record) = self.jobs.get(job).filter(|_| !self.is_sealed(job)) else {
            return Vec::new();
        };
        let at = |index| TaskRef { job: *job, index };
        let outcomes: BTreeMap<JobId, JobOutcome> = record
            .spec
            .after
            .iter()
            .map(|other| (*other, self.job_outcome(other, depth)))
            .collect();
        let outcome = |other: &JobId| outcomes.get(other).copied().unwrap_or_default();
        let Some(graph) = &record.deps else {
            return (0..record.task_count)
                .filter_map(|index| self.view_with(at(index), Tally::default, outcome))
                .collect();
        };
        // Dependencies first, so each task folds over its dependencies'
        // states; the task waiting for all others comes last, over `folded`.
        let mut views: Vec<Option<TaskView>> = vec![None; record.task_count as usize];
        let mut folded = Tally::default();
        let state = |v: &Option<TaskView>| v.as_ref().map(|v| v.state);
        for index in graph.order() {
            let tally = || {
                if graph.waits_for_all(*index) {
                    return folded;
                }
                let mut tally = Tally::default();
                for dep in graph.deps(*index) {
                    tally.add(dependency_tally(state(&views[*dep as usize])));
                }
                tally
            };
            let view = self.view_with(at(*index), tally, outcome);
            folded.add(dependency_tally(state(&view)));
            views[*index as usize] = view;
        }
        views.into_iter().flatten().collect()
    }

    /// A hash of every task's state: equal on nodes that hold the same
    /// events, whichever jobs each has sealed.
    pub fn state_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for job in self.jobs.keys() {
            hasher.update(&self.job_digest(job));
        }
        *hasher.finalize().as_bytes()
    }
}

/// What a task in `state` (`None`: not known yet) counts as for the tasks
/// that depend on it: succeeded, ended without success, or waited for.
pub fn dependency_tally(state: Option<TaskState>) -> Tally {
    match state {
        Some(TaskState::Succeeded) => Tally {
            succeeded: 1,
            broken: 0,
        },
        Some(s) if s.terminal() => Tally {
            succeeded: 0,
            broken: 1,
        },
        _ => Tally::default(),
    }
}

/// The newest of a name's versions (by `(added_ms, id)`) dated at most
/// [`CLOCK_AHEAD_MS`] after `wall_ms`: one dated further ahead counts once
/// the clock gets there.
fn newest_at<T>(versions: &BTreeMap<(u64, EventId), T>, wall_ms: u64) -> Option<&T> {
    let horizon = wall_ms.saturating_add(CLOCK_AHEAD_MS);
    versions
        .iter()
        .rev()
        .find(|((added_ms, _), _)| *added_ms <= horizon)
        .map(|(_, v)| v)
}
