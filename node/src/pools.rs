//! Pool membership of this node: running each pool's start task once per
//! definition when the node is labelled `pool=NAME`, and withholding that
//! label from its announce until the task succeeded when the pool says
//! `wait_for_success` — so the pool's tasks never land on a node that is
//! not ready.
//!
//! Owns that decision and the start-task runs (under `DATA/pools/NAME`).
//! Must not run task attempts or record results itself: results go back to
//! the driver, which puts them in the ledger.

use crate::sandbox::Sandbox;
use crate::store::blobs::BlobStore;
use peerbatch_protocol::event::SideResult;
use peerbatch_protocol::{Core, EventId, EventStore};
use std::collections::BTreeSet;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// A start task that ended: for the driver to record.
pub struct StartDone {
    pub pool: String,
    pub definition: EventId,
    pub result: SideResult,
}

pub struct Pools {
    /// The labels given on the command line.
    configured: Vec<(String, String)>,
    dir: PathBuf,
    blobs: BlobStore,
    sandbox: Sandbox,
    running: BTreeSet<EventId>,
    done: mpsc::UnboundedSender<StartDone>,
}

impl Pools {
    pub fn new(
        configured: Vec<(String, String)>,
        dir: PathBuf,
        blobs: BlobStore,
        sandbox: Sandbox,
        done: mpsc::UnboundedSender<StartDone>,
    ) -> Pools {
        Pools {
            configured,
            dir,
            blobs,
            sandbox,
            running: BTreeSet::new(),
            done,
        }
    }

    fn member_of(&self, pool: &str) -> bool {
        self.configured
            .iter()
            .any(|(k, v)| k == "pool" && v == pool)
    }

    /// Starts the start tasks due here, and returns the labels to announce.
    pub fn tick<S: EventStore>(&mut self, core: &Core<S>) -> Vec<(String, String)> {
        let me = core.node_id();
        let ledger = core.ledger();
        let mut withheld = Vec::new();
        let wall = crate::wallclock::wall_ms();
        let mine: Vec<_> = ledger
            .pools(wall)
            .filter(|p| self.member_of(&p.name))
            .collect();
        for pool in mine {
            let result = ledger.start_result(&pool.event, &me);
            if pool.wait_for_success && !result.is_some_and(|r| r.outcome.success()) {
                withheld.push(pool.name.clone());
            }
            if result.is_some() || !self.running.insert(pool.event) {
                continue;
            }
            tracing::info!("running the start task of pool {}", pool.name);
            let (command, name, definition) =
                (pool.start_task.clone(), pool.name.clone(), pool.event);
            let (dir, blobs, done) = (self.dir.join(&name), self.blobs.clone(), self.done.clone());
            let sandbox = self.sandbox.clone();
            let env = vec![
                ("PEERBATCH_POOL", name.clone()),
                (
                    "PEERBATCH_NODE",
                    crate::identity::peer_of(&me).map_or_else(|| me.to_string(), |p| p.to_string()),
                ),
            ];
            tokio::spawn(async move {
                let result = crate::side::run(&sandbox, &command, &dir, env, &blobs).await;
                let _ = done.send(StartDone {
                    pool: name,
                    definition,
                    result,
                });
            });
        }
        self.configured
            .iter()
            .filter(|(k, v)| !(k == "pool" && withheld.contains(v)))
            .cloned()
            .collect()
    }

    /// A start task ended: it may run again only for a new definition.
    pub fn finished(&mut self, definition: &EventId) {
        self.running.remove(definition);
    }
}
