//! Start-up: a core's state folded from its store, one job at a time.
//!
//! Owns the order in which stored events are admitted when a core starts:
//! first every event that states no task fact (jobs, cancels, nodes,
//! functions, requests to forget), then each job's task facts read from
//! the store's job index — the jobs a job waits for before it — sealing a
//! finished job before the next is read. A restart so holds the facts of
//! the live jobs and of one finished job at a time, not the whole ledger's.
//! Must not decide what an event means (the ledger does) or when a job
//! that finishes later seals (`Core::seal_next`).

use super::Core;
use crate::event::{event_id, Event};
use crate::ids::{EventId, JobId};
use crate::storage::{EventStore, Forgetting};
use crate::time::Millis;
use std::collections::BTreeSet;

impl<S: EventStore> Core<S> {
    /// Admits `stored` (every stored event) and each job's task facts, in
    /// the order above; stored events about forgotten jobs are handed to
    /// the store to remove again.
    pub(super) fn load(&mut self, now: Millis, stored: impl IntoIterator<Item = Vec<u8>>) {
        let named = self.load_job_level(stored);
        self.update_eligible(now);
        for job in self.jobs_waited_for_first() {
            self.load_job(now, job);
        }
        // Task facts about jobs with no record here are kept, as when
        // they first came.
        let unknown: Vec<JobId> = named
            .into_iter()
            .filter(|j| self.ledger.job(j).is_none())
            .collect();
        for job in unknown {
            for (id, event) in self.stored_with_ids(&job) {
                self.admit_stored(id, &event);
            }
        }
        // Finished but not sealed (this node still had something of
        // theirs to publish): all else is in the store, so they seal at
        // the first tick.
        for due in self.finished.values_mut() {
            *due = now;
        }
    }

    /// Admits those of `stored` that state no task fact; returns the jobs
    /// the others name. Events about forgotten jobs are not admitted but
    /// removed from the store again (written behind the job's forgetting).
    fn load_job_level(&mut self, stored: impl IntoIterator<Item = Vec<u8>>) -> BTreeSet<JobId> {
        let mut named = BTreeSet::new();
        let mut forgotten = Vec::new();
        for bytes in stored {
            let Ok(event) = crate::codec::decode_stored::<Event>(&bytes) else {
                self.stats.events_rejected += 1;
                continue;
            };
            let id = event_id(&bytes);
            if self.ledger.about_forgotten(&id, &event.body) {
                forgotten.push(id);
                continue;
            }
            let jobs = event.body.task_jobs();
            if jobs.is_empty() {
                self.admit_stored(id, &event);
            } else {
                named.extend(jobs);
            }
        }
        if !forgotten.is_empty() {
            self.forgetting.push_back(Forgetting::Events(forgotten));
        }
        named
    }

    /// Every job with a record, each after the jobs it waits for.
    fn jobs_waited_for_first(&self) -> Vec<JobId> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for record in self.ledger.jobs() {
            let mut stack = vec![(record.id, false)];
            while let Some((job, expanded)) = stack.pop() {
                if expanded {
                    order.push(job);
                    continue;
                }
                let Some(record) = self.ledger.job(&job) else {
                    continue;
                };
                if !seen.insert(job) {
                    continue;
                }
                stack.push((job, true));
                stack.extend(record.spec.after.iter().map(|j| (*j, false)));
            }
        }
        order
    }

    /// Admits `job`'s stored task facts and folds its views; seals it at
    /// once if it is finished and this node has nothing of it to publish.
    fn load_job(&mut self, now: Millis, job: JobId) {
        let stored = self.stored_with_ids(&job);
        for (id, event) in &stored {
            self.admit_stored(*id, event);
        }
        self.refresh_job(now, job);
        if self.every_task_ended(job) && !self.busy_with(job) && self.seal(job, &stored) {
            self.finished.remove(&job);
        }
    }

    /// Admits one stored event; one this node's rules now refuse (stored
    /// before they did) is counted and left out.
    fn admit_stored(&mut self, id: EventId, event: &Event) {
        if self.ledger.admit(id, event).is_err() {
            self.stats.events_rejected += 1;
        }
    }
}
