//! The replicated ledger's fold: from a set of events to job and task state.
//!
//! Owns the rules that turn facts into state — who won a claim, which attempt
//! is live, which result is canonical, when a task is terminal. The fold is a
//! pure function of the *set* of events: insertion order, duplicates and
//! subsets arriving in any order give the same state. Must not know about
//! time, peers, liveness or IO; those belong to `core`.

use crate::codec;
use crate::deps::{DepGraph, OnDependencyFailure, Tally};
use crate::event::{Claim, Event, EventBody, NodeInfo, SideResult, TaskResult};
use crate::exit::{verdict, Verdict};
use crate::gang::{GangFacts, GangView};
use crate::hrw;
use crate::ids::{BlobId, EventId, JobId, NodeId, TaskRef};
use crate::job::{JobSpec, MAX_TASKS_PER_JOB};
use crate::schedule::ScheduleRecord;
use crate::sync::Fingerprints;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A job as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: JobId,
    pub event: EventId,
    pub spec: JobSpec,
    pub submitted_by: NodeId,
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

/// Everything the ledger holds about one task, each list sorted and
/// without repeats. A task has a handful of facts and every node keeps
/// them for every task, so they are sorted vectors: a B-tree node reserves
/// room for eleven entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TaskFacts {
    claims: Vec<(u32, NodeId)>,
    results: Vec<((u32, NodeId), TaskResult)>,
    reclaimed: Vec<u32>,
}

/// Adds `x` to a sorted list unless it is there already.
fn insert_sorted<T: Ord>(list: &mut Vec<T>, x: T) {
    if let Err(at) = list.binary_search(&x) {
        list.insert(at, x);
    }
}

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JobOutcome {
    /// Some task is not terminal yet (or the job is not known here).
    #[default]
    Unfinished,
    /// Every task succeeded.
    Succeeded,
    /// Some task failed, was cancelled or was skipped: it never will.
    Failed,
}

