//! What the ledger holds about one task, and which of it counts.
//!
//! Owns `TaskFacts` (every claim, result and reclaim ever seen for a task,
//! sorted, whoever wrote it) and the rules that pick the facts that count:
//! attempt 0's claims always count; attempt a + 1's count once attempt a
//! was closed by a counted reclaim or result; a result counts only from a
//! node that claimed its attempt; a reclaim only of an attempt that
//! counts. Facts only grow, and so does what counts: a fact that does not
//! count yet (its claim has not arrived) counts once it does, whatever the
//! order. Must not know jobs, exit-code rules or cancels; `ledger` turns
//! what counts into a task's state.

use crate::codec;
use crate::event::TaskResult;
use crate::hrw;
use crate::ids::{NodeId, TaskRef};
use smallvec::{Array, SmallVec};

/// Everything the ledger holds about one task, each list sorted and
/// without repeats. A task has a handful of facts and every node keeps
/// them for every task: most tasks have one claim and one result, so
/// those sit inline (the ledger keeps a job's facts in one block, see
/// `per_task`) and only a task with more has lists of its own, grown one
/// entry at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TaskFacts {
    claims: SmallVec<[(u32, NodeId); 1]>,
    results: SmallVec<[((u32, NodeId), TaskResult); 1]>,
    reclaimed: SmallVec<[u32; 2]>,
}

/// Adds `x` to a sorted list unless it is there already.
fn insert_sorted<A: Array>(list: &mut SmallVec<A>, x: A::Item)
where
    A::Item: Ord,
{
    if let Err(at) = list.binary_search(&x) {
        insert_exact(list, at, x);
    }
}

/// Inserts `x` at `at`, growing the list by that one entry only.
fn insert_exact<A: Array>(list: &mut SmallVec<A>, at: usize, x: A::Item) {
    list.reserve_exact(1);
    list.insert(at, x);
}

impl TaskFacts {
    pub(super) fn add_claim(&mut self, attempt: u32, node: NodeId) {
        insert_sorted(&mut self.claims, (attempt, node));
    }

    pub(super) fn add_reclaim(&mut self, attempt: u32) {
        insert_sorted(&mut self.reclaimed, attempt);
    }

    /// Records `node`'s result. Of two results one node gave for one
    /// attempt (an honest node never does), every replica keeps the same.
    pub(super) fn add_result(&mut self, node: NodeId, r: &TaskResult) {
        let key = (r.attempt, node);
        match self.results.binary_search_by(|(k, _)| k.cmp(&key)) {
            Err(at) => insert_exact(&mut self.results, at, (key, r.clone())),
            Ok(at) => {
                if preferred(r, &self.results[at].1) {
                    self.results[at].1 = r.clone();
                }
            }
        }
    }

    fn claimers(&self, attempt: u32) -> &[(u32, NodeId)] {
        let from = self.claims.partition_point(|(a, _)| *a < attempt);
        let to = self.claims.partition_point(|(a, _)| *a <= attempt);
        &self.claims[from..to]
    }

    pub(super) fn claimed_by(&self, attempt: u32, node: &NodeId) -> bool {
        self.claims.binary_search(&(attempt, *node)).is_ok()
    }

    /// Whether attempt `attempt` (one that counts) has ended: reclaimed,
    /// or a result from one of its claimers.
    pub(super) fn closed(&self, attempt: u32) -> bool {
        self.reclaimed.binary_search(&attempt).is_ok()
            || self
                .results
                .iter()
                .any(|((a, n), _)| *a == attempt && self.claimed_by(attempt, n))
    }

    /// The highest attempt whose claims count, if any does: attempt 0's
    /// always do, each next one's once the one before is closed.
    pub(super) fn last_counted(&self) -> Option<u32> {
        let mut last = None;
        let mut attempt = 0u32;
        while !self.claimers(attempt).is_empty() {
            last = Some(attempt);
            if !self.closed(attempt) {
                break;
            }
            match attempt.checked_add(1) {
                Some(next) => attempt = next,
                None => break,
            }
        }
        last
    }

    /// The results that count, lowest `(attempt, node)` first: from a
    /// claimer of an attempt that counts.
    pub(super) fn counted_results(
        &self,
        last: Option<u32>,
    ) -> impl Iterator<Item = &((u32, NodeId), TaskResult)> {
        self.results
            .iter()
            .filter(move |((a, n), _)| last.is_some_and(|l| *a <= l) && self.claimed_by(*a, n))
    }

    /// The reclaimed attempts that count, lowest first.
    pub(super) fn counted_reclaims(&self, last: Option<u32>) -> impl Iterator<Item = u32> + '_ {
        self.reclaimed
            .iter()
            .copied()
            .filter(move |a| last.is_some_and(|l| *a <= l))
    }

    /// The claim that wins an attempt: best rendezvous score, ties to the
    /// lower id.
    pub(super) fn winner(&self, task: TaskRef, attempt: u32) -> Option<NodeId> {
        self.claimers(attempt)
            .iter()
            .map(|(_, n)| *n)
            .reduce(|best, n| {
                if hrw::outranks(task, attempt, &n, &best) {
                    n
                } else {
                    best
                }
            })
    }
}

/// Of two results one node gave for one attempt, the one every replica
/// keeps whatever their order: a success, else the smaller encoding.
fn preferred(new: &TaskResult, old: &TaskResult) -> bool {
    (!new.outcome.success(), codec::encode(new)) < (!old.outcome.success(), codec::encode(old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;
    use crate::ids::JobId;

    const TASK: TaskRef = TaskRef {
        job: JobId([1; 8]),
        index: 0,
    };

    fn node(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn result(attempt: u32) -> TaskResult {
        TaskResult {
            task: TASK,
            attempt,
            outcome: Outcome::Exited(1),
            stdout: None,
            stderr: None,
            outputs: None,
            duration_ms: 1,
        }
    }

    #[test]
    fn an_attempt_counts_only_once_the_one_before_was_closed_by_what_counts() {
        let mut facts = TaskFacts::default();
        facts.add_claim(2, node(1));
        facts.add_reclaim(2);
        assert_eq!(facts.last_counted(), None, "attempt 2 before 0 and 1");
        facts.add_claim(0, node(1));
        facts.add_result(node(2), &result(0));
        assert_eq!(facts.last_counted(), Some(0), "a result from a non-claimer");
        assert_eq!(facts.counted_results(Some(0)).count(), 0);
        facts.add_result(node(1), &result(0));
        facts.add_claim(1, node(3));
        assert_eq!(facts.last_counted(), Some(1));
        facts.add_reclaim(1);
        assert_eq!(facts.last_counted(), Some(2), "each step closed in turn");
        assert_eq!(facts.counted_reclaims(Some(2)).collect::<Vec<_>>(), [1, 2]);
    }
}
