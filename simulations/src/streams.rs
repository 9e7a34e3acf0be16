//! Independent random streams of one run, all derived from its seed.
//!
//! Owns the split of one seed into one RNG per concern, so that switching
//! one fault off (when shrinking) leaves the draws of the others unchanged.
//! Must not hold state beyond the seed.

use peerbatch_protocol::SeededRng;
use rand::SeedableRng;

/// What a stream is used for.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// The swarm's draw of the config itself.
    Draw,
    /// Node identities and core RNG seeds.
    Nodes,
    /// Job sizes, retries, submit and cancel times and places.
    Workload,
    /// Task durations and outcomes.
    Exec,
    /// Message loss, duplication, reordering and delay.
    Network,
    /// Partitions, crashes, wipes, clock jumps and skew.
    Faults,
    /// Flush delays of writes.
    Disk,
    /// Whether (and how wide) the run's multi-instance tasks are.
    Gang,
    /// Whether a faulty member forges events, which node, and what it forges.
    Faulty,
    /// Whether jobs are forgotten, their retention and the nodes' wall clocks.
    Forget,
    /// Which jobs have a `max_wall_clock`, and how long.
    Deadline,
    /// What jobs wait for (a reducer, `after`) and their exit-code rules.
    Deps,
    /// The exit codes of failing attempts under exit-code rules.
    ExitCode,
    /// Whether a node is drained (and resumed) by request, which, when.
    Drain,
}

impl Stream {
    pub fn rng(self, seed: u64) -> SeededRng {
        let tag = self as u64 + 1;
        SeededRng::seed_from_u64(seed ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}
