//! Multi-instance tasks: how a gang forms for an attempt, and when it has.
//!
//! A task with `instances = N` runs as N processes on N distinct nodes at
//! once. The attempt's claim winner is the primary (rank 0); it invites
//! N − 1 other nodes, each answers `Join` (keeping room for its instance)
//! or `Decline`, and the gang has formed once every node of the invite
//! joined. Every member starts its process when it sees that; the
//! primary's exit is the task's result. When a node declines, the primary
//! keeps its claim and invites again (a new round, after a pause), so a
//! gang that is slow to form costs no retry.
//!
//! Owns the steps, the per-task record of them and the formation rule (a
//! pure function of the set of steps), and how a primary picks its hosts.
//! Must not decide claims, leases or room (the core does) or run anything.

use crate::exit::TaskResult;
use crate::hrw;
use crate::ids::{NodeId, TaskRef};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GangStep {
    /// From the attempt's primary: round `round`'s nodes in rank order,
    /// the primary first. A new round replaces the one before.
    Invite { round: u32, hosts: Vec<NodeId> },
    /// The author takes its rank in `round` and keeps room for it.
    Join { round: u32 },
    /// The author has no room: `round` cannot form.
    Decline { round: u32 },
    /// The author's instance (rank > 0) ended.
    Exited { result: TaskResult },
}

/// Where one instance of a gang runs: its rank and every host in rank
/// order (what the executor tells the process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GangPlace {
    pub rank: u32,
    pub hosts: Vec<NodeId>,
}

/// A running attempt's gang as the ledger shows it: the primary's latest
/// round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GangView {
    pub round: u32,
    /// Rank order; the primary first.
    pub hosts: Vec<NodeId>,
    /// Every invited node joined: the instances start.
    pub formed: bool,
    /// An invited node declined: this round cannot form.
    pub declined: bool,
}

/// Every gang step of one task, sorted, without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GangFacts {
    steps: Vec<(u32, NodeId, GangStep)>,
}

impl GangFacts {
    pub fn insert(&mut self, attempt: u32, author: NodeId, step: GangStep) {
        let entry = (attempt, author, step);
        if let Err(at) = self.steps.binary_search(&entry) {
            self.steps.insert(at, entry);
        }
    }

    fn of(&self, attempt: u32) -> impl Iterator<Item = &(u32, NodeId, GangStep)> {
        let from = self.steps.partition_point(|(a, _, _)| *a < attempt);
        self.steps[from..]
            .iter()
            .take_while(move |(a, _, _)| *a == attempt)
    }

    /// The gang of `attempt` as its primary `winner` last invited it: the
    /// highest round with `instances` distinct hosts and itself first (of
    /// two invites of one round, which an honest primary never sends, the
    /// smaller counts). A primary invites again only after a decline, so
    /// a round that formed stays the last.
    pub fn view(&self, attempt: u32, winner: NodeId, instances: u32) -> Option<GangView> {
        let (round, hosts) = self
            .of(attempt)
            .filter_map(|(_, author, step)| match step {
                GangStep::Invite { round, hosts }
                    if *author == winner && valid(hosts, winner, instances) =>
                {
                    Some((*round, hosts))
                }
                _ => None,
            })
            .reduce(|best, next| if next.0 > best.0 { next } else { best })?;
        let declined = hosts
            .iter()
            .any(|h| self.said_by(attempt, h, |s| *s == GangStep::Decline { round }));
        let formed = !declined
            && hosts[1..]
                .iter()
                .all(|h| self.said_by(attempt, h, |s| *s == GangStep::Join { round }));
        Some(GangView {
            round,
            hosts: hosts.clone(),
            formed,
            declined,
        })
    }

    /// Whether `node` said something `what` matches about `attempt`.
    fn said_by(&self, attempt: u32, node: &NodeId, what: impl Fn(&GangStep) -> bool) -> bool {
        self.of(attempt)
            .any(|(_, author, step)| author == node && what(step))
    }

    /// Whether `node` answered round `round` of `attempt`'s invites.
    pub fn answered(&self, attempt: u32, round: u32, node: &NodeId) -> bool {
        self.said_by(attempt, node, |s| {
            *s == GangStep::Join { round } || *s == GangStep::Decline { round }
        })
    }

    /// Whether `node`'s instance of `attempt` reported its end.
    pub fn exited(&self, attempt: u32, node: &NodeId) -> bool {
        self.said_by(attempt, node, |s| matches!(s, GangStep::Exited { .. }))
    }

    /// The members of `attempt`'s gang (as primary `winner` invited it)
    /// in rank order, each with its instance's result if it reported one
    /// (the primary's is the task's own result, not listed here).
    pub fn members(
        &self,
        attempt: u32,
        winner: NodeId,
        instances: u32,
    ) -> Vec<(NodeId, Option<&TaskResult>)> {
        let hosts = self.view(attempt, winner, instances).map(|g| g.hosts);
        hosts
            .unwrap_or_default()
            .into_iter()
            .map(|host| {
                let result = self.of(attempt).find_map(|(_, author, step)| match step {
                    GangStep::Exited { result } if *author == host => Some(result),
                    _ => None,
                });
                (host, result)
            })
            .collect()
    }
}

