//! Sealing: a finished job's task facts leave memory, and come back from
//! the store when asked for or when a late event names the job.
//!
//! Owns the sealed set (each sealed job's outcome, for the jobs waiting for
//! it), dropping a job's facts, adding them back from its stored events,
//! folding a sealed job's views from its events without keeping them, and
//! which event ids retire when a job is sealed.
//! The fold's answers do not change: a sealed job's views, folded from its
//! stored events, are those it had before it was sealed. Must not read a
//! store itself (the core passes the events in) or decide when a job is
//! finished (the core does).

use super::{JobOutcome, Ledger, TaskState, TaskView, Touched};
use crate::event::Event;
use crate::ids::{EventId, JobId, TaskRef};
use std::borrow::Borrow;

impl Ledger {
    /// Whether `job`'s task facts are out of memory (see [`Ledger::seal`]).
    pub fn is_sealed(&self, job: &JobId) -> bool {
        self.sealed.contains_key(job)
    }

    /// How many jobs are sealed, and how many tasks have facts in memory.
    pub fn held(&self) -> (usize, usize) {
        (self.sealed.len(), self.facts.len())
    }

    /// Drops the task facts of known job `job` if `stored` (its events as
    /// the store holds them, with their ids) hold every fact it has in
    /// memory, keeping its outcome and the digest of its views; its views
    /// are then folded from its stored events ([`Ledger::sealed_views`])
    /// and its facts come back with [`Ledger::unseal`]. The ids of those of
    /// `stored` that name only sealed or forgotten jobs retire (see
    /// `EventIds`). False, changing nothing, if the job is unknown, sealed
    /// already, or the store lacks some of what it knows (an event not
    /// written yet) — even a fact that changes no view now: a later event
    /// can make it count (a claim whose result comes next), and facts
    /// dropped here come back only from the store.
    pub fn seal(&mut self, job: JobId, stored: &[(EventId, Event)]) -> bool {
        if self.is_sealed(&job) || !self.jobs.contains_key(&job) {
            return false;
        }
        let Some(scratch) = self.fold_stored(job, stored.iter().map(|(_, e)| e)) else {
            return false;
        };
        if !self.same_task_facts(&scratch, job) {
            return false;
        }
        drop(scratch);
        let outcome = self.sealed_record(&job);
        self.drop_task_facts(job);
        self.sealed.insert(job, outcome);
        self.retire(stored);
        true
    }

    /// Retires the ids of those of `stored` whose task facts name only
    /// sealed or forgotten jobs: nothing live needs them at hand.
    fn retire(&mut self, stored: &[(EventId, Event)]) {
        let done = |job: &JobId| self.is_sealed(job) || self.is_forgotten(job);
        let ids: Vec<EventId> = stored
            .iter()
            .filter(|(_, e)| e.body.task_jobs().iter().all(done))
            .map(|(id, _)| *id)
            .collect();
        self.ids.retire(ids);
    }

    /// What is kept of known, unsealed job `job` once sealed, from one
    /// fold of its views (each view holds its result: a second fold would
    /// double the job's peak).
    fn sealed_record(&self, job: &JobId) -> Sealed {
        let views = self.job_views(job);
        let total = self.jobs.get(job).map_or(0, |j| j.task_count);
        let count = |f: fn(TaskState) -> bool| views.iter().filter(|v| f(v.state)).count() as u32;
        let succeeded = count(|s| s == TaskState::Succeeded);
        let ended = count(TaskState::terminal);
        Sealed {
            outcome: JobOutcome::of(succeeded, ended - succeeded, total),
            digest: views_digest(&views),
        }
    }

    /// Whether `other` holds the same facts and gang steps about `job`'s
    /// tasks as this ledger.
    fn same_task_facts(&self, other: &Ledger, job: JobId) -> bool {
        let all = TaskRef::all_of(job);
        self.facts.job(job).eq(other.facts.job(job))
            && self.gangs.range(all.clone()).eq(other.gangs.range(all))
    }