impl JobOutcome {
    /// From counts of a job's `total` tasks: succeeded, and ended otherwise.
    pub fn of(succeeded: u32, ended_otherwise: u32, total: u32) -> JobOutcome {
        if ended_otherwise > 0 {
            JobOutcome::Failed
        } else if total > 0 && succeeded >= total {
            JobOutcome::Succeeded
        } else {
            JobOutcome::Unfinished
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
    ids: BTreeSet<EventId>,
    fingerprints: Fingerprints,
    jobs: BTreeMap<JobId, JobRecord>,
    cancelled: BTreeSet<JobId>,
    facts: BTreeMap<TaskRef, TaskFacts>,
    /// Multi-instance tasks' gang steps (few tasks have any).
    gangs: BTreeMap<TaskRef, GangFacts>,
    nodes: BTreeMap<NodeId, (u64, NodeInfo)>,
    packages: BTreeMap<(String, String), PackageRecord>,
    /// Jobs where some result's exit code says to fail the whole job.
    failed_jobs: BTreeSet<JobId>,
    /// Every version of every schedule, and the versions removed.
    schedules: BTreeMap<String, BTreeMap<(u64, EventId), ScheduleRecord>>,
    removed_schedules: BTreeSet<EventId>,
    /// Occurrence times each schedule has a job for.
    fired: BTreeMap<String, BTreeSet<u64>>,
    /// The newest drain or resume request per node.
    drain_requests: BTreeMap<NodeId, (u64, EventId, bool)>,
    /// Every definition of every pool; the newest `(added_ms, id)` counts.
    pools: BTreeMap<String, BTreeMap<(u64, EventId), PoolRecord>>,
    /// Start-task results per (pool definition, node): a success is kept
    /// over a failure, else the smaller encoding (any order gives the same).
    start_results: BTreeMap<(EventId, NodeId), SideResult>,
    /// Nodes that may cancel any job and drain any node.
    admins: BTreeSet<NodeId>,
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

/// The job id a submit creates: its schedule occurrence's, or else the
/// event id's first 8 bytes.
pub fn job_id_for(event: &EventId, job: &JobSpec) -> JobId {
    match &job.origin {
        Some(occurrence) => crate::schedule::occurrence_job_id(occurrence),
        None => job_id_of(event),
    }
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

    pub fn ids(&self) -> &BTreeSet<EventId> {
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

    pub fn is_cancelled(&self, job: &JobId) -> bool {
        self.cancelled.contains(job)
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

    /// Active schedules: each name's newest version, unless it was removed.
    pub fn schedules(&self) -> impl Iterator<Item = &ScheduleRecord> {
        self.schedules.values().filter_map(|versions| {
            let (_, newest) = versions.iter().next_back()?;
            (!self.removed_schedules.contains(&newest.event)).then_some(newest)
        })
    }

    /// Every pool's current definition.
    pub fn pools(&self) -> impl Iterator<Item = &PoolRecord> {
        self.pools
            .values()
            .filter_map(|versions| versions.values().next_back())
    }

    /// How `node`'s run of the start task of pool definition `definition` ended.
    pub fn start_result(&self, definition: &EventId, node: &NodeId) -> Option<&SideResult> {
        self.start_results.get(&(*definition, *node))
    }

    /// Whether the newest request for `node` asks it to drain.
    pub fn drain_requested(&self, node: &NodeId) -> Option<bool> {
        self.drain_requests.get(node).map(|(_, _, drain)| *drain)
    }

    /// The latest occurrence time a schedule has a job for.
    pub fn last_fired(&self, schedule: &str) -> Option<u64> {
        self.fired.get(schedule)?.iter().next_back().copied()
    }

    pub fn packages(&self) -> impl Iterator<Item = &PackageRecord> {
        self.packages.values()
    }

    /// A multi-instance task's gang steps, if it has any.
    pub fn gang(&self, task: &TaskRef) -> Option<&GangFacts> {
        self.gangs.get(task)
    }

    pub fn package(&self, name: &str, version: &str) -> Option<&PackageRecord> {
        self.packages.get(&(name.to_string(), version.to_string()))
    }

    /// Adds an already verified event. Returns what changed, or `None` if the
    /// ledger already held it.
    pub fn insert(&mut self, id: EventId, event: &Event) -> Option<Touched> {
        if !self.ids.insert(id) {
            return None;
        }
        self.fingerprints.add(&id);
        let mut touched = Touched::default();
        match &event.body {
            // Past the task limit a job is not one: folding it would hold a
            // view per claimed task count (a peer's job is not validated
            // before it gets here).
            EventBody::JobSubmitted { job, .. } if job.task_count() > MAX_TASKS_PER_JOB => {}
            EventBody::JobSubmitted {
                job, submitted_ms, ..
            } => {
                let job_id = job_id_for(&id, job);
                let record = JobRecord {
                    id: job_id,
                    event: id,
                    spec: job.clone(),
                    submitted_by: event.author,
                    submitted_ms: *submitted_ms,
                    task_count: job.task_count().min(u32::MAX as u64) as u32,
                    // Submitters validate; a job that fails here runs without order.
                    deps: DepGraph::build(job).ok().flatten().map(Arc::new),
                };
                // Two submits sharing an 8-byte prefix: the lower event id wins everywhere.
                let replace = self.jobs.get(&job_id).is_none_or(|old| id < old.event);
                if let Some(o) = &job.origin {
                    self.fired
                        .entry(o.schedule.clone())
                        .or_default()
                        .insert(o.at_ms);
                }
                if replace {
                    self.jobs.insert(job_id, record);
                    touched.new_jobs.push(job_id);
                    // Results may have come first: judge them by this spec.
                    let first = TaskRef {
                        job: job_id,
                        index: 0,
                    };
                    let last = TaskRef {
                        job: job_id,
                        index: u32::MAX,
                    };
                    let fails = self
                        .facts
                        .range(first..=last)
                        .flat_map(|(_, f)| f.results.iter().map(|(_, r)| r))
                        .any(|r| self.fails_job(r));
                    if fails {
                        self.failed_jobs.insert(job_id);
                    } else {
                        self.failed_jobs.remove(&job_id);
                    }
                }
            }
            EventBody::JobCancelled { job } => {
                if self.cancelled.insert(*job) {
                    touched.cancelled_jobs.push(*job);
                }
            }
            EventBody::Claims { claims } => {
                for c in claims {
                    let claims = &mut self.facts.entry(c.task).or_default().claims;
                    insert_sorted(claims, (c.attempt, event.author));
                    touched.tasks.push(c.task);
                }
            }
            EventBody::Finished { results } => {
                for r in results {
                    if self.fails_job(r) && self.failed_jobs.insert(r.task.job) {
                        touched.cancelled_jobs.push(r.task.job);
                    }
                    let results = &mut self.facts.entry(r.task).or_default().results;
                    let key = (r.attempt, event.author);
                    match results.binary_search_by(|(k, _)| k.cmp(&key)) {
                        Err(at) => results.insert(at, (key, r.clone())),
                        Ok(at) => {
                            if preferred(r, &results[at].1) {
                                results[at].1 = r.clone();
                            }
                        }
                    }
                    touched.tasks.push(r.task);
                }
            }
            EventBody::Reclaimed { claims } => {
                for Claim { task, attempt } in claims {
                    insert_sorted(
                        &mut self.facts.entry(*task).or_default().reclaimed,
                        *attempt,
                    );
                    touched.tasks.push(*task);
                }
            }
            EventBody::Gang {
                task,
                attempt,
                step,
            } => {
                self.gangs
                    .entry(*task)
                    .or_default()
                    .insert(*attempt, event.author, step.clone());
                touched.tasks.push(*task);
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
                };
                self.schedules
                    .entry(name.clone())
                    .or_default()
                    .insert((*added_ms, id), record);
            }
            EventBody::DrainRequested { node, drain, at_ms } => {
                let newer = self
                    .drain_requests
                    .get(node)
                    .is_none_or(|(t, e, _)| (*at_ms, id) > (*t, *e));
                if newer {
                    self.drain_requests.insert(*node, (*at_ms, id, *drain));
                    touched.nodes.push(*node);
                }
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
                self.removed_schedules.insert(*added);
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
        Some(touched)
    }

    /// Whether a result's exit code fails its whole job. A result for a
    /// job not known yet is judged when the job arrives.
    fn fails_job(&self, r: &TaskResult) -> bool {
        let rules = self
            .jobs
            .get(&r.task.job)
            .and_then(|j| j.spec.template(r.task.index))
            .map(|t| t.exit_codes.as_slice())
            .unwrap_or_default();
        verdict(&r.outcome, rules) == Verdict::FailJob
    }

    /// The replicated state of one task, or `None` if its job is unknown.
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

    /// A task's state from its own facts alone.
    fn own_view(&self, task: TaskRef) -> Option<TaskView> {
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
        // Canonical result: the lowest (attempt, node) success…
        let success = facts
            .results
            .iter()
            .find(|(_, r)| judged(r) == Verdict::Success);
        if let Some(((a, n), r)) = success {
            return view(TaskState::Succeeded, *a, Some(*n), Some(r.clone()));
        }
        // …else the lowest failure of an attempt that had no retry left, or
        // that its exit code says not to retry.
        let failure = facts.results.iter().find(|((a, _), r)| {
            *a >= max_retries || matches!(judged(r), Verdict::FailTask | Verdict::FailJob)
        });
        if let Some(((a, n), r)) = failure {
            return view(TaskState::Failed, *a, Some(*n), Some(r.clone()));
        }
        if let Some(a) = facts.reclaimed.iter().find(|a| **a >= max_retries) {
            return view(TaskState::Failed, *a, winner(task, *a, &facts.claims), None);
        }
        let last = facts
            .claims
            .iter()
            .map(|(a, _)| *a)
            .chain(facts.results.iter().map(|((a, _), _)| *a))
            .chain(facts.reclaimed.iter().copied())
            .max();
        let (state, attempt, node) = match last {
            None => (TaskState::Pending, 0, None),
            Some(a) => {
                let closed = facts.reclaimed.binary_search(&a).is_ok()
                    || facts.results.iter().any(|((ra, _), _)| *ra == a);
                if closed {
                    (TaskState::Pending, a + 1, None)
                } else {
                    (TaskState::Running, a, winner(task, a, &facts.claims))
                }
            }
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

    /// Every task of a job, in index order.
    pub fn job_views(&self, job: &JobId) -> Vec<TaskView> {
        self.job_views_at(job, 0)
    }

    fn job_views_at(&self, job: &JobId, depth: u32) -> Vec<TaskView> {
        let Some(record) = self.jobs.get(job) else {
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

    /// A hash of every task's state: equal on nodes that hold the same events.
    pub fn state_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for job in self.jobs.keys() {
            for view in self.job_views(job) {
                hasher.update(&codec::encode(&view));
            }
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

/// Of two results one node gave for one attempt (an honest node never
/// does), the one every replica keeps whatever their order: a success, else
/// the smaller encoding.
fn preferred(new: &TaskResult, old: &TaskResult) -> bool {
    (!new.outcome.success(), codec::encode(new)) < (!old.outcome.success(), codec::encode(old))
}

/// The claim that wins an attempt: best rendezvous score, ties to the lower id.
fn winner(task: TaskRef, attempt: u32, claims: &[(u32, NodeId)]) -> Option<NodeId> {
    let from = claims.partition_point(|(a, _)| *a < attempt);
    claims[from..]
        .iter()
        .take_while(|(a, _)| *a == attempt)
        .map(|(_, n)| *n)
        .reduce(|best, n| {
            if hrw::outranks(task, attempt, &n, &best) {
                n
            } else {
                best
            }
        })
}
