//! Answers about functions: list, show, change (deploy, roll back,
//! remove, a key created or revoked), what one call needs, and the
//! triggers through the ledger (enqueue, a queue's messages, a blob put).
//!
//! Owns reading a function by name, refusing a change the core refuses
//! and a call whose key does not open the function; must not run or
//! route calls (`functions` does).

use crate::driver::command::{QueuedMessage, Refusal, Reply};
use crate::driver::Driver;
use crate::functions::route::Plan;
use crate::functions::triggers::{self, FireRefused};
use crate::identity::node_name;
use crate::wallclock::wall_ms;
use libp2p::PeerId;
use peerbatch_protocol::function::keys::{KeyHash, KeyRefused};
use peerbatch_protocol::function::{ChangeRefused, FunctionEvent, FunctionView};
use peerbatch_protocol::trigger::Origin;
use peerbatch_protocol::{BlobId, JobId};
use std::collections::HashMap;

impl Driver {
    pub(super) fn function_list(&self) -> Vec<FunctionView> {
        let (ledger, wall) = (self.core.ledger(), wall_ms());
        let names = ledger.function_names();
        names.filter_map(|n| ledger.function(n, wall)).collect()
    }

    pub(super) fn function(&self, name: &str) -> Result<FunctionView, Refusal> {
        (self.core.ledger().function(name, wall_ms())).ok_or_else(|| unknown(name))
    }

    /// Publishes a change; answers the number of the version serving
    /// afterwards.
    pub(super) fn change_function(&mut self, event: FunctionEvent) -> Result<Option<u32>, Refusal> {
        let name = event.name().to_string();
        let now = self.now();
        let changed = self.core.change_function(now, event, wall_ms());
        changed.map_err(|e| change_refused(&name, e))?;
        Ok(self.function(&name)?.serving().map(|v| v.number))
    }

    /// What a call of function `name` needs from the driver, once `key`
    /// (if the call came with one) opens it; an unknown function opens
    /// to no key, so a refused caller learns nothing of which exist.
    pub(super) fn plan(&self, name: &str, key: Option<KeyHash>) -> Result<Plan, Refusal> {
        let view = self.core.ledger().function(name, wall_ms());
        if let Some(key) = key {
            let keys = view.as_ref().map(|v| &v.keys);
            keys.map_or(Err(KeyRefused::Wrong), |k| k.admit(key))
                .map_err(|why| Refusal::Key {
                    name: name.to_string(),
                    why,
                })?;
        }
        let view = view.ok_or_else(|| unknown(name))?;
        let version = (view.serving().cloned())
            .ok_or_else(|| Refusal::NotFound(format!("function {name:?} was removed")))?;
        let peers = self.willing_peers();
        Ok(Plan {
            name: name.to_string(),
            version,
            available_here: self.unavailable.is_none(),
            free_slots: self.free_slots(&peers),
            peers,
        })
    }

    /// Each of `peers`' free slots by the ledger (see `Core::free_slots`).
    fn free_slots(&self, peers: &[PeerId]) -> HashMap<PeerId, u32> {
        let free = |p: &PeerId| {
            let node = self.connected.node_of(p)?;
            Some((*p, self.core.free_slots(&node)?))
        };
        peers.iter().filter_map(free).collect()
    }
}

impl Driver {
    pub(super) fn enqueue(
        &mut self,
        name: &str,
        message: Vec<u8>,
        replicated: Reply<usize>,
    ) -> Result<JobId, FireRefused> {
        let now = self.now();
        let (job, event) = triggers::enqueue(&mut self.core, now, wall_ms(), name, message)?;
        self.replicate_then_reply(event, replicated);
        Ok(job)
    }

    /// Function `name`'s queue messages' jobs.
    pub(super) fn queue(&self, name: &str) -> Result<Vec<QueuedMessage>, Refusal> {
        self.function(name)?;
        let ledger = self.core.ledger();
        let messages = (ledger.function_jobs(name))
            .filter(|j| j.spec.origin.as_ref().and_then(Origin::message).is_some());
        Ok(messages
            .map(|record| {
                // Counts are kept for sealed jobs too; views are read only
                // for a message that ended without succeeding.
                let progress = self.core.progress(&record.id);
                let ended = progress.failed + progress.cancelled + progress.skipped > 0;
                let ended = ended.then(|| self.core.views(record.id).into_iter().next());
                QueuedMessage {
                    record: record.clone(),
                    progress,
                    ended: ended.flatten(),
                }
            })
            .collect())
    }

    pub(super) fn blob_put(
        &mut self,
        blob: BlobId,
        name: &str,
    ) -> Result<Vec<(String, JobId)>, FireRefused> {
        let now = self.now();
        triggers::blob_put(&mut self.core, now, wall_ms(), blob, name)
    }
}

fn unknown(name: &str) -> Refusal {
    Refusal::NotFound(format!("no function {name:?}"))
}

fn change_refused(name: &str, e: ChangeRefused) -> Refusal {
    match e {
        ChangeRefused::Invalid(e) => Refusal::Invalid(e.to_string()),
        ChangeRefused::Unknown(_) | ChangeRefused::NoKey { .. } => Refusal::NotFound(e.to_string()),
        ChangeRefused::KeyLabelTaken { .. } | ChangeRefused::TooManyKeys { .. } => {
            Refusal::Conflict(e.to_string())
        }
        ChangeRefused::NotOwner { owner, .. } => Refusal::NotAllowed(format!(
            "function {name} belongs to node {}; only it or an admin node may change it",
            node_name(&owner)
        )),
    }
}