    /// Drops the facts and gang steps of `job`'s tasks.
    pub(super) fn drop_task_facts(&mut self, job: JobId) {
        let all = TaskRef::all_of(job);
        self.facts.remove_job(&job);
        let gangs: Vec<TaskRef> = self.gangs.range(all).map(|(t, _)| *t).collect();
        for task in gangs {
            self.gangs.remove(&task);
        }
    }

    /// Brings a sealed job's task facts back from `events` (its stored
    /// events; facts about other jobs' tasks in them are skipped).
    pub fn unseal(&mut self, job: JobId, events: impl IntoIterator<Item = Event>) -> Touched {
        let mut touched = Touched::default();
        if self.sealed.remove(&job).is_some() {
            if let Some(record) = self.jobs.get(&job) {
                self.facts.size_job(job, record.task_count);
            }
            self.add_job_facts(job, events, &mut touched);
        }
        touched
    }

    /// Adds the facts `events` state about `job`'s tasks; events this
    /// ledger's rules refuse add nothing, as when they first came.
    fn add_job_facts(
        &mut self,
        job: JobId,
        events: impl IntoIterator<Item = impl Borrow<Event>>,
        touched: &mut Touched,
    ) {
        for event in events {
            let event = event.borrow();
            if crate::validate::check(&event.body).is_ok() {
                self.add_facts(event.author, &event.body, Some(job), touched);
            }
        }
    }

    /// A sealed job's views, in index order, folded from `events` (its
    /// stored events) without keeping its facts: the views it had when it
    /// was sealed. Empty if the job is unknown.
    pub fn sealed_views(
        &self,
        job: JobId,
        events: impl IntoIterator<Item = impl Borrow<Event>>,
    ) -> Vec<TaskView> {
        self.fold_stored(job, events)
            .map(|scratch| scratch.job_views(&job))
            .unwrap_or_default()
    }

    /// A ledger holding only what decides known job `job`'s views — its
    /// record, the outcomes of the jobs it waits for, its cancel and
    /// failure — and the facts `events` state about its tasks. `None` if
    /// the job is unknown.
    fn fold_stored(
        &self,
        job: JobId,
        events: impl IntoIterator<Item = impl Borrow<Event>>,
    ) -> Option<Ledger> {
        let record = self.jobs.get(&job)?;
        let mut scratch = Ledger::with_admins(self.admins.clone());
        scratch.jobs.insert(job, record.clone());
        scratch.facts.size_job(job, record.task_count);
        for other in &record.spec.after {
            let outcome = self.job_outcome(other, 0);
            let digest = [0; 32];
            scratch.sealed.insert(*other, Sealed { outcome, digest });
        }
        if self.cancelled.contains(&job) {
            scratch.cancelled.insert(job);
        }
        if self.failed_jobs.contains(&job) {
            scratch.failed_jobs.insert(job);
        }
        scratch.add_job_facts(job, events, &mut Touched::default());
        Some(scratch)
    }

    /// A sealed job's outcome, if it is sealed.
    pub(super) fn sealed_outcome(&self, job: &JobId) -> Option<JobOutcome> {
        self.sealed.get(job).map(|s| s.outcome)
    }

    /// The digest of a job's views: kept for a sealed job, else folded.
    pub(super) fn job_digest(&self, job: &JobId) -> [u8; 32] {
        match self.sealed.get(job) {
            Some(sealed) => sealed.digest,
            None => views_digest(&self.job_views(job)),
        }
    }
}

/// What the ledger keeps of a sealed job.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sealed {
    /// How it stands for the jobs waiting for it.
    outcome: JobOutcome,
    /// The digest of its views (for `Ledger::state_digest`).
    digest: [u8; 32],
}

/// A hash of views, in order.
fn views_digest(views: &[TaskView]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for view in views {
        hasher.update(&crate::codec::encode(view));
    }
    *hasher.finalize().as_bytes()
}
