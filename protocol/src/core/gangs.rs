//! The core's side of multi-instance tasks (see `gang` for the rules).
//!
//! Owns what one node does about gangs: whether it may claim a gang task
//! now (it and enough other nodes have room, by its view), the primary's
//! invite once its claim is durable (or its release when too few nodes have
//! room), a member's join or decline when invited, and the room other
//! nodes' running tasks take. Must not change the fold or start processes
//! itself (`start_ready` does, once the gang has formed).

use super::{Core, Local};
use crate::event::{Claim, EventBody};
use crate::gang::{pick_hosts, GangStep};
use crate::ids::{NodeId, TaskRef};
use crate::ledger::{TaskState, TaskView};
use crate::resources::{Amount, Resources};
use crate::storage::EventStore;
use crate::time::Millis;

impl<S: EventStore> Core<S> {
    /// What the tasks the ledger shows running on `node` take there.
    fn peer_in_use(&self, node: &NodeId) -> Amount {
        let mut used = Amount::default();
        for task in self.running_by.get(node).into_iter().flatten() {
            used.add(self.resources_of(*task).amount());
        }
        used
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

    /// Primaries whose claim is durable invite their hosts; one that finds
    /// too few nodes with room gives the attempt back (not a try).
    pub(super) fn invite_gangs(&mut self, now: Millis) {
        let due: Vec<(TaskRef, u32)> = self
            .local
            .iter()
            .filter(|(_, l)| l.rank == Some(0) && l.published && !l.invited)
            .map(|(t, l)| (*t, l.attempt))
            .collect();
        for (task, attempt) in due {
            let mine = self.views.get(&task).is_some_and(|v| {
                v.state == TaskState::Running && v.attempt == attempt && v.node == Some(self.me)
            });
            if !mine {
                continue;
            }
            if let Some(l) = self.local.get_mut(&task) {
                l.invited = true;
            }
            let r = self.resources_of(task);
            let step = match self.gang_hosts(task, attempt, &r) {
                Some(hosts) => GangStep::Invite { hosts },
                None => {
                    self.publish(
                        now,
                        EventBody::Released {
                            claims: vec![Claim { task, attempt }],
                        },
                    );
                    continue;
                }
            };
            self.publish(
                now,
                EventBody::Gang {
                    task,
                    attempt,
                    step,
                },
            );
        }
    }

    /// Answers the invites waiting here: join (keeping room for the
    /// instance until the gang forms) or decline.
    pub(super) fn answer_invites(&mut self, now: Millis) {
        for task in std::mem::take(&mut self.invites) {
            let Some(view) = self.views.get(&task) else {
                continue;
            };
            let attempt = view.attempt;
            let Some(rank) = view
                .gang
                .as_ref()
                .and_then(|g| g.hosts.iter().position(|h| *h == self.me))
            else {
                continue;
            };
            let answered = self
                .ledger
                .gang(&task)
                .is_some_and(|g| g.answered(attempt, &self.me));
            if rank == 0 || answered || self.local.contains_key(&task) {
                continue;
            }
            let need = self.resources_of(task).amount();
            let mut claimed = Amount::default();
            for l in self.local.values() {
                claimed.add(l.need);
            }
            let willing = !self.draining && !self.paused && claimed.room_for(need, self.limit());
            let step = if willing {
                self.local.insert(
                    task,
                    Local {
                        attempt,
                        published: true,
                        running: false,
                        killed: false,
                        need,
                        rank: Some(rank as u32),
                        invited: true,
                    },
                );
                self.waiting.push_back(task);
                GangStep::Join
            } else {
                GangStep::Decline
            };
            self.publish(
                now,
                EventBody::Gang {
                    task,
                    attempt,
                    step,
                },
            );
        }
    }

    /// A gang task that went back from running to pending (given back, or
    /// reclaimed) is held here for 250 ms, doubling each time up to 16 s,
    /// so that a gang that keeps failing to form costs few events; the
    /// hold ends with the task.
    pub(super) fn hold_gang(
        &mut self,
        now: Millis,
        task: TaskRef,
        old: Option<TaskState>,
        view: &TaskView,
    ) {
        if view.state.terminal() {
            self.gang_holds.remove(&task);
        } else if old == Some(TaskState::Running)
            && view.state == TaskState::Pending
            && self.resources_of(task).instances > 1
        {
            let times = self.gang_holds.get(&task).map_or(0, |(_, n)| n + 1);
            let wait = 250u64 << times.min(6);
            self.gang_holds.insert(task, (now.plus(wait), times));
        }
    }

    /// A primary whose gang a member declined gives the attempt back.
    pub(super) fn release_declined(&mut self, now: Millis, task: TaskRef) {
        let Some(view) = self.views.get(&task) else {
            return;
        };
        let declined = view.gang.as_ref().is_some_and(|g| g.declined);
        let primary = self
            .local
            .get(&task)
            .is_some_and(|l| l.rank == Some(0) && l.attempt == view.attempt && !l.running);
        if declined && primary {
            let attempt = view.attempt;
            self.publish(
                now,
                EventBody::Released {
                    claims: vec![Claim { task, attempt }],
                },
            );
        }
    }
}
