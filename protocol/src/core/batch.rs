//! The batcher: claims, reclaims and results this node has decided but not
//! yet published, and when they leave.
//!
//! Owns the batch window: one event per kind per `batch_ms`, the first
//! after a quiet period at once, and `hurry` for what a waiting task needs. Must not publish events nor decide what to claim,
//! reclaim or report: the core does, and publishes what `take` hands it.

use crate::event::{Claim, TaskResult};
use crate::ids::TaskRef;
use crate::time::Millis;
use std::collections::BTreeSet;

#[derive(Default)]
pub(super) struct Batcher {
    claims: Vec<Claim>,
    results: Vec<TaskResult>,
    reclaims: BTreeSet<Claim>,
    /// When what is batched leaves, if anything is.
    due: Option<Millis>,
    last: Option<Millis>,
}

/// What leaves in one batch, in the order it is published.
pub(super) struct Batch {
    pub claims: Vec<Claim>,
    pub reclaims: Vec<Claim>,
    pub results: Vec<TaskResult>,
}

impl Batcher {
    pub fn claim(&mut self, claim: Claim, now: Millis, batch_ms: u64) {
        self.claims.push(claim);
        self.mark(now, batch_ms);
    }

    pub fn reclaim(&mut self, claims: impl IntoIterator<Item = Claim>, now: Millis, batch_ms: u64) {
        self.reclaims.extend(claims);
        self.mark(now, batch_ms);
    }

    pub fn result(&mut self, result: TaskResult, now: Millis, batch_ms: u64) {
        self.results.push(result);
        self.mark(now, batch_ms);
    }

    /// Sets when the batch leaves if something waits and no time is set:
    /// at once after a quiet window, else a window after the last batch.
    fn mark(&mut self, now: Millis, batch_ms: u64) {
        let empty = self.claims.is_empty() && self.results.is_empty() && self.reclaims.is_empty();
        if self.due.is_none() && !empty {
            let earliest = self.last.map_or(now, |t| t.plus(batch_ms));
            self.due = Some(earliest.max(now));
        }
    }

    /// Lets the batch leave now, without waiting out the window: a chain
    /// of tasks is only as fast as the mesh allows if the result a task
    /// waits for, and the claim of a task that waited, leave at once.
    /// Arrays, whose tasks nobody waits for, keep the window.
    pub fn hurry(&mut self, now: Millis) {
        self.due = Some(now);
    }

    pub fn due(&self) -> Option<Millis> {
        self.due
    }

    pub fn is_due(&self, now: Millis) -> bool {
        self.due.is_some_and(|due| now >= due)
    }

    /// Empties the batcher for publishing at `now`.
    pub fn take(&mut self, now: Millis) -> Batch {
        self.due = None;
        self.last = Some(now);
        Batch {
            claims: std::mem::take(&mut self.claims),
            reclaims: std::mem::take(&mut self.reclaims).into_iter().collect(),
            results: std::mem::take(&mut self.results),
        }
    }

    /// Withdraws a claim not yet published (it lost to a better one).
    pub fn withdraw_claim(&mut self, task: TaskRef) {
        self.claims.retain(|c| c.task != task);
    }

    /// Whether a result for `task`'s attempt `attempt` waits here.
    pub fn has_result(&self, task: TaskRef, attempt: u32) -> bool {
        (self.results.iter()).any(|r| r.task == task && r.attempt == attempt)
    }

    /// Whether anything of a task `of_job` accepts waits here.
    pub fn holds_any(&self, of_job: impl Fn(&TaskRef) -> bool) -> bool {
        self.claims.iter().any(|c| of_job(&c.task))
            || self.reclaims.iter().any(|c| of_job(&c.task))
            || self.results.iter().any(|r| of_job(&r.task))
    }
}