fn valid(hosts: &[NodeId], primary: NodeId, instances: u32) -> bool {
    let mut sorted = hosts.to_vec();
    sorted.sort();
    sorted.dedup();
    hosts.len() == instances as usize && sorted.len() == hosts.len() && hosts[0] == primary
}

/// The hosts primary `me` invites for an attempt: itself, then the
/// `instances − 1` best-scoring of `others` that `has_room`, or `None` if
/// too few have.
pub fn pick_hosts(
    task: TaskRef,
    attempt: u32,
    me: NodeId,
    instances: u32,
    others: &[NodeId],
    has_room: impl Fn(&NodeId) -> bool,
) -> Option<Vec<NodeId>> {
    let mut fit: Vec<&NodeId> = others.iter().filter(|n| **n != me && has_room(n)).collect();
    let wanted = instances.saturating_sub(1) as usize;
    if fit.len() < wanted {
        return None;
    }
    fit.sort_by(|a, b| {
        if hrw::outranks(task, attempt, a, b) {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    });
    let mut hosts = vec![me];
    hosts.extend(fit.into_iter().take(wanted).copied());
    Some(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;

    fn node(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    const TASK: TaskRef = TaskRef {
        job: JobId([7; 8]),
        index: 0,
    };

    fn invite(round: u32, hosts: &[u8]) -> GangStep {
        GangStep::Invite {
            round,
            hosts: hosts.iter().map(|b| node(*b)).collect(),
        }
    }

    #[test]
    fn a_gang_forms_when_every_invited_node_joined_in_any_order() {
        let steps = [
            (node(1), invite(0, &[1, 2, 3])),
            (node(3), GangStep::Join { round: 0 }),
            (node(2), GangStep::Join { round: 0 }),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let mut facts = GangFacts::default();
            for (k, i) in order.iter().enumerate() {
                let (author, step) = &steps[*i];
                facts.insert(4, *author, step.clone());
                let formed = facts.view(4, node(1), 3).is_some_and(|g| g.formed);
                assert_eq!(formed, k == 2, "after {} steps", k + 1);
            }
        }
    }

    #[test]
    fn invites_from_anyone_but_the_winner_or_of_the_wrong_size_do_not_count() {
        let mut facts = GangFacts::default();
        facts.insert(0, node(2), invite(0, &[2, 1]));
        assert_eq!(facts.view(0, node(1), 2), None, "not from the winner");
        facts.insert(0, node(1), invite(0, &[1, 1]));
        assert_eq!(facts.view(0, node(1), 2), None, "a host twice");
        facts.insert(0, node(1), invite(0, &[1, 2]));
        assert_eq!(facts.view(0, node(1), 3), None, "too few hosts");
        assert!(facts.view(0, node(1), 2).is_some());
        assert!(facts.view(1, node(1), 2).is_none(), "another attempt");
    }

    #[test]
    fn a_decline_stops_a_round_and_the_next_round_can_form() {
        let mut facts = GangFacts::default();
        facts.insert(0, node(1), invite(0, &[1, 2, 3]));
        facts.insert(0, node(2), GangStep::Join { round: 0 });
        facts.insert(0, node(3), GangStep::Decline { round: 0 });
        let gang = facts.view(0, node(1), 3).unwrap();
        assert!(!gang.formed && gang.declined);
        assert!(facts.answered(0, 0, &node(2)) && !facts.answered(0, 1, &node(2)));
        facts.insert(0, node(1), invite(1, &[1, 2, 4]));
        facts.insert(0, node(4), GangStep::Join { round: 1 });
        let gang = facts.view(0, node(1), 3).unwrap();
        assert_eq!(
            (gang.round, gang.formed),
            (1, false),
            "node 2's join was for round 0"
        );
        facts.insert(0, node(2), GangStep::Join { round: 1 });
        let gang = facts.view(0, node(1), 3).unwrap();
        assert!(gang.formed && !gang.declined);
        assert_eq!(gang.hosts, vec![node(1), node(2), node(4)]);
    }

    #[test]
    fn hosts_are_picked_among_nodes_with_room_the_same_on_every_node() {
        let others: Vec<NodeId> = (1..=6).map(node).collect();
        let room = |n: &NodeId| n.0[0] != 3;
        let a = pick_hosts(TASK, 2, node(1), 4, &others, room).unwrap();
        let mut shuffled = others.clone();
        shuffled.reverse();
        let b = pick_hosts(TASK, 2, node(1), 4, &shuffled, room).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        assert_eq!(a[0], node(1));
        assert!(!a.contains(&node(3)));
        assert_eq!(pick_hosts(TASK, 2, node(1), 6, &others, room), None);
    }
}
