//! Rendezvous (highest-random-weight) hashing for claims.
//!
//! Owns the score of a node for a (task, attempt) and the order it implies.
//! Pure arithmetic: the same inputs give the same rank on every node.

use crate::ids::{NodeId, TaskRef};

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A node's weight for one attempt of one task; higher is better.
pub fn score(task: TaskRef, attempt: u32, node: &NodeId) -> u64 {
    let job = u64::from_le_bytes(task.job.0);
    let task_key = mix(job ^ mix(((task.index as u64) << 32) | attempt as u64));
    let mut node_bytes = [0u8; 8];
    node_bytes.copy_from_slice(&node.0[..8]);
    mix(task_key ^ mix(u64::from_le_bytes(node_bytes)))
}

/// Whether `a` outranks `b` for this attempt: higher score, ties to the lower id.
pub fn outranks(task: TaskRef, attempt: u32, a: &NodeId, b: &NodeId) -> bool {
    let (sa, sb) = (score(task, attempt, a), score(task, attempt, b));
    sa > sb || (sa == sb && a < b)
}

/// How many of `nodes` outrank `me` (0 = first choice).
pub fn rank<'a>(
    task: TaskRef,
    attempt: u32,
    me: &NodeId,
    nodes: impl IntoIterator<Item = &'a NodeId>,
) -> usize {
    let mine = score(task, attempt, me);
    nodes
        .into_iter()
        .filter(|n| {
            let theirs = score(task, attempt, n);
            theirs > mine || (theirs == mine && *n < me)
        })
        .count()
}
