//! Every attempt of one task, for the task page: which node ran it, how it
//! ended and its captured logs, read back from the job's stored events
//! (claims, results and reclaims name the task), so a sealed job's
//! attempts show too.
//!
//! Owns that read-back and the rule it shares with the ledger's fold: an
//! attempt is listed once its claims count (attempt 0's always; each next
//! one's once the one before ended, by a reclaim or a result from one of
//! its claimers), so facts about attempts that never ran list nothing.
//! Must not decide a task's state: the ledger's view does.

use peerbatch_protocol::codec;
use peerbatch_protocol::hrw::outranks;
use peerbatch_protocol::{Event, EventBody, NodeId, TaskRef, TaskResult};
use std::collections::{BTreeMap, BTreeSet};

/// One attempt of a task.
#[derive(Debug)]
pub struct Attempt {
    pub number: u32,
    /// The claimer that won the attempt.
    pub node: NodeId,
    /// How it ended: a result from one of its claimers, if one came.
    pub result: Option<TaskResult>,
    /// Its lease ran out before a result came.
    pub reclaimed: bool,
}

/// What the stored events say about one task.
#[derive(Default)]
struct Facts {
    claimers: BTreeMap<u32, BTreeSet<NodeId>>,
    results: BTreeMap<(u32, NodeId), TaskResult>,
    reclaimed: BTreeSet<u32>,
}

impl Facts {
    fn add(&mut self, task: TaskRef, event: Event) {
        match event.body {
            EventBody::Claims { claims } => {
                for c in claims.into_iter().filter(|c| c.task == task) {
                    self.claimers
                        .entry(c.attempt)
                        .or_default()
                        .insert(event.author);
                }
            }
            EventBody::Finished { results } => {
                for r in results.into_iter().filter(|r| r.task == task) {
                    // Of two results one node gave for one attempt, keep a success.
                    let key = (r.attempt, event.author);
                    let keep = self
                        .results
                        .get(&key)
                        .is_none_or(|old| !old.outcome.success());
                    if keep {
                        self.results.insert(key, r);
                    }
                }
            }
            EventBody::Reclaimed { claims } => {
                let ours = claims.into_iter().filter(|c| c.task == task);
                self.reclaimed.extend(ours.map(|c| c.attempt));
            }
            _ => {}
        }
    }

    /// The result of `attempt` from one of its claimers, the winner's first.
    fn result(
        &self,
        attempt: u32,
        winner: NodeId,
        claimers: &BTreeSet<NodeId>,
    ) -> Option<TaskResult> {
        let from = |n: &NodeId| self.results.get(&(attempt, *n)).cloned();
        from(&winner).or_else(|| claimers.iter().find_map(from))
    }
}

/// Every attempt of `task` whose claims count, lowest first, from `events`
/// (the job's stored events, encoded).
pub fn attempts(task: TaskRef, events: &[Vec<u8>]) -> Vec<Attempt> {
    let mut facts = Facts::default();
    for bytes in events {
        if let Ok(event) = codec::decode::<Event>(bytes) {
            facts.add(task, event);
        }
    }
    let mut out = Vec::new();
    for number in 0u32.. {
        let Some(claimers) = facts.claimers.get(&number) else {
            break;
        };
        let Some(node) = claimers.iter().copied().reduce(|best, n| {
            if outranks(task, number, &n, &best) {
                n
            } else {
                best
            }
        }) else {
            break;
        };
        let result = facts.result(number, node, claimers);
        let reclaimed = facts.reclaimed.contains(&number);
        let ended = result.is_some() || reclaimed;
        out.push(Attempt {
            number,
            node,
            result,
            reclaimed,
        });
        if !ended || number == u32::MAX {
            break;
        }
    }
    out
}
