//! Decisions the core takes on the wall clock, which the driver (or the
//! simulator) passes in with each timeout: firing the due occurrence of
//! each schedule and of each function's timer triggers, cancelling jobs
//! past their `max_wall_clock`, forgetting jobs past their retention
//! (`core::forget`), and draining or resuming this node as the ledger's
//! newest due request says.
//!
//! Owns when these are judged (every `Config::wall_check_ms`) and who
//! acts: for an occurrence, the node ranked first for the job's task 0
//! fires at once and the k-th after k steps, so usually one node does and
//! a dead first choice is covered; a deadline is acted on by those who may
//! cancel the job. Must not decide what
//! makes a firing count once (an occurrence's job id does: `schedule`,
//! `trigger`) nor read a clock.

use super::timers::Every;
use super::Core;
use crate::function::{FunctionView, Trigger};
use crate::ledger::ScheduleRecord;
use crate::schedule::{occurrence_job_id, Occurrence, Recurrence};
use crate::storage::EventStore;
use crate::time::Millis;
use crate::trigger::{Cause, Firing, Issuer, Origin};
use crate::{JobId, JobSpec, TaskRef};

impl<S: EventStore> Core<S> {
    /// Judges the wall-clock work if its time has come.
    pub(super) fn wall_tick(&mut self, now: Millis, wall_ms: u64) {
        if !self.timers.due(Every::Wall, now, self.cfg.wall_check_ms) {
            return;
        }
        let due: Vec<JobSpec> = (self.due_occurrences(wall_ms))
            .chain(self.due_timers(wall_ms))
            .collect();
        for spec in due {
            // Refused only if the ledger changed under it (a removed
            // template's package, say); the next check tries again.
            let _ = self.submit(now, spec, wall_ms);
        }
        for job in self.overdue_jobs(wall_ms) {
            self.cancel(now, job);
        }
        self.forget_due(wall_ms);
        let asked = self.ledger.drain_requested(&self.me, wall_ms) == Some(true);
        self.announce_due |= self.availability.set_drain_requested(asked);
    }

    /// Whether `at_ms + rank · step` has passed for the job `job`'s task 0.
    fn my_turn(&self, job: JobId, at_ms: u64, step_ms: u64, wall_ms: u64) -> bool {
        let rank = self.rank_for(TaskRef { job, index: 0 }) as u64;
        wall_ms >= at_ms.saturating_add(rank.saturating_mul(step_ms))
    }

    /// The job of each schedule's latest due occurrence not yet fired,
    /// where this node's turn has come.
    fn due_occurrences(&self, wall_ms: u64) -> impl Iterator<Item = JobSpec> + '_ {
        (self.ledger.schedules(wall_ms)).filter_map(move |s| self.due_occurrence(s, wall_ms))
    }

    fn due_occurrence(&self, s: &ScheduleRecord, wall_ms: u64) -> Option<JobSpec> {
        // An interval fires at its start too; a cron only after being added.
        let first = match s.recurrence {
            Recurrence::Every { start_ms, .. } => start_ms.saturating_sub(1),
            Recurrence::Cron(_) => s.added_ms,
        };
        let fired = (self.ledger).last_fired(&Issuer::Schedule(s.name.clone()), wall_ms);
        let after = fired.map_or(first, |t| t.max(first));
        let at_ms = (s.recurrence)
            .latest_due(after, wall_ms, self.cfg.cron_zone)
            .ok()??;
        let occurrence = Occurrence {
            schedule: s.name.clone(),
            at_ms,
        };
        let job = occurrence_job_id(&occurrence);
        let fire = self.ledger.job(&job).is_none()
            && self.my_turn(job, at_ms, self.cfg.fire_step_ms, wall_ms);
        fire.then(|| JobSpec {
            origin: Some(Origin::Schedule(occurrence)),
            ..s.template.clone()
        })
    }

    /// The job of each function's latest due timer occurrence not yet
    /// fired, where this node's turn has come.
    fn due_timers(&self, wall_ms: u64) -> impl Iterator<Item = JobSpec> + '_ {
        (self.ledger.function_names())
            .filter_map(move |f| self.ledger.function(f, wall_ms))
            .filter_map(move |view| self.due_timer(&view, wall_ms))
    }

    fn due_timer(&self, view: &FunctionView, wall_ms: u64) -> Option<JobSpec> {
        let v = view.serving()?;
        let fired = (self.ledger).last_fired(&Issuer::Function(view.name.clone()), wall_ms);
        // Occurrences after the version's deploy only.
        let after = fired.map_or(v.at_ms, |t| t.max(v.at_ms));
        let at_ms = (v.spec.triggers.iter())
            .filter_map(|t| match t {
                Trigger::Timer(rec) => rec.latest_due(after, wall_ms, self.cfg.cron_zone).ok()?,
                _ => None,
            })
            .max()?;
        let firing = Firing {
            function: view.name.clone(),
            version: v.event,
            cause: Cause::Timer { at_ms },
        };
        let job = Origin::Function(Box::new(firing.clone())).job_id()?;
        let fire = self.ledger.job(&job).is_none()
            && self.my_turn(job, at_ms, self.cfg.fire_step_ms, wall_ms);
        fire.then(|| v.spec.fired_job(&firing))
    }

    /// Unfinished jobs past their `max_wall_clock` that this node should
    /// cancel now. Only a job's submitter (or its schedule's or function's
    /// owner) and admins may cancel it: the submitter does at the deadline,
    /// an admin ranked k-th for the job k heartbeats later.
    fn overdue_jobs(&self, wall_ms: u64) -> Vec<JobId> {
        (self.ledger.jobs())
            .filter(|j| j.spec.max_wall_clock_ms.is_some())
            .filter(|j| !self.ledger.is_sealed(&j.id) && !self.ledger.is_cancelled(&j.id))
            .filter(|j| self.ledger.may_cancel(&j.id, &self.me))
            .filter(|j| self.progress(&j.id).done() < j.task_count)
            .filter_map(|j| {
                let deadline = j.submitted_ms.checked_add(j.spec.max_wall_clock_ms?)?;
                let step = if j.submitted_by == self.me {
                    0
                } else {
                    self.cfg.heartbeat_ms
                };
                self.my_turn(j.id, deadline, step, wall_ms).then_some(j.id)
            })
            .collect()
    }
}
