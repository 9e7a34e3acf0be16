//! The core's side of multi-instance tasks (see `gang` for the rules).
//!
//! Owns what one node does about gangs: whether it may claim a gang task
//! now (it and enough other nodes have room, by its view), the primary's
//! invites once its claim is durable (again, after a pause, when a round
//! was declined), a member's join or decline when invited, and the room
//! other nodes' running tasks take (also read by the node to route
//! function calls to the peers with most room). Must not change the fold
//! or start processes itself (`start_ready` does, once the gang has
//! formed).

use super::{Core, Local};
use crate::event::EventBody;
use crate::gang::{pick_hosts, GangStep};
use crate::ids::{NodeId, TaskRef};
use crate::ledger::TaskState;
use crate::resources::{Amount, Resources};
use crate::storage::EventStore;
use crate::time::Millis;
use rand::Rng;
use std::collections::BTreeSet;

impl<S: EventStore> Core<S> {
    /// What the tasks the ledger shows running on `node` take there. A
    /// gang primary still recruiting does not count: it joins other gangs
    /// meanwhile (see `answer_invites`).
    fn peer_in_use(&self, node: &NodeId) -> Amount {
        let mut used = Amount::default();
        for task in self.running_by.get(node).into_iter().flatten() {
            if !self.recruiting(task) {
                used.add(self.resources_of(*task).amount());
            }
        }
        used
    }

    /// The slots of peer `node` (as its announce offers them) that the
    /// tasks the ledger shows running there leave free: its load as every
    /// node sees it. `None` for a node that never announced.
    pub fn free_slots(&self, node: &NodeId) -> Option<u32> {
        let info = self.ledger.node(node)?;
        Some(info.slots.saturating_sub(self.peer_in_use(node).slots))
    }

    /// Whether `task` is a gang whose primary is still recruiting.
    fn recruiting(&self, task: &TaskRef) -> bool {
        self.views.get(task).is_some_and(|v| {
            v.state == TaskState::Running
                && self.resources_of(*task).instances > 1
                && !v.gang.as_ref().is_some_and(|g| g.formed)
        })
    }

    /// Whether peer `node` has room for a task needing `r` now, by this
    /// node's view of what runs there.
    fn peer_has_room(&self, node: &NodeId, r: &Resources) -> bool {
        let Some(info) = self.ledger.node(node) else {
            return false;
        };
        let limit = Amount {
            slots: info.slots,
            memory_mb: info.memory_mb,
            gpus: info.gpus,
        };
        self.peer_in_use(node).room_for(r.amount(), limit)
    }

    /// The hosts this node would invite for `task`'s `attempt` now, itself
    /// first, if enough other candidates have room.
    fn gang_hosts(&self, task: TaskRef, attempt: u32, r: &Resources) -> Option<Vec<NodeId>> {
        let candidates = self.candidates(r);
        pick_hosts(task, attempt, self.me, r.instances, &candidates, |n| {
            self.peer_has_room(n, r)
        })
    }

    /// Whether this node may claim gang task `task` now: it has room itself
    /// (checked by the caller) and enough other nodes seem to.
    pub(super) fn gang_can_form(&self, task: TaskRef, attempt: u32, r: &Resources) -> bool {
        self.gang_hosts(task, attempt, r).is_some()
    }

