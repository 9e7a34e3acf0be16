//! Forgetting: a job that has ended and whose retention has passed (or that
//! its submitter or an admin asked to forget) leaves the ledger, and a
//! tombstone keeps it from coming back.
//!
//! Owns the tombstones (each forgotten job's id, how it ended — for jobs
//! still waiting for it with `after` — and until when the tombstone is
//! kept), the counted `JobForgotten` requests, the ids of the events that
//! name a job outside its task facts (submits, cancels, forget requests),
//! dropping a job's state and its events' ids (and anti-entropy
//! fingerprints), and the rule that an event naming only forgotten jobs is
//! not admitted — but for the forget requests themselves, which stay as
//! long as the tombstone does, so that a node that was away when the mesh
//! forgot a job by request learns of the request from its peers. Must not read a clock or a store, nor decide *when* a job
//! is forgotten: the core does, from the horizon ([`Ledger::forget_at`])
//! and its own views.

use super::{job_id_for, JobOutcome, Ledger};
use crate::event::{Event, EventBody};
use crate::ids::{BlobId, EventId, JobId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a node keeps of a job it forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Wall-clock time after which the tombstone itself may go.
    pub until_ms: u64,
    /// How the job ended, for jobs that wait for it (`after`).
    pub outcome: JobOutcome,
}

/// What forgetting one job took out of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forgot {
    pub tombstone: Tombstone,
    /// Stored events no remembered job needs any more.
    pub events: Vec<EventId>,
    /// The blobs the job's results named (logs and outputs of every
    /// attempt reported), for the node to unpin.
    pub blobs: BTreeSet<BlobId>,
}

impl Ledger {
    /// When `job` may be forgotten by a reader whose clock may be
    /// `margin_ms` ahead of the submitter's: its submit time plus its
    /// retention plus the margin (`None`: unknown, or kept forever).
    pub fn forget_at(&self, job: &JobId, margin_ms: u64) -> Option<u64> {
        let record = self.jobs.get(job)?;
        let retention = record.spec.retention()?;
        Some(
            record
                .submitted_ms
                .saturating_add(retention)
                .saturating_add(margin_ms),
        )
    }

    /// Whether the submitter of `job` or an admin asked to forget it (the
    /// same authority as a cancel: [`Ledger::may_cancel`]).
    pub fn forget_requested(&self, job: &JobId) -> bool {
        self.forgets
            .get(job)
            .is_some_and(|by| by.iter().any(|n| self.may_cancel(job, n)))
    }

    pub fn is_forgotten(&self, job: &JobId) -> bool {
        self.forgotten.contains_key(job)
    }

    /// Every tombstone, by job.
    pub fn tombstones(&self) -> impl Iterator<Item = (&JobId, &Tombstone)> {
        self.forgotten.iter()
    }

    /// A tombstone read back from the store at start, before its events.
    pub fn restore_tombstone(&mut self, job: JobId, tombstone: Tombstone) {
        self.forgotten.insert(job, tombstone);
    }

    /// Drops the tombstones kept until `wall_ms` or earlier, and the
    /// requests to forget their jobs; returns those jobs with the ids of
    /// the requests (to remove from the store).
    pub fn drop_tombstones(&mut self, wall_ms: u64) -> Vec<(JobId, Vec<EventId>)> {
        let due: Vec<JobId> = self
            .forgotten
            .iter()
            .filter(|(_, t)| t.until_ms <= wall_ms)
            .map(|(job, _)| *job)
            .collect();
        let mut dropped = Vec::new();
        for job in due {
            self.forgotten.remove(&job);
            self.forgets.remove(&job);
            let requests = self.forget_events.remove(&job).unwrap_or_default();
            self.unlist(&requests);
            dropped.push((job, requests.into_iter().collect()));
        }
        dropped
    }

    /// Takes ids out of the event set and the fingerprints.
    fn unlist(&mut self, ids: &BTreeSet<EventId>) {
        for id in self.ids.remove_all(ids) {
            self.fingerprints.remove(&id);
        }
    }

    /// Whether every job `event` (with id `id`) is about is forgotten: such
    /// an event is not admitted (a late copy of something forgotten).
    pub fn about_forgotten(&self, id: &EventId, body: &EventBody) -> bool {
        match body {
            EventBody::JobSubmitted { job, .. } => self.is_forgotten(&job_id_for(id, job)),
            EventBody::JobCancelled { job } => self.is_forgotten(job),
            EventBody::JobForgotten { .. } => false,
            _ => {
                let jobs = body.task_jobs();
                !jobs.is_empty() && jobs.iter().all(|j| self.is_forgotten(j))
            }
        }
    }

    /// Notes an admitted event that names `job` outside its task facts.
    pub(super) fn note_job_event(&mut self, job: JobId, id: EventId) {
        self.job_events.entry(job).or_default().insert(id);
    }

    /// Notes a request (event `id`) to forget `job` from `author`.
    pub(super) fn note_forget(&mut self, job: JobId, id: EventId, author: NodeId) {
        self.forget_events.entry(job).or_default().insert(id);
        self.forgets.entry(job).or_default().insert(author);
    }

    /// Forgets `job`: its record, facts, gang steps and seal leave, a
    /// tombstone stays (with the requests to forget it, if any). `stored`
    /// are the job's stored task-fact events (with their ids); those that
    /// name no job still remembered leave the event set and the
    /// fingerprints, with the job's submits and cancels. Returns what left.
    pub fn forget(
        &mut self,
        job: JobId,
        until_ms: u64,
        stored: impl IntoIterator<Item = (EventId, Event)>,
    ) -> Forgot {
        let tombstone = Tombstone {
            until_ms,
            outcome: self.job_outcome(&job, 0),
        };
        let mut blobs = BTreeSet::new();
        self.jobs.remove(&job);
        self.scheduled.remove(&job);
        for jobs in self.scheduled_by_name.values_mut() {
            jobs.remove(&job);
        }
        self.cancels.remove(&job);
        self.cancelled.remove(&job);
        self.failed_jobs.remove(&job);
        self.sealed.remove(&job);
        self.drop_task_facts(job);
        self.forgotten.insert(job, tombstone);
        let mut gone: BTreeSet<EventId> = self.job_events.remove(&job).unwrap_or_default();
        for (id, event) in stored {
            if let EventBody::Finished { results } = &event.body {
                let own = results.iter().filter(|r| r.task.job == job);
                blobs.extend(own.flat_map(|r| [r.stdout, r.stderr, r.outputs]).flatten());
            }
            let needed = event
                .body
                .task_jobs()
                .iter()
                .any(|j| self.jobs.contains_key(j));
            if !needed {
                gone.insert(id);
            }
        }
        self.unlist(&gone);
        Forgot {
            tombstone,
            events: gone.into_iter().collect(),
            blobs,
        }
    }

    /// A forgotten job's outcome, if it is forgotten.
    pub(super) fn forgotten_outcome(&self, job: &JobId) -> Option<JobOutcome> {
        self.forgotten.get(job).map(|t| t.outcome)
    }
}
