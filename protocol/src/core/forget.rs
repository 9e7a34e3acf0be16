//! When this node forgets a job, and what it drops when it does.
//!
//! Owns the rule, judged on this node's wall clock (passed in): a job is
//! forgotten once it is sealed (every task terminal, nothing of it running
//! or waiting to be published here, its events all in the store) and its
//! horizon has passed — its submit time plus its retention plus
//! `Config::forget_margin_ms` for clock skew — or its submitter or an
//! admin asked to forget it. Also the request itself (`Core::forget`), the
//! core's own per-job state dropped with it, and the [`Forgetting`]s the
//! driver carries out on the store. Must not decide what the ledger keeps
//! of a forgotten job (`ledger::forget` does).

use super::Core;
use crate::event::EventBody;
use crate::ids::{EventId, JobId};
use crate::storage::{EventStore, Forgetting};
use crate::time::Millis;

/// Why this node may not ask to forget a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForgetRefused {
    #[error("job {0} is not known here")]
    Unknown(JobId),
    #[error("only the node that submitted job {0} or an admin may forget it")]
    NotAllowed(JobId),
    #[error("job {0} has tasks that have not ended; cancel it first")]
    Live(JobId),
}

impl<S: EventStore> Core<S> {
    /// When this node will forget `job` by its clock, if it has ended by
    /// then (`None`: unknown, or kept until someone forgets it).
    pub fn forget_at(&self, job: &JobId) -> Option<u64> {
        self.ledger.forget_at(job, self.cfg.forget_margin_ms)
    }

    /// Asks the whole mesh to forget `job` now: its submitter or an admin
    /// may, once every task of it has ended.
    pub fn forget(&mut self, now: Millis, job: JobId) -> Result<EventId, ForgetRefused> {
        let record = self.ledger.job(&job).ok_or(ForgetRefused::Unknown(job))?;
        if !self.ledger.may_cancel(&job, &self.me) {
            return Err(ForgetRefused::NotAllowed(job));
        }
        if self.progress(&job).done() < record.task_count {
            return Err(ForgetRefused::Live(job));
        }
        let id = self.publish(now, EventBody::JobForgotten { job });
        self.after_input(now);
        Ok(id)
    }

    /// Forgets every sealed job whose horizon has passed at wall-clock time
    /// `wall_ms` on this node, or that its submitter or an admin asked to
    /// forget, and drops the tombstones no longer needed. `handle_timeout`
    /// does this every `wall_check_ms` (see `core::wall`).
    pub fn forget_expired(&mut self, now: Millis, wall_ms: u64) {
        self.forget_due(wall_ms);
        self.after_input(now);
    }

    /// Forgets what `forget_expired` does, without acting on it yet.
    pub(super) fn forget_due(&mut self, wall_ms: u64) {
        for (job, events) in self.ledger.drop_tombstones(wall_ms) {
            self.forgetting
                .push_back(Forgetting::DropTombstone { job, events });
        }
        let margin = self.cfg.forget_margin_ms;
        let due: Vec<JobId> = self
            .ledger
            .jobs()
            .map(|j| j.id)
            .filter(|job| self.ledger.is_sealed(job))
            .filter(|job| {
                self.ledger.forget_requested(job)
                    || self
                        .ledger
                        .forget_at(job, margin)
                        .is_some_and(|at| at <= wall_ms)
            })
            .collect();
        for job in due {
            self.forget_job(job, wall_ms);
        }
    }

    pub fn poll_forgetting(&mut self) -> Option<Forgetting> {
        self.forgetting.pop_front()
    }

    /// Drops a sealed job here and tells the store to.
    fn forget_job(&mut self, job: JobId, wall_ms: u64) {
        let stored = self.stored_with_ids(&job);
        let after = self
            .ledger
            .job(&job)
            .map(|r| r.spec.after.clone())
            .unwrap_or_default();
        let until_ms = wall_ms.saturating_add(self.cfg.tombstone_ms);
        let forgot = self.ledger.forget(job, until_ms, stored);
        for other in after {
            if let Some(waiting) = self.waiters.get_mut(&other) {
                waiting.remove(&job);
            }
        }
        self.waiters.remove(&job);
        self.progress.remove(&job);
        self.finished.remove(&job);
        self.stats.jobs_forgotten += 1;
        self.forgetting.push_back(Forgetting::Job {
            job,
            tombstone: forgot.tombstone,
            events: forgot.events,
            blobs: forgot.blobs.into_iter().collect(),
        });
    }
}