    /// Primaries whose claim is durable invite their hosts: at once for
    /// the first round, after a pause once a round was declined or too
    /// few nodes had room, after a lease when a round got no answer. A primary keeps its claim meanwhile, so a gang
    /// that is slow to form costs no retry.
    pub(super) fn invite_gangs(&mut self, now: Millis) {
        let due: Vec<(TaskRef, u32, Option<u32>)> = self
            .local
            .iter()
            .filter(|(_, l)| l.rank == Some(0) && l.published && !l.running)
            .filter(|(_, l)| match l.reinvite_at {
                Some(at) => at <= now,
                None => l.round.is_none(),
            })
            .filter(|(t, l)| !self.gang_formed(**t, l.attempt))
            .map(|(t, l)| (*t, l.attempt, l.round))
            .collect();
        for (task, attempt, last) in due {
            let mine = self.views.get(&task).is_some_and(|v| {
                v.state == TaskState::Running && v.attempt == attempt && v.node == Some(self.me)
            });
            if !mine {
                continue;
            }
            let r = self.resources_of(task);
            let round = last.map_or(0, |r| r + 1);
            let hosts = self.gang_hosts(task, attempt, &r);
            let pause = self.gang_pause(round);
            // A round nobody declined that has not formed by then (an
            // invited node died before answering) is replaced.
            let timeout = now.plus(self.cfg.lease_ms + self.cfg.grace_ms);
            let Some(l) = self.local.get_mut(&task) else {
                continue;
            };
            match hosts {
                Some(hosts) => {
                    l.round = Some(round);
                    l.reinvite_at = Some(timeout);
                    self.publish_step(now, task, attempt, GangStep::Invite { round, hosts });
                }
                None => l.reinvite_at = Some(now.plus(pause)),
            }
        }
        self.timers.gang = self
            .local
            .values()
            .filter(|l| l.rank == Some(0) && !l.running)
            .filter_map(|l| l.reinvite_at)
            .filter(|at| *at > now)
            .min();
    }

    /// How long a primary waits before inviting round `round`: 100 ms,
    /// doubling each round up to 12.8 s, plus up to 100 ms at random so
    /// that two primaries competing for the same nodes fall out of step.
    fn gang_pause(&mut self, round: u32) -> u64 {
        (100u64 << round.min(7)) + self.rng.gen_range(0..100)
    }

    /// Answers the invites waiting here: join (keeping room for the
    /// instance until the gang forms) or decline. An invite to a task
    /// whose instance of a replaced round is still being stopped here
    /// waits for that instance's exit.
    pub(super) fn answer_invites(&mut self, now: Millis) {
        let mut later = BTreeSet::new();
        for task in std::mem::take(&mut self.invites) {
            let Some(view) = self.views.get(&task) else {
                continue;
            };
            let attempt = view.attempt;
            let Some((round, rank)) = view.gang.as_ref().and_then(|g| {
                let rank = g.hosts.iter().position(|h| *h == self.me)?;
                Some((g.round, rank as u32))
            }) else {
                continue;
            };
            let answered = self
                .ledger
                .gang(&task)
                .is_some_and(|g| g.answered(attempt, round, &self.me));
            if rank == 0 || answered {
                continue;
            }
            if let Some(l) = self.local.get(&task) {
                if l.killed {
                    later.insert(task);
                }
                continue;
            }
            // A primary still recruiting lends its room: two primaries
            // each waiting for the other's node would wait for ever.
            let need = self.resources_of(task).amount();
            let mut claimed = Amount::default();
            for (t, l) in &self.local {
                if !(l.rank == Some(0) && self.recruiting(t)) {
                    claimed.add(l.need);
                }
            }
            let willing = self.availability.willing() && claimed.room_for(need, self.limit());
            let step = if willing {
                self.local.insert(
                    task,
                    Local {
                        attempt,
                        published: true,
                        running: false,
                        killed: false,
                        need,
                        rank: Some(rank),
                        round: Some(round),
                        reinvite_at: None,
                    },
                );
                self.waiting.push_back(task);
                GangStep::Join { round }
            } else {
                GangStep::Decline { round }
            };
            self.publish_step(now, task, attempt, step);
        }
        self.invites.extend(later);
    }

    pub(super) fn publish_step(
        &mut self,
        now: Millis,
        task: TaskRef,
        attempt: u32,
        step: GangStep,
    ) {
        self.publish(
            now,
            EventBody::Gang {
                task,
                attempt,
                step,
            },
        );
    }

    /// A primary whose latest round a member declined invites again later.
    pub(super) fn invite_again(&mut self, now: Millis, task: TaskRef) {
        let Some(round) = self
            .views
            .get(&task)
            .and_then(|v| v.gang.as_ref())
            .map(|g| g.round)
        else {
            return;
        };
        let pause = self.gang_pause(round + 1);
        if let Some(l) = self.local.get_mut(&task) {
            // `invite_gangs`, which runs after every input, sets the wake-up.
            if l.rank == Some(0) && l.round == Some(round) && !l.running {
                let at = now.plus(pause);
                l.reinvite_at = Some(l.reinvite_at.map_or(at, |t| t.min(at)));
            }
        }
    }
}
