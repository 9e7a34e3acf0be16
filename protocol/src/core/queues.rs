//! The claim queues: the pending tasks this node may claim, one queue per
//! HRW rank it has for them, each in claim order (priority, index, submit
//! time), with when each task became ready.
//!
//! Owns which rank each task is queued at and the next pick: a rank-0 task
//! from the front of its queue, else a rank-k task from the back once it
//! has waited k·δ (so a helper and the first choice rarely pick the same
//! task), and when that next becomes possible. Must not decide ranks,
//! eligibility, capacity or whether a task may be queued: the core does.

use crate::ids::TaskRef;
use crate::time::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// A queued task's place: higher priority first, then index, then submit
/// time.
pub(super) type QueueKey = (i64, u32, u64, TaskRef);

#[derive(Default)]
pub(super) struct ClaimQueues {
    /// Per rank: each task's attempt and when it became ready.
    by_rank: Vec<BTreeMap<QueueKey, (u32, Millis)>>,
    queued: BTreeMap<TaskRef, (usize, QueueKey)>,
    /// When a queued rank-k task next becomes stealable, if there is room.
    steal_at: Option<Millis>,
    /// What the last look for a task to steal found, passing none over,
    /// when it found none (and when one becomes stealable), while no queue
    /// changed since: an idle node looks after every input, and looking
    /// goes through every rank (a thousand in a 1,000-node mesh).
    none_to_steal: Option<(u64, Option<Millis>)>,
}

impl ClaimQueues {
    pub fn insert(&mut self, rank: usize, key: QueueKey, attempt: u32, ready: Millis) {
        if self.by_rank.len() <= rank {
            self.by_rank.resize_with(rank + 1, BTreeMap::new);
        }
        self.by_rank[rank].insert(key, (attempt, ready));
        self.queued.insert(key.3, (rank, key));
        self.none_to_steal = None;
    }

    /// Takes `task` out; its attempt and when it became ready.
    pub fn remove(&mut self, task: TaskRef) -> Option<(u32, Millis)> {
        let (rank, key) = self.queued.remove(&task)?;
        self.none_to_steal = None;
        self.by_rank[rank].remove(&key)
    }

    /// Empties the queues (to rank every task again), keeping when each
    /// queued task became ready.
    pub fn take_ready_times(&mut self) -> BTreeMap<TaskRef, Millis> {
        let ready = (self.by_rank.iter())
            .flat_map(|q| q.iter().map(|((.., task), (_, ready))| (*task, *ready)))
            .collect();
        self.by_rank.clear();
        self.queued.clear();
        self.none_to_steal = None;
        ready
    }

    /// The next task to claim, not in `passed`: the front of rank 0, else
    /// a rank-k task from the back that has waited k · `step_ms`. With
    /// none, remembers when a rank-k task will have waited long enough.
    pub fn next_pick(
        &mut self,
        now: Millis,
        step_ms: u64,
        passed: &BTreeSet<TaskRef>,
    ) -> Option<(TaskRef, u32)> {
        let first = (self.by_rank.first())
            .and_then(|q| q.iter().find(|(k, _)| !passed.contains(&k.3)))
            .map(|((.., task), (attempt, _))| (*task, *attempt));
        if first.is_some() {
            return first;
        }
        match self.steal_unless_known(now, step_ms, passed) {
            Ok(pick) => Some(pick),
            Err(next) => {
                self.steal_at = next;
                None
            }
        }
    }

    /// [`Self::steal`], unless the queues did not change since it last
    /// found nothing to steal and that is still so at `now` (it found the
    /// earliest time one becomes stealable), with no task passed over.
    fn steal_unless_known(
        &mut self,
        now: Millis,
        step_ms: u64,
        passed: &BTreeSet<TaskRef>,
    ) -> Result<(TaskRef, u32), Option<Millis>> {
        if let Some((step, next)) = self.none_to_steal {
            if step == step_ms && passed.is_empty() && next.is_none_or(|at| now < at) {
                return Err(next);
            }
        }
        let found = self.steal(now, step_ms, passed);
        if let (Err(next), true) = (found, passed.is_empty()) {
            self.none_to_steal = Some((step_ms, next));
        }
        found
    }

    /// A rank-k task queued for k·δ, taken from the back; or else when the
    /// first one will have waited long enough, if any is queued.
    fn steal(
        &self,
        now: Millis,
        step_ms: u64,
        passed: &BTreeSet<TaskRef>,
    ) -> Result<(TaskRef, u32), Option<Millis>> {
        let mut next: Option<Millis> = None;
        for (rank, queue) in self.by_rank.iter().enumerate().skip(1) {
            let wait = rank as u64 * step_ms;
            let open = queue.iter().rev().filter(|(k, _)| !passed.contains(&k.3));
            for ((.., task), (attempt, ready)) in open.take(64) {
                let at = ready.plus(wait);
                if at <= now {
                    return Ok((*task, *attempt));
                }
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Err(next)
    }

    /// Forgets when a rank-k task becomes stealable (a new round of
    /// claiming is about to judge it again).
    pub fn clear_steal(&mut self) {
        self.steal_at = None;
    }

    pub fn steal_at(&self) -> Option<Millis> {
        self.steal_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;

    fn task(index: u32) -> TaskRef {
        TaskRef {
            job: JobId([1; 8]),
            index,
        }
    }

    fn key(index: u32) -> QueueKey {
        (0, index, 0, task(index))
    }

    #[test]
    fn a_look_that_found_nothing_to_steal_hides_no_task_queued_after_it_nor_the_time_one_comes() {
        let (mut queues, none) = (ClaimQueues::default(), BTreeSet::new());
        queues.insert(2, key(1), 0, Millis(0));
        assert_eq!(queues.next_pick(Millis(50), 100, &none), None);
        assert_eq!(queues.steal_at(), Some(Millis(200)), "rank 2 waits 2·δ");
        assert_eq!(queues.next_pick(Millis(60), 100, &none), None);
        assert_eq!(queues.steal_at(), Some(Millis(200)), "asked again");
        queues.insert(1, key(2), 0, Millis(0));
        assert_eq!(
            queues.next_pick(Millis(150), 100, &none),
            Some((task(2), 0))
        );
        queues.remove(task(2));
        assert_eq!(queues.next_pick(Millis(150), 100, &none), None);
        assert_eq!(
            queues.next_pick(Millis(200), 100, &none),
            Some((task(1), 0))
        );
        let passed = BTreeSet::from([task(1)]);
        assert_eq!(queues.next_pick(Millis(200), 100, &passed), None);
    }
}
