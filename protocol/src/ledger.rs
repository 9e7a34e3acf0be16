//! The replicated ledger's fold: from a set of events to job and task state.
//!
//! Owns the rules that turn facts into state — who won a claim, which attempt
//! is live, which result is canonical, when a task is terminal. The fold is a
//! pure function of the *set* of events: insertion order, duplicates and
//! subsets arriving in any order give the same state. Must not know about
//! time, peers, liveness or IO; those belong to `core`.

use crate::codec;
use crate::event::{Claim, Event, EventBody, NodeInfo, TaskResult};
use crate::hrw;
use crate::ids::{EventId, JobId, NodeId, TaskRef};
use crate::job::JobSpec;
use crate::sync::Fingerprints;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A job as the ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: JobId,
    pub event: EventId,
    pub spec: JobSpec,
    pub submitted_by: NodeId,
    pub submitted_ms: u64,
    pub task_count: u32,
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
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

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
    nodes: BTreeMap<NodeId, (u64, NodeInfo)>,
}

/// The job id that a submit event with this id creates.
pub fn job_id_of(event: &EventId) -> JobId {
    let mut id = [0u8; 8];
    id.copy_from_slice(&event.0[..8]);
    JobId(id)
}

impl Ledger {
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

    /// Adds an already verified event. Returns what changed, or `None` if the
    /// ledger already held it.
    pub fn insert(&mut self, id: EventId, event: &Event) -> Option<Touched> {
        if !self.ids.insert(id) {
            return None;
        }
        self.fingerprints.add(&id);
        let mut touched = Touched::default();
        match &event.body {
            EventBody::JobSubmitted {
                job, submitted_ms, ..
            } => {
                let job_id = job_id_of(&id);
                let record = JobRecord {
                    id: job_id,
                    event: id,
                    spec: job.clone(),
                    submitted_by: event.author,
                    submitted_ms: *submitted_ms,
                    task_count: job.task_count().min(u32::MAX as u64) as u32,
                };
                // Two submits sharing an 8-byte prefix: the lower event id wins everywhere.
                let replace = self.jobs.get(&job_id).is_none_or(|old| id < old.event);
                if replace {
                    self.jobs.insert(job_id, record);
                    touched.new_jobs.push(job_id);
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
        }
        Some(touched)
    }

    /// The replicated state of one task, or `None` if its job is unknown.
    pub fn view(&self, task: TaskRef) -> Option<TaskView> {
        let job = self.jobs.get(&task.job)?;
        let max_retries = job.spec.template(task.index)?.max_retries;
        let empty = TaskFacts::default();
        let facts = self.facts.get(&task).unwrap_or(&empty);
        let view = |state, attempt, node, result| {
            Some(TaskView {
                task,
                state,
                attempt,
                node,
                result,
            })
        };
        // Canonical result: the lowest (attempt, node) success…
        if let Some(((a, n), r)) = facts.results.iter().find(|(_, r)| r.outcome.success()) {
            return view(TaskState::Succeeded, *a, Some(*n), Some(r.clone()));
        }
        // …else the lowest failure of an attempt that had no retry left.
        if let Some(((a, n), r)) = facts.results.iter().find(|((a, _), _)| *a >= max_retries) {
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
        view(state, attempt, node, None)
    }

    /// Every task of a job, in index order.
    pub fn job_views(&self, job: &JobId) -> Vec<TaskView> {
        let count = self.jobs.get(job).map_or(0, |j| j.task_count);
        (0..count)
            .filter_map(|index| self.view(TaskRef { job: *job, index }))
            .collect()
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
