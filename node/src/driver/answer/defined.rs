//! Answers about what users define in the ledger beside jobs: pools (and
//! their members' start-task results), schedules, package versions.
//!
//! Owns reading those records and refusing what the core refuses; must not
//! run start tasks or fire schedules (`pools` and `schedules` do).

use crate::driver::command::{PoolEntry, Refusal, ScheduleEntry};
use crate::driver::Driver;
use crate::identity::node_name;
use crate::wallclock::wall_ms;
use peerbatch_protocol::event::SideResult;
use peerbatch_protocol::ledger::{PackageRecord, PoolRecord};
use peerbatch_protocol::schedule::Recurrence;
use peerbatch_protocol::trigger::Issuer;
use peerbatch_protocol::{BlobId, Command, JobSpec, NodeId};

impl Driver {
    pub(super) fn pool_list(&self) -> Vec<PoolEntry> {
        let pools = self.core.ledger().pools(wall_ms());
        pools
            .map(|p| PoolEntry {
                record: p.clone(),
                members: self.pool_members(p),
            })
            .collect()
    }

    /// The nodes labelled `pool=NAME` or that ran its start task, each
    /// with its start-task result if it has one.
    fn pool_members(&self, p: &PoolRecord) -> Vec<(NodeId, Option<SideResult>)> {
        let ledger = self.core.ledger();
        let labelled =
            |labels: &[(String, String)]| labels.iter().any(|(k, v)| k == "pool" && *v == p.name);
        (ledger.nodes())
            .map(|(id, info)| (*id, info, ledger.start_result(&p.event, id)))
            .filter(|(_, info, result)| labelled(&info.labels) || result.is_some())
            .map(|(id, _, result)| (id, result.cloned()))
            .collect()
    }

    pub(super) fn define_pool(
        &mut self,
        name: &str,
        start_task: Command,
        wait_for_success: bool,
    ) -> Result<(), Refusal> {
        let now = self.now();
        let defined = (self.core).define_pool(now, name, start_task, wait_for_success, wall_ms());
        defined.map(drop).map_err(Refusal::Invalid)
    }

    /// How the node that `node` (a peer id or a prefix of one) names ran
    /// the start task of pool `pool`.
    pub(super) fn start_result(&self, pool: &str, node: &str) -> Result<SideResult, Refusal> {
        let ledger = self.core.ledger();
        let p = (ledger.pools(wall_ms()).find(|p| p.name == pool))
            .ok_or_else(|| Refusal::NotFound(format!("no pool {pool:?}")))?;
        let id = (ledger.nodes().map(|(id, _)| *id))
            .find(|id| node_name(id).starts_with(node))
            .ok_or_else(|| Refusal::NotFound(format!("no node {node:?}")))?;
        let result = ledger.start_result(&p.event, &id).cloned();
        result.ok_or_else(|| {
            Refusal::NotFound(format!("node {node} has not run the start task of {pool}"))
        })
    }

    pub(super) fn schedule_list(&self) -> Vec<ScheduleEntry> {
        let (ledger, wall) = (self.core.ledger(), wall_ms());
        (ledger.schedules(wall))
            .map(|sc| ScheduleEntry {
                record: sc.clone(),
                last_fired_ms: ledger.last_fired(&Issuer::Schedule(sc.name.clone()), wall),
            })
            .collect()
    }

    pub(super) fn add_schedule(
        &mut self,
        name: &str,
        recurrence: Recurrence,
        template: JobSpec,
    ) -> Result<(), Refusal> {
        let now = self.now();
        let added = (self.core).add_schedule(now, name, recurrence, template, wall_ms());
        added.map(drop).map_err(Refusal::Invalid)
    }

    pub(super) fn remove_schedule(&mut self, name: &str) -> Result<(), Refusal> {
        let now = self.now();
        if self.core.remove_schedule(now, name, wall_ms()) {
            return Ok(());
        }
        Err(Refusal::NotFound(format!(
            "no schedule {name:?} that this node may remove (the node that added it or an admin node may)"
        )))
    }

    pub(super) fn package_list(&self) -> Vec<PackageRecord> {
        self.core.ledger().packages().cloned().collect()
    }

    /// Adds a package version; whether it is new (an equal one may exist).
    pub(super) fn add_package(
        &mut self,
        name: &str,
        version: &str,
        blob: BlobId,
    ) -> Result<bool, Refusal> {
        let now = self.now();
        let added = self.core.add_package(now, name, version, blob, wall_ms());
        added
            .map(|event| event.is_some())
            .map_err(Refusal::Conflict)
    }
}
