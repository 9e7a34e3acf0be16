//! What a task needs from a node and whether a node offers it.
//!
//! Owns what a node says about itself (`NodeInfo`: capacity, labels,
//! addresses), the resource request (slots, memory, GPUs, label constraints) and
//! the fit rule against a node's announced capacity and labels, with the
//! reason a task fits no node. Must not count what is in use on a node;
//! the core does, for its own node only.

use serde::{Deserialize, Serialize};

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub slots: u32,
    pub memory_mb: u64,
    pub gpus: u32,
    pub labels: Vec<(String, String)>,
    pub draining: bool,
    /// Where peers can dial it (multiaddr text).
    pub addrs: Vec<String>,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Slots the task occupies while it runs (default 1).
    pub slots: u32,
    pub memory_mb: u64,
    pub gpus: u32,
    /// Labels the node must carry, `key=value` each.
    pub constraints: Vec<(String, String)>,
    /// Distinct nodes the task runs on at once (a multi-instance task's
    /// gang; 1 for an ordinary task). Each of them must fit the rest.
    pub instances: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            slots: 1,
            memory_mb: 0,
            gpus: 0,
            constraints: Vec::new(),
            instances: 1,
        }
    }
}

/// An amount of node capacity: what a task takes, or what is in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    pub slots: u32,
    pub memory_mb: u64,
    pub gpus: u32,
}

impl Amount {
    pub fn add(&mut self, other: Amount) {
        self.slots += other.slots;
        self.memory_mb += other.memory_mb;
        self.gpus += other.gpus;
    }

    pub fn sub(&mut self, other: Amount) {
        self.slots = self.slots.saturating_sub(other.slots);
        self.memory_mb = self.memory_mb.saturating_sub(other.memory_mb);
        self.gpus = self.gpus.saturating_sub(other.gpus);
    }

    /// Whether `self + more` stays within `limit`.
    pub fn room_for(&self, more: Amount, limit: Amount) -> bool {
        self.slots + more.slots <= limit.slots
            && self.memory_mb + more.memory_mb <= limit.memory_mb
            && self.gpus + more.gpus <= limit.gpus
    }
}

impl Resources {
    pub fn amount(&self) -> Amount {
        Amount {
            slots: self.slots,
            memory_mb: self.memory_mb,
            gpus: self.gpus,
        }
    }

    /// More than one plain slot: such tasks are claimed only into free room.
    pub fn is_sized(&self) -> bool {
        self.slots > 1 || self.memory_mb > 0 || self.gpus > 0
    }

    /// Why a node with `info` can never run this task, if it cannot.
    pub fn misfit(&self, info: &NodeInfo) -> Option<String> {
        for (k, v) in &self.constraints {
            if !info.labels.iter().any(|(lk, lv)| lk == k && lv == v) {
                return Some(format!("needs label {k}={v}"));
            }
        }
        if self.slots > info.slots {
            return Some(format!(
                "needs {} slots, the node has {}",
                self.slots, info.slots
            ));
        }
        if self.memory_mb > info.memory_mb {
            return Some(format!(
                "needs {} MB of memory, the node has {}",
                self.memory_mb, info.memory_mb
            ));
        }
        if self.gpus > info.gpus {
            return Some(format!(
                "needs {} GPUs, the node has {}",
                self.gpus, info.gpus
            ));
        }
        None
    }
}

/// Why no node among `nodes` can run a task needing `r`: the reason of the
/// node that comes closest (fewest unmet needs is not tracked; the first
/// node's reason is as good a summary as any), or that there are no nodes.
pub fn unschedulable<'a>(
    r: &Resources,
    nodes: impl IntoIterator<Item = &'a NodeInfo>,
) -> Option<String> {
    let mut reason = None;
    let (mut count, mut fit) = (0, 0);
    for info in nodes {
        count += 1;
        match r.misfit(info) {
            None => fit += 1,
            Some(why) => {
                reason.get_or_insert(why);
            }
        }
    }
    let wanted = r.instances.max(1);
    match reason {
        _ if fit >= wanted => None,
        _ if fit > 0 || (wanted > 1 && reason.is_none()) => Some(format!(
            "needs {wanted} nodes at once, {fit} of {count} fit{}",
            reason
                .map(|why| format!(" (another {why})"))
                .unwrap_or_default()
        )),
        Some(why) if count == 1 => Some(format!("no node fits: {why}")),
        Some(why) => Some(format!("none of {count} nodes fits (e.g. {why})")),
        None => None,
    }
}
