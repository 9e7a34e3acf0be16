//! Answers about the mesh: this node's own state, the nodes the ledger
//! knows and whether each is live, draining a node, the connected peers.
//!
//! Owns judging a node live by this node's own clock (heard from within a
//! lease) and finding a node by what a user calls it; must not decide who
//! may drain whom (the core does).

use crate::driver::command::{NodeEntry, NodeState, Refusal};
use crate::driver::Driver;
use crate::identity::node_name;
use crate::wallclock::wall_ms;
use peerbatch_protocol::core::Progress;
use peerbatch_protocol::NodeId;

impl Driver {
    /// Peers the core counts as connected.
    pub(super) fn peers_connected(&self) -> usize {
        self.core.peers().values().filter(|p| p.connected).count()
    }

    pub(super) fn node_state(&self) -> NodeState {
        let (claimed, running) = self.core.local_load();
        NodeState {
            slots: self.core.config().slots,
            draining: self.core.draining(),
            paused: self.core.paused(),
            storage_error: self.storage.borrow().clone(),
            unavailable: self.unavailable.clone(),
            claimed,
            running,
            peers_connected: self.peers_connected(),
            nodes_known: self.core.ledger().nodes().count(),
            events: self.core.ledger().event_count(),
            held: self.core.held(),
            stats: self.core.stats(),
            input_held: self.input_held,
            tasks: self.task_totals(),
        }
    }

    /// Every known job's tasks, by state.
    fn task_totals(&self) -> Progress {
        let mut tasks = Progress::default();
        for job in self.core.ledger().jobs() {
            let p = self.core.progress(&job.id);
            tasks.pending += p.pending;
            tasks.blocked += p.blocked;
            tasks.running += p.running;
            tasks.succeeded += p.succeeded;
            tasks.failed += p.failed;
            tasks.cancelled += p.cancelled;
            tasks.skipped += p.skipped;
        }
        tasks
    }

    pub(super) fn node_list(&self) -> Vec<NodeEntry> {
        let now = self.now();
        let me = self.core.node_id();
        let nodes = self.core.ledger().nodes();
        nodes
            .map(|(id, info)| {
                let peer = self.core.peers().get(id);
                let silent = peer.and_then(|p| p.last_heard).map(|t| now.since(t));
                NodeEntry {
                    id: *id,
                    info: info.clone(),
                    is_self: *id == me,
                    live: self.core.is_live(id, now),
                    connected: peer.is_some_and(|p| p.connected),
                    last_heard_ms: if *id == me { Some(0) } else { silent },
                }
            })
            .collect()
    }

    /// Asks `node` (a peer id, a unique prefix of one, or `self`) to drain
    /// or resume, through the ledger.
    pub(super) fn drain(&mut self, node: &str, drain: bool) -> Result<NodeId, Refusal> {
        let target = self.node_named(node)?;
        let now = self.now();
        if !self.core.request_drain(now, target, drain, wall_ms()) {
            return Err(Refusal::NotAllowed(format!(
                "node {} may be drained or resumed only from itself or an admin node",
                node_name(&target)
            )));
        }
        Ok(target)
    }

    /// The one node of the mesh `node` names.
    fn node_named(&self, node: &str) -> Result<NodeId, Refusal> {
        let me = self.core.node_id();
        let named = |id: &NodeId| match node {
            "self" => *id == me,
            _ => node_name(id).starts_with(node),
        };
        let nodes = self.core.ledger().nodes().map(|(id, _)| *id);
        let matches: Vec<NodeId> = nodes.filter(named).collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(Refusal::NotFound(format!("no node {node:?} in the mesh"))),
            many => Err(Refusal::Invalid(format!(
                "{node:?} matches {} nodes; give more of the id",
                many.len()
            ))),
        }
    }
}
